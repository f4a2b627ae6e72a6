package imagehash

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every kind of bad entry is a miss: the sum is recomputed from the image and a good entry
// replaces the bad one.
func TestBadEntryIsRecomputed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, path string, valid []byte)
	}{
		{"garbage", writeBytes([]byte("not an entry\n"))},
		{"empty", writeBytes(nil)},
		{"truncated", func(t *testing.T, p string, valid []byte) { writeBytes(valid[:len(valid)-7])(t, p, valid) }},
		{"trailing byte", func(t *testing.T, p string, valid []byte) { writeBytes(append(valid, '\n'))(t, p, valid) }},
		{"oversized", func(t *testing.T, p string, valid []byte) {
			writeBytes(append(valid, bytes.Repeat([]byte("x"), maxEntrySize)...))(t, p, valid)
		}},
		{"flipped digit in sum", func(t *testing.T, p string, valid []byte) {
			b := bytes.Clone(valid)
			i := bytes.Index(b, []byte("sha512 ")) + len("sha512 ") + 5
			b[i] = "01"[b[i]&1] // another hex digit, so only the check can tell
			writeBytes(b)(t, p, valid)
		}},
		{"non-canonical key", func(t *testing.T, p string, valid []byte) {
			writeBytes(bytes.Replace(valid, []byte("key "), []byte("key 0"), 1))(t, p, valid)
		}},
		{"another key's entry", func(t *testing.T, p string, valid []byte) {
			e, err := parseEntry(valid)
			if err != nil {
				t.Fatal(err)
			}
			e.key.ino++ // well formed, but for another file
			e.sum = strings.Repeat("ab", 64)
			writeBytes(e.marshal())(t, p, valid)
		}},
		{"group writable", func(t *testing.T, p string, valid []byte) {
			if err := os.Chmod(p, 0o620); err != nil {
				t.Fatal(err)
			}
		}},
		{"owned by someone else", func(t *testing.T, p string, valid []byte) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			if err := os.Chown(p, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink to a valid entry", func(t *testing.T, p string, valid []byte) {
			elsewhere := filepath.Join(t.TempDir(), "entry")
			writeBytes(valid)(t, elsewhere, valid)
			replace(t, p, func() error { return os.Symlink(elsewhere, p) })
		}},
		{"fifo", func(t *testing.T, p string, valid []byte) {
			replace(t, p, func() error { return syscall.Mkfifo(p, 0o600) })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCache(t)
			img := filepath.Join(t.TempDir(), "base.img")
			want := writeImage(t, img, 1<<16, 5)
			mustSum(t, c, img)
			p := filepath.Join(c.dir, entries(t, c)[0])
			valid, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			tc.corrupt(t, p, valid)

			res := sumWithin(t, c, img, 10*time.Second)
			if res.Cached || res.SHA512 != want || res.StoreErr != nil {
				t.Fatalf("Sum = %+v, want a recomputed %s, stored", res, want)
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, valid) {
				t.Fatalf("entry not restored: %q, %v", got, err)
			}
			if res := mustSum(t, c, img); !res.Cached {
				t.Fatalf("Sum after repair not cached")
			}
		})
	}
}

func writeBytes(b []byte) func(*testing.T, string, []byte) {
	return func(t *testing.T, p string, _ []byte) {
		t.Helper()
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func replace(t *testing.T, p string, create func() error) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := create(); err != nil {
		t.Fatal(err)
	}
}

// sumWithin fails the test instead of hanging when Sum blocks.
func sumWithin(t *testing.T, c *Cache, path string, d time.Duration) Result {
	t.Helper()
	type out struct {
		res Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := c.Sum(path)
		ch <- out{res, err}
	}()
	select {
	case o := <-ch:
		if o.err != nil {
			t.Fatal(o.err)
		}
		return o.res
	case <-time.After(d):
		t.Fatalf("Sum(%s) blocked", path)
		return Result{}
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := entry{
		key:  identity{dev: 2049, ino: 1 << 40, size: 1 << 33, mtime: -5, ctime: 1700000000123456789},
		sum:  strings.Repeat("0f", 64),
		path: "/var/lib/images/odd\nname\x00\xff.img",
	}
	got, err := parseEntry(e.marshal())
	if err != nil || got != e {
		t.Fatalf("parseEntry(marshal(e)) = %+v, %v; want %+v", got, err, e)
	}
	if strings.ContainsAny(e.key.name(), "/\x00") {
		t.Fatalf("name %q is not a file name", e.key.name())
	}
}

func FuzzParseEntry(f *testing.F) {
	e := entry{key: identity{1, 2, 3, 4, 5}, sum: strings.Repeat("a1", 64), path: "/images/base.img"}
	f.Add(e.marshal())
	f.Add([]byte(entryHeader + "\nkey 1 2 3 4 5\nsha512 x\npath \"\"\ncheck 00\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := parseEntry(data)
		if err != nil {
			return
		}
		if !bytes.Equal(e.marshal(), data) || !isSHA512Hex(e.sum) {
			t.Fatalf("accepted %q as %+v", data, e)
		}
	})
}
