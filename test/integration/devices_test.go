package integration

// Firmware, ROMs, the emulator, host devices and network boot against the real libvirtd and
// QEMU: each attack first runs with vmgate in warn mode, and the guest's own code proves it
// ran (a word on its serial port, a marker from the emulator); then vmgate's hook refuses it,
// with its reason in virsh's error.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// deviceDomain is a test domain of this file: an endorsed raw disk, a serial port to a
// file, and whatever the attack adds.
type deviceDomain struct {
	Name, UUID, Disk, Console string
	Emulator                  string // "" for the system's
	OS                        string // more of <os>
	NIC                       string // more of the <interface>; "" for none at all
	Devices                   string // more of <devices>
	Domain                    string // more of <domain> (the QEMU namespace)
}

var deviceDomainXML = template.Must(template.New("device").Parse(`<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{{.Name}}</name>
  <uuid>{{.UUID}}</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    {{.OS}}
  </os>
  <devices>
    {{- if .Emulator}}
    <emulator>{{.Emulator}}</emulator>
    {{- end}}
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{{.Disk}}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    {{- if .NIC}}
    <interface type='user'>
      <model type='e1000'/>
      {{.NIC}}
    </interface>
    {{- end}}
    <serial type='file'>
      <source path='{{.Console}}'/>
      <target port='0'/>
    </serial>
    {{.Devices}}
  </devices>
  {{.Domain}}
</domain>
`))

// defineDeviceDomain defines vmgate-test-<name> from dd (Name, UUID and Console filled in)
// and returns it; Cleanup destroys and undefines it.
func defineDeviceDomain(t *testing.T, l *Libvirt, name string, dd deviceDomain) *Domain {
	t.Helper()
	dir := t.TempDir()
	dd.Name, dd.UUID, dd.Console = testDomainPrefix+name, newUUID(t), filepath.Join(dir, "console.log")
	var buf bytes.Buffer
	if err := deviceDomainXML.Execute(&buf, dd); err != nil {
		t.Fatal(err)
	}
	d := &Domain{l: l, Name: dd.Name, UUID: dd.UUID, Dir: dir, Disk: dd.Disk, Console: dd.Console, XML: buf.String()}
	xmlPath := filepath.Join(dir, "domain.xml")
	if err := os.WriteFile(xmlPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Virsh("dominfo", d.Name); err == nil {
		t.Logf("removing %s, left over from an earlier run", d.Name)
		d.remove(t)
	}
	if _, _, err := l.Virsh("define", xmlPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.remove(t) })
	return d
}

// setMode rewrites the site's admission.mode; the hook reads the file at every run.
func (s *site) setMode(from, to string) {
	s.t.Helper()
	data, err := os.ReadFile(s.config)
	if err != nil {
		s.t.Fatal(err)
	}
	old, repl := "  mode: "+from+"\n", "  mode: "+to+"\n"
	if !bytes.Contains(data, []byte(old)) {
		s.t.Fatalf("config has no %q", old)
	}
	if err := os.WriteFile(s.config, bytes.Replace(data, []byte(old), []byte(repl), 1), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func fileHas(path, word string) (bool, string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err.Error()
	}
	return bytes.Contains(data, []byte(word)), fmt.Sprintf("%q", data)
}

// TestDevicesWithRealLibvirt: a BIOS, a NIC option ROM, a ROM set through <qemu:override>
// and an emulator of the user's choice each run their code in a real QEMU when the hook
// only warns, and are refused when it enforces; the system's own firmware and ROMs start;
// host devices, USB redirection and network boot are refused.
func TestDevicesWithRealLibvirt(t *testing.T) {
	l := requireLibvirt(t)
	s := newSite(t, "admission:\n  mode: warn\n  exempt_domains: ['"+testDomainPrefix+"exempt-*']\n")
	disk, img := s.baseImage("endorsed.raw")
	s.publish(img)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	s.installVMGateHook(l)
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bios := write("bios.bin", BIOSImage("VMGATE-BIOS-RAN"), 0o644)
	nicROM := write("nic.rom", OptionROM(0x8086, 0x100e, "VMGATE-NIC-ROM-RAN"), 0o644)
	overrideROM := write("override.rom", OptionROM(0x8086, 0x100e, "VMGATE-OVERRIDE-RAN"), 0o644)
	marker := filepath.Join(dir, "emulator.log")
	emulator := write("qemu", []byte("#!/bin/sh\necho \"$*\" >> "+marker+"\nexec /usr/bin/qemu-system-x86_64 \"$@\"\n"), 0o755)

	type attack struct {
		name   string
		dd     deviceDomain
		proof  func(d *Domain) (bool, string) // the attacker's code ran
		reason string                         // vmgate's refusal
	}
	console := func(word string) func(d *Domain) (bool, string) {
		return func(d *Domain) (bool, string) { return fileHas(d.Console, word) }
	}
	attacks := []attack{
		{"bios", deviceDomain{OS: "<loader type='rom'>" + bios + "</loader>"}, console("VMGATE-BIOS-RAN"),
			"vmgate: firmware not allowed: <os><loader> " + bios + " is outside admission.firmware_dirs"},
		{"nic-rom", deviceDomain{NIC: "<rom file='" + nicROM + "'/>"}, console("VMGATE-NIC-ROM-RAN"),
			"vmgate: firmware not allowed: <interface><rom file> " + nicROM + " is outside admission.firmware_dirs"},
		{"qemu-override", deviceDomain{NIC: "<alias name='ua-net0'/>", Domain: `<qemu:override>
    <qemu:device alias='ua-net0'><qemu:frontend><qemu:property name='romfile' type='string' value='` + overrideROM + `'/></qemu:frontend></qemu:device>
  </qemu:override>`}, console("VMGATE-OVERRIDE-RAN"),
			"vmgate: the domain uses QEMU pass-through (qemu:override)"},
		{"emulator", deviceDomain{Emulator: emulator}, func(d *Domain) (bool, string) { return fileHas(marker, "guest="+d.Name) },
			"vmgate: emulator not allowed: " + emulator + " matches none of admission.emulators; use the system's QEMU"},
	}
	for i := range attacks {
		attacks[i].dd.Disk = disk
	}

	// Warn mode: vmgate lets each start and records what enforce would refuse; the guest
	// shows the attacker's code ran.
	doms := make([]*Domain, len(attacks))
	for i, a := range attacks {
		d := defineDeviceDomain(t, l, a.name, a.dd)
		doms[i] = d
		if a.name == "emulator" {
			// libvirt probes a new emulator when the domain is defined, as root, before any
			// hook runs: the hook gates the start only (docs/threat-model.md).
			if probed, got := fileHas(marker, "-machine none"); !probed {
				t.Errorf("libvirt did not probe the emulator at define: %s", got)
			}
		}
		if stderr, err := d.Start(); err != nil {
			t.Fatalf("%s in warn mode: %v\n%s", a.name, err, stderr)
		}
		eventually(t, 30*time.Second, a.name+"'s code running in the guest", func() (bool, string) { return a.proof(d) })
		t.Logf("warn: %s ran its own code", a.name)
		if err := d.Destroy(); err != nil {
			t.Fatal(err)
		}
		r := findRecord(s.traceRecords(), "admission.warn", d.Name)
		if r == nil || !strings.HasPrefix("vmgate: "+fmt.Sprint(r["reason"]), a.reason) {
			t.Errorf("%s: warn record %v, want reason %q", a.name, r, a.reason)
		}
	}

	// Enforce: each start is refused with vmgate's reason, and nothing of the attacker's ran.
	s.setMode("warn", "enforce")
	for i, a := range attacks {
		d := doms[i]
		if err := os.Truncate(d.Console, 0); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		os.Remove(marker)
		stderr, err := d.Start()
		if err == nil || !strings.Contains(stderr, a.reason) {
			t.Errorf("%s: err %v, virsh said:\n%s\nwant it to contain:\n%s", a.name, err, stderr, a.reason)
			continue
		}
		t.Logf("enforce: %s: %s", a.name, stderr[strings.Index(stderr, "vmgate: "):])
		if st, _ := d.State(); st != "shut off" {
			t.Errorf("%s: refused domain is %q", a.name, st)
		}
		if ran, _ := a.proof(d); ran {
			t.Errorf("%s: the attacker's code ran although the start was refused", a.name)
		}
		if r := findRecord(s.traceRecords(), "admission.refuse", d.Name); r == nil {
			t.Errorf("%s: no admission.refuse record", a.name)
		}
	}

	// The system's firmware and ROMs, reached through Debian's own links, start.
	system := defineDeviceDomain(t, l, "system-firmware", deviceDomain{Disk: disk, Emulator: "/usr/bin/kvm",
		OS: "<loader type='rom'>/usr/share/seabios/bios-256k.bin</loader>", NIC: "<rom file='/usr/lib/ipxe/qemu/pxe-e1000.rom'/>"})
	if stderr, err := system.Start(); err != nil {
		t.Errorf("system firmware refused: %v\n%s", err, stderr)
	} else {
		system.Destroy()
	}

	// Host devices, USB redirection and network boot: refused, and admitted for an exempt
	// domain (whose start may then fail for want of the device, which is not vmgate's).
	for _, c := range []struct {
		name   string
		dd     deviceDomain
		reason string
	}{
		{"hostdev", deviceDomain{Devices: `<hostdev mode='subsystem' type='usb' managed='yes'><source><vendor id='0x1d6b'/><product id='0x0002'/></source></hostdev>`},
			"vmgate: host device not allowed: the domain passes <hostdev type='usb'> to the guest"},
		{"hostdev-iscsi", deviceDomain{Devices: `<controller type='scsi' model='virtio-scsi'/><hostdev mode='subsystem' type='scsi'><source protocol='iscsi' name='iqn.2014-08.org.example:target/1'><host name='127.0.0.1' port='3260'/></source><address type='drive' controller='0' bus='0' target='0' unit='0'/></hostdev>`},
			"vmgate: host device not allowed: the domain passes <hostdev type='scsi'>"},
		{"redirdev", deviceDomain{Devices: `<controller type='usb' model='ich9-ehci1'/><redirdev bus='usb' type='tcp'><source mode='connect' host='127.0.0.1' service='4000'/></redirdev>`},
			"vmgate: host device not allowed: the domain passes <redirdev bus='usb' type='tcp'>"},
		{"boot-network", deviceDomain{OS: "<boot dev='network'/>", NIC: "<mac address='52:54:00:00:00:01'/>"},
			"vmgate: network boot not allowed: <os><boot dev='network'>"},
		{"boot-order-nic", deviceDomain{NIC: "<boot order='1'/>"},
			"vmgate: network boot not allowed: interface 1 has <boot order='1'>"},
		{"boot-menu", deviceDomain{OS: "<bootmenu enable='yes'/>", NIC: "<mac address='52:54:00:00:00:02'/>"},
			"vmgate: network boot not allowed: <os><bootmenu enable='yes'> with a network interface"},
	} {
		c.dd.Disk = disk
		d := defineDeviceDomain(t, l, c.name, c.dd)
		stderr, err := d.Start()
		if err == nil || !strings.Contains(stderr, c.reason) {
			t.Errorf("%s: err %v, virsh said:\n%s\nwant it to contain:\n%s", c.name, err, stderr, c.reason)
			continue
		}
		t.Logf("enforce: %s: %s", c.name, stderr[strings.Index(stderr, "vmgate: "):])
	}
	menu := defineDeviceDomain(t, l, "boot-menu-rom-off", deviceDomain{Disk: disk, OS: "<bootmenu enable='yes'/>", NIC: "<rom enabled='no'/>"})
	if stderr, err := menu.Start(); err != nil {
		t.Errorf("boot menu with the NIC ROM off refused: %v\n%s", err, stderr)
	} else {
		menu.Destroy()
	}
	exempt := defineDeviceDomain(t, l, "exempt-boot", deviceDomain{Disk: disk, NIC: "<boot order='1'/>"})
	if stderr, err := exempt.Start(); err != nil {
		t.Errorf("exempt domain refused: %v\n%s", err, stderr)
	} else {
		exempt.Destroy()
	}
	if out, stderr, code := s.vmgate("trace", "verify"); code != 0 {
		t.Errorf("trace verify: exit %d\n%s%s", code, out, stderr)
	}
}

// TestCheckReadsXMLAsLibvirt: XML that libvirt reads otherwise than a naive parser is
// refused by `vmgate check`, and what libvirt makes of it (virsh dumpxml) shows why; a disk
// without <driver type> is judged by its own bytes, as QEMU opens it raw.
func TestCheckReadsXMLAsLibvirt(t *testing.T) {
	l := requireLibvirt(t)
	s := newSite(t, "")
	base, img := s.baseImage("endorsed.raw")
	s.publish(img)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	dir := t.TempDir()
	other := filepath.Join(dir, "other.raw")
	if err := os.WriteFile(other, []byte("not endorsed"), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay.qcow2")
	if _, err := runTool(dir, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", overlay); err != nil {
		t.Fatal(err)
	}
	domainXML := func(name, disk string) string {
		return `<domain type='qemu' xmlns:x='urn:x'><name>` + testDomainPrefix + name + `</name><memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><disk type='file' device='disk'>` + disk + `<target dev='vda' bus='virtio'/></disk></devices></domain>`
	}
	for _, c := range []struct {
		name, disk  string
		libvirtRead string // the <source> virsh dumpxml shows
		check       string // vmgate check's refusal
	}{
		// libvirt (libxml2's xmlGetProp) takes the first attribute named file, whatever its
		// namespace; a struct decoder would take the last.
		{"ns-attr-first", "<driver name='qemu' type='raw'/><source x:file='" + other + "' file='" + base + "'/>",
			"<source file='" + other + "'/>", "<source> has attribute urn:x:file in a namespace"},
		{"ns-attr-after", "<driver name='qemu' type='raw'/><source file='" + base + "' x:file='" + other + "'/>",
			"<source file='" + base + "'/>", "<source> has attribute urn:x:file in a namespace"},
		// A literal line break in an attribute is a space to libxml2.
		{"newline", "<driver name='qemu' type='raw'/><source file='" + dir + "/a\nb.raw'/>",
			"<source file='" + dir + "/a b.raw'/>", "attribute file has a tab or line break"},
	} {
		p := filepath.Join(dir, c.name+".xml")
		if err := os.WriteFile(p, []byte(domainXML(c.name, c.disk)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Virsh("define", p); err != nil {
			t.Fatal(err)
		}
		d := &Domain{l: l, Name: testDomainPrefix + c.name}
		t.Cleanup(func() { d.remove(t) })
		live, err := d.DumpXML()
		if err != nil || !strings.Contains(live, c.libvirtRead) {
			t.Errorf("%s: libvirt read %v\n%s\nwant %s", c.name, err, live, c.libvirtRead)
		}
		if out, errOut, code := s.vmgate("check", p); code == 0 || !strings.Contains(errOut, c.check) {
			t.Errorf("%s: vmgate check exit %d:\n%s%s\nwant %q", c.name, code, out, errOut, c.check)
		}
	}
	// A namespaced <source> is no source to libvirt: it refuses the domain.
	p := filepath.Join(dir, "ns-element.xml")
	os.WriteFile(p, []byte(domainXML("ns-element", "<driver name='qemu' type='raw'/><x:source file='"+base+"'/>")), 0o644)
	if _, stderr, err := l.Virsh("define", p); err == nil || !strings.Contains(stderr, "missing source information") {
		l.Virsh("undefine", testDomainPrefix+"ns-element")
		t.Errorf("libvirt defined a disk whose only source is namespaced: %v %s", err, stderr)
	}
	if out, errOut, code := s.vmgate("check", p); code == 0 || !strings.Contains(errOut, `element <source> in namespace "urn:x"`) {
		t.Errorf("ns-element: vmgate check exit %d:\n%s%s", code, out, errOut)
	}

	// No <driver type>: libvirt writes type='raw' and QEMU opens the qcow2 overlay as raw, so
	// the guest boots the overlay's own bytes, which no list endorses.
	p = filepath.Join(dir, "no-driver.xml")
	os.WriteFile(p, []byte(domainXML("no-driver", "<source file='"+overlay+"'/>")), 0o644)
	if _, _, err := l.Virsh("define", p); err != nil {
		t.Fatal(err)
	}
	nd := &Domain{l: l, Name: testDomainPrefix + "no-driver"}
	t.Cleanup(func() { nd.remove(t) })
	if live, _ := nd.DumpXML(); !strings.Contains(live, "<driver name='qemu' type='raw'/>") {
		t.Errorf("libvirt's XML for a disk without a format:\n%s", live)
	}
	want := "not endorsed: disk vda image " + overlay
	if out, _, code := s.vmgate("check", p); code != 1 || !strings.Contains(out, want) {
		t.Errorf("no-driver: vmgate check exit %d:\n%s\nwant %q", code, out, want)
	}
	// QEMU really opens it raw (no vmgate hook here: the start is allowed).
	if stderr, err := nd.Start(); err != nil {
		t.Fatalf("no-driver start: %v %s", err, stderr)
	}
	nd.Destroy()
	logData, err := os.ReadFile("/var/log/libvirt/qemu/" + nd.Name + ".log")
	if err != nil {
		t.Fatal(err)
	}
	formatNode := `"read-only":false,"driver":"raw","file":"libvirt-1-storage"`
	if !bytes.Contains(logData, []byte(overlay)) || !bytes.Contains(logData, []byte(formatNode)) {
		t.Errorf("QEMU command line does not open %s as raw:\n%s", overlay, logData)
	}
}

// TestHugeRefusalIsRecorded: a domain whose disk path is 400 KB is refused, and the refusal
// is recorded, cut to fit and marked.
func TestHugeRefusalIsRecorded(t *testing.T) {
	requireIntegration(t)
	s := newSite(t, "")
	_, img := s.baseImage("endorsed.raw")
	s.publish(img)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	long := "/" + strings.Repeat("x", 400_000) + ".raw"
	xml := `<domain type='qemu'><name>huge</name><devices><disk type='file' device='disk'><driver type='raw'/><source file='` + long + `'/><target dev='vda'/></disk></devices></domain>`
	code, stderr := runHook(t, s, "huge", xml)
	if code == 0 || !strings.Contains(stderr, "vmgate: disk vda ("+long[:100]) {
		t.Fatalf("exit %d: %.300s", code, stderr)
	}
	r := findRecord(s.traceRecords(), "admission.refuse", "huge")
	if r == nil {
		t.Fatal("the refusal was not recorded")
	}
	b, _ := json.Marshal(r["truncated"])
	if string(b) != `["reason","images[0].source"]` || !strings.HasSuffix(fmt.Sprint(r["reason"]), "…") {
		t.Errorf("truncated %s, reason %.80q", b, r["reason"])
	}
	if out, stderr, code := s.vmgate("trace", "verify"); code != 0 {
		t.Errorf("trace verify: exit %d\n%s%s", code, out, stderr)
	}
}

// TestUEFIFirmwareFromTheSystem: a domain on the system's OVMF (Debian's ovmf, under
// admission.firmware_dirs by default) with its NVRAM made from the system's template starts
// under the enforcing hook; the same domain with a copy of the firmware, or of the NVRAM
// template, in a directory of the user's is refused with vmgate's reason.
func TestUEFIFirmwareFromTheSystem(t *testing.T) {
	const code, vars = "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
	l := requireLibvirt(t)
	for _, f := range []string{code, vars} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("Debian's ovmf is not installed (scripts/deps.sh installs it): %v", err)
		}
	}
	s := newSite(t, "")
	disk, img := s.baseImage("endorsed.raw")
	s.publish(img)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	s.installVMGateHook(l)
	dir := t.TempDir()
	copyOf := func(src string) string {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Base(src))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	userCode, userVars := copyOf(code), copyOf(vars)
	uefi := func(loader, template string) deviceDomain {
		return deviceDomain{Disk: disk, Domain: "<features><acpi/></features>", // UEFI needs ACPI
			OS: "<loader readonly='yes' type='pflash'>" + loader + "</loader>" +
				"<nvram template='" + template + "'>" + filepath.Join(t.TempDir(), "vars.fd") + "</nvram>"}
	}

	system := defineDeviceDomain(t, l, "uefi-system", uefi(code, vars))
	if stderr, err := system.Start(); err != nil {
		t.Fatalf("a domain on the system's OVMF was refused: %v\n%s", err, stderr)
	}
	if state, err := system.State(); err != nil || state != "running" {
		t.Fatalf("state %q, %v", state, err)
	}
	for _, c := range []struct {
		name, loader, template, reason string
	}{
		{"uefi-user-code", userCode, vars, "vmgate: firmware not allowed: <os><loader> " + userCode + " is outside admission.firmware_dirs"},
		{"uefi-user-vars", code, userVars, "vmgate: firmware not allowed: <os><nvram template> " + userVars + " is outside admission.firmware_dirs"},
	} {
		d := defineDeviceDomain(t, l, c.name, uefi(c.loader, c.template))
		stderr, err := d.Start()
		if err == nil {
			t.Errorf("%s: started; want refused", c.name)
			continue
		}
		if !strings.Contains(stderr, c.reason) {
			t.Errorf("%s: virsh said\n%s\nwant %q", c.name, stderr, c.reason)
		}
	}
}
