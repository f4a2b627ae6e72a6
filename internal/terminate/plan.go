// Package terminate takes down running VMs whose image is no longer endorsed: `vmgate
// terminate --revoked`, on this host through libvirt or across an OpenStack cloud through
// Nova.
//
// Each VM is judged by admission.Judge.Decide, the code the hook runs at every start, so a VM
// is a target exactly when the hook would refuse to start it again because of its image.
// Planning (which VMs, why, since when) is pure logic over the decisions; acting goes through
// a Source (libvirt or Nova), and every action is recorded in the trace journal.
package terminate

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/trace"
)

// Action is what is done to a target.
type Action string

const (
	// Shutdown asks the guest to shut down and, on libvirt, destroys it after Options.Timeout.
	// On Nova it is os-stop, which does the same with Nova's own shutdown_timeout.
	Shutdown Action = "shutdown"
	// Destroy pulls the plug. Nova has no power-off without a graceful attempt short of
	// deleting the server (which destroys the evidence), so on Nova it is os-stop too.
	Destroy Action = "destroy"
	// Suspend saves the guest's memory to disk and stops it (libvirt managed save, Nova
	// suspend): incident procedures ask to keep the evidence.
	Suspend Action = "suspend"
	// Stop is Nova's os-stop.
	Stop Action = "stop"
	// Lock is Nova's os-lock: the server keeps running, but its owner can no longer act on it.
	Lock Action = "lock"
)

// Verdict is what the plan does with one VM.
type Verdict string

const (
	Target       Verdict = "target"       // runs a revoked, expired, unknown or blocked image, or its user or project is blocked: acted on
	Grace        Verdict = "grace"        // revoked more recently than --grace: left alone
	Unclassified Verdict = "unclassified" // vmgate cannot tell what it runs: reported, never acted on
	Endorsed     Verdict = "endorsed"
	Exempt       Verdict = "exempt"
	// NotBlocked is a VM that would be a target but is not blocked by the site: left alone
	// under --blocked-only.
	NotBlocked Verdict = "not-blocked"
)

// VM is one running VM: a libvirt domain on this host or a Nova server.
type VM struct {
	// Name is the libvirt domain name, or the Nova server's display name.
	Name string
	// UUID is the domain's uuid, or the Nova server id (which is its domain's uuid).
	UUID string
	// Domain is what the hook would judge: the live domain XML, parsed, or for a Nova server
	// the metadata Nova writes into its domain. nil when it could not be read; Problem says
	// why.
	Domain  *domain.Domain
	Problem string
	// Decision is the admission decision on Domain (see Judge).
	Decision admission.Decision
}

// Options shape a plan and its execution.
type Options struct {
	Action Action
	// Grace leaves alone images revoked (or expired) less than this long ago.
	Grace time.Duration
	// Max is the most targets acted on without Force: a guard against a mistaken mass
	// shutdown (a wrong snapshot, a list published by mistake).
	Max   int
	Force bool
	// BlockedOnly narrows the targets to VMs the site blocked (vmgate block): their image,
	// user or project.
	BlockedOnly bool
	// Timeout is how long a shutdown may take before libvirt destroys the domain, and how
	// long vmgate waits for Nova to report the new state.
	Timeout time.Duration
	Now     time.Time
}

// Item is the plan for one VM.
type Item struct {
	VM      *VM
	Verdict Verdict
	// Status is the status of the disk that decided the verdict: revoked, expired,
	// unknown, error, endorsed, exempt.
	Status string
	// Image names that disk's image: the endorsement's identifier and title, else its file
	// or Glance id.
	Image string
	// RevokedAt is when the image stopped being endorsed (revoked, or its expiry); zero for
	// an image no list ever named.
	RevokedAt time.Time
	// Reason is why the VM is a target (or not one), in the words of the decision.
	Reason string
	// Note adds what a person should know about the verdict.
	Note string
}

// Plan is what terminate will do, VM by VM, in the order the source listed them.
type Plan struct {
	Options Options
	Items   []Item
	// Refused is set when the plan has more targets than Options.Max and Options.Force is
	// not set: nothing may be acted on.
	Refused error
}

// ErrTooMany is wrapped by Plan.Refused.
var ErrTooMany = errors.New("more targets than --max")

// Targets returns the items to act on.
func (p *Plan) Targets() []*Item { return p.with(Target) }

// Count returns how many items have verdict v.
func (p *Plan) Count(v Verdict) int { return len(p.with(v)) }

func (p *Plan) with(v Verdict) []*Item {
	var items []*Item
	for i := range p.Items {
		if p.Items[i].Verdict == v {
			items = append(items, &p.Items[i])
		}
	}
	return items
}

// MakePlan decides, from the judged VMs, which ones to act on. It does nothing else.
func MakePlan(vms []VM, opts Options) *Plan {
	p := &Plan{Options: opts, Items: make([]Item, 0, len(vms))}
	for i := range vms {
		it := classify(&vms[i], opts)
		if opts.BlockedOnly && vms[i].Decision.Blocked == nil && (it.Verdict == Target || it.Verdict == Grace) {
			it.Verdict = NotBlocked
			it.Note = joinNote(it.Note, "not blocked by the site: left alone under --blocked-only")
		}
		p.Items = append(p.Items, it)
	}
	if n := p.Count(Target); n > opts.Max && !opts.Force {
		p.Refused = fmt.Errorf("%w: %d VMs run images that are no longer endorsed or are blocked, more than --max %d: check the plan, then run again with --force or a higher --max", ErrTooMany, n, opts.Max)
	}
	return p
}

// classify turns one decision into a verdict. A VM runs something no endorser vouches for
// when one of its disks is revoked, expired or unknown: that is certain, whatever its other
// disks are, so it is a target. A VM refused for anything else (a disk vmgate could not
// identify, raw QEMU arguments, a direct kernel boot, a boot from volume) is unclassified:
// vmgate does not know what it runs, and a person must look.
func classify(vm *VM, opts Options) Item {
	it := Item{VM: vm}
	dec := &vm.Decision
	switch {
	case vm.Domain == nil:
		it.Verdict, it.Status, it.Reason = Unclassified, admission.StatusError, vm.Problem
		return it
	case dec.Exemption != "":
		it.Verdict, it.Status, it.Reason = Exempt, admission.StatusExempt, dec.Exemption
		return it
	case dec.Endorsed:
		it.Verdict, it.Status = Endorsed, string(snapshot.Endorsed)
		return it
	case dec.Blocked != nil:
		return classifyBlocked(vm, opts)
	}

	// The disk that decides: the one revoked longest ago that is past the grace period,
	// else an unknown one, else one within the grace period.
	var target, unknown, graced, unidentified *admission.Disk
	var targetAt, gracedAt time.Time
	for i := range dec.Disks {
		d := &dec.Disks[i]
		switch d.Status {
		case string(snapshot.Revoked), string(snapshot.Expired):
			at := revokedAt(d, opts.Now)
			if at.IsZero() {
				// A revoked image with no time (not written by vmgate sync): as unknown.
				if unknown == nil {
					unknown = d
				}
				continue
			}
			if opts.Now.Sub(at) >= opts.Grace {
				if target == nil || at.Before(targetAt) {
					target, targetAt = d, at
				}
			} else if graced == nil || at.Before(gracedAt) {
				graced, gracedAt = d, at
			}
		case admission.StatusUnknown:
			if unknown == nil {
				unknown = d
			}
		case admission.StatusError:
			if unidentified == nil {
				unidentified = d
			}
		}
	}
	switch {
	case target != nil:
		it.Verdict, it.RevokedAt = Target, targetAt
		it.fromDisk(target)
	case unknown != nil:
		it.Verdict = Target
		it.fromDisk(unknown)
		it.Note = "no list ever endorsed this image, so there is no revocation time; --grace does not apply"
		if unknown.Status != admission.StatusUnknown {
			it.Note = fmt.Sprintf("the snapshot says %s but gives no time; --grace does not apply", unknown.Status)
		}
	case graced != nil:
		it.Verdict, it.RevokedAt = Grace, gracedAt
		it.fromDisk(graced)
		it.Note = fmt.Sprintf("revoked %s ago, within --grace %s", opts.Now.Sub(gracedAt).Round(time.Second), opts.Grace)
		return it
	case unidentified != nil:
		it.Verdict = Unclassified
		it.fromDisk(unidentified)
		it.Note = "vmgate cannot identify this disk's image: not acted on, look at it"
		return it
	default:
		// Refused before any disk was judged: raw QEMU arguments, a direct kernel boot,
		// shared host directories, a boot from volume, no disk at all.
		it.Verdict, it.Status, it.Reason = Unclassified, "unclassified", dec.Reason
		it.Note = "vmgate cannot tell which image this VM runs: not acted on, look at it"
		return it
	}
	if unidentified != nil {
		it.Note = joinNote(it.Note, fmt.Sprintf("disk %s (%s) could not be identified either: %s", unidentified.Target, unidentified.Source, unidentified.Reason))
	}
	return it
}

// classifyBlocked: the site blocked the VM's image, user or project. --grace counts from
// the block, as it counts from a revocation.
func classifyBlocked(vm *VM, opts Options) Item {
	dec := &vm.Decision
	it := Item{VM: vm, Verdict: Target, Status: admission.StatusBlocked, Reason: dec.Reason, RevokedAt: dec.Blocked.At}
	for i := range dec.Disks {
		if d := &dec.Disks[i]; d.Status == admission.StatusBlocked {
			it.fromDisk(d)
			it.Reason = dec.Reason
		}
	}
	if it.Image == "" {
		it.Image = dec.Blocked.Kind + " " + dec.Blocked.Target
	}
	if at := dec.Blocked.At; !at.IsZero() && opts.Now.Sub(at) < opts.Grace {
		it.Verdict = Grace
		it.Note = fmt.Sprintf("blocked %s ago, within --grace %s", opts.Now.Sub(at).Round(time.Second), opts.Grace)
	}
	return it
}

func (it *Item) fromDisk(d *admission.Disk) {
	it.Status, it.Reason = d.Status, d.Reason
	it.Image = label(d)
	if im := d.Image; im != nil && im.Identifier != "" {
		it.Image = im.Identifier
		if im.Title != "" {
			it.Image += " (" + im.Title + ")"
		}
	}
	if d.Target != "" {
		it.Reason = fmt.Sprintf("disk %s (%s): %s", d.Target, d.Source, d.Reason)
	}
}

func label(d *admission.Disk) string {
	switch {
	case d.GlanceID != "":
		return d.GlanceID
	case d.Source != "":
		return d.Source
	}
	return d.Target
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// revokedAt is when the disk's image stopped being endorsed: its revocation, or its expiry
// for an expired one. Zero when the snapshot gives no time.
func revokedAt(d *admission.Disk, now time.Time) time.Time {
	im := d.Image
	if im == nil {
		return time.Time{}
	}
	if !im.RevokedAt.IsZero() {
		return im.RevokedAt
	}
	if im.StatusAt(now) == snapshot.Expired {
		return im.Expires
	}
	return time.Time{}
}

// Judge decides on every VM that has a domain, with the hook's code. It refuses to judge
// with no snapshot or a stale one: every VM would be "refused" and look like a target.
func Judge(j *admission.Judge, vms []VM) error {
	if err := CheckSnapshot(j); err != nil {
		return err
	}
	for i := range vms {
		if vms[i].Domain != nil {
			vms[i].Decision = j.Decide(vms[i].Domain)
		}
	}
	return nil
}

// ErrNoSnapshot is wrapped by CheckSnapshot's errors.
var ErrNoSnapshot = errors.New("no usable snapshot")

// CheckSnapshot returns an error unless the judge has a snapshot that is fresh at its Now.
func CheckSnapshot(j *admission.Judge) error {
	if j.Snapshot == nil {
		return fmt.Errorf("%w: %v: run `vmgate sync` first", ErrNoSnapshot, j.SnapshotErr)
	}
	if err := j.Snapshot.Fresh(j.Now); err != nil {
		return fmt.Errorf("%w: %w: run `vmgate sync` and check that it succeeds; vmgate terminates nothing on an out-of-date list", ErrNoSnapshot, err)
	}
	return nil
}

// checkAction refuses an action the source cannot take.
func checkAction(a Action, valid []Action) error {
	if slices.Contains(valid, a) {
		return nil
	}
	return fmt.Errorf("--action %q: want one of %v", a, valid)
}

// record is the trace record of one action on a target, as the hook would describe the VM.
func record(it *Item) trace.Record {
	vm := it.VM
	rec := trace.Record{Domain: trace.Domain{Name: vm.Name, UUID: vm.UUID}}
	if vm.Domain != nil {
		rec = admission.Describe(vm.Domain)
	}
	if ims := vm.Decision.TraceImages(); len(ims) > 0 {
		rec.Images = ims
	}
	rec.Event = trace.VMTerminated
	rec.Reason = vm.Decision.Reason
	if rec.Reason == "" {
		rec.Reason = it.Reason
	}
	if !it.RevokedAt.IsZero() {
		at := it.RevokedAt.UTC()
		rec.RevokedAt = &at
	}
	return rec
}
