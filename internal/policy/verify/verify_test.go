package verify

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
	"google.golang.org/protobuf/encoding/protojson"
)

// The list every test signs; the golden files in testdata/cosign sign this one.
func testList(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/cosign/imagelist.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testKey is a key pair made in the test; signing goes through sigstore's signer, the one
// cosign sign-blob uses, so the signatures have cosign's shape.
type testKey struct {
	priv crypto.Signer
	sv   signature.SignerVerifier
	hash crypto.Hash // what cosign would name in a sigstore bundle
	pem  []byte
}

func newTestKey(t testing.TB, alg string) testKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	var opts []signature.LoadOption
	switch alg {
	case "p256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "rsa2048":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa1024":
		priv, err = rsa.GenerateKey(rand.Reader, 1024)
	case "ed25519", "ed25519ph":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
		if alg == "ed25519ph" {
			opts = append(opts, sigopts.WithED25519ph())
		}
	default:
		t.Fatalf("unknown key algorithm %q", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	tk := testKey{priv: priv, pem: pemBytes}
	if alg == "rsa1024" {
		return tk // refused by ParseKeys; never signs
	}
	// LoadDefaultSignerVerifier is what cosign.LoadPrivateKey calls for sign-blob --key.
	if tk.sv, err = signature.LoadDefaultSignerVerifier(priv, opts...); err != nil {
		t.Fatal(err)
	}
	details, err := signature.GetDefaultAlgorithmDetails(priv.Public(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	tk.hash = details.GetHashType()
	if tk.hash == 0 { // pure Ed25519 names no hash; cosign cannot make a bundle for it
		tk.hash = crypto.SHA512
	}
	return tk
}

func (tk testKey) keys(t testing.TB) *Keys {
	t.Helper()
	k, err := ParseKeys(tk.pem)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign returns the raw signature over blob.
func (tk testKey) sign(t testing.TB, blob []byte) []byte {
	t.Helper()
	sig, err := tk.sv.SignMessage(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// detached is what sign-blob --output-signature writes.
func (tk testKey) detached(t testing.TB, blob []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(tk.sign(t, blob)))
}

// legacyBundle is what sign-blob --bundle writes (cosign v2's default format).
func legacyBundle(t testing.TB, p cosign.LocalSignedPayload) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sigstoreBundle builds a bundle the way sign-blob --new-bundle-format does (sign_blob.go):
// a public key hint, or the certificate when certDER is given.
func sigstoreBundle(t testing.TB, tk testKey, blob []byte, certDER []byte, mutate func(*protobundle.Bundle)) []byte {
	t.Helper()
	var hint string
	if certDER == nil {
		pub, err := tk.sv.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(der)
		hint = base64.StdEncoding.EncodeToString(sum[:])
	}
	b, err := cbundle.MakeProtobufBundle(hint, certDER, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := tk.hash.New()
	h.Write(blob)
	algo := map[crypto.Hash]protocommon.HashAlgorithm{
		crypto.SHA256: protocommon.HashAlgorithm_SHA2_256,
		crypto.SHA384: protocommon.HashAlgorithm_SHA2_384,
		crypto.SHA512: protocommon.HashAlgorithm_SHA2_512,
	}[tk.hash]
	b.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
		MessageDigest: &protocommon.HashOutput{Algorithm: algo, Digest: h.Sum(nil)},
		Signature:     tk.sign(t, blob),
	}}
	if mutate != nil {
		mutate(b)
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// selfSignedCert stands in for a Fulcio certificate over tk's key: keyless signing is
// refused whoever issued the certificate.
func selfSignedCert(t testing.TB, tk testKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(1),
		Subject:        pkix.Name{CommonName: "sigstore"},
		EmailAddresses: []string{"endorser@example.org"},
		NotBefore:      time.Now().Add(-time.Minute),
		NotAfter:       time.Now().Add(10 * time.Minute),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, tk.priv.Public(), tk.priv)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func changeOneByte(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)/2] ^= 0x01
	return c
}

func wantValid(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("want valid, got %v", err)
	}
}

func wantErr(t *testing.T, err, sentinel error, contains ...string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("want %v, got %v", sentinel, err)
	}
	other := ErrMalformedSignature
	if sentinel == ErrMalformedSignature {
		other = ErrInvalidSignature
	}
	if errors.Is(err, other) {
		t.Errorf("error wraps both sentinels: %v", err)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

// The files in testdata/cosign were written by the real cosign v2.6.5 (see the README
// there): they pin the formats, while test/integration checks them against a live cosign.
func TestCosignGolden(t *testing.T) {
	list := testList(t)
	cases := []struct {
		key, file string
		bundle    bool
	}{
		{"cosign.pub", "imagelist.json.sig", false},
		{"cosign.pub", "imagelist.json.bundle", true},
		{"cosign.pub", "imagelist.json.sigstore.json", true},
		{"p384.pub", "imagelist.json.p384.sig", false},
		{"p384.pub", "imagelist.json.p384.sigstore.json", true},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			keys, err := LoadKeys(filepath.Join("testdata/cosign", c.key))
			if err != nil {
				t.Fatal(err)
			}
			verify := keys.VerifySignature
			if c.bundle {
				verify = keys.VerifyBundle
			}
			sig := readTestdata(t, filepath.Join("cosign", c.file))
			wantValid(t, verify(list, sig))
			wantErr(t, verify(changeOneByte(list), sig), ErrInvalidSignature)
			other, err := LoadKeys(filepath.Join("testdata/cosign", map[string]string{"cosign.pub": "p384.pub", "p384.pub": "cosign.pub"}[c.key]))
			if err != nil {
				t.Fatal(err)
			}
			verifyOther := other.VerifySignature
			if c.bundle {
				verifyOther = other.VerifyBundle
			}
			wantErr(t, verifyOther(list, sig), ErrInvalidSignature)
		})
	}
}

func TestVerifySignature(t *testing.T) {
	list := testList(t)
	for _, alg := range []string{"p256", "p384", "p521", "rsa2048", "ed25519", "ed25519ph"} {
		t.Run(alg, func(t *testing.T) {
			tk := newTestKey(t, alg)
			keys := tk.keys(t)
			sig := tk.detached(t, list)

			wantValid(t, keys.VerifySignature(list, sig))
			wantErr(t, keys.VerifySignature(changeOneByte(list), sig), ErrInvalidSignature, "does not verify with the key key #1")
			wantErr(t, newTestKey(t, alg).keys(t).VerifySignature(list, sig), ErrInvalidSignature)
			// A signature with one byte changed is still base64 and still a signature.
			raw := tk.sign(t, list)
			raw[len(raw)-1] ^= 0x01
			wantErr(t, keys.VerifySignature(list, []byte(base64.StdEncoding.EncodeToString(raw))), ErrInvalidSignature)
		})
	}
}

// cosign verify-blob hashes with SHA-256 unless told otherwise, whatever the key; that is
// also what `openssl dgst -sha256 -sign` makes. cosign sign-blob uses the key's own hash.
// Both must verify.
func TestVerifySignatureSHA256WithLargerCurve(t *testing.T) {
	list := testList(t)
	tk := newTestKey(t, "p384")
	sv, err := signature.LoadSignerVerifier(tk.priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sv.SignMessage(bytes.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	wantValid(t, tk.keys(t).VerifySignature(list, []byte(base64.StdEncoding.EncodeToString(sig))))
	// SHA-512 is neither what cosign signs nor what it verifies by default.
	sv512, err := signature.LoadSignerVerifier(tk.priv, crypto.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	sig512, err := sv512.SignMessage(bytes.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, tk.keys(t).VerifySignature(list, []byte(base64.StdEncoding.EncodeToString(sig512))), ErrInvalidSignature)
}

func TestVerifySignatureMultipleKeys(t *testing.T) {
	list := testList(t)
	a, b, c := newTestKey(t, "p256"), newTestKey(t, "rsa2048"), newTestKey(t, "ed25519")
	dir := t.TempDir()
	var paths []string
	for i, tk := range []testKey{a, b, c} {
		p := filepath.Join(dir, []string{"a.pub", "b.pub", "c.pub"}[i])
		if err := os.WriteFile(p, tk.pem, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	keys, err := LoadKeys(paths...)
	if err != nil {
		t.Fatal(err)
	}
	name, err := keys.SignatureKey(list, b.detached(t, list))
	wantValid(t, err)
	if name != paths[1] {
		t.Errorf("verified by %q, want %q", name, paths[1])
	}
	name, err = keys.SignatureKey(list, c.detached(t, list))
	wantValid(t, err)
	if name != paths[2] {
		t.Errorf("verified by %q, want %q", name, paths[2])
	}
	stranger := newTestKey(t, "p256")
	err = keys.VerifySignature(list, stranger.detached(t, list))
	wantErr(t, err, ErrInvalidSignature, "any of 3 keys", paths[0], paths[1], paths[2])
}

func TestVerifySignatureMalformed(t *testing.T) {
	list := testList(t)
	keys := newTestKey(t, "p256").keys(t)
	for name, sig := range map[string]string{
		"empty":                               "",
		"whitespace":                          " \n\t\n",
		"not base64":                          "this is not a signature!",
		"base64 of nothing with padding only": "====",
		"binary":                              "\x30\x45\x02\x21\x00\xff",
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, keys.VerifySignature(list, []byte(sig)), ErrMalformedSignature)
		})
	}
	// Well-formed base64 that is no signature at all: it cannot verify, and that is all
	// that can be said of it.
	wantErr(t, keys.VerifySignature(list, []byte(base64.StdEncoding.EncodeToString([]byte("garbage")))), ErrInvalidSignature)
}

func TestVerifySignatureWhitespace(t *testing.T) {
	list := testList(t)
	tk := newTestKey(t, "p384")
	keys := tk.keys(t)
	sig := tk.detached(t, list)
	var wrapped []byte // as `openssl base64` writes: 64 columns
	for s := sig; len(s) > 0; {
		n := min(64, len(s))
		wrapped = append(append(wrapped, s[:n]...), '\n')
		s = s[n:]
	}
	for name, s := range map[string][]byte{
		"trailing newline": append(bytes.Clone(sig), '\n'),
		"crlf and spaces":  append(append([]byte("  \r\n"), sig...), " \r\n"...),
		"wrapped":          wrapped,
	} {
		t.Run(name, func(t *testing.T) { wantValid(t, keys.VerifySignature(list, s)) })
	}
}

func TestVerifyBundle(t *testing.T) {
	list := testList(t)
	for _, alg := range []string{"p256", "p384", "p521", "rsa2048", "ed25519ph"} {
		t.Run(alg, func(t *testing.T) {
			tk := newTestKey(t, alg)
			keys := tk.keys(t)
			other := newTestKey(t, alg).keys(t)
			bundles := map[string][]byte{
				"legacy":   legacyBundle(t, cosign.LocalSignedPayload{Base64Signature: string(tk.detached(t, list))}),
				"sigstore": sigstoreBundle(t, tk, list, nil, nil),
			}
			for format, b := range bundles {
				t.Run(format, func(t *testing.T) {
					wantValid(t, keys.VerifyBundle(list, b))
					wantErr(t, keys.VerifyBundle(changeOneByte(list), b), ErrInvalidSignature)
					wantErr(t, other.VerifyBundle(list, b), ErrInvalidSignature)
				})
			}
		})
	}
}

func TestVerifyBundleSigstore(t *testing.T) {
	list := testList(t)
	tk := newTestKey(t, "p256")
	keys := tk.keys(t)

	t.Run("digest of other content", func(t *testing.T) {
		// The signature is over the list, but the digest names other bytes: a bundle must
		// say what it signs.
		b := sigstoreBundle(t, tk, list, nil, func(b *protobundle.Bundle) {
			sum := sha256.Sum256([]byte("other content"))
			b.GetMessageSignature().MessageDigest.Digest = sum[:]
		})
		wantErr(t, keys.VerifyBundle(list, b), ErrInvalidSignature, "belongs to other content")
	})
	t.Run("digest and signature of other content", func(t *testing.T) {
		b := sigstoreBundle(t, tk, []byte("other content"), nil, nil)
		wantErr(t, keys.VerifyBundle(list, b), ErrInvalidSignature, "belongs to other content")
	})
	t.Run("digest right, signature of other content", func(t *testing.T) {
		b := sigstoreBundle(t, tk, list, nil, func(b *protobundle.Bundle) {
			b.GetMessageSignature().Signature = tk.sign(t, []byte("other content"))
		})
		wantErr(t, keys.VerifyBundle(list, b), ErrInvalidSignature, "the bundle names that key")
	})
	t.Run("other key names itself", func(t *testing.T) {
		b := sigstoreBundle(t, newTestKey(t, "p256"), list, nil, nil)
		wantErr(t, keys.VerifyBundle(list, b), ErrInvalidSignature, "names another key")
	})
	t.Run("tlog entry does not replace the signature", func(t *testing.T) {
		stranger := newTestKey(t, "p256")
		b := sigstoreBundle(t, stranger, list, nil, func(b *protobundle.Bundle) {
			b.VerificationMaterial.TlogEntries = []*protorekor.TransparencyLogEntry{fakeTlogEntry(t, stranger, list)}
		})
		wantErr(t, keys.VerifyBundle(list, b), ErrInvalidSignature)
		// and with the right key the (unverified, fake) entry is simply ignored
		good := sigstoreBundle(t, tk, list, nil, func(b *protobundle.Bundle) {
			b.VerificationMaterial.TlogEntries = []*protorekor.TransparencyLogEntry{fakeTlogEntry(t, tk, list)}
		})
		wantValid(t, keys.VerifyBundle(list, good))
	})
	t.Run("unsupported digest algorithm", func(t *testing.T) {
		b := sigstoreBundle(t, tk, list, nil, func(b *protobundle.Bundle) {
			b.GetMessageSignature().MessageDigest.Algorithm = protocommon.HashAlgorithm_SHA3_256
		})
		wantErr(t, keys.VerifyBundle(list, b), ErrMalformedSignature, "SHA3_256")
	})
	t.Run("no digest", func(t *testing.T) {
		b := sigstoreBundle(t, tk, list, nil, func(b *protobundle.Bundle) {
			b.GetMessageSignature().MessageDigest = nil
		})
		wantErr(t, keys.VerifyBundle(list, b), ErrMalformedSignature, "messageDigest")
	})
	t.Run("no signature", func(t *testing.T) {
		b := sigstoreBundle(t, tk, list, nil, func(b *protobundle.Bundle) {
			b.GetMessageSignature().Signature = nil
		})
		wantErr(t, keys.VerifyBundle(list, b), ErrMalformedSignature, "empty signature")
	})
	t.Run("DSSE attestation", func(t *testing.T) {
		b := sigstoreBundle(t, tk, list, nil, func(b *protobundle.Bundle) {
			b.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
				Payload:     list,
				PayloadType: "application/vnd.in-toto+json",
				Signatures:  []*protodsse.Signature{{Sig: tk.sign(t, list)}},
			}}
		})
		wantErr(t, keys.VerifyBundle(list, b), ErrMalformedSignature, "DSSE")
	})
	t.Run("unknown media type", func(t *testing.T) {
		b := sigstoreBundle(t, tk, list, nil, func(b *protobundle.Bundle) {
			b.MediaType = "application/vnd.dev.sigstore.bundle.v0.9+json"
		})
		wantErr(t, keys.VerifyBundle(list, b), ErrMalformedSignature)
	})
}

// fakeTlogEntry is a Rekor entry that looks real to a parser but was never logged.
func fakeTlogEntry(t testing.TB, tk testKey, blob []byte) *protorekor.TransparencyLogEntry {
	t.Helper()
	sum := sha256.Sum256(blob)
	body, err := json.Marshal(map[string]any{
		"apiVersion": "0.0.1",
		"kind":       "hashedrekord",
		"spec": map[string]any{
			"data": map[string]any{"hash": map[string]string{"algorithm": "sha256", "value": hex.EncodeToString(sum[:])}},
			"signature": map[string]any{
				"content":   base64.StdEncoding.EncodeToString(tk.sign(t, blob)),
				"publicKey": map[string]string{"content": base64.StdEncoding.EncodeToString(tk.pem)},
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &protorekor.TransparencyLogEntry{
		LogIndex:          42,
		LogId:             &protocommon.LogId{KeyId: []byte("fake-log")},
		KindVersion:       &protorekor.KindVersion{Kind: "hashedrekord", Version: "0.0.1"},
		IntegratedTime:    time.Now().Unix(),
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: []byte("not signed")},
		InclusionProof:    &protorekor.InclusionProof{LogIndex: 42, RootHash: sum[:], TreeSize: 43, Hashes: [][]byte{sum[:]}, Checkpoint: &protorekor.Checkpoint{Envelope: "fake checkpoint"}},
		CanonicalizedBody: body,
	}
}

func TestVerifyBundleLegacy(t *testing.T) {
	list := testList(t)
	tk := newTestKey(t, "p256")
	keys := tk.keys(t)
	t.Run("rekorBundle does not replace the signature", func(t *testing.T) {
		rb := &cbundle.RekorBundle{
			SignedEntryTimestamp: []byte("not signed"),
			Payload:              cbundle.RekorPayload{Body: "e30=", IntegratedTime: time.Now().Unix(), LogIndex: 1, LogID: "fake"},
		}
		bad := legacyBundle(t, cosign.LocalSignedPayload{Base64Signature: string(newTestKey(t, "p256").detached(t, list)), Bundle: rb})
		wantErr(t, keys.VerifyBundle(list, bad), ErrInvalidSignature)
		good := legacyBundle(t, cosign.LocalSignedPayload{Base64Signature: string(tk.detached(t, list)), Bundle: rb})
		wantValid(t, keys.VerifyBundle(list, good))
	})
	t.Run("empty base64Signature", func(t *testing.T) {
		wantErr(t, keys.VerifyBundle(list, []byte(`{"base64Signature":""}`)), ErrMalformedSignature, "empty")
	})
	t.Run("base64Signature not a string", func(t *testing.T) {
		wantErr(t, keys.VerifyBundle(list, []byte(`{"base64Signature":42}`)), ErrMalformedSignature)
	})
}

func TestVerifyBundleKeyless(t *testing.T) {
	list := testList(t)
	ours := newTestKey(t, "p256")
	keys := ours.keys(t)
	signer := newTestKey(t, "p256") // the ephemeral key Fulcio certified
	cert := selfSignedCert(t, signer)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})
	for format, b := range map[string][]byte{
		"legacy": legacyBundle(t, cosign.LocalSignedPayload{
			Base64Signature: string(signer.detached(t, list)),
			Cert:            base64.StdEncoding.EncodeToString(certPEM),
		}),
		"sigstore": sigstoreBundle(t, signer, list, cert, nil),
	} {
		t.Run(format, func(t *testing.T) {
			err := keys.VerifyBundle(list, b)
			wantErr(t, err, ErrInvalidSignature, "endorser@example.org", "keyless")
			if !errors.Is(err, ErrKeyless) {
				t.Errorf("want ErrKeyless, got %v", err)
			}
		})
	}
	// A certificate for one of our keys (sign-blob --key … --issue-certificate) is
	// verified with the key, as cosign verify-blob --key does; the certificate is ignored.
	for format, b := range map[string][]byte{
		"legacy": legacyBundle(t, cosign.LocalSignedPayload{
			Base64Signature: string(ours.detached(t, list)),
			Cert:            base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: selfSignedCert(t, ours)})),
		}),
		"sigstore": sigstoreBundle(t, ours, list, selfSignedCert(t, ours), nil),
	} {
		t.Run(format+" with our key", func(t *testing.T) { wantValid(t, keys.VerifyBundle(list, b)) })
	}
}

func TestVerifyBundleMalformed(t *testing.T) {
	list := testList(t)
	keys := newTestKey(t, "p256").keys(t)
	for name, b := range map[string]string{
		"empty":           "",
		"whitespace":      "\n",
		"not JSON":        "MEUCIQDx…",
		"JSON array":      `[{"base64Signature":"MEU="}]`,
		"neither format":  `{"signature":"MEU="}`,
		"truncated":       `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":`,
		"no material":     `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"AAAA"},"signature":"AAAA"}}`,
		"no content":      `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"x"}}}`,
		"legacy not b64":  `{"base64Signature":"not base64!"}`,
		"unknown field":   `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","surprise":1}`,
		"media type null": `{"mediaType":null}`,
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, keys.VerifyBundle(list, []byte(b)), ErrMalformedSignature)
		})
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.pub", newTestKey(t, "p256").pem)

	t.Run("missing", func(t *testing.T) {
		missing := filepath.Join(dir, "missing.pub")
		_, err := LoadKeys(good, missing)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
			t.Fatalf("want not-exist error naming %s, got %v", missing, err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		_, err := LoadKeys(dir)
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Fatalf("want an error naming %s, got %v", dir, err)
		}
	})
	t.Run("none", func(t *testing.T) {
		if _, err := LoadKeys(); err == nil {
			t.Fatal("want an error for no keys")
		}
		if _, err := ParseKeys(); err == nil {
			t.Fatal("want an error for no keys")
		}
	})
	for name, c := range map[string]struct {
		data []byte
		msg  string
	}{
		"empty":       {nil, "no PEM data"},
		"not PEM":     {[]byte("ssh-ed25519 AAAAC3Nza… endorser@example.org\n"), "no PEM data"},
		"cosign.key":  {pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED SIGSTORE PRIVATE KEY", Bytes: []byte("x")}), "private key"},
		"openssl key": {pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("x")}), "private key"},
		"certificate": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: selfSignedCert(t, newTestKey(t, "p256"))}), "certificate"},
		"bad DER":     {pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("not DER")}), "PEM block 1"},
		"rsa 1024":    {newTestKey(t, "rsa1024").pem, "unsupported key"},
		"second bad":  {append(bytes.Clone(newTestKey(t, "p256").pem), pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: []byte("x")})...), "PEM block 2"},
	} {
		t.Run(name, func(t *testing.T) {
			p := write(strings.ReplaceAll(name, " ", "-")+".pub", c.data)
			_, err := LoadKeys(good, p)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q should name %s and say %q", err, p, c.msg)
			}
		})
	}

	t.Run("several keys in one file", func(t *testing.T) {
		list := testList(t)
		a, b := newTestKey(t, "p256"), newTestKey(t, "ed25519")
		p := write("both.pub", append(bytes.Clone(a.pem), b.pem...))
		keys, err := LoadKeys(p)
		if err != nil {
			t.Fatal(err)
		}
		name, err := keys.SignatureKey(list, b.detached(t, list))
		wantValid(t, err)
		if want := p + "#2"; name != want {
			t.Errorf("verified by %q, want %q", name, want)
		}
	})
	t.Run("openssl RSA PUBLIC KEY", func(t *testing.T) {
		// `openssl rsa -RSAPublicKey_out` writes PKCS#1.
		tk := newTestKey(t, "rsa2048")
		pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(tk.priv.Public().(*rsa.PublicKey))})
		keys, err := ParseKeys(pkcs1)
		if err != nil {
			t.Fatal(err)
		}
		list := testList(t)
		wantValid(t, keys.VerifySignature(list, tk.detached(t, list)))
	})
}

// seeds for both fuzz targets live in testdata/fuzz; plain `go test` runs them.
func fuzzKeys(f *testing.F) (*Keys, []byte) {
	keys, err := LoadKeys("testdata/cosign/cosign.pub", "testdata/cosign/p384.pub")
	if err != nil {
		f.Fatal(err)
	}
	return keys, testList(f)
}

// checkOutcome holds for any input: the error is classified by exactly one sentinel, and
// what verifies for the list does not verify for an altered list.
func checkOutcome(t *testing.T, err error, again func([]byte) error, list []byte) {
	inv, mal := errors.Is(err, ErrInvalidSignature), errors.Is(err, ErrMalformedSignature)
	switch {
	case err == nil:
		if again(changeOneByte(list)) == nil {
			t.Fatal("verifies for the list and for an altered list")
		}
	case inv == mal:
		t.Fatalf("error must wrap exactly one sentinel: %v", err)
	}
}

func FuzzVerifyBundle(f *testing.F) {
	keys, list := fuzzKeys(f)
	f.Fuzz(func(t *testing.T, bundle []byte) {
		err := keys.VerifyBundle(list, bundle)
		checkOutcome(t, err, func(l []byte) error { return keys.VerifyBundle(l, bundle) }, list)
	})
}

func FuzzVerifySignature(f *testing.F) {
	keys, list := fuzzKeys(f)
	f.Fuzz(func(t *testing.T, sig []byte) {
		err := keys.VerifySignature(list, sig)
		checkOutcome(t, err, func(l []byte) error { return keys.VerifySignature(l, sig) }, list)
	})
}

func BenchmarkVerifySignature(b *testing.B) {
	list := testList(b)
	for _, c := range []struct{ name, key, file string }{
		{"p256/signature", "cosign.pub", "imagelist.json.sig"},
		{"p256/bundle", "cosign.pub", "imagelist.json.bundle"},
		{"p256/sigstore-bundle", "cosign.pub", "imagelist.json.sigstore.json"},
		{"p384/signature", "p384.pub", "imagelist.json.p384.sig"},
	} {
		keys, err := LoadKeys(filepath.Join("testdata/cosign", c.key))
		if err != nil {
			b.Fatal(err)
		}
		sig := readTestdata(b, filepath.Join("cosign", c.file))
		verify := keys.VerifySignature
		if strings.Contains(c.name, "bundle") {
			verify = keys.VerifyBundle
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := verify(list, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
