package imagehash

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Why a cached sum may be served: the file cannot have changed since it was hashed. A file's
// identity (device, inode, size, mtime, ctime) does not prove that: a process that maps the
// file MAP_SHARED and dirtied a page before the hash can rewrite that page afterwards
// without the kernel touching mtime or ctime again (no new page fault until writeback).
// Who can do that is whoever can open the image for writing: with libvirt's dynamic
// ownership, the QEMU user (libvirt-qemu, qemu) to which libvirt chowns every image of a
// running VM, so a guest that escapes into its QEMU process could rewrite a base image
// other VMs boot from, and the next start would be served the old sum.
const (
	// fsImmutableFL is FS_IMMUTABLE_FL from <linux/fs.h>.
	fsImmutableFL = 0x00000010

	TrustImmutable = "immutable" // FS_IMMUTABLE_FL (chattr +i): no one opens it for writing
	TrustVerity    = "fs-verity" // the kernel checks every page read against a Merkle tree
	TrustRootOnly  = "root-only" // owned by root, no group or other write bit, no ACL
)

// trust says why the file open at fd cannot have changed behind the cache's back, or why it
// can ("" and the reason).
func trust(fd int) (string, string) {
	if flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS); err == nil && flags&fsImmutableFL != 0 {
		return TrustImmutable, ""
	}
	var sx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS, &sx); err == nil &&
		sx.Attributes_mask&unix.STATX_ATTR_VERITY != 0 && sx.Attributes&unix.STATX_ATTR_VERITY != 0 {
		return TrustVerity, ""
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", fmt.Sprintf("fstat: %v", err)
	}
	switch {
	case st.Uid != 0:
		return "", fmt.Sprintf("owned by uid %d", st.Uid)
	case st.Mode&0o022 != 0:
		return "", fmt.Sprintf("mode %#o lets others write", st.Mode&0o777)
	}
	// An access ACL can grant write to named users and groups whatever the mode bits say
	// (the group bits are then the ACL's mask). Any ACL at all is taken as a possible writer.
	if _, err := unix.Fgetxattr(fd, "system.posix_acl_access", nil); err == nil {
		return "", "it has a POSIX ACL"
	} else if !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
		return "", fmt.Sprintf("its ACL cannot be read (%v)", err)
	}
	// The parent directory does not matter: replacing the file through it gives a new inode,
	// which is another cache key.
	return TrustRootOnly, ""
}

// MakeImmutable sets FS_IMMUTABLE_FL on the file at path (chattr +i): from then on no one,
// root included, can open it for writing, rename, link or delete it until the flag is
// cleared. It reports whether the flag was set by this call (false: it was there already).
// A process that had the file open for writing before keeps its descriptor: set the flag
// before hashing, as Prehash does.
func MakeImmutable(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fd := int(f.Fd())
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		return false, &os.PathError{Op: "FS_IOC_GETFLAGS", Path: path, Err: err}
	}
	if flags&fsImmutableFL != 0 {
		return false, nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsImmutableFL)); err != nil {
		return false, &os.PathError{Op: "FS_IOC_SETFLAGS", Path: path, Err: err}
	}
	return true, nil
}
