package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// pruneChildEnv makes TestPruneAppendChild, run in a child process, append to a journal
	// until a stop file appears.
	pruneChildEnv = "VMGATE_JOURNAL_PRUNE_CHILD" // "path,proc,stopfile"
	// crashChildEnv makes TestPruneCrashChild prune a journal and die just before the rename.
	crashChildEnv = "VMGATE_JOURNAL_PRUNE_CRASH" // "path"
)

var appendedLine = regexp.MustCompile(`(?m)^appended (\d+)$`)

// TestPruneAppendChild is one of the appenders of TestPruneWhileAppending; on its own it does
// nothing. Odd procs open the journal for each append, as hook processes do; even ones keep
// one Journal, as a daemon does. It prints how many appends returned nil.
func TestPruneAppendChild(t *testing.T) {
	spec := os.Getenv(pruneChildEnv)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, ",")
	path, stop := parts[0], parts[2]
	proc, _ := strconv.Atoi(parts[1])
	var j *Journal
	n := 0
	defer func() { fmt.Printf("appended %d\n", n) }()
	for ; ; n++ {
		if _, err := os.Stat(stop); err == nil {
			return
		}
		if j == nil {
			var err error
			if j, err = Open(path, Options{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := j.Append(json.RawMessage(fmt.Sprintf(`{"proc":%d,"i":%d}`, proc, n))); err != nil {
			t.Fatal(err)
		}
		if proc%2 == 1 {
			j.Close()
			j = nil
		}
	}
}

// Four processes, and a goroutine here, append while two goroutines prune, 20 and 10 times,
// with a Verify running alongside. Every append that returned nil must be either in the final
// journal or dropped by a prune whose keep rejected it, once; seqs must be consecutive
// across both, the chain unbroken from the first dropped record to the last kept one.
func TestPruneWhileAppending(t *testing.T) {
	const procs = 4
	dir := t.TempDir()
	path := filepath.Join(dir, "trace.jsonl")
	stop := filepath.Join(dir, "stop")
	errs := make(chan error, 100)
	var wg sync.WaitGroup

	counts := make([]int, procs+1) // appends that returned nil, by proc
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPruneAppendChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%s", pruneChildEnv, path, p, stop))
		wg.Go(func() {
			out, err := cmd.CombinedOutput()
			m := appendedLine.FindSubmatch(out)
			if err != nil || m == nil {
				errs <- fmt.Errorf("child %d: %v\n%s", p, err, out)
				return
			}
			counts[p], _ = strconv.Atoi(string(m[1]))
		})
	}
	wg.Go(func() {
		j, err := Open(path, Options{})
		if err != nil {
			errs <- err
			return
		}
		defer j.Close()
		for ; ; counts[procs]++ {
			if _, err := os.Stat(stop); err == nil {
				return
			}
			if _, err := j.Append(json.RawMessage(fmt.Sprintf(`{"proc":%d,"i":%d}`, procs, counts[procs]))); err != nil {
				errs <- err
				return
			}
		}
	})
	// Readers must never see a broken journal, whichever file they open.
	verified := 0
	verifyDone := make(chan struct{})
	go func() {
		defer close(verifyDone)
		for ; ; verified++ {
			if _, err := os.Stat(stop); err == nil {
				return
			}
			rep, err := Verify(path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				errs <- err
				return
			}
			if err == nil && !rep.Intact() {
				errs <- fmt.Errorf("verify during prunes: %v", rep)
				return
			}
		}
	}()

	var mu sync.Mutex
	dropped := map[uint64]Entry{} // by every prune
	totalDropped := 0
	// prune runs one Prune with keep number i of a few kinds, and files what it dropped.
	prune := func(i int) error {
		rep, err := Verify(path)
		if err != nil {
			return err
		}
		mid := (rep.AnchorSeq + rep.LastSeq) / 2
		var first uint64
		kinds := []func(Entry) bool{
			func(e Entry) bool { return e.Seq > mid },    // about half
			func(e Entry) bool { return false },          // all, even what is appended meanwhile
			func(e Entry) bool { return true },           // nothing
			func(e Entry) bool { return e.Seq != first }, // just the first
			func(e Entry) bool { return e.Seq%7 == 0 },
		}
		seen := map[uint64]Entry{}
		res, err := Prune(path, func(e Entry) bool {
			if first == 0 {
				first = e.Seq
			}
			if kinds[i%len(kinds)](e) {
				return true
			}
			seen[e.Seq] = e
			return false
		}, Options{})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for seq, e := range seen {
			if seq > res.AnchorSeq {
				return fmt.Errorf("prune %d: keep rejected seq %d, anchored at %d", i, seq, res.AnchorSeq)
			}
			if _, dup := dropped[seq]; dup {
				return fmt.Errorf("prune %d: seq %d dropped twice", i, seq)
			}
			dropped[seq] = e
			n++
		}
		if n != res.Dropped {
			return fmt.Errorf("prune %d: keep rejected %d, result says %d dropped", i, n, res.Dropped)
		}
		if res.Dropped > 0 && dropped[res.AnchorSeq].Hash != res.Anchor {
			return fmt.Errorf("prune %d: anchor %+v is not the last record dropped", i, res)
		}
		totalDropped += n
		return nil
	}

	// Start once the appenders are under way.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if rep, err := Verify(path); err == nil && rep.LastSeq >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("appenders did not start")
		}
	}
	var pruners sync.WaitGroup
	for _, times := range []int{20, 10} {
		pruners.Go(func() {
			for i := range times {
				if err := prune(i); err != nil {
					errs <- err
					return
				}
				time.Sleep(10 * time.Millisecond) // let some appends in
			}
		})
	}
	pruners.Wait()
	os.WriteFile(stop, nil, 0o600)
	wg.Wait()
	<-verifyDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	final := readAll(t, path)
	rep := verifyT(t, path)
	t.Logf("appended %v; %d dropped by 30 prunes, %d kept; verified %d times meanwhile", counts, totalDropped, len(final), verified)
	if !rep.Intact() || rep.Records != len(final) || int(rep.AnchorSeq) != len(dropped) {
		t.Fatalf("final journal: %v; %d dropped", rep, len(dropped))
	}
	// The whole history: dropped records 1..anchor, then the journal, one chain.
	all := make([]Entry, 0, len(dropped)+len(final))
	for seq := uint64(1); seq <= rep.AnchorSeq; seq++ {
		e, ok := dropped[seq]
		if !ok {
			t.Fatalf("seq %d is neither dropped nor in the journal", seq)
		}
		all = append(all, e)
	}
	all = append(all, final...)
	want := map[string]bool{}
	for p, n := range counts {
		for i := range n {
			want[fmt.Sprintf(`{"proc":%d,"i":%d}`, p, i)] = true
		}
	}
	prev := zeroHash
	for i, e := range all {
		if e.Seq != uint64(i+1) || e.Prev != prev {
			t.Fatalf("record %d: seq %d, prev %.12s, want prev %.12s", i+1, e.Seq, e.Prev, prev)
		}
		prev = e.Hash
		if !want[string(e.Data)] {
			t.Fatalf("seq %d: %s unexpected or repeated", e.Seq, e.Data)
		}
		delete(want, string(e.Data))
	}
	if len(want) != 0 {
		t.Errorf("%d confirmed appends lost", len(want))
	}
}

// TestPruneCrashChild prunes the journal of TestPruneCrashBeforeRename and dies just before
// the rename; on its own it does nothing.
func TestPruneCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		return
	}
	beforeRename = func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	_, err := Prune(path, keepFrom(11), Options{})
	t.Fatalf("still alive, prune returned %v", err)
}

// A crash before the rename leaves the journal as it was, and a temporary file that Append,
// Verify and Read ignore and the next Prune replaces.
func TestPruneCrashBeforeRename(t *testing.T) {
	path := newJournalT(t, 20)
	orig, _ := os.ReadFile(path)
	fi := statT(t, path)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPruneCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v\n%s", err, out)
	}

	if b, _ := os.ReadFile(path); !bytes.Equal(b, orig) || !os.SameFile(fi, statT(t, path)) {
		t.Fatal("journal changed by a prune that crashed")
	}
	left, err := os.ReadFile(path + PruneSuffix)
	if err != nil || !bytes.HasPrefix(left, []byte(headerStart)) {
		t.Fatalf("no temporary file left: %q, %v", left, err)
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.Records != 20 || rep.AnchorSeq != 0 {
		t.Errorf("verify: %v", rep)
	}
	if n := len(readAll(t, path)); n != 20 {
		t.Errorf("read %d records", n)
	}
	j := openT(t, path, Options{})
	if es, err := j.Append(payload(21)); err != nil || es[0].Seq != 21 {
		t.Fatalf("append after the crash: %+v, %v", es, err)
	}

	res := pruneT(t, path, keepFrom(11), Options{})
	if res.Dropped != 10 || res.Kept != 11 {
		t.Errorf("prune after the crash: %+v", res)
	}
	if rep := verifyT(t, path); !rep.Intact() || rep.AnchorSeq != 10 || rep.Records != 11 {
		t.Errorf("verify: %v", rep)
	}
	noTempLeft(t, path)

	// A temporary file cut short is no different, and goes even when nothing is dropped.
	os.WriteFile(path+PruneSuffix, left[:len(left)/2], 0o600)
	if res := pruneT(t, path, keepFrom(1), Options{}); res.Dropped != 0 {
		t.Errorf("prune: %+v", res)
	}
	noTempLeft(t, path)
}
