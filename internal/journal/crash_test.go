package journal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A crash can stop a write at any byte. For every cut point in the last record, and random
// ones anywhere, Verify must report the records before the cut as intact and the rest as a
// torn tail (never as tampering), and the next Append must repair the journal.
func TestCrashAtEveryByte(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	j := openT(t, src, Options{Now: fakeClock()})
	if _, err := j.Append(payload(1), payload(2), payload(3)); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 8; i++ {
		if _, err := j.Append(json.RawMessage(`{"pad":"` + strings.Repeat("p", i*7) + `"}`)); err != nil {
			t.Fatal(err)
		}
	}
	whole, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	lastStart := bytes.LastIndexByte(whole[:len(whole)-1], '\n') + 1

	cuts := make(chan int)
	go func() {
		for c := lastStart; c <= len(whole); c++ {
			cuts <- c
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for range 40 {
			cuts <- rng.IntN(len(whole))
		}
		cuts <- 0
		cuts <- 1
		close(cuts)
	}()
	// Several at once, each in its own directory: the disk syncs them together.
	var wg sync.WaitGroup
	for range 8 {
		dir := t.TempDir()
		wg.Go(func() {
			for cut := range cuts {
				if err := crashAt(whole, cut, filepath.Join(dir, "j")); err != nil {
					t.Errorf("cut at %d: %v", cut, err)
				}
			}
		})
	}
	wg.Wait()
}

// crashAt writes whole[:cut] to path and checks what Verify and then Append make of it.
func crashAt(whole []byte, cut int, path string) error {
	b := whole[:cut]
	complete := bytes.LastIndexByte(b, '\n') + 1 // the bytes that form whole lines
	torn := complete < cut
	records := max(0, bytes.Count(b, []byte("\n"))-1)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}

	rep, err := Verify(path)
	if err != nil {
		return err
	}
	if rep.Problem != nil || rep.Records != records {
		return fmt.Errorf("%v; want %d records intact", rep, records)
	}
	if torn != (rep.Torn != nil) || (torn && rep.Torn.Offset != int64(complete)) {
		return fmt.Errorf("%v; want a torn tail from %d: %v", rep, complete, torn)
	}

	var repairs []Repair
	j, err := Open(path, Options{Now: fakeClock(), OnRepair: func(r Repair) { repairs = append(repairs, r) }})
	if err != nil {
		return err
	}
	es, err := j.Append(payload(99))
	j.Close()
	if err != nil {
		return err
	}
	if (len(repairs) == 1) != torn || es[0].Seq != uint64(records+1) {
		return fmt.Errorf("%d repairs, appended seq %d", len(repairs), es[0].Seq)
	}
	if rep, err := Verify(path); err != nil || !rep.Intact() || rep.Records != records+1 {
		return fmt.Errorf("after append: %v, %v", rep, err)
	}
	return nil
}
