package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// FuzzLoadBlocks: whatever the blocks file holds, LoadBlocks returns blocks that are valid
// or an error, never a panic and never an invalid block (which could not be told apart).
func FuzzLoadBlocks(f *testing.F) {
	f.Add([]byte(`{"blocks":[{"kind":"image","target":"abc","reason":"r","at":"2026-11-22T12:00:00Z","by":"root","source":"cli"}]}`))
	f.Add([]byte(`{"blocks":[{"kind":"user","target":"u","reason":"r","until":"2026-12-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"blocks":[{"kind":"vm","target":"x","reason":"r"}]}`))
	f.Add([]byte(`{"blocks":[{"kind":"user","target":"","reason":"r"}]}`))
	f.Add([]byte(`{"blocks":null}`))
	f.Add([]byte(`{"blocks":[`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "blocks.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		bs, err := LoadBlocks(p)
		if err != nil {
			return
		}
		for i := range bs {
			if err := checkBlock(&bs[i]); err != nil {
				t.Fatalf("invalid block loaded: %+v: %v", bs[i], err)
			}
			if len(snapshot.BlockKeys(bs[i].Kind, bs[i].Target)) == 0 {
				t.Fatalf("block without a key: %+v", bs[i])
			}
		}
	})
}
