package endorse

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/vmgate/vmgate/internal/policy/verify"
)

func password(pw string) PasswordFunc {
	return func(bool) ([]byte, error) { return []byte(pw), nil }
}

func pemBlock(t testing.TB, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock(t, "PRIVATE KEY", der)
}

// TestLoadSigner: the keys an endorser has. Every key that loads must sign so that vmgate's
// verifier accepts the signature with the public key alone.
func TestLoadSigner(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(p256)
	pubDER, _ := x509.MarshalPKIXPublicKey(p256.Public())

	// cosign generate-key-pair: ECDSA P-256, encrypted with the password.
	generated, err := cosign.GenerateKeyPair(cosign.PassFunc(password("s3cret")))
	if err != nil {
		t.Fatal(err)
	}
	// cosign import-key-pair of an openssl key: the same format, another key type inside.
	opensslFile := filepath.Join(t.TempDir(), "rsa.pem")
	os.WriteFile(opensslFile, pkcs8(t, rsaKey), 0o600)
	imported, err := cosign.ImportKeyPair(opensslFile, cosign.PassFunc(password("s3cret")))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		key    []byte
		pw     PasswordFunc
		pub    []byte // the public key expected, when known
		refuse string // part of the refusal; "" when it loads
		fail   bool   // an error that is not a refusal
	}{
		{"cosign generate-key-pair", generated.PrivateBytes, password("s3cret"), generated.PublicBytes, "", false},
		{"cosign import-key-pair (rsa)", imported.PrivateBytes, password("s3cret"), imported.PublicBytes, "", false},
		{"openssl ecparam -genkey", plainKeyPEM(t), nil, nil, "", false},
		{"openssl ecparam -genkey -noout (SEC 1 only)", pemBlock(t, "EC PRIVATE KEY", ecDER), nil, pemBlock(t, "PUBLIC KEY", pubDER), "", false},
		{"PKCS#8 P-256 (openssl genpkey, pkcs8 -topk8 -nocrypt)", pkcs8(t, p256), nil, pemBlock(t, "PUBLIC KEY", pubDER), "", false},
		{"PKCS#1 RSA", pemBlock(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), nil, nil, "", false},

		{"cosign key, wrong password", generated.PrivateBytes, password("guess"), nil, "wrong password", false},
		{"cosign key, no password source", generated.PrivateBytes, nil, nil, "", true},
		{"cosign key, password fails", generated.PrivateBytes, func(bool) ([]byte, error) { return nil, errors.New("no terminal") }, nil, "", true},
		{"ed25519", pkcs8(t, edKey), nil, nil, "ECDSA (P-256) or RSA", false},
		{"openssl-encrypted PKCS#8", pemBlock(t, "ENCRYPTED PRIVATE KEY", []byte{0x30}), nil, nil, "import-key-pair", false},
		{"public key", generated.PublicBytes, nil, nil, "public key", false},
		{"certificate", pemBlock(t, "CERTIFICATE", []byte{0x30}), nil, nil, "not a private key", false},
		{"not PEM", []byte("hello"), nil, nil, "no private key", false},
		{"EC PARAMETERS only", pemBlock(t, "EC PARAMETERS", []byte{0x06}), nil, nil, "no private key", false},
		{"broken SEC 1", pemBlock(t, "EC PRIVATE KEY", []byte{0x30, 0x00}), nil, nil, "EC private key", false},
	}
	blob := []byte(`{"hv:imagelist":{}}`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadSigner(tc.key, tc.pw)
			switch {
			case tc.fail:
				if err == nil || errors.Is(err, ErrRefused) {
					t.Fatalf("want an error that is not a refusal, got %v", err)
				}
				return
			case tc.refuse != "":
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.refuse) {
					t.Fatalf("want a refusal containing %q, got %v", tc.refuse, err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if tc.pub != nil && !bytes.Equal(s.PublicKeyPEM(), tc.pub) {
				t.Errorf("public key\n%s\nwant\n%s", s.PublicKeyPEM(), tc.pub)
			}
			if !strings.HasPrefix(s.Fingerprint, "sha256:") || len(s.Fingerprint) != 7+64 {
				t.Errorf("fingerprint %q", s.Fingerprint)
			}
			sig, bundle, err := s.Sign(blob)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := verify.ParseKeys(s.PublicKeyPEM())
			if err != nil {
				t.Fatal(err)
			}
			if err := keys.VerifySignature(blob, sig); err != nil {
				t.Error(err)
			}
			if err := keys.VerifyBundle(blob, bundle); err != nil {
				t.Error(err)
			}
			if err := keys.VerifySignature(append(blob, ' '), sig); !errors.Is(err, verify.ErrInvalidSignature) {
				t.Errorf("signature verifies over other bytes: %v", err)
			}
		})
	}
}

// TestGenerateKeyPair: keygen's pair is what cosign reads as its own: cosign's loader opens
// the private key with the password, and its public half is the .pub written.
func TestGenerateKeyPair(t *testing.T) {
	priv, pub, err := GenerateKeyPair(password("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(priv); b == nil || b.Type != cosign.SigstorePrivateKeyPemType {
		t.Fatalf("private key is not a sigstore encrypted key:\n%s", priv)
	}
	sv, err := cosign.LoadPrivateKey(priv, []byte("pw"), nil)
	if err != nil {
		t.Fatalf("cosign cannot load it: %v", err)
	}
	pk, _ := sv.PublicKey()
	der, _ := x509.MarshalPKIXPublicKey(pk)
	if !bytes.Equal(pemBlock(t, "PUBLIC KEY", der), pub) {
		t.Fatalf("the .pub is not the key's public half:\n%s", pub)
	}
	if ec, ok := pk.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() {
		t.Fatalf("key is %T, want ECDSA P-256", pk)
	}
	if _, err := cosign.LoadPrivateKey(priv, []byte("other"), nil); err == nil {
		t.Fatal("cosign opens it with another password")
	}
	s, err := LoadSigner(priv, password("pw"))
	if err != nil || !bytes.Equal(s.PublicKeyPEM(), pub) {
		t.Fatalf("LoadSigner: %v", err)
	}
}

func TestWriteKeyPair(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "endorser")
	if err := WriteKeyPair(prefix, []byte("private"), []byte("public")); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"endorser.key": 0o600, "endorser.pub": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), mode)
		}
	}
	// Never replaced, whichever half exists.
	if err := WriteKeyPair(prefix, []byte("other"), []byte("other")); !errors.Is(err, ErrRefused) {
		t.Fatalf("second keygen: %v", err)
	}
	if got, _ := os.ReadFile(prefix + ".key"); string(got) != "private" {
		t.Fatal("the key was replaced")
	}
	os.Remove(prefix + ".key")
	if err := WriteKeyPair(prefix, []byte("other"), []byte("other")); !errors.Is(err, ErrRefused) {
		t.Fatalf("keygen over an existing .pub: %v", err)
	}
	if _, err := os.Stat(prefix + ".key"); err == nil {
		t.Fatal("a key was written beside a .pub it does not match")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}
