package imagehash

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmgate/vmgate/internal/qcow2"
)

// qemuWriteLockByte is the byte QEMU locks (F_OFD_SETLK, shared) in every image it holds
// the write permission on: RAW_LOCK_PERM_BASE (100) + the bit of BLK_PERM_WRITE (1).
const qemuWriteLockByte = 101

// fileKey is a file's device and inode.
type fileKey struct{ dev, ino uint64 }

// writeLocked returns the files some QEMU holds open for writing, from /proc/locks. Sealing
// such a file would make its guest's writes fail.
func writeLocked() map[fileKey]bool {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return nil
	}
	defer f.Close()
	return parseLocks(f)
}

// parseLocks reads /proc/locks lines such as
// "3: OFDLCK ADVISORY  READ  -1 fd:00:1835017 101 101".
func parseLocks(r io.Reader) map[fileKey]bool {
	locked := map[fileKey]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[1] == "->" {
			continue // a waiter ("1: -> POSIX ...") is not holding anything
		}
		id := strings.Split(fields[5], ":")
		if len(id) != 3 {
			continue
		}
		major, err1 := strconv.ParseUint(id[0], 16, 32)
		minor, err2 := strconv.ParseUint(id[1], 16, 32)
		ino, err3 := strconv.ParseUint(id[2], 10, 64)
		start, err4 := strconv.ParseUint(fields[6], 10, 64)
		end := fields[7]
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			continue
		}
		covers := start <= qemuWriteLockByte
		if end != "EOF" {
			e, err := strconv.ParseUint(end, 10, 64)
			covers = covers && err == nil && e >= qemuWriteLockByte
		}
		if covers {
			locked[fileKey{unix.Mkdev(uint32(major), uint32(minor)), ino}] = true
		}
	}
	return locked
}

// sealable says why a file in image_dirs must not be made immutable, "" when it may be:
// a qcow2 overlay (a VM's own writable state, never a base), or a file a QEMU has open for
// writing.
func sealable(path string, locked map[fileKey]bool) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err.Error()
	}
	if locked[fileKey{st.Dev, st.Ino}] {
		return "a running VM writes to it"
	}
	head := make([]byte, 1<<16)
	n, _ := io.ReadFull(f, head)
	if bytes.HasPrefix(head[:n], []byte(qcow2.Magic)) {
		if h, err := qcow2.ParseHeader(head[:n]); err == nil && h.BackingFile != "" {
			return "it is a qcow2 overlay (it has a backing file)"
		}
	}
	return ""
}
