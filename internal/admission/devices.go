package admission

// Everything but disks that a domain makes QEMU run or hand to the guest: the emulator,
// firmware and ROMs, host devices, network boot, memory-mapped files, host scripts and the
// QEMU namespace's pass-through. No image list vouches for any of it, so it must come from
// the system (a root-owned file in a configured place) or the domain must be exempt.
//
// Two attackers (docs/threat-model.md): a cloud user, who reaches libvirt only through
// Nova's API and cannot write the domain XML, and a user of qemu:///system, who writes any
// XML and is root-equivalent by libvirt's own word. Each check says which one it stops.

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vmgate/vmgate/internal/domain"
)

// judgeDevices refuses a domain whose devices or firmware run what no list vouches for; it
// reports whether it refused. It costs a few lstat calls per file the XML names and none
// for a domain that names none but its emulator.
func (j *Judge) judgeDevices(d *domain.Domain) (Decision, bool) {
	// <qemu:override> sets any property of any device (a romfile, a drive's file) and
	// <qemu:capabilities> changes how libvirt builds QEMU's command line: both out of sight,
	// like <qemu:commandline>. Stops a qemu:///system user from routing around the rules
	// below; Nova never writes them.
	if len(d.QEMUPassthrough) > 0 {
		return refuse("the domain uses QEMU pass-through (%s), which can load files vmgate cannot see; exempt the domain by name in admission.exempt_domains if this is intended", d.QEMUPassthrough[0]), true
	}
	// The emulator runs on the host with the guest's memory: a program of the user's choice
	// there runs any guest code it likes. Stops a qemu:///system user; Nova writes the
	// system's QEMU.
	if d.Emulator != "" {
		if err := j.checkEmulator(d.Emulator); err != nil {
			return refuse("emulator not allowed: %s %v; use the system's QEMU", d.Emulator, err), true
		}
	}
	// Firmware, ROMs, ACPI tables (AML is code the guest kernel runs), device trees and
	// fw_cfg blobs run in the guest before or beside its disk. Stops a qemu:///system user;
	// for a cloud user it also holds if an image property ever made Nova write one.
	for _, f := range d.Firmware {
		if err := j.checkFirmware(f.Path); err != nil {
			return refuse("firmware not allowed: %s %s %v; the guest would run it and no image list vouches for it: use the system's firmware, or exempt the domain in admission.exempt_domains", f.Element, f.Path, err), true
		}
	}
	// A host device (PCI, USB, SCSI, iSCSI) or a USB device redirected over the network can
	// be booted from or hold code, and no list vouches for it. Stops a qemu:///system user,
	// and a cloud user whose flavor asks for PCI passthrough on a site that exempts none.
	if len(d.Passthrough) > 0 {
		return refuse("host device not allowed: the domain passes %s to the guest, which can boot what no image list vouches for; exempt the domain by name in admission.exempt_domains if this is intended", d.Passthrough[0]), true
	}
	// Network boot runs whatever a PXE server on the guest's network offers: a cloud user
	// controls their own tenant network. Stops a qemu:///system user asking for it; Nova
	// does not write it.
	if len(d.NetworkBoot) > 0 {
		return refuse("network boot not allowed: %s; the guest would run what a boot server sends, which no image list vouches for: boot from an endorsed disk, or exempt the domain in admission.exempt_domains", d.NetworkBoot[0]), true
	}
	// An nvdimm or virtio-pmem file is storage the guest mounts and runs programs from,
	// like a disk no list vouches for; a <shmem> region is memory a host process fills.
	// Stops a qemu:///system user.
	if len(d.MemoryFiles) > 0 {
		return refuse("memory device not allowed: the domain maps host memory or file %s into the guest, which can run what it holds and no image list vouches for; exempt the domain by name in admission.exempt_domains if this is intended", d.MemoryFiles[0]), true
	}
	// libvirt runs an interface's script on the host as root. Stops a qemu:///system user
	// from running code the gate never sees; Nova writes none.
	if len(d.HostScripts) > 0 {
		return refuse("interface script not allowed: libvirt would run %s on the host; exempt the domain by name in admission.exempt_domains if this is intended", d.HostScripts[0]), true
	}
	return Decision{}, false
}

// checkEmulator says why the emulator at p is not one of admission.emulators: it must
// resolve, symbolic links followed, to a file matching a pattern, and only root may
// change it or any directory or link on the way.
func (j *Judge) checkEmulator(p string) error {
	resolved, err := resolve(p)
	if err != nil {
		return err
	}
	matched := false
	for _, pat := range j.Config.Emulators {
		if ok, _ := path.Match(pat, resolved); ok {
			matched = true
			break
		}
	}
	if !matched {
		if resolved != p {
			return fmt.Errorf("(resolved to %s) matches none of admission.emulators", resolved)
		}
		return errors.New("matches none of admission.emulators")
	}
	return rootOnly(p, resolved)
}

// checkFirmware says why the file at p is not under admission.firmware_dirs: it must
// resolve, symbolic links followed as the kernel follows them, to a file under one of
// them, and only root may change it or any directory or link on the way.
func (j *Judge) checkFirmware(p string) error {
	resolved, err := resolve(p)
	if err != nil {
		return err
	}
	if !j.inFirmwareDirs(resolved) {
		if resolved != p {
			return fmt.Errorf("(resolved to %s) is outside admission.firmware_dirs", resolved)
		}
		return errors.New("is outside admission.firmware_dirs")
	}
	return rootOnly(p, resolved)
}

// inFirmwareDirs reports whether resolved (free of symbolic links) lies under one of the
// directories. A resolved path that starts with a configured directory is under it, since
// it holds no link; otherwise each directory is resolved in turn (RHEL's /usr/share/OVMF
// may be a link into /usr/share/edk2).
func (j *Judge) inFirmwareDirs(resolved string) bool {
	for _, dir := range j.Config.FirmwareDirs {
		if strings.HasPrefix(resolved, dir+"/") {
			return true
		}
	}
	for _, dir := range j.Config.FirmwareDirs {
		if r, err := filepath.EvalSymlinks(dir); err == nil && r != "/" && strings.HasPrefix(resolved, r+"/") {
			return true
		}
	}
	return false
}

// resolve returns the file p names once every symbolic link is followed. p must be
// absolute and clean: libvirt writes paths so, and a ".." would make the path's meaning
// depend on the links before it.
func resolve(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", errors.New("is not an absolute path")
	}
	if filepath.Clean(p) != p {
		return "", errors.New("is not a clean path (it has \"..\", \".\" or \"//\")")
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("cannot be resolved (%v)", err)
	}
	return r, nil
}

// rootOnly says why someone other than root could change what QEMU opens at written
// (which resolves to resolved) after vmgate looked: the file is not a regular file, or
// it, a directory above it or a link on the way, on either path, belongs to another user
// or is writable by one.
func rootOnly(written, resolved string) error {
	fi, err := os.Stat(resolved)
	if err != nil {
		return fmt.Errorf("cannot be checked (%v)", err)
	}
	if !fi.Mode().IsRegular() {
		return errors.New("is not a regular file")
	}
	if err := rootChain(resolved); err != nil {
		return err
	}
	if written != resolved {
		return rootChain(written)
	}
	return nil
}

// rootChain checks p and every directory above it: each must belong to root and be
// writable by no other user (a group other than root's counts as another user). A link's
// own mode means nothing, only its owner does.
func rootChain(p string) error {
	for first := true; ; p, first = filepath.Dir(p), false {
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("cannot be checked (%v)", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return errors.New("cannot be checked (no owner)")
		}
		perm := fi.Mode().Perm()
		writable := perm&0o002 != 0 || perm&0o020 != 0 && st.Gid != 0
		if fi.Mode()&os.ModeSymlink != 0 {
			writable = false
		}
		if st.Uid != 0 || writable {
			if first {
				return fmt.Errorf("can be changed by a user other than root (%s)", p)
			}
			return fmt.Errorf("is in %s, which a user other than root can change", p)
		}
		if p == "/" {
			return nil
		}
	}
}
