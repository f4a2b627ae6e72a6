// Package retention prunes the trace journal: records older than trace.retention go, but only
// once every configured sink has acknowledged them. A record that was never shipped is never
// dropped, so a site with no sink keeps everything.
package retention

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/trace"
)

// Result says what Prune did and what held it back.
type Result struct {
	journal.PruneResult
	Cutoff time.Time // records stamped before it are past retention
	// Acked is the highest seq every sink has acknowledged; records after it are kept.
	Acked uint64
	// NoSinks is set when no sink is configured: nothing was shipped, nothing is dropped.
	NoSinks bool
}

// Prune drops the oldest trace records that are both past retention and acknowledged by
// every sink, keeping the anchor so that the journal still verifies.
func Prune(cfg *config.Config, now time.Time) (Result, error) {
	res := Result{Cutoff: now.Add(-cfg.Trace.Retention)}
	if len(cfg.Trace.Sinks) == 0 {
		res.NoSinks = true
		return res, nil
	}
	for i, s := range cfg.Trace.Sinks {
		c, err := ship.ReadCursor(cfg.StateDir, s.Name)
		if err != nil {
			return res, fmt.Errorf("retention: %w", err)
		}
		if i == 0 || c.Seq < res.Acked {
			res.Acked = c.Seq
		}
	}
	if res.Acked == 0 {
		return res, nil
	}
	keep := func(e journal.Entry) bool { return !e.Time.Before(res.Cutoff) || e.Seq > res.Acked }
	pr, err := journal.Prune(trace.JournalPath(cfg.StateDir), keep, journal.Options{})
	if errors.Is(err, fs.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("retention: %w", err)
	}
	res.PruneResult = pr
	return res, nil
}
