package journal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
)

// Read walks and hashes the whole journal to pass on records after a given seq: about ten
// seconds for 1,000,000 records, which a reader that only wants what is new (the trace index,
// the metrics of vmgate serve) would pay after every new record. So such a reader remembers
// a Position, where in the file its last record ends, and ReadAfter reads only what follows,
// checking each new line's hash and its chain to that record. Anything unexpected there (the
// file replaced by retention, a line that is not a record as the journal writes it) is
// ErrNotAtPosition, and the reader goes back to ReadPositions, which reports what is wrong.
//
// This relies on the journal's one spelling per record (doc.go): the length of a line
// follows from the record it holds.

// ErrNotAtPosition: the journal no longer continues a Position (the file was replaced, or the
// bytes there are not the next record of the chain); read the whole journal instead.
var ErrNotAtPosition = errors.New("journal does not continue the position: read the whole journal")

// Position is where a reader stands in a journal file: after the record Seq with Hash, whose
// line ends at Offset in the file FileID (device and inode, see FileID).
type Position struct {
	FileID string
	Offset int64
	Seq    uint64
	Hash   string
}

// FileID names a journal file by device and inode: retention replaces the file with another.
func FileID(fi os.FileInfo) string {
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", s.Dev, s.Ino)
	}
	return ""
}

// LineLen is the length of the journal line that holds e, newline included.
func LineLen(e *Entry) int64 {
	return int64(len(keySeq) + len(strconv.FormatUint(e.Seq, 10)) + len(keyTime) + len(e.Time.Format(timeLayout)) +
		len(keyPrev) + len(e.Prev) + len(keyData) + len(e.Data) + len(keyHash) + len(e.Hash) + len(keyEnd) + 1)
}

// HeaderLen is the length of the header line of a journal anchored at seq and hash.
func HeaderLen(seq uint64, hash string) int64 {
	return int64(len(headerStart) + len(strconv.FormatUint(seq, 10)) + len(headerHash) + len(hash) + len(keyEnd) + 1)
}

// ReadPositions is Read from the start, passing with each record the offset where its line
// ends in the file, which follows from the record since the journal writes each in one
// spelling only.
func ReadPositions(path string, fn func(e Entry, end int64) error) error {
	var end int64
	return Read(path, 0, func(e Entry) error {
		if end == 0 {
			end = HeaderLen(e.Seq-1, e.Prev)
		}
		end += LineLen(&e)
		return fn(e, end)
	})
}

// ReadAfter passes the records that follow pos in the journal at path to fn, with the offset
// where each ends. It returns ErrNotAtPosition when the file is not the one pos names or
// pos.Offset is not where that record ends, and when a line after it is not the next record
// of the chain. A last line without its newline ends the journal, as for Read: an append is
// under way, or a crash cut it short.
func ReadAfter(path string, pos Position, fn func(e Entry, end int64) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// The size while no append is under way, as Read takes it: a batch being written may yet
	// be cut back off.
	var fi os.FileInfo
	if err := whileShared(f, func() (err error) { fi, err = f.Stat(); return err }); err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	tailLen := int64(len(pos.Hash) + len(keyEnd) + 1)
	if pos.FileID == "" || FileID(fi) != pos.FileID || fi.Size() < pos.Offset || pos.Offset < tailLen {
		return ErrNotAtPosition
	}
	end := make([]byte, tailLen)
	if _, err := f.ReadAt(end, pos.Offset-tailLen); err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	if string(end) != pos.Hash+keyEnd+"\n" {
		return ErrNotAtPosition
	}
	offset, seq, hash := pos.Offset, pos.Seq, pos.Hash
	r := bufio.NewReaderSize(io.NewSectionReader(f, offset, fi.Size()-offset), 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return nil // nothing more, or a line still being written
		}
		if err != nil {
			return fmt.Errorf("journal %s: %w", path, err)
		}
		e, flt := parseRecord(bytes.TrimSuffix(line, []byte("\n")))
		if flt != nil || e.Seq != seq+1 || e.Prev != hash {
			return ErrNotAtPosition
		}
		offset += int64(len(line))
		if err := fn(e, offset); err != nil {
			return err
		}
		seq, hash = e.Seq, e.Hash
	}
}

// Follower reads a journal incrementally: each Next passes on the records appended since the
// previous one, reading only the new bytes while the file goes on where it left off. It is
// not safe for concurrent use.
type Follower struct {
	path string
	pos  Position
}

// NewFollower returns a Follower that has read nothing of the journal at path yet.
func NewFollower(path string) *Follower { return &Follower{path: path} }

// Position is where the follower stands.
func (fl *Follower) Position() Position { return fl.pos }

// Next passes every record after the follower's position to fn and moves the position over
// it. When the file does not continue the position (retention replaced it), Next reads it
// whole and passes on the records after the position's seq; restarted is true when even the
// seq does not hold (the record there has another hash: a different journal), and then every
// record is passed on again. A missing journal is no records yet.
func (fl *Follower) Next(fn func(Entry) error) (restarted bool, err error) {
	fi, err := os.Stat(fl.path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("journal: %w", err)
	}
	id := FileID(fi)
	pass := func(e Entry, end int64) error {
		if err := fn(e); err != nil {
			return err
		}
		fl.pos = Position{FileID: id, Offset: end, Seq: e.Seq, Hash: e.Hash}
		return nil
	}
	if fl.pos.Offset > 0 {
		err = ReadAfter(fl.path, fl.pos, pass)
		if !errors.Is(err, ErrNotAtPosition) {
			return false, err
		}
	}
	last := fl.pos
	var seen uint64 // the highest seq in the file
	err = ReadPositions(fl.path, func(e Entry, end int64) error {
		seen = e.Seq
		switch {
		case e.Seq == last.Seq && e.Hash != last.Hash:
			return errRestart
		case e.Seq > last.Seq:
			return pass(e, end)
		}
		fl.pos = Position{FileID: id, Offset: end, Seq: e.Seq, Hash: e.Hash}
		return nil
	})
	if err == nil && seen > 0 && seen < last.Seq {
		err = errRestart // a shorter journal than the one read before: another one
	}
	if errors.Is(err, errRestart) {
		fl.pos = Position{}
		_, err = fl.Next(fn)
		return true, err
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// errRestart: the journal is not the one a Follower read before.
var errRestart = errors.New("another journal")
