//go:build !libvirt_dlopen

package terminate

import "errors"

// Building libvirt.org/go/libvirt without the libvirt_dlopen tag needs libvirt's headers;
// the Makefile always sets the tag. A build without it (go build ./..., go vet) still
// compiles, and the host scope says how to get it.
func connectHost(uri string) (HostSource, error) { return nil, errNoLibvirt }

func connectHostReadOnly(uri string) (HostSource, error) { return nil, errNoLibvirt }

var errNoLibvirt = errors.New("this vmgate was built without libvirt: build it with -tags libvirt_dlopen (make build)")
