package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/terminate"
	"github.com/vmgate/vmgate/internal/trace"
)

const blockKinds = `  image SHA512|IDENTIFIER|GLANCE_ID
            a sha512 blocks those bytes wherever they run (a plain-libvirt disk, a Nova
            instance whose Glance image has them); anything else blocks the image whose
            dc:identifier (every version of it, in every list) or Glance image id it is
  user ID   a Keystone user id: every Nova instance that user starts
  project ID
            a Keystone project id: every Nova instance of that project`

func newBlockCommand(g *globalOptions) *cobra.Command {
	var reason, until string
	cmd := &cobra.Command{
		Use:   "block image|user|project ID --reason TEXT [--until TIME]",
		Short: "Block an image, user or project on this site, whatever the endorsers say",
		Long: `block is the site's own word: the hook refuses every start of what it names, with the
block's reason, until vmgate unblock lifts it or --until passes. It takes effect at once:
the snapshot in force is rewritten with the block, no sync needed. A block holds in
admission.mode warn too, and comes before admission.exempt_projects.

` + blockKinds + `

--reason is required: it goes to the history (vmgate images --history), the trace journal
(a block.added record, shipped to the SIEM) and every refusal. --until lifts the block at
that time: RFC 3339 (2026-12-01T00:00:00Z), a date (2026-12-01, midnight UTC) or a duration
from now (72h). Blocking what is blocked again replaces the block.

Running VMs are not touched: vmgate terminate --revoked --blocked-only takes them down, and
vmgate serve's audit reports them. Blocks can also be declared in the configuration
(blocks:), for sites managed with Puppet or Ansible; vmgate blocks lists both.

Exit codes: 0 blocked, 2 error (bad usage, state not writable).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			now := time.Now()
			t, err := parseUntil(until, now)
			if err != nil {
				return err
			}
			b, err := policy.NewBlock(args[0], args[1], reason, t, actorName(), policy.BlockFromCLI, now)
			if err != nil {
				return err
			}
			return changeBlocks(cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, policy.BlockChange{Add: &b}, now)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required): shown in every refusal and kept in the history and the trace")
	cmd.Flags().StringVar(&until, "until", "", "lift the block at this time: RFC 3339, YYYY-MM-DD or a duration from now")
	return cmd
}

func newUnblockCommand(g *globalOptions) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "unblock image|user|project ID --reason TEXT",
		Short: "Lift a block set with vmgate block",
		Long: `unblock lifts a block that vmgate block set, at once (the snapshot is rewritten), and
records who lifted it and why (--reason, required) in the history and the trace journal
(block.removed). ID is what the block named, as vmgate blocks shows it. A block declared in
the configuration is lifted by removing it there and running vmgate sync.

Exit codes: 0 lifted, 1 nothing was blocked by that name, 2 error.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			now := time.Now()
			b, err := policy.NewBlock(args[0], args[1], reason, time.Time{}, actorName(), policy.BlockFromCLI, now)
			if err != nil {
				return err
			}
			err = changeBlocks(cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, policy.BlockChange{Remove: &b}, now)
			if errors.Is(err, policy.ErrNotBlocked) {
				return refused(err.Error())
			}
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the block is lifted (required)")
	return cmd
}

func newBlocksCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "blocks [--json]",
		Short: "List the site's blocks",
		Long: `blocks lists the site's blocks in force: what each names, why, since when, until when,
who set it and whether from the command line (cli) or the configuration (config). A
configuration block not yet brought in by a sync is listed as pending.

--json prints an array of objects with kind, target, reason, at, until, by and source.

Exit codes: 0 listed, 2 the blocks could not be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			return listBlocks(cmd.OutOrStdout(), cfg, asJSON, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// changeBlocks applies a block or an unblock, then writes its trace records and says what
// changed.
func changeBlocks(out, errw io.Writer, cfg *config.Config, ch policy.BlockChange, now time.Time) error {
	res, err := policy.ChangeBlocks(cfg, ch, now)
	if res == nil {
		return err
	}
	recs := syncRecords(res.Events, now)
	actor := terminate.CurrentActor()
	for i := range recs {
		if recs[i].Block != nil && recs[i].Block.Source == policy.BlockFromCLI {
			recs[i].Actor = &actor
		}
	}
	if terr := trace.Append(cfg.StateDir, recs...); terr != nil {
		return errors.Join(err, fmt.Errorf("the change is in the history, but its trace records could not be written: %w", terr))
	}
	if err != nil {
		return err
	}
	for _, ev := range res.Events {
		b := ev.Block
		switch ev.Event {
		case policy.EventBlockAdded:
			fmt.Fprintf(out, "blocked %s %s: %s", b.Kind, b.Target, b.Why())
		case policy.EventBlockRemoved:
			fmt.Fprintf(out, "unblocked %s %s (%s)", b.Kind, b.Target, ev.Message)
		case policy.EventBlockExpired:
			fmt.Fprintf(out, "expired %s %s (%s)", b.Kind, b.Target, ev.Message)
		}
		if b.Source == policy.BlockFromConfig {
			fmt.Fprint(out, " [configuration]")
		}
		fmt.Fprintln(out)
	}
	if !res.Snapshot {
		fmt.Fprintln(errw, "vmgate: warning: no snapshot yet: the blocks take effect with the first vmgate sync (until then the hook refuses every start anyway)")
	}
	if a := ch.Add; a != nil && a.Kind == snapshot.BlockImage {
		fmt.Fprintln(out, describeImageTarget(cfg, a.Target))
	}
	return nil
}

// describeImageTarget says what an image block names in the snapshot in force, so that a
// typo shows at once.
func describeImageTarget(cfg *config.Config, target string) string {
	snap, err := snapshot.Open(cfg.Paths().Snapshot())
	if err != nil {
		return "  (no snapshot to look the image up in)"
	}
	defer snap.Close()
	var names []string
	describe := func(x *snapshot.Entry, im *snapshot.Image) {
		names = append(names, fmt.Sprintf("%s %q version %s (sha512 %s…, list %s)", im.Identifier, im.Title, im.Version, x.SHA512[:16], im.Subscription))
	}
	var e *snapshot.Entry
	if snapshot.IsSHA512(target) {
		e, _, err = snap.Lookup(target)
	} else if e, _, err = snap.LookupGlance(target); e != nil {
		names = append(names, "Glance image "+target)
	}
	if e != nil {
		for i := range e.Images {
			describe(e, &e.Images[i])
		}
	} else if err == nil {
		// An identifier: any version, in any list, so every entry is looked at.
		err = snap.Each(func(x *snapshot.Entry) error {
			for i := range x.Images {
				if strings.EqualFold(x.Images[i].Identifier, target) {
					describe(x, &x.Images[i])
				}
			}
			return nil
		})
	}
	switch {
	case err != nil:
		return fmt.Sprintf("  (could not look the image up in the snapshot: %v)", err)
	case len(names) == 0:
		return "  no list names this image now: the block applies if one ever does"
	}
	return "  names: " + strings.Join(names, "; ")
}

// listBlocks prints the blocks in force, and the configuration's that no sync brought in yet.
func listBlocks(out io.Writer, cfg *config.Config, asJSON bool, now time.Time) error {
	blocks, err := policy.LoadBlocks(cfg.Paths().Blocks())
	if err != nil {
		return err
	}
	type row struct {
		snapshot.Block
		Status string `json:"status"` // active, expired (lifted at the next change) or pending
	}
	rows := []row{}
	for _, b := range blocks {
		st := "active"
		if !b.ActiveAt(now) {
			st = "expired"
		}
		rows = append(rows, row{b, st})
	}
	for _, b := range policy.PendingBlocks(blocks, cfg.Blocks, now) {
		b.At = time.Time{} // not in force yet
		rows = append(rows, row{b, "pending"})
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tTARGET\tSTATUS\tSINCE\tUNTIL\tBY\tSOURCE\tREASON")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Target, r.Status, fmtTime(r.At), fmtTime(r.Until), r.By, r.Source, r.Reason)
	}
	return tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// parseUntil reads --until: RFC 3339, a date (midnight UTC) or a duration from now.
func parseUntil(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("--until %q: want RFC 3339 (2026-12-01T00:00:00Z), a date (2026-12-01) or a duration (72h)", s)
}

// actorName is who runs the command, for the history: the Unix account, and the one that
// ran sudo when there is one.
func actorName() string {
	a := terminate.CurrentActor()
	name := a.Name
	if name == "" {
		name = fmt.Sprintf("uid %d", a.UID)
	}
	if su := os.Getenv("SUDO_USER"); su != "" && su != name {
		name += " (sudo from " + su + ")"
	}
	return name
}
