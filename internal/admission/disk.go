package admission

// The judgement of plain-libvirt disks: what QEMU will open and execute, never what the
// XML says about itself. The attackers each rule stops are written next to it; see also
// docs/threat-model.md, "Disks, overlays, base images, restore".

import (
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/qcow2"
)

// decideDisks judges a plain-libvirt domain by every disk's backing chain: each base image
// endorsed, each layer above it empty or this domain's own state, at least one disk
// endorsed (an exempt disk never counts).
func (j *Judge) decideDisks(d *domain.Domain) Decision {
	mem := &memo{j: j, uuid: d.UUID}
	var disks []Disk
	for i := range d.Disks {
		dd := &d.Disks[i]
		if dd.Empty() {
			continue // a CD-ROM drive with no medium, say
		}
		disk := Disk{Target: dd.Target, Source: describeSource(dd)}
		j.judgePlainDisk(&disk, d, dd, mem)
		disks = append(disks, disk)
	}
	return j.conclude(disks)
}

// judgePlainDisk judges one disk as plain libvirt does: exempt media, or the chain QEMU
// opens down to an endorsed base. A Nova domain's disks that are not Nova's own come here.
func (j *Judge) judgePlainDisk(disk *Disk, d *domain.Domain, dd *domain.Disk, mem *memo) {
	if p := j.exemptPattern(dd); p != "" {
		j.judgeExempt(disk, d, dd, p, mem)
		return
	}
	j.judgeDisk(disk, dd, mem)
}

// memo loads the domain's memory at most once per decision, and only when a layer holds
// data: a first start with fresh overlays reads nothing more.
type memo struct {
	j      *Judge
	uuid   string
	loaded bool
	a      *Admitted
	err    error
}

func (m *memo) get() (*Admitted, error) {
	if !m.loaded {
		m.loaded = true
		if m.j.Memory != nil && m.uuid != "" {
			m.a, m.err = m.j.Memory.Load(m.uuid)
		}
	}
	return m.a, m.err
}

// exemptPattern returns the admission.exempt_disks pattern the disk's file matches, "".
func (j *Judge) exemptPattern(dd *domain.Disk) string {
	if dd.Source == nil || dd.Source.Path == "" {
		return ""
	}
	for _, p := range j.Config.ExemptDisks {
		// A pattern without a slash matches the file name, one with a slash the whole path.
		name := dd.Source.Path
		if !strings.Contains(p, "/") {
			name = path.Base(name)
		}
		if ok, _ := path.Match(p, name); ok {
			return p
		}
	}
	return ""
}

// judgeExempt judges a disk whose file matches an exemption. A name proves nothing about
// content (a raw disk named x.iso boots like any disk), so the exemption covers only what
// an image list cannot vouch for and cannot boot: read-only removable media (installation
// ISOs, driver CDs, config drives) that the firmware will not boot. What lies below the
// file in a backing chain is judged as any disk's chain is. An exempt disk never counts as
// the endorsed one.
//
// Who it stops: anyone who can name files and shape the domain XML (a portal or
// orchestrator passing users' choices to libvirt, an operator's mistake) using an
// exemption meant for media to boot or back arbitrary code. It does not stop a guest
// already running endorsed code from reading and running what the medium holds: that is
// the exemption's risk, written next to it in README.
func (j *Judge) judgeExempt(disk *Disk, d *domain.Domain, dd *domain.Disk, pattern string, mem *memo) {
	why := func(format string, args ...any) {
		disk.Status = StatusError
		disk.Reason = fmt.Sprintf("matches admission.exempt_disks %q but ", pattern) + fmt.Sprintf(format, args...) +
			"; exemptions cover read-only CD-ROM and floppy media that cannot boot"
	}
	if dd.Device != "cdrom" && dd.Device != "floppy" {
		why("is a %s device, not a CD-ROM or floppy", dd.Device)
		return
	}
	if !dd.ReadOnly {
		why("is not <readonly/>")
		return
	}
	if dd.Type != "file" {
		why("is a %s source, not a file", dd.Type)
		return
	}
	// What QEMU reads first: a qcow2 "medium" with a backing file is an image of its base.
	chain, err := chainOf(dd)
	if err != nil {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("cannot follow its backing chain: %v", err)
		return
	}
	if len(chain) > 1 {
		// The medium itself is the exempt top layer; everything below it is an image.
		j.judgeChain(disk, dd, chain[1:], mem)
		if disk.Status != string(snapshot.Endorsed) {
			disk.Reason = "backing chain of an exempt medium: " + disk.Reason
			return
		}
	}
	if b := couldBoot(d, dd); b != "" {
		why("could boot: %s", b)
		return
	}
	disk.Status, disk.Reason = StatusExempt, fmt.Sprintf("matches admission.exempt_disks %q", pattern)
	disk.Image = nil
}

// couldBoot says why the firmware could boot a removable medium, "" when it cannot. What
// libvirt 9.0 and SeaBIOS do (checked with real guests, test/integration/disk_test.go):
// libvirt always passes -boot strict=on, and turns <os><boot dev> or the per-device
// <boot order> into QEMU boot indexes; with strict=on SeaBIOS boots only the listed
// devices, in order, and never falls through to others. So a medium can boot when it has a
// <boot order>, or when no device has one and <os><boot dev> names its kind ('cdrom',
// 'fd'). Beyond that: a boot menu (<bootmenu enable='yes'>) lets whoever sees the console
// pick any device, and UEFI firmware (OVMF) adds boot options of its own for removable
// media it finds, so with either of them every medium counts as bootable.
func couldBoot(d *domain.Domain, dd *domain.Disk) string {
	if dd.BootOrder > 0 {
		return fmt.Sprintf("it has <boot order='%d'>", dd.BootOrder)
	}
	if d.Boot.Menu {
		return "the domain enables the boot menu, from which any device can be booted"
	}
	if d.Boot.UEFI {
		return "the domain boots UEFI firmware, which may boot any removable medium"
	}
	perDevice := slices.ContainsFunc(d.Disks, func(x domain.Disk) bool { return x.BootOrder > 0 })
	if !perDevice {
		dev := map[string]string{"cdrom": "cdrom", "floppy": "fd"}[dd.Device]
		if slices.Contains(d.Boot.Devs, dev) {
			return fmt.Sprintf("<os><boot dev='%s'> boots it", dev)
		}
	}
	return ""
}

// describeSource names a disk's source for people: its file, or what else it names.
func describeSource(dd *domain.Disk) string {
	s := dd.Source
	switch {
	case s == nil:
		return ""
	case s.Path != "":
		return s.Path
	case s.Protocol != "":
		return s.Protocol + ":" + s.Name
	case s.Volume != "":
		return s.Pool + "/" + s.Volume
	}
	return ""
}

// judgeDisk judges a disk that no exemption covers.
func (j *Judge) judgeDisk(disk *Disk, dd *domain.Disk, mem *memo) {
	if dd.Type != "file" {
		disk.Status = StatusError
		disk.Reason = fmt.Sprintf("is a %s disk; vmgate identifies images by the bytes of files only (exempt it with admission.exempt_disks if it holds no image)", dd.Type)
		return
	}
	chain, err := chainOf(dd)
	if err != nil {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("cannot follow its backing chain: %v", err)
		return
	}
	j.judgeChain(disk, dd, chain, mem)
}

// judgeChain judges the layers QEMU will open for a disk, top first: every layer above the
// base must hold no data or be this domain's own state, and the base must be endorsed.
func (j *Judge) judgeChain(disk *Disk, dd *domain.Disk, chain []qcow2.Layer, mem *memo) {
	for _, l := range chain[:len(chain)-1] {
		if reason := j.judgeOverlay(l, mem); reason != "" {
			disk.Status, disk.Reason = StatusError, reason
			return
		}
	}
	base := chain[len(chain)-1].Path
	disk.Source = base
	sum, err := j.Hasher.SHA512(base)
	if err != nil {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("cannot hash base image %s: %v", base, err)
		return
	}
	disk.SHA512 = sum
	e, ok, err := j.Snapshot.Lookup(sum)
	switch {
	case err != nil:
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("cannot read vmgate's snapshot (%v): run `vmgate sync`", err)
	case j.blockDisk(disk, e):
	case !ok:
		disk.Status, disk.Reason = StatusUnknown, "no subscribed list endorses it"
	default:
		j.judgeEntry(disk, e)
	}
}

// judgeOverlay returns why a layer above the base may not be used, "" when it may. A layer
// seen for the first time must hold no data: its content is then exactly its base's. One
// that holds data is admitted only when this domain was admitted before with this very
// file (same device, inode and birth time): then the data is the VM's own writes.
//
// Who it stops: whoever can place a file under a domain's disk path (a user of a portal
// that lets people upload "overlays", a shared image directory) running content no list
// endorses on an endorsed base, e.g. a qcow2 made on another base and rebased onto the
// endorsed one, or one whose zero-flagged clusters hide the base. An incoming migration
// brings the VM's state from the source host (see restore.go): there, data is accepted.
func (j *Judge) judgeOverlay(l qcow2.Layer, mem *memo) string {
	if l.Format != qcow2.FormatQCOW2 {
		return fmt.Sprintf("layer %s above the base is %s, which vmgate cannot check for data", l.Path, l.Format)
	}
	empty, why, err := qcow2.Empty(l.Path)
	if err != nil {
		return fmt.Sprintf("cannot check overlay %s for data: %v", l.Path, err)
	}
	if empty || j.Op == OpMigrate || j.Op == OpAdopt {
		return ""
	}
	id, err := fileID(l.Path)
	if err != nil {
		return fmt.Sprintf("cannot identify overlay %s: %v", l.Path, err)
	}
	a, err := mem.get()
	if err != nil {
		return fmt.Sprintf("overlay %s holds data and %v", l.Path, err)
	}
	if a.Has(id) {
		return ""
	}
	return fmt.Sprintf("overlay %s already holds data (%s) that vmgate never saw this domain write: start from an empty overlay, or if it is this VM's own state adopt it with `vmgate hook adopt %s`", l.Path, why, domainArg(mem.uuid))
}

func domainArg(uuid string) string {
	if uuid == "" {
		return "DOMAIN"
	}
	return uuid
}

// chainOf returns the layers libvirt will have QEMU open for a file disk, top first. Where
// the domain XML gives a <backingStore> chain, libvirt opens that chain and never reads the
// image headers (checked on libvirt 9.0: QEMU got -blockdev for the XML's file, and an
// empty <backingStore/> became "backing": null); where the XML stops without one, libvirt
// reads the headers. vmgate follows the headers and refuses an XML chain that says
// anything else: another file, another format, a layer the headers do not have, or the end
// of the chain where a header names a backing file.
//
// Who it stops: whoever writes the domain XML (a portal or orchestrator that passes
// users' XML, or an operator's mistake) making vmgate hash an endorsed base while QEMU
// reads another file, or reads an overlay without the base the hook judged.
func chainOf(dd *domain.Disk) ([]qcow2.Layer, error) {
	chain, err := qcow2.Chain(dd.Source.Path, qcow2.Options{Format: dd.Format})
	if err != nil {
		return nil, err
	}
	i := 0
	for bs := dd.BackingStore; bs != nil; bs, i = bs.BackingStore, i+1 {
		above := chain[i]
		if bs.End() {
			if above.BackingFile != "" {
				return nil, fmt.Errorf("the domain XML ends the chain at %s with an empty <backingStore/>, but its header names backing file %q: QEMU would read it without the base vmgate judges; remove the <backingStore> elements", above.Path, above.BackingFile)
			}
			return chain, nil
		}
		if i+1 >= len(chain) {
			return nil, fmt.Errorf("the domain XML puts a <backingStore> below %s, whose header names no backing file; remove the <backingStore> elements", above.Path)
		}
		below := chain[i+1]
		if bs.Type != "file" || bs.Source == nil || bs.Source.Path == "" {
			return nil, fmt.Errorf("the domain XML puts a <backingStore type='%s'> below %s, whose header names the file %s; remove the <backingStore> elements", bs.Type, above.Path, below.Path)
		}
		same, err := sameFile(bs.Source.Path, below.Path)
		if err != nil {
			return nil, fmt.Errorf("<backingStore> below %s: %w", above.Path, err)
		}
		if !same {
			return nil, fmt.Errorf("the domain XML's <backingStore> below %s is %s, but its header names %s: QEMU would read the XML's file; remove the <backingStore> elements", above.Path, bs.Source.Path, below.Path)
		}
		if bs.Format != below.Format {
			return nil, fmt.Errorf("the domain XML's <backingStore> gives %s the format %q, but its header chain makes it %s; remove the <backingStore> elements", below.Path, bs.Format, below.Format)
		}
	}
	return chain, nil
}

// sameFile reports whether two paths lead to the same file.
func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}
