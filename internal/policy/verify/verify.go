// Package verify checks cosign signatures over the exact bytes of an image list against an
// endorser's public keys, offline: no Rekor, no TUF, no network. It accepts what
// `cosign sign-blob --key` (v2.6.5) writes: a detached base64 signature, a legacy cosign
// bundle (--bundle) and a sigstore protobuf bundle (--bundle --new-bundle-format).
//
// Transparency-log entries and timestamps in bundles are ignored: they are neither checked
// nor ever taken in place of the signature. Keyless (Fulcio certificate) signatures are out
// of scope and refused.
//
// Security-critical (see internal/policy). This package links cosign, which costs tens of
// milliseconds at process start: the hook must not import it.
package verify

import (
	"bytes"
	"crypto"
	_ "crypto/sha512" // SHA-384 and SHA-512 digests of sigstore bundles
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
)

// Sentinel errors; every error of VerifySignature and VerifyBundle wraps exactly one of the
// first two, so callers can tell a forged or altered list from an unreadable signature.
var (
	// ErrInvalidSignature: the signature or bundle is well formed but does not verify the
	// list with any of the keys (altered list, other signer, or a bundle for other content).
	ErrInvalidSignature = errors.New("signature does not verify")
	// ErrMalformedSignature: the signature or bundle cannot be read (empty, not base64, not
	// a cosign or sigstore bundle, or the wrong kind of bundle).
	ErrMalformedSignature = errors.New("malformed signature")
	// ErrKeyless is wrapped, beside ErrInvalidSignature, when a bundle that no key verifies
	// carries a certificate: it was signed keyless, which vmgate does not accept.
	ErrKeyless = errors.New("keyless signing (a certificate in place of a key) is not supported: the endorser must sign with a key (cosign sign-blob --key)")
)

// VerifySignature checks sig, a detached signature as `cosign sign-blob --output-signature`
// writes it (base64; surrounding whitespace and line breaks are tolerated), over blob.
func (k *Keys) VerifySignature(blob, sig []byte) error {
	_, err := k.SignatureKey(blob, sig)
	return err
}

// SignatureKey is VerifySignature that also names the key that verified.
func (k *Keys) SignatureKey(blob, sig []byte) (string, error) {
	raw, err := decodeSignature(sig)
	if err != nil {
		return "", err
	}
	if kk := k.matchDetached(blob, raw); kk != nil {
		return kk.name, nil
	}
	return "", fmt.Errorf("%w with %s", ErrInvalidSignature, k)
}

// VerifyBundle checks bundle, as `cosign sign-blob --bundle` writes it, over blob. Both
// formats are accepted:
//   - the legacy cosign bundle (the default of cosign v2): {"base64Signature", "cert",
//     "rekorBundle"}; the signature is checked like a detached one.
//   - the sigstore protobuf bundle (--new-bundle-format; media type
//     application/vnd.dev.sigstore.bundle…): its messageDigest must be the digest of blob
//     and its signature must verify blob.
func (k *Keys) VerifyBundle(blob, bundle []byte) error {
	_, err := k.BundleKey(blob, bundle)
	return err
}

// BundleKey is VerifyBundle that also names the key that verified.
func (k *Keys) BundleKey(blob, bundle []byte) (string, error) {
	bundle = bytes.TrimSpace(bundle)
	if len(bundle) == 0 {
		return "", fmt.Errorf("%w: bundle is empty", ErrMalformedSignature)
	}
	// Tell the formats apart by their mandatory top-level keys, as cosign does by trying
	// the sigstore parser first.
	var top map[string]json.RawMessage
	if err := json.Unmarshal(bundle, &top); err != nil {
		return "", fmt.Errorf("%w: bundle is not a JSON object: %w", ErrMalformedSignature, err)
	}
	if _, ok := top["mediaType"]; ok {
		return k.sigstoreBundle(blob, bundle)
	}
	if _, ok := top["base64Signature"]; ok {
		return k.cosignBundle(blob, bundle)
	}
	return "", fmt.Errorf("%w: bundle is neither a cosign bundle (no base64Signature) nor a sigstore bundle (no mediaType)", ErrMalformedSignature)
}

// cosignBundle verifies a legacy bundle. Its rekorBundle (a signed log entry) is ignored.
func (k *Keys) cosignBundle(blob, bundle []byte) (string, error) {
	var p cosign.LocalSignedPayload
	if err := json.Unmarshal(bundle, &p); err != nil {
		return "", fmt.Errorf("%w: cosign bundle: %w", ErrMalformedSignature, err)
	}
	raw, err := decodeSignature([]byte(p.Base64Signature))
	if err != nil {
		return "", fmt.Errorf("cosign bundle: base64Signature: %w", err)
	}
	if kk := k.matchDetached(blob, raw); kk != nil {
		return kk.name, nil
	}
	if p.Cert != "" {
		// cosign writes the PEM certificate base64-encoded; older writers put the PEM itself.
		certPEM := []byte(p.Cert)
		if dec, err := base64.StdEncoding.DecodeString(p.Cert); err == nil {
			certPEM = dec
		}
		var der []byte
		if b, _ := pem.Decode(certPEM); b != nil {
			der = b.Bytes
		}
		return "", k.keyless("cosign bundle", der)
	}
	return "", fmt.Errorf("cosign bundle: %w with %s", ErrInvalidSignature, k)
}

// sigstoreBundle verifies a protobuf bundle. Its tlog entries and timestamps are ignored.
func (k *Keys) sigstoreBundle(blob, bundle []byte) (string, error) {
	// sigstore-go's parser is the one cosign verify-blob uses, so both agree on what a well
	// formed bundle is (known media type, verification material, content).
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(bundle); err != nil {
		return "", fmt.Errorf("%w: sigstore bundle: %w", ErrMalformedSignature, err)
	}
	ms := b.GetMessageSignature()
	if ms == nil {
		if b.GetDsseEnvelope() != nil {
			return "", fmt.Errorf("%w: sigstore bundle holds a DSSE attestation (cosign attest-blob), not a signature over the list (cosign sign-blob)", ErrMalformedSignature)
		}
		return "", fmt.Errorf("%w: sigstore bundle has no messageSignature", ErrMalformedSignature)
	}
	md := ms.GetMessageDigest()
	if md == nil || len(md.GetDigest()) == 0 {
		return "", fmt.Errorf("%w: sigstore bundle has no messageDigest", ErrMalformedSignature)
	}
	if len(ms.GetSignature()) == 0 {
		return "", fmt.Errorf("%w: sigstore bundle has an empty signature", ErrMalformedSignature)
	}
	h, name, err := protoHash(md.GetAlgorithm())
	if err != nil {
		return "", fmt.Errorf("%w: sigstore bundle: %w", ErrMalformedSignature, err)
	}
	// The digest is checked on its own, not only through the signature: the signature
	// covers the blob, but a bundle naming other content must not pass for this list's.
	hh := h.New()
	hh.Write(blob)
	if sum := hh.Sum(nil); !bytes.Equal(sum, md.GetDigest()) {
		return "", fmt.Errorf("sigstore bundle: %w: it signs %s:%s, the list is %s:%s (the bundle belongs to other content)",
			ErrInvalidSignature, name, short(md.GetDigest()), name, short(sum))
	}
	for _, kk := range k.keys {
		vs, err := bundleVerifiers(kk.pub, h)
		if err != nil {
			continue // this key cannot sign with h; another may
		}
		if verifyWith(vs, blob, ms.GetSignature()) {
			return kk.name, nil
		}
	}
	vm := b.GetVerificationMaterial()
	if c := vm.GetCertificate(); c != nil {
		return "", k.keyless("sigstore bundle", c.GetRawBytes())
	}
	if ch := vm.GetX509CertificateChain(); ch != nil && len(ch.GetCertificates()) > 0 {
		return "", k.keyless("sigstore bundle", ch.GetCertificates()[0].GetRawBytes())
	}
	hint := vm.GetPublicKey().GetHint()
	for _, kk := range k.keys {
		if hint != "" && hint == kk.hint {
			return "", fmt.Errorf("sigstore bundle: %w with %s, although the bundle names that key (%s)", ErrInvalidSignature, k, kk.name)
		}
	}
	if hint != "" {
		return "", fmt.Errorf("sigstore bundle: %w with %s (the bundle names another key, hint %s)", ErrInvalidSignature, k, hint)
	}
	return "", fmt.Errorf("sigstore bundle: %w with %s", ErrInvalidSignature, k)
}

// matchDetached returns the first key that verifies sig over blob, or nil.
func (k *Keys) matchDetached(blob, sig []byte) *key {
	for _, kk := range k.keys {
		if verifyWith(kk.detached, blob, sig) {
			return kk
		}
	}
	return nil
}

// keyless is the error for a bundle that no key verifies and that carries a certificate.
// The certificate is not trusted; its names only help the operator see what happened.
func (k *Keys) keyless(what string, der []byte) error {
	who := "an unknown signer"
	if cert, err := x509.ParseCertificate(der); err == nil {
		if ids := certIdentities(cert); ids != "" {
			who = ids
		}
	}
	return fmt.Errorf("%s: %w with %s; it carries a certificate for %s instead: %w", what, ErrInvalidSignature, k, who, ErrKeyless)
}

func certIdentities(c *x509.Certificate) string {
	var ids []string
	ids = append(ids, c.EmailAddresses...)
	for _, u := range c.URIs {
		ids = append(ids, u.String())
	}
	ids = append(ids, c.DNSNames...)
	if len(ids) == 0 && c.Subject.CommonName != "" {
		ids = append(ids, c.Subject.CommonName)
	}
	return strings.Join(ids, ", ")
}

// decodeSignature reads a base64 signature as cosign verify-blob does (standard encoding;
// line breaks inside are ignored by the decoder), after trimming surrounding whitespace.
// Raw binary signatures (sign-blob --b64=false) are refused: the detached signature that
// vmgate fetches beside a list is always base64.
func decodeSignature(sig []byte) ([]byte, error) {
	s := bytes.TrimSpace(sig)
	if len(s) == 0 {
		return nil, fmt.Errorf("%w: signature is empty", ErrMalformedSignature)
	}
	raw, err := base64.StdEncoding.DecodeString(string(s))
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64 (as cosign sign-blob writes it): %w", ErrMalformedSignature, err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: signature is empty", ErrMalformedSignature)
	}
	return raw, nil
}

// protoHash maps a bundle's digest algorithm to the hash cosign signed with.
func protoHash(a protocommon.HashAlgorithm) (crypto.Hash, string, error) {
	switch a {
	case protocommon.HashAlgorithm_SHA2_256:
		return crypto.SHA256, "sha256", nil
	case protocommon.HashAlgorithm_SHA2_384:
		return crypto.SHA384, "sha384", nil
	case protocommon.HashAlgorithm_SHA2_512:
		return crypto.SHA512, "sha512", nil
	}
	return 0, "", fmt.Errorf("unsupported messageDigest algorithm %s", a)
}

// short abbreviates a digest for messages; 12 hex digits tell two digests apart.
func short(d []byte) string {
	s := hex.EncodeToString(d)
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}
