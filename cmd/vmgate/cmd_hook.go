package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

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
	return cmd
}
