package admission

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

func (w *world) block(kind, target, reason string, until time.Time) {
	w.blocks = append(w.blocks, snapshot.Block{Kind: kind, Target: target, Reason: reason, Until: until, At: now.Add(-time.Minute), By: "root", Source: "cli"})
}

func novaOf(user, project, glance string) *domain.Domain {
	d := nova(glance, "image", project)
	d.Nova.UserID = user
	return d
}

func TestBlockedImagesAreRefusedByEveryName(t *testing.T) {
	const glance = "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b"
	for _, c := range []struct{ name, target string }{
		{"sha512", ""}, {"sha512 upper case", "UPPER"}, {"identifier", "identifier"}, {"glance id", glance},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			good, sha := w.image("good.raw")
			w.endorse(sha, snapshot.Endorsed, "", glance)
			target := map[string]string{"": sha, "UPPER": strings.ToUpper(sha), "identifier": "IMG-" + sha[:6]}[c.target]
			if target == "" {
				target = c.target
			}
			w.block(snapshot.BlockImage, target, "CVE-2026-0001 in the kernel", time.Time{})
			j := w.judge(now)
			for _, d := range []*domain.Domain{plain("vm", good), novaOf("u1", "p1", glance)} {
				if c.target == glance && d.Nova == nil {
					continue // a Glance id names the cloud's image, not the same bytes elsewhere
				}
				dec := j.Decide(d)
				if dec.Allow || dec.Endorsed || dec.Blocked == nil {
					t.Fatalf("%s: blocked image allowed: %+v", d.Name, dec)
				}
				if !strings.HasPrefix(dec.Reason, "blocked by the site: ") || !strings.Contains(dec.Reason, "CVE-2026-0001 in the kernel") {
					t.Errorf("%s: reason %q", d.Name, dec.Reason)
				}
				if dec.Disks[0].Status != StatusBlocked {
					t.Errorf("%s: disk status %q", d.Name, dec.Disks[0].Status)
				}
			}
		})
	}
}

func TestBlockedUsersAndProjects(t *testing.T) {
	const glance = "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b"
	w := newWorld(t)
	_, sha := w.image("good.raw")
	w.endorse(sha, snapshot.Endorsed, "", glance)
	w.block(snapshot.BlockUser, "mallory", "compromised account, ticket 4711", time.Time{})
	w.block(snapshot.BlockProject, "p-bad", "project suspended", time.Time{})
	w.cfg.ExemptProjects = []string{"p-bad"}
	w.cfg.Mode = config.ModeWarn // a block holds in warn mode too
	j := w.judge(now)
	cases := []struct {
		d      *domain.Domain
		reason string
	}{
		{novaOf("alice", "p1", glance), ""},
		{novaOf("mallory", "p1", glance), "blocked by the site: user mallory: compromised account, ticket 4711"},
		{novaOf("alice", "p-bad", glance), "blocked by the site: project p-bad: project suspended"},
	}
	for _, c := range cases {
		dec := j.Decide(c.d)
		if want := c.reason == ""; dec.Allow != want || (dec.Blocked != nil) == want {
			t.Errorf("%s/%s: allow=%v blocked=%v reason=%q", c.d.Nova.UserID, c.d.Nova.ProjectID, dec.Allow, dec.Blocked, dec.Reason)
		}
		if dec.Reason != c.reason {
			t.Errorf("reason %q, want %q", dec.Reason, c.reason)
		}
	}
}

func TestBlockLiftsAtUntil(t *testing.T) {
	w := newWorld(t)
	good, sha := w.image("good.raw")
	w.endorse(sha, snapshot.Endorsed, "")
	w.block(snapshot.BlockImage, sha, "until the patch is out", now.Add(time.Hour))
	if dec := w.judge(now).Decide(plain("vm", good)); dec.Allow {
		t.Fatal("allowed while blocked")
	}
	if dec := w.judge(now.Add(time.Hour)).Decide(plain("vm", good)); !dec.Allow || dec.Blocked != nil {
		t.Fatalf("still refused after until: %+v", dec)
	}
}

// BenchmarkDecideBlocks is the hook's decision on a Nova instance with a snapshot of 10,000
// images and 0 or 10,000 blocks: each block check is one lookup, whatever their number.
func BenchmarkDecideBlocks(b *testing.B) {
	for _, n := range []int{0, 10_000} {
		b.Run(fmt.Sprint("blocks=", n), func(b *testing.B) {
			dir := b.TempDir()
			var entries []snapshot.Entry
			for i := range 10_000 {
				sha := fmt.Sprintf("%0128x", i)
				entries = append(entries, snapshot.Entry{SHA512: sha, GlanceIDs: []string{fmt.Sprintf("glance-%d", i)},
					Images: []snapshot.Image{{Subscription: "s", Identifier: fmt.Sprint("img-", i), Status: snapshot.Endorsed}}})
			}
			var blocks []snapshot.Block
			for i := range n {
				blocks = append(blocks, snapshot.Block{Kind: snapshot.BlockUser, Target: fmt.Sprint("user-", i), Reason: "r"})
			}
			p := filepath.Join(dir, "snapshot.db")
			if err := snapshot.Write(p, snapshot.Meta{Expires: now.Add(time.Hour)}, entries, blocks); err != nil {
				b.Fatal(err)
			}
			d := novaOf("alice", "p1", "glance-5000")
			for b.Loop() {
				s, err := snapshot.Open(p)
				if err != nil {
					b.Fatal(err)
				}
				j := &Judge{Snapshot: s, Config: config.Admission{Mode: config.ModeEnforce}, Now: now}
				if dec := j.Decide(d); !dec.Allow {
					b.Fatal(dec.Reason)
				}
				s.Close()
			}
		})
	}
}
