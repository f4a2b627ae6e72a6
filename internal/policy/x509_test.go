package policy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/smime"
)

// The S/MIME fixtures made with the openssl CLI (smime/testdata/openssl/gen.sh) are valid
// at this time.
var smimeNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const smimeFixtures = "smime/testdata/openssl"

func smimeTrust(t *testing.T) config.X509Trust {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(smimeFixtures, "certificates"))
	if err != nil {
		t.Fatal(err)
	}
	return config.X509Trust{CADir: dir, DN: "/DC=org/DC=example/O=Hosts/CN=endorser.example.org", CA: "/DC=org/DC=example/CN=Example Test CA"}
}

// TestParseAppDBList: a list in the form EGI AppDB publishes (ad:* keys, hv:size as a
// string, an expiry in 2499) parses, keeps every key, and passes the content checks.
func TestParseAppDBList(t *testing.T) {
	data, err := os.ReadFile("testdata/appdb-imagelist.json")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if l.Expires != time.Date(2499, 12, 31, 22, 0, 0, 0, time.UTC) || len(l.Images) != 2 {
		t.Fatalf("list: expires %v, %d images", l.Expires, len(l.Images))
	}
	if l.Endorser.DN != "/DC=EU/DC=EXAMPLE/C=GR/O=Robots/O=Example Research Network/CN=Robot:appdb@example.eu" {
		t.Fatalf("endorser %+v", l.Endorser)
	}
	if string(l.Raw["ad:vo"]) != `"example.vo.eu"` {
		t.Fatalf("list-level ad:vo lost: %q", l.Raw["ad:vo"])
	}
	img := l.Images[0]
	if img.Size != 1073741824 || img.Format != "QCOW2" || img.Version != "2026.11.15" {
		t.Fatalf("image %+v", img)
	}
	for _, k := range []string{"ad:group", "ad:mpuri", "ad:user:fullname", "ad:user:guid", "ad:user:uri", "hv:hypervisor", "sl:comments"} {
		if _, ok := img.Raw[k]; !ok {
			t.Errorf("image key %s lost", k)
		}
	}
	if l.Images[1].Expires.Year() != 2499 || l.Images[1].Size != 2362232012 {
		t.Fatalf("second image %+v", l.Images[1])
	}
	if err := CheckContent(l, time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), time.Minute); err != nil {
		t.Fatal(err)
	}
}

func TestVerifySMIMEList(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(smimeFixtures, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, mode := range []string{"default", "binary", "text"} {
		l, signed, err := VerifySMIMEList(read(mode+".smime"), smimeTrust(t), smimeNow)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if l.Identifier != "8a3e5f0c-2b1d-4e6f-9a7b-1c2d3e4f5a6b" || !bytes.Contains(signed, []byte(`"hv:imagelist"`)) {
			t.Fatalf("%s: list %s, signed %q", mode, l.Identifier, signed)
		}
	}
	wrongDN := smimeTrust(t)
	wrongDN.DN = "/DC=org/DC=example/O=Hosts/CN=other.example.org"
	noDir := smimeTrust(t)
	noDir.CADir = "/nonexistent"
	tampered := bytes.Replace(read("default.smime"), []byte("Example base image"), []byte("Example base imagE"), 1)
	for _, c := range []struct {
		name  string
		doc   []byte
		trust config.X509Trust
		now   time.Time
		want  Reason
	}{
		{"tampered", tampered, smimeTrust(t), smimeNow, ReasonBadSignature},
		{"wrong dn", read("default.smime"), wrongDN, smimeNow, ReasonSignerMismatch},
		{"list names another endorser", read("names-other.smime"), smimeTrust(t), smimeNow, ReasonSignerMismatch},
		{"revoked", read("revoked.smime"), config.X509Trust{CADir: smimeTrust(t).CADir, DN: "/DC=org/DC=example/O=Hosts/CN=revoked.example.org", CA: smimeTrust(t).CA}, smimeNow, ReasonSignerRevoked},
		{"expired", read("default.smime"), smimeTrust(t), smimeNow.AddDate(150, 0, 0), ReasonSignerExpired},
		{"no ca dir", read("default.smime"), noDir, smimeNow, ReasonConfig},
		{"plain json", read("list.json"), smimeTrust(t), smimeNow, ReasonSMIMEMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := VerifySMIMEList(c.doc, c.trust, c.now)
			r, ok := AsRefusal(err)
			if !ok || r.Reason != c.want || r.Hint() == "" {
				t.Fatalf("want refusal %s, got %v", c.want, err)
			}
		})
	}
	// Every sentinel of the smime package has its own reason and advice.
	for sentinel, want := range map[error]Reason{
		smime.ErrWeakAlgorithm: ReasonWeakAlgorithm, smime.ErrUnsupported: ReasonUnsupportedSignature,
		smime.ErrMalformed: ReasonSMIMEMalformed, smime.ErrCRL: ReasonCRLUnavailable,
	} {
		if r := smimeRefusal(fmt.Errorf("%w: detail", sentinel)); r.Reason != want || r.Hint() == "" {
			t.Errorf("%v: reason %s, hint %q", sentinel, r.Reason, r.Hint())
		}
	}
	// The list that names another endorser says so.
	_, _, err := VerifySMIMEList(read("names-other.smime"), smimeTrust(t), smimeNow)
	if !strings.Contains(err.Error(), "names endorser hv:dn /DC=org/DC=example/O=Hosts/CN=other.example.org but was signed by /DC=org/DC=example/O=Hosts/CN=endorser.example.org") {
		t.Fatal(err)
	}
}

// TestSyncX509: an x509 subscription goes through the same sync as a cosign one; the whole
// signed document is archived, without a separate signature file; a re-signed copy of the
// same list is not a new version.
func TestSyncX509(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "pub")
	os.MkdirAll(pub, 0o755)
	trust := smimeTrust(t)
	cfg, err := config.Parse([]byte(`
state_dir: ` + filepath.Join(dir, "state") + `
subscriptions:
  - name: vo
    url: file://` + filepath.Join(pub, "image.list") + `
    max_age: 8760h
    x509: {ca_dir: ` + trust.CADir + `, dn: "` + trust.DN + `", ca: "` + trust.CA + `"}
`))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(smimeFixtures, "default.smime"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(pub, "image.list"), doc, 0o644)
	syncer := &Syncer{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return smimeNow }}
	rep, err := syncer.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res := rep.Results[0]
	if res.Outcome != OutcomeAccepted || res.Version != "20261101" || res.Endorsed != 1 {
		t.Fatalf("result %+v (refusal %v)", res, res.Refusal)
	}
	var archive string
	for _, ev := range rep.Events {
		if ev.Event == EventListAccepted {
			archive = ev.Archive
		}
	}
	got, err := os.ReadFile(filepath.Join(cfg.Paths().PolicyDir(), archive))
	if err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("archive %s is not the signed document: %v", archive, err)
	}
	if m, _ := filepath.Glob(filepath.Join(cfg.Paths().PolicyDir(), archive+".*")); len(m) != 0 {
		t.Fatalf("an S/MIME list got a separate signature file: %v", m)
	}

	// The same list signed again (binary mode: other bytes, same list): unchanged.
	bin, _ := os.ReadFile(filepath.Join(smimeFixtures, "binary.smime"))
	os.WriteFile(filepath.Join(pub, "image.list"), bin, 0o644)
	if rep, err = syncer.Run(context.Background()); err != nil || rep.Results[0].Outcome != OutcomeUnchanged {
		t.Fatalf("re-signed list: %v %+v", err, rep.Results[0])
	}

	// Tampered: refused with its reason, the list in force stays.
	os.WriteFile(filepath.Join(pub, "image.list"), bytes.Replace(doc, []byte(`"hv:version": "20261101"`), []byte(`"hv:version": "20261102"`), 1), 0o644)
	rep, err = syncer.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Results[0]; r.Outcome != OutcomeRefused || r.Refusal.Reason != ReasonBadSignature || r.Version != "20261101" || r.Endorsed != 1 {
		t.Fatalf("tampered: %+v (refusal %v)", r, r.Refusal)
	}
}
