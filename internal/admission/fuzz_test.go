package admission

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzNovaContent feeds the content checks of Nova's blank disks and config drives, which
// read files a guest or a misconfigured node may have shaped: they must never panic, and
// accept only what they were written to accept. Seeds: testdata/fuzz/FuzzNovaContent.
func FuzzNovaContent(f *testing.F) {
	f.Add(swapArea(8192))
	f.Add(ext4()[:4096])
	f.Add(iso9660("config-2", false)[:40960])
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "base")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if checkSwap(p) == nil && (len(data) < 4096 || string(data[4086:4096]) != "SWAPSPACE2" || !zero(data[:1024]) || !zero(data[4096:])) {
			t.Fatalf("checkSwap accepted %d bytes that are no blank swap area", len(data))
		}
		if checkEphemeral(p) == nil && len(data) < 2048 {
			t.Fatal("checkEphemeral accepted a short file")
		}
		if checkConfigDrive(p) == nil && (len(data) < 17*2048 || !zero(data[:16*2048])) {
			t.Fatal("checkConfigDrive accepted a file with a system area")
		}
	})
}
