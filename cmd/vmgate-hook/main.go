// Command vmgate-hook is the libvirt qemu hook: libvirtd runs it at every domain operation,
// and it refuses to start a domain whose image is not endorsed now. Installed as
// /etc/libvirt/hooks/qemu.d/vmgate by `vmgate hook install`.
//
// It runs on every VM start on every node, so its import graph is kept small: no cosign, no
// gophercloud, no cobra (TestHookImportGraph guards this). It runs for milliseconds on one
// thread's worth of work, so the runtime need not size itself to the container's CPU quota.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"os"
	"time"

	"github.com/vmgate/vmgate/internal/hook"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	host, _ := os.Hostname()
	os.Exit(hook.Run(hook.Env{
		Args:     os.Args[1:],
		Stdin:    os.Stdin,
		Stderr:   os.Stderr,
		Getenv:   os.Getenv,
		Now:      time.Now,
		Hostname: host,
		Version:  version,
	}))
}
