package verify

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Keys are an endorser's public keys. A signature is valid if any of them verifies it.
// Keys never change after they are made, so one value may serve concurrent verifications.
type Keys struct {
	keys []*key
}

// key is one public key and the ways cosign may have signed with it.
type key struct {
	name string // where it came from, for messages: a file path or "key #n"
	pub  crypto.PublicKey
	// hint is what cosign writes into a sigstore bundle to name the key:
	// base64(sha256(PKIX DER)). It is not authenticated; it only improves messages.
	hint string
	// detached verify detached signatures and legacy bundles, which do not say which hash was
	// used (see detachedVerifiers).
	detached []signature.Verifier
}

// LoadKeys reads PEM public keys from files: cosign.pub as `cosign generate-key-pair` writes
// it, or what `openssl ec -pubout` / `openssl pkey -pubout` write (ECDSA P-256/P-384/P-521,
// RSA 2048/3072/4096, Ed25519). A file may hold several keys, one PEM block each.
func LoadKeys(paths ...string) (*Keys, error) {
	if len(paths) == 0 {
		return nil, errors.New("no public key given")
	}
	var ks Keys
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		parsed, err := parsePEM(p, raw)
		if err != nil {
			return nil, fmt.Errorf("public key %s: %w", p, err)
		}
		ks.keys = append(ks.keys, parsed...)
	}
	return &ks, nil
}

// ParseKeys is LoadKeys for keys already in memory; messages name them "key #1", "key #2"…
// in the order given.
func ParseKeys(pems ...[]byte) (*Keys, error) {
	if len(pems) == 0 {
		return nil, errors.New("no public key given")
	}
	var ks Keys
	for i, raw := range pems {
		name := fmt.Sprintf("key #%d", i+1)
		parsed, err := parsePEM(name, raw)
		if err != nil {
			return nil, fmt.Errorf("public key %s: %w", name, err)
		}
		ks.keys = append(ks.keys, parsed...)
	}
	return &ks, nil
}

// Names are the keys' names (file paths, or "key #n"), in order.
func (k *Keys) Names() []string {
	names := make([]string, len(k.keys))
	for i, kk := range k.keys {
		names[i] = kk.name
	}
	return names
}

// String describes the keys for messages: "the key a.pub" or "any of 2 keys (a.pub, b.pub)".
func (k *Keys) String() string {
	switch len(k.keys) {
	case 0: // only a zero Keys; LoadKeys and ParseKeys refuse to make one
		return "no key at all"
	case 1:
		return "the key " + k.keys[0].name
	}
	return fmt.Sprintf("any of %d keys (%s)", len(k.keys), strings.Join(k.Names(), ", "))
}

// parsePEM reads every PEM block of one input. Anything but a public key is refused with a
// reason, because the usual mistakes (giving cosign.key, or a Fulcio certificate) would
// otherwise surface much later as "signature does not verify".
func parsePEM(name string, raw []byte) ([]*key, error) {
	var blocks []*pem.Block
	for rest := raw; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, errors.New("no PEM data: want a public key in PEM (-----BEGIN PUBLIC KEY-----), as cosign generate-key-pair or openssl ec -pubout write")
	}
	var keys []*key
	for i, b := range blocks {
		kname := name
		if len(blocks) > 1 {
			kname = fmt.Sprintf("%s#%d", name, i+1)
		}
		switch {
		case b.Type == "PUBLIC KEY" || b.Type == "RSA PUBLIC KEY":
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("PEM block %d is a private key (%s): give the public key (cosign.pub, or openssl ec -pubout)", i+1, b.Type)
		case b.Type == "CERTIFICATE":
			return nil, fmt.Errorf("PEM block %d is a certificate: keyless (certificate) verification is not supported, give the endorser's public key", i+1)
		default:
			return nil, fmt.Errorf("PEM block %d is a %q, not a public key", i+1, b.Type)
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem.EncodeToMemory(b))
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", i+1, err)
		}
		kk, err := newKey(kname, pub)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", i+1, err)
		}
		keys = append(keys, kk)
	}
	return keys, nil
}

func newKey(name string, pub crypto.PublicKey) (*key, error) {
	// The same checks cosign applies when it imports or generates a key: no short RSA, no
	// odd curves.
	if err := cryptoutils.ValidatePubKey(pub); err != nil {
		return nil, fmt.Errorf("unsupported key: %w", err)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return nil, fmt.Errorf("unsupported key: %w", err)
	}
	sum := sha256.Sum256(der)
	kk := &key{name: name, pub: pub, hint: base64.StdEncoding.EncodeToString(sum[:])}
	if kk.detached, err = detachedVerifiers(pub); err != nil {
		return nil, fmt.Errorf("unsupported key: %w", err)
	}
	return kk, nil
}

// detachedVerifiers are the verifiers for a signature that does not name its hash (a
// detached .sig, a legacy cosign bundle). They accept exactly the union of:
//   - what `cosign sign-blob --key` writes: the key's default algorithm in sigstore's
//     registry (ECDSA P-256/SHA-256, P-384/SHA-384, P-521/SHA-512, RSA PKCS#1 v1.5/SHA-256),
//     pure Ed25519 with --tlog-upload=false and Ed25519ph when the signature went to Rekor;
//   - what `cosign verify-blob --key` checks by default: the same key with SHA-256
//     (--signature-digest-algorithm defaults to sha256), which is also what
//     `openssl dgst -sha256 -sign` makes.
func detachedVerifiers(pub crypto.PublicKey) ([]signature.Verifier, error) {
	if _, ok := pub.(ed25519.PublicKey); ok {
		return ed25519Verifiers(pub)
	}
	def, err := signature.GetDefaultAlgorithmDetails(pub)
	if err != nil {
		return nil, err
	}
	hashes := []crypto.Hash{def.GetHashType()}
	if hashes[0] != crypto.SHA256 {
		hashes = append(hashes, crypto.SHA256)
	}
	return hashVerifiers(pub, hashes...)
}

// bundleVerifiers are the verifiers for a sigstore bundle whose message digest was made
// with h: the bundle names its hash, so only that one is tried.
func bundleVerifiers(pub crypto.PublicKey, h crypto.Hash) ([]signature.Verifier, error) {
	if _, ok := pub.(ed25519.PublicKey); ok {
		return ed25519Verifiers(pub)
	}
	return hashVerifiers(pub, h)
}

func hashVerifiers(pub crypto.PublicKey, hashes ...crypto.Hash) ([]signature.Verifier, error) {
	vs := make([]signature.Verifier, 0, len(hashes))
	for _, h := range hashes {
		v, err := signature.LoadVerifier(pub, h)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// ed25519Verifiers: Ed25519 signs the message itself; cosign uses pure Ed25519 offline and
// Ed25519ph (over SHA-512) when it uploads to Rekor, and the signature does not say which.
func ed25519Verifiers(pub crypto.PublicKey) ([]signature.Verifier, error) {
	edPub := pub.(ed25519.PublicKey)
	pure, err := signature.LoadED25519Verifier(edPub)
	if err != nil {
		return nil, err
	}
	ph, err := signature.LoadED25519phVerifier(edPub)
	if err != nil {
		return nil, err
	}
	return []signature.Verifier{pure, ph}, nil
}

// verifyWith reports whether any of vs verifies sig over blob.
func verifyWith(vs []signature.Verifier, blob, sig []byte) bool {
	for _, v := range vs {
		if v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(blob)) == nil {
			return true
		}
	}
	return false
}
