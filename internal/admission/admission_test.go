package admission

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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

var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// sumHasher hashes every time: the cache is imagehash's business, not the decision's.
type sumHasher struct{}

func (sumHasher) SHA512(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// world is a node: image files on disk and a snapshot that says what is endorsed.
type world struct {
	t       *testing.T
	dir     string
	entries []snapshot.Entry
	meta    snapshot.Meta
	cfg     config.Admission
	blocks  []snapshot.Block
}

func newWorld(t *testing.T) *world {
	return &world{t: t, dir: t.TempDir(), meta: snapshot.Meta{Serial: 1, Created: now, Expires: now.Add(24 * time.Hour)}, cfg: config.Admission{Mode: config.ModeEnforce, FirmwareDirs: config.DefaultFirmwareDirs(), Emulators: config.DefaultEmulators()}}
}

// image writes a base image file and returns its path and sha512.
func (w *world) image(name string) (string, string) {
	p := filepath.Join(w.dir, name)
	content := []byte("bytes of " + name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		w.t.Fatal(err)
	}
	h := sha512.Sum512(content)
	return p, hex.EncodeToString(h[:])
}

func (w *world) endorse(sha string, status snapshot.Status, reason string, glance ...string) {
	im := snapshot.Image{Subscription: "example", List: "list-a", ListVersion: "20261120", Identifier: "img-" + sha[:6],
		Title: "Worker", Version: "1", Status: status, Since: now.Add(-time.Hour), Expires: now.Add(12 * time.Hour), Reason: reason}
	if status != snapshot.Endorsed {
		im.RevokedAt = now.Add(-time.Minute)
	}
	w.entries = append(w.entries, snapshot.Entry{SHA512: sha, Images: []snapshot.Image{im}, GlanceIDs: glance})
}

func (w *world) judge(at time.Time) *Judge {
	p := filepath.Join(w.dir, "snapshot.db")
	if err := snapshot.Write(p, w.meta, w.entries, w.blocks); err != nil {
		w.t.Fatal(err)
	}
	s, err := snapshot.Open(p)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { s.Close() })
	return &Judge{Snapshot: s, Hasher: sumHasher{}, Config: w.cfg, Now: at}
}

func plain(name string, disks ...string) *domain.Domain {
	d := &domain.Domain{Name: name, UUID: "3f2e1d0c-9b8a-4766-8554-433221100fed"}
	for i, p := range disks {
		d.Disks = append(d.Disks, domain.Disk{Device: "disk", Type: "file", Target: fmt.Sprintf("vd%c", 'a'+i), Source: &domain.Source{Path: p}})
	}
	return d
}

// media makes disk i of d a read-only removable medium of the given device kind.
func media(d *domain.Domain, i int, device string) *domain.Domain {
	d.Disks[i].Device, d.Disks[i].ReadOnly = device, true
	return d
}

// nova is a server as Nova's API describes it (vmgate terminate --cloud): no disks, judged by
// its root image. nova_test.go builds instances as the hook sees them.
func nova(root, rootType, project string) *domain.Domain {
	return &domain.Domain{Name: "instance-0000002a", UUID: "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f", Nova: &domain.Nova{
		Name: "analysis-node-3", UserID: "u1", ProjectID: project, Root: &domain.NovaRoot{Type: rootType, ID: root}, FromAPI: true}}
}

func TestPlainDomains(t *testing.T) {
	w := newWorld(t)
	good, goodSHA := w.image("good.raw")
	revoked, revokedSHA := w.image("revoked.raw")
	unknown, _ := w.image("unknown.raw")
	iso, _ := w.image("tools.iso")
	w.endorse(goodSHA, snapshot.Endorsed, "")
	w.endorse(revokedSHA, snapshot.Revoked, `removed from list "example" version 20261120 on 2026-11-20T09:59:00Z`)
	w.cfg.ExemptDisks = []string{"*.iso"}
	j := w.judge(now)

	cases := []struct {
		name   string
		d      *domain.Domain
		allow  bool
		reason string
	}{
		{"endorsed", plain("vm", good), true, ""},
		{"revoked", plain("vm", revoked), false, "not endorsed: disk vda image " + revoked + " (sha512 " + revokedSHA[:16] + "…): removed from list \"example\" version 20261120"},
		{"unknown", plain("vm", unknown), false, "): no subscribed list endorses it"},
		{"endorsed and unknown", plain("vm", good, unknown), false, "disk vdb image"},
		{"endorsed and exempt iso", media(plain("vm", good, iso), 1, "cdrom"), true, ""},
		{"only an exempt iso", media(plain("vm", iso), 0, "cdrom"), false, "no disk with an endorsed image"},
		{"no disk", plain("vm"), false, "no disk with an image"},
		{"missing file", plain("vm", filepath.Join(w.dir, "gone.qcow2")), false, "cannot follow its backing chain"},
	}
	for _, c := range cases {
		dec := j.Decide(c.d)
		if dec.Allow != c.allow || dec.Endorsed != c.allow {
			t.Errorf("%s: allow=%v endorsed=%v reason=%q, want allow=%v", c.name, dec.Allow, dec.Endorsed, dec.Reason, c.allow)
		}
		if !strings.Contains(dec.Reason, c.reason) {
			t.Errorf("%s: reason %q does not contain %q", c.name, dec.Reason, c.reason)
		}
	}
	// An endorsed image is recorded with the endorsement that vouched for it.
	dec := j.Decide(media(plain("vm", good, iso), 1, "cdrom"))
	if d := dec.Disks[0]; d.Status != "endorsed" || d.SHA512 != goodSHA || d.Image.Identifier != "img-"+goodSHA[:6] {
		t.Errorf("disk 0 = %+v", d)
	}
	if d := dec.Disks[1]; d.Status != StatusExempt || !strings.Contains(d.Reason, `"*.iso"`) {
		t.Errorf("disk 1 = %+v", d)
	}
}

func TestOtherDiskKindsAreRefused(t *testing.T) {
	w := newWorld(t)
	good, goodSHA := w.image("good.raw")
	w.endorse(goodSHA, snapshot.Endorsed, "")
	j := w.judge(now)
	for name, mut := range map[string]func(*domain.Domain){
		"network disk": func(d *domain.Domain) {
			d.Disks = append(d.Disks, domain.Disk{Device: "disk", Type: "network", Target: "vdb", Source: &domain.Source{Protocol: "rbd", Name: "pool/img"}})
		},
		"block disk": func(d *domain.Domain) {
			d.Disks = append(d.Disks, domain.Disk{Device: "disk", Type: "block", Target: "vdb", Source: &domain.Source{Path: "/dev/sdb"}})
		},
		"direct kernel":    func(d *domain.Domain) { d.Kernel = "/boot/vmlinuz" },
		"shared directory": func(d *domain.Domain) { d.Filesystems = []string{"/srv/rootfs"} },
		"qemu arguments":   func(d *domain.Domain) { d.QEMUArgs = []string{"-drive", "file=/tmp/x"} },
	} {
		d := plain("vm", good)
		mut(d)
		if dec := j.Decide(d); dec.Allow || dec.Reason == "" {
			t.Errorf("%s: allowed (%+v)", name, dec)
		}
	}
	// An empty CD-ROM drive is no image.
	d := plain("vm", good)
	d.Disks = append(d.Disks, domain.Disk{Device: "cdrom", Type: "file", Target: "hdc"})
	if dec := j.Decide(d); !dec.Allow {
		t.Errorf("empty cdrom refused: %s", dec.Reason)
	}
}

func TestQCOW2OverlayIsJudgedByItsBase(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		if os.Getenv("VMGATE_INTEGRATION") == "1" {
			t.Fatal("qemu-img is missing (install qemu-utils)")
		}
		t.Skip("qemu-img is missing")
	}
	w := newWorld(t)
	base, baseSHA := w.image("base.raw")
	w.endorse(baseSHA, snapshot.Endorsed, "")
	overlay := filepath.Join(w.dir, "vm.qcow2")
	if out, err := exec.Command(qemuImg, "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	d := plain("vm", overlay)
	d.Disks[0].Format = "qcow2"
	dec := w.judge(now).Decide(d)
	if !dec.Allow || dec.Disks[0].Source != base {
		t.Fatalf("overlay on an endorsed base: %+v", dec)
	}
}

func TestNovaDomains(t *testing.T) {
	w := newWorld(t)
	_, sha := w.image("a")
	_, revokedSHA := w.image("b")
	w.endorse(sha, snapshot.Endorsed, "", "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b")
	w.endorse(revokedSHA, snapshot.Revoked, "removed from list \"example\" version 2", "dc7efb6f-67ac-4409-a0c3-f565a29a92a2")
	w.cfg.ExemptProjects = []string{"trusted-project"}
	j := w.judge(now)
	cases := []struct {
		name   string
		d      *domain.Domain
		allow  bool
		reason string
	}{
		{"endorsed glance image", nova("4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b", "image", "p"), true, ""},
		{"revoked glance image", nova("dc7efb6f-67ac-4409-a0c3-f565a29a92a2", "image", "p"), false, "not endorsed: image dc7efb6f-67ac-4409-a0c3-f565a29a92a2 (sha512 " + revokedSHA[:16] + "…): removed from list"},
		{"unknown glance image", nova("11111111-2222-4333-8444-555555555555", "image", "p"), false, "not endorsed: image 11111111-2222-4333-8444-555555555555: unknown Glance image"},
		{"boot from volume", nova("v1", "volume", "p"), false, "boots from volume v1"},
		{"exempt project", nova("11111111-2222-4333-8444-555555555555", "image", "trusted-project"), true, ""},
		{"no root", &domain.Domain{Name: "i", Nova: &domain.Nova{FromAPI: true}}, false, "names no root disk"},
	}
	for _, c := range cases {
		dec := j.Decide(c.d)
		if dec.Allow != c.allow || !strings.Contains(dec.Reason, c.reason) {
			t.Errorf("%s: allow=%v reason=%q, want allow=%v and %q", c.name, dec.Allow, dec.Reason, c.allow, c.reason)
		}
	}
	if dec := j.Decide(nova("11111111-2222-4333-8444-555555555555", "image", "trusted-project")); !strings.Contains(dec.Exemption, "trusted-project") {
		t.Errorf("exemption not named: %+v", dec)
	}
	j.Config.AllowBootFromVolume = true
	if dec := j.Decide(nova("v1", "volume", "p")); !dec.Allow || dec.Exemption == "" {
		t.Errorf("boot from volume with allow_boot_from_volume: %+v", dec)
	}
}

func TestSnapshotProblemsRefuseEverything(t *testing.T) {
	w := newWorld(t)
	good, sha := w.image("good.raw")
	w.endorse(sha, snapshot.Endorsed, "")
	j := w.judge(now.Add(25 * time.Hour)) // past the snapshot's expiry
	if dec := j.Decide(plain("vm", good)); dec.Allow || !strings.Contains(dec.Reason, "out of date") || !strings.Contains(dec.Reason, "vmgate sync") {
		t.Errorf("stale snapshot: %+v", dec)
	}
	j = &Judge{SnapshotErr: errors.New("snapshot: open /var/lib/vmgate/snapshot.db: no such file or directory"), Config: w.cfg, Now: now}
	if dec := j.Decide(plain("vm", good)); dec.Allow || !strings.Contains(dec.Reason, "run `vmgate sync`") {
		t.Errorf("missing snapshot: %+v", dec)
	}
	// An exemption is explicit configuration: it holds without a snapshot.
	j.Config.ExemptDomains = []string{"ci-*"}
	if dec := j.Decide(plain("ci-runner", good)); !dec.Allow || dec.Exemption == "" {
		t.Errorf("exempt domain: %+v", dec)
	}
}

func TestEndorsementExpiresWithTime(t *testing.T) {
	w := newWorld(t)
	good, sha := w.image("good.raw")
	w.endorse(sha, snapshot.Endorsed, "") // expires at now+12h
	if dec := w.judge(now.Add(13 * time.Hour)).Decide(plain("vm", good)); dec.Allow || !strings.Contains(dec.Reason, "endorsement expired at") {
		t.Errorf("%+v", dec)
	}
}

func TestWarnModeAllowsButSays(t *testing.T) {
	w := newWorld(t)
	unknown, _ := w.image("unknown.raw")
	w.cfg.Mode = config.ModeWarn
	dec := w.judge(now).Decide(plain("vm", unknown))
	if !dec.Allow || dec.Endorsed || dec.Reason == "" || dec.Mode != config.ModeWarn {
		t.Fatalf("warn mode: %+v", dec)
	}
}
