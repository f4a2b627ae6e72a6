// Package journal keeps an append-only, hash-chained journal of JSON records in one file.
// It holds the image-list history and the trace records the hook writes before it lets a VM
// start ("no record, no start"); `vmgate trace verify` checks it.
//
// # Format
//
// The file is JSON lines. The first line is a header naming the anchor, the seq and hash the
// first record follows:
//
//	{"journal":"vmgate/1","anchor_seq":0,"anchor":"000…000"}
//
// Every other line is a record:
//
//	{"seq":42,"time":"2026-11-20T10:00:00.123456789Z","prev":"<hash of record 41>","data":{…},"hash":"<hash>"}
//
// The keys always come in this order, with no spaces. seq goes up by exactly one from
// anchor_seq+1; prev is the hash of the record before, or the anchor for the first record;
// time is RFC 3339 in UTC with up to nine fraction digits; data is the caller's JSON, as
// given, on one line; hash is the lower-case hex SHA-256 of the line's bytes up to, not
// including, `,"hash":"`. Checking a record hashes those bytes as they are on disk: no JSON
// is re-encoded, and only the one spelling Append writes is accepted, so a line has exactly
// one valid form. A line is at most MaxRecordSize bytes.
//
// A new journal has the anchor 0 and 64 zeros; Prune moves it on (see Retention). Whoever
// replaces the file must rename the new one over it while holding the lock on the old one;
// Append notices the rename once it holds the lock and moves to the new file.
//
// # Guarantees
//
// When Append returns without an error its records are on disk (one write and one
// fdatasync per call, whatever the number of records) and chained to every record before
// them. When it returns an error, none of its records remain: a failed write or sync is cut
// back off (should that fail too, the error says so). Any number of processes and goroutines
// may append at once: an exclusive flock on the journal file is held while Append reads the
// last record, writes and syncs, so seqs never repeat or skip. Finding the last record reads
// backwards from the end and costs the same however long the journal is.
//
// A crash in the middle of an append can leave a torn tail: a last line without its newline,
// or lines at the end that are not valid records. The next Append, under the lock, copies
// those bytes to path + ".torn" behind a note, syncs them, cuts them off and tells
// Options.OnRepair (or logs a warning). Since appends are serialised and each syncs before
// the next, a crash can tear at most one append's bytes, MaxBatchSize. Append refuses to cut
// more than that, or a file that does not begin as a journal can, and returns ErrDamaged
// instead: that is damage or the wrong file, for a person to look at.
//
// Verify walks the chain and reports the first record that was edited (its bytes do not
// match its hash), removed or reordered (seq or prev do not follow), or the torn tail, which
// it keeps apart from tampering because a crash can leave it. Read and Verify run alongside
// appends: they read the journal as it was when they began. Nothing here keeps a root user
// from rewriting the whole chain; the hashes make changes evident to whoever holds a later
// hash, which is what shipping records off the host is for.
//
// # Retention
//
// Prune drops the oldest records, as a prefix: up to, not including, the first record the
// caller's keep accepts (trace retention keeps what is recent or not yet acknowledged by
// every SIEM sink). It writes a new file whose header is anchored on the last record dropped
// (its seq and hash, nothing else), followed by the kept lines byte for byte, and renames it
// over the journal. The dropped records are not kept on the host: the SIEM has them.
//
// Verify then checks the chain from the anchor on and reports AnchorSeq and Anchor. A
// journal alone cannot show what came before its anchor, nor that the anchor is genuine:
// whoever drops records and writes a header anchored on the last one dropped has a journal
// that verifies. So an auditor compares the anchor with the SIEM's copy: there, record
// AnchorSeq must have the hash Anchor. Read(path, from) with from <= anchor_seq starts at
// the first record kept, anchor_seq+1, without an error; a reader that keeps a cursor tells
// that it fell behind a prune from the first record's seq and prev, or from Verify's anchor.
//
// Prune checks every record it drops, and the first it keeps, and refuses (ErrDamaged, with
// the *Problem) if the chain breaks there: a new anchor must not hide tampering. A torn tail
// is moved aside first, as Append does. Pruning nothing does not write to the journal.
//
// Appends go on during most of a Prune: it reads the records to drop and copies the rest
// without the journal's lock, then takes it to copy what was appended meanwhile, sync, rename
// and sync the directory, and holds the new file's lock until then, so that no append lands
// in the old file or in a new one whose name a crash could still undo. Prunes of one
// journal take turns on the lock of the file they build, path + PruneSuffix. A crash before
// the rename leaves the journal as it was and that file, which nothing reads and the next
// Prune overwrites; a crash after it leaves the new journal.
package journal
