package imagehash

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// identity is what keys a cache entry. ctime is there because no user can set it (touch -d
// resets mtime), so rewriting an image, even to the same size and mtime, changes the key.
type identity struct {
	dev, ino           uint64
	size, mtime, ctime int64 // bytes; nanoseconds since the epoch
}

// name is the entry's file name: derived from the key, so a lookup is one open, no scan.
func (id identity) name() string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", id.dev, id.ino, uint64(id.size), uint64(id.mtime), uint64(id.ctime))
}

func identityOf(st *syscall.Stat_t) identity {
	return identity{
		dev:   uint64(st.Dev),
		ino:   uint64(st.Ino),
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}
}

// openImage opens path, following symbolic links as disk paths normally do, and returns the
// descriptor and the identity fstat'ed on it. The caller closes fd, or hands it to asFile.
func openImage(path string) (fd int, id identity, err error) {
	// Refuse non-regular files before opening them: as root, opening a device can have side
	// effects (a watchdog starts, a tape rewinds on close). The fstat in openRegular stays the
	// check that counts, for a path swapped in between.
	if _, err := statIdentity(path); err != nil {
		return -1, identity{}, err
	}
	fd, st, err := openRegular(path, 0)
	if err != nil {
		return -1, identity{}, err
	}
	return fd, identityOf(st), nil
}

// statIdentity is the identity of the regular file path leads to now. A stat of the path is
// good for refusing early and for deciding that an entry is stale, never for keying one: the
// file may be replaced before it is opened.
func statIdentity(path string) (identity, error) {
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Stat(path, &st) }); err != nil {
		return identity{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return identity{}, notRegular(path, st.Mode)
	}
	return identityOf(&st), nil
}

// openRegular opens path read-only and fails unless the descriptor is a regular file. It
// returns a raw descriptor: a cache hit then costs no more system calls than open, fstat, read
// and close. O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer (and
// changes nothing for a regular file); O_NOCTTY keeps a terminal from becoming ours. flag adds
// open flags (O_NOFOLLOW for cache entries).
func openRegular(path string, flag int) (int, *syscall.Stat_t, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK|syscall.O_NOCTTY|flag, 0)
		return err
	})
	if err != nil {
		return -1, nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	st := new(syscall.Stat_t)
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, st) }); err != nil {
		syscall.Close(fd)
		return -1, nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return -1, nil, notRegular(path, st.Mode)
	}
	return fd, st, nil
}

// asFile wraps a descriptor from openRegular for reading; the *os.File owns it from here on,
// and fd is closed on error.
func asFile(fd int, path string) (*os.File, error) {
	// Back to blocking, so that os.NewFile treats it as the plain file it is rather than
	// trying the network poller.
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// readFull fills buf from fd.
func readFull(fd int, buf []byte) error {
	for off := 0; off < len(buf); {
		var n int
		err := ignoringEINTR(func() (err error) {
			n, err = syscall.Read(fd, buf[off:])
			return err
		})
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		off += n
	}
	return nil
}

// fstatIdentity is the identity of the open file now.
func fstatIdentity(f *os.File) (identity, error) {
	fi, err := f.Stat()
	if err != nil {
		return identity{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return identity{}, fmt.Errorf("fstat %s: no stat_t", f.Name())
	}
	return identityOf(st), nil
}

func notRegular(path string, mode uint32) error {
	kind := "unknown type"
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		kind = "directory"
	case syscall.S_IFIFO:
		kind = "named pipe"
	case syscall.S_IFCHR:
		kind = "character device"
	case syscall.S_IFBLK:
		kind = "block device"
	case syscall.S_IFSOCK:
		kind = "socket"
	case syscall.S_IFLNK:
		kind = "symbolic link"
	}
	return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, kind)
}

// ignoringEINTR retries a system call a signal interrupted, as package os does.
func ignoringEINTR(call func() error) error {
	for {
		err := call()
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
