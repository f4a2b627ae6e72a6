package smime

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// The fixtures in testdata/openssl were made by gen.sh with the openssl CLI.
const (
	fixtureDN = "/DC=org/DC=example/O=Hosts/CN=endorser.example.org"
	fixtureCA = "/DC=org/DC=example/CN=Example Test CA"
)

func fixtureTrust() Trust {
	return Trust{CADir: "testdata/openssl/certificates", DN: fixtureDN, CA: fixtureCA}
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata/openssl", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameJSON compares documents as JSON values: a verified list may come back in CRLF form.
func sameJSON(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("content is not JSON: %v\n%q", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("content differs from the list signed:\n%s\n%s", gb, wb)
	}
}

func TestVerifyOpenSSLModes(t *testing.T) {
	list := readFixture(t, "list.json")
	for _, mode := range []string{"default", "binary", "text"} {
		t.Run(mode, func(t *testing.T) {
			doc := readFixture(t, mode+".smime")
			r, err := Verify(doc, fixtureTrust(), testNow)
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, r.Content, list)
			if r.SignerDN != fixtureDN || r.IssuerDN != fixtureCA || r.Canonical {
				t.Fatalf("result %+v", r)
			}
			// The same document after a trip through a tool that drops CRs: the default and
			// -text forms still verify, in canonical form; -binary signed LF and still does.
			lf := bytes.ReplaceAll(doc, []byte("\r\n"), []byte("\n"))
			r, err = Verify(lf, fixtureTrust(), testNow)
			if err != nil {
				t.Fatalf("LF copy: %v", err)
			}
			sameJSON(t, r.Content, list)
			if r.Canonical != (mode != "binary") {
				t.Fatalf("LF copy: canonical %v", r.Canonical)
			}
			// And a copy in CRLF throughout (a Windows or mail hop) verifies too, except
			// -binary, which signed LF bytes that no longer exist.
			crlf := Canonical(lf)
			_, err = Verify(crlf, fixtureTrust(), testNow)
			if mode == "binary" {
				if !errors.Is(err, ErrBadSignature) {
					t.Fatalf("CRLF copy of a -binary signature: want ErrBadSignature, got %v", err)
				}
			} else if err != nil {
				t.Fatalf("CRLF copy: %v", err)
			}
		})
	}
}

func TestVerifyOpenSSLRefusals(t *testing.T) {
	doc := readFixture(t, "default.smime")
	tampered := bytes.Replace(doc, []byte(`"hv:version": "20261101"`), []byte(`"hv:version": "20261102"`), 1)
	if bytes.Equal(tampered, doc) {
		t.Fatal("fixture changed: nothing to tamper with")
	}
	lfDir := t.TempDir() // the CA without its CRL
	ca, _ := filepath.Glob("testdata/openssl/certificates/*.0")
	data, _ := os.ReadFile(ca[0])
	os.WriteFile(filepath.Join(lfDir, filepath.Base(ca[0])), data, 0o644)

	for _, c := range []struct {
		name  string
		doc   []byte
		trust Trust
		now   time.Time
		want  error
		text  string
	}{
		{"tampered", tampered, fixtureTrust(), testNow, ErrBadSignature, "altered after signing"},
		{"wrong dn", doc, Trust{CADir: fixtureTrust().CADir, DN: "/DC=org/DC=example/O=Hosts/CN=other.example.org", CA: fixtureCA}, testNow, ErrSignerMismatch, "signed by " + fixtureDN},
		{"wrong ca", doc, Trust{CADir: fixtureTrust().CADir, DN: fixtureDN, CA: "/DC=org/DC=example/CN=Other CA"}, testNow, ErrSignerMismatch, "issued by " + fixtureCA},
		{"revoked", readFixture(t, "revoked.smime"), Trust{CADir: fixtureTrust().CADir, DN: "/DC=org/DC=example/O=Hosts/CN=revoked.example.org", CA: fixtureCA}, testNow, ErrRevoked, "was revoked by " + fixtureCA},
		{"no crl", doc, Trust{CADir: lfDir, DN: fixtureDN, CA: fixtureCA}, testNow, ErrCRL, "run fetch-crl"},
		{"expired", doc, fixtureTrust(), testNow.AddDate(150, 0, 0), ErrExpired, "expired at"},
		{"not yet valid", doc, fixtureTrust(), testNow.AddDate(-1, 0, 0), ErrExpired, "valid only from"},
		{"no ca dir", doc, Trust{CADir: t.TempDir(), DN: fixtureDN, CA: fixtureCA}, testNow, ErrCADir, "no self-signed CA certificate"},
		{"missing ca dir", doc, Trust{CADir: "/nonexistent/certificates", DN: fixtureDN, CA: fixtureCA}, testNow, ErrCADir, "no such file"},
		{"not smime", readFixture(t, "list.json"), fixtureTrust(), testNow, ErrMalformed, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Verify(c.doc, c.trust, c.now)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("want %v containing %q, got %v", c.want, c.text, err)
			}
		})
	}
}

func TestVerifyGoPKI(t *testing.T) {
	ca := newTestCA(t, "Go Test CA")
	other := newTestCA(t, "Unknown CA")
	good, goodKey := ca.issue(t, leafOpts{cn: "endorser.example.org"})
	second, secondKey := ca.issue(t, leafOpts{cn: "second.example.org"})
	expired, expiredKey := ca.issue(t, leafOpts{cn: "endorser.example.org", notBefore: pkiNow.Add(-48 * time.Hour), notAfter: pkiNow.Add(-time.Hour)})
	stranger, strangerKey := other.issue(t, leafOpts{cn: "endorser.example.org"})
	noSign, noSignKey := ca.issue(t, leafOpts{cn: "endorser.example.org", keyUsage: x509.KeyUsageKeyEncipherment})
	content := []byte(`{"hv:imagelist": {}}`)
	trust := func(dir string) Trust {
		return Trust{CADir: dir, DN: "/DC=org/DC=example/O=Hosts/CN=endorser.example.org", CA: "/DC=org/DC=example/CN=Go Test CA"}
	}
	fresh := pkiNow.Add(7 * 24 * time.Hour)
	dir := caDir(t, map[*testCA][]byte{ca: ca.crl(t, fresh)})

	r, err := Verify(signDoc(t, content, signer{good, goodKey}), trust(dir), pkiNow)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Content, content) || r.SignerDN != trust(dir).DN || r.IssuerDN != trust(dir).CA {
		t.Fatalf("result %+v", r)
	}

	for _, c := range []struct {
		name string
		doc  []byte
		dir  string
		want error
		text string
	}{
		{"two signers", signDoc(t, content, signer{good, goodKey}, signer{second, secondKey}), dir, ErrUntrusted, "2 signers"},
		{"expired signer", signDoc(t, content, signer{expired, expiredKey}), dir, ErrExpired, ""},
		{"unknown ca", signDoc(t, content, signer{stranger, strangerKey}), dir, ErrUntrusted, "does not chain to a self-signed CA"},
		{"key usage without signing", signDoc(t, content, signer{noSign, noSignKey}), dir, ErrUntrusted, "key usage"},
		{"expired crl", signDoc(t, content, signer{good, goodKey}), caDir(t, map[*testCA][]byte{ca: ca.crl(t, pkiNow.Add(-time.Minute))}), ErrCRL, "expired at"},
		{"crl of another ca", signDoc(t, content, signer{good, goodKey}), caDir(t, map[*testCA][]byte{ca: other.crl(t, fresh)}), ErrCRL, "another CA"},
		{"revoked", signDoc(t, content, signer{good, goodKey}), caDir(t, map[*testCA][]byte{ca: ca.crl(t, fresh, good.SerialNumber)}), ErrRevoked, "revoked"},
		{"no crl", signDoc(t, content, signer{good, goodKey}), caDir(t, map[*testCA][]byte{ca: nil}), ErrCRL, "fetch-crl"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Verify(c.doc, trust(c.dir), pkiNow)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("want %v containing %q, got %v", c.want, c.text, err)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	good := readFixture(t, "default.smime")
	for _, c := range []struct{ name, doc, text string }{
		{"empty", "", "the document is empty"},
		{"json", `{"hv:imagelist": {}}`, "this is a JSON document, not an S/MIME signed list"},
		{"json with bom", "\ufeff\n[{}]", "this is a JSON document"},
		{"html", "<!DOCTYPE html>\n<html><body>Sign in</body></html>", "this is an HTML or XML page"},
		{"pem", "-----BEGIN PKCS7-----\nMIIB\n-----END PKCS7-----\n", "this is a PEM file (PKCS7"},
		{"der", "\x30\x82\x05\x6f\x06\x09", "binary DER"},
		{"signature alone", "Content-Type: application/pkcs7-signature\n\nAAAA\n", "a detached signature alone"},
		{"encrypted", "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\nContent-Transfer-Encoding: base64\n\nAAAA\n", "encrypted S/MIME message"},
		{"opaque not base64", "Content-Type: application/pkcs7-mime; smime-type=signed-data\n\nAAAA\n", "want base64"},
		{"unclosed comment", "MIME-Version: 1.0 (oops\n" + string(good), "MIME-Version"},
		{"not multipart", "Content-Type: text/plain\n\nhello\n", "not multipart/signed"},
		{"other protocol", "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=b\n\n--b\nx\n--b\ny\n--b--\n", "protocol"},
		{"no boundary", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"\n\n", "boundary"},
		{"unclosed", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\n\n--b\nx\n--b\ny\n", "closing boundary"},
		{"one part", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\n\n--b\nx\n--b--\n", "1 parts"},
		{"three parts", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\n\n--b\nx\n--b\ny\n--b\nz\n--b--\n", "more than two"},
		{"signature not base64", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\n\n--b\nx\n--b\nContent-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\n!!!\n--b--\n", "not base64"},
		{"signature not pkcs7 type", "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\n\n--b\nx\n--b\nContent-Type: text/plain\n\nabc\n--b--\n", "want application/pkcs7-signature"},
		{"mime version", "MIME-Version: 2.0\n" + string(good), "MIME-Version"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("want ErrMalformed containing %q, got %v", c.text, err)
			}
		})
	}
	// A signature that is base64 but not PKCS#7, and one that embeds its content.
	cases := map[string][]byte{
		"garbage signature": wrap([]byte("{}"), []byte("not a pkcs7 structure")),
	}
	for name, doc := range cases {
		if _, err := Verify(doc, fixtureTrust(), testNow); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: want ErrMalformed, got %v", name, err)
		}
	}
}

func TestSignedPartBytes(t *testing.T) {
	// The line break before a delimiter belongs to it; everything else is the part's.
	doc := "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=\"b\"\r\n\r\npreamble\r\n--b  \r\n{\r\n}\r\n\r\n--b\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\nepilogue"
	m, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Signed) != "{\r\n}\r\n" {
		t.Fatalf("signed part %q", m.Signed)
	}
}

func TestContentOfTextEntity(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"{}", "{}", ""},
		{"\r\n {}", "\r\n {}", ""},
		{"Content-Type: text/plain\r\n\r\n{}\r\n", "{}\r\n", ""},
		{"Content-Type: application/json; charset=utf-8\n\n{}", "{}", ""},
		{"Content-Type: text/html\n\n{}", "", "Content-Type"},
		{"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\ne30=", "", "Content-Transfer-Encoding"},
		{"", "", "empty"},
	} {
		got, err := content([]byte(c.in))
		if c.err != "" {
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: want error %q, got %v", c.in, c.err, err)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("%q: got %q, %v", c.in, got, err)
		}
	}
}

func TestOneLine(t *testing.T) {
	// The openssl fixture's subject and issuer as `openssl x509 -nameopt compat` printed them.
	want := strings.Split(strings.TrimSpace(string(readFixture(t, "endorser.subject"))), "\n")
	if len(want) != 2 || want[0] != "subject="+fixtureDN || want[1] != "issuer="+fixtureCA {
		t.Fatalf("fixture endorser.subject: %q", want)
	}

	// Every attribute type IGTF subjects use, an unknown OID, non-ASCII bytes, RDN order.
	name := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, Value: "org"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "NL"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 8}, Value: "Noord-Holland"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 7}, Value: "Amsterdam"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Example"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 11}, Value: "Hosts"},
		{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: "ops@example.org"},
		{Type: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Value: "x"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "Jos\u00e9/host"},
	}}
	ca := newTestCA(t, "Name CA")
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: name, NotBefore: testNow, NotAfter: testNow.Add(time.Hour)}
	der, err := x509.CreateCertificate(randReader{}, tmpl, ca.cert, ca.key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	const wantDN = `/DC=org/C=NL/ST=Noord-Holland/L=Amsterdam/O=Example/OU=Hosts/emailAddress=ops@example.org/1.3.6.1.4.1.99999.1=x/CN=Jos\xC3\xA9\/host`
	got, err := OneLineRaw(c.RawSubject)
	if err != nil || got != wantDN {
		t.Fatalf("OneLineRaw:\n got %s\nwant %s (%v)", got, wantDN, err)
	}
	if got := OneLine(c.Subject); got != wantDN {
		t.Fatalf("OneLine:\n got %s\nwant %s", got, wantDN)
	}
	// A multi-valued RDN is joined by '+', as OpenSSL 3.0 prints it; '+' in a value is
	// escaped.
	rdns := pkix.RDNSequence{
		{{Type: oidDC, Value: "org"}},
		{{Type: oidCN, Value: "a+b"}, {Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, Value: "uid"}},
	}
	raw, _ := asn1.Marshal(rdns)
	if got, err := OneLineRaw(raw); err != nil || got != `/DC=org/CN=a\+b+UID=uid` {
		t.Fatalf("multi-valued RDN: %s (%v)", got, err)
	}
	if _, err := OneLineRaw([]byte{0x30, 0x03, 0x01}); err == nil {
		t.Fatal("OneLineRaw accepts garbage")
	}
}

// FuzzParse feeds untrusted documents to the MIME parser and, for what it accepts, to the
// PKCS#7 and certificate checks against the fixture CA directory.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"default.smime", "binary.smime", "text.smime"} {
		f.Add(readFixture(f, name))
	}
	cas, err := LoadCADir(fixtureTrust().CADir)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		m, err := Parse(doc)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error without ErrMalformed: %v", err)
			}
			return
		}
		if len(m.Signature) > MaxSignatureBytes {
			t.Fatalf("signature of %d bytes accepted", len(m.Signature))
		}
		r, err := cas.verify(m, fixtureTrust(), testNow)
		if err == nil && len(r.Content) == 0 {
			t.Fatal("verified with no content")
		}
	})
}

// TestHeaderForms: the document's header is not signed, so the openssl fixture rewritten
// in every form RFC 2045 and RFC 5322 allow still verifies: comments, folded lines, names
// and values in any case, quoted and unquoted parameters, CRLF, a byte order mark.
func TestHeaderForms(t *testing.T) {
	doc := readFixture(t, "default.smime")
	hdr, body, ok := bytes.Cut(doc, []byte("\n\n"))
	if !ok {
		t.Fatal("fixture without header")
	}
	m, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(strings.TrimPrefix(strings.Split(string(hdr), "\n")[1], "Content-Type: "))
	b := params["boundary"]
	for _, c := range []struct{ name, header string }{
		{"as openssl writes it", string(hdr)},
		{"comment after the version", "MIME-Version: 1.0 (Created by vmcaster)\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"" + b + "\""},
		{"comments everywhere", "MIME-Version: (produced by) 1.(minor)0 (x (nested) y)\nContent-Type: multipart/signed (detached); protocol=\"application/x-pkcs7-signature\" (S/MIME); boundary=\"" + b + "\""},
		{"folded", "MIME-Version: 1.0\nContent-Type: multipart/signed;\n\tprotocol=\"application/pkcs7-signature\";\n micalg=sha-256;\n\tboundary=\"" + b + "\""},
		{"case", "mime-version: 1.0\ncontent-TYPE: Multipart/Signed; PROTOCOL=\"Application/X-PKCS7-Signature\"; MicAlg=SHA-256; Boundary=\"" + b + "\""},
		{"unquoted boundary", "Content-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; boundary=" + b},
		{"quoted pair in a comment", "MIME-Version: 1.0 (a \\) b)\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; boundary=\"" + b + "\""},
		{"other fields", "From: vmcaster@example.org\nSubject: image list (signed)\nMIME-Version: 1.0\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; boundary=\"" + b + "\"\nX-Mailer: vmcaster"},
		{"crlf", strings.ReplaceAll("MIME-Version: 1.0 (Created by vmcaster)\nContent-Type: multipart/signed;\n protocol=\"application/x-pkcs7-signature\"; boundary=\""+b+"\"", "\n", "\r\n") + "\r"},
		{"byte order mark", "\ufeffMIME-Version: 1.0\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; boundary=\"" + b + "\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := append(append([]byte(c.header), "\n\n"...), body...)
			got, err := Parse(d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Signed, m.Signed) || !bytes.Equal(got.Signature, m.Signature) {
				t.Fatal("another signed part or signature than the fixture's")
			}
			if _, err := Verify(d, fixtureTrust(), testNow); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStructured(t *testing.T) {
	for in, want := range map[string]string{
		"1.0":                             "1.0",
		" 1.0 (Created by vmcaster) ":     "1.0",
		"1.(minor)0":                      "1.0",
		"multipart/signed(x);a=b":         "multipart/signed;a=b",
		"(a(b)c)1.0":                      "1.0",
		`text/plain; a="(not a comment)"`: `text/plain; a="(not a comment)"`,
		`1.0 (esc \) still comment)`:      "1.0",
		"1.0 (unclosed":                   "1.0 (unclosed",
	} {
		if got := structured(in); got != want {
			t.Errorf("structured(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestByteOrderMark: a list saved with a byte order mark before its JSON verifies and comes
// back without it (RFC 8259 lets a parser ignore it; encoding/json does not).
func TestByteOrderMark(t *testing.T) {
	ca := newTestCA(t, "Go Test CA")
	leaf, key := ca.issue(t, leafOpts{cn: "endorser.example.org"})
	dir := caDir(t, map[*testCA][]byte{ca: ca.crl(t, pkiNow.Add(time.Hour))})
	trust := Trust{CADir: dir, DN: "/DC=org/DC=example/O=Hosts/CN=endorser.example.org", CA: "/DC=org/DC=example/CN=Go Test CA"}
	for _, content := range []string{"\ufeff{\"hv:imagelist\": {}}", "Content-Type: text/plain\r\n\r\n\ufeff{\"hv:imagelist\": {}}"} {
		r, err := Verify(signDoc(t, []byte(content), signer{leaf, key}), trust, pkiNow)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Content) != `{"hv:imagelist": {}}` {
			t.Fatalf("content %q", r.Content)
		}
	}
}

// TestIntermediateCA: a CA directory with a root and an intermediate under it, each with
// its CRL, as IGTF lays out national CAs under a root. The chain must reach the root, and
// the intermediate is checked against the root's CRL (OpenSSL's -crl_check_all).
func TestIntermediateCA(t *testing.T) {
	root := newTestCA(t, "Go Root CA")
	inter := root.subCA(t, "Go Intermediate CA")
	leaf, key := inter.issue(t, leafOpts{cn: "endorser.example.org"})
	fresh := pkiNow.Add(7 * 24 * time.Hour)
	content := []byte(`{"hv:imagelist": {}}`)
	doc := signDoc(t, content, signer{leaf, key})
	trust := func(dir string) Trust {
		return Trust{CADir: dir, DN: "/DC=org/DC=example/O=Hosts/CN=endorser.example.org", CA: "/DC=org/DC=example/CN=Go Intermediate CA"}
	}
	if _, err := Verify(doc, trust(caDir(t, map[*testCA][]byte{root: root.crl(t, fresh), inter: inter.crl(t, fresh)})), pkiNow); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cas  map[*testCA][]byte
		want error
		text string
	}{
		{"intermediate revoked by the root", map[*testCA][]byte{root: root.crl(t, fresh, inter.cert.SerialNumber), inter: inter.crl(t, fresh)}, ErrRevoked, "CA certificate /DC=org/DC=example/CN=Go Intermediate CA"},
		{"root revokes itself", map[*testCA][]byte{root: root.crl(t, fresh, root.cert.SerialNumber), inter: inter.crl(t, fresh)}, ErrRevoked, "Go Root CA"},
		{"signer revoked by the intermediate", map[*testCA][]byte{root: root.crl(t, fresh), inter: inter.crl(t, fresh, leaf.SerialNumber)}, ErrRevoked, "the signer certificate"},
		{"no root crl", map[*testCA][]byte{root: nil, inter: inter.crl(t, fresh)}, ErrCRL, "Go Root CA"},
		{"root crl expired", map[*testCA][]byte{root: root.crl(t, pkiNow.Add(-time.Minute)), inter: inter.crl(t, fresh)}, ErrCRL, "expired at"},
		{"no intermediate crl", map[*testCA][]byte{root: root.crl(t, fresh), inter: nil}, ErrCRL, "Go Intermediate CA"},
		{"no root in ca_dir", map[*testCA][]byte{inter: inter.crl(t, fresh)}, ErrCADir, "no self-signed CA"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Verify(doc, trust(caDir(t, c.cas)), pkiNow)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
				t.Fatalf("want %v containing %q, got %v", c.want, c.text, err)
			}
		})
	}
	// The root of another directory does not make the intermediate an anchor.
	other := newTestCA(t, "Go Other Root")
	_, err := Verify(doc, trust(caDir(t, map[*testCA][]byte{other: other.crl(t, fresh), inter: inter.crl(t, fresh)})), pkiNow)
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "does not chain to a self-signed CA") {
		t.Fatalf("intermediate without its root: %v", err)
	}
}

// TestWeakDigest: a signature over SHA-1 is refused as weak, not as altered.
func TestWeakDigest(t *testing.T) {
	ca := newTestCA(t, "Go Test CA")
	leaf, key := ca.issue(t, leafOpts{cn: "endorser.example.org"})
	dir := caDir(t, map[*testCA][]byte{ca: ca.crl(t, pkiNow.Add(time.Hour))})
	sd, err := pkcs7.NewSignedData([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)
	if err := sd.AddSigner(leaf, key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(wrap([]byte(`{}`), der), Trust{CADir: dir, DN: "/DC=org/DC=example/O=Hosts/CN=endorser.example.org", CA: "/DC=org/DC=example/CN=Go Test CA"}, pkiNow)
	if !errors.Is(err, ErrWeakAlgorithm) || !strings.Contains(strings.ToLower(err.Error()), "sha1") {
		t.Fatalf("want ErrWeakAlgorithm naming sha1, got %v", err)
	}
}

// TestParseV1CRL: a v1 CRL made by openssl (testdata/openssl/v1.crl), which crypto/x509
// alone refuses, is read with its entries, and its signature checks over its own bytes;
// altered, it does not.
func TestParseV1CRL(t *testing.T) {
	b, _ := pem.Decode(readFixture(t, "v1.crl"))
	c, _ := pem.Decode(readFixture(t, "v1-ca.pem"))
	ca, err := x509.ParseCertificate(c.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseRevocationList(b.Bytes); err == nil {
		t.Fatal("crypto/x509 reads v1 CRLs now: parseCRL's workaround can go")
	}
	crl, tbs, err := parseCRL(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Text(16) != "1000" || !bytes.Equal(crl.RawIssuer, ca.RawSubject) {
		t.Fatalf("crl %+v", crl)
	}
	if err := ca.CheckSignature(crl.SignatureAlgorithm, tbs, crl.Signature); err != nil {
		t.Fatal(err)
	}
	altered := bytes.Clone(tbs)
	altered[len(altered)-1] ^= 1
	if err := ca.CheckSignature(crl.SignatureAlgorithm, altered, crl.Signature); err == nil {
		t.Fatal("signature checks over altered bytes")
	}
	if _, _, err := parseCRL([]byte{0x30, 0x03, 0x02, 0x01, 0x05}); err == nil {
		t.Fatal("garbage parsed")
	}
}
