// Package imagehash computes the sha512 of a base image's bytes, which is how a plain-libvirt
// VM's image is matched against the endorsed sl:checksum:sha512 values. Images are gigabytes and
// the hook runs at every start, so sums are cached by file identity: one small file per
// (device, inode, size, mtime, ctime), so that a hit costs a stat, an open, an fstat and one
// small read.
//
// The cache needs no lock: entries are written atomically (temporary file, fsync, rename), so
// the many hook processes libvirt may run at once see a whole entry or none. An entry that does
// not read back exactly as it was written is ignored and recomputed, never trusted.
//
// A cached sum is served only while the file cannot have changed: immutable (chattr +i),
// under fs-verity, or writable by root alone (see trust_linux.go). Any other file is hashed
// at every Sum: its identity does not prove that its bytes are the same.
//
// Whoever can write the cache directory could map an image to any sum, so the directory is
// created 0700 and entries not owned by root or the current user, or writable by others, are
// ignored.
package imagehash

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vmgate/vmgate/internal/atomicfile"
)

// bufSize is the read size while hashing: large reads keep the system-call cost negligible
// next to sha512 and let the kernel read ahead in big chunks.
const bufSize = 1 << 20

// racyWindow is how old a file's ctime must be before its identity may key a cache entry.
// Timestamps are coarse (a kernel tick; 2 s on FAT), so a write landing in the same tick as
// the one we recorded would leave ctime unchanged and the stale sum would be found forever.
// Writes after we looked get a ctime at least our start time minus one tick, so a ctime older
// than that cannot be repeated by a later write (git calls this the "racy clean" problem).
const racyWindow = 2 * time.Second

var (
	// ErrNotRegular is returned for paths that are not regular files (FIFOs, devices,
	// directories, sockets): only a file's bytes identify an image.
	ErrNotRegular = errors.New("not a regular file")
	// ErrChanged is returned when the file's identity changed between the first fstat and the
	// end of hashing, so the sum may mix old and new bytes.
	ErrChanged = errors.New("image changed while it was being hashed")
)

// Cache computes and caches image sums. It holds no mutable state: one Cache may be used from
// many goroutines, and many processes may share its directory.
type Cache struct {
	dir string
	// now is the clock for the racy-ctime check; tests replace it to make fresh files count
	// as old.
	now func() time.Time
}

// New returns a cache kept in dir (for example <state_dir>/hashes). It does no I/O: dir is
// created, 0700, on the first write.
func New(dir string) *Cache {
	return &Cache{dir: dir, now: time.Now}
}

// Result is the outcome of Sum.
type Result struct {
	// SHA512 is the lowercase hex sha512 of the file's bytes.
	SHA512 string
	// Size is the file's size in bytes.
	Size int64
	// Cached reports whether SHA512 came from the cache rather than from reading the file.
	Cached bool
	// Trust says why the file cannot change behind the cache (TrustImmutable, TrustVerity,
	// TrustRootOnly); "" when it can, and then Distrust says why, the sum is not cached and
	// every Sum reads the whole file again.
	Trust, Distrust string
	// StoreErr, when set, says why a freshly computed sum could not be cached. SHA512 is still
	// right: callers should log it, not fail.
	StoreErr error
}

// Sum returns the sha512 of the file at path, a regular file or a symbolic link to one. The
// identity that keys the cache is taken from the open descriptor, so the bytes hashed and the
// identity recorded belong to the same file.
func (c *Cache) Sum(path string) (Result, error) {
	return c.sum(context.Background(), path, nil)
}

// sum is Sum with cancellation (for Prehash, which may be stopped mid-image) and an optional
// reusable buffer.
func (c *Cache) sum(ctx context.Context, path string, buf []byte) (Result, error) {
	start := c.now()
	fd, id, err := openImage(path)
	if err != nil {
		return Result{}, err
	}
	// A cached sum is served only for a file that cannot have changed since (see trust).
	how, distrust := trust(fd)
	if how != "" {
		if sum, ok := c.lookup(id); ok {
			syscall.Close(fd)
			return Result{SHA512: sum, Size: id.size, Cached: true, Trust: how}, nil
		}
	}
	f, err := asFile(fd, path)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()

	if buf == nil {
		buf = make([]byte, bufSize)
	}
	h := sha512.New()
	// ctxReader also hides (*os.File).WriteTo, which io.CopyBuffer would otherwise use with
	// its own 32 KiB buffer.
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, buf)
	if err != nil {
		return Result{}, fmt.Errorf("hash %s: %w", path, err)
	}
	after, err := fstatIdentity(f)
	if err != nil {
		return Result{}, err
	}
	if after != id || n != id.size {
		return Result{}, fmt.Errorf("%s: %w", path, ErrChanged)
	}

	res := Result{SHA512: hex.EncodeToString(h.Sum(nil)), Size: n, Trust: how, Distrust: distrust}
	if how == "" {
		return res, nil // it would never be served: hash again next time
	}
	if id.ctime >= start.Add(-racyWindow).UnixNano() {
		// Too recent to be a trustworthy key (see racyWindow); the next start hashes again.
		return res, nil
	}
	res.StoreErr = c.store(entry{key: id, sum: res.SHA512, path: absPath(path)})
	return res, nil
}

// ctxReader stops a long read when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// store writes e atomically, so that concurrent writers of the same entry each replace it
// whole.
func (c *Cache) store(e entry) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("hash cache: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(c.dir, e.key.name()), e.marshal(), 0o600); err != nil {
		return fmt.Errorf("hash cache: %w", err)
	}
	return nil
}

// lookup returns the cached sum for id. Anything but a whole, well-formed, trusted entry for
// exactly this identity is a miss.
func (c *Cache) lookup(id identity) (string, bool) {
	e, err := readEntry(filepath.Join(c.dir, id.name()))
	if err != nil || e.key != id {
		return "", false
	}
	return e.sum, true
}

// absPath is recorded in entries for Prune and for people reading the cache; the sum itself
// does not depend on it.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
