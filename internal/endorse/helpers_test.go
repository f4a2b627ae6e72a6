package endorse

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/policy"
)

const testListID = "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e"

// testClock is a clock the test moves by hand.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time               { return c.t }
func (c *testClock) advance(d time.Duration)      { c.t = c.t.Add(d) }
func newTestClock() *testClock                    { return &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)} }
func testActor() Actor                            { return Actor{UID: 1001, User: "jane", Host: "build1"} }
func (c *testClock) hepix(d time.Duration) string { return c.t.Add(d).Format(policy.TimeLayout) }

// newWorkspace makes a list with init in a temporary directory, on a clock the test moves.
func newWorkspace(t testing.TB) (*Workspace, *testClock) {
	t.Helper()
	clock := newTestClock()
	w := &Workspace{List: filepath.Join(t.TempDir(), "image.list"), Now: clock.now, Actor: testActor()}
	err := w.Init(InitOptions{Identifier: testListID, Title: "Example VO images",
		EndorserDN: "/DC=org/DC=example/CN=Jane Doe", EndorserCA: "/DC=org/DC=example/CN=Example CA",
		URI: "https://images.example.org/vo/image.list", ExpiresIn: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return w, clock
}

// writeFile writes data into dir and returns its path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// rawImage writes a raw image whose bytes depend on name only.
func rawImage(t testing.TB, dir, name string) string {
	t.Helper()
	b := make([]byte, 64<<10)
	copy(b, "raw image "+name)
	return writeFile(t, dir, name, b)
}

// plainKeyPEM is a P-256 key as `openssl ecparam -genkey -name prime256v1` writes it: the
// curve's EC PARAMETERS block, then the SEC 1 "EC PRIVATE KEY".
func plainKeyPEM(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	prime256v1 := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	return append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: prime256v1}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})...)
}

func testSigner(t testing.TB) *Signer {
	t.Helper()
	s, err := LoadSigner(plainKeyPEM(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readList(t testing.TB, w *Workspace) *policy.List {
	t.Helper()
	data, err := os.ReadFile(w.List)
	if err != nil {
		t.Fatal(err)
	}
	l, err := policy.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
