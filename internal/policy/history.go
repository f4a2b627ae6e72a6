package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/vmgate/vmgate/internal/journal"
)

// ReadHistory calls fn for every history event, oldest first. A node that never synced has
// an empty history.
func ReadHistory(path string, fn func(seq uint64, at time.Time, hash string, ev Event) error) error {
	err := journal.Read(path, 1, func(e journal.Entry) error {
		var ev Event
		if err := json.Unmarshal(e.Data, &ev); err != nil {
			return fmt.Errorf("history record %d: %w", e.Seq, err)
		}
		return fn(e.Seq, e.Time, e.Hash, ev)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("history %s: %w", path, err)
	}
	return nil
}

// appendHistory records events, one write and one sync per batch the journal allows (a sync
// of a large new list records one event per image). A failure
// after some batches leaves those recorded and nothing taking effect: the next sync records
// the same changes again, so the history may say something twice but never misses it.
func appendHistory(path string, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	j, err := journal.Open(path, journal.Options{})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer j.Close()
	recs := make([]json.RawMessage, len(events))
	for i := range events {
		if recs[i], err = json.Marshal(&events[i]); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	if _, err := j.AppendMany(recs...); err != nil {
		return fmt.Errorf("history: %w (nothing from this sync took effect)", err)
	}
	return nil
}
