package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// childEnv makes TestAppendChild, run in a child process, append to a journal.
const childEnv = "VMGATE_JOURNAL_CHILD" // "path,proc,count"

// TestAppendChild is one of the processes of TestAppendAcrossProcesses; on its own it does
// nothing.
func TestAppendChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, ",")
	proc, _ := strconv.Atoi(parts[1])
	count, _ := strconv.Atoi(parts[2])
	j, err := Open(parts[0], Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for i := range count {
		if _, err := j.Append(json.RawMessage(fmt.Sprintf(`{"proc":%d,"i":%d}`, proc, i))); err != nil {
			t.Fatal(err)
		}
	}
}

// Eight processes (this test binary, run again) and goroutines of this one append to the same
// journal at once. Every record must be there once, with seqs 1..N and an intact chain.
func TestAppendAcrossProcesses(t *testing.T) {
	const procs, perProc = 8, 200
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	want := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, procs+5)

	for p := range procs {
		for i := range perProc {
			want[fmt.Sprintf(`{"proc":%d,"i":%d}`, p, i)] = true
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestAppendChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", childEnv, path, p, perProc))
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("child %d: %v\n%s", p, err, out)
			}
		})
	}

	// In this process: two goroutines share one Journal (so the mutex must order them), two
	// have their own (so flock must), and one of those appends in batches.
	shared := openT(t, path, Options{})
	for g := range 4 {
		proc := procs + g
		j := shared
		if g >= 2 {
			j = openT(t, path, Options{})
		}
		batch := 1
		if g == 3 {
			batch = 5
		}
		var data []json.RawMessage
		for i := range 50 {
			d := fmt.Sprintf(`{"proc":%d,"i":%d}`, proc, i)
			want[d] = true
			data = append(data, json.RawMessage(d))
		}
		wg.Go(func() {
			for len(data) > 0 {
				if _, err := j.Append(data[:batch]...); err != nil {
					errs <- err
					return
				}
				data = data[batch:]
			}
		})
	}
	// Readers run alongside: they must never see a half-written append as a torn tail.
	done := make(chan struct{})
	verified := make(chan int)
	go func() {
		n := 0
		defer func() { verified <- n }()
		for {
			select {
			case <-done:
				return
			default:
			}
			rep, err := Verify(path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				errs <- err
				return
			}
			if err == nil && !rep.Intact() {
				errs <- fmt.Errorf("verify during appends: %v", rep)
				return
			}
			n++
		}
	}()
	wg.Wait()
	close(done)
	t.Logf("verified %d times during the appends", <-verified)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	all := readAll(t, path)
	if len(all) != len(want) {
		t.Errorf("%d records, want %d", len(all), len(want))
	}
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i+1, e.Seq)
		}
		if !want[string(e.Data)] {
			t.Fatalf("seq %d: %s unexpected or repeated", e.Seq, e.Data)
		}
		delete(want, string(e.Data))
	}
	if len(want) != 0 {
		t.Errorf("%d records missing", len(want))
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.Records != len(all) {
		t.Errorf("verify: %v", rep)
	}
}
