package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy"
)

// Glance lists and guards a cloud's images for vmgate sync (policy.Glance).
type Glance struct {
	cloud  string // as for Connect; used when client is nil
	client *gophercloud.ServiceClient
	label  string
	// PageSize is how many images one request asks for.
	PageSize int
}

var _ policy.Glance = (*Glance)(nil)

// NewGlance uses an image client made elsewhere; label names the cloud in messages.
func NewGlance(client *gophercloud.ServiceClient, label string) *Glance {
	return &Glance{client: client, label: label, PageSize: 500}
}

// CloudGlance is the Glance of the named cloud (see Connect). It connects at its first
// call, so that a cloud that cannot be reached is a Glance error the sync reports while
// the image lists are still synced.
func CloudGlance(cloud string) *Glance {
	label := cloud
	if label == "" {
		label = os.Getenv("OS_CLOUD")
	}
	if label == "" {
		label = "from OS_* variables"
	}
	return &Glance{cloud: cloud, label: label, PageSize: 500}
}

func (g *Glance) connect(ctx context.Context) error {
	if g.client != nil {
		return nil
	}
	sess, err := Connect(ctx, g.cloud)
	if err != nil {
		return err
	}
	if g.client, err = sess.Image(); err != nil {
		return err
	}
	g.label = sess.Label
	return nil
}

// Label implements policy.Glance.
func (g *Glance) Label() string { return g.label }

// Images implements policy.Glance: every image of every visibility the credentials can
// see (all of them for an admin), page by page.
func (g *Glance) Images(ctx context.Context) ([]policy.GlanceImage, error) {
	if err := g.connect(ctx); err != nil {
		return nil, err
	}
	// visibility=all includes community images and, for an admin, every project's
	// private ones; gophercloud knows no constant for it.
	opts := images.ListOpts{Limit: g.PageSize, Visibility: images.ImageVisibility("all")}
	var out []policy.GlanceImage
	err := images.List(g.client, opts).EachPage(ctx, func(_ context.Context, page pagination.Page) (bool, error) {
		list, err := images.ExtractImages(page)
		if err != nil {
			return false, err
		}
		for i := range list {
			out = append(out, convert(&list[i]))
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return out, nil
}

func convert(im *images.Image) policy.GlanceImage {
	gi := policy.GlanceImage{ID: im.ID, Name: im.Name, Owner: im.Owner, Visibility: string(im.Visibility), Status: string(im.Status),
		Properties: map[string]string{}}
	for _, k := range policy.HashProperties {
		if v, ok := im.Properties[k].(string); ok {
			gi.Properties[k] = v
		}
	}
	// Glance keeps these as strings; any other type is kept as JSON so that it still counts.
	for _, k := range policy.BootProperties {
		switch v := im.Properties[k].(type) {
		case nil:
		case string:
			gi.Properties[k] = v
		default:
			raw, _ := json.Marshal(v)
			gi.Properties[k] = string(raw)
		}
	}
	return gi
}

// Deactivate implements policy.Glance. Glance then refuses to serve the image's data, so
// new boots fail at once; running instances are not touched.
func (g *Glance) Deactivate(ctx context.Context, id string) error {
	return g.action(ctx, id, "deactivate")
}

// Reactivate implements policy.Glance.
func (g *Glance) Reactivate(ctx context.Context, id string) error {
	return g.action(ctx, id, "reactivate")
}

// action posts one of Glance's image actions, which gophercloud does not wrap.
func (g *Glance) action(ctx context.Context, id, name string) error {
	if err := g.connect(ctx); err != nil {
		return err
	}
	url := g.client.ServiceURL("images", id, "actions", name)
	resp, err := g.client.Post(ctx, url, nil, nil, &gophercloud.RequestOpts{OkCodes: []int{http.StatusNoContent}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
			return fmt.Errorf("%s: forbidden: the credentials need Glance's admin role to %s images: %w", name, name, err)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ForSync is the Glance side of policy.Syncer for a configuration: nothing when
// openstack.cloud is not set.
func ForSync(c config.OpenStack) (policy.Glance, policy.GlanceOptions) {
	opts := policy.GlanceOptions{DeactivateRevoked: c.DeactivateRevoked, TrustedProjects: c.TrustedProjects,
		AllowBlockDeviceMapping: c.AllowImageBlockDeviceMapping}
	if c.Cloud == "" {
		return nil, opts
	}
	return CloudGlance(c.Cloud), opts
}
