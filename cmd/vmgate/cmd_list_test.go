package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/vmgate/vmgate/internal/policy/policytest"
	"github.com/vmgate/vmgate/internal/policy/verify"
)

// listVerifyFixture is a signed list in a temporary directory: list.json, list.json.sig
// (default name), list.bundle, endorser.pub, and stranger.pub, a key that did not sign.
type listVerifyFixture struct {
	dir, list, sig, bundle, pub, stranger string
}

func newListVerifyFixture(t *testing.T) listVerifyFixture {
	t.Helper()
	dir := t.TempDir()
	f := listVerifyFixture{
		dir:      dir,
		list:     filepath.Join(dir, "list.json"),
		sig:      filepath.Join(dir, "list.json.sig"),
		bundle:   filepath.Join(dir, "list.bundle"),
		pub:      filepath.Join(dir, "endorser.pub"),
		stranger: filepath.Join(dir, "stranger.pub"),
	}
	list := policytest.List{Identifier: "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", Version: "1",
		Created: time.Now().Add(-time.Hour), Expires: time.Now().Add(24 * time.Hour), Images: policytest.Images(2)}.Bytes()
	sig := b64(listTestSign(t, listTestKey(t, f.pub), list))
	listTestKey(t, f.stranger)
	listTestWrite(t, f.list, list)
	listTestWrite(t, f.sig, []byte(sig+"\n"))
	listTestWrite(t, f.bundle, []byte(`{"base64Signature":"`+sig+`"}`))
	return f
}

// listTestKey makes a P-256 key, writes its public half to pubPath and returns a signer as
// cosign sign-blob loads it (sigstore's default signer for the key).
func listTestKey(t *testing.T, pubPath string) signature.Signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	listTestWrite(t, pubPath, pub)
	sv, err := signature.LoadDefaultSignerVerifier(priv)
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

func listTestSign(t *testing.T, s signature.Signer, msg []byte) []byte {
	t.Helper()
	sig, err := s.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func listTestWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runListCmd runs vmgate in-process as main does and returns stdout, what main would
// print on stderr, the exit code and the error.
func runListCmd(t *testing.T, args ...string) (stdout, stderr string, code int, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	if err != nil {
		errOut.WriteString("vmgate: " + err.Error() + "\n")
	}
	return out.String(), errOut.String(), exitCode(err), err
}

func TestListVerify(t *testing.T) {
	f := newListVerifyFixture(t)
	tampered := filepath.Join(f.dir, "tampered.json")
	list, err := os.ReadFile(f.list)
	if err != nil {
		t.Fatal(err)
	}
	list[10] ^= 0x01
	listTestWrite(t, tampered, list)
	notPEM := filepath.Join(f.dir, "not.pub")
	listTestWrite(t, notPEM, []byte("ssh-ed25519 AAAA…\n"))
	garbage := filepath.Join(f.dir, "garbage.sig")
	listTestWrite(t, garbage, []byte("not a signature"))

	cases := []struct {
		name     string
		args     []string
		code     int
		stdout   string   // exact, when the command succeeds
		stderr   []string // fragments
		sentinel error
	}{
		{name: "default FILE.sig", args: []string{"--key", f.pub, f.list}, code: exitOK,
			stdout: f.list + ": signature valid (key " + f.pub + ")\n"},
		{name: "signature flag", args: []string{"--key", f.pub, "--signature", f.sig, f.list}, code: exitOK},
		{name: "bundle", args: []string{"--key", f.pub, "--bundle", f.bundle, f.list}, code: exitOK},
		{name: "second key verifies", args: []string{"--key", f.stranger, "--key", f.pub, f.list}, code: exitOK,
			stdout: f.list + ": signature valid (key " + f.pub + ")\n"},
		{name: "altered list", args: []string{"--key", f.pub, "--signature", f.sig, tampered}, code: exitRefused,
			stderr: []string{tampered, "does not verify with the key " + f.pub}, sentinel: verify.ErrInvalidSignature},
		{name: "altered list, bundle", args: []string{"--key", f.pub, "--bundle", f.bundle, tampered}, code: exitRefused,
			stderr: []string{"does not verify"}, sentinel: verify.ErrInvalidSignature},
		{name: "other key", args: []string{"--key", f.stranger, f.list}, code: exitRefused,
			stderr: []string{f.stranger}, sentinel: verify.ErrInvalidSignature},
		{name: "malformed signature", args: []string{"--key", f.pub, "--signature", garbage, f.list}, code: exitRefused,
			stderr: []string{"not base64"}, sentinel: verify.ErrMalformedSignature},
		{name: "signature given as bundle", args: []string{"--key", f.pub, "--bundle", f.sig, f.list}, code: exitRefused,
			sentinel: verify.ErrMalformedSignature},

		{name: "no key", args: []string{f.list}, code: exitError, stderr: []string{`"key" not set`}},
		{name: "both signature and bundle", args: []string{"--key", f.pub, "--signature", f.sig, "--bundle", f.bundle, f.list},
			code: exitError, stderr: []string{"signature", "bundle"}},
		{name: "no file", args: []string{"--key", f.pub}, code: exitError, stderr: []string{"arg"}},
		{name: "two files", args: []string{"--key", f.pub, f.list, f.list}, code: exitError},
		{name: "missing list", args: []string{"--key", f.pub, filepath.Join(f.dir, "nope.json")}, code: exitError,
			stderr: []string{"nope.json"}},
		{name: "no default signature", args: []string{"--key", f.pub, tampered}, code: exitError,
			stderr: []string{"tampered.json.sig", "--signature or --bundle"}},
		{name: "missing signature", args: []string{"--key", f.pub, "--signature", filepath.Join(f.dir, "nope.sig"), f.list},
			code: exitError, stderr: []string{"nope.sig"}},
		{name: "missing key", args: []string{"--key", filepath.Join(f.dir, "nope.pub"), f.list}, code: exitError,
			stderr: []string{"nope.pub"}},
		{name: "key not PEM", args: []string{"--key", notPEM, f.list}, code: exitError, stderr: []string{notPEM, "PEM"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code, err := runListCmd(t, append([]string{"list", "verify"}, c.args...)...)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, c.code, stdout, stderr)
			}
			if c.stdout != "" && !strings.HasPrefix(stdout, strings.TrimSuffix(c.stdout, "\n")+"; list 5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e version 1, 2 images") {
				t.Errorf("stdout %q, want %q", stdout, c.stdout)
			}
			if c.code != exitOK && stdout != "" {
				t.Errorf("stdout %q, want nothing on failure", stdout)
			}
			for _, s := range c.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr %q does not mention %q", stderr, s)
				}
			}
			if c.sentinel != nil && !errors.Is(err, c.sentinel) {
				t.Errorf("error %v does not wrap %v", err, c.sentinel)
			}
		})
	}
}

func TestListVerifyHelpListsExitCodes(t *testing.T) {
	stdout, _, code, _ := runListCmd(t, "list", "verify", "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, s := range []string{"Exit codes:", "0  the signature is valid", "1  the signature is invalid", "2  usage error", "FILE.sig"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("help does not say %q:\n%s", s, stdout)
		}
	}
}

// TestListVerifyChecksContent: a valid signature over a list that is malformed or expired is
// still not a list to trust.
func TestListVerifyChecksContent(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "endorser.pub")
	key := listTestKey(t, pub)
	for name, tc := range map[string]struct {
		list []byte
		want string
	}{
		"malformed": {[]byte(`{"hv:imagelist": {"dc:identifier": "x"}}`), "malformed image list x: hv:version: missing"},
		"expired": {policytest.List{Identifier: "x", Version: "1", Created: time.Now().Add(-48 * time.Hour),
			Expires: time.Now().Add(-time.Hour), Images: policytest.Images(1)}.Bytes(), "expired: list x version 1 expired"},
	} {
		p := filepath.Join(dir, name+".list")
		listTestWrite(t, p, tc.list)
		listTestWrite(t, p+".sig", []byte(b64(listTestSign(t, key, tc.list))))
		out, stderr, code, _ := runListCmd(t, "list", "verify", "--key", pub, p)
		if code != exitRefused || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "signature valid") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q, want %q", name, code, out, stderr, tc.want)
		}
	}
}

// TestListVerifyX509 verifies the S/MIME lists made by the openssl CLI
// (internal/policy/smime/testdata/openssl/gen.sh).
func TestListVerifyX509(t *testing.T) {
	const fx = "../../internal/policy/smime/testdata/openssl/"
	const dn, ca = "/DC=org/DC=example/O=Hosts/CN=endorser.example.org", "/DC=org/DC=example/CN=Example Test CA"
	trust := []string{"--ca-dir", fx + "certificates", "--dn", dn, "--ca", ca}
	doc, err := os.ReadFile(fx + "default.smime")
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(t.TempDir(), "tampered.smime")
	listTestWrite(t, tampered, bytes.Replace(doc, []byte("Example base image"), []byte("Example base imagE"), 1))
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		output string
	}{
		{"default", append(trust, fx+"default.smime"), exitOK, fx + "default.smime: signature valid (signer " + dn + ", issuer " + ca + "); list 8a3e5f0c-2b1d-4e6f-9a7b-1c2d3e4f5a6b version 20261101, 1 images, expires 2499-12-31T22:00:00Z"},
		{"binary", append(trust, fx+"binary.smime"), exitOK, "signature valid"},
		{"text", append(trust, fx+"text.smime"), exitOK, "signature valid"},
		{"tampered", append(trust, tampered), exitRefused, "bad-signature"},
		{"revoked", []string{"--ca-dir", fx + "certificates", "--dn", "/DC=org/DC=example/O=Hosts/CN=revoked.example.org", "--ca", ca, fx + "revoked.smime"}, exitRefused, "signer-revoked"},
		{"list names another", append(trust, fx+"names-other.smime"), exitRefused, "signer-mismatch"},
		{"wrong dn", []string{"--ca-dir", fx + "certificates", "--dn", "/DC=org/CN=x", "--ca", ca, fx + "default.smime"}, exitRefused, "signer-mismatch"},
		{"no ca dir", []string{"--ca-dir", "/nonexistent", "--dn", dn, "--ca", ca, fx + "default.smime"}, exitError, "ca_dir unusable"},
		{"dn missing", []string{"--ca-dir", fx + "certificates", "--ca", ca, fx + "default.smime"}, exitError, "dn"},
		{"key and ca-dir", append([]string{"--key", "/k.pub"}, append(trust, fx+"default.smime")...), exitError, "ca-dir"},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code, _ := runListCmd(t, append([]string{"list", "verify"}, c.args...)...)
			if code != c.code || !strings.Contains(stdout+stderr, c.output) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q, want %q", code, c.code, stdout, stderr, c.output)
			}
		})
	}
}
