package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/policy/smime"
)

// The AppDB-style fixture names this endorser and CA; the test CA and certificates below
// are made with these subjects.
const (
	appdbDN = "/DC=EU/DC=EXAMPLE/C=GR/O=Robots/O=Example Research Network/CN=Robot:appdb@example.eu"
	appdbCA = "/DC=EU/DC=EXAMPLE/C=GR/O=Example Research Network/CN=Example Robot CA"
	// appdbList is the fixture's dc:identifier.
	appdbList = "9d3f6a2c-7b1e-4c58-a0f4-2e6b8d1c5a97"
)

// igtfPKI is a CA made with the openssl CLI, laid out as an IGTF trust directory
// (<hash>.0, <hash>.r0, as the IGTF packages and fetch-crl leave it), and the certificates
// an endorser may sign with.
type igtfPKI struct {
	t       *testing.T
	openssl string
	dir     string // work files: keys, certificates, openssl ca's database
	caDir   string // the trust directory vmgate reads
}

func (p *igtfPKI) path(name string) string { return filepath.Join(p.dir, name) }

func (p *igtfPKI) run(args ...string) string {
	p.t.Helper()
	out, err := runTool(p.dir, os.Environ(), p.openssl, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// caConf is openssl ca's configuration: subjects kept as given (preserve), in their order,
// and host certificate extensions as IGTF CAs issue them (no emailProtection).
const caConf = `[ca]
default_ca = igtf
[igtf]
dir = .
database = %[1]s/index.txt
new_certs_dir = %[1]s
serial = %[1]s/serial
crlnumber = %[1]s/crlnumber
default_md = sha256
default_crl_days = 7
policy = any
preserve = yes
unique_subject = no
copy_extensions = none
[any]
domainComponent = optional
countryName = optional
organizationName = optional
organizationalUnitName = optional
commonName = optional
jurisdictionC = optional
jurisdictionST = optional
jurisdictionL = optional
businessCategory = optional
serialNumber = optional
organizationIdentifier = optional
[host]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[subca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[crlext]
authorityKeyIdentifier = keyid
`

// newIGTFPKI makes a CA named name; in the trust directory when trusted.
func newIGTFPKI(t *testing.T, openssl, prefix, subject string, caDir string) *igtfPKI {
	t.Helper()
	p := &igtfPKI{t: t, openssl: openssl, dir: filepath.Join(t.TempDir(), prefix), caDir: caDir}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p.path("ca.cnf"), []byte(fmt.Sprintf(caConf, p.dir)), 0o644)
	os.WriteFile(p.path("index.txt"), nil, 0o644)
	os.WriteFile(p.path("serial"), []byte("1000\n"), 0o644)
	os.WriteFile(p.path("crlnumber"), []byte("1000\n"), 0o644)
	// The same without crlnumber: openssl ca -gencrl then writes a v1 CRL, as some CAs do.
	v1 := strings.Replace(fmt.Sprintf(caConf, p.dir), "crlnumber = "+p.dir+"/crlnumber\n", "", 1)
	os.WriteFile(p.path("ca-v1.cnf"), []byte(v1), 0o644)
	p.run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "365", "-subj", subject,
		"-addext", "keyUsage=critical,keyCertSign,cRLSign")
	return p
}

// subCA makes a CA under p, with its own openssl ca database, as IGTF national CAs are
// under a root.
func (p *igtfPKI) subCA(prefix, subject string) *igtfPKI {
	p.t.Helper()
	c := newIGTFPKI(p.t, p.openssl, prefix, subject, p.caDir)
	c.run("req", "-new", "-key", "ca.key", "-out", "ca.csr", "-subj", subject)
	p.run("ca", "-batch", "-config", "ca.cnf", "-extensions", "subca", "-cert", "ca.pem", "-keyfile", "ca.key", "-days", "200",
		"-in", c.path("ca.csr"), "-out", c.path("ca.pem"))
	return c
}

// issue makes a host certificate name.pem (key name.key) for subject; start and end, when
// set, are openssl ca's -startdate and -enddate (YYYYMMDDHHMMSSZ).
func (p *igtfPKI) issue(name, subject, start, end string) {
	p.t.Helper()
	p.run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", subject)
	args := []string{"ca", "-batch", "-config", "ca.cnf", "-extensions", "host", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", name + ".csr", "-out", name + ".pem"}
	if start != "" {
		args = append(args, "-startdate", start, "-enddate", end)
	} else {
		args = append(args, "-days", "30")
	}
	p.run(args...)
}

func (p *igtfPKI) revoke(name string) {
	p.t.Helper()
	p.run("ca", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-revoke", name+".pem")
}

// cmsSign is sign with `openssl cms -sign`, which has the options openssl smime lacks
// (-keyid, -keyopt); it writes S/MIME as well.
func (p *igtfPKI) cmsSign(name string, list []byte, flags ...string) []byte {
	p.t.Helper()
	in := p.path(fmt.Sprintf("list-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(in, list, 0o644); err != nil {
		p.t.Fatal(err)
	}
	args := append([]string{"cms", "-sign", "-in", in, "-signer", name + ".pem", "-inkey", name + ".key", "-out", in + ".smime"}, flags...)
	p.run(args...)
	doc, err := os.ReadFile(in + ".smime")
	if err != nil {
		p.t.Fatal(err)
	}
	return doc
}

// opensslVerify is what `openssl smime -verify -crl_check_all` (or `openssl cms -verify`,
// for what only cms reads: RSA-PSS, a signer by key identifier) says of doc against
// caDir: nil when it accepts it.
func opensslVerify(t *testing.T, openssl, caDir string, doc []byte, cms bool) error {
	t.Helper()
	cmd := "smime"
	if cms {
		cmd = "cms"
	}
	_, err := runTool(t.TempDir(), os.Environ(), openssl, cmd, "-verify", "-in", writeTemp(t, doc), "-CApath", caDir, "-crl_check_all", "-purpose", "any", "-out", os.DevNull)
	return err
}

// install puts the CA and a fresh CRL into the trust directory under the CA's hash.
func (p *igtfPKI) install() string {
	p.t.Helper()
	return p.installCRL("ca.cnf", "-crlexts", "crlext")
}

// installV1 is install with a v1 CRL (no extensions, no CRL number).
func (p *igtfPKI) installV1() string {
	p.t.Helper()
	return p.installCRL("ca-v1.cnf")
}

func (p *igtfPKI) installCRL(conf string, flags ...string) string {
	p.t.Helper()
	p.run(append([]string{"ca", "-config", conf, "-cert", "ca.pem", "-keyfile", "ca.key", "-gencrl", "-out", "ca.crl"}, flags...)...)
	hash := strings.TrimSpace(p.run("x509", "-hash", "-noout", "-in", "ca.pem"))
	for src, dst := range map[string]string{"ca.pem": hash + ".0", "ca.crl": hash + ".r0"} {
		data, err := os.ReadFile(p.path(src))
		if err != nil {
			p.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.caDir, dst), data, 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
	return hash
}

// sign signs list with `openssl smime -sign` (detached, the default) as the holder of
// name.pem, with extra flags (-binary, -text) and returns the S/MIME document.
func (p *igtfPKI) sign(name string, list []byte, flags ...string) []byte {
	p.t.Helper()
	in := p.path(fmt.Sprintf("list-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(in, list, 0o644); err != nil {
		p.t.Fatal(err)
	}
	args := append([]string{"smime", "-sign", "-in", in, "-signer", name + ".pem", "-inkey", name + ".key", "-out", in + ".smime"}, flags...)
	p.run(args...)
	doc, err := os.ReadFile(in + ".smime")
	if err != nil {
		p.t.Fatal(err)
	}
	return doc
}

// appdbListBytes is the AppDB-style fixture, created a minute ago at version v, optionally
// naming another endorser than the fixture's.
func appdbListBytes(t *testing.T, v int, dn string) []byte {
	t.Helper()
	data, err := os.ReadFile("../../internal/policy/testdata/appdb-imagelist.json")
	if err != nil {
		t.Fatal(err)
	}
	created := time.Now().UTC().Add(-time.Minute).Format("2006-01-02T15:04:05Z")
	r := strings.NewReplacer(`"dc:date:created": "2026-11-20T09:41:07Z"`, `"dc:date:created": "`+created+`"`,
		`"hv:version": "20261120094107"`, fmt.Sprintf(`"hv:version": "2026112%d"`, v))
	out := r.Replace(string(data))
	if dn != "" {
		out = strings.Replace(out, `"hv:dn": "`+appdbDN+`"`, `"hv:dn": "`+dn+`"`, 1)
	}
	if out == string(data) {
		t.Fatal("fixture changed: nothing replaced")
	}
	return []byte(out)
}

// smimeSync runs `vmgate sync` once, in a fresh state directory, on doc served at a
// file:// URL, with an x509 subscription; it returns vmgate's output, exit code, and the
// configuration file for further commands.
func smimeSync(t *testing.T, caDir, dn, ca string, doc []byte) (string, int, string) {
	t.Helper()
	dir := t.TempDir()
	listPath := filepath.Join(dir, "image.list")
	if err := os.WriteFile(listPath, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "vmgate.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`state_dir: %s
subscriptions:
  - name: example-vo
    url: file://%s
    identifier: %s
    x509: {ca_dir: %s, dn: %q, ca: %q}
`, filepath.Join(dir, "state"), listPath, appdbList, caDir, dn, ca)), 0o644)
	out, code := runVmgate(t, cfg, "sync")
	return out, code, cfg
}

func runVmgate(t *testing.T, cfg string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(vmgateBinaries(t), "vmgate"), append([]string{"--config", cfg}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("vmgate %v: %v", args, err)
		}
		return string(out), ee.ExitCode()
	}
	return string(out), 0
}

// TestSMIMEListsSignedByOpenSSL drives `vmgate sync` on AppDB-style lists signed with
// `openssl smime -sign` by certificates of a CA made with openssl, in an IGTF layout.
func TestSMIMEListsSignedByOpenSSL(t *testing.T) {
	openssl := requireTool(t, "openssl")
	caDir := t.TempDir()
	pki := newIGTFPKI(t, openssl, "igtf", appdbCA, caDir)
	pki.issue("endorser", appdbDN, "", "")
	pki.issue("revoked", appdbDN, "", "")
	pki.revoke("revoked")
	pki.issue("expired", appdbDN, time.Now().UTC().AddDate(0, -2, 0).Format("20060102150405Z"), time.Now().UTC().AddDate(0, -1, 0).Format("20060102150405Z"))
	hash := pki.install()
	// Another CA, not in ca_dir, issues a certificate with the very same subject: only
	// the chain tells it apart.
	rogue := newIGTFPKI(t, openssl, "rogue", appdbCA, t.TempDir())
	rogue.issue("endorser", appdbDN, "", "")

	list := appdbListBytes(t, 1, "")
	signed := pki.sign("endorser", list)
	tampered := bytes.Replace(signed, []byte("Ubuntu 24.04 LTS"), []byte("Ubuntu 24.04 LTZ"), 1)
	if bytes.Equal(tampered, signed) {
		t.Fatal("nothing tampered")
	}

	cases := []struct {
		name   string
		doc    []byte
		dn, ca string
		before func()
		code   int
		want   string
		// binary: openssl smime -verify cannot check its own -binary multipart output
		// (its MIME reader turns the part's line endings into CRLF, OpenSSL 3.0); it is
		// given the signature and the list's exact bytes apart instead.
		binary bool
	}{
		{name: "accepted", doc: signed, code: 0, want: "example-vo: accepted list " + appdbList + " version 20261121, 2 images endorsed"},
		{name: "accepted, -binary", doc: pki.sign("endorser", list, "-binary"), code: 0, want: "accepted list", binary: true},
		{name: "accepted, -text", doc: pki.sign("endorser", list, "-text"), code: 0, want: "accepted list"},
		{name: "tampered body", doc: tampered, code: 1, want: "list refused: bad-signature"},
		{name: "wrong dn configured", doc: signed, dn: "/DC=EU/DC=EXAMPLE/C=GR/O=Robots/O=Example Research Network/CN=Robot:other@example.eu", code: 1, want: "list refused: signer-mismatch"},
		{name: "wrong ca configured", doc: signed, ca: "/DC=EU/DC=EXAMPLE/CN=Other CA", code: 1, want: "list refused: signer-mismatch"},
		{name: "list names another dn than its signer", doc: pki.sign("endorser", appdbListBytes(t, 1, "/DC=EU/DC=EXAMPLE/CN=someone else")), code: 1, want: "but was signed by " + appdbDN},
		{name: "expired signer", doc: pki.sign("expired", list), code: 1, want: "list refused: signer-expired"},
		{name: "revoked signer", doc: pki.sign("revoked", list), code: 1, want: "list refused: signer-revoked"},
		{name: "signer from a CA not in ca_dir", doc: rogue.sign("endorser", list), code: 1, want: "list refused: untrusted-signer"},
		{name: "no crl", doc: signed, before: func() { os.Rename(filepath.Join(caDir, hash+".r0"), filepath.Join(caDir, hash+".r0.off")) }, code: 1, want: "list refused: crl-unavailable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.before != nil {
				c.before()
			}
			dn, ca := appdbDN, appdbCA
			if c.dn != "" {
				dn = c.dn
			}
			if c.ca != "" {
				ca = c.ca
			}
			out, code, cfg := smimeSync(t, caDir, dn, ca, c.doc)
			if code != c.code || !strings.Contains(out, c.want) {
				t.Fatalf("exit %d (want %d), want %q in:\n%s", code, c.code, c.want, out)
			}
			if code != 0 {
				if !strings.Contains(out, "what to do:") {
					t.Fatalf("refusal without advice:\n%s", out)
				}
				return
			}
			// The images the list endorses are endorsed; the list in the history is the
			// signed document.
			js, code := runVmgate(t, cfg, "images", "--json")
			var rows []map[string]any
			if code != 0 || json.Unmarshal([]byte(js), &rows) != nil || len(rows) != 2 || rows[0]["status"] != "endorsed" {
				t.Fatalf("images: exit %d\n%s", code, js)
			}
			if rows[0]["endorser"] != appdbDN {
				t.Fatalf("endorser %v", rows[0]["endorser"])
			}
			archived, _ := filepath.Glob(filepath.Join(filepath.Dir(cfg), "state/policy/lists/example-vo/*.list"))
			if len(archived) != 1 {
				t.Fatalf("archive: %v", archived)
			}
			if data, _ := os.ReadFile(archived[0]); !bytes.Equal(data, c.doc) {
				t.Fatal("the archived list is not the signed document")
			}
			// The auditor's command agrees, and so does openssl itself.
			if out, code := runVmgate(t, cfg, "list", "verify", "--ca-dir", caDir, "--dn", appdbDN, "--ca", appdbCA, archived[0]); code != 0 {
				t.Fatalf("list verify: exit %d\n%s", code, out)
			}
			args := []string{"smime", "-verify", "-in", archived[0], "-CApath", caDir, "-crl_check_all", "-purpose", "any", "-out", os.DevNull}
			if c.binary {
				m, err := smime.Parse(c.doc)
				if err != nil {
					t.Fatal(err)
				}
				args[3] = writeTemp(t, m.Signature)
				args = append(args, "-inform", "DER", "-binary", "-content", writeTemp(t, m.Signed))
			}
			if _, err := runTool(pki.dir, os.Environ(), openssl, args...); err != nil {
				t.Fatalf("openssl smime -verify disagrees: %v", err)
			}
		})
	}

	// openssl smime -verify refuses what vmgate refused for the chain's sake.
	if _, err := runTool(pki.dir, os.Environ(), openssl, "smime", "-verify", "-in", writeTemp(t, tampered), "-CApath", caDir, "-purpose", "any", "-out", os.DevNull); err == nil {
		t.Error("openssl smime -verify accepts the tampered list")
	}
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "doc")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSMIMEAppDBSubscriptionOverHTTPS: an AppDB-style subscription fetched over HTTPS with a
// token, sent as basic auth (user = token, password x-oauth-basic) as AppDB expects.
func TestSMIMEAppDBSubscriptionOverHTTPS(t *testing.T) {
	openssl := requireTool(t, "openssl")
	caDir := t.TempDir()
	pki := newIGTFPKI(t, openssl, "igtf", appdbCA, caDir)
	pki.issue("endorser", appdbDN, "", "")
	pki.install()
	doc := pki.sign("endorser", appdbListBytes(t, 1, ""))

	const token = "0123456789abcdef-token"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != token || pass != "x-oauth-basic" || r.URL.Path != "/store/vo/example.vo.eu/image.list" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Write(doc)
	}))
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "server-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	cfg := filepath.Join(dir, "vmgate.yaml")
	write := func(tok string) {
		os.WriteFile(cfg, []byte(fmt.Sprintf(`state_dir: %s
subscriptions:
  - name: example-vo
    url: %s/store/vo/example.vo.eu/image.list
    token: %q
    ca_file: %s
    x509: {ca_dir: %s, dn: %q, ca: %q}
`, filepath.Join(dir, "state"), srv.URL, tok, caFile, caDir, appdbDN, appdbCA)), 0o644)
	}
	write("wrong-token")
	if out, code := runVmgate(t, cfg, "sync"); code != 1 || !strings.Contains(out, "fetch-failed") || strings.Contains(out, "wrong-token") {
		t.Fatalf("wrong token: exit %d\n%s", code, out)
	}
	write(token)
	if out, code := runVmgate(t, cfg, "sync"); code != 0 || !strings.Contains(out, "accepted list "+appdbList) {
		t.Fatalf("sync: exit %d\n%s", code, out)
	}
}

// TestSMIMEOneLineDNMatchesOpenSSL: vmgate's one-line rendering of subjects is what
// `openssl x509 -noout -subject -nameopt compat` prints, for every attribute type IGTF
// subjects use, an unknown OID and UTF-8.
func TestSMIMEOneLineDNMatchesOpenSSL(t *testing.T) {
	openssl := requireTool(t, "openssl")
	dir := t.TempDir()
	for i, subj := range []string{
		appdbDN,
		appdbCA,
		"/DC=org/DC=terena/DC=tcs/C=NL/ST=Noord-Holland/L=Amsterdam/O=Example/OU=Hosts/CN=host.example.org/emailAddress=ops@example.org",
		"/C=DE/O=GermanGrid/OU=KIT/CN=robot - vmcaster.example.de",
		"/DC=org/CN=host/1.3.6.1.4.1.99999.1=extra",
		"/DC=eu/O=Ex\u00e4mple/CN=Jos\u00e9",
		"/CN=first/CN=second/O=after",
		"/DC=nl/C=NL/jurisdictionC=NL/jurisdictionST=Zuid-Holland/jurisdictionL=Delft/businessCategory=Private Organization/serialNumber=27123456/organizationIdentifier=NTRNL-27123456/O=Example B.V./OU=Grid/title=Robot/GN=Jan/SN=Jansen/initials=JJ/pseudonym=jj/UID=jjansen/street=Main Street 1/postalCode=2628 CD/L=Delft/ST=Zuid-Holland/emailAddress=ops@example.nl/dnQualifier=q1/generationQualifier=III/CN=robot.example.nl",
	} {
		pemPath := filepath.Join(dir, fmt.Sprintf("c%d.pem", i))
		if _, err := runTool(dir, os.Environ(), openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", pemPath+".key", "-out", pemPath, "-days", "1", "-utf8", "-subj", subj); err != nil {
			t.Fatal(err)
		}
		want, err := runTool(dir, os.Environ(), openssl, "x509", "-noout", "-subject", "-nameopt", "compat", "-in", pemPath)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(pemPath)
		b, _ := pem.Decode(data)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		got, err := smime.OneLineRaw(c.RawSubject)
		if err != nil || "subject="+got != strings.TrimSpace(want) {
			t.Errorf("%s:\nvmgate  subject=%s\nopenssl %s", subj, got, strings.TrimSpace(want))
		}
	}
}

// refusedAs runs `vmgate sync` on doc and checks the refusal reason and message, or the
// acceptance when reason is "".
func refusedAs(t *testing.T, caDir, dn, ca string, doc []byte, reason, text string) {
	t.Helper()
	out, code, _ := smimeSync(t, caDir, dn, ca, doc)
	t.Logf("vmgate sync: exit %d\n%s", code, out)
	if reason == "" {
		if code != 0 || !strings.Contains(out, "accepted list "+appdbList) {
			t.Fatalf("want the list accepted, exit %d:\n%s", code, out)
		}
		return
	}
	if code != 1 || !strings.Contains(out, "list refused: "+reason) || !strings.Contains(out, text) || !strings.Contains(out, "what to do:") {
		t.Fatalf("want refusal %s with %q and advice, exit %d:\n%s", reason, text, code, out)
	}
}

// TestSMIMEIntermediateCA: a CA directory holding a root and an intermediate under it, each
// with its CRL (the root's v2, the intermediate's v1), as IGTF lays out national CAs. vmgate
// agrees with `openssl smime -verify -CApath -crl_check_all`: the chain reaches the root,
// and the intermediate is checked against the root's CRL.
func TestSMIMEIntermediateCA(t *testing.T) {
	openssl := requireTool(t, "openssl")
	const rootDN = "/DC=EU/DC=EXAMPLE/CN=Example Root CA"
	caDir := t.TempDir()
	root := newIGTFPKI(t, openssl, "root", rootDN, caDir)
	inter := root.subCA("inter", appdbCA)
	inter.issue("endorser", appdbDN, "", "")
	rootHash := root.install()
	interHash := inter.installV1()
	if out := inter.run("crl", "-noout", "-text", "-in", "ca.crl"); !strings.Contains(out, "Version 1") {
		t.Fatalf("the intermediate's CRL is not v1:\n%s", out)
	}
	doc := inter.sign("endorser", appdbListBytes(t, 1, ""))

	// Accepted, by both.
	if err := opensslVerify(t, openssl, caDir, doc, false); err != nil {
		t.Fatalf("openssl refuses the list vmgate must accept: %v", err)
	}
	refusedAs(t, caDir, appdbDN, appdbCA, doc, "", "")

	move := func(name, to string) func() {
		os.Rename(filepath.Join(caDir, name), filepath.Join(to, name))
		return func() { os.Rename(filepath.Join(to, name), filepath.Join(caDir, name)) }
	}
	aside := t.TempDir()

	// The root's CRL missing: the intermediate cannot be checked.
	undo := move(rootHash+".r0", aside)
	if opensslVerify(t, openssl, caDir, doc, false) == nil {
		t.Error("openssl accepts without the root's CRL")
	}
	refusedAs(t, caDir, appdbDN, appdbCA, doc, "crl-unavailable", rootDN)
	undo()

	// The root missing: the intermediate alone is no anchor.
	undo = move(rootHash+".0", aside)
	if opensslVerify(t, openssl, caDir, doc, false) == nil {
		t.Error("openssl accepts without the root")
	}
	refusedAs(t, caDir, appdbDN, appdbCA, doc, "config", "no self-signed CA certificate")
	undo()

	// The root revokes the intermediate: refused, though the intermediate's own CRL is
	// clean.
	root.revoke(filepath.Join(inter.dir, "ca"))
	root.install()
	if opensslVerify(t, openssl, caDir, doc, false) == nil {
		t.Error("openssl accepts a list under a revoked intermediate")
	}
	refusedAs(t, caDir, appdbDN, appdbCA, doc, "signer-revoked", "CA certificate "+appdbCA)
	if _, err := os.Stat(filepath.Join(caDir, interHash+".r0")); err != nil {
		t.Fatal(err)
	}
}

// TestSMIMESignatureForms: lists signed by openssl in each form an endorser may use; vmgate
// accepts what it verifies and names what it refuses, where openssl (smime -verify
// -crl_check_all, or cms -verify for what only cms reads) accepts them all.
func TestSMIMESignatureForms(t *testing.T) {
	openssl := requireTool(t, "openssl")
	caDir := t.TempDir()
	pki := newIGTFPKI(t, openssl, "igtf", appdbCA, caDir)
	pki.issue("endorser", appdbDN, "", "")
	pki.install()
	list := appdbListBytes(t, 1, "")
	bom := append([]byte("\ufeff"), list...)

	for _, c := range []struct {
		name   string
		doc    []byte
		cms    bool   // openssl smime cannot read or verify it; openssl cms can
		reason string // "" accepted
		text   string
	}{
		{name: "sha256", doc: pki.sign("endorser", list, "-md", "sha256")},
		{name: "sha512", doc: pki.sign("endorser", list, "-md", "sha512")},
		{name: "opaque (-nodetach)", doc: pki.sign("endorser", list, "-nodetach")},
		{name: "opaque -text", doc: pki.sign("endorser", list, "-nodetach", "-text")},
		{name: "list with a byte order mark", doc: pki.sign("endorser", bom)},
		{name: "cms, issuer and serial", doc: pki.cmsSign("endorser", list), cms: true},
		{name: "sha1", doc: pki.sign("endorser", list, "-md", "sha1"), reason: "weak-algorithm", text: "signed with sha1"},
		{name: "md5", doc: pki.sign("endorser", list, "-md", "md5"), reason: "weak-algorithm", text: "signed with md5"},
		{name: "sha224", doc: pki.sign("endorser", list, "-md", "sha224"), reason: "unsupported-signature", text: "digest sha224"},
		{name: "rsa-pss", doc: pki.cmsSign("endorser", list, "-keyopt", "rsa_padding_mode:pss"), cms: true, reason: "unsupported-signature", text: "RSASSA-PSS"},
		{name: "signer by key id", doc: pki.cmsSign("endorser", list, "-keyid"), cms: true, reason: "unsupported-signature", text: "subject key identifier"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := opensslVerify(t, openssl, caDir, c.doc, c.cms); err != nil {
				t.Fatalf("openssl refuses it: %v", err)
			}
			refusedAs(t, caDir, appdbDN, appdbCA, c.doc, c.reason, c.text)
		})
	}

	// What is not S/MIME at all says what it is.
	for _, c := range []struct {
		name string
		doc  []byte
		text string
	}{
		{"unsigned json", list, "this is a JSON document, not an S/MIME signed list"},
		{"json with a byte order mark", bom, "this is a JSON document"},
		{"html", []byte("<!DOCTYPE html>\n<html><head><title>AppDB - Sign in</title></head><body></body></html>\n"), "this is an HTML or XML page"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if opensslVerify(t, openssl, caDir, c.doc, false) == nil {
				t.Fatal("openssl accepts it")
			}
			refusedAs(t, caDir, appdbDN, appdbCA, c.doc, "smime-malformed", c.text)
		})
	}
}

// TestSMIMEHeaderForms: the header of a list openssl signed, rewritten in the forms RFC 2045
// and RFC 5322 allow (comments, folding, case, quoting); openssl and vmgate both accept each.
func TestSMIMEHeaderForms(t *testing.T) {
	openssl := requireTool(t, "openssl")
	caDir := t.TempDir()
	pki := newIGTFPKI(t, openssl, "igtf", appdbCA, caDir)
	pki.issue("endorser", appdbDN, "", "")
	pki.install()
	doc := pki.sign("endorser", appdbListBytes(t, 1, ""))
	hdr, body, ok := bytes.Cut(doc, []byte("\n\n"))
	if !ok {
		t.Fatal("no header")
	}
	lines := strings.Split(string(hdr), "\n")
	ct := lines[1] // Content-Type: multipart/signed; protocol="…"; micalg="sha-256"; boundary="…"
	_, b, _ := strings.Cut(ct, `boundary="`)
	b = strings.TrimSuffix(b, `"`)
	for _, c := range []struct {
		name, header string
		// opensslRefuses: OpenSSL's MIME reader takes no comment in Content-Type, which
		// RFC 2045 §5.1 allows; vmgate follows the RFC.
		opensslRefuses bool
	}{
		{name: "comment after the version", header: "MIME-Version: 1.0 (Created by vmcaster)\n" + ct},
		{name: "comment inside the version", header: "MIME-Version: 1.(produced by vmcaster)0\n" + ct},
		{name: "comment in the content type", header: "MIME-Version: 1.0\nContent-Type: multipart/signed (a detached signature); protocol=\"application/x-pkcs7-signature\"; micalg=sha-256; boundary=\"" + b + "\"", opensslRefuses: true},
		{name: "folded", header: "MIME-Version: 1.0\nContent-Type: multipart/signed;\n\tprotocol=\"application/x-pkcs7-signature\";\n\tmicalg=\"sha-256\";\n\tboundary=\"" + b + "\""},
		{name: "case", header: "mime-version: 1.0\ncontent-type: Multipart/Signed; Protocol=\"Application/X-PKCS7-Signature\"; MICALG=SHA-256; BOUNDARY=\"" + b + "\""},
		{name: "unquoted parameters", header: "MIME-Version: 1.0\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=sha-256; boundary=" + b},
		{name: "mail fields around", header: "From: appdb@example.eu\nSubject: VO image list\nMIME-Version: 1.0\n" + ct + "\nX-Mailer: vmcaster"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := append([]byte(c.header+"\n\n"), body...)
			if err := opensslVerify(t, openssl, caDir, d, false); (err != nil) != c.opensslRefuses {
				t.Fatalf("openssl: want refusal %v, got %v", c.opensslRefuses, err)
			}
			refusedAs(t, caDir, appdbDN, appdbCA, d, "", "")
		})
	}
}

// TestSMIMESignerWithEVAttributes: an endorser whose subject has the attributes OpenSSL
// names but old tables did not (organizationIdentifier, businessCategory, jurisdictionC…)
// is matched by the dn openssl prints.
func TestSMIMESignerWithEVAttributes(t *testing.T) {
	openssl := requireTool(t, "openssl")
	caDir := t.TempDir()
	pki := newIGTFPKI(t, openssl, "igtf", appdbCA, caDir)
	subj := "/jurisdictionC=GR/jurisdictionST=Attica/jurisdictionL=Athens/businessCategory=Private Organization/serialNumber=123456/organizationIdentifier=VATGR-123456/C=GR/O=Example Research Network/CN=Robot:appdb@example.eu"
	pki.issue("endorser", subj, "", "")
	pki.install()
	out := pki.run("x509", "-noout", "-subject", "-nameopt", "compat", "-in", "endorser.pem")
	dn := strings.TrimPrefix(strings.TrimSpace(out), "subject=")
	// openssl ca orders the attributes by its policy; the dn is what it prints.
	for _, a := range strings.Split(strings.TrimPrefix(subj, "/"), "/") {
		if !strings.Contains(dn+"/", "/"+a+"/") {
			t.Fatalf("openssl prints %s, without %s", dn, a)
		}
	}
	doc := pki.sign("endorser", appdbListBytes(t, 1, dn))
	if err := opensslVerify(t, openssl, caDir, doc, false); err != nil {
		t.Fatal(err)
	}
	refusedAs(t, caDir, dn, appdbCA, doc, "", "")
}

// TestSMIMEOneLineEveryOpenSSLName: a certificate whose subject holds every attribute
// OpenSSL has a name for, and values in every string type, is printed by vmgate exactly as
// `openssl x509 -noout -subject -nameopt compat` prints it.
func TestSMIMEOneLineEveryOpenSSLName(t *testing.T) {
	openssl := requireTool(t, "openssl")
	str := func(tag int, b []byte) asn1.RawValue {
		return asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: b}
	}
	var rdns pkix.RDNSequence
	for _, oid := range smime.NamedOIDs() {
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: oid, Value: str(asn1.TagUTF8String, []byte("v"))}})
	}
	cn := asn1.ObjectIdentifier{2, 5, 4, 3}
	bmp := []byte{0, 'J', 0, 'o', 0, 's', 0, 0xe9}
	for _, v := range []asn1.RawValue{
		str(asn1.TagUTF8String, []byte("Jos\u00e9 / \x7f\x01")),
		str(asn1.TagPrintableString, []byte("Example Ltd.")),
		str(asn1.TagUTF8String, []byte("a+b\\c=d,e\"f")),
		str(asn1.TagIA5String, []byte("ops@example.org")),
		str(asn1.TagT61String, []byte("Jos\xe9")),
		str(30, bmp), // BMPString
		str(28, []byte{0, 0, 0, 'a', 0, 0, 0, 0xe9}), // UniversalString
		str(18, []byte("0123 456")),                  // NumericString
		str(asn1.TagBitString, []byte{0, 'b', 0xff}), // the unused-bits byte is printed too
		{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: []byte{0x0c, 0x01, 'x'}}, // not a string: its whole encoding
	} {
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{Type: cn, Value: v}})
	}
	// A multi-valued RDN and an OID OpenSSL has no name for.
	rdns = append(rdns, pkix.RelativeDistinguishedNameSET{
		{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: str(asn1.TagUTF8String, []byte("uid"))},
		{Type: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7, 1}, Value: str(asn1.TagUTF8String, []byte("private"))},
	})
	raw, err := asn1.Marshal(rdns)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: raw, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pemPath := writeTemp(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	out, err := runTool(t.TempDir(), os.Environ(), openssl, "x509", "-noout", "-subject", "-nameopt", "compat", "-in", pemPath)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimPrefix(strings.TrimRight(out, "\n"), "subject=")
	got, err := smime.OneLineRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		g, w := strings.Split(got, "/"), strings.Split(want, "/")
		for i := range min(len(g), len(w)) {
			if g[i] != w[i] {
				t.Errorf("attribute %d: vmgate %q, openssl %q", i, g[i], w[i])
			}
		}
		if len(g) != len(w) {
			t.Errorf("vmgate prints %d attributes, openssl %d", len(g), len(w))
		}
		t.FailNow()
	}
	t.Logf("%d attributes printed as openssl does", len(rdns))
}
