package qcow2

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseHeader feeds ParseHeader arbitrary bytes. The seeds in
// testdata/fuzz/FuzzParseHeader (the first 4 KiB of images made by qemu-img, and broken
// headers) run with every plain `go test`. ParseHeader must never panic, and a header it
// accepts must keep the limits Chain relies on.
func FuzzParseHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		probe(data) // must not panic either
		h, err := ParseHeader(data)
		isQCOW2 := bytes.HasPrefix(data, []byte(Magic))
		if err != nil {
			if errors.Is(err, ErrNotQCOW2) == isQCOW2 {
				t.Fatalf("ErrNotQCOW2 = %v for data starting %q", errors.Is(err, ErrNotQCOW2), data[:min(len(data), 4)])
			}
			return
		}
		if !isQCOW2 || (h.Version != 2 && h.Version != 3) {
			t.Fatalf("accepted version %d", h.Version)
		}
		if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
			t.Fatalf("accepted cluster_bits %d", h.ClusterBits)
		}
		if h.HeaderLength < v2HeaderLength || int(h.HeaderLength) > min(len(data), h.ClusterSize()) {
			t.Fatalf("accepted header_length %d for %d bytes", h.HeaderLength, len(data))
		}
		if len(h.BackingFile) > maxBackingFileName || bytes.IndexByte([]byte(h.BackingFile), 0) >= 0 {
			t.Fatalf("accepted backing file name %q", h.BackingFile)
		}
		if len(h.BackingFormat) > maxFormatName || bytes.IndexByte([]byte(h.BackingFormat), 0) >= 0 {
			t.Fatalf("accepted backing format %q", h.BackingFormat)
		}
		if h.BackingFile != "" && !bytes.Contains(data[:min(len(data), h.ClusterSize())], []byte(h.BackingFile)) {
			t.Fatalf("backing file name %q is not in the first cluster", h.BackingFile)
		}
	})
}
