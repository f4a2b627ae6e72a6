package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmgate/vmgate/internal/policy/verify"
)

// cosignVersion is the cosign CLI these tests speak to (scripts/deps.sh installs it).
const cosignVersion = "2.6.5"

// What cosign sign-blob writes.
type cosignFormat int

const (
	cosignSignature cosignFormat = iota // --output-signature: detached, base64
	cosignBundle                        // --bundle: cosign v2's own JSON bundle (the default)
	cosignNewBundle                     // --bundle --new-bundle-format: a sigstore bundle
)

func (f cosignFormat) String() string {
	return [...]string{"signature", "bundle", "new-bundle-format bundle"}[f]
}

// cosignEnv runs cosign and openssl in one temporary directory, with cosign's HOME and TUF
// cache there too, so that nothing lands in the real home directory.
type cosignEnv struct {
	t       *testing.T
	dir     string
	cosign  string
	openssl string
	env     []string
	// trustedRoot is what cosign verify-blob needs for sigstore bundles, even when it
	// verifies with a key and ignores the log; offline, an empty root is enough.
	trustedRoot string
}

func newCosignEnv(t *testing.T) *cosignEnv {
	t.Helper()
	e := &cosignEnv{t: t, dir: t.TempDir(), cosign: requireTool(t, "cosign"), openssl: requireTool(t, "openssl")}
	home := filepath.Join(e.dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	// Later entries win in exec.Cmd.Env.
	e.env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"), "COSIGN_PASSWORD=vmgate-test")
	if out := e.mustCosign("version"); !strings.Contains(out, "v"+cosignVersion) {
		t.Fatalf("%s is not cosign v%s, which these tests are written against:\n%s", e.cosign, cosignVersion, out)
	}
	e.trustedRoot = e.write("trusted_root.json", []byte(`{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	return e
}

func (e *cosignEnv) path(name string) string { return filepath.Join(e.dir, name) }

func (e *cosignEnv) write(name string, data []byte) string {
	e.t.Helper()
	p := e.path(name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// runCosign runs cosign without a network: verify-blob looks for sigstore's TUF repository
// even with --key and --insecure-ignore-tlog, and these tests must stay on this machine.
func (e *cosignEnv) runCosign(args ...string) (string, error) {
	return runTool(e.dir, e.env, "unshare", append([]string{"--net", e.cosign}, args...)...)
}

func (e *cosignEnv) mustCosign(args ...string) string {
	e.t.Helper()
	out, err := e.runCosign(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *cosignEnv) mustOpenssl(args ...string) {
	e.t.Helper()
	if _, err := runTool(e.dir, e.env, e.openssl, args...); err != nil {
		e.t.Fatal(err)
	}
}

// signBlob runs `cosign sign-blob` offline with key over list.json and returns what it
// wrote, as an artifact that must verify with pub.
func (e *cosignEnv) signBlob(name, key, pub string, f cosignFormat) cosignArtifact {
	e.t.Helper()
	a := cosignArtifact{name: name + ", " + f.String(), pub: pub, format: f}
	out := strings.NewReplacer(" ", "-", ",", "").Replace(a.name)
	args := []string{"sign-blob", "--key", key, "--tlog-upload=false", "--yes"}
	switch f {
	case cosignSignature:
		args = append(args, "--output-signature", out)
	case cosignBundle:
		args = append(args, "--bundle", out)
	case cosignNewBundle:
		args = append(args, "--bundle", out, "--new-bundle-format")
	}
	e.mustCosign(append(args, "list.json")...)
	a.file = e.path(out)
	return a
}

// cosignArtifact is one signature or bundle over list.json and the public key it must
// verify with.
type cosignArtifact struct {
	name   string
	pub    string // the signer's public key, a PEM file
	file   string
	format cosignFormat
	// verifyArgs are what cosign verify-blob needs beyond the usual flags.
	verifyArgs []string
}

// cosignVerify runs `cosign verify-blob --insecure-ignore-tlog`, what an auditor would run
// without vmgate.
func (e *cosignEnv) cosignVerify(a cosignArtifact, pub, list string) (string, error) {
	args := []string{"verify-blob", "--key", pub, "--insecure-ignore-tlog"}
	switch a.format {
	case cosignSignature:
		args = append(args, "--signature", a.file)
	case cosignBundle:
		args = append(args, "--bundle", a.file)
	case cosignNewBundle:
		args = append(args, "--bundle", a.file, "--new-bundle-format", "--trusted-root", e.trustedRoot)
	}
	return e.runCosign(append(append(args, a.verifyArgs...), list)...)
}

// vmgateVerify is what vmgate does with the same files.
func vmgateVerify(a cosignArtifact, pubs []string, list []byte) error {
	keys, err := verify.LoadKeys(pubs...)
	if err != nil {
		return err
	}
	sig, err := os.ReadFile(a.file)
	if err != nil {
		return err
	}
	if a.format == cosignSignature {
		return keys.VerifySignature(list, sig)
	}
	return keys.VerifyBundle(list, sig)
}

// TestCosignInterop signs a HEPiX list with the real cosign CLI (and with openssl) in every
// format cosign writes, and checks that vmgate and `cosign verify-blob` agree on each: the
// list verifies, the list with one byte changed does not, another key does not.
func TestCosignInterop(t *testing.T) {
	e := newCosignEnv(t)
	listBytes, err := os.ReadFile("testdata/hepix-imagelist.json")
	if err != nil {
		t.Fatal(err)
	}
	list := e.write("list.json", listBytes)
	altered := append([]byte(nil), listBytes...)
	altered[len(altered)/2] ^= 0x01 // one byte, inside the list's text
	alteredList := e.write("altered.json", altered)

	var artifacts []cosignArtifact

	// The endorser's usual setup: a key pair from cosign generate-key-pair (ECDSA P-256),
	// and the three formats sign-blob writes with it.
	e.mustCosign("generate-key-pair")
	for _, f := range []cosignFormat{cosignSignature, cosignBundle, cosignNewBundle} {
		artifacts = append(artifacts, e.signBlob("cosign key", "cosign.key", e.path("cosign.pub"), f))
	}
	// Another endorser's key: nothing signed above may verify with it.
	e.mustCosign("generate-key-pair", "--output-key-prefix", "other")
	otherPub := e.path("other.pub")

	// Keys made with openssl. cosign sign-blob wants its own encrypted key format, so the
	// keys go through cosign import-key-pair; vmgate verifies with openssl's public key.
	e.mustOpenssl("ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", "p256.pem")
	e.mustOpenssl("ec", "-in", "p256.pem", "-pubout", "-out", "p256.pub")
	e.mustOpenssl("ecparam", "-genkey", "-name", "secp384r1", "-noout", "-out", "p384.pem")
	e.mustOpenssl("ec", "-in", "p384.pem", "-pubout", "-out", "p384.pub")
	e.mustOpenssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem")
	e.mustOpenssl("pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub")
	e.mustOpenssl("genpkey", "-algorithm", "ed25519", "-out", "ed25519.pem")
	e.mustOpenssl("pkey", "-in", "ed25519.pem", "-pubout", "-out", "ed25519.pub")

	// Does cosign sign with a plain openssl PEM key? v2.6.5 refuses ("unsupported pem type:
	// EC PRIVATE KEY"); if a later cosign accepts it, its output is checked like the rest.
	if _, err := e.runCosign("sign-blob", "--key", "p256.pem", "--tlog-upload=false", "--yes", "--output-signature", "plain-pem.sig", "list.json"); err != nil {
		t.Logf("cosign sign-blob with a plain openssl EC key fails, as expected of v%s:\n%v", cosignVersion, err)
	} else {
		artifacts = append(artifacts, cosignArtifact{name: "plain openssl key, signature", pub: e.path("p256.pub"), file: e.path("plain-pem.sig")})
	}

	for _, k := range []string{"p256", "p384", "rsa"} {
		e.mustCosign("import-key-pair", "--key", k+".pem", "--output-key-prefix", k+"-imported")
		for _, f := range []cosignFormat{cosignSignature, cosignBundle, cosignNewBundle} {
			a := e.signBlob("openssl "+k+" key via import-key-pair", k+"-imported.key", e.path(k+".pub"), f)
			if k == "p384" {
				// cosign signs with the key's own hash, SHA-384, but verify-blob hashes with
				// SHA-256 unless told otherwise; vmgate accepts both without a flag.
				a.verifyArgs = []string{"--signature-digest-algorithm", "sha384"}
			}
			artifacts = append(artifacts, a)
		}
	}

	// openssl alone, as an endorser without cosign would sign: the DER signature, base64
	// in lines of 64 columns, is what cosign's detached signature is.
	e.mustOpenssl("dgst", "-sha256", "-sign", "p256.pem", "-out", "p256.der", "list.json")
	e.mustOpenssl("base64", "-in", "p256.der", "-out", "openssl-p256.sig")
	e.mustOpenssl("dgst", "-sha256", "-sign", "p384.pem", "-out", "p384.der", "list.json")
	e.mustOpenssl("base64", "-in", "p384.der", "-out", "openssl-p384.sig")
	// cosign v2.6.5 cannot sign offline with an Ed25519 key (it panics looking for a
	// hash); openssl makes the pure Ed25519 signature cosign would.
	e.mustOpenssl("pkeyutl", "-sign", "-inkey", "ed25519.pem", "-rawin", "-in", "list.json", "-out", "ed25519.raw")
	e.mustOpenssl("base64", "-in", "ed25519.raw", "-out", "openssl-ed25519.sig")
	artifacts = append(artifacts,
		cosignArtifact{name: "openssl dgst -sha256 P-256", pub: e.path("p256.pub"), file: e.path("openssl-p256.sig")},
		cosignArtifact{name: "openssl dgst -sha256 P-384", pub: e.path("p384.pub"), file: e.path("openssl-p384.sig")},
		cosignArtifact{name: "openssl pkeyutl Ed25519", pub: e.path("ed25519.pub"), file: e.path("openssl-ed25519.sig")},
	)

	for _, a := range artifacts {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			// valid
			if err := vmgateVerify(a, []string{a.pub}, listBytes); err != nil {
				t.Errorf("vmgate refuses a valid signature: %v", err)
			}
			if out, err := e.cosignVerify(a, a.pub, list); err != nil {
				t.Errorf("cosign refuses a valid signature: %v", err)
			} else if !strings.Contains(out, "Verified OK") {
				t.Errorf("cosign verify-blob succeeded without saying Verified OK:\n%s", out)
			}
			// several keys, the right one among them
			if err := vmgateVerify(a, []string{otherPub, a.pub}, listBytes); err != nil {
				t.Errorf("vmgate refuses a valid signature when the signer's key is second: %v", err)
			}
			// one byte changed
			if err := vmgateVerify(a, []string{a.pub}, altered); !errors.Is(err, verify.ErrInvalidSignature) {
				t.Errorf("vmgate on the altered list: want ErrInvalidSignature, got %v", err)
			}
			if _, err := e.cosignVerify(a, a.pub, alteredList); err == nil {
				t.Errorf("cosign accepts the altered list")
			}
			// another key
			if err := vmgateVerify(a, []string{otherPub}, listBytes); !errors.Is(err, verify.ErrInvalidSignature) {
				t.Errorf("vmgate with another key: want ErrInvalidSignature, got %v", err)
			}
			if _, err := e.cosignVerify(a, otherPub, list); err == nil {
				t.Errorf("cosign accepts the signature with another key")
			}
		})
	}

	// The one place vmgate is deliberately broader than cosign verify-blob's defaults:
	// cosign's own P-384 output needs --signature-digest-algorithm sha384 there.
	for _, a := range artifacts {
		if len(a.verifyArgs) == 0 {
			continue
		}
		a.verifyArgs = nil
		if _, err := e.cosignVerify(a, a.pub, list); err == nil {
			t.Errorf("%s: cosign verify-blob now accepts it without --signature-digest-algorithm; vmgate's wider hash choice may no longer be needed", a.name)
		}
	}
}

// TestCosignSignedByOtherKey: a list signed by a key vmgate was not given is refused, by
// vmgate and by cosign, in every format.
func TestCosignSignedByOtherKey(t *testing.T) {
	e := newCosignEnv(t)
	listBytes, err := os.ReadFile("testdata/hepix-imagelist.json")
	if err != nil {
		t.Fatal(err)
	}
	list := e.write("list.json", listBytes)
	e.mustCosign("generate-key-pair", "--output-key-prefix", "endorser")
	e.mustCosign("generate-key-pair", "--output-key-prefix", "intruder")
	for _, f := range []cosignFormat{cosignSignature, cosignBundle, cosignNewBundle} {
		a := e.signBlob("intruder", "intruder.key", e.path("intruder.pub"), f)
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			err := vmgateVerify(a, []string{e.path("endorser.pub")}, listBytes)
			if !errors.Is(err, verify.ErrInvalidSignature) || !strings.Contains(err.Error(), "endorser.pub") {
				t.Errorf("vmgate: want ErrInvalidSignature naming endorser.pub, got %v", err)
			}
			if _, err := e.cosignVerify(a, e.path("endorser.pub"), list); err == nil {
				t.Errorf("cosign accepts a list signed by another key")
			}
		})
	}
}
