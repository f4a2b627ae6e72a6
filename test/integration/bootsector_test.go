package integration

// Guests that show what really ran: a 512-byte x86 boot sector that prints a word on COM1,
// again every half second, so that a test reads on the serial console which disk the
// firmware booted, and, after a restore, which code the memory image holds.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// bootSector returns a boot sector (0x55AA at 510) that, loaded at 0x7c00 by the BIOS,
// writes word and CR LF to the serial port at 0x3f8, waits half a second (INT 15h,
// AH=86h) and starts again, forever.
func bootSector(word string) []byte {
	const origin = 0x7c00
	code := []byte{
		0xfb,       // sti: the BIOS wait needs the timer interrupt
		0x31, 0xc0, // xor ax, ax
		0x8e, 0xd8, // mov ds, ax
		0xbe, 0x00, 0x00, // 5: mov si, msg (patched below)
		0xba, 0xf8, 0x03, // mov dx, 0x3f8 (COM1)
		0xac,       // 11: lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz 19
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp 11
		0xb4, 0x86, // 19: mov ah, 0x86
		0xb9, 0x07, 0x00, // mov cx, 0x0007
		0xba, 0x20, 0xa1, // mov dx, 0xa120: cx:dx = 500000 µs
		0xcd, 0x15, // int 0x15
		0xeb, 0xe6, // jmp 5
	}
	msg := origin + len(code)
	code[6], code[7] = byte(msg), byte(msg>>8)
	b := make([]byte, 512)
	copy(b, code)
	copy(b[len(code):], word+"\r\n\x00")
	b[510], b[511] = 0x55, 0xaa
	return b
}

// bootDisk is a raw disk of size bytes whose first sector is bootSector(word).
func bootDisk(word string, size int) []byte {
	b := make([]byte, size)
	copy(b, bootSector(word))
	return b
}

// TestBootSector checks the builder itself: the message lies where mov si points.
func TestBootSector(t *testing.T) {
	b := bootSector("GOOD")
	if len(b) != 512 || b[510] != 0x55 || b[511] != 0xaa {
		t.Fatal("not a boot sector")
	}
	at := int(b[6]) | int(b[7])<<8 - 0x7c00
	if !bytes.HasPrefix(b[at:], []byte("GOOD\r\n\x00")) {
		t.Fatalf("message at %d: %q", at, b[at:at+8])
	}
}

// Guest is a domain built by NewGuest: disks given as XML, a serial console to a file.
type Guest struct {
	l       *Libvirt
	Name    string
	UUID    string
	Console string
	XML     string
	xmlPath string
}

// GuestOptions shape a guest.
type GuestOptions struct {
	Disks string // the <disk> elements, as XML
	OS    string // what goes in <os> after <type>; default <boot dev='hd'/>
	UUID  string // default: a new one
}

var guestXML = template.Must(template.New("guest").Parse(`<domain type='qemu'>
  <name>{{.Name}}</name>
  <uuid>{{.UUID}}</uuid>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    {{.OS}}
  </os>
  <devices>
{{.Disks}}
    <serial type='file'>
      <source path='{{.Console}}'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
`))

// NewGuest defines vmgate-test-<name>. Cleanup destroys it and undefines it with any
// managed save image.
func (l *Libvirt) NewGuest(t *testing.T, name string, o GuestOptions) *Guest {
	t.Helper()
	dir := t.TempDir()
	g := &Guest{l: l, Name: testDomainPrefix + name, UUID: o.UUID, Console: filepath.Join(dir, "console.log"), xmlPath: filepath.Join(dir, "domain.xml")}
	if g.UUID == "" {
		g.UUID = newUUID(t)
	}
	if o.OS == "" {
		o.OS = "<boot dev='hd'/>"
	}
	var buf bytes.Buffer
	if err := guestXML.Execute(&buf, struct {
		GuestOptions
		Name, UUID, Console string
	}{o, g.Name, g.UUID, g.Console}); err != nil {
		t.Fatal(err)
	}
	g.XML = buf.String()
	if err := os.WriteFile(g.xmlPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	g.undefine(t)
	if _, _, err := l.Virsh("define", g.xmlPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.undefine(t) })
	return g
}

func (g *Guest) undefine(t *testing.T) {
	if _, _, err := g.l.Virsh("dominfo", g.Name); err != nil {
		return
	}
	if st, _ := g.State(); st == "running" || st == "paused" {
		g.l.Virsh("destroy", g.Name)
	}
	if _, _, err := g.l.Virsh("undefine", g.Name, "--managed-save"); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// Start starts the guest afresh (its console emptied first) and returns virsh's stderr.
func (g *Guest) Start() (string, error) {
	os.Remove(g.Console)
	_, stderr, err := g.l.Virsh("start", g.Name)
	return stderr, err
}

// State is virsh domstate.
func (g *Guest) State() (string, error) {
	out, _, err := g.l.Virsh("domstate", g.Name)
	return strings.TrimSpace(out), err
}

// Destroy stops the guest at once.
func (g *Guest) Destroy(t *testing.T) {
	t.Helper()
	if _, _, err := g.l.Virsh("destroy", g.Name); err != nil {
		t.Fatal(err)
	}
}

// Prints waits until the guest's console shows word, and fails t when it shows another
// of the words the tests use instead, or nothing within the time.
func (g *Guest) Prints(t *testing.T, word string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := os.ReadFile(g.Console)
		for _, w := range []string{"GOOD", "EVIL"} {
			if w != word && bytes.Contains(out, []byte(w)) {
				t.Fatalf("%s printed %s, want %s:\n%s", g.Name, w, word, out)
			}
		}
		if bytes.Contains(out, []byte(word)) {
			return
		}
		if time.Now().After(deadline) {
			st, _ := g.State()
			t.Fatalf("%s (%s) did not print %s within a minute; console: %q", g.Name, st, word, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// xmlAttr escapes s for an XML attribute value.
func xmlAttr(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// fileDisk is a <disk type='file'> element.
func fileDisk(device, format, path, target, bus, extra string) string {
	return fmt.Sprintf("    <disk type='file' device='%s'>\n      <driver name='qemu' type='%s'/>\n      <source file='%s'/>\n      <target dev='%s' bus='%s'/>\n      %s\n    </disk>",
		device, format, xmlAttr(path), target, bus, extra)
}
