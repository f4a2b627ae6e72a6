package snapshot

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestLookupNovaBase(t *testing.T) {
	const id = "dc7efb6f-67ac-4409-a0c3-f565a29a92a2"
	// sha1 of the id, as Nova names its _base copy (Python's hashlib.sha1(id).hexdigest()).
	const name = "83e5ba1237b5269eb2cd249036c5640700b565ba"
	es := entries(3)
	es[1].GlanceIDs = []string{id}
	p := filepath.Join(t.TempDir(), "snapshot.db")
	if err := Write(p, Meta{Created: t0, Expires: t0.Add(time.Hour)}, es, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := NovaBaseName(id)
	if base != name {
		t.Fatalf("NovaBaseName = %q", base)
	}
	got, e, ok, err := s.LookupNovaBase(base)
	if err != nil || !ok || got != id || e.SHA512 != es[1].SHA512 {
		t.Fatalf("LookupNovaBase(%s) = %q %+v %v %v", base, got, e, ok, err)
	}
	if _, _, ok, err := s.LookupNovaBase(NovaBaseName("11111111-2222-4333-8444-555555555555")); ok || err != nil {
		t.Fatalf("unknown base: ok=%v err=%v", ok, err)
	}
	for _, bad := range []string{"", "swap_512", base[:39], "ABCDEF" + base[6:]} {
		if _, _, _, err := s.LookupNovaBase(bad); err == nil {
			t.Errorf("LookupNovaBase(%q): no error", bad)
		}
	}
}

// A snapshot written before the index existed: the lookup says to run vmgate sync.
func TestLookupNovaBaseWithoutIndex(t *testing.T) {
	p := write(t, 2)
	db, err := bolt.Open(p, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketNovaBase) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, _, err := s.LookupNovaBase(NovaBaseName("x")); !errors.Is(err, ErrNoNovaIndex) {
		t.Fatalf("err = %v, want ErrNoNovaIndex", err)
	}
}
