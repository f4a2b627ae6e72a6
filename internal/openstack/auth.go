// Package openstack connects vmgate to an OpenStack cloud: authentication the way the
// openstack client does it (clouds.yaml or OS_* variables, passwords or application
// credentials), and the few Glance calls vmgate sync makes. Nova's side lives in
// internal/terminate.
package openstack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	gcopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// Session is an authenticated connection to one cloud.
type Session struct {
	Provider *gophercloud.ProviderClient
	Endpoint gophercloud.EndpointOpts
	// Label names the cloud in messages: its clouds.yaml name, or "from OS_* variables".
	Label string
}

// Connect authenticates to the cloud named name in clouds.yaml (found as the openstack
// client finds it: $OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/,
// /etc/openstack/). With an empty name it takes $OS_CLOUD, or when that is unset the OS_*
// variables of an openrc file. Application credentials work either way.
//
// Errors never carry a password or a secret: only the cloud's name and what went wrong.
func Connect(ctx context.Context, name string) (*Session, error) {
	ao, eo, label, tlsConfig, err := authOptions(name)
	if err != nil {
		return nil, fmt.Errorf("cloud %s: %w", label, err)
	}
	// A long run (many images, many servers to wait for) can outlive its token.
	ao.AllowReauth = true
	// A nil TLS configuration keeps the system's CAs.
	provider, err := config.NewProviderClient(ctx, ao, config.WithTLSConfig(tlsConfig))
	if err != nil {
		return nil, fmt.Errorf("cloud %s: authenticate: %w", label, redact(err, ao))
	}
	return &Session{Provider: provider, Endpoint: eo, Label: label}, nil
}

// Compute is the session's Nova endpoint.
func (s *Session) Compute() (*gophercloud.ServiceClient, error) {
	c, err := gcopenstack.NewComputeV2(s.Provider, s.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("cloud %s: compute endpoint: %w", s.Label, err)
	}
	return c, nil
}

// Image is the session's Glance endpoint.
func (s *Session) Image() (*gophercloud.ServiceClient, error) {
	c, err := gcopenstack.NewImageV2(s.Provider, s.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("cloud %s: image endpoint: %w", s.Label, err)
	}
	return c, nil
}

func authOptions(name string) (ao gophercloud.AuthOptions, eo gophercloud.EndpointOpts, label string, tlsConfig *tls.Config, err error) {
	if name == "" && os.Getenv("OS_CLOUD") == "" {
		label = "from OS_* variables"
		ao, err = gcopenstack.AuthOptionsFromEnv()
		if err != nil {
			return ao, eo, label, nil, fmt.Errorf("%w (set OS_CLOUD, give a cloud name, or source an openrc file)", err)
		}
		eo = gophercloud.EndpointOpts{Region: os.Getenv("OS_REGION_NAME"), Availability: gophercloud.Availability(os.Getenv("OS_INTERFACE"))}
		return ao, eo, label, nil, nil
	}
	label = name
	var popts []clouds.ParseOption
	if name != "" {
		popts = append(popts, clouds.WithCloudName(name))
	} else {
		label = os.Getenv("OS_CLOUD")
	}
	ao, eo, tlsConfig, err = clouds.Parse(popts...)
	return ao, eo, label, tlsConfig, err
}

// redact removes the credential's secrets from an error's text, in case a library quoted
// them back.
func redact(err error, ao gophercloud.AuthOptions) error {
	msg := err.Error()
	clean := msg
	for _, secret := range []string{ao.Password, ao.ApplicationCredentialSecret, ao.TokenID} {
		if len(secret) >= 4 {
			clean = strings.ReplaceAll(clean, secret, "[redacted]")
		}
	}
	if clean == msg {
		return err
	}
	return errors.New(clean)
}
