package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
)

func newCheckCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check [--json] [FILE|-]",
		Short: "Judge a domain XML as the hook would, without recording anything",
		Long: `check runs the hook's decision on a libvirt domain XML (a file, or - or nothing for
stdin), for example the output of virsh dumpxml, and says whether the domain may start and
why. It records nothing.

In warn mode (admission.mode: warn) the hook lets every domain start but records what it
would have refused; check reports the verdict itself.

Exit codes: 0 endorsed (the domain may start), 1 refused, 2 error (unreadable or malformed
XML, bad configuration).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			return runCheck(cmd.OutOrStdout(), in, cfg, asJSON, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the decision as JSON")
	return cmd
}

// checkJSON is `vmgate check --json`'s output.
type checkJSON struct {
	Domain    string      `json:"domain"`
	Endorsed  bool        `json:"endorsed"`
	Reason    string      `json:"reason,omitempty"`
	Exemption string      `json:"exemption,omitempty"`
	Mode      string      `json:"mode"`
	Disks     []checkDisk `json:"disks"`
}

type checkDisk struct {
	Target     string `json:"target,omitempty"`
	Source     string `json:"source,omitempty"`
	GlanceID   string `json:"glance_id,omitempty"`
	SHA512     string `json:"sha512,omitempty"`
	Status     string `json:"status"`
	Identifier string `json:"identifier,omitempty"`
	Title      string `json:"title,omitempty"`
	List       string `json:"list,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

func runCheck(out io.Writer, in io.Reader, cfg *config.Config, asJSON bool, now time.Time) error {
	d, err := domain.Parse(in)
	if err != nil {
		return err
	}
	j := admission.NewJudge(cfg, now)
	defer j.Close()
	dec := j.Decide(d)
	if asJSON {
		res := checkJSON{Domain: d.Name, Endorsed: dec.Endorsed, Reason: dec.Reason, Exemption: dec.Exemption, Mode: dec.Mode, Disks: []checkDisk{}}
		for _, dk := range dec.Disks {
			cd := checkDisk{Target: dk.Target, Source: dk.Source, GlanceID: dk.GlanceID, SHA512: dk.SHA512, Status: dk.Status, Reason: dk.Reason}
			if dk.Image != nil {
				cd.Identifier, cd.Title, cd.List = dk.Image.Identifier, dk.Image.Title, dk.Image.Subscription
			}
			res.Disks = append(res.Disks, cd)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		for _, dk := range dec.Disks {
			line := fmt.Sprintf("  %s %s: %s", dk.Target, dk.Source, dk.Status)
			if dk.Image != nil && dk.Status == "endorsed" {
				line += fmt.Sprintf(" (%s %s, list %s version %s)", dk.Image.Identifier, dk.Image.Title, dk.Image.Subscription, dk.Image.ListVersion)
			} else if dk.Reason != "" {
				line += ": " + dk.Reason
			}
			fmt.Fprintln(out, line)
		}
		switch {
		case dec.Exemption != "":
			fmt.Fprintf(out, "%s: allowed: exempt: %s\n", d.Name, dec.Exemption)
		case dec.Endorsed:
			fmt.Fprintf(out, "%s: allowed: every image is endorsed\n", d.Name)
		default:
			fmt.Fprintf(out, "%s: refused: %s\n", d.Name, dec.Reason)
			if dec.Mode == config.ModeWarn {
				fmt.Fprintln(out, "(admission.mode is warn: the hook would let it start and record a warning)")
			}
		}
	}
	if !dec.Endorsed {
		return &outcome{code: exitRefused}
	}
	return nil
}
