package qcow2

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// qemuIO runs the real qemu-io on an image, as qemuImg runs qemu-img.
func qemuIO(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("qemu-io")
	if err != nil {
		if os.Getenv("VMGATE_INTEGRATION") == "1" {
			t.Fatalf("qemu-io is missing (apt-get install qemu-utils): %v", err)
		}
		t.Skip("qemu-io is missing (apt-get install qemu-utils)")
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestEmptyQemuImg checks Empty on overlays made and written by the real qemu-img and
// qemu-io: only an overlay nothing was written to is empty.
func TestEmptyQemuImg(t *testing.T) {
	img := qemuImg(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, bytes.Repeat([]byte("base"), 1<<18), 0o644); err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(dir, "evil.raw")
	if err := os.WriteFile(evil, bytes.Repeat([]byte("evil"), 1<<18), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay := func(t *testing.T, name string, extra ...string) string {
		p := filepath.Join(dir, name)
		img(t, append(append([]string{"create", "-q", "-f", "qcow2", "-b", base, "-F", "raw"}, extra...), p)...)
		return p
	}
	cases := []struct {
		name  string
		make  func(t *testing.T) string
		empty bool
		why   string
	}{
		{"fresh", func(t *testing.T) string { return overlay(t, "fresh.qcow2") }, true, ""},
		{"fresh v2", func(t *testing.T) string { return overlay(t, "v2.qcow2", "-o", "compat=0.10") }, true, ""},
		{"fresh 2M clusters", func(t *testing.T) string { return overlay(t, "big.qcow2", "-o", "cluster_size=2M") }, true, ""},
		{"fresh extended L2", func(t *testing.T) string { return overlay(t, "ext.qcow2", "-o", "extended_l2=on") }, true, ""},
		{"written", func(t *testing.T) string {
			p := overlay(t, "written.qcow2")
			qemuIO(t, "-f", "qcow2", "-c", "write -P 0x41 65536 512", p)
			return p
		}, false, "guest offset 65536 is allocated"},
		{"zero flag", func(t *testing.T) string {
			p := overlay(t, "zero.qcow2")
			qemuIO(t, "-f", "qcow2", "-c", "write -z 0 65536", p)
			return p
		}, false, "guest offset 0 is allocated"},
		{"written extended L2", func(t *testing.T) string {
			p := overlay(t, "ext-written.qcow2", "-o", "extended_l2=on")
			qemuIO(t, "-f", "qcow2", "-c", "write -P 0x41 4096 512", p)
			return p
		}, false, "is allocated"},
		{"rebased onto another base", func(t *testing.T) string {
			// Made on evil, then rebased (safe mode) onto base: qemu-img copies every
			// cluster that differs into the overlay, so it reads as evil on base.
			p := filepath.Join(dir, "rebased.qcow2")
			img(t, "create", "-q", "-f", "qcow2", "-b", evil, "-F", "raw", p)
			img(t, "rebase", "-q", "-f", "qcow2", "-b", base, "-F", "raw", p)
			return p
		}, false, "is allocated"},
		{"internal snapshot", func(t *testing.T) string {
			p := overlay(t, "snap.qcow2")
			img(t, "snapshot", "-c", "s1", p)
			return p
		}, false, "1 internal snapshots"},
		{"metadata preallocation", func(t *testing.T) string {
			p := filepath.Join(dir, "prealloc.qcow2")
			img(t, "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", p, "1M")
			return p
		}, false, "is allocated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.make(t)
			empty, why, err := Empty(p)
			if err != nil {
				t.Fatal(err)
			}
			if empty != c.empty || !strings.Contains(why, c.why) {
				t.Fatalf("Empty = %v, %q; want %v, %q", empty, why, c.empty, c.why)
			}
		})
	}
}

// TestEmptyHandBuilt covers what qemu-img does not write: tables outside the file,
// misaligned, and an L1 table larger than QEMU allows.
func TestEmptyHandBuilt(t *testing.T) {
	header := func(l1Size uint32, l1Off uint64) []byte {
		b := make([]byte, 1<<16)
		copy(b, Magic)
		be := func(off int, v uint64, n int) {
			for i := n - 1; i >= 0; i-- {
				b[off+i] = byte(v)
				v >>= 8
			}
		}
		be(4, 3, 4)
		be(20, 16, 4) // 64 KiB clusters
		be(24, 1<<30, 8)
		be(36, uint64(l1Size), 4)
		be(40, l1Off, 8)
		be(100, 104, 4)
		return b
	}
	cases := []struct {
		name string
		data []byte
		err  string
	}{
		{"L1 beyond the end", header(16, 1<<20), "beyond the end"},
		{"L1 misaligned", header(16, 100), "not aligned"},
		{"L1 too large", header(1<<23, 1<<16), "larger than QEMU allows"},
		{"L2 beyond the end", func() []byte {
			b := append(header(1, 1<<16), make([]byte, 1<<16)...)
			copy(b[1<<16:], []byte{0, 0, 0, 0, 0, 0x10, 0, 0}) // L2 table at 1 MiB
			return b
		}(), "beyond the end"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.qcow2")
			if err := os.WriteFile(p, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := Empty(p)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v; want %q", err, c.err)
			}
		})
	}
	// Too many L2 tables: refused rather than read on.
	b := append(header(maxL2Tables+1, 1<<16), make([]byte, 1<<16)...)
	for i := 0; i <= maxL2Tables; i++ {
		b[1<<16+8*i+5] = 0x02 // every L1 entry names the all-zero L2 table at 128 KiB
	}
	b = append(b, make([]byte, 1<<16)...)
	p := filepath.Join(t.TempDir(), "many.qcow2")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Empty(p); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v; want ErrTooLarge", err)
	}
}

// FuzzEmpty feeds emptyAt arbitrary images: it must never panic, never read past its
// bounds, and an image it calls empty must have no snapshot and no data file.
func FuzzEmpty(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &countingReader{b: data}
		empty, _, err := emptyAt(r, int64(len(data)))
		if r.read > maxL1Bytes+(maxL2Tables+1)<<maxClusterBits {
			t.Fatalf("read %d bytes", r.read)
		}
		if err != nil || !empty {
			return
		}
		h, err := ParseHeader(data[:min(len(data), 1<<maxClusterBits)])
		if err != nil || h.Snapshots != 0 || h.DataFile != "" || h.IncompatibleFeatures&featureDataFile != 0 {
			t.Fatalf("empty image with header %+v, %v", h, err)
		}
	})
}

type countingReader struct {
	b    []byte
	read int
}

func (r *countingReader) ReadAt(p []byte, off int64) (int, error) {
	r.read += len(p)
	return bytes.NewReader(r.b).ReadAt(p, off)
}
