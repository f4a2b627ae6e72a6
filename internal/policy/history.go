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

// appendHistory records events, one write and one sync per batch of at most half the
// journal's batch limit (a sync of a large new list records one event per image). A failure
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
	var batch []json.RawMessage
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := j.Append(batch...); err != nil {
			return fmt.Errorf("history: %w (nothing from this sync took effect)", err)
		}
		batch, size = batch[:0], 0
		return nil
	}
	for i := range events {
		rec, err := json.Marshal(&events[i])
		if err != nil {
			return fmt.Errorf("history: %w", err)
		}
		// 256 bytes cover what the journal adds to each record (seq, time, hashes).
		if size+len(rec)+256 > journal.MaxBatchSize/2 {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, rec)
		size += len(rec) + 256
	}
	return flush()
}
