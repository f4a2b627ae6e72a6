package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/imagehash"
	"github.com/vmgate/vmgate/internal/openstack"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/trace"
)

func newSyncCommand(g *globalOptions) *cobra.Command {
	var cloud string
	cmd := &cobra.Command{
		Use:   "sync [--cloud NAME]",
		Short: "Fetch, verify and check every subscription's image list; write the snapshot",
		Long: `sync makes one pass over every subscription: it fetches the image list and its
signature, verifies the signature against the subscription's keys before reading anything,
checks the list (identifier, dates, max_age, version never going back, duplicates), records
what changed in the history, and writes a new snapshot for the hook.

With image_dirs configured, it then makes each file in them immutable (chattr +i; qcow2
overlays and files a running VM writes to are left writable and logged) and hashes the ones
it has not hashed yet, so that a VM's first start does not wait for its base image to be
read. The hook serves a cached sum only for a file that cannot have changed since it was
hashed: immutable, under fs-verity, or writable by root alone; any other base image is read
in full at every start. chattr -i lets you change an image; sync seals it again.

A refused list changes nothing: the last accepted list of that subscription stays in force
until it expires. The snapshot is written for the others all the same.

On an OpenStack cloud (openstack.cloud in the configuration, or --cloud), sync also lists
every Glance image and maps the id of each one whose sha512 a list endorses or revoked, so
that the hook judges a Nova instance's disks (whose base files Nova names after Glance ids)
without a network call. An image whose block_device_mapping property makes Nova boot
something else is not mapped (openstack.allow_image_block_device_mapping).
Glance's own os_hash_value (os_hash_algo sha512) is believed first; the properties that
image-sync tools set (atrope's image_hash and sha512, cloudkeeper's APPLIANCE_ATTRIBUTES)
only when Glance computed no sha512, and only on public images or images of
openstack.trusted_projects. With openstack.deactivate_revoked, revoked images are
deactivated in Glance, and reactivated when endorsed again. If Glance cannot be reached,
the ids mapped before stay in force and images uploaded since are refused.

Exit codes: 0 every list accepted or unchanged, 1 a list was refused (stderr names the
subscription, the cause and what to do), 2 vmgate could not run or record the sync, or
could not list or change Glance.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := g.setup()
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("cloud") {
				cfg.OpenStack.Cloud = cloud
			}
			syncer := &policy.Syncer{Config: cfg, Log: log}
			syncer.Glance, syncer.GlanceOptions = openstack.ForSync(cfg.OpenStack)
			if cmd.Flags().Changed("cloud") && cloud == "" {
				syncer.Glance = openstack.CloudGlance("") // $OS_CLOUD or the OS_* variables
			}
			rep, err := syncer.Run(cmd.Context())
			if err != nil {
				return err
			}
			printSyncReport(cmd.OutOrStdout(), cmd.ErrOrStderr(), rep)
			// The SIEM hears of lists and endorsements too, through the trace journal.
			if err := trace.Append(cfg.StateDir, syncRecords(rep.Events, time.Now())...); err != nil {
				return fmt.Errorf("the sync took effect and is in the history, but its trace records could not be written: %w", err)
			}
			if len(cfg.ImageDirs) > 0 {
				// Hash new base images now, so that their first VM start does not wait.
				st, err := imagehash.New(admission.HashCacheDir(cfg.StateDir)).Prehash(cmd.Context(), cfg.ImageDirs, log, true)
				if err != nil {
					return fmt.Errorf("image_dirs: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "image_dirs: %d files, %d hashed now (%d MiB), %d already known, %d skipped\n",
					st.Files, st.Hashed, st.Bytes>>20, st.Cached, st.Errors)
				if st.Sealed > 0 || st.Unsealed > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "image_dirs: %d made immutable now (chattr -i to change one), %d left writable and hashed at every start (see the log)\n", st.Sealed, st.Unsealed)
				}
			}
			if gr := rep.Glance; gr != nil && (gr.Err != nil || len(gr.GuardErrs) > 0) {
				return &outcome{code: exitError} // already explained on stderr
			}
			if rep.Refused() {
				return &outcome{code: exitRefused} // already explained on stderr
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cloud, "cloud", "", "map the Glance images of this cloud (its name in clouds.yaml, or '' for $OS_CLOUD or the OS_* variables); default openstack.cloud")
	return cmd
}

func printSyncReport(out, errw io.Writer, rep *policy.Report) {
	for _, r := range rep.Results {
		if r.Refusal != nil {
			fmt.Fprintf(errw, "vmgate: subscription %s: list refused: %s\n  what to do: %s\n", r.Subscription, r.Refusal, r.Refusal.Hint())
			if r.List != "" {
				fmt.Fprintf(errw, "  still in force: list %s version %s\n", r.List, r.Version)
			}
			continue
		}
		fmt.Fprintf(out, "%s: %s list %s version %s, %d images endorsed%s\n",
			r.Subscription, r.Outcome, r.List, r.Version, r.Endorsed, changes(r.Changes))
	}
	if gr := rep.Glance; gr != nil {
		printGlanceReport(out, errw, gr)
	}
	for _, ev := range rep.Events {
		if ev.Event == policy.EventGlanceDeactivated || ev.Event == policy.EventGlanceReactivated {
			fmt.Fprintf(out, "glance: %s\n", ev.Message)
		}
	}
	m := rep.Snapshot
	fmt.Fprintf(out, "snapshot %d: %d images known, fresh until %s\n", m.Serial, m.Images, m.Expires.UTC().Format("2006-01-02T15:04:05Z"))
}

// syncRecords turns the history events of a sync into trace records: list.accepted,
// list.refused, image.endorsed and image.revoked (an expiry is a revocation whose reason
// says so). Changes of metadata stay in the history only.
func syncRecords(events []policy.Event, now time.Time) []trace.Record {
	host, _ := os.Hostname()
	var recs []trace.Record
	for _, ev := range events {
		r := trace.Record{Time: now.UTC(), Host: host, Outcome: trace.OutcomeSuccess, Reason: ev.Message, Version: version}
		switch ev.Event {
		case policy.EventListAccepted, policy.EventListRefused:
			r.Event = trace.ListAccepted
			if ev.Event == policy.EventListRefused {
				r.Event, r.Outcome, r.Reason = trace.ListRefused, trace.OutcomeFailure, ev.Reason+": "+ev.Message
			}
			r.List = &trace.List{Subscription: ev.Subscription, Identifier: ev.List, Version: ev.ListVersion, SHA256: ev.ListSHA256}
		case policy.EventImageEndorsed, policy.EventImageRevoked, policy.EventImageExpired:
			r.Event = trace.ImageEndorsed
			status := "endorsed"
			if ev.Event != policy.EventImageEndorsed {
				r.Event, status = trace.ImageRevoked, strings.TrimPrefix(ev.Event, "image.")
			}
			r.Images = []trace.Image{{SHA512: ev.SHA512, Identifier: ev.Image, Title: ev.Title, Version: ev.Version,
				Status: status, Subscription: ev.Subscription, List: ev.List, ListVersion: ev.ListVersion}}
		case policy.EventGlanceDeactivated, policy.EventGlanceReactivated:
			r.Event = trace.ImageDeactivated
			if ev.Event == policy.EventGlanceReactivated {
				r.Event = trace.ImageReactivated
			}
			r.Images = []trace.Image{{GlanceID: ev.GlanceID, SHA512: ev.SHA512, Title: ev.Title}}
		case policy.EventBlockAdded, policy.EventBlockRemoved, policy.EventBlockExpired:
			b := ev.Block
			if b == nil {
				continue
			}
			r.Event = ev.Event // the trace's names are the history's
			r.Block = admission.TraceBlock(b)
			if ev.Event == policy.EventBlockAdded {
				r.Reason = b.Reason
			}
		default:
			continue
		}
		recs = append(recs, r)
	}
	return recs
}

func printGlanceReport(out, errw io.Writer, gr *policy.GlanceReport) {
	if gr.Err != nil {
		fmt.Fprintf(errw, "vmgate: glance: %v\n  the Glance images mapped before stay in force; images uploaded since are refused until a sync reaches Glance\n  what to do: check the cloud's credentials (clouds.yaml or OS_* variables) and that Keystone and Glance answer\n", gr.Err)
	} else {
		fmt.Fprintf(out, "glance (cloud %s): %d images listed, %d mapped to images of the lists", gr.Cloud, gr.Listed, gr.Mapped)
		if gr.Conflicts > 0 {
			fmt.Fprintf(out, ", %d whose hash properties disagree (see vmgate images --history)", gr.Conflicts)
		}
		if gr.Refused > 0 {
			fmt.Fprintf(out, ", %d not mapped because a block_device_mapping property makes Nova boot something else (see openstack.allow_image_block_device_mapping)", gr.Refused)
		}
		if gr.Untrusted > 0 {
			fmt.Fprintf(out, ", %d with only a sync tool's hash property from an untrusted project (see openstack.trusted_projects)", gr.Untrusted)
		}
		fmt.Fprintln(out)
	}
	for _, err := range gr.GuardErrs {
		fmt.Fprintf(errw, "vmgate: glance: openstack.deactivate_revoked: %v\n  the hook refuses the image at boot all the same; the next sync tries again\n", err)
	}
}

func changes(c map[string]int) string {
	var parts []string
	for ev, n := range c {
		if name, ok := strings.CutPrefix(ev, "image."); ok {
			parts = append(parts, fmt.Sprintf("%s %d", name, n))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	sort.Strings(parts)
	return "; this sync: " + strings.Join(parts, ", ")
}
