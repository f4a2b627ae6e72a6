package snapshot

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func hashOf(i int) string {
	h := sha512.Sum512([]byte(fmt.Sprint("image-", i)))
	return hex.EncodeToString(h[:])
}

// entries builds n endorsed images; testing builders live beside the tests that use them.
func entries(n int) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{SHA512: hashOf(i), Images: []Image{{
			Subscription: "example", List: "list-1", ListVersion: "1",
			Identifier: fmt.Sprintf("img-%d", i), Title: "Image", Version: "1",
			Status: Endorsed, Since: t0, Expires: t0.Add(48 * time.Hour),
		}}}
	}
	return es
}

func write(t testing.TB, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "snapshot.db")
	if err := Write(p, Meta{Serial: 7, Created: t0, Expires: t0.Add(24 * time.Hour)}, entries(n), nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriteOpenLookup(t *testing.T) {
	p := write(t, 100)
	s, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m := s.Meta(); m.Serial != 7 || m.Images != 100 || m.Format != Format {
		t.Fatalf("meta = %+v", m)
	}
	e, ok, err := s.Lookup(strings.ToUpper(hashOf(42)))
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	if e.Images[0].Identifier != "img-42" {
		t.Fatalf("got %+v", e)
	}
	if _, ok, err := s.Lookup(hashOf(1000)); ok || err != nil {
		t.Fatalf("unknown image: ok=%v err=%v", ok, err)
	}
	if _, _, err := s.Lookup("abc"); err == nil {
		t.Fatal("a short hash was looked up")
	}
	n := 0
	if err := s.Each(func(*Entry) error { n++; return nil }); err != nil || n != 100 {
		t.Fatalf("Each saw %d, %v", n, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
}

func TestFresh(t *testing.T) {
	s, err := Open(write(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Fresh(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Fresh(t0.Add(24 * time.Hour)); !errors.Is(err, ErrStale) {
		t.Fatalf("err = %v, want ErrStale", err)
	}
}

func TestOpenRefusesMissingAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "none")); err == nil {
		t.Fatal("missing snapshot opened")
	}
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte(strings.Repeat("not a snapshot ", 1000)), 0o644)
	if _, err := Open(garbage); err == nil {
		t.Fatal("garbage opened")
	}
	trunc := filepath.Join(dir, "trunc")
	data, _ := os.ReadFile(write(t, 10))
	os.WriteFile(trunc, data[:100], 0o644)
	if _, err := Open(trunc); err == nil {
		t.Fatal("truncated snapshot opened")
	}
}

func TestWriteRefusesDuplicates(t *testing.T) {
	es := entries(2)
	es[1].SHA512 = es[0].SHA512
	if err := Write(filepath.Join(t.TempDir(), "s"), Meta{}, es, nil); err == nil {
		t.Fatal("duplicate sha512 written")
	}
}

func TestStatusAt(t *testing.T) {
	im := Image{Status: Endorsed, Expires: t0}
	if im.StatusAt(t0.Add(-time.Second)) != Endorsed || im.StatusAt(t0) != Expired {
		t.Fatal("expiry not applied")
	}
	if !strings.Contains(im.ReasonAt(t0), "expired at 2026-11-20T10:00:00Z") {
		t.Fatalf("reason %q", im.ReasonAt(t0))
	}
	rv := Image{Status: Revoked, Reason: "removed from list", RevokedAt: t0.Add(time.Hour)}
	e := Entry{Images: []Image{im, rv}}
	if _, ok := e.EndorsedAt(t0); ok {
		t.Fatal("endorsed after expiry")
	}
	if got := e.Latest(); got.Status != Revoked {
		t.Fatalf("latest = %+v", got)
	}
	if img, ok := e.EndorsedAt(t0.Add(-time.Hour)); !ok || img.Status != Endorsed {
		t.Fatal("not endorsed before expiry")
	}
}

// BenchmarkLookup opens the snapshot and looks one image up, as the hook does once per start.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10, 10_000, 100_000} {
		p := write(b, n)
		b.Run(fmt.Sprint("images=", n), func(b *testing.B) {
			key := hashOf(n / 2)
			for b.Loop() {
				s, err := Open(p)
				if err != nil {
					b.Fatal(err)
				}
				if _, ok, err := s.Lookup(key); !ok || err != nil {
					b.Fatal(ok, err)
				}
				s.Close()
			}
		})
	}
}

func TestLookupGlance(t *testing.T) {
	es := entries(3)
	es[1].GlanceIDs = []string{"4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b", "second-id"}
	p := filepath.Join(t.TempDir(), "s")
	if err := Write(p, Meta{Expires: t0}, es, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range es[1].GlanceIDs {
		e, ok, err := s.LookupGlance(id)
		if err != nil || !ok || e.SHA512 != es[1].SHA512 {
			t.Fatalf("LookupGlance(%s) = %+v %v %v", id, e, ok, err)
		}
	}
	if _, ok, _ := s.LookupGlance("nope"); ok {
		t.Fatal("unknown glance id found")
	}
	es[2].GlanceIDs = []string{"second-id"}
	if err := Write(p, Meta{}, es, nil); err == nil {
		t.Fatal("one glance id with two hashes written")
	}
}
