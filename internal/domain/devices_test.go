package domain

import (
	"bytes"
	"strings"
	"testing"
)

// TestParseDevices: every file the XML makes QEMU load for the guest, every host device,
// network boot, memory files, host scripts and the QEMU namespace's pass-through.
func TestParseDevices(t *testing.T) {
	got, err := Parse(bytes.NewReader(fixture(t, "devices.xml")))
	if err != nil {
		t.Fatal(err)
	}
	want := &Domain{
		Type: "kvm",
		Name: "devices",
		UUID: "3f2e1d0c-9b8a-4766-8554-433221100fed",
		Disks: []Disk{{Device: "disk", Type: "file", Format: "qcow2", Target: "vda",
			Source: &Source{Path: "/img/top.qcow2"}, BootOrder: 2}},
		Boot: Boot{Devs: []string{"hd", "network"}, UEFI: true},
		Interfaces: []Interface{
			{Type: "network", MAC: "52:54:00:ab:cd:ef", Network: "default"},
			{Type: "ethernet"},
			{Type: "hostdev"},
		},
		QEMUPassthrough: []string{"qemu:override"},
		Emulator:        "/srv/bin/qemu",
		Firmware: []File{
			{"<sysinfo type='fwcfg'><entry file>", "/srv/fw/blob.bin"},
			{"<os><loader>", "/srv/fw/OVMF_CODE.fd"},
			{"<os><nvram template>", "/srv/fw/OVMF_VARS.fd"},
			{"<os><dtb>", "/srv/fw/board.dtb"},
			{"<os><acpi><table type='slic'>", "/srv/fw/slic.dat"},
			{"<os><acpi><table type='rawset'>", "/srv/fw/ssdt.aml"},
			{"<hostdev><rom file>", "/srv/fw/usb.rom"},
			{"<interface><rom file>", "/srv/fw/nic.rom"},
			{"<video><rom file>", "/srv/fw/vga.rom"},
		},
		Passthrough: []string{"<hostdev type='usb'>", "<hostdev type='scsi'>", "<redirdev bus='usb' type='tcp'>", "<interface type='hostdev'>"},
		NetworkBoot: []string{"<os><boot dev='network'>", "interface 1 has <boot order='1'>"},
		MemoryFiles: []string{"<shmem name='ivshmem0'>", "/srv/pmem/nvdimm.img"},
		HostScripts: []string{"/srv/bin/ifup", "/srv/bin/ifdown"},
	}
	compare(t, want, got)

	// A plain domain on the system's firmware names none of these but its emulator.
	plain := parse(t, string(fixture(t, "nova-zed-prepare.xml")))
	if len(plain.Firmware)+len(plain.Passthrough)+len(plain.NetworkBoot)+len(plain.MemoryFiles)+len(plain.HostScripts)+len(plain.QEMUPassthrough) != 0 {
		t.Errorf("Nova domain: %+v", plain)
	}
}

func TestParseDeviceErrors(t *testing.T) {
	plain := string(fixture(t, "plain-libvirt.xml"))
	for _, tt := range []struct{ name, doc, want string }{
		{"two emulators", replace(t, plain, "<devices>", "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator><emulator>/tmp/q</emulator>"), "more than one <emulator>"},
		{"two loaders", replace(t, plain, "<os>", "<os><loader>/usr/share/OVMF/OVMF_CODE.fd</loader><loader>/tmp/x</loader>"), "more than one <loader>"},
		{"two ROMs", replace(t, plain, "<interface type='network'>", "<interface type='network'><rom file='/a'/><rom file='/b'/>"), "more than one <rom> in a <interface>"},
		{"two nvram", replace(t, plain, "<os>", "<os><nvram template='/a'/><nvram template='/b'/>"), "more than one <nvram>"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.doc))
			wantError(t, err, tt.want)
		})
	}
}

// TestParseReadsAsLibvirt: XML that libxml2, and so libvirt, reads otherwise than
// encoding/xml is refused, so that vmgate never judges one file while QEMU opens another.
func TestParseReadsAsLibvirt(t *testing.T) {
	plain := string(fixture(t, "plain-libvirt.xml"))
	src := "<source file='/var/lib/libvirt/images/build-runner-01.qcow2'/>"
	for _, tt := range []struct{ name, doc, want string }{
		{"duplicate attribute", replace(t, plain, src, "<source file='/a' file='/b'/>"), "<source> has attribute file twice"},
		{"namespaced duplicate attribute", replace(t, plain, src,
			"<source xmlns:x='urn:x' file='/var/lib/libvirt/images/build-runner-01.qcow2' x:file='/evil.qcow2'/>"),
			"<source> has attribute urn:x:file in a namespace"},
		{"namespaced attribute first", replace(t, plain, src,
			"<source xmlns:x='urn:x' x:file='/evil.qcow2' file='/var/lib/libvirt/images/build-runner-01.qcow2'/>"),
			"in a namespace"},
		{"namespaced driver type", replace(t, plain, "<driver name='qemu' type='qcow2'/>", "<driver xmlns:x='urn:x' name='qemu' x:type='qcow2'/>"), "in a namespace"},
		{"namespaced element", replace(t, plain, src, "<x:source xmlns:x='urn:x' file='/endorsed.img'/>"),
			`element <source> in namespace "urn:x" is not part of libvirt's domain XML`},
		{"default namespace", replace(t, plain, "<disk type='file' device='disk'>", "<disk xmlns='urn:x' type='file' device='disk'>"),
			`element <disk> in namespace "urn:x"`},
		{"QEMU namespace in devices", replace(t, plain, "<devices>", "<devices><qemu:disk xmlns:qemu='"+QEMUNamespace+"'/>"),
			`element <disk> in namespace "` + QEMUNamespace + `"`},
		{"QEMU namespace for a libvirt element", replace(t, plain, "</devices>", "</devices><qemu:devices xmlns:qemu='"+QEMUNamespace+"'/>"),
			`element <devices> in namespace`},
		{"Nova namespace outside metadata", replace(t, plain, "<devices>", "<devices><nova:disk xmlns:nova='"+NovaNamespace11+"'/>"),
			`element <disk> in namespace "` + NovaNamespace11 + `"`},
		{"namespaced root", "<domain xmlns='urn:x'><name>vm</name></domain>", "root element <domain> is in namespace"},
		{"newline in a path", replace(t, plain, src, "<source file='/var/lib/libvirt/images/a\nb'/>"), "attribute file has a tab or line break"},
		{"escaped newline in a path", replace(t, plain, src, "<source file='/var/lib/libvirt/images/a&#10;b'/>"), "attribute file has a tab or line break"},
		{"tab in a path", replace(t, plain, src, "<source file='/a\tb'/>"), "tab or line break"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.doc))
			wantError(t, err, tt.want)
		})
	}

	// What libvirt itself writes stays accepted: namespaced elements and attributes inside
	// <metadata>, the QEMU namespace's own elements, xmlns declarations.
	nova := string(fixture(t, "nova-instance.xml"))
	ok := replace(t, nova, "</metadata>", `<app:info xmlns:app="urn:app" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="x">
  <plain attr="a&#10;b" app:attr="c"/></app:info></metadata>`)
	ok = replace(t, ok, "</domain>", `<qemu:commandline xmlns:qemu="`+QEMUNamespace+`"><qemu:arg value="-S"/></qemu:commandline></domain>`)
	d := parse(t, ok)
	if len(d.QEMUArgs) != 1 || d.Nova == nil {
		t.Errorf("QEMUArgs %v, Nova %v", d.QEMUArgs, d.Nova)
	}
}

// TestParseBootMenu: a boot menu lets the console pick a NIC's network boot ROM, unless
// every interface has its ROM turned off.
func TestParseBootMenu(t *testing.T) {
	plain := string(fixture(t, "plain-libvirt.xml"))
	menu := replace(t, plain, "<os>", "<os><bootmenu enable='yes' timeout='3000'/>")
	if d := parse(t, menu); len(d.NetworkBoot) != 1 || !strings.HasPrefix(d.NetworkBoot[0], "<os><bootmenu enable='yes'> with a network interface") {
		t.Errorf("boot menu with a NIC: %q", d.NetworkBoot)
	}
	noROM := replace(t, menu, "<interface type='network'>", "<interface type='network'><rom enabled='no'/>")
	if d := parse(t, noROM); len(d.NetworkBoot) != 0 {
		t.Errorf("boot menu, NIC ROM off: %q", d.NetworkBoot)
	}
	off := replace(t, plain, "<os>", "<os><bootmenu enable='no'/>")
	if d := parse(t, off); len(d.NetworkBoot) != 0 {
		t.Errorf("boot menu off: %q", d.NetworkBoot)
	}
}
