package imagehash

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// prehashTree is a tree of images for TestPrehash.
type prehashTree struct {
	root, outside string
	images        map[string]string // path → sha512 of what Prehash must hash
	bytes         int64
	unreadable    []string // a file and a directory Prehash must skip with a warning
}

// makePrehashTree builds:
//
//	root/a.img, root/empty.img, root/sub/b.img, root/sub/deeper/c.img   hashed
//	root/linkdir → outside/ (holding d.img), root/linkfile → outside/e.img   not followed
//	root/pipe (a FIFO)                                                   not a file: ignored
//	root/unreadable.img, root/locked/ (holding f.img)                    skipped, warned
//
// The unreadable ones are mode 0 and owned by uid 4242, so that a process that has no
// capabilities over that uid (see runUnprivileged) cannot read them.
func makePrehashTree(t *testing.T) prehashTree {
	base := t.TempDir()
	tr := prehashTree{
		root:    filepath.Join(base, "images"),
		outside: filepath.Join(base, "outside"),
		images:  map[string]string{},
	}
	for _, d := range []string{"sub/deeper", "locked"} {
		if err := os.MkdirAll(filepath.Join(tr.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(tr.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a.img", "empty.img", "sub/b.img", "sub/deeper/c.img"} {
		p := filepath.Join(tr.root, name)
		size := (i + 1) * 300_000
		if name == "empty.img" {
			size = 0
		}
		tr.images[p] = writeImage(t, p, size, uint64(10+i))
		tr.bytes += int64(size)
	}
	writeImage(t, filepath.Join(tr.outside, "d.img"), 1000, 20)
	writeImage(t, filepath.Join(tr.outside, "e.img"), 1000, 21)
	writeImage(t, filepath.Join(tr.root, "locked", "f.img"), 1000, 22)
	writeImage(t, filepath.Join(tr.root, "unreadable.img"), 1000, 23)
	for link, target := range map[string]string{"linkdir": tr.outside, "linkfile": filepath.Join(tr.outside, "e.img")} {
		if err := os.Symlink(target, filepath.Join(tr.root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(tr.root, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr.unreadable = []string{filepath.Join(tr.root, "unreadable.img"), filepath.Join(tr.root, "locked")}
	for _, p := range tr.unreadable {
		if os.Geteuid() == 0 {
			if err := os.Chown(p, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(p, 0o700) }) // or TempDir cannot remove it
	}
	return tr
}

// prehashEnv makes TestPrehashChild run the checks of TestPrehash: "root:outside:cachedir".
const prehashEnv = "VMGATE_IMAGEHASH_PREHASH"

func TestPrehash(t *testing.T) {
	tr := makePrehashTree(t)
	cacheDir := filepath.Join(t.TempDir(), "hashes")
	if os.Geteuid() != 0 {
		checkPrehash(t, tr, cacheDir)
		return
	}
	// Root reads mode-0 files anyway: run the checks in a child whose root is root only in a
	// new user namespace, with no power over files of the unmapped uid 4242.
	cmd := exec.Command(os.Args[0], "-test.run=^TestPrehashChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), prehashEnv+"="+tr.root+":"+tr.outside+":"+cacheDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Skipf("cannot start a child in a user namespace: %v", err)
		}
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestPrehashChild") {
		t.Fatalf("child did not run the checks:\n%s", out)
	}
}

// TestPrehashChild is TestPrehash's child as root; on its own it does nothing.
func TestPrehashChild(t *testing.T) {
	spec := os.Getenv(prehashEnv)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, ":")
	tr := prehashTree{root: parts[0], outside: parts[1], images: map[string]string{}}
	for _, name := range []string{"a.img", "empty.img", "sub/b.img", "sub/deeper/c.img"} {
		p := filepath.Join(tr.root, name)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		tr.images[p] = sumOf(data)
		tr.bytes += int64(len(data))
	}
	tr.unreadable = []string{filepath.Join(tr.root, "unreadable.img"), filepath.Join(tr.root, "locked")}
	if _, err := os.Open(tr.unreadable[0]); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("setup: %s readable in the child: %v", tr.unreadable[0], err)
	}
	checkPrehash(t, tr, parts[2])
}

func checkPrehash(t *testing.T, tr prehashTree, cacheDir string) {
	c := New(cacheDir)
	c.now = newTestCache(t).now
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	st, err := c.Prehash(context.Background(), []string{tr.root}, log, false)
	want := Stats{Files: 5, Hashed: 4, Cached: 0, Bytes: tr.bytes, Errors: 2}
	if err != nil || st != want {
		t.Fatalf("Prehash = %+v, %v; want %+v\n%s", st, err, want, logs.String())
	}
	for _, p := range tr.unreadable {
		if !strings.Contains(logs.String(), p) {
			t.Errorf("no warning for %s:\n%s", p, logs.String())
		}
	}
	// Only the tree's own files were cached: not what its symbolic links lead to.
	if names := entries(t, c); len(names) != 4 {
		t.Errorf("cache has %d entries, want 4", len(names))
	}
	for _, name := range []string{"d.img", "e.img"} {
		if id := stat(t, filepath.Join(tr.outside, name)); hasEntry(c, id) {
			t.Errorf("%s, behind a symbolic link, was hashed", name)
		}
	}
	for p, sum := range tr.images {
		if res, err := c.Sum(p); err != nil || !res.Cached || res.SHA512 != sum {
			t.Errorf("Sum(%s) after Prehash = %+v, %v; want cached %s", p, res, err, sum)
		}
	}

	// Again, through a symbolic link to the root (image directories often are): all cached.
	rootLink := filepath.Join(t.TempDir(), "images-link")
	if err := os.Symlink(tr.root, rootLink); err != nil {
		t.Fatal(err)
	}
	st, err = c.Prehash(context.Background(), []string{rootLink, filepath.Join(tr.root, "missing")}, nil, false)
	want = Stats{Files: 5, Cached: 4, Errors: 3}
	if err != nil || st != want {
		t.Fatalf("second Prehash = %+v, %v; want %+v", st, err, want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Prehash(ctx, []string{tr.root}, nil, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("Prehash with a cancelled context: %v", err)
	}
}

func hasEntry(c *Cache, id identity) bool {
	_, err := os.Lstat(filepath.Join(c.dir, id.name()))
	return err == nil
}

// Cancelling stops Prehash inside a large image, not after it.
func TestPrehashCancelledMidImage(t *testing.T) {
	c := newTestCache(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big.img"), make([]byte, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Millisecond, cancel)
	_, err := c.Prehash(ctx, []string{dir}, nil, false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if names := entries(t, c); len(names) != 0 {
		t.Fatalf("entries = %v, want none", names)
	}
}

func TestPrehashStopsWhenCacheUnwritable(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "hashes")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := New(blocker)
	c.now = newTestCache(t).now
	imgs := filepath.Join(dir, "images")
	os.Mkdir(imgs, 0o755)
	writeImage(t, filepath.Join(imgs, "a.img"), 100, 1)
	writeImage(t, filepath.Join(imgs, "b.img"), 100, 2)
	st, err := c.Prehash(context.Background(), []string{imgs}, nil, false)
	if err == nil || st.Files != 1 {
		t.Fatalf("Prehash = %+v, %v; want an error after the first file", st, err)
	}
}

func TestPrune(t *testing.T) {
	c := newTestCache(t)
	dir := t.TempDir()
	keep, gone, rewritten := filepath.Join(dir, "keep.img"), filepath.Join(dir, "gone.img"), filepath.Join(dir, "rewritten.img")
	for i, p := range []string{keep, gone, rewritten} {
		writeImage(t, p, 1000, uint64(i))
		mustSum(t, c, p)
	}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // a new ctime on coarse-timestamp kernels
	writeImage(t, rewritten, 1000, 99)
	corrupt := filepath.Join(c.dir, "1-2-3-4-5")
	freshTemp := filepath.Join(c.dir, ".x.tmp-1")
	oldTemp := filepath.Join(c.dir, ".x.tmp-2")
	for _, p := range []string{corrupt, freshTemp, oldTemp} {
		if err := os.WriteFile(p, []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(oldTemp, old, old); err != nil {
		t.Fatal(err)
	}

	removed, err := c.Prune(context.Background(), nil)
	if err != nil || removed != 4 {
		t.Fatalf("Prune = %d, %v; want 4 removed", removed, err)
	}
	var left []string
	des, _ := os.ReadDir(c.dir)
	for _, de := range des {
		left = append(left, de.Name())
	}
	if want := []string{".x.tmp-1", stat(t, keep).name()}; strings.Join(left, " ") != strings.Join(want, " ") {
		t.Fatalf("left %v, want %v", left, want)
	}
	if res := mustSum(t, c, keep); !res.Cached {
		t.Fatal("kept entry no longer used")
	}
	if removed, err := New(filepath.Join(dir, "none")).Prune(context.Background(), nil); removed != 0 || err != nil {
		t.Fatalf("Prune of a missing cache = %d, %v", removed, err)
	}
}
