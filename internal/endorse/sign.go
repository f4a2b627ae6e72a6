package endorse

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/vmgate/vmgate/internal/atomicfile"
	"github.com/vmgate/vmgate/internal/policy/verify"
)

// PasswordFunc returns the password of an encrypted key; confirm asks for it twice (a new
// key). It is called only for keys that need one.
type PasswordFunc func(confirm bool) ([]byte, error)

// Signer signs lists as `cosign sign-blob --key` does.
type Signer struct {
	sv     signature.SignerVerifier
	pubPEM []byte
	// Fingerprint names the key in the history: "sha256:" and the hex SHA-256 of its public
	// key in PKIX DER, what `openssl pkey -pubin -outform der | sha256sum` prints.
	Fingerprint string
}

// LoadSigner reads a private key: an encrypted cosign key (`cosign generate-key-pair`,
// `cosign import-key-pair`, `vmgate endorse keygen`), or an unencrypted PEM key as openssl
// writes it (`openssl ecparam -genkey`: SEC 1 "EC PRIVATE KEY", after an optional "EC
// PARAMETERS" block; or PKCS#8 "PRIVATE KEY"). ECDSA and RSA keys sign with the hash that
// cosign would use for them (SHA-256 for P-256 and RSA).
func LoadSigner(keyPEM []byte, password PasswordFunc) (*Signer, error) {
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, refusef("no private key in PEM form found (want cosign.key, or an openssl EC key)")
		}
		switch b.Type {
		case "EC PARAMETERS":
			continue // openssl ecparam -genkey writes the curve's name first
		case cosign.CosignPrivateKeyPemType, cosign.SigstorePrivateKeyPemType:
			if password == nil {
				return nil, errors.New("the key is encrypted and no password was given")
			}
			pw, err := password(false)
			if err != nil {
				return nil, fmt.Errorf("key password: %w", err)
			}
			sv, err := cosign.LoadPrivateKey(pem.EncodeToMemory(b), pw, nil)
			if err != nil {
				return nil, refusef("cannot open the cosign key (wrong password?): %v", err)
			}
			return newSigner(sv)
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(b.Bytes)
			if err != nil {
				return nil, refusef("EC private key: %v", err)
			}
			return loadPlain(k)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, refusef("PKCS#8 private key: %v", err)
			}
			return loadPlain(k)
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
			if err != nil {
				return nil, refusef("RSA private key: %v", err)
			}
			return loadPlain(k)
		case "ENCRYPTED PRIVATE KEY":
			return nil, refusef("openssl-encrypted PKCS#8 keys are not supported: make it a cosign key with `cosign import-key-pair --key FILE`")
		case "PUBLIC KEY":
			return nil, refusef("this is a public key: sign with the private key (cosign.key)")
		default:
			return nil, refusef("PEM block %q is not a private key", b.Type)
		}
	}
}

// loadPlain accepts the key types whose signatures both cosign verify-blob and vmgate check
// with a plain --key: ECDSA and RSA. cosign itself cannot sign offline with Ed25519.
func loadPlain(k any) (*Signer, error) {
	switch k.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
	default:
		return nil, refusef("unsupported key type %T: use an ECDSA (P-256) or RSA key", k)
	}
	sv, err := signature.LoadDefaultSignerVerifier(k.(crypto.PrivateKey))
	if err != nil {
		return nil, refusef("unsupported key: %v", err)
	}
	return newSigner(sv)
}

func newSigner(sv signature.SignerVerifier) (*Signer, error) {
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if err := cryptoutils.ValidatePubKey(pub); err != nil {
		return nil, refusef("unsupported key: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return &Signer{
		sv:          sv,
		pubPEM:      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		Fingerprint: "sha256:" + hex.EncodeToString(sum[:]),
	}, nil
}

// PublicKeyPEM is the signer's public key, as cosign.pub holds it.
func (s *Signer) PublicKeyPEM() []byte { return bytes.Clone(s.pubPEM) }

// Sign returns what `cosign sign-blob --key K --tlog-upload=false` writes for blob: the
// detached signature (--output-signature: base64 of the ASN.1 signature, no newline) and the
// bundle (--bundle: cosign's JSON bundle holding only base64Signature, since nothing went to
// a transparency log). Before returning, it verifies both with vmgate's own verifier, so a
// signature that a site would refuse is never written.
func (s *Signer) Sign(blob []byte) (sig, bundle []byte, err error) {
	raw, err := s.sv.SignMessage(bytes.NewReader(blob))
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	b64 := base64.StdEncoding.EncodeToString(raw)
	bundle, err = json.Marshal(cosign.LocalSignedPayload{Base64Signature: b64})
	if err != nil {
		return nil, nil, fmt.Errorf("sign: bundle: %w", err)
	}
	sig = []byte(b64)
	keys, err := verify.ParseKeys(s.pubPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("sign: check: %w", err)
	}
	if err := keys.VerifySignature(blob, sig); err != nil {
		return nil, nil, fmt.Errorf("sign: the signature does not verify: %w", err)
	}
	if err := keys.VerifyBundle(blob, bundle); err != nil {
		return nil, nil, fmt.Errorf("sign: the bundle does not verify: %w", err)
	}
	return sig, bundle, nil
}

// GenerateKeyPair makes an ECDSA P-256 key pair in cosign's format: the private key
// encrypted with the password (scrypt and secretbox, "ENCRYPTED SIGSTORE PRIVATE KEY") and
// the public key in PEM, exactly as `cosign generate-key-pair` writes them.
func GenerateKeyPair(password PasswordFunc) (priv, pub []byte, err error) {
	kb, err := cosign.GenerateKeyPair(cosign.PassFunc(password))
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	return kb.PrivateBytes, kb.PublicBytes, nil
}

// WriteKeyPair writes prefix.key (0600) and prefix.pub (0644), refusing to replace either:
// overwriting an endorser's key by mistake would lose the key that sites trust.
func WriteKeyPair(prefix string, priv, pub []byte) error {
	keyPath, pubPath := prefix+".key", prefix+".pub"
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return refusef("%s exists: not replacing a key", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keygen: %w", err)
		}
	}
	if err := createNew(keyPath, priv, 0o600); err != nil {
		return err
	}
	if err := createNew(pubPath, pub, 0o644); err != nil {
		os.Remove(keyPath) // a private key without its public key is of no use to anyone
		return err
	}
	return nil
}

// createNew writes a file that must not exist yet: the content goes into a temporary file
// that is synced and then hard-linked to its name, which fails if the name was taken
// meanwhile, so a reader never sees half a key and an existing key is never replaced.
func createNew(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return refusef("%s exists: not replacing a key", path)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.SyncDir(dir)
}
