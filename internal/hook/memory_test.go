package hook

import (
	"os"
	"strings"
	"testing"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// The hook remembers a domain when it lets it start with endorsed disks, and a restore is
// admitted only for a domain it remembers with the same disks. The sequences are libvirt's
// (restore begin, then prepare begin with the same XML).
func TestRestoreOnlyForTheAdmittedDomain(t *testing.T) {
	n := newNode(t, "")
	good, sha := n.image("good.raw")
	other, otherSHA := n.image("other.raw")
	n.snapshot(endorsed(sha, snapshot.Endorsed, ""), endorsed(otherSHA, snapshot.Endorsed, ""))
	mem := admission.NewMemory(admission.MemoryDir(n.stateDir))
	const uuid = "3f2e1d0c-9b8a-4766-8554-433221100fed"
	vm := domainXML("vm", good)

	if code, stderr := n.run(vm, "vm", "restore", "begin", "-"); code != ExitRefuse || !strings.Contains(stderr, "restore refused: a memory image cannot be endorsed, and vmgate never admitted domain vm") {
		t.Fatalf("restore before any start: exit %d %q", code, stderr)
	}
	if code, stderr := n.run(vm, "vm", "prepare", "begin", "-"); code != ExitAllow {
		t.Fatalf("start: exit %d %q", code, stderr)
	}
	if a, err := mem.Load(uuid); err != nil || a == nil || a.Op != "prepare begin" || len(a.Layers) != 1 || a.Layers[0].Path != good {
		t.Fatalf("memory after the start: %+v, %v", a, err)
	}
	if code, stderr := n.run(vm, "vm", "restore", "begin", "-"); code != ExitAllow {
		t.Fatalf("restore of the admitted domain: exit %d %q", code, stderr)
	}
	if code, stderr := n.run(domainXML("vm", other), "vm", "restore", "begin", "-"); code != ExitRefuse || !strings.Contains(stderr, "with other disks (disk vda file "+other+" is new)") {
		t.Fatalf("restore with another disk: exit %d %q", code, stderr)
	}

	// Warn mode: a restore vmgate does not admit marks the domain, and the prepare begin
	// that follows, whose disks are endorsed, does not make it admitted.
	mem.Forget(uuid)
	os.WriteFile(n.cfgPath, []byte("state_dir: "+n.stateDir+"\nadmission: {mode: warn}\n"), 0o644)
	if code, _ := n.run(vm, "vm", "restore", "begin", "-"); code != ExitAllow {
		t.Fatal("warn mode refused")
	}
	if a, _ := mem.Load(uuid); a == nil || !a.Restoring {
		t.Fatalf("no restoring mark: %+v", a)
	}
	if code, _ := n.run(vm, "vm", "prepare", "begin", "-"); code != ExitAllow {
		t.Fatal("warn mode refused")
	}
	if a, _ := mem.Load(uuid); a != nil {
		t.Fatalf("the prepare of an unadmitted restore was remembered: %+v", a)
	}
	os.WriteFile(n.cfgPath, []byte("state_dir: "+n.stateDir+"\n"), 0o644)
	if code, _ := n.run(vm, "vm", "restore", "begin", "-"); code != ExitRefuse {
		t.Fatal("restore admitted after a warn-mode restore")
	}
	// A start that warn mode lets through with unendorsed disks forgets the domain.
	n.run(vm, "vm", "prepare", "begin", "-")
	os.WriteFile(n.cfgPath, []byte("state_dir: "+n.stateDir+"\nadmission: {mode: warn}\n"), 0o644)
	unknown, _ := n.image("unknown.raw")
	n.run(domainXML("vm", unknown), "vm", "prepare", "begin", "-")
	if a, _ := mem.Load(uuid); a != nil {
		t.Fatalf("a domain that ran unendorsed is still remembered: %+v", a)
	}
}
