package journal

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"
)

// tail is what Append needs from the end of the journal: the record to chain onto, and where
// the good bytes end.
type tail struct {
	seq    uint64 // seq of the last good record, or the anchor's when there is none
	hash   string // its hash, or the anchor
	end    int64  // bytes from here on are torn; 0 when even the header is missing
	reason string // what is wrong with the first torn line, when there are torn bytes
}

const (
	// firstTailRead holds the last two lines of a journal of ordinary records.
	firstTailRead = 16 << 10
	// maxTailRead is the most readTail reads: a torn tail at its largest plus one good line.
	maxTailRead = MaxBatchSize + MaxRecordSize
)

// readTail finds the last good line of a journal of size bytes by reading backwards from the
// end, so that its cost does not grow with the journal. The lines after it are torn: an
// incomplete last line, and complete lines that are not valid records.
func readTail(f *os.File, size int64) (tail, error) {
	if size == 0 {
		return tail{hash: zeroHash}, nil
	}
	for n := int64(firstTailRead); ; n *= 8 {
		n = min(n, size, maxTailRead)
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, size-n); err != nil {
			return tail{}, fmt.Errorf("read tail: %w", err)
		}
		t, found, err := scanTail(buf, size-n, size)
		if err != nil || found {
			return t, err
		}
		if n == maxTailRead {
			return tail{}, fmt.Errorf("%w: no complete good line in the last %d bytes", ErrDamaged, n)
		}
	}
}

// scanTail walks backwards over the lines in buf, the last bytes of a journal of size bytes,
// which begin at offset base. found is false when buf does not reach far enough back.
func scanTail(buf []byte, base, size int64) (t tail, found bool, err error) {
	end := len(buf) // the good bytes end here if the line that ends here is good
	var reason string
	if i := bytes.LastIndexByte(buf, '\n'); i+1 < len(buf) {
		end = i + 1
		reason = string(KindIncomplete) + ": the last line has no newline"
	}
	for {
		if torn := size - base - int64(end); torn > MaxBatchSize {
			return tail{}, false, fmt.Errorf("%w: the last %d bytes hold no valid record (%s); one append writes at most %d",
				ErrDamaged, torn, reason, MaxBatchSize)
		}
		if end == 0 {
			if base > 0 {
				return tail{}, false, nil
			}
			if !couldBeTornStart(buf) {
				return tail{}, false, fmt.Errorf("%w: the file does not begin like a vmgate journal", ErrDamaged)
			}
			return tail{hash: zeroHash, reason: reason}, true, nil
		}
		start := bytes.LastIndexByte(buf[:end-1], '\n') + 1
		if start == 0 && base > 0 {
			return tail{}, false, nil // the line may begin before buf
		}
		ln := buf[start : end-1]
		var e Entry
		var f *fault
		if base+int64(start) == 0 {
			e.Seq, e.Hash, f = parseHeader(ln) // the anchor is what the first record follows
		} else {
			e, f = parseRecord(ln)
		}
		if f == nil {
			return tail{seq: e.Seq, hash: e.Hash, end: base + int64(end), reason: reason}, true, nil
		}
		reason = string(f.kind) + ": " + f.detail
		end = start
	}
}

// moveAside appends the torn bytes after t.end to path.torn, behind a note saying where they
// came from, syncs that, and only then cuts them off the journal: they may be evidence, and
// an operator should be able to look at them.
func (j *Journal) moveAside(t tail, size int64) (*Repair, error) {
	r := &Repair{
		Path:     j.path,
		TornPath: j.path + ".torn",
		Offset:   t.end,
		Size:     size - t.end,
		AfterSeq: t.seq,
		Reason:   t.reason,
		Time:     j.opts.Now().UTC(),
	}
	buf := fmt.Appendf(nil, "# vmgate journal %s: %d torn bytes from offset %d, after seq %d (%s), moved here at %s\n",
		r.Path, r.Size, r.Offset, r.AfterSeq, r.Reason, r.Time.Format(time.RFC3339Nano))
	n := len(buf)
	buf = append(buf, make([]byte, r.Size)...)
	if _, err := j.f.ReadAt(buf[n:], t.end); err != nil {
		return nil, fmt.Errorf("read torn tail: %w", err)
	}
	if buf[len(buf)-1] != '\n' {
		buf = append(buf, '\n')
	}
	tf, err := openFile(r.TornPath, j.opts.Mode)
	if err != nil {
		return nil, fmt.Errorf("move torn tail aside: %w", err)
	}
	_, err = tf.Write(buf)
	if err == nil {
		err = tf.Sync()
	}
	if cerr := tf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("move torn tail aside: %w", err)
	}
	if err := j.f.Truncate(t.end); err != nil {
		return nil, fmt.Errorf("cut torn tail: %w", err)
	}
	return r, nil
}

// couldBeTornStart reports whether a file that begins with b could be a journal whose first
// append was torn: that leaves a prefix of the header, or blocks of zeros. Anything else is
// some other file, perhaps named by mistake, and Append must not cut it.
func couldBeTornStart(b []byte) bool {
	b = b[:min(len(b), len(headerStart))]
	return strings.HasPrefix(headerStart, string(b)) || len(bytes.Trim(b, "\x00")) == 0
}
