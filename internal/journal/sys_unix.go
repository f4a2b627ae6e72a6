//go:build unix

package journal

import (
	"errors"
	"os"
	"syscall"
)

const (
	lockShared    = syscall.LOCK_SH
	lockExclusive = syscall.LOCK_EX
	unlock        = syscall.LOCK_UN
)

// flock takes or drops an advisory lock on the whole file. It is tied to the open file, so
// it goes away with the process: a crashed appender cannot leave the journal locked.
func flock(f *os.File, how int) error {
	return control(f, "flock", func(fd int) error { return syscall.Flock(fd, how) })
}

// control runs a system call on f's descriptor, retrying when a signal interrupts it.
func control(f *os.File, name string, call func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var callErr error
	err = rc.Control(func(fd uintptr) {
		for {
			callErr = call(int(fd))
			if !errors.Is(callErr, syscall.EINTR) {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	if callErr != nil {
		return &os.PathError{Op: name, Path: f.Name(), Err: callErr}
	}
	return nil
}

// owner returns the user and group that own the file fi describes.
func owner(fi os.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
