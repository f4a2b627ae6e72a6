package hook

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/trace"
)

var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// node is one hypervisor: a config file, a state directory with a snapshot, image files.
type node struct {
	t        *testing.T
	dir      string
	cfgPath  string
	stateDir string
}

func newNode(t *testing.T, extraConfig string) *node {
	dir := t.TempDir()
	n := &node{t: t, dir: dir, cfgPath: filepath.Join(dir, "vmgate.yaml"), stateDir: filepath.Join(dir, "state")}
	os.MkdirAll(n.stateDir, 0o755)
	if err := os.WriteFile(n.cfgPath, []byte("state_dir: "+n.stateDir+"\n"+extraConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// image writes a base image and returns its path and sha512.
func (n *node) image(name string) (string, string) {
	p := filepath.Join(n.dir, name)
	os.WriteFile(p, []byte("image "+name), 0o644)
	h := sha512.Sum512([]byte("image " + name))
	return p, hex.EncodeToString(h[:])
}

func (n *node) snapshot(entries ...snapshot.Entry) {
	cfg := config.Config{StateDir: n.stateDir}
	if err := snapshot.Write(cfg.Paths().Snapshot(), snapshot.Meta{Created: now, Expires: now.Add(time.Hour)}, entries, nil); err != nil {
		n.t.Fatal(err)
	}
}

func endorsed(sha string, status snapshot.Status, reason string) snapshot.Entry {
	return snapshot.Entry{SHA512: sha, Images: []snapshot.Image{{Subscription: "example", List: "l", ListVersion: "2",
		Identifier: "img-1", Title: "Worker", Status: status, Reason: reason, Expires: now.Add(time.Hour)}}}
}

func (n *node) run(stdin string, args ...string) (int, string) {
	var stderr bytes.Buffer
	code := Run(Env{Args: args, Stdin: strings.NewReader(stdin), Stderr: &stderr,
		Getenv: func(k string) string {
			if k == "VMGATE_CONFIG" {
				return n.cfgPath
			}
			return ""
		},
		Now: func() time.Time { return now }, Hostname: "node1", Version: "test"})
	return code, stderr.String()
}

func (n *node) records() []trace.Record {
	var recs []trace.Record
	err := journal.Read(trace.JournalPath(n.stateDir), 1, func(e journal.Entry) error {
		var r trace.Record
		if err := json.Unmarshal(e.Data, &r); err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		n.t.Fatal(err)
	}
	return recs
}

func domainXML(name, disk string) string {
	return `<domain type='qemu'><name>` + name + `</name><uuid>3f2e1d0c-9b8a-4766-8554-433221100fed</uuid>
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='` + disk + `'/><target dev='vda'/></disk>
<interface type='network'><mac address='52:54:00:ab:cd:ef'/><source network='default'/></interface></devices></domain>`
}

func TestPrepareAllowsEndorsedAndRecordsFirst(t *testing.T) {
	n := newNode(t, "")
	img, sha := n.image("good.raw")
	n.snapshot(endorsed(sha, snapshot.Endorsed, ""))
	code, stderr := n.run(domainXML("vm1", img), "vm1", "prepare", "begin", "-")
	if code != ExitAllow || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	recs := n.records()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Event != trace.AdmissionAllow || r.Outcome != trace.OutcomeSuccess || r.Host != "node1" || r.Op != "prepare begin" ||
		r.Domain.Name != "vm1" || r.MACs[0] != "52:54:00:ab:cd:ef" || r.Images[0].SHA512 != sha || r.Images[0].Identifier != "img-1" {
		t.Fatalf("record %+v", r)
	}
}

func TestPrepareRefusesWithOneLineReason(t *testing.T) {
	n := newNode(t, "")
	img, sha := n.image("old.raw")
	n.snapshot(endorsed(sha, snapshot.Revoked, `removed from list "example" version 2 on 2026-11-20T09:00:00Z`))
	for _, op := range []string{"prepare", "migrate", "restore"} {
		code, stderr := n.run(domainXML("vm2", img), "vm2", op, "begin", "-")
		if code != ExitRefuse {
			t.Fatalf("%s: exit %d", op, code)
		}
		want := "vmgate: not endorsed: disk vda image " + img + " (sha512 " + sha[:16] + "…): removed from list \"example\" version 2 on 2026-11-20T09:00:00Z\n"
		if stderr != want {
			t.Fatalf("%s: stderr\n%q, want\n%q", op, stderr, want)
		}
	}
	recs := n.records()
	if len(recs) != 3 || recs[0].Event != trace.AdmissionRefuse || recs[0].Outcome != trace.OutcomeFailure || !strings.Contains(recs[0].Reason, "removed from list") {
		t.Fatalf("records %+v", recs)
	}
}

func TestLifecycleIsRecordedAndNeverRefused(t *testing.T) {
	n := newNode(t, "")
	img, sha := n.image("old.raw")
	n.snapshot(endorsed(sha, snapshot.Revoked, "removed"))
	for op, event := range map[string]string{"reconnect begin": trace.VMReconnected, "started begin": trace.VMStarted,
		"stopped end": trace.VMStopped, "release end": trace.VMReleased, "attach begin": trace.VMOther, "start begin": trace.VMOther} {
		f := strings.Fields(op)
		if code, stderr := n.run(domainXML("vm3", img), "vm3", f[0], f[1], "-"); code != ExitAllow {
			t.Fatalf("%s: exit %d %s", op, code, stderr)
		}
		recs := n.records()
		if last := recs[len(recs)-1]; last.Event != event || last.Op != op {
			t.Fatalf("%s: record %+v", op, last)
		}
	}
	// Even unreadable XML or a broken configuration never stops a VM from stopping.
	if code, _ := n.run("<not xml", "vm3", "stopped", "end", "-"); code != ExitAllow {
		t.Fatal("stopped end refused on bad XML")
	}
	os.WriteFile(n.cfgPath, []byte("state_dir: [\n"), 0o644)
	if code, _ := n.run(domainXML("vm3", img), "vm3", "release", "end", "-"); code != ExitAllow {
		t.Fatal("release end refused on a broken configuration")
	}
}

func TestBadInputIsRefusedWithReason(t *testing.T) {
	n := newNode(t, "")
	img, sha := n.image("good.raw")
	n.snapshot(endorsed(sha, snapshot.Endorsed, ""))
	cases := map[string]string{
		"<domain><name>x</name>":                                             "cannot read the domain XML",
		strings.Repeat(" ", 4<<20+1) + domainXML("x", img):                   "cannot read the domain XML: more than",
		`<!DOCTYPE d [<!ENTITY a "aaaa">]><domain><name>&a;</name></domain>`: "cannot read the domain XML",
	}
	for in, want := range cases {
		code, stderr := n.run(in, "x", "prepare", "begin", "-")
		if code != ExitRefuse || !strings.Contains(stderr, want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("exit %d, stderr %q, want %q", code, stderr, want)
		}
	}
	if code, stderr := n.run(domainXML("x", img), "x"); code != ExitRefuse || !strings.Contains(stderr, "NAME OP SUBOP") {
		t.Errorf("no op: exit %d %q", code, stderr)
	}
}

func TestNoConfigNoSnapshotRefuse(t *testing.T) {
	n := newNode(t, "")
	img, _ := n.image("good.raw")
	code, stderr := n.run(domainXML("vm", img), "vm", "prepare", "begin", "-")
	if code != ExitRefuse || !strings.Contains(stderr, "vmgate sync") {
		t.Fatalf("no snapshot: exit %d %q", code, stderr)
	}
	os.Remove(n.cfgPath)
	code, stderr = n.run(domainXML("vm", img), "vm", "prepare", "begin", "-")
	if code != ExitRefuse || !strings.Contains(stderr, "cannot read vmgate's configuration") {
		t.Fatalf("no config: exit %d %q", code, stderr)
	}
}

func TestNoRecordNoStart(t *testing.T) {
	n := newNode(t, "")
	img, sha := n.image("good.raw")
	n.snapshot(endorsed(sha, snapshot.Endorsed, ""))
	// The trace directory cannot be created: a file stands where it should be.
	os.WriteFile(filepath.Join(n.stateDir, "trace"), nil, 0o644)
	code, stderr := n.run(domainXML("vm", img), "vm", "prepare", "begin", "-")
	if code != ExitRefuse || !strings.Contains(stderr, "no record, no start") {
		t.Fatalf("exit %d %q", code, stderr)
	}
}

func TestWarnModeAllowsAndRecordsWarning(t *testing.T) {
	n := newNode(t, "admission: {mode: warn}\n")
	img, _ := n.image("unknown.raw")
	n.snapshot()
	if code, stderr := n.run(domainXML("vm", img), "vm", "prepare", "begin", "-"); code != ExitAllow {
		t.Fatalf("exit %d %q", code, stderr)
	}
	r := n.records()[0]
	if r.Event != trace.AdmissionWarn || r.Mode != config.ModeWarn || !strings.Contains(r.Reason, "not endorsed") {
		t.Fatalf("record %+v", r)
	}
}

func TestNovaFixtureRecordsOwnerAndAddresses(t *testing.T) {
	raw, err := os.ReadFile("../domain/testdata/nova-instance.xml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	xml, cfg := novaLayout(t, dir, string(raw), "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f", "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b")
	n := newNode(t, cfg)
	n.snapshot()
	code, stderr := n.run(xml, "instance-0000002a", "prepare", "begin", "-")
	if code != ExitRefuse || !strings.HasPrefix(stderr, "vmgate: not endorsed: image 4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b: unknown Glance image") {
		t.Fatalf("exit %d %q", code, stderr)
	}
	r := n.records()[0]
	if r.Instance.ID != "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f" || r.Instance.Name != "analysis-node-3" || r.User.ID != "9f8e7d6c5b4a49388776655443322110" ||
		r.User.Name != "carol" || r.Project.Name != "hep-analysis" || len(r.IPs) != 3 || r.IPs[2].Address != "192.0.2.77" || r.IPs[2].Type != "floating" ||
		r.Images[0].GlanceID != "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b" {
		t.Fatalf("record %+v", r)
	}
}
