package endorse

import (
	"archive/tar"
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/vmgate/vmgate/internal/qcow2"
)

// qcow2Head writes the first 4 KiB of a version 3 qcow2 image as qemu-img lays them out:
// the header, the end of the extensions, and the backing file name when there is one.
func qcow2Head(backing string, incompatible uint64) []byte {
	b := make([]byte, 4096)
	be := binary.BigEndian
	copy(b, qcow2.Magic)
	be.PutUint32(b[4:], 3)
	be.PutUint32(b[20:], 16)    // cluster_bits: 64 KiB
	be.PutUint64(b[24:], 1<<30) // virtual size
	be.PutUint64(b[72:], incompatible)
	be.PutUint32(b[96:], 4)    // refcount_order
	be.PutUint32(b[100:], 112) // header_length
	off := 112 + 8             // after the extensions' end marker
	if backing != "" {
		be.PutUint64(b[8:], uint64(off))
		be.PutUint32(b[16:], uint32(len(backing)))
		copy(b[off:], backing)
	}
	return b
}

// tarHead is the start of a tar archive whose first member is name.
func tarHead(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("<?xml version=\"1.0\"?><Envelope/>")
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Write(body)
	tw.Close()
	return buf.Bytes()
}

func at(off int, magic string) []byte {
	b := make([]byte, 4096)
	copy(b[off:], magic)
	return b
}

func TestDetectFormat(t *testing.T) {
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	tests := []struct {
		name   string
		head   []byte
		want   string
		refuse string // part of the refusal; "" when accepted
	}{
		{"qcow2", qcow2Head("", 0), FormatQCOW2, ""},
		{"qcow2 overlay", qcow2Head("base.qcow2", 0), "", "has a backing file (base.qcow2)"},
		{"qcow2 with external data file bit", qcow2Head("", 1<<2), "", "external file"},
		{"qcow version 1", append([]byte(qcow2.Magic+"\x00\x00\x00\x01"), make([]byte, 100)...), "", "version 1"},
		{"qcow2 header cut short", []byte(qcow2.Magic + "\x00\x00\x00\x03"), "", "truncated"},
		{"vmdk sparse extent", at(0, "KDMV\x01\x00\x00\x00"), FormatVMDK, ""},
		{"vmdk version 3 (COWD)", at(0, "COWD"), FormatVMDK, ""},
		{"vmdk descriptor only", []byte("# Disk DescriptorFile\nversion=1\nRW 2048 FLAT \"disk-flat.vmdk\" 0\n"), "", "extent files"},
		{"ova", tarHead(t, "appliance.ovf"), FormatOVA, ""},
		{"ova, upper case", tarHead(t, "APPLIANCE.OVF"), FormatOVA, ""},
		{"tar without ovf first", tarHead(t, "disk1.vmdk"), "", "not an OVA"},
		{"raw, MBR", mbr, FormatRaw, ""},
		{"raw, zeros", make([]byte, 4096), FormatRaw, ""},
		{"raw, shorter than a sector", []byte("x"), FormatRaw, ""},
		{"gzip", at(0, "\x1f\x8b\x08"), "", "gzip-compressed"},
		{"xz", at(0, "\xfd7zXZ\x00"), "", "xz-compressed"},
		{"zstd", at(0, "\x28\xb5\x2f\xfd"), "", "zstd-compressed"},
		{"bzip2", at(0, "BZh91AY"), "", "bzip2-compressed"},
		{"zip", at(0, "PK\x03\x04"), "", "zip archive"},
		{"vhdx", at(0, "vhdxfile"), "", "VHDX format"},
		{"vpc", at(0, "conectix"), "", "VHD (vpc) format"},
		{"vdi", at(0x40, "\x7f\x10\xda\xbe"), "", "VDI format"},
		{"qed", at(0, "QED\x00"), "", "QED format"},
		{"luks", at(0, "LUKS\xba\xbe"), "", "LUKS format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DetectFormat(tc.head)
			if tc.refuse == "" {
				if err != nil || got != tc.want {
					t.Fatalf("DetectFormat = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.refuse) {
				t.Fatalf("DetectFormat = %q, %v; want a refusal containing %q", got, err, tc.refuse)
			}
		})
	}
}

func TestInspectImage(t *testing.T) {
	dir := t.TempDir()
	// Longer than the head InspectImage reads first, so the hash spans both reads.
	big := bytes.Repeat([]byte("0123456789abcdef"), (headSize+12345)/16)
	copy(big, qcow2Head("", 0))
	tests := []struct {
		name   string
		data   []byte
		format string
	}{
		{"small raw", []byte("a tiny raw image"), FormatRaw},
		{"qcow2 larger than the head", big, FormatQCOW2},
		{"exactly the head", bytes.Repeat([]byte{1}, headSize), FormatRaw},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "-"), tc.data)
			info, err := InspectImage(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha512.Sum512(tc.data)
			want := ImageInfo{SHA512: hex.EncodeToString(sum[:]), Size: int64(len(tc.data)), Format: tc.format}
			if info != want {
				t.Fatalf("InspectImage = %+v, want %+v", info, want)
			}
		})
	}

	for name, path := range map[string]string{
		"a directory":   dir,
		"an empty file": writeFile(t, dir, "empty", nil),
	} {
		if _, err := InspectImage(path); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: want a refusal, got %v", name, err)
		}
	}
	if _, err := InspectImage(dir + "/missing"); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("missing file: want an error that is not a refusal, got %v", err)
	}
}
