package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/audit"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/imagehash"
	"github.com/vmgate/vmgate/internal/openstack"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/serve"
	"github.com/vmgate/vmgate/internal/trace"
)

// ServeOptions are the flags of vmgate serve.
type ServeOptions struct {
	Listen string
}

// AddFlags adds the flags of vmgate serve.
func (o *ServeOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Listen, "listen", config.DefaultListen, "host:port of /healthz and /metrics (overrides serve.listen)")
}

func newServeCommand(g *globalOptions) *cobra.Command {
	var opts ServeOptions
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR]",
		Short: "Run the daemon: sync on each refresh, ship, prune, serve /healthz and /metrics",
		Long: `serve runs until SIGTERM. It syncs every subscription on its own refresh interval (each
sync comes early by up to 10% at random, so that hypervisors do not fetch together; a refused
list is fetched again after a minute, doubling up to refresh), ships the trace records to
every sink in trace.sinks, prunes the journal by trace.retention every hour, audits the
host's running VMs (periodically and on their libvirt events), and answers over HTTP on --listen, else serve.listen (default
` + config.DefaultListen + `):

  /healthz   200 "ok" when the snapshot is fresh, every sink's backlog is within its
             max_backlog and no running VM is unendorsed; 503 otherwise, with one line per
             problem and what to do
  /metrics   Prometheus metrics, vmgate_* (see docs/metrics.md)

The audit, every serve.audit_interval (default 10m, the first at start), judges every
running domain of serve.audit_connect (qemu:///system, read-only) as terminate --revoked
would: vmgate_running_unendorsed by reason, /healthz, and a vm.audit trace record each
time a VM's standing changes. serve.audit_action: terminate then acts as terminate
--revoked does, with serve.audit_grace, audit_max and audit_timeout as its --grace, --max
and --timeout; off turns the audit off (a host without libvirt).

Between passes the audit follows libvirt's domain events on that read-only connection
(serve.audit_events, default true): a device hot-plugged into a running VM (virsh
attach-disk, attach-device: no hook runs), a start, a block job, a media change makes it
judge that domain again within a second, reported as any finding. If libvirtd goes away it
says so in the log and in vmgate_audit_events_connected, subscribes again (1s, doubling up
to 1m) while the periodic audit goes on, and judges every domain once back.

What a sync does is what vmgate sync does, trace records and image_dirs included. The hook
does not need the daemon: while it is down, VMs are judged against the last snapshot until
that expires.

SIGHUP reads the configuration again; a valid one restarts every loop with it, an invalid
one is logged and the daemon runs on as before. SIGTERM or SIGINT stops it cleanly (a sync
under way may finish for up to 10 seconds). Under systemd (Type=notify) it reports READY,
RELOADING and STOPPING. Logs go to stderr: --log-format json for a log collector.

Exit codes: 0 stopped by SIGTERM or SIGINT, 2 error (configuration at start, listen address).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if _, err := g.loadConfig(); err != nil {
				return err
			}
			if !cmd.Flags().Changed("listen") {
				opts.Listen = "" // serve.listen decides, reloaded with the rest
			}
			return runServe(cmd.Context(), opts, g, log)
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}

func runServe(ctx context.Context, opts ServeOptions, g *globalOptions, log *slog.Logger) error {
	d, err := serve.New(g.serveOptions(opts, log))
	if err != nil {
		return err
	}
	return d.Run(ctx, reloadOnSIGHUP(ctx))
}

// serveOptions wires the daemon: it loads the configuration, at start and at each reload,
// with loadConfig, as every other command does.
func (g *globalOptions) serveOptions(opts ServeOptions, log *slog.Logger) serve.Options {
	return serve.Options{
		Load:   g.loadConfig,
		Log:    log,
		Listen: opts.Listen,
		OnSync: func(ctx context.Context, cfg *config.Config, rep *policy.Report) error {
			return afterSync(ctx, cfg, log, rep)
		},
		// Each of the daemon's syncs is built here, as vmgate sync builds its own.
		NewSyncer: func(cfg *config.Config) *policy.Syncer {
			sy := &policy.Syncer{Config: cfg}
			sy.Glance, sy.GlanceOptions = openstack.ForSync(cfg.OpenStack)
			return sy
		},
		Notify: serve.Notifier(os.Getenv("NOTIFY_SOCKET"), log),
		Audit:  audit.Env{Version: version, Log: log},
	}
}

// reloadOnSIGHUP says "reload" once for each SIGHUP (or burst of them) until ctx ends.
func reloadOnSIGHUP(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default: // one reload pending is enough
				}
			}
		}
	}()
	return reload
}

// afterSync is what vmgate sync does after the sync itself: tell the SIEM through the trace
// journal, and hash new base images.
func afterSync(ctx context.Context, cfg *config.Config, log *slog.Logger, rep *policy.Report) error {
	if err := trace.Append(cfg.StateDir, syncRecords(rep.Events, time.Now())...); err != nil {
		return fmt.Errorf("the sync took effect and is in the history, but its trace records could not be written: %w", err)
	}
	if len(cfg.ImageDirs) > 0 {
		st, err := imagehash.New(admission.HashCacheDir(cfg.StateDir)).Prehash(ctx, cfg.ImageDirs, log, true)
		if err != nil {
			return fmt.Errorf("image_dirs: %w", err)
		}
		if st.Hashed > 0 {
			log.Info("serve: image_dirs hashed", "files", st.Files, "hashed", st.Hashed, "mib", st.Bytes>>20, "skipped", st.Errors, "sealed", st.Sealed, "unsealed", st.Unsealed)
		}
	}
	return nil
}
