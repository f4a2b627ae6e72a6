package serve

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmgate/vmgate/internal/audit"
	"github.com/vmgate/vmgate/internal/config"
)

// queue holds the domains that libvirt's events said changed, until the audit loop judges
// them. add runs in libvirt's event loop and never blocks; a burst of events on a domain
// is judged once, and so are the events that come while a judgement runs.
type queue struct {
	mu    sync.Mutex
	order []string
	set   map[string]struct{}
	full  bool      // judge every domain: events were missed, or too many domains wait
	since time.Time // when the oldest waiting request came
	max   int       // more domains waiting than this and they become one full pass
	now   func() time.Time
	wake  chan struct{} // holds one token when something waits
}

func newQueue(max int, now func() time.Time) *queue {
	return &queue{set: map[string]struct{}{}, max: max, now: now, wake: make(chan struct{}, 1)}
}

// add asks for the domain to be judged again.
func (q *queue) add(uuid string) {
	q.mu.Lock()
	q.note()
	if _, ok := q.set[uuid]; !ok && !q.full {
		if len(q.order) >= q.max {
			q.full, q.order, q.set = true, nil, map[string]struct{}{}
		} else {
			q.set[uuid] = struct{}{}
			q.order = append(q.order, uuid)
		}
	}
	q.mu.Unlock()
	q.signal()
}

// addAll asks for every running domain to be judged.
func (q *queue) addAll() {
	q.mu.Lock()
	q.note()
	q.full, q.order, q.set = true, nil, map[string]struct{}{}
	q.mu.Unlock()
	q.signal()
}

func (q *queue) note() {
	if q.since.IsZero() {
		q.since = q.now()
	}
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default: // a token waits already
	}
}

// take empties the queue: the domains to judge in the order they were asked for, or full
// for all of them, and when the oldest request came (zero when nothing waited).
func (q *queue) take() (uuids []string, full bool, since time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	uuids, full, since = q.order, q.full, q.since
	q.order, q.set, q.full, q.since = nil, map[string]struct{}{}, false, time.Time{}
	return uuids, full, since
}

// eventMetrics are the metrics of the domain events; they live as long as the daemon.
type eventMetrics struct {
	connected prometheus.Gauge
	events    *prometheus.CounterVec
	lost      prometheus.Counter
	failed    prometheus.Counter
	judged    prometheus.Counter
	delay     prometheus.Histogram
	took      *prometheus.HistogramVec
}

func newEventMetrics(reg prometheus.Registerer) *eventMetrics {
	m := &eventMetrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmgate_audit_events_connected",
			Help: "1 while the audit follows libvirt's domain events (serve.audit_events); 0 when it does not and only the periodic audit sees changes.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmgate_audit_events_total",
			Help: "Domain events received from libvirt, by kind (lifecycle, device-added, device-removed, block-job, tray-change, disk-change, job-completed, metadata-change).",
		}, []string{"kind"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmgate_audit_events_lost_total",
			Help: "Times the connection to libvirt's domain events was lost (libvirtd stopped, restarted or did not answer).",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmgate_audit_events_connect_errors_total",
			Help: "Attempts to subscribe to libvirt's domain events that failed.",
		}),
		judged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmgate_audit_event_judgements_total",
			Help: "Domains judged again after their events, without a pass over every domain.",
		}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vmgate_audit_event_delay_seconds",
			Help:    "From a domain event to the end of its judgement (records written, action taken).",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vmgate_audit_duration_seconds",
			Help:    "How long the audit took to judge, by trigger: pass (every running domain) or event (the domains whose events came).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"trigger"}),
	}
	for _, k := range audit.EventKinds {
		m.events.WithLabelValues(k)
	}
	reg.MustRegister(m.connected, m.events, m.lost, m.failed, m.judged, m.delay, m.took)
	return m
}

// watching is the subscription of one generation, for the audit loop to read domains through.
type watching struct {
	tried chan struct{} // closed after the first attempt to subscribe

	mu sync.Mutex
	w  audit.Watch // nil while not subscribed
}

func (s *watching) reader() audit.Reader {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil // a nil Watch in an interface would not be nil
	}
	return s.w
}

func (s *watching) set(w audit.Watch) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

// watchLoop subscribes to the domain events of serve.audit_connect and queues the domain of
// each event for the audit loop. When the subscription fails or is lost it tries again,
// after EventRetryMin doubling up to EventRetryMax, while the periodic audit goes on; once
// back, every domain is judged, since events were missed.
func (d *Daemon) watchLoop(ctx context.Context, cfg *config.Config, q *queue, st *watching) {
	o := &d.opts
	log, m := o.Log, d.ev
	uri := cfg.Serve.AuditConnect
	wait := o.EventRetryMin
	down := false // the subscription was lost or refused: say so once, and when it is back
	tried := sync.OnceFunc(func() { close(st.tried) })
	defer tried()
	for {
		w, err := d.audit.Subscribe(uri, func(uuid, kind string) {
			m.events.WithLabelValues(kind).Inc()
			q.add(uuid)
		})
		if err == nil {
			st.set(w)
		}
		tried()
		if err != nil {
			m.failed.Inc()
			if !down {
				log.Warn("serve: audit: cannot follow libvirt's domain events; a device hot-plugged into a running VM is seen only by the periodic audit until they are back",
					"connect", uri, "err", err, "audit_interval", cfg.Serve.AuditInterval.String(), "retry_in", wait.String())
			}
			down = true
		} else {
			m.connected.Set(1)
			if down {
				log.Info("serve: audit: following libvirt's domain events again; judging every running VM for what was missed", "connect", uri)
				q.addAll()
			} else {
				log.Info("serve: audit: following libvirt's domain events", "connect", uri)
			}
			down, wait = false, o.EventRetryMin
			select {
			case <-ctx.Done():
			case <-w.Lost():
				m.lost.Inc()
				down = true
				log.Warn("serve: audit: lost libvirt's domain events; a device hot-plugged into a running VM is seen only by the periodic audit until they are back",
					"connect", uri, "audit_interval", cfg.Serve.AuditInterval.String(), "retry_in", wait.String())
			}
			st.set(nil)
			m.connected.Set(0)
			if err := w.Close(); err != nil && ctx.Err() == nil {
				log.Debug("serve: audit: closing the events' connection", "err", err)
			}
		}
		if !sleepUntil(ctx, o.Now, o.Now().Add(wait)) {
			return
		}
		if down {
			wait = min(2*wait, o.EventRetryMax)
		}
	}
}
