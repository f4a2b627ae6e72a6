package policy

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/policy/policytest"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// site is a node with one subscription, published as files by a test endorser.
type site struct {
	t        *testing.T
	cfg      *config.Config
	endorser *policytest.Endorser
	pubDir   string
	clock    time.Time
}

func newSite(t *testing.T) *site {
	t.Helper()
	dir := t.TempDir()
	pub := filepath.Join(dir, "pub")
	os.MkdirAll(pub, 0o755)
	e := policytest.NewEndorser(t, dir)
	cfg, err := config.Parse([]byte(`
state_dir: ` + filepath.Join(dir, "state") + `
subscriptions:
  - name: example
    url: file://` + filepath.Join(pub, "image.list") + `
    identifier: list-a
    cosign_keys: [` + e.PubKey + `]
    max_age: 720h
`))
	if err != nil {
		t.Fatal(err)
	}
	return &site{t: t, cfg: cfg, endorser: e, pubDir: pub, clock: now}
}

func (s *site) publish(l policytest.List) []byte {
	raw := l.Bytes()
	s.endorser.Publish(s.t, s.pubDir, "image.list", raw)
	return raw
}

func (s *site) sync() *Report {
	s.t.Helper()
	rep, err := (&Syncer{Config: s.cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return s.clock }}).Run(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return rep
}

func (s *site) lookup(sha string) *snapshot.Entry {
	s.t.Helper()
	snap, err := snapshot.Open(s.cfg.Paths().Snapshot())
	if err != nil {
		s.t.Fatal(err)
	}
	defer snap.Close()
	e, ok, err := snap.Lookup(sha)
	if err != nil {
		s.t.Fatal(err)
	}
	if !ok {
		return nil
	}
	return e
}

func (s *site) history() []Event {
	s.t.Helper()
	var evs []Event
	if err := ReadHistory(HistoryPath(s.cfg.Paths().PolicyDir()), func(_ uint64, _ time.Time, _ string, ev Event) error {
		evs = append(evs, ev)
		return nil
	}); err != nil {
		s.t.Fatal(err)
	}
	return evs
}

func list(version string, imgs ...policytest.Image) policytest.List {
	return policytest.List{Identifier: "list-a", Version: version, Created: now.Add(-time.Hour), Expires: now.Add(10 * 24 * time.Hour), Images: imgs}
}

func countEvents(evs []Event, name string) int {
	n := 0
	for _, ev := range evs {
		if ev.Event == name {
			n++
		}
	}
	return n
}

func TestSyncAcceptsRevokesAndKeepsHistory(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(3)
	s.publish(list("1", imgs...))
	rep := s.sync()
	if rep.Refused() || rep.Results[0].Outcome != OutcomeAccepted || rep.Results[0].Endorsed != 3 {
		t.Fatalf("first sync: %+v", rep.Results[0])
	}
	if got := rep.Snapshot.Expires; !got.Equal(now.Add(10 * 24 * time.Hour)) {
		t.Errorf("snapshot expires %v, want the list's expiry", got)
	}
	e := s.lookup(imgs[1].SHA512)
	if im, ok := e.EndorsedAt(s.clock); !ok || im.Identifier != imgs[1].Identifier || im.List != "list-a" || im.ListVersion != "1" {
		t.Fatalf("entry = %+v", e)
	}

	// The same list again changes nothing.
	s.clock = s.clock.Add(time.Hour)
	if rep := s.sync(); rep.Results[0].Outcome != OutcomeUnchanged {
		t.Fatalf("second sync: %+v", rep.Results[0])
	}

	// A newer list without image 1: revoked from now, with the reason.
	s.clock = s.clock.Add(time.Hour)
	s.publish(list("2", imgs[0], imgs[2]))
	if rep := s.sync(); rep.Results[0].Outcome != OutcomeAccepted || rep.Results[0].Changes[EventImageRevoked] != 1 {
		t.Fatalf("third sync: %+v", rep.Results[0])
	}
	e = s.lookup(imgs[1].SHA512)
	if _, ok := e.EndorsedAt(s.clock); ok {
		t.Fatal("a removed image is still endorsed")
	}
	im := e.Latest()
	if im.Status != snapshot.Revoked || !im.RevokedAt.Equal(s.clock) || !strings.Contains(im.Reason, `removed from list "example" version 2`) {
		t.Fatalf("revoked image = %+v", im)
	}

	// It comes back in version 3: endorsed again.
	s.clock = s.clock.Add(time.Hour)
	s.publish(list("3", imgs...))
	s.sync()
	if _, ok := s.lookup(imgs[1].SHA512).EndorsedAt(s.clock); !ok {
		t.Fatal("re-endorsed image is not endorsed")
	}

	evs := s.history()
	if countEvents(evs, EventListAccepted) != 3 || countEvents(evs, EventImageEndorsed) != 4 || countEvents(evs, EventImageRevoked) != 1 {
		t.Fatalf("history: %+v", evs)
	}
	rep2, err := journal.Verify(HistoryPath(s.cfg.Paths().PolicyDir()))
	if err != nil || !rep2.Intact() {
		t.Fatalf("history chain: %+v %v", rep2, err)
	}
	// The accepted bytes and their signature are archived.
	archived, err := os.ReadFile(filepath.Join(s.cfg.Paths().PolicyDir(), evs[len(evs)-2].Archive))
	if err != nil && evs[0].Archive != "" {
		archived, err = os.ReadFile(filepath.Join(s.cfg.Paths().PolicyDir(), evs[0].Archive))
	}
	if err != nil || len(archived) == 0 {
		t.Fatalf("archive: %v", err)
	}
}

func TestSyncRefusalsKeepPreviousList(t *testing.T) {
	imgs := policytest.Images(2)
	cases := []struct {
		name   string
		spoil  func(s *site)
		reason Reason
	}{
		{"rollback", func(s *site) { s.publish(list("0", imgs[0])) }, ReasonRollback},
		{"tampered", func(s *site) {
			s.publish(list("2", imgs[0]))
			p := filepath.Join(s.pubDir, "image.list")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"2"`, `"3"`, 1)), 0o644)
		}, ReasonBadSignature},
		{"other key", func(s *site) {
			other := policytest.NewEndorser(s.t, s.t.TempDir())
			other.Publish(s.t, s.pubDir, "image.list", list("2", imgs[0]).Bytes())
		}, ReasonBadSignature},
		{"missing signature", func(s *site) {
			s.publish(list("2", imgs[0]))
			os.Remove(filepath.Join(s.pubDir, "image.list.sig"))
		}, ReasonMissingSignature},
		{"malformed", func(s *site) {
			s.endorser.Publish(s.t, s.pubDir, "image.list", []byte(`{"hv:imagelist": {"dc:identifier": "list-a"}}`))
		}, ReasonMalformed},
		{"frozen", func(s *site) {
			l := list("2", imgs[0])
			l.Created = now.Add(-800 * time.Hour)
			s.publish(l)
		}, ReasonFrozen},
		{"identifier", func(s *site) {
			l := list("2", imgs[0])
			l.Identifier = "list-b"
			s.publish(l)
		}, ReasonIdentifierMismatch},
		{"unreachable", func(s *site) { os.Remove(filepath.Join(s.pubDir, "image.list")) }, ReasonFetch},
		{"too large", func(s *site) {
			s.cfg.Subscriptions[0].MaxSize = 1024
			s.publish(list("2", policytest.Images(20)...))
		}, ReasonTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSite(t)
			s.publish(list("1", imgs...))
			s.sync()
			c.spoil(s)
			rep := s.sync()
			r := rep.Results[0]
			if !rep.Refused() || r.Refusal == nil || r.Refusal.Reason != c.reason {
				t.Fatalf("result = %+v, want refusal %s", r, c.reason)
			}
			if r.Version != "1" {
				t.Errorf("list in force = %q, want 1", r.Version)
			}
			for _, img := range imgs {
				if _, ok := s.lookup(img.SHA512).EndorsedAt(s.clock); !ok {
					t.Errorf("image %s no longer endorsed after a refused list", img.Identifier)
				}
			}
			evs := s.history()
			if last := evs[len(evs)-1]; last.Event != EventListRefused || last.Reason != string(c.reason) {
				t.Errorf("last history event = %+v", last)
			}
		})
	}
}

func TestSyncExpiry(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(2)
	imgs[1].Expires = now.Add(2 * time.Hour)
	s.publish(list("1", imgs...))
	s.sync()

	// The image's own expiry passes.
	s.clock = now.Add(3 * time.Hour)
	rep := s.sync()
	if rep.Results[0].Changes[EventImageExpired] != 1 {
		t.Fatalf("changes = %v", rep.Results[0].Changes)
	}
	im := s.lookup(imgs[1].SHA512).Latest()
	if im.Status != snapshot.Expired || !strings.Contains(im.Reason, "image expired at") {
		t.Fatalf("image = %+v", im)
	}

	// The endorser's server goes away and the list expires: the last good list held until then.
	os.Remove(filepath.Join(s.pubDir, "image.list"))
	s.clock = now.Add(5 * 24 * time.Hour)
	s.sync()
	if _, ok := s.lookup(imgs[0].SHA512).EndorsedAt(s.clock); !ok {
		t.Fatal("last good list dropped before it expired")
	}
	s.clock = now.Add(11 * 24 * time.Hour)
	rep = s.sync()
	if rep.Results[0].Endorsed != 0 {
		t.Fatalf("endorsed after the list expired: %+v", rep.Results[0])
	}
	im = s.lookup(imgs[0].SHA512).Latest()
	if im.Status != snapshot.Expired || !strings.Contains(im.Reason, "list list-a version 1 expired") {
		t.Fatalf("image = %+v", im)
	}
}

func TestSyncSnapshotExpiryIsCappedByMaxAge(t *testing.T) {
	s := newSite(t)
	s.cfg.Subscriptions[0].MaxAge = 24 * time.Hour
	s.publish(list("1", policytest.Images(1)...))
	rep := s.sync()
	if want := now.Add(-time.Hour).Add(24 * time.Hour); !rep.Snapshot.Expires.Equal(want) {
		t.Fatalf("snapshot expires %v, want %v", rep.Snapshot.Expires, want)
	}
}

func TestSyncRemovedSubscriptionRevokes(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(1)
	s.publish(list("1", imgs...))
	s.sync()
	s.cfg.Subscriptions = nil
	s.sync()
	if e := s.lookup(imgs[0].SHA512); e != nil {
		t.Fatalf("image of a removed subscription still in the snapshot: %+v", e)
	}
	evs := s.history()
	if last := evs[len(evs)-1]; last.Event != EventImageRevoked || !strings.Contains(last.Message, "removed from the configuration") {
		t.Fatalf("last event %+v", last)
	}
}

func TestSyncChangedMetadataIsRecorded(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(1)
	s.publish(list("1", imgs...))
	s.sync()
	imgs[0].Title = "Renamed"
	s.publish(list("2", imgs...))
	rep := s.sync()
	if rep.Results[0].Changes[EventImageChanged] != 1 {
		t.Fatalf("changes %v", rep.Results[0].Changes)
	}
	if im := s.lookup(imgs[0].SHA512).Images[0]; im.Title != "Renamed" || !im.Since.Equal(now) {
		t.Fatalf("image %+v", im)
	}
}

func TestSyncFailsWhole_WhenHistoryCannotBeWritten(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(2)
	s.publish(list("1", imgs...))
	s.sync()
	before, _ := os.ReadFile(s.cfg.Paths().Snapshot())
	// The history becomes unwritable: the sync must not take effect.
	hist := HistoryPath(s.cfg.Paths().PolicyDir())
	os.Rename(hist, hist+".moved")
	os.Mkdir(hist, 0o755)
	s.publish(list("2", imgs[0]))
	_, err := (&Syncer{Config: s.cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return s.clock }}).Run(context.Background())
	if err == nil {
		t.Fatal("sync succeeded without a history")
	}
	after, _ := os.ReadFile(s.cfg.Paths().Snapshot())
	if string(before) != string(after) {
		t.Fatal("snapshot changed although the history could not be written")
	}
	st, _ := LoadState(StatePath(s.cfg.Paths().PolicyDir()))
	if st.Subscriptions["example"].Accepted.Version != "1" {
		t.Fatal("state changed although the history could not be written")
	}
}

// TestSyncLargeList: a first sync of a list far larger than one journal batch records every
// image (the history is written in several batches).
func TestSyncLargeList(t *testing.T) {
	if testing.Short() {
		t.Skip("large list")
	}
	s := newSite(t)
	s.publish(list("1", policytest.Images(40_000)...))
	rep := s.sync()
	if r := rep.Results[0]; r.Outcome != OutcomeAccepted || r.Endorsed != 40_000 {
		t.Fatalf("%+v", r)
	}
	if n := countEvents(s.history(), EventImageEndorsed); n != 40_000 {
		t.Fatalf("%d image.endorsed events", n)
	}
}

// TestSyncLowerMaxAgeAppliesToTheListInForce: an operator who lowers max_age freezes the
// list in force at once, without waiting for a new list.
func TestSyncLowerMaxAgeAppliesToTheListInForce(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(1)
	s.publish(list("1", imgs...)) // created an hour before now
	s.sync()
	s.cfg.Subscriptions[0].MaxAge = 30 * time.Minute
	rep := s.sync()
	if rep.Results[0].Endorsed != 0 || !strings.Contains(s.lookup(imgs[0].SHA512).Latest().Reason, "older than max_age") {
		t.Fatalf("%+v", rep.Results[0])
	}
}
