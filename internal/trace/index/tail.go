package index

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/vmgate/vmgate/internal/journal"
)

// journal.Read walks and hashes the whole journal to pass on records after a given seq: about
// ten seconds for 1,000,000 records, which `vmgate trace query` would pay after every new
// record. So the index remembers where in the file its last record ends, and reads only what
// follows, checking each new line's hash and its chain to the last record indexed. Anything
// unexpected there (the file replaced, a line that is not a record as the journal writes it)
// sends Update back to journal.Read, which reports what is wrong.
//
// This relies on the journal's one spelling per record (internal/journal/doc.go): the length
// of a line follows from the record it holds.

// errFallback: reading from the offset did not work out; read the whole journal instead.
var errFallback = errors.New("read the whole journal")

const (
	hashKey  = `,"hash":"`
	lineTail = `"}` + "\n"
)

// lineLen is the length of the journal line that holds e, newline included.
func lineLen(e *journal.Entry) int64 {
	n := len(`{"seq":`) + len(strconv.FormatUint(e.Seq, 10)) + len(`,"time":"`) + len(e.Time.Format(time.RFC3339Nano)) +
		len(`","prev":"`) + len(e.Prev) + len(`","data":`) + len(e.Data) + len(hashKey) + len(e.Hash) + len(lineTail)
	return int64(n)
}

// headerLen is the length of the header line of a journal anchored at seq and hash.
func headerLen(seq uint64, hash string) int64 {
	return int64(len(`{"journal":"vmgate/1","anchor_seq":`) + len(strconv.FormatUint(seq, 10)) + len(`,"anchor":"`) +
		len(hash) + len(lineTail))
}

// fileID names the journal file (device and inode): retention replaces it with another.
func fileID(fi os.FileInfo) string {
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", s.Dev, s.Ino)
	}
	return ""
}

// readAfter passes the records that follow offset in the journal at path to fn, with the
// offset where each ends, given that the record before offset has seq and hash. It returns
// errFallback when the file is not the one id names or offset is not where that record
// ends, and when a line after it is not the next record of the chain. A last line without
// its newline ends the journal, as for journal.Read: an append is under way, or a crash cut
// it short.
func readAfter(path, id string, offset int64, seq uint64, hash string, fn func(e journal.Entry, end int64) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	// The size while no append is under way, as journal.Read takes it: a batch being
	// written may yet be cut back off.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		return err
	}
	fi, err := f.Stat()
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	if err != nil {
		return err
	}
	if fileID(fi) != id || id == "" || fi.Size() < offset || offset < int64(len(hash)+len(lineTail)) {
		return errFallback
	}
	end := make([]byte, len(hash)+len(lineTail))
	if _, err := f.ReadAt(end, offset-int64(len(end))); err != nil {
		return err
	}
	if string(end) != hash+lineTail {
		return errFallback
	}

	r := bufio.NewReaderSize(io.NewSectionReader(f, offset, fi.Size()-offset), 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return nil // nothing more, or a line still being written
		}
		if err != nil {
			return err
		}
		e, ok := parseLine(line)
		if !ok || e.Seq != seq+1 || e.Prev != hash {
			return errFallback
		}
		offset += int64(len(line))
		if err := fn(e, offset); err != nil {
			return err
		}
		seq, hash = e.Seq, e.Hash
	}
}

// parseLine reads one journal line (with its newline) and checks its hash. ok is false for
// anything but a record as the journal writes it.
func parseLine(line []byte) (journal.Entry, bool) {
	var l struct {
		Seq  uint64          `json:"seq"`
		Time time.Time       `json:"time"`
		Prev string          `json:"prev"`
		Data json.RawMessage `json:"data"`
		Hash string          `json:"hash"`
	}
	i := bytes.LastIndex(line, []byte(hashKey))
	if i < 0 || json.Unmarshal(line, &l) != nil {
		return journal.Entry{}, false
	}
	sum := sha256.Sum256(line[:i])
	e := journal.Entry{Seq: l.Seq, Time: l.Time, Prev: l.Prev, Data: l.Data, Hash: l.Hash}
	// The length check holds the line to the one spelling: keys in order, no spaces.
	if hex.EncodeToString(sum[:]) != l.Hash || string(line[i:]) != hashKey+l.Hash+lineTail || lineLen(&e) != int64(len(line)) {
		return journal.Entry{}, false
	}
	return e, true
}
