package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/trace"
)

func TestParseUntil(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"2026-12-01T08:00:00+01:00": time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC),
		"2026-12-01":                time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		"72h":                       now.Add(72 * time.Hour),
	} {
		got, err := parseUntil(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseUntil(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"tomorrow", "-1h", "0s", "2026-13-01"} {
		if _, err := parseUntil(bad, now); err == nil {
			t.Errorf("parseUntil(%q) accepted", bad)
		}
	}
}

// TestBlockCLI: block, blocks, images --all, unblock, with their exit codes and records.
func TestBlockCLI(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfgPath := filepath.Join(dir, "vmgate.yaml")
	os.WriteFile(cfgPath, []byte("state_dir: "+state+"\nblocks:\n  - {project: p-1, reason: suspended}\n"), 0o644)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(state, 0o755)
	sha := strings.Repeat("c0", 64)
	entries := []snapshot.Entry{{SHA512: sha, Images: []snapshot.Image{{Subscription: "s", Identifier: "worker", Title: "Worker", Version: "1",
		Status: snapshot.Endorsed, Since: time.Now().Add(-time.Hour)}}}}
	if err := snapshot.Write(cfg.Paths().Snapshot(), snapshot.Meta{Created: time.Now(), Expires: time.Now().Add(time.Hour)}, entries, nil); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		return runEndorseCmd(t, append([]string{"--config", cfgPath}, args...)...)
	}

	if _, stderr, code := run("block", "image", "worker"); code != exitError || !strings.Contains(stderr, "reason") {
		t.Fatalf("block without --reason: %d %s", code, stderr)
	}
	if _, stderr, code := run("block", "vm", "x", "--reason", "r"); code != exitError || !strings.Contains(stderr, "want image, user or project") {
		t.Fatalf("block of a bad kind: %d %s", code, stderr)
	}
	out, stderr, code := run("block", "image", "Worker", "--reason", "CVE-2026-7 in sshd", "--until", "72h")
	if code != exitOK || !strings.Contains(out, "blocked image worker: CVE-2026-7 in sshd (until ") || !strings.Contains(out, `names: worker "Worker" version 1`) {
		t.Fatalf("block: %d\n%s%s", code, out, stderr)
	}
	out, _, _ = run("images", "--all", "--json")
	var rows []imageJSON
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Status != "blocked" || !strings.Contains(rows[0].Reason, "CVE-2026-7") {
		t.Fatalf("images --all: %v %s", err, out)
	}
	if out, _, _ = run("images"); strings.Contains(out, "worker") {
		t.Fatalf("a blocked image listed as endorsed:\n%s", out)
	}
	// The configuration's blocks came in with the change; one added since is pending until
	// the next sync or change.
	os.WriteFile(cfgPath, []byte("state_dir: "+state+"\nblocks:\n  - {project: p-1, reason: suspended}\n  - {user: u-2, reason: left}\n"), 0o644)
	out, _, _ = run("blocks", "--json")
	var bl []struct {
		Kind, Target, Status, Source, By string
	}
	if err := json.Unmarshal([]byte(out), &bl); err != nil || len(bl) != 3 || bl[0].Target != "p-1" || bl[0].Status != "active" || bl[0].Source != "config" ||
		bl[1].Target != "worker" || bl[1].Status != "active" || bl[1].Source != "cli" || bl[2].Target != "u-2" || bl[2].Status != "pending" {
		t.Fatalf("blocks: %v %s", err, out)
	}
	if _, stderr, code := run("unblock", "image", "nothing", "--reason", "r"); code != exitRefused || !strings.Contains(stderr, "not blocked") {
		t.Fatalf("unblock of nothing: %d %s", code, stderr)
	}
	if out, stderr, code := run("unblock", "image", "WORKER", "--reason", "patched"); code != exitOK || !strings.Contains(out, "unblocked image worker (patched)") {
		t.Fatalf("unblock: %d %s%s", code, out, stderr)
	}
	// block, then unblock, each in the trace with who ran it; the config's block came in with the first change.
	var recs []trace.Record
	if err := journal.Read(trace.JournalPath(state), 1, func(e journal.Entry) error {
		var r trace.Record
		err := json.Unmarshal(e.Data, &r)
		recs = append(recs, r)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		if r.Block != nil {
			got = append(got, r.Event+" "+r.Block.Target+" "+r.Block.Source)
			if r.Block.Source == "cli" && (r.Actor == nil || r.Block.By == "") {
				t.Errorf("%s without who: %+v", r.Event, r)
			}
		}
	}
	if strings.Join(got, "|") != "block.added p-1 config|block.added worker cli|block.added u-2 config|block.removed worker cli" {
		t.Fatalf("trace: %q", got)
	}
	out, _, _ = run("images", "--history")
	if !strings.Contains(out, "block.added") || !strings.Contains(out, "image worker") || !strings.Contains(out, "(cli)") || !strings.Contains(out, "(config)") {
		t.Fatalf("history:\n%s", out)
	}
}
