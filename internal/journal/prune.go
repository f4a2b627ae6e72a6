package journal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// PruneResult tells what Prune did.
type PruneResult struct {
	Dropped   int    // records dropped from the start
	AnchorSeq uint64 // the anchor now: the last record dropped, or the old anchor when none was
	Anchor    string
	Kept      int // records left: the last seq less AnchorSeq
}

// PruneSuffix names the file Prune builds beside the journal, path + PruneSuffix. Nothing
// else reads it; one that a crash left behind is overwritten by the next Prune.
const PruneSuffix = ".prune"

// beforeRename, when set (by tests), runs once the new file is complete and synced, right
// before it replaces the journal.
var beforeRename func()

// Prune drops the records at the start of the journal at path up to, not including, the
// first one keep accepts, and anchors the journal on the last one dropped, so that the rest
// still verifies. keep sees the records in order from the first and decides nothing after
// the one it accepts: records go only as a prefix. When keep accepts none, every record goes
// and the journal is left with its header, which the next Append chains onto.
//
// The journal is replaced by a new file: the header, then the kept lines copied byte for
// byte. It is built beside the journal (path + PruneSuffix), synced, renamed over it under
// the journal's lock, and the directory synced, so a crash leaves either the old journal or
// the new one. Appends go on while Prune copies; they wait only while it adds what was
// appended meanwhile, syncs and renames, and none is lost or left in the old file. When
// keep accepts the first record, the file is not touched.
//
// Every record dropped, and the first kept, must verify: Prune refuses a journal whose chain
// breaks there, with an error that wraps ErrDamaged and the *Problem, so that pruning never
// hides tampering behind a new anchor. Kept records are copied unchecked: a break among them
// stays as it was, for Verify to report. A torn tail is moved aside first, as Append does
// (Options.OnRepair), when there is something to drop; damage that Append would refuse,
// Prune refuses too.
//
// keep runs without the journal's lock, except for records appended during the copy, when
// appends wait on it: it must be quick and must not append to this journal itself. It may see a record twice
// if the journal is replaced under Prune by something else, which makes Prune start over.
// opts.Mode is the mode of the .torn file; the new journal keeps the old one's mode and owner.
func Prune(path string, keep func(Entry) bool, opts Options) (PruneResult, error) {
	if keep == nil {
		return PruneResult{}, fmt.Errorf("journal %s: prune: keep is nil", path)
	}
	opts = opts.withDefaults()
	res, repair, err := prune(path, keep, opts)
	opts.report(repair)
	if err != nil {
		return res, fmt.Errorf("journal %s: prune: %w", path, err)
	}
	return res, nil
}

func prune(path string, keep func(Entry) bool, opts Options) (res PruneResult, repair *Repair, err error) {
	// Taken first, so that no other Prune replaces the journal while this one reads it.
	tmpPath := path + PruneSuffix
	tmp, err := lockTemp(tmpPath)
	if err != nil {
		return res, nil, err
	}
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(tmpPath) // ours to remove: we hold its lock
		}
		// Only now: once renamed, its lock is the new journal's, which must wait for the
		// directory sync (see below).
		tmp.Close()
	}()
	if err := tmp.Truncate(0); err != nil { // what a crash left
		return res, nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0) // Prune creates no journal
	if err != nil {
		return res, nil, err
	}
	j := &Journal{path: path, opts: opts, f: f}
	defer func() { j.f.Close() }() // lock may move j to another file

	p := pruner{keep: keep, tmp: tmp}

	// First without the journal's lock: a snapshot taken while no append is under way ends
	// in good lines at t.end, and nothing that keeps the protocol changes the bytes before
	// a good line. Appends go on meanwhile.
	var t tail
	err = whileShared(j.f, func() error {
		fi, err := j.f.Stat()
		if err == nil {
			t, err = readTail(j.f, fi.Size())
		}
		return err
	})
	if err != nil {
		return res, nil, err
	}
	if err := p.scan(j.f, t.end); err != nil {
		return res, nil, err
	}
	if p.kept && p.dropped == 0 {
		return p.result(t), nil, nil
	}
	if p.kept {
		if err := p.copy(j.f, t.end); err != nil {
			return res, nil, err
		}
		// The bulk is synced here, so the sync under the lock has only the rest to write.
		if err := tmp.Sync(); err != nil {
			return res, nil, err
		}
	}
	before, err := j.f.Stat()
	if err != nil {
		return res, nil, err
	}

	// Then under the lock: what was appended meanwhile, and the swap.
	if err := j.lock(); err != nil {
		return res, nil, err
	}
	defer flock(j.f, unlock)
	fi, err := j.f.Stat()
	if err != nil {
		return res, nil, err
	}
	end := fi.Size()
	if t, err = readTail(j.f, end); err != nil {
		return res, nil, err
	}
	// Neither happens while everyone keeps the protocol, but if the file was replaced or
	// cut behind our back, what we read of it is no longer the journal.
	if !os.SameFile(before, fi) || t.end < p.off || t.end < p.copied {
		if err := p.reset(); err != nil {
			return res, nil, err
		}
	}
	if err := p.scan(j.f, t.end); err != nil {
		return res, nil, err
	}
	res = p.result(t)
	if p.dropped == 0 {
		return res, nil, nil // not even a torn tail is cut: that is for Append
	}
	if t.end < end {
		if repair, err = j.moveAside(t, end); err != nil {
			return res, nil, err
		}
	}
	if err := p.copy(j.f, t.end); err != nil {
		return res, repair, err
	}
	if err := sameMode(tmp, fi); err != nil {
		return res, repair, err
	}
	if err := tmp.Sync(); err != nil {
		return res, repair, err
	}
	if beforeRename != nil {
		beforeRename()
	}
	// Appenders waiting for the old file's lock find, once they have it, that it is no
	// longer at path and move to the new one, whose lock we hold (it is tmp's) until the
	// rename is durable: a record synced into the new file before then could vanish in a
	// crash that brings back the old name.
	if err := os.Rename(tmpPath, path); err != nil {
		return res, repair, err
	}
	renamed = true
	if err := syncDir(filepath.Dir(path)); err != nil {
		return res, repair, fmt.Errorf("journal replaced, but not yet durable: %w", err)
	}
	return res, repair, nil
}

// lockTemp opens and locks the file a Prune builds. Prunes of one journal take turns on this
// lock; the one before may have renamed the file over the journal while we waited, in which
// case we hold the journal's lock instead, and try again.
func lockTemp(path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := flock(f, lockExclusive); err != nil {
			f.Close()
			return nil, err
		}
		held, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		cur, err := os.Stat(path)
		if err == nil && os.SameFile(held, cur) {
			return f, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
}

// sameMode gives f the permissions and owner of the journal fi describes: the new journal
// must stay writable by whoever appends to the old one, and no more readable.
func sameMode(f *os.File, fi os.FileInfo) error {
	if err := f.Chmod(fi.Mode().Perm()); err != nil {
		return err
	}
	uid, gid, ok := owner(fi)
	if !ok {
		return nil
	}
	cur, err := f.Stat()
	if err != nil {
		return err
	}
	if u, g, _ := owner(cur); u == uid && g == gid {
		return nil
	}
	return f.Chown(uid, gid)
}

// pruner walks the start of a journal, record by record, until keep accepts one, and copies
// the rest into tmp behind a new header.
type pruner struct {
	keep func(Entry) bool
	tmp  *os.File

	header    bool   // the header was read
	anchorSeq uint64 // the header's anchor
	anchor    string
	seq       uint64 // the last record dropped, or the anchor
	hash      string
	dropped   int
	kept      bool  // keep accepted the record at off
	off       int64 // where scan goes on
	line      int   // lines before off
	copied    int64 // the journal up to here is in tmp; 0 while tmp is empty
}

// scan reads on from p.off up to end, which must be where a good line ends. A bad line before
// it is damage, not a torn tail, and is returned as such.
func (p *pruner) scan(f *os.File, end int64) error {
	if p.kept || p.off >= end {
		return nil
	}
	lr := lineReader{r: bufio.NewReaderSize(io.NewSectionReader(f, p.off, end-p.off), 64<<10), off: p.off, num: p.line}
	for {
		l, err := lr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		e, flt := parseLine(l)
		if flt == nil && l.num > 1 {
			flt = chainFault(e, p.seq, p.hash)
		}
		if flt != nil {
			prob := &Problem{Line: l.num, Offset: l.off, Seq: e.Seq, Kind: flt.kind, Detail: flt.detail}
			if flt.kind != KindSeq && flt.kind != KindPrev && l.num > 1 {
				prob.Seq = p.seq + 1 // as Verify: the seq due where it cannot be read
			}
			return fmt.Errorf("%w, refusing to prune: %w", ErrDamaged, prob)
		}
		if l.num == 1 {
			p.header = true
			p.anchorSeq, p.anchor = e.Seq, e.Hash
			p.seq, p.hash = e.Seq, e.Hash
		} else {
			e.Data = bytes.Clone(e.Data) // keep may hold on to it
			if p.keep(e) {
				p.kept = true
				return nil
			}
			p.dropped++
			p.seq, p.hash = e.Seq, e.Hash
		}
		p.off, p.line = lr.off, l.num
	}
}

// copy writes the header, if not yet done, and the journal's bytes from there up to end into
// tmp, as they are.
func (p *pruner) copy(f *os.File, end int64) error {
	if p.copied == 0 {
		if _, err := p.tmp.Write(appendHeader(nil, p.seq, p.hash)); err != nil {
			return err
		}
		p.copied = p.off
	}
	if _, err := f.Seek(p.copied, io.SeekStart); err != nil {
		return err
	}
	// File to file, so the kernel copies (copy_file_range) where it can.
	if _, err := io.CopyN(p.tmp, f, end-p.copied); err != nil {
		return fmt.Errorf("copy the kept records: %w", err)
	}
	p.copied = end
	return nil
}

// reset forgets all that was read and copied, to start over.
func (p *pruner) reset() error {
	if err := p.tmp.Truncate(0); err != nil {
		return err
	}
	if _, err := p.tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	*p = pruner{keep: p.keep, tmp: p.tmp}
	return nil
}

// result is what the journal holds once p is done with it; t is its tail.
func (p *pruner) result(t tail) PruneResult {
	if !p.header { // empty, or all of it torn
		return PruneResult{Anchor: zeroHash}
	}
	return PruneResult{Dropped: p.dropped, AnchorSeq: p.seq, Anchor: p.hash, Kept: int(t.seq - p.seq)}
}
