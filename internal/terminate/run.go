package terminate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/trace"
)

// Source is where running VMs come from and where actions go: libvirt on this host, or
// Nova.
type Source interface {
	// Scope names the source in output: "host qemu:///system", "cloud NAME".
	Scope() string
	// Actions are the actions the source can take.
	Actions() []Action
	// List returns the running VMs, with their Domain (or Problem) filled, not judged.
	List(ctx context.Context) ([]VM, error)
	// Act takes the action on the VM and waits until it has taken effect or opts.Timeout
	// has passed. note says what happened beyond "done" (a shutdown that ended in a
	// destroy, say).
	Act(ctx context.Context, vm *VM, action Action, opts Options) (note string, err error)
}

// Result is what became of one target.
type Result struct {
	Item *Item
	// Note says what happened beyond the action itself.
	Note string
	// Err is why the action failed, or why its record could not be written.
	Err error
}

// Recorder makes trace records durable: trace.Append on a state directory.
type Recorder func(recs ...trace.Record) error

// Journal returns the Recorder that appends to the trace journal under stateDir.
func Journal(stateDir string) Recorder {
	return func(recs ...trace.Record) error { return trace.Append(stateDir, recs...) }
}

// Env is who acts, from where, with which vmgate: what every record carries.
type Env struct {
	Host    string
	Version string
	Actor   trace.Actor
	Record  Recorder
	// Parallel is how many targets are acted on at once (a shutdown may wait minutes).
	Parallel int
	Now      func() time.Time
}

// CurrentActor is the Unix account running this process.
func CurrentActor() trace.Actor {
	a := trace.Actor{UID: os.Getuid()}
	if u, err := user.LookupId(strconv.Itoa(a.UID)); err == nil {
		a.Name = u.Username
	}
	return a
}

// ErrRefused is returned by Execute when the plan was refused (see Plan.Refused).
var ErrRefused = errors.New("plan refused")

// Execute acts on every target of the plan, records each action, and returns one result per
// target in plan order. A refused plan is not acted on at all.
func Execute(ctx context.Context, src Source, p *Plan, env Env) ([]Result, error) {
	if p.Refused != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, p.Refused)
	}
	if err := checkAction(p.Options.Action, src.Actions()); err != nil {
		return nil, err
	}
	targets := p.Targets()
	results := make([]Result, len(targets))
	parallel := max(env.Parallel, 1)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var recMu sync.Mutex // one journal append at a time from this process
	for i, it := range targets {
		results[i].Item = it
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r := &results[i]
			if err := ctx.Err(); err != nil {
				r.Err = fmt.Errorf("not acted on: %w", err)
				return
			}
			r.Note, r.Err = src.Act(ctx, it.VM, p.Options.Action, p.Options)
			rec := record(it)
			rec.Time, rec.Host, rec.Version = env.Now().UTC(), env.Host, env.Version
			rec.Action = string(p.Options.Action)
			actor := env.Actor
			rec.Actor = &actor
			rec.Outcome = trace.OutcomeSuccess
			if r.Err != nil {
				rec.Outcome = trace.OutcomeFailure
				rec.Reason = fmt.Sprintf("%s failed: %v; %s", p.Options.Action, r.Err, rec.Reason)
			} else if r.Note != "" {
				rec.Reason = fmt.Sprintf("%s; %s", r.Note, rec.Reason)
			}
			recMu.Lock()
			err := env.Record(rec)
			recMu.Unlock()
			if err != nil {
				werr := fmt.Errorf("the action's trace record could not be written: %w", err)
				if r.Err == nil {
					r.Err = werr
				} else {
					r.Err = errors.Join(r.Err, werr)
				}
			}
		}()
	}
	wg.Wait()
	return results, nil
}

// Run is `vmgate terminate --revoked`: list the source's running VMs, judge each with j,
// plan, and unless dryRun act on the targets. It returns the report, and an error when it
// could not judge (no fresh snapshot, the source failed) or the plan was refused
// (ErrRefused, with the report). Failed actions are in the report, not in the error.
func Run(ctx context.Context, src Source, j *admission.Judge, opts Options, dryRun bool, env Env) (*Report, error) {
	if err := checkAction(opts.Action, src.Actions()); err != nil {
		return nil, err
	}
	// Refuse before touching the source: a stale snapshot makes every VM look revoked.
	if err := CheckSnapshot(j); err != nil {
		return nil, err
	}
	vms, err := src.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Scope(), err)
	}
	if err := Judge(j, vms); err != nil {
		return nil, err
	}
	r := &Report{Scope: src.Scope(), Plan: MakePlan(vms, opts), DryRun: dryRun}
	if dryRun {
		return r, nil
	}
	r.Results, err = Execute(ctx, src, r.Plan, env)
	return r, err
}
