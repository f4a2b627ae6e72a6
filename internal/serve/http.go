package serve

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/audit"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/metrics"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/terminate"
)

func (d *Daemon) handler(g *generation) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		now := d.opts.Now()
		snap, err := metrics.ReadSnapshot(g.cfg.StateDir, now)
		var sinks []ship.Status
		if g.shipper != nil {
			sinks = g.shipper.Status()
		}
		problems := Health(snap, err, sinks, now)
		if g.cfg.Serve.AuditAction != config.AuditOff {
			problems = append(problems, AuditHealth(d.audit.Last(), g.cfg.Serve.AuditInterval, now)...)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(problems, "\n"))
			return
		}
		fmt.Fprintf(w, "ok: snapshot %d vouches for %d images until %s; %d sinks within their backlog\n",
			snap.Meta.Serial, snap.Images[snapshot.Endorsed], snap.Meta.Expires.UTC().Format(time.RFC3339), len(sinks))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "vmgate serve: /healthz (200 when healthy, 503 with what is wrong), /metrics (Prometheus)")
	})
	return mux
}

// AuditHealth says what the last audit found wrong: non-compliant VMs running, or an audit
// that could not judge them. Nothing before the first audit.
func AuditHealth(res *audit.Result, interval time.Duration, now time.Time) []string {
	if res == nil {
		return nil
	}
	var problems []string
	if age := now.Sub(res.At); age > 3*interval+time.Minute {
		problems = append(problems, fmt.Sprintf("audit: the last pass was at %s, %s ago (serve.audit_interval %s): it may be stuck; see the log", res.At.UTC().Format(time.RFC3339), age.Round(time.Second), interval))
	}
	// A snapshot problem is reported above, from the snapshot as it is now.
	if res.Err != nil && !errors.Is(res.Err, terminate.ErrNoSnapshot) {
		problems = append(problems, fmt.Sprintf("audit: could not judge the running VMs at %s: %v", res.At.UTC().Format(time.RFC3339), res.Err))
	}
	if n := len(res.Findings); n > 0 {
		const shown = 5
		var names []string
		for _, f := range res.Findings[:min(n, shown)] {
			names = append(names, fmt.Sprintf("%s (%s: %s)", f.Name, f.Status, f.Reason))
		}
		more := ""
		if n > shown {
			more = fmt.Sprintf(" and %d more", n-shown)
		}
		problems = append(problems, fmt.Sprintf("audit: %d running VMs are not endorsed (at %s): %s%s; vmgate terminate --revoked --dry-run lists them",
			n, res.At.UTC().Format(time.RFC3339), strings.Join(names, ", "), more))
	}
	if res.ActErr != nil {
		problems = append(problems, fmt.Sprintf("audit: audit_action terminate did not act: %v", res.ActErr))
	}
	return problems
}

// Health says what is wrong, one line each with what to do; nothing when all is well: the
// snapshot is there, fresh and has an accepted list behind it, and no sink's backlog is over its max_backlog. snap and
// snapErr are what metrics.ReadSnapshot returned.
func Health(snap *metrics.Snapshot, snapErr error, sinks []ship.Status, now time.Time) []string {
	var problems []string
	switch {
	case snapErr != nil:
		problems = append(problems, fmt.Sprintf("snapshot: %v: the hook refuses every start; see the sync errors in the log, or run vmgate sync", snapErr))
	case !snap.Fresh:
		problems = append(problems, fmt.Sprintf("snapshot: expired at %s (%s ago): the hook refuses every start; no sync has succeeded since, see the log or run vmgate sync",
			snap.Meta.Expires.UTC().Format(time.RFC3339), now.Sub(snap.Meta.Expires).Round(time.Second)))
	case len(snap.Meta.Lists) == 0:
		problems = append(problems, "snapshot: no accepted list behind it: the hook refuses every start; see the sync errors in the log (vmgate doctor checks each subscription)")
	}
	for _, s := range sinks {
		if s.MaxBacklog > 0 && s.Backlog > uint64(s.MaxBacklog) {
			msg := fmt.Sprintf("sink %s (%s): %d records wait, over its max_backlog of %d", s.Sink, s.Where, s.Backlog, s.MaxBacklog)
			if s.LastError != "" {
				msg += fmt.Sprintf("; %d passes failed in a row, the last: %s", s.Failures, s.LastError)
			}
			problems = append(problems, msg+"; check that the sink is reachable (vmgate doctor)")
		}
	}
	return problems
}
