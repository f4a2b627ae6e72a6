package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/policytest"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/trace"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// scrape fetches the handler's text format and parses it as Prometheus would.
func scrape(t testing.TB, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the scrape does not parse: %v", err)
	}
	return fams
}

// value is the value of the sample of family name whose labels include want ("k=v" each).
func value(t testing.TB, fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for _, w := range want {
			k, v, _ := strings.Cut(w, "=")
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func mustValue(t testing.TB, fams map[string]*dto.MetricFamily, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(t, fams, name, labels...)
	if !ok {
		t.Errorf("%s%v: missing", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func decisions(t testing.TB, stateDir string, events ...string) {
	t.Helper()
	recs := make([]trace.Record, len(events))
	for i, ev := range events {
		recs[i] = trace.Record{Time: time.Now().UTC(), Host: "h", Event: ev, Outcome: trace.OutcomeSuccess,
			Domain: trace.Domain{Name: fmt.Sprintf("vm-%d", i)}, Reason: `a "quoted" event:"admission.allow" in a reason`}
	}
	if err := trace.Append(stateDir, recs...); err != nil {
		t.Fatal(err)
	}
}

func TestHookDecisionsFollowTheJournal(t *testing.T) {
	dir := t.TempDir()
	m := New(Sources{StateDir: dir}, quiet(), nil)
	fams := scrape(t, m)
	mustValue(t, fams, 0, "vmgate_hook_decisions_total", "decision=allow")
	mustValue(t, fams, 0, "vmgate_snapshot_present")

	decisions(t, dir, trace.AdmissionAllow, trace.AdmissionRefuse, trace.VMStarted, trace.AdmissionAllow)
	fams = scrape(t, m)
	mustValue(t, fams, 2, "vmgate_hook_decisions_total", "decision=allow")
	mustValue(t, fams, 1, "vmgate_hook_decisions_total", "decision=refuse")
	mustValue(t, fams, 0, "vmgate_hook_decisions_total", "decision=warn")
	mustValue(t, fams, 4, "vmgate_trace_last_seq")

	// Only what is new is read: the follower stands at the end of the file.
	before := m.fl.Position()
	decisions(t, dir, trace.AdmissionWarn)
	fams = scrape(t, m)
	mustValue(t, fams, 1, "vmgate_hook_decisions_total", "decision=warn")
	mustValue(t, fams, 2, "vmgate_hook_decisions_total", "decision=allow")
	if after := m.fl.Position(); after.Offset <= before.Offset || after.Seq != 5 {
		t.Errorf("follower moved from %+v to %+v", before, after)
	}

	// Retention replaces the file: counting goes on, nothing counted twice.
	if _, err := journal.Prune(trace.JournalPath(dir), func(e journal.Entry) bool { return e.Seq > 3 }, journal.Options{}); err != nil {
		t.Fatal(err)
	}
	decisions(t, dir, trace.AdmissionRefuse)
	fams = scrape(t, m)
	mustValue(t, fams, 2, "vmgate_hook_decisions_total", "decision=refuse")
	mustValue(t, fams, 2, "vmgate_hook_decisions_total", "decision=allow")
}

func TestSnapshotSyncAndSinkMetrics(t *testing.T) {
	dir := t.TempDir()
	e := policytest.NewEndorser(t, dir)
	now := time.Now().UTC()
	imgs := policytest.Images(3)
	l := policytest.List{Identifier: "l", Version: "1", Created: now.Add(-time.Hour), Expires: now.Add(48 * time.Hour), Images: imgs}
	url := e.Publish(t, dir, "image.list", l.Bytes())
	cfg, err := config.Parse([]byte(fmt.Sprintf("state_dir: %s\nsubscriptions: [{name: example, url: '%s', cosign_keys: [%s]}]\n",
		filepath.Join(dir, "state"), url, e.PubKey)))
	if err != nil {
		t.Fatal(err)
	}
	var mm *Metrics
	sync := func() {
		t.Helper()
		rep, err := (&policy.Syncer{Config: cfg, Log: quiet()}).Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		mm.ObserveSync([]string{"example"}, rep, 1500*time.Millisecond, nil)
	}
	last := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	sinks := func() []ship.Status {
		return []ship.Status{{Sink: "siem", Backlog: 7, MaxBacklog: 100, LastSuccess: last, Failures: 2}}
	}
	mm = New(Sources{StateDir: cfg.StateDir, Sinks: sinks}, quiet(), nil)
	sync()
	// Version 2 drops one image: revoked.
	l.Version, l.Images = "2", imgs[:2]
	e.Publish(t, dir, "image.list", l.Bytes())
	sync()
	// A bad signature: refused, by reason.
	e2 := policytest.NewEndorser(t, t.TempDir())
	l.Version = "3"
	e2.Publish(t, dir, "image.list", l.Bytes())
	sync()

	fams := scrape(t, mm)
	mustValue(t, fams, 2, "vmgate_lists_total", "subscription=example", "outcome=accepted")
	mustValue(t, fams, 1, "vmgate_lists_total", "subscription=example", "outcome=refused", "reason=bad-signature")
	mustValue(t, fams, 3, "vmgate_sync_duration_seconds", "subscription=example")
	mustValue(t, fams, 2, "vmgate_snapshot_images", "status=endorsed")
	mustValue(t, fams, 1, "vmgate_snapshot_images", "status=revoked")
	mustValue(t, fams, 1, "vmgate_snapshot_present")
	mustValue(t, fams, 1, "vmgate_snapshot_fresh")
	if age, _ := value(t, fams, "vmgate_snapshot_age_seconds"); age < 0 || age > 60 {
		t.Errorf("vmgate_snapshot_age_seconds = %v", age)
	}
	if exp, _ := value(t, fams, "vmgate_snapshot_expiry_timestamp_seconds"); exp < float64(now.Unix()) {
		t.Errorf("vmgate_snapshot_expiry_timestamp_seconds = %v, before now", exp)
	}
	mustValue(t, fams, 7, "vmgate_sink_backlog_records", "sink=siem")
	mustValue(t, fams, 100, "vmgate_sink_backlog_limit_records", "sink=siem")
	mustValue(t, fams, float64(last.Unix()), "vmgate_sink_last_success_timestamp_seconds", "sink=siem")
	mustValue(t, fams, 2, "vmgate_sink_consecutive_failures", "sink=siem")
	if _, ok := fams["go_goroutines"]; !ok {
		t.Errorf("no Go runtime metrics")
	}
	for name := range fams {
		if !strings.HasPrefix(name, "vmgate_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s: want the vmgate_ prefix", name)
		}
	}
}

func TestEventOf(t *testing.T) {
	for data, want := range map[string]string{
		`{"time":"x","host":"h","event":"admission.allow","outcome":"success"}`: "admission.allow",
		`{"time":"x","host":"a \"event\":\"no\"","event":"vm.started"}`:         "vm.started",
		`{"reason":"x"}`: "",
		`{"event":"open`: "",
	} {
		if got := eventOf([]byte(data)); got != want {
			t.Errorf("eventOf(%s) = %q, want %q", data, got, want)
		}
	}
}

func TestRegistriesAreIndependent(t *testing.T) {
	a, b := New(Sources{StateDir: t.TempDir()}, quiet(), nil), New(Sources{StateDir: t.TempDir()}, quiet(), nil)
	a.ObservePrune(5, nil)
	if v, _ := value(t, scrape(t, b), "vmgate_retention_pruned_records_total"); v != 0 {
		t.Errorf("a second registry sees the first one's counts: %v", v)
	}
	mustValue(t, scrape(t, a), 5, "vmgate_retention_pruned_records_total")
}
