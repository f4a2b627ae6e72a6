package admission

import (
	"fmt"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
)

// The libvirt operations the hook gates (libvirt 9.0, checked with a recording hook):
//
//	virsh start:                         prepare begin, start begin, started begin
//	virsh managedsave:                   stopped end, release end
//	virsh start after a managedsave:     restore begin, prepare begin, start begin, started begin
//	virsh save D FILE:                   stopped end, release end
//	virsh save-image-define/-dumpxml:    no hook at all
//	virsh restore FILE:                  restore begin, prepare begin, start begin, started begin
//
// At restore begin and the prepare begin that follows, stdin is the XML stored in the save
// image (as edited by save-image-define), with no <backingStore>.
const (
	OpPrepare = "prepare begin"
	OpRestore = "restore begin"
	OpMigrate = "migrate begin"
	// OpAdopt is `vmgate hook adopt`: the operator takes the layers above endorsed bases of
	// the domains a host runs today as their own state (see internal/adopt).
	OpAdopt = "adopt"
)

// judgeMemoryImage adds to a decision what a restore or an incoming migration needs beyond
// the disks: a memory image holds running code that no list can endorse.
//
// Restore (virsh restore FILE, the start of a managed-saved domain, Nova's resume after
// suspend, libvirt-guests at boot): admitted only for a domain this host admitted before
// with the same disks, every layer of every disk one the memory lists. Who it stops: a
// memory image of a guest that ran something vmgate did not endorse (in warn mode, on
// another host, before vmgate was installed), restored with its XML edited by
// save-image-define to name endorsed disks. A domain's memory is forgotten whenever it runs
// unendorsed, so its uuid alone buys nothing. Out of reach: a root-equivalent user (any
// user of qemu:///system) who replaces an admitted domain's save file with another memory
// image of the same uuid and disks; the hook is never told the save file's path.
//
// Incoming migration: only root-equivalent users can migrate into this host (libvirt's
// qemu:///system; Nova's live migration is admin-only by default policy), and the source
// host's vmgate judged the VM when it started. With admission.incoming_migration "judge"
// (the default) the base images are judged as at a start, and the overlays' data and the
// memory are taken as the VM's state; "refuse" refuses every incoming migration.
func (j *Judge) judgeMemoryImage(d *domain.Domain, dec Decision) Decision {
	switch j.Op {
	case OpMigrate:
		if j.Config.IncomingMigration == config.MigrationRefuse {
			return refuse("incoming migration refused by admission.incoming_migration %q: start the domain on this host instead", config.MigrationRefuse)
		}
	case OpRestore:
		if !dec.Endorsed || dec.Exemption != "" {
			return dec
		}
		if reason := j.sameDisks(d); reason != "" {
			dec.Endorsed = false
			dec.Reason = "restore refused: a memory image cannot be endorsed, and " + reason + "; start the domain afresh (discard the save image: virsh managedsave-remove, or delete the file)"
		}
	}
	return dec
}

// sameDisks returns why d is not a domain this host admitted with these very disks, "".
func (j *Judge) sameDisks(d *domain.Domain) string {
	if j.Memory == nil || d.UUID == "" {
		return "vmgate keeps no memory of admitted domains here"
	}
	a, err := j.Memory.Load(d.UUID)
	if err != nil {
		return err.Error()
	}
	if a == nil || a.Restoring {
		return fmt.Sprintf("vmgate never admitted domain %s (uuid %s) on this host", d.Name, d.UUID)
	}
	for _, l := range Layers(d) {
		if !a.Has(l.FileID) {
			return fmt.Sprintf("vmgate admitted domain %s on this host with other disks (disk %s file %s is new)", d.Name, l.Disk, l.Path)
		}
	}
	return ""
}
