package integration

// vmgate on the real test cloud of setup.sh: Glance resolution and guard in `vmgate sync`,
// the hook judging the domains nova-compute starts, terminate through Nova, and the trace.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/openstack"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/policytest"
)

// randomImage writes a 1 MiB raw image of random bytes (nothing boots from it: QEMU sits in
// the BIOS, which is ACTIVE enough) and returns its path and its endorsement.
func randomImage(t *testing.T, dir, name string) (string, policytest.Image) {
	t.Helper()
	data := make([]byte, 1<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, policytest.ImageFor(name, data)
}

// glanceStatus is an image's status as the admin sees it.
func (o *OpenStack) glanceStatus(t *testing.T, id string) string {
	t.Helper()
	out, err := o.CLI(cloudAdmin, "image", "show", id, "-f", "value", "-c", "status")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// TestVMGateOnOpenStack is the story end to end: two images in Glance, one endorsed
// in a cosign-signed list; Nova boots the endorsed one and the hook refuses the other with
// its reason in the server's fault; the endorser revokes the first, sync deactivates it in
// Glance, terminate --revoked --cloud stops the server through Nova; the trace names both
// servers with their user and project.
func TestVMGateOnOpenStack(t *testing.T) {
	o := requireOpenStack(t)
	l := requireLibvirt(t)
	requireNoQemuHooks(t)

	// The hook judges Nova's domains (instance-*) only: domains of other tests stay theirs.
	var cfg strings.Builder
	cfg.WriteString("openstack:\n  cloud: " + cloudAdmin + "\n  deactivate_revoked: true\nadmission:\n  exempt_domains:\n")
	for _, p := range exemptAllBut("instance-") {
		fmt.Fprintf(&cfg, "    - '%s'\n", p)
	}
	s := newSite(t, cfg.String())
	aPath, a := randomImage(t, s.dir, "endorsed.raw")
	bPath, _ := randomImage(t, s.dir, "unvetted.raw")
	_, c := randomImage(t, s.dir, "other.raw") // endorsed, never uploaded
	idA := o.UploadImage(t, cloudUser, "endorsed", aPath, "raw")
	idB := o.UploadImage(t, cloudUser, "unvetted", bPath, "raw")
	project, user := o.projectAndUser(t, cloudUser)

	s.publish(a, c)
	out, stderr, code := s.vmgate("sync")
	if code != 0 || !strings.Contains(out, "glance (cloud "+cloudAdmin+"):") || !strings.Contains(out, "1 mapped") {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	if ids, _ := s.images()[a.SHA512]["glance_ids"].([]any); !slices.Contains(ids, any(idA)) {
		t.Fatalf("vmgate images: %s has glance_ids %v, want %s", a.SHA512[:16], ids, idA)
	}

	s.installVMGateHook(l)
	ok := o.CreateServer(t, cloudUser, "endorsed", idA, 3*time.Minute)
	if ok.Status != "ACTIVE" {
		t.Fatalf("server on the endorsed image: %s, fault %q\n%s", ok.Status, ok.FaultMessage, ok.FaultDetails)
	}
	bad := o.CreateServer(t, cloudUser, "unvetted", idB, 3*time.Minute)
	if bad.Status != "ERROR" {
		t.Fatalf("server on the unvetted image: %s, want ERROR", bad.Status)
	}
	// Nova cuts fault.message at 255 characters, after libvirt's prefix; details have it all.
	fault := bad.FaultMessage + "\n" + bad.FaultDetails
	if !strings.Contains(fault, "vmgate") || !strings.Contains(fault, "vmgate: not endorsed: image "+idB) {
		t.Fatalf("the fault does not carry vmgate's reason:\nmessage: %s\ndetails: %s", bad.FaultMessage, bad.FaultDetails)
	}
	t.Logf("fault message of the refused server: %s", bad.FaultMessage)

	// The endorser drops the image; sync revokes it and deactivates it in Glance.
	s.publish(c)
	out, stderr, code = s.vmgate("sync")
	if code != 0 || !strings.Contains(out, "revoked 1") || !strings.Contains(out, "Glance image "+idA+" deactivated") {
		t.Fatalf("sync after revocation: exit %d\n%s%s", code, out, stderr)
	}
	if st := o.glanceStatus(t, idA); st != "deactivated" {
		t.Fatalf("revoked image is %q in Glance, want deactivated", st)
	}
	if st := o.glanceStatus(t, idB); st != "active" {
		t.Fatalf("an image no list ever endorsed is %q in Glance: the guard touches only images of the lists", st)
	}
	// New boots fail at the API now, before any compute host.
	if _, err := o.CLI(cloudUser, "--os-compute-api-version", "2.37", "server", "create", "--flavor", osFlavor, "--image", idA,
		"--nic", "none", testServerPrefix+"after-revocation"); err == nil {
		t.Fatal("Nova accepted a boot from the deactivated image")
	}

	out, stderr, code = s.vmgate("terminate", "--revoked", "--cloud", cloudAdmin, "--action", "stop", "--timeout", "3m")
	if code != 0 {
		t.Fatalf("terminate --revoked --cloud: exit %d\n%s%s", code, out, stderr)
	}
	t.Logf("terminate:\n%s", out)
	if s, err := o.serverShow(ok.ID); err != nil || s.Status != "SHUTOFF" {
		t.Fatalf("after terminate the server is %q (%v), want SHUTOFF", s.Status, err)
	}
	if s, err := o.serverShow(bad.ID); err != nil || s.Status != "ERROR" {
		t.Fatalf("terminate touched the refused server: %q (%v)", s.Status, err)
	}

	// Both servers are in the trace, with alice's user id and the demo project's id.
	for _, srv := range []Server{ok, bad} {
		out, stderr, code := s.vmgate("trace", "query", "--instance", srv.ID, "--format", "json")
		if code != 0 {
			t.Fatalf("trace query --instance %s: exit %d\n%s%s", srv.ID, code, out, stderr)
		}
		var events []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct {
				Record struct {
					Event    string `json:"event"`
					Instance struct {
						ID string `json:"id"`
					} `json:"instance"`
					User struct {
						ID string `json:"id"`
					} `json:"user"`
					Project struct {
						ID string `json:"id"`
					} `json:"project"`
				} `json:"record"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("trace query: %v\n%s", err, line)
			}
			if rec := r.Record; rec.Instance.ID != srv.ID || rec.User.ID != user || rec.Project.ID != project {
				t.Fatalf("trace record of %s: %s, want user %s project %s", srv.ID, line, user, project)
			}
			events = append(events, r.Record.Event)
		}
		want := "admission.refuse"
		if srv.ID == ok.ID {
			want = "vm.terminated"
		}
		if !slices.Contains(events, want) {
			t.Fatalf("trace of %s: events %v, want %s among them", srv.ID, events, want)
		}
	}
	recs := s.traceRecords()
	if findEvent(recs, "image.deactivated") == nil {
		t.Fatal("no image.deactivated record in the trace")
	}

	// Endorsed again: reactivated.
	s.publish(a, c)
	out, stderr, code = s.vmgate("sync")
	if code != 0 || !strings.Contains(out, "Glance image "+idA+" reactivated") {
		t.Fatalf("sync after endorsing again: exit %d\n%s%s", code, out, stderr)
	}
	if st := o.glanceStatus(t, idA); st != "active" {
		t.Fatalf("endorsed again, the image is %q in Glance, want active", st)
	}
}

// TestGlanceClientAgainstGlance runs vmgate's Glance code against the real Glance: paging,
// the images of every project, application credentials, and a wrong password that stays out
// of the error.
func TestGlanceClientAgainstGlance(t *testing.T) {
	o := requireOpenStack(t)
	t.Setenv("OS_CLIENT_CONFIG_FILE", cloudsYAML)
	dir := t.TempDir()
	var ids []string
	for i := range 3 {
		p, _ := randomImage(t, dir, fmt.Sprintf("page-%d.raw", i))
		ids = append(ids, o.UploadImage(t, cloudUser, fmt.Sprintf("page-%d", i), p, "raw"))
	}
	ctx := context.Background()
	for _, cloud := range []string{cloudAdmin, cloudAppCred} {
		g := openstack.CloudGlance(cloud)
		g.PageSize = 2 // several pages even on a small cloud
		imgs, err := g.Images(ctx)
		if err != nil {
			t.Fatalf("%s: %v", cloud, err)
		}
		seen := map[string]int{}
		for _, im := range imgs {
			seen[im.ID]++
		}
		for _, id := range ids {
			if seen[id] != 1 {
				t.Fatalf("%s: image %s (private, of project demo) listed %d times among %d", cloud, id, seen[id], len(imgs))
			}
		}
		for _, im := range imgs {
			if slices.Contains(ids, im.ID) && (im.Properties[policy.PropHashAlgo] != "sha512" || len(im.Properties[policy.PropHashValue]) != 128 || im.Status != "active") {
				t.Fatalf("%s: image %+v: Glance's sha512 or status missing", cloud, im)
			}
		}
	}

	// A wrong password: a clear error, without the password.
	const secret = "not-the-password-7f3a"
	yaml := fmt.Sprintf(`clouds:
  wrong:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: admin
      password: %s
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
`, secret)
	p := filepath.Join(dir, "clouds.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OS_CLIENT_CONFIG_FILE", p)
	_, err := openstack.CloudGlance("wrong").Images(ctx)
	if err == nil {
		t.Fatal("a wrong password listed images")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error shows the password: %v", err)
	}
	t.Logf("wrong password: %v", err)
}
