package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Bounds on what Empty reads. A fresh overlay has an L1 table of a few KiB and no L2 table
// at all, so these bound only hostile or unusual images, which are then refused.
const (
	// maxL1Bytes is QEMU's own limit on the L1 table (QCOW_MAX_L1_SIZE).
	maxL1Bytes = 32 << 20
	// maxL2Tables is the most L2 tables Empty reads before it gives up and reports data.
	maxL2Tables = 1024
)

// l1OffsetMask selects the L2 table offset in an L1 entry (bits 9 to 55).
const l1OffsetMask = 0x00fffffffffffe00

// ErrTooLarge is returned by Empty when checking the image would read more than its bounds.
var ErrTooLarge = errors.New("too many allocated L2 tables to check")

// Empty reports whether the qcow2 image at path holds no guest data of its own, so that
// what a guest reads through it is exactly what its backing file holds. When it is not
// empty, why says what it holds.
//
// An image is empty when it has no internal snapshot and every L2 entry its active L1 table
// reaches is zero: unallocated, read from the backing file. Any other entry is data,
// including a cluster flagged "reads as zeros", which hides the base as surely as written
// bytes do, and a compressed cluster. An image with an external data file is never empty:
// its data lies outside the chain (Chain refuses those anyway). Reads are bounded: the L1
// table by QEMU's 32 MiB limit, the L2 tables by maxL2Tables; beyond that Empty returns
// ErrTooLarge rather than read on.
func Empty(path string) (empty bool, why string, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, "", err
	}
	if !fi.Mode().IsRegular() {
		return false, "", fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	empty, why, err = emptyAt(f, fi.Size())
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", path, err)
	}
	return empty, why, nil
}

// emptyAt is Empty on an image of size bytes read through r.
func emptyAt(r io.ReaderAt, size int64) (bool, string, error) {
	first := make([]byte, min(size, 1<<maxClusterBits))
	if _, err := r.ReadAt(first, 0); err != nil && err != io.EOF {
		return false, "", err
	}
	h, err := ParseHeader(first)
	if err != nil {
		return false, "", err
	}
	if h.IncompatibleFeatures&featureDataFile != 0 || h.DataFile != "" {
		return false, "its data lies in an external data file", nil
	}
	if h.Snapshots != 0 {
		return false, fmt.Sprintf("it holds %d internal snapshots", h.Snapshots), nil
	}
	l1Bytes := uint64(h.L1Size) * 8
	if h.L1Size == 0 {
		return true, "", nil
	}
	if l1Bytes > maxL1Bytes {
		return false, "", fmt.Errorf("qcow2: L1 table of %d entries is larger than QEMU allows", h.L1Size)
	}
	cluster := uint64(h.ClusterSize())
	if err := within(h.L1TableOffset, l1Bytes, cluster, size, "L1 table"); err != nil {
		return false, "", err
	}
	l1 := make([]byte, l1Bytes)
	if _, err := r.ReadAt(l1, int64(h.L1TableOffset)); err != nil {
		return false, "", fmt.Errorf("qcow2: read L1 table: %w", err)
	}
	l2 := make([]byte, cluster)
	tables := 0
	for i := 0; i < len(l1); i += 8 {
		off := binary.BigEndian.Uint64(l1[i:]) & l1OffsetMask
		if off == 0 {
			continue // no L2 table: the whole range reads from the backing file
		}
		if tables++; tables > maxL2Tables {
			return false, "", fmt.Errorf("qcow2: %w (more than %d)", ErrTooLarge, maxL2Tables)
		}
		if err := within(off, cluster, cluster, size, "L2 table"); err != nil {
			return false, "", err
		}
		if _, err := r.ReadAt(l2, int64(off)); err != nil {
			return false, "", fmt.Errorf("qcow2: read L2 table at %d: %w", off, err)
		}
		for j, b := range l2 {
			if b != 0 {
				entry := j / l2EntrySize(h)
				guest := (uint64(i/8)*(cluster/uint64(l2EntrySize(h))) + uint64(entry)) * cluster
				return false, fmt.Sprintf("guest offset %d is allocated in it (cluster data or a zero flag that hides the base)", guest), nil
			}
		}
	}
	return true, "", nil
}

// l2EntrySize is 16 bytes with extended L2 entries (subclusters), 8 otherwise.
func l2EntrySize(h *Header) int {
	if h.IncompatibleFeatures&featureExtendedL2 != 0 {
		return 16
	}
	return 8
}

// within checks that a table of n bytes at off is cluster-aligned and inside the file.
func within(off, n, cluster uint64, size int64, what string) error {
	if off%cluster != 0 {
		return fmt.Errorf("qcow2: %s offset %d is not aligned to a cluster", what, off)
	}
	if off > uint64(size) || n > uint64(size)-off {
		return fmt.Errorf("qcow2: %s (%d bytes at %d) lies beyond the end of the file (%d bytes)", what, n, off, size)
	}
	return nil
}
