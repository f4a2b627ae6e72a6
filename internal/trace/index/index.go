// Package index keeps a queryable SQLite index of the trace records, under
// <state_dir>/trace/index.db, built from the trace journal (<state_dir>/trace/journal.jsonl).
//
// The journal is the record; the index is a cache of it that answers `vmgate trace query`
// in milliseconds where a walk of the journal takes seconds. Update indexes what was
// appended since the last call, Rebuild starts again from the whole journal, and an index
// that is damaged, missing, of another layout or out of step with the journal (replaced,
// rewritten) is built again rather than reported: it never stands between a security team
// and the records.
//
// Besides the records, the index derives VM lifetimes: when each domain ran on each host,
// under which owner, with which image and addresses. They answer "which VM held this
// address at that instant".
//
// The hook never links this package (it would bring SQLite into every VM start); only the
// vmgate command does.
package index

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

// Path is where a node keeps the index of its trace journal.
func Path(stateDir string) string { return filepath.Join(stateDir, "trace", "index.db") }

// Options tune an Index. The zero value is ready to use.
type Options struct {
	// Logger is told when the index is built again because it was damaged or no longer
	// matched the journal; slog.Default when nil. A rebuild is never silent.
	Logger *slog.Logger
}

// Index is the SQLite index of one trace journal. Its methods are safe for concurrent use
// (they take turns), and any number of processes may use the same index at once: SQLite's
// locks serialise the updates, and queries read a consistent state while one runs.
type Index struct {
	path    string
	journal string
	log     *slog.Logger

	mu sync.Mutex // held by each method: a rebuild after damage replaces db
	db *sql.DB
}

// Stats says what Update or Rebuild did.
type Stats struct {
	Records  int           // records indexed by this call
	LastSeq  uint64        // the last record in the index
	Rebuilt  bool          // the index was built again from the start of the journal
	Reason   string        // why, when it was
	Duration time.Duration // how long the call took
}

// errBadSchema: the file is an SQLite database but not an index of this layout.
var errBadSchema = errors.New("not a vmgate trace index of schema " + schemaVersion)

// errMismatch: the journal no longer holds the records the index was built from.
var errMismatch = errors.New("the journal does not hold the last record indexed (replaced or rewritten)")

// Open opens the index of the trace journal under stateDir, creating it if missing. A file
// that is not an index of ours, or is damaged where opening reads it, is removed and a new
// index started: the next Update builds it from the journal. Damage found later, by a query
// or an update, is handled the same way there.
func Open(ctx context.Context, stateDir string, opts Options) (*Index, error) {
	return OpenFiles(ctx, Path(stateDir), trace.JournalPath(stateDir), opts)
}

// OpenFiles is Open with the index and journal paths given apart.
func OpenFiles(ctx context.Context, path, journalPath string, opts Options) (*Index, error) {
	ix := &Index{path: path, journal: journalPath, log: opts.Logger}
	if ix.log == nil {
		ix.log = slog.Default()
	}
	// The index holds user names and addresses: private to root, like the journal.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("trace index: %w", err)
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("trace index: %w", err)
	}
	defer unlock()
	err = ix.openDB(ctx)
	if isDamaged(err) {
		err = ix.recreate(ctx, err)
	}
	if err != nil {
		return nil, fmt.Errorf("trace index %s: %w", path, err)
	}
	return ix, nil
}

// lockFile takes an exclusive lock on the file at path, creating it. Opening, creating and
// removing the database happen under it: two processes that find no index must not both
// set it up, and a damaged one must not be removed while another process creates the new one.
// (The lock cannot be on the database file: closing any descriptor of it would drop SQLite's
// own POSIX locks in this process.)
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing drops the lock
}

// Close closes the database.
func (ix *Index) Close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.db == nil {
		return nil
	}
	err := ix.db.Close()
	ix.db = nil
	return err
}

// dsn names the database file with the settings every connection needs. (WAL, which lets
// queries read while an update writes, is set once when the file is made: it stays.) NORMAL
// sync is enough for a cache that can be built again; updates take the write lock when they
// begin, so that two never index the same records; a writer waits for another (a rebuild of
// a large journal takes a minute) rather than fail.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(120000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "cache_size(-65536)") // 64 MiB, where index builds sort
	q.Set("_txlock", "immediate")
	return (&url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}).String()
}

// openDB opens the database and checks that it is an index of this layout, creating the
// tables in a new one. The caller holds the lock file.
func (ix *Index) openDB(ctx context.Context) error {
	// Created here so that it is 0600; SQLite would use 0644. Its -wal and -shm files take
	// the same mode. A WAL or rollback journal that a deleted index left behind is removed
	// by SQLite when it finds the database empty, so it cannot be replayed into this one.
	f, err := os.OpenFile(ix.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrExist) {
		return err
	}
	db, err := sql.Open("sqlite", dsn(ix.path))
	if err != nil {
		return err
	}
	ix.db = db
	if err := ix.checkSchema(ctx); err != nil {
		db.Close()
		ix.db = nil
		return err
	}
	return nil
}

// checkSchema reads the layout version, which reads the file's first pages: a file that is
// not SQLite, or whose schema is damaged, fails here. An empty file gets the tables.
func (ix *Index) checkSchema(ctx context.Context) error {
	var n int
	if err := ix.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		// Before the first table and before WAL, the only times a page size can be set.
		// 16 KiB pages, four times the default, take a quarter of the reads and writes
		// to load and index a journal's records.
		if _, err := ix.db.ExecContext(ctx, `PRAGMA page_size = 16384`); err != nil {
			return err
		}
		if _, err := ix.db.ExecContext(ctx, `PRAGMA journal_mode = WAL`); err != nil {
			return err
		}
		tx, err := ix.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := createSchema(ctx, tx); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	var v string
	err := ix.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'schema'`).Scan(&v)
	switch {
	case err == nil && v == schemaVersion:
		return nil
	case err == nil:
		return fmt.Errorf("%w: schema %q", errBadSchema, v)
	case errors.Is(err, sql.ErrNoRows) || sqliteCode(err) == sqlite3.SQLITE_ERROR: // no meta table
		return fmt.Errorf("%w: %v", errBadSchema, err)
	}
	return err
}

func createSchema(ctx context.Context, tx *sql.Tx) error {
	for _, s := range append(tables, indexes...) {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)`, schemaVersion)
	return err
}

// reset removes a damaged index and starts an empty one; the caller fills it.
func (ix *Index) reset(ctx context.Context, cause error) error {
	unlock, err := lockFile(ix.path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	return ix.recreate(ctx, cause)
}

// recreate is reset under the lock.
func (ix *Index) recreate(ctx context.Context, cause error) error {
	ix.log.Warn("trace index damaged: building it again from the journal", "index", ix.path, "cause", cause)
	if ix.db != nil {
		ix.db.Close()
		ix.db = nil
	}
	if err := os.Remove(ix.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return ix.openDB(ctx)
}

// isDamaged reports whether err says the database file is damaged, not a database, or not
// an index of ours: what only building it again cures.
func isDamaged(err error) bool {
	if err == nil {
		return false
	}
	switch sqliteCode(err) {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return true
	}
	return errors.Is(err, errBadSchema)
}

// sqliteCode is the primary SQLite result code in err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff // extended codes keep the primary code in the low byte
	}
	return 0
}

// Update indexes the records appended to the journal since the last call, in one
// transaction. It reads nothing when the journal file is unchanged. When the journal no
// longer holds the last record indexed (it was replaced or rewritten), or the index is
// damaged, it builds the index again from the whole journal.
//
// When the journal's hash chain breaks, Update indexes the records before the break and
// returns an error that wraps the *journal.Problem; the index is usable all the same.
// A journal that does not exist yet holds no records.
func (ix *Index) Update(ctx context.Context) (Stats, error) {
	return ix.run(ctx, false)
}

// Rebuild builds the index again from the whole journal, in one transaction: queries see
// the old index until it is done. `vmgate trace reindex` runs it.
func (ix *Index) Rebuild(ctx context.Context) (Stats, error) {
	return ix.run(ctx, true)
}

func (ix *Index) run(ctx context.Context, rebuild bool) (Stats, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.db == nil {
		return Stats{}, errors.New("trace index: closed")
	}
	start := time.Now()
	st, err := ix.update(ctx, rebuild)
	if damage := err; isDamaged(damage) {
		if err := ix.reset(ctx, damage); err != nil {
			return st, fmt.Errorf("trace index %s: %w", ix.path, err)
		}
		st, err = ix.update(ctx, true)
		st.Rebuilt, st.Reason = true, "index damaged: "+damage.Error()
	}
	st.Duration = time.Since(start)
	if err != nil {
		var p *journal.Problem
		if !errors.As(err, &p) {
			err = fmt.Errorf("trace index %s: %w", ix.path, err)
		}
	}
	return st, err
}

// meta is what the index knows of the journal it was built from.
type meta struct {
	lastSeq   uint64
	lastHash  string
	anchorSeq uint64 // the journal's anchor when last read: the index holds nothing before it
	stamp     string // the journal file as it was when last read through: see journalStamp
	fileID    string // the journal file then
	offset    int64  // where the last record indexed ends in it; 0 when unknown
}

func readMeta(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) (meta, error) {
	var m meta
	rows, err := q.QueryContext(ctx, `SELECT key, value FROM meta`)
	if err != nil {
		return m, err
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return m, err
		}
		switch k {
		case "last_seq":
			fmt.Sscan(v, &m.lastSeq)
		case "last_hash":
			m.lastHash = v
		case "anchor_seq":
			fmt.Sscan(v, &m.anchorSeq)
		case "journal_stamp":
			m.stamp = v
		case "journal_id":
			m.fileID = v
		case "journal_offset":
			fmt.Sscan(v, &m.offset)
		}
	}
	return m, rows.Err()
}

// journalStamp identifies the journal file and its length: any append changes it, and
// replacing the file does too. id is the file's alone (see fileID). Both are empty when
// there is no journal.
func journalStamp(path string) (stamp, id string, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	id = fileID(fi)
	return fmt.Sprintf("%s:%d:%d", id, fi.Size(), fi.ModTime().UnixNano()), id, nil
}

func (ix *Index) update(ctx context.Context, rebuild bool) (Stats, error) {
	return ix.updateFrom(ctx, rebuild, true)
}

// updateFrom is update; tail says it may read only what follows the last record indexed.
func (ix *Index) updateFrom(ctx context.Context, rebuild, tail bool) (Stats, error) {
	// Taken before reading: records appended meanwhile change the file again, so the next
	// Update reads them.
	stamp, id, err := journalStamp(ix.journal)
	if err != nil {
		return Stats{}, err
	}
	if !rebuild {
		// Without the write lock: the common case, nothing new, costs one read.
		m, err := readMeta(ctx, ix.db)
		if err != nil {
			return Stats{}, err
		}
		if stamp != "" && m.stamp == stamp {
			return Stats{LastSeq: m.lastSeq}, nil
		}
	}

	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return Stats{}, err
	}
	defer tx.Rollback()
	if rebuild {
		for _, s := range dropAll {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return Stats{}, err
			}
		}
		for _, s := range tables {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return Stats{}, err
			}
		}
	}
	m, err := readMeta(ctx, tx)
	if err != nil {
		return Stats{}, err
	}
	if !rebuild && stamp != "" && m.stamp == stamp {
		return Stats{LastSeq: m.lastSeq}, nil // another process indexed them while we waited
	}

	ing, err := newIngester(ctx, tx, rebuild)
	if err != nil {
		return Stats{}, err
	}
	defer ing.close()

	// Every record up to the last one indexed is passed over; that one must still be there
	// with its hash, or, when retention dropped it, be the anchor of the first one after.
	var sawLast, sawNew bool
	var end int64 // where the last record read ends in the file
	check := func(e journal.Entry, e2 int64) error {
		end = e2
		switch {
		case e.Seq < m.lastSeq:
			return errSkip
		case e.Seq == m.lastSeq:
			if e.Hash != m.lastHash {
				return errMismatch
			}
			sawLast = true
			return errSkip
		case !sawNew && !sawLast && m.lastSeq > 0 && (e.Seq != m.lastSeq+1 || e.Prev != m.lastHash):
			return errMismatch
		}
		sawNew = true
		return nil
	}
	var read func(fn func(journal.Entry, int64) error) error
	if tail && !rebuild && m.offset > 0 && m.lastSeq > 0 {
		sawLast = true
		read = func(fn func(journal.Entry, int64) error) error {
			return readAfter(ix.journal, m.fileID, m.offset, m.lastSeq, m.lastHash, fn)
		}
	} else {
		read = func(fn func(journal.Entry, int64) error) error { return readWhole(ix.journal, fn) }
	}
	err = readJournal(ctx, read, check, ing.add)
	var problem *journal.Problem
	switch {
	case errors.Is(err, errFallback):
		tx.Rollback()
		return ix.updateFrom(ctx, rebuild, false)
	case errors.Is(err, errMismatch) || err == nil && !sawLast && !sawNew && m.lastSeq > 0 && !anchoredAt(ix.journal, m.lastSeq, m.lastHash):
		tx.Rollback()
		ix.log.Warn("trace index no longer matches the journal: building it again", "index", ix.path,
			"journal", ix.journal, "last_seq", m.lastSeq)
		st, err := ix.update(ctx, true)
		st.Rebuilt, st.Reason = true, errMismatch.Error()
		return st, err
	case errors.Is(err, fs.ErrNotExist):
		if !rebuild {
			return Stats{LastSeq: m.lastSeq}, nil // no journal, no records yet
		}
		err = nil // commit the empty index
	case errors.As(err, &problem):
		// Keep what came before the break; the error goes to the caller once it is stored.
	case err != nil:
		return Stats{}, err
	}
	readErr := err
	if err := ing.flush(); err != nil {
		return Stats{}, err
	}
	if rebuild {
		for _, s := range indexes {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return Stats{}, err
			}
		}
	}
	last, hash := m.lastSeq, m.lastHash
	if ing.n > 0 {
		last, hash = ing.lastSeq, ing.lastHash
	}
	if end == 0 {
		end = m.offset // nothing read: the last record is where it was
	}
	kv := map[string]string{"schema": schemaVersion, "last_seq": fmt.Sprint(last), "last_hash": hash,
		"journal_stamp": stamp, "journal_id": id, "journal_offset": fmt.Sprint(end)}
	// Retention keeps the index no longer than the journal: what it pruned goes here too.
	if anchor, _, ok := journalAnchor(ix.journal); ok && anchor > m.anchorSeq {
		if !rebuild {
			for _, s := range dropThrough {
				if _, err := tx.ExecContext(ctx, s, anchor); err != nil {
					return Stats{}, err
				}
			}
		}
		kv["anchor_seq"] = fmt.Sprint(anchor)
	}
	if readErr != nil {
		// Read the whole journal again next time, and report the break again.
		kv["journal_stamp"], kv["journal_offset"] = "", "0"
	}
	for k, v := range kv {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)`, k, v); err != nil {
			return Stats{}, err
		}
	}
	if err := tx.Commit(); err != nil {
		return Stats{}, err
	}
	return Stats{Records: ing.n, LastSeq: last, Rebuilt: rebuild}, readErr
}

// readWhole passes every record of the journal to fn with the offset where its line ends.
func readWhole(path string, fn func(journal.Entry, int64) error) error {
	return journal.ReadPositions(path, fn)
}

// errSkip tells readJournal to pass a record over.
var errSkip = errors.New("skip")

// decoded is a journal record and its data read as a trace record. ok is false for data that
// is not a trace record as this version knows it.
type decoded struct {
	journal.Entry
	rec trace.Record
	ok  bool
}

// readJournal runs read and passes each record that check lets through (errSkip passes over
// one) to add, with its data decoded. Reading, checking the hashes and decoding JSON take
// about as long as adding a record to SQLite, so they run in a goroutine of their own, ahead
// of add.
func readJournal(ctx context.Context, read func(func(journal.Entry, int64) error) error,
	check func(journal.Entry, int64) error, add func(*decoded) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan []decoded, 4)
	var readErr error
	go func() {
		defer close(ch)
		const chunk = 256 // records handed over at a time: a send per record costs too much
		batch := make([]decoded, 0, chunk)
		send := func() error {
			select {
			case ch <- batch:
				batch = make([]decoded, 0, chunk)
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		readErr = read(func(e journal.Entry, end int64) error {
			if err := check(e, end); err == errSkip {
				return nil
			} else if err != nil {
				return err
			}
			d := decoded{Entry: e}
			d.ok = json.Unmarshal(e.Data, &d.rec) == nil
			batch = append(batch, d)
			if len(batch) == chunk {
				return send()
			}
			return nil
		})
		var p *journal.Problem
		if len(batch) > 0 && (readErr == nil || errors.As(readErr, &p)) {
			if err := send(); err != nil && readErr == nil {
				readErr = err
			}
		}
	}()
	var addErr error
	for batch := range ch {
		for i := 0; i < len(batch) && addErr == nil; i++ {
			if addErr = add(&batch[i]); addErr != nil {
				cancel() // stop the reader; the loop drains what it sent
			}
		}
	}
	if addErr != nil {
		return addErr
	}
	return readErr // the reader is done: ch is closed
}

// journalAnchor reads the journal's header: the seq and hash its first record follows, which
// retention moves on as it drops old records.
func journalAnchor(path string) (seq uint64, hash string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", false
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadBytes('\n')
	if err != nil {
		return 0, "", false
	}
	var h struct {
		Journal   string `json:"journal"`
		AnchorSeq uint64 `json:"anchor_seq"`
		Anchor    string `json:"anchor"`
	}
	if json.Unmarshal(line, &h) != nil || h.Journal == "" {
		return 0, "", false
	}
	return h.AnchorSeq, h.Anchor, true
}

// anchoredAt reports whether the journal at path begins right after seq and hash: retention
// dropped every record up to the last one indexed, and none came since.
func anchoredAt(path string, seq uint64, hash string) bool {
	a, h, ok := journalAnchor(path)
	return ok && a == seq && h == hash
}

// dropThrough removes from the index what retention dropped from the journal: the records
// up to seq, and the lifetimes that ended by then. A lifetime still open at the anchor stays.
var dropThrough = []string{
	`DELETE FROM records WHERE seq <= ?1`,
	`DELETE FROM record_data WHERE seq <= ?1`,
	`DELETE FROM record_ips WHERE seq <= ?1`,
	`DELETE FROM record_macs WHERE seq <= ?1`,
	`DELETE FROM record_images WHERE seq <= ?1`,
	`DELETE FROM lifetime_ips WHERE lifetime IN (SELECT id FROM lifetimes WHERE end_seq <= ?1)`,
	`DELETE FROM lifetime_macs WHERE lifetime IN (SELECT id FROM lifetimes WHERE end_seq <= ?1)`,
	`DELETE FROM lifetime_images WHERE lifetime IN (SELECT id FROM lifetimes WHERE end_seq <= ?1)`,
	`DELETE FROM lifetime_spans WHERE id IN (SELECT id FROM lifetimes WHERE end_seq <= ?1)`,
	`DELETE FROM lifetimes WHERE end_seq <= ?1`,
	`DELETE FROM pending WHERE seq <= ?1`,
}
