package integration

// The hook on Nova's real instances, driven through Nova's API by an ordinary user (alice,
// role member): what each disk Nova makes proves, rescue, shelve, suspend and images whose
// properties make Nova boot something else.

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// serverState is a server's status and task state, as the admin sees them.
func (o *OpenStack) serverState(t testing.TB, id string) (status, task string) {
	t.Helper()
	var raw map[string]any
	if err := o.CLIJSON(cloudAdmin, &raw, "server", "show", id); err != nil {
		t.Fatal(err)
	}
	status, _ = raw["status"].(string)
	task, _ = raw["OS-EXT-STS:task_state"].(string)
	return status, task
}

// act runs a server action as cloud and waits until the server is settled (no task) in one
// of want or ERROR; it returns the state it settled in.
func (o *OpenStack) act(t testing.TB, cloud, id string, timeout time.Duration, args []string, want ...string) string {
	t.Helper()
	if _, err := o.CLI(cloud, args...); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		status, task := o.serverState(t, id)
		if task == "" && (status == "ERROR" || slicesContains(want, status)) {
			return status
		}
		if time.Now().After(deadline) {
			t.Fatalf("openstack %s: server %s still %s (task %q) after %v", strings.Join(args, " "), id, status, task, timeout)
		}
		time.Sleep(time.Second)
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// serverEvents is the text of the server's instance actions and their events, as its owner
// sees them (`openstack server event list/show`).
func (o *OpenStack) serverEvents(t testing.TB, cloud, id string) string {
	t.Helper()
	var list []map[string]any
	if err := o.CLIJSON(cloud, &list, "server", "event", "list", id); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, ev := range list {
		req, _ := ev["Request ID"].(string)
		if req == "" {
			continue
		}
		// 2.84: an event's details carry the error, whole (the fault's message is cut at 255
		// characters, most of them libvirt's prefix).
		out, err := o.CLI(cloudAdmin, "--os-compute-api-version", "2.84", "server", "event", "show", id, req, "-f", "json")
		if err != nil {
			t.Fatal(err)
		}
		all.WriteString(out)
	}
	return all.String()
}

// TestNovaDisksOnOpenStack: alice boots an endorsed image with a flavor that has swap and an
// ephemeral disk, and a config drive: Nova's swap, ephemeral and config drive are recognised
// by their content and the instance runs. Suspend and resume (managed save) still work.
// Her rescue with an endorsed image is admitted. Unshelving after an offload is admitted:
// Nova rebases the disk from the shelve snapshot onto her endorsed image. Her rescue with an
// image no list endorses is refused with vmgate's reason, though nova:root still names the
// endorsed image. An upload of the endorsed bytes with a block_device_mapping property is
// not mapped by sync, and its boot is refused.
func TestNovaDisksOnOpenStack(t *testing.T) {
	o := requireOpenStack(t)
	l := requireLibvirt(t)
	requireNoQemuHooks(t)

	var cfg strings.Builder
	cfg.WriteString("openstack:\n  cloud: " + cloudAdmin + "\nadmission:\n  exempt_domains:\n")
	for _, p := range exemptAllBut("instance-") {
		fmt.Fprintf(&cfg, "    - '%s'\n", p)
	}
	s := newSite(t, cfg.String())
	aPath, a := randomImage(t, s.dir, "nova-endorsed.raw")
	bPath, _ := randomImage(t, s.dir, "nova-unendorsed.raw")
	idA := o.UploadImage(t, cloudUser, "nova-endorsed", aPath, "raw")
	idB := o.UploadImage(t, cloudUser, "nova-unendorsed", bPath, "raw")
	// The endorsed bytes again, with a mapping that adds a blank disk: any non-empty mapping
	// can boot something else, so sync does not map the image.
	idM := o.UploadImage(t, cloudUser, "nova-mapped", aPath, "raw")
	if _, err := o.CLI(cloudUser, "image", "set", "--property", "bdm_v2=True", "--property",
		`block_device_mapping=[{"boot_index": -1, "source_type": "blank", "destination_type": "local", "guest_format": "swap", "volume_size": 16, "delete_on_termination": true}]`, idM); err != nil {
		t.Fatal(err)
	}

	flavor := testServerPrefix + "swap-eph"
	if _, err := o.CLI(cloudAdmin, "flavor", "create", "--public", "--ram", "128", "--disk", "1", "--swap", "16", "--ephemeral", "1", "--vcpus", "1", flavor); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.CLI(cloudAdmin, "flavor", "delete", flavor) })

	s.publish(a)
	out, stderr, code := s.vmgate("sync")
	if code != 0 || !strings.Contains(out, "1 mapped") || !strings.Contains(out, "1 not mapped because a block_device_mapping property") {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	s.installVMGateHook(l)

	// Swap, ephemeral, config drive.
	full := o.createServer(t, cloudUser, "nova-full", idA, 4*time.Minute, "--flavor", flavor, "--config-drive", "true")
	if full.Status != "ACTIVE" {
		t.Fatalf("server with swap, ephemeral and config drive: %s\nfault: %s\n%s", full.Status, full.FaultMessage, full.FaultDetails)
	}
	allow := lastDecision(s.traceRecords(), "admission.allow", full.ID)
	for _, want := range []string{`"glance_id":"` + idA + `"`, "/_base/swap_16\"", "/_base/ephemeral_1_", "/" + full.ID + "/disk.config\""} {
		if !strings.Contains(toJSON(allow), want) {
			t.Errorf("admission.allow record of %s lacks %s: %s", full.ID, want, toJSON(allow))
		}
	}

	// Suspend (managed save) and resume.
	if st := o.act(t, cloudUser, full.ID, 3*time.Minute, []string{"server", "suspend", full.ID}, "SUSPENDED"); st != "SUSPENDED" {
		t.Fatalf("suspend: %s", st)
	}
	if st := o.act(t, cloudUser, full.ID, 3*time.Minute, []string{"server", "resume", full.ID}, "ACTIVE"); st != "ACTIVE" {
		srv, _ := o.serverShow(full.ID)
		t.Fatalf("resume after suspend: %s\nfault: %s\n%s", st, srv.FaultMessage, srv.FaultDetails)
	}

	// Rescue with the endorsed image: admitted; unrescue.
	if st := o.act(t, cloudUser, full.ID, 3*time.Minute, []string{"server", "rescue", "--image", idA, full.ID}, "RESCUE"); st != "RESCUE" {
		srv, _ := o.serverShow(full.ID)
		t.Fatalf("rescue with an endorsed image: %s\nfault: %s\n%s", st, srv.FaultMessage, srv.FaultDetails)
	}
	if st := o.act(t, cloudUser, full.ID, 3*time.Minute, []string{"server", "unrescue", full.ID}, "ACTIVE"); st != "ACTIVE" {
		t.Fatalf("unrescue: %s", st)
	}

	// Shelve (offloaded at once, the default) and unshelve: Nova boots the shelve snapshot
	// but rebases the disk onto the instance's own image (image_base_image_ref) first, so the
	// base is the endorsed image again and the overlay the instance's own state.
	if st := o.act(t, cloudUser, full.ID, 4*time.Minute, []string{"server", "shelve", full.ID}, "SHELVED_OFFLOADED"); st != "SHELVED_OFFLOADED" {
		t.Fatalf("shelve: %s", st)
	}
	t.Cleanup(func() { o.deleteImagesNamed(t, full.Name+"-shelved") })
	if st := o.act(t, cloudUser, full.ID, 4*time.Minute, []string{"server", "unshelve", full.ID}, "ACTIVE", "SHELVED_OFFLOADED"); st != "ACTIVE" {
		srv, _ := o.serverShow(full.ID)
		t.Fatalf("unshelve: %s\nfault: %s\nevents: %s", st, srv.FaultMessage, o.serverEvents(t, cloudUser, full.ID))
	}
	if allow := lastDecision(s.traceRecords(), "admission.allow", full.ID); !strings.Contains(toJSON(allow), `"glance_id":"`+idA+`"`) {
		t.Errorf("admission.allow record of the unshelved server: %s", toJSON(allow))
	}

	// Rescue with an unendorsed image: refused, although nova:root still names idA.
	if st := o.act(t, cloudUser, full.ID, 3*time.Minute, []string{"server", "rescue", "--image", idB, full.ID}, "RESCUE"); st == "RESCUE" {
		t.Fatal("rescue with an unendorsed image was admitted")
	}
	// Nova keeps 255 characters of a rescue's error, in the fault and in the event's details
	// alike, and libvirt's prefix (the hook's command line) fills them: they show that the
	// hook refused; the reason is whole in vmgate's trace (and nova-compute's log).
	srv, _ := o.serverShow(full.ID)
	events := o.serverEvents(t, cloudUser, full.ID)
	if got := srv.FaultMessage + "\n" + events; !strings.Contains(got, "cannot be rescued") || !strings.Contains(got, "/etc/libvirt/hooks/qemu.d/vmgate") {
		t.Fatalf("refused rescue: the fault and the events do not say that vmgate's hook refused:\nmessage: %s\nevents: %s", srv.FaultMessage, events)
	}
	t.Logf("fault of the refused rescue: %s", srv.FaultMessage)
	refuse := lastDecision(s.traceRecords(), "admission.refuse", full.ID)
	if reason, _ := refuse["reason"].(string); !strings.HasPrefix(reason, "not endorsed: disk vda (/var/lib/nova/instances/_base/") ||
		!strings.Contains(reason, "disk.rescue boots a Glance image no endorsed list names") || !strings.Contains(toJSON(refuse["images"]), `"glance_id":"`+idA+`"`) {
		t.Errorf("admission.refuse record of the rescue: %s", toJSON(refuse))
	}

	// The endorsed bytes behind a block device mapping: not mapped, so refused at boot.
	mapped := o.createServer(t, cloudUser, "nova-mapped", idM, 3*time.Minute, "--flavor", flavor)
	if mapped.Status != "ERROR" || !strings.Contains(mapped.FaultMessage+mapped.FaultDetails, "vmgate: not endorsed: image "+idM) {
		t.Fatalf("server on an image with a block device mapping: %s\nfault: %s\n%s", mapped.Status, mapped.FaultMessage, mapped.FaultDetails)
	}
}

// lastDecision is the last record of event about the instance id.
func lastDecision(recs []map[string]any, event, id string) map[string]any {
	for i := len(recs) - 1; i >= 0; i-- {
		inst, _ := recs[i]["instance"].(map[string]any)
		if recs[i]["event"] == event && inst["id"] == id {
			return recs[i]
		}
	}
	return nil
}

// createServer is CreateServer with other options of `server create` (which replace the
// flavor when they name one).
func (o *OpenStack) createServer(t testing.TB, cloud, name, image string, timeout time.Duration, opts ...string) Server {
	t.Helper()
	flavor := osFlavor
	var rest []string
	for i := 0; i < len(opts); i++ {
		if opts[i] == "--flavor" && i+1 < len(opts) {
			flavor = opts[i+1]
			i++
			continue
		}
		rest = append(rest, opts[i])
	}
	var created struct {
		ID string `json:"id"`
	}
	args := append([]string{"--os-compute-api-version", "2.37", "server", "create", "--flavor", flavor, "--image", image, "--nic", "none"}, rest...)
	if err := o.CLIJSON(cloud, &created, append(args, testServerPrefix+name)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.DeleteServer(t, cloud, created.ID, 2*time.Minute) })
	deadline := time.Now().Add(timeout)
	for {
		s, err := o.serverShow(created.ID)
		if err != nil {
			t.Fatal(err)
		}
		if s.Status == "ACTIVE" || s.Status == "ERROR" {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s (%s) still %s after %v", name, created.ID, s.Status, timeout)
		}
		time.Sleep(time.Second)
	}
}

// deleteImagesNamed deletes every image of that name (the admin sees them all).
func (o *OpenStack) deleteImagesNamed(t testing.TB, name string) {
	t.Helper()
	var imgs []struct {
		ID   string `json:"ID"`
		Name string `json:"Name"`
	}
	if err := o.CLIJSON(cloudAdmin, &imgs, "image", "list", "--name", name); err != nil {
		t.Error(err)
		return
	}
	for _, im := range imgs {
		o.DeleteImage(t, cloudAdmin, im.ID)
	}
}
