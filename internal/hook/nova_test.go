package hook

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// novaLayout lays out, under dir, the instances path of a Nova compute node holding the
// disks the domain XML names under /var/lib/nova/instances: disk, a qcow2 overlay on the
// _base copy of Glance image glanceID, and disk.config, Nova's ISO 9660 config drive. It
// returns the XML with the paths moved under dir, and the configuration that points the
// hook at them.
func novaLayout(t *testing.T, dir, xml, uuid, glanceID string) (string, string) {
	t.Helper()
	inst := filepath.Join(dir, "instances")
	for _, d := range []string{filepath.Join(inst, "_base"), filepath.Join(inst, uuid)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, b []byte) {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := filepath.Join(inst, "_base", snapshot.NovaBaseName(glanceID))
	write(base, []byte("raw bytes of "+glanceID))
	// A version 3 qcow2 header naming its backing file, as qemu-img create -b writes it.
	h := make([]byte, 4096)
	be := binary.BigEndian
	copy(h, "QFI\xfb")
	be.PutUint32(h[4:], 3)
	be.PutUint32(h[20:], 16)
	be.PutUint64(h[24:], 1<<30)
	be.PutUint32(h[96:], 4)
	be.PutUint32(h[100:], 112)
	be.PutUint64(h[8:], 120)
	be.PutUint32(h[16:], uint32(len(base)))
	copy(h[120:], base)
	write(filepath.Join(inst, uuid, "disk"), h)
	// genisoimage's layout: an empty system area, the primary descriptor, the terminator.
	iso := make([]byte, 20*2048)
	copy(iso[16*2048:], "\x01CD001\x01")
	copy(iso[16*2048+40:], "config-2"+strings.Repeat(" ", 24))
	copy(iso[17*2048:], "\xffCD001\x01")
	write(filepath.Join(inst, uuid, "disk.config"), iso)
	return string(bytes.ReplaceAll([]byte(xml), []byte("/var/lib/nova/instances"), []byte(inst))),
		"admission: {nova_instances_path: " + inst + "}\n"
}
