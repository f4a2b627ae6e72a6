package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// Formats Chain reports.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// DefaultMaxDepth is the longest chain Chain follows when Options.MaxDepth is 0.
const DefaultMaxDepth = 16

// ErrUnsupported marks images Chain cannot follow: other formats, protocol backing names,
// external data files.
var ErrUnsupported = errors.New("not supported")

// Options tune Chain. The zero value is ready to use.
type Options struct {
	// MaxDepth is the most layers a chain may have, the disk's own file included;
	// 0 means DefaultMaxDepth.
	MaxDepth int
	// Format is the format the disk's own file is opened with: the disk's <driver type>
	// in the domain XML, "qcow2" or "raw". "" probes the file's first bytes. libvirt never
	// probes a disk's own file (it opens it as raw when the XML gives no format), so the
	// hook should always pass the format.
	Format string
}

// Layer is one file of a backing chain.
type Layer struct {
	// Path is the absolute path of the file, built the way libvirt builds it: a relative
	// backing name is appended to the directory of the file that names it, without
	// cleaning, so that ".." after a symbolic link means what it means to the kernel.
	Path string
	// Format is FormatQCOW2 or FormatRaw.
	Format string
	// BackingFile is the backing file name as written in this layer's header, "" for the
	// base.
	BackingFile string
	// BackingFormat is the backing file's format as recorded in this layer's header, ""
	// when not recorded.
	BackingFormat string
}

// Chain follows the backing chain of the disk image at path, down to the base image. The
// first layer is path itself, the last is the base.
//
// Formats: a layer's format is the one its parent records for it (Options.Format for the
// first layer). Only qcow2 and raw are followed; a layer in any other format (VMDK, VHDX,
// QED, ...) is refused with ErrUnsupported rather than read as raw, because QEMU would read
// it as that format, and some of them can name a parent. When a parent does not record
// its backing file's format, the backing file is probed as libvirt probes it: raw or qcow2
// without a backing file are accepted, a qcow2 with a backing file is refused, as libvirt
// refuses to start such a chain.
//
// Chain refuses: chains longer than Options.MaxDepth, loops (a file met twice, by device
// and inode), backing names that are protocol strings rather than file paths ("nbd:...",
// "json:{...}", "http://..."), missing backing files, files that are neither regular files
// nor block devices, and qcow2 images that keep their data in an external data file.
func Chain(path string, opts Options) ([]Layer, error) {
	maxDepth := opts.MaxDepth
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	top, err := absolute(path)
	if err != nil {
		return nil, fmt.Errorf("disk image %s: %w", path, err)
	}

	var layers []Layer
	seen := make(map[fileID]string) // file identity → path it was met at
	p, format := top, opts.Format
	for {
		// named describes the current file in errors: how it was reached.
		named := "disk image " + p
		var parent *Layer
		if len(layers) > 0 {
			parent = &layers[len(layers)-1]
			named = fmt.Sprintf("backing file %q of %s", parent.BackingFile, parent.Path)
		}
		if len(layers) == maxDepth {
			return nil, fmt.Errorf("%s: backing chain of %s is longer than %d layers", named, top, maxDepth)
		}

		start, id, err := readStart(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", named, err)
		}
		if first, ok := seen[id]; ok {
			if first == p {
				return nil, fmt.Errorf("%s: backing chain loops back to %s", named, p)
			}
			return nil, fmt.Errorf("%s: backing chain loops: %s is the same file as %s", named, p, first)
		}
		seen[id] = p

		probed := format == ""
		if probed {
			format = probe(start)
		}
		switch format {
		case FormatRaw:
			return append(layers, Layer{Path: p, Format: FormatRaw}), nil
		case FormatQCOW2:
		default:
			return nil, fmt.Errorf("%s: %w: format %q (vmgate follows qcow2 and raw images only)", named, ErrUnsupported, format)
		}

		h, err := ParseHeader(start)
		if errors.Is(err, ErrNotQCOW2) {
			return nil, fmt.Errorf("%s: %s is not a qcow2 image, though its format is given as qcow2", named, p)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", named, p, err)
		}
		if err := checkFeatures(h); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", named, p, err)
		}
		if probed && parent != nil && h.BackingFile != "" {
			return nil, fmt.Errorf("%s: %s does not record the format of its backing file, and that file "+
				"is a qcow2 image with a backing file of its own; libvirt refuses such a chain "+
				"(record the format with qemu-img rebase -u -F qcow2)", named, parent.Path)
		}
		layers = append(layers, Layer{Path: p, Format: FormatQCOW2, BackingFile: h.BackingFile, BackingFormat: h.BackingFormat})
		if h.BackingFile == "" {
			return layers, nil
		}
		if proto, ok := protocol(h.BackingFile); ok {
			return nil, fmt.Errorf("backing file %q of %s: %w: a %q protocol string, not a file path", h.BackingFile, p, ErrUnsupported, proto)
		}
		p, format = resolve(p, h.BackingFile), h.BackingFormat
	}
}

// checkFeatures refuses qcow2 images whose backing data might not come from the chain:
// images with an external data file, and incompatible features newer than this code.
func checkFeatures(h *Header) error {
	if h.IncompatibleFeatures&featureDataFile != 0 || h.DataFile != "" {
		return fmt.Errorf("%w: the image keeps its data in an external data file %q", ErrUnsupported, h.DataFile)
	}
	if unknown := h.IncompatibleFeatures &^ followsIncompatible; unknown != 0 {
		return fmt.Errorf("%w: unknown incompatible features 0x%x", ErrUnsupported, unknown)
	}
	return nil
}

type fileID struct{ dev, ino uint64 }

// readStart opens path and reads its start: the first cluster of a qcow2 image, or the
// first 512 bytes of anything else (enough to recognise a format), or the whole file when
// it is shorter.
func readStart(path string) ([]byte, fileID, error) {
	// O_NONBLOCK: a FIFO named as a backing file must not hang the hook in open(2). It is
	// refused just below; for regular files and block devices the flag changes nothing.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fileID{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileID{}, err
	}
	mode := fi.Mode()
	if !mode.IsRegular() && (mode&os.ModeDevice == 0 || mode&os.ModeCharDevice != 0) {
		return nil, fileID{}, fmt.Errorf("%s is not a regular file or block device (%s)", path, mode.Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fileID{}, fmt.Errorf("%s: no device and inode numbers", path)
	}
	id := fileID{dev: uint64(st.Dev), ino: st.Ino}

	b, err := readUpTo(f, 1<<minClusterBits, nil)
	if err != nil || len(b) < 24 || string(b[:4]) != Magic {
		return b, id, err
	}
	// A qcow2 image: read the rest of its first cluster, where the header, its extensions
	// and the backing file name must lie. A bad cluster_bits is ParseHeader's to report.
	bits := binary.BigEndian.Uint32(b[20:])
	if bits > minClusterBits && bits <= maxClusterBits && len(b) == 1<<minClusterBits {
		b, err = readUpTo(f, 1<<bits, b)
	}
	return b, id, err
}

// readUpTo reads from f until buf holds n bytes or the file ends.
func readUpTo(f *os.File, n int, buf []byte) ([]byte, error) {
	b := make([]byte, n)
	copy(b, buf)
	m, err := io.ReadFull(f, b[len(buf):])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return b[:len(buf)+m], err
}

// probe names the format of an image from its first bytes, as QEMU's and libvirt's probes
// would. Formats vmgate does not follow are recognised only so that they can be refused.
func probe(b []byte) string {
	at := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case at(0, Magic):
		if at(4, "\x00\x00\x00\x01") {
			return "qcow" // version 1
		}
		return FormatQCOW2
	case at(0, "QED\x00"):
		return "qed"
	case at(0, "KDMV"), at(0, "COWD"), at(0, "# Disk DescriptorFile"):
		return "vmdk"
	case at(0, "vhdxfile"):
		return "vhdx"
	case at(0, "conectix"):
		return "vpc"
	case at(0x40, "\x7f\x10\xda\xbe"):
		return "vdi"
	case at(0, "LUKS\xba\xbe"):
		return "luks"
	case at(0, "WithoutFreeSpace"), at(0, "WithouFreSpacExt"):
		return "parallels"
	case at(0, "Bochs Virtual HD Image"):
		return "bochs"
	case at(0, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop"):
		return "cloop"
	}
	return FormatRaw
}

// protocol reports whether a backing name is a protocol string, by QEMU's and libvirt's
// rule: a colon before any slash ("nbd:host:10809", "json:{...}", "http://h/x"). A relative
// file name with a colon must be written "./a:b".
func protocol(name string) (string, bool) {
	i := strings.IndexAny(name, ":/")
	if i < 0 || name[i] != ':' {
		return "", false
	}
	return name[:i], true
}

// resolve returns the path of backing file name named by the image at parent. Like libvirt,
// it appends a relative name to parent's directory and does not clean the result.
func resolve(parent, name string) string {
	if strings.HasPrefix(name, "/") {
		return name
	}
	dir := strings.TrimRight(parent[:strings.LastIndexByte(parent, '/')+1], "/")
	return dir + "/" + name
}

// absolute makes path absolute without cleaning it (see resolve).
func absolute(path string) (string, error) {
	if path == "" {
		return "", errors.New("empty path")
	}
	if strings.HasPrefix(path, "/") {
		return path, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return strings.TrimRight(wd, "/") + "/" + path, nil
}
