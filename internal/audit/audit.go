// Package audit is vmgate serve's continuous audit: at every serve.audit_interval it judges
// every running domain on the host with the hook's admission code (through terminate's
// plan, so that a VM is non-compliant exactly when terminate --revoked would list it), and
// reports what it finds: metrics, /healthz, and a vm.audit trace record each time a VM's
// standing changes. With serve.audit_action terminate it then does what terminate
// --revoked does, with its guards.
package audit

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
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
	// Judged are the uuids of the domains judged again after their events (Domains), in
	// order; nil for a pass over every running domain.
	Judged []string
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
	// Subscribe follows the domain events of a libvirt URI [Subscribe: libvirt's, over a
	// read-only connection].
	Subscribe SubscribeFunc
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

	run sync.Mutex // one pass or re-judgement at a time: they share seen and up

	mu   sync.Mutex          // guards last
	seen map[string]string   // uuid → status and reason last recorded
	up   map[string]struct{} // uuids of the running domains, as last seen
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
	if env.Subscribe == nil {
		env.Subscribe = Subscribe
	}
	if env.Log == nil {
		env.Log = slog.Default()
	}
	if env.Host == "" {
		env.Host, _ = os.Hostname()
	}
	return &Auditor{env: env, seen: map[string]string{}, up: map[string]struct{}{}}
}

// Subscribe follows the domain events of uri with the auditor's Env.Subscribe.
func (a *Auditor) Subscribe(uri string, event func(uuid, kind string)) (Watch, error) {
	return a.env.Subscribe(uri, event)
}

// Last is the last pass's result; nil before the first.
func (a *Auditor) Last() *Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

func (a *Auditor) setLast(res *Result) {
	a.mu.Lock()
	a.last = res
	a.mu.Unlock()
}

// Pass judges every running domain once, records what changed, and acts when cfg says so.
func (a *Auditor) Pass(ctx context.Context, cfg *config.Config, now time.Time) *Result {
	a.run.Lock()
	defer a.run.Unlock()
	res := a.pass(ctx, cfg, now)
	a.setLast(res)
	return res
}

func (a *Auditor) recorder(cfg *config.Config) terminate.Recorder {
	if a.env.Record != nil {
		return a.env.Record
	}
	return terminate.Journal(cfg.StateDir)
}

func auditOptions(cfg *config.Config, now time.Time) terminate.Options {
	return terminate.Options{Action: terminate.Shutdown, Grace: cfg.Serve.AuditGrace, Max: cfg.Serve.AuditMax,
		Timeout: cfg.Serve.AuditTimeout, Now: now}
}

func (a *Auditor) pass(ctx context.Context, cfg *config.Config, now time.Time) *Result {
	res := &Result{At: now}
	record := a.recorder(cfg)
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
	plan := terminate.MakePlan(vms, auditOptions(cfg, now))
	var recs []trace.Record
	up := make(map[string]struct{}, len(plan.Items))
	for i := range plan.Items {
		it := &plan.Items[i]
		up[it.VM.UUID] = struct{}{}
		f, rec := a.judged(it, now)
		if f != nil {
			res.Findings = append(res.Findings, *f)
		}
		if rec != nil {
			recs = append(recs, *rec)
		}
	}
	for uuid := range a.seen {
		if _, ok := up[uuid]; !ok {
			delete(a.seen, uuid) // stopped: the hook recorded that
		}
	}
	a.up = up
	if !a.write(record, recs, res) {
		return res
	}
	if cfg.Serve.AuditAction == config.AuditTerminate && plan.Count(terminate.Target) > 0 {
		res.Acted, res.ActErr = a.act(ctx, uri, plan, record)
	}
	return res
}

// judged is what one judged VM means for the report: its finding (nil when compliant) and
// the vm.audit record to write (nil when its standing did not change since the last one).
func (a *Auditor) judged(it *terminate.Item, now time.Time) (*Finding, *trace.Record) {
	switch it.Verdict {
	case terminate.Target, terminate.Grace, terminate.Unclassified:
	default:
		if _, was := a.seen[it.VM.UUID]; was {
			rec := a.record(it, trace.OutcomeSuccess, "compliant again: "+string(it.Verdict), now)
			delete(a.seen, it.VM.UUID)
			return nil, &rec
		}
		return nil, nil
	}
	f := Finding{Name: it.VM.Name, UUID: it.VM.UUID, Verdict: it.Verdict, Status: it.Status, Reason: it.Reason}
	if !slices.Contains(Reasons, f.Status) {
		f.Status = "unclassified"
	}
	standing := f.Status + ": " + f.Reason
	if a.seen[f.UUID] == standing {
		return &f, nil
	}
	rec := a.record(it, trace.OutcomeFailure, standing, now)
	a.seen[f.UUID] = standing
	return &f, &rec
}

// write makes the records durable; when it cannot, it forgets their standings, so that the
// next pass tries again, sets res.Err and returns false.
func (a *Auditor) write(record terminate.Recorder, recs []trace.Record, res *Result) bool {
	if len(recs) == 0 {
		return true
	}
	if err := record(recs...); err != nil {
		for _, r := range recs {
			delete(a.seen, r.Domain.UUID)
		}
		res.Err = fmt.Errorf("vm.audit records: %w", err)
		return false
	}
	res.Recorded = len(recs)
	return true
}

// Reader reads one domain by uuid: the audit's way to judge a domain again after one of
// its events, without listing the host.
type Reader interface {
	// Domain returns the domain with its live XML parsed (or Problem set); running is false
	// when it is not running (shut off, or gone).
	Domain(ctx context.Context, uuid string) (vm terminate.VM, running bool, err error)
}

// Domains judges the domains named by uuids again, from their live XML read through r, as a
// pass judges every domain, and merges what it finds into the last result, which it then
// replaces: the findings of the other domains are kept. It records and acts as a pass does;
// audit_max counts the targets of the whole host. Before a pass has succeeded, or when r
// cannot read a domain, it makes a whole pass instead (see Result.Judged).
func (a *Auditor) Domains(ctx context.Context, cfg *config.Config, now time.Time, r Reader, uuids []string) *Result {
	a.run.Lock()
	defer a.run.Unlock()
	var res *Result
	var err error
	if prev := a.Last(); prev == nil || prev.Err != nil {
		res = a.pass(ctx, cfg, now) // nothing to add to
	} else if res, err = a.domains(ctx, cfg, now, r, uuids, prev); err != nil {
		a.env.Log.Warn("audit: could not judge the domains of the events alone; auditing every running domain instead", "err", err)
		res = a.pass(ctx, cfg, now)
	}
	a.setLast(res)
	return res
}

func (a *Auditor) domains(ctx context.Context, cfg *config.Config, now time.Time, r Reader, uuids []string, prev *Result) (*Result, error) {
	judged := make(map[string]bool, len(uuids))
	var vms []terminate.VM
	for _, uuid := range uuids {
		if judged[uuid] {
			continue
		}
		judged[uuid] = true
		vm, running, err := r.Domain(ctx, uuid)
		if err != nil {
			return nil, fmt.Errorf("domain %s: %w", uuid, err)
		}
		if !running {
			delete(a.seen, uuid) // stopped: the hook recorded that
			delete(a.up, uuid)
			continue
		}
		vm.UUID = uuid
		a.up[uuid] = struct{}{}
		vms = append(vms, vm)
	}
	j := admission.NewJudge(cfg, now)
	defer j.Close()
	if err := terminate.Judge(j, vms); err != nil {
		return nil, err
	}
	res := &Result{At: now, Running: len(a.up), Judged: slices.Sorted(maps.Keys(judged))}
	for _, f := range prev.Findings {
		if !judged[f.UUID] {
			res.Findings = append(res.Findings, f)
		}
	}
	plan := terminate.MakePlan(vms, auditOptions(cfg, now))
	var recs []trace.Record
	for i := range plan.Items {
		f, rec := a.judged(&plan.Items[i], now)
		if f != nil {
			res.Findings = append(res.Findings, *f)
		}
		if rec != nil {
			recs = append(recs, *rec)
		}
	}
	slices.SortFunc(res.Findings, func(x, y Finding) int { return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.UUID, y.UUID)) })
	record := a.recorder(cfg)
	if !a.write(record, recs, res) {
		return res, nil
	}
	if cfg.Serve.AuditAction == config.AuditTerminate && plan.Count(terminate.Target) > 0 {
		// audit_max guards the host, not one event: count the targets already known too.
		n := 0
		for _, f := range res.Findings {
			if f.Verdict == terminate.Target {
				n++
			}
		}
		if n > cfg.Serve.AuditMax && plan.Refused == nil {
			plan.Refused = fmt.Errorf("%w: %d VMs run images that are no longer endorsed or are blocked, more than serve.audit_max %d: check them with vmgate terminate --revoked --dry-run", terminate.ErrTooMany, n, cfg.Serve.AuditMax)
		}
		res.Acted, res.ActErr = a.act(ctx, cfg.Serve.AuditConnect, plan, record)
	}
	return res, nil
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
