package admission

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// TestDevices: everything but disks that the guest runs must come from the system, or the
// domain must be exempt. /etc/passwd stands for a root-owned file in a root-owned
// directory, a world-writable directory for a place users can write.
func TestDevices(t *testing.T) {
	w := newWorld(t)
	good, goodSHA := w.image("good.raw")
	w.endorse(goodSHA, snapshot.Endorsed, "")
	fw := filepath.Join(w.dir, "fw") // writable by all, whatever TMPDIR is
	if err := os.Mkdir(fw, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fw, 0o777); err != nil {
		t.Fatal(err)
	}
	userFile := filepath.Join(fw, "bios.bin")
	if err := os.WriteFile(userFile, []byte("code"), 0o644); err != nil {
		t.Fatal(err)
	}
	outLink := filepath.Join(fw, "out.rom") // in an allowed directory, pointing out of it
	if err := os.Symlink(good, filepath.Join(w.dir, "x")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(w.dir, "x"), outLink); err != nil {
		t.Fatal(err)
	}
	inLink := filepath.Join(fw, "passwd") // in a user's directory, pointing to a system file
	if err := os.Symlink("/etc/passwd", inLink); err != nil {
		t.Fatal(err)
	}
	w.cfg.FirmwareDirs = []string{"/etc", fw}
	w.cfg.Emulators = []string{"/etc/pass*"}
	w.cfg.ExemptDomains = []string{"lab-*"}
	j := w.judge(now)

	loader := func(p string) func(*domain.Domain) {
		return func(d *domain.Domain) { d.Firmware = []domain.File{{Element: "<os><loader>", Path: p}} }
	}
	cases := []struct {
		name   string
		mut    func(*domain.Domain)
		reason string // "" allows
	}{
		{"system firmware", loader("/etc/passwd"), ""},
		{"system emulator", func(d *domain.Domain) { d.Emulator = "/etc/passwd" }, ""},
		{"firmware elsewhere", loader("/var/../etc/hostname-not-there"), `firmware not allowed: <os><loader> /var/../etc/hostname-not-there is not a clean path`},
		{"firmware outside", loader(good), "firmware not allowed: <os><loader> " + good + " is outside admission.firmware_dirs; the guest would run it"},
		{"relative firmware", loader("fw/bios.bin"), "is not an absolute path"},
		{"missing firmware", loader("/etc/no-such-firmware.bin"), "cannot be resolved (no such file or directory)"},
		{"user-writable directory", loader(userFile), "firmware not allowed: <os><loader> " + userFile + " is in " + fw + ", which a user other than root can change"},
		{"link out of the allowlist", loader(outLink), "(resolved to " + good + ") is outside admission.firmware_dirs"},
		{"link into the allowlist from a user's directory", loader(inLink), "<os><loader> " + inLink + " is in " + fw + ", which a user other than root can change"},
		{"directory, not a file", loader("/etc/ssl"), "is not a regular file"},
		{"ROM on a NIC", func(d *domain.Domain) {
			d.Firmware = []domain.File{{Element: "<interface><rom file>", Path: good}}
		}, "firmware not allowed: <interface><rom file> " + good},
		{"emulator elsewhere", func(d *domain.Domain) { d.Emulator = good }, "emulator not allowed: " + good + " matches none of admission.emulators; use the system's QEMU"},
		{"emulator linked from a user's directory", func(d *domain.Domain) { d.Emulator = inLink }, "emulator not allowed: " + inLink + " is in " + fw + ", which"},
		{"qemu:override", func(d *domain.Domain) { d.QEMUPassthrough = []string{"qemu:override"} }, "QEMU pass-through (qemu:override)"},
		{"hostdev", func(d *domain.Domain) { d.Passthrough = []string{"<hostdev type='usb'>"} }, "host device not allowed: the domain passes <hostdev type='usb'> to the guest"},
		{"network boot", func(d *domain.Domain) { d.NetworkBoot = []string{"<os><boot dev='network'>"} }, "network boot not allowed: <os><boot dev='network'>"},
		{"nvdimm", func(d *domain.Domain) { d.MemoryFiles = []string{"/srv/pmem"} }, "memory device not allowed: the domain maps host memory or file /srv/pmem"},
		{"interface script", func(d *domain.Domain) { d.HostScripts = []string{"/srv/ifup"} }, "interface script not allowed: libvirt would run /srv/ifup"},
	}
	for _, c := range cases {
		d := plain("vm", good)
		c.mut(d)
		dec := j.Decide(d)
		if c.reason == "" {
			if !dec.Allow {
				t.Errorf("%s: refused: %s", c.name, dec.Reason)
			}
			continue
		}
		if dec.Allow || !strings.Contains(dec.Reason, c.reason) {
			t.Errorf("%s: allow=%v reason %q, want it to contain %q", c.name, dec.Allow, dec.Reason, c.reason)
		}
		// An exempt domain may do all of this.
		d.Name = "lab-1"
		if dec := j.Decide(d); !dec.Allow || dec.Exemption == "" {
			t.Errorf("%s: exempt domain refused: %s", c.name, dec.Reason)
		}
	}

	// An explicitly empty allowlist allows nothing.
	w.cfg.FirmwareDirs, w.cfg.Emulators = []string{}, []string{}
	j = w.judge(now)
	d := plain("vm", good)
	d.Emulator = "/etc/passwd"
	if dec := j.Decide(d); dec.Allow {
		t.Error("empty admission.emulators allowed an emulator")
	}
}

// BenchmarkJudgeDevices: what the device rules add to a start. Every domain names the
// system's emulator; a UEFI or custom-ROM one names firmware files too. Each costs a few
// lstat calls.
func BenchmarkJudgeDevices(b *testing.B) {
	cfg := config.Admission{FirmwareDirs: config.DefaultFirmwareDirs(), Emulators: config.DefaultEmulators()}
	j := &Judge{Config: cfg}
	emulator := &domain.Domain{Emulator: "/usr/bin/qemu-system-x86_64"}
	firmware := &domain.Domain{Emulator: "/usr/bin/qemu-system-x86_64", Firmware: []domain.File{
		{Element: "<os><loader>", Path: "/usr/share/seabios/bios-256k.bin"},
		{Element: "<interface><rom file>", Path: "/usr/lib/ipxe/qemu/pxe-e1000.rom"},
	}}
	for name, d := range map[string]*domain.Domain{"emulator": emulator, "emulator+2files": firmware} {
		b.Run(name, func(b *testing.B) {
			if dec, refused := j.judgeDevices(d); refused {
				b.Skipf("this machine has no Debian QEMU and firmware: %s", dec.Reason)
			}
			for b.Loop() {
				j.judgeDevices(d)
			}
		})
	}
}
