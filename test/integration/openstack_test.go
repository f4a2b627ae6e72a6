package integration

// Helpers for tests against a real OpenStack (Keystone, Glance, Placement, Nova with the
// libvirt driver on QEMU/TCG, and an agentless neutron-server) on this machine, which
// test/integration/openstack/setup.sh installs and runs on 127.0.0.1. Nova's compute uses the
// libvirtd of scripts/libvirt.sh, so hooks installed by the other tests here see Nova's
// domains too. Driven with the openstack CLI, as an operator would.

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// cloudsYAML is where setup.sh writes the credentials of its clouds.
	cloudsYAML = "/etc/openstack/clouds.yaml"
	// The clouds of cloudsYAML: admin (project admin, role admin), alice (project demo, role
	// member), and an application credential of admin.
	cloudAdmin   = "vmgate-admin"
	cloudUser    = "vmgate-user"
	cloudAppCred = "vmgate-appcred"
	// osFlavor is the public flavor setup.sh makes: 1 vCPU, 128 MiB, 1 GiB disk.
	osFlavor = "m1.vmgate"
	// testServerPrefix marks servers and images made by these tests.
	testServerPrefix = "vmgate-test-"
)

// OpenStack is the machine's test cloud, as setup.sh runs it.
type OpenStack struct {
	root string // of the repository
	cli  string // the openstack CLI
}

var (
	openstackOnce sync.Once
	openstackUp   *OpenStack
	openstackErr  error
)

// requireOpenStack returns the running test cloud, bringing it up once per test binary with
// setup.sh up (which installs it when missing: some minutes the first time, seconds after).
// It skips t unless VMGATE_INTEGRATION=1 and then fails t when the cloud cannot come up.
func requireOpenStack(t *testing.T) *OpenStack {
	t.Helper()
	requireIntegration(t)
	if os.Geteuid() != 0 {
		t.Fatalf("OpenStack tests need root (they install and run OpenStack) and %s=1 forbids skipping", integrationEnv)
	}
	openstackOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			openstackErr = err
			return
		}
		start := time.Now()
		out, err := runTool(root, nil, "bash", filepath.Join("test", "integration", "openstack", "setup.sh"), "up")
		if err != nil {
			openstackErr = err // carries setup.sh's output: the failing service's log
			return
		}
		t.Logf("setup.sh up: %v\n%s", time.Since(start).Round(time.Millisecond), out)
		// Debian's client, not one a developer's PATH may put first.
		cli := "/usr/bin/openstack"
		if _, err := os.Stat(cli); err != nil {
			if cli, err = exec.LookPath("openstack"); err != nil {
				openstackErr = err
				return
			}
		}
		openstackUp = &OpenStack{root: root, cli: cli}
	})
	if openstackErr != nil {
		t.Fatalf("OpenStack is not available: %v", openstackErr)
	}
	return openstackUp
}

// CLI runs `openstack ARGS...` as the cloud named cloud of cloudsYAML and returns its stdout.
// The error carries stderr. No OS_* variable of the caller's reaches the client.
func (o *OpenStack) CLI(cloud string, args ...string) (string, error) {
	cmd := exec.Command(o.cli, args...)
	env := []string{"OS_CLOUD=" + cloud, "OS_CLIENT_CONFIG_FILE=" + cloudsYAML, "LC_ALL=C.UTF-8"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OS_") && !strings.HasPrefix(kv, "LC_ALL=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("openstack %s (cloud %s): %w: %s", strings.Join(args, " "), cloud, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// CLIJSON runs CLI with -f json and decodes its output into v.
func (o *OpenStack) CLIJSON(cloud string, v any, args ...string) error {
	out, err := o.CLI(cloud, append(args, "-f", "json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("openstack %s: output is not JSON: %v: %q", strings.Join(args, " "), err, out)
	}
	return nil
}

// UploadImage uploads the file at path to Glance as a private image of cloud's project, in
// format (raw, qcow2), and returns its id. Cleanup deletes it.
func (o *OpenStack) UploadImage(t testing.TB, cloud, name, path, format string) string {
	t.Helper()
	var img struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := o.CLIJSON(cloud, &img, "image", "create", "--disk-format", format, "--container-format", "bare",
		"--private", "--file", path, testServerPrefix+name); err != nil {
		t.Fatal(err)
	}
	if img.ID == "" {
		t.Fatalf("image create %s: no id in the answer", name)
	}
	t.Cleanup(func() { o.DeleteImage(t, cloud, img.ID) })
	return img.ID
}

// DeleteImage deletes an image; one that is gone already is fine.
func (o *OpenStack) DeleteImage(t testing.TB, cloud, id string) {
	t.Helper()
	if _, err := o.CLI(cloud, "image", "delete", id); err != nil && !strings.Contains(err.Error(), "No image with a name or ID") {
		t.Errorf("deleting image %s: %v", id, err)
	}
}

// Server is what Nova says of a server once it has settled.
type Server struct {
	ID, Name string
	Status   string // ACTIVE, ERROR
	Host     string // OS-EXT-SRV-ATTR:host (admin only)
	Domain   string // OS-EXT-SRV-ATTR:instance_name, the libvirt domain (admin only)
	// FaultMessage is fault.message (Nova cuts it at 255 characters), FaultDetails the whole
	// of fault.details (shown to admins): a hook's refusal is whole only there.
	FaultMessage, FaultDetails string
}

// serverShow is `openstack server show -f json` of an admin, which carries the fault whole.
func (o *OpenStack) serverShow(id string) (Server, error) {
	var raw map[string]any
	if err := o.CLIJSON(cloudAdmin, &raw, "server", "show", id); err != nil {
		return Server{}, err
	}
	str := func(k string) string { s, _ := raw[k].(string); return s }
	s := Server{ID: str("id"), Name: str("name"), Status: str("status"),
		Host: str("OS-EXT-SRV-ATTR:host"), Domain: str("OS-EXT-SRV-ATTR:instance_name")}
	switch f := raw["fault"].(type) {
	case map[string]any:
		s.FaultMessage, _ = f["message"].(string)
		s.FaultDetails, _ = f["details"].(string)
	case string: // older clients print the fault as text
		s.FaultMessage = f
	}
	return s, nil
}

// CreateServer boots a server of image with the flavor osFlavor and no network (--nic none)
// as cloud, and waits (up to timeout) until it is ACTIVE or ERROR. It returns it, fault
// included; Cleanup deletes it.
func (o *OpenStack) CreateServer(t testing.TB, cloud, name, image string, timeout time.Duration) Server {
	t.Helper()
	// -f json: `-f value -c id` of Debian's client fails ("Resource.get() takes 1 positional
	// argument").
	var created struct {
		ID string `json:"id"`
	}
	// --nic none needs compute API 2.37; the client's default, 2.1, refuses it ("nics must be
	// a list or a tuple").
	if err := o.CLIJSON(cloud, &created, "--os-compute-api-version", "2.37", "server", "create", "--flavor", osFlavor, "--image", image,
		"--nic", "none", testServerPrefix+name); err != nil {
		t.Fatal(err)
	}
	if created.ID == "" {
		t.Fatalf("server create %s: no id in the answer", name)
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

// DeleteServer deletes a server and waits until Nova no longer knows it.
func (o *OpenStack) DeleteServer(t testing.TB, cloud, id string, timeout time.Duration) {
	t.Helper()
	if _, err := o.CLI(cloud, "server", "delete", id); err != nil {
		if strings.Contains(err.Error(), "No server with a name or ID") {
			return
		}
		t.Errorf("deleting server %s: %v", id, err)
		return
	}
	deadline := time.Now().Add(timeout)
	for {
		_, err := o.CLI(cloudAdmin, "server", "show", id, "-f", "value", "-c", "status")
		if err != nil && strings.Contains(err.Error(), "No server with a name or ID") {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("server %s still there %v after its deletion (last: %v)", id, timeout, err)
			return
		}
		time.Sleep(time.Second)
	}
}

// projectAndUser returns the ids of cloud's project and user, from a token.
func (o *OpenStack) projectAndUser(t testing.TB, cloud string) (project, user string) {
	t.Helper()
	var tok struct {
		ProjectID string `json:"project_id"`
		UserID    string `json:"user_id"`
	}
	if err := o.CLIJSON(cloud, &tok, "token", "issue"); err != nil {
		t.Fatal(err)
	}
	return tok.ProjectID, tok.UserID
}

// requireNoQemuHooks fails t when an executable is in qemu.d: a hook (vmgate's, another
// test's that was left behind) would decide whether Nova's domains start.
func requireNoQemuHooks(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir(qemuHookDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			t.Fatalf("%s is installed; this test boots without any qemu hook: remove it first", filepath.Join(qemuHookDir, e.Name()))
		}
	}
}

// TestOpenStackBoots boots a server as a member of a project, through Keystone, Glance,
// Placement, Nova and the libvirt driver, and checks what vmgate relies on: Glance's sha512
// of the image, and Nova's metadata in the libvirt domain.
func TestOpenStackBoots(t *testing.T) {
	o := requireOpenStack(t)
	l := requireLibvirt(t)
	requireNoQemuHooks(t)

	// A raw image of random bytes: nothing boots from it (QEMU sits in the BIOS), which is
	// ACTIVE enough; random so that Glance cannot have it already.
	data := make([]byte, 1<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.raw")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(data)

	imageID := o.UploadImage(t, cloudUser, "boots", path, "raw")
	var img map[string]any
	if err := o.CLIJSON(cloudUser, &img, "image", "show", imageID); err != nil {
		t.Fatal(err)
	}
	// The client prints os_hash_* at the top level or, for older ones, in properties.
	props, _ := img["properties"].(map[string]any)
	hashField := func(k string) string {
		if s, ok := img[k].(string); ok {
			return s
		}
		s, _ := props[k].(string)
		return s
	}
	if algo, value := hashField("os_hash_algo"), hashField("os_hash_value"); algo != "sha512" || value != hex.EncodeToString(sum[:]) {
		t.Errorf("Glance's hash: os_hash_algo=%q os_hash_value=%q; want sha512 %x", algo, value, sum)
	}

	start := time.Now()
	s := o.CreateServer(t, cloudUser, "boots", imageID, 3*time.Minute)
	if s.Status != "ACTIVE" {
		t.Fatalf("server %s: %s after %v: %s\n%s", s.ID, s.Status, time.Since(start).Round(time.Second), s.FaultMessage, s.FaultDetails)
	}
	t.Logf("server %s ACTIVE in %v on %s as domain %s", s.ID, time.Since(start).Round(time.Second), s.Host, s.Domain)

	project, user := o.projectAndUser(t, cloudUser)
	xml, _, err := l.Virsh("dumpxml", s.Domain)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`xmlns:nova="http://openstack.org/xmlns/libvirt/nova/`,
		`<nova:user uuid="` + user + `">alice</nova:user>`,
		`<nova:project uuid="` + project + `">demo</nova:project>`,
		`<nova:root type="image" uuid="` + imageID + `"/>`,
		`<uuid>` + s.ID + `</uuid>`,
	} {
		if !strings.Contains(xml, want) {
			t.Errorf("the domain XML of %s lacks %s:\n%s", s.Domain, want, xml)
		}
	}
	// Cleanup deletes the server (and waits until it is gone), then the image.
}
