// Package serve is vmgate serve, the daemon: it syncs every subscription on its own refresh
// interval, ships the trace records to every sink, prunes the journal by retention, and
// answers /healthz and /metrics over HTTP.
//
// The hook does not depend on it: the hook needs only the snapshot and the journal, so VMs
// start (or are refused) the same while the daemon is down, until the snapshot expires.
//
// Signals are the command's business: Run takes a context that ends on SIGTERM and a
// channel that says "reload" on SIGHUP. A reload reads the configuration again and, when it
// is valid, stops every loop and starts them again with it; an invalid one is logged and the
// daemon runs on with the configuration it had.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/vmgate/vmgate/internal/audit"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/metrics"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/trace/retention"
)

// Options configure a daemon. Zero values take the defaults in brackets.
type Options struct {
	// Load reads and validates the configuration, at start and at every reload.
	Load func() (*config.Config, error)
	Log  *slog.Logger
	// Listen, when set, overrides serve.listen (the --listen flag).
	Listen string
	// NewSyncer builds the Syncer of one sync, as vmgate sync builds its own (Glance
	// included); the daemon sets Log and Only [a policy.Syncer of cfg alone].
	NewSyncer func(cfg *config.Config) *policy.Syncer
	// OnSync is what the command does after each sync that ran: write its trace records,
	// hash new files in image_dirs. Its error is logged.
	OnSync func(ctx context.Context, cfg *config.Config, rep *policy.Report) error
	// Metrics is the registry the daemon reports to [a new one].
	Metrics *metrics.Metrics
	// Jitter is the fraction of a refresh interval by which each sync comes early, at
	// random, so that hypervisors started together do not fetch together [0.1].
	Jitter float64
	// RetryMin is the first wait before fetching a refused list again; it doubles up to the
	// subscription's refresh [1m].
	RetryMin time.Duration
	// PruneInterval is how often retention runs [1h]; the first pass comes after RetryMin.
	PruneInterval time.Duration
	// StopGrace is how long a sync under way may finish after a stop or a reload, so that a
	// stop is not recorded as a failed fetch [10s].
	StopGrace time.Duration
	// Ship tunes the shipper.
	Ship ship.Options
	// Notify is told of the daemon's state in sd_notify's words (READY=1, RELOADING=1,
	// STOPPING=1) [nothing].
	Notify func(state string)
	// Audit is how the audit reaches libvirt and the trace journal [libvirt, the journal
	// under state_dir].
	Audit audit.Env
	// EventSettle is how long the audit waits after a domain event before judging, so that
	// a burst (a start sends several) is judged once [50ms].
	EventSettle time.Duration
	// EventRetryMin is the first wait before subscribing to libvirt's domain events again
	// after a failure or a loss; it doubles up to EventRetryMax [1s, 1m].
	EventRetryMin, EventRetryMax time.Duration
	// EventQueueMax is how many domains may wait for a judgement after their events; more,
	// and every running domain is judged instead [1000].
	EventQueueMax int
	// Now is the clock [time.Now]; Rand returns a number in [0, 1) [math/rand/v2].
	Now  func() time.Time
	Rand func() float64
}

func (o *Options) fill() {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Jitter <= 0 || o.Jitter >= 1 {
		o.Jitter = 0.1
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Minute
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = time.Hour
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 10 * time.Second
	}
	if o.NewSyncer == nil {
		o.NewSyncer = func(cfg *config.Config) *policy.Syncer { return &policy.Syncer{Config: cfg} }
	}
	if o.Notify == nil {
		o.Notify = func(string) {}
	}
	if o.Audit.Log == nil {
		o.Audit.Log = o.Log
	}
	if o.EventSettle <= 0 {
		o.EventSettle = 50 * time.Millisecond
	}
	if o.EventRetryMin <= 0 {
		o.EventRetryMin = time.Second
	}
	if o.EventRetryMax < o.EventRetryMin {
		o.EventRetryMax = max(time.Minute, o.EventRetryMin)
	}
	if o.EventQueueMax <= 0 {
		o.EventQueueMax = 1000
	}
}

// Daemon is vmgate serve.
type Daemon struct {
	opts  Options
	m     *metrics.Metrics
	audit *audit.Auditor // lives across reloads: it remembers what it recorded
	ev    *eventMetrics

	mu  sync.Mutex
	cur *generation // the loops running now; nil between two
}

// New checks the options and builds the daemon.
func New(opts Options) (*Daemon, error) {
	if opts.Load == nil {
		return nil, errors.New("serve: no configuration loader")
	}
	opts.fill()
	return &Daemon{opts: opts, m: opts.Metrics, audit: audit.New(opts.Audit)}, nil
}

// Metrics is the daemon's registry.
func (d *Daemon) Metrics() *metrics.Metrics { return d.m }

// Run loads the configuration and runs until ctx ends, starting every loop again with a
// fresh configuration each time reload receives. It returns nil after a clean stop, an
// error when the configuration cannot be loaded at start or the HTTP server cannot listen.
func (d *Daemon) Run(ctx context.Context, reload <-chan struct{}) error {
	log := d.opts.Log
	cfg, err := d.opts.Load()
	if err != nil {
		return err
	}
	if d.m == nil {
		d.m = metrics.New(metrics.Sources{StateDir: cfg.StateDir}, log, d.opts.Now)
	}
	if d.ev == nil {
		d.ev = newEventMetrics(d.m.Registry())
	}
	// Read the journal once now rather than at the first scrape, which would wait for it.
	go func() {
		if err := d.m.UpdateJournal(); err != nil {
			log.Warn("serve: reading the trace journal for the metrics", "err", err)
		}
	}()
	for {
		g, err := d.start(ctx, cfg)
		if err != nil {
			return err
		}
		d.opts.Notify("READY=1")
		next := d.waitReload(ctx, reload)
		if next == nil {
			d.opts.Notify("STOPPING=1")
			log.Info("serve: stopping")
			g.stop()
			return nil
		}
		log.Info("serve: reloading the configuration")
		g.stop()
		cfg = next
	}
}

// waitReload waits for a reload with a valid configuration, which it returns, or for ctx to
// end (nil). An invalid configuration is logged and the daemon runs on with the one it has.
func (d *Daemon) waitReload(ctx context.Context, reload <-chan struct{}) *config.Config {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			d.opts.Notify("RELOADING=1")
			next, err := d.opts.Load()
			if err == nil {
				return next
			}
			d.opts.Log.Error("serve: reload refused: the configuration is not valid; running on with the one loaded before", "err", err)
			d.opts.Notify("READY=1")
		}
	}
}

// generation is the loops of one configuration.
type generation struct {
	cfg     *config.Config
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	srv     *http.Server
	addr    net.Addr
	shipper *ship.Shipper // nil without sinks
}

func (g *generation) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.srv.Shutdown(ctx) // a scrape under way may finish
	g.cancel()
	g.wg.Wait()
}

// Addr is where the HTTP server of the running configuration listens; nil when none runs.
func (d *Daemon) Addr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return nil
	}
	return d.cur.addr
}

func (d *Daemon) start(ctx context.Context, cfg *config.Config) (*generation, error) {
	log := d.opts.Log
	listen := cfg.Serve.Listen
	if d.opts.Listen != "" {
		listen = d.opts.Listen
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("serve: listen on %s (serve.listen or --listen): %w", listen, err)
	}
	g := &generation{cfg: cfg, addr: ln.Addr()}
	if len(cfg.Trace.Sinks) > 0 {
		if g.shipper, err = ship.New(cfg.StateDir, cfg.Trace.Sinks, log, d.opts.Ship); err != nil {
			ln.Close()
			return nil, fmt.Errorf("serve: %w", err)
		}
	}
	src := metrics.Sources{StateDir: cfg.StateDir}
	if g.shipper != nil {
		src.Sinks = g.shipper.Status
	}
	d.m.SetSources(src)

	gctx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	g.srv = &http.Server{Handler: d.handler(g), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	g.wg.Go(func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve: HTTP server stopped", "err", err)
		}
	})
	g.wg.Go(func() { d.syncLoop(gctx, cfg) })
	if g.shipper != nil {
		g.wg.Go(func() { g.shipper.Run(gctx) })
	}
	g.wg.Go(func() { d.pruneLoop(gctx, cfg) })
	if cfg.Serve.AuditAction != config.AuditOff {
		q, st := newQueue(d.opts.EventQueueMax, d.opts.Now), &watching{tried: make(chan struct{})}
		if cfg.Serve.Events() {
			g.wg.Go(func() { d.watchLoop(gctx, cfg, q, st) })
		} else {
			close(st.tried)
		}
		g.wg.Go(func() { d.auditLoop(gctx, cfg, q, st) })
	}

	d.mu.Lock()
	d.cur = g
	d.mu.Unlock()
	log.Info("serve: running", "listen", g.addr.String(), "subscriptions", len(cfg.Subscriptions),
		"sinks", len(cfg.Trace.Sinks), "state_dir", cfg.StateDir)
	return g, nil
}

// jittered is d less up to frac of it, by r in [0, 1): never later than d, so a sync comes at
// least as often as refresh asks.
func jittered(d time.Duration, frac, r float64) time.Duration {
	return d - time.Duration(float64(d)*frac*r)
}

// syncLoop syncs each subscription on its own refresh interval: all of them at once at
// start, then each when it is due, with the others left as they are (policy.Syncer.Only). A
// refused list is fetched again sooner, after RetryMin doubling up to its refresh.
func (d *Daemon) syncLoop(ctx context.Context, cfg *config.Config) {
	o := &d.opts
	next := map[string]time.Time{}
	retry := map[string]time.Duration{}
	now := o.Now()
	for _, s := range cfg.Subscriptions {
		next[s.Name] = now
	}
	for {
		now = o.Now()
		var due []string
		wake := now.Add(24 * time.Hour)
		for _, s := range cfg.Subscriptions {
			if !next[s.Name].After(now) {
				due = append(due, s.Name)
			} else if next[s.Name].Before(wake) {
				wake = next[s.Name]
			}
		}
		if len(due) > 0 {
			failed := d.syncOnce(ctx, cfg, due)
			if ctx.Err() != nil {
				return
			}
			now = o.Now()
			for _, s := range cfg.Subscriptions {
				if !slices.Contains(due, s.Name) {
					continue
				}
				wait := s.Refresh
				if failed[s.Name] {
					retry[s.Name] = min(max(2*retry[s.Name], o.RetryMin), s.Refresh)
					wait = retry[s.Name]
				} else {
					delete(retry, s.Name)
				}
				next[s.Name] = now.Add(jittered(wait, o.Jitter, o.Rand()))
			}
			continue
		}
		if !sleepUntil(ctx, o.Now, wake) {
			return
		}
	}
}

// syncOnce syncs the due subscriptions and reports which of them failed (refused, or the
// sync itself failed).
func (d *Daemon) syncOnce(ctx context.Context, cfg *config.Config, due []string) map[string]bool {
	o := &d.opts
	log := o.Log
	// A stop lets the sync under way finish for a while: cut short, a fetch would go into
	// the history as a refused list.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.NewTimer(o.StopGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-sctx.Done():
		}
	})
	defer stopGrace()

	started := time.Now()
	sy := o.NewSyncer(cfg)
	sy.Log, sy.Only = log, due
	var rep *policy.Report
	var err error
	if cfg.OpenStack.Cloud != "" && sy.Glance == nil {
		// A sync without Glance forgets every Glance id, and the hook would then refuse
		// every Nova instance.
		err = errors.New("openstack.cloud is set but the daemon's sync has no Glance client: not syncing, since that would drop every Glance id from the snapshot")
	} else {
		rep, err = sy.Run(sctx)
	}
	d.m.ObserveSync(due, rep, time.Since(started), err)
	failed := map[string]bool{}
	if err != nil {
		log.Error("serve: sync failed; the snapshot is as before", "subscriptions", due, "err", err)
		for _, n := range due {
			failed[n] = true
		}
		return failed
	}
	for _, r := range rep.Results {
		if r.Outcome == policy.OutcomeRefused {
			failed[r.Subscription] = true
		}
	}
	if o.OnSync != nil {
		if err := o.OnSync(sctx, cfg, rep); err != nil {
			log.Error("serve: after the sync", "err", err)
		}
	}
	log.Info("serve: synced", "subscriptions", due, "snapshot", rep.Snapshot.Serial,
		"images", rep.Snapshot.Images, "expires", rep.Snapshot.Expires.UTC().Format(time.RFC3339),
		"took", time.Since(started).Round(time.Millisecond).String())
	return failed
}

// pruneLoop runs retention every PruneInterval, first after RetryMin.
func (d *Daemon) pruneLoop(ctx context.Context, cfg *config.Config) {
	o := &d.opts
	wait := o.RetryMin
	for {
		if !sleepUntil(ctx, o.Now, o.Now().Add(wait)) {
			return
		}
		wait = jittered(o.PruneInterval, o.Jitter, o.Rand())
		res, err := retention.Prune(cfg, o.Now())
		d.m.ObservePrune(res.Dropped, err)
		switch {
		case err != nil:
			o.Log.Error("serve: retention", "err", err)
		case res.Dropped > 0:
			o.Log.Info("serve: retention dropped trace records", "dropped", res.Dropped, "kept", res.Kept,
				"before", res.Cutoff.UTC().Format(time.RFC3339), "anchor_seq", res.AnchorSeq)
		}
	}
}

// auditLoop judges every running domain every audit_interval, the first time at once; a
// pass that could not judge (no snapshot yet, libvirt down) is tried again after RetryMin.
// Between passes it judges the domains that q holds (their events came) as soon as they
// come, through st's connection, or every domain when q asks for it.
func (d *Daemon) auditLoop(ctx context.Context, cfg *config.Config, q *queue, st *watching) {
	o := &d.opts
	// The first pass comes after the first subscription to the events: what changes after
	// the pass's listing is then seen. A subscription that fails or takes long is not
	// waited for: it asks for a pass of its own when it is made.
	t := time.NewTimer(10 * time.Second)
	select {
	case <-ctx.Done():
		t.Stop()
		return
	case <-st.tried:
	case <-t.C:
	}
	t.Stop()
	next := o.Now()
	for {
		now := o.Now()
		uuids, full, since := q.take()
		if last := d.audit.Last(); len(uuids) > 0 && last != nil && last.Err != nil {
			// The audit cannot judge now (no fresh snapshot, records not written): the pass
			// it retries after RetryMin judges these too, rather than one pass per event.
			uuids = nil
		}
		var r audit.Reader
		if len(uuids) > 0 && !full {
			if r = st.reader(); r == nil {
				full = true // the connection of the events is gone: judge every domain
			}
		}
		switch {
		case full || !now.Before(next):
			started := time.Now()
			res := d.audit.Pass(ctx, cfg, now)
			d.ev.took.WithLabelValues("pass").Observe(time.Since(started).Seconds())
			d.observeAudit(res)
			if !since.IsZero() {
				d.ev.delay.Observe(o.Now().Sub(since).Seconds())
			}
			wait := cfg.Serve.AuditInterval
			if res.Err != nil {
				wait = min(wait, o.RetryMin)
			}
			next = o.Now().Add(wait)
			continue
		case len(uuids) > 0:
			started := time.Now()
			res := d.audit.Domains(ctx, cfg, now, r, uuids)
			trigger := "event"
			if res.Judged == nil {
				trigger = "pass" // it fell back to a pass over every domain
			}
			d.ev.took.WithLabelValues(trigger).Observe(time.Since(started).Seconds())
			d.observeAudit(res)
			d.ev.judged.Add(float64(len(res.Judged)))
			d.ev.delay.Observe(o.Now().Sub(since).Seconds())
			if res.Judged == nil { // it made a whole pass
				wait := cfg.Serve.AuditInterval
				if res.Err != nil {
					wait = min(wait, o.RetryMin)
				}
				next = o.Now().Add(wait)
			}
			continue
		}
		if !d.waitAudit(ctx, next, q) {
			return
		}
	}
}

// waitAudit waits until the next pass is due or an event came (and then EventSettle more,
// for the rest of a burst); false when ctx ended first.
func (d *Daemon) waitAudit(ctx context.Context, next time.Time, q *queue) bool {
	o := &d.opts
	for {
		wait := next.Sub(o.Now())
		if wait <= 0 {
			return true
		}
		// At least every second: a clock that jumps (or a fake one in tests) is followed.
		t := time.NewTimer(min(wait, time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
			continue
		case <-q.wake:
			t.Stop()
		}
		settle := time.NewTimer(o.EventSettle)
		select {
		case <-ctx.Done():
			settle.Stop()
			return false
		case <-settle.C:
			return true
		}
	}
}

// observeAudit reports a pass, or a judgement after events, in the metrics and the log.
func (d *Daemon) observeAudit(res *audit.Result) {
	log := d.opts.Log
	done, failed := 0, 0
	if res.Acted != nil {
		failed = len(res.Acted.Failed())
		done = len(res.Acted.Results) - failed
	}
	d.m.ObserveAudit(res.ByReason(), res.Err, res.At, done, failed)
	what := "serve: audit"
	if res.Judged != nil {
		what = "serve: audit after domain events"
	}
	switch {
	case res.Err != nil:
		log.Error(what+" of the running VMs", "err", res.Err)
	case len(res.Findings) > 0:
		log.Warn(what+": running VMs are not endorsed", "count", len(res.Findings), "running", res.Running,
			"first", res.Findings[0].Name, "reason", res.Findings[0].Reason, "recorded", res.Recorded, "judged", len(res.Judged))
	case res.Judged != nil:
		log.Debug(what, "judged", res.Judged, "running", res.Running)
	}
	if res.ActErr != nil {
		log.Error("serve: audit_action terminate", "err", res.ActErr)
	} else if done+failed > 0 {
		log.Warn("serve: audit_action terminate acted", "done", done, "failed", failed)
	}
}

// sleepUntil waits until the clock reaches t, checking at least every second so that a
// clock that jumps (or a fake one in tests) is followed; false when ctx ended first.
func sleepUntil(ctx context.Context, now func() time.Time, t time.Time) bool {
	for {
		d := t.Sub(now())
		if d <= 0 {
			return true
		}
		timer := time.NewTimer(min(d, time.Second))
		select {
		case <-ctx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
}
