package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
	"github.com/vmgate/vmgate/internal/trace/index"
	"github.com/vmgate/vmgate/internal/trace/retention"
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
	cmd.AddCommand(newTraceQueryCommand(g), newTraceReindexCommand(g), newTracePruneCommand(g))
	return cmd
}

// traceQueryOptions are the flags of `vmgate trace query`.
type traceQueryOptions struct {
	ip, mac, instance, user, project, image, host string
	at, since, until                              string
	format                                        string
	limit                                         int
}

func (o *traceQueryOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.ip, "ip", "", "an IP address the VM held (Nova's fixed and floating addresses)")
	f.StringVar(&o.mac, "mac", "", "a MAC address of the VM")
	f.StringVar(&o.instance, "instance", "", "Nova instance uuid, domain uuid or domain name")
	f.StringVar(&o.user, "user", "", "Keystone user id or name")
	f.StringVar(&o.project, "project", "", "Keystone project id or name")
	f.StringVar(&o.image, "image", "", "image sha512, Glance image id or image list identifier")
	f.StringVar(&o.host, "host", "", "hypervisor host name")
	f.StringVar(&o.at, "at", "", "show the VM lifetimes that included this instant instead of records")
	f.StringVar(&o.since, "since", "", "records at or after this time")
	f.StringVar(&o.until, "until", "", "records at or before this time")
	f.StringVar(&o.format, "format", "table", "output: table, json (one object per line) or ecs (Elastic Common Schema, one record per line)")
	f.IntVar(&o.limit, "limit", 1000, "show at most the last N results; 0 shows all")
}

// filter turns the flags into an index filter.
func (o *traceQueryOptions) filter() (index.Filter, error) {
	f := index.Filter{IP: o.ip, MAC: o.mac, Instance: o.instance, User: o.user, Project: o.project,
		Image: o.image, Host: o.host, Limit: o.limit}
	for _, t := range []struct {
		flag, value string
		dst         *time.Time
	}{{"--at", o.at, &f.At}, {"--since", o.since, &f.Since}, {"--until", o.until, &f.Until}} {
		if t.value == "" {
			continue
		}
		v, err := index.ParseTime(t.value)
		if err != nil {
			return f, fmt.Errorf("%s: %w", t.flag, err)
		}
		*t.dst = v
	}
	switch o.format {
	case "table", "json":
	case "ecs":
		if !f.At.IsZero() {
			return f, errors.New("--format ecs prints records, and --at asks for VM lifetimes: use --format table or json")
		}
	default:
		return f, fmt.Errorf("--format %q: want table, json or ecs", o.format)
	}
	if o.limit < 0 {
		return f, fmt.Errorf("--limit %d: want 0 (all) or more", o.limit)
	}
	if f.Limit > 0 {
		f.Limit++ // one more than shown, to tell whether there were more
	}
	return f, nil
}

func newTraceQueryCommand(g *globalOptions) *cobra.Command {
	var o traceQueryOptions
	cmd := &cobra.Command{
		Use:   "query [--ip A] [--mac M] [--instance ID] [--user U] [--project P] [--image I] [--host H] [--at T | --since T --until T] [--format table|json|ecs] [--limit N]",
		Short: "Find trace records, or which VM and operator held an address at an instant",
		Long: `query searches the trace records for those that match every flag given, and prints
them oldest first. It first brings the index (state_dir/trace/index.db) up to date with the
journal.

With --at it prints VM lifetimes instead: each VM that was running at that instant on a host,
from the record that started it to the one that stopped it, with its owner, image and
addresses. With --ip it answers "which VM and which operator had this address then":

  vmgate trace query --ip 192.0.2.77 --at 2026-11-20T10:00Z

A lifetime begins at vm.started (the admission before it names the image) and ends at
vm.stopped or vm.released; a refused start has none. "(reconnect)" marks a lifetime first
seen when libvirtd reconnected to the VM, which was running before that; "(restarted)" one
whose stop was never recorded (a host crash) and that ended at the latest when the domain
started again.

Times are RFC 3339 (2026-11-20T10:00:00Z, 2026-11-20T11:00:00+01:00) or the same to the
minute (2026-11-20T10:00Z). --since and --until include their bounds and select records;
they do not go with --at. Ids and hashes match in either case; names match exactly.

--format json prints one JSON object per line: {"seq","prev","hash","record"} for records,
the lifetime for --at. --format ecs prints each record as an Elastic Common Schema document,
one per line, as the SIEM export does (see docs/records.md).

Exit codes: 0 something matched, 1 nothing matched, 2 error (bad flags, unreadable
configuration, journal or index).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTraceQuery(cmd.Context(), g, &o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runTraceQuery(ctx context.Context, g *globalOptions, o *traceQueryOptions, stdout, stderr io.Writer) error {
	f, err := o.filter()
	if err != nil {
		return err
	}
	cfg, log, err := g.setup()
	if err != nil {
		return err
	}
	// Without a journal there is nothing to index; a mistyped state_dir should not get one.
	jpath := trace.JournalPath(cfg.StateDir)
	if _, err := os.Stat(jpath); errors.Is(err, fs.ErrNotExist) {
		return refused(fmt.Sprintf("nothing matched: %s: no records yet", jpath))
	}
	ix, err := index.Open(ctx, cfg.StateDir, index.Options{Logger: log})
	if err != nil {
		return err
	}
	defer ix.Close()
	if _, err := ix.Update(ctx); err != nil {
		var p *journal.Problem
		if !errors.As(err, &p) {
			return err
		}
		// The records before the break are indexed and worth an answer; say what is missing.
		fmt.Fprintf(stderr, "vmgate: warning: %v; records from there on are not indexed (run vmgate trace verify)\n", err)
	}
	res, err := ix.Query(ctx, f)
	if err != nil {
		return err
	}
	if len(res) == 0 {
		return refused("nothing matched")
	}
	more := o.limit > 0 && len(res) > o.limit
	if more {
		res = res[1:] // the oldest: the query asked for one more than the limit
	}
	switch {
	case o.format == "json":
		err = printTraceJSON(stdout, res)
	case o.format == "ecs":
		err = printTraceECS(stdout, res)
	case !f.At.IsZero():
		err = printLifetimes(stdout, res)
	default:
		err = printRecords(stdout, res)
	}
	if err != nil {
		return err
	}
	if more {
		fmt.Fprintf(stderr, "vmgate: showing the last %d; more matched (--limit 0 shows all)\n", o.limit)
	}
	return nil
}

// jsonLines writes one JSON value per line. Reasons and paths may hold < > &, which JSON
// does not need escaped for a terminal or a log shipper.
func jsonLines(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

func printTraceJSON(w io.Writer, res []index.Result) error {
	enc := jsonLines(w)
	for _, r := range res {
		var v any = r.Entry
		if r.Lifetime != nil {
			v = r.Lifetime
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

func printTraceECS(w io.Writer, res []index.Result) error {
	enc := jsonLines(w)
	for _, r := range res {
		e := r.Entry
		if err := enc.Encode(e.Record.ECS(e.Seq, e.Hash, e.Prev)); err != nil {
			return err
		}
	}
	return nil
}

func printLifetimes(w io.Writer, res []index.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tINSTANCE\tUSER\tPROJECT\tHOST\tIMAGE\tIPS\tFROM\tUNTIL")
	for _, r := range res {
		lt := r.Lifetime
		var inst string
		if lt.Instance != nil {
			inst = nameID(lt.Instance.Name, lt.Instance.ID)
		}
		from := traceTime(lt.From)
		if lt.FromEvent == trace.VMReconnected {
			from += " (reconnect)"
		}
		until := "(running)"
		if lt.Until != nil {
			until = traceTime(*lt.Until)
			if lt.UntilEvent == trace.VMStarted {
				until += " (restarted)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(nameID(lt.Domain.Name, lt.Domain.UUID)), cell(inst),
			cell(owner(lt.User)), cell(owner(lt.Project)), cell(lt.Host), cell(imageLabel(lt.Images)), cell(ips(lt.IPs)), from, until)
	}
	return tw.Flush()
}

func printRecords(w io.Writer, res []index.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tHOST\tEVENT\tOUTCOME\tDOMAIN\tINSTANCE\tUSER\tPROJECT\tIMAGE\tIPS\tREASON")
	for _, r := range res {
		rec := r.Entry.Record
		var inst string
		if rec.Instance != nil {
			inst = nameID(rec.Instance.Name, rec.Instance.ID)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Entry.Seq, traceTime(rec.Time), cell(rec.Host),
			cell(rec.Event), cell(rec.Outcome), cell(rec.Domain.Name), cell(inst), cell(owner(rec.User)), cell(owner(rec.Project)),
			cell(imageLabel(rec.Images)), cell(ips(rec.IPs)), strings.Join(strings.Fields(rec.Reason), " "))
	}
	return tw.Flush()
}

// traceTime is to the second in tables: --format json has the nanoseconds.
func traceTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nameID(name, id string) string {
	switch {
	case name != "" && id != "":
		return name + " (" + id + ")"
	case name != "":
		return name
	}
	return id
}

func owner(o *trace.Owner) string {
	if o == nil {
		return ""
	}
	return nameID(o.Name, o.ID)
}

func ips(list []trace.IP) string {
	s := make([]string, len(list))
	for i, ip := range list {
		s[i] = ip.Address
	}
	return strings.Join(s, ",")
}

// imageLabel names the first image the way people know it, and counts the others.
func imageLabel(ims []trace.Image) string {
	if len(ims) == 0 {
		return ""
	}
	im := ims[0]
	var s string
	switch {
	case im.Identifier != "":
		s = im.Identifier
		if im.Version != "" {
			s += " " + im.Version
		}
	case im.GlanceID != "":
		s = im.GlanceID
	case im.SHA512 != "":
		s = "sha512:" + im.SHA512[:min(16, len(im.SHA512))] + "…"
	case im.Source != "":
		s = im.Source
	}
	if len(ims) > 1 {
		s += fmt.Sprintf(" +%d", len(ims)-1)
	}
	return s
}

func newTraceReindexCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "reindex",
		Short: "Build the trace index again from the journal",
		Long: `reindex builds the query index (state_dir/trace/index.db) again from the trace journal.
vmgate trace query keeps the index up to date by itself and rebuilds one that is damaged or
no longer matches the journal, so this is for when you want it done now (after restoring a
journal, say). Queries go on meanwhile and see the old index until the new one is complete.

Exit codes: 0 rebuilt, 1 rebuilt up to a break in the journal's hash chain (run vmgate
trace verify), 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.setup()
			if err != nil {
				return err
			}
			ix, err := index.Open(cmd.Context(), cfg.StateDir, index.Options{Logger: log})
			if err != nil {
				return err
			}
			defer ix.Close()
			st, err := ix.Rebuild(cmd.Context())
			var p *journal.Problem
			if err != nil && !errors.As(err, &p) {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: indexed %d records, last seq %d, in %v\n", index.Path(cfg.StateDir),
				st.Records, st.LastSeq, st.Duration.Round(time.Millisecond))
			if err != nil {
				return refused(fmt.Sprintf("%v: the records from there on are not indexed", err))
			}
			return nil
		},
	}
}

func newTracePruneCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Drop trace records past trace.retention that every sink has acknowledged",
		Long: `prune drops the oldest trace records that are older than trace.retention (default
180 days) and that every sink in trace.sinks has acknowledged. A record no sink has taken is
never dropped: with no sink configured, nothing is. The journal keeps the hash of the last
record dropped as its anchor, so vmgate trace verify still checks the rest; the index
follows on its next update. Run it from a timer (daily is plenty).

Exit codes: 0 done (whether or not anything was dropped), 2 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			res, err := retention.Prune(cfg, time.Now())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case res.NoSinks:
				fmt.Fprintln(out, "no sink is configured (trace.sinks): records that were never shipped are kept")
			case res.Dropped == 0:
				fmt.Fprintf(out, "nothing to drop: records before %s are kept until every sink has them (acknowledged up to seq %d)\n",
					res.Cutoff.UTC().Format(time.RFC3339), res.Acked)
			default:
				fmt.Fprintf(out, "dropped %d records before %s; %d kept, anchored at seq %d\n",
					res.Dropped, res.Cutoff.UTC().Format(time.RFC3339), res.Kept, res.AnchorSeq)
			}
			return nil
		},
	}
}
