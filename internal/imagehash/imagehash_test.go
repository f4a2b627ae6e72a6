package imagehash

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// newTestCache returns a cache whose clock runs an hour ahead, so that files a test has just
// written count as old enough to cache (see racyWindow).
func newTestCache(t testing.TB) *Cache {
	c := New(filepath.Join(t.TempDir(), "hashes"))
	c.now = func() time.Time { return time.Now().Add(time.Hour) }
	return c
}

// writeImage writes size pseudo-random bytes to path and returns their sha512.
func writeImage(t testing.TB, path string, size int, seed uint64) string {
	t.Helper()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(data)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return sumOf(data)
}

func sumOf(data []byte) string {
	sum := sha512.Sum512(data)
	return hex.EncodeToString(sum[:])
}

// entries lists the cache's entry names; it fails on leftover temporary files.
func entries(t testing.TB, c *Cache) []string {
	t.Helper()
	des, err := os.ReadDir(c.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") {
			t.Errorf("temporary file left in the cache: %s", de.Name())
			continue
		}
		names = append(names, de.Name())
	}
	return names
}

func mustSum(t testing.TB, c *Cache, path string) Result {
	t.Helper()
	res, err := c.Sum(path)
	if err != nil {
		t.Fatalf("Sum(%s): %v", path, err)
	}
	if res.StoreErr != nil {
		t.Fatalf("Sum(%s): not stored: %v", path, res.StoreErr)
	}
	return res
}

func TestSumMissThenHit(t *testing.T) {
	c := newTestCache(t)
	img := filepath.Join(t.TempDir(), "base.img")
	want := writeImage(t, img, 3*bufSize+17, 1)

	res := mustSum(t, c, img)
	if res.SHA512 != want || res.Cached || res.Size != 3*bufSize+17 {
		t.Fatalf("first Sum = %+v, want %s, not cached", res, want)
	}
	res = mustSum(t, c, img)
	if res.SHA512 != want || !res.Cached || res.Size != 3*bufSize+17 {
		t.Fatalf("second Sum = %+v, want %s, cached", res, want)
	}

	names := entries(t, c)
	if len(names) != 1 {
		t.Fatalf("entries = %v, want one", names)
	}
	e, err := readEntry(filepath.Join(c.dir, names[0]))
	if err != nil || e.sum != want || e.path != img {
		t.Fatalf("entry = %+v, %v", e, err)
	}
	for p, perm := range map[string]os.FileMode{c.dir: 0o700, filepath.Join(c.dir, names[0]): 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode().Perm(), err, perm)
		}
	}
}

func TestEmptyFile(t *testing.T) {
	c := newTestCache(t)
	img := filepath.Join(t.TempDir(), "empty.img")
	want := writeImage(t, img, 0, 1)
	if res := mustSum(t, c, img); res.SHA512 != want || res.Size != 0 {
		t.Fatalf("Sum = %+v, want %s", res, want)
	}
	if res := mustSum(t, c, img); !res.Cached {
		t.Fatalf("second Sum not cached")
	}
}

// A file written less than racyWindow ago is hashed but not cached: a write in the same
// timestamp tick would not change its key.
func TestFreshFileNotCached(t *testing.T) {
	c := New(filepath.Join(t.TempDir(), "hashes"))
	img := filepath.Join(t.TempDir(), "fresh.img")
	want := writeImage(t, img, 4096, 1)
	for range 2 {
		res := mustSum(t, c, img)
		if res.SHA512 != want || res.Cached {
			t.Fatalf("Sum = %+v, want %s, not cached", res, want)
		}
	}
	if names := entries(t, c); len(names) != 0 {
		t.Fatalf("entries = %v, want none", names)
	}
}

// Rewriting an image to the same size and resetting its mtime (touch -d) must not reach the old
// entry: ctime, which nobody can set, is in the key.
func TestRewriteWithSameSizeAndMtimeMisses(t *testing.T) {
	c := newTestCache(t)
	img := filepath.Join(t.TempDir(), "base.img")
	old := writeImage(t, img, 1<<16, 1)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := os.Chtimes(img, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	before := stat(t, img)
	if res := mustSum(t, c, img); res.SHA512 != old {
		t.Fatalf("Sum = %s, want %s", res.SHA512, old)
	}

	// Older kernels keep ctime to a tick (up to 10 ms); newer ones (multigrain timestamps)
	// do not need the pause. racyWindow covers this in production; this test's clock is
	// shifted past it.
	time.Sleep(50 * time.Millisecond)
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("rewritten"), 1000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(img, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	after := stat(t, img)
	if after.ino != before.ino || after.size != before.size || after.mtime != before.mtime || after.ctime == before.ctime {
		t.Fatalf("setup: identity %+v -> %+v, want only ctime to change", before, after)
	}

	data, _ := os.ReadFile(img)
	res := mustSum(t, c, img)
	if res.Cached || res.SHA512 != sumOf(data) || res.SHA512 == old {
		t.Fatalf("Sum after rewrite = %+v, want a fresh sum of the new bytes", res)
	}
}

func stat(t testing.TB, path string) identity {
	t.Helper()
	id, err := statIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSumConcurrentGoroutines(t *testing.T) {
	c := newTestCache(t)
	img := filepath.Join(t.TempDir(), "base.img")
	want := writeImage(t, img, 4<<20, 2)

	var wg sync.WaitGroup
	results := make([]Result, 16)
	errs := make([]error, 16)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = c.Sum(img) })
	}
	wg.Wait()
	for i, res := range results {
		if errs[i] != nil || res.StoreErr != nil || res.SHA512 != want {
			t.Errorf("goroutine %d: %+v, %v", i, res, errs[i])
		}
	}
	checkOneValidEntry(t, c, want)
	if res := mustSum(t, c, img); !res.Cached || res.SHA512 != want {
		t.Fatalf("Sum after the race = %+v", res)
	}
}

// checkOneValidEntry fails unless the cache holds exactly one entry, whole, with sum want.
func checkOneValidEntry(t testing.TB, c *Cache, want string) {
	t.Helper()
	names := entries(t, c)
	if len(names) != 1 {
		t.Fatalf("entries = %v, want one", names)
	}
	e, err := readEntry(filepath.Join(c.dir, names[0]))
	if err != nil || e.sum != want || e.key.name() != names[0] {
		t.Fatalf("entry %s = %+v, %v", names[0], e, err)
	}
}

func TestFIFORefusedWithoutBlocking(t *testing.T) {
	c := newTestCache(t)
	fifo := filepath.Join(t.TempDir(), "pipe.img")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() {
		_, err := c.Sum(fifo)
		done <- err
	}()
	// openRegular is the guard for a FIFO swapped in after Sum's first stat: it must not
	// wait for a writer either.
	go func() {
		fd, _, err := openRegular(fifo, 0)
		if err == nil {
			syscall.Close(fd)
		}
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "named pipe") {
				t.Errorf("err = %v, want ErrNotRegular (named pipe)", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("opening a FIFO blocked")
		}
	}
}

func TestNonRegularRefused(t *testing.T) {
	c := newTestCache(t)
	dir := t.TempDir()
	for path, kind := range map[string]string{dir: "directory", "/dev/null": "character device"} {
		_, err := c.Sum(path)
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), kind) {
			t.Errorf("Sum(%s) err = %v, want ErrNotRegular (%s)", path, err, kind)
		}
		fd, _, err := openRegular(path, 0)
		if err == nil {
			syscall.Close(fd)
		}
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("openRegular(%s) err = %v, want ErrNotRegular", path, err)
		}
	}
	if _, err := c.Sum(filepath.Join(dir, "missing.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestSymlinkFollowed(t *testing.T) {
	c := newTestCache(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "base.img")
	want := writeImage(t, img, 1<<16, 3)
	link := filepath.Join(dir, "disk.img")
	if err := os.Symlink("base.img", link); err != nil {
		t.Fatal(err)
	}
	if res := mustSum(t, c, link); res.SHA512 != want || res.Cached {
		t.Fatalf("Sum(link) = %+v, want %s", res, want)
	}
	// Same file, same key: the sum hashed through the link serves the target.
	if res := mustSum(t, c, img); res.SHA512 != want || !res.Cached {
		t.Fatalf("Sum(target) = %+v, want %s, cached", res, want)
	}
}

// While Sum reads, another process appends to or rewrites the image in place: the sum may mix
// old and new bytes, so Sum must fail and cache nothing.
func TestImageChangedWhileHashing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flag  int
		write func(f *os.File, i int) error
	}{
		{"append", os.O_APPEND, func(f *os.File, i int) error { _, err := f.Write([]byte{byte(i)}); return err }},
		// Same bytes, same size, same content: only ctime tells.
		{"rewrite in place", 0, func(f *os.File, i int) error { _, err := f.WriteAt([]byte{0}, 0); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCache(t)
			img := filepath.Join(t.TempDir(), "base.img")
			if err := os.WriteFile(img, make([]byte, 32<<20), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(img, os.O_WRONLY|tc.flag, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			stop, started := make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					if err := tc.write(f, i); err != nil {
						t.Error(err)
						return
					}
					if i == 0 {
						close(started)
					}
					select {
					case <-stop:
						return
					default:
						time.Sleep(100 * time.Microsecond)
					}
				}
			})
			<-started
			_, err = c.Sum(img)
			close(stop)
			wg.Wait()
			if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "image changed while it was being hashed") {
				t.Fatalf("err = %v, want ErrChanged", err)
			}
			if names := entries(t, c); len(names) != 0 {
				t.Fatalf("entries = %v, want none", names)
			}
		})
	}
}

func TestStoreFailureStillReturnsSum(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "hashes")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil { // a file where the cache dir should be
		t.Fatal(err)
	}
	c := New(blocker)
	c.now = func() time.Time { return time.Now().Add(time.Hour) }
	img := filepath.Join(dir, "base.img")
	want := writeImage(t, img, 1000, 4)
	res, err := c.Sum(img)
	if err != nil || res.SHA512 != want || res.StoreErr == nil {
		t.Fatalf("Sum = %+v, %v; want the sum and a StoreErr", res, err)
	}
}
