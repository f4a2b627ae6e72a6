//go:build !libvirt_dlopen

package adopt

import (
	"context"
	"errors"
)

// Libvirt needs the libvirt_dlopen build tag (make build sets it).
type Libvirt struct{}

// OpenLibvirt fails: this build has no libvirt.
func OpenLibvirt(uri string) (*Libvirt, error) {
	return nil, errors.New("this vmgate was built without libvirt: build it with -tags libvirt_dlopen (make build)")
}

// Close does nothing.
func (l *Libvirt) Close() error { return nil }

// Domains implements Lister.
func (l *Libvirt) Domains(context.Context, []string) ([]Domain, error) {
	return nil, errors.New("no libvirt in this build")
}
