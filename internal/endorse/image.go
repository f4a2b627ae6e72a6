package endorse

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vmgate/vmgate/internal/qcow2"
)

// Image formats as hv:format writes them (upper case, as AppDB and vmcatcher do).
const (
	FormatQCOW2 = "QCOW2"
	FormatRaw   = "RAW"
	FormatVMDK  = "VMDK"
	FormatOVA   = "OVA"
)

// headSize is how much of an image format detection looks at: a qcow2 header, its
// extensions and backing file name lie in the first cluster, at most 2 MiB.
const headSize = 2 << 20

// ImageInfo is what endorse learns from an image's bytes.
type ImageInfo struct {
	SHA512 string // lower-case hex, of every byte of the file
	Size   int64
	Format string
}

// InspectImage hashes the file at path in one pass and detects its format from the same
// bytes, so that the hash and the format describe one and the same content.
func InspectImage(path string) (ImageInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ImageInfo{}, fmt.Errorf("image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return ImageInfo{}, refusef("image %s is not a regular file", path)
	}
	h := sha512.New()
	head := make([]byte, headSize)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return ImageInfo{}, fmt.Errorf("image %s: %w", path, err)
	}
	head = head[:n]
	if n == 0 {
		return ImageInfo{}, refusef("image %s is empty", path)
	}
	h.Write(head)
	format, err := DetectFormat(head)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("image %s: %w", path, err)
	}
	// 1 MiB reads: large enough that the hash, not the system calls, sets the pace.
	rest, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return ImageInfo{}, fmt.Errorf("image %s: %w", path, err)
	}
	return ImageInfo{SHA512: hex.EncodeToString(h.Sum(nil)), Size: int64(n) + rest, Format: format}, nil
}

// DetectFormat names the format of an image from its first bytes (up to headSize): qcow2,
// VMDK (a sparse extent with its descriptor embedded), OVA (a tar archive whose first member
// is the OVF descriptor, as the OVF specification requires), or raw for anything else. It
// refuses what cannot be endorsed usefully, since its hash would not vouch for what a VM
// reads: a qcow2 overlay (the hook identifies base images, so an overlay's hash would never
// be looked up), a qcow2 or VMDK whose data lives in other files, compressed files (the hook
// hashes the image as the VM uses it), and other disk formats, which a site would otherwise
// be told are raw.
func DetectFormat(head []byte) (string, error) {
	at := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	switch {
	case at(0, qcow2.Magic):
		h, err := qcow2.ParseHeader(head)
		if err != nil {
			return "", refusef("%v", err)
		}
		if h.BackingFile != "" {
			return "", refusef("qcow2 image has a backing file (%s): endorse the base image, or flatten it with qemu-img convert", h.BackingFile)
		}
		if h.DataFile != "" || h.IncompatibleFeatures&qcow2DataFileFeature != 0 {
			return "", refusef("qcow2 image keeps its data in an external file (%q), which its hash does not cover", h.DataFile)
		}
		return FormatQCOW2, nil
	case at(0, "KDMV"), at(0, "COWD"):
		return FormatVMDK, nil
	case at(0, "# Disk DescriptorFile"):
		return "", refusef("a VMDK descriptor file keeps the disk's data in extent files, which its hash does not cover: endorse a single-file VMDK (qemu-img convert -O vmdk -o subformat=streamOptimized)")
	case isTar(head):
		name := tarName(head)
		if !strings.HasSuffix(strings.ToLower(name), ".ovf") {
			return "", refusef("a tar archive whose first member is %q, not an OVF descriptor: not an OVA", name)
		}
		return FormatOVA, nil
	}
	for _, c := range []struct {
		off         int
		magic, name string
	}{
		{0, "\x1f\x8b", "gzip-compressed"}, {0, "\xfd7zXZ\x00", "xz-compressed"}, {0, "\x28\xb5\x2f\xfd", "zstd-compressed"},
		{0, "BZh", "bzip2-compressed"}, {0, "PK\x03\x04", "a zip archive"},
	} {
		if at(c.off, c.magic) {
			return "", refusef("the file is %s: endorse the image as VMs will use it, uncompressed", c.name)
		}
	}
	// Disk formats QEMU would probe, which are not raw: listing them as RAW would tell sites
	// something false about the bytes.
	for _, c := range []struct {
		off         int
		magic, name string
	}{
		{0, "QED\x00", "QED"}, {0, "vhdxfile", "VHDX"}, {0, "conectix", "VHD (vpc)"}, {0x40, "\x7f\x10\xda\xbe", "VDI"},
		{0, "LUKS\xba\xbe", "LUKS"}, {0, "WithoutFreeSpace", "Parallels"}, {0, "WithouFreSpacExt", "Parallels"},
		{0, "Bochs Virtual HD Image", "Bochs"}, {0, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop", "cloop"},
	} {
		if at(c.off, c.magic) {
			return "", refusef("the image is in %s format: endorse it as qcow2, raw, VMDK or OVA (qemu-img convert -O qcow2)", c.name)
		}
	}
	return FormatRaw, nil
}

// qcow2DataFileFeature is the incompatible feature bit of a qcow2 image whose guest data is
// in an external file: set even when the header extension naming the file is missing.
const qcow2DataFileFeature = 1 << 2

// isTar recognises a POSIX (ustar) or GNU tar header block at the start.
func isTar(head []byte) bool {
	return len(head) >= 512 && bytes.HasPrefix(head[257:], []byte("ustar"))
}

func tarName(head []byte) string {
	name := head[:100]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	// ustar keeps long names' directories in the prefix field.
	if prefix := head[345:500]; prefix[0] != 0 {
		if i := bytes.IndexByte(prefix, 0); i >= 0 {
			prefix = prefix[:i]
		}
		return string(prefix) + "/" + string(name)
	}
	return string(name)
}
