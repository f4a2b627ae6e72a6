package qcow2

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// build writes a qcow2 header byte by byte, laid out as qemu-img lays it out: the header,
// the backing format extension when format is not "", the end marker, then the backing
// file name. The result is 4 KiB, the image's first bytes; tests patch fields to break it.
func build(version uint32, backing, format string) []byte {
	b := make([]byte, 4096)
	be := binary.BigEndian
	copy(b, Magic)
	be.PutUint32(b[4:], version)
	be.PutUint32(b[20:], 16)      // cluster_bits: 64 KiB
	be.PutUint64(b[24:], 1<<20)   // size
	off := uint32(v2HeaderLength) // where the extensions start
	if version == 3 {
		off = 112               // 104 bytes and the compression type byte, padded, as QEMU writes
		be.PutUint32(b[96:], 4) // refcount_order
		be.PutUint32(b[100:], off)
	}
	if format != "" {
		be.PutUint32(b[off:], extBackingFormat)
		be.PutUint32(b[off+4:], uint32(len(format)))
		copy(b[off+8:], format)
		off += 8 + (uint32(len(format))+7)&^7
	}
	off += 8 // the end marker: eight zero bytes
	if backing != "" {
		be.PutUint64(b[8:], uint64(off))
		be.PutUint32(b[16:], uint32(len(backing)))
		copy(b[off:], backing)
	}
	return b
}

func put32(b []byte, off int, v uint32) []byte {
	binary.BigEndian.PutUint32(b[off:], v)
	return b
}

func put64(b []byte, off int, v uint64) []byte {
	binary.BigEndian.PutUint64(b[off:], v)
	return b
}

// extensions rewrites the header extensions of a version 3 header built by build with no
// backing file: each element is a type and its data.
func extensions(exts ...any) []byte {
	b := build(3, "", "")
	off := 112
	for i := 0; i < len(exts); i += 2 {
		data := exts[i+1].(string)
		put32(b, off, exts[i].(uint32))
		put32(b, off+4, uint32(len(data)))
		copy(b[off+8:], data)
		off += 8 + (len(data)+7)&^7
	}
	return b
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want Header
	}{
		{"v3 with backing and format", build(3, "base.raw", "raw"),
			Header{Version: 3, ClusterBits: 16, Size: 1 << 20, HeaderLength: 112, BackingFile: "base.raw", BackingFormat: "raw"}},
		{"v2 with backing and format", build(2, "/images/base.qcow2", "qcow2"),
			Header{Version: 2, ClusterBits: 16, Size: 1 << 20, HeaderLength: 72, BackingFile: "/images/base.qcow2", BackingFormat: "qcow2"}},
		{"v3 without backing", build(3, "", ""),
			Header{Version: 3, ClusterBits: 16, Size: 1 << 20, HeaderLength: 112}},
		{"backing format not recorded", build(3, "base", ""),
			Header{Version: 3, ClusterBits: 16, Size: 1 << 20, HeaderLength: 112, BackingFile: "base"}},
		{"longest backing name", build(3, strings.Repeat("a", 1023), "raw"),
			Header{Version: 3, ClusterBits: 16, Size: 1 << 20, HeaderLength: 112, BackingFile: strings.Repeat("a", 1023), BackingFormat: "raw"}},
		{"backing offset with zero size means no backing", put32(build(3, "base", "raw"), 16, 0),
			Header{Version: 3, ClusterBits: 16, Size: 1 << 20, HeaderLength: 112, BackingFormat: "raw"}},
		{"file ends right after the header", build(3, "", "")[:112],
			Header{Version: 3, ClusterBits: 16, Size: 1 << 20, HeaderLength: 112}},
		{"unknown extensions are skipped", extensions(uint32(0x6803f857), "feature table", uint32(extBackingFormat), "qcow2"),
			Header{Version: 3, ClusterBits: 16, Size: 1 << 20, HeaderLength: 112, BackingFormat: "qcow2"}},
		{"external data file", put64(extensions(uint32(extDataFile), "data.raw"), 72, featureDataFile),
			Header{Version: 3, ClusterBits: 16, Size: 1 << 20, HeaderLength: 112, IncompatibleFeatures: featureDataFile, DataFile: "data.raw"}},
		{"512-byte clusters", put32(build(3, "b", "raw"), 20, 9),
			Header{Version: 3, ClusterBits: 9, Size: 1 << 20, HeaderLength: 112, BackingFile: "b", BackingFormat: "raw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if *h != tt.want {
				t.Errorf("got  %+v\nwant %+v", *h, tt.want)
			}
		})
	}
}

func TestParseHeaderErrors(t *testing.T) {
	long := build(3, strings.Repeat("a", 1024), "raw")
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a qcow2 image"},
		{"raw data", []byte("just some raw disk bytes"), "not a qcow2 image"},
		{"magic only", []byte(Magic), "truncated before the version"},
		{"truncated header", build(3, "base", "raw")[:71], "truncated: 71 bytes, a header has at least 72"},
		{"truncated v3 header", build(3, "base", "raw")[:100], "truncated: 100 bytes, a version 3 header has at least 104"},
		{"version 1", put32(build(3, "", ""), 4, 1), "version 1 is the old qcow format"},
		{"version 4", put32(build(3, "", ""), 4, 4), "unsupported version 4"},
		{"cluster bits too small", put32(build(3, "", ""), 20, 8), "cluster_bits 8 is outside 9..21"},
		{"cluster bits too large", put32(build(3, "", ""), 20, 22), "cluster_bits 22 is outside 9..21"},
		{"header length too small", put32(build(3, "", ""), 100, 96), "header_length 96 is less than 104"},
		{"header length beyond the file", put32(build(3, "", ""), 100, 8192), "header_length 8192 reaches past"},
		{"header length beyond the cluster", put32(put32(build(3, "", ""), 20, 9), 100, 1024), "header_length 1024 reaches past"},
		{"backing name too long", long, "backing file name is 1024 bytes long, more than 1023"},
		{"backing offset beyond the cluster", put64(build(3, "base", "raw"), 8, 65537), "offset 65537 lies outside the first cluster (65536 bytes)"},
		{"backing offset far beyond", put64(build(3, "base", "raw"), 8, 1<<63), "lies outside the first cluster"},
		{"backing offset beyond the file", put64(build(3, "base", ""), 8, 4094), "backing file name (bytes 4094 to 4098) lies beyond the end of the file (4096 bytes)"},
		{"backing name runs past the cluster", put64(put32(build(3, "base", ""), 20, 9), 8, 510), "runs past the first cluster (512 bytes)"},
		{"backing name with NUL", build(3, "base\x00/etc/passwd", "raw"), "contains a NUL byte"},
		{"extension too large", put32(build(3, "base", "raw"), 116, 4000), "header extension 0xe2792aca at offset 112 (4000 bytes) runs past offset 136"},
		{"extension header straddles the backing name", put64(build(3, "base", "raw"), 8, 116), "header extension 0xe2792aca at offset 112 (3 bytes) runs past offset 116"},
		{"extension header beyond the file and the backing name offset", put64(build(3, "", ""), 8, 116)[:116],
			"header extension at offset 112 runs past offset 116"},
		{"extension beyond the file", extensions(uint32(0x12345678), strings.Repeat("x", 4000))[:2048], "header extension 0x12345678 at offset 112 lies beyond the end of the file"},
		{"backing format twice", extensions(uint32(extBackingFormat), "raw", uint32(extBackingFormat), "qcow2"), "backing format header extension appears twice"},
		{"backing format with NUL", extensions(uint32(extBackingFormat), "raw\x00"), "contains a NUL byte"},
		{"backing format too long", extensions(uint32(extBackingFormat), "qcow2qcow2qcow2q"), "backing format name is 16 bytes long, more than 15"},
		{"data file twice", extensions(uint32(extDataFile), "a", uint32(extDataFile), "b"), "external data file header extension appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(tt.data)
			if err == nil {
				t.Fatalf("no error, got %+v", *h)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want one containing %q", err, tt.want)
			}
			if tt.want == "not a qcow2 image" && !errors.Is(err, ErrNotQCOW2) {
				t.Errorf("error %v is not ErrNotQCOW2", err)
			}
		})
	}
}
