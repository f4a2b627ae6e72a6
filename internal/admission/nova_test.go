package admission

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

const (
	instanceUUID = "0de1a539-75ac-4b02-9712-69e774009d60"
	glanceGood   = "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b"
	glanceOther  = "dc7efb6f-67ac-4409-a0c3-f565a29a92a2" // endorsed bytes under another id: not mapped
	glanceRevoke = "8a6c2b1e-0f4d-4c3b-9a8e-7d6c5b4a3f21"
	volumeID     = "5e2f0a9c-1b3d-4e6f-8a7b-9c0d1e2f3a4b"
)

// novaHost lays out a compute node's instances path as Nova's qcow2 image backend does.
type novaHost struct {
	t          *testing.T
	inst, base string
}

func newNovaHost(t *testing.T, w *world) *novaHost {
	h := &novaHost{t: t, inst: filepath.Join(w.dir, "instances")}
	h.base = filepath.Join(h.inst, "_base")
	for _, d := range []string{h.inst, h.base, filepath.Join(h.inst, instanceUUID)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w.cfg.NovaInstancesPath = h.inst
	return h
}

func (h *novaHost) write(p string, b []byte) string {
	if err := os.WriteFile(p, b, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// glanceBase writes the raw copy of a Glance image that Nova keeps in _base.
func (h *novaHost) glanceBase(id string) string {
	return h.write(filepath.Join(h.base, snapshot.NovaBaseName(id)), []byte("the raw bytes Nova converted from "+id))
}

// overlay writes <uuid>/name, a qcow2 overlay on base as `qemu-img create -b base -F raw`
// writes it.
func (h *novaHost) overlay(name, base string) string {
	return h.write(filepath.Join(h.inst, instanceUUID, name), qcow2Header(base, "raw"))
}

// qcow2Header is the first 4 KiB of a version 3 qcow2 image with a backing file.
func qcow2Header(backing, format string) []byte {
	b := make([]byte, 4096)
	be := binary.BigEndian
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], 3)
	be.PutUint32(b[20:], 16)
	be.PutUint64(b[24:], 1<<30)
	be.PutUint32(b[96:], 4)
	off := uint32(112)
	be.PutUint32(b[100:], off)
	be.PutUint32(b[off:], 0xe2792aca) // backing format extension
	be.PutUint32(b[off+4:], uint32(len(format)))
	copy(b[off+8:], format)
	off += 8 + (uint32(len(format))+7)&^7
	off += 8
	be.PutUint64(b[8:], uint64(off))
	be.PutUint32(b[16:], uint32(len(backing)))
	copy(b[off:], backing)
	return b
}

// swapArea is what mkswap makes of an empty file of n bytes.
func swapArea(n int) []byte {
	b := make([]byte, n)
	binary.LittleEndian.PutUint32(b[1024:], 1)
	binary.LittleEndian.PutUint32(b[1028:], uint32(n/4096-1))
	copy(b[4096-10:], "SWAPSPACE2")
	return b
}

// ext4 is the start of a file system mkfs.ext4 made.
func ext4() []byte {
	b := make([]byte, 64<<10)
	binary.LittleEndian.PutUint16(b[1024+56:], 0xEF53)
	return b
}

// iso9660 is a config drive as genisoimage writes it: primary and Joliet descriptors, the
// terminator; bootRecord adds an El Torito boot record.
func iso9660(volume string, bootRecord bool) []byte {
	b := make([]byte, 64<<10)
	vd := func(i int, typ byte) []byte {
		s := b[i*2048 : (i+1)*2048]
		s[0] = typ
		copy(s[1:], "CD001\x01")
		return s
	}
	pvd := vd(16, 1)
	copy(pvd[40:72], volume+strings.Repeat(" ", 32-len(volume)))
	i := 17
	if bootRecord {
		copy(vd(i, 0)[7:], "EL TORITO SPECIFICATION")
		i++
	}
	vd(i, 2)
	vd(i+1, 255)
	return b
}

func novaDomain(root string, disks ...domain.Disk) *domain.Domain {
	return &domain.Domain{Name: "instance-00000003", UUID: instanceUUID, Disks: disks, Nova: &domain.Nova{
		Name: "vm", UserID: "u1", ProjectID: "p1", Root: &domain.NovaRoot{Type: "image", ID: root}}}
}

func fileDisk(target, p, format string) domain.Disk {
	return domain.Disk{Device: "disk", Type: "file", Target: target, Format: format, Source: &domain.Source{Path: p}}
}

func cdrom(target, p string) domain.Disk {
	d := fileDisk(target, p, "raw")
	d.Device, d.ReadOnly = "cdrom", true
	return d
}

func volume(target string) domain.Disk {
	return domain.Disk{Device: "disk", Type: "block", Target: target, Format: "raw", Serial: volumeID,
		Source: &domain.Source{Path: "/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-iqn.2010-10.org.openstack:volume-" + volumeID + "-lun-1"}}
}

func TestNovaInstanceDisks(t *testing.T) {
	w := newWorld(t)
	h := newNovaHost(t, w)
	_, sha := w.image("endorsed")
	_, revokedSHA := w.image("revoked")
	w.endorse(sha, snapshot.Endorsed, "", glanceGood)
	w.endorse(revokedSHA, snapshot.Revoked, `removed from list "example" version 2`, glanceRevoke)
	good, other, revoked := h.glanceBase(glanceGood), h.glanceBase(glanceOther), h.glanceBase(glanceRevoke)
	plainGood, _ := w.image("plain-endorsed.raw")
	w.endorse(sha512Of(t, plainGood), snapshot.Endorsed, "")
	plainUnknown, _ := w.image("plain-unknown.raw")
	swap := h.write(filepath.Join(h.base, "swap_512"), swapArea(1<<20))
	eph := h.write(filepath.Join(h.base, "ephemeral_1_0706d66"), ext4())
	config := h.write(filepath.Join(h.inst, instanceUUID, "disk.config"), iso9660("config-2", false))
	j := w.judge(now)

	disk := func() domain.Disk { return fileDisk("vda", h.overlay("disk", good), "qcow2") }
	cases := []struct {
		name   string
		d      func() *domain.Domain
		allow  bool
		reason string
	}{
		{"endorsed image", func() *domain.Domain { return novaDomain(glanceGood, disk()) }, true, ""},
		{"rescue with an unendorsed image", func() *domain.Domain {
			return novaDomain(glanceGood, fileDisk("vda", h.overlay("disk.rescue", other), "qcow2"), fileDisk("vdb", disk().Source.Path, "qcow2"))
		}, false, "not endorsed: disk vda (" + other + "): disk.rescue boots a Glance image no endorsed list names"},
		{"rescue with an endorsed image", func() *domain.Domain {
			return novaDomain(glanceGood, fileDisk("vda", h.overlay("disk.rescue", good), "qcow2"), fileDisk("vdb", disk().Source.Path, "qcow2"))
		}, true, ""},
		{"endorsed metadata, unendorsed disk", func() *domain.Domain {
			return novaDomain(glanceGood, fileDisk("vda", h.overlay("disk", other), "qcow2"))
		}, false, "boots a Glance image no endorsed list names"},
		{"revoked image", func() *domain.Domain {
			return novaDomain(glanceGood, fileDisk("vda", h.overlay("disk", revoked), "qcow2"))
		}, false, "not endorsed: image " + glanceRevoke + " (sha512 " + revokedSHA[:16] + "…): removed from list"},
		{"unknown image named by nova:root", func() *domain.Domain {
			return novaDomain(glanceOther, fileDisk("vda", h.overlay("disk", other), "qcow2"))
		}, false, "not endorsed: image " + glanceOther + ": unknown Glance image: no subscribed list endorses its sha512 (run `vmgate images`"},
		{"metadata over a plain unendorsed disk", func() *domain.Domain { return novaDomain(glanceGood, fileDisk("vda", plainUnknown, "raw")) }, false, "no subscribed list endorses it"},
		{"metadata over a plain endorsed disk", func() *domain.Domain { return novaDomain(glanceOther, fileDisk("vda", plainGood, "raw")) }, true, ""},
		{"swap, ephemeral and config drive", func() *domain.Domain {
			return novaDomain(glanceGood, disk(), fileDisk("vdb", h.overlay("disk.local", eph), "qcow2"),
				fileDisk("vdc", h.overlay("disk.swap", swap), "qcow2"), cdrom("hda", config))
		}, true, ""},
		{"flat image backend", func() *domain.Domain {
			return novaDomain(glanceGood, fileDisk("vda", h.write(filepath.Join(h.inst, instanceUUID, "disk"), []byte("raw copy")), "raw"))
		}, false, "flat image backend"},
		{"swap base as root disk", func() *domain.Domain {
			return novaDomain(glanceGood, fileDisk("vda", h.overlay("disk", swap), "qcow2"))
		}, false, "not named after a Glance image"},
		{"image base as swap", func() *domain.Domain {
			return novaDomain(glanceGood, disk(), fileDisk("vdb", h.overlay("disk.swap", good), "qcow2"))
		}, false, "not one Nova makes for it"},
		{"backing file outside _base", func() *domain.Domain {
			return novaDomain(glanceGood, fileDisk("vda", h.overlay("disk", plainGood), "qcow2"))
		}, false, "outside " + h.inst + "/_base"},
		{"boot from volume", func() *domain.Domain { return novaDomain("", volume("vda")) }, false, "instance boots from volume " + volumeID},
		{"image with a data volume", func() *domain.Domain {
			return novaDomain(glanceGood, fileDisk("vda", h.overlay("disk", good), "qcow2"), volume("vdb"))
		}, true, ""},
		{"rbd image backend", func() *domain.Domain {
			return novaDomain(glanceGood, domain.Disk{Device: "disk", Type: "network", Target: "vda", Format: "raw",
				Source: &domain.Source{Protocol: "rbd", Name: "vms/" + instanceUUID + "_disk"}})
		}, false, "rbd image backend"},
		{"lvm image backend", func() *domain.Domain {
			return novaDomain(glanceGood, domain.Disk{Device: "disk", Type: "block", Target: "vda", Format: "raw",
				Source: &domain.Source{Path: "/dev/nova/" + instanceUUID + "_disk"}})
		}, false, "lvm image backend"},
	}
	for _, c := range cases {
		dec := j.Decide(c.d())
		if dec.Allow != c.allow || !strings.Contains(dec.Reason, c.reason) {
			t.Errorf("%s: allow=%v reason=%q, want allow=%v and %q", c.name, dec.Allow, dec.Reason, c.allow, c.reason)
		}
	}
	// The record names the Glance image each disk boots, found from its base file.
	dec := j.Decide(novaDomain(glanceGood, fileDisk("vda", h.overlay("disk.rescue", good), "qcow2")))
	if d := dec.Disks[0]; d.GlanceID != glanceGood || d.SHA512 != sha || d.Source != good || d.Status != "endorsed" {
		t.Errorf("rescue disk = %+v", d)
	}

	j.Config.AllowBootFromVolume = true
	dec = j.Decide(novaDomain("", volume("vda"), cdrom("hda", config)))
	if !dec.Allow || dec.Exemption == "" || dec.Disks[0].Status != StatusExempt || !strings.Contains(dec.Disks[0].Reason, volumeID) {
		t.Errorf("boot from volume allowed: %+v", dec)
	}
	// A volume does not excuse another disk.
	if dec := j.Decide(novaDomain("", volume("vda"), fileDisk("vdb", plainUnknown, "raw"))); dec.Allow {
		t.Errorf("boot from volume with an unendorsed disk allowed: %+v", dec)
	}
}

func sha512Of(t *testing.T, p string) string {
	s, err := sumHasher{}.SHA512(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// What Nova makes is recognised by its content, not its name.
func TestNovaBlankDisks(t *testing.T) {
	mbr := swapArea(1 << 20)
	mbr[510], mbr[511] = 0x55, 0xaa
	swapData := swapArea(1 << 20)
	copy(swapData[512<<10:], "an operating system")
	mbrExt := ext4()
	copy(mbrExt, "\xeb\x63\x90boot code")
	cases := []struct {
		name, base string
		content    []byte
		reason     string
	}{
		{"swap with a boot sector", "swap_1", mbr, "boot sector"},
		{"swap with data", "swap_1", swapData, "holds data at offset"},
		{"swap that is no swap", "swap_1", ext4(), "no SWAPSPACE2"},
		{"ephemeral with a boot sector", "ephemeral_1_0706d66", mbrExt, "boot sector"},
		{"ephemeral that is an image", "ephemeral_1_0706d66", []byte(strings.Repeat("x", 4096)), "no file system"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			h := newNovaHost(t, w)
			_, sha := w.image("endorsed")
			w.endorse(sha, snapshot.Endorsed, "", glanceGood)
			good := h.glanceBase(glanceGood)
			base := h.write(filepath.Join(h.base, c.base), c.content)
			name := "disk.swap"
			if strings.HasPrefix(c.base, "ephemeral") {
				name = "disk.eph0"
			}
			dec := w.judge(now).Decide(novaDomain(glanceGood, fileDisk("vda", h.overlay("disk", good), "qcow2"), fileDisk("vdb", h.overlay(name, base), "qcow2")))
			if dec.Allow || !strings.Contains(dec.Reason, c.reason) {
				t.Errorf("allow=%v reason=%q, want %q", dec.Allow, dec.Reason, c.reason)
			}
		})
	}
}

func TestNovaConfigDrive(t *testing.T) {
	hybrid := iso9660("config-2", false)
	hybrid[510], hybrid[511] = 0x55, 0xaa
	udf := iso9660("config-2", false)
	copy(udf[20*2048+1:], "BEA01")
	for _, c := range []struct {
		name    string
		content []byte
		reason  string
	}{
		{"El Torito", iso9660("config-2", true), "El Torito boot record"},
		{"hybrid ISO", hybrid, "system area"},
		{"UDF", udf, "UDF"},
		{"another volume", iso9660("LIVE", false), `volume id "LIVE"`},
		{"vfat", append([]byte("\xeb\x3c\x90mkfs.fat"), make([]byte, 64<<10)...), "not an ISO 9660 image"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			h := newNovaHost(t, w)
			_, sha := w.image("endorsed")
			w.endorse(sha, snapshot.Endorsed, "", glanceGood)
			good := h.glanceBase(glanceGood)
			config := h.write(filepath.Join(h.inst, instanceUUID, "disk.config"), c.content)
			dec := w.judge(now).Decide(novaDomain(glanceGood, fileDisk("vda", h.overlay("disk", good), "qcow2"), cdrom("hda", config)))
			if dec.Allow || !strings.Contains(dec.Reason, c.reason) {
				t.Errorf("allow=%v reason=%q, want %q", dec.Allow, dec.Reason, c.reason)
			}
		})
	}
}

// Only Nova may write under the instances path: what others can write proves nothing.
func TestNovaPathsMustBeNovas(t *testing.T) {
	for _, c := range []struct {
		name   string
		mut    func(h *novaHost, base string)
		reason string
	}{
		{"_base writable by all", func(h *novaHost, _ string) { os.Chmod(h.base, 0o777) }, "_base is writable by others"},
		{"base writable by group", func(_ *novaHost, base string) { os.Chmod(base, 0o664) }, "is writable by others than its owner"},
		{"instance directory writable by all", func(h *novaHost, _ string) { os.Chmod(filepath.Join(h.inst, instanceUUID), 0o777) }, "writable by others"},
		{"instances path writable by group", func(h *novaHost, _ string) { os.Chmod(h.inst, 0o775) }, "nova instances path"},
		{"base is a symbolic link", func(h *novaHost, base string) {
			os.Rename(base, base+".real")
			os.Symlink(base+".real", base)
		}, "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			h := newNovaHost(t, w)
			_, sha := w.image("endorsed")
			w.endorse(sha, snapshot.Endorsed, "", glanceGood)
			good := h.glanceBase(glanceGood)
			d := novaDomain(glanceGood, fileDisk("vda", h.overlay("disk", good), "qcow2"))
			j := w.judge(now)
			if dec := j.Decide(d); !dec.Allow {
				t.Fatalf("before: %s", dec.Reason)
			}
			c.mut(h, good)
			if dec := j.Decide(d); dec.Allow || !strings.Contains(dec.Reason, c.reason) {
				t.Errorf("allow=%v reason=%q, want %q", dec.Allow, dec.Reason, c.reason)
			}
		})
	}
}

func TestNovaBackingStoreMustMatchHeader(t *testing.T) {
	w := newWorld(t)
	h := newNovaHost(t, w)
	_, sha := w.image("endorsed")
	w.endorse(sha, snapshot.Endorsed, "", glanceGood)
	good, other := h.glanceBase(glanceGood), h.glanceBase(glanceOther)
	j := w.judge(now)
	d := novaDomain(glanceGood, fileDisk("vda", h.overlay("disk", good), "qcow2"))
	d.Disks[0].BackingStore = &domain.BackingStore{Type: "file", Format: "raw", Source: &domain.Source{Path: good}, BackingStore: &domain.BackingStore{}}
	if dec := j.Decide(d); !dec.Allow {
		t.Fatalf("matching <backingStore>: %s", dec.Reason)
	}
	d.Disks[0].BackingStore.Source.Path = other
	if dec := j.Decide(d); dec.Allow || !strings.Contains(dec.Reason, "QEMU would read the XML's file") {
		t.Errorf("other <backingStore>: %+v", dec)
	}
}

// The domain XML Nova 26 gave a hook, on a node laid out as Nova lays it out.
func TestNovaRealDomainXML(t *testing.T) {
	w := newWorld(t)
	h := newNovaHost(t, w)
	_, sha := w.image("endorsed")
	const root = "dc7efb6f-67ac-4409-a0c3-f565a29a92a2"
	w.endorse(sha, snapshot.Endorsed, "", root)
	raw, err := os.ReadFile("../domain/testdata/nova-zed-prepare.xml")
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("/var/lib/nova/instances"), []byte(h.inst))
	d, err := domain.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h.overlay("disk", h.glanceBase(root))
	if dec := w.judge(now).Decide(d); !dec.Allow || dec.Disks[0].GlanceID != root {
		t.Fatalf("%+v", dec)
	}
}

// The content checks accept what the real tools make, where they are installed.
func TestNovaBlankDisksFromRealTools(t *testing.T) {
	tool := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
					return filepath.Join(dir, name)
				}
			}
			if os.Getenv("VMGATE_INTEGRATION") == "1" {
				t.Fatalf("%s is missing", name)
			}
			t.Skipf("%s is missing", name)
		}
		return p
	}
	run := func(name string, args ...string) {
		if out, err := exec.Command(tool(name), args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	dir := t.TempDir()
	blank := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(size)
		f.Close()
		return p
	}
	swap := blank("swap_64", 64<<20)
	run("mkswap", swap)
	if err := checkSwap(swap); err != nil {
		t.Errorf("mkswap: %v", err)
	}
	for _, fs := range []string{"ext4", "vfat"} {
		p := blank("ephemeral_1_"+fs, 64<<20)
		run("mkfs."+fs, map[string][]string{"ext4": {"-F", "-q", "-L", "ephemeral0", p}, "vfat": {"-n", "ephemeral0", p}}[fs]...)
		if err := checkEphemeral(p); err != nil {
			t.Errorf("mkfs.%s: %v", fs, err)
		}
	}
	// The config drive, as nova/virt/configdrive.py runs genisoimage.
	src := filepath.Join(dir, "cd")
	os.MkdirAll(filepath.Join(src, "openstack", "latest"), 0o755)
	os.WriteFile(filepath.Join(src, "openstack", "latest", "user_data"), []byte("#!/bin/sh\necho hi\n"), 0o644)
	iso := filepath.Join(dir, "disk.config")
	run("genisoimage", "-o", iso, "-ldots", "-allow-lowercase", "-allow-multidot", "-l", "-publisher", "OpenStack Compute 26.2.2",
		"-quiet", "-J", "-r", "-V", "config-2", src)
	if err := checkConfigDrive(iso); err != nil {
		t.Errorf("genisoimage: %v", err)
	}
}

// A volume-backed instance as Nova 26 writes it: no nova:root, the volume's id in <serial>,
// the source as each Cinder driver attaches it (iSCSI/FC block device, rbd, NFS file). The
// test cloud has no Cinder (see docs/threat-model.md): the XML follows Nova's
// nova/virt/libvirt/config.py LibvirtConfigGuestDisk for those volume drivers.
func TestNovaBootFromVolumeXML(t *testing.T) {
	raw, err := os.ReadFile("testdata/nova-zed-bfv-iscsi.xml")
	if err != nil {
		t.Fatal(err)
	}
	iscsi := string(raw)
	start := strings.Index(iscsi, "    <disk type='block'")
	end := strings.Index(iscsi, "</disk>") + len("</disk>\n")
	withDisk := func(disk string) string { return iscsi[:start] + disk + iscsi[end:] }
	rbd := withDisk(`    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='writeback' discard='unmap'/>
      <auth username='cinder'>
        <secret type='ceph' uuid='457eb676-33da-42ec-9a8c-9293d545c337'/>
      </auth>
      <source protocol='rbd' name='volumes/volume-` + volumeID + `'>
        <host name='192.0.2.20' port='6789'/>
      </source>
      <target dev='vda' bus='virtio'/>
      <serial>` + volumeID + `</serial>
    </disk>
`)
	nfs := withDisk(`    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source file='/var/lib/nova/mnt/5f0b8a6e1c2d3e4f5a6b7c8d9e0f1a2b/volume-` + volumeID + `'/>
      <target dev='vda' bus='virtio'/>
      <serial>` + volumeID + `</serial>
    </disk>
`)
	noSerial := strings.Replace(iscsi, "<serial>"+volumeID+"</serial>", "", 1)
	for _, c := range []struct {
		name, xml string
		volume    bool
	}{{"iscsi", iscsi, true}, {"rbd", rbd, true}, {"nfs", nfs, true}, {"block device with no serial", noSerial, false}} {
		t.Run(c.name, func(t *testing.T) {
			d, err := domain.Parse(strings.NewReader(c.xml))
			if err != nil {
				t.Fatal(err)
			}
			if d.Nova == nil || d.Nova.Root != nil {
				t.Fatalf("metadata: %+v", d.Nova)
			}
			w := newWorld(t)
			j := w.judge(now)
			dec := j.Decide(d)
			want := "instance boots from volume " + volumeID
			if !c.volume {
				want = "is a block disk"
			}
			if dec.Allow || !strings.Contains(dec.Reason, want) {
				t.Errorf("without allow_boot_from_volume: allow=%v reason=%q, want %q", dec.Allow, dec.Reason, want)
			}
			j.Config.AllowBootFromVolume = true
			dec = j.Decide(d)
			if dec.Allow != c.volume {
				t.Errorf("with allow_boot_from_volume: %+v", dec)
			}
			if c.volume && (dec.Exemption != "boot from volume allowed by admission.allow_boot_from_volume" || dec.Disks[0].Reason != "Cinder volume "+volumeID) {
				t.Errorf("with allow_boot_from_volume: %+v", dec)
			}
		})
	}
}

func TestNovaNames(t *testing.T) {
	for name, want := range map[string]bool{"disk.local": true, "disk.eph0": true, "disk.eph12": true, "disk.eph": false, "disk.ephx": false, "disk": false} {
		if isEphemeralDisk(name) != want {
			t.Errorf("isEphemeralDisk(%q) = %v", name, !want)
		}
	}
	for name, want := range map[string]bool{"swap_512": true, "swap_": false, "swap_1x": false, "ephemeral_1_0706d66": false} {
		if isSwapBase(name) != want {
			t.Errorf("isSwapBase(%q) = %v", name, !want)
		}
	}
	for name, want := range map[string]bool{"ephemeral_1_0706d66": true, "ephemeral_20_default": true, "ephemeral_1": false, "ephemeral__x": false, "ephemeral_1_A": false, "ephemeral_1_a/b": false} {
		if isEphemeralBase(name) != want {
			t.Errorf("isEphemeralBase(%q) = %v", name, !want)
		}
	}
	for name, want := range map[string]bool{snapshot.NovaBaseName(glanceGood): true, strings.ToUpper(snapshot.NovaBaseName(glanceGood)): false, "swap_1": false} {
		if isGlanceBase(name) != want {
			t.Errorf("isGlanceBase(%q) = %v", name, !want)
		}
	}
	for s, want := range map[string]bool{volumeID: true, strings.ToUpper(volumeID): false, volumeID[:35]: false, strings.ReplaceAll(volumeID, "-", "x"): false} {
		if isUUID(s) != want {
			t.Errorf("isUUID(%q) = %v", s, !want)
		}
	}
}

// BenchmarkDecideNovaDisks is the hook's decision on a Nova instance judged by its disks (an
// image disk, swap, config drive) against one judged by nova:root alone, with snapshots of
// 10 and 10,000 images: a few stats, a qcow2 header, 4 KiB of swap and 64 KiB of ISO read,
// and one lookup per image disk, whatever the number of images.
func BenchmarkDecideNovaDisks(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		dir := b.TempDir()
		var entries []snapshot.Entry
		for i := range n {
			entries = append(entries, snapshot.Entry{SHA512: fmt.Sprintf("%0128x", i), GlanceIDs: []string{fmt.Sprintf("%08d-2b1d-4e3f-8a9b-5c6d7e8f9a0b", i)},
				Images: []snapshot.Image{{Subscription: "s", Identifier: fmt.Sprint("img-", i), Status: snapshot.Endorsed}}})
		}
		p := filepath.Join(dir, "snapshot.db")
		if err := snapshot.Write(p, snapshot.Meta{Expires: now.Add(time.Hour)}, entries, nil); err != nil {
			b.Fatal(err)
		}
		w := &world{t: &testing.T{}, dir: dir, cfg: config.Admission{Mode: config.ModeEnforce, FirmwareDirs: config.DefaultFirmwareDirs(), Emulators: config.DefaultEmulators()}}
		h := &novaHost{t: w.t, inst: filepath.Join(dir, "instances")}
		h.base = filepath.Join(h.inst, "_base")
		for _, d := range []string{h.inst, h.base, filepath.Join(h.inst, instanceUUID)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		id := fmt.Sprintf("%08d-2b1d-4e3f-8a9b-5c6d7e8f9a0b", n/2)
		// As Nova makes it: qemu-img create (a sparse file), then mkswap (its first page).
		swap := h.write(filepath.Join(h.base, "swap_16"), swapArea(4096))
		if err := os.Truncate(swap, 16<<20); err != nil {
			b.Fatal(err)
		}
		drive := h.write(filepath.Join(h.inst, instanceUUID, "disk.config"), iso9660("config-2", false))
		disks := novaDomain(id, fileDisk("vda", h.overlay("disk", h.glanceBase(id)), "qcow2"),
			fileDisk("vdb", h.overlay("disk.swap", swap), "qcow2"), cdrom("hda", drive))
		root := novaDomain(id)
		root.Nova.FromAPI = true
		for name, d := range map[string]*domain.Domain{"disks": disks, "root": root} {
			b.Run(fmt.Sprintf("images=%d/%s", n, name), func(b *testing.B) {
				for b.Loop() {
					s, err := snapshot.Open(p)
					if err != nil {
						b.Fatal(err)
					}
					j := &Judge{Snapshot: s, Config: config.Admission{Mode: config.ModeEnforce, NovaInstancesPath: h.inst, FirmwareDirs: config.DefaultFirmwareDirs(), Emulators: config.DefaultEmulators()}, Now: now}
					if dec := j.Decide(d); !dec.Allow {
						b.Fatal(dec.Reason)
					}
					s.Close()
				}
			})
		}
	}
}
