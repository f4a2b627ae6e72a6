package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pruneT prunes and fails the test on an error.
func pruneT(t testing.TB, path string, keep func(Entry) bool, opts Options) PruneResult {
	t.Helper()
	res, err := Prune(path, keep, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func keepFrom(seq uint64) func(Entry) bool { return func(e Entry) bool { return e.Seq >= seq } }

func statT(t testing.TB, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func seqsOf(es []Entry) []uint64 {
	var s []uint64
	for _, e := range es {
		s = append(s, e.Seq)
	}
	return s
}

func readFromT(t testing.TB, path string, from uint64) []Entry {
	t.Helper()
	var es []Entry
	if err := Read(path, from, func(e Entry) error { es = append(es, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return es
}

func noTempLeft(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path + PruneSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left behind: %v", PruneSuffix, err)
	}
}

func TestPrunePrefix(t *testing.T) {
	path := newJournalT(t, 10)
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, path)
	ls := lines(t, path)
	early := openT(t, path, Options{}) // opened before the prune: must move to the new file

	var seen []Entry
	res := pruneT(t, path, func(e Entry) bool { seen = append(seen, e); return e.Seq > 4 }, Options{})
	if want := (PruneResult{Dropped: 4, AnchorSeq: 4, Anchor: before[3].Hash, Kept: 6}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	// keep sees the records in order, up to the first it accepts, and nothing after.
	if fmt.Sprint(seqsOf(seen)) != "[1 2 3 4 5]" || !bytes.Equal(seen[2].Data, before[2].Data) {
		t.Errorf("keep saw %v", seqsOf(seen))
	}

	// A new header, then the kept lines byte for byte.
	want := append([][]byte{appendHeader(nil, 4, before[3].Hash)}, ls[5:]...)
	if got := lines(t, path); !bytes.Equal(bytes.Join(got, nil), bytes.Join(want, nil)) {
		t.Errorf("file after prune:\n%s\nwant:\n%s", bytes.Join(got, nil), bytes.Join(want, nil))
	}
	rep := verifyT(t, path)
	if !rep.Intact() || rep.AnchorSeq != 4 || rep.Anchor != before[3].Hash || rep.Records != 6 || rep.LastSeq != 10 || rep.LastHash != before[9].Hash {
		t.Errorf("verify: %v", rep)
	}
	if fi := statT(t, path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the old file's 0640", fi.Mode().Perm())
	}
	noTempLeft(t, path)

	// Read from at or below the anchor starts at the first record kept.
	for from, want := range map[uint64]string{0: "[5 6 7 8 9 10]", 4: "[5 6 7 8 9 10]", 5: "[5 6 7 8 9 10]", 8: "[8 9 10]", 11: "[]"} {
		got := readFromT(t, path, from)
		if fmt.Sprint(seqsOf(got)) != want {
			t.Errorf("read from %d: %v, want %s", from, seqsOf(got), want)
		}
		for _, e := range got {
			if b := before[e.Seq-1]; e.Hash != b.Hash || e.Prev != b.Prev || !bytes.Equal(e.Data, b.Data) {
				t.Errorf("seq %d read back as %+v, was %+v", e.Seq, e, b)
			}
		}
	}

	// Appends go on with the chain, from a Journal opened before and one opened after.
	es, err := early.Append(payload(11))
	if err != nil || es[0].Seq != 11 || es[0].Prev != before[9].Hash {
		t.Fatalf("append after prune: %+v, %v", es, err)
	}
	late := openT(t, path, Options{})
	if es2, err := late.Append(payload(12)); err != nil || es2[0].Seq != 12 || es2[0].Prev != es[0].Hash {
		t.Fatalf("append from a new Journal: %+v, %v", es2, err)
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.AnchorSeq != 4 || rep.Records != 8 || rep.LastSeq != 12 {
		t.Errorf("after appends: %v", rep)
	}

	// And a pruned journal prunes again.
	res = pruneT(t, path, keepFrom(9), Options{})
	if res.Dropped != 4 || res.AnchorSeq != 8 || res.Anchor != before[7].Hash || res.Kept != 4 {
		t.Errorf("second prune: %+v", res)
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.AnchorSeq != 8 || rep.Records != 4 {
		t.Errorf("after the second prune: %v", rep)
	}
}

func TestPruneEverything(t *testing.T) {
	path := newJournalT(t, 10)
	before := readAll(t, path)
	res := pruneT(t, path, func(Entry) bool { return false }, Options{})
	if want := (PruneResult{Dropped: 10, AnchorSeq: 10, Anchor: before[9].Hash}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	b, _ := os.ReadFile(path)
	if want := appendHeader(nil, 10, before[9].Hash); !bytes.Equal(b, want) {
		t.Errorf("file is %q, want only the header %q", b, want)
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.Records != 0 || rep.LastSeq != 10 || rep.LastHash != before[9].Hash {
		t.Errorf("verify: %v", rep)
	}
	if got := readAll(t, path); len(got) != 0 {
		t.Errorf("read %d records", len(got))
	}

	// Only the header: nothing to drop, and the file stays as it is.
	fi := statT(t, path)
	if res := pruneT(t, path, func(Entry) bool { return false }, Options{}); res.Dropped != 0 || res.AnchorSeq != 10 || res.Kept != 0 {
		t.Errorf("prune of a header alone: %+v", res)
	}
	if !os.SameFile(fi, statT(t, path)) {
		t.Error("a header alone was rewritten")
	}

	j := openT(t, path, Options{})
	es, err := j.Append(payload(11))
	if err != nil || es[0].Seq != 11 || es[0].Prev != before[9].Hash {
		t.Fatalf("append after pruning everything: %+v, %v", es, err)
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.Records != 1 || rep.AnchorSeq != 10 {
		t.Errorf("after append: %v", rep)
	}
}

func TestPruneNothing(t *testing.T) {
	path := newJournalT(t, 10)
	orig, _ := os.ReadFile(path)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.Chtimes(path, old, old)
	fi := statT(t, path)

	calls := 0
	res := pruneT(t, path, func(Entry) bool { calls++; return true }, Options{})
	if want := (PruneResult{AnchorSeq: 0, Anchor: zeroHash, Kept: 10}); res != want || calls != 1 {
		t.Errorf("result %+v after %d calls, want %+v after 1", res, calls, want)
	}
	after := statT(t, path)
	b, _ := os.ReadFile(path)
	if !os.SameFile(fi, after) || !after.ModTime().Equal(old) || !bytes.Equal(b, orig) {
		t.Errorf("file touched: same file %v, mtime %v (was %v)", os.SameFile(fi, after), after.ModTime(), old)
	}
	noTempLeft(t, path)

	// Nor is a torn tail cut when there is nothing to drop: that is for Append.
	os.WriteFile(path, orig[:len(orig)-5], 0o600)
	repaired := false
	if res := pruneT(t, path, keepFrom(1), Options{OnRepair: func(Repair) { repaired = true }}); res.Dropped != 0 || res.Kept != 9 || repaired {
		t.Errorf("torn journal: %+v, repaired %v", res, repaired)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, orig[:len(orig)-5]) {
		t.Error("torn journal changed")
	}

	// An empty journal, and none at all.
	empty := filepath.Join(t.TempDir(), "empty")
	openT(t, empty, Options{})
	if res := pruneT(t, empty, func(Entry) bool { return false }, Options{}); res != (PruneResult{Anchor: zeroHash}) {
		t.Errorf("empty journal: %+v", res)
	}
	if b, err := os.ReadFile(empty); err != nil || len(b) != 0 {
		t.Errorf("empty journal now %q, %v", b, err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := Prune(missing, keepFrom(1), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing journal: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("prune created %s: %v", missing, err)
	}
	noTempLeft(t, missing)
}

// A torn tail is moved aside, as Append would, before the journal is replaced.
func TestPruneRepairsTornTail(t *testing.T) {
	path := newJournalT(t, 6)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)-10], 0o600) // record 6 torn
	var repairs []Repair
	res := pruneT(t, path, keepFrom(3), Options{OnRepair: func(r Repair) { repairs = append(repairs, r) }})
	if res.Dropped != 2 || res.Kept != 3 || res.AnchorSeq != 2 {
		t.Errorf("result %+v", res)
	}
	if len(repairs) != 1 || repairs[0].AfterSeq != 5 || repairs[0].Size != int64(len(b)-10)-repairs[0].Offset {
		t.Errorf("repairs %+v", repairs)
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.Records != 3 || rep.LastSeq != 5 {
		t.Errorf("verify: %v", rep)
	}
	if torn, err := os.ReadFile(path + ".torn"); err != nil || !bytes.Contains(torn, b[repairs[0].Offset:len(b)-10]) {
		t.Errorf(".torn: %q, %v", torn, err)
	}
}

// Prune must not drop a record that does not verify: the new anchor would hide it. A break
// among the records kept stays where it is, for Verify.
func TestPruneRefusesDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(ls [][]byte) [][]byte // ls[0] is the header, ls[i] record i
		kind   Kind
		line   int
	}{
		{"record edited", func(ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`"start"`), []byte(`"stort"`), 1)
			return ls
		}, KindEdited, 4},
		{"record removed", func(ls [][]byte) [][]byte { return append(ls[:2], ls[3:]...) }, KindSeq, 3},
		{"first kept record forged", func(ls [][]byte) [][]byte {
			e, _ := parseRecord(bytes.TrimSuffix(ls[6], []byte("\n")))
			ls[6], _ = appendRecord(nil, e.Seq, e.Time, zeroHash, e.Data)
			return ls
		}, KindPrev, 7},
		{"header replaced", func(ls [][]byte) [][]byte {
			ls[0] = []byte("root:x:0:0:root:/root:/bin/bash\n")
			return ls
		}, KindHeader, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := newJournalT(t, 10)
			writeLines(t, path, tc.change(lines(t, path)))
			orig, _ := os.ReadFile(path)
			_, err := Prune(path, keepFrom(6), Options{})
			var p *Problem
			if !errors.Is(err, ErrDamaged) || !errors.As(err, &p) || p.Kind != tc.kind || p.Line != tc.line {
				t.Fatalf("got %v; want ErrDamaged, %s at line %d", err, tc.kind, tc.line)
			}
			if b, _ := os.ReadFile(path); !bytes.Equal(b, orig) {
				t.Error("journal changed")
			}
			noTempLeft(t, path)
		})
	}

	t.Run("damage among the kept", func(t *testing.T) {
		path := newJournalT(t, 10)
		ls := lines(t, path)
		ls[8] = bytes.Replace(ls[8], []byte(`"start"`), []byte(`"stort"`), 1)
		writeLines(t, path, ls)
		if res := pruneT(t, path, keepFrom(6), Options{}); res.Dropped != 5 {
			t.Errorf("result %+v", res)
		}
		rep := verifyT(t, path)
		if p := rep.Problem; p == nil || p.Kind != KindEdited || p.Seq != 8 || p.Line != 4 || rep.Records != 2 {
			t.Errorf("verify: %v", rep)
		}
	})

	t.Run("damage Append would refuse", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "passwd")
		os.WriteFile(path, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o600)
		if _, err := Prune(path, keepFrom(6), Options{}); !errors.Is(err, ErrDamaged) {
			t.Errorf("got %v", err)
		}
	})
}

// Prunes of one journal at once take turns, and each drops what it says it dropped.
func TestPruneConcurrently(t *testing.T) {
	path := newJournalT(t, 200)
	results := make(chan PruneResult, 8)
	for range 8 {
		go func() {
			// Each drops at least its first record, then up to a multiple of 25.
			var first uint64
			res, err := Prune(path, func(e Entry) bool {
				if first == 0 {
					first = e.Seq
				}
				return e.Seq != first && e.Seq%25 == 0
			}, Options{})
			if err != nil {
				t.Error(err)
			}
			results <- res
		}()
	}
	dropped := 0
	for range 8 {
		dropped += (<-results).Dropped
	}
	rep := verifyT(t, path)
	if !rep.Intact() || dropped != 199 || rep.AnchorSeq != 199 || rep.Records != 1 {
		t.Errorf("dropped %d in all; verify: %v", dropped, rep)
	}
	noTempLeft(t, path)
}

func TestPruneKeepNil(t *testing.T) {
	path := newJournalT(t, 1)
	if _, err := Prune(path, nil, Options{}); err == nil {
		t.Error("nil keep accepted")
	}
}

// keep gets its own copy of Data.
func TestPruneKeepOwnsData(t *testing.T) {
	path := newJournalT(t, 5)
	var held []json.RawMessage
	pruneT(t, path, func(e Entry) bool { held = append(held, e.Data); return e.Seq > 3 }, Options{})
	for i, d := range held {
		if !bytes.Equal(d, payload(i+1)) {
			t.Errorf("data %d now %s", i+1, d)
		}
	}
}
