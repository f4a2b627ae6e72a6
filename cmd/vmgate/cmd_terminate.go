package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/terminate"
)

// terminateOptions are vmgate terminate's flags.
type terminateOptions struct {
	revoked  bool
	connect  string
	cloud    string
	useCloud bool // --cloud was given, perhaps empty
	action   string
	timeout  time.Duration
	grace    time.Duration
	max      int
	force    bool
	dryRun   bool
	asJSON   bool
	blocked  bool
}

func (o *terminateOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.revoked, "revoked", false, "act on running VMs whose image is revoked, expired, unknown or blocked, or whose user or project is blocked (required)")
	f.BoolVar(&o.blocked, "blocked-only", false, "act only on VMs the site blocked (vmgate block): their image, user or project")
	f.StringVar(&o.connect, "connect", terminate.DefaultConnect, "libvirt URI of the host scope")
	f.StringVar(&o.cloud, "cloud", "", "act across an OpenStack cloud: its name in clouds.yaml, or '' for openstack.cloud, else $OS_CLOUD, else the OS_* variables")
	f.StringVar(&o.action, "action", string(terminate.Shutdown), "shutdown, destroy or suspend; on a cloud also stop and lock")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long a shutdown may take before the domain is destroyed (cloud: how long to wait for Nova)")
	f.DurationVar(&o.grace, "grace", 0, "only images revoked or expired longer ago than this")
	f.IntVar(&o.max, "max", 50, "act on at most this many VMs; more is refused unless --force")
	f.BoolVar(&o.force, "force", false, "act even when there are more targets than --max")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
}

func newTerminateCommand(g *globalOptions) *cobra.Command {
	var o terminateOptions
	cmd := &cobra.Command{
		Use:   "terminate --revoked [--blocked-only] [--connect URI | --cloud NAME] [--action A] [--dry-run]",
		Short: "Take down running VMs whose image is no longer endorsed",
		Long: `terminate --revoked judges every running VM as the hook would judge it at a start, and
acts on those whose image is revoked, expired or unknown to every subscribed list, and on
those the site blocked (vmgate block: their image, their user or their project).
--blocked-only narrows the targets to the blocked ones; the others are listed as
not-blocked and left alone. --grace counts from the block as from a revocation.

Scope: this host's libvirt (--connect, default ` + terminate.DefaultConnect + `: every running or
paused domain, judged on its live XML), or with --cloud every server of every project of an
OpenStack cloud (Nova's all_tenants listing, each server's Glance image looked up in the
snapshot). --cloud NAME reads clouds.yaml as the openstack client does; --cloud '' takes
openstack.cloud from the configuration, else $OS_CLOUD, else the OS_* variables of an
openrc file.

Actions (--action):
  shutdown  the default: ask the guest to shut down, destroy it after --timeout (Nova: os-stop,
            which powers off after Nova's own shutdown_timeout)
  destroy   pull the plug (Nova: os-stop too; Nova cannot power off without trying a shutdown
            first, short of deleting the server, which would destroy the evidence)
  suspend   save the memory to disk and stop (libvirt managed save, Nova suspend): for
            forensics, as incident procedures ask
  stop      Nova only: os-stop
  lock      Nova only: os-lock, the server runs on but its owner can no longer act on it

A VM that vmgate cannot classify (a disk it cannot identify, raw QEMU arguments, a direct
kernel boot, a boot from volume) is listed and never acted on. An image no list ever named
has no revocation time: it is a target whatever --grace says, and the report says so.
terminate refuses to run without a fresh snapshot (run vmgate sync), and refuses to act on
more than --max VMs unless --force. Every action writes a vm.terminated record to the trace
journal: what was done, why, when the image was revoked, and who ran it.

Exit codes: 0 every target handled, or there was none; 1 some action failed (each is
listed), or more targets than --max; 2 error (no fresh snapshot, libvirt or the cloud
unreachable, bad usage); 3 --dry-run found targets.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.useCloud = cmd.Flags().Changed("cloud")
			if cmd.Flags().Changed("connect") && o.useCloud {
				return errors.New("--connect and --cloud exclude each other")
			}
			if !o.revoked {
				return errors.New("say --revoked: terminate acts only on VMs whose image is no longer endorsed")
			}
			if o.max < 0 || o.grace < 0 || o.timeout <= 0 {
				return errors.New("--max and --grace must not be negative, --timeout must be positive")
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			return runTerminate(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, o, time.Now())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runTerminate(ctx context.Context, out, errOut io.Writer, cfg *config.Config, o terminateOptions, now time.Time) error {
	var src terminate.Source
	if o.useCloud {
		name := o.cloud
		if name == "" {
			name = cfg.OpenStack.Cloud
		}
		c, err := terminate.OpenCloud(ctx, name)
		if err != nil {
			return err
		}
		src = c
	} else {
		h, err := terminate.ConnectHost(o.connect)
		if err != nil {
			return err
		}
		defer h.Close()
		src = h
	}
	j := admission.NewJudge(cfg, now)
	defer j.Close()
	host, _ := os.Hostname()
	opts := terminate.Options{Action: terminate.Action(o.action), Grace: o.grace, Max: o.max, Force: o.force, Timeout: o.timeout, Now: now, BlockedOnly: o.blocked}
	env := terminate.Env{Host: host, Version: version, Actor: terminate.CurrentActor(), Record: terminate.Journal(cfg.StateDir),
		Parallel: 8, Now: time.Now}
	rep, err := terminate.Run(ctx, src, j, opts, o.dryRun, env)
	if rep == nil {
		return err
	}
	if werr := writeReport(out, rep, o.asJSON); werr != nil {
		return werr
	}
	for _, it := range rep.Plan.Items {
		if it.Verdict == terminate.Unclassified {
			fmt.Fprintf(errOut, "vmgate: warning: %s (%s) not classified, not acted on: %s\n", it.VM.Name, it.VM.UUID, it.Reason)
		}
	}
	switch {
	case errors.Is(err, terminate.ErrRefused):
		return refused(rep.Plan.Refused.Error())
	case err != nil:
		return err
	case o.dryRun && rep.Plan.Count(terminate.Target) > 0:
		if rep.Plan.Refused != nil {
			fmt.Fprintln(errOut, "vmgate: without --dry-run this would be refused:", rep.Plan.Refused)
		}
		return &outcome{code: exitTargets}
	}
	if failed := rep.Failed(); len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintf(errOut, "vmgate: %s %s (%s) failed: %v\n", rep.Plan.Options.Action, f.Item.VM.Name, f.Item.VM.UUID, f.Err)
		}
		return refused(fmt.Sprintf("%d of %d targets failed", len(failed), len(rep.Results)))
	}
	return nil
}

func writeReport(w io.Writer, rep *terminate.Report, asJSON bool) error {
	if asJSON {
		return rep.WriteJSON(w)
	}
	return rep.WriteTable(w)
}
