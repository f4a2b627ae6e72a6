package policy

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/policytest"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

func (s *site) blocked(kind, id string) *snapshot.Block {
	s.t.Helper()
	snap, err := snapshot.Open(s.cfg.Paths().Snapshot())
	if err != nil {
		s.t.Fatal(err)
	}
	defer snap.Close()
	b, err := snap.Blocked(kind, id, s.clock)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func (s *site) change(ch BlockChange) (*BlockResult, error) {
	return ChangeBlocks(s.cfg, ch, s.clock)
}

func mustBlock(t *testing.T, kind, target, reason string, until, at time.Time) *snapshot.Block {
	t.Helper()
	b, err := NewBlock(kind, target, reason, until, "alice", BlockFromCLI, at)
	if err != nil {
		t.Fatal(err)
	}
	return &b
}

func TestBlockTakesEffectWithoutSync(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(2)
	s.publish(list("1", imgs...))
	serial := s.sync().Snapshot.Serial

	res, err := s.change(BlockChange{Add: mustBlock(t, "image", strings.ToUpper(imgs[0].SHA512), "CVE-2026-1", time.Time{}, s.clock)})
	if err != nil || !res.Snapshot {
		t.Fatalf("block: %v %+v", err, res)
	}
	if b := s.blocked(snapshot.BlockImage, imgs[0].SHA512); b == nil || b.Reason != "CVE-2026-1" || b.By != "alice" || b.Source != BlockFromCLI {
		t.Fatalf("block not in the snapshot: %+v", b)
	}
	// The endorsements are as they were, under a higher serial.
	snap, err := snapshot.Open(s.cfg.Paths().Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	m := snap.Meta()
	snap.Close()
	if m.Serial <= serial || m.Images != 2 || m.Blocks != 1 || len(m.Lists) != 1 {
		t.Fatalf("meta after block = %+v (serial before %d)", m, serial)
	}
	if e := s.lookup(imgs[1].SHA512); e == nil {
		t.Fatal("endorsement lost by the block")
	}
	// A sync keeps the block, and its serial goes on from the block's.
	s.clock = s.clock.Add(time.Minute)
	if rep := s.sync(); rep.Snapshot.Serial <= m.Serial || rep.Snapshot.Blocks != 1 {
		t.Fatalf("sync after block: %+v", rep.Snapshot)
	}
	if s.blocked(snapshot.BlockImage, imgs[0].SHA512) == nil {
		t.Fatal("sync dropped the block")
	}

	// Unblock needs the same target; the history has both, with who and why.
	if _, err := s.change(BlockChange{Remove: mustBlock(t, "image", "nothing", "x", time.Time{}, s.clock)}); !errors.Is(err, ErrNotBlocked) {
		t.Fatalf("unblock of nothing: %v", err)
	}
	if _, err := s.change(BlockChange{Remove: mustBlock(t, "image", imgs[0].SHA512, "patched in 1.2", time.Time{}, s.clock)}); err != nil {
		t.Fatal(err)
	}
	if s.blocked(snapshot.BlockImage, imgs[0].SHA512) != nil {
		t.Fatal("still blocked after unblock")
	}
	evs := s.history()
	var got []string
	for _, ev := range evs {
		if ev.Block != nil {
			got = append(got, ev.Event+" "+ev.Block.Reason+" "+ev.Message)
		}
	}
	want := []string{"block.added CVE-2026-1 ", "block.removed CVE-2026-1 patched in 1.2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("history %q, want %q", got, want)
	}
}

func TestBlockExpiresAndIsRecorded(t *testing.T) {
	s := newSite(t)
	s.publish(list("1", policytest.Images(1)...))
	s.sync()
	if _, err := s.change(BlockChange{Add: mustBlock(t, "user", "mallory", "phishing", s.clock.Add(time.Hour), s.clock)}); err != nil {
		t.Fatal(err)
	}
	if s.blocked(snapshot.BlockUser, "mallory") == nil {
		t.Fatal("not blocked")
	}
	s.clock = s.clock.Add(time.Hour)
	// Lifted at until, before anything rewrites the snapshot...
	if s.blocked(snapshot.BlockUser, "mallory") != nil {
		t.Fatal("still blocked at until")
	}
	// ...and recorded as expired by the next sync.
	s.sync()
	if n := countEvents(s.history(), EventBlockExpired); n != 1 {
		t.Fatalf("%d block.expired events", n)
	}
	bs, err := LoadBlocks(s.cfg.Paths().Blocks())
	if err != nil || len(bs) != 0 {
		t.Fatalf("blocks after expiry: %+v %v", bs, err)
	}
	if _, err := NewBlock("user", "x", "r", s.clock.Add(-time.Second), "a", BlockFromCLI, s.clock); err == nil {
		t.Fatal("a block until the past accepted")
	}
}

func TestConfigBlocksAreToldApart(t *testing.T) {
	s := newSite(t)
	s.publish(list("1", policytest.Images(1)...))
	s.cfg.Blocks = []config.Block{{Project: "p-suspended", Reason: "unpaid"}}
	s.sync()
	if b := s.blocked(snapshot.BlockProject, "p-suspended"); b == nil || b.Source != BlockFromConfig {
		t.Fatalf("config block = %+v", b)
	}
	// The command line cannot lift it, and says where it comes from.
	_, err := s.change(BlockChange{Remove: mustBlock(t, "project", "p-suspended", "paid", time.Time{}, s.clock)})
	if err == nil || !strings.Contains(err.Error(), "configuration") {
		t.Fatalf("unblock of a config block: %v", err)
	}
	// The same block again is no event; a changed reason is; a removed one is lifted.
	s.sync()
	s.cfg.Blocks[0].Reason = "unpaid since October"
	s.sync()
	s.cfg.Blocks = nil
	s.sync()
	if s.blocked(snapshot.BlockProject, "p-suspended") != nil {
		t.Fatal("a block removed from the configuration still holds")
	}
	var got []string
	for _, ev := range s.history() {
		if ev.Block != nil {
			got = append(got, ev.Event+" "+ev.Block.Source+" "+ev.Block.Reason)
		}
	}
	want := "block.added config unpaid|block.added config unpaid since October|block.removed config unpaid since October"
	if strings.Join(got, "|") != want {
		t.Fatalf("history %q", got)
	}
}

func TestCorruptBlocksFileStopsSync(t *testing.T) {
	s := newSite(t)
	s.publish(list("1", policytest.Images(1)...))
	s.sync()
	if err := os.WriteFile(s.cfg.Paths().Blocks(), []byte(`{"blocks": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Syncer{Config: s.cfg, Log: quietLog()}).Run(t.Context()); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("sync with a corrupt blocks file: %v", err)
	}
	if _, err := s.change(BlockChange{Add: mustBlock(t, "user", "u", "r", time.Time{}, s.clock)}); err == nil {
		t.Fatal("block with a corrupt blocks file")
	}
}

func TestBlockBeforeFirstSync(t *testing.T) {
	s := newSite(t)
	res, err := s.change(BlockChange{Add: mustBlock(t, "image", "some-identifier", "r", time.Time{}, s.clock)})
	if err != nil || res.Snapshot {
		t.Fatalf("block before any sync: %v %+v", err, res)
	}
	s.publish(list("1", policytest.Images(1)...))
	s.sync()
	if s.blocked(snapshot.BlockImage, "SOME-IDENTIFIER") == nil {
		t.Fatal("the first sync did not bring the block in")
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestBlockInputIsBounded(t *testing.T) {
	for _, c := range []struct{ kind, target, reason string }{
		{"image", "x", strings.Repeat("r", 1025)},
		{"user", strings.Repeat("u", 1025), "r"},
		{"user", "two words", "r"},
		{"user", "u", "  "},
		{"host", "h", "r"},
	} {
		if _, err := NewBlock(c.kind, c.target, c.reason, time.Time{}, "a", BlockFromCLI, now); err == nil {
			t.Errorf("NewBlock(%q, %.20q, %.20q) accepted", c.kind, c.target, c.reason)
		}
	}
}
