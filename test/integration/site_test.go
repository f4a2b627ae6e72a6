package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/policy/policytest"
)

// vmgateBinaries returns the directory holding vmgate and vmgate-hook: $VMGATE_BIN (make test
// sets it to ./bin), or a fresh build of the module's commands.
func vmgateBinaries(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("VMGATE_BIN"); d != "" {
		return d
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vmgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		for _, cmd := range []string{"vmgate", "vmgate-hook"} {
			out, err := exec.Command("go", "build", "-tags", "libvirt_dlopen", "-o", filepath.Join(dir, cmd), "../../cmd/"+cmd).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", cmd, err, out)
				return
			}
		}
		builtDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtDir
}

var (
	buildOnce sync.Once
	builtDir  string
	buildErr  error
)

// site is a node's vmgate: a configuration, a state directory, and an endorser who signs with
// the real cosign CLI and publishes into a directory the subscription reads (file://).
type site struct {
	t        *testing.T
	cosign   *cosignEnv
	bin      string
	dir      string
	config   string
	stateDir string
	pubDir   string
	version  int
}

func newSite(t *testing.T, extraConfig string) *site {
	t.Helper()
	s := &site{t: t, cosign: newCosignEnv(t), bin: vmgateBinaries(t), dir: t.TempDir()}
	s.cosign.mustCosign("generate-key-pair")
	s.stateDir = filepath.Join(s.dir, "state")
	s.pubDir = filepath.Join(s.dir, "pub")
	s.config = filepath.Join(s.dir, "vmgate.yaml")
	if err := os.MkdirAll(s.pubDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`state_dir: %s
subscriptions:
  - name: example
    url: file://%s/image.list
    identifier: 5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e
    cosign_keys: [%s]
%s`, s.stateDir, s.pubDir, s.cosign.path("cosign.pub"), extraConfig)
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// publish signs a new version of the list, endorsing images, with cosign sign-blob.
func (s *site) publish(images ...policytest.Image) []byte {
	s.t.Helper()
	s.version++
	now := time.Now().UTC().Truncate(time.Second)
	l := policytest.List{Identifier: "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", Version: fmt.Sprint(s.version),
		Created: now.Add(-time.Minute), Expires: now.Add(24 * time.Hour), Images: images}
	body := l.Bytes()
	s.cosign.write("list.json", body)
	s.cosign.mustCosign("sign-blob", "--key", "cosign.key", "--tlog-upload=false", "--yes", "--output-signature", "list.json.sig", "list.json")
	for _, name := range []string{"list.json", "list.json.sig"} {
		data, err := os.ReadFile(s.cosign.path(name))
		if err != nil {
			s.t.Fatal(err)
		}
		target := filepath.Join(s.pubDir, strings.Replace(name, "list.json", "image.list", 1))
		if err := os.WriteFile(target, data, 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	return body
}

// vmgate runs the vmgate command with the site's configuration.
func (s *site) vmgate(args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.bin, "vmgate"), append([]string{"--config", s.config}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			s.t.Fatalf("vmgate %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// images returns `vmgate images --all --json` by sha512.
func (s *site) images() map[string]map[string]any {
	s.t.Helper()
	out, stderr, code := s.vmgate("images", "--all", "--json")
	if code != 0 {
		s.t.Fatalf("vmgate images: exit %d: %s", code, stderr)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		s.t.Fatalf("vmgate images --json: %v\n%s", err, out)
	}
	m := map[string]map[string]any{}
	for _, r := range rows {
		m[r["sha512"].(string)] = r
	}
	return m
}

// findEvent returns the last trace record of an event.
func findEvent(recs []map[string]any, event string) map[string]any {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i]["event"] == event {
			return recs[i]
		}
	}
	return nil
}

// baseImage writes a base image of its own content and returns it as an image to endorse.
func (s *site) baseImage(name string) (string, policytest.Image) {
	s.t.Helper()
	content := []byte(strings.Repeat("base image "+name+"\n", 4096))
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return p, policytest.ImageFor(name, content)
}

// TestSyncCLIWithCosignSignedLists drives `vmgate sync` and `vmgate images` as an operator
// would, on lists signed by the real cosign CLI.
func TestSyncCLIWithCosignSignedLists(t *testing.T) {
	imageDir := t.TempDir()
	s := newSite(t, "image_dirs: ["+imageDir+"]\n")
	_, a := s.baseImage("a.raw")
	_, b := s.baseImage("b.raw")
	os.WriteFile(filepath.Join(imageDir, "base.raw"), []byte("a base image in image_dirs"), 0o644)
	t.Cleanup(func() { clearImmutable(t, filepath.Join(imageDir, "base.raw")) }) // sync seals it
	s.publish(a, b)
	out, stderr, code := s.vmgate("sync")
	if code != 0 || !strings.Contains(out, "example: accepted list 5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e version 1, 2 images endorsed") {
		t.Fatalf("first sync: exit %d\n%s%s", code, out, stderr)
	}
	// image_dirs were hashed ahead of the first VM start (an image written this very second
	// is hashed but not cached yet: see internal/imagehash).
	if !strings.Contains(out, "image_dirs: 1 files, 1 hashed now") || !strings.Contains(out, "image_dirs: 1 made immutable now") {
		t.Fatalf("image_dirs not hashed:\n%s", out)
	}
	imgs := s.images()
	if imgs[a.SHA512]["status"] != "endorsed" || imgs[b.SHA512]["status"] != "endorsed" || imgs[a.SHA512]["list"] != "example" {
		t.Fatalf("images: %v", imgs)
	}

	// One byte changed after signing: refused, and the accepted list stays in force.
	body, _ := os.ReadFile(filepath.Join(s.pubDir, "image.list"))
	os.WriteFile(filepath.Join(s.pubDir, "image.list"), bytes.Replace(body, []byte(`"1"`), []byte(`"9"`), 1), 0o644)
	out, stderr, code = s.vmgate("sync")
	if code != 1 || !strings.Contains(stderr, "subscription example: list refused: bad-signature") || !strings.Contains(stderr, "what to do:") {
		t.Fatalf("tampered list: exit %d\n%s%s", code, out, stderr)
	}
	if s.images()[a.SHA512]["status"] != "endorsed" {
		t.Fatal("a refused list changed what is endorsed")
	}

	// Version 2 drops b: revoked, with when and why.
	s.publish(a)
	if out, stderr, code = s.vmgate("sync"); code != 0 || !strings.Contains(out, "revoked 1") {
		t.Fatalf("second list: exit %d\n%s%s", code, out, stderr)
	}
	rb := s.images()[b.SHA512]
	if rb["status"] != "revoked" || rb["revoked_at"] == nil || !strings.Contains(rb["reason"].(string), `removed from list "example" version 2`) {
		t.Fatalf("revoked image: %v", rb)
	}
	// The SIEM hears of it through the trace journal.
	recs := s.traceRecords()
	if r := findEvent(recs, "image.revoked"); r == nil || !strings.Contains(toJSON(r["images"]), b.SHA512) || !strings.Contains(r["reason"].(string), "removed from list") {
		t.Fatalf("no image.revoked trace record for b: %v", recs)
	}
	if r := findEvent(recs, "list.refused"); r == nil || !strings.Contains(r["reason"].(string), "bad-signature") {
		t.Fatalf("no list.refused trace record: %v", recs)
	}
	if r := findEvent(recs, "list.accepted"); r == nil || !strings.Contains(toJSON(r["list"]), `"version":"2"`) {
		t.Fatalf("no list.accepted trace record for version 2: %v", recs)
	}
	out, _, code = s.vmgate("images")
	if code != 0 || strings.Contains(out, b.Identifier) || !strings.Contains(out, a.Identifier) {
		t.Fatalf("vmgate images shows revoked images without --all:\n%s", out)
	}
	out, _, code = s.vmgate("images", "--history", b.Identifier)
	if code != 0 || !strings.Contains(out, "image.endorsed") || !strings.Contains(out, "image.revoked") || strings.Contains(out, a.Identifier) {
		t.Fatalf("history of b:\n%s", out)
	}
	// The auditor's view of the accepted list.
	if out, stderr, code = s.vmgate("list", "verify", "--key", s.cosign.path("cosign.pub"), filepath.Join(s.pubDir, "image.list")); code != 0 {
		t.Fatalf("list verify: exit %d\n%s%s", code, out, stderr)
	}
}
