// Package qcow2 follows a disk image's backing chain, from the file a VM's disk names down
// to the base image whose bytes vmgate identifies.
//
// It reads qcow2 headers itself (QEMU's docs/interop/qcow2.txt) and trusts nothing in them:
// every offset and length is checked against the first cluster and the file. It follows
// backing files the way libvirt does (libvirt, not QEMU, resolves the chain of a VM's disk
// and hands QEMU every layer with its format), so that the base found here is the base the
// VM reads.
package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic starts every qcow2 (and qcow version 1) file.
const Magic = "QFI\xfb"

// Limits from the qcow2 specification, as QEMU enforces them.
const (
	minClusterBits     = 9  // 512-byte clusters
	maxClusterBits     = 21 // 2 MiB clusters
	v2HeaderLength     = 72
	v3HeaderLength     = 104
	maxBackingFileName = 1023
	maxFormatName      = 15 // QEMU keeps the backing format name in a 16-byte C string
)

// Header extension types (the spec's "header extension type" magic numbers).
const (
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extDataFile      = 0x44415441
)

// Incompatible feature bits (version 3).
const (
	featureDirty        = 1 << 0
	featureCorrupt      = 1 << 1
	featureDataFile     = 1 << 2 // guest data lives in an external data file
	featureCompression  = 1 << 3 // compression type other than zlib
	featureExtendedL2   = 1 << 4
	knownIncompatible   = featureDirty | featureCorrupt | featureDataFile | featureCompression | featureExtendedL2
	followsIncompatible = knownIncompatible &^ featureDataFile // the bits Chain can follow through
)

// ErrNotQCOW2 is returned by ParseHeader for data that does not start with the qcow2 magic.
var ErrNotQCOW2 = errors.New("not a qcow2 image")

// Header is what a qcow2 header says about the image and its backing file.
type Header struct {
	// Version is 2 (compat=0.10) or 3 (compat=1.1).
	Version uint32
	// ClusterBits is log2 of the cluster size.
	ClusterBits uint32
	// Size is the virtual disk size in bytes.
	Size uint64
	// IncompatibleFeatures is the version 3 feature field; 0 for version 2.
	IncompatibleFeatures uint64
	// HeaderLength is where the header extensions start: 72 for version 2.
	HeaderLength uint32
	// BackingFile is the backing file name as written, "" when there is none.
	BackingFile string
	// BackingFormat is the backing file's format from the header extension, "" when the
	// image does not record it.
	BackingFormat string
	// DataFile is the external data file name from its header extension, "" when absent.
	DataFile string
	// L1Size and L1TableOffset locate the active L1 table, the root of the map from guest
	// clusters to the image's own clusters.
	L1Size        uint32
	L1TableOffset uint64
	// Snapshots is the number of internal snapshots (each with an L1 table of its own).
	Snapshots uint32
}

// ClusterSize is the image's cluster size in bytes.
func (h *Header) ClusterSize() int { return 1 << h.ClusterBits }

// ParseHeader parses the qcow2 header at the start of b. b should hold the image's first
// cluster, or the whole file when it is shorter: the header, its extensions and the backing
// file name must all lie there, and ParseHeader treats the end of b as the end of the file.
// Data that is not qcow2 gives ErrNotQCOW2.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < len(Magic) || string(b[:len(Magic)]) != Magic {
		return nil, ErrNotQCOW2
	}
	if len(b) < 8 {
		return nil, errors.New("qcow2 header: truncated before the version field")
	}
	be := binary.BigEndian
	h := &Header{Version: be.Uint32(b[4:])}
	switch h.Version {
	case 2, 3:
	case 1:
		return nil, errors.New("qcow2 header: version 1 is the old qcow format, not qcow2")
	default:
		return nil, fmt.Errorf("qcow2 header: unsupported version %d", h.Version)
	}
	if len(b) < v2HeaderLength {
		return nil, fmt.Errorf("qcow2 header: truncated: %d bytes, a header has at least %d", len(b), v2HeaderLength)
	}
	backingOffset := be.Uint64(b[8:])
	backingSize := be.Uint32(b[16:])
	h.ClusterBits = be.Uint32(b[20:])
	h.Size = be.Uint64(b[24:])
	h.L1Size = be.Uint32(b[36:])
	h.L1TableOffset = be.Uint64(b[40:])
	h.Snapshots = be.Uint32(b[60:])
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, fmt.Errorf("qcow2 header: cluster_bits %d is outside %d..%d", h.ClusterBits, minClusterBits, maxClusterBits)
	}
	cluster := uint64(h.ClusterSize())
	// Everything below must lie in the first cluster; beyond the end of b is beyond the file.
	end := min(cluster, uint64(len(b)))

	h.HeaderLength = v2HeaderLength
	if h.Version == 3 {
		if len(b) < v3HeaderLength {
			return nil, fmt.Errorf("qcow2 header: truncated: %d bytes, a version 3 header has at least %d", len(b), v3HeaderLength)
		}
		h.IncompatibleFeatures = be.Uint64(b[72:])
		h.HeaderLength = be.Uint32(b[100:])
		if h.HeaderLength < v3HeaderLength {
			return nil, fmt.Errorf("qcow2 header: header_length %d is less than %d", h.HeaderLength, v3HeaderLength)
		}
		if uint64(h.HeaderLength) > end {
			return nil, fmt.Errorf("qcow2 header: header_length %d reaches past the first cluster or the end of the file (%d bytes)", h.HeaderLength, end)
		}
	}

	// QEMU reads extensions up to the backing file name, or to the end of the first cluster.
	extEndOffset := cluster
	if backingOffset != 0 {
		if backingOffset > cluster {
			return nil, fmt.Errorf("qcow2 header: backing file name offset %d lies outside the first cluster (%d bytes)", backingOffset, cluster)
		}
		extEndOffset = backingOffset
	}
	if err := h.parseExtensions(b, uint64(h.HeaderLength), extEndOffset); err != nil {
		return nil, err
	}

	if backingOffset != 0 && backingSize != 0 {
		if backingSize > maxBackingFileName {
			return nil, fmt.Errorf("qcow2 header: backing file name is %d bytes long, more than %d", backingSize, maxBackingFileName)
		}
		nameEnd := backingOffset + uint64(backingSize)
		if nameEnd > cluster {
			return nil, fmt.Errorf("qcow2 header: backing file name (bytes %d to %d) runs past the first cluster (%d bytes)", backingOffset, nameEnd, cluster)
		}
		if nameEnd > uint64(len(b)) {
			return nil, fmt.Errorf("qcow2 header: backing file name (bytes %d to %d) lies beyond the end of the file (%d bytes)", backingOffset, nameEnd, len(b))
		}
		name := b[backingOffset:nameEnd]
		if bytes.IndexByte(name, 0) >= 0 {
			return nil, fmt.Errorf("qcow2 header: backing file name %q contains a NUL byte", name)
		}
		h.BackingFile = string(name)
	}
	return h, nil
}

// parseExtensions reads the header extensions between start and end. Like QEMU, it treats
// bytes beyond the end of the file as zeros, which read as the end marker.
func (h *Header) parseExtensions(b []byte, start, end uint64) error {
	be := binary.BigEndian
	var haveFormat, haveDataFile bool
	for off := start; off < end; {
		if off+8 > uint64(len(b)) {
			if off+8 > end {
				return fmt.Errorf("qcow2 header: header extension at offset %d runs past offset %d", off, end)
			}
			return nil // beyond the end of the file: zeros, the end marker
		}
		typ, length := be.Uint32(b[off:]), uint64(be.Uint32(b[off+4:]))
		off += 8
		if off > end || length > end-off {
			return fmt.Errorf("qcow2 header: header extension 0x%08x at offset %d (%d bytes) runs past offset %d", typ, off-8, length, end)
		}
		if typ == extEnd {
			return nil
		}
		if off+length > uint64(len(b)) {
			return fmt.Errorf("qcow2 header: header extension 0x%08x at offset %d lies beyond the end of the file", typ, off-8)
		}
		data := b[off : off+length]
		switch typ {
		case extBackingFormat:
			if err := checkOnce(&haveFormat, "backing format", data); err != nil {
				return err
			}
			if len(data) > maxFormatName {
				return fmt.Errorf("qcow2 header: backing format name is %d bytes long, more than %d", len(data), maxFormatName)
			}
			h.BackingFormat = string(data)
		case extDataFile:
			if err := checkOnce(&haveDataFile, "external data file", data); err != nil {
				return err
			}
			h.DataFile = string(data)
		}
		off += (length + 7) &^ 7 // extension data is padded to 8 bytes
	}
	return nil
}

// checkOnce refuses a second copy of an extension (it would leave open which one counts) and
// a name with a NUL byte (C code would read a shorter name than Go).
func checkOnce(seen *bool, what string, data []byte) error {
	if *seen {
		return fmt.Errorf("qcow2 header: the %s header extension appears twice", what)
	}
	*seen = true
	if bytes.IndexByte(data, 0) >= 0 {
		return fmt.Errorf("qcow2 header: the %s header extension %q contains a NUL byte", what, data)
	}
	return nil
}
