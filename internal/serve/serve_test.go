package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/audit"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/metrics"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/policytest"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/terminate"
)

func TestJitteredBounds(t *testing.T) {
	for _, d := range []time.Duration{time.Minute, time.Hour, 7 * time.Second} {
		for _, r := range []float64{0, 0.25, 0.5, 0.999999} {
			got := jittered(d, 0.1, r)
			if got > d || got < d-d/10 {
				t.Errorf("jittered(%v, 0.1, %v) = %v: want within [%v, %v]", d, r, got, d-d/10, d)
			}
		}
	}
	if got := jittered(time.Hour, 0.1, 0); got != time.Hour {
		t.Errorf("r=0: %v", got)
	}
}

// testSite is a state directory with one subscription to a signed file:// list.
type testSite struct {
	dir, state string
	e          *policytest.Endorser
	url        string
}

func newTestSite(t *testing.T) *testSite {
	t.Helper()
	dir := t.TempDir()
	s := &testSite{dir: dir, state: filepath.Join(dir, "state"), e: policytest.NewEndorser(t, dir)}
	s.publish(t, "1", 2)
	return s
}

func (s *testSite) publish(t *testing.T, version string, n int) {
	now := time.Now().UTC()
	l := policytest.List{Identifier: "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", Version: version,
		Created: now.Add(-time.Minute), Expires: now.Add(24 * time.Hour), Images: policytest.Images(n)}
	s.url = s.e.Publish(t, s.dir, "image.list", l.Bytes())
}

func (s *testSite) config(t *testing.T, extra string) *config.Config {
	t.Helper()
	y := fmt.Sprintf("state_dir: %s\nsubscriptions:\n  - {name: example, url: '%s', cosign_keys: [%s], refresh: 1h}\n%s",
		s.state, s.url, s.e.PubKey, extra)
	c, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loader hands out configurations as a test sets them.
type loader struct {
	mu  sync.Mutex
	cfg *config.Config
	err error
	n   int
}

func (l *loader) set(c *config.Config, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg, l.err = c, err
}

func (l *loader) load() (*config.Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	return l.cfg, l.err
}

func (l *loader) loads() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// noVMs is a host with nothing running, for the tests that are not about the audit.
type noVMs struct{}

func (noVMs) Scope() string                                { return "host test:///none" }
func (noVMs) Actions() []terminate.Action                  { return nil }
func (noVMs) List(context.Context) ([]terminate.VM, error) { return nil, nil }
func (noVMs) Close() error                                 { return nil }
func (noVMs) Act(context.Context, *terminate.VM, terminate.Action, terminate.Options) (string, error) {
	return "", nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type running struct {
	d      *Daemon
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with err
	err    error
	reload chan struct{}
	syncs  *atomic.Int32
}

func start(t *testing.T, l *loader, opts Options) *running {
	t.Helper()
	var syncs atomic.Int32
	opts.Load, opts.Listen, opts.Log = l.load, "127.0.0.1:0", quiet()
	opts.OnSync = func(context.Context, *config.Config, *policy.Report) error { syncs.Add(1); return nil }
	if opts.Audit.Connect == nil {
		opts.Audit.Connect = func(string, bool) (terminate.HostSource, error) { return noVMs{}, nil }
	}
	if opts.Audit.Subscribe == nil {
		opts.Audit.Subscribe = (&events{}).subscribe
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, done: make(chan struct{}), reload: make(chan struct{}), syncs: &syncs}
	go func() {
		r.err = d.Run(ctx, r.reload)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
		}
	})
	waitFor(t, "listening", func() bool { return d.Addr() != nil })
	return r
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, d *Daemon, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeSyncsServesAndStops(t *testing.T) {
	s := newTestSite(t)
	l := &loader{}
	l.set(s.config(t, ""), nil)
	r := start(t, l, Options{})
	waitFor(t, "the first sync", func() bool { return r.syncs.Load() >= 1 })

	code, body := get(t, r.d, "/healthz")
	if code != 200 || !strings.HasPrefix(body, "ok") {
		t.Fatalf("/healthz after a sync: %d %q", code, body)
	}
	_, body = get(t, r.d, "/metrics")
	for _, want := range []string{
		`vmgate_lists_total{outcome="accepted",reason="",subscription="example"} 1`,
		`vmgate_snapshot_images{status="endorsed"} 2`,
		`vmgate_snapshot_fresh 1`,
		`vmgate_sync_duration_seconds_count{subscription="example"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run after stop: %v", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of the stop")
	}
}

func TestServeReload(t *testing.T) {
	s := newTestSite(t)
	l := &loader{}
	l.set(s.config(t, ""), nil)
	r := start(t, l, Options{})
	waitFor(t, "the first sync", func() bool { return r.syncs.Load() >= 1 })
	first := r.d.Addr().String()

	// An invalid configuration is refused; the daemon runs on as it was.
	l.set(nil, errors.New("config: bad"))
	r.reload <- struct{}{}
	waitFor(t, "the reload attempt", func() bool { return l.loads() >= 2 })
	if code, _ := get(t, r.d, "/healthz"); code != 200 || r.d.Addr().String() != first {
		t.Fatalf("after a refused reload: /healthz %d, addr %s (was %s)", code, r.d.Addr(), first)
	}

	// A valid one restarts the loops with it: the new list is synced at once.
	s.publish(t, "2", 3)
	l.set(s.config(t, ""), nil)
	r.reload <- struct{}{}
	waitFor(t, "the sync after the reload", func() bool { return r.syncs.Load() >= 2 })
	waitFor(t, "the new listener", func() bool { return r.d.Addr() != nil })
	_, body := get(t, r.d, "/metrics")
	if !strings.Contains(body, `vmgate_snapshot_images{status="endorsed"} 3`) {
		t.Errorf("after the reload /metrics does not show 3 endorsed images")
	}
	// Counters live on across a reload.
	if !strings.Contains(body, `vmgate_lists_total{outcome="accepted",reason="",subscription="example"} 2`) {
		t.Errorf("vmgate_lists_total did not carry over the reload")
	}
}

func TestServeRetriesARefusedListSooner(t *testing.T) {
	s := newTestSite(t)
	// The signature of another key: refused.
	other := policytest.NewEndorser(t, t.TempDir())
	if err := os.WriteFile(strings.TrimPrefix(s.url, "file://")+".sig", other.Sign(t, []byte("x")), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &loader{}
	l.set(s.config(t, ""), nil)
	r := start(t, l, Options{RetryMin: 50 * time.Millisecond})
	waitFor(t, "a retry", func() bool { return r.syncs.Load() >= 3 })
	code, body := get(t, r.d, "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "snapshot") {
		t.Fatalf("/healthz with no list accepted: %d %q", code, body)
	}
	_, body = get(t, r.d, "/metrics")
	if !strings.Contains(body, `vmgate_lists_total{outcome="refused",reason="bad-signature",subscription="example"}`) {
		t.Errorf("/metrics lacks the refusal by reason")
	}
}

func TestServeListenError(t *testing.T) {
	s := newTestSite(t)
	l := &loader{}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	l.set(s.config(t, "serve: {listen: '"+busy.Addr().String()+"'}"), nil)
	d, err := New(Options{Load: l.load, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "serve.listen") {
		t.Fatalf("Run on a port it may not use: %v", err)
	}
}

func TestHealth(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	fresh := &metrics.Snapshot{Fresh: true}
	fresh.Meta.Expires = now.Add(time.Hour)
	fresh.Meta.Lists = []snapshot.ListRef{{Subscription: "example"}}
	empty := &metrics.Snapshot{Fresh: true}
	empty.Meta.Expires = now.Add(time.Hour)
	stale := &metrics.Snapshot{}
	stale.Meta.Expires = now.Add(-time.Hour)
	ok := ship.Status{Sink: "siem", Where: "syslog tls://siem:6514", Backlog: 100, MaxBacklog: 100}
	over := ship.Status{Sink: "siem", Where: "syslog tls://siem:6514", Backlog: 101, MaxBacklog: 100, LastError: "connection refused", Failures: 4}
	cases := []struct {
		name  string
		snap  *metrics.Snapshot
		err   error
		sinks []ship.Status
		want  []string // substrings, one per problem
	}{
		{"all well", fresh, nil, []ship.Status{ok}, nil},
		{"no sinks", fresh, nil, nil, nil},
		{"no list", empty, nil, nil, []string{"no accepted list"}},
		{"no snapshot", nil, os.ErrNotExist, nil, []string{"snapshot: file does not exist"}},
		{"stale", stale, nil, nil, []string{"expired at 2026-11-22T11:00:00Z (1h0m0s ago)"}},
		{"backlog", fresh, nil, []ship.Status{ok, over}, []string{"sink siem (syslog tls://siem:6514): 101 records wait, over its max_backlog of 100; 4 passes failed in a row, the last: connection refused"}},
		{"both", stale, nil, []ship.Status{over}, []string{"expired", "101 records"}},
	}
	for _, c := range cases {
		got := Health(c.snap, c.err, c.sinks, now)
		if len(got) != len(c.want) {
			t.Errorf("%s: %q, want %d problems", c.name, got, len(c.want))
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], c.want[i]) {
				t.Errorf("%s: %q lacks %q", c.name, got[i], c.want[i])
			}
		}
	}
}

func TestNotifier(t *testing.T) {
	Notifier("", quiet())("READY=1") // not under systemd: nothing, no panic
}

// TestServeNeverSyncsACloudWithoutGlance: with openstack.cloud set, a sync without a Glance
// client would drop every Glance id from the snapshot and so refuse every Nova instance.
func TestServeNeverSyncsACloudWithoutGlance(t *testing.T) {
	s := newTestSite(t)
	l := &loader{}
	l.set(s.config(t, "openstack: {cloud: site}"), nil)
	built := make(chan struct{}, 100)
	r := start(t, l, Options{RetryMin: 50 * time.Millisecond, NewSyncer: func(cfg *config.Config) *policy.Syncer {
		built <- struct{}{}
		return &policy.Syncer{Config: cfg}
	}})
	<-built
	waitFor(t, "the refused sync counted", func() bool {
		_, body := get(t, r.d, "/metrics")
		return strings.Contains(body, `vmgate_sync_errors_total{subscription="example"}`)
	})
	if r.syncs.Load() != 0 {
		t.Fatal("a sync without Glance ran")
	}
	if code, body := get(t, r.d, "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "snapshot") {
		t.Fatalf("/healthz: %d %q", code, body)
	}
}

func TestAuditHealth(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	if p := AuditHealth(nil, time.Minute, now); p != nil {
		t.Fatalf("before the first audit: %q", p)
	}
	if p := AuditHealth(&audit.Result{At: now, Running: 3}, time.Minute, now); p != nil {
		t.Fatalf("all compliant: %q", p)
	}
	res := &audit.Result{At: now, Running: 9}
	for i := range 7 {
		res.Findings = append(res.Findings, audit.Finding{Name: fmt.Sprint("vm", i), Status: "blocked", Reason: "blocked by the site: user u: why"})
	}
	p := AuditHealth(res, time.Minute, now)
	if len(p) != 1 || !strings.HasPrefix(p[0], "audit: 7 running VMs are not endorsed") || !strings.Contains(p[0], "vm0 (blocked: blocked by the site") ||
		!strings.Contains(p[0], "and 2 more") || strings.Contains(p[0], "vm6") {
		t.Fatalf("with findings: %q", p)
	}
	// A snapshot problem is Health's to say; libvirt unreachable is the audit's.
	if p := AuditHealth(&audit.Result{At: now, Err: fmt.Errorf("x: %w", terminate.ErrNoSnapshot)}, time.Minute, now); p != nil {
		t.Fatalf("no snapshot: %q", p)
	}
	if p := AuditHealth(&audit.Result{At: now, Err: errors.New("libvirt qemu:///system: connection refused")}, time.Minute, now); len(p) != 1 || !strings.Contains(p[0], "connection refused") {
		t.Fatalf("libvirt down: %q", p)
	}
}

func TestAuditHealthSaysWhenStuck(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	if p := AuditHealth(&audit.Result{At: now.Add(-time.Hour)}, 10*time.Minute, now); len(p) != 1 || !strings.Contains(p[0], "may be stuck") {
		t.Fatalf("stuck audit: %q", p)
	}
}
