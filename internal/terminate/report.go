package terminate

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what one run did: the plan, and the results when it acted.
type Report struct {
	Scope   string
	Plan    *Plan
	DryRun  bool
	Results []Result // one per target when the plan was executed
}

// Failed returns the results whose action failed.
func (r *Report) Failed() []Result {
	var f []Result
	for _, res := range r.Results {
		if res.Err != nil {
			f = append(f, res)
		}
	}
	return f
}

// result is what the result column says of an item.
func (r *Report) result(it *Item) (action, result string) {
	switch it.Verdict {
	case Target:
		action = string(r.Plan.Options.Action)
		switch {
		case r.DryRun:
			result = "planned (dry run)"
		case r.Plan.Refused != nil:
			result = "not done: --max exceeded"
		default:
			result = "not done"
			for _, res := range r.Results {
				if res.Item != it {
					continue
				}
				switch {
				case res.Err != nil:
					result = "failed: " + res.Err.Error()
				case res.Note != "":
					result = "done: " + res.Note
				default:
					result = "done"
				}
			}
		}
	case Unclassified:
		action, result = "none", "not acted on: unclassified"
	case Grace:
		action, result = "none", "left alone: within --grace"
	case NotBlocked:
		action, result = "none", "left alone: --blocked-only"
	default:
		action, result = "none", "-"
	}
	return action, result
}

// shown are the items a report lists: all but the endorsed and exempt VMs, which are
// counted.
func (r *Report) shown() []*Item {
	var items []*Item
	for i := range r.Plan.Items {
		if v := r.Plan.Items[i].Verdict; v != Endorsed && v != Exempt {
			items = append(items, &r.Plan.Items[i])
		}
	}
	return items
}

// Summary is one line of counts.
func (r *Report) Summary() string {
	p := r.Plan
	s := fmt.Sprintf("%s: %d running VMs: %d endorsed, %d exempt, %d targets", r.Scope, len(p.Items),
		p.Count(Endorsed), p.Count(Exempt), p.Count(Target))
	if n := p.Count(Grace); n > 0 {
		s += fmt.Sprintf(", %d within --grace %s", n, p.Options.Grace)
	}
	s += fmt.Sprintf(", %d unclassified", p.Count(Unclassified))
	if n := p.Count(NotBlocked); n > 0 {
		s += fmt.Sprintf(", %d not blocked (--blocked-only)", n)
	}
	switch {
	case r.DryRun:
		s += fmt.Sprintf("; dry run: nothing changed (action would be %s)", p.Options.Action)
	case p.Refused != nil:
		s += "; refused: nothing changed"
	case len(r.Results) > 0:
		s += fmt.Sprintf("; %s: %d done, %d failed", p.Options.Action, len(r.Results)-len(r.Failed()), len(r.Failed()))
	}
	return s
}

// WriteTable prints the report for a person: one row per VM that is not endorsed, then the
// summary.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	items := r.shown()
	if len(items) > 0 {
		fmt.Fprintln(tw, "DOMAIN\tUUID\tIMAGE\tSTATUS\tREVOKED AT\tREASON\tACTION\tRESULT")
	}
	for _, it := range items {
		action, result := r.result(it)
		reason := it.Reason
		if it.Note != "" {
			reason += " [" + it.Note + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(it.VM.Name), cell(it.VM.UUID), cell(it.Image), cell(it.Status),
			cell(formatTime(it.RevokedAt)), cell(reason), action, cell(result))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, r.Summary())
	return err
}

// cell keeps a value on one line and never empty, so the columns stay aligned.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// reportJSON is `vmgate terminate --json`'s output.
type reportJSON struct {
	Scope   string     `json:"scope"`
	Action  string     `json:"action"`
	DryRun  bool       `json:"dry_run"`
	Time    time.Time  `json:"time"`
	Grace   string     `json:"grace"`
	Max     int        `json:"max"`
	Force   bool       `json:"force"`
	Refused string     `json:"refused,omitempty"`
	Counts  countsJSON `json:"counts"`
	VMs     []vmJSON   `json:"vms"`
}

type countsJSON struct {
	Running      int `json:"running"`
	Endorsed     int `json:"endorsed"`
	Exempt       int `json:"exempt"`
	Targets      int `json:"targets"`
	Grace        int `json:"grace"`
	Unclassified int `json:"unclassified"`
	NotBlocked   int `json:"not_blocked"`
	Done         int `json:"done"`
	Failed       int `json:"failed"`
}

type vmJSON struct {
	Name      string     `json:"name"`
	UUID      string     `json:"uuid,omitempty"`
	Verdict   Verdict    `json:"verdict"`
	Image     string     `json:"image,omitempty"`
	Status    string     `json:"status"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	Note      string     `json:"note,omitempty"`
	Action    string     `json:"action"`
	Result    string     `json:"result"`
}

// WriteJSON prints the report for scripts: every VM that is not endorsed or exempt, and the
// counts.
func (r *Report) WriteJSON(w io.Writer) error {
	p := r.Plan
	out := reportJSON{Scope: r.Scope, Action: string(p.Options.Action), DryRun: r.DryRun, Time: p.Options.Now.UTC(),
		Grace: p.Options.Grace.String(), Max: p.Options.Max, Force: p.Options.Force, VMs: []vmJSON{},
		Counts: countsJSON{Running: len(p.Items), Endorsed: p.Count(Endorsed), Exempt: p.Count(Exempt), Targets: p.Count(Target),
			Grace: p.Count(Grace), Unclassified: p.Count(Unclassified), NotBlocked: p.Count(NotBlocked), Failed: len(r.Failed())}}
	out.Counts.Done = len(r.Results) - out.Counts.Failed
	if p.Refused != nil {
		out.Refused = p.Refused.Error()
	}
	for _, it := range r.shown() {
		action, result := r.result(it)
		v := vmJSON{Name: it.VM.Name, UUID: it.VM.UUID, Verdict: it.Verdict, Image: it.Image, Status: it.Status,
			Reason: it.Reason, Note: it.Note, Action: action, Result: result}
		if !it.RevokedAt.IsZero() {
			at := it.RevokedAt.UTC()
			v.RevokedAt = &at
		}
		out.VMs = append(out.VMs, v)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
