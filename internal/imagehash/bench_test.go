package imagehash

import (
	"os"
	"path/filepath"
	"testing"
)

const benchImageSize = 64 << 20

// benchImage writes a 64 MiB image. It stays in the page cache, so the figures are CPU cost,
// not disk speed.
func benchImage(b *testing.B) string {
	img := filepath.Join(b.TempDir(), "base.img")
	writeImage(b, img, benchImageSize, 7)
	return img
}

// BenchmarkSumCached is the hook's hot path: an image hashed before.
func BenchmarkSumCached(b *testing.B) {
	c := newTestCache(b)
	img := benchImage(b)
	mustSum(b, c, img)
	b.ReportAllocs()
	for b.Loop() {
		if res, err := c.Sum(img); err != nil || !res.Cached {
			b.Fatalf("Sum = %+v, %v", res, err)
		}
	}
}

// BenchmarkSumUncached is a first start: read and hash the image, then store the entry (fsync
// of the entry and of the directory included).
func BenchmarkSumUncached(b *testing.B) {
	c := newTestCache(b)
	img := benchImage(b)
	b.SetBytes(benchImageSize)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		removeEntries(b, c)
		b.StartTimer()
		if res, err := c.Sum(img); err != nil || res.Cached || res.StoreErr != nil {
			b.Fatalf("Sum = %+v, %v", res, err)
		}
	}
}

// BenchmarkSHA512Baseline is sha512 over the same bytes in memory: the ceiling for Uncached.
func BenchmarkSHA512Baseline(b *testing.B) {
	data, err := os.ReadFile(benchImage(b))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchImageSize)
	for b.Loop() {
		sumOf(data)
	}
}

// BenchmarkStatBaseline is one stat(2) of the image: a cache hit costs about eight system
// calls (stat, then open, fstat and close of the image and of the entry, one read), so compare
// SumCached with eight of these on a noisy machine.
func BenchmarkStatBaseline(b *testing.B) {
	img := filepath.Join(b.TempDir(), "base.img")
	writeImage(b, img, 4096, 7)
	for b.Loop() {
		if _, err := os.Stat(img); err != nil {
			b.Fatal(err)
		}
	}
}
