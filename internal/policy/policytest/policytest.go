// Package policytest builds signed HEPiX image lists for tests and benchmarks: an endorser
// with a cosign-compatible key pair, lists of any size, detached signatures as
// `cosign sign-blob` writes them.
package policytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Endorser holds a signing key and the path of its public key in PEM, as cosign.pub.
type Endorser struct {
	Key    *ecdsa.PrivateKey
	PubKey string // path of the PEM public key
}

// NewEndorser makes a P-256 key pair and writes the public key into dir.
func NewEndorser(tb testing.TB, dir string) *Endorser {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "endorser-*.pub")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: "PUBLIC KEY", Bytes: der}); err != nil {
		tb.Fatal(err)
	}
	return &Endorser{Key: key, PubKey: f.Name()}
}

// Sign returns the base64 ECDSA signature over SHA-256 of blob: cosign's detached format.
func (e *Endorser) Sign(tb testing.TB, blob []byte) []byte {
	tb.Helper()
	h := sha256.Sum256(blob)
	sig, err := ecdsa.SignASN1(rand.Reader, e.Key, h[:])
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(base64.StdEncoding.EncodeToString(sig))
}

// Publish writes list and list.sig into dir and returns the list's file:// URL.
func (e *Endorser) Publish(tb testing.TB, dir, name string, list []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, list, 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p+".sig", e.Sign(tb, list), 0o644); err != nil {
		tb.Fatal(err)
	}
	return "file://" + p
}

// Image is one image of a test list.
type Image struct {
	Identifier string
	SHA512     string
	Title      string
	Version    string
	Expires    time.Time // zero: none
}

// ImageFor returns an image whose sha512 is that of content.
func ImageFor(id string, content []byte) Image {
	h := sha512.Sum512(content)
	return Image{Identifier: id, SHA512: hex.EncodeToString(h[:]), Title: "Image " + id, Version: "1"}
}

// Images returns n distinct images.
func Images(n int) []Image {
	imgs := make([]Image, n)
	for i := range imgs {
		imgs[i] = ImageFor(fmt.Sprintf("img-%06d", i), []byte(fmt.Sprint("image bytes ", i)))
	}
	return imgs
}

// List describes a test image list.
type List struct {
	Identifier string
	Version    string
	Created    time.Time
	Expires    time.Time
	Images     []Image
}

// Bytes renders the list as HEPiX JSON with AppDB-style extras, the way endorsers publish it.
func (l List) Bytes() []byte {
	imgs := make([]map[string]any, len(l.Images))
	for i, im := range l.Images {
		m := map[string]any{
			"dc:identifier":      im.Identifier,
			"dc:title":           im.Title,
			"dc:description":     "test image",
			"hv:version":         im.Version,
			"hv:uri":             "https://images.example.org/" + im.Identifier + ".qcow2",
			"hv:format":          "QCOW2",
			"hv:size":            fmt.Sprint(1 << 30),
			"sl:arch":            "x86_64",
			"sl:os":              "Linux",
			"sl:checksum:sha512": im.SHA512,
			"ad:appid":           "1234",
		}
		if !im.Expires.IsZero() {
			m["dc:date:expires"] = im.Expires.UTC().Format("2006-01-02T15:04:05Z")
		}
		imgs[i] = map[string]any{"hv:image": m}
	}
	doc := map[string]any{"hv:imagelist": map[string]any{
		"dc:identifier":   l.Identifier,
		"dc:title":        "Test VO images",
		"dc:date:created": l.Created.UTC().Format("2006-01-02T15:04:05Z"),
		"dc:date:expires": l.Expires.UTC().Format("2006-01-02T15:04:05Z"),
		"hv:version":      l.Version,
		"hv:uri":          "https://images.example.org/image.list",
		"ad:vo":           "example.vo.org",
		"hv:endorser": map[string]any{"hv:x509": map[string]any{
			"dc:creator": "Test Endorsers",
			"hv:ca":      "/DC=org/DC=example/CN=Example Test CA",
			"hv:dn":      "/DC=org/DC=example/O=Hosts/CN=images.example.org",
			"hv:email":   "endorsers@example.org",
		}},
		"hv:images": imgs,
	}}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return b
}
