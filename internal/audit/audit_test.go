package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/terminate"
	"github.com/vmgate/vmgate/internal/trace"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// host is a fake libvirt host: Nova domains, each booted from a Glance image.
type host struct {
	mu    sync.Mutex
	vms   []terminate.VM
	acted []string
	write []bool // the write flag of each connection
	reads int    // domains read one by one (Reader)
}

func (h *host) connect(_ string, write bool) (terminate.HostSource, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.write = append(h.write, write)
	return h, nil
}
func (h *host) Scope() string               { return "host fake" }
func (h *host) Actions() []terminate.Action { return []terminate.Action{terminate.Shutdown} }
func (h *host) Close() error                { return nil }
func (h *host) List(context.Context) ([]terminate.VM, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]terminate.VM(nil), h.vms...), nil
}
func (h *host) Act(_ context.Context, vm *terminate.VM, a terminate.Action, _ terminate.Options) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acted = append(h.acted, vm.Name)
	return "", nil
}

func (h *host) run(name, user, glance string) {
	h.vms = append(h.vms, terminate.VM{Name: name, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", len(h.vms)),
		// Judged by the Glance image alone (as a server from Nova's API): the audit is under
		// test here, not the checks of Nova's disks.
		Domain: &domain.Domain{Name: name, Nova: &domain.Nova{UserID: user, ProjectID: "p1", Root: &domain.NovaRoot{Type: "image", ID: glance}, FromAPI: true}}})
}

type journal struct {
	mu   sync.Mutex
	recs []trace.Record
}

func (j *journal) record(recs ...trace.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recs = append(j.recs, recs...)
	return nil
}

func (j *journal) events(event string) []trace.Record {
	var out []trace.Record
	for _, r := range j.recs {
		if r.Event == event {
			out = append(out, r)
		}
	}
	return out
}

func setup(t *testing.T, blocks ...snapshot.Block) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("state_dir: " + t.TempDir() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	writeSnapshot(t, cfg, blocks...)
	return cfg
}

func writeSnapshot(t *testing.T, cfg *config.Config, blocks ...snapshot.Block) {
	t.Helper()
	entries := []snapshot.Entry{{SHA512: strings.Repeat("ab", 64), GlanceIDs: []string{"good"},
		Images: []snapshot.Image{{Subscription: "s", Identifier: "img", Status: snapshot.Endorsed, Since: now.Add(-time.Hour)}}}}
	if err := snapshot.Write(cfg.Paths().Snapshot(), snapshot.Meta{Created: now, Expires: now.Add(24 * time.Hour)}, entries, blocks); err != nil {
		t.Fatal(err)
	}
}

func TestAuditRecordsOnlyChanges(t *testing.T) {
	cfg := setup(t, snapshot.Block{Kind: "user", Target: "mallory", Reason: "compromised", At: now.Add(-time.Hour)})
	h := &host{}
	h.run("ok", "alice", "good")
	h.run("blocked", "mallory", "good")
	h.run("unknown", "alice", "other")
	j := &journal{}
	a := New(Env{Connect: h.connect, Record: j.record, Host: "node1"})

	res := a.Pass(context.Background(), cfg, now)
	if res.Err != nil || res.Running != 3 || len(res.Findings) != 2 {
		t.Fatalf("first pass: %+v", res)
	}
	if by := res.ByReason(); by["blocked"] != 1 || by["unknown"] != 1 || by["revoked"] != 0 || len(by) != len(Reasons) {
		t.Fatalf("by reason: %v", by)
	}
	recs := j.events(trace.VMAudit)
	if len(recs) != 2 || recs[0].Outcome != trace.OutcomeFailure || recs[0].Host != "node1" {
		t.Fatalf("records of the first pass: %+v", recs)
	}
	var blocked trace.Record
	for _, r := range recs {
		if r.Domain.Name == "blocked" {
			blocked = r
		}
	}
	if blocked.Block == nil || blocked.Block.Target != "mallory" || blocked.User == nil || blocked.User.ID != "mallory" ||
		!strings.Contains(blocked.Reason, "blocked by the site: user mallory: compromised") {
		t.Fatalf("vm.audit of the blocked VM: %+v", blocked)
	}

	// Nothing changed: nothing recorded. Report only: nothing acted on, read-only.
	a.Pass(context.Background(), cfg, now.Add(time.Minute))
	if n := len(j.events(trace.VMAudit)); n != 2 {
		t.Fatalf("%d vm.audit records after an unchanged pass", n)
	}
	if len(h.acted) != 0 || len(h.write) != 2 || h.write[0] || h.write[1] {
		t.Fatalf("report mode acted: %v, connections %v", h.acted, h.write)
	}

	// The block lifted: one record that says the VM is compliant again.
	writeSnapshot(t, cfg)
	res = a.Pass(context.Background(), cfg, now.Add(2*time.Minute))
	if len(res.Findings) != 1 {
		t.Fatalf("after unblock: %+v", res.Findings)
	}
	recs = j.events(trace.VMAudit)
	if len(recs) != 3 || recs[2].Domain.Name != "blocked" || recs[2].Outcome != trace.OutcomeSuccess {
		t.Fatalf("after unblock: %+v", recs)
	}
}

func TestAuditTerminateKeepsTheGuards(t *testing.T) {
	cfg := setup(t, snapshot.Block{Kind: "image", Target: "good", Reason: "CVE", At: now.Add(-time.Hour)})
	cfg.Serve.AuditAction = config.AuditTerminate
	cfg.Serve.AuditMax = 1
	h := &host{}
	h.run("a", "alice", "good")
	h.run("b", "bob", "good")
	j := &journal{}
	a := New(Env{Connect: h.connect, Record: j.record})

	// Two targets, audit_max 1: refused whole.
	res := a.Pass(context.Background(), cfg, now)
	if res.ActErr == nil || len(h.acted) != 0 {
		t.Fatalf("over audit_max: acted %v, err %v", h.acted, res.ActErr)
	}
	// Within it: both taken down, each with a vm.terminated record; grace counts from the block.
	cfg.Serve.AuditMax = 2
	cfg.Serve.AuditGrace = 2 * time.Hour
	if res = a.Pass(context.Background(), cfg, now); res.Acted != nil || len(h.acted) != 0 {
		t.Fatalf("within audit_grace: acted %v", h.acted)
	}
	cfg.Serve.AuditGrace = 0
	res = a.Pass(context.Background(), cfg, now)
	if res.ActErr != nil || len(h.acted) != 2 || len(j.events(trace.VMTerminated)) != 2 {
		t.Fatalf("terminate: err %v, acted %v, records %d", res.ActErr, h.acted, len(j.events(trace.VMTerminated)))
	}
	if !h.write[len(h.write)-1] {
		t.Fatal("acted over a read-only connection")
	}
}

func TestAuditWithoutSnapshotSaysSo(t *testing.T) {
	cfg, err := config.Parse([]byte("state_dir: " + t.TempDir() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := &host{}
	h.run("a", "alice", "good")
	res := New(Env{Connect: h.connect, Record: (&journal{}).record}).Pass(context.Background(), cfg, now)
	if res.Err == nil || len(res.Findings) != 0 {
		t.Fatalf("audit without a snapshot: %+v", res)
	}
}

// Domain implements Reader: the host's domain by uuid, as the events' connection reads it.
func (h *host) Domain(_ context.Context, uuid string) (terminate.VM, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reads++
	for _, vm := range h.vms {
		if vm.UUID == uuid {
			return vm, true, nil
		}
	}
	return terminate.VM{UUID: uuid}, false, nil
}

func (h *host) set(name, glance string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.vms {
		if h.vms[i].Name == name {
			d := *h.vms[i].Domain
			nova := *d.Nova
			nova.Root = &domain.NovaRoot{Type: "image", ID: glance}
			d.Nova = &nova
			h.vms[i].Domain = &d
		}
	}
}

func (h *host) uuid(name string) string {
	for _, vm := range h.vms {
		if vm.Name == name {
			return vm.UUID
		}
	}
	return ""
}

func TestDomainsJudgesOneDomainIntoThePass(t *testing.T) {
	cfg := setup(t, snapshot.Block{Kind: "user", Target: "mallory", Reason: "compromised", At: now.Add(-time.Hour)})
	h := &host{}
	h.run("a", "alice", "good")
	h.run("b", "mallory", "good")
	h.run("c", "alice", "good")
	j := &journal{}
	a := New(Env{Connect: h.connect, Record: j.record})

	// Before any pass there is nothing to add to: a whole pass.
	res := a.Domains(context.Background(), cfg, now, h, []string{h.uuid("a")})
	if res.Judged != nil || res.Running != 3 || len(res.Findings) != 1 || h.reads != 0 {
		t.Fatalf("first judgement: %+v, %d reads", res, h.reads)
	}
	lists := len(h.write)

	// c changes under the audit (a disk hot-plugged): judged alone, b's finding kept.
	h.set("c", "other")
	res = a.Domains(context.Background(), cfg, now.Add(time.Second), h, []string{h.uuid("c"), h.uuid("c")})
	if res.Err != nil || len(res.Judged) != 1 || res.Running != 3 || len(res.Findings) != 2 ||
		res.Findings[0].Name != "b" || res.Findings[1].Name != "c" || res.Findings[1].Status != "unknown" || res.Recorded != 1 {
		t.Fatalf("after c changed: %+v", res)
	}
	if len(h.write) != lists || h.reads != 1 {
		t.Fatalf("judging one domain listed the host (%d connections) or read %d domains", len(h.write)-lists, h.reads)
	}
	if a.Last() != res {
		t.Fatal("Last is not the merged result")
	}
	recs := j.events(trace.VMAudit)
	if len(recs) != 2 || recs[1].Domain.Name != "c" || recs[1].Outcome != trace.OutcomeFailure || !strings.HasPrefix(recs[1].Reason, "unknown: ") {
		t.Fatalf("records: %+v", recs)
	}
	// The next pass agrees: nothing new to record.
	if res = a.Pass(context.Background(), cfg, now.Add(2*time.Second)); len(res.Findings) != 2 || res.Recorded != 0 {
		t.Fatalf("pass after the judgement: %+v", res)
	}

	// c back as it was (the disk unplugged): compliant again, recorded once.
	h.set("c", "good")
	res = a.Domains(context.Background(), cfg, now.Add(3*time.Second), h, []string{h.uuid("c")})
	if len(res.Findings) != 1 || res.Recorded != 1 || j.events(trace.VMAudit)[2].Outcome != trace.OutcomeSuccess {
		t.Fatalf("after c was fixed: %+v", res)
	}
	// b stops: its finding goes, with no record (the hook records a stop).
	h.mu.Lock()
	h.vms = slices.DeleteFunc(h.vms, func(vm terminate.VM) bool { return vm.Name == "b" })
	h.mu.Unlock()
	res = a.Domains(context.Background(), cfg, now.Add(4*time.Second), h, []string{h.uuid("x"), "00000000-0000-4000-8000-000000000001"})
	if len(res.Findings) != 0 || res.Running != 2 || res.Recorded != 0 || len(j.events(trace.VMAudit)) != 3 {
		t.Fatalf("after b stopped: %+v", res)
	}
}

// failingReader cannot read any domain: the events' connection went away.
type failingReader struct{}

func (failingReader) Domain(context.Context, string) (terminate.VM, bool, error) {
	return terminate.VM{}, false, errors.New("connection closed")
}

func TestDomainsFallsBackToAPass(t *testing.T) {
	cfg := setup(t)
	h := &host{}
	h.run("a", "alice", "good")
	a := New(Env{Connect: h.connect, Record: (&journal{}).record, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	a.Pass(context.Background(), cfg, now)
	h.set("a", "other")
	res := a.Domains(context.Background(), cfg, now, failingReader{}, []string{h.uuid("a")})
	if res.Judged != nil || res.Err != nil || len(res.Findings) != 1 || len(h.write) != 2 {
		t.Fatalf("with a reader that fails: %+v, %d connections", res, len(h.write))
	}
}

func TestDomainsTerminateCountsTheHostForAuditMax(t *testing.T) {
	cfg := setup(t)
	cfg.Serve.AuditAction = config.AuditTerminate
	cfg.Serve.AuditMax = 1
	h := &host{}
	h.run("a", "alice", "other")
	h.run("b", "bob", "good")
	j := &journal{}
	a := New(Env{Connect: h.connect, Record: j.record})
	// a is a target: taken down by the pass.
	res := a.Pass(context.Background(), cfg, now)
	if len(res.Findings) != 1 || len(h.acted) != 1 {
		t.Fatalf("first pass: %+v, acted %v", res, h.acted)
	}
	h.mu.Lock()
	h.vms = h.vms[1:] // a went down
	h.mu.Unlock()
	// b alone: within audit_max, taken down.
	h.set("b", "other")
	res = a.Domains(context.Background(), cfg, now, h, []string{h.uuid("b"), "00000000-0000-4000-8000-000000000000"})
	if res.ActErr != nil || len(h.acted) != 2 || h.acted[1] != "b" || len(j.events(trace.VMTerminated)) != 2 {
		t.Fatalf("b after its event: err %v, acted %v", res.ActErr, h.acted)
	}
	if !h.write[len(h.write)-1] {
		t.Fatal("acted over a read-only connection")
	}

	// Two targets on the host, audit_max 1: an event on one of them does not act.
	h2 := &host{}
	h2.run("x", "alice", "other")
	h2.run("y", "bob", "other")
	a2 := New(Env{Connect: h2.connect, Record: j.record})
	cfg.Serve.AuditAction = config.AuditReport
	a2.Pass(context.Background(), cfg, now)
	cfg.Serve.AuditAction = config.AuditTerminate
	res = a2.Domains(context.Background(), cfg, now, h2, []string{h2.uuid("y")})
	if !errors.Is(res.ActErr, terminate.ErrTooMany) || len(h2.acted) != 0 || !strings.Contains(res.ActErr.Error(), "serve.audit_max 1") {
		t.Fatalf("over audit_max across the host: err %v, acted %v", res.ActErr, h2.acted)
	}
}
