package smime

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// The tests of the openssl fixtures verify at a fixed time, within their validity. The
// certificates made in Go are valid around the real time instead, since pkcs7 signs with
// the current time and the signing time must lie within the signer's validity.
var (
	testNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	pkiNow  = time.Now().UTC().Truncate(time.Second)
)

var (
	oidDC = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidO  = asn1.ObjectIdentifier{2, 5, 4, 10}
)

// dnName builds a pkix.Name in the given order from "/DC=org/…"-style pairs.
func dnName(t testing.TB, parts ...string) pkix.Name {
	t.Helper()
	var n pkix.Name
	for _, p := range parts {
		k, v, _ := strings.Cut(p, "=")
		var oid asn1.ObjectIdentifier
		switch k {
		case "DC":
			oid = oidDC
		case "CN":
			oid = oidCN
		case "O":
			oid = oidO
		default:
			t.Fatalf("dnName: %s", k)
		}
		n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: oid, Value: v})
	}
	return n
}

// testCA is a CA made in Go for the cases openssl fixtures cannot cover cheaply.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serial int64 = 100

func nextSerial() *big.Int { serial++; return big.NewInt(serial) }

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: dnName(t, "DC=org", "DC=example", "CN="+cn),
		NotBefore: pkiNow.Add(-365 * 24 * time.Hour), NotAfter: pkiNow.Add(3650 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key}
}

// subCA makes a CA under ca, as IGTF national CAs are under a root.
func (ca *testCA) subCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: dnName(t, "DC=org", "DC=example", "CN="+cn),
		NotBefore: pkiNow.Add(-300 * 24 * time.Hour), NotAfter: pkiNow.Add(3000 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key}
}

type leafOpts struct {
	cn                  string
	notBefore, notAfter time.Time
	keyUsage            x509.KeyUsage
}

func (ca *testCA) issue(t testing.TB, o leafOpts) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	if o.notBefore.IsZero() {
		o.notBefore = pkiNow.Add(-24 * time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = pkiNow.Add(365 * 24 * time.Hour)
	}
	if o.keyUsage == 0 {
		o.keyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: dnName(t, "DC=org", "DC=example", "O=Hosts", "CN="+o.cn),
		NotBefore: o.notBefore, NotAfter: o.notAfter, KeyUsage: o.keyUsage,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// crl writes the CA's CRL, revoking serials, valid until next.
func (ca *testCA) crl(t testing.TB, next time.Time, revoked ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: pkiNow.Add(-time.Hour)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: nextSerial(), ThisUpdate: pkiNow.Add(-time.Hour), NextUpdate: next, RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// caDir lays CAs out as IGTF does; a nil CRL leaves the CA without one.
func caDir(t testing.TB, cas map[*testCA][]byte) string {
	t.Helper()
	dir := t.TempDir()
	i := 0
	for ca, crl := range cas {
		base := fmt.Sprintf("%08x", 0xabc00000+i)
		i++
		pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
		if err := os.WriteFile(filepath.Join(dir, base+".0"), pemCert, 0o644); err != nil {
			t.Fatal(err)
		}
		if crl != nil {
			if err := os.WriteFile(filepath.Join(dir, base+".r0"), crl, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// What else an IGTF directory holds, which must be skipped.
	os.WriteFile(filepath.Join(dir, "Example.info"), []byte("alias = example\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "abcdef01.signing_policy"), []byte("access_id_CA X509 '/DC=org'\n"), 0o644)
	return dir
}

type signer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// signDoc signs content detached with smallstep/pkcs7 and wraps it as openssl does.
func signDoc(t testing.TB, content []byte, signers ...signer) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	for _, s := range signers {
		if err := sd.AddSigner(s.cert, s.key, pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return wrap(content, der)
}

// wrap builds a multipart/signed document around a signed part and a DER signature, in the
// layout openssl smime -sign writes (LF structure, base64 in 64 columns).
func wrap(part, der []byte) []byte {
	const boundary = "----7E1D2C3B4A5968778695A4B3C2D1E0F0"
	var b strings.Builder
	b.WriteString("MIME-Version: 1.0\n")
	b.WriteString(`Content-Type: multipart/signed; protocol="application/x-pkcs7-signature"; micalg="sha-256"; boundary="` + boundary + "\"\n\n")
	b.WriteString("This is an S/MIME signed message\n\n--" + boundary + "\n")
	b.Write(part)
	b.WriteString("\n--" + boundary + "\n")
	b.WriteString("Content-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"smime.p7s\"\n\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\n\n--" + boundary + "--\n\n")
	return []byte(b.String())
}

// randReader is crypto/rand under a name that keeps call sites short.
type randReader struct{}

func (randReader) Read(p []byte) (int, error) { return rand.Read(p) }
