package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

type imagesOptions struct {
	json    bool
	all     bool
	history string // "" off, "*" every event, else an image identifier, sha512 or list identifier
}

const allHistory = "*"

func newImagesCommand(g *globalOptions) *cobra.Command {
	var o imagesOptions
	cmd := &cobra.Command{
		Use:   "images [--json] [--all] [--history [IDENTIFIER]]",
		Short: "Show the endorsed images, or the history of endorsements",
		Long: `images shows what the hook sees: the images the current snapshot endorses, with the
list and endorser that vouch for each. --all adds the revoked and expired ones, with when
and why, and the ones the site blocked (vmgate block), as blocked with the block's reason.

--history shows the auditable history instead: every list accepted or refused and every
image endorsed, changed, revoked or expired, with the time and the reason. Give an image
identifier (dc:identifier), a sha512 or a list identifier to see only what concerns it.

--json prints a JSON array; each image object has identifier, sha512, title, version, list
(the subscription), list_identifier, list_version, endorser, status (endorsed, revoked,
expired or blocked), since, expires, revoked_at and reason.

Exit codes: 0 shown, 2 no snapshot or history could be read (run vmgate sync).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if o.history != allHistory {
					return fmt.Errorf("an IDENTIFIER argument goes with --history")
				}
				o.history = args[0]
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if o.history != "" {
				return runHistory(cmd.OutOrStdout(), policy.HistoryPath(cfg.Paths().PolicyDir()), o)
			}
			return runImages(cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg.Paths().Snapshot(), o, time.Now())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.json, "json", false, "print JSON")
	f.BoolVar(&o.all, "all", false, "include revoked, expired and blocked images")
	f.StringVar(&o.history, "history", "", "show the history, optionally only of one image or list")
	f.Lookup("history").NoOptDefVal = allHistory
	return cmd
}

// imageJSON is one row of `vmgate images --json`; its field names are a contract for scripts.
type imageJSON struct {
	Identifier     string     `json:"identifier"`
	SHA512         string     `json:"sha512"`
	Title          string     `json:"title"`
	Version        string     `json:"version"`
	List           string     `json:"list"`
	ListIdentifier string     `json:"list_identifier"`
	ListVersion    string     `json:"list_version"`
	Endorser       string     `json:"endorser"`
	Status         string     `json:"status"`
	Since          *time.Time `json:"since"`
	Expires        *time.Time `json:"expires"`
	RevokedAt      *time.Time `json:"revoked_at"`
	Reason         string     `json:"reason"`
	// GlanceIDs are the cloud's images with these bytes (openstack.cloud).
	GlanceIDs []string `json:"glance_ids,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func runImages(out, errw io.Writer, path string, o imagesOptions, now time.Time) error {
	snap, err := snapshot.Open(path)
	if err != nil {
		return fmt.Errorf("%w (run vmgate sync)", err)
	}
	defer snap.Close()
	if err := snap.Fresh(now); err != nil {
		fmt.Fprintf(errw, "vmgate: warning: %v: the hook refuses every start until vmgate sync runs\n", err)
	}
	rows := []imageJSON{}
	err = snap.Each(func(e *snapshot.Entry) error {
		block, err := snap.ImageBlocked(e, "", e.GlanceIDs, now)
		if err != nil {
			return err
		}
		for _, im := range e.Images {
			status, reason := string(im.StatusAt(now)), im.ReasonAt(now)
			if block != nil {
				// The site's block is what the hook says first, whatever the list says.
				status, reason = admission.StatusBlocked, "blocked by the site: "+block.Describe()
			}
			if status != string(snapshot.Endorsed) && !o.all {
				continue
			}
			rows = append(rows, imageJSON{
				Identifier: im.Identifier, SHA512: e.SHA512, Title: im.Title, Version: im.Version,
				List: im.Subscription, ListIdentifier: im.List, ListVersion: im.ListVersion, Endorser: im.Endorser,
				Status: status, Since: timePtr(im.Since), Expires: timePtr(im.Expires),
				RevokedAt: timePtr(im.RevokedAt), Reason: reason, GlanceIDs: e.GlanceIDs,
			})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tSHA512\tIDENTIFIER\tTITLE\tVERSION\tLIST\tUNTIL/SINCE\tREASON")
	for _, r := range rows {
		when := ""
		switch {
		case r.RevokedAt != nil:
			when = r.RevokedAt.Format(time.RFC3339)
		case r.Expires != nil:
			when = r.Expires.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s…\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Status, r.SHA512[:16], r.Identifier, r.Title, r.Version, r.List, when, r.Reason)
	}
	return tw.Flush()
}

// historyJSON is one row of `vmgate images --history --json`.
type historyJSON struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Hash string    `json:"hash"`
	policy.Event
}

func runHistory(out io.Writer, path string, o imagesOptions) error {
	var rows []historyJSON
	err := policy.ReadHistory(path, func(seq uint64, at time.Time, hash string, ev policy.Event) error {
		if o.history == allHistory || matchesHistory(ev, o.history) {
			rows = append(rows, historyJSON{Seq: seq, Time: at, Hash: hash, Event: ev})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if o.json {
		if rows == nil {
			rows = []historyJSON{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tEVENT\tSUBSCRIPTION\tLIST VERSION\tIMAGE\tDETAIL")
	for _, r := range rows {
		detail := r.Message
		if r.Reason != "" {
			detail = r.Reason + ": " + detail
		}
		if len(r.Changes) > 0 {
			detail = "changed " + strings.Join(r.Changes, ", ")
		}
		img := r.Image
		if img == "" && r.GlanceID != "" {
			img = "glance " + r.GlanceID
		}
		if b := r.Block; b != nil {
			img = b.Kind + " " + b.Target
			detail = fmt.Sprintf("%s; by %s (%s)", b.Why(), b.By, b.Source)
			if r.Event.Event != policy.EventBlockAdded {
				detail = fmt.Sprintf("%s; by %s (%s); was: %s", r.Message, b.By, b.Source, b.Reason)
			}
		}
		if r.Title != "" {
			img += " (" + r.Title + ")"
		}
		sub := r.Subscription
		if sub == "" && r.Cloud != "" {
			sub = "cloud " + r.Cloud
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.UTC().Format(time.RFC3339), r.Event.Event, sub, r.ListVersion, img, detail)
	}
	return tw.Flush()
}

func matchesHistory(ev policy.Event, id string) bool {
	id = strings.ToLower(id)
	if b := ev.Block; b != nil && strings.ToLower(b.Target) == id {
		return true
	}
	return strings.ToLower(ev.Image) == id || ev.SHA512 == id || strings.ToLower(ev.List) == id || ev.GlanceID == id
}
