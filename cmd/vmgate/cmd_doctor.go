package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/doctor"
	"github.com/vmgate/vmgate/internal/hook"
)

// DoctorOptions are the flags of vmgate doctor.
type DoctorOptions struct {
	HooksDir string
	Timeout  time.Duration
}

// AddFlags adds the flags of vmgate doctor.
func (o *DoctorOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.HooksDir, "hooks-dir", hook.DefaultHooksDir, "libvirt's hook directory")
	f.DurationVar(&o.Timeout, "timeout", 10*time.Second, "how long each network check may take")
}

func newDoctorCommand(g *globalOptions) *cobra.Command {
	var opts DoctorOptions
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this node's installation and say what to fix",
		Long: `doctor checks, one line each, and says on that line what to do about anything wrong:

  config          the configuration file parses, as the hook reads it: alone, without
                  VMGATE_<KEY> overrides (each one set is shown with "?"); the other
                  checks use the file's values too
  subscription X  the endorser's keys (or an S/MIME list's x509.ca_dir) load; the list and
                  its signature can be fetched (with the subscription's timeout, CA, token
                  and size cap) and verify
  snapshot        present, fresh, and vouching for N images
  hook            installed in ` + hook.Target(hook.DefaultHooksDir) + `, executable, and
                  reading the configuration file doctor reads
  libvirtd        running, and started after the hook was installed (libvirtd reads
                  hooks at start and on SIGHUP; after a SIGHUP it cannot tell: "?")
  trace journal   writable (the hook records before it allows) and its chain verifies
  sink X          syslog: connects, TLS handshake included; jsonfile: writable

It changes nothing: it sends no record and writes no file. Run it as root, as the hook runs.

Exit codes: 0 every check passed (a "?" is not a failure), 1 some check failed, 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDoctor(cmd.Context(), opts, g, cmd.OutOrStdout())
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}

func runDoctor(ctx context.Context, opts DoctorOptions, g *globalOptions, out io.Writer) error {
	path := g.configFile()
	var results []doctor.Result
	report := func(r doctor.Result) {
		results = append(results, r)
		fmt.Fprintln(out, doctor.Line(r))
	}
	// The installation is what the hook reads: the file alone.
	cfg, err := config.Load(path)
	if err != nil {
		report(doctor.Result{Check: "config", Status: doctor.Problem, Detail: err.Error(),
			Fix: "fix the file (unknown keys are refused, with the key named); the other checks need it"})
		return &outcome{code: exitRefused}
	}
	doctor.Run(ctx, doctor.Env{Config: cfg, ConfigPath: path, HooksDir: opts.HooksDir, Timeout: opts.Timeout}, report)
	for _, o := range config.EnvOverrides(os.LookupEnv) {
		report(doctor.Result{Check: "config", Status: doctor.Unknown,
			Detail: fmt.Sprintf("%s overrides %s for the vmgate commands run with it; the hook, and these checks, read the file only", o.From, o.Key),
			Fix:    "put the value in " + path + " if the hook should judge with it too"})
	}
	if doctor.Failed(results) {
		return &outcome{code: exitRefused} // said above, check by check
	}
	return nil
}
