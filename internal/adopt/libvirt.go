//go:build libvirt_dlopen

package adopt

import (
	"context"
	"errors"
	"fmt"

	"libvirt.org/go/libvirt"
)

// Libvirt lists domains over a read-only libvirt connection: adopting needs no more.
type Libvirt struct{ conn *libvirt.Connect }

// OpenLibvirt connects read-only to uri (qemu:///system).
func OpenLibvirt(uri string) (*Libvirt, error) {
	conn, err := libvirt.NewConnectReadOnly(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt %s (read-only): %w", uri, err)
	}
	return &Libvirt{conn: conn}, nil
}

// Close closes the connection.
func (l *Libvirt) Close() error {
	_, err := l.conn.Close()
	return err
}

// Domains implements Lister.
func (l *Libvirt) Domains(ctx context.Context, names []string) ([]Domain, error) {
	var doms []libvirt.Domain
	if len(names) == 0 {
		all, err := l.conn.ListAllDomains(0)
		if err != nil {
			return nil, fmt.Errorf("list domains: %w", err)
		}
		doms = all
	} else {
		for _, n := range names {
			d, err := l.conn.LookupDomainByName(n)
			if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
				d, err = l.conn.LookupDomainByUUIDString(n)
			}
			if err != nil {
				for _, d := range doms {
					d.Free()
				}
				return nil, fmt.Errorf("domain %s: %w", n, err)
			}
			doms = append(doms, *d)
		}
	}
	var out []Domain
	for i := range doms {
		d := &doms[i]
		name, err1 := d.GetName()
		uuid, err2 := d.GetUUIDString()
		active, err3 := d.IsActive()
		// The live XML while it runs: what QEMU has open now, <backingStore> chain included.
		x, err4 := d.GetXMLDesc(0)
		d.Free()
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
				continue // undefined meanwhile
			}
			return nil, fmt.Errorf("domain %s: %w", name, err)
		}
		out = append(out, Domain{Name: name, UUID: uuid, Running: active, XML: x})
	}
	return out, nil
}
