package domain

import (
	"encoding/xml"
	"fmt"
)

// File is a host file, other than a disk, that the domain XML makes QEMU load into the
// guest: firmware, a ROM, an ACPI table. The guest (or its firmware) runs what it holds.
type File struct {
	// Element says where the XML names it, as a person would look for it:
	// "<os><loader>", "<interface><rom file>", "<sysinfo type='fwcfg'><entry file>".
	Element string
	// Path is the file exactly as written; libvirt hands it to QEMU as it is.
	Path string
}

// The XML shapes of devices and firmware.

type loaderXML struct {
	Type string `xml:"type,attr"`
	Path string `xml:",chardata"`
}

type nvramXML struct {
	Template string `xml:"template,attr"`
}

type romXML struct {
	File    string `xml:"file,attr"`
	Enabled string `xml:"enabled,attr"`
}

type bootXML struct {
	Order string `xml:"order,attr"`
}

type pathXML struct {
	Path string `xml:"path,attr"`
}

type hostdevXML struct {
	Mode string    `xml:"mode,attr"`
	Type string    `xml:"type,attr"`
	Rom  []romXML  `xml:"rom"`
	Boot []bootXML `xml:"boot"`
}

type redirdevXML struct {
	Bus  string `xml:"bus,attr"`
	Type string `xml:"type,attr"`
}

type memoryXML struct {
	Model  string `xml:"model,attr"`
	Source []struct {
		Path []string `xml:"path"`
	} `xml:"source"`
}

// anyDeviceXML is every other device under <devices> (<controller>, <video>, <hub>, …):
// libvirt accepts a <rom file> on any PCI device it can give one.
type anyDeviceXML struct {
	XMLName xml.Name
	Rom     []romXML `xml:"rom"`
}

// convertDevices fills what the domain makes QEMU load or pass through besides disks:
// the emulator, firmware and ROM files, host devices, network boot and the QEMU namespace's
// pass-through elements. osx and devices may be nil.
func (x *domainXML) convertDevices(d *Domain, osx *osXML, devices *devicesXML) error {
	if len(x.QEMUOverride) > 0 {
		d.QEMUPassthrough = append(d.QEMUPassthrough, "qemu:override")
	}
	if len(x.QEMUCapabilities) > 0 {
		d.QEMUPassthrough = append(d.QEMUPassthrough, "qemu:capabilities")
	}
	for _, s := range x.Sysinfo {
		for _, e := range s.Entry {
			if s.Type == "fwcfg" && e.File != "" {
				d.Firmware = append(d.Firmware, File{Element: "<sysinfo type='fwcfg'><entry file>", Path: e.File})
			}
		}
	}
	if osx != nil {
		if err := convertOS(d, osx); err != nil {
			return err
		}
	}
	if devices == nil {
		return nil
	}
	emulator, err := one(devices.Emulator, "<emulator>")
	if err != nil {
		return err
	}
	if emulator != nil {
		d.Emulator = *emulator
	}
	for _, h := range devices.Hostdevs {
		d.Passthrough = append(d.Passthrough, fmt.Sprintf("<hostdev type='%s'>", h.Type))
		if err := addROM(d, "hostdev", h.Rom); err != nil {
			return err
		}
	}
	for _, r := range devices.Redirdevs {
		d.Passthrough = append(d.Passthrough, fmt.Sprintf("<redirdev bus='%s' type='%s'>", r.Bus, r.Type))
	}
	nicROMs := 0 // interfaces whose boot ROM the firmware can offer
	for i := range devices.Interfaces {
		iface := &devices.Interfaces[i]
		if len(iface.Rom) == 0 || iface.Rom[0].Enabled != "no" {
			nicROMs++
		}
		if iface.Type == "hostdev" {
			d.Passthrough = append(d.Passthrough, "<interface type='hostdev'>")
		}
		if len(iface.Boot) > 0 {
			d.NetworkBoot = append(d.NetworkBoot, fmt.Sprintf("interface %d has <boot order='%s'>", i+1, iface.Boot[0].Order))
		}
		if err := addROM(d, "interface", iface.Rom); err != nil {
			return err
		}
		for _, s := range append(iface.Script, iface.Downscript...) {
			if s.Path != "" {
				d.HostScripts = append(d.HostScripts, s.Path)
			}
		}
	}
	// A boot menu lets whoever holds the console pick any bootable device, a NIC's network
	// boot ROM included (Nova writes one for an image with hw_boot_menu=true).
	if d.Boot.Menu && nicROMs > 0 {
		d.NetworkBoot = append(d.NetworkBoot, "<os><bootmenu enable='yes'> with a network interface whose boot ROM is on (the console can pick network boot; add <rom enabled='no'/>)")
	}
	for _, dev := range devices.Other {
		if err := addROM(d, dev.XMLName.Local, dev.Rom); err != nil {
			return err
		}
	}
	for _, m := range devices.Shmem {
		// ivshmem maps /dev/shm/<name> (or a server's memory) into the guest, whatever a
		// host process put there.
		d.MemoryFiles = append(d.MemoryFiles, fmt.Sprintf("<shmem name='%s'>", m.Name))
	}
	for _, m := range devices.Memory {
		src, err := one(m.Source, "<source> in a <memory> device")
		if err != nil {
			return err
		}
		if src == nil {
			continue
		}
		p, err := one(src.Path, "<path> in a <memory> device")
		if err != nil {
			return err
		}
		if p != nil {
			d.MemoryFiles = append(d.MemoryFiles, *p)
		}
	}
	return nil
}

func convertOS(d *Domain, osx *osXML) error {
	loader, err := one(osx.Loader, "<loader>")
	if err != nil {
		return err
	}
	if loader != nil && loader.Path != "" {
		d.Firmware = append(d.Firmware, File{Element: "<os><loader>", Path: loader.Path})
	}
	nvram, err := one(osx.NVRAM, "<nvram>")
	if err != nil {
		return err
	}
	if nvram != nil && nvram.Template != "" {
		d.Firmware = append(d.Firmware, File{Element: "<os><nvram template>", Path: nvram.Template})
	}
	for _, f := range []struct {
		what string
		all  []string
	}{{"<dtb>", osx.DTB}, {"<shim>", osx.Shim}} {
		p, err := one(f.all, f.what)
		if err != nil {
			return err
		}
		if p != nil {
			d.Firmware = append(d.Firmware, File{Element: "<os>" + f.what, Path: *p})
		}
	}
	acpi, err := one(osx.ACPI, "<acpi> in <os>")
	if err != nil {
		return err
	}
	if acpi != nil {
		for _, t := range acpi.Tables {
			d.Firmware = append(d.Firmware, File{Element: fmt.Sprintf("<os><acpi><table type='%s'>", t.Type), Path: t.Path})
		}
	}
	for _, dev := range d.Boot.Devs {
		if dev == "network" {
			d.NetworkBoot = append(d.NetworkBoot, "<os><boot dev='network'>")
		}
	}
	return nil
}

// addROM records the <rom file> of a device; libvirt reads the first <rom>, so a second is
// refused like any duplicate.
func addROM(d *Domain, device string, roms []romXML) error {
	rom, err := one(roms, "<rom> in a <"+device+">")
	if err != nil {
		return err
	}
	if rom != nil && rom.File != "" {
		d.Firmware = append(d.Firmware, File{Element: "<" + device + "><rom file>", Path: rom.File})
	}
	return nil
}
