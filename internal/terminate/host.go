//go:build libvirt_dlopen

package terminate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/vmgate/vmgate/internal/domain"
)

// Host is the host scope: the running domains of one libvirt connection. It never runs the
// hook; libvirtd runs it when a domain stops.
type Host struct {
	conn *libvirt.Connect
	uri  string
	own  bool
	// Poll is how often a shutdown's progress is checked.
	Poll time.Duration
}

var _ Source = (*Host)(nil)

func connectHost(uri string) (HostSource, error) { return OpenHost(uri) }

func connectHostReadOnly(uri string) (HostSource, error) {
	conn, err := libvirt.NewConnectReadOnly(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt %s (read-only): %w", uri, libvirtError(err))
	}
	return &Host{conn: conn, uri: uri, own: true, Poll: 500 * time.Millisecond}, nil
}

// OpenHost connects to libvirt at uri. libvirt's shared library is loaded now (the build
// uses the libvirt_dlopen tag), so a missing libvirt0 package is an error here, not at start.
func OpenHost(uri string) (*Host, error) {
	conn, err := libvirt.NewConnect(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt %s: %w", uri, libvirtError(err))
	}
	return &Host{conn: conn, uri: uri, own: true, Poll: 500 * time.Millisecond}, nil
}

// NewHost uses a connection the caller opened and keeps open; libvirt's test driver keeps
// its domains per connection, so a test that checks their state must share it.
func NewHost(conn *libvirt.Connect, uri string) *Host {
	return &Host{conn: conn, uri: uri, Poll: 100 * time.Millisecond}
}

// Close closes the connection if OpenHost opened it.
func (h *Host) Close() error {
	if !h.own {
		return nil
	}
	if _, err := h.conn.Close(); err != nil {
		return libvirtError(err)
	}
	return nil
}

// Scope implements Source.
func (h *Host) Scope() string { return "host " + h.uri }

// Actions implements Source.
func (h *Host) Actions() []Action { return []Action{Shutdown, Destroy, Suspend} }

// List implements Source: every active (running or paused) domain with its live XML.
func (h *Host) List(ctx context.Context) ([]VM, error) {
	doms, err := h.conn.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", libvirtError(err))
	}
	defer func() {
		for i := range doms {
			doms[i].Free()
		}
	}()
	vms := make([]VM, 0, len(doms))
	for i := range doms {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		vm, ok := h.describe(&doms[i])
		if ok {
			vms = append(vms, vm)
		}
	}
	sortVMs(vms)
	return vms, nil
}

// describe reads one domain. ok is false when it went away since the listing.
func (h *Host) describe(dom *libvirt.Domain) (vm VM, ok bool) {
	name, err := dom.GetName()
	if err != nil {
		vm.Problem = fmt.Sprintf("cannot read its name: %v", libvirtError(err))
		return vm, !errors.Is(err, libvirt.ERR_NO_DOMAIN)
	}
	vm.Name = name
	if vm.UUID, err = dom.GetUUIDString(); err != nil {
		if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
			return vm, false
		}
		vm.Problem = fmt.Sprintf("cannot read its uuid: %v", libvirtError(err))
		return vm, true
	}
	// The live XML: what runs now, including a disk hot-plugged since the start.
	x, err := dom.GetXMLDesc(0)
	if err != nil {
		if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
			return vm, false
		}
		vm.Problem = fmt.Sprintf("cannot read its XML: %v", libvirtError(err))
		return vm, true
	}
	d, err := domain.Parse(strings.NewReader(x))
	if err != nil {
		vm.Problem = err.Error()
		return vm, true
	}
	vm.Domain = d
	return vm, true
}

// Act implements Source.
func (h *Host) Act(ctx context.Context, vm *VM, action Action, opts Options) (string, error) {
	// By uuid: a name can be reused by another domain since the listing.
	dom, err := h.conn.LookupDomainByUUIDString(vm.UUID)
	if err != nil {
		if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
			return "the domain was gone already", nil
		}
		return "", libvirtError(err)
	}
	defer dom.Free()
	switch action {
	case Destroy:
		return h.destroy(dom)
	case Suspend:
		if err := dom.ManagedSave(0); err != nil {
			if down, _ := h.shutOff(dom); down {
				return "the domain was shut off already: nothing to save", nil
			}
			return "", libvirtError(err)
		}
		return "memory saved (libvirt managed save)", nil
	case Shutdown:
		return h.shutdown(ctx, dom, opts.Timeout)
	}
	return "", fmt.Errorf("action %s is not possible on a libvirt host", action)
}

func (h *Host) destroy(dom *libvirt.Domain) (string, error) {
	if err := dom.Destroy(); err != nil {
		if down, _ := h.shutOff(dom); down {
			return "the domain was shut off already", nil
		}
		return "", libvirtError(err)
	}
	return "", nil
}

// shutdown asks the guest to shut down, waits up to timeout for it, then destroys it.
func (h *Host) shutdown(ctx context.Context, dom *libvirt.Domain, timeout time.Duration) (string, error) {
	if err := dom.Shutdown(); err != nil {
		if down, _ := h.shutOff(dom); down {
			return "the domain was shut off already", nil
		}
		// A guest that cannot be asked (no ACPI, an agent that is not there) is destroyed.
		if _, derr := h.destroy(dom); derr != nil {
			return "", fmt.Errorf("shutdown: %v; destroy: %w", libvirtError(err), derr)
		}
		return fmt.Sprintf("shutdown was refused (%v): destroyed", libvirtError(err)), nil
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(h.Poll)
	defer tick.Stop()
	for {
		down, err := h.shutOff(dom)
		if err != nil {
			return "", err
		}
		if down {
			return "", nil
		}
		if !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("interrupted while waiting for the guest to shut down: %w", ctx.Err())
		case <-tick.C:
		}
	}
	if _, err := h.destroy(dom); err != nil {
		return "", fmt.Errorf("the guest did not shut down within %s, and destroy failed: %w", timeout, err)
	}
	return fmt.Sprintf("the guest did not shut down within %s: destroyed", timeout), nil
}

// shutOff reports whether the domain is no longer running: shut off, or gone (a transient
// domain disappears when it stops).
func (h *Host) shutOff(dom *libvirt.Domain) (bool, error) {
	state, _, err := dom.GetState()
	if err != nil {
		if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
			return true, nil
		}
		return false, libvirtError(err)
	}
	return state == libvirt.DOMAIN_SHUTOFF, nil
}

// lverr shows libvirt's message rather than its error struct, and keeps errors.Is working.
type lverr struct{ e libvirt.Error }

func (e lverr) Error() string { return e.e.Message }
func (e lverr) Unwrap() error { return e.e }

func libvirtError(err error) error {
	var le libvirt.Error
	if errors.As(err, &le) && le.Message != "" {
		return lverr{le}
	}
	return err
}
