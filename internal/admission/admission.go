// Package admission decides whether a libvirt domain may run: from its domain XML to allow or
// refuse, with a reason a person can act on. The hook and `vmgate terminate` both judge
// through Judge.Decide, so there is one implementation of the rule.
//
// Security-critical: a mistake here admits an image no endorser vouches for. It refuses when
// in doubt. It is linked into the hook: keep its imports small (no cosign, no network).
package admission

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// Hasher returns the lower-case hex sha512 of a file's bytes.
type Hasher interface {
	SHA512(path string) (string, error)
}

// Judge holds what a decision needs. Snapshot is nil when it could not be opened; SnapshotErr
// then says why.
type Judge struct {
	Snapshot    *snapshot.Snapshot
	SnapshotErr error
	Hasher      Hasher
	Config      config.Admission
	Now         time.Time
	// Memory is what this host admitted before (see Memory); nil: nothing, so an overlay
	// that holds data is refused.
	Memory *Memory
	// Op is the libvirt operation being judged: "prepare begin" (also for ""), "restore
	// begin" or "migrate begin". Restores and incoming migrations carry a memory image,
	// which no list can endorse (see restore.go).
	Op string
}

// Disk statuses in a decision, beside the snapshot's endorsed, revoked and expired.
const (
	StatusUnknown = "unknown" // no list ever named it
	StatusExempt  = "exempt"  // matched admission.exempt_disks
	StatusError   = "error"   // vmgate could not identify it
	StatusBlocked = "blocked" // the site blocked it (vmgate block), whatever the lists say
)

// Disk is what the decision found for one disk (or, for a Nova instance, its root image).
type Disk struct {
	Target   string // vda, hdc…; empty for a Nova root image
	Source   string // the disk's file, or the base image its chain leads to
	GlanceID string
	SHA512   string
	Status   string          // endorsed, revoked, expired, unknown, exempt, error, blocked
	Image    *snapshot.Image // the endorsement that vouches, or the latest word on it
	Reason   string          // why it is not endorsed
	Block    *snapshot.Block // the site's block on its image, when Status is blocked
}

// Decision is the verdict on one domain.
type Decision struct {
	// Endorsed is the verdict: every image the domain runs is endorsed now (or exempt).
	Endorsed bool
	// Allow is whether the domain may start: Endorsed, or admission.mode is warn.
	Allow bool
	// Reason is the first thing a person reads when the domain is refused: what happened and
	// what to do, the words that matter first (Nova cuts fault messages at 255 characters).
	Reason string
	// Exemption names the configured exemption that admitted the domain, if one did.
	Exemption string
	Mode      string
	Disks     []Disk
	// Blocked is the site's block that refused the domain (its image, user or project), if
	// one did. A block refuses even in warn mode: it is the site's explicit word.
	Blocked *snapshot.Block
}

// Decide judges a domain. It never returns an error: what it cannot check, it refuses.
func (j *Judge) Decide(d *domain.Domain) Decision {
	dec := j.decide(d)
	dec.Mode = j.Config.Mode
	dec.Allow = dec.Endorsed || j.Config.Mode == config.ModeWarn && dec.Blocked == nil
	return dec
}

func (j *Judge) decide(d *domain.Domain) Decision {
	// The site's block of a user or project comes before any exemption: it is the later,
	// more particular word.
	if dec, blocked := j.ownerBlocked(d); blocked {
		return dec
	}
	if ex := j.exemption(d); ex != "" {
		return Decision{Endorsed: true, Exemption: ex}
	}
	if j.Snapshot == nil {
		return refuse("vmgate has no list of endorsed images (%v): run `vmgate sync`", j.SnapshotErr)
	}
	if err := j.Snapshot.Fresh(j.Now); err != nil {
		return refuse("vmgate's list of endorsed images is out of date (%v): run `vmgate sync` and check that it succeeds", err)
	}
	if len(d.QEMUArgs) > 0 {
		return refuse("the domain passes raw QEMU arguments (qemu:commandline), which can add disks vmgate cannot see; exempt the domain by name in admission.exempt_domains if this is intended")
	}
	if dec, refused := j.judgeDevices(d); refused {
		return dec
	}
	if d.Kernel != "" {
		return refuse("the domain boots kernel %s directly, which no image list can vouch for; exempt the domain by name in admission.exempt_domains if this is intended", d.Kernel)
	}
	if len(d.Filesystems) > 0 {
		return refuse("the domain shares host file system %s into the guest, which no image list can vouch for; exempt the domain by name in admission.exempt_domains if this is intended", d.Filesystems[0])
	}
	var dec Decision
	if d.Nova != nil {
		dec = j.decideNova(d) // nova.go
	} else {
		dec = j.decideDisks(d) // disk.go
	}
	return j.judgeMemoryImage(d, dec)
}

// ownerBlocked refuses a Nova instance whose user or project the site blocked.
func (j *Judge) ownerBlocked(d *domain.Domain) (Decision, bool) {
	if j.Snapshot == nil || d.Nova == nil {
		return Decision{}, false
	}
	for _, o := range []struct{ kind, id string }{{snapshot.BlockUser, d.Nova.UserID}, {snapshot.BlockProject, d.Nova.ProjectID}} {
		b, err := j.Snapshot.Blocked(o.kind, o.id, j.Now)
		if err != nil {
			return refuse("cannot read vmgate's snapshot (%v): run `vmgate sync`", err), true
		}
		if b != nil {
			return Decision{Reason: "blocked by the site: " + b.Describe(), Blocked: b}, true
		}
	}
	return Decision{}, false
}

// blockDisk marks a disk blocked when the site blocked its image, and reports whether it
// did (or could not tell, which is an error on the disk).
func (j *Judge) blockDisk(disk *Disk, e *snapshot.Entry) bool {
	var glance []string
	if disk.GlanceID != "" {
		glance = []string{disk.GlanceID}
	}
	b, err := j.Snapshot.ImageBlocked(e, disk.SHA512, glance, j.Now)
	switch {
	case err != nil:
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("cannot read vmgate's snapshot (%v): run `vmgate sync`", err)
	case b != nil:
		disk.Status, disk.Reason, disk.Block = StatusBlocked, b.Reason, b
		if e != nil {
			disk.Image = e.Latest()
		}
	default:
		return false
	}
	return true
}

func refuse(format string, args ...any) Decision {
	return Decision{Reason: fmt.Sprintf(format, args...)}
}

func (j *Judge) exemption(d *domain.Domain) string {
	for _, p := range j.Config.ExemptDomains {
		if ok, _ := path.Match(p, d.Name); ok {
			return fmt.Sprintf("domain name matches admission.exempt_domains %q", p)
		}
	}
	if d.Nova != nil && d.Nova.ProjectID != "" && slices.Contains(j.Config.ExemptProjects, d.Nova.ProjectID) {
		return fmt.Sprintf("project %s is in admission.exempt_projects", d.Nova.ProjectID)
	}
	return ""
}

// judgeEntry sets the disk's status from what the snapshot says of its image.
func (j *Judge) judgeEntry(disk *Disk, e *snapshot.Entry) {
	if im, ok := e.EndorsedAt(j.Now); ok {
		disk.Status, disk.Image = string(snapshot.Endorsed), im
		return
	}
	im := e.Latest()
	disk.Image = im
	if im == nil {
		disk.Status, disk.Reason = StatusUnknown, "no subscribed list endorses it"
		return
	}
	disk.Status, disk.Reason = string(im.StatusAt(j.Now)), im.ReasonAt(j.Now)
}

// conclude allows a domain when every judged disk is endorsed or exempt and at least one is
// endorsed: a domain whose disks are all exempt runs nothing an endorser vouched for.
func (j *Judge) conclude(disks []Disk) Decision {
	dec := Decision{Disks: disks}
	// The site's block is the reason a person must read first, whatever else is wrong.
	for i := range disks {
		if disks[i].Status == StatusBlocked {
			dec.Reason, dec.Blocked = describeRefusal(&disks[i]), disks[i].Block
			return dec
		}
	}
	endorsed := 0
	for i := range disks {
		switch disks[i].Status {
		case string(snapshot.Endorsed):
			endorsed++
		case StatusExempt:
		default:
			dec.Reason = describeRefusal(&disks[i])
			return dec
		}
	}
	if endorsed == 0 {
		dec.Reason = "the domain has no disk with an endorsed image: nothing an endorser vouches for would run"
		if len(disks) == 0 {
			dec.Reason = "the domain has no disk with an image: nothing an endorser vouches for would run"
		}
		return dec
	}
	dec.Endorsed = true
	return dec
}

// describeRefusal puts "not endorsed" first: Nova keeps only the first 255 characters of a
// fault message, and libvirt's own prefix takes 230 of them.
func describeRefusal(d *Disk) string {
	var what strings.Builder
	switch {
	case d.GlanceID != "":
		fmt.Fprintf(&what, "image %s", d.GlanceID)
		if d.SHA512 != "" {
			fmt.Fprintf(&what, " (sha512 %s…)", d.SHA512[:16])
		}
	case d.SHA512 != "":
		fmt.Fprintf(&what, "disk %s image %s (sha512 %s…)", d.Target, d.Source, d.SHA512[:16])
	default:
		fmt.Fprintf(&what, "disk %s (%s)", d.Target, d.Source)
	}
	switch d.Status {
	case StatusBlocked:
		return fmt.Sprintf("blocked by the site: %s: %s", what.String(), d.Block.Why())
	case StatusError:
		return fmt.Sprintf("%s %s", what.String(), d.Reason)
	case StatusUnknown:
		return fmt.Sprintf("not endorsed: %s: %s (run `vmgate images` to see what is endorsed)", what.String(), d.Reason)
	}
	return fmt.Sprintf("not endorsed: %s: %s", what.String(), d.Reason)
}
