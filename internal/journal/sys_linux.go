package journal

import (
	"os"
	"syscall"
)

// fdatasync makes the file's data and size durable, without the other metadata fsync
// would also write.
func fdatasync(f *os.File) error {
	return control(f, "fdatasync", func(fd int) error { return syscall.Fdatasync(fd) })
}
