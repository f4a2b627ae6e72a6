package serve

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/audit"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/terminate"
	"github.com/vmgate/vmgate/internal/trace"
)

func TestQueueCoalesces(t *testing.T) {
	q := newQueue(3, time.Now)
	if u, full, since := q.take(); u != nil || full || !since.IsZero() {
		t.Fatalf("empty queue: %v %v %v", u, full, since)
	}
	// No one takes: add never blocks, and a burst on one domain is one judgement.
	for range 10000 {
		q.add("a")
	}
	q.add("b")
	q.add("a")
	if len(q.wake) != 1 {
		t.Fatalf("%d wake tokens, want 1", len(q.wake))
	}
	u, full, since := q.take()
	if strings.Join(u, ",") != "a,b" || full || since.IsZero() {
		t.Fatalf("take: %v %v %v", u, full, since)
	}
	if u, _, since := q.take(); u != nil || !since.IsZero() {
		t.Fatalf("taken twice: %v %v", u, since)
	}
	// More domains than max: one pass over every domain instead.
	for _, d := range []string{"a", "b", "c", "d", "e"} {
		q.add(d)
	}
	if u, full, _ := q.take(); u != nil || !full {
		t.Fatalf("overflow: %v %v", u, full)
	}
	q.add("a")
	q.addAll()
	q.add("b")
	if u, full, _ := q.take(); u != nil || !full {
		t.Fatalf("addAll: %v %v", u, full)
	}
}

func TestQueueAddFromManyGoroutines(t *testing.T) {
	q := newQueue(1000, time.Now)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 1000 {
				q.add(fmt.Sprint((i*1000 + j) % 100))
			}
		})
	}
	wg.Wait()
	if u, full, _ := q.take(); len(u) != 100 || full {
		t.Fatalf("%d domains, full %v, want 100", len(u), full)
	}
}

// events is a fake libvirt: its domain events come from the test, and it reads domains from
// a fakeHost. fail makes the next subscriptions fail.
type events struct {
	h *fakeHost

	mu      sync.Mutex
	fail    int
	calls   int
	watches []*fakeWatch
}

func (e *events) subscribe(uri string, event func(uuid, kind string)) (audit.Watch, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	if e.fail > 0 {
		e.fail--
		return nil, errors.New("libvirt " + uri + ": connection refused")
	}
	w := &fakeWatch{h: e.h, event: event, lost: make(chan struct{})}
	e.watches = append(e.watches, w)
	return w, nil
}

// current is the subscription open now, nil when none is.
func (e *events) current() *fakeWatch {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.watches {
		if !w.isClosed() {
			return w
		}
	}
	return nil
}

func (e *events) counts() (calls, open, closed int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.watches {
		if w.isClosed() {
			closed++
		}
	}
	return e.calls, len(e.watches), closed
}

type fakeWatch struct {
	h     *fakeHost
	event func(uuid, kind string)
	lost  chan struct{}

	mu     sync.Mutex
	closed bool
}

func (w *fakeWatch) Lost() <-chan struct{} { return w.lost }
func (w *fakeWatch) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}
func (w *fakeWatch) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}
func (w *fakeWatch) Domain(ctx context.Context, uuid string) (terminate.VM, bool, error) {
	if w.isClosed() {
		return terminate.VM{}, false, errors.New("closed")
	}
	return w.h.Domain(ctx, uuid)
}

// fakeHost is a libvirt host with Nova domains, each booted from a Glance image.
type fakeHost struct {
	mu    sync.Mutex
	vms   []terminate.VM
	lists int // passes over every domain
	reads int // domains read one by one
}

func (h *fakeHost) Scope() string               { return "host fake" }
func (h *fakeHost) Actions() []terminate.Action { return []terminate.Action{terminate.Shutdown} }
func (h *fakeHost) Close() error                { return nil }
func (h *fakeHost) List(context.Context) ([]terminate.VM, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lists++
	return append([]terminate.VM(nil), h.vms...), nil
}
func (h *fakeHost) Act(context.Context, *terminate.VM, terminate.Action, terminate.Options) (string, error) {
	return "", nil
}
func (h *fakeHost) Domain(_ context.Context, uuid string) (terminate.VM, bool, error) {
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

// run starts (or changes) the domain name, booted from the Glance image glance.
func (h *fakeHost) run(name, glance string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	vm := terminate.VM{Name: name, UUID: "00000000-0000-4000-8000-" + fmt.Sprintf("%012x", len(name)*1000+int(name[0])),
		Domain: &domain.Domain{Name: name, Nova: &domain.Nova{UserID: "u", ProjectID: "p", Root: &domain.NovaRoot{Type: "image", ID: glance}, FromAPI: true}}}
	for i := range h.vms {
		if h.vms[i].Name == name {
			h.vms[i] = vm
			return vm.UUID
		}
	}
	h.vms = append(h.vms, vm)
	return vm.UUID
}

func (h *fakeHost) counts() (lists, reads int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lists, h.reads
}

type records struct {
	mu   sync.Mutex
	recs []trace.Record
}

func (r *records) record(recs ...trace.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, recs...)
	return nil
}

func (r *records) audits() []trace.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []trace.Record
	for _, x := range r.recs {
		if x.Event == trace.VMAudit {
			out = append(out, x)
		}
	}
	return out
}

// eventSite is a state directory whose snapshot endorses the Glance image "good", with no
// subscription (nothing syncs it away), and a daemon whose audit runs once an hour: what it
// finds in between, it finds through the events.
func eventSite(t *testing.T, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("state_dir: " + t.TempDir() + "\nserve: {audit_interval: 1h" + extra + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	entries := []snapshot.Entry{{SHA512: strings.Repeat("ab", 64), GlanceIDs: []string{"good"},
		Images: []snapshot.Image{{Subscription: "s", Identifier: "img", Status: snapshot.Endorsed, Since: now.Add(-time.Hour)}}}}
	if err := snapshot.Write(cfg.Paths().Snapshot(), snapshot.Meta{Created: now, Expires: now.Add(24 * time.Hour)}, entries, nil); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func metric(t *testing.T, d *Daemon, sample string) string {
	t.Helper()
	_, body := get(t, d, "/metrics")
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return "absent"
}

func TestServeJudgesADomainOnItsEvent(t *testing.T) {
	h := &fakeHost{}
	a := h.run("a", "good")
	h.run("b", "good")
	ev := &events{h: h}
	recs := &records{}
	l := &loader{}
	l.set(eventSite(t, ""), nil)
	r := start(t, l, Options{Audit: audit.Env{Connect: func(string, bool) (terminate.HostSource, error) { return h, nil },
		Subscribe: ev.subscribe, Record: recs.record}})
	waitFor(t, "the first pass and the subscription", func() bool {
		lists, _ := h.counts()
		return lists == 1 && ev.current() != nil && metric(t, r.d, "vmgate_audit_events_connected") == "1"
	})
	if code, body := get(t, r.d, "/healthz"); strings.Contains(body, "audit:") {
		t.Fatalf("/healthz before the change: %d %s", code, body)
	}

	// a disk hot-plugged into a: a burst of events, one judgement of a alone.
	h.run("a", "other")
	w := ev.current()
	for range 5 {
		w.event(a, audit.EventDeviceAdded)
	}
	w.event(a, audit.EventLifecycle)
	waitFor(t, "a judged unknown", func() bool { return metric(t, r.d, `vmgate_running_unendorsed{reason="unknown"}`) == "1" })
	if got := recs.audits(); len(got) != 1 || got[0].Domain.Name != "a" || got[0].Outcome != trace.OutcomeFailure ||
		!strings.HasPrefix(got[0].Reason, "unknown: ") {
		t.Fatalf("vm.audit records: %+v", got)
	}
	code, body := get(t, r.d, "/healthz")
	if code != 503 || !strings.Contains(body, "audit: 1 running VMs are not endorsed") || !strings.Contains(body, "a (unknown: ") {
		t.Fatalf("/healthz after the change: %d %s", code, body)
	}
	lists, reads := h.counts()
	if lists != 1 || reads != 1 {
		t.Fatalf("the event made %d passes over every domain and %d reads, want 0 and 1", lists-1, reads)
	}
	for sample, want := range map[string]string{
		`vmgate_audit_events_total{kind="device-added"}`: "5",
		`vmgate_audit_events_total{kind="lifecycle"}`:    "1",
		`vmgate_audit_event_judgements_total`:            "1",
		`vmgate_audit_event_delay_seconds_count`:         "1",
	} {
		if got := metric(t, r.d, sample); got != want {
			t.Errorf("%s = %s, want %s", sample, got, want)
		}
	}

	// Unplugged: compliant again, recorded; a domain that stopped leaves nothing behind.
	h.run("a", "good")
	w.event(a, audit.EventDeviceRemoved)
	w.event("00000000-0000-4000-8000-00000000ffff", audit.EventLifecycle)
	waitFor(t, "a compliant again", func() bool { return metric(t, r.d, `vmgate_running_unendorsed{reason="unknown"}`) == "0" })
	if got := recs.audits(); len(got) != 2 || got[1].Outcome != trace.OutcomeSuccess {
		t.Fatalf("vm.audit records: %+v", got)
	}
	if code, body := get(t, r.d, "/healthz"); strings.Contains(body, "audit:") {
		t.Fatalf("/healthz after the unplug: %d %s", code, body)
	}
}

func TestServeEventsReconnect(t *testing.T) {
	h := &fakeHost{}
	a := h.run("a", "good")
	ev := &events{h: h, fail: 2}
	l := &loader{}
	l.set(eventSite(t, ""), nil)
	r := start(t, l, Options{EventRetryMin: 10 * time.Millisecond, EventRetryMax: 20 * time.Millisecond,
		Audit: audit.Env{Connect: func(string, bool) (terminate.HostSource, error) { return h, nil }, Subscribe: ev.subscribe, Record: (&records{}).record}})
	waitFor(t, "subscribed after two failures", func() bool { return ev.current() != nil })
	waitFor(t, "connected", func() bool { return metric(t, r.d, "vmgate_audit_events_connected") == "1" })
	if got := metric(t, r.d, "vmgate_audit_events_connect_errors_total"); got != "2" {
		t.Errorf("connect errors: %s, want 2", got)
	}
	// Refused at first: a pass without the events; once subscribed, another for what was missed.
	waitFor(t, "a pass after the subscription", func() bool { lists, _ := h.counts(); return lists == 2 })

	// libvirtd restarts: the events are lost, and a change meanwhile is missed...
	ev.mu.Lock()
	ev.fail = 3
	ev.mu.Unlock()
	close(ev.current().lost)
	waitFor(t, "disconnected", func() bool { return metric(t, r.d, "vmgate_audit_events_lost_total") == "1" })
	h.run("a", "other")
	// ...so once back, every domain is judged.
	waitFor(t, "subscribed again", func() bool { return ev.current() != nil })
	waitFor(t, "a pass over every domain", func() bool { lists, _ := h.counts(); return lists == 3 })
	waitFor(t, "a judged unknown", func() bool { return metric(t, r.d, `vmgate_running_unendorsed{reason="unknown"}`) == "1" })
	if calls, open, closed := ev.counts(); calls != 7 || open != 2 || closed != 1 {
		t.Errorf("subscriptions: %d attempts, %d made, %d closed; want 7, 2, 1", calls, open, closed)
	}
	if got := metric(t, r.d, "vmgate_audit_events_connected"); got != "1" {
		t.Errorf("connected: %s", got)
	}
	_ = a
}

// TestServeEventsStopCleanly: every reload and the stop close the subscription they made,
// and leave no goroutine behind.
func TestServeEventsStopCleanly(t *testing.T) {
	h := &fakeHost{}
	h.run("a", "good")
	ev := &events{h: h}
	l := &loader{}
	l.set(eventSite(t, ""), nil)
	before := runtime.NumGoroutine()
	r := start(t, l, Options{Audit: audit.Env{Connect: func(string, bool) (terminate.HostSource, error) { return h, nil },
		Subscribe: ev.subscribe, Record: (&records{}).record}})
	for i := range 5 {
		waitFor(t, "subscribed", func() bool { _, open, _ := ev.counts(); return open == i+1 && ev.current() != nil })
		r.reload <- struct{}{}
	}
	waitFor(t, "subscribed after the reloads", func() bool { _, open, closed := ev.counts(); return open == 6 && closed == 5 })
	r.cancel()
	<-r.done
	if _, open, closed := ev.counts(); open != closed {
		t.Fatalf("%d subscriptions made, %d closed", open, closed)
	}
	// The HTTP client's idle connections are the test's, not the daemon's.
	http.DefaultClient.CloseIdleConnections()
	waitFor(t, "the daemon's goroutines gone", func() bool { return runtime.NumGoroutine() <= before })

	// audit_events: false, or the audit off: no subscription at all.
	for _, extra := range []string{", audit_events: false", ", audit_action: off"} {
		ev := &events{h: h}
		l.set(eventSite(t, extra), nil)
		lists, _ := h.counts()
		r := start(t, l, Options{Audit: audit.Env{Connect: func(string, bool) (terminate.HostSource, error) { return h, nil },
			Subscribe: ev.subscribe, Record: (&records{}).record}})
		if extra == ", audit_events: false" {
			waitFor(t, "the first pass", func() bool { n, _ := h.counts(); return n > lists })
		}
		if got := metric(t, r.d, "vmgate_audit_events_connected"); got != "0" {
			t.Errorf("%s: connected %s", extra, got)
		}
		if calls, _, _ := ev.counts(); calls != 0 {
			t.Errorf("%s: %d subscriptions", extra, calls)
		}
	}
}
