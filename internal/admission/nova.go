package admission

// OpenStack instances. Nova's metadata (<nova:instance>) names the owner and the image the
// instance was booted from, but it vouches for nothing: a rescue boots another image while
// nova:root keeps the first one, and anyone who defines a domain can write any metadata. So
// a Nova domain is judged by its disks, as QEMU will open them:
//
//   - Nova's own instance disks, <instances_path>/<uuid>/<name>, with the file image backend
//     (images_type qcow2, the default): disk and disk.rescue are qcow2 overlays whose backing
//     file is <instances_path>/_base/<sha1 hex of the Glance image id>. The snapshot maps that
//     name back to the Glance id and the id to its endorsement (vmgate sync resolved the id's
//     sha512 through Glance): no hashing, one lookup. disk.swap, disk.local and disk.eph<N>
//     are overlays on bases Nova made itself (swap_<MiB>, ephemeral_<GiB>_<ext>) with mkswap
//     and mkfs; disk.config is the config drive Nova wrote (ISO 9660). Their content is
//     checked to be what those tools make, with nothing a firmware could boot.
//   - Cinder volumes (a disk whose <serial> is the volume id): the content of a volume is the
//     user's, so an instance that boots from one is refused unless
//     admission.allow_boot_from_volume; beside a local image disk they are data disks.
//   - Anything else is judged as plain libvirt (the sha512 of its base), whatever the metadata
//     says.
//
// Why an instance's overlay needs no "first seen empty" proof, unlike a plain disk: Nova
// creates it empty (qemu-img create -b base) or copies it from the same instance's own disk
// (resize, cold and block migration, evacuation on shared storage); no API lets a cloud user
// put bytes there, so what it holds is the guest's own writes. Only nova-compute (and root)
// writes under instances_path, which the hook checks is writable by its owner only.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/qcow2"
)

// Nova's names (nova/virt/libvirt/driver.py, nova/virt/imagecache.py). Plain functions,
// not regular expressions: the hook pays for every package-level initialisation.

// isEphemeralDisk: disk.local (the flavor's ephemeral disk) or disk.eph<N> (a block device
// mapping's).
func isEphemeralDisk(name string) bool {
	return name == "disk.local" || digits(strings.TrimPrefix(name, "disk.eph")) && strings.HasPrefix(name, "disk.eph")
}

// isGlanceBase: the sha1 hex of a Glance id.
func isGlanceBase(name string) bool { return len(name) == 40 && lowerHex(name) }

// isSwapBase: swap_<MiB>.
func isSwapBase(name string) bool {
	rest, ok := strings.CutPrefix(name, "swap_")
	return ok && digits(rest)
}

// isEphemeralBase: ephemeral_<GiB>_<the first 7 hex digits of the mkfs command's sha256, or
// "default">.
func isEphemeralBase(name string) bool {
	rest, ok := strings.CutPrefix(name, "ephemeral_")
	size, ext, ok2 := strings.Cut(rest, "_")
	return ok && ok2 && digits(size) && ext != "" && strings.Trim(ext, "0123456789abcdefghijklmnopqrstuvwxyz") == ""
}

// isUUID: a uuid in Nova's lower-case form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !lowerHex(s[i : i+1]) {
			return false
		}
	}
	return true
}

func digits(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

func lowerHex(s string) bool { return strings.Trim(s, "0123456789abcdef") == "" }

// Kinds of disks in a Nova domain.
const (
	novaOther       = iota // not Nova's: judged as plain libvirt
	novaImage              // disk, disk.rescue: an overlay on a Glance image's base
	novaSwap               // disk.swap
	novaEphemeral          // disk.local, disk.eph<N>
	novaConfig             // disk.config, disk.config.rescue
	novaVolume             // a Cinder volume
	novaUnsupported        // one of Nova's other image backends (rbd, lvm)
)

// decideNova judges an OpenStack instance by its disks (see the top of this file).
func (j *Judge) decideNova(d *domain.Domain) Decision {
	if d.Nova.FromAPI {
		return j.decideNovaRoot(d.Nova)
	}
	mem := &memo{j: j, uuid: d.UUID}
	var disks []Disk
	var images int
	var volumes []string
	for i := range d.Disks {
		dd := &d.Disks[i]
		if dd.Empty() {
			continue
		}
		disk := Disk{Target: dd.Target, Source: describeSource(dd)}
		kind, name := j.novaKind(d, dd)
		switch kind {
		case novaImage:
			images++
			j.judgeNovaImage(&disk, dd, name, d.Nova.Root)
		case novaSwap, novaEphemeral:
			j.judgeNovaBlank(&disk, dd, name, kind)
		case novaConfig:
			j.judgeConfigDrive(&disk, dd)
		case novaVolume:
			volumes = append(volumes, dd.Serial)
			disk.Status, disk.Reason = StatusExempt, "Cinder volume "+dd.Serial
		case novaUnsupported:
			disk.Status, disk.Reason = StatusError, name
		default:
			j.judgePlainDisk(&disk, d, dd, mem)
		}
		disks = append(disks, disk)
	}
	if images == 0 && len(volumes) > 0 {
		return j.bootFromVolume(disks, volumes)
	}
	return j.conclude(disks)
}

// bootFromVolume concludes on an instance with no local image disk: it boots from a volume,
// whose content no image list can vouch for.
func (j *Judge) bootFromVolume(disks []Disk, volumes []string) Decision {
	if !j.Config.AllowBootFromVolume {
		dec := refuse("instance boots from volume %s: no image list can vouch for a volume's content; boot from an endorsed image, or set admission.allow_boot_from_volume", volumes[0])
		dec.Disks = disks
		return dec
	}
	for i := range disks {
		if s := disks[i].Status; s != StatusExempt && s != string(snapshot.Endorsed) {
			return j.conclude(disks) // another disk is refused: say why
		}
	}
	return Decision{Endorsed: true, Exemption: "boot from volume allowed by admission.allow_boot_from_volume", Disks: disks}
}

// novaKind tells which of Nova's disks dd is. For novaImage, novaSwap and novaEphemeral name
// is the disk's file name; for novaUnsupported it is the reason.
func (j *Judge) novaKind(d *domain.Domain, dd *domain.Disk) (int, string) {
	src := dd.Source
	if src == nil {
		return novaOther, ""
	}
	if isUUID(strings.ToLower(dd.Serial)) && j.isVolumeSource(dd) {
		return novaVolume, ""
	}
	switch dd.Type {
	case "network":
		if _, img, _ := strings.Cut(src.Name, "/"); src.Protocol == "rbd" && d.UUID != "" && strings.HasPrefix(img, d.UUID+"_disk") {
			return novaUnsupported, "is on Nova's rbd image backend: the hook cannot read which Glance image an rbd clone comes from without a Ceph client, so it is refused; use images_type=qcow2 (see docs/threat-model.md)"
		}
		return novaOther, ""
	case "block":
		if d.UUID != "" && strings.HasPrefix(path.Base(src.Path), d.UUID+"_disk") {
			return novaUnsupported, "is on Nova's lvm image backend, a full copy of the image that nothing ties to a Glance id without hashing it; use images_type=qcow2 (see docs/threat-model.md)"
		}
		return novaOther, ""
	case "file":
	default:
		return novaOther, ""
	}
	dir, name := path.Split(src.Path)
	if d.UUID == "" || path.Clean(src.Path) != src.Path || dir != path.Join(j.novaInstances(), d.UUID)+"/" {
		return novaOther, ""
	}
	switch {
	case name == "disk" || name == "disk.rescue":
		return novaImage, name
	case name == "disk.swap":
		return novaSwap, name
	case isEphemeralDisk(name):
		return novaEphemeral, name
	case name == "disk.config" || name == "disk.config.rescue":
		return novaConfig, name
	}
	return novaOther, ""
}

// isVolumeSource reports whether a disk's source is where Nova attaches Cinder volumes: a
// host block device (iSCSI, FC, LVM through os-brick), a network disk (rbd, iscsi), or a
// file under the volume mount directory (NFS and other file drivers).
func (j *Judge) isVolumeSource(dd *domain.Disk) bool {
	switch dd.Type {
	case "block", "network":
		return true
	case "file":
		base := j.Config.NovaVolumesPath
		if base == "" {
			base = "/var/lib/nova/mnt"
		}
		p := dd.Source.Path
		return path.Clean(p) == p && strings.HasPrefix(p, base+"/")
	}
	return false
}

func (j *Judge) novaInstances() string {
	if p := j.Config.NovaInstancesPath; p != "" {
		return p
	}
	return "/var/lib/nova/instances"
}

// judgeNovaImage judges disk or disk.rescue: a qcow2 overlay on _base/<sha1 of a Glance id>.
// root only helps name an image no list knows: its id is the one whose sha1 is the base's.
func (j *Judge) judgeNovaImage(disk *Disk, dd *domain.Disk, name string, root *domain.NovaRoot) {
	base, err := j.novaBase(dd)
	if err != nil {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("(%s) %v", name, err)
		return
	}
	disk.Source = base
	baseName := path.Base(base)
	if !isGlanceBase(baseName) {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("(%s) has base %s, which is not named after a Glance image", name, base)
		return
	}
	id, e, ok, err := j.Snapshot.LookupNovaBase(baseName)
	switch {
	case err != nil:
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("cannot read vmgate's snapshot (%v): run `vmgate sync`", err)
		return
	case !ok && root != nil && root.Type == "image" && snapshot.NovaBaseName(root.ID) == baseName:
		disk.GlanceID = root.ID
		disk.Status, disk.Reason = StatusUnknown, "unknown Glance image: no subscribed list endorses its sha512"
		return
	case !ok:
		disk.Status = StatusUnknown
		disk.Reason = name + " boots a Glance image no endorsed list names"
		return
	}
	disk.GlanceID, disk.SHA512 = id, e.SHA512
	if j.blockDisk(disk, e) {
		return
	}
	j.judgeEntry(disk, e)
}

// novaBase checks that dd is an overlay Nova made on one of its base files and returns the
// base's path. The instance directory, _base and the base must be writable by their owner
// only: only nova-compute writes there.
func (j *Judge) novaBase(dd *domain.Disk) (string, error) {
	inst := j.novaInstances()
	if dd.Format != qcow2.FormatQCOW2 {
		return "", fmt.Errorf("is a %q disk, not a qcow2 overlay: Nova's flat image backend (use_cow_images=False, images_type=raw) copies the image, and nothing ties the copy to a Glance id without hashing it; use images_type=qcow2 (see docs/threat-model.md)", dd.Format)
	}
	owner, err := j.novaDirs(dd.Source.Path)
	if err != nil {
		return "", err
	}
	// The chain QEMU opens: the XML's <backingStore>, which must agree with the headers.
	chain, err := chainOf(dd)
	if err != nil {
		return "", fmt.Errorf("cannot follow its backing chain: %w", err)
	}
	switch {
	case len(chain) < 2:
		return "", errors.New("has no backing file: Nova makes instance disks as overlays on _base")
	case len(chain) > 2:
		return "", fmt.Errorf("has base %s with a backing file of its own: Nova's bases have none", chain[1].Path)
	}
	base := chain[1].Path
	if path.Dir(base) != path.Join(inst, "_base") {
		return "", fmt.Errorf("has backing file %s, outside %s/_base where Nova keeps its images", base, inst)
	}
	if err := trustedDir(path.Join(inst, "_base"), owner); err != nil {
		return "", err
	}
	if err := trustedFile(base); err != nil {
		return "", err
	}
	return base, nil
}

// novaDirs checks the instances directory and the instance's own directory holding p, and
// that p itself is a regular file; it returns the instances directory's owner (nova).
func (j *Judge) novaDirs(p string) (uint32, error) {
	inst := j.novaInstances()
	fi, err := os.Stat(inst)
	if err != nil {
		return 0, fmt.Errorf("nova instances path: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() {
		return 0, fmt.Errorf("nova instances path %s is not a directory", inst)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return 0, fmt.Errorf("nova instances path %s is writable by others than its owner (mode %v): only Nova may write there", inst, fi.Mode().Perm())
	}
	if err := trustedDir(path.Dir(p), st.Uid); err != nil {
		return 0, err
	}
	li, err := os.Lstat(p)
	if err != nil {
		return 0, err
	}
	if !li.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file (%v)", p, li.Mode().Type())
	}
	return st.Uid, nil
}

// trustedDir checks that dir is a directory (not a symbolic link) owned by root or owner and
// writable by its owner only.
func trustedDir(dir string, owner uint32) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok || !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case st.Uid != 0 && st.Uid != owner:
		return fmt.Errorf("%s is owned by uid %d, not by root or Nova (uid %d)", dir, st.Uid, owner)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s is writable by others than its owner (mode %v): only Nova may write there", dir, fi.Mode().Perm())
	}
	return nil
}

// trustedFile checks that p is a regular file writable by its owner only. Its owner may be
// Nova or, under libvirt's dynamic ownership, QEMU's user: only root can give a file away.
func trustedFile(p string) error {
	fi, err := os.Lstat(p)
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%v)", p, fi.Mode().Type())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s is writable by others than its owner (mode %v): only Nova may write there", p, fi.Mode().Perm())
	}
	return nil
}

// judgeNovaBlank judges disk.swap, disk.local and disk.eph<N>: overlays on a base Nova made
// with mkswap or mkfs, which holds nothing a user chose.
func (j *Judge) judgeNovaBlank(disk *Disk, dd *domain.Disk, name string, kind int) {
	base, err := j.novaBase(dd)
	if err != nil {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("(%s) %v", name, err)
		return
	}
	disk.Source = base
	baseName := path.Base(base)
	want, check := isSwapBase, checkSwap
	if kind == novaEphemeral {
		want, check = isEphemeralBase, checkEphemeral
	}
	if !want(baseName) {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("(%s) has base %s, which is not one Nova makes for it", name, base)
		return
	}
	if err := check(base); err != nil {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("(%s) base %s: %v", name, baseName, err)
		return
	}
	disk.Status, disk.Reason = StatusExempt, fmt.Sprintf("Nova's %s on %s, made by Nova, holds nothing bootable", name, baseName)
}

// judgeConfigDrive judges disk.config: the ISO 9660 image Nova writes with the instance's
// metadata and user data, which no firmware can boot.
func (j *Judge) judgeConfigDrive(disk *Disk, dd *domain.Disk) {
	name := path.Base(dd.Source.Path)
	if dd.Format != qcow2.FormatRaw {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("(%s) is a %q disk; Nova writes config drives as raw files", name, dd.Format)
		return
	}
	if _, err := j.novaDirs(dd.Source.Path); err != nil {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("(%s) %v", name, err)
		return
	}
	if err := checkConfigDrive(dd.Source.Path); err != nil {
		disk.Status, disk.Reason = StatusError, fmt.Sprintf("(%s) %v", name, err)
		return
	}
	disk.Status, disk.Reason = StatusExempt, "Nova's config drive, ISO 9660 with no boot record"
}

// decideNovaRoot judges a server as Nova's API describes it (vmgate terminate --cloud): by
// the Glance image it was booted from, as no disk is known.
func (j *Judge) decideNovaRoot(n *domain.Nova) Decision {
	if n.Root == nil {
		return refuse("the Nova metadata names no root disk, so vmgate cannot tell which image the instance runs")
	}
	switch n.Root.Type {
	case "image":
	case "volume":
		if j.Config.AllowBootFromVolume {
			return Decision{Endorsed: true, Exemption: "boot from volume allowed by admission.allow_boot_from_volume",
				Disks: []Disk{{Source: "volume " + n.Root.ID, Status: StatusExempt}}}
		}
		return refuse("instance boots from volume %s: no image list can vouch for a volume's content; boot from an endorsed image, or set admission.allow_boot_from_volume", n.Root.ID)
	default:
		return refuse("the Nova root disk has type %q, which vmgate does not know", n.Root.Type)
	}
	disk := Disk{GlanceID: n.Root.ID, Source: "glance:" + n.Root.ID}
	e, ok, err := j.Snapshot.LookupGlance(n.Root.ID)
	if err != nil {
		return refuse("cannot read vmgate's snapshot (%v): run `vmgate sync`", err)
	}
	if ok {
		disk.SHA512 = e.SHA512
	}
	if j.blockDisk(&disk, e) {
		return j.conclude([]Disk{disk})
	}
	if !ok {
		disk.Status = StatusUnknown
		disk.Reason = "unknown Glance image: no endorsed list names it"
		return Decision{Reason: fmt.Sprintf("not endorsed: image %s: unknown Glance image (no subscribed list endorses its sha512; run `vmgate images` to see what is endorsed)", n.Root.ID), Disks: []Disk{disk}}
	}
	j.judgeEntry(&disk, e)
	return j.conclude([]Disk{disk})
}

// Content checks. They read a few KiB at fixed places, never the whole file, except the
// data a swap base holds past its header, which mkswap never writes (a sparse file has
// none; checkSwap reads at most maxBlankData of it).

const maxBlankData = 1 << 20

func readAt(p string, n int) ([]byte, *os.File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	b := make([]byte, n)
	m, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		f.Close()
		return nil, nil, err
	}
	return b[:m], f, nil
}

func zero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkSwap proves p is what `mkswap` makes of an empty file: a first page with 1 KiB of
// zeros (no boot sector, no partition table), the version 1 swap header and the
// SWAPSPACE2 signature, and nothing but zeros after it.
func checkSwap(p string) error {
	const page = 4096
	b, f, err := readAt(p, page)
	if err != nil {
		return err
	}
	defer f.Close()
	if len(b) < page || string(b[page-10:]) != "SWAPSPACE2" || binary.LittleEndian.Uint32(b[1024:]) != 1 {
		return errors.New("is not a swap area made by mkswap (no SWAPSPACE2 signature in its first page)")
	}
	if !zero(b[:1024]) {
		return errors.New("is a swap area with a boot sector: mkswap leaves the first 1 KiB empty")
	}
	return zeroPast(f, page)
}

// zeroPast checks that f holds only zeros from off: it reads only the extents the file
// system says hold data (SEEK_DATA), at most maxBlankData bytes of them.
func zeroPast(f *os.File, off int64) error {
	const seekData, seekHole = 3, 4
	buf := make([]byte, 64<<10)
	read := 0
	for {
		start, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return nil // no data past off
		}
		if err != nil {
			return fmt.Errorf("find its data: %w", err)
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			return fmt.Errorf("find its data: %w", err)
		}
		for start < end {
			n := int64(len(buf))
			if end-start < n {
				n = end - start
			}
			m, err := f.ReadAt(buf[:n], start)
			if m == 0 && err != nil {
				return err
			}
			if !zero(buf[:m]) {
				return fmt.Errorf("holds data at offset %d that mkswap/mkfs does not write", start)
			}
			start += int64(m)
			if read += m; read > maxBlankData {
				return fmt.Errorf("holds more than %d MiB of data the file system does not show as holes; vmgate cannot prove it blank cheaply", maxBlankData>>20)
			}
		}
		off = end
	}
}

// checkEphemeral proves p is a fresh file system of a kind Nova's mkfs makes (ext2/3/4,
// XFS, FAT, NTFS). Only Nova writes under _base and it names a file ephemeral_* only when
// it made it with mkfs on an empty file; the check makes sure no image took that name: an
// ext or XFS file system has no boot code, FAT and NTFS carry mkfs's "not a bootable disk"
// stub, and no file system has a partition table.
func checkEphemeral(p string) error {
	b, f, err := readAt(p, 2048)
	if err != nil {
		return err
	}
	f.Close()
	if len(b) < 2048 {
		return errors.New("is too small to be a file system")
	}
	switch {
	case binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53: // ext2/3/4 superblock magic
		if !zero(b[:1024]) {
			return errors.New("is an ext file system with a boot sector: mkfs leaves it empty")
		}
	case string(b[:4]) == "XFSB":
	case string(b[3:11]) == "mkfs.fat" || string(b[3:11]) == "mkdosfs\x00" || string(b[3:11]) == "mkdosfs ":
	case string(b[3:11]) == "NTFS    ":
	default:
		return errors.New("is no file system Nova's mkfs makes (ext, xfs, vfat, ntfs)")
	}
	if string(b[512:520]) == "EFI PART" {
		return errors.New("has a GPT partition table")
	}
	return nil
}

// checkConfigDrive proves p is an ISO 9660 image as genisoimage writes Nova's config drive
// (volume id config-2): an empty system area (no MBR, no GPT: a hybrid ISO would boot as a
// disk), and no El Torito boot record or UDF descriptors among its volume descriptors.
func checkConfigDrive(p string) error {
	const sector, first, most = 2048, 16, 32
	b, f, err := readAt(p, (first+most)*sector)
	if err != nil {
		return err
	}
	f.Close()
	if len(b) < (first+1)*sector {
		return errors.New("is too small to be an ISO 9660 config drive (Nova's config_drive_format=vfat is not supported)")
	}
	pvd := b[first*sector:]
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return errors.New("is not an ISO 9660 image (Nova's config_drive_format=vfat is not supported)")
	}
	if !zero(b[:first*sector]) {
		return errors.New("has data in its ISO 9660 system area (a boot sector or partition table)")
	}
	if v := strings.TrimRight(string(pvd[40:72]), " "); v != "config-2" {
		return fmt.Errorf("has volume id %q, not Nova's config-2", v)
	}
	for i := first; (i+1)*sector <= len(b); i++ {
		vd := b[i*sector : (i+1)*sector]
		id := string(vd[1:6])
		switch {
		case id == "CD001" && vd[0] == 0:
			return errors.New("has an El Torito boot record")
		case id == "CD001" && vd[0] == 255:
			// The terminator; a UDF volume recognition sequence may follow it.
			for k := i + 1; k < i+4 && (k+1)*sector <= len(b); k++ {
				if s := string(b[k*sector+1 : k*sector+6]); s == "BEA01" || strings.HasPrefix(s, "NSR0") || s == "BOOT2" {
					return errors.New("has UDF descriptors")
				}
			}
			return nil
		case id != "CD001":
			return errors.New("has a malformed ISO 9660 volume descriptor set")
		}
	}
	return errors.New("has no ISO 9660 volume descriptor set terminator in its first sectors")
}
