package endorse

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/verify"
)

func TestInit(t *testing.T) {
	w, clock := newWorkspace(t)
	l := readList(t, w)
	if l.Identifier != testListID || l.Version != "0" || len(l.Images) != 0 || l.Title != "Example VO images" ||
		l.Endorser.DN != "/DC=org/DC=example/CN=Jane Doe" || l.Endorser.CA != "/DC=org/DC=example/CN=Example CA" ||
		!l.Created.Equal(clock.t) || !l.Expires.Equal(clock.t.Add(48*time.Hour)) || l.URI != "https://images.example.org/vo/image.list" {
		t.Fatalf("new list: %+v", l)
	}
	recs, err := w.History()
	if err != nil || len(recs) != 1 || recs[0].Action != ActionInit || recs[0].Actor != testActor() || recs[0].List != testListID {
		t.Fatalf("history: %+v, %v", recs, err)
	}

	// Refusals, none of which may touch the existing list.
	before, _ := os.ReadFile(w.List)
	good := InitOptions{Identifier: testListID, Title: "t", EndorserDN: "/CN=a", EndorserCA: "/CN=b"}
	for name, tc := range map[string]struct {
		list string
		o    func(InitOptions) InitOptions
		want string
	}{
		"list exists":    {w.List, func(o InitOptions) InitOptions { return o }, "exists"},
		"not a uuid":     {"", func(o InitOptions) InitOptions { o.Identifier = "vo-list"; return o }, "not a UUID"},
		"no title":       {"", func(o InitOptions) InitOptions { o.Title = " "; return o }, "--title"},
		"no endorser dn": {"", func(o InitOptions) InitOptions { o.EndorserDN = ""; return o }, "--endorser-dn"},
		"no endorser ca": {"", func(o InitOptions) InitOptions { o.EndorserCA = ""; return o }, "--endorser-ca"},
		"relative uri":   {"", func(o InitOptions) InitOptions { o.URI = "images/list"; return o }, "absolute URL"},
	} {
		list := tc.list
		if list == "" {
			list = filepath.Join(t.TempDir(), "other.list")
		}
		err := Open(list).Init(tc.o(good))
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want a refusal containing %q, got %v", name, tc.want, err)
		}
	}
	if after, _ := os.ReadFile(w.List); !bytes.Equal(before, after) {
		t.Error("a refused init changed the list")
	}
	// A history without its list is not overwritten either.
	os.Remove(w.List)
	if err := w.Init(good); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), ".history exists") {
		t.Errorf("init over an existing history: %v", err)
	}
}

// TestSign: each signature bumps hv:version, sets dc:date:created to now and moves
// dc:date:expires to now plus the list's validity; FILE.sig and FILE.bundle verify with the
// key, as vmgate sync verifies them; each version is archived byte for byte.
func TestSign(t *testing.T) {
	w, clock := newWorkspace(t)
	signer := testSigner(t)
	keys, err := verify.ParseKeys(signer.PublicKeyPEM())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(w.List)
	if _, err := w.Add(AddOptions{Image: rawImage(t, dir, "a.raw"), Title: "A", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		advance   time.Duration
		expiresIn time.Duration
		version   string
		validity  time.Duration
	}{
		{time.Hour, 0, "1", 48 * time.Hour},                      // the period init set
		{24 * time.Hour, 0, "2", 48 * time.Hour},                 // no change: a renewal
		{time.Minute, 10 * 24 * time.Hour, "3", 240 * time.Hour}, // a new period
		{time.Minute, 0, "4", 240 * time.Hour},                   // which is kept
	}
	for _, st := range steps {
		clock.advance(st.advance)
		res, err := w.Sign(SignOptions{Signer: signer, ExpiresIn: st.expiresIn})
		if err != nil {
			t.Fatalf("sign %s: %v", st.version, err)
		}
		data, _ := os.ReadFile(w.List)
		l := readList(t, w)
		if l.Version != st.version || res.Version != st.version || !l.Created.Equal(clock.t) || !l.Expires.Equal(clock.t.Add(st.validity)) {
			t.Fatalf("sign %s: list version %s created %s expires %s (result %+v)", st.version, l.Version, l.Created, l.Expires, res)
		}
		if err := policy.CheckContent(l, clock.t, 0); err != nil {
			t.Fatalf("sign %s: a site would refuse it: %v", st.version, err)
		}
		sig, _ := os.ReadFile(w.SignaturePath())
		bundle, _ := os.ReadFile(w.BundlePath())
		if err := keys.VerifySignature(data, sig); err != nil {
			t.Errorf("sign %s: FILE.sig: %v", st.version, err)
		}
		if err := keys.VerifyBundle(data, bundle); err != nil {
			t.Errorf("sign %s: FILE.bundle: %v", st.version, err)
		}
		// What cosign sign-blob writes: base64 without a newline; a bundle holding only
		// base64Signature, as no transparency log was used.
		if bytes.ContainsAny(sig, "\n ") {
			t.Errorf("sign %s: signature has white space: %q", st.version, sig)
		}
		var b map[string]any
		if err := json.Unmarshal(bundle, &b); err != nil || len(b) != 1 || b["base64Signature"] != string(sig) {
			// Both are fresh ECDSA signatures of the same bytes, but each run signs once and
			// writes the same signature into both.
			t.Errorf("sign %s: bundle %s", st.version, bundle)
		}
		archived, _ := os.ReadFile(filepath.Join(dir, res.Archive))
		archivedSig, _ := os.ReadFile(filepath.Join(dir, res.Archive+".sig"))
		if !bytes.Equal(archived, data) || !bytes.Equal(archivedSig, sig) || res.Archive != filepath.Join("image.list.d", "versions", st.version+".json") {
			t.Errorf("sign %s: archive %s does not hold the signed bytes and signature", st.version, res.Archive)
		}
	}

	recs, _ := w.History()
	var signs []Record
	for _, r := range recs {
		if r.Action == ActionSign {
			signs = append(signs, r)
		}
		if r.Pending {
			t.Errorf("seq %d pending after a sign", r.Seq)
		}
	}
	if len(signs) != 4 || signs[0].Key != signer.Fingerprint || signs[0].Images != 1 || signs[3].ListVersion != "4" {
		t.Fatalf("sign records: %+v", signs)
	}
}

func TestSignRefusals(t *testing.T) {
	w, clock := newWorkspace(t)
	signer := testSigner(t)
	dir := filepath.Dir(w.List)
	if _, err := w.Add(AddOptions{Image: rawImage(t, dir, "a.raw"), Title: "A", Version: "1"}); err != nil {
		t.Fatal(err)
	}

	// An image added to the list by hand, which the history does not explain.
	data, _ := os.ReadFile(w.List)
	d, err := parseDocument(data)
	if err != nil {
		t.Fatal(err)
	}
	extra := map[string]json.RawMessage{}
	for k, v := range d.images[0] {
		extra[k] = v
	}
	extra["dc:identifier"] = raw("0b5e1f3a-0000-4000-8000-000000000001")
	extra["sl:checksum:sha512"] = raw(strings.Repeat("ab", 64))
	d.images = append(d.images, extra)
	edited, _ := d.render()
	os.WriteFile(w.List, edited, 0o644)
	if _, err := w.Sign(SignOptions{Signer: signer}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no history entry adds it") {
		t.Fatalf("sign of a hand-edited list: %v", err)
	}
	os.WriteFile(w.List, data, 0o644)

	// A list past its own expiry cannot be fixed by the clock: sign moves it on. But a
	// signature is refused when no key is given.
	clock.advance(100 * 24 * time.Hour)
	if _, err := w.Sign(SignOptions{}); err == nil {
		t.Fatal("sign without a key")
	}
	res, err := w.Sign(SignOptions{Signer: signer})
	if err != nil || res.Pending != 1 {
		t.Fatalf("sign: %+v, %v", res, err)
	}
	// The archive already holds the next version (a history that was cut back): refused.
	os.WriteFile(filepath.Join(w.Dir(), "versions", "2.json"), []byte("{}"), 0o644)
	if _, err := w.Sign(SignOptions{Signer: signer}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "archived already") {
		t.Fatalf("sign over an archived version: %v", err)
	}
}

func TestNextVersion(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 11, 12, 0, time.UTC)
	for _, tc := range []struct{ cur, want string }{
		{"0", "1"}, {"1", "2"}, {"9", "10"}, {"199", "200"}, {"007", "8"}, {"", "20261120101112"},
		{"2024.1", "20261120101112"}, {"v3", "20261120101112"},
	} {
		got, err := nextVersion(tc.cur, now)
		if err != nil || got != tc.want || policy.CompareVersions(got, tc.cur) <= 0 {
			t.Errorf("nextVersion(%q) = %q, %v; want %q", tc.cur, got, err, tc.want)
		}
	}
	// A version that already sorts after the clock cannot be followed by a date.
	if _, err := nextVersion("30000101000000x", now); !errors.Is(err, ErrRefused) {
		t.Errorf("want a refusal, got %v", err)
	}
}

func TestAddAndRemove(t *testing.T) {
	w, _ := newWorkspace(t)
	dir := filepath.Dir(w.List)
	aPath, bPath := rawImage(t, dir, "a.raw"), rawImage(t, dir, "b.raw")
	a, err := w.Add(AddOptions{Image: aPath, Title: "A", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if !uuidRE.MatchString(a.Identifier) || a.URI != "https://images.example.org/vo/a.raw" || a.Info.Format != FormatRaw {
		t.Fatalf("added: %+v", a)
	}
	// A new version of the same image: same identifier, other bytes, the URI it had; the
	// keys endorse does not set are kept.
	data, _ := os.ReadFile(w.List)
	d, _ := parseDocument(data)
	d.images[0]["sl:os"] = raw("Linux")
	d.images[0]["ad:mpuri"] = raw("https://appdb.example.org/store/vm/image/1")
	edited, _ := d.render()
	os.WriteFile(w.List, edited, 0o644)
	a2, err := w.Add(AddOptions{Image: bPath, Title: "A", Version: "2", Identifier: a.Identifier})
	if err != nil {
		t.Fatal(err)
	}
	l := readList(t, w)
	if a2.Replaced != a.Info.SHA512 || len(l.Images) != 1 || l.Images[0].SHA512 != a2.Info.SHA512 || l.Images[0].Version != "2" ||
		l.Images[0].OS != "Linux" || string(l.Images[0].Raw["ad:mpuri"]) == "" || l.Images[0].URI != a.URI {
		t.Fatalf("replaced: %+v, list %+v", a2, l.Images)
	}

	// The same bytes under another identifier: refused.
	if _, err := w.Add(AddOptions{Image: bPath, Title: "B", Version: "1"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "same sha512") {
		t.Fatalf("duplicate sha512: %v", err)
	}
	for name, o := range map[string]AddOptions{
		"no title":         {Image: aPath, Version: "1"},
		"no version":       {Image: aPath, Title: "A"},
		"bad uri":          {Image: aPath, Title: "A", Version: "1", URI: "a.raw"},
		"padded id":        {Image: aPath, Title: "A", Version: "1", Identifier: " x"},
		"compressed image": {Image: writeFile(t, dir, "c.gz", []byte("\x1f\x8b\x08\x00")), Title: "C", Version: "1"},
	} {
		if _, err := w.Add(o); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: want a refusal, got %v", name, err)
		}
	}

	// Removal needs a reason and a listed identifier.
	if _, err := w.Remove(a.Identifier, " "); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--reason") {
		t.Fatalf("remove without a reason: %v", err)
	}
	if _, err := w.Remove("8a1f2e3d-4c5b-4a69-8877-665544332211", "gone"); !errors.Is(err, ErrRefused) {
		t.Fatalf("remove of an unknown image: %v", err)
	}
	r, err := w.Remove(a.Identifier, "CVE-2026-1234 in openssh")
	if err != nil || r.SHA512 != a2.Info.SHA512 || r.Version != "2" {
		t.Fatalf("remove: %+v, %v", r, err)
	}
	if l := readList(t, w); len(l.Images) != 0 {
		t.Fatalf("still listed: %+v", l.Images)
	}
	recs, _ := w.History()
	last := recs[len(recs)-1]
	if last.Action != ActionRemove || last.Reason != "CVE-2026-1234 in openssh" || last.Image != a.Identifier || last.Actor != testActor() || !last.Pending {
		t.Fatalf("remove record: %+v", last)
	}
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Action)
	}
	if got := strings.Join(actions, " "); got != "init add add remove" {
		t.Fatalf("history: %s", got)
	}
}

func TestEditsNeedAList(t *testing.T) {
	dir := t.TempDir()
	w := &Workspace{List: filepath.Join(dir, "missing.list")}
	img := rawImage(t, dir, "a.raw")
	if _, err := w.Add(AddOptions{Image: img, Title: "A", Version: "1"}); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("add to a missing list: %v", err)
	}
	if _, err := os.Stat(w.Dir()); err == nil {
		t.Error("add to a missing list made FILE.d")
	}
	// A list that vmgate endorse did not start has no history to continue.
	other, _ := newWorkspace(t)
	data, _ := os.ReadFile(other.List)
	w = &Workspace{List: writeFile(t, dir, "foreign.list", data)}
	if _, err := w.Add(AddOptions{Image: img, Title: "A", Version: "1"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "no history") {
		t.Errorf("add to a list without history: %v", err)
	}
	if _, err := w.Sign(SignOptions{Signer: testSigner(t)}); !errors.Is(err, ErrRefused) {
		t.Errorf("sign of a list without history: %v", err)
	}
}

func TestImageURI(t *testing.T) {
	w, _ := newWorkspace(t)
	dir := filepath.Dir(w.List)
	res, err := w.Add(AddOptions{Image: rawImage(t, dir, "a.raw"), Title: "A", Version: "1", URI: "https://cdn.example.org/a.raw?x=1"})
	if err != nil || res.URI != "https://cdn.example.org/a.raw?x=1" {
		t.Fatalf("explicit uri: %+v, %v", res, err)
	}
	// A list without hv:uri needs --uri.
	w2 := &Workspace{List: filepath.Join(t.TempDir(), "l"), Now: w.Now, Actor: testActor()}
	if err := w2.Init(InitOptions{Identifier: testListID, Title: "t", EndorserDN: "/CN=a", EndorserCA: "/CN=b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Add(AddOptions{Image: rawImage(t, dir, "b.raw"), Title: "B", Version: "1"}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--uri") {
		t.Fatalf("no uri: %v", err)
	}
}
