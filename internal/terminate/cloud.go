package terminate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/openstack"
)

// Cloud is the cloud scope: the servers of every project of an OpenStack cloud, through the
// Nova API. It needs credentials that may list all projects' servers (all_tenants) and act
// on them: an admin, or a role the cloud's policy grants that.
type Cloud struct {
	compute *gophercloud.ServiceClient
	name    string
	// Poll is how often a server's status is checked after an action.
	Poll time.Duration
}

var _ Source = (*Cloud)(nil)

// OpenCloud authenticates to a cloud as openstack.Connect does (name in clouds.yaml; empty:
// $OS_CLOUD, else the OS_* variables) and lists its servers through Nova.
func OpenCloud(ctx context.Context, name string) (*Cloud, error) {
	sess, err := openstack.Connect(ctx, name)
	if err != nil {
		return nil, err
	}
	compute, err := sess.Compute()
	if err != nil {
		return nil, err
	}
	return NewCloud(compute, sess.Label), nil
}

// NewCloud uses a compute client made elsewhere; label names the cloud in output.
func NewCloud(compute *gophercloud.ServiceClient, label string) *Cloud {
	return &Cloud{compute: compute, name: label, Poll: 2 * time.Second}
}

// Scope implements Source.
func (c *Cloud) Scope() string { return "cloud " + c.name }

// Actions implements Source.
func (c *Cloud) Actions() []Action { return []Action{Shutdown, Destroy, Suspend, Stop, Lock} }

// List implements Source: every server of every project whose guest runs (or is paused),
// described as Nova describes it in its libvirt domain, so that the hook's decision applies.
func (c *Cloud) List(ctx context.Context) ([]VM, error) {
	pages, err := servers.List(c.compute, servers.ListOpts{AllTenants: true}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list servers of all projects: %w", err)
	}
	all, err := servers.ExtractServers(pages)
	if err != nil {
		return nil, fmt.Errorf("list servers of all projects: %w", err)
	}
	var vms []VM
	for i := range all {
		s := &all[i]
		if !running(s) {
			continue
		}
		vm := VM{Name: s.Name, UUID: s.ID}
		vm.Domain, err = novaDomain(s)
		if err != nil {
			vm.Problem = err.Error()
			vm.Domain = nil
		}
		vms = append(vms, vm)
	}
	sortVMs(vms)
	return vms, nil
}

// running reports whether the server's guest runs: power state running or paused (what
// libvirt lists as active), or, when the API does not say, status ACTIVE or PAUSED.
func running(s *servers.Server) bool {
	switch s.PowerState {
	case servers.RUNNING, servers.PAUSED:
		return true
	case servers.NOSTATE:
		return s.Status == "ACTIVE" || s.Status == "PAUSED"
	}
	return false
}

// novaDomain is what the hook would see of the server: the <nova:instance> metadata Nova
// writes into its libvirt domain. The domain name is the instance name (instance-0000002a)
// when the API shows it (to admins), so that admission.exempt_domains matches as in the
// hook.
func novaDomain(s *servers.Server) (*domain.Domain, error) {
	d := &domain.Domain{Type: "kvm", Name: s.InstanceName, UUID: strings.ToLower(s.ID),
		Nova: &domain.Nova{Name: s.Name, UserID: s.UserID, ProjectID: s.TenantID, FromAPI: true}}
	if d.Name == "" {
		d.Name = s.Name
	}
	imageID, _ := s.Image["id"].(string)
	switch {
	case imageID != "":
		d.Nova.Root = &domain.NovaRoot{Type: "image", ID: strings.ToLower(imageID)}
	default:
		// Nova shows "" for the image of a server booted from a volume.
		root := &domain.NovaRoot{Type: "volume"}
		if len(s.AttachedVolumes) > 0 {
			root.ID = s.AttachedVolumes[0].ID
		}
		d.Nova.Root = root
	}
	ifaces, ports, err := novaAddresses(s.Addresses)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", s.ID, err)
	}
	d.Interfaces, d.Nova.Ports = ifaces, ports
	return d, nil
}

// novaAddresses reads the server's "addresses" (network name → addresses, each with its MAC
// and fixed or floating type) into one interface and one port per MAC.
func novaAddresses(addresses map[string]any) ([]domain.Interface, []domain.NovaPort, error) {
	raw, err := json.Marshal(addresses)
	if err != nil {
		return nil, nil, err
	}
	var nets map[string][]struct {
		Addr string `json:"addr"`
		Type string `json:"OS-EXT-IPS:type"`
		MAC  string `json:"OS-EXT-IPS-MAC:mac_addr"`
	}
	if err := json.Unmarshal(raw, &nets); err != nil {
		return nil, nil, fmt.Errorf("addresses: %w", err)
	}
	var ifaces []domain.Interface
	var ports []domain.NovaPort
	byMAC := map[string]int{}
	for _, name := range slices.Sorted(mapKeys(nets)) {
		for _, a := range nets[name] {
			addr, err := netip.ParseAddr(a.Addr)
			if err != nil {
				return nil, nil, fmt.Errorf("address %q on network %s: %w", a.Addr, name, err)
			}
			mac := strings.ToLower(a.MAC)
			i, ok := byMAC[mac]
			if !ok {
				i = len(ports)
				byMAC[mac] = i
				ports = append(ports, domain.NovaPort{})
				if mac != "" {
					ifaces = append(ifaces, domain.Interface{MAC: mac, Network: name})
				}
			}
			ports[i].IPs = append(ports[i].IPs, domain.NovaIP{Type: a.Type, Address: addr})
		}
	}
	return ifaces, ports, nil
}

func mapKeys[M ~map[K]V, K comparable, V any](m M) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Act implements Source. Nova acts asynchronously: Act waits, up to opts.Timeout, for the
// server to reach the state the action leads to.
func (c *Cloud) Act(ctx context.Context, vm *VM, action Action, opts Options) (string, error) {
	var err error
	var want string
	switch action {
	case Shutdown, Destroy, Stop:
		// os-stop: Nova asks the guest to shut down and powers it off after its
		// shutdown_timeout. Deleting would be faster, and would destroy the evidence.
		err, want = servers.Stop(ctx, c.compute, vm.UUID).ExtractErr(), "SHUTOFF"
	case Suspend:
		err, want = servers.Suspend(ctx, c.compute, vm.UUID).ExtractErr(), "SUSPENDED"
	case Lock:
		// The lock takes effect in the API at once.
		if err = servers.Lock(ctx, c.compute, vm.UUID).ExtractErr(); err != nil {
			return "", fmt.Errorf("os-lock: %w", novaError(err))
		}
		return "locked: its owner can no longer start, stop or change it", nil
	default:
		return "", fmt.Errorf("action %s is not possible on Nova", action)
	}
	if err != nil {
		// 409: the server is not in a state that allows the action, perhaps the one the
		// action leads to.
		if gophercloud.ResponseCodeIs(err, http.StatusConflict) {
			if s, gerr := servers.Get(ctx, c.compute, vm.UUID).Extract(); gerr == nil && s.Status == want {
				return "the server was " + want + " already", nil
			}
		}
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return "the server was gone already", nil
		}
		return "", fmt.Errorf("%s: %w", action, novaError(err))
	}
	return c.wait(ctx, vm.UUID, want, opts.Timeout)
}

// wait polls the server until its status is want.
func (c *Cloud) wait(ctx context.Context, id, want string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	status := "unknown"
	for {
		s, err := servers.Get(ctx, c.compute, id).Extract()
		switch {
		case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
			return "the server was deleted meanwhile", nil
		case err != nil:
			return "", fmt.Errorf("status after the action: %w", novaError(err))
		case s.Status == want:
			return "", nil
		case s.Status == "ERROR":
			return "", fmt.Errorf("the server went to ERROR: %s", s.Fault.Message)
		}
		status = s.Status
		if !time.Now().Before(deadline) {
			return "", fmt.Errorf("Nova accepted the action, but the server is still %s after %s, not %s", status, timeout, want)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("interrupted while waiting for %s: %w", want, ctx.Err())
		case <-time.After(c.Poll):
		}
	}
}

// novaError keeps Nova's own words ("Cannot 'stop' instance … while it is in task_state
// powering-off") and leaves out gophercloud's request dump.
func novaError(err error) error {
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) {
		return err
	}
	var body map[string]struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(ue.Body, &body) == nil {
		for _, v := range body {
			if v.Message != "" {
				return fmt.Errorf("Nova answered %d: %s", ue.Actual, v.Message)
			}
		}
	}
	return fmt.Errorf("Nova answered %d to %s %s", ue.Actual, ue.Method, ue.URL)
}
