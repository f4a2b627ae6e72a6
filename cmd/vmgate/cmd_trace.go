package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

func newTraceCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Work with the traceability records the hook writes",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Check the trace journal's hash chain",
		Long: `verify walks the hash chain of the trace journal (state_dir/trace/journal.jsonl) and
reports the first record that was edited, removed or reordered. A torn last record, which a
crash in the middle of a write can leave, is reported apart from tampering; the next record
written moves it aside.

Exit codes: 0 intact, 1 broken or torn (the first bad record is named), 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			path := trace.JournalPath(cfg.StateDir)
			rep, err := journal.Verify(path)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: no records yet\n", path)
				return nil
			}
			if err != nil {
				return err
			}
			if !rep.Intact() {
				return refused(fmt.Sprintf("%s: %s", path, rep))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", path, rep)
			return nil
		},
	})
	return cmd
}
