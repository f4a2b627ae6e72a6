package hook

import (
	"strings"
	"testing"

	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/trace"
)

// TestDevicesAtTheHook: the hook refuses firmware, an emulator, host devices and network
// boot that do not come from the system, records each refusal, and admits the domain once
// it is exempt by name.
func TestDevicesAtTheHook(t *testing.T) {
	n := newNode(t, "admission: {exempt_domains: [lab-*], firmware_dirs: [/etc], emulators: [/usr/bin/*]}\n")
	img, sha := n.image("good.raw")
	n.snapshot(endorsed(sha, snapshot.Endorsed, ""))
	base := domainXML("NAME", img)
	for _, c := range []struct {
		name, old, new, reason string
	}{
		{"loader", "<devices>", "<os><loader type='rom'>" + img + "</loader></os><devices>",
			"vmgate: firmware not allowed: <os><loader> " + img + " is outside admission.firmware_dirs"},
		{"rom", "<source network='default'/>", "<source network='default'/><rom file='/etc/../tmp/x.rom'/>",
			"vmgate: firmware not allowed: <interface><rom file> /etc/../tmp/x.rom is not a clean path"},
		{"emulator", "<devices>", "<devices><emulator>" + img + "</emulator>",
			"vmgate: emulator not allowed: " + img + " matches none of admission.emulators"},
		{"hostdev", "</devices>", "<hostdev mode='subsystem' type='pci'/></devices>",
			"vmgate: host device not allowed: the domain passes <hostdev type='pci'>"},
		{"network boot", "<source network='default'/>", "<source network='default'/><boot order='1'/>",
			"vmgate: network boot not allowed: interface 1 has <boot order='1'>"},
	} {
		xml := strings.Replace(strings.Replace(base, c.old, c.new, 1), "NAME", "vm", 1)
		if xml == strings.Replace(base, "NAME", "vm", 1) {
			t.Fatalf("%s: the variant equals the base", c.name)
		}
		code, stderr := n.run(xml, "vm", "prepare", "begin", "-")
		if code != ExitRefuse || !strings.HasPrefix(stderr, c.reason) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q, want %q", c.name, code, stderr, c.reason)
		}
		recs := n.records()
		if r := recs[len(recs)-1]; r.Event != trace.AdmissionRefuse || "vmgate: "+r.Reason != strings.TrimSuffix(stderr, "\n") {
			t.Errorf("%s: record %+v", c.name, r)
		}
		lab := strings.Replace(strings.Replace(base, c.old, c.new, 1), "NAME", "lab-1", 1)
		if code, stderr := n.run(lab, "lab-1", "prepare", "begin", "-"); code != ExitAllow {
			t.Errorf("%s: exempt domain: exit %d %s", c.name, code, stderr)
		}
	}
}
