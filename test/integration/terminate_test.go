package integration

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// exemptAllBut returns admission.exempt_domains patterns (path.Match) that match every
// domain name except those starting with prefix: the domains of other tests (other people's
// runs share this libvirtd) are exempt, so `vmgate terminate` never touches them.
func exemptAllBut(prefix string) []string {
	var pats []string
	for i := range len(prefix) {
		// Names that are a proper prefix of prefix, and names that leave it at i.
		if i > 0 {
			pats = append(pats, escapeGlob(prefix[:i]))
		}
		pats = append(pats, escapeGlob(prefix[:i])+`[^\`+prefix[i:i+1]+`]*`)
	}
	return pats
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, c := range s {
		b.WriteByte('\\')
		b.WriteRune(c)
	}
	return b.String()
}

// terminateJSON is what the test reads of `vmgate terminate --json`.
type terminateJSON struct {
	Counts struct {
		Targets, Endorsed, Failed, Done int
	} `json:"counts"`
	VMs []struct {
		Name, Verdict, Status, Action, Result string
		RevokedAt                             *time.Time `json:"revoked_at"`
	} `json:"vms"`
}

// TestTerminateRevokedWithRealLibvirt: two domains run on two endorsed images; a newer
// signed list drops one image; after vmgate sync, `vmgate terminate --revoked` takes down the
// domain on the revoked image (destroy, then the default shutdown that ends in a destroy,
// then suspend) and records it, and the other domain runs on.
func TestTerminateRevokedWithRealLibvirt(t *testing.T) {
	l := requireLibvirt(t)
	run := make([]byte, 3)
	rand.Read(run)
	prefix := testDomainPrefix + "term-" + hex.EncodeToString(run) + "-"
	var cfg strings.Builder
	cfg.WriteString("admission:\n  exempt_domains:\n")
	for _, p := range exemptAllBut(prefix) {
		fmt.Fprintf(&cfg, "    - '%s'\n", p)
	}
	s := newSite(t, cfg.String())
	aPath, a := s.baseImage("a.raw")
	bPath, b := s.baseImage("b.raw")
	s.publish(a, b)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	keep := l.NewDomain(t, strings.TrimPrefix(prefix, testDomainPrefix)+"keep", DomainOptions{BaseImage: aPath})
	gone := l.NewDomain(t, strings.TrimPrefix(prefix, testDomainPrefix)+"revoked", DomainOptions{BaseImage: bPath})
	for _, d := range []*Domain{keep, gone} {
		if stderr, err := d.Start(); err != nil {
			t.Fatalf("start %s: %v\n%s", d.Name, err, stderr)
		}
	}
	// Nothing to do while both images are endorsed.
	if out, stderr, code := s.vmgate("terminate", "--revoked", "--dry-run"); code != 0 || !strings.Contains(out, " 0 targets") {
		t.Fatalf("dry run with both images endorsed: exit %d\n%s%s", code, out, stderr)
	}

	s.publish(a) // version 2 drops b
	if out, stderr, code := s.vmgate("sync"); code != 0 || !strings.Contains(out, "revoked 1") {
		t.Fatalf("second sync: exit %d\n%s%s", code, out, stderr)
	}

	// --dry-run: the plan, exit 3, nothing changed.
	out, stderr, code := s.vmgate("terminate", "--revoked", "--dry-run", "--json")
	var plan terminateJSON
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("terminate --dry-run --json: exit %d, %v\n%s%s", code, err, out, stderr)
	}
	if code != 3 || plan.Counts.Targets != 1 || len(plan.VMs) != 1 || plan.VMs[0].Name != gone.Name || plan.VMs[0].Status != "revoked" ||
		plan.VMs[0].RevokedAt == nil || plan.VMs[0].Action != "shutdown" {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, stderr)
	}
	if st, _ := gone.State(); st != "running" {
		t.Fatalf("after a dry run the revoked domain is %q", st)
	}

	state := func(d *Domain) string {
		st, err := d.State()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	terminated := func(action string) map[string]any {
		var last map[string]any
		n := 0
		for _, r := range s.traceRecords() {
			if d, _ := r["domain"].(map[string]any); r["event"] == "vm.terminated" && d["name"] == gone.Name && r["action"] == action {
				last, n = r, n+1
			}
			if d, _ := r["domain"].(map[string]any); r["event"] == "vm.terminated" && d["name"] != gone.Name {
				t.Errorf("a record of terminating %v", d["name"])
			}
		}
		if n != 1 {
			t.Fatalf("%d vm.terminated records with action %s for %s, want 1", n, action, gone.Name)
		}
		return last
	}

	t.Run("destroy", func(t *testing.T) {
		out, stderr, code := s.vmgate("terminate", "--revoked", "--action", "destroy")
		if code != 0 || !strings.Contains(out, gone.Name) || !strings.Contains(out, "destroy: 1 done, 0 failed") {
			t.Fatalf("terminate --action destroy: exit %d\n%s%s", code, out, stderr)
		}
		t.Logf("vmgate terminate --revoked --action destroy:\n%s", out)
		if st := state(gone); st != "shut off" {
			t.Errorf("revoked domain is %q", st)
		}
		if st := state(keep); st != "running" {
			t.Errorf("endorsed domain is %q", st)
		}
		r := terminated("destroy")
		actor, _ := r["actor"].(map[string]any)
		if r["outcome"] != "success" || r["revoked_at"] == nil || actor["uid"] != float64(0) || actor["name"] != "root" ||
			!strings.Contains(toJSON(r["macs"]), gone.MAC) || !strings.Contains(toJSON(r["images"]), b.SHA512) ||
			!strings.Contains(r["reason"].(string), `removed from list "example" version 2`) {
			t.Errorf("record: %v", r)
		}
	})

	t.Run("shutdown times out, then destroy", func(t *testing.T) {
		if stderr, err := gone.Start(); err != nil {
			t.Fatalf("start again: %v\n%s", err, stderr)
		}
		start := time.Now()
		// The guest sits in the BIOS, which ignores ACPI: the shutdown times out.
		out, stderr, code := s.vmgate("terminate", "--revoked", "--timeout", "3s")
		took := time.Since(start)
		if code != 0 || !strings.Contains(out, "did not shut down within 3s: destroyed") {
			t.Fatalf("terminate (shutdown): exit %d\n%s%s", code, out, stderr)
		}
		if took < 3*time.Second {
			t.Errorf("returned after %v, before the 3 s shutdown timeout", took)
		}
		if st := state(gone); st != "shut off" {
			t.Errorf("revoked domain is %q", st)
		}
		if st := state(keep); st != "running" {
			t.Errorf("endorsed domain is %q", st)
		}
		if r := terminated("shutdown"); r["outcome"] != "success" || !strings.Contains(r["reason"].(string), "did not shut down within 3s: destroyed") {
			t.Errorf("record: %v", r)
		}
	})

	t.Run("suspend keeps the memory", func(t *testing.T) {
		if stderr, err := gone.Start(); err != nil {
			t.Fatalf("start again: %v\n%s", err, stderr)
		}
		// The domain's cleanup undefines it, which libvirt refuses while a saved image exists.
		t.Cleanup(func() { l.Virsh("managedsave-remove", gone.Name) })
		out, stderr, code := s.vmgate("terminate", "--revoked", "--action", "suspend", "--json")
		var rep terminateJSON
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || rep.Counts.Done != 1 || rep.VMs[0].Verdict != "target" {
			t.Fatalf("terminate --action suspend: exit %d, %v\n%s%s", code, err, out, stderr)
		}
		if st := state(gone); st != "shut off" {
			t.Errorf("revoked domain is %q", st)
		}
		info, _, err := l.Virsh("dominfo", gone.Name)
		if err != nil || !strings.Contains(info, "Managed save:   yes") {
			t.Errorf("no managed save image: %v\n%s", err, info)
		}
		if st := state(keep); st != "running" {
			t.Errorf("endorsed domain is %q", st)
		}
		terminated("suspend")
	})

	// Nothing left: exit 0, and the journal is intact.
	if out, stderr, code := s.vmgate("terminate", "--revoked"); code != 0 || !strings.Contains(out, " 0 targets") {
		t.Errorf("terminate with nothing to do: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := s.vmgate("trace", "verify"); code != 0 || !strings.Contains(out, "records intact") {
		t.Errorf("trace verify: exit %d\n%s%s", code, out, stderr)
	}
}

// TestTerminateMaxWithRealLibvirt: more targets than --max: nothing is touched, exit 1.
func TestTerminateMaxWithRealLibvirt(t *testing.T) {
	l := requireLibvirt(t)
	run := make([]byte, 3)
	rand.Read(run)
	prefix := testDomainPrefix + "term-" + hex.EncodeToString(run) + "-"
	var cfg strings.Builder
	cfg.WriteString("admission:\n  exempt_domains:\n")
	for _, p := range exemptAllBut(prefix) {
		fmt.Fprintf(&cfg, "    - '%s'\n", p)
	}
	s := newSite(t, cfg.String())
	_, a := s.baseImage("a.raw")
	s.publish(a)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	// Base images no list names: unknown, so targets.
	var doms []*Domain
	for i := range 2 {
		d := l.NewDomain(t, fmt.Sprintf("%s%d", strings.TrimPrefix(prefix, testDomainPrefix), i), DomainOptions{})
		if stderr, err := d.Start(); err != nil {
			t.Fatalf("start: %v\n%s", err, stderr)
		}
		doms = append(doms, d)
	}
	out, stderr, code := s.vmgate("terminate", "--revoked", "--action", "destroy", "--max", "1")
	if code != 1 || !strings.Contains(stderr, "more than --max 1") || !strings.Contains(out, "refused: nothing changed") {
		t.Fatalf("over --max: exit %d\n%s%s", code, out, stderr)
	}
	for _, d := range doms {
		if st, _ := d.State(); st != "running" {
			t.Errorf("%s is %q after a refused run", d.Name, st)
		}
	}
	out, stderr, code = s.vmgate("terminate", "--revoked", "--action", "destroy", "--max", "1", "--force")
	if code != 0 || !strings.Contains(out, "no revocation time") {
		t.Fatalf("--force: exit %d\n%s%s", code, out, stderr)
	}
	for _, d := range doms {
		if st, _ := d.State(); st != "shut off" {
			t.Errorf("%s is %q after --force", d.Name, st)
		}
	}
}
