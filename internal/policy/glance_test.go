package policy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/policy/policytest"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// fakeGlance is an in-memory image service; the integration tests use a real Glance.
type fakeGlance struct {
	images  []GlanceImage
	listErr error
	actErr  error
	acted   []string
}

func (f *fakeGlance) Label() string { return "test-cloud" }
func (f *fakeGlance) Images(context.Context) ([]GlanceImage, error) {
	if f.listErr != nil {
		return nil, f.listErr
	}
	return append([]GlanceImage(nil), f.images...), nil
}
func (f *fakeGlance) Deactivate(_ context.Context, id string) error { return f.act(id, "deactivated") }
func (f *fakeGlance) Reactivate(_ context.Context, id string) error { return f.act(id, "active") }
func (f *fakeGlance) act(id, status string) error {
	if f.actErr != nil {
		return f.actErr
	}
	for i := range f.images {
		if f.images[i].ID == id {
			f.images[i].Status = status
			f.acted = append(f.acted, status+" "+id)
			return nil
		}
	}
	return errors.New("404 no such image")
}

func glanceImage(id, sha string) GlanceImage {
	return GlanceImage{ID: id, Name: "name-" + id, Owner: "p1", Visibility: "private", Status: "active",
		Properties: map[string]string{PropHashAlgo: "sha512", PropHashValue: sha}}
}

func TestResolveGlanceImage(t *testing.T) {
	a, b := strings.Repeat("a", 128), strings.Repeat("b", 128)
	opts := &GlanceOptions{TrustedProjects: []string{"sync-project"}}
	for _, tc := range []struct {
		name      string
		img       GlanceImage
		sha, src  string
		conflict  bool
		untrusted bool
	}{
		{name: "glance's own hash", img: glanceImage("1", strings.ToUpper(a)), sha: a, src: SourceGlance},
		{name: "agreeing property", img: withProps(glanceImage("1", a), PropImageHash, "sha512:"+a), sha: a, src: SourceGlance},
		{name: "disagreeing property: glance wins", img: withProps(glanceImage("1", a), PropImageHash, "sha512:"+b), sha: a, src: SourceGlance, conflict: true},
		{name: "glance hashed with sha256: property of a trusted project", img: GlanceImage{Owner: "sync-project", Visibility: "private",
			Properties: map[string]string{PropHashAlgo: "sha256", PropHashValue: "00", PropSHA512: a}}, sha: a, src: PropSHA512},
		{name: "property on a public image", img: GlanceImage{Visibility: "public", Properties: map[string]string{PropImageHash: "SHA512:" + a}}, sha: a, src: PropImageHash},
		{name: "cloudkeeper attributes", img: GlanceImage{Visibility: "public", Properties: map[string]string{PropApplianceAttributes: `{"sl:checksum:sha512":"` + a + `","ad:group":"x"}`}}, sha: a, src: PropApplianceAttributes},
		{name: "property of an untrusted project", img: GlanceImage{Owner: "someone", Visibility: "shared", Properties: map[string]string{PropSHA512: a}}, untrusted: true},
		{name: "community image is not public", img: GlanceImage{Owner: "someone", Visibility: "community", Properties: map[string]string{PropSHA512: a}}, untrusted: true},
		{name: "properties disagree, no glance hash", img: GlanceImage{Visibility: "public", Properties: map[string]string{PropSHA512: a, PropImageHash: "sha512:" + b}}, conflict: true},
		{name: "malformed values vouch for nothing", img: GlanceImage{Visibility: "public", Properties: map[string]string{PropSHA512: "zz", PropImageHash: "md5:" + a, PropApplianceAttributes: "{"}}},
		{name: "os_hash_value not hex", img: GlanceImage{Visibility: "public", Properties: map[string]string{PropHashAlgo: "sha512", PropHashValue: strings.Repeat("g", 128)}}},
		{name: "no properties", img: GlanceImage{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := resolveGlanceImage(&tc.img, opts)
			if r.sha512 != tc.sha || r.source != tc.src || (r.conflict != "") != tc.conflict || r.untrusted != tc.untrusted {
				t.Fatalf("got %+v", r)
			}
		})
	}
}

func withProps(img GlanceImage, kv ...string) GlanceImage {
	for i := 0; i < len(kv); i += 2 {
		img.Properties[kv[i]] = kv[i+1]
	}
	return img
}

func (s *site) syncGlance(g Glance, opts GlanceOptions) *Report {
	s.t.Helper()
	rep, err := (&Syncer{Config: s.cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return s.clock },
		Glance: g, GlanceOptions: opts}).Run(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return rep
}

func (s *site) lookupGlance(id string) *snapshot.Entry {
	s.t.Helper()
	snap, err := snapshot.Open(s.cfg.Paths().Snapshot())
	if err != nil {
		s.t.Fatal(err)
	}
	defer snap.Close()
	e, ok, err := snap.LookupGlance(id)
	if err != nil {
		s.t.Fatal(err)
	}
	if !ok {
		return nil
	}
	return e
}

func TestSyncMapsGlanceImages(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(3)
	s.publish(list("1", imgs[0], imgs[1]))
	g := &fakeGlance{images: []GlanceImage{
		glanceImage("11111111-aaaa-4000-8000-000000000001", imgs[0].SHA512),
		glanceImage("11111111-aaaa-4000-8000-000000000002", imgs[1].SHA512),
		glanceImage("11111111-aaaa-4000-8000-000000000003", imgs[2].SHA512), // never listed
		{ID: "11111111-aaaa-4000-8000-000000000004", Status: "queued"},      // no data yet
	}}
	rep := s.syncGlance(g, GlanceOptions{})
	if gr := rep.Glance; gr == nil || gr.Err != nil || gr.Listed != 4 || gr.Mapped != 2 {
		t.Fatalf("glance report %+v", rep.Glance)
	}
	if e := s.lookupGlance("11111111-aaaa-4000-8000-000000000001"); e == nil || e.SHA512 != imgs[0].SHA512 {
		t.Fatalf("endorsed Glance image not mapped: %+v", e)
	}
	if e := s.lookupGlance("11111111-aaaa-4000-8000-000000000003"); e != nil {
		t.Fatalf("an image no list names is mapped: %+v", e)
	}
	if n := countEvents(s.history(), EventGlanceMapped); n != 2 {
		t.Fatalf("%d glance.mapped events, want 2", n)
	}

	// Image 1 is revoked: its Glance id stays mapped, so the hook can say why it refuses.
	s.clock = s.clock.Add(time.Hour)
	s.publish(list("2", imgs[0]))
	s.syncGlance(g, GlanceOptions{})
	e := s.lookupGlance("11111111-aaaa-4000-8000-000000000002")
	if e == nil {
		t.Fatal("a revoked image's Glance id is no longer mapped")
	}
	if _, ok := e.EndorsedAt(s.clock); ok || e.Latest().Status != snapshot.Revoked {
		t.Fatalf("revoked image entry %+v", e)
	}
	if n := countEvents(s.history(), EventGlanceMapped); n != 2 {
		t.Fatalf("mapping again recorded again: %d events", n)
	}

	// Glance unreachable: the ids mapped before stay; a newly uploaded image is unknown.
	g.listErr = errors.New("connection refused")
	g.images = append(g.images, glanceImage("11111111-aaaa-4000-8000-000000000005", imgs[0].SHA512))
	rep = s.syncGlance(g, GlanceOptions{})
	if rep.Glance.Err == nil || !strings.Contains(rep.Glance.Err.Error(), "connection refused") {
		t.Fatalf("glance error not reported: %+v", rep.Glance)
	}
	if s.lookupGlance("11111111-aaaa-4000-8000-000000000001") == nil {
		t.Fatal("mapping lost when Glance was unreachable")
	}
	if s.lookupGlance("11111111-aaaa-4000-8000-000000000005") != nil {
		t.Fatal("an image never listed is mapped")
	}

	// Back again, and a Glance image that was deleted is no longer mapped.
	g.listErr = nil
	g.images = g.images[1:]
	s.syncGlance(g, GlanceOptions{})
	if s.lookupGlance("11111111-aaaa-4000-8000-000000000001") != nil {
		t.Fatal("a deleted Glance image is still mapped")
	}
	if s.lookupGlance("11111111-aaaa-4000-8000-000000000005") == nil {
		t.Fatal("a new Glance image of an endorsed sha512 is not mapped")
	}

	// Without a cloud configured, Glance ids vouch for nothing.
	s.sync()
	if s.lookupGlance("11111111-aaaa-4000-8000-000000000005") != nil {
		t.Fatal("mapping kept after the cloud was removed from the configuration")
	}
}

func TestSyncDeactivatesRevokedGlanceImages(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(2)
	s.publish(list("1", imgs...))
	const idA, idB, idC = "22222222-aaaa-4000-8000-00000000000a", "22222222-aaaa-4000-8000-00000000000b", "22222222-aaaa-4000-8000-00000000000c"
	g := &fakeGlance{images: []GlanceImage{glanceImage(idA, imgs[0].SHA512), glanceImage(idB, imgs[1].SHA512), glanceImage(idC, imgs[1].SHA512)}}
	// An operator deactivated C for reasons of their own: vmgate must never reactivate it.
	g.images[2].Status = "deactivated"
	opts := GlanceOptions{DeactivateRevoked: true}
	s.syncGlance(g, opts)
	if len(g.acted) != 0 {
		t.Fatalf("endorsed images acted on: %v", g.acted)
	}

	s.clock = s.clock.Add(time.Hour)
	s.publish(list("2", imgs[0]))
	rep := s.syncGlance(g, opts)
	if len(g.acted) != 1 || g.acted[0] != "deactivated "+idB {
		t.Fatalf("acted %v, want B deactivated", g.acted)
	}
	if countEvents(rep.Events, EventGlanceDeactivated) != 1 || countEvents(s.history(), EventGlanceDeactivated) != 1 {
		t.Fatal("deactivation not recorded")
	}
	// Nothing more to do on the next sync.
	s.syncGlance(g, opts)
	if len(g.acted) != 1 {
		t.Fatalf("acted again: %v", g.acted)
	}

	// Endorsed again: B is reactivated, C (not vmgate's doing) stays deactivated.
	s.clock = s.clock.Add(time.Hour)
	s.publish(list("3", imgs...))
	s.syncGlance(g, opts)
	if len(g.acted) != 2 || g.acted[1] != "active "+idB {
		t.Fatalf("acted %v, want B reactivated only", g.acted)
	}
	if countEvents(s.history(), EventGlanceReactivated) != 1 {
		t.Fatal("reactivation not recorded")
	}

	// A failing call is reported and tried again next time.
	s.clock = s.clock.Add(time.Hour)
	s.publish(list("4", imgs[0]))
	g.actErr = errors.New("403 forbidden")
	rep = s.syncGlance(g, opts)
	if len(rep.Glance.GuardErrs) != 1 || !strings.Contains(rep.Glance.GuardErrs[0].Error(), idB) {
		t.Fatalf("guard errors %v", rep.Glance.GuardErrs)
	}
	g.actErr = nil
	s.syncGlance(g, opts)
	if g.acted[len(g.acted)-1] != "deactivated "+idB {
		t.Fatalf("not retried: %v", g.acted)
	}
}

// An image whose block device mapping makes Nova boot something else is not mapped to the
// endorsement of its bytes: the endorsed bytes uploaded again with a mapping that boots
// another image would otherwise pass for endorsed.
func TestSyncRefusesImagesWithBlockDeviceMappings(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(1)
	s.publish(list("1", imgs[0]))
	const plain, mapped, empty = "22222222-aaaa-4000-8000-000000000001", "22222222-aaaa-4000-8000-000000000002", "22222222-aaaa-4000-8000-000000000003"
	bdm := `[{"boot_index": 0, "source_type": "image", "destination_type": "local", "uuid": "33333333-aaaa-4000-8000-000000000009"}]`
	g := &fakeGlance{images: []GlanceImage{
		glanceImage(plain, imgs[0].SHA512),
		withProps(glanceImage(mapped, imgs[0].SHA512), PropBlockDeviceMapping, bdm, PropBDMv2, "True"),
		withProps(glanceImage(empty, imgs[0].SHA512), PropBlockDeviceMapping, "[]", PropBDMv2, "True"),
	}}
	rep := s.syncGlance(g, GlanceOptions{})
	if gr := rep.Glance; gr.Mapped != 2 || gr.Refused != 1 || gr.Conflicts != 0 {
		t.Fatalf("glance report %+v", gr)
	}
	if s.lookupGlance(mapped) != nil {
		t.Fatal("an image with a block device mapping is mapped")
	}
	if s.lookupGlance(plain) == nil || s.lookupGlance(empty) == nil {
		t.Fatal("an image without a block device mapping is not mapped")
	}
	var found bool
	for _, ev := range s.history() {
		if ev.Event == EventGlanceConflict && ev.GlanceID == mapped && strings.Contains(ev.Message, "block_device_mapping") {
			found = true
		}
	}
	if !found {
		t.Fatal("no glance.conflict event names the mapping")
	}
	// Recorded once, not at every sync.
	s.clock = s.clock.Add(time.Minute)
	s.syncGlance(g, GlanceOptions{})
	if n := countEvents(s.history(), EventGlanceConflict); n != 1 {
		t.Fatalf("%d glance.conflict events, want 1", n)
	}
	// The site may allow it.
	s.syncGlance(g, GlanceOptions{AllowBlockDeviceMapping: true})
	if s.lookupGlance(mapped) == nil {
		t.Fatal("allowed image with a block device mapping is not mapped")
	}
}
