package domain

import (
	"slices"
	"strings"
	"testing"
)

func TestParseBoot(t *testing.T) {
	d, err := Parse(strings.NewReader(`<domain type='qemu'><name>b</name>
  <os firmware='efi'><type>hvm</type><boot dev='hd'/><boot dev='cdrom'/><bootmenu enable='yes'/></os>
  <devices>
    <disk type='file' device='cdrom'><source file='/x.iso'/><target dev='hdc'/><readonly/><boot order='2'/></disk>
    <disk type='file' device='disk'><source file='/y'/><target dev='vda'/></disk>
  </devices></domain>`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Boot.Devs, []string{"hd", "cdrom"}) || !d.Boot.Menu || !d.Boot.UEFI {
		t.Errorf("Boot = %+v", d.Boot)
	}
	if d.Disks[0].BootOrder != 2 || d.Disks[1].BootOrder != 0 || !d.Disks[0].ReadOnly {
		t.Errorf("disks = %+v", d.Disks)
	}
	d, err = Parse(strings.NewReader(`<domain><name>b</name><os><loader type='pflash'>/x.fd</loader></os>
  <devices><disk><source file='/y'/><boot order='x'/></disk></devices></domain>`))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Boot.UEFI || d.Disks[0].BootOrder != 1 {
		t.Errorf("pflash loader / unreadable order: %+v %+v", d.Boot, d.Disks[0])
	}
	if _, err := Parse(strings.NewReader(`<domain><name>b</name><devices><disk><boot order='1'/><boot order='2'/></disk></devices></domain>`)); err == nil {
		t.Error("two <boot> in one disk accepted")
	}
}
