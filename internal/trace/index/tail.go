package index

import (
	"os"

	"github.com/vmgate/vmgate/internal/journal"
)

// journal.Read walks and hashes the whole journal to pass on records after a given seq: about
// ten seconds for 1,000,000 records, which `vmgate trace query` would pay after every new
// record. So the index remembers where in the file its last record ends, and reads only what
// follows with journal.ReadAfter. Anything unexpected there (the file replaced, a line that
// is not a record as the journal writes it) sends Update back to journal.Read, which reports
// what is wrong.

// errFallback: reading from the offset did not work out; read the whole journal instead.
var errFallback = journal.ErrNotAtPosition

// fileID names the journal file (device and inode): retention replaces it with another.
func fileID(fi os.FileInfo) string { return journal.FileID(fi) }

// readAfter passes the records that follow offset in the journal at path to fn, with the
// offset where each ends, given that the record before offset has seq and hash.
func readAfter(path, id string, offset int64, seq uint64, hash string, fn func(e journal.Entry, end int64) error) error {
	return journal.ReadAfter(path, journal.Position{FileID: id, Offset: offset, Seq: seq, Hash: hash}, fn)
}
