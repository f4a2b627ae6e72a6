package ship

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

// ErrDelivery marks a sink that did not accept records: unreachable, refused the TLS
// handshake, dropped the connection, or a file that could not be written. Its records wait
// for the next pass. Any other error is vmgate's own (journal, cursor).
var ErrDelivery = errors.New("sink did not accept the records")

// IsDelivery reports whether err, as Once returns it, is only sinks that did not accept
// records, which the next pass retries, and nothing worse.
func IsDelivery(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		for _, e := range errs {
			if !IsDelivery(e) {
				return false
			}
		}
		return len(errs) > 0
	}
	return errors.Is(err, ErrDelivery)
}

// deliveryError marks a transport error as ErrDelivery and keeps its message.
type deliveryError struct{ err error }

func (e *deliveryError) Error() string        { return e.err.Error() }
func (e *deliveryError) Unwrap() error        { return e.err }
func (e *deliveryError) Is(target error) bool { return target == ErrDelivery }

func delivery(format string, a ...any) error { return &deliveryError{fmt.Errorf(format, a...)} }

// Options tune a Shipper. Zero values take the defaults in brackets.
type Options struct {
	// SessionRecords caps the records of one syslog connection or one jsonfile fsync
	// [10000]. A failed session is sent again whole, so this bounds the duplicates.
	SessionRecords int
	DialTimeout    time.Duration // connect and TLS handshake [10s]
	IOTimeout      time.Duration // one write to a receiver that does not read [30s]
	// ConfirmTimeout is how long a receiver may take to close after our end of a session
	// [10s] (see "What accepted means" in the package doc).
	ConfirmTimeout time.Duration
	// Run: how often to look at the journal for new records [1s], and the wait after a
	// failed pass, doubling from BackoffMin [1s] to at most BackoffMax [1m].
	PollInterval time.Duration
	BackoffMin   time.Duration
	BackoffMax   time.Duration
	// Now is the clock of status times [time.Now].
	Now func() time.Time
}

func (o *Options) fill() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.SessionRecords <= 0 {
		o.SessionRecords = 10000
	}
	def(&o.DialTimeout, 10*time.Second)
	def(&o.IOTimeout, 30*time.Second)
	def(&o.ConfirmTimeout, 10*time.Second)
	def(&o.PollInterval, time.Second)
	def(&o.BackoffMin, time.Second)
	def(&o.BackoffMax, time.Minute)
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Shipper ships one node's trace journal to its sinks. Its methods are safe for concurrent
// use; Status may be called while Run runs.
type Shipper struct {
	stateDir string
	journal  string
	log      *slog.Logger
	opts     Options
	sinks    []*sinkState
}

type sinkState struct {
	name string
	sink sink
	mu   sync.Mutex
	// status is what Status reports; guarded by mu.
	status Status
}

// Status is one sink's shipping state.
type Status struct {
	Sink       string
	Where      string // "syslog tls://host:port", "jsonfile /path"
	Cursor     uint64 // seq of the last record the sink accepted
	LastSeq    uint64 // of the journal, when last looked at
	Backlog    uint64 // records in the journal after the cursor
	MaxBacklog int64  // from the config; above it the sink is unhealthy
	// LastSuccess is the end of the last pass that left the sink up to date, LastAttempt of
	// the last pass, LastError its error ("" after a success), Failures the passes failed
	// in a row.
	LastSuccess time.Time
	LastAttempt time.Time
	LastError   string
	Failures    int
}

// New builds a Shipper for the trace journal under stateDir. It reads the sinks' TLS files
// now, so that a bad one is a configuration error, not a sink that never answers.
func New(stateDir string, sinks []config.Sink, log *slog.Logger, opts Options) (*Shipper, error) {
	opts.fill()
	if log == nil {
		log = slog.Default()
	}
	s := &Shipper{stateDir: stateDir, journal: trace.JournalPath(stateDir), log: log, opts: opts}
	for i := range sinks {
		c := &sinks[i]
		var sk sink
		switch c.Type {
		case config.SinkSyslog:
			ss, err := newSyslogSink(c, &s.opts)
			if err != nil {
				return nil, fmt.Errorf("trace sink %s: %w", c.Name, err)
			}
			sk = ss
		case config.SinkJSONFile:
			sk = &fileSink{path: c.Path}
		default:
			return nil, fmt.Errorf("trace sink %s: unknown type %q", c.Name, c.Type)
		}
		st := &sinkState{name: c.Name, sink: sk}
		st.status = Status{Sink: c.Name, Where: sk.describe(), MaxBacklog: c.MaxBacklog}
		if cur, err := ReadCursor(stateDir, c.Name); err == nil {
			st.status.Cursor = cur.Seq
		}
		s.sinks = append(s.sinks, st)
	}
	return s, nil
}

// Status reports every sink's state, in configuration order.
func (s *Shipper) Status() []Status {
	out := make([]Status, len(s.sinks))
	for i, st := range s.sinks {
		st.mu.Lock()
		out[i] = st.status
		st.mu.Unlock()
	}
	return out
}

// Stats is what one pass over every sink did.
type Stats struct {
	Sinks []SinkStats
}

// UpToDate reports whether every sink has every record the pass saw.
func (s Stats) UpToDate() bool {
	for _, k := range s.Sinks {
		if k.Err != nil || k.Backlog > 0 {
			return false
		}
	}
	return true
}

// SinkStats is what one pass did for one sink.
type SinkStats struct {
	Sink     string
	Where    string
	Shipped  int    // records the sink accepted in this pass: the cursor moved over them
	Sent     int    // records written, including those of a failed session, which go again
	Cursor   uint64 // after the pass
	LastSeq  uint64 // the journal's last record
	Backlog  uint64 // records still to ship
	Replaced bool   // the journal did not continue the cursor and was shipped from its start
	Err      error
}

// Once ships every record after each sink's cursor, all sinks at once, and returns when
// each is up to date or has failed. The error joins the sinks' errors; IsDelivery tells
// sinks that were not reachable (their records wait for the next pass) from worse.
func (s *Shipper) Once(ctx context.Context) (Stats, error) {
	stats := Stats{Sinks: make([]SinkStats, len(s.sinks))}
	var wg sync.WaitGroup
	for i, st := range s.sinks {
		wg.Go(func() { stats.Sinks[i] = s.pass(ctx, st) })
	}
	wg.Wait()
	var errs []error
	for _, k := range stats.Sinks {
		if k.Err != nil {
			errs = append(errs, fmt.Errorf("sink %s (%s): %w", k.Sink, k.Where, k.Err))
		}
	}
	return stats, errors.Join(errs...)
}

// Run ships until ctx ends: each sink on its own, looking for new records every
// PollInterval, and after a failure waiting a backoff that doubles up to BackoffMax, with a
// warning per failure. It never holds the journal's lock beyond a moment, so appends (VM
// starts) go on whatever the sinks do.
func (s *Shipper) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, st := range s.sinks {
		wg.Go(func() { s.runSink(ctx, st) })
	}
	wg.Wait()
	return nil
}

func (s *Shipper) runSink(ctx context.Context, st *sinkState) {
	var backoff time.Duration
	var seen journalStamp
	for {
		now := journalStampOf(s.journal)
		if backoff > 0 || now != seen || st.backlog() > 0 {
			k := s.pass(ctx, st)
			if ctx.Err() != nil {
				return
			}
			if k.Err != nil {
				backoff = min(max(2*backoff, s.opts.BackoffMin), s.opts.BackoffMax)
				wait := jitter(backoff)
				s.log.Warn("ship: sink failed; records wait for the next attempt", "sink", st.name, "to", k.Where,
					"err", k.Err, "backlog", k.Backlog, "retry_in", wait.Round(time.Millisecond))
				if !sleep(ctx, wait) {
					return
				}
				continue
			}
			if backoff > 0 {
				s.log.Info("ship: sink reachable again", "sink", st.name, "to", k.Where, "shipped", k.Shipped)
			}
			backoff, seen = 0, now
		}
		if !sleep(ctx, s.opts.PollInterval) {
			return
		}
	}
}

// journalStamp tells whether the journal changed: appends change its size, retention
// replaces the file.
type journalStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func journalStampOf(path string) journalStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return journalStamp{}
	}
	st := journalStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

func (st *sinkState) setStatus(f func(*Status)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(&st.status)
}

// sawSeq records that the journal reaches at least seq.
func (st *sinkState) sawSeq(seq uint64) {
	st.setStatus(func(t *Status) {
		t.LastSeq = max(t.LastSeq, seq)
		t.Backlog = 0
		if t.LastSeq > t.Cursor {
			t.Backlog = t.LastSeq - t.Cursor
		}
	})
}

func (st *sinkState) backlog() uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.status.Backlog
}

// jitter spreads retries of many nodes after a SIEM outage over ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errReplaced: the journal does not continue the sink's cursor.
var errReplaced = errors.New("journal replaced")

// pass ships what one sink lacks, under the sink's lock, and updates its status.
func (s *Shipper) pass(ctx context.Context, st *sinkState) SinkStats {
	k := SinkStats{Sink: st.name, Where: st.sink.describe()}
	started := s.opts.Now()
	unlock, err := lockSink(ctx, s.stateDir, st.name)
	if err == nil {
		defer unlock()
		err = s.ship(ctx, st, &k)
	}
	k.Err = err
	if k.LastSeq > k.Cursor {
		k.Backlog = k.LastSeq - k.Cursor
	}
	st.setStatus(func(t *Status) {
		t.Cursor, t.LastSeq, t.Backlog, t.LastAttempt = k.Cursor, k.LastSeq, k.Backlog, started
		if err != nil {
			t.LastError, t.Failures = err.Error(), t.Failures+1
		} else {
			t.LastError, t.Failures, t.LastSuccess = "", 0, s.opts.Now()
		}
	})
	return k
}

func (s *Shipper) ship(ctx context.Context, st *sinkState, k *SinkStats) error {
	cur, err := ReadCursor(s.stateDir, st.name)
	if err != nil {
		return err
	}
	k.Cursor = cur.Seq
	err = s.walk(ctx, st, cur, k)
	if errors.Is(err, errReplaced) {
		s.log.Error("ship: the trace journal does not continue what this sink was sent (replaced, restored or rewritten); shipping all of it again",
			"sink", st.name, "journal", s.journal, "cursor_seq", cur.Seq, "cursor_hash", cur.Hash)
		k.Replaced, k.Cursor = true, 0
		err = s.walk(ctx, st, Cursor{}, k)
	}
	return err
}

// walk reads the journal once, from its start (journal.Read checks the chain from the
// header on anyway), checks that it continues cur, and hands every record after cur to a
// pipeline: encoders on every core turn batches of records into what the sink takes, and a
// writer sends the batches in journal order, in sessions, moving the cursor after each
// accepted one. After a delivery error the walk reads on without sending, to know the
// backlog.
func (s *Shipper) walk(ctx context.Context, st *sinkState, cur Cursor, k *SinkStats) error {
	w := &writer{s: s, st: st, k: k, ctx: ctx}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan *batch, workers)
	ordered := make(chan *batch, 2*workers)
	var encoders sync.WaitGroup
	for range workers {
		encoders.Go(func() {
			var sc scratch
			for b := range jobs {
				b.encode(st.sink, &sc)
			}
		})
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		w.run(ordered)
	}()

	var (
		b       *batch
		handed  int            // records handed to the pipeline
		seenAny bool           // any record read
		matched = cur.Seq == 0 // the journal continues cur
	)
	hand := func() {
		if b != nil {
			jobs <- b
			ordered <- b
			b = nil
		}
	}
	err := journal.Read(s.journal, 0, func(e journal.Entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		k.LastSeq = e.Seq
		if e.Seq%batchSize == 0 {
			st.sawSeq(e.Seq) // so that Status shows the backlog during a long pass too
		}
		if !seenAny {
			seenAny = true
			if e.Seq > cur.Seq+1 && !matched {
				// Nothing here to check the cursor against: records after it were pruned
				// before this sink got them (retention must not do that), or the journal is
				// another one. Either way, ship what there is.
				s.log.Error("ship: records after the sink's cursor are missing from the trace journal",
					"sink", st.name, "cursor_seq", cur.Seq, "first_seq", e.Seq)
				matched = true
			}
		}
		switch {
		case matched:
		case e.Seq == cur.Seq && e.Hash == cur.Hash, e.Seq == cur.Seq+1 && e.Prev == cur.Hash:
			matched = true // the cursor's record, or the first one after a pruned cursor
		case e.Seq >= cur.Seq:
			return errReplaced
		}
		if e.Seq <= cur.Seq || w.stop.Load() {
			return nil
		}
		if b == nil {
			b = &batch{entries: make([]journal.Entry, 0, batchSize), done: make(chan struct{})}
		}
		b.entries = append(b.entries, e)
		handed++
		// Batches end at session boundaries, so that sessions hold SessionRecords exactly.
		if len(b.entries) == batchSize || handed%s.opts.SessionRecords == 0 {
			hand()
		}
		return nil
	})
	// What went out before a journal problem is intact and is committed too; not so after a
	// cancel or a replaced journal.
	var problem *journal.Problem
	if err == nil || errors.As(err, &problem) {
		hand()
		w.commitAtEnd = true
	}
	close(jobs)
	close(ordered)
	<-written
	encoders.Wait()

	switch {
	case w.fatal != nil:
		return w.fatal
	case errors.Is(err, fs.ErrNotExist):
		if cur.Seq > 0 {
			s.log.Warn("ship: no trace journal, but the sink's cursor says records were shipped", "sink", st.name,
				"journal", s.journal, "cursor_seq", cur.Seq)
		}
		return nil // no journal yet: nothing to ship
	case err != nil:
		return err
	case !matched && cur.Seq > 0:
		// Every record is before the cursor or there are none: the journal ends at the
		// cursor only if its anchor is the cursor (all shipped records pruned).
		rep, verr := journal.Verify(s.journal)
		if verr != nil {
			return verr
		}
		if k.LastSeq < cur.Seq && !(rep.AnchorSeq == cur.Seq && rep.Anchor == cur.Hash) {
			return errReplaced
		}
		k.LastSeq = max(k.LastSeq, rep.LastSeq)
	}
	return w.failed
}

// batchSize is how many records an encoder takes at a time: enough to amortise the hand-over,
// few enough that a session boundary or a failure wastes little.
const batchSize = 256

// batch is records on their way through the pipeline.
type batch struct {
	entries []journal.Entry
	buf     []byte // the encoded records, in order
	err     error
	done    chan struct{} // closed when buf (or err) is ready
}

func (b *batch) encode(sk sink, sc *scratch) {
	defer close(b.done)
	size := 0
	for i := range b.entries {
		size += 2*len(b.entries[i].Data) + 1024 // ECS and syslog take more than the record
	}
	b.buf = make([]byte, 0, size)
	for i := range b.entries {
		e := &b.entries[i]
		var r trace.Record
		// The journal's data is valid JSON; a record this version cannot fully read (a field
		// of another type) still goes out with what could be read, and with its seq and hash,
		// rather than holding up every record after it.
		_ = decodeRecord(e.Data, &r)
		if b.buf, b.err = sk.encode(b.buf, sc, e, &r); b.err != nil {
			return
		}
	}
}

// writer sends encoded batches in order, in sessions, and moves the cursor after each
// accepted session. Only its goroutine touches its fields until run returns, except stop.
type writer struct {
	s   *Shipper
	st  *sinkState
	k   *SinkStats // Sent, Shipped, Cursor; the walk sets only LastSeq
	ctx context.Context

	sess   session
	inSess int           // records written in sess
	last   journal.Entry // the last of them

	commitAtEnd bool        // set before ordered is closed: commit the last session
	stop        atomic.Bool // tells the walk to hand over nothing more
	failed      error       // the delivery error that stopped sending
	fatal       error       // an error of ours (cursor, encoding) that stopped sending
}

func (w *writer) run(ordered <-chan *batch) {
	for b := range ordered {
		<-b.done
		if w.stop.Load() {
			continue // drain, so that the walk never blocks
		}
		if err := w.send(b); err != nil {
			w.fail(err)
		}
	}
	if w.sess == nil {
		return
	}
	if !w.commitAtEnd || w.stop.Load() || w.ctx.Err() != nil {
		w.sess.abort()
		return
	}
	if err := w.commit(); err != nil {
		w.fail(err)
	}
}

func (w *writer) fail(err error) {
	if errors.Is(err, ErrDelivery) {
		w.failed = err
	} else {
		w.fatal = err
	}
	w.stop.Store(true)
}

func (w *writer) send(b *batch) error {
	if b.err != nil {
		if w.sess != nil {
			w.sess.abort()
			w.sess = nil
		}
		return b.err
	}
	if w.sess == nil {
		sess, err := w.st.sink.open(w.ctx)
		if err != nil {
			return delivery("%w", err)
		}
		w.sess = sess
	}
	n := len(b.entries)
	w.k.Sent += n
	if err := w.sess.write(b.buf); err != nil {
		w.sess.abort()
		w.sess = nil
		return delivery("%d records not confirmed, sent again next time: %w", w.inSess+n, err)
	}
	w.inSess += n
	w.last = b.entries[n-1]
	if w.inSess >= w.s.opts.SessionRecords {
		return w.commit()
	}
	return nil
}

// commit ends the session; once the sink accepted it, the cursor moves over its records.
func (w *writer) commit() error {
	err := w.sess.commit()
	w.sess = nil
	if err != nil {
		return delivery("%d records not confirmed, sent again next time: %w", w.inSess, err)
	}
	c := Cursor{Seq: w.last.Seq, Hash: w.last.Hash, Time: w.s.opts.Now().UTC()}
	if err := writeCursor(w.s.stateDir, w.st.name, c); err != nil {
		return err // ours, not the sink's: the records were accepted, and go again
	}
	w.k.Shipped += w.inSess
	w.k.Cursor, w.inSess = c.Seq, 0
	w.st.setStatus(func(t *Status) { t.Cursor = c.Seq })
	w.st.sawSeq(c.Seq)
	return nil
}
