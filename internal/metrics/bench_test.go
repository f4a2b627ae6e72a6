package metrics

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/policytest"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/trace"
)

// What vmgate serve adds to a node, measured against a journal of VMGATE_BENCH_RECORDS
// records (1,000,000 by default), built once per process in a temporary directory.
var benchSite struct {
	once sync.Once
	dir  string
	cfg  *config.Config
	err  error
}

// hookRecords returns n records like the hook's: an admission and the VM's start.
func hookRecords(from, n int) []trace.Record {
	recs := make([]trace.Record, n)
	t := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := range recs {
		k := from + i
		ev := trace.VMStarted
		if k%2 == 0 {
			ev = trace.AdmissionAllow
		}
		recs[i] = trace.Record{Time: t.Add(time.Duration(k) * time.Second), Host: "hv-0042.example.org", Event: ev,
			Outcome: trace.OutcomeSuccess, Mode: config.ModeEnforce, Op: "prepare",
			Domain:  trace.Domain{Name: fmt.Sprintf("vm-%07d", k/2), UUID: "8d6dda11-25dd-4eb2-b1cb-ac2188bf38d5"},
			Images:  []trace.Image{{SHA512: "eb14e08126a6967f", Identifier: "worker-el9", Status: "endorsed", Subscription: "example", List: "l", ListVersion: "7"}},
			MACs:    []string{fmt.Sprintf("52:54:00:%02x:%02x:%02x", k>>16&0xff, k>>8&0xff, k&0xff)},
			Version: "bench"}
	}
	return recs
}

func benchSetup(b *testing.B) *config.Config {
	b.Helper()
	benchSite.once.Do(func() {
		n := 1_000_000
		if s := os.Getenv("VMGATE_BENCH_RECORDS"); s != "" {
			if n, benchSite.err = strconv.Atoi(s); benchSite.err != nil {
				return
			}
		}
		dir, err := os.MkdirTemp("", "vmgate-metrics-bench-")
		if err != nil {
			benchSite.err = err
			return
		}
		benchSite.dir = dir
		for i := 0; i < n; i += 8192 {
			if benchSite.err = trace.Append(dir, hookRecords(i, min(8192, n-i))...); benchSite.err != nil {
				return
			}
		}
		// A snapshot of a signed list of 1,000 images, as a sync writes it.
		e := policytest.NewEndorser(b, dir)
		now := time.Now().UTC()
		l := policytest.List{Identifier: "l", Version: "1", Created: now.Add(-time.Hour), Expires: now.Add(48 * time.Hour), Images: policytest.Images(1000)}
		url := e.Publish(b, dir, "image.list", l.Bytes())
		benchSite.cfg, benchSite.err = config.Parse([]byte(fmt.Sprintf("state_dir: %s\nsubscriptions: [{name: example, url: '%s', cosign_keys: [%s]}]\n", dir, url, e.PubKey)))
		if benchSite.err != nil {
			return
		}
		_, benchSite.err = (&policy.Syncer{Config: benchSite.cfg, Log: quiet()}).Run(context.Background())
	})
	if benchSite.err != nil {
		b.Fatal(benchSite.err)
	}
	return benchSite.cfg
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchSite.dir != "" {
		os.RemoveAll(benchSite.dir)
	}
	os.Exit(code)
}

// BenchmarkScrape is one scrape of /metrics with the journal already followed to its end:
// what Prometheus costs the node every scrape interval.
func BenchmarkScrape(b *testing.B) {
	cfg := benchSetup(b)
	sinks := func() []ship.Status {
		return []ship.Status{{Sink: "siem", Backlog: 3, MaxBacklog: 100000, LastSuccess: time.Now()}}
	}
	m := New(Sources{StateDir: cfg.StateDir, Sinks: sinks}, quiet(), nil)
	if err := m.UpdateJournal(); err != nil {
		b.Fatal(err)
	}
	h := m.Handler()
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkScrapeBaseline is the scrape of a registry with only the Go runtime and process
// collectors, which any Go exporter serves.
func BenchmarkScrapeBaseline(b *testing.B) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	req := httptest.NewRequest("GET", "/metrics", nil)
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
	}
}

// BenchmarkFollowNew reads 1,000 records appended after the journal the follower stands at
// the end of: what a scrape reads after 1,000 VM operations.
func BenchmarkFollowNew(b *testing.B) {
	cfg := benchSetup(b)
	// A copy of the journal, since this benchmark appends to it.
	dir := b.TempDir()
	src, err := os.ReadFile(trace.JournalPath(cfg.StateDir))
	if err != nil {
		b.Fatal(err)
	}
	path := trace.JournalPath(dir)
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, src, 0o600); err != nil {
		b.Fatal(err)
	}
	fl := journal.NewFollower(path)
	if _, err := fl.Next(func(journal.Entry) error { return nil }); err != nil {
		b.Fatal(err)
	}
	next := int(fl.Position().Seq)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if err := trace.Append(dir, hookRecords(next, 1000)...); err != nil {
			b.Fatal(err)
		}
		next += 1000
		b.StartTimer()
		n := 0
		if _, err := fl.Next(func(e journal.Entry) error {
			if eventOf(e.Data) != "" {
				n++
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if n != 1000 {
			b.Fatalf("read %d new records, want 1000", n)
		}
	}
}

// BenchmarkFollowWhole reads the whole journal with a new follower: the daemon's start, and
// the baseline of BenchmarkFollowNew (what reading without an offset costs every time, as
// journal.Read does).
func BenchmarkFollowWhole(b *testing.B) {
	cfg := benchSetup(b)
	for b.Loop() {
		fl := journal.NewFollower(trace.JournalPath(cfg.StateDir))
		if _, err := fl.Next(func(e journal.Entry) error { eventOf(e.Data); return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
