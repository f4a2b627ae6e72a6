package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/policytest"
)

// BenchmarkSync measures a whole first sync of a signed list into an empty state directory:
// read, verify, parse, check, archive, history (one record per image), state, snapshot.
func BenchmarkSync(b *testing.B) {
	benchSync(b, false)
}

// BenchmarkSyncGlance is BenchmarkSync on a cloud whose Glance (a fake, in memory: the
// network is not what is measured) holds every image of the list: the cost of mapping
// 10,000 Glance ids into the state and the snapshot.
func BenchmarkSyncGlance(b *testing.B) {
	benchSync(b, true)
}

func benchSync(b *testing.B, withGlance bool) {
	for _, n := range []int{10_000} {
		dir := b.TempDir()
		e := policytest.NewEndorser(b, dir)
		l := policytest.List{Identifier: "bench", Version: "1", Created: time.Now().Add(-time.Hour), Expires: time.Now().Add(24 * time.Hour), Images: policytest.Images(n)}
		url := e.Publish(b, dir, "image.list", l.Bytes())
		b.Run(fmt.Sprint("images=", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				cfg, err := config.Parse([]byte(fmt.Sprintf("state_dir: %s\nsubscriptions: [{name: bench, url: %q, cosign_keys: [%s]}]\n",
					filepath.Join(dir, fmt.Sprint("state-", i)), url, e.PubKey)))
				if err != nil {
					b.Fatal(err)
				}
				s := &Syncer{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
				if withGlance {
					s.Glance = glanceOf(l.Images)
				}
				b.StartTimer()
				rep, err := s.Run(context.Background())
				if err != nil || rep.Refused() || rep.Results[0].Endorsed != n || (withGlance && rep.Glance.Mapped != n) {
					b.Fatal(err, rep)
				}
			}
		})
	}
}

// BenchmarkDecodeBaseline is the floor any tool pays for the same list: read the file and
// decode its JSON into generic values. BenchmarkSync is reported as a ratio to it.
func BenchmarkDecodeBaseline(b *testing.B) {
	for _, n := range []int{10_000} {
		p := filepath.Join(b.TempDir(), "image.list")
		l := policytest.List{Identifier: "bench", Version: "1", Created: time.Now(), Expires: time.Now().Add(time.Hour), Images: policytest.Images(n)}
		if err := os.WriteFile(p, l.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprint("images=", n), func(b *testing.B) {
			for b.Loop() {
				data, err := os.ReadFile(p)
				if err != nil {
					b.Fatal(err)
				}
				var v any
				if err := json.Unmarshal(data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// glanceOf is a Glance holding one active public image per endorsed image, with the
// sha512 Glance computes itself.
func glanceOf(imgs []policytest.Image) *fakeGlance {
	g := &fakeGlance{}
	for i, im := range imgs {
		g.images = append(g.images, GlanceImage{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Name: im.Title,
			Visibility: "public", Status: "active", Properties: map[string]string{PropHashAlgo: "sha512", PropHashValue: im.SHA512}})
	}
	return g
}

// BenchmarkBlock measures `vmgate block` on a node whose snapshot holds 10,000 images: the
// history, the blocks file and the snapshot rewritten with the same endorsements. It is
// reported as a ratio to BenchmarkSync of the same list, which a block spares the site.
func BenchmarkBlock(b *testing.B) {
	dir := b.TempDir()
	e := policytest.NewEndorser(b, dir)
	l := policytest.List{Identifier: "bench", Version: "1", Created: time.Now().Add(-time.Hour), Expires: time.Now().Add(24 * time.Hour), Images: policytest.Images(10_000)}
	url := e.Publish(b, dir, "image.list", l.Bytes())
	cfg, err := config.Parse([]byte(fmt.Sprintf("state_dir: %s\nsubscriptions: [{name: bench, url: %q, cosign_keys: [%s]}]\n",
		filepath.Join(dir, "state"), url, e.PubKey)))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := (&Syncer{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Run("images=10000", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			blk, err := NewBlock("user", fmt.Sprint("user-", i), "bench", time.Time{}, "bench", BlockFromCLI, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			if res, err := ChangeBlocks(cfg, BlockChange{Add: &blk}, time.Now()); err != nil || !res.Snapshot {
				b.Fatal(err)
			}
		}
	})
}
