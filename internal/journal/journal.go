package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

var (
	// ErrInvalidData: the data given to Append is not one line of valid JSON.
	ErrInvalidData = errors.New("record data must be valid JSON on one line")
	// ErrTooLarge: a record or a batch is over MaxRecordSize or MaxBatchSize.
	ErrTooLarge = errors.New("too large")
	// ErrDamaged: the end of the journal is bad in a way no crash explains (more bytes than
	// one append writes, or a file that does not begin as a journal), so Append will not
	// cut it; `vmgate trace verify` shows where it breaks.
	ErrDamaged = errors.New("journal damaged")
	// ErrClosed: the Journal was closed.
	ErrClosed = errors.New("journal closed")
)

// Entry is one record, as Append returns it and Read passes it on.
type Entry struct {
	Seq  uint64          `json:"seq"`
	Time time.Time       `json:"time"`
	Prev string          `json:"prev"`
	Data json.RawMessage `json:"data"`
	Hash string          `json:"hash"`
}

// Options tune a Journal. The zero value is ready to use.
type Options struct {
	// Mode is the permission of a journal file that Open creates; 0600 when zero.
	Mode os.FileMode
	// Now is the clock that stamps records; time.Now when nil. Records carry it in UTC.
	Now func() time.Time
	// OnRepair is told when Append or Prune has moved a torn tail aside. When nil, they log
	// a warning with slog.Default: a repair is never silent.
	OnRepair func(Repair)
}

func (o Options) withDefaults() Options {
	if o.Mode == 0 {
		o.Mode = 0o600
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// report tells of a repair; it is called outside the locks.
func (o Options) report(r *Repair) {
	if r == nil {
		return
	}
	if o.OnRepair != nil {
		o.OnRepair(*r)
	} else {
		slog.Warn(r.String())
	}
}

// Repair tells what Append moved aside before appending: bytes at the end of the journal that
// held no valid record, as a crash in the middle of an append leaves them.
type Repair struct {
	Path     string    // the journal
	TornPath string    // where the bytes went: Path + ".torn", after a "#" note line
	Offset   int64     // where they began in the journal
	Size     int64     // how many bytes
	AfterSeq uint64    // the last good record, which they followed
	Reason   string    // what was wrong with the first of them
	Time     time.Time // when the repair was made
}

func (r Repair) String() string {
	return fmt.Sprintf("journal %s: moved %d torn bytes at offset %d (after seq %d: %s) to %s",
		r.Path, r.Size, r.Offset, r.AfterSeq, r.Reason, r.TornPath)
}

// Journal appends to one journal file. Its methods are safe for concurrent use, and any
// number of processes may append to the same file at once.
type Journal struct {
	path string
	opts Options

	// mu serialises this process's appends; flock does the same across processes, but not
	// between goroutines that share one open file.
	mu sync.Mutex
	f  *os.File // nil once closed
}

// Open opens the journal at path for appending, creating the file and its directory (0700)
// if missing. A new file stays empty until the first Append.
func Open(path string, opts Options) (*Journal, error) {
	opts = opts.withDefaults()
	f, err := openFile(path, opts.Mode)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &Journal{path: path, opts: opts, f: f}, nil
}

// Close closes the journal file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return ErrClosed
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// AppendMany adds any number of records, in as few batches as MaxBatchSize allows, each
// batch one write and one fdatasync. It returns how many records are durable: on an error,
// the batches before the failing one are in the journal and the rest are not.
func (j *Journal) AppendMany(data ...json.RawMessage) (int, error) {
	done, start, size := 0, 0, 0
	for i, d := range data {
		if i > start && size+len(d)+maxOverhead > MaxBatchSize {
			if _, err := j.Append(data[start:i]...); err != nil {
				return done, err
			}
			done, start, size = i, i, 0
		}
		size += len(d) + maxOverhead
	}
	if _, err := j.Append(data[start:]...); err != nil {
		return done, err
	}
	return len(data), nil
}

// Append adds one record per data, in order, with one write and one fdatasync for them all,
// and returns them once they are durable. Each data must be valid JSON without line breaks,
// at most MaxDataSize bytes, and a batch at most MaxBatchSize bytes.
//
// On an error nothing of the batch remains in the journal and every earlier record is kept,
// unless cutting the batch back off fails too, which the error then says; what is left is
// then whole records or a torn tail, which the next Append moves aside.
func (j *Journal) Append(data ...json.RawMessage) ([]Entry, error) {
	if len(data) == 0 {
		return nil, nil
	}
	size := 0 // at most what the records take
	for _, d := range data {
		size += len(d) + maxOverhead
	}
	if size > MaxBatchSize {
		return nil, fmt.Errorf("journal %s: append: %w: batch of %d records may take %d bytes, more than %d",
			j.path, ErrTooLarge, len(data), size, MaxBatchSize)
	}
	for i, d := range data {
		if err := checkData(d); err != nil {
			return nil, fmt.Errorf("journal %s: append record %d of %d: %w", j.path, i+1, len(data), err)
		}
	}
	entries, repair, err := j.append(data, size)
	j.opts.report(repair) // whatever became of the append
	if err != nil {
		return nil, fmt.Errorf("journal %s: append: %w", j.path, err)
	}
	return entries, nil
}

// append does Append's work under both locks. size is what the records may take.
func (j *Journal) append(data []json.RawMessage, size int) ([]Entry, *Repair, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil, nil, ErrClosed
	}
	if err := j.lock(); err != nil {
		return nil, nil, err
	}
	// Unlocking an open file cannot fail, and the records are durable by then anyway.
	defer flock(j.f, unlock)

	fi, err := j.f.Stat()
	if err != nil {
		return nil, nil, err
	}
	end := fi.Size()
	t, err := readTail(j.f, end)
	if err != nil {
		return nil, nil, err
	}
	var repair *Repair
	if t.end < end {
		if repair, err = j.moveAside(t, end); err != nil {
			return nil, nil, err
		}
		end = t.end
	}

	now := j.opts.Now().UTC()
	if y := now.Year(); y < 0 || y > 9999 {
		return nil, repair, fmt.Errorf("clock says %v, which a record cannot hold", now)
	}
	buf := make([]byte, 0, size+len(headerStart)+hashLen+32)
	if end == 0 {
		// A new journal, or one whose every byte was torn: begin with the header.
		buf = appendHeader(buf, t.seq, t.hash)
	}
	entries := make([]Entry, len(data))
	seq, prev := t.seq, t.hash
	for i, d := range data {
		seq++
		var hash string
		buf, hash = appendRecord(buf, seq, now, prev, d)
		entries[i] = Entry{Seq: seq, Time: now, Prev: prev, Data: append(json.RawMessage(nil), d...), Hash: hash}
		prev = hash
	}

	// The size check in Append is an estimate; this bound is what limits a torn tail.
	if len(buf) > MaxBatchSize {
		return nil, repair, fmt.Errorf("%w: batch takes %d bytes, more than %d", ErrTooLarge, len(buf), MaxBatchSize)
	}
	// The file is opened with O_APPEND and we hold the lock, so this lands at end.
	if _, err := j.f.Write(buf); err != nil {
		return nil, repair, j.undo(end, err)
	}
	if err := fdatasync(j.f); err != nil {
		return nil, repair, j.undo(end, err)
	}
	return entries, repair, nil
}

// undo cuts the journal back to size after a failed write or sync, so that no part of the
// batch stays behind to be mistaken for a record that was confirmed.
func (j *Journal) undo(size int64, err error) error {
	if terr := j.f.Truncate(size); terr != nil {
		return errors.Join(err, fmt.Errorf("truncate back to %d bytes: %w", size, terr))
	}
	return err
}

// lock takes the exclusive lock on the journal file. Whoever replaces the file (retention)
// renames a new one over it while holding the lock on the old one, so after waiting we check
// that we locked the file that is at path now, and move to the new one if not.
func (j *Journal) lock() error {
	for {
		if err := flock(j.f, lockExclusive); err != nil {
			return err
		}
		held, err := j.f.Stat()
		if err != nil {
			flock(j.f, unlock)
			return err
		}
		cur, err := os.Stat(j.path)
		if err == nil && os.SameFile(held, cur) {
			return nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			flock(j.f, unlock)
			return err
		}
		f, err := openFile(j.path, j.opts.Mode)
		if err != nil {
			flock(j.f, unlock)
			return err
		}
		j.f.Close() // also drops the lock
		j.f = f
	}
}

// openFile opens path for appending and creates it, and its directory, if missing. A new
// name is synced into its directory: otherwise a crash could take the file, and the records
// synced into it, away.
func openFile(path string, mode os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	dir := filepath.Dir(path)
	if err := mkdirAll(dir); err != nil {
		return nil, err
	}
	f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, mode)
	if err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// mkdirAll is os.MkdirAll(dir, 0700) that also syncs each new directory into its parent.
func mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := mkdirAll(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
