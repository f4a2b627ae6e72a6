package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/policytest"
	"github.com/vmgate/vmgate/internal/policy/smime"
)

// BenchmarkSMIMEList compares, for one list of 10,000 images, what an x509 subscription
// costs (S/MIME verification with chain and CRL, then the parse and the signer check) with a
// plain JSON decode of the same list and with the parse alone:
//
//	go test -run '^$' -bench BenchmarkSMIMEList -count 5 ./internal/policy/
func BenchmarkSMIMEList(b *testing.B) {
	const n = 10_000
	now := time.Now()
	l := policytest.List{Identifier: "bench", Version: "1", Created: now.Add(-time.Hour), Expires: now.Add(24 * time.Hour), Images: policytest.Images(n)}
	list := smime.Canonical(l.Bytes()) // as openssl smime -sign signs text
	doc, trust := benchSMIMESign(b, list, now)
	b.Run(fmt.Sprintf("images=%d/json-decode", n), func(b *testing.B) {
		b.SetBytes(int64(len(list)))
		for b.Loop() {
			var v any
			if err := json.Unmarshal(list, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(fmt.Sprintf("images=%d/parse", n), func(b *testing.B) {
		b.SetBytes(int64(len(list)))
		for b.Loop() {
			if _, err := Parse(list); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(fmt.Sprintf("images=%d/smime-verify-parse", n), func(b *testing.B) {
		b.SetBytes(int64(len(list)))
		for b.Loop() {
			got, _, err := VerifySMIMEList(doc, trust, now)
			if err != nil || len(got.Images) != n {
				b.Fatal(err)
			}
		}
	})
}

// benchSMIMESign makes a CA (in an IGTF directory, with a CRL) and the endorser certificate
// policytest's lists name, and signs list with it as a detached PKCS#7 in multipart/signed.
func benchSMIMESign(b *testing.B, list []byte, now time.Time) ([]byte, config.X509Trust) {
	b.Helper()
	dc := asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	name := func(cn string, org bool) pkix.Name {
		n := pkix.Name{ExtraNames: []pkix.AttributeTypeAndValue{{Type: dc, Value: "org"}, {Type: dc, Value: "example"}}}
		if org {
			n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Hosts"})
		}
		n.ExtraNames = append(n.ExtraNames, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn})
		return n
	}
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: name("Example Test CA", false), NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: name("images.example.org", true),
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}, ca, key.Public(), caKey)
	must(err)
	leaf, err := x509.ParseCertificate(leafDER)
	must(err)
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(24 * time.Hour)}, ca, caKey)
	must(err)
	dir := b.TempDir()
	must(os.WriteFile(filepath.Join(dir, "0a1b2c3d.0"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644))
	must(os.WriteFile(filepath.Join(dir, "0a1b2c3d.r0"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}), 0o644))

	sd, err := pkcs7.NewSignedData(list)
	must(err)
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	must(sd.AddSigner(leaf, key, pkcs7.SignerInfoConfig{}))
	sd.Detach()
	sig, err := sd.Finish()
	must(err)
	var w strings.Builder
	w.WriteString("MIME-Version: 1.0\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"----B\"\n\n")
	w.WriteString("This is an S/MIME signed message\n\n------B\n")
	w.Write(list)
	w.WriteString("\n------B\nContent-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\nContent-Transfer-Encoding: base64\n\n")
	w.WriteString(base64.StdEncoding.EncodeToString(sig))
	w.WriteString("\n\n------B--\n")
	return []byte(w.String()), config.X509Trust{CADir: dir, DN: "/DC=org/DC=example/O=Hosts/CN=images.example.org", CA: "/DC=org/DC=example/CN=Example Test CA"}
}
