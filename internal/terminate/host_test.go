//go:build libvirt_dlopen

package terminate

// Tests against libvirt's test driver (test:///path/node.xml): a libvirt that runs in this
// process, from a node file, with no daemon and no QEMU. It keeps the domains' state in
// memory, per connection. It needs libvirt's shared library (Debian's libvirt0).

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/trace"
)

// testNode is a node file for libvirt's test driver and a vmgate state directory whose
// snapshot endorses some of its base images and revokes others.
type testNode struct {
	dir      string
	uri      string
	cfg      *config.Config
	targets  []string // names of the domains on revoked images
	missing  string   // the domain whose disk does not exist
	exempt   string   // a domain on a revoked image, exempt by name
	domains  int
	snapshot string
}

// newTestNode writes n running domains. Every 100th runs a revoked image (one of two,
// revoked an hour and three days ago), domain 1 a disk that does not exist, domain 2 a
// revoked image but an exempt name; the rest endorsed images.
func newTestNode(tb testing.TB, n int) *testNode {
	tb.Helper()
	dir := tb.TempDir()
	tn := &testNode{dir: dir, uri: "test://" + filepath.Join(dir, "node.xml"), domains: n}
	tn.cfg = &config.Config{StateDir: filepath.Join(dir, "state"),
		Admission: config.Admission{Mode: config.ModeEnforce, ExemptDomains: []string{"exempt-*"}}}
	if err := os.MkdirAll(tn.cfg.StateDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	image := func(name string) (string, string) {
		content := []byte(strings.Repeat("base image "+name+"\n", 1024))
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			tb.Fatal(err)
		}
		sum := sha512.Sum512(content)
		return p, hex.EncodeToString(sum[:])
	}
	var entries []snapshot.Entry
	entry := func(sha, id string, status snapshot.Status, revokedAt time.Time) {
		im := snapshot.Image{Subscription: "example", List: "list-a", ListVersion: "2", Identifier: id, Title: "Worker " + id,
			Status: status, Since: now.Add(-30 * 24 * time.Hour), Expires: now.Add(24 * time.Hour)}
		if status == snapshot.Revoked {
			im.RevokedAt = revokedAt
			im.Reason = fmt.Sprintf(`removed from list "example" version 2 on %s`, revokedAt.Format(time.RFC3339))
		}
		entries = append(entries, snapshot.Entry{SHA512: sha, Images: []snapshot.Image{im}})
	}
	var endorsedPaths, revokedPaths []string
	for i := range 3 {
		p, sha := image(fmt.Sprintf("endorsed-%d.raw", i))
		entry(sha, fmt.Sprintf("img-endorsed-%d", i), snapshot.Endorsed, time.Time{})
		endorsedPaths = append(endorsedPaths, p)
	}
	for i, ago := range []time.Duration{time.Hour, 72 * time.Hour} {
		p, sha := image(fmt.Sprintf("revoked-%d.raw", i))
		entry(sha, fmt.Sprintf("img-revoked-%d", i), snapshot.Revoked, now.Add(-ago))
		revokedPaths = append(revokedPaths, p)
	}
	tn.snapshot = tn.cfg.Paths().Snapshot()
	if err := snapshot.Write(tn.snapshot, snapshot.Meta{Serial: 1, Created: now.Add(-time.Hour), Expires: now.Add(24 * time.Hour)}, entries, nil); err != nil {
		tb.Fatal(err)
	}

	var b strings.Builder
	b.WriteString("<node>\n")
	for i := range n {
		name := fmt.Sprintf("vm-%04d", i)
		disk := endorsedPaths[i%len(endorsedPaths)]
		switch {
		case i%100 == 0:
			disk = revokedPaths[(i/100)%2]
			tn.targets = append(tn.targets, name)
		case i == 1:
			disk = filepath.Join(dir, "missing.raw")
			tn.missing = name
		case i == 2:
			name, disk = "exempt-vm", revokedPaths[0]
			tn.exempt = name
		}
		fmt.Fprintf(&b, `  <domain type='test'>
    <name>%s</name>
    <uuid>6695eb01-f6a4-4304-89aa-%012x</uuid>
    <memory>8192</memory>
    <os><type>hvm</type></os>
    <devices>
      <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='vda'/></disk>
      <interface type='network'><mac address='52:54:00:%02x:%02x:%02x'/><source network='default'/></interface>
    </devices>
  </domain>
`, name, i, disk, i>>16&0xff, i>>8&0xff, i&0xff)
	}
	b.WriteString("</node>\n")
	if err := os.WriteFile(filepath.Join(dir, "node.xml"), []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return tn
}

// connect opens the node with libvirt's test driver. Without libvirt's shared library the
// test is skipped, unless VMGATE_INTEGRATION=1 says that every test must run.
func (tn *testNode) connect(tb testing.TB) *libvirt.Connect {
	tb.Helper()
	conn, err := libvirt.NewConnect(tn.uri)
	if err != nil {
		if strings.Contains(err.Error(), "libvirt.so") {
			if os.Getenv("VMGATE_INTEGRATION") == "1" {
				tb.Fatalf("libvirt's shared library is missing (install libvirt0, e.g. with scripts/libvirt.sh) and VMGATE_INTEGRATION=1 forbids skipping: %v", err)
			}
			tb.Skipf("libvirt's shared library is missing (install libvirt0): %v", err)
		}
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

func (tn *testNode) judge(tb testing.TB, at time.Time) *admission.Judge {
	j := admission.NewJudge(tn.cfg, at)
	tb.Cleanup(func() { j.Close() })
	return j
}

// memRecords collects records in memory; journal tests use the real journal.
type memRecords struct{ recs []trace.Record }

func (m *memRecords) record(recs ...trace.Record) error {
	m.recs = append(m.recs, recs...)
	return nil
}

func states(tb testing.TB, conn *libvirt.Connect) map[string]libvirt.DomainState {
	tb.Helper()
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		tb.Fatal(err)
	}
	m := map[string]libvirt.DomainState{}
	for i := range doms {
		name, _ := doms[i].GetName()
		st, _, err := doms[i].GetState()
		if err != nil {
			tb.Fatal(err)
		}
		m[name] = st
		doms[i].Free()
	}
	return m
}

func names(items []*Item) []string {
	var s []string
	for _, it := range items {
		s = append(s, it.VM.Name)
	}
	slices.Sort(s)
	return s
}

func TestHostDryRun(t *testing.T) {
	tn := newTestNode(t, 1000)
	conn := tn.connect(t)
	var rec memRecords
	start := time.Now()
	rep, err := Run(context.Background(), NewHost(conn, tn.uri), tn.judge(t, now), Options{Action: Shutdown, Max: 50, Now: now, Timeout: time.Minute}, true, testEnv(rec.record))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dry run over %d domains: %v", tn.domains, time.Since(start))
	if got := names(rep.Plan.Targets()); !slices.Equal(got, tn.targets) {
		t.Errorf("targets %v, want %v", got, tn.targets)
	}
	if got := names(rep.Plan.with(Unclassified)); !slices.Equal(got, []string{tn.missing}) {
		t.Errorf("unclassified %v, want [%s]", got, tn.missing)
	}
	if got := names(rep.Plan.with(Exempt)); !slices.Equal(got, []string{tn.exempt}) {
		t.Errorf("exempt %v, want [%s]", got, tn.exempt)
	}
	if n := rep.Plan.Count(Endorsed); n != tn.domains-len(tn.targets)-2 {
		t.Errorf("%d endorsed", n)
	}
	for _, it := range rep.Plan.Targets() {
		if it.Status != "revoked" || it.RevokedAt.IsZero() || !strings.HasPrefix(it.Image, "img-revoked-") || !strings.Contains(it.Reason, "removed from list") {
			t.Errorf("target %s: %+v", it.VM.Name, it)
		}
	}
	if len(rec.recs) != 0 || len(rep.Results) != 0 {
		t.Errorf("a dry run acted: %d records, %d results", len(rec.recs), len(rep.Results))
	}
	for name, st := range states(t, conn) {
		if st != libvirt.DOMAIN_RUNNING {
			t.Errorf("after a dry run %s is in state %d", name, st)
		}
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())
	if !strings.Contains(table.String(), "vm-0100") || strings.Contains(table.String(), "vm-0003") ||
		!strings.Contains(table.String(), "1000 running VMs: 988 endorsed, 1 exempt, 10 targets, 1 unclassified; dry run") {
		t.Errorf("table:\n%s", table.String())
	}

	// --grace 24h leaves alone the five domains on the image revoked an hour ago.
	rep, err = Run(context.Background(), NewHost(conn, tn.uri), tn.judge(t, now), Options{Action: Shutdown, Max: 50, Grace: 24 * time.Hour, Now: now}, true, testEnv(rec.record))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Plan.Targets()) != 5 || rep.Plan.Count(Grace) != 5 {
		t.Errorf("with --grace 24h: %d targets, %d within grace", len(rep.Plan.Targets()), rep.Plan.Count(Grace))
	}
}

func TestHostDestroy(t *testing.T) {
	tn := newTestNode(t, 1000)
	conn := tn.connect(t)
	rep, err := Run(context.Background(), NewHost(conn, tn.uri), tn.judge(t, now), Options{Action: Destroy, Max: 50, Now: now, Timeout: time.Minute}, false, testEnv(Journal(tn.cfg.StateDir)))
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Failed(); len(f) != 0 || len(rep.Results) != len(tn.targets) {
		t.Fatalf("%d results, failures: %v", len(rep.Results), f)
	}
	for name, st := range states(t, conn) {
		want := libvirt.DOMAIN_RUNNING
		if slices.Contains(tn.targets, name) {
			want = libvirt.DOMAIN_SHUTOFF
		}
		if st != want {
			t.Errorf("%s: state %d, want %d", name, st, want)
		}
	}

	var recs []trace.Record
	err = journal.Read(trace.JournalPath(tn.cfg.StateDir), 1, func(e journal.Entry) error {
		var r trace.Record
		if err := json.Unmarshal(e.Data, &r); err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(tn.targets) {
		t.Fatalf("%d records for %d targets", len(recs), len(tn.targets))
	}
	var recorded []string
	for _, r := range recs {
		recorded = append(recorded, r.Domain.Name)
		if r.Event != trace.VMTerminated || r.Outcome != trace.OutcomeSuccess || r.Action != "destroy" || r.RevokedAt == nil ||
			r.Actor == nil || r.Actor.UID != 4242 || r.Actor.Name != "secteam" || r.Host != "node1" || len(r.MACs) != 1 ||
			len(r.Images) != 1 || r.Images[0].Status != "revoked" || len(r.Images[0].SHA512) != 128 || !strings.Contains(r.Reason, "not endorsed: disk vda image") {
			t.Errorf("record: %+v", r)
		}
	}
	slices.Sort(recorded)
	if !slices.Equal(recorded, tn.targets) {
		t.Errorf("records for %v, want %v", recorded, tn.targets)
	}

	// A second run finds nothing left to do.
	rep, err = Run(context.Background(), NewHost(conn, tn.uri), tn.judge(t, now), Options{Action: Destroy, Max: 50, Now: now}, false, testEnv(Journal(tn.cfg.StateDir)))
	if err != nil || len(rep.Plan.Targets()) != 0 || len(rep.Plan.Items) != tn.domains-len(tn.targets) {
		t.Errorf("second run: %v, %d targets of %d", err, len(rep.Plan.Targets()), len(rep.Plan.Items))
	}
}

func TestHostActions(t *testing.T) {
	for _, c := range []struct {
		action Action
		want   libvirt.DomainState
		note   string
	}{{Shutdown, libvirt.DOMAIN_SHUTOFF, ""}, {Suspend, libvirt.DOMAIN_SHUTOFF, "managed save"}, {Destroy, libvirt.DOMAIN_SHUTOFF, ""}} {
		t.Run(string(c.action), func(t *testing.T) {
			tn := newTestNode(t, 201)
			conn := tn.connect(t)
			var rec memRecords
			rep, err := Run(context.Background(), NewHost(conn, tn.uri), tn.judge(t, now), Options{Action: c.action, Max: 50, Now: now, Timeout: 10 * time.Second}, false, testEnv(rec.record))
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) != 3 || len(rep.Failed()) != 0 || len(rec.recs) != 3 {
				t.Fatalf("results %+v, %d records", rep.Results, len(rec.recs))
			}
			for _, r := range rep.Results {
				if !strings.Contains(r.Note, c.note) {
					t.Errorf("%s: note %q, want %q", r.Item.VM.Name, r.Note, c.note)
				}
			}
			st := states(t, conn)
			for _, name := range tn.targets {
				if st[name] != c.want {
					t.Errorf("%s: state %d, want %d", name, st[name], c.want)
				}
			}
			if c.action == Suspend {
				dom, err := conn.LookupDomainByName(tn.targets[0])
				if err != nil {
					t.Fatal(err)
				}
				defer dom.Free()
				if has, err := dom.HasManagedSaveImage(0); err != nil || !has {
					t.Errorf("no managed save image after suspend: %v %v", has, err)
				}
			}
		})
	}
}

func TestHostRefusals(t *testing.T) {
	tn := newTestNode(t, 1000)
	conn := tn.connect(t)
	var rec memRecords
	// More targets than --max: nothing happens.
	rep, err := Run(context.Background(), NewHost(conn, tn.uri), tn.judge(t, now), Options{Action: Destroy, Max: 9, Now: now}, false, testEnv(rec.record))
	if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrTooMany) || rep == nil || len(rep.Results) != 0 || len(rec.recs) != 0 {
		t.Fatalf("over --max: %v, %d records", err, len(rec.recs))
	}
	for name, st := range states(t, conn) {
		if st != libvirt.DOMAIN_RUNNING {
			t.Errorf("refused plan, yet %s is in state %d", name, st)
		}
	}
	// A stale snapshot: nothing is judged.
	if _, err := Run(context.Background(), NewHost(conn, tn.uri), tn.judge(t, now.Add(48*time.Hour)), Options{Action: Destroy, Max: 50, Now: now}, true, testEnv(rec.record)); !errors.Is(err, ErrNoSnapshot) || !errors.Is(err, snapshot.ErrStale) {
		t.Errorf("stale snapshot: %v", err)
	}
	// No snapshot at all.
	if err := os.Remove(tn.snapshot); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), NewHost(conn, tn.uri), tn.judge(t, now), Options{Action: Destroy, Max: 50, Now: now}, true, testEnv(rec.record)); !errors.Is(err, ErrNoSnapshot) || !strings.Contains(err.Error(), "vmgate sync") {
		t.Errorf("no snapshot: %v", err)
	}
	// A Nova-only action.
	if _, err := Run(context.Background(), NewHost(conn, tn.uri), tn.judge(t, now), Options{Action: Lock, Max: 50, Now: now}, true, testEnv(rec.record)); err == nil || !strings.Contains(err.Error(), `--action "lock"`) {
		t.Errorf("lock on a host: %v", err)
	}
}

// BenchmarkHostDryRun is `vmgate terminate --revoked --dry-run` over 1,000 domains of the
// test driver, connection included; BenchmarkHostListBaseline only connects, lists and
// reads every domain's XML, as any tool that looks at each domain must.
func BenchmarkHostDryRun(b *testing.B) {
	tn := newTestNode(b, 1000)
	tn.connect(b) // skips without libvirt
	// The first judgement hashes the base images and fills the cache, as on a node where the
	// hook or vmgate sync has seen them before. The cache keys only files whose ctime is more
	// than 2 s old (imagehash's racy window); real base images are older than that.
	time.Sleep(2100 * time.Millisecond)
	warm, err := OpenHost(tn.uri)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Run(context.Background(), warm, tn.judge(b, now), Options{Action: Shutdown, Max: 50, Now: now}, true, testEnv(nil)); err != nil {
		b.Fatal(err)
	}
	warm.Close()
	b.ResetTimer()
	for b.Loop() {
		h, err := OpenHost(tn.uri)
		if err != nil {
			b.Fatal(err)
		}
		j := admission.NewJudge(tn.cfg, now)
		rep, err := Run(context.Background(), h, j, Options{Action: Shutdown, Max: 50, Now: now}, true, testEnv(nil))
		if err != nil || len(rep.Plan.Targets()) != len(tn.targets) {
			b.Fatalf("%v, %d targets", err, len(rep.Plan.Targets()))
		}
		j.Close()
		h.Close()
	}
}

func BenchmarkHostListBaseline(b *testing.B) {
	tn := newTestNode(b, 1000)
	tn.connect(b)
	for b.Loop() {
		conn, err := libvirt.NewConnect(tn.uri)
		if err != nil {
			b.Fatal(err)
		}
		doms, err := conn.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
		if err != nil || len(doms) != 1000 {
			b.Fatalf("%v, %d domains", err, len(doms))
		}
		for i := range doms {
			if _, err := doms[i].GetXMLDesc(0); err != nil {
				b.Fatal(err)
			}
			doms[i].Free()
		}
		conn.Close()
	}
}
