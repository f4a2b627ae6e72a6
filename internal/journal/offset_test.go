package journal

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func appendN(t *testing.T, path string, from, n int) {
	t.Helper()
	j, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := from; i < from+n; i++ {
		if _, err := j.Append(json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
}

func follow(t *testing.T, fl *Follower) (seqs []uint64, restarted bool) {
	t.Helper()
	restarted, err := fl.Next(func(e Entry) error { seqs = append(seqs, e.Seq); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return seqs, restarted
}

func TestFollower(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	fl := NewFollower(path)
	if got, _ := follow(t, fl); len(got) != 0 {
		t.Fatalf("no journal yet: got %v", got)
	}
	appendN(t, path, 0, 3)
	if got, _ := follow(t, fl); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("first read: %v", got)
	}
	appendN(t, path, 3, 2)
	before := fl.Position()
	got, restarted := follow(t, fl)
	if fmt.Sprint(got) != "[4 5]" || restarted {
		t.Fatalf("tail: %v restarted %v", got, restarted)
	}
	// Only the new bytes were read: ReadAfter from the earlier position sees the same.
	var again []uint64
	if err := ReadAfter(path, before, func(e Entry, _ int64) error { again = append(again, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again) != "[4 5]" {
		t.Fatalf("ReadAfter: %v", again)
	}
	if got, _ := follow(t, fl); len(got) != 0 {
		t.Fatalf("nothing new: %v", got)
	}

	// Retention replaces the file: the follower goes on after its seq.
	if _, err := Prune(path, func(e Entry) bool { return e.Seq > 2 }, Options{}); err != nil {
		t.Fatal(err)
	}
	appendN(t, path, 5, 1)
	if got, restarted := follow(t, fl); fmt.Sprint(got) != "[6]" || restarted {
		t.Fatalf("after prune: %v restarted %v", got, restarted)
	}

	// Another journal altogether: every record again, and restarted says so.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	appendN(t, path, 100, 2)
	if got, restarted := follow(t, fl); fmt.Sprint(got) != "[1 2]" || !restarted {
		t.Fatalf("new journal: %v restarted %v", got, restarted)
	}
}

func TestReadAfterRefusesAWrongPosition(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	appendN(t, path, 0, 2)
	fl := NewFollower(path)
	follow(t, fl)
	pos := fl.Position()
	pos.Offset -= 3
	if err := ReadAfter(path, pos, func(Entry, int64) error { return nil }); err != ErrNotAtPosition {
		t.Fatalf("shifted offset: %v", err)
	}
}
