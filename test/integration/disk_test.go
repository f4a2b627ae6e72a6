package integration

// The disk checks against the real libvirtd + QEMU, with guests that print what they run
// (bootsector_test.go): for each way around the hook, the attack is shown to work with the
// hook in warn mode (the guest prints EVIL), then refused in enforce mode with vmgate's
// reason; the honest cases keep working and print GOOD.

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/policy/policytest"
)

// diskSite is a site whose hook is installed, with an endorsed base image that boots GOOD
// (in image_dirs, so vmgate sync seals it) and an unendorsed one that boots EVIL.
type diskSite struct {
	*site
	l          *Libvirt
	baseConfig string
	imageDir   string
	good, evil string
	goodBytes  []byte
}

const floppySize = 1474560

func newDiskSite(t *testing.T) *diskSite {
	l := requireLibvirt(t)
	requireTool(t, "qemu-img")
	s := newSite(t, "")
	ds := &diskSite{site: s, l: l, imageDir: filepath.Join(s.dir, "images")}
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	ds.baseConfig = string(cfg)
	if err := os.MkdirAll(ds.imageDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ds.goodBytes = bootDisk("GOOD", 1<<20)
	ds.good = filepath.Join(ds.imageDir, "good.raw")
	ds.evil = filepath.Join(s.dir, "evil.raw")
	for p, b := range map[string][]byte{ds.good: ds.goodBytes, ds.evil: bootDisk("EVIL", 1<<20)} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { clearImmutable(t, ds.good) })
	s.publish(policytest.ImageFor("good", ds.goodBytes))
	ds.setMode("enforce")
	out, stderr, code := s.vmgate("sync")
	if code != 0 || !strings.Contains(out, "image_dirs: 1 made immutable now") {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	if f, err := os.OpenFile(ds.good, os.O_WRONLY, 0); err == nil {
		f.Close()
		t.Fatal("vmgate sync left the endorsed base writable")
	}
	s.installVMGateHook(l)
	return ds
}

// setMode rewrites the configuration; the hook reads it at every call.
func (ds *diskSite) setMode(mode string) {
	ds.t.Helper()
	cfg := ds.baseConfig + "image_dirs: [" + ds.imageDir + "]\nadmission:\n  mode: " + mode + "\n  exempt_disks: [\"*.iso\"]\n"
	if err := os.WriteFile(ds.config, []byte(cfg), 0o644); err != nil {
		ds.t.Fatal(err)
	}
}

// clearImmutable runs chattr -i, so that the test's directories can be removed.
func clearImmutable(t *testing.T, path string) {
	if _, err := runTool("/", nil, "chattr", "-i", path); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func (ds *diskSite) qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if _, err := runTool("/", nil, "qemu-img", args...); err != nil {
		t.Fatal(err)
	}
}

// overlay makes a fresh qcow2 overlay on a raw base, in a directory of t's.
func (ds *diskSite) overlay(t *testing.T, base string) string {
	p := filepath.Join(t.TempDir(), "disk.qcow2")
	ds.qemuImg(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", p)
	return p
}

// filled makes an overlay whose header names the endorsed base but whose content is EVIL:
// made on the evil base, then rebased (safe mode), which copies every differing cluster in.
func (ds *diskSite) filled(t *testing.T) string {
	p := ds.overlay(t, ds.evil)
	ds.qemuImg(t, "rebase", "-q", "-f", "qcow2", "-b", ds.good, "-F", "raw", p)
	return p
}

// attack shows a guest printing EVIL with the hook in warn mode, then refused in enforce
// mode with reason in virsh's error.
func (ds *diskSite) attack(t *testing.T, g *Guest, reason string) {
	t.Helper()
	ds.setMode("warn")
	if stderr, err := g.Start(); err != nil {
		t.Fatalf("warn mode: start: %v\n%s", err, stderr)
	}
	g.Prints(t, "EVIL")
	g.Destroy(t)
	ds.setMode("enforce")
	stderr, err := g.Start()
	if err == nil || !strings.Contains(stderr, "vmgate: ") || !strings.Contains(stderr, reason) {
		t.Fatalf("enforce mode: err %v; virsh said:\n%s\nwant vmgate's reason containing:\n%s", err, stderr, reason)
	}
	if st, _ := g.State(); st != "shut off" {
		t.Fatalf("refused guest is %q", st)
	}
}

func TestDiskAttacksOnRealGuests(t *testing.T) {
	ds := newDiskSite(t)
	l := ds.l

	t.Run("XML backingStore differs from the header", func(t *testing.T) {
		ov := ds.overlay(t, ds.good)
		g := l.NewGuest(t, "bs-differs", GuestOptions{Disks: fileDisk("disk", "qcow2", ov, "vda", "virtio",
			"<backingStore type='file'><format type='raw'/><source file='"+xmlAttr(ds.evil)+"'/><backingStore/></backingStore>")})
		ds.attack(t, g, "the domain XML's <backingStore> below "+ov+" is "+ds.evil+", but its header names "+ds.good)
	})

	t.Run("empty backingStore", func(t *testing.T) {
		ov := ds.filled(t)
		g := l.NewGuest(t, "bs-empty", GuestOptions{Disks: fileDisk("disk", "qcow2", ov, "vda", "virtio", "<backingStore/>")})
		ds.attack(t, g, "ends the chain at "+ov+" with an empty <backingStore/>")
	})

	t.Run("raw disk named x.iso boots", func(t *testing.T) {
		iso := filepath.Join(t.TempDir(), "x.iso")
		if err := os.WriteFile(iso, bootDisk("EVIL", 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		g := l.NewGuest(t, "raw-iso", GuestOptions{Disks: fileDisk("disk", "raw", iso, "vda", "virtio", "") + "\n" +
			fileDisk("disk", "qcow2", ds.overlay(t, ds.good), "vdb", "virtio", "")})
		ds.attack(t, g, `disk vda (`+iso+`) matches admission.exempt_disks "*.iso" but is a disk device, not a CD-ROM or floppy`)
	})

	t.Run("qcow2 named x.iso on an unendorsed base", func(t *testing.T) {
		dir := t.TempDir()
		fd := filepath.Join(dir, "floppy.raw")
		if err := os.WriteFile(fd, bootDisk("EVIL", floppySize), 0o644); err != nil {
			t.Fatal(err)
		}
		iso := filepath.Join(dir, "x.iso")
		ds.qemuImg(t, "create", "-q", "-f", "qcow2", "-b", fd, "-F", "raw", iso)
		g := l.NewGuest(t, "qcow2-iso", GuestOptions{OS: "<boot dev='fd'/><boot dev='hd'/>",
			Disks: fileDisk("floppy", "qcow2", iso, "fda", "fdc", "<readonly/>") + "\n" + fileDisk("disk", "qcow2", ds.overlay(t, ds.good), "vda", "virtio", "")})
		ds.attack(t, g, "disk fda image "+fd)
		stderr, _ := g.Start()
		if !strings.Contains(stderr, "backing chain of an exempt medium: no subscribed list endorses it") {
			t.Fatalf("virsh said:\n%s", stderr)
		}
	})

	t.Run("pre-filled overlay", func(t *testing.T) {
		ov := ds.filled(t)
		g := l.NewGuest(t, "prefilled", GuestOptions{Disks: fileDisk("disk", "qcow2", ov, "vda", "virtio", "")})
		ds.attack(t, g, "overlay "+ov+" already holds data (guest offset 0 is allocated")
	})

	t.Run("restore of a save image whose XML was edited", func(t *testing.T) {
		evilOv, goodOv := ds.overlay(t, ds.evil), ds.overlay(t, ds.good)
		g := l.NewGuest(t, "restore-edited", GuestOptions{Disks: fileDisk("disk", "qcow2", evilOv, "vda", "virtio", "")})
		save := filepath.Join(t.TempDir(), "guest.save")
		ds.setMode("warn")
		if stderr, err := g.Start(); err != nil {
			t.Fatalf("start: %v\n%s", err, stderr)
		}
		g.Prints(t, "EVIL")
		if _, _, err := l.Virsh("save", g.Name, save); err != nil {
			t.Fatal(err)
		}
		saved, _, err := l.Virsh("save-image-dumpxml", save)
		if err != nil {
			t.Fatal(err)
		}
		edited := filepath.Join(t.TempDir(), "edited.xml")
		os.WriteFile(edited, []byte(strings.ReplaceAll(saved, evilOv, goodOv)), 0o644)
		if _, _, err := l.Virsh("save-image-define", save, edited); err != nil {
			t.Fatal(err)
		}
		// The attack: the memory image goes on running EVIL with only an endorsed disk.
		os.Remove(g.Console)
		if _, stderr, err := l.Virsh("restore", save); err != nil {
			t.Fatalf("warn mode: restore: %v\n%s", err, stderr)
		}
		g.Prints(t, "EVIL")
		if out, _, _ := l.Virsh("domblklist", g.Name); !strings.Contains(out, goodOv) || strings.Contains(out, evilOv) {
			t.Fatalf("the restored guest's disks:\n%s", out)
		}
		if _, _, err := l.Virsh("save", g.Name, save); err != nil {
			t.Fatal(err)
		}
		ds.setMode("enforce")
		_, stderr, err := l.Virsh("restore", save)
		if err == nil || !strings.Contains(stderr, "vmgate: restore refused: a memory image cannot be endorsed, and vmgate never admitted domain "+g.Name) {
			t.Fatalf("enforce mode: restore: %v\n%s", err, stderr)
		}
		if st, _ := g.State(); st != "shut off" {
			t.Fatalf("refused restore left the guest %q", st)
		}
	})

	t.Run("base rewritten through a shared mapping", func(t *testing.T) {
		base := filepath.Join(t.TempDir(), "base.raw")
		if err := os.WriteFile(base, ds.goodBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		g := l.NewGuest(t, "mmap", GuestOptions{Disks: fileDisk("disk", "qcow2", ds.overlay(t, base), "vda", "virtio", "")})
		if stderr, err := g.Start(); err != nil {
			t.Fatalf("start on the endorsed base: %v\n%s", err, stderr)
		}
		g.Prints(t, "GOOD")
		g.Destroy(t)
		// libvirt's dynamic ownership gives the base to the QEMU user at every start (root
		// here, qemu.conf user=root; libvirt-qemu on a stock host): give it to that user, as
		// a stock host leaves it, so that a guest escaped into QEMU could write it.
		if err := os.Chown(base, 64055, 64055); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(base, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Munmap(m)
		m[0] = ds.goodBytes[0] // dirty the page: timestamps are stamped now, not at later writes
		var before syscall.Stat_t
		syscall.Stat(base, &before)
		// Old enough for a cache key (imagehash's racy window is 2 s), then judged and hashed.
		waitUntil(t, 10*time.Second, "the base's ctime to age", func() bool {
			return time.Since(time.Unix(before.Ctim.Unix())) > 3*time.Second
		})
		if out, _, code := ds.vmgate("check", g.xmlPath); code != 0 {
			t.Fatalf("vmgate check on the endorsed base: exit %d\n%s", code, out)
		}
		copy(m, bootSector("EVIL"))
		var after syscall.Stat_t
		syscall.Stat(base, &after)
		if after.Mtim != before.Mtim || after.Ctim != before.Ctim || after.Size != before.Size || after.Ino != before.Ino {
			t.Fatalf("the rewrite moved the file's identity, so it would not show what it shows: %+v -> %+v", before, after)
		}
		// Same device, inode, size, mtime and ctime: a cache keyed on them alone would serve
		// the endorsed sum. vmgate hashes again a base that someone but root can write.
		if out, _, code := ds.vmgate("check", g.xmlPath); code != 1 || !strings.Contains(out, "no subscribed list endorses it") {
			t.Fatalf("vmgate check after the rewrite: exit %d\n%s", code, out)
		}
		ds.attack(t, g, "disk vda image "+base+" (sha512 ")
	})

	t.Run("immutable base owned by another user", func(t *testing.T) {
		// libvirt's chown of a sealed base fails with EPERM; libvirt ignores that and QEMU,
		// which may read the file, starts.
		base := filepath.Join(t.TempDir(), "sealed.raw")
		if err := os.WriteFile(base, ds.goodBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(base, 64055, 64055); err != nil {
			t.Fatal(err)
		}
		if _, err := runTool("/", nil, "chattr", "+i", base); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { clearImmutable(t, base) })
		g := l.NewGuest(t, "sealed", GuestOptions{Disks: fileDisk("disk", "qcow2", ds.overlay(t, base), "vda", "virtio", "")})
		if stderr, err := g.Start(); err != nil {
			t.Fatalf("start on a sealed base: %v\n%s", err, stderr)
		}
		g.Prints(t, "GOOD")
		var st syscall.Stat_t
		syscall.Stat(base, &st)
		if st.Uid != 64055 {
			t.Fatalf("the sealed base changed owner to %d", st.Uid)
		}
	})

	t.Run("honest: fresh overlay, then the VM's own writes", func(t *testing.T) {
		ov := ds.overlay(t, ds.good)
		g := l.NewGuest(t, "honest", GuestOptions{Disks: fileDisk("disk", "qcow2", ov, "vda", "virtio", "")})
		if stderr, err := g.Start(); err != nil {
			t.Fatalf("fresh overlay: %v\n%s", err, stderr)
		}
		g.Prints(t, "GOOD")
		g.Destroy(t)
		// What the guest writes lands in its overlay (here written while it is off).
		if _, err := runTool("/", nil, "qemu-io", "-f", "qcow2", "-c", "write -P 0x61 524288 4096", ov); err != nil {
			t.Fatal(err)
		}
		if stderr, err := g.Start(); err != nil {
			t.Fatalf("the VM's own overlay: %v\n%s", err, stderr)
		}
		g.Prints(t, "GOOD")
		g.Destroy(t)
	})

	t.Run("honest: managedsave then start", func(t *testing.T) {
		g := l.NewGuest(t, "managedsave", GuestOptions{Disks: fileDisk("disk", "qcow2", ds.overlay(t, ds.good), "vda", "virtio", "")})
		if stderr, err := g.Start(); err != nil {
			t.Fatalf("start: %v\n%s", err, stderr)
		}
		g.Prints(t, "GOOD")
		if _, _, err := l.Virsh("managedsave", g.Name); err != nil {
			t.Fatal(err)
		}
		if stderr, err := g.Start(); err != nil {
			t.Fatalf("start from the managed save: %v\n%s", err, stderr)
		}
		g.Prints(t, "GOOD")
		if r := findRecord(ds.traceRecords(), "admission.allow", g.Name); r == nil || r["libvirt_op"] != "prepare begin" {
			t.Fatalf("last allow record: %v", r)
		}
		var restore map[string]any
		for _, r := range recordsOf(ds.traceRecords(), "admission.allow", g.Name) {
			if r["libvirt_op"] == "restore begin" {
				restore = r
			}
		}
		if restore == nil {
			t.Fatal("no admission.allow record for restore begin")
		}
	})

	t.Run("honest: save and restore", func(t *testing.T) {
		g := l.NewGuest(t, "save", GuestOptions{Disks: fileDisk("disk", "qcow2", ds.overlay(t, ds.good), "vda", "virtio", "")})
		if stderr, err := g.Start(); err != nil {
			t.Fatalf("start: %v\n%s", err, stderr)
		}
		g.Prints(t, "GOOD")
		save := filepath.Join(t.TempDir(), "guest.save")
		if _, _, err := l.Virsh("save", g.Name, save); err != nil {
			t.Fatal(err)
		}
		os.Remove(g.Console)
		if _, stderr, err := l.Virsh("restore", save); err != nil {
			t.Fatalf("restore: %v\n%s", err, stderr)
		}
		g.Prints(t, "GOOD")
	})

	t.Run("adopt", func(t *testing.T) {
		ov := ds.overlay(t, ds.good)
		// Written before vmgate knew the VM: its own state, which only an operator can vouch for.
		if _, err := runTool("/", nil, "qemu-io", "-f", "qcow2", "-c", "write -P 0x61 524288 4096", ov); err != nil {
			t.Fatal(err)
		}
		g := l.NewGuest(t, "adopt", GuestOptions{Disks: fileDisk("disk", "qcow2", ov, "vda", "virtio", "")})
		stderr, err := g.Start()
		if err == nil || !strings.Contains(stderr, "adopt it with `vmgate hook adopt "+g.UUID+"`") {
			t.Fatalf("first start: %v\n%s", err, stderr)
		}
		out, _, code := ds.vmgate("hook", "adopt", "--dry-run", g.Name)
		if code != 0 || !strings.Contains(out, "would adopt "+g.Name+" ("+g.UUID+"): vda="+ov+" vda="+ds.good) {
			t.Fatalf("adopt --dry-run: exit %d\n%s", code, out)
		}
		if _, err := g.Start(); err == nil {
			t.Fatal("--dry-run adopted")
		}
		if out, stderr, code := ds.vmgate("hook", "adopt", g.UUID); code != 0 || !strings.Contains(out, "adopted "+g.Name) {
			t.Fatalf("adopt: exit %d\n%s%s", code, out, stderr)
		}
		if stderr, err := g.Start(); err != nil {
			t.Fatalf("start after adopt: %v\n%s", err, stderr)
		}
		g.Prints(t, "GOOD")
		// A domain on an unendorsed base is not adopted.
		bad := l.NewGuest(t, "adopt-bad", GuestOptions{Disks: fileDisk("disk", "qcow2", ds.overlay(t, ds.evil), "vda", "virtio", "")})
		if out, _, code := ds.vmgate("hook", "adopt", bad.Name); code != 1 || !strings.Contains(out, "not adopted "+bad.Name) {
			t.Fatalf("adopt of an unendorsed domain: exit %d\n%s", code, out)
		}
	})
}
