package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeClock returns 2026-11-20T10:00:00Z plus one millisecond more at every call.
func fakeClock() func() time.Time {
	t := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Millisecond)
		return t
	}
}

func openT(t testing.TB, path string, opts Options) *Journal {
	t.Helper()
	j, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func payload(n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"event.action":"start","n":%d,"user.id":"u%d"}`, n, n))
}

// newJournalT writes a journal of n records, one Append each, and returns its path.
func newJournalT(t testing.TB, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	j := openT(t, path, Options{Now: fakeClock()})
	for i := 1; i <= n; i++ {
		if _, err := j.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func readAll(t testing.TB, path string) []Entry {
	t.Helper()
	var all []Entry
	if err := Read(path, 0, func(e Entry) error { all = append(all, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return all
}

func verifyT(t testing.TB, path string) Report {
	t.Helper()
	rep, err := Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// lines splits a journal file into its lines, newlines kept.
func lines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))
}

func writeLines(t testing.TB, path string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(ls, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", "trace.jsonl")
	clock := fakeClock()
	j := openT(t, path, Options{Now: clock})

	one, err := j.Append(json.RawMessage(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := j.Append(payload(2), payload(3), json.RawMessage(`"just a string"`), json.RawMessage(`[1, 2]`))
	if err != nil {
		t.Fatal(err)
	}
	appended := append(one, batch...)
	for i, e := range appended {
		if e.Seq != uint64(i+1) {
			t.Errorf("entry %d has seq %d", i, e.Seq)
		}
		prev := zeroHash
		if i > 0 {
			prev = appended[i-1].Hash
		}
		if e.Prev != prev {
			t.Errorf("seq %d: prev %s, want %s", e.Seq, e.Prev, prev)
		}
	}
	// One clock reading per Append: a batch shares its time.
	if !batch[0].Time.Equal(batch[3].Time) || !one[0].Time.Before(batch[0].Time) {
		t.Errorf("times: %v, %v, %v", one[0].Time, batch[0].Time, batch[3].Time)
	}

	// The exact bytes, so that the format in doc.go stays true.
	got := lines(t, path)
	if len(got) != 7 || len(got[6]) != 0 {
		t.Fatalf("file has %d lines: %q", len(got), got)
	}
	if want := `{"journal":"vmgate/1","anchor_seq":0,"anchor":"` + zeroHash + `"}` + "\n"; string(got[0]) != want {
		t.Errorf("header = %q, want %q", got[0], want)
	}
	body := `{"seq":1,"time":"2026-11-20T10:00:00.001Z","prev":"` + zeroHash + `","data":{"a":1}`
	sum := sha256.Sum256([]byte(body))
	if want := body + `,"hash":"` + hex.EncodeToString(sum[:]) + `"}` + "\n"; string(got[1]) != want {
		t.Errorf("record 1 = %q, want %q", got[1], want)
	}

	read := readAll(t, path)
	if len(read) != len(appended) {
		t.Fatalf("read %d records, appended %d", len(read), len(appended))
	}
	for i := range read {
		a, r := appended[i], read[i]
		if a.Seq != r.Seq || !a.Time.Equal(r.Time) || a.Prev != r.Prev || a.Hash != r.Hash || !bytes.Equal(a.Data, r.Data) {
			t.Errorf("record %d: appended %+v, read %+v", i, a, r)
		}
	}

	rep := verifyT(t, path)
	if !rep.Intact() || rep.Records != 5 || rep.LastSeq != 5 || rep.LastHash != appended[4].Hash || rep.Anchor != zeroHash {
		t.Errorf("verify: %v", rep)
	}

	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode().Perm(), err, want)
		}
	}
}

func TestEmptyJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	openT(t, path, Options{})
	if rep := verifyT(t, path); !rep.Intact() || rep.Records != 0 || rep.LastHash != zeroHash {
		t.Errorf("verify: %v", rep)
	}
	if n := len(readAll(t, path)); n != 0 {
		t.Errorf("read %d records", n)
	}
	if _, err := Verify(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("verify of a missing file: %v", err)
	}
}

func TestReadFrom(t *testing.T) {
	path := newJournalT(t, 10)
	var seqs []uint64
	if err := Read(path, 7, func(e Entry) error { seqs = append(seqs, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs) != "[7 8 9 10]" {
		t.Errorf("from 7: %v", seqs)
	}
	stop := errors.New("stop")
	n := 0
	err := Read(path, 0, func(e Entry) error { n++; return stop })
	if err != stop || n != 1 {
		t.Errorf("fn's error: got %v after %d calls", err, n)
	}
}

func TestAppendRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j := openT(t, path, Options{})
	if _, err := j.Append(payload(1)); err != nil {
		t.Fatal(err)
	}
	big := json.RawMessage(`"` + strings.Repeat("x", MaxDataSize-2) + `"`)
	for _, tc := range []struct {
		name string
		data []json.RawMessage
		want error
	}{
		{"empty", []json.RawMessage{{}}, ErrInvalidData},
		{"not JSON", []json.RawMessage{json.RawMessage(`{"a":`)}, ErrInvalidData},
		{"two values", []json.RawMessage{json.RawMessage(`{} {}`)}, ErrInvalidData},
		{"newline", []json.RawMessage{json.RawMessage("{\n\"a\": 1\n}")}, ErrInvalidData},
		{"carriage return", []json.RawMessage{json.RawMessage("{\"a\":\r1}")}, ErrInvalidData},
		{"blank around", []json.RawMessage{json.RawMessage(` {}`)}, ErrInvalidData},
		{"second of batch bad", []json.RawMessage{payload(2), json.RawMessage(`nope`)}, ErrInvalidData},
		{"record too large", []json.RawMessage{append(big[:len(big):len(big)], 'x')}, ErrTooLarge},
		{"batch too large", func() []json.RawMessage {
			var d []json.RawMessage
			for range MaxBatchSize/MaxDataSize + 1 {
				d = append(d, big)
			}
			return d
		}(), ErrTooLarge},
	} {
		if _, err := j.Append(tc.data...); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// The largest record fits, and nothing refused was written.
	if _, err := j.Append(big); err != nil {
		t.Fatalf("record of MaxDataSize: %v", err)
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.Records != 2 {
		t.Errorf("verify: %v", rep)
	}
	for _, l := range lines(t, path) {
		if len(l) > MaxRecordSize {
			t.Errorf("line of %d bytes", len(l))
		}
	}

	late := openT(t, path, Options{Now: func() time.Time { return time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }})
	if _, err := late.Append(payload(3)); err == nil {
		t.Error("a clock past year 9999 was accepted")
	}
	j.Close()
	if _, err := j.Append(payload(3)); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
}

// Tampering is reported at the first record it touches, with its line and seq.
func TestVerifyFindsTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(ls [][]byte) [][]byte // ls[0] is the header, ls[i] record i
		kind   Kind
		line   int
		seq    uint64
	}{
		{"edit one byte of data", func(ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`"start"`), []byte(`"stort"`), 1)
			return ls
		}, KindEdited, 4, 3},
		{"edit the time", func(ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`T10:00`), []byte(`T11:00`), 1)
			return ls
		}, KindEdited, 4, 3},
		{"edit breaking the JSON", func(ls [][]byte) [][]byte {
			ls[3] = bytes.Replace(ls[3], []byte(`"start"`), []byte(`"start`), 1)
			return ls
		}, KindMalformed, 4, 3},
		{"delete a line", func(ls [][]byte) [][]byte {
			return append(ls[:3], ls[4:]...)
		}, KindSeq, 4, 4},
		{"swap two lines", func(ls [][]byte) [][]byte {
			ls[2], ls[3] = ls[3], ls[2]
			return ls
		}, KindSeq, 3, 3},
		{"repeat a line", func(ls [][]byte) [][]byte {
			return append(ls[:4], append([][]byte{ls[3]}, ls[4:]...)...)
		}, KindSeq, 5, 3},
		{"replace a record with a forged one", func(ls [][]byte) [][]byte {
			e, f := parseRecord(bytes.TrimSuffix(ls[3], []byte("\n")))
			if f != nil {
				panic(f.detail)
			}
			ls[3], _ = appendRecord(nil, e.Seq, e.Time, e.Prev, []byte(`{"forged":true}`))
			return ls
		}, KindPrev, 5, 4},
		{"drop the first record", func(ls [][]byte) [][]byte {
			return append(ls[:1], ls[2:]...)
		}, KindSeq, 2, 2},
		{"garbage in the middle", func(ls [][]byte) [][]byte {
			ls[3] = []byte("\x00\x00\x00\n")
			return ls
		}, KindMalformed, 4, 3},
		{"header edited", func(ls [][]byte) [][]byte {
			ls[0] = bytes.Replace(ls[0], []byte(`"anchor_seq":0`), []byte(`"anchor_seq":1`), 1)
			return ls
		}, KindSeq, 2, 1},
		{"header removed", func(ls [][]byte) [][]byte {
			return ls[1:]
		}, KindHeader, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := newJournalT(t, 6)
			writeLines(t, path, tc.change(lines(t, path)))
			rep := verifyT(t, path)
			p := rep.Problem
			if p == nil || rep.Torn != nil {
				t.Fatalf("not reported as a problem: %v", rep)
			}
			if p.Kind != tc.kind || p.Line != tc.line || p.Seq != tc.seq {
				t.Errorf("got %v; want %s at line %d seq %d", p, tc.kind, tc.line, tc.seq)
			}
			if p.Line > 1 && rep.Records != p.Line-2 {
				t.Errorf("%d records intact before line %d", rep.Records, p.Line)
			}
			var rp *Problem
			if err := Read(path, 0, func(Entry) error { return nil }); !errors.As(err, &rp) || *rp != *p {
				t.Errorf("read: %v", err)
			}
		})
	}
}

func TestTornTailRepairedByAppend(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(b []byte) []byte
		kind   Kind
		line   int
	}{
		{"cut in the last line", func(b []byte) []byte { return b[:len(b)-20] }, KindIncomplete, 6},
		{"newline missing", func(b []byte) []byte { return b[:len(b)-1] }, KindIncomplete, 6},
		{"zeros after the last record", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, KindIncomplete, 7},
		{"last record zeroed", func(b []byte) []byte {
			i := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
			clear(b[i : len(b)-1])
			return b
		}, KindMalformed, 6},
		{"last two records zeroed, newlines kept", func(b []byte) []byte {
			for i := len(b) - 2; i >= 0 && bytes.Count(b[i:], []byte("\n")) <= 2; i-- {
				if b[i] != '\n' {
					b[i] = 0
				}
			}
			return b
		}, KindMalformed, 5},
		// A crash cannot do this, but it cannot be told apart from one that scrambled the
		// line, so it is a torn tail too, and visible as one.
		{"last record edited", func(b []byte) []byte {
			i := bytes.LastIndex(b, []byte(`"start"`))
			b[i+1] = 'S'
			return b
		}, KindEdited, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := newJournalT(t, 5)
			b, _ := os.ReadFile(path)
			orig := bytes.Clone(b)
			b = tc.change(b)
			os.WriteFile(path, b, 0o600)

			rep := verifyT(t, path)
			tt := rep.Torn
			if rep.Problem != nil || tt == nil {
				t.Fatalf("not a torn tail: %v", rep)
			}
			good := bytes.Count(orig[:tt.Offset], []byte("\n")) - 1
			if tt.Kind != tc.kind || tt.Line != tc.line || rep.Records != good || tt.Offset+tt.Size != int64(len(b)) {
				t.Errorf("got %v; want %s at line %d after %d records", rep, tc.kind, tc.line, good)
			}
			if n := len(readAll(t, path)); n != good {
				t.Errorf("read %d records, want %d", n, good)
			}

			var repairs []Repair
			j := openT(t, path, Options{OnRepair: func(r Repair) { repairs = append(repairs, r) }})
			es, err := j.Append(payload(100))
			if err != nil {
				t.Fatal(err)
			}
			if len(repairs) != 1 || repairs[0].Offset != tt.Offset || repairs[0].Size != tt.Size || repairs[0].AfterSeq != uint64(good) {
				t.Errorf("repairs %+v; torn tail %v", repairs, tt)
			}
			if es[0].Seq != uint64(good+1) {
				t.Errorf("appended seq %d after %d good records", es[0].Seq, good)
			}
			if rep := verifyT(t, path); !rep.Intact() || rep.Records != good+1 {
				t.Errorf("after repair: %v", rep)
			}
			moved, err := os.ReadFile(path + ".torn")
			if err != nil || !bytes.HasPrefix(moved, []byte("# vmgate journal ")) || !bytes.Contains(moved, b[tt.Offset:]) {
				t.Errorf("%s.torn = %q, %v", path, moved, err)
			}
			if _, err := j.Append(payload(101)); err != nil || len(repairs) != 1 {
				t.Errorf("second append: %v, %d repairs", err, len(repairs))
			}
		})
	}
}

// With no OnRepair, a repair is still logged, not silent.
func TestRepairLoggedByDefault(t *testing.T) {
	path := newJournalT(t, 2)
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)-3], 0o600)
	var log bytes.Buffer
	defer captureSlog(&log)()
	j := openT(t, path, Options{})
	if _, err := j.Append(payload(3)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "torn bytes") {
		t.Errorf("log: %q", log.String())
	}
}

// Damage at the end bigger than one append can leave is not a crash: Append refuses it
// rather than cut off that much, and Verify reports it as a problem.
func TestDamageBeyondOneAppend(t *testing.T) {
	path := newJournalT(t, 3)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	garbage := append(bytes.Repeat([]byte("garbage "), 512), '\n')
	f.Write(bytes.Repeat(garbage, MaxBatchSize/len(garbage)+1))
	f.Close()
	rep := verifyT(t, path)
	if rep.Problem == nil || rep.Problem.Line != 5 || rep.Records != 3 {
		t.Errorf("verify: %v", rep)
	}
	j := openT(t, path, Options{})
	if _, err := j.Append(payload(4)); !errors.Is(err, ErrDamaged) {
		t.Errorf("append: %v", err)
	}
	if _, err := os.Stat(path + ".torn"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something was moved aside: %v", err)
	}
}

// Retention replaces the journal by one that starts later, anchored on the last record it
// dropped, and renames it over the old file. The rest verifies, and a Journal opened before
// moves to the new file.
func TestAnchorAndReplacedFile(t *testing.T) {
	path := newJournalT(t, 10)
	j := openT(t, path, Options{})
	all := readAll(t, path)
	ls := lines(t, path)

	pruned := [][]byte{appendHeader(nil, all[6].Seq, all[6].Hash)}
	pruned = append(pruned, ls[8:]...) // records 8, 9, 10
	tmp := path + ".new"
	writeLines(t, tmp, pruned)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	rep := verifyT(t, path)
	if !rep.Intact() || rep.AnchorSeq != 7 || rep.Anchor != all[6].Hash || rep.Records != 3 || rep.LastSeq != 10 {
		t.Fatalf("pruned journal: %v", rep)
	}
	es, err := j.Append(payload(11))
	if err != nil || es[0].Seq != 11 || es[0].Prev != all[9].Hash {
		t.Fatalf("append after replace: %+v, %v", es, err)
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.Records != 4 {
		t.Errorf("after append: %v", rep)
	}
	// A wrong anchor breaks the chain at the first record.
	ls = lines(t, path)
	ls[0] = appendHeader(nil, 7, all[5].Hash)
	writeLines(t, path, ls)
	if rep := verifyT(t, path); rep.Problem == nil || rep.Problem.Kind != KindPrev || rep.Problem.Seq != 8 {
		t.Errorf("wrong anchor: %v", rep)
	}
}

// captureSlog sends the default logger to w until the returned func is called.
func captureSlog(w *bytes.Buffer) (restore func()) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(w, nil)))
	return func() { slog.SetDefault(prev) }
}

// Append finds the last record by reading backwards from the end: here the start of the file
// is not even a journal, and Append still chains onto the record at the end.
func TestAppendReadsOnlyTheTail(t *testing.T) {
	src := newJournalT(t, 1)
	last := lines(t, src)[1]
	path := filepath.Join(t.TempDir(), "j")
	junk := bytes.Repeat([]byte("not a journal\n"), 4<<20/14)
	writeLines(t, path, [][]byte{junk, last})
	j := openT(t, path, Options{})
	es, err := j.Append(payload(2))
	if err != nil || es[0].Seq != 2 {
		t.Fatalf("append: %+v, %v", es, err)
	}
}

// A journal path that names some other file by mistake must not get that file cut.
func TestNotAJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	content := []byte("root:x:0:0:root:/root:/bin/bash\n")
	os.WriteFile(path, content, 0o600)
	if rep := verifyT(t, path); rep.Problem == nil || rep.Problem.Kind != KindHeader {
		t.Errorf("verify: %v", rep)
	}
	j := openT(t, path, Options{})
	if _, err := j.Append(payload(1)); !errors.Is(err, ErrDamaged) {
		t.Errorf("append: %v", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, content) {
		t.Errorf("file changed to %q", b)
	}
}

func TestAppendManySplitsIntoBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	// 40 records of about 700 KiB: several times MaxBatchSize in all.
	big := json.RawMessage(`"` + strings.Repeat("x", 700<<10) + `"`)
	data := make([]json.RawMessage, 40)
	for i := range data {
		data[i] = big
	}
	if n, err := j.AppendMany(data...); err != nil || n != 40 {
		t.Fatalf("AppendMany = %d, %v", n, err)
	}
	rep, err := Verify(path)
	if err != nil || !rep.Intact() || rep.Records != 40 {
		t.Fatalf("%+v %v", rep, err)
	}
}
