// Package metrics is what vmgate serve exposes on /metrics, in the Prometheus text format.
//
// Each process builds its own registry (New); nothing is registered in client_golang's
// global default registry. Most metrics are read from state when Prometheus scrapes: the
// snapshot the hook reads, the shipper's status, and the trace journal, which the hooks of
// other processes append to. The journal is followed from a byte offset (journal.Follower),
// so a scrape reads only the records appended since the one before, whatever the journal's
// size. What only this process knows (its syncs) is counted as it happens.
//
// docs/metrics.md lists every metric; keep it in step.
package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/trace"
)

// Sources are where the metrics read state at each scrape. vmgate serve replaces them when
// it reloads its configuration (SetSources); the counters live on.
type Sources struct {
	// StateDir is the node's state_dir: the snapshot and the trace journal.
	StateDir string
	// Sinks reports the shipper's status; nil when no sink is configured.
	Sinks func() []ship.Status
}

// Metrics is one process's registry and the state behind it. Its methods are safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger
	now func() time.Time

	mu  sync.Mutex // guards src and the follower
	src Sources
	fl  *journal.Follower
	// decisions counts hook decisions by event, read from the journal; lastSeq is the seq
	// of the last record read.
	decisions map[string]float64
	lastSeq   uint64

	snapMu sync.Mutex // guards snap
	snap   snapCache

	lists       *prometheus.CounterVec
	syncSeconds *prometheus.HistogramVec
	syncLast    *prometheus.GaugeVec
	syncErrors  *prometheus.CounterVec
	prunes      *prometheus.CounterVec
	pruned      prometheus.Counter
	unendorsed  *prometheus.GaugeVec
	auditLast   prometheus.Gauge
	auditErrors prometheus.Counter
	auditActed  *prometheus.CounterVec
}

// Hook decisions, the admission events of trace records, and the label value of each.
var decisionLabel = map[string]string{
	trace.AdmissionAllow:  "allow",
	trace.AdmissionRefuse: "refuse",
	trace.AdmissionWarn:   "warn",
}

// New builds the registry. now is the clock of ages (time.Now when nil).
func New(src Sources, log *slog.Logger, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	m := &Metrics{
		reg:       prometheus.NewRegistry(),
		log:       log,
		now:       now,
		decisions: map[string]float64{},
		lists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmgate_lists_total",
			Help: "Image lists fetched by this process, by subscription, outcome (accepted, unchanged, refused) and refusal reason.",
		}, []string{"subscription", "outcome", "reason"}),
		syncSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vmgate_sync_duration_seconds",
			Help:    "How long one subscription's sync took: fetch, verify, check, record, write the snapshot.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180},
		}, []string{"subscription"}),
		syncLast: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmgate_sync_last_success_timestamp_seconds",
			Help: "When a subscription's list was last accepted or found unchanged by this process (Unix time).",
		}, []string{"subscription"}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmgate_sync_errors_total",
			Help: "Syncs that could not run or record their result (not refusals: those are in vmgate_lists_total).",
		}, []string{"subscription"}),
		prunes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmgate_retention_runs_total",
			Help: "Retention passes over the trace journal, by result (ok, error).",
		}, []string{"result"}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmgate_retention_pruned_records_total",
			Help: "Trace records dropped by retention in this process.",
		}),
		unendorsed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmgate_running_unendorsed",
			Help: "Running VMs on this host that the hook would refuse to start now, by reason (blocked, revoked, expired, unknown, error, unclassified), at the last audit.",
		}, []string{"reason"}),
		auditLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmgate_audit_last_success_timestamp_seconds",
			Help: "When the last audit of the running VMs completed (Unix time).",
		}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmgate_audit_errors_total",
			Help: "Audits that could not judge the running VMs (libvirt unreachable, no fresh snapshot, records not written).",
		}),
		auditActed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmgate_audit_terminations_total",
			Help: "VMs that serve.audit_action terminate acted on, by result (done, failed).",
		}, []string{"result"}),
	}
	m.src = src
	m.fl = journal.NewFollower(trace.JournalPath(src.StateDir))
	m.reg.MustRegister(m.lists, m.syncSeconds, m.syncLast, m.syncErrors, m.prunes, m.pruned,
		m.unendorsed, m.auditLast, m.auditErrors, m.auditActed, (*stateCollector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the process's registry, for tests and for anything else to register in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus formats. A metric that fails is logged and
// left out; the others are served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, ErrorLog: slogPrinter{m.log}})
}

// SetSources replaces the sources after a reload. A journal elsewhere is followed from its
// start; its decisions are added to those counted so far.
func (m *Metrics) SetSources(src Sources) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if src.StateDir != m.src.StateDir {
		m.fl = journal.NewFollower(trace.JournalPath(src.StateDir))
	}
	m.src = src
}

// ObserveSync counts one sync of the subscriptions it fetched (policy.Syncer.Only), which
// took d. err is a sync that did not run or could not record its result.
func (m *Metrics) ObserveSync(subs []string, rep *policy.Report, d time.Duration, err error) {
	for _, s := range subs {
		m.syncSeconds.WithLabelValues(s).Observe(d.Seconds())
		if err != nil {
			m.syncErrors.WithLabelValues(s).Inc()
		}
	}
	if err != nil || rep == nil {
		return
	}
	now := float64(m.now().UnixNano()) / 1e9
	for _, r := range rep.Results {
		switch r.Outcome {
		case policy.OutcomeSkipped:
			continue
		case policy.OutcomeRefused:
			reason := "unknown"
			if r.Refusal != nil {
				reason = string(r.Refusal.Reason)
			}
			m.lists.WithLabelValues(r.Subscription, string(r.Outcome), reason).Inc()
		default:
			m.lists.WithLabelValues(r.Subscription, string(r.Outcome), "").Inc()
			m.syncLast.WithLabelValues(r.Subscription).Set(now)
		}
	}
}

// ObserveAudit reports one audit pass: the non-compliant running VMs by reason, or the
// error that kept it from judging them (the gauges then keep the last pass's counts); done
// and failed count what audit_action terminate did.
func (m *Metrics) ObserveAudit(byReason map[string]int, err error, at time.Time, done, failed int) {
	if err != nil {
		m.auditErrors.Inc()
		return
	}
	for reason, n := range byReason {
		m.unendorsed.WithLabelValues(reason).Set(float64(n))
	}
	m.auditLast.Set(float64(at.Unix()))
	m.auditActed.WithLabelValues("done").Add(float64(done))
	m.auditActed.WithLabelValues("failed").Add(float64(failed))
}

// ObservePrune counts one retention pass that dropped n records.
func (m *Metrics) ObservePrune(n int, err error) {
	if err != nil {
		m.prunes.WithLabelValues("error").Inc()
		return
	}
	m.prunes.WithLabelValues("ok").Inc()
	m.pruned.Add(float64(n))
}

// UpdateJournal reads the trace records appended since the last call and counts the hook
// decisions among them. Collect calls it; vmgate serve calls it once at start, so that the
// first scrape of a long journal does not pay for reading all of it.
func (m *Metrics) UpdateJournal() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.updateJournal()
}

func (m *Metrics) updateJournal() error {
	counts := map[string]float64{}
	var last uint64
	restarted, err := m.fl.Next(func(e journal.Entry) error {
		last = e.Seq
		if ev := eventOf(e.Data); ev != "" {
			if l, ok := decisionLabel[ev]; ok {
				counts[l]++
			}
		}
		return nil
	})
	if restarted {
		// Another journal (restored, or started over): what it holds is counted on top, so
		// that the counters never go down between two scrapes.
		m.log.Warn("metrics: the trace journal is not the one read before; counting it from its start", "journal", trace.JournalPath(m.src.StateDir))
	}
	for k, v := range counts {
		m.decisions[k] += v
	}
	if last > 0 {
		m.lastSeq = last
	}
	if err != nil {
		return err
	}
	return nil
}

// eventOf finds a trace record's event without decoding the whole record: decoding each of a
// million records would cost seconds, this costs a search. The key can only be a key here:
// inside a JSON string a quote is escaped, so `"event":"` cannot occur in a value.
func eventOf(data []byte) string {
	const key = `"event":"`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return ""
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// stateCollector reads the state at each scrape.
type stateCollector Metrics

var (
	descDecisions = prometheus.NewDesc("vmgate_hook_decisions_total",
		"Hook decisions recorded in the trace journal, by decision: allow, refuse, warn (warn mode: would have been refused).",
		[]string{"decision"}, nil)
	descLastSeq = prometheus.NewDesc("vmgate_trace_last_seq",
		"Sequence number of the last trace record in the journal.", nil, nil)
	descSnapPresent = prometheus.NewDesc("vmgate_snapshot_present",
		"1 when the snapshot exists and can be read, 0 otherwise (the hook then refuses every start).", nil, nil)
	descSnapFresh = prometheus.NewDesc("vmgate_snapshot_fresh",
		"1 when the snapshot has not expired, 0 otherwise (the hook then refuses every start).", nil, nil)
	descSnapAge = prometheus.NewDesc("vmgate_snapshot_age_seconds",
		"Seconds since the snapshot was written by a sync.", nil, nil)
	descSnapExpiry = prometheus.NewDesc("vmgate_snapshot_expiry_timestamp_seconds",
		"When the snapshot expires (Unix time): the first list behind it lapses.", nil, nil)
	descSnapSerial = prometheus.NewDesc("vmgate_snapshot_serial",
		"Serial number of the snapshot; it increases with every sync.", nil, nil)
	descImages = prometheus.NewDesc("vmgate_snapshot_images",
		"Images the snapshot knows, by status now: endorsed, revoked, expired.", []string{"status"}, nil)
	descSinkBacklog = prometheus.NewDesc("vmgate_sink_backlog_records",
		"Trace records a sink has not acknowledged yet.", []string{"sink"}, nil)
	descSinkMax = prometheus.NewDesc("vmgate_sink_backlog_limit_records",
		"The sink's max_backlog: above it /healthz fails.", []string{"sink"}, nil)
	descSinkSuccess = prometheus.NewDesc("vmgate_sink_last_success_timestamp_seconds",
		"When a pass last left the sink up to date (Unix time); 0 before the first.", []string{"sink"}, nil)
	descSinkFailures = prometheus.NewDesc("vmgate_sink_consecutive_failures",
		"Passes that failed in a row for the sink; 0 after a success.", []string{"sink"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDecisions, descLastSeq, descSnapPresent, descSnapFresh, descSnapAge,
		descSnapExpiry, descSnapSerial, descImages, descSinkBacklog, descSinkMax, descSinkSuccess, descSinkFailures} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	m.mu.Lock()
	err := m.updateJournal()
	src := m.src
	for _, l := range []string{"allow", "refuse", "warn"} {
		ch <- prometheus.MustNewConstMetric(descDecisions, prometheus.CounterValue, m.decisions[l], l)
	}
	ch <- prometheus.MustNewConstMetric(descLastSeq, prometheus.GaugeValue, float64(m.lastSeq))
	m.mu.Unlock()
	if err != nil {
		// The counters keep what was read; the scrape says what is wrong.
		ch <- prometheus.NewInvalidMetric(descDecisions, err)
	}

	now := m.now()
	snap, err := m.readSnapshot(src.StateDir, now)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Warn("metrics: snapshot", "err", err)
	}
	ch <- prometheus.MustNewConstMetric(descSnapPresent, prometheus.GaugeValue, b2f(err == nil))
	if err == nil {
		ch <- prometheus.MustNewConstMetric(descSnapFresh, prometheus.GaugeValue, b2f(snap.Fresh))
		ch <- prometheus.MustNewConstMetric(descSnapAge, prometheus.GaugeValue, now.Sub(snap.Meta.Created).Seconds())
		ch <- prometheus.MustNewConstMetric(descSnapExpiry, prometheus.GaugeValue, unix(snap.Meta.Expires))
		ch <- prometheus.MustNewConstMetric(descSnapSerial, prometheus.GaugeValue, float64(snap.Meta.Serial))
		for _, st := range []snapshot.Status{snapshot.Endorsed, snapshot.Revoked, snapshot.Expired} {
			ch <- prometheus.MustNewConstMetric(descImages, prometheus.GaugeValue, float64(snap.Images[st]), string(st))
		}
	}

	if src.Sinks == nil {
		return
	}
	for _, s := range src.Sinks() {
		ch <- prometheus.MustNewConstMetric(descSinkBacklog, prometheus.GaugeValue, float64(s.Backlog), s.Sink)
		ch <- prometheus.MustNewConstMetric(descSinkMax, prometheus.GaugeValue, float64(s.MaxBacklog), s.Sink)
		var last float64
		if !s.LastSuccess.IsZero() {
			last = unix(s.LastSuccess)
		}
		ch <- prometheus.MustNewConstMetric(descSinkSuccess, prometheus.GaugeValue, last, s.Sink)
		ch <- prometheus.MustNewConstMetric(descSinkFailures, prometheus.GaugeValue, float64(s.Failures), s.Sink)
	}
}

// Snapshot is what the metrics and /healthz read from the snapshot.
type Snapshot struct {
	Meta   snapshot.Meta
	Fresh  bool
	Images map[snapshot.Status]int // by status at the time asked
}

// ReadSnapshot opens the snapshot under stateDir and counts its images by status at now, as
// the hook would judge them: endorsed when some subscription endorses the image now, else
// the status of the latest word on it.
func ReadSnapshot(stateDir string, now time.Time) (*Snapshot, error) {
	s, err := snapshot.Open(config.Paths{Root: stateDir}.Snapshot())
	if err != nil {
		return nil, err
	}
	defer s.Close()
	out := &Snapshot{Meta: s.Meta(), Fresh: s.Fresh(now) == nil, Images: map[snapshot.Status]int{}}
	err = s.Each(func(e *snapshot.Entry) error {
		if _, ok := e.EndorsedAt(now); ok {
			out.Images[snapshot.Endorsed]++
			return nil
		}
		if im := e.Latest(); im != nil {
			out.Images[im.StatusAt(now)]++
		}
		return nil
	})
	return out, err
}

// snapCache is what the image counts need of a snapshot file, kept while the file is the
// same: decoding every entry at every scrape would cost about 12 ms per 1,000 images. A
// sync replaces the file (a rename), which changes its identity.
type snapCache struct {
	id      string
	meta    snapshot.Meta
	entries []entryState
}

type entryState struct {
	imgs   []snapshot.Image // Status and Expires only: what StatusAt reads
	latest int              // index of Entry.Latest
}

// readSnapshot is ReadSnapshot through the cache.
func (m *Metrics) readSnapshot(stateDir string, now time.Time) (*Snapshot, error) {
	path := config.Paths{Root: stateDir}.Snapshot()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	id := fmt.Sprintf("%s:%d:%d", journal.FileID(fi), fi.Size(), fi.ModTime().UnixNano())
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	if m.snap.id != id {
		c, err := loadSnapCache(path)
		if err != nil {
			return nil, err
		}
		c.id = id
		m.snap = c
	}
	out := &Snapshot{Meta: m.snap.meta, Fresh: now.Before(m.snap.meta.Expires), Images: map[snapshot.Status]int{}}
	for i := range m.snap.entries {
		out.Images[m.snap.entries[i].statusAt(now)]++
	}
	return out, nil
}

func loadSnapCache(path string) (snapCache, error) {
	s, err := snapshot.Open(path)
	if err != nil {
		return snapCache{}, err
	}
	defer s.Close()
	c := snapCache{meta: s.Meta()}
	err = s.Each(func(e *snapshot.Entry) error {
		st := entryState{imgs: make([]snapshot.Image, len(e.Images)), latest: -1}
		latest := e.Latest()
		for i := range e.Images {
			st.imgs[i] = snapshot.Image{Status: e.Images[i].Status, Expires: e.Images[i].Expires}
			if &e.Images[i] == latest {
				st.latest = i
			}
		}
		c.entries = append(c.entries, st)
		return nil
	})
	return c, err
}

// statusAt is the entry's status as ReadSnapshot counts it.
func (e *entryState) statusAt(now time.Time) snapshot.Status {
	for i := range e.imgs {
		if e.imgs[i].StatusAt(now) == snapshot.Endorsed {
			return snapshot.Endorsed
		}
	}
	if e.latest < 0 {
		return snapshot.Expired
	}
	return e.imgs[e.latest].StatusAt(now)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// slogPrinter lets promhttp log through slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics: scrape", "err", v) }
