package terminate

// The cloud scope against a local HTTP server that imitates the few Keystone and Nova
// endpoints vmgate calls (token, server listing with paging, server actions, server show).
// It checks vmgate's own logic: what it asks, how it reads the answers, how it judges and
// records. A real Nova is tested with the OpenStack integration tests.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/trace"
)

const (
	glanceEndorsed = "11111111-1111-4111-8111-111111111111"
	glanceRevoked  = "22222222-2222-4222-8222-222222222222"
	glanceUnknown  = "33333333-3333-4333-8333-333333333333"
)

// fakeNova is Keystone and Nova, as far as vmgate uses them.
type fakeNova struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	servers  []map[string]any
	actions  []string // "ID ACTION"
	lists    []string // query strings of the listing requests
	polls    int      // status reads before an action takes effect
	stuck    bool     // actions never take effect
	pending  map[string]string
	pendingN map[string]int
}

func newFakeNova(t *testing.T) *fakeNova {
	f := &fakeNova{t: t, pending: map[string]string{}, pendingN: map[string]int{}, polls: 1}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	server := func(id, name, status string, power int, image any, project string, extra map[string]any) {
		s := map[string]any{"id": id, "name": name, "status": status, "OS-EXT-STS:power_state": power, "image": image,
			"tenant_id": project, "user_id": "u-carol", "OS-EXT-SRV-ATTR:instance_name": "instance-" + id[:8],
			"OS-EXT-SRV-ATTR:host": "compute-1",
			"addresses": map[string]any{"private": []any{
				map[string]any{"addr": "10.0.0.5", "version": 4, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "FA:16:3E:00:00:" + id[:2]},
				map[string]any{"addr": "192.0.2.77", "version": 4, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:" + id[:2]},
			}}}
		for k, v := range extra {
			s[k] = v
		}
		f.servers = append(f.servers, s)
	}
	img := func(id string) any { return map[string]any{"id": id, "links": []any{}} }
	server("a0000000-0000-4000-8000-000000000001", "revoked-1", "ACTIVE", 1, img(glanceRevoked), "p-hep", nil)
	server("b0000000-0000-4000-8000-000000000002", "endorsed-1", "ACTIVE", 1, img(glanceEndorsed), "p-hep", nil)
	server("c0000000-0000-4000-8000-000000000003", "revoked-off", "SHUTOFF", 4, img(glanceRevoked), "p-hep", nil)
	server("d0000000-0000-4000-8000-000000000004", "from-volume", "ACTIVE", 1, "", "p-hep",
		map[string]any{"os-extended-volumes:volumes_attached": []any{map[string]any{"id": "e0000000-0000-4000-8000-00000000000e"}}})
	server("f0000000-0000-4000-8000-000000000005", "unknown-1", "PAUSED", 3, img(glanceUnknown), "p-hep", nil)
	server("90000000-0000-4000-8000-000000000006", "exempt-1", "ACTIVE", 1, img(glanceRevoked), "p-exempt", nil)
	return f
}

func (f *fakeNova) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
	const base = "/compute/v2.1/servers"
	switch {
	case r.Method == "POST" && r.URL.Path == "/v3/auth/tokens":
		w.Header().Set("X-Subject-Token", "tok-1")
		reply(201, map[string]any{"token": map[string]any{
			"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "methods": []string{"password"},
			"catalog": []any{map[string]any{"type": "compute", "name": "nova", "id": "c1", "endpoints": []any{
				map[string]any{"id": "e1", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": f.srv.URL + "/compute/v2.1"},
			}}},
		}})
	case r.Header.Get("X-Auth-Token") != "tok-1":
		reply(401, map[string]any{"error": map[string]any{"message": "no token"}})
	case r.Method == "GET" && r.URL.Path == base+"/detail":
		// Two servers a page, as Nova pages with limit and marker.
		f.lists = append(f.lists, r.URL.RawQuery)
		if r.URL.Query().Get("all_tenants") != "true" {
			reply(400, nil)
			return
		}
		start := 0
		if m := r.URL.Query().Get("marker"); m != "" {
			start = slices.IndexFunc(f.servers, func(s map[string]any) bool { return s["id"] == m }) + 1
		}
		end := min(start+2, len(f.servers))
		page := map[string]any{"servers": f.servers[start:end]}
		if end < len(f.servers) {
			page["servers_links"] = []any{map[string]any{"rel": "next",
				"href": fmt.Sprintf("%s%s/detail?all_tenants=true&limit=2&marker=%s", f.srv.URL, base, f.servers[end-1]["id"])}}
		}
		reply(200, page)
	case strings.HasPrefix(r.URL.Path, base+"/"):
		rest := strings.TrimPrefix(r.URL.Path, base+"/")
		id, action, _ := strings.Cut(rest, "/")
		i := slices.IndexFunc(f.servers, func(s map[string]any) bool { return s["id"] == id })
		if i < 0 {
			reply(404, map[string]any{"itemNotFound": map[string]any{"code": 404, "message": "Instance " + id + " could not be found."}})
			return
		}
		s := f.servers[i]
		if r.Method == "GET" && action == "" {
			if want, ok := f.pending[id]; ok && !f.stuck {
				if f.pendingN[id]++; f.pendingN[id] > f.polls {
					s["status"], s["OS-EXT-STS:power_state"] = want, 4 // shutdown; suspended is 7
					if want == "SUSPENDED" {
						s["OS-EXT-STS:power_state"] = 7
					}
					delete(f.pending, id)
				}
			}
			reply(200, map[string]any{"server": s})
			return
		}
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		for k := range body {
			f.actions = append(f.actions, id+" "+k)
			switch k {
			case "os-stop":
				if s["status"] == "SHUTOFF" {
					reply(409, map[string]any{"conflictingRequest": map[string]any{"code": 409,
						"message": "Cannot 'stop' instance " + id + " while it is in vm_state stopped"}})
					return
				}
				f.pending[id] = "SHUTOFF"
			case "suspend":
				f.pending[id] = "SUSPENDED"
			case "lock":
				s["locked"] = true
			}
		}
		w.WriteHeader(202)
	default:
		reply(404, nil)
	}
}

// cloudsYAML writes a clouds.yaml naming the fake cloud and points OS_CLIENT_CONFIG_FILE at it.
func (f *fakeNova) cloudsYAML(t *testing.T) {
	p := filepath.Join(t.TempDir(), "clouds.yaml")
	if err := os.WriteFile(p, []byte(`clouds:
  fake:
    auth:
      auth_url: `+f.srv.URL+`/v3
      username: admin
      password: secret
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", p)
	t.Setenv("OS_CLOUD", "")
}

// cloudJudge judges with a snapshot that maps the Glance ids.
func cloudJudge(t *testing.T) *admission.Judge {
	dir := t.TempDir()
	cfg := &config.Config{StateDir: dir, Admission: config.Admission{Mode: config.ModeEnforce, ExemptProjects: []string{"p-exempt"}}}
	im := func(id string, st snapshot.Status) snapshot.Image {
		i := snapshot.Image{Subscription: "example", List: "list-a", ListVersion: "2", Identifier: id, Status: st, Expires: now.Add(time.Hour)}
		if st == snapshot.Revoked {
			i.RevokedAt, i.Reason = now.Add(-2*time.Hour), `removed from list "example" version 2`
		}
		return i
	}
	entries := []snapshot.Entry{
		{SHA512: strings.Repeat("1", 128), Images: []snapshot.Image{im("img-endorsed", snapshot.Endorsed)}, GlanceIDs: []string{glanceEndorsed}},
		{SHA512: strings.Repeat("2", 128), Images: []snapshot.Image{im("img-revoked", snapshot.Revoked)}, GlanceIDs: []string{glanceRevoked}},
	}
	if err := snapshot.Write(cfg.Paths().Snapshot(), snapshot.Meta{Created: now, Expires: now.Add(time.Hour)}, entries, nil); err != nil {
		t.Fatal(err)
	}
	j := admission.NewJudge(cfg, now)
	t.Cleanup(func() { j.Close() })
	return j
}

func openFake(t *testing.T, f *fakeNova) *Cloud {
	t.Helper()
	f.cloudsYAML(t)
	c, err := OpenCloud(context.Background(), "fake")
	if err != nil {
		t.Fatal(err)
	}
	c.Poll = time.Millisecond
	return c
}

func TestCloudPlanAndStop(t *testing.T) {
	f := newFakeNova(t)
	c := openFake(t, f)
	if c.Scope() != "cloud fake" {
		t.Errorf("scope %q", c.Scope())
	}
	var recs []trace.Record
	rep, err := Run(context.Background(), c, cloudJudge(t), Options{Action: Destroy, Max: 50, Now: now, Timeout: 5 * time.Second}, false,
		testEnv(func(r ...trace.Record) error { recs = append(recs, r...); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.lists) != 3 || !strings.Contains(f.lists[0], "all_tenants=true") {
		t.Errorf("listing requests: %q (want 3 pages of all projects)", f.lists)
	}
	verdicts := map[string]Verdict{}
	for _, it := range rep.Plan.Items {
		verdicts[it.VM.Name] = it.Verdict
	}
	want := map[string]Verdict{"revoked-1": Target, "endorsed-1": Endorsed, "from-volume": Unclassified, "unknown-1": Target, "exempt-1": Exempt}
	if fmt.Sprint(verdicts) != fmt.Sprint(want) {
		t.Errorf("verdicts %v, want %v (a shut-off server is not listed)", verdicts, want)
	}
	slices.Sort(f.actions)
	if want := []string{"a0000000-0000-4000-8000-000000000001 os-stop", "f0000000-0000-4000-8000-000000000005 os-stop"}; !slices.Equal(f.actions, want) {
		t.Errorf("Nova actions %q, want %q (destroy maps to os-stop)", f.actions, want)
	}
	if len(rep.Failed()) != 0 || len(recs) != 2 {
		t.Fatalf("failures %v, %d records", rep.Failed(), len(recs))
	}
	for _, r := range recs {
		if r.Instance == nil || r.Project == nil || r.Project.ID != "p-hep" || r.User.ID != "u-carol" || r.Action != "destroy" ||
			!strings.HasPrefix(r.Domain.Name, "instance-") || len(r.MACs) != 1 || !strings.HasPrefix(r.MACs[0], "fa:16:3e") ||
			len(r.IPs) != 2 || r.IPs[1].Type != "floating" || len(r.Images) != 1 || r.Images[0].GlanceID == "" {
			t.Errorf("record: %+v", r)
		}
		if r.Images[0].GlanceID == glanceRevoked && (r.RevokedAt == nil || !r.RevokedAt.Equal(now.Add(-2*time.Hour))) {
			t.Errorf("revoked_at: %v", r.RevokedAt)
		}
		if r.Images[0].GlanceID == glanceUnknown && r.RevokedAt != nil {
			t.Errorf("an unknown image has a revocation time: %v", r.RevokedAt)
		}
	}

	// Again: the servers are SHUTOFF now and no longer listed as running.
	rep, err = Run(context.Background(), c, cloudJudge(t), Options{Action: Destroy, Max: 50, Now: now}, true, testEnv(nil))
	if err != nil || len(rep.Plan.Targets()) != 0 {
		t.Errorf("second run: %v, %d targets", err, len(rep.Plan.Targets()))
	}
}

func TestCloudActions(t *testing.T) {
	f := newFakeNova(t)
	c := openFake(t, f)
	target := &VM{Name: "revoked-1", UUID: "a0000000-0000-4000-8000-000000000001"}
	opts := Options{Timeout: 5 * time.Second}

	if note, err := c.Act(context.Background(), target, Lock, opts); err != nil || !strings.Contains(note, "locked") || f.servers[0]["locked"] != true {
		t.Errorf("lock: %q %v", note, err)
	}
	if _, err := c.Act(context.Background(), target, Suspend, opts); err != nil || f.servers[0]["status"] != "SUSPENDED" {
		t.Errorf("suspend: %v, status %v", err, f.servers[0]["status"])
	}
	// Already stopped: Nova answers 409, and the server is where the action leads.
	off := &VM{UUID: "c0000000-0000-4000-8000-000000000003"}
	if note, err := c.Act(context.Background(), off, Stop, opts); err != nil || !strings.Contains(note, "SHUTOFF already") {
		t.Errorf("stop of a stopped server: %q %v", note, err)
	}
	if note, err := c.Act(context.Background(), &VM{UUID: "00000000-0000-4000-8000-000000000000"}, Stop, opts); err != nil || !strings.Contains(note, "gone") {
		t.Errorf("stop of a deleted server: %q %v", note, err)
	}
	// Nova accepts but the server never gets there.
	f.stuck = true
	_, err := c.Act(context.Background(), &VM{UUID: "b0000000-0000-4000-8000-000000000002"}, Shutdown, Options{Timeout: 20 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "still ACTIVE after 20ms, not SHUTOFF") {
		t.Errorf("stuck stop: %v", err)
	}
}

func TestCloudCredentialsFromEnvironment(t *testing.T) {
	f := newFakeNova(t)
	t.Setenv("OS_CLIENT_CONFIG_FILE", filepath.Join(t.TempDir(), "none.yaml"))
	t.Setenv("OS_CLOUD", "")
	t.Setenv("OS_AUTH_URL", f.srv.URL+"/v3")
	t.Setenv("OS_USERNAME", "admin")
	t.Setenv("OS_PASSWORD", "secret")
	t.Setenv("OS_PROJECT_NAME", "admin")
	t.Setenv("OS_DOMAIN_NAME", "Default")
	t.Setenv("OS_REGION_NAME", "RegionOne")
	c, err := OpenCloud(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if vms, err := c.List(context.Background()); err != nil || len(vms) != 5 {
		t.Errorf("%d VMs, %v", len(vms), err)
	}
	if _, err := OpenCloud(context.Background(), "nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown cloud: %v", err)
	}
}
