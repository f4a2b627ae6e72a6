package smime

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// Sentinel errors: every error of Verify wraps exactly one of them, so that the caller can
// give each its own refusal reason and advice.
var (
	// ErrMalformed: the document is not an S/MIME multipart/signed list vmgate can read.
	ErrMalformed = errors.New("malformed S/MIME document")
	// ErrBadSignature: the signature does not verify over the signed part (the list was
	// altered after signing).
	ErrBadSignature = errors.New("S/MIME signature does not verify")
	// ErrWeakAlgorithm: the signature, or the signer's certificate, uses a digest whose
	// collisions can be forged (SHA-1, MD5, MD4, MD2): refused whatever it signs.
	ErrWeakAlgorithm = errors.New("weak signature algorithm")
	// ErrUnsupported: the signature is in a form vmgate does not verify (a digest or
	// padding the PKCS#7 library does not implement, such as SHA-224 or RSA-PSS, or a
	// signer named by subject key identifier). It is neither accepted nor called altered.
	ErrUnsupported = errors.New("unsupported S/MIME signature")
	// ErrUntrusted: the signer's certificate does not chain to a CA in ca_dir, or it is not
	// fit to sign, or there is not exactly one signer.
	ErrUntrusted = errors.New("signer is not trusted")
	// ErrExpired: a certificate of the chain is outside its validity period now, or was
	// at the signing time the signature claims.
	ErrExpired = errors.New("certificate not valid now")
	// ErrRevoked: the CRL of a CA of the chain lists a certificate of the chain.
	ErrRevoked = errors.New("certificate revoked")
	// ErrCRL: a CA of the chain has no CRL in ca_dir that vmgate can use: missing,
	// unreadable, not signed by the CA, or past its nextUpdate. Fail closed.
	ErrCRL = errors.New("no current CRL")
	// ErrSignerMismatch: the signer is not the configured endorser (subject dn or issuer ca).
	ErrSignerMismatch = errors.New("signer is not the subscribed endorser")
	// ErrCADir: ca_dir cannot be read or holds no CA certificate.
	ErrCADir = errors.New("ca_dir unusable")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Trust is what a subscription pins: the IGTF CA directory and the endorser's certificate
// subject and issuer in OpenSSL's one-line form.
type Trust struct {
	CADir string // /etc/grid-security/certificates: <hash>.N certificates, <hash>.rN CRLs
	DN    string // the signer's subject, "/DC=…/CN=host"
	CA    string // the signer's issuer, "/DC=…/CN=CA"
}

// Result is a verified list.
type Result struct {
	// Content is the list (JSON) as signed: the signed part, without its MIME header if it
	// has one, in the line endings the signature was verified over.
	Content []byte
	// SignerDN and IssuerDN are the signer certificate's subject and issuer, one-line form.
	SignerDN, IssuerDN string
	// NotAfter is when the signer's certificate expires.
	NotAfter time.Time
	// Canonical reports that the signature verified over the part converted to CRLF line
	// endings rather than over its bytes as served.
	Canonical bool
}

// Verify checks an S/MIME signed document against t at time now and returns the signed list.
// Nothing of the list is interpreted here; the caller parses Content, and must then check
// that the list's hv:dn and hv:ca are SignerDN and IssuerDN.
func Verify(doc []byte, t Trust, now time.Time) (*Result, error) {
	cas, err := LoadCADir(t.CADir)
	if err != nil {
		return nil, err
	}
	m, err := Parse(doc)
	if err != nil {
		return nil, err
	}
	return cas.verify(m, t, now)
}

func (cas *CADir) verify(m *Message, t Trust, now time.Time) (*Result, error) {
	p7, err := pkcs7.Parse(m.Signature)
	if err != nil {
		return nil, malformed("signature part is not a PKCS#7 signature: %v", err)
	}
	if len(p7.Certificates) > MaxCertificates {
		return nil, malformed("signature carries %d certificates, more than %d", len(p7.Certificates), MaxCertificates)
	}
	part := m.Signed
	if m.Opaque {
		if len(p7.Content) == 0 {
			return nil, malformed("the opaque PKCS#7 signature carries no content: it is detached, and the list it signs is missing")
		}
		part = p7.Content
	} else if len(p7.Content) != 0 {
		return nil, malformed("the PKCS#7 signature carries content of its own: a multipart/signed signature must be detached")
	}
	if n := len(p7.Signers); n != 1 {
		if n == 0 && signedBySubjectKeyID(m.Signature) {
			return nil, fmt.Errorf("%w: the signer is named by subject key identifier (openssl cms -sign -keyid), which vmgate does not read: ask the endorser to sign without -keyid (by issuer and serial number, openssl smime -sign's default)", ErrUnsupported)
		}
		if n == 0 {
			return nil, malformed("the PKCS#7 signature has no signer vmgate can read")
		}
		return nil, fmt.Errorf("%w: the list has %d signers; vmgate requires exactly one, the endorser", ErrUntrusted, n)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return nil, malformed("the signature does not carry the signer's certificate")
	}
	subject, err := OneLineRaw(signer.RawSubject)
	if err != nil {
		return nil, malformed("signer certificate subject: %v", err)
	}
	issuer, err := OneLineRaw(signer.RawIssuer)
	if err != nil {
		return nil, malformed("signer certificate issuer: %v", err)
	}
	si := p7.Signers[0]
	if err := checkAlgorithms(si.DigestAlgorithm.Algorithm, si.DigestEncryptionAlgorithm.Algorithm, signer, subject); err != nil {
		return nil, err
	}

	// The signature, over the part as served and then in canonical CRLF form: openssl signs
	// text in CRLF form unless given -binary, and a copy of the file may have lost its CRs.
	// An opaque signature carries the very bytes it signed.
	signed, canon, err := verifySignature(p7, part, !m.Opaque)
	if err != nil {
		return nil, err
	}

	if err := cas.verifyChain(signer, p7.Certificates, subject, now); err != nil {
		return nil, err
	}
	if subject != t.DN {
		return nil, fmt.Errorf("%w: signed by %s, the subscription's dn is %s", ErrSignerMismatch, subject, t.DN)
	}
	if issuer != t.CA {
		return nil, fmt.Errorf("%w: signer %s was issued by %s, the subscription's ca is %s", ErrSignerMismatch, subject, issuer, t.CA)
	}
	body, err := content(signed)
	if err != nil {
		return nil, err
	}
	return &Result{Content: body, SignerDN: subject, IssuerDN: issuer, NotAfter: signer.NotAfter, Canonical: canon}, nil
}

// Digests whose collisions can be forged, alone or inside a signature algorithm OID.
var weakDigests = map[string]bool{
	"1.2.840.113549.2.2":   true, // md2
	"1.2.840.113549.2.4":   true, // md4
	"1.2.840.113549.2.5":   true, // md5
	"1.3.14.3.2.26":        true, // sha1
	"1.2.840.113549.1.1.2": true, // md2WithRSAEncryption
	"1.2.840.113549.1.1.3": true, // md4WithRSAEncryption
	"1.2.840.113549.1.1.4": true, // md5WithRSAEncryption
	"1.2.840.113549.1.1.5": true, // sha1WithRSAEncryption
	"1.3.14.3.2.29":        true, // sha1WithRSA (OIW)
	"1.2.840.10045.4.1":    true, // ecdsa-with-SHA1
	"1.2.840.10040.4.3":    true, // dsa-with-sha1
	"1.3.14.3.2.27":        true, // dsaWithSHA1 (OIW)
}

// Digests the PKCS#7 library verifies: anything else it would report as a failed
// verification, which a refusal must not call an alteration.
var supportedDigests = map[string]bool{
	"2.16.840.1.101.3.4.2.1": true, // sha256
	"2.16.840.1.101.3.4.2.2": true, // sha384
	"2.16.840.1.101.3.4.2.3": true, // sha512
}

const oidRSASSAPSS = "1.2.840.113549.1.1.10"

// checkAlgorithms refuses a weak digest in the signature or in the signer certificate's
// own signature (SHA-1 and MD5 are refused however OpenSSL's security level is set), and
// names a digest or padding the library cannot verify.
func checkAlgorithms(digest, sigAlg asn1.ObjectIdentifier, signer *x509.Certificate, subject string) error {
	d, a := digest.String(), sigAlg.String()
	if weakDigests[d] || weakDigests[a] {
		return fmt.Errorf("%w: the list is signed with %s, whose collisions can be forged; vmgate refuses it: ask the endorser to re-sign with SHA-256 (openssl smime -sign -md sha256)", ErrWeakAlgorithm, algName(digest, sigAlg))
	}
	switch signer.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return fmt.Errorf("%w: the signer certificate %s is signed by its CA with %s; vmgate refuses it: the endorser needs a certificate signed with SHA-256", ErrWeakAlgorithm, subject, signer.SignatureAlgorithm)
	}
	if a == oidRSASSAPSS {
		return fmt.Errorf("%w: the list is signed with RSASSA-PSS padding (openssl cms -keyopt rsa_padding_mode:pss), which vmgate does not verify: ask the endorser to sign with PKCS#1 v1.5 padding, openssl smime -sign's default", ErrUnsupported)
	}
	if !supportedDigests[d] {
		return fmt.Errorf("%w: the list is signed with the digest %s, which vmgate does not verify: ask the endorser to sign with SHA-256, SHA-384 or SHA-512 (openssl smime -sign -md sha256)", ErrUnsupported, algName(digest, nil))
	}
	return nil
}

// algName names a signature's digest (and its signature algorithm, when that names a
// digest too) as OpenSSL does.
func algName(digest, sigAlg asn1.ObjectIdentifier) string {
	name := func(oid asn1.ObjectIdentifier) string {
		if n, ok := openSSLNames[oid.String()]; ok {
			return n.long
		}
		return oid.String()
	}
	if sigAlg != nil && weakDigests[sigAlg.String()] {
		return name(sigAlg)
	}
	return name(digest)
}

func verifySignature(p7 *pkcs7.PKCS7, part []byte, tryCanonical bool) ([]byte, bool, error) {
	candidates := [][]byte{part}
	if c := Canonical(part); tryCanonical && !bytes.Equal(c, part) {
		candidates = append(candidates, c)
	}
	var first error
	for i, c := range candidates {
		p7.Content = c
		err := p7.Verify() // the signature only: the chain is built below, at now
		if err == nil {
			return c, i > 0, nil
		}
		var ste *pkcs7.SigningTimeNotValidError
		if errors.As(err, &ste) {
			return nil, false, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		if errors.Is(err, pkcs7.ErrUnsupportedAlgorithm) || strings.HasPrefix(err.Error(), "pkcs7: unsupported") {
			return nil, false, fmt.Errorf("%w: %v: ask the endorser to sign with RSA or ECDSA and SHA-256 (openssl smime -sign's default)", ErrUnsupported, err)
		}
		if first == nil {
			first = err
		}
	}
	return nil, false, fmt.Errorf("%w over the signed part: the list was altered after signing (%v)", ErrBadSignature, first)
}

// signedBySubjectKeyID reports whether a DER PKCS#7 SignedData names a signer by subject
// key identifier (CMS SignerIdentifier [0]), which github.com/smallstep/pkcs7 drops
// silently, leaving no signer.
func signedBySubjectKeyID(der []byte) bool {
	var ci struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		return false
	}
	var sd asn1.RawValue
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil || sd.Tag != asn1.TagSequence {
		return false
	}
	// The last element of SignedData is signerInfos, a SET.
	var last asn1.RawValue
	for rest := sd.Bytes; len(rest) > 0; {
		var err error
		if rest, err = asn1.Unmarshal(rest, &last); err != nil {
			return false
		}
	}
	if last.Class != asn1.ClassUniversal || last.Tag != asn1.TagSet {
		return false
	}
	for rest := last.Bytes; len(rest) > 0; {
		var si, version, sid asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &si); err != nil {
			return false
		}
		in, err := asn1.Unmarshal(si.Bytes, &version)
		if err != nil {
			return false
		}
		if _, err := asn1.Unmarshal(in, &sid); err != nil {
			return false
		}
		if sid.Class == asn1.ClassContextSpecific && sid.Tag == 0 {
			return true
		}
	}
	return false
}

// verifyChain builds the signer's chain at now to a self-signed CA of ca_dir, through the
// signature's other certificates and the intermediate CAs of ca_dir, and checks every
// certificate of it against its issuer's CRL, the root against its own, as
// `openssl smime -verify -CApath ca_dir -crl_check_all` does. Any extended key usage is
// accepted: IGTF host certificates carry serverAuth and clientAuth, rarely
// emailProtection, and what makes a certificate the endorser's here is the pinned subject
// and issuer, not a usage bit. A key usage extension, when present, must allow signatures.
func (cas *CADir) verifyChain(signer *x509.Certificate, certs []*x509.Certificate, subject string, now time.Time) error {
	if now.Before(signer.NotBefore) {
		return fmt.Errorf("%w: signer certificate %s is valid only from %s", ErrExpired, subject, signer.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(signer.NotAfter) {
		return fmt.Errorf("%w: signer certificate %s expired at %s", ErrExpired, subject, signer.NotAfter.UTC().Format(time.RFC3339))
	}
	if ku := signer.KeyUsage; ku != 0 && ku&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fmt.Errorf("%w: signer certificate %s may not sign (key usage)", ErrUntrusted, subject)
	}
	inter := cas.intermediates.Clone()
	for _, c := range certs {
		if c != signer {
			inter.AddCert(c)
		}
	}
	chains, err := signer.Verify(x509.VerifyOptions{
		Roots: cas.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var cie x509.CertificateInvalidError
		if errors.As(err, &cie) && cie.Reason == x509.Expired {
			return fmt.Errorf("%w: chain of %s: %v", ErrExpired, subject, err)
		}
		if strings.Contains(err.Error(), "insecure algorithm") {
			return fmt.Errorf("%w: a CA certificate of the chain of %s is signed with a weak digest (%v): vmgate refuses it", ErrWeakAlgorithm, subject, err)
		}
		return fmt.Errorf("%w: %s does not chain to a self-signed CA in %s: %v", ErrUntrusted, subject, cas.dir, err)
	}
	// A chain is good when each of its certificates passes its issuer's CRL; one good
	// chain suffices (a CA may be reachable by cross-signing as well). The first failure
	// is reported.
	var first error
	for _, chain := range chains {
		err := cas.checkCRLs(chain, now)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// checkCRLs checks every certificate of chain, which ends at a self-signed root, against
// its issuer's CRL: the signer's CA's, each intermediate CA's issuer's, and the root's
// own for the root (OpenSSL's -crl_check_all).
func (cas *CADir) checkCRLs(chain []*x509.Certificate, now time.Time) error {
	crls := map[*x509.Certificate]*x509.RevocationList{}
	for i, cert := range chain {
		ca := cert
		if i+1 < len(chain) {
			ca = chain[i+1]
		}
		name, _ := OneLineRaw(cert.RawSubject)
		caName, _ := OneLineRaw(ca.RawSubject)
		crl, ok := crls[ca]
		if !ok {
			var err error
			if crl, err = cas.crl(ca, caName, name, now); err != nil {
				return err
			}
			crls[ca] = crl
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				what := "the signer certificate"
				if i > 0 {
					what = "CA certificate"
				}
				return fmt.Errorf("%w: %s %s (serial %s) was revoked by %s at %s", ErrRevoked, what, name, cert.SerialNumber.Text(16), caName, e.RevocationTime.UTC().Format(time.RFC3339))
			}
		}
	}
	return nil
}

// crl reads and checks the CRL of ca, <hash>.rN beside the CA's <hash>.N in ca_dir: issued
// and signed by the CA, current at now. A v1 CRL (no extensions, as `openssl ca -gencrl`
// writes without crl_extensions) is read as well as a v2 one.
func (cas *CADir) crl(ca *x509.Certificate, caName, name string, now time.Time) (*x509.RevocationList, error) {
	base, ok := cas.files[string(ca.Raw)]
	if !ok {
		return nil, fmt.Errorf("%w: CA %s, issuer of %s, is not in %s, so its CRL cannot be found: install it there", ErrCRL, caName, name, cas.dir)
	}
	crlPath := crlPathFor(base)
	data, err := os.ReadFile(crlPath)
	if err != nil {
		return nil, fmt.Errorf("%w for CA %s: %v (run fetch-crl)", ErrCRL, caName, err)
	}
	if p, _ := pem.Decode(data); p != nil {
		data = p.Bytes
	}
	crl, tbs, err := parseCRL(data)
	if err != nil {
		return nil, fmt.Errorf("%w for CA %s: %s: %v", ErrCRL, caName, crlPath, err)
	}
	if !bytes.Equal(crl.RawIssuer, ca.RawSubject) {
		return nil, fmt.Errorf("%w for CA %s: %s is the CRL of another CA", ErrCRL, caName, crlPath)
	}
	if ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, fmt.Errorf("%w for CA %s: the CA's key usage does not allow it to sign CRLs", ErrCRL, caName)
	}
	switch crl.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return nil, fmt.Errorf("%w for CA %s: %s is signed with %s, a weak digest vmgate refuses", ErrCRL, caName, crlPath, crl.SignatureAlgorithm)
	}
	if err := ca.CheckSignature(crl.SignatureAlgorithm, tbs, crl.Signature); err != nil {
		return nil, fmt.Errorf("%w for CA %s: %s is not signed by the CA: %v", ErrCRL, caName, crlPath, err)
	}
	if now.Before(crl.ThisUpdate) {
		return nil, fmt.Errorf("%w for CA %s: %s is valid only from %s (check this host's clock)", ErrCRL, caName, crlPath, crl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if crl.NextUpdate.IsZero() {
		return nil, fmt.Errorf("%w for CA %s: %s has no nextUpdate", ErrCRL, caName, crlPath)
	}
	if now.After(crl.NextUpdate) {
		return nil, fmt.Errorf("%w for CA %s: %s expired at %s (is fetch-crl running?)", ErrCRL, caName, crlPath, crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return crl, nil
}

// parseCRL parses a DER CRL and returns the to-be-signed bytes its signature covers.
// crypto/x509 reads only v2 CRLs; a v1 CRL differs from a v2 one without extensions only by
// the absent version field, so it is parsed with version 2 inserted, and its signature is
// then checked over the original bytes.
func parseCRL(der []byte) (*x509.RevocationList, []byte, error) {
	crl, err := x509.ParseRevocationList(der)
	if err == nil {
		return crl, crl.RawTBSRevocationList, nil
	}
	var outer struct {
		TBS    asn1.RawValue
		SigAlg asn1.RawValue
		Sig    asn1.RawValue
	}
	if rest, uerr := asn1.Unmarshal(der, &outer); uerr != nil || len(rest) != 0 {
		return nil, nil, err
	}
	var first asn1.RawValue
	if _, uerr := asn1.Unmarshal(outer.TBS.Bytes, &first); uerr != nil || first.Tag == asn1.TagInteger {
		return nil, nil, err // not a v1 CRL: the version is there, Go's error stands
	}
	v2 := append([]byte{0x02, 0x01, 0x01}, outer.TBS.Bytes...) // INTEGER 1: v2
	tbs, merr := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: v2})
	if merr != nil {
		return nil, nil, err
	}
	body := append(append(tbs, outer.SigAlg.FullBytes...), outer.Sig.FullBytes...)
	whole, merr := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if merr != nil {
		return nil, nil, err
	}
	crl, err2 := x509.ParseRevocationList(whole)
	if err2 != nil {
		return nil, nil, fmt.Errorf("v1 CRL: %w", err2)
	}
	if len(crl.Extensions) != 0 {
		return nil, nil, errors.New("v1 CRL with extensions")
	}
	return crl, outer.TBS.FullBytes, nil
}

// CADir is an IGTF trust directory: CA certificates as <hash>.N (PEM or DER), their CRLs as
// <hash>.rN beside them. The hash itself is not recomputed: the CRL of the CA read from
// <hash>.N is <hash>.rN, as fetch-crl and the IGTF distribution lay them out. Only its
// self-signed CAs anchor a chain; its other CAs (intermediates, such as a national CA
// under a root) are links a chain may go through, as for OpenSSL.
type CADir struct {
	dir           string
	roots         *x509.CertPool
	intermediates *x509.CertPool
	files         map[string]string // certificate DER → path of the file it came from
}

var caFileRE = regexp.MustCompile(`^[0-9a-f]{8}\.[0-9]+$`)

// maxCAFile bounds one CA file; IGTF CA certificates are a few kilobytes.
const maxCAFile = 1 << 20

// LoadCADir reads the CA certificates of dir. Files that are not certificates are skipped
// (a trust directory holds .pem, .info, .signing_policy and .namespaces files too); no
// self-signed CA certificate at all is an error.
func LoadCADir(dir string) (*CADir, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCADir, err)
	}
	cas := &CADir{dir: dir, roots: x509.NewCertPool(), intermediates: x509.NewCertPool(), files: map[string]string{}}
	nroots := 0
	for _, e := range entries {
		if !caFileRE.MatchString(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p) // follows the symlinks IGTF packages install
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxCAFile {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if b, _ := pem.Decode(data); b != nil {
			if b.Type != "CERTIFICATE" {
				continue
			}
			data = b.Bytes
		}
		c, err := x509.ParseCertificate(data)
		if err != nil || !c.IsCA {
			continue
		}
		if selfSigned(c) {
			cas.roots.AddCert(c)
			nroots++
		} else {
			cas.intermediates.AddCert(c)
		}
		cas.files[string(c.Raw)] = p
	}
	if nroots == 0 {
		return nil, fmt.Errorf("%w: %s holds no self-signed CA certificate named <hash>.0", ErrCADir, dir)
	}
	return cas, nil
}

// selfSigned tells a root from an intermediate as OpenSSL does (X509_self_signed without
// the signature check): the subject is the issuer and the key identifiers, when both are
// present, agree. The self-signature is not verified: trust in a root comes from its
// place in ca_dir, and old IGTF roots are self-signed with SHA-1.
func selfSigned(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawSubject, c.RawIssuer) {
		return false
	}
	return len(c.AuthorityKeyId) == 0 || len(c.SubjectKeyId) == 0 || bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId)
}

// crlPathFor maps /dir/abcd1234.0 to /dir/abcd1234.r0.
func crlPathFor(certPath string) string {
	dir, name := filepath.Split(certPath)
	i := strings.LastIndexByte(name, '.')
	return filepath.Join(dir, name[:i]+".r"+name[i+1:])
}
