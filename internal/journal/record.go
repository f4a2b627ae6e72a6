package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const (
	// MaxRecordSize caps one record line, newline included.
	MaxRecordSize = 1 << 20
	// MaxDataSize is the largest data a record can carry: MaxRecordSize less the most the
	// other fields can take.
	MaxDataSize = MaxRecordSize - maxOverhead
	// MaxBatchSize caps the bytes one Append writes. Because appends are serialised and each
	// one syncs before the next begins, it also bounds the torn tail a crash can leave; a
	// bigger run of bad bytes at the end is damage, not a crash, and Append refuses to
	// touch it.
	MaxBatchSize = 16 << 20
)

// The fields of a line, in their fixed order. A fixed layout lets the hash cover exact bytes
// and lets a reader check a line without re-encoding any JSON.
const (
	keySeq  = `{"seq":`
	keyTime = `,"time":"`
	keyPrev = `","prev":"`
	keyData = `","data":`
	keyHash = `,"hash":"`
	keyEnd  = `"}`

	headerStart = `{"journal":"vmgate/1","anchor_seq":`
	headerHash  = `,"anchor":"`

	hashLen    = sha256.Size * 2
	timeLayout = time.RFC3339Nano
	// maxTimeLen is the longest time Append writes (years 0000 to 9999, nanoseconds, UTC).
	maxTimeLen  = len("2006-01-02T15:04:05.999999999Z")
	maxSeqLen   = len("18446744073709551615")
	hashSuffix  = len(keyHash) + hashLen + len(keyEnd)
	maxOverhead = len(keySeq) + maxSeqLen + len(keyTime) + maxTimeLen + len(keyPrev) + hashLen +
		len(keyData) + hashSuffix + 1
)

// zeroHash is the anchor of a new journal: the prev of its first record.
var zeroHash = strings.Repeat("0", hashLen)

// Kind names what is wrong with a line.
type Kind string

const (
	KindHeader     Kind = "header"     // the first line is not a journal header
	KindMalformed  Kind = "malformed"  // the line is not a record as Append writes it
	KindEdited     Kind = "edited"     // the record's bytes do not match its hash
	KindSeq        Kind = "seq"        // seq is not one more than the previous: removed or reordered
	KindPrev       Kind = "prev"       // prev is not the previous record's hash: removed, reordered or replaced
	KindIncomplete Kind = "incomplete" // the last line has no newline: a write was cut short
)

// fault is what parsing found wrong with one line.
type fault struct {
	kind   Kind
	detail string
}

func malformed(format string, args ...any) *fault {
	return &fault{kind: KindMalformed, detail: fmt.Sprintf(format, args...)}
}

// checkData refuses data that would not fit on one line of valid JSON.
func checkData(d []byte) error {
	if len(d) > MaxDataSize {
		return fmt.Errorf("%w: data is %d bytes, at most %d fit in a record of %d bytes",
			ErrTooLarge, len(d), MaxDataSize, MaxRecordSize)
	}
	if i := max(bytes.IndexByte(d, '\n'), bytes.IndexByte(d, '\r')); i >= 0 {
		return fmt.Errorf("%w: line break at byte %d (use json.Marshal, not MarshalIndent)", ErrInvalidData, i)
	}
	if !json.Valid(d) {
		return fmt.Errorf("%w: not valid JSON", ErrInvalidData)
	}
	// Blanks around the value would give a record a second spelling.
	if isBlank(d[0]) || isBlank(d[len(d)-1]) {
		return fmt.Errorf("%w: blanks around the JSON value", ErrInvalidData)
	}
	return nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// appendHeader appends the first line of a journal, which names the anchor: the seq and hash
// the first record follows.
func appendHeader(buf []byte, anchorSeq uint64, anchor string) []byte {
	buf = append(buf, headerStart...)
	buf = strconv.AppendUint(buf, anchorSeq, 10)
	buf = append(buf, headerHash...)
	buf = append(buf, anchor...)
	return append(buf, keyEnd+"\n"...)
}

// parseHeader reads a header line (without its newline).
func parseHeader(line []byte) (anchorSeq uint64, anchor string, f *fault) {
	bad := &fault{kind: KindHeader, detail: "first line is not a vmgate/1 journal header"}
	rest, ok := bytes.CutPrefix(line, []byte(headerStart))
	if !ok {
		return 0, "", bad
	}
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return 0, "", bad
	}
	anchorSeq, ok = parseSeq(rest[:i])
	if !ok {
		return 0, "", bad
	}
	rest, ok = bytes.CutPrefix(rest[i:], []byte(headerHash))
	if !ok || len(rest) != hashLen+len(keyEnd) || !isHex(rest[:hashLen]) || string(rest[hashLen:]) != keyEnd {
		return 0, "", bad
	}
	return anchorSeq, string(rest[:hashLen]), nil
}

// appendRecord appends one record line to buf and returns the record's hash, which covers
// the line from its first byte up to, not including, `,"hash":"`.
func appendRecord(buf []byte, seq uint64, t time.Time, prev string, data []byte) ([]byte, string) {
	start := len(buf)
	buf = append(buf, keySeq...)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, keyTime...)
	buf = t.AppendFormat(buf, timeLayout)
	buf = append(buf, keyPrev...)
	buf = append(buf, prev...)
	buf = append(buf, keyData...)
	buf = append(buf, data...)
	sum := sha256.Sum256(buf[start:])
	hash := hex.EncodeToString(sum[:])
	buf = append(buf, keyHash...)
	buf = append(buf, hash...)
	return append(buf, keyEnd+"\n"...), hash
}

// parseRecord checks that line (without its newline) is byte for byte a record as
// appendRecord writes it and that its hash matches. Data in the returned Entry shares line's
// memory.
func parseRecord(line []byte) (Entry, *fault) {
	var e Entry
	rest, ok := bytes.CutPrefix(line, []byte(keySeq))
	if !ok {
		return e, malformed("does not start with %s", keySeq)
	}
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return e, malformed("no seq")
	}
	if e.Seq, ok = parseSeq(rest[:i]); !ok {
		return e, malformed("bad seq %.30q", rest[:i])
	}
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(keyTime)); !ok {
		return e, malformed("no time after seq")
	}
	i = bytes.IndexByte(rest, '"')
	if i < 0 || i > maxTimeLen {
		return e, malformed("bad time")
	}
	t, err := time.Parse(timeLayout, string(rest[:i]))
	// Only the one spelling Append writes is accepted, so a line has exactly one form.
	if err != nil || t.Location() != time.UTC || t.Format(timeLayout) != string(rest[:i]) {
		return e, malformed("bad time %q", rest[:i])
	}
	e.Time = t
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(keyPrev)); !ok {
		return e, malformed("no prev after time")
	}
	if len(rest) < hashLen || !isHex(rest[:hashLen]) {
		return e, malformed("bad prev")
	}
	e.Prev = string(rest[:hashLen])
	if rest, ok = bytes.CutPrefix(rest[hashLen:], []byte(keyData)); !ok {
		return e, malformed("no data after prev")
	}
	// hash is last and has a fixed length, so data is everything before it.
	n := len(rest) - hashSuffix
	if n < 1 {
		return e, malformed("no data or no hash")
	}
	data, suffix := rest[:n], rest[n:]
	if !bytes.HasPrefix(suffix, []byte(keyHash)) || !bytes.HasSuffix(suffix, []byte(keyEnd)) ||
		!isHex(suffix[len(keyHash):len(keyHash)+hashLen]) {
		return e, malformed("does not end with the hash")
	}
	if err := checkData(data); err != nil {
		return e, malformed("data: %v", err)
	}
	e.Data = data
	e.Hash = string(suffix[len(keyHash) : len(keyHash)+hashLen])
	sum := sha256.Sum256(line[:len(line)-len(suffix)])
	if got := hex.EncodeToString(sum[:]); got != e.Hash {
		return e, &fault{kind: KindEdited, detail: fmt.Sprintf("content hashes to %.12s…, the record says %.12s…", got, e.Hash)}
	}
	return e, nil
}

// parseSeq accepts only the canonical decimal form, so that a record has one spelling.
func parseSeq(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > maxSeqLen || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	return n, err == nil
}

// isHex reports whether b is lower-case hex, the only case Append writes.
func isHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
