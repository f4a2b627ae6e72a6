package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/adopt"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/hook"
)

func newHookCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hook",
		Short: "Install or remove the libvirt hook",
		Args:  cobra.NoArgs,
	}
	var hooksDir, binary string
	install := &cobra.Command{
		Use:   "install",
		Short: "Install vmgate-hook as " + hook.Target(hook.DefaultHooksDir),
		Long: `install puts the hook where libvirtd runs it at every domain operation:
` + hook.Target(hook.DefaultHooksDir) + `. Running it again is harmless.

With the default configuration file (` + "/etc/vmgate/vmgate.yaml" + `) the hook binary is copied;
with another one (--config or VMGATE_CONFIG) a two-line wrapper that passes it is
installed instead, since libvirtd runs hooks with almost no environment. The file is
checked first as the hook will read it: alone, without VMGATE_<KEY> overrides.

It creates libvirt's hook directory and its qemu.d (0755) when they are missing, as they
are on a fresh libvirt install. libvirtd notices a new hook file only when it restarts or
receives SIGHUP: do that once after the first install (systemctl reload libvirtd, or
kill -HUP $(pidof libvirtd)).

Exit codes: 0 installed (or already installed), 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				binary = filepath.Join(filepath.Dir(exe), "vmgate-hook")
			}
			// The file as the hook reads it: without VMGATE_<KEY> overrides, which it never sees.
			cfgPath := g.configFile()
			if _, err := config.Load(cfgPath); err != nil {
				return fmt.Errorf("the hook would refuse every start: %w", err)
			}
			target := hook.Target(hooksDir)
			_, statErr := os.Stat(filepath.Dir(target))
			res, err := hook.Install(hooksDir, binary, cfgPath)
			if err != nil {
				return err
			}
			if errors.Is(statErr, fs.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "created %s (a fresh libvirt install has none)\n", filepath.Dir(target))
			}
			switch res {
			case hook.Installed:
				fmt.Fprintf(cmd.OutOrStdout(), "installed %s\nlibvirtd runs it only after a restart or SIGHUP: run `systemctl reload libvirtd` (or kill -HUP $(pidof libvirtd)) now\n", target)
			case hook.Updated:
				fmt.Fprintf(cmd.OutOrStdout(), "updated %s; libvirtd runs the new version from the next operation\n", target)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "%s is already installed and up to date\n", target)
			}
			return nil
		},
	}
	install.Flags().StringVar(&binary, "hook", "", "the hook binary to install (default: vmgate-hook beside this vmgate)")
	uninstall := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the hook: domains start without vmgate's check",
		Long: `uninstall removes ` + hook.Target(hook.DefaultHooksDir) + `. From then on libvirtd starts
domains without vmgate's check. Restart libvirtd or send it SIGHUP afterwards.

Exit codes: 0 removed (or not installed), 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			removed, err := hook.Uninstall(hooksDir)
			if err != nil {
				return err
			}
			if !removed {
				fmt.Fprintf(cmd.OutOrStdout(), "%s was not installed\n", hook.Target(hooksDir))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s; restart libvirtd or send it SIGHUP\n", hook.Target(hooksDir))
			return nil
		},
	}
	for _, c := range []*cobra.Command{install, uninstall} {
		c.Flags().StringVar(&hooksDir, "hooks-dir", hook.DefaultHooksDir, "libvirt's hook directory")
		cmd.AddCommand(c)
	}
	cmd.AddCommand(newAdoptCommand(g))
	return cmd
}

func newAdoptCommand(g *globalOptions) *cobra.Command {
	var all, dryRun bool
	var connect string
	cmd := &cobra.Command{
		Use:   "adopt [--dry-run] (DOMAIN...|--all)",
		Short: "Take the disk overlays of domains this host runs today as their own state",
		Long: `adopt is for a host that ran VMs before vmgate was installed. The hook admits a qcow2
overlay that already holds data only for a domain it admitted before with that very file
(it remembers what it admitted in state_dir/admitted); the first start of such a VM would
otherwise be refused. adopt reads each domain's current XML over a read-only libvirt
connection (the live XML of a running domain), judges its base images as the hook does,
and when they are endorsed now remembers every layer of its disks as the domain's own.

Adopting is an act of trust in what the domains hold today: run it once, at installation
(and after external snapshots made outside a start, which add layers the hook never saw).
A domain admitted only through an exemption, or whose bases are not endorsed, is not
adopted and is listed with the reason.

Exit codes: 0 every domain named adopted, 1 some not adopted, 2 error.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return fmt.Errorf("name the domains to adopt, or give --all")
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if connect == "" {
				connect = cfg.Serve.AuditConnect
			}
			lv, err := adopt.OpenLibvirt(connect)
			if err != nil {
				return err
			}
			defer lv.Close()
			now := time.Now()
			j := admission.NewJudge(cfg, now)
			defer j.Close()
			res, err := adopt.Adopt(cmd.Context(), lv, args, j, admission.NewMemory(admission.MemoryDir(cfg.StateDir)), adopt.Options{DryRun: dryRun, Now: now})
			out := cmd.OutOrStdout()
			verb := "adopted"
			if dryRun {
				verb = "would adopt"
			}
			missed := 0
			for _, r := range res {
				if !r.Adopted {
					missed++
					fmt.Fprintf(out, "not adopted %s (%s): %s\n", r.Name, r.UUID, r.Reason)
					continue
				}
				fmt.Fprintf(out, "%s %s (%s):", verb, r.Name, r.UUID)
				for _, l := range r.Layers {
					fmt.Fprintf(out, " %s=%s", l.Disk, l.Path)
				}
				fmt.Fprintln(out)
			}
			if err != nil {
				return err
			}
			if missed > 0 {
				return &outcome{code: exitRefused} // each domain already explained above
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every domain defined or running on this host")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be adopted; remember nothing")
	cmd.Flags().StringVar(&connect, "connect", "", "libvirt URI (default serve.audit_connect, qemu:///system)")
	return cmd
}
