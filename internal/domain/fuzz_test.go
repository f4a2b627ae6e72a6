package domain

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse feeds Parse arbitrary bytes. The seeds in testdata/fuzz/FuzzParse (the fixtures
// and variants of them) run with every plain `go test`. Parse must never panic, and what it
// accepts must hold the promises the decision relies on.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(bytes.NewReader(data))
		if err != nil {
			if d != nil {
				t.Fatal("domain returned with an error")
			}
			if !strings.HasPrefix(err.Error(), "domain XML: ") {
				t.Fatalf("error without the domain XML prefix: %v", err)
			}
			return
		}
		if strings.TrimSpace(d.Name) == "" {
			t.Fatal("accepted a domain without a name")
		}
		checkUUID(t, d.UUID, true)
		for _, i := range d.Interfaces {
			if i.MAC != "" {
				if _, err := parseMAC(i.MAC); err != nil || len(i.MAC) != 17 || strings.ToLower(i.MAC) != i.MAC {
					t.Fatalf("MAC %q not canonical", i.MAC)
				}
			}
		}
		for _, disk := range d.Disks {
			// libvirt opens a local disk without <driver type> as raw; never probe it.
			if (disk.Type == "file" || disk.Type == "block") && disk.Format == "" {
				t.Fatalf("disk %s has no format", disk.Target)
			}
			depth := 0
			for b := disk.BackingStore; b != nil; b = b.BackingStore {
				if depth++; depth > maxBackingStores {
					t.Fatal("backing chain deeper than the limit")
				}
			}
		}
		n := d.Nova
		if n == nil {
			return
		}
		if n.Namespace != NovaNamespace10 && n.Namespace != NovaNamespace11 {
			t.Fatalf("Nova namespace %q", n.Namespace)
		}
		if n.Root != nil {
			if n.Root.Type != "image" && n.Root.Type != "volume" {
				t.Fatalf("root type %q", n.Root.Type)
			}
			checkUUID(t, n.Root.ID, false)
		}
		for _, p := range n.Ports {
			checkUUID(t, p.ID, true)
			for _, ip := range p.IPs {
				if !ip.Address.IsValid() || ip.Address.Zone() != "" {
					t.Fatalf("port %s: address %v", p.ID, ip.Address)
				}
				if ip.Type != "fixed" && ip.Type != "floating" {
					t.Fatalf("port %s: IP type %q", p.ID, ip.Type)
				}
			}
		}
	})
}

func checkUUID(t *testing.T, s string, mayBeEmpty bool) {
	t.Helper()
	if s == "" && mayBeEmpty {
		return
	}
	if got, err := parseUUID(s, "uuid"); err != nil || got != s {
		t.Fatalf("uuid %q is not canonical", s)
	}
}
