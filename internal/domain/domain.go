// Package domain reads the libvirt domain XML that libvirtd hands a hook on stdin, and keeps
// what vmgate decides on and records: the disks and what backs them, the network interfaces,
// and, for OpenStack instances, the Nova metadata (owner, root image, ports and addresses).
//
// The input is untrusted: it is size-capped, a DOCTYPE is refused (libvirt never sends one,
// and refusing it rules out entity tricks), elements vmgate relies on must not appear twice
// (two <source> elements would let vmgate and libvirt read different ones), and every uuid,
// MAC and IP address is checked. Every error starts with "domain XML:" and names the value.
package domain

import (
	"net/netip"
	"time"
)

// MaxSize is the largest domain XML Parse accepts. A libvirt domain is a few KiB; the cap
// bounds memory and time on a hostile or broken input.
const MaxSize = 4 << 20

// Nova metadata namespaces. Nova wrote 1.0 until Wallaby and 1.1 since; the element names
// are the same.
const (
	NovaNamespace10 = "http://openstack.org/xmlns/libvirt/nova/1.0"
	NovaNamespace11 = "http://openstack.org/xmlns/libvirt/nova/1.1"
)

// QEMUNamespace is libvirt's namespace for QEMU pass-through (<qemu:commandline>).
const QEMUNamespace = "http://libvirt.org/schemas/domain/qemu/1.0"

// Domain is what vmgate keeps of a domain XML.
type Domain struct {
	// Type is the hypervisor type attribute: "kvm", "qemu".
	Type string
	// Name is the libvirt domain name, as written.
	Name string
	// UUID is the domain uuid in lower case, "" when the XML has none. For an OpenStack
	// instance it is also the Nova instance uuid.
	UUID string
	// SMBIOSSerial is the system serial number from <sysinfo type='smbios'>, "" when absent.
	// Nova sets it to the instance uuid (or the host's serial, per its sysinfo_serial option).
	SMBIOSSerial string
	Disks        []Disk
	// Boot is what <os> says about boot devices, for deciding whether a removable medium
	// could boot.
	Boot Boot
	// Kernel and Initrd are set when the domain boots a kernel directly (<os><kernel>): an
	// image that no disk shows.
	Kernel, Initrd string
	// Filesystems are the sources of <filesystem> devices (host directories or files shared
	// into the guest), which can carry a root file system no disk shows.
	Filesystems []string
	Interfaces  []Interface
	// Nova is the <nova:instance> metadata; nil when the domain is not a Nova instance.
	Nova *Nova
	// QEMUArgs are the <qemu:commandline> arguments. libvirt passes them to QEMU unchecked,
	// so they can attach drives that Disks does not list.
	QEMUArgs []string
	// QEMUPassthrough names the QEMU namespace's other pass-through elements present:
	// "qemu:override" (sets any device property, a romfile say), "qemu:capabilities".
	QEMUPassthrough []string

	// Emulator is <devices><emulator>, exactly as written: the program libvirt runs as
	// QEMU. "" when the XML has none.
	Emulator string
	// Firmware are the files other than disks that QEMU loads for the guest to run:
	// <os><loader>, <nvram template>, <dtb>, <shim>, ACPI tables, fw_cfg blobs and every
	// device's <rom file>. The <nvram> file itself is the domain's own state, like a disk's
	// overlay, and is not listed.
	Firmware []File
	// Passthrough describes the host devices given to the guest: every <hostdev>,
	// <redirdev> and <interface type='hostdev'>.
	Passthrough []string
	// NetworkBoot says what makes the guest boot from the network: <os><boot
	// dev='network'>, an <interface> with a <boot order>.
	NetworkBoot []string
	// MemoryFiles are the host files behind memory devices (nvdimm, virtio-pmem), which the
	// guest sees as storage, and the <shmem> regions a host process can fill.
	MemoryFiles []string
	// HostScripts are the <script> and <downscript> paths of interfaces: programs libvirt
	// runs on the host, as root, when the domain starts and stops.
	HostScripts []string
}

// Disk is one <disk> device.
type Disk struct {
	// Device is "disk", "cdrom", "floppy" or "lun"; "disk" when the XML omits it, as in
	// libvirt.
	Device string
	// Type is the source type: "file", "block", "network", "volume", "dir", or one this
	// package does not interpret ("nvme", "vhostuser", ...). "file" when the XML omits it,
	// as in libvirt.
	Type string
	// Source is what the <source> element names; nil when the disk has none.
	Source *Source
	// Format is the <driver type>: "qcow2", "raw", ... When the XML gives none it is "raw"
	// for a file or block disk, as libvirt opens it, and "" for other types.
	Format string
	// Target is the guest device name from <target dev>: "vda", "hdd".
	Target   string
	ReadOnly bool
	// BootOrder is the disk's <boot order>, 0 when it has none.
	BootOrder int
	// BackingStore is the chain below Source that libvirt put in the XML, if any. nil means
	// the XML does not say and libvirt will read the image headers itself.
	BackingStore *BackingStore
	// Serial is the <serial> the guest sees; Nova sets it to the Cinder volume id of a
	// volume. "" when absent.
	Serial string
}

// Boot is what <os> says about booting.
type Boot struct {
	// Devs are the <os><boot dev> values in order: "hd", "cdrom", "fd", "network".
	Devs []string
	// Menu is <bootmenu enable='yes'>: whoever sees the console may pick any device.
	Menu bool
	// UEFI is set when the domain boots UEFI firmware (<os firmware='efi'>, or a <loader>
	// of type pflash), which may boot removable media that no boot entry names.
	UEFI bool
}

// Empty reports whether the drive holds no medium, by libvirt's rule: a local source (file,
// block, dir) with no path, or a network source with no protocol. An empty cdrom is normal.
func (d *Disk) Empty() bool {
	var s Source
	if d.Source != nil {
		s = *d.Source
	}
	switch d.Type {
	case "file", "block", "dir":
		return s.Path == ""
	case "network":
		return s.Protocol == ""
	}
	return false
}

// Source is a disk's <source>. Only the attributes that libvirt reads for the disk's type are
// kept, so a file disk with a stray dev= attribute does not look like a block device.
type Source struct {
	// Path is the file (type file), the device node (type block) or the directory (type
	// dir).
	Path string
	// Protocol and Name identify a network disk (type network): "rbd" and "pool/image",
	// "iscsi" and "iqn.../1", ...
	Protocol string
	Name     string
	// Pool and Volume identify a storage pool volume (type volume).
	Pool   string
	Volume string
}

// BackingStore is one <backingStore> element: a layer below the disk's source, as libvirt
// lists it when it knows the chain (live XML) or when the user pinned the chain.
type BackingStore struct {
	// Type is the layer's source type, as Disk.Type. It is "" for the empty
	// <backingStore/> that ends a chain: the layer above has no backing image.
	Type string
	// Format is the layer's <format type>: "qcow2", "raw", ...
	Format string
	// Source is the layer's <source>; nil when absent.
	Source *Source
	// BackingStore is this layer's own backing; nil when the XML does not say.
	BackingStore *BackingStore
}

// End reports whether b is the empty <backingStore/> that ends a chain.
func (b *BackingStore) End() bool { return b.Type == "" }

// Interface is one <interface> device.
type Interface struct {
	// Type is "bridge", "network", "ethernet", ...
	Type string
	// MAC is the <mac address> in lower case with colons, "" when absent.
	MAC string
	// Target is the host-side device from <target dev>: "tap1e2d3c4b-5a".
	Target string
	// Bridge and Network come from <source bridge> and <source network>.
	Bridge  string
	Network string
}

// Nova is the <nova:instance> metadata that Nova's libvirt driver writes. The instance uuid
// is the domain's, Domain.UUID.
type Nova struct {
	// Namespace is the namespace the metadata used, NovaNamespace10 or NovaNamespace11.
	Namespace string
	// Package is the Nova version from <nova:package version>: "26.2.2".
	Package string
	// Name is the instance's display name.
	Name string
	// CreationTime is <nova:creationTime> ("2026-11-20 09:14:02", which Nova writes in
	// UTC); zero when absent.
	CreationTime time.Time
	// Flavor is the flavor name.
	Flavor string
	// UserID and ProjectID are Keystone ids. They are usually 32 hex digits, but a Keystone
	// with an LDAP backend may use other strings, so only their sanity is checked.
	UserID      string
	UserName    string
	ProjectID   string
	ProjectName string
	// Root is what the instance booted from; nil when Nova wrote no <nova:root>.
	Root *NovaRoot
	// Ports are the Neutron ports with their addresses; empty for an instance booted with
	// no network.
	Ports []NovaPort
	// FromAPI is set by callers that describe a server from Nova's API (which shows its
	// image, not its disks), never by Parse: such a domain is judged by Root alone.
	FromAPI bool
}

// NovaRoot is <nova:root>.
type NovaRoot struct {
	// Type is "image" (ID is a Glance image id) or "volume" (ID is a Cinder volume id).
	Type string
	// ID is the uuid, in lower case.
	ID string
}

// NovaPort is one <nova:port>.
type NovaPort struct {
	// ID is the Neutron port uuid, in lower case.
	ID  string
	IPs []NovaIP
}

// NovaIP is one <nova:ip>.
type NovaIP struct {
	// Type is "fixed" or "floating".
	Type    string
	Address netip.Addr
}
