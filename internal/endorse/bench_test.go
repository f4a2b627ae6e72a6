package endorse

import (
	"bufio"
	"crypto/sha512"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// benchImageSize is the image the add benchmark hashes: large enough that hashing, not the
// list and history writes, sets the time, as with real images of a few GiB.
const benchImageSize = 256 << 20

// BenchmarkAddHashing measures endorse add on a 256 MiB image against a plain crypto/sha512
// pass over the same file in the same run (the file is in the page cache for all three):
//
//	sha512-baseline  open, read in 1 MiB blocks, sha512: what sha512sum does
//	inspect          InspectImage: the same pass, plus format detection on the first 2 MiB
//	add              Workspace.Add: inspect, then lock, rewrite the list, append the history
//
// Run: go test -run '^$' -bench BenchmarkAddHashing -benchtime 3x -count 5 ./internal/endorse/
func BenchmarkAddHashing(b *testing.B) {
	dir := b.TempDir()
	img := filepath.Join(dir, "image.raw")
	writeRandomFile(b, img, benchImageSize)

	b.Run("sha512-baseline", func(b *testing.B) {
		b.SetBytes(benchImageSize)
		buf := make([]byte, 1<<20)
		for b.Loop() {
			f, err := os.Open(img)
			if err != nil {
				b.Fatal(err)
			}
			h := sha512.New()
			if _, err := io.CopyBuffer(h, f, buf); err != nil {
				b.Fatal(err)
			}
			f.Close()
			h.Sum(nil)
		}
	})
	b.Run("inspect", func(b *testing.B) {
		b.SetBytes(benchImageSize)
		for b.Loop() {
			if _, err := InspectImage(img); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("add", func(b *testing.B) {
		b.SetBytes(benchImageSize)
		w, _ := newWorkspace(b)
		id := NewUUID()
		for b.Loop() {
			// The same identifier each time: a new version replaces the entry, so the list
			// stays one image long while the history grows by one entry per add.
			if _, err := w.Add(AddOptions{Image: img, Title: "bench", Version: "1", Identifier: id}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func writeRandomFile(b *testing.B, path string, size int) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	r := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for n := 0; n < size; n += len(buf) {
		r.Read(buf)
		if n == 0 {
			clear(buf[:4096]) // a raw image begins with a boot sector, not with a magic
		}
		if _, err := bw.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	// Written back and read once before timing: otherwise the first benchmark competes with
	// the writeback of 256 MiB of dirty pages, and reads them from a colder cache.
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, io.NewSectionReader(f, 0, int64(size))); err != nil {
		b.Fatal(err)
	}
}
