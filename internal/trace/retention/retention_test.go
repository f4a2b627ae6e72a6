package retention

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/trace"
)

var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// node writes 10 records, one a day, the last one today, and returns the config and entries.
func node(t *testing.T, sinks string) (*config.Config, []journal.Entry) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf("state_dir: %s\ntrace:\n  retention: 120h\n%s", dir, sinks)))
	if err != nil {
		t.Fatal(err)
	}
	day := 0
	j, err := journal.Open(trace.JournalPath(dir), journal.Options{Now: func() time.Time { return now.Add(time.Duration(day-9) * 24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var all []journal.Entry
	for day = 0; day < 10; day++ {
		b, _ := json.Marshal(trace.Record{Event: trace.VMStarted, Domain: trace.Domain{Name: fmt.Sprint("vm", day)}})
		es, err := j.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, es...)
	}
	return cfg, all
}

func ack(t *testing.T, cfg *config.Config, sink string, e journal.Entry) {
	os.MkdirAll(ship.CursorDir(cfg.StateDir), 0o700)
	b, _ := json.Marshal(ship.Cursor{Seq: e.Seq, Hash: e.Hash, Time: now})
	if err := os.WriteFile(ship.CursorPath(cfg.StateDir, sink), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

const twoSinks = "  sinks:\n    - {name: a, type: jsonfile, path: /tmp/a.jsonl}\n    - {name: b, type: jsonfile, path: /tmp/b.jsonl}\n"

func TestPruneOnlyWhatEverySinkAcknowledged(t *testing.T) {
	cfg, all := node(t, twoSinks)
	// Records of days 0..3 are past the 5-day retention (day 4 is exactly at it); sink a has all, sink b only 0..2.
	ack(t, cfg, "a", all[9])
	ack(t, cfg, "b", all[2])
	res, err := Prune(cfg, now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped != 3 || res.AnchorSeq != all[2].Seq || res.Acked != all[2].Seq {
		t.Fatalf("%+v", res)
	}
	// b catches up: everything past retention goes, nothing within it.
	ack(t, cfg, "b", all[9])
	if res, err = Prune(cfg, now); err != nil || res.Dropped != 1 || res.AnchorSeq != all[3].Seq {
		t.Fatalf("%+v %v", res, err)
	}
	rep, err := journal.Verify(trace.JournalPath(cfg.StateDir))
	if err != nil || !rep.Intact() || rep.Records != 6 || rep.Anchor != all[3].Hash {
		t.Fatalf("after pruning: %+v %v", rep, err)
	}
}

func TestNothingShippedNothingDropped(t *testing.T) {
	cfg, _ := node(t, "")
	if res, err := Prune(cfg, now); err != nil || !res.NoSinks || res.Dropped != 0 {
		t.Fatalf("no sinks: %+v %v", res, err)
	}
	cfg, _ = node(t, twoSinks) // sinks configured, but none has shipped yet
	if res, err := Prune(cfg, now); err != nil || res.Dropped != 0 {
		t.Fatalf("nothing shipped: %+v %v", res, err)
	}
	rep, _ := journal.Verify(trace.JournalPath(cfg.StateDir))
	if rep.Records != 10 {
		t.Fatalf("%d records left", rep.Records)
	}
}

func TestNoJournalYet(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := config.Parse([]byte("state_dir: " + filepath.Join(dir, "s") + "\ntrace:\n" + twoSinks))
	os.MkdirAll(ship.CursorDir(cfg.StateDir), 0o700)
	b, _ := json.Marshal(ship.Cursor{Seq: 3, Hash: fmt.Sprintf("%064d", 0), Time: now})
	os.WriteFile(ship.CursorPath(cfg.StateDir, "a"), b, 0o600)
	os.WriteFile(ship.CursorPath(cfg.StateDir, "b"), b, 0o600)
	if _, err := Prune(cfg, now); err != nil {
		t.Fatal(err)
	}
}
