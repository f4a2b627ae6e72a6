package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func fixture(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/hepix-imagelist.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFixture(t *testing.T) {
	l, err := Parse(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	if l.Identifier != "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e" || l.Version != "20261101080000" {
		t.Errorf("list = %s %s", l.Identifier, l.Version)
	}
	if !l.Created.Equal(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("created = %v", l.Created)
	}
	if l.Endorser.DN != "/DC=org/DC=example/O=Hosts/CN=images.example.org" || l.Endorser.CA != "/DC=org/DC=example/CN=Example Test CA" {
		t.Errorf("endorser = %+v", l.Endorser)
	}
	if len(l.Images) != 2 {
		t.Fatalf("%d images", len(l.Images))
	}
	w, d := l.Images[0], l.Images[1]
	if w.Size != 1073741824 || d.Size != 2147483648 {
		t.Errorf("sizes (string and number) = %d %d", w.Size, d.Size)
	}
	if d.SHA512 != strings.ToLower(d.SHA512) {
		t.Errorf("sha512 not normalised: %s", d.SHA512)
	}
	if !d.Expires.Equal(time.Date(2026, 12, 15, 0, 0, 0, 0, time.UTC)) || !w.Expires.IsZero() {
		t.Errorf("image expiries = %v %v", w.Expires, d.Expires)
	}
	if string(w.Raw["ad:appid"]) != `"1234"` || string(l.Raw["ad:vo"]) != `"example.vo.org"` {
		t.Errorf("unknown keys not kept: %s %s", w.Raw["ad:appid"], l.Raw["ad:vo"])
	}
	if w.OSName != "AlmaLinux" || w.Format != "QCOW2" || w.Arch != "x86_64" {
		t.Errorf("image fields = %+v", w)
	}
}

// TestParseByteOrderMark: a list an editor saved with a byte order mark reads as without.
func TestParseByteOrderMark(t *testing.T) {
	l, err := Parse(append([]byte("\ufeff"), fixture(t)...))
	if err != nil {
		t.Fatalf("a list starting with a byte order mark: %v", err)
	}
	if l.Identifier != "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e" || len(l.Images) != 2 {
		t.Errorf("list = %s with %d images", l.Identifier, len(l.Images))
	}
	if _, err := Parse(append([]byte("\ufeff\ufeff"), fixture(t)...)); err == nil {
		t.Error("two byte order marks were accepted")
	}
}

func TestParseNamesMissingKey(t *testing.T) {
	base := string(fixture(t))
	cases := []struct {
		name, from, to, want string
	}{
		{"list identifier", `"dc:identifier": "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e",`, ``, "dc:identifier: missing"},
		{"list version", `"hv:version": "20261101080000",`, ``, "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e: hv:version: missing"},
		{"expires", `"dc:date:expires": "2026-12-31T23:59:59Z",`, ``, "dc:date:expires: missing"},
		{"bad time", `"2026-11-01T08:00:00Z"`, `"1 Nov 2026"`, "dc:date:created"},
		{"endorser dn", `"hv:dn": "/DC=org/DC=example/O=Hosts/CN=images.example.org",`, ``, "hv:endorser.hv:x509.hv:dn: missing"},
		{"image sha512", `"sl:checksum:sha512": "` + sha(t, base, 0) + `",`, ``, "image 8a1f2e3d-4c5b-4a69-8877-665544332211: sl:checksum:sha512: missing"},
		{"short sha512", sha(t, base, 0), "abcd", "sl:checksum:sha512: sha512 must be 128 hex digits"},
		{"image uri", `"hv:uri": "https://images.example.org/vo/example/worker-el9-20261030.qcow2",`, ``, "image 8a1f2e3d-4c5b-4a69-8877-665544332211: hv:uri: missing"},
		{"size", `"hv:size": "1073741824"`, `"hv:size": "1 GiB"`, "hv:size"},
		{"wrong type", `"hv:version": "9.4-20261030"`, `"hv:version": 9`, "hv:version: must be a string"},
		{"not hepix", `"hv:imagelist"`, `"imagelist"`, "hv:imagelist: missing"},
		{"trailing data", "\n}\n", "\n}\n{}", "data after the object"},
		{"duplicate key", `"hv:version": "20261101080000",`, `"hv:version": "20261101080000", "hv:version": "1",`, "hv:version: appears twice"},
		{"images not array", `"hv:images": [`, `"hv:images": 5, "x": [`, "hv:images: must be an array"},
	}
	for _, c := range cases {
		in := strings.Replace(base, c.from, c.to, 1)
		if in == base {
			t.Fatalf("%s: fixture does not contain %q", c.name, c.from)
		}
		_, err := Parse([]byte(in))
		var m *MalformedError
		if !errors.As(err, &m) {
			t.Errorf("%s: err = %v, want a MalformedError", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %q does not contain %q", c.name, err, c.want)
		}
	}
}

// sha returns the i-th sl:checksum:sha512 value of the fixture text.
func sha(t *testing.T, text string, i int) string {
	parts := strings.Split(text, `"sl:checksum:sha512": "`)
	if len(parts) <= i+1 {
		t.Fatal("fixture has too few checksums")
	}
	return parts[i+1][:128]
}

func TestParseGarbage(t *testing.T) {
	for _, in := range []string{"", "null", "[]", "{", `{"hv:imagelist": null}`, `{"hv:imagelist": {"hv:images": [null]}}`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(fixture(f))
	f.Add([]byte(`{"hv:imagelist": {}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := Parse(data)
		if err != nil {
			if _, ok := AsRefusal(err); !ok {
				t.Fatalf("error is not a refusal: %v", err)
			}
			return
		}
		for _, im := range l.Images {
			if _, err := NormalizeSHA512(im.SHA512); err != nil || im.Identifier == "" {
				t.Fatalf("accepted a bad image: %+v", im)
			}
		}
		_ = CheckContent(l, time.Now(), time.Minute)
	})
}
