package imagehash

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// childEnv makes TestSumChild, run in a child process, hash an image: "cachedir:image".
const childEnv = "VMGATE_IMAGEHASH_CHILD"

const childRounds = 20

// TestSumChild is one of the processes of TestSumAcrossProcesses; on its own it does nothing.
// It prints one "SUM <hex>" line per round and removes the entry now and then, so that the
// processes keep racing to write it.
func TestSumChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		return
	}
	dir, img, _ := strings.Cut(spec, ":")
	c := New(dir)
	c.now = newTestCache(t).now
	for i := range childRounds {
		res := mustSum(t, c, img)
		fmt.Printf("SUM %s\n", res.SHA512)
		if i%3 == 0 {
			removeEntries(t, c)
		}
	}
}

func removeEntries(t testing.TB, c *Cache) {
	des, _ := os.ReadDir(c.dir)
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") {
			continue // another writer's temporary file
		}
		if err := os.Remove(filepath.Join(c.dir, de.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Error(err)
		}
	}
}

// Eight processes (this test binary, run again) and goroutines of this one hash the same image
// into the same cache at once, removing the entry now and then. Every sum must be right and
// the cache must end with one whole entry and no temporary files.
func TestSumAcrossProcesses(t *testing.T) {
	const procs, goroutines = 8, 8
	c := newTestCache(t)
	img := filepath.Join(t.TempDir(), "base.img")
	want := writeImage(t, img, 2<<20, 6)

	var wg sync.WaitGroup
	for p := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSumChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+c.dir+":"+img)
		wg.Go(func() {
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("child %d: %v\n%s", p, err, out)
				return
			}
			n := 0
			for line := range strings.Lines(string(out)) {
				if sum, ok := strings.CutPrefix(strings.TrimSpace(line), "SUM "); ok {
					n++
					if sum != want {
						t.Errorf("child %d: sum %s, want %s", p, sum, want)
					}
				}
			}
			if n != childRounds {
				t.Errorf("child %d: %d sums, want %d\n%s", p, n, childRounds, out)
			}
		})
	}
	for range goroutines {
		wg.Go(func() {
			for i := range childRounds {
				res, err := c.Sum(img)
				if err != nil || res.StoreErr != nil || res.SHA512 != want {
					t.Errorf("Sum = %+v, %v", res, err)
				}
				if i%5 == 0 {
					removeEntries(t, c)
				}
			}
		})
	}
	wg.Wait()
	mustSum(t, c, img) // the last round may have removed the entry
	checkOneValidEntry(t, c, want)
}
