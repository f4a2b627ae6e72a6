// Package hook speaks libvirt's qemu hook protocol: libvirtd runs the hook with the
// arguments NAME OP SUBOP EXTRA and the domain XML on stdin, and refuses the operation when
// the hook exits non-zero, showing its stderr to the caller (virsh, nova-compute).
//
// It gates prepare begin (every start), migrate begin (an incoming migration) and restore
// begin, and records every other operation. It never prints on stdout: for migrate and
// restore libvirt would take that as replacement XML. It never calls the libvirt API, which
// would deadlock libvirtd.
package hook

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/trace"
)

// Exit codes libvirt sees.
const (
	ExitAllow  = 0
	ExitRefuse = 1
)

// Env is everything one hook run reads from its process.
type Env struct {
	Args     []string // without the program name: NAME OP SUBOP EXTRA
	Stdin    io.Reader
	Stderr   io.Writer
	Getenv   func(string) string
	Now      func() time.Time
	Hostname string
	Version  string
}

// Run handles one hook invocation and returns the exit code.
func Run(e Env) int {
	if len(e.Args) < 3 {
		fmt.Fprintln(e.Stderr, "vmgate-hook: libvirtd runs this program with the arguments NAME OP SUBOP EXTRA and the domain XML on stdin")
		return ExitRefuse
	}
	name, op := e.Args[0], e.Args[1]+" "+e.Args[2]
	gated := gatedOps[op]
	event := lifecycleEvents[e.Args[1]]
	if event == "" {
		event = trace.VMOther
	}
	h := &run{env: e, name: name, op: op}

	xml, readErr := readCapped(e.Stdin, domain.MaxSize)
	// VMGATE_CONFIG (set by the wrapper hook install writes) names the file; no variable
	// overrides a value, so the hook judges with what the file says.
	cfg, err := config.Load(config.FilePath("", e.Getenv))
	if err != nil {
		// Without a configuration there is no state directory to record in.
		return h.finish(gated, false, fmt.Sprintf("cannot read vmgate's configuration: %v; fix it, then start again", err), nil)
	}
	h.cfg = cfg
	if readErr != nil {
		return h.finish(gated, false, fmt.Sprintf("cannot read the domain XML: %v", readErr), &trace.Record{Event: refuseOr(gated, event), Op: op, Domain: trace.Domain{Name: name}})
	}
	d, err := domain.Parse(bytes.NewReader(xml))
	if err != nil {
		return h.finish(gated, false, fmt.Sprintf("cannot read the domain XML: %v", err), &trace.Record{Event: refuseOr(gated, event), Op: op, Domain: trace.Domain{Name: name}})
	}
	rec := admission.Describe(d)
	rec.Op = op
	if !gated {
		rec.Event, rec.Outcome = event, trace.OutcomeSuccess
		return h.finish(false, true, "", &rec)
	}
	j := admission.NewJudge(cfg, e.Now())
	j.Op = op
	dec := j.Decide(d)
	fillDecision(&rec, dec)
	code := h.finish(true, dec.Allow, dec.Reason, &rec)
	h.remember(d, dec, code)
	return code
}

// remember keeps what vmgate admitted on this host (admission.Memory), once the start is
// allowed and recorded: the domain's layers are its own state from now on. A domain that
// runs something vmgate did not find endorsed (warn mode, an exempt domain) is forgotten,
// so that neither its overlays nor a memory image of it pass for admitted later. A refused
// start changes nothing: the domain did not run.
func (h *run) remember(d *domain.Domain, dec admission.Decision, code int) {
	if code != ExitAllow {
		return
	}
	m := admission.NewMemory(admission.MemoryDir(h.cfg.StateDir))
	var err error
	switch {
	case dec.Endorsed && dec.Exemption == "":
		// The prepare begin of a restore vmgate did not admit runs that memory image: it
		// must not make the domain admitted, whatever its disks.
		if a, lerr := m.Load(d.UUID); h.op == admission.OpPrepare && a != nil && a.Restoring || lerr != nil {
			err = m.Forget(d.UUID)
			break
		}
		err = m.Remember(d, h.op, h.env.Now())
	case h.op == admission.OpRestore && d.UUID != "":
		err = m.Store(admission.Admitted{UUID: d.UUID, Name: d.Name, Time: h.env.Now().UTC(), Op: h.op, Restoring: true})
	default:
		err = m.Forget(d.UUID)
	}
	if err != nil {
		// The start goes on: a missing memory can only make a later start stricter.
		fmt.Fprintf(h.env.Stderr, "vmgate: warning: %s %s: %v\n", h.name, h.op, err)
	}
}

// gatedOps are the operations that start a domain on this host.
var gatedOps = map[string]bool{"prepare begin": true, "migrate begin": true, "restore begin": true}

// lifecycleEvents name the trace event of each operation that is only recorded.
var lifecycleEvents = map[string]string{
	"started":   trace.VMStarted,
	"stopped":   trace.VMStopped,
	"release":   trace.VMReleased,
	"reconnect": trace.VMReconnected,
}

func refuseOr(gated bool, event string) string {
	if gated {
		return trace.AdmissionRefuse
	}
	return event
}

type run struct {
	env  Env
	cfg  *config.Config
	name string
	op   string
}

// finish records rec (when there is a state directory to record in) and turns the outcome
// into the exit code. A gated operation is allowed only when its record is durable: no
// record, no start. An operation that is not gated is never refused: a failed record must
// not stop a VM from stopping or libvirtd from reconnecting to it.
func (h *run) finish(gated, allow bool, reason string, rec *trace.Record) int {
	if rec != nil && h.cfg != nil {
		rec.Time = h.env.Now().UTC()
		rec.Host = h.env.Hostname
		rec.Version = h.env.Version
		if rec.Domain.Name == "" {
			rec.Domain.Name = h.name
		}
		if rec.Outcome == "" {
			rec.Outcome = trace.OutcomeFailure
		}
		if rec.Reason == "" {
			rec.Reason = reason
		}
		if err := trace.Append(h.cfg.StateDir, *rec); err != nil {
			if !gated {
				fmt.Fprintf(h.env.Stderr, "vmgate: warning: %s %s: cannot write the trace record: %v\n", h.name, h.op, err)
				return ExitAllow
			}
			if allow {
				reason = fmt.Sprintf("cannot write the trace record (%v): no record, no start; free space or fix permissions in %s", err, h.cfg.StateDir)
			} else {
				reason += fmt.Sprintf(" (and the refusal could not be recorded: %v)", err)
			}
			allow = false
		}
	}
	if !gated {
		if reason != "" {
			fmt.Fprintf(h.env.Stderr, "vmgate: warning: %s %s: %s\n", h.name, h.op, reason)
		}
		return ExitAllow
	}
	if allow {
		return ExitAllow
	}
	// No domain name: libvirt's message names the domain already, and Nova keeps only the
	// first 25 characters of this line in the server's fault message.
	fmt.Fprintf(h.env.Stderr, "vmgate: %s\n", oneLine(reason))
	return ExitRefuse
}

// fillDecision adds the decision to the record.
func fillDecision(rec *trace.Record, dec admission.Decision) {
	switch {
	case dec.Endorsed:
		rec.Event, rec.Outcome = trace.AdmissionAllow, trace.OutcomeSuccess
	case dec.Allow:
		rec.Event, rec.Outcome = trace.AdmissionWarn, trace.OutcomeSuccess
	default:
		rec.Event, rec.Outcome = trace.AdmissionRefuse, trace.OutcomeFailure
	}
	rec.Reason, rec.Exemption, rec.Mode = dec.Reason, dec.Exemption, dec.Mode
	rec.Block = admission.TraceBlock(dec.Blocked)
	if ims := dec.TraceImages(); len(ims) > 0 {
		rec.Images = ims
	}
}

// readCapped reads all of r, refusing more than limit bytes. It drains what is left either
// way, so libvirtd never writes into a closed pipe.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		io.Copy(io.Discard, r)
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return data, nil
}

// oneLine keeps the message on one line: libvirt and Nova show the first line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
