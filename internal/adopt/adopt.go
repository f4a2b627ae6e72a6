// Package adopt records, on a host that ran VMs before vmgate was installed (or before it
// kept a memory of what it admitted), the current disk layers of its domains as their own
// state: `vmgate hook adopt`. Without it, the first start of such a VM after installing
// vmgate is refused, since its overlays already hold data vmgate never saw it write.
//
// Adoption is an operator's act of trust in what the host runs today: it judges each
// domain's base images as the hook does (they must be endorsed now), and takes the layers
// above them, whatever they hold, as the VM's own.
package adopt

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/domain"
)

// Domain is one domain as libvirt describes it: its current XML (the live one while it runs).
type Domain struct {
	Name, UUID string
	Running    bool
	XML        string
}

// Lister lists the domains of a host.
type Lister interface {
	// Domains returns the domains named (names or uuids), or every defined or running domain
	// when names is empty.
	Domains(ctx context.Context, names []string) ([]Domain, error)
}

// Result is what Adopt did with one domain.
type Result struct {
	Name, UUID string
	Adopted    bool   // its layers are remembered now (or would be, with DryRun)
	Reason     string // why it was not adopted
	Layers     []admission.Layer
}

// Options tune Adopt.
type Options struct {
	DryRun bool
	Now    time.Time
}

// Adopt judges each domain's base images with j and remembers the layers of those whose
// bases are endorsed now in mem. A domain whose decision rests on an exemption, or that is
// refused, is not adopted.
func Adopt(ctx context.Context, l Lister, names []string, j *admission.Judge, mem admission.Memory, opts Options) ([]Result, error) {
	doms, err := l.Domains(ctx, names)
	if err != nil {
		return nil, err
	}
	j.Op = admission.OpAdopt
	var out []Result
	for _, ld := range doms {
		r := Result{Name: ld.Name, UUID: ld.UUID}
		d, err := domain.Parse(strings.NewReader(ld.XML))
		if err != nil {
			r.Reason = err.Error()
			out = append(out, r)
			continue
		}
		dec := j.Decide(d)
		switch {
		case dec.Exemption != "":
			r.Reason = "admitted by an exemption (" + dec.Exemption + "), which vouches for nothing to remember"
		case !dec.Endorsed:
			r.Reason = dec.Reason
		default:
			r.Adopted, r.Layers = true, admission.Layers(d)
			if !opts.DryRun {
				if err := mem.Remember(d, admission.OpAdopt, opts.Now); err != nil {
					return out, fmt.Errorf("domain %s: %w", d.Name, err)
				}
			}
		}
		out = append(out, r)
	}
	return out, nil
}
