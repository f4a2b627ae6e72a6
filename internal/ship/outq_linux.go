package ship

import (
	"net"
	"syscall"
	"unsafe"
)

// unacked returns how many bytes (and FIN) we sent on c that the peer's TCP has not
// acknowledged yet (SIOCOUTQ), and the socket's pending error, if any (SO_ERROR: a reset
// from the peer). ok is false when the kernel cannot tell.
func unacked(c *net.TCPConn) (n int, sockErr error, ok bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, nil, false
	}
	var q int32
	var errno syscall.Errno
	cerr := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&q)))
		if errno != 0 {
			return
		}
		if e, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR); err == nil && e != 0 {
			sockErr = syscall.Errno(e)
		}
	})
	if cerr != nil || errno != 0 {
		return 0, nil, false
	}
	return int(q), sockErr, true
}
