package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/atomicfile"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// History events of the site's own blocks.
const (
	EventBlockAdded   = "block.added"
	EventBlockRemoved = "block.removed"
	EventBlockExpired = "block.expired"
)

// Sources of a block: who declared it.
const (
	BlockFromCLI    = "cli"
	BlockFromConfig = "config"
)

// maxReason bounds a block's reason and target.
const maxReason = 1024

// maxBlocksFile bounds what LoadBlocks reads: far beyond any site's blocks.
const maxBlocksFile = 64 << 20

// blocksFile is the on-disk form of the site's blocks.
type blocksFile struct {
	Blocks []snapshot.Block `json:"blocks"`
}

// LoadBlocks reads the site's blocks; a missing file is none. A corrupt file is an error,
// never "no blocks": a block must not lift itself because its file was damaged.
func LoadBlocks(path string) ([]snapshot.Block, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blocks: %w", err)
	}
	defer f.Close()
	var bf blocksFile
	dec := json.NewDecoder(io.LimitReader(f, maxBlocksFile))
	if err := dec.Decode(&bf); err != nil {
		return nil, fmt.Errorf("blocks file %s is corrupt: %w (every block is in the history, vmgate images --history; restore the file from it or a backup)", path, err)
	}
	for i, b := range bf.Blocks {
		if err := checkBlock(&b); err != nil {
			return nil, fmt.Errorf("blocks file %s: block %d: %w", path, i, err)
		}
	}
	return bf.Blocks, nil
}

func saveBlocks(path string, blocks []snapshot.Block) error {
	if blocks == nil {
		blocks = []snapshot.Block{}
	}
	data, err := json.MarshalIndent(blocksFile{Blocks: blocks}, "", "  ")
	if err != nil {
		return fmt.Errorf("blocks: %w", err)
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o644)
}

// NewBlock checks and normalises a block: kind image, user or project, a target, a reason.
func NewBlock(kind, target, reason string, until time.Time, by, source string, now time.Time) (snapshot.Block, error) {
	b := snapshot.Block{Kind: kind, Target: strings.TrimSpace(target), Reason: strings.TrimSpace(reason),
		Until: until.UTC(), At: now.UTC(), By: by, Source: source}
	if b.Kind == snapshot.BlockImage {
		b.Target = strings.ToLower(b.Target)
	}
	if err := checkBlock(&b); err != nil {
		return b, err
	}
	if !b.Until.IsZero() && !b.Until.After(now) {
		return b, fmt.Errorf("--until %s is not in the future", b.Until.Format(time.RFC3339))
	}
	return b, nil
}

func checkBlock(b *snapshot.Block) error {
	switch b.Kind {
	case snapshot.BlockImage, snapshot.BlockUser, snapshot.BlockProject:
	default:
		return fmt.Errorf("block kind %q: want image, user or project", b.Kind)
	}
	if b.Target == "" || strings.ContainsAny(b.Target, " \t\r\n") {
		return fmt.Errorf("block %s: %q is not an id", b.Kind, b.Target)
	}
	if b.Reason == "" {
		return errors.New("a block needs a reason: the history keeps why")
	}
	if len(b.Reason) > maxReason || len(b.Target) > maxReason {
		return fmt.Errorf("a block's reason and target are at most %d bytes: the reason goes into every refusal", maxReason)
	}
	return nil
}

// sameTarget reports whether two blocks name the same thing.
func sameTarget(a, b *snapshot.Block) bool {
	return a.Kind == b.Kind && slices.Equal(snapshot.BlockKeys(a.Kind, a.Target), snapshot.BlockKeys(b.Kind, b.Target))
}

func blockEvent(name string, b *snapshot.Block, msg string) Event {
	bb := *b
	return Event{Event: name, Block: &bb, Message: msg}
}

// reconcileBlocks lifts the blocks whose until has passed and brings the configuration's
// blocks in line with cfg, and returns the blocks now in force and what changed.
func reconcileBlocks(blocks []snapshot.Block, cfg []config.Block, now time.Time) ([]snapshot.Block, []Event) {
	var events []Event
	var kept []snapshot.Block
	for i := range blocks {
		b := &blocks[i]
		if !b.ActiveAt(now) {
			events = append(events, blockEvent(EventBlockExpired, b, "expired at "+b.Until.UTC().Format(TimeLayout)))
			continue
		}
		kept = append(kept, *b)
	}
	blocks = kept

	want := make([]snapshot.Block, 0, len(cfg))
	for _, c := range cfg {
		kind, target := c.Target()
		b, err := NewBlock(kind, target, c.Reason, c.Until, "configuration", BlockFromConfig, now)
		if err != nil {
			continue // an until in the past: nothing to block; the rest was validated on load
		}
		want = append(want, b)
	}
	kept = blocks[:0:0]
	for i := range blocks {
		b := &blocks[i]
		if b.Source != BlockFromConfig {
			kept = append(kept, *b)
			continue
		}
		j := slices.IndexFunc(want, func(w snapshot.Block) bool { return sameTarget(&w, b) })
		if j < 0 {
			events = append(events, blockEvent(EventBlockRemoved, b, "no longer in the configuration's blocks"))
			continue
		}
		if w := want[j]; w.Reason != b.Reason || !w.Until.Equal(b.Until) {
			events = append(events, blockEvent(EventBlockAdded, &w, fmt.Sprintf("changed in the configuration (was: %s)", b.Describe())))
			kept = append(kept, w)
		} else {
			kept = append(kept, *b)
		}
		want = slices.Delete(want, j, j+1)
	}
	for i := range want {
		events = append(events, blockEvent(EventBlockAdded, &want[i], "declared in the configuration"))
		kept = append(kept, want[i])
	}
	return kept, events
}

// PendingBlocks are the configuration's blocks that the next sync (or block, or unblock)
// would bring in or change: what `vmgate blocks` lists as pending.
func PendingBlocks(blocks []snapshot.Block, cfg []config.Block, now time.Time) []snapshot.Block {
	_, events := reconcileBlocks(blocks, cfg, now)
	var pending []snapshot.Block
	for _, ev := range events {
		if ev.Event == EventBlockAdded {
			pending = append(pending, *ev.Block)
		}
	}
	return pending
}

// BlockChange is one `vmgate block` or `vmgate unblock`: exactly one of Add and Remove.
// For Remove, Reason and By say why and who lifted it.
type BlockChange struct {
	Add    *snapshot.Block
	Remove *snapshot.Block
}

// ErrNotBlocked is returned by ChangeBlocks when Remove names nothing blocked.
var ErrNotBlocked = errors.New("not blocked")

// BlockResult is what ChangeBlocks did.
type BlockResult struct {
	Events []Event
	Blocks []snapshot.Block // in force now
	// Snapshot is false when there was no snapshot to bring the blocks into (no sync yet):
	// they take effect with the first one.
	Snapshot bool
}

// ChangeBlocks adds or lifts one of the site's blocks and brings it into the snapshot at
// once: the snapshot in force is rewritten with the same endorsements and the new blocks,
// without a fetch. The change is in the history before it takes effect. It takes the
// sync's lock, so that a sync under way and a block cannot undo each other.
func ChangeBlocks(cfg *config.Config, ch BlockChange, now time.Time) (*BlockResult, error) {
	dir := cfg.Paths().PolicyDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("blocks: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	blocks, err := LoadBlocks(cfg.Paths().Blocks())
	if err != nil {
		return nil, err
	}
	blocks, events := reconcileBlocks(blocks, cfg.Blocks, now)
	switch {
	case ch.Add != nil:
		msg := ""
		if i := slices.IndexFunc(blocks, func(b snapshot.Block) bool { return b.Source == BlockFromCLI && sameTarget(&b, ch.Add) }); i >= 0 {
			msg = fmt.Sprintf("replaces the block of %s by %s: %s", blocks[i].At.UTC().Format(TimeLayout), blocks[i].By, blocks[i].Describe())
			blocks = slices.Delete(blocks, i, i+1)
		}
		blocks = append(blocks, *ch.Add)
		events = append(events, blockEvent(EventBlockAdded, ch.Add, msg))
	case ch.Remove != nil:
		i := slices.IndexFunc(blocks, func(b snapshot.Block) bool { return b.Source == BlockFromCLI && sameTarget(&b, ch.Remove) })
		if i < 0 {
			if slices.ContainsFunc(blocks, func(b snapshot.Block) bool { return sameTarget(&b, ch.Remove) }) {
				return nil, fmt.Errorf("%s %s is blocked by the configuration (blocks:): remove it there and run vmgate sync", ch.Remove.Kind, ch.Remove.Target)
			}
			return nil, fmt.Errorf("%s %s: %w (vmgate blocks lists what is)", ch.Remove.Kind, ch.Remove.Target, ErrNotBlocked)
		}
		lifted := blocks[i]
		lifted.By, lifted.At = ch.Remove.By, ch.Remove.At
		events = append(events, blockEvent(EventBlockRemoved, &lifted, ch.Remove.Reason))
		blocks = slices.Delete(blocks, i, i+1)
	}
	if err := appendHistory(HistoryPath(dir), events); err != nil {
		return nil, err
	}
	res := &BlockResult{Events: events, Blocks: blocks}
	if err := saveBlocks(cfg.Paths().Blocks(), blocks); err != nil {
		return res, fmt.Errorf("the change is in the history but could not be saved, so it did not take effect: %w", err)
	}
	res.Snapshot, err = reblock(cfg, blocks)
	if err != nil {
		return res, fmt.Errorf("the change is saved and in the history, but the snapshot could not be rewritten (it takes effect at the next vmgate sync): %w", err)
	}
	return res, nil
}

// reblock rewrites the snapshot in force with new blocks and the same endorsements. It
// reports false when there is no snapshot yet.
func reblock(cfg *config.Config, blocks []snapshot.Block) (bool, error) {
	path := cfg.Paths().Snapshot()
	snap, err := snapshot.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	meta := snap.Meta()
	var entries []snapshot.Entry
	err = snap.Each(func(e *snapshot.Entry) error { entries = append(entries, *e); return nil })
	snap.Close()
	if err != nil {
		return false, err
	}
	// The serial goes on from the state's, so that the next sync's is higher still.
	st, err := LoadState(StatePath(cfg.Paths().PolicyDir()))
	if err != nil {
		return false, err
	}
	st.Serial = max(st.Serial, meta.Serial) + 1
	if err := st.Save(StatePath(cfg.Paths().PolicyDir())); err != nil {
		return false, err
	}
	// Created stays the sync's: the snapshot's age tells whether syncs still succeed.
	meta.Serial = st.Serial
	return true, snapshot.Write(path, meta, entries, blocks)
}
