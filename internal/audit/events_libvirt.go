//go:build libvirt_dlopen

package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/terminate"
)

// eventLoop is libvirt's default event loop. A process has one, and it cannot be stopped:
// it is started at the first subscription and serves every later one (each reload's), so
// that a reload adds no goroutine.
var eventLoop struct {
	once sync.Once
	err  error
}

func startEventLoop() error {
	eventLoop.once.Do(func() {
		if err := libvirt.EventRegisterDefaultImpl(); err != nil {
			eventLoop.err = fmt.Errorf("libvirt's event loop: %w", lvErr(err))
			return
		}
		go func() {
			for {
				if err := libvirt.EventRunDefaultImpl(); err != nil {
					time.Sleep(time.Second) // not a busy loop on a broken event loop
				}
			}
		}()
	})
	return eventLoop.err
}

// Subscribe opens a read-only connection to uri and reports its domain events.
func Subscribe(uri string, event func(uuid, kind string)) (Watch, error) {
	if err := startEventLoop(); err != nil {
		return nil, err
	}
	conn, err := libvirt.NewConnectReadOnly(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt %s (read-only): %w", uri, lvErr(err))
	}
	w := &libvirtWatch{conn: conn, uri: uri, event: event, lost: make(chan struct{})}
	// A libvirtd that hangs is noticed after about 20 s; one that stops, at once.
	if err := conn.SetKeepAlive(5, 3); err != nil {
		w.Close()
		return nil, fmt.Errorf("libvirt %s: keepalive: %w", uri, lvErr(err))
	}
	if err := conn.RegisterCloseCallback(func(_ *libvirt.Connect, reason libvirt.ConnectCloseReason) {
		w.lose(reason)
	}); err != nil {
		w.Close()
		return nil, fmt.Errorf("libvirt %s: close callback: %w", uri, lvErr(err))
	}
	register := []struct {
		kind string
		reg  func() (int, error)
	}{
		{EventLifecycle, func() (int, error) {
			return conn.DomainEventLifecycleRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, _ *libvirt.DomainEventLifecycle) {
				w.emit(d, EventLifecycle)
			})
		}},
		{EventDeviceAdded, func() (int, error) {
			return conn.DomainEventDeviceAddedRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, _ *libvirt.DomainEventDeviceAdded) {
				w.emit(d, EventDeviceAdded)
			})
		}},
		{EventDeviceRemoved, func() (int, error) {
			return conn.DomainEventDeviceRemovedRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, _ *libvirt.DomainEventDeviceRemoved) {
				w.emit(d, EventDeviceRemoved)
			})
		}},
		{EventBlockJob, func() (int, error) {
			return conn.DomainEventBlockJob2Register(nil, func(_ *libvirt.Connect, d *libvirt.Domain, _ *libvirt.DomainEventBlockJob) {
				w.emit(d, EventBlockJob)
			})
		}},
		{EventTrayChange, func() (int, error) {
			return conn.DomainEventTrayChangeRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, _ *libvirt.DomainEventTrayChange) {
				w.emit(d, EventTrayChange)
			})
		}},
		{EventDiskChange, func() (int, error) {
			return conn.DomainEventDiskChangeRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, _ *libvirt.DomainEventDiskChange) {
				w.emit(d, EventDiskChange)
			})
		}},
		{EventJobCompleted, func() (int, error) {
			return conn.DomainEventJobCompletedRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, _ *libvirt.DomainEventJobCompleted) {
				w.emit(d, EventJobCompleted)
			})
		}},
		{EventMetadataChange, func() (int, error) {
			return conn.DomainEventMetadataChangeRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, _ *libvirt.DomainEventMetadataChange) {
				w.emit(d, EventMetadataChange)
			})
		}},
	}
	for _, r := range register {
		id, err := r.reg()
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("libvirt %s: subscribing to %s events: %w", uri, r.kind, lvErr(err))
		}
		w.ids = append(w.ids, id)
	}
	return w, nil
}

type libvirtWatch struct {
	conn  *libvirt.Connect
	uri   string
	event func(uuid, kind string)
	ids   []int

	// mu keeps Close from freeing the connection under a Domain that reads through it.
	mu     sync.RWMutex
	closed bool

	lostOnce sync.Once
	lost     chan struct{}
}

// emit runs in libvirt's event loop: the uuid is in the domain object, no call to libvirtd.
func (w *libvirtWatch) emit(d *libvirt.Domain, kind string) {
	uuid, err := d.GetUUIDString()
	if err != nil {
		return
	}
	w.event(uuid, kind)
}

func (w *libvirtWatch) lose(libvirt.ConnectCloseReason) {
	w.lostOnce.Do(func() { close(w.lost) })
}

// Lost implements Watch.
func (w *libvirtWatch) Lost() <-chan struct{} { return w.lost }

// Close implements Watch.
func (w *libvirtWatch) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	for _, id := range w.ids {
		w.conn.DomainEventDeregister(id) // fails only on a connection already lost
	}
	w.ids = nil
	w.conn.UnregisterCloseCallback()
	if _, err := w.conn.Close(); err != nil {
		return fmt.Errorf("libvirt %s: close: %w", w.uri, lvErr(err))
	}
	return nil
}

// Domain implements Reader: the live XML, as the periodic pass reads it.
func (w *libvirtWatch) Domain(ctx context.Context, uuid string) (terminate.VM, bool, error) {
	vm := terminate.VM{UUID: uuid}
	if err := ctx.Err(); err != nil {
		return vm, false, err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return vm, false, fmt.Errorf("libvirt %s: the connection of the domain events is closed", w.uri)
	}
	gone := func(err error) bool { return errors.Is(err, libvirt.ERR_NO_DOMAIN) }
	dom, err := w.conn.LookupDomainByUUIDString(uuid)
	if err != nil {
		if gone(err) {
			return vm, false, nil
		}
		return vm, false, lvErr(err)
	}
	defer dom.Free()
	active, err := dom.IsActive()
	if err != nil || !active {
		if err == nil || gone(err) {
			return vm, false, nil
		}
		return vm, false, lvErr(err)
	}
	if vm.Name, err = dom.GetName(); err != nil {
		if gone(err) {
			return vm, false, nil
		}
		return vm, false, lvErr(err)
	}
	x, err := dom.GetXMLDesc(0)
	if err != nil {
		if gone(err) {
			return vm, false, nil
		}
		return vm, false, lvErr(err)
	}
	d, err := domain.Parse(strings.NewReader(x))
	if err != nil {
		vm.Problem = err.Error()
		return vm, true, nil
	}
	vm.Domain = d
	return vm, true, nil
}

// lverr shows libvirt's message rather than its error struct, and keeps errors.Is working.
type lverr struct{ e libvirt.Error }

func (e lverr) Error() string { return e.e.Message }
func (e lverr) Unwrap() error { return e.e }

func lvErr(err error) error {
	var le libvirt.Error
	if errors.As(err, &le) && le.Message != "" {
		return lverr{le}
	}
	return err
}
