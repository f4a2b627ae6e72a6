package smime

import (
	"bytes"
	"crypto/x509"
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
	// altered after signing) or uses an algorithm vmgate refuses (SHA-1).
	ErrBadSignature = errors.New("S/MIME signature does not verify")
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
	if len(p7.Content) != 0 {
		return nil, malformed("the PKCS#7 signature carries content of its own: a multipart/signed signature must be detached")
	}
	if n := len(p7.Signers); n != 1 {
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

	// The signature, over the part as served and then in canonical CRLF form: openssl signs
	// text in CRLF form unless given -binary, and a copy of the file may have lost its CRs.
	signed, canon, err := verifySignature(p7, m.Signed)
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

func verifySignature(p7 *pkcs7.PKCS7, part []byte) ([]byte, bool, error) {
	candidates := [][]byte{part}
	if c := Canonical(part); !bytes.Equal(c, part) {
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
		if first == nil {
			first = err
		}
	}
	return nil, false, fmt.Errorf("%w over the signed part (altered after signing, or a refused algorithm): %v", ErrBadSignature, first)
}

// verifyChain builds the signer's chain to a CA of ca_dir at now and checks every link
// against its CA's CRL. Any extended key usage is accepted: IGTF host certificates carry
// serverAuth and clientAuth, rarely emailProtection, and what makes a certificate the
// endorser's here is the pinned subject and issuer, not a usage bit. A key usage extension,
// when present, must allow signatures.
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
	inter := x509.NewCertPool()
	for _, c := range certs {
		if c != signer {
			inter.AddCert(c)
		}
	}
	chains, err := signer.Verify(x509.VerifyOptions{
		Roots: cas.pool, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		var cie x509.CertificateInvalidError
		if errors.As(err, &cie) && cie.Reason == x509.Expired {
			return fmt.Errorf("%w: chain of %s: %v", ErrExpired, subject, err)
		}
		return fmt.Errorf("%w: %s does not chain to a CA in %s: %v", ErrUntrusted, subject, cas.dir, err)
	}
	// A chain is good when each of its links passes its CA's CRL; one good chain suffices
	// (a CA may be reachable by cross-signing as well). The first failure is reported.
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

func (cas *CADir) checkCRLs(chain []*x509.Certificate, now time.Time) error {
	for i := 0; i+1 < len(chain); i++ {
		cert, ca := chain[i], chain[i+1]
		name, _ := OneLineRaw(cert.RawSubject)
		caName, _ := OneLineRaw(ca.RawSubject)
		base, ok := cas.files[string(ca.Raw)]
		if !ok {
			return fmt.Errorf("%w: CA %s, issuer of %s, is not in %s, so its CRL cannot be found: install it there", ErrCRL, caName, name, cas.dir)
		}
		crlPath := crlPathFor(base)
		data, err := os.ReadFile(crlPath)
		if err != nil {
			return fmt.Errorf("%w for CA %s: %v (run fetch-crl)", ErrCRL, caName, err)
		}
		if p, _ := pem.Decode(data); p != nil {
			data = p.Bytes
		}
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return fmt.Errorf("%w for CA %s: %s: %v", ErrCRL, caName, crlPath, err)
		}
		if !bytes.Equal(crl.RawIssuer, ca.RawSubject) {
			return fmt.Errorf("%w for CA %s: %s is the CRL of another CA", ErrCRL, caName, crlPath)
		}
		if err := crl.CheckSignatureFrom(ca); err != nil {
			return fmt.Errorf("%w for CA %s: %s is not signed by the CA: %v", ErrCRL, caName, crlPath, err)
		}
		if crl.NextUpdate.IsZero() {
			return fmt.Errorf("%w for CA %s: %s has no nextUpdate", ErrCRL, caName, crlPath)
		}
		if now.After(crl.NextUpdate) {
			return fmt.Errorf("%w for CA %s: %s expired at %s (is fetch-crl running?)", ErrCRL, caName, crlPath, crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return fmt.Errorf("%w: %s (serial %s) was revoked by %s at %s", ErrRevoked, name, cert.SerialNumber.Text(16), caName, e.RevocationTime.UTC().Format(time.RFC3339))
			}
		}
	}
	return nil
}

// CADir is an IGTF trust directory: CA certificates as <hash>.N (PEM or DER), their CRLs as
// <hash>.rN beside them. The hash itself is not recomputed: the CRL of the CA read from
// <hash>.N is <hash>.rN, as fetch-crl and the IGTF distribution lay them out.
type CADir struct {
	dir   string
	pool  *x509.CertPool
	files map[string]string // certificate DER → path of the file it came from
}

var caFileRE = regexp.MustCompile(`^[0-9a-f]{8}\.[0-9]+$`)

// maxCAFile bounds one CA file; IGTF CA certificates are a few kilobytes.
const maxCAFile = 1 << 20

// LoadCADir reads the CA certificates of dir. Files that are not certificates are skipped
// (a trust directory holds .pem, .info, .signing_policy and .namespaces files too); no
// certificate at all is an error.
func LoadCADir(dir string) (*CADir, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCADir, err)
	}
	cas := &CADir{dir: dir, pool: x509.NewCertPool(), files: map[string]string{}}
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
		cas.pool.AddCert(c)
		cas.files[string(c.Raw)] = p
	}
	if len(cas.files) == 0 {
		return nil, fmt.Errorf("%w: %s holds no CA certificate named <hash>.0", ErrCADir, dir)
	}
	return cas, nil
}

// crlPathFor maps /dir/abcd1234.0 to /dir/abcd1234.r0.
func crlPathFor(certPath string) string {
	dir, name := filepath.Split(certPath)
	i := strings.LastIndexByte(name, '.')
	return filepath.Join(dir, name[:i]+".r"+name[i+1:])
}
