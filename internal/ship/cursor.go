package ship

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vmgate/vmgate/internal/atomicfile"
)

// Cursor is the last record a sink accepted. The zero Cursor means nothing was shipped yet.
type Cursor struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"` // when the sink accepted it
}

// CursorDir holds the cursor of every sink.
func CursorDir(stateDir string) string { return filepath.Join(stateDir, "trace", "cursors") }

// CursorPath is the cursor file of one sink.
func CursorPath(stateDir, sink string) string { return filepath.Join(CursorDir(stateDir), sink) }

// ReadCursor reads a sink's cursor; a sink that never shipped has the zero Cursor.
func ReadCursor(stateDir, sink string) (Cursor, error) {
	path := CursorPath(stateDir, sink)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("cursor: %w", err)
	}
	var c Cursor
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Seq == 0 || len(c.Hash) != 64 {
		// Not guessed at: a cursor too far on would skip records. Removing the file ships the
		// whole journal again, which is safe.
		return Cursor{}, fmt.Errorf("cursor %s is damaged (remove it to ship every record to sink %s again)", path, sink)
	}
	return c, nil
}

// writeCursor replaces a sink's cursor atomically and durably: a crash leaves the old cursor
// or the new one, and the old one only means records are sent again.
func writeCursor(stateDir, sink string, c Cursor) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(CursorDir(stateDir), 0o700); err != nil {
		return fmt.Errorf("cursor: %w", err)
	}
	if err := atomicfile.WriteFile(CursorPath(stateDir, sink), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("cursor: %w", err)
	}
	return nil
}

// lockSink takes the sink's lock file, waiting while another process (a `vmgate ship`
// daemon, say) ships to it: two shippers would send everything twice, and the slower one
// would move the cursor back. Polling rather than a blocking flock lets ctx end the wait.
func lockSink(ctx context.Context, stateDir, sink string) (unlock func(), err error) {
	if err := os.MkdirAll(CursorDir(stateDir), 0o700); err != nil {
		return nil, fmt.Errorf("cursor: %w", err)
	}
	path := CursorPath(stateDir, sink) + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cursor: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing drops the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("cursor: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
