// Package audit is vmgate serve's continuous audit: at every serve.audit_interval it judges
// every running domain on the host with the hook's admission code (through terminate's
// plan, so that a VM is non-compliant exactly when terminate --revoked would list it), and
// reports what it finds: metrics, /healthz, and a vm.audit trace record each time a VM's
// standing changes. With serve.audit_action terminate it then does what terminate
// --revoked does, with its guards.
package audit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/terminate"
	"github.com/vmgate/vmgate/internal/trace"
)

// Reasons are the values of a finding's Status, and the labels of
// vmgate_running_unendorsed: why a running VM would be refused at a start now.
var Reasons = []string{admission.StatusBlocked, string(snapshot.Revoked), string(snapshot.Expired), admission.StatusUnknown, admission.StatusError, "unclassified"}

// Finding is one running VM that is not compliant.
type Finding struct {
	Name, UUID string
	Verdict    terminate.Verdict
	Status     string // one of Reasons
	Reason     string
}

// Result is one audit pass.
type Result struct {
	At       time.Time
	Err      error // the pass could not judge (libvirt unreachable, no fresh snapshot)
	Running  int
	Findings []Finding
	// Recorded is how many vm.audit records the pass wrote.
	Recorded int
	// Acted is what audit_action terminate did; nil when it did nothing.
	Acted *terminate.Report
	// ActErr is why audit_action terminate could not act (the plan was refused by
	// audit_max, libvirt refused a read-write connection).
	ActErr error
}

// ByReason counts the findings by status, with every reason present.
func (r *Result) ByReason() map[string]int {
	n := make(map[string]int, len(Reasons))
	for _, s := range Reasons {
		n[s] = 0
	}
	for _, f := range r.Findings {
		n[f.Status]++
	}
	return n
}

// Env is what a pass needs beyond the configuration.
type Env struct {
	// Connect opens the host scope; read-only for the judging, read-write to act
	// [terminate.ConnectHostReadOnly, terminate.ConnectHost].
	Connect func(uri string, write bool) (terminate.HostSource, error)
	// Record makes records durable [the trace journal under the configuration's state_dir].
	Record  terminate.Recorder
	Host    string // [os.Hostname]
	Version string
	Log     *slog.Logger
}

// Auditor remembers, between passes, the standing of every non-compliant VM it recorded,
// so that it writes a record only when that changes. It lives as long as the daemon, across
// reloads.
type Auditor struct {
	env Env

	mu   sync.Mutex
	seen map[string]string // uuid → status and reason last recorded
	last *Result
}

// New builds an auditor.
func New(env Env) *Auditor {
	if env.Connect == nil {
		env.Connect = func(uri string, write bool) (terminate.HostSource, error) {
			if write {
				return terminate.ConnectHost(uri)
			}
			return terminate.ConnectHostReadOnly(uri)
		}
	}
	if env.Log == nil {
		env.Log = slog.Default()
	}
	if env.Host == "" {
		env.Host, _ = os.Hostname()
	}
	return &Auditor{env: env, seen: map[string]string{}}
}

// Last is the last pass's result; nil before the first.
func (a *Auditor) Last() *Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// Pass judges every running domain once, records what changed, and acts when cfg says so.
func (a *Auditor) Pass(ctx context.Context, cfg *config.Config, now time.Time) *Result {
	res := a.pass(ctx, cfg, now)
	a.mu.Lock()
	a.last = res
	a.mu.Unlock()
	return res
}

func (a *Auditor) pass(ctx context.Context, cfg *config.Config, now time.Time) *Result {
	res := &Result{At: now}
	record := a.env.Record
	if record == nil {
		record = terminate.Journal(cfg.StateDir)
	}
	uri := cfg.Serve.AuditConnect
	src, err := a.env.Connect(uri, false)
	if err != nil {
		res.Err = err
		return res
	}
	defer src.Close()
	vms, err := src.List(ctx)
	if err != nil {
		res.Err = fmt.Errorf("%s: %w", src.Scope(), err)
		return res
	}
	res.Running = len(vms)
	j := admission.NewJudge(cfg, now)
	defer j.Close()
	if err := terminate.Judge(j, vms); err != nil {
		res.Err = err
		return res
	}
	opts := terminate.Options{Action: terminate.Shutdown, Grace: cfg.Serve.AuditGrace, Max: cfg.Serve.AuditMax,
		Timeout: cfg.Serve.AuditTimeout, Now: now}
	plan := terminate.MakePlan(vms, opts)
	var recs []trace.Record
	running := map[string]bool{}
	for i := range plan.Items {
		it := &plan.Items[i]
		running[it.VM.UUID] = true
		switch it.Verdict {
		case terminate.Target, terminate.Grace, terminate.Unclassified:
		default:
			if _, was := a.seen[it.VM.UUID]; was {
				recs = append(recs, a.record(it, trace.OutcomeSuccess, "compliant again: "+string(it.Verdict), now))
				delete(a.seen, it.VM.UUID)
			}
			continue
		}
		f := Finding{Name: it.VM.Name, UUID: it.VM.UUID, Verdict: it.Verdict, Status: it.Status, Reason: it.Reason}
		if !slices.Contains(Reasons, f.Status) {
			f.Status = "unclassified"
		}
		res.Findings = append(res.Findings, f)
		standing := f.Status + ": " + f.Reason
		if a.seen[f.UUID] != standing {
			recs = append(recs, a.record(it, trace.OutcomeFailure, standing, now))
			a.seen[f.UUID] = standing
		}
	}
	for uuid := range a.seen {
		if !running[uuid] {
			delete(a.seen, uuid) // stopped: the hook recorded that
		}
	}
	if len(recs) > 0 {
		if err := record(recs...); err != nil {
			// Not recorded: try again at the next pass.
			for _, r := range recs {
				delete(a.seen, r.Domain.UUID)
			}
			res.Err = fmt.Errorf("vm.audit records: %w", err)
			return res
		}
		res.Recorded = len(recs)
	}
	if cfg.Serve.AuditAction == config.AuditTerminate && plan.Count(terminate.Target) > 0 {
		res.Acted, res.ActErr = a.act(ctx, uri, plan, record)
	}
	return res
}

// act is terminate --revoked on the plan the pass made, with its guards: audit_grace is
// already in the plan, audit_max refuses it whole.
func (a *Auditor) act(ctx context.Context, uri string, plan *terminate.Plan, record terminate.Recorder) (*terminate.Report, error) {
	if plan.Refused != nil {
		return nil, plan.Refused
	}
	rw, err := a.env.Connect(uri, true)
	if err != nil {
		return nil, err
	}
	defer rw.Close()
	actor := terminate.CurrentActor()
	env := terminate.Env{Host: a.env.Host, Version: a.env.Version, Actor: actor, Record: record, Parallel: 8, Now: time.Now}
	results, err := terminate.Execute(ctx, rw, plan, env)
	rep := &terminate.Report{Scope: rw.Scope(), Plan: plan, Results: results}
	if err == nil {
		if failed := rep.Failed(); len(failed) > 0 {
			err = fmt.Errorf("%d of %d actions failed, the first: %w", len(failed), len(results), failed[0].Err)
		}
	}
	return rep, err
}

func (a *Auditor) record(it *terminate.Item, outcome, reason string, now time.Time) trace.Record {
	vm := it.VM
	rec := trace.Record{Domain: trace.Domain{Name: vm.Name, UUID: vm.UUID}}
	if vm.Domain != nil {
		rec = admission.Describe(vm.Domain)
	}
	if ims := vm.Decision.TraceImages(); len(ims) > 0 {
		rec.Images = ims
	}
	rec.Block = admission.TraceBlock(vm.Decision.Blocked)
	rec.Time, rec.Host, rec.Version = now.UTC(), a.env.Host, a.env.Version
	rec.Event, rec.Outcome, rec.Reason = trace.VMAudit, outcome, reason
	return rec
}
