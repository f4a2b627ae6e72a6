package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBlockUserOnOpenStack: the site blocks alice's Keystone user. Her server on an endorsed
// image ends in ERROR with the block's reason in its fault; the admin's server on the same
// image boots; the trace names alice's refused instance with the block.
func TestBlockUserOnOpenStack(t *testing.T) {
	o := requireOpenStack(t)
	l := requireLibvirt(t)
	requireNoQemuHooks(t)

	// The hook judges Nova's domains (instance-*) only: domains of other tests stay theirs.
	var cfg strings.Builder
	cfg.WriteString("openstack:\n  cloud: " + cloudAdmin + "\nadmission:\n  exempt_domains:\n")
	for _, p := range exemptAllBut("instance-") {
		fmt.Fprintf(&cfg, "    - '%s'\n", p)
	}
	s := newSite(t, cfg.String())
	aPath, a := randomImage(t, s.dir, "block-user.raw")
	idA := o.UploadImage(t, cloudUser, "block-user", aPath, "raw")
	project, user := o.projectAndUser(t, cloudUser)
	_, admin := o.projectAndUser(t, cloudAdmin)
	if user == admin {
		t.Fatalf("clouds %s and %s are the same user %s", cloudUser, cloudAdmin, user)
	}

	s.publish(a)
	out, stderr, code := s.vmgate("sync")
	if code != 0 || !strings.Contains(out, "1 mapped") {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	const reason = "account compromised: INC-4711"
	out, stderr, code = s.vmgate("block", "user", user, "--reason", reason)
	if code != 0 || !strings.Contains(out, "blocked user "+user+": "+reason) {
		t.Fatalf("vmgate block user: exit %d\n%s%s", code, out, stderr)
	}
	s.installVMGateHook(l)

	bad := o.CreateServer(t, cloudUser, "blocked-user", idA, 3*time.Minute)
	if bad.Status != "ERROR" {
		t.Fatalf("alice's server after her user was blocked: %s, want ERROR", bad.Status)
	}
	// Nova cuts fault.message at 255 characters, after libvirt's prefix; details have it all.
	fault := bad.FaultMessage + "\n" + bad.FaultDetails
	if !strings.Contains(fault, "vmgate: blocked by the site: user "+user+": "+reason) {
		t.Fatalf("the fault does not carry the block:\nmessage: %s\ndetails: %s", bad.FaultMessage, bad.FaultDetails)
	}
	t.Logf("fault message of the refused server: %s", bad.FaultMessage)

	// The same image, another user: the block names alice, not the image.
	ok := o.CreateServer(t, cloudAdmin, "admin-same-image", idA, 3*time.Minute)
	if ok.Status != "ACTIVE" {
		t.Fatalf("the admin's server on the same image: %s, fault %q\n%s", ok.Status, ok.FaultMessage, ok.FaultDetails)
	}

	recs := s.traceRecords()
	var refuse, allow map[string]any
	for _, r := range recs {
		inst, _ := r["instance"].(map[string]any)
		switch {
		case r["event"] == "admission.refuse" && inst["id"] == bad.ID:
			refuse = r
		case r["event"] == "admission.allow" && inst["id"] == ok.ID:
			allow = r
		}
	}
	block, _ := refuse["block"].(map[string]any)
	if refuse == nil || !strings.Contains(toJSON(refuse["user"]), user) || !strings.Contains(toJSON(refuse["project"]), project) ||
		!strings.Contains(fmt.Sprint(refuse["reason"]), "blocked by the site: user "+user) ||
		block["kind"] != "user" || block["target"] != user || block["reason"] != reason || block["source"] != "cli" {
		t.Errorf("admission.refuse record of %s: %v", bad.ID, refuse)
	}
	if allow == nil || !strings.Contains(toJSON(allow["user"]), admin) {
		t.Errorf("admission.allow record of %s: %v", ok.ID, allow)
	}
	if r := findEvent(recs, "block.added"); r == nil || !strings.Contains(toJSON(r["block"]), `"kind":"user"`) || !strings.Contains(toJSON(r["block"]), user) {
		t.Errorf("trace block.added: %v", r)
	}
	// Cleanup deletes both servers (waiting until they are gone), then the image.
}
