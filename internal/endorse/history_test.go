package endorse

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// historyFixture is a list with a history of every kind of entry: init, add a, add b, sign 1,
// remove a, sign 2, then add c, pending.
func historyFixture(t *testing.T) *Workspace {
	t.Helper()
	w, clock := newWorkspace(t)
	dir := filepath.Dir(w.List)
	signer := testSigner(t)
	a, err := w.Add(AddOptions{Image: rawImage(t, dir, "a.raw"), Title: "A", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	if _, err := w.Add(AddOptions{Image: rawImage(t, dir, "b.raw"), Title: "B", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	if _, err := w.Sign(SignOptions{Signer: signer}); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Hour)
	if _, err := w.Remove(a.Identifier, "CVE-2026-1234"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Sign(SignOptions{Signer: signer}); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Hour)
	if _, err := w.Add(AddOptions{Image: rawImage(t, dir, "c.raw"), Title: "C", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestHistory(t *testing.T) {
	w := historyFixture(t)
	recs, err := w.History()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Hash == "" || r.Actor != testActor() || r.List != testListID {
			t.Errorf("record %d: %+v", i, r)
		}
		s := r.Action + "@" + r.ListVersion
		if r.Pending {
			s += "(pending)"
		}
		got = append(got, s)
	}
	want := "init@0 add@0 add@0 sign@1 remove@1 sign@2 add@2(pending)"
	if strings.Join(got, " ") != want {
		t.Fatalf("history: %s\nwant:    %s", strings.Join(got, " "), want)
	}
	if recs[4].Reason != "CVE-2026-1234" || recs[4].Title != "A" || recs[3].Images != 2 || recs[5].Images != 1 {
		t.Fatalf("details: %+v", recs)
	}
	if !recs[1].Time.Equal(newTestClock().t) || !recs[2].Time.Equal(recs[1].Time.Add(time.Minute)) {
		t.Errorf("times %v %v", recs[1].Time, recs[2].Time)
	}

	rep, err := w.VerifyHistory()
	if err != nil || !rep.Intact() || rep.Signed != 2 || rep.Pending != 1 || rep.Journal.Records != 7 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}

	// A list without a history has none, which is not an error.
	if recs, err := Open(filepath.Join(t.TempDir(), "none")).History(); recs != nil || err != nil {
		t.Fatalf("no history: %v, %v", recs, err)
	}
}

// historyLines returns the history file's lines, each with its newline.
func historyLines(t *testing.T, w *Workspace) [][]byte {
	t.Helper()
	data, err := os.ReadFile(w.HistoryPath())
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte("\n"))
}

// TestVerifyHistoryDetects: each way of altering the history, the archive or the list that
// verify-history must notice. Line 1 of the file is the journal's header; record seq N is
// line N+1.
func TestVerifyHistoryDetects(t *testing.T) {
	cut := func(keep int) func(*testing.T, *Workspace) {
		return func(t *testing.T, w *Workspace) {
			lines := historyLines(t, w)
			os.WriteFile(w.HistoryPath(), bytes.Join(lines[:keep], nil), 0o644)
		}
	}
	tests := []struct {
		name   string
		alter  func(*testing.T, *Workspace)
		broken string // in the journal's report: the chain breaks
		want   string // in the problems
	}{
		{"a reason edited", func(t *testing.T, w *Workspace) {
			data, _ := os.ReadFile(w.HistoryPath())
			os.WriteFile(w.HistoryPath(), bytes.Replace(data, []byte("CVE-2026-1234"), []byte("CVE-2026-9999"), 1), 0o644)
		}, "line 6", ""},
		{"an entry removed from the middle", func(t *testing.T, w *Workspace) {
			lines := historyLines(t, w)
			os.WriteFile(w.HistoryPath(), bytes.Join(append(lines[:5:5], lines[6:]...), nil), 0o644)
		}, "records removed", ""},
		{"two entries swapped", func(t *testing.T, w *Workspace) {
			lines := historyLines(t, w)
			lines[2], lines[3] = lines[3], lines[2]
			os.WriteFile(w.HistoryPath(), bytes.Join(lines, nil), 0o644)
		}, "line 3", ""},
		{"cut in the middle of the last entry", func(t *testing.T, w *Workspace) {
			data, _ := os.ReadFile(w.HistoryPath())
			os.WriteFile(w.HistoryPath(), data[:len(data)-20], 0o644)
		}, "torn tail", ""},
		{"the pending add cut off", cut(7), "", "no history entry adds it"},
		{"the last sign and what follows cut off", cut(6), "", "signed version 2 is archived"},
		{"the last sign cut off, its archive deleted", func(t *testing.T, w *Workspace) {
			cut(6)(t, w)
			os.Remove(filepath.Join(w.Dir(), "versions", "2.json"))
		}, "", "is version 2, but the history's last signature is of version 1"},
		{"everything after the first sign cut off", cut(5), "", "signed version 2 is archived"},
		{"an archived version altered", func(t *testing.T, w *Workspace) {
			p := filepath.Join(w.Dir(), "versions", "1.json")
			data, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(data, []byte(`"B"`), []byte(`"X"`), 1), 0o644)
		}, "", "archived list image.list.d/versions/1.json has sha512"},
		{"an archived version deleted", func(t *testing.T, w *Workspace) {
			os.Remove(filepath.Join(w.Dir(), "versions", "1.json"))
		}, "", "version 1 (seq 4): archived list"},
		{"the list's images edited by hand", func(t *testing.T, w *Workspace) {
			data, _ := os.ReadFile(w.List)
			d, _ := parseDocument(data)
			d.images = d.images[:1]
			out, _ := d.render()
			os.WriteFile(w.List, out, 0o644)
		}, "", "is not listed, but no history entry removes it"},
		{"the history deleted", func(t *testing.T, w *Workspace) {
			os.Remove(w.HistoryPath())
		}, "", "fail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := historyFixture(t)
			tc.alter(t, w)
			rep, err := w.VerifyHistory()
			if tc.want == "fail" {
				if err == nil {
					t.Fatalf("want an error, got %+v", rep)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.Intact() {
				t.Fatalf("verify-history passes: %+v", rep)
			}
			if tc.broken != "" && !strings.Contains(rep.Journal.String(), tc.broken) {
				t.Errorf("journal report %q does not contain %q", rep.Journal, tc.broken)
			}
			if tc.want != "" && !strings.Contains(strings.Join(rep.Problems, "\n"), tc.want) {
				t.Errorf("problems do not contain %q:\n%s", tc.want, strings.Join(rep.Problems, "\n"))
			}
		})
	}
}

// TestVerifyHistorySignedList: with nothing pending, the list must be its last signed
// version byte for byte.
func TestVerifyHistorySignedList(t *testing.T) {
	w, _ := newWorkspace(t)
	if _, err := w.Add(AddOptions{Image: rawImage(t, filepath.Dir(w.List), "a.raw"), Title: "A", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Sign(SignOptions{Signer: testSigner(t)}); err != nil {
		t.Fatal(err)
	}
	if rep, err := w.VerifyHistory(); err != nil || !rep.Intact() || rep.Pending != 0 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	data, _ := os.ReadFile(w.List)
	os.WriteFile(w.List, bytes.Replace(data, []byte(`"dc:title": "A"`), []byte(`"dc:title": "Z"`), 1), 0o644)
	rep, err := w.VerifyHistory()
	if err != nil || rep.Intact() || !strings.Contains(strings.Join(rep.Problems, "\n"), "differs from its last signed version 1") {
		t.Fatalf("verify of an edited list: %+v, %v", rep, err)
	}
}

// TestInterruptedEdit: a crash between the history entry and the list leaves a change the
// list does not show; sign refuses until the change is made again.
func TestInterruptedEdit(t *testing.T) {
	w, _ := newWorkspace(t)
	img := rawImage(t, filepath.Dir(w.List), "a.raw")
	before, _ := os.ReadFile(w.List)
	a, err := w.Add(AddOptions{Image: img, Title: "A", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(w.List, before, 0o644) // as if the crash came before the list was replaced
	signer := testSigner(t)
	if _, err := w.Sign(SignOptions{Signer: signer}); err == nil || !strings.Contains(err.Error(), "redo the change") {
		t.Fatalf("sign after an interrupted add: %v", err)
	}
	if _, err := w.Add(AddOptions{Image: img, Title: "A", Version: "1", Identifier: a.Identifier}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Sign(SignOptions{Signer: signer}); err != nil {
		t.Fatal(err)
	}
	if rep, err := w.VerifyHistory(); err != nil || !rep.Intact() {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// TestInterruptedSign: a crash after the sign entry and the archive, before the list was
// replaced, leaves the list at the version before; the next sign numbers after the one
// recorded, and the history verifies.
func TestInterruptedSign(t *testing.T) {
	w, _ := newWorkspace(t)
	signer := testSigner(t)
	if _, err := w.Add(AddOptions{Image: rawImage(t, filepath.Dir(w.List), "a.raw"), Title: "A", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Sign(SignOptions{Signer: signer}); err != nil {
		t.Fatal(err)
	}
	v1, _ := os.ReadFile(w.List)
	if _, err := w.Sign(SignOptions{Signer: signer}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(w.List, v1, 0o644)
	if rep, _ := w.VerifyHistory(); rep.Intact() {
		t.Fatal("verify-history passes with the list behind its last signature")
	}
	res, err := w.Sign(SignOptions{Signer: signer})
	if err != nil || res.Version != "3" {
		t.Fatalf("sign after an interrupted sign: %+v, %v", res, err)
	}
	if rep, err := w.VerifyHistory(); err != nil || !rep.Intact() || rep.Signed != 3 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}
