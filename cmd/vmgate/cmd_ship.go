package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/ship"
)

// ShipOptions are the flags of vmgate ship.
type ShipOptions struct {
	Once bool
}

// AddFlags adds the flags of vmgate ship.
func (o *ShipOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.Once, "once", false, "make one pass over every sink and exit")
}

func newShipCommand(g *globalOptions) *cobra.Command {
	var opts ShipOptions
	cmd := &cobra.Command{
		Use:   "ship [--once]",
		Short: "Send the trace records to the SIEM (trace.sinks), at least once",
		Long: `ship sends every trace record to every sink in trace.sinks: RFC 5424 syslog over TLS
(RFC 5425) or plain TCP, with octet-counting framing, or ECS JSON lines appended to a file.
Each sink has a cursor in state_dir/trace/cursors; it moves only once the sink has accepted
the records, so a record may arrive twice (same seq and hash) but never goes missing.

With --once it makes one pass over every sink and exits. Without, it runs until SIGTERM,
looking for new records every second and retrying an unreachable sink with a backoff that
doubles up to a minute, with a warning each time. The hook never waits for either.

Exit codes (--once): 0 every sink is up to date, 1 a sink could not be reached or did not
accept the records (they wait for the next run), 2 error (configuration, journal, cursor).
Without --once: 0 when stopped by SIGTERM or SIGINT, 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.setup()
			if err != nil {
				return err
			}
			return runShip(cmd.Context(), opts, cfg, log, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}

func runShip(ctx context.Context, opts ShipOptions, cfg *config.Config, log *slog.Logger, out, errw io.Writer) error {
	if len(cfg.Trace.Sinks) == 0 {
		return fmt.Errorf("trace.sinks: no sink configured, nothing to ship to")
	}
	sh, err := ship.New(cfg.StateDir, cfg.Trace.Sinks, log, ship.Options{})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if !opts.Once {
		log.Info("ship: running", "sinks", len(cfg.Trace.Sinks), "journal", cfg.StateDir)
		return sh.Run(ctx)
	}
	stats, err := sh.Once(ctx)
	for _, k := range stats.Sinks {
		if k.Err != nil {
			fmt.Fprintf(errw, "vmgate: sink %s (%s): %v\n  %d records wait for the next run (cursor at seq %d, journal at seq %d)\n",
				k.Sink, k.Where, k.Err, k.Backlog, k.Cursor, k.LastSeq)
			continue
		}
		fmt.Fprintf(out, "%s: shipped %d records, up to date at seq %d (%s)\n", k.Sink, k.Shipped, k.Cursor, k.Where)
	}
	switch {
	case err == nil:
		return nil
	case ship.IsDelivery(err):
		return &outcome{code: exitRefused} // said above, per sink
	}
	return &outcome{code: exitError} // said above, per sink
}
