package domain

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxBackingStores bounds the nesting of <backingStore> elements, far beyond any real chain.
const maxBackingStores = 64

// Parse reads one domain XML document from r, at most MaxSize bytes.
func Parse(r io.Reader) (*Domain, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("domain XML: read: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("domain XML: input is larger than %d bytes (4 MiB); a libvirt domain is a few KiB", MaxSize)
	}
	raw, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	d, err := raw.convert()
	if err != nil {
		return nil, fmt.Errorf("domain XML: %w", err)
	}
	return d, nil
}

// decode checks the document's shape (one <domain> root, nothing else but comments, white
// space and the XML declaration) and unmarshals the root.
func decode(data []byte) (*domainXML, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("input is empty")
	}
	f := &filter{d: xml.NewDecoder(bytes.NewReader(data))}
	d := xml.NewTokenDecoder(f)
	var raw *domainXML
	for {
		tok, err := d.Token()
		if err == io.EOF {
			if raw == nil {
				return nil, errors.New("no <domain> element")
			}
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if raw != nil {
				return nil, fmt.Errorf("element <%s> after </domain>", t.Name.Local)
			}
			if t.Name.Local != "domain" {
				return nil, fmt.Errorf("root element is <%s>, want <domain>", t.Name.Local)
			}
			raw = new(domainXML)
			if err := d.DecodeElement(raw, &t); err != nil {
				return nil, err
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) == 0 {
				continue
			}
			if raw != nil {
				return nil, errors.New("text after </domain>")
			}
			return nil, errors.New("text before <domain>: not a domain XML document")
		}
	}
	if f.nova10 && f.nova11 {
		return nil, fmt.Errorf("uses both Nova namespaces %s and %s", NovaNamespace10, NovaNamespace11)
	}
	raw.novaNamespace = NovaNamespace11
	if f.nova10 {
		raw.novaNamespace = NovaNamespace10
	}
	return raw, nil
}

// filter sits between the tokenizer and the unmarshaller. It refuses directives (<!DOCTYPE>,
// <!ENTITY>): encoding/xml never expands entities, but libvirt never sends a DOCTYPE either,
// so refusing one costs nothing and leaves no doubt. It also presents Nova's namespace 1.0
// as 1.1: both name the same elements, and the struct tags below can then match Nova
// elements by namespace URI whatever prefix the document bound it to.
//
// It also refuses what libxml2 (and so libvirt) reads differently from encoding/xml, so
// that `vmgate check` on a hand-written file judges what libvirt will run (see checkStart).
type filter struct {
	d              *xml.Decoder
	nova10, nova11 bool

	depth     int // of the element being read; the root <domain> is 1
	metaDepth int // depth of <metadata> while inside it, else 0
	qemuDepth int // depth of a top-level <qemu:…> element while inside it, else 0
}

func (f *filter) Token() (xml.Token, error) {
	tok, err := f.d.Token()
	switch t := tok.(type) {
	case xml.Directive:
		return nil, fmt.Errorf("line %d: a <!%s> declaration is not allowed; libvirt never sends one", f.line(), directiveName(t))
	case xml.StartElement:
		f.depth++
		if err := f.checkStart(&t); err != nil {
			return nil, fmt.Errorf("line %d: %w", f.line(), err)
		}
		t.Name.Space = f.space(t.Name.Space)
		return t, err
	case xml.EndElement:
		if f.depth == f.metaDepth {
			f.metaDepth = 0
		}
		if f.depth == f.qemuDepth {
			f.qemuDepth = 0
		}
		f.depth--
		t.Name.Space = f.space(t.Name.Space)
		return t, err
	}
	return tok, err
}

// qemuElements are the elements of libvirt's QEMU namespace that may stand under <domain>.
var qemuElements = map[string]bool{"commandline": true, "capabilities": true, "override": true, "deprecation": true}

// checkStart refuses an element that libvirt would read otherwise than encoding/xml does:
//   - two attributes of the same name: libxml2 refuses the document, encoding/xml keeps both
//     and a struct takes the last;
//   - outside <metadata>, an attribute in a namespace (<source x:file='b'>): libxml2's
//     xmlGetProp, which libvirt uses, matches attributes by name whatever their namespace
//     and takes the first, while a struct tag takes the last;
//   - outside <metadata>, an attribute value with a tab or a line break: libxml2 turns a
//     literal one into a space (XML attribute value normalisation), encoding/xml keeps it,
//     so file='a<newline>b' would name two different files;
//   - outside <metadata> and the QEMU namespace's own elements, an element in a namespace
//     (<x:source>, a default xmlns='…'): libvirt finds elements by XPath, which does not
//     match them, while a struct tag without a namespace would.
//
// libvirt drops all of these when it defines a domain, so the XML the hook receives never
// has them; a hand-written file given to `vmgate check` may.
func (f *filter) checkStart(t *xml.StartElement) error {
	for i, a := range t.Attr {
		for _, b := range t.Attr[:i] {
			if a.Name == b.Name {
				return fmt.Errorf("<%s> has attribute %s twice", t.Name.Local, attrName(a.Name))
			}
		}
	}
	if f.depth == 1 && t.Name.Space != "" {
		return fmt.Errorf("root element <%s> is in namespace %q; libvirt's <domain> has none", t.Name.Local, t.Name.Space)
	}
	if f.metaDepth != 0 {
		return nil
	}
	if f.depth == 2 && t.Name.Space == "" && t.Name.Local == "metadata" {
		f.metaDepth = f.depth
	}
	switch {
	case t.Name.Space == "":
	case t.Name.Space == QEMUNamespace && f.depth == 2 && qemuElements[t.Name.Local]:
		f.qemuDepth = f.depth
	case t.Name.Space == QEMUNamespace && f.qemuDepth != 0:
	default:
		return fmt.Errorf("element <%s> in namespace %q is not part of libvirt's domain XML, which reads only un-namespaced elements there; remove it", t.Name.Local, t.Name.Space)
	}
	for _, a := range t.Attr {
		if a.Name.Space != "" && a.Name.Space != "xmlns" {
			return fmt.Errorf("<%s> has attribute %s in a namespace; libvirt would read it as %q, ambiguously: remove it", t.Name.Local, attrName(a.Name), a.Name.Local)
		}
		if strings.ContainsAny(a.Value, "\t\n\r") {
			return fmt.Errorf("<%s> attribute %s has a tab or line break, which libvirt reads as a space; remove it", t.Name.Local, a.Name.Local)
		}
	}
	return nil
}

func attrName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

func (f *filter) space(ns string) string {
	switch ns {
	case NovaNamespace10:
		f.nova10 = true
		return NovaNamespace11
	case NovaNamespace11:
		f.nova11 = true
	}
	return ns
}

func (f *filter) line() int {
	line, _ := f.d.InputPos()
	return line
}

// directiveName returns the keyword of a directive, "DOCTYPE" for "DOCTYPE x [...]".
func directiveName(d xml.Directive) string {
	name, _, _ := strings.Cut(string(d), " ")
	if len(name) > 20 || !utf8.ValidString(name) {
		return "..."
	}
	return name
}

// The XML shapes below mirror libvirt's and Nova's. Elements that must appear at most once
// are decoded into slices so that a second one is seen and refused (see one).

type domainXML struct {
	Type     string        `xml:"type,attr"`
	Name     []string      `xml:"name"`
	UUID     []string      `xml:"uuid"`
	Metadata []metadataXML `xml:"metadata"`
	Sysinfo  []sysinfoXML  `xml:"sysinfo"`
	Devices  []devicesXML  `xml:"devices"`
	OS       []osXML       `xml:"os"`
	QEMU     []qemuCmdXML  `xml:"http://libvirt.org/schemas/domain/qemu/1.0 commandline"`
	// The other pass-through elements of the QEMU namespace, which change what QEMU runs.
	QEMUOverride     []struct{} `xml:"http://libvirt.org/schemas/domain/qemu/1.0 override"`
	QEMUCapabilities []struct{} `xml:"http://libvirt.org/schemas/domain/qemu/1.0 capabilities"`

	novaNamespace string // the Nova namespace the document used, set by decode
}

type osXML struct {
	Firmware string      `xml:"firmware,attr"`
	Kernel   []string    `xml:"kernel"`
	Initrd   []string    `xml:"initrd"`
	Loader   []loaderXML `xml:"loader"`
	NVRAM    []nvramXML  `xml:"nvram"`
	DTB      []string    `xml:"dtb"`
	Shim     []string    `xml:"shim"`
	ACPI     []struct {
		Tables []struct {
			Type string `xml:"type,attr"`
			Path string `xml:",chardata"`
		} `xml:"table"`
	} `xml:"acpi"`
	Boot []struct {
		Dev string `xml:"dev,attr"`
	} `xml:"boot"`
	BootMenu []struct {
		Enable string `xml:"enable,attr"`
	} `xml:"bootmenu"`
}

type metadataXML struct {
	Nova []novaXML `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 instance"`
}

type sysinfoXML struct {
	Type string `xml:"type,attr"`
	// Entry are the blobs of <sysinfo type='fwcfg'>, handed to the firmware.
	Entry []struct {
		Name string `xml:"name,attr"`
		File string `xml:"file,attr"`
	} `xml:"entry"`
	System []struct {
		Entries []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:",chardata"`
		} `xml:"entry"`
	} `xml:"system"`
}

type devicesXML struct {
	Emulator  []string      `xml:"emulator"`
	Hostdevs  []hostdevXML  `xml:"hostdev"`
	Redirdevs []redirdevXML `xml:"redirdev"`
	Memory    []memoryXML   `xml:"memory"`
	Shmem     []struct {
		Name string `xml:"name,attr"`
	} `xml:"shmem"`
	Other       []anyDeviceXML `xml:",any"`
	Disks       []diskXML      `xml:"disk"`
	Interfaces  []interfaceXML `xml:"interface"`
	Filesystems []struct {
		Source []struct {
			Dir  string `xml:"dir,attr"`
			File string `xml:"file,attr"`
			Dev  string `xml:"dev,attr"`
			Name string `xml:"name,attr"`
		} `xml:"source"`
	} `xml:"filesystem"`
}

type diskXML struct {
	Type   string `xml:"type,attr"`
	Device string `xml:"device,attr"`
	Driver []struct {
		Type string `xml:"type,attr"`
	} `xml:"driver"`
	Source []sourceXML `xml:"source"`
	Target []struct {
		Dev string `xml:"dev,attr"`
	} `xml:"target"`
	ReadOnly     []struct{}        `xml:"readonly"`
	BackingStore []backingStoreXML `xml:"backingStore"`
	Boot         []struct {
		Order string `xml:"order,attr"`
	} `xml:"boot"`
	Serial []string `xml:"serial"`
}

type sourceXML struct {
	File     string `xml:"file,attr"`
	Dev      string `xml:"dev,attr"`
	Dir      string `xml:"dir,attr"`
	Protocol string `xml:"protocol,attr"`
	Name     string `xml:"name,attr"`
	Pool     string `xml:"pool,attr"`
	Volume   string `xml:"volume,attr"`
}

type backingStoreXML struct {
	Type   string `xml:"type,attr"`
	Format []struct {
		Type string `xml:"type,attr"`
	} `xml:"format"`
	Source       []sourceXML       `xml:"source"`
	BackingStore []backingStoreXML `xml:"backingStore"`
}

type interfaceXML struct {
	Type string `xml:"type,attr"`
	MAC  []struct {
		Address string `xml:"address,attr"`
	} `xml:"mac"`
	Source []struct {
		Bridge  string `xml:"bridge,attr"`
		Network string `xml:"network,attr"`
	} `xml:"source"`
	Target []struct {
		Dev string `xml:"dev,attr"`
	} `xml:"target"`
	Rom        []romXML  `xml:"rom"`
	Boot       []bootXML `xml:"boot"`
	Script     []pathXML `xml:"script"`
	Downscript []pathXML `xml:"downscript"`
}

type qemuCmdXML struct {
	Args []struct {
		Value string `xml:"value,attr"`
	} `xml:"http://libvirt.org/schemas/domain/qemu/1.0 arg"`
}

// Nova's elements, matched by namespace (1.0 arrives here as 1.1, see filter).
type novaXML struct {
	Package []struct {
		Version string `xml:"version,attr"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 package"`
	Name         []string `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 name"`
	CreationTime []string `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 creationTime"`
	Flavor       []struct {
		Name string `xml:"name,attr"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 flavor"`
	Owner []struct {
		User    []novaNamedXML `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 user"`
		Project []novaNamedXML `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 project"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 owner"`
	Root []struct {
		Type string `xml:"type,attr"`
		UUID string `xml:"uuid,attr"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 root"`
	Ports []struct {
		Port []struct {
			UUID string `xml:"uuid,attr"`
			IP   []struct {
				Type    string `xml:"type,attr"`
				Address string `xml:"address,attr"`
				Version string `xml:"ipVersion,attr"`
			} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 ip"`
		} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 port"`
	} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 ports"`
}

type novaNamedXML struct {
	UUID string `xml:"uuid,attr"`
	Name string `xml:",chardata"`
}

// one returns the only element of s, nil when s is empty, and an error naming what when
// there are more: libvirt reads the first of two <source> elements, a struct decoder the
// last, so a document with two could make vmgate check one file and QEMU open another.
func one[T any](s []T, what string) (*T, error) {
	switch len(s) {
	case 0:
		return nil, nil
	case 1:
		return &s[0], nil
	}
	return nil, fmt.Errorf("more than one %s", what)
}

func (x *domainXML) convert() (*Domain, error) {
	d := &Domain{Type: x.Type}
	name, err := one(x.Name, "<name>")
	if err != nil {
		return nil, err
	}
	if name == nil || strings.TrimSpace(*name) == "" {
		return nil, errors.New("<domain> has no <name>")
	}
	d.Name = *name
	uuid, err := one(x.UUID, "<uuid>")
	if err != nil {
		return nil, err
	}
	if uuid != nil {
		if d.UUID, err = parseUUID(*uuid, "<uuid>"); err != nil {
			return nil, err
		}
	}
	for _, s := range x.Sysinfo {
		if s.Type != "smbios" {
			continue
		}
		for _, sys := range s.System {
			for _, e := range sys.Entries {
				if e.Name == "serial" && d.SMBIOSSerial == "" {
					d.SMBIOSSerial = strings.TrimSpace(e.Value)
				}
			}
		}
	}
	osx, err := one(x.OS, "<os>")
	if err != nil {
		return nil, err
	}
	if osx != nil {
		kernel, err := one(osx.Kernel, "<kernel>")
		if err != nil {
			return nil, err
		}
		initrd, err := one(osx.Initrd, "<initrd>")
		if err != nil {
			return nil, err
		}
		if kernel != nil {
			d.Kernel = strings.TrimSpace(*kernel)
		}
		if initrd != nil {
			d.Initrd = strings.TrimSpace(*initrd)
		}
		for _, b := range osx.Boot {
			d.Boot.Devs = append(d.Boot.Devs, b.Dev)
		}
		// Whatever the first <bootmenu> says; a second one only makes it possible.
		for _, m := range osx.BootMenu {
			d.Boot.Menu = d.Boot.Menu || m.Enable == "yes"
		}
		d.Boot.UEFI = osx.Firmware == "efi"
		for _, l := range osx.Loader {
			d.Boot.UEFI = d.Boot.UEFI || l.Type == "pflash"
		}
	}
	devices, err := one(x.Devices, "<devices>")
	if err != nil {
		return nil, err
	}
	if devices != nil {
		for _, fs := range devices.Filesystems {
			src := "(no source)"
			if len(fs.Source) > 0 {
				s := fs.Source[0]
				src = s.Dir + s.File + s.Dev + s.Name
			}
			d.Filesystems = append(d.Filesystems, src)
		}
		for i := range devices.Disks {
			disk, err := devices.Disks[i].convert()
			if err != nil {
				return nil, fmt.Errorf("disk %d%s: %w", i+1, devices.Disks[i].label(), err)
			}
			d.Disks = append(d.Disks, disk)
		}
		for i := range devices.Interfaces {
			iface, err := devices.Interfaces[i].convert()
			if err != nil {
				return nil, fmt.Errorf("interface %d: %w", i+1, err)
			}
			d.Interfaces = append(d.Interfaces, iface)
		}
	}
	for _, c := range x.QEMU {
		for _, a := range c.Args {
			d.QEMUArgs = append(d.QEMUArgs, a.Value)
		}
	}
	if err := x.convertDevices(d, osx, devices); err != nil {
		return nil, err
	}
	metadata, err := one(x.Metadata, "<metadata>")
	if err != nil {
		return nil, err
	}
	if metadata != nil {
		nova, err := one(metadata.Nova, "<nova:instance>")
		if err != nil {
			return nil, err
		}
		if nova != nil {
			if d.Nova, err = nova.convert(x.novaNamespace); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

func (x *diskXML) convert() (Disk, error) {
	d := Disk{Type: x.Type, Device: x.Device}
	// libvirt's defaults when the attributes are missing.
	if d.Type == "" {
		d.Type = "file"
	}
	if d.Device == "" {
		d.Device = "disk"
	}
	driver, err := one(x.Driver, "<driver>")
	if err != nil {
		return d, err
	}
	if driver != nil {
		d.Format = driver.Type
	}
	if d.Format == "" && (d.Type == "file" || d.Type == "block") {
		// libvirt never probes a disk's format: without <driver type> it opens the source
		// as raw (checked on libvirt 9.0, see test/integration/devices_test.go), so its own
		// bytes are what the guest boots, whatever header they start with.
		d.Format = "raw"
	}
	if d.Source, err = convertSource(x.Source, d.Type); err != nil {
		return d, err
	}
	target, err := one(x.Target, "<target>")
	if err != nil {
		return d, err
	}
	if target != nil {
		d.Target = target.Dev
	}
	d.ReadOnly = len(x.ReadOnly) > 0
	boot, err := one(x.Boot, "<boot>")
	if err != nil {
		return d, err
	}
	if boot != nil {
		// libvirt refuses an order that is not a positive number; any <boot> marks the disk
		// as a boot device, so an unreadable order counts as one.
		d.BootOrder = 1
		if n, err := strconv.Atoi(boot.Order); err == nil && n > 0 {
			d.BootOrder = n
		}
	}
	serial, err := one(x.Serial, "<serial>")
	if err != nil {
		return d, err
	}
	if serial != nil {
		d.Serial = strings.TrimSpace(*serial)
	}
	if d.BackingStore, err = convertBackingStore(x.BackingStore, 1); err != nil {
		return d, err
	}
	return d, nil
}

// label names a disk in errors by its first target, as a person knows it: " (vda)".
func (x *diskXML) label() string {
	if len(x.Target) == 0 || x.Target[0].Dev == "" {
		return ""
	}
	return fmt.Sprintf(" (%s)", x.Target[0].Dev)
}

// convertSource keeps the attributes libvirt reads for a source of type typ.
func convertSource(all []sourceXML, typ string) (*Source, error) {
	x, err := one(all, "<source>")
	if x == nil || err != nil {
		return nil, err
	}
	var s Source
	switch typ {
	case "file":
		s.Path = x.File
	case "block":
		s.Path = x.Dev
	case "dir":
		s.Path = x.Dir
	case "network":
		s.Protocol, s.Name = x.Protocol, x.Name
	case "volume":
		s.Pool, s.Volume = x.Pool, x.Volume
	}
	return &s, nil
}

func convertBackingStore(all []backingStoreXML, depth int) (*BackingStore, error) {
	x, err := one(all, "<backingStore> in one layer")
	if x == nil || err != nil {
		return nil, err
	}
	if depth > maxBackingStores {
		return nil, fmt.Errorf("more than %d nested <backingStore> elements", maxBackingStores)
	}
	b := &BackingStore{Type: x.Type}
	if b.End() {
		// libvirt ignores whatever an element without a type holds: the chain ends here.
		return b, nil
	}
	format, err := one(x.Format, "<format> in a <backingStore>")
	if err != nil {
		return nil, err
	}
	if format != nil {
		b.Format = format.Type
	}
	if b.Source, err = convertSource(x.Source, b.Type); err != nil {
		return nil, fmt.Errorf("<backingStore>: %w", err)
	}
	if b.BackingStore, err = convertBackingStore(x.BackingStore, depth+1); err != nil {
		return nil, err
	}
	return b, nil
}

func (x *interfaceXML) convert() (Interface, error) {
	i := Interface{Type: x.Type}
	mac, err := one(x.MAC, "<mac>")
	if err != nil {
		return i, err
	}
	if mac != nil {
		if i.MAC, err = parseMAC(mac.Address); err != nil {
			return i, err
		}
	}
	source, err := one(x.Source, "<source>")
	if err != nil {
		return i, err
	}
	if source != nil {
		i.Bridge, i.Network = source.Bridge, source.Network
	}
	target, err := one(x.Target, "<target>")
	if err != nil {
		return i, err
	}
	if target != nil {
		i.Target = target.Dev
	}
	return i, nil
}

// novaTimeLayout is how Nova writes creationTime (time.strftime("%Y-%m-%d %H:%M:%S"), UTC).
const novaTimeLayout = "2006-01-02 15:04:05"

func (x *novaXML) convert(namespace string) (*Nova, error) {
	n := &Nova{Namespace: namespace}
	pkg, err := one(x.Package, "<nova:package>")
	if err != nil {
		return nil, err
	}
	if pkg != nil {
		n.Package = pkg.Version
	}
	name, err := one(x.Name, "<nova:name>")
	if err != nil {
		return nil, err
	}
	if name != nil {
		n.Name = *name
	}
	created, err := one(x.CreationTime, "<nova:creationTime>")
	if err != nil {
		return nil, err
	}
	if created != nil {
		s := strings.TrimSpace(*created)
		if n.CreationTime, err = time.ParseInLocation(novaTimeLayout, s, time.UTC); err != nil {
			return nil, fmt.Errorf("<nova:creationTime> %q is not of the form %q", s, novaTimeLayout)
		}
	}
	flavor, err := one(x.Flavor, "<nova:flavor>")
	if err != nil {
		return nil, err
	}
	if flavor != nil {
		n.Flavor = flavor.Name
	}
	owner, err := one(x.Owner, "<nova:owner>")
	if err != nil {
		return nil, err
	}
	if owner != nil {
		user, err := one(owner.User, "<nova:user>")
		if err != nil {
			return nil, err
		}
		if user != nil {
			if n.UserID, err = parseKeystoneID(user.UUID, "<nova:user>"); err != nil {
				return nil, err
			}
			n.UserName = user.Name
		}
		project, err := one(owner.Project, "<nova:project>")
		if err != nil {
			return nil, err
		}
		if project != nil {
			if n.ProjectID, err = parseKeystoneID(project.UUID, "<nova:project>"); err != nil {
				return nil, err
			}
			n.ProjectName = project.Name
		}
	}
	root, err := one(x.Root, "<nova:root>")
	if err != nil {
		return nil, err
	}
	if root != nil {
		if root.Type != "image" && root.Type != "volume" {
			return nil, fmt.Errorf("<nova:root> type %q is neither \"image\" nor \"volume\"", root.Type)
		}
		id, err := parseUUID(root.UUID, "<nova:root>")
		if err != nil {
			return nil, err
		}
		n.Root = &NovaRoot{Type: root.Type, ID: id}
	}
	ports, err := one(x.Ports, "<nova:ports>")
	if err != nil {
		return nil, err
	}
	if ports == nil {
		return n, nil
	}
	for _, p := range ports.Port {
		port := NovaPort{}
		if p.UUID != "" {
			if port.ID, err = parseUUID(p.UUID, "<nova:port>"); err != nil {
				return nil, err
			}
		}
		for _, ip := range p.IP {
			addr, err := parseNovaIP(ip.Address, ip.Version, port.ID)
			if err != nil {
				return nil, err
			}
			if ip.Type != "fixed" && ip.Type != "floating" {
				return nil, fmt.Errorf("<nova:ip> %s of port %s: type %q is neither \"fixed\" nor \"floating\"", addr, port.ID, ip.Type)
			}
			port.IPs = append(port.IPs, NovaIP{Type: ip.Type, Address: addr})
		}
		n.Ports = append(n.Ports, port)
	}
	return n, nil
}

func parseNovaIP(address, version, port string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(address)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("<nova:ip> of port %s: address %q is not an IP address", port, address)
	}
	want := "6"
	if addr.Is4() {
		want = "4"
	}
	if version != "" && version != want {
		return netip.Addr{}, fmt.Errorf("<nova:ip> of port %s: address %s is IPv%s but ipVersion is %q", port, addr, want, version)
	}
	return addr, nil
}

// parseUUID checks that s is a uuid in its canonical 8-4-4-4-12 form, as libvirt, Glance,
// Cinder and Neutron write it, and returns it in lower case.
func parseUUID(s, what string) (string, error) {
	t := strings.TrimSpace(s)
	ok := len(t) == 36
	for i := 0; ok && i < len(t); i++ {
		switch i {
		case 8, 13, 18, 23:
			ok = t[i] == '-'
		default:
			ok = isHex(t[i])
		}
	}
	if !ok {
		return "", fmt.Errorf("%s uuid %q is not a uuid (8-4-4-4-12 hex digits)", what, s)
	}
	return strings.ToLower(t), nil
}

// parseKeystoneID checks a Keystone user or project id. They are 32 hex digits by default,
// but identity backends such as LDAP may use other strings, so only sanity is checked: at
// most 255 bytes of UTF-8 text without control characters.
func parseKeystoneID(s, what string) (string, error) {
	ok := len(s) <= 255 && utf8.ValidString(s)
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			ok = false
		}
	}
	if !ok {
		return "", fmt.Errorf("%s uuid %q is not a usable Keystone id", what, s)
	}
	return s, nil
}

// parseMAC checks a MAC address in libvirt's form (six colon-separated groups of one or two
// hex digits) and returns it as lower-case aa:bb:cc:dd:ee:ff.
func parseMAC(s string) (string, error) {
	parts := strings.Split(s, ":")
	ok := len(parts) == 6
	var b strings.Builder
	for i, p := range parts {
		if !ok {
			break
		}
		ok = len(p) == 1 || len(p) == 2
		for j := 0; ok && j < len(p); j++ {
			ok = isHex(p[j])
		}
		if i > 0 {
			b.WriteByte(':')
		}
		if len(p) == 1 {
			b.WriteByte('0')
		}
		b.WriteString(strings.ToLower(p))
	}
	if !ok {
		return "", fmt.Errorf("<mac> address %q is not a MAC address", s)
	}
	return b.String(), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
