// Command appendsync is the baseline the hook's speed is measured against: a trivial Go
// program that appends 1 KiB to a file and fdatasyncs it, the least a durable record costs.
package main

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: appendsync FILE")
		os.Exit(2)
	}
	f, err := os.OpenFile(os.Args[1], os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err == nil {
		_, err = f.Write(append(bytes.Repeat([]byte("x"), 1023), '\n'))
	}
	if err == nil {
		err = syscall.Fdatasync(int(f.Fd()))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "appendsync:", err)
		os.Exit(1)
	}
}
