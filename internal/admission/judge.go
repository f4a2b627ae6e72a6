package admission

import (
	"path/filepath"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/imagehash"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// NewJudge opens what a decision needs on this node: the snapshot (or the reason it cannot
// be opened, which Decide turns into a refusal) and the image hash cache. Close releases
// the snapshot.
func NewJudge(cfg *config.Config, now time.Time) *Judge {
	j := &Judge{
		Hasher: cachedHasher{imagehash.New(HashCacheDir(cfg.StateDir))},
		Config: cfg.Admission,
		Now:    now,
		Memory: &Memory{dir: MemoryDir(cfg.StateDir)},
	}
	j.Snapshot, j.SnapshotErr = snapshot.Open(cfg.Paths().Snapshot())
	return j
}

// Close releases the snapshot.
func (j *Judge) Close() error {
	if j.Snapshot == nil {
		return nil
	}
	return j.Snapshot.Close()
}

// HashCacheDir is where a node caches the sha512 of its base images.
func HashCacheDir(stateDir string) string { return filepath.Join(stateDir, "hashes") }

type cachedHasher struct{ c *imagehash.Cache }

func (h cachedHasher) SHA512(path string) (string, error) {
	r, err := h.c.Sum(path)
	return r.SHA512, err
}
