package journal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Report is what Verify found. The journal is intact when both Problem and Torn are nil.
type Report struct {
	AnchorSeq uint64 // the first record's seq is AnchorSeq+1
	Anchor    string // and its prev is Anchor: 64 zeros for a journal that was never pruned
	Records   int    // records that are intact, counted from the start
	LastSeq   uint64 // seq of the last intact record (AnchorSeq if none)
	LastHash  string // hash of the last intact record (Anchor if none)

	// Torn is set when the journal ends in bytes that hold no valid record, as a crash in
	// the middle of an append leaves them. It is not proof of tampering, nor of its absence
	// (someone could have mangled the last record). The next Append moves them aside.
	Torn *TornTail
	// Problem is the first line at which the chain breaks: a record edited, removed or
	// reordered, or damage that no crash explains. Nothing after it was checked.
	Problem *Problem
}

// Intact reports whether every byte of the journal belongs to a valid chain.
func (r Report) Intact() bool { return r.Problem == nil && r.Torn == nil }

func (r Report) String() string {
	s := fmt.Sprintf("%d records intact, last seq %d, last hash %s", r.Records, r.LastSeq, r.LastHash)
	if r.AnchorSeq != 0 || r.Anchor != zeroHash {
		s += fmt.Sprintf(", anchored at seq %d hash %s", r.AnchorSeq, r.Anchor)
	}
	switch {
	case r.Problem != nil:
		s += "; BROKEN: " + r.Problem.Error()
	case r.Torn != nil:
		s += "; " + r.Torn.String()
	}
	return s
}

// Problem is a line where the chain breaks.
type Problem struct {
	Line   int    // line number, from 1 (the header)
	Offset int64  // byte offset of the line
	Seq    uint64 // the seq the line has, or the one expected there when it cannot be read
	Kind   Kind
	Detail string
}

func (p *Problem) Error() string {
	return fmt.Sprintf("line %d (seq %d, offset %d): %s: %s", p.Line, p.Seq, p.Offset, p.Kind, p.Detail)
}

// TornTail is the end of a journal that holds no valid record: an incomplete last line, and
// complete lines before it that are not valid records, with no valid record after them.
type TornTail struct {
	Line   int   // first torn line
	Offset int64 // where the torn bytes begin
	Size   int64 // how many there are
	Kind   Kind  // what is wrong with the first torn line
	Detail string
}

func (t *TornTail) String() string {
	return fmt.Sprintf("torn tail: %d bytes from line %d (offset %d): %s: %s", t.Size, t.Line, t.Offset, t.Kind, t.Detail)
}

// Verify walks the whole chain of the journal at path and reports the first place where it
// breaks. The error is for failing to read the file; what is wrong with its content is in the
// Report. Appends may go on meanwhile: Verify checks the journal as it was when it began.
func Verify(path string) (Report, error) {
	f, size, err := openSnapshot(path)
	if err != nil {
		return Report{}, err
	}
	defer f.Close()
	rep, err := walk(io.NewSectionReader(f, 0, size), nil)
	if err != nil {
		return rep, fmt.Errorf("journal %s: verify: %w", path, err)
	}
	return rep, nil
}

// Read calls fn for each record with seq >= from, in order, in constant memory; in a pruned
// journal, a from at or below the anchor starts at the first record kept. Every record
// it passes on is intact and chained to the ones before it, from the header on. It stops at
// the first error from fn and returns it as is, and at the first Problem, which it returns as
// a *Problem. A torn tail ends the journal without an error (Verify reports it; the next
// Append repairs it).
func Read(path string, from uint64, fn func(Entry) error) error {
	f, size, err := openSnapshot(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var fnErr error
	rep, err := walk(io.NewSectionReader(f, 0, size), func(e Entry) bool {
		if e.Seq < from {
			return true
		}
		fnErr = fn(e)
		return fnErr == nil
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return fmt.Errorf("journal %s: read: %w", path, err)
	case rep.Problem != nil:
		return fmt.Errorf("journal %s: %w", path, rep.Problem)
	}
	return nil
}

// openSnapshot opens the journal for reading and returns its size at a moment when no
// append was under way, so that a half-written batch is not mistaken for a torn tail. The
// shared lock is held only for that moment: a long verify must not hold up VM starts.
func openSnapshot(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("journal: %w", err)
	}
	var size int64
	err = whileShared(f, func() error {
		fi, err := f.Stat()
		if err == nil {
			size = fi.Size()
		}
		return err
	})
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("journal: %w", err)
	}
	return f, size, nil
}

// whileShared runs fn under a shared lock on f: no append is under way meanwhile.
func whileShared(f *os.File, fn func() error) error {
	if err := flock(f, lockShared); err != nil {
		return err
	}
	defer flock(f, unlock)
	return fn()
}

// walk checks the journal in r line by line and passes each intact record to fn (when not
// nil) until fn returns false. The error is for failing to read r.
//
// After the first bad line it reads on only to tell a torn tail from damage: it is a torn
// tail when no valid record follows, it is no bigger than one append and, if it includes the
// header, the file begins as a torn journal can. Append decides what to move aside by the
// same rule.
func walk(r io.Reader, fn func(Entry) bool) (Report, error) {
	rep := Report{Anchor: zeroHash, LastHash: zeroHash}
	br := bufio.NewReaderSize(r, 64<<10)
	start, _ := br.Peek(len(headerStart))
	start = bytes.Clone(start)
	lr := lineReader{r: br}
	var bad *Problem // the first bad line, until we know whether it is a torn tail
	for {
		l, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, err
		}
		if bad != nil {
			if _, f := parseLine(l); f == nil {
				rep.Problem = bad
				return rep, nil
			}
			continue
		}

		e, f := parseLine(l)
		if f != nil {
			bad = &Problem{Line: l.num, Offset: l.off, Kind: f.kind, Detail: f.detail}
			if l.num > 1 {
				bad.Seq = rep.LastSeq + 1
			}
			continue
		}
		if l.num == 1 {
			rep.AnchorSeq, rep.Anchor = e.Seq, e.Hash
			rep.LastSeq, rep.LastHash = e.Seq, e.Hash
			continue
		}
		if f := chainFault(e, rep.LastSeq, rep.LastHash); f != nil {
			rep.Problem = &Problem{Line: l.num, Offset: l.off, Seq: e.Seq, Kind: f.kind, Detail: f.detail}
			return rep, nil
		}
		rep.Records++
		rep.LastSeq, rep.LastHash = e.Seq, e.Hash
		if fn != nil {
			e.Data = bytes.Clone(e.Data)
			if !fn(e) {
				return rep, nil
			}
		}
	}
	if bad != nil {
		torn := lr.off - bad.Offset
		switch {
		case torn > MaxBatchSize:
			bad.Detail += fmt.Sprintf("; no valid record in the %d bytes from here to the end, more than one append writes", torn)
			rep.Problem = bad
		case bad.Line == 1 && !couldBeTornStart(start):
			bad.Detail = "the file does not begin like a vmgate journal"
			rep.Problem = bad
		default:
			rep.Torn = &TornTail{Line: bad.Line, Offset: bad.Offset, Size: torn, Kind: bad.Kind, Detail: bad.Detail}
		}
	}
	return rep, nil
}

// chainFault tells what is wrong when e does not come right after the record with seq and
// hash (or the anchor).
func chainFault(e Entry, seq uint64, hash string) *fault {
	if want := seq + 1; e.Seq != want {
		what := "records removed"
		if e.Seq < want {
			what = "records reordered or repeated"
		}
		return &fault{kind: KindSeq, detail: fmt.Sprintf("seq %d where %d was due: %s", e.Seq, want, what)}
	}
	if e.Prev != hash {
		return &fault{kind: KindPrev, detail: fmt.Sprintf("prev %.12s… is not the hash %.12s… of the record before: records removed, reordered or replaced", e.Prev, hash)}
	}
	return nil
}

// parseLine checks a line as lineReader returns it. The header, line 1, comes back as the
// Entry the first record follows: the anchor's seq and hash.
func parseLine(l line) (Entry, *fault) {
	switch {
	case !l.complete:
		return Entry{}, &fault{kind: KindIncomplete, detail: "the last line has no newline"}
	case l.tooLong:
		return Entry{}, malformed("line longer than %d bytes", MaxRecordSize)
	case l.num == 1:
		seq, anchor, f := parseHeader(l.b)
		return Entry{Seq: seq, Hash: anchor}, f
	}
	return parseRecord(l.b)
}

type line struct {
	b        []byte // without the newline; nil when tooLong
	off      int64  // offset of the line's first byte
	num      int    // line number, from 1
	complete bool   // ends with a newline
	tooLong  bool   // longer than MaxRecordSize: its bytes were skipped, not kept
}

// lineReader splits a journal into lines in constant memory.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
	off int64 // offset of the next line
	num int
}

// next returns the next line, valid until the following call, or io.EOF.
func (lr *lineReader) next() (line, error) {
	l := line{off: lr.off, num: lr.num + 1}
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.r.ReadSlice('\n')
		lr.off += int64(len(chunk))
		if !l.tooLong {
			if len(lr.buf)+len(chunk) > MaxRecordSize {
				l.tooLong = true
				lr.buf = lr.buf[:0]
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		switch {
		case err == nil:
			l.complete = true
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if lr.off == l.off {
				return l, io.EOF
			}
		default:
			return l, err
		}
		lr.num++
		if !l.tooLong {
			l.b = lr.buf
			if l.complete {
				l.b = l.b[:len(l.b)-1]
			}
		}
		return l, nil
	}
}
