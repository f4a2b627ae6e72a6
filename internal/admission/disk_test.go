package admission

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// diskWorld is a world with qemu-img: an endorsed base, an unendorsed one, and helpers to
// make overlays.
type diskWorld struct {
	*world
	good, evil string
	mem        *Memory
}

func newDiskWorld(t *testing.T) *diskWorld {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("VMGATE_INTEGRATION") == "1" {
			t.Fatal("qemu-img is missing (install qemu-utils)")
		}
		t.Skip("qemu-img is missing")
	}
	w := &diskWorld{world: newWorld(t)}
	var sha string
	w.good, sha = w.image("good.raw")
	w.evil, _ = w.image("evil.raw")
	w.endorse(sha, snapshot.Endorsed, "")
	m := NewMemory(filepath.Join(w.dir, "admitted"))
	w.mem = &m
	return w
}

func (w *diskWorld) run(name string, args ...string) {
	w.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		w.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// overlay makes a fresh qcow2 overlay on base.
func (w *diskWorld) overlay(name, base string) string {
	p := filepath.Join(w.dir, name)
	w.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", p)
	return p
}

func (w *diskWorld) judgeOp(op string) *Judge {
	j := w.judge(now)
	j.Memory, j.Op = w.mem, op
	return j
}

func qcow2Domain(path string) *domain.Domain {
	d := plain("vm", path)
	d.Disks[0].Format = "qcow2"
	return d
}

func TestBackingStoreMustAgreeWithHeaders(t *testing.T) {
	w := newDiskWorld(t)
	ov := w.overlay("vm.qcow2", w.good)
	j := w.judgeOp(OpPrepare)
	file := func(p, format string, below *domain.BackingStore) *domain.BackingStore {
		return &domain.BackingStore{Type: "file", Format: format, Source: &domain.Source{Path: p}, BackingStore: below}
	}
	end := &domain.BackingStore{}
	link := filepath.Join(w.dir, "good-link.raw")
	if err := os.Symlink(w.good, link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		bs     *domain.BackingStore
		allow  bool
		reason string
	}{
		{"none: libvirt reads the headers", nil, true, ""},
		{"the headers' chain", file(w.good, "raw", end), true, ""},
		{"the headers' chain, open-ended", file(w.good, "raw", nil), true, ""},
		{"the same file by another name", file(link, "raw", end), true, ""},
		{"another file", file(w.evil, "raw", end), false, "<backingStore> below " + ov + " is " + w.evil + ", but its header names " + w.good},
		{"another format", file(w.good, "qcow2", end), false, `gives ` + w.good + ` the format "qcow2"`},
		{"no format", file(w.good, "", end), false, `the format ""`},
		{"empty <backingStore/>", end, false, "ends the chain at " + ov + " with an empty <backingStore/>"},
		{"a layer the headers lack", file(w.good, "raw", file(w.evil, "raw", nil)), false, "whose header names no backing file"},
		{"a network layer", &domain.BackingStore{Type: "network", Source: &domain.Source{Protocol: "nbd"}}, false, "<backingStore type='network'>"},
	}
	for _, c := range cases {
		d := qcow2Domain(ov)
		d.Disks[0].BackingStore = c.bs
		dec := j.Decide(d)
		if dec.Allow != c.allow || !strings.Contains(dec.Reason, c.reason) {
			t.Errorf("%s: allow=%v reason=%q; want %v, %q", c.name, dec.Allow, dec.Reason, c.allow, c.reason)
		}
	}
}

func TestExemptMediaCannotBootOrBeTheEndorsedDisk(t *testing.T) {
	w := newDiskWorld(t)
	iso, _ := w.image("tools.iso")
	qiso := filepath.Join(w.dir, "x.iso")
	w.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", w.evil, "-F", "raw", qiso)
	qisoGood := filepath.Join(w.dir, "y.iso")
	w.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", w.good, "-F", "raw", qisoGood)
	w.cfg.ExemptDisks = []string{"*.iso"}
	j := w.judgeOp(OpPrepare)

	// vda: the endorsed disk; vdb/hdc/fda: the medium.
	with := func(device, path string, mut func(d *domain.Domain)) *domain.Domain {
		d := plain("vm", w.good, path)
		d.Disks[1].Device, d.Disks[1].ReadOnly, d.Disks[1].Format = device, true, "raw"
		if strings.HasSuffix(path, "x.iso") || strings.HasSuffix(path, "y.iso") {
			d.Disks[1].Format = "qcow2"
		}
		d.Boot.Devs = []string{"hd"}
		if mut != nil {
			mut(d)
		}
		return d
	}
	cases := []struct {
		name   string
		d      *domain.Domain
		allow  bool
		reason string
	}{
		{"cdrom", with("cdrom", iso, nil), true, ""},
		{"floppy", with("floppy", iso, nil), true, ""},
		{"a disk named .iso", with("disk", iso, nil), false, "but is a disk device, not a CD-ROM or floppy"},
		{"a writable floppy", with("floppy", iso, func(d *domain.Domain) { d.Disks[1].ReadOnly = false }), false, "is not <readonly/>"},
		{"boot order on the cdrom", with("cdrom", iso, func(d *domain.Domain) {
			d.Boot.Devs = nil
			d.Disks[0].BootOrder, d.Disks[1].BootOrder = 2, 1
		}), false, "could boot: it has <boot order='1'>"},
		{"boot order on the disk only", with("cdrom", iso, func(d *domain.Domain) { d.Boot.Devs = nil; d.Disks[0].BootOrder = 1 }), true, ""},
		{"<os><boot dev='cdrom'>", with("cdrom", iso, func(d *domain.Domain) { d.Boot.Devs = []string{"hd", "cdrom"} }), false, "<os><boot dev='cdrom'> boots it"},
		{"<os><boot dev='fd'>", with("floppy", iso, func(d *domain.Domain) { d.Boot.Devs = []string{"fd"} }), false, "<os><boot dev='fd'> boots it"},
		{"boot dev cdrom, a floppy", with("floppy", iso, func(d *domain.Domain) { d.Boot.Devs = []string{"hd", "cdrom"} }), true, ""},
		{"boot menu", with("cdrom", iso, func(d *domain.Domain) { d.Boot.Menu = true }), false, "boot menu"},
		{"UEFI", with("cdrom", iso, func(d *domain.Domain) { d.Boot.UEFI = true }), false, "UEFI"},
		{"qcow2 .iso on an unendorsed base", with("cdrom", qiso, nil), false, "backing chain of an exempt medium: no subscribed list endorses it"},
		{"qcow2 .iso on an endorsed base", with("cdrom", qisoGood, nil), true, ""},
		{"only the medium", func() *domain.Domain {
			d := with("cdrom", qisoGood, nil)
			d.Disks = d.Disks[1:]
			return d
		}(), false, "no disk with an endorsed image"},
	}
	for _, c := range cases {
		dec := j.Decide(c.d)
		if dec.Allow != c.allow || !strings.Contains(dec.Reason, c.reason) {
			t.Errorf("%s: allow=%v reason=%q; want %v, %q", c.name, dec.Allow, dec.Reason, c.allow, c.reason)
		}
		if c.allow && dec.Disks[len(dec.Disks)-1].Status != StatusExempt {
			t.Errorf("%s: medium is %+v, want exempt", c.name, dec.Disks[len(dec.Disks)-1])
		}
	}
}

func TestOverlaysHoldNoDataUnlessAdmittedBefore(t *testing.T) {
	w := newDiskWorld(t)
	fresh := w.overlay("fresh.qcow2", w.good)
	filled := filepath.Join(w.dir, "filled.qcow2")
	w.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", w.evil, "-F", "raw", filled)
	w.run("qemu-img", "rebase", "-q", "-f", "qcow2", "-b", w.good, "-F", "raw", filled)
	j := w.judgeOp(OpPrepare)

	if dec := j.Decide(qcow2Domain(fresh)); !dec.Allow {
		t.Fatalf("fresh overlay refused: %s", dec.Reason)
	}
	d := qcow2Domain(filled)
	dec := j.Decide(d)
	if dec.Allow || !strings.Contains(dec.Reason, "overlay "+filled+" already holds data (guest offset 0 is allocated") || !strings.Contains(dec.Reason, "vmgate hook adopt "+d.UUID) {
		t.Fatalf("pre-filled overlay: %+v", dec)
	}
	// Once the domain was admitted with this file, its data is the VM's own.
	if err := w.mem.Remember(d, OpPrepare, now); err != nil {
		t.Fatal(err)
	}
	if dec := j.Decide(d); !dec.Allow {
		t.Fatalf("remembered overlay refused: %s", dec.Reason)
	}
	// Another domain's uuid does not carry the memory; nor does another file at that path.
	other := qcow2Domain(filled)
	other.UUID = "11111111-2222-4333-8444-555555555555"
	if dec := j.Decide(other); dec.Allow {
		t.Fatal("another domain's memory admitted the overlay")
	}
	data, _ := os.ReadFile(filled)
	os.Remove(filled)
	os.WriteFile(filled+".new", data, 0o644)
	os.Rename(filled+".new", filled)
	if dec := j.Decide(d); dec.Allow {
		t.Fatal("a new file at a remembered path was admitted")
	}
	// An incoming migration brings its state; adopt takes it as the domain's own.
	for _, op := range []string{OpMigrate, OpAdopt} {
		if dec := w.judgeOp(op).Decide(d); !dec.Allow {
			t.Errorf("%s: %s", op, dec.Reason)
		}
	}
	// Without a memory at all, data is refused.
	j.Memory = nil
	if dec := j.Decide(d); dec.Allow {
		t.Fatal("no memory, yet the overlay was admitted")
	}
}

func TestRestoreNeedsTheSameAdmittedDomain(t *testing.T) {
	w := newDiskWorld(t)
	ov := w.overlay("vm.qcow2", w.good)
	other := w.overlay("other.qcow2", w.good)
	d := qcow2Domain(ov)
	j := w.judgeOp(OpRestore)
	if dec := j.Decide(d); dec.Allow || !strings.Contains(dec.Reason, "restore refused: a memory image cannot be endorsed, and vmgate never admitted domain vm") {
		t.Fatalf("restore of a domain never admitted: %+v", dec)
	}
	if err := w.mem.Remember(d, OpPrepare, now); err != nil {
		t.Fatal(err)
	}
	if dec := j.Decide(d); !dec.Allow {
		t.Fatalf("restore of the admitted domain: %s", dec.Reason)
	}
	edited := qcow2Domain(other) // save-image-define pointed the disk elsewhere
	if dec := j.Decide(edited); dec.Allow || !strings.Contains(dec.Reason, "with other disks (disk vda file "+other+" is new)") {
		t.Fatalf("restore with other disks: %+v", dec)
	}
	// Forgotten (the domain ran unendorsed since): refused again.
	if err := w.mem.Forget(d.UUID); err != nil {
		t.Fatal(err)
	}
	if dec := j.Decide(d); dec.Allow {
		t.Fatal("restore of a forgotten domain admitted")
	}
	// Incoming migrations: judged by default, refused when configured.
	w.cfg.IncomingMigration = config.MigrationRefuse
	if dec := w.judgeOp(OpMigrate).Decide(d); dec.Allow || !strings.Contains(dec.Reason, "incoming migration refused") {
		t.Fatalf("migration with incoming_migration refuse: %+v", dec)
	}
}

func TestMemoryFiles(t *testing.T) {
	dir := t.TempDir()
	m := NewMemory(filepath.Join(dir, "admitted"))
	const uuid = "3f2e1d0c-9b8a-4766-8554-433221100fed"
	if a, err := m.Load(uuid); a != nil || err != nil {
		t.Fatalf("empty memory: %v, %v", a, err)
	}
	want := Admitted{UUID: uuid, Name: "vm", Time: now, Op: OpPrepare, Layers: []Layer{{Disk: "vda", Path: "/x", FileID: FileID{1, 2, 3}}}}
	if err := m.Store(want); err != nil {
		t.Fatal(err)
	}
	a, err := m.Load(uuid)
	if err != nil || !a.Has(FileID{1, 2, 3}) || a.Has(FileID{1, 2, 4}) || a.Name != "vm" {
		t.Fatalf("Load = %+v, %v", a, err)
	}
	p := filepath.Join(dir, "admitted", uuid)
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	os.Chmod(p, 0o666)
	if _, err := m.Load(uuid); err == nil || !strings.Contains(err.Error(), "not a file only root can write") {
		t.Errorf("world-writable entry: %v", err)
	}
	os.WriteFile(p, []byte("{"), 0o600)
	os.Chmod(p, 0o600)
	if _, err := m.Load(uuid); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged entry: %v", err)
	}
	if _, err := m.Load("../../etc/passwd"); err == nil {
		t.Error("a path as uuid was accepted")
	}
	if err := m.Forget(uuid); err != nil {
		t.Fatal(err)
	}
	if a, err := m.Load(uuid); a != nil || err != nil {
		t.Fatalf("after Forget: %v, %v", a, err)
	}
}
