package trace

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/journal"
)

// TestBoundWorstCase: a record with every field at its worst (every string long and made
// of the characters JSON escapes most, every list far over its cap) fits in a journal line
// once bounded, and says what was cut.
func TestBoundWorstCase(t *testing.T) {
	worst := strings.Repeat("<\x01\xff\u2028", 200_000) // 6 bytes of JSON per byte or so
	r := Record{Time: time.Now(), Host: worst, Event: worst, Outcome: worst, Reason: worst, Exemption: worst,
		Mode: worst, Op: worst, Domain: Domain{Name: worst, UUID: worst}, Instance: &Instance{ID: worst, Name: worst},
		User: &Owner{ID: worst, Name: worst}, Project: &Owner{ID: worst, Name: worst},
		List:   &List{Subscription: worst, Identifier: worst, Version: worst, SHA256: worst, Endorser: worst},
		Action: worst, Actor: &Actor{Name: worst}, Block: &Block{Kind: worst, Target: worst, Reason: worst, By: worst, Source: worst},
		Version: worst}
	for range 1000 {
		r.Images = append(r.Images, Image{Disk: worst, Source: worst, GlanceID: worst, SHA512: worst, Identifier: worst, Title: worst,
			Version: worst, Status: worst, Subscription: worst, List: worst, ListVersion: worst, Endorser: worst})
		r.MACs = append(r.MACs, worst)
		r.IPs = append(r.IPs, IP{Address: worst, Type: worst})
	}
	Bound(&r)
	data, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > journal.MaxDataSize {
		t.Fatalf("bounded record is %d bytes, more than %d", len(data), journal.MaxDataSize)
	}
	t.Logf("worst bounded record: %d bytes", len(data))
	if len(r.Images) != MaxImages || len(r.MACs) != MaxMACs || len(r.IPs) != MaxIPs {
		t.Errorf("lists: %d images, %d MACs, %d IPs", len(r.Images), len(r.MACs), len(r.IPs))
	}
	for _, want := range []string{"reason", "host", "user.name", "block.reason", "images", "images[15].endorser", "macs", "macs[63]", "ips[0].type"} {
		if !slices.Contains(r.Truncated, want) {
			t.Errorf("Truncated does not name %q: %v", want, r.Truncated)
		}
	}
	if !strings.HasSuffix(r.Reason, ellipsis) || !strings.HasPrefix(r.Reason, "<\x01") {
		t.Errorf("reason cut to %q…", r.Reason[:20])
	}
	// Bounding again changes nothing and lists nothing twice.
	before := slices.Clone(r.Truncated)
	Bound(&r)
	if len(r.Truncated) != 0 && !slices.Equal(before, r.Truncated) {
		t.Errorf("second Bound: %v", r.Truncated)
	}
}

func TestBoundKeepsWhatFits(t *testing.T) {
	r := Record{Reason: "not endorsed: disk vda image /var/lib/libvirt/images/a.raw", Images: []Image{{Disk: "vda", Source: strings.Repeat("é", 1000)}}}
	want := r
	Bound(&r)
	if r.Truncated != nil || r.Reason != want.Reason || r.Images[0].Source != want.Images[0].Source {
		t.Errorf("Bound changed a record that fits: %+v", r)
	}
}

// TestShorten: the cut falls between characters and respects the JSON size of each.
func TestShorten(t *testing.T) {
	for _, c := range []struct {
		s      string
		budget int
		want   string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"a\"b", 3, "a\""},
		{"a<b", 6, "a"},
		{"aé", 2, "a"},  // é takes 2 bytes
		{"aé", 3, "aé"}, //
		{"a\xffb", 7, "a\xff"},
		{"a\u2028", 6, "a"},
		{"", 0, ""},
	} {
		if got := shorten(c.s, c.budget); got != c.want {
			t.Errorf("shorten(%q, %d) = %q, want %q", c.s, c.budget, got, c.want)
		}
		enc, _ := json.Marshal(c.want)
		if len(enc)-2 > c.budget {
			t.Errorf("shorten(%q, %d): %q takes %d bytes of JSON", c.s, c.budget, c.want, len(enc)-2)
		}
	}
}

// TestAppendRecordsAnOversizedRefusal: a refusal whose disk path is 400 KB is written.
func TestAppendRecordsAnOversizedRefusal(t *testing.T) {
	dir := t.TempDir()
	long := "/" + strings.Repeat("d", 400_000)
	r := Record{Time: time.Now(), Host: "h", Event: AdmissionRefuse, Outcome: OutcomeFailure,
		Reason: "not endorsed: disk vda (" + long + ") cannot follow its backing chain: disk image " + long + ": open " + long + ": file name too long",
		Domain: Domain{Name: "vm"}, Images: []Image{{Disk: "vda", Source: long, Status: "error"}}, Version: "test"}
	if err := Append(dir, r); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "trace", "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var line struct{ Data Record }
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &line); err != nil {
		t.Fatal(err)
	}
	if line.Data.Event != AdmissionRefuse || !slices.Equal(line.Data.Truncated, []string{"reason", "images[0].source"}) ||
		!strings.HasPrefix(line.Data.Reason, "not endorsed: disk vda (/ddd") {
		t.Errorf("recorded %+v", line.Data.Truncated)
	}
}

// BenchmarkBound: what bounding costs a typical record that needs no cut, on every write.
func BenchmarkBound(b *testing.B) {
	r := Record{Host: "hv-node-07", Event: AdmissionAllow, Outcome: OutcomeSuccess, Reason: "", Domain: Domain{Name: "instance-0000002a", UUID: "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f"},
		User: &Owner{ID: "9f8e7d6c5b4a49388776655443322110", Name: "carol"}, Project: &Owner{ID: "0a1b2c3d4e5f46778899aabbccddeeff", Name: "hep"},
		Images: []Image{{Disk: "vda", Source: "/var/lib/nova/instances/7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f/disk", SHA512: strings.Repeat("ab", 64)}},
		MACs:   []string{"fa:16:3e:12:34:56"}, IPs: []IP{{Address: "10.20.30.41", Type: "fixed"}}, Version: "1.0.0"}
	for b.Loop() {
		Bound(&r)
	}
}
