package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// endorseListID is the list the site subscribes to (newSite's subscription).
const endorseListID = "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e"

// subscribe rewrites the site's configuration: its one subscription reads the list in pubDir
// with the given keys, and its signature from FILE.sig or, with bundle, FILE.bundle.
func (s *site) subscribe(bundle bool, keys ...string) {
	s.t.Helper()
	sig := ""
	if bundle {
		sig = fmt.Sprintf("    bundle_url: file://%s/image.list.bundle\n", s.pubDir)
	}
	cfg := fmt.Sprintf(`state_dir: %s
subscriptions:
  - name: example
    url: file://%s/image.list
    identifier: %s
    cosign_keys: [%s]
%s`, s.stateDir, s.pubDir, endorseListID, strings.Join(keys, ", "), sig)
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// mustVmgate runs vmgate and fails t unless it exits with code.
func (s *site) mustVmgate(code int, args ...string) string {
	s.t.Helper()
	out, stderr, got := s.vmgate(args...)
	if got != code {
		s.t.Fatalf("vmgate %s: exit %d, want %d\n%s%s", strings.Join(args, " "), got, code, out, stderr)
	}
	return out + stderr
}

// TestEndorseFlow is the endorser's side end to end, checked by the site's side and by the
// real cosign CLI: keys from vmgate endorse keygen and from cosign generate-key-pair; init,
// add a qcow2 image made by qemu-img and a raw one, sign; cosign verify-blob accepts FILE.sig
// and FILE.bundle; a site syncs the list and the real libvirt hook admits a domain on the
// image; remove with a reason, sign with the other key, sync (from FILE.bundle this time):
// the image is revoked and a new start on it refused; the history shows every step with who
// and why; verify-history passes, and fails once FILE.history is tampered with.
func TestEndorseFlow(t *testing.T) {
	l := requireLibvirt(t)
	qemuImg := requireTool(t, "qemu-img")
	s := newSite(t, "")
	e := s.cosign
	// The password of newSite's cosign.key; vmgate endorse reads it from the same variable.
	t.Setenv("COSIGN_PASSWORD", "vmgate-test")
	list := filepath.Join(s.pubDir, "image.list")
	endorser := filepath.Join(s.dir, "endorser")

	// Keys: vmgate's own, which cosign must take as its own too.
	if out := s.mustVmgate(0, "endorse", "keygen", "--output-key-prefix", endorser); !strings.Contains(out, "Public key written to "+endorser+".pub") {
		t.Fatalf("keygen: %s", out)
	}
	if out := s.mustVmgate(1, "endorse", "keygen", "--output-key-prefix", endorser); !strings.Contains(out, "not replacing a key") {
		t.Fatalf("second keygen: %s", out)
	}
	e.write("probe.txt", []byte("probe"))
	e.mustCosign("sign-blob", "--key", endorser+".key", "--tlog-upload=false", "--yes", "--output-signature", "probe.sig", "probe.txt")
	if out, err := e.cosignVerify(cosignArtifact{format: cosignSignature, file: e.path("probe.sig")}, endorser+".pub", e.path("probe.txt")); err != nil || !strings.Contains(out, "Verified OK") {
		t.Fatalf("cosign with the keygen pair: %v\n%s", err, out)
	}

	// Images: a qcow2 made by qemu-img from raw bytes, and a raw one.
	rawA := filepath.Join(s.dir, "a.raw")
	if err := os.WriteFile(rawA, bytes.Repeat([]byte("endorsed image a\n"), 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	imgA := filepath.Join(s.dir, "worker-el9.qcow2")
	if _, err := runTool(s.dir, nil, qemuImg, "convert", "-q", "-f", "raw", "-O", "qcow2", rawA, imgA); err != nil {
		t.Fatal(err)
	}
	imgB, b := s.baseImage("b.raw")
	sw := filepath.Join(s.dir, "worker-el9.rpm-qa.txt")
	os.WriteFile(sw, []byte("bash-5.1.8-9.el9.x86_64\nopenssh-server-8.7p1-38.el9.x86_64\nkernel-5.14.0-427.13.1.el9_4.x86_64\n"), 0o644)
	const idA = "8a1f2e3d-4c5b-4a69-8877-665544332211"

	s.mustVmgate(0, "endorse", "init", "--list", list, "--identifier", endorseListID, "--title", "Example VO images",
		"--endorser-dn", "/DC=org/DC=example/CN=Jane Doe", "--endorser-ca", "/DC=org/DC=example/CN=Example CA",
		"--uri", "file://"+list, "--expires-in", "48h")
	out := s.mustVmgate(0, "endorse", "add", "--list", list, "--image", imgA, "--title", "Worker EL9", "--version", "9.4-1",
		"--identifier", idA, "--software", sw)
	if !strings.Contains(out, ": QCOW2, ") || !strings.Contains(out, "software rpm-qa, 3 packages") {
		t.Fatalf("add: %s", out)
	}
	if out := s.mustVmgate(0, "endorse", "add", "--list", list, "--image", imgB, "--title", "B", "--version", "1"); !strings.Contains(out, b.SHA512) {
		t.Fatalf("add b: %s (want sha512 %s)", out, b.SHA512)
	}
	if out := s.mustVmgate(0, "endorse", "sign", "--list", list, "--key", endorser+".key"); !strings.Contains(out, "signed version 1 (2 images, 2 changes published)") {
		t.Fatalf("sign: %s", out)
	}

	// The real cosign CLI accepts what sign wrote, in both forms, and not over other bytes.
	for _, a := range []cosignArtifact{{format: cosignSignature, file: list + ".sig"}, {format: cosignBundle, file: list + ".bundle"}} {
		if out, err := e.cosignVerify(a, endorser+".pub", list); err != nil || !strings.Contains(out, "Verified OK") {
			t.Fatalf("cosign verify-blob %s: %v\n%s", a.format, err, out)
		}
		if _, err := e.cosignVerify(a, e.path("cosign.pub"), list); err == nil {
			t.Fatalf("cosign verify-blob %s accepts another key", a.format)
		}
	}
	// cosign writes the same files: a base64 signature, and a bundle with the same keys.
	e.mustCosign("sign-blob", "--key", endorser+".key", "--tlog-upload=false", "--yes", "--output-signature", "cosign.sig", "--bundle", "cosign.bundle", list)
	if got, want := jsonKeys(t, list+".bundle"), jsonKeys(t, e.path("cosign.bundle")); got != want {
		t.Errorf("bundle keys %s, cosign writes %s", got, want)
	}
	if sig, _ := os.ReadFile(list + ".sig"); bytes.ContainsAny(sig, "\n") {
		t.Errorf("signature ends in a newline, cosign's does not")
	}

	// The site: trusts both endorser keys, syncs, and the hook admits a domain on a.
	s.subscribe(false, endorser+".pub", e.path("cosign.pub"))
	if out := s.mustVmgate(0, "sync"); !strings.Contains(out, "accepted list "+endorseListID+" version 1, 2 images endorsed") {
		t.Fatalf("sync: %s", out)
	}
	imgs := s.images()
	var shaA string
	for sha, r := range imgs {
		if r["identifier"] == idA {
			shaA = sha
		}
	}
	if shaA == "" || imgs[shaA]["status"] != "endorsed" || imgs[b.SHA512]["status"] != "endorsed" {
		t.Fatalf("images after sync: %v", imgs)
	}
	s.installVMGateHook(l)
	running := l.NewDomain(t, "endorse-a", DomainOptions{BaseImage: imgA, BaseFormat: "qcow2"})
	if stderr, err := running.Start(); err != nil {
		t.Fatalf("a domain on the endorsed image was refused: %v\n%s", err, stderr)
	}

	// Revocation: remove with a reason, sign with the cosign generate-key-pair key.
	const reason = "CVE-2026-1234: openssh in the image allows remote code execution"
	if out := s.mustVmgate(0, "endorse", "remove", "--list", list, idA, "--reason", reason); !strings.Contains(out, "pending") {
		t.Fatalf("remove: %s", out)
	}
	if out := s.mustVmgate(0, "endorse", "history", "--list", list); !strings.Contains(out, "remove (pending)") {
		t.Fatalf("history before sign: %s", out)
	}
	s.mustVmgate(0, "endorse", "sign", "--list", list, "--key", e.path("cosign.key"))
	for _, a := range []cosignArtifact{{format: cosignSignature, file: list + ".sig"}, {format: cosignBundle, file: list + ".bundle"}} {
		if out, err := e.cosignVerify(a, e.path("cosign.pub"), list); err != nil {
			t.Fatalf("cosign verify-blob %s of version 2: %v\n%s", a.format, err, out)
		}
	}
	s.subscribe(true, endorser+".pub", e.path("cosign.pub"))
	if out := s.mustVmgate(0, "sync"); !strings.Contains(out, "revoked 1") {
		t.Fatalf("sync of version 2: %s", out)
	}
	ra := s.images()[shaA]
	if ra["status"] != "revoked" || !strings.Contains(fmt.Sprint(ra["reason"]), `removed from list "example" version 2`) {
		t.Fatalf("image a after revocation: %v", ra)
	}
	if out := s.mustVmgate(0, "images", "--all"); !strings.Contains(out, "revoked") || !strings.Contains(out, idA) {
		t.Fatalf("images --all: %s", out)
	}
	again := l.NewDomain(t, "endorse-a-again", DomainOptions{BaseImage: imgA, BaseFormat: "qcow2"})
	if stderr, err := again.Start(); err == nil || !strings.Contains(stderr, "not endorsed") || !strings.Contains(stderr, `removed from list "example" version 2 on `) {
		t.Fatalf("a new start on the revoked image: err %v\n%s", err, stderr)
	}
	other := l.NewDomain(t, "endorse-b", DomainOptions{BaseImage: imgB})
	if stderr, err := other.Start(); err != nil {
		t.Fatalf("b, still endorsed, was refused: %v\n%s", err, stderr)
	}

	// The history: every step, by whom, why.
	out = s.mustVmgate(0, "endorse", "history", "--list", list, "--json")
	var recs []map[string]any
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("history --json: %v\n%s", err, out)
	}
	var steps []string
	for _, r := range recs {
		steps = append(steps, fmt.Sprintf("%v@%v", r["action"], r["list_version"]))
		if r["uid"] != float64(os.Getuid()) || r["user"] == "" || r["user"] == nil || r["pending"] != false || r["hash"] == "" {
			t.Errorf("record without who: %v", r)
		}
	}
	if got := strings.Join(steps, " "); got != "init@0 add@0 add@0 sign@1 remove@1 sign@2" {
		t.Fatalf("history steps: %s", got)
	}
	if rm := recs[4]; rm["reason"] != reason || rm["image"] != idA || rm["sha512"] != shaA {
		t.Fatalf("remove record: %v", rm)
	}
	if sw := recs[1]["software"].(map[string]any); sw["format"] != "rpm-qa" || sw["packages"] != float64(3) {
		t.Fatalf("software: %v", sw)
	}
	if recs[3]["key"] == recs[5]["key"] {
		t.Errorf("both versions name the same key: %v", recs[3]["key"])
	}

	if out := s.mustVmgate(0, "endorse", "verify-history", "--list", list); !strings.Contains(out, "2 signed versions match their archive, 0 changes pending") {
		t.Fatalf("verify-history: %s", out)
	}
	hist, err := os.ReadFile(list + ".history")
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(hist, []byte("CVE-2026-1234"), []byte("routine cleanup"), 1)
	if bytes.Equal(tampered, hist) {
		t.Fatal("the reason is not in the history file")
	}
	os.WriteFile(list+".history", tampered, 0o644)
	if out := s.mustVmgate(1, "endorse", "verify-history", "--list", list); !strings.Contains(out, "BROKEN") {
		t.Fatalf("verify-history of a tampered history: %s", out)
	}
	// Cut back to before the revocation, the chain is whole, but the list still tells.
	os.WriteFile(list+".history", bytes.Join(bytes.SplitAfter(hist, []byte("\n"))[:5], nil), 0o644)
	if out := s.mustVmgate(1, "endorse", "verify-history", "--list", list); !strings.Contains(out, "entries cut from the end") {
		t.Fatalf("verify-history of a cut history: %s", out)
	}
}

// jsonKeys is the sorted top-level keys of a JSON object file.
func jsonKeys(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}
