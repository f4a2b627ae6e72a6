package domain

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseFixtures(t *testing.T) {
	tests := []struct {
		file string
		want *Domain
	}{
		{"nova-instance.xml", novaInstance()},
		{"nova-zed-prepare.xml", &Domain{
			Type:         "qemu",
			Name:         "instance-00000003",
			Emulator:     "/usr/bin/qemu-system-x86_64",
			UUID:         "0de1a539-75ac-4b02-9712-69e774009d60",
			SMBIOSSerial: "0de1a539-75ac-4b02-9712-69e774009d60",
			Boot:         Boot{Devs: []string{"hd"}},
			Disks: []Disk{{
				Device: "disk",
				Type:   "file",
				Source: &Source{Path: "/var/lib/nova/instances/0de1a539-75ac-4b02-9712-69e774009d60/disk"},
				Format: "qcow2",
				Target: "vda",
			}},
			Nova: &Nova{
				Namespace:    NovaNamespace11,
				Package:      "26.2.2",
				Name:         "vm-unendorsed",
				CreationTime: time.Date(2026, 11, 22, 13, 10, 33, 0, time.UTC),
				Flavor:       "m1.tiny",
				UserID:       "82001e7092c14161b56dbdecf33dc8eb",
				UserName:     "admin",
				ProjectID:    "d810d71a0f8a46ab80e845bbbe2f5140",
				ProjectName:  "admin",
				Root:         &NovaRoot{Type: "image", ID: "dc7efb6f-67ac-4409-a0c3-f565a29a92a2"},
				// <nova:ports/> is empty: the instance was booted with --nic none.
			},
		}},
		{"plain-libvirt.xml", &Domain{
			Type: "qemu",
			Name: "build-runner-01",
			UUID: "3f2e1d0c-9b8a-4766-8554-433221100fed",
			Disks: []Disk{{
				Device: "disk",
				Type:   "file",
				Source: &Source{Path: "/var/lib/libvirt/images/build-runner-01.qcow2"},
				Format: "qcow2",
				Target: "vda",
			}},
			Interfaces: []Interface{{Type: "network", MAC: "52:54:00:ab:cd:ef", Network: "default"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := Parse(bytes.NewReader(fixture(t, tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			compare(t, tt.want, got)
		})
	}
}

// novaInstance is what testdata/nova-instance.xml holds.
func novaInstance() *Domain {
	return &Domain{
		Type:         "kvm",
		Name:         "instance-0000002a",
		UUID:         "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f",
		SMBIOSSerial: "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f",
		Boot:         Boot{Devs: []string{"hd"}},
		Disks: []Disk{
			{
				Device: "disk",
				Type:   "file",
				Source: &Source{Path: "/var/lib/nova/instances/7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f/disk"},
				Format: "qcow2",
				Target: "vda",
			},
			{
				Device:   "cdrom",
				Type:     "file",
				Source:   &Source{Path: "/var/lib/nova/instances/7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f/disk.config"},
				Format:   "raw",
				Target:   "hdd",
				ReadOnly: true,
			},
		},
		Interfaces: []Interface{{
			Type:   "bridge",
			MAC:    "fa:16:3e:12:34:56",
			Target: "tap1e2d3c4b-5a",
			Bridge: "qbr1e2d3c4b-5a",
		}},
		Nova: &Nova{
			Namespace:    NovaNamespace11,
			Package:      "26.2.2",
			Name:         "analysis-node-3",
			CreationTime: time.Date(2026, 11, 20, 9, 14, 2, 0, time.UTC),
			Flavor:       "m1.medium",
			UserID:       "9f8e7d6c5b4a49388776655443322110",
			UserName:     "carol",
			ProjectID:    "0a1b2c3d4e5f46778899aabbccddeeff",
			ProjectName:  "hep-analysis",
			Root:         &NovaRoot{Type: "image", ID: "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b"},
			Ports: []NovaPort{{
				ID: "1e2d3c4b-5a69-4788-9aab-bccddeeff001",
				IPs: []NovaIP{
					{Type: "fixed", Address: netip.MustParseAddr("10.20.30.41")},
					{Type: "fixed", Address: netip.MustParseAddr("2001:db8:20::29")},
					{Type: "floating", Address: netip.MustParseAddr("192.0.2.77")},
				},
			}},
		},
	}
}

// TestParseNovaNamespaces checks that Nova's metadata is found by namespace URI: under the
// pre-Wallaby 1.0 namespace, under another prefix, as the default namespace, and not under
// the nova prefix bound to some other namespace.
func TestParseNovaNamespaces(t *testing.T) {
	base := string(fixture(t, "nova-instance.xml"))

	t.Run("namespace 1.0", func(t *testing.T) {
		doc := replace(t, base, NovaNamespace11, NovaNamespace10)
		want := novaInstance()
		want.Nova.Namespace = NovaNamespace10
		compare(t, want, parse(t, doc))
	})
	t.Run("other prefix", func(t *testing.T) {
		doc := replace(t, base, "nova:", "os:")
		doc = replace(t, doc, "xmlns:nova=", "xmlns:os=")
		compare(t, novaInstance(), parse(t, doc))
	})
	t.Run("default namespace", func(t *testing.T) {
		doc := replace(t, base, "nova:", "")
		doc = replace(t, doc, "xmlns:nova=", "xmlns=")
		compare(t, novaInstance(), parse(t, doc))
	})
	t.Run("nova prefix, other namespace", func(t *testing.T) {
		doc := replace(t, base, NovaNamespace11, "http://example.org/not-nova")
		want := novaInstance()
		want.Nova = nil
		compare(t, want, parse(t, doc))
	})
	t.Run("element in another namespace inside nova:instance", func(t *testing.T) {
		// Only nova:root counts; an x:root beside it is some other vocabulary's element.
		doc := replace(t, base, `<nova:root type="image"`,
			`<x:root xmlns:x="urn:x" type="volume" uuid="not-a-uuid"/><nova:root type="image"`)
		compare(t, novaInstance(), parse(t, doc))
	})
	t.Run("other metadata only", func(t *testing.T) {
		doc := `<domain type='kvm'><name>vm</name><metadata>
			<app:info xmlns:app="http://example.org/app/1.0"><app:root type="image" uuid="x"/></app:info>
			</metadata></domain>`
		compare(t, &Domain{Type: "kvm", Name: "vm"}, parse(t, doc))
	})
}

func TestParseNovaVariants(t *testing.T) {
	base := string(fixture(t, "nova-instance.xml"))

	t.Run("root volume", func(t *testing.T) {
		doc := replace(t, base, `<nova:root type="image" uuid="4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b"/>`,
			`<nova:root type="volume" uuid="0A1B2C3D-0000-4000-8000-00000000000F"/>`)
		want := novaInstance()
		want.Nova.Root = &NovaRoot{Type: "volume", ID: "0a1b2c3d-0000-4000-8000-00000000000f"}
		compare(t, want, parse(t, doc))
	})
	t.Run("no root", func(t *testing.T) {
		doc := replace(t, base, `<nova:root type="image" uuid="4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b"/>`, "")
		want := novaInstance()
		want.Nova.Root = nil
		compare(t, want, parse(t, doc))
	})
	t.Run("LDAP-style Keystone ids", func(t *testing.T) {
		doc := replace(t, base, `uuid="9f8e7d6c5b4a49388776655443322110"`, `uuid="John Doe"`)
		want := novaInstance()
		want.Nova.UserID = "John Doe"
		compare(t, want, parse(t, doc))
	})
}

func TestParseDisks(t *testing.T) {
	doc := `<domain type='kvm'>
  <name>disks</name>
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='file' device='floppy'>
      <source/>
      <target dev='fda'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='writeback'/>
      <auth username='nova'><secret type='ceph' uuid='5b6c3a4e-1f2d-4c3b-9a8e-7d6c5b4a3f21'/></auth>
      <source protocol='rbd' name='vms/7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f_disk'>
        <host name='10.0.0.1' port='6789'/>
        <host name='10.0.0.2' port='6789'/>
      </source>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source dev='/dev/disk/by-path/ip-10.0.0.5:3260-iscsi-iqn.2010-10.org.openstack:volume-1-lun-1'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='default' volume='data.qcow2'/>
      <target dev='vdd'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/img/top.qcow2' dev='/dev/ignored'/>
      <backingStore type='file' index='1'>
        <format type='qcow2'/>
        <source file='/img/mid.qcow2'/>
        <backingStore type='file' index='2'>
          <format type='raw'/>
          <source file='/img/base.raw'/>
          <backingStore/>
        </backingStore>
      </backingStore>
      <target dev='vde'/>
    </disk>
    <disk>
      <source file='/img/defaults.raw'/>
      <target dev='vdf'/>
    </disk>
  </devices>
</domain>`
	want := &Domain{
		Type: "kvm",
		Name: "disks",
		Disks: []Disk{
			{Device: "cdrom", Type: "file", Format: "raw", Target: "sda", ReadOnly: true},
			{Device: "floppy", Type: "file", Format: "raw", Source: &Source{}, Target: "fda"},
			{
				Device: "disk", Type: "network", Format: "raw", Target: "vdb",
				Source: &Source{Protocol: "rbd", Name: "vms/7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f_disk"},
			},
			{
				Device: "disk", Type: "block", Format: "raw", Target: "vdc",
				Source: &Source{Path: "/dev/disk/by-path/ip-10.0.0.5:3260-iscsi-iqn.2010-10.org.openstack:volume-1-lun-1"},
			},
			{
				Device: "disk", Type: "volume", Format: "qcow2", Target: "vdd",
				Source: &Source{Pool: "default", Volume: "data.qcow2"},
			},
			{
				Device: "disk", Type: "file", Format: "qcow2", Target: "vde",
				// dev= is not read for a file disk, as in libvirt.
				Source: &Source{Path: "/img/top.qcow2"},
				BackingStore: &BackingStore{
					Type: "file", Format: "qcow2", Source: &Source{Path: "/img/mid.qcow2"},
					BackingStore: &BackingStore{
						Type: "file", Format: "raw", Source: &Source{Path: "/img/base.raw"},
						BackingStore: &BackingStore{},
					},
				},
			},
			// No <driver type>: libvirt opens it as raw.
			{Device: "disk", Type: "file", Format: "raw", Source: &Source{Path: "/img/defaults.raw"}, Target: "vdf"},
		},
	}
	got := parse(t, doc)
	compare(t, want, got)

	empty := []bool{true, true, false, false, false, false, false}
	for i := range got.Disks {
		if e := got.Disks[i].Empty(); e != empty[i] {
			t.Errorf("disk %s: Empty() = %v, want %v", got.Disks[i].Target, e, empty[i])
		}
	}
	if b := got.Disks[5].BackingStore.BackingStore.BackingStore; !b.End() {
		t.Errorf("empty <backingStore/>: End() = false")
	}
}

func TestParseQEMUCommandLine(t *testing.T) {
	doc := `<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>passthrough</name>
  <qemu:commandline>
    <qemu:arg value='-drive'/>
    <qemu:arg value='file=/tmp/hidden.img,if=virtio'/>
  </qemu:commandline>
</domain>`
	want := &Domain{
		Type:     "kvm",
		Name:     "passthrough",
		QEMUArgs: []string{"-drive", "file=/tmp/hidden.img,if=virtio"},
	}
	compare(t, want, parse(t, doc))
}

func TestParseSizeLimit(t *testing.T) {
	doc := fixture(t, "plain-libvirt.xml")

	// Exactly MaxSize bytes is accepted: pad with trailing white space.
	atLimit := append(append([]byte{}, doc...), bytes.Repeat([]byte(" "), MaxSize-len(doc))...)
	if _, err := Parse(bytes.NewReader(atLimit)); err != nil {
		t.Fatalf("%d bytes: %v", len(atLimit), err)
	}

	over := append(atLimit, ' ')
	_, err := Parse(bytes.NewReader(over))
	wantError(t, err, "larger than 4194304 bytes (4 MiB)")

	// A hostile stream is not read to its end.
	_, err = Parse(endless{})
	wantError(t, err, "larger than")
}

// endless is an infinite stream of '<'.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '<'
	}
	return len(p), nil
}

func TestParseErrors(t *testing.T) {
	nova := string(fixture(t, "nova-instance.xml"))
	plain := string(fixture(t, "plain-libvirt.xml"))
	tests := []struct {
		name string
		doc  string
		want string // in the error message
	}{
		{"empty", "", "input is empty"},
		{"white space", " \n\t", "input is empty"},
		{"garbage", "\x00\x01\x02\xff garbage", "illegal character code U+0000"},
		{"JSON", `{"domain": {"name": "vm"}}`, "text before <domain>: not a domain XML document"},
		{"not UTF-8", "<domain><name>\xff\xfe</name></domain>", "invalid UTF-8"},
		{"other encoding", `<?xml version="1.0" encoding="ISO-8859-1"?>` + plain, `encoding "ISO-8859-1" declared`},
		{"truncated", plain[:len(plain)/2], "unexpected EOF"},
		{"truncated in a tag", plain[:strings.Index(plain, "<devices>")+4], "unexpected EOF"},
		{"mismatched tags", "<domain><name>vm</domain>", "element <name> closed by </domain>"},
		{"other root", "<network><name>default</name></network>", "root element is <network>, want <domain>"},
		{"second root", plain + "<domain><name>x</name></domain>", "element <domain> after </domain>"},
		{"text after root", plain + "trailing", "text after </domain>"},
		{"no name", "<domain type='kvm'><uuid>3f2e1d0c-9b8a-4766-8554-433221100fed</uuid></domain>", "<domain> has no <name>"},

		{"doctype", `<?xml version="1.0"?><!DOCTYPE domain>` + plain, "a <!DOCTYPE> declaration is not allowed"},
		{"entity bomb", `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<domain><name>&lol9;</name></domain>`, "line 8: a <!DOCTYPE> declaration is not allowed"},
		{"external entity", `<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><domain><name>&xxe;</name></domain>`,
			"<!DOCTYPE> declaration is not allowed"},
		{"doctype inside root", "<domain><name>vm</name><!DOCTYPE x></domain>", "<!DOCTYPE> declaration is not allowed"},
		{"entity declaration inside root", "<domain><!ENTITY x 'y'><name>vm</name></domain>", "<!ENTITY> declaration is not allowed"},
		{"undeclared entity", "<domain><name>&lol;</name></domain>", "invalid character entity &lol;"},

		{"two names", replace(t, plain, "</name>", "</name><name>other</name>"), "more than one <name>"},
		{"two uuids", replace(t, plain, "</uuid>", "</uuid><uuid>3f2e1d0c-9b8a-4766-8554-433221100fee</uuid>"), "more than one <uuid>"},
		{"two sources", replace(t, plain, "<source file=", "<source file='/evil.img'/><source file="), "disk 1 (vda): more than one <source>"},
		{"two drivers", replace(t, plain, "<driver ", "<driver type='raw'/><driver "), "disk 1 (vda): more than one <driver>"},
		{"two backing stores", replace(t, plain, "<target dev='vda'",
			"<backingStore type='file'/><backingStore type='file'/><target dev='vda'"), "more than one <backingStore>"},
		{"deep backing stores", replace(t, plain, "<target dev='vda'",
			strings.Repeat("<backingStore type='file'>", 65)+strings.Repeat("</backingStore>", 65)+"<target dev='vda'"),
			"more than 64 nested <backingStore> elements"},
		{"two devices", replace(t, plain, "</devices>", "</devices><devices/>"), "more than one <devices>"},
		{"two metadata", replace(t, nova, "</metadata>", "</metadata><metadata/>"), "more than one <metadata>"},
		{"two nova instances", replace(t, nova, "</metadata>",
			`<nova:instance xmlns:nova="`+NovaNamespace10+`"/></metadata>`), "uses both Nova namespaces"},
		{"two nova instances, one namespace", replace(t, nova, "</metadata>",
			`<nova:instance xmlns:nova="`+NovaNamespace11+`"/></metadata>`), "more than one <nova:instance>"},
		{"two roots", replace(t, nova, "<nova:ports>",
			`<nova:root type="image" uuid="dc7efb6f-67ac-4409-a0c3-f565a29a92a2"/><nova:ports>`), "more than one <nova:root>"},
		{"two users", replace(t, nova, "<nova:project ", `<nova:user uuid="x">x</nova:user><nova:project `), "more than one <nova:user>"},

		{"bad domain uuid", replace(t, plain, "3f2e1d0c-9b8a-4766-8554-433221100fed", "3f2e1d0c-9b8a-4766-8554-43322110"),
			`<uuid> uuid "3f2e1d0c-9b8a-4766-8554-43322110" is not a uuid`},
		{"bad MAC", replace(t, plain, "52:54:00:ab:cd:ef", "52:54:00:ab:cd:zz"), `interface 1: <mac> address "52:54:00:ab:cd:zz" is not a MAC address`},
		{"short MAC", replace(t, plain, "52:54:00:ab:cd:ef", "52:54:00:ab:cd"), `<mac> address "52:54:00:ab:cd" is not a MAC address`},
		{"bad root uuid", replace(t, nova, "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b", "../../etc/passwd"),
			`<nova:root> uuid "../../etc/passwd" is not a uuid`},
		{"empty root uuid", replace(t, nova, `uuid="4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b"`, `uuid=""`),
			`<nova:root> uuid "" is not a uuid`},
		{"bad root type", replace(t, nova, `<nova:root type="image"`, `<nova:root type="snapshot"`),
			`<nova:root> type "snapshot" is neither "image" nor "volume"`},
		{"bad port uuid", replace(t, nova, "1e2d3c4b-5a69-4788-9aab-bccddeeff001", "port-1"), `<nova:port> uuid "port-1" is not a uuid`},
		{"bad IP", replace(t, nova, "10.20.30.41", "10.20.30.410"), `address "10.20.30.410" is not an IP address`},
		{"IP with zone", replace(t, nova, "2001:db8:20::29", "fe80::1%eth0"), `address "fe80::1%eth0" is not an IP address`},
		{"IP version", replace(t, nova, `address="192.0.2.77" ipVersion="4"`, `address="192.0.2.77" ipVersion="6"`),
			`address 192.0.2.77 is IPv4 but ipVersion is "6"`},
		{"IP type", replace(t, nova, `type="floating"`, `type="public"`), `type "public" is neither "fixed" nor "floating"`},
		{"creation time", replace(t, nova, "2026-11-20 09:14:02", "yesterday"), `<nova:creationTime> "yesterday" is not of the form`},
		{"control character in user id", replace(t, nova, `uuid="9f8e7d6c5b4a49388776655443322110"`, `uuid="9f8e&#10;forged"`),
			`<nova:user> uuid "9f8e\nforged" is not a usable Keystone id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(strings.NewReader(tt.doc))
			if d != nil {
				t.Errorf("Parse returned a domain with its error")
			}
			wantError(t, err, tt.want)
		})
	}
}

func wantError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "domain XML: ") || !strings.Contains(msg, want) {
		t.Fatalf("error %q, want \"domain XML: ...%s...\"", msg, want)
	}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parse(t *testing.T, doc string) *Domain {
	t.Helper()
	d, err := Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// replace replaces every old in s, and fails the test if there is none: a variant that
// silently equals its base would test nothing.
func replace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("test document has no %q", old)
	}
	return strings.ReplaceAll(s, old, new)
}

// compare reports every field where got differs from want, by its path
// ("Nova.Ports[0].IPs[1].Address").
func compare(t *testing.T, want, got *Domain) {
	t.Helper()
	var diffs []string
	diff("Domain", reflect.ValueOf(want), reflect.ValueOf(got), &diffs)
	for _, d := range diffs {
		t.Error(d)
	}
}

func diff(path string, want, got reflect.Value, out *[]string) {
	switch want.Kind() {
	case reflect.Pointer:
		if want.IsNil() || got.IsNil() {
			if want.IsNil() != got.IsNil() {
				*out = append(*out, fmt.Sprintf("%s: got %s, want %s", path, show(got), show(want)))
			}
			return
		}
		diff(path, want.Elem(), got.Elem(), out)
	case reflect.Slice:
		if want.Len() != got.Len() {
			*out = append(*out, fmt.Sprintf("%s: got %d elements %s, want %d %s",
				path, got.Len(), show(got), want.Len(), show(want)))
			return
		}
		for i := 0; i < want.Len(); i++ {
			diff(fmt.Sprintf("%s[%d]", path, i), want.Index(i), got.Index(i), out)
		}
	case reflect.Struct:
		switch w := want.Interface().(type) {
		case time.Time:
			if g := got.Interface().(time.Time); !w.Equal(g) {
				*out = append(*out, fmt.Sprintf("%s: got %v, want %v", path, g, w))
			}
			return
		case netip.Addr:
			if g := got.Interface().(netip.Addr); w != g {
				*out = append(*out, fmt.Sprintf("%s: got %v, want %v", path, g, w))
			}
			return
		}
		for i := 0; i < want.NumField(); i++ {
			diff(path+"."+want.Type().Field(i).Name, want.Field(i), got.Field(i), out)
		}
	default:
		if want.Interface() != got.Interface() {
			*out = append(*out, fmt.Sprintf("%s: got %#v, want %#v", path, got.Interface(), want.Interface()))
		}
	}
}

func show(v reflect.Value) string {
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	return fmt.Sprintf("%+v", v.Interface())
}

func TestParseDirectKernelAndFilesystems(t *testing.T) {
	d, err := Parse(strings.NewReader(`<domain type='qemu'><name>k</name>
<os><type>hvm</type><kernel>/boot/vmlinuz</kernel><initrd>/boot/initrd.img</initrd></os>
<devices><filesystem type='mount'><source dir='/srv/root'/><target dir='root'/></filesystem></devices></domain>`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Kernel != "/boot/vmlinuz" || d.Initrd != "/boot/initrd.img" {
		t.Errorf("kernel %q initrd %q", d.Kernel, d.Initrd)
	}
	if len(d.Filesystems) != 1 || d.Filesystems[0] != "/srv/root" {
		t.Errorf("filesystems %q", d.Filesystems)
	}
	if _, err := Parse(strings.NewReader(`<domain><name>k</name><os><kernel>/a</kernel><kernel>/b</kernel></os></domain>`)); err == nil {
		t.Error("two kernels accepted")
	}
}
