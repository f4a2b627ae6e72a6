package trace

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/vmgate/vmgate/internal/journal"
)

// JournalPath is where a node keeps its trace journal.
func JournalPath(stateDir string) string { return filepath.Join(stateDir, "trace", "journal.jsonl") }

// Append writes records to the trace journal: one write and one fdatasync for the few
// records of the hook or of terminate, as few batches as the journal allows for the many of
// a large sync. When it returns nil the records are on disk; on an error, a single batch
// left nothing behind. Each record is bounded first (see Bound), so any record fits.
func Append(stateDir string, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	data := make([]json.RawMessage, len(recs))
	for i := range recs {
		// Whatever the input, the record fits: no record, no start, so a refusal that
		// could not be recorded would be a start nobody can trace.
		Bound(&recs[i])
		b, err := json.Marshal(&recs[i])
		if err != nil {
			return fmt.Errorf("trace record: %w", err)
		}
		data[i] = b
	}
	j, err := journal.Open(JournalPath(stateDir), journal.Options{})
	if err != nil {
		return fmt.Errorf("trace journal: %w", err)
	}
	defer j.Close()
	if _, err := j.AppendMany(data...); err != nil {
		return fmt.Errorf("trace journal: %w", err)
	}
	return nil
}
