package imagehash

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// requireRoot: the trust rules are about owners, flags and ACLs only root can set.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("VMGATE_INTEGRATION") == "1" {
			t.Fatal("this test needs root (chown, chattr +i)")
		}
		t.Skip("needs root (chown, chattr +i); VMGATE_INTEGRATION=1 makes this a failure")
	}
}

// clearImmutable lets t's cleanup remove a file it made immutable.
func clearImmutable(t *testing.T, path string) {
	t.Cleanup(func() {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		var flags int32
		syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), 0x80086601, uintptrOf(&flags)) // FS_IOC_GETFLAGS
		flags &^= fsImmutableFL
		syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), 0x40086602, uintptrOf(&flags)) // FS_IOC_SETFLAGS
	})
}

// A sum is served from the cache only for a file that cannot change behind it; any other
// file is hashed at every Sum and never cached.
func TestCacheTrustsOnlyUnchangeableFiles(t *testing.T) {
	requireRoot(t)
	cases := []struct {
		name     string
		prepare  func(t *testing.T, p string)
		trust    string
		distrust string
	}{
		{"root 0644", func(t *testing.T, p string) {}, TrustRootOnly, ""},
		{"root 0664", func(t *testing.T, p string) { os.Chmod(p, 0o664) }, "", "lets others write"},
		{"root 0646", func(t *testing.T, p string) { os.Chmod(p, 0o646) }, "", "lets others write"},
		{"qemu's uid (dynamic ownership)", func(t *testing.T, p string) { os.Chown(p, 64055, 64055) }, "", "owned by uid 64055"},
		// An ACL that grants write shows its mask in the group bits; any ACL is distrusted.
		{"ACL", func(t *testing.T, p string) {
			// user::rw- user:64055:rw- group::r-- mask::rw- other::r-- (ACL xattr version 2)
			acl := []byte{2, 0, 0, 0}
			for _, e := range [][3]uint32{{1, 6, 0xffffffff}, {2, 6, 64055}, {4, 4, 0xffffffff}, {0x10, 6, 0xffffffff}, {0x20, 4, 0xffffffff}} {
				acl = append(acl, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8), byte(e[2]), byte(e[2]>>8), byte(e[2]>>16), byte(e[2]>>24))
			}
			if err := syscall.Setxattr(p, "system.posix_acl_access", acl, 0); err != nil {
				t.Fatalf("setxattr: %v", err)
			}
		}, "", "mode 0664 lets others write"},
		{"immutable, owned by qemu's uid", func(t *testing.T, p string) {
			os.Chown(p, 64055, 64055)
			os.Chmod(p, 0o666)
			if set, err := MakeImmutable(p); err != nil || !set {
				t.Fatalf("MakeImmutable = %v, %v", set, err)
			}
			clearImmutable(t, p)
		}, TrustImmutable, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cache := newTestCache(t)
			img := filepath.Join(t.TempDir(), "base.img")
			want := writeImage(t, img, 1<<16, 7)
			c.prepare(t, img)
			first := mustSum(t, cache, img)
			second := mustSum(t, cache, img)
			if first.SHA512 != want || second.SHA512 != want || first.Trust != c.trust || !strings.Contains(first.Distrust, c.distrust) {
				t.Fatalf("Sum = %+v, want %s, trust %q, distrust %q", first, want, c.trust, c.distrust)
			}
			if second.Cached != (c.trust != "") {
				t.Fatalf("second Sum cached = %v, want %v", second.Cached, c.trust != "")
			}
		})
	}
}

// The attack the trust rules stop: a page dirtied through a shared mapping before the hash
// is rewritten after it, and neither mtime nor ctime moves, so the file's cache key stays
// the same. A file the writer could open (here owned by its uid) is hashed again and its new
// sum found; an immutable one cannot be opened for writing at all.
func TestMmapRewriteKeepsTheKey(t *testing.T) {
	requireRoot(t)
	cache := New(filepath.Join(t.TempDir(), "hashes"))
	img := filepath.Join(t.TempDir(), "base.img")
	good := bytes.Repeat([]byte("GOOD"), 1<<12)
	if err := os.WriteFile(img, good, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(img, 64055, 64055)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, len(good), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	m[0] = 'G' // dirty the page: the kernel stamps mtime and ctime now, not at later writes
	var before syscall.Stat_t
	syscall.Stat(img, &before)
	// Wait until the key is old enough to be cached (racyWindow), as an attacker would.
	for time.Since(time.Unix(before.Ctim.Unix())) <= racyWindow+time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	cache.now = time.Now
	if res := mustSum(t, cache, img); res.SHA512 != sumOf(good) {
		t.Fatal("first sum wrong")
	}
	copy(m, bytes.Repeat([]byte("EVIL"), 1<<12))
	var after syscall.Stat_t
	syscall.Stat(img, &after)
	if after.Mtim != before.Mtim || after.Ctim != before.Ctim || after.Size != before.Size {
		t.Logf("the kernel moved the timestamps this time (writeback ran in between): %v/%v -> %v/%v", before.Mtim, before.Ctim, after.Mtim, after.Ctim)
	}
	res := mustSum(t, cache, img)
	if res.Cached || res.SHA512 != sumOf(bytes.Repeat([]byte("EVIL"), 1<<12)) {
		t.Fatalf("after the rewrite: %+v; want the new bytes' sum, not the cached one", res)
	}
}

func uintptrOf(p *int32) uintptr { return uintptr(unsafe.Pointer(p)) }

// Prehash with seal makes base images immutable and leaves overlays writable.
func TestPrehashSeals(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	writeImage(t, base, 1<<16, 3)
	overlay := filepath.Join(dir, "vm.qcow2")
	// A minimal qcow2 v2 header naming a backing file.
	h := make([]byte, 512)
	copy(h, qcowMagicForTest)
	h[7] = 2                      // version 2
	h[15] = 72                    // backing file name at offset 72
	h[19] = byte(len("base.raw")) // its length
	h[23] = 16                    // cluster_bits
	copy(h[72:], "base.raw")
	if err := os.WriteFile(overlay, h, 0o644); err != nil {
		t.Fatal(err)
	}
	clearImmutable(t, base)
	clearImmutable(t, overlay)
	st, err := newTestCache(t).Prehash(t.Context(), []string{dir}, nil, true)
	if err != nil || st.Sealed != 1 || st.Unsealed != 1 {
		t.Fatalf("Prehash = %+v, %v; want 1 sealed, 1 left writable", st, err)
	}
	if _, err := os.OpenFile(base, os.O_WRONLY, 0); err == nil {
		t.Fatal("the sealed base can still be opened for writing")
	}
	if f, err := os.OpenFile(overlay, os.O_WRONLY, 0); err != nil {
		t.Fatalf("the overlay was sealed: %v", err)
	} else {
		f.Close()
	}
	// Sealing twice is no change.
	if set, err := MakeImmutable(base); set || err != nil {
		t.Fatalf("second MakeImmutable = %v, %v", set, err)
	}
}

const qcowMagicForTest = "QFI\xfb"

func TestParseLocks(t *testing.T) {
	in := `1: OFDLCK ADVISORY  READ  -1 fd:00:1835017 101 101
2: OFDLCK ADVISORY  READ  -1 fd:00:1835017 100 100
3: OFDLCK ADVISORY  READ  -1 08:01:42 100 100
4: POSIX  ADVISORY  WRITE 123 08:01:43 0 EOF
4: -> POSIX  ADVISORY  WRITE 124 08:01:44 0 EOF
`
	got := parseLocks(strings.NewReader(in))
	want := map[fileKey]bool{{0xfd00, 1835017}: true, {0x801, 43}: true}
	if len(got) != len(want) {
		t.Fatalf("parseLocks = %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("parseLocks = %v, want %v", got, want)
		}
	}
}
