package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/vmgate/vmgate/internal/config"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	configPath string
	logLevel   string
	logFormat  string
}

func newRootCommand() *cobra.Command {
	var g globalOptions
	root := &cobra.Command{
		Use:   "vmgate",
		Short: "Run only virtual machine images that a trusted endorser currently vouches for",
		Long: `vmgate keeps a hypervisor's endorsed-image policy.

It syncs the signed image lists (HEPiX format) of the endorsers a site subscribes to,
verifies and checks them, keeps an auditable history, and compiles the snapshot that the
libvirt hook (vmgate-hook, installed by vmgate hook install) consults at every VM start.
The hook refuses any image that is not endorsed now and records every decision in a
hash-chained trace journal before it lets a VM start.

  keep the policy     sync (once, or from a timer), serve (the daemon: sync, ship, prune,
                      /healthz, /metrics), images, list verify, endorse (the endorser's side)
  install and check   hook install, doctor, check
  traceability        trace query, trace verify, ship
  incidents           terminate --revoked

Shell completion: vmgate completion bash|zsh|fish (see vmgate completion bash --help).

Configuration: --config, else $VMGATE_CONFIG, else ` + config.DefaultPath + `.
Any scalar key can be overridden by VMGATE_<KEY> (for example VMGATE_STATE_DIR), the text
typed by its key as in the file; the hook reads the file only.

Exit codes: 0 done, 1 refused or invalid (see each command), 2 error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().StringVar(&g.configPath, "config", "", "configuration file (default $VMGATE_CONFIG or "+config.DefaultPath+")")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newSyncCommand(&g),
		newImagesCommand(&g),
		newListCommand(&g),
		newCheckCommand(&g),
		newHookCommand(&g),
		newTraceCommand(&g),
		newShipCommand(&g),
		newTerminateCommand(&g),
		newBlockCommand(&g),
		newUnblockCommand(&g),
		newBlocksCommand(&g),
		newServeCommand(&g),
		newDoctorCommand(&g),
		newEndorseCommand(&g),
	)
	return root
}

// logger builds the one logger of this process; commands pass it down.
func (g *globalOptions) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", g.logFormat)
}

// setup loads the configuration and builds the logger, what most commands start with.
func (g *globalOptions) setup() (*config.Config, *slog.Logger, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	return cfg, log, nil
}

// configFile is the configuration file: --config, else $VMGATE_CONFIG, else the default.
func (g *globalOptions) configFile() string { return config.FilePath(g.configPath, os.Getenv) }

// loadConfig reads the configuration file with the hook's own decoder and applies the
// VMGATE_<KEY> variables on top, each typed by its key as the file's text would be. Every
// command and vmgate serve (at start and at each SIGHUP) read it here.
func (g *globalOptions) loadConfig() (*config.Config, error) {
	path := g.configFile()
	c, err := config.LoadWith(path, config.EnvOverrides(os.LookupEnv))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w (give --config or set %s)", err, config.EnvConfig)
		}
		return nil, err
	}
	return c, nil
}
