package ship

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

func testEntry(t *testing.T, r trace.Record, seq uint64) journal.Entry {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return journal.Entry{Seq: seq, Time: time.Date(2026, 11, 20, 10, 0, 1, 0, time.UTC),
		Prev: strings.Repeat("a", 64), Hash: strings.Repeat("b", 64), Data: data}
}

func TestMessageFormat(t *testing.T) {
	r := testRecord(3)
	r.Images = append(r.Images, trace.Image{Disk: "vdb", SHA512: strings.Repeat("cd", 64)}, trace.Image{Disk: "vdc", SHA512: r.Images[0].SHA512})
	e := testEntry(t, r, 42)
	doc, err := encodeECS(nil, &e, &r)
	if err != nil {
		t.Fatal(err)
	}
	raw := appendMessage(nil, "vmgate", &e, &r, doc)

	want := `<86>1 2026-11-20T10:00:03.123456Z compute-07.example.org vmgate - admission.allow [vmgate@32473 seq="42" hash="` +
		strings.Repeat("b", 64) + `" prev="` + strings.Repeat("a", 64) + `" event="admission.allow" outcome="success" ` +
		`domain="instance-00000003 \"q\]\\" domain_uuid="9b2c1a3e-8f4d-4b6a-9c2e-1d3f5a7b9c0d" ` +
		`instance="3f0c8b2e-5a1d-4e7f-9b6c-2d4e6f8a0b1c" user="7d1e3f5a9b2c4d6e8f0a1b3c5d7e9f1a" ` +
		`project="0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d" image_sha512="` + strings.Repeat("03", 64) + `,` + strings.Repeat("cd", 64) +
		`" ips="192.0.2.77,2001:db8::77,198.51.100.7"] {`
	if !bytes.HasPrefix(raw, []byte(want)) {
		t.Fatalf("message:\n got %s\nwant %s…", raw, want)
	}

	m, err := ParseMessage(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.Facility != 10 || m.Severity != 6 || m.AppName != "vmgate" || m.ProcID != "-" || m.MsgID != "admission.allow" || m.SDID != SDID {
		t.Errorf("header: %+v", m)
	}
	if got := m.Params["domain"]; got != r.Domain.Name {
		t.Errorf("domain round trip: %q, want %q", got, r.Domain.Name)
	}
	order := strings.Join(m.ParamOrder, " ")
	if order != "seq hash prev event outcome domain domain_uuid instance user project image_sha512 ips" {
		t.Errorf("param order: %s", order)
	}
	var ecs struct {
		Timestamp time.Time `json:"@timestamp"`
		Event     struct{ Action, Outcome string }
		Host      struct{ Name string }
		User      struct{ ID, Name string }
		Cloud     struct{ Instance, Project struct{ ID string } }
		Related   struct{ IP, Hash []string }
		Hash      struct{ SHA512 string }
		VMGate    struct {
			Seq  uint64
			Hash string
			Prev string `json:"prev_hash"`
		} `json:"vmgate"`
	}
	if err := json.Unmarshal(m.Msg, &ecs); err != nil {
		t.Fatalf("MSG is not JSON: %v\n%s", err, m.Msg)
	}
	if ecs.Event.Action != r.Event || ecs.Host.Name != r.Host || ecs.User.ID != r.User.ID ||
		ecs.Cloud.Instance.ID != r.Instance.ID || ecs.Cloud.Project.ID != r.Project.ID || len(ecs.Related.IP) != 3 ||
		len(ecs.Related.Hash) != 2 || ecs.Hash.SHA512 != r.Images[0].SHA512 || !ecs.Timestamp.Equal(r.Time) {
		t.Errorf("ECS document: %+v", ecs)
	}
	if ecs.VMGate.Seq != 42 || ecs.VMGate.Hash != e.Hash || ecs.VMGate.Prev != e.Prev {
		t.Errorf("vmgate fields: %+v", ecs.VMGate)
	}
	if bytes.ContainsAny(raw, "\n\r") {
		t.Error("message has a line break")
	}
}

func TestSeverity(t *testing.T) {
	for ev, want := range map[string]int{
		trace.AdmissionAllow: 6, trace.AdmissionRefuse: 4, trace.AdmissionWarn: 5, trace.VMStarted: 6,
		trace.VMTerminated: 5, "list.refused": 4, "image.revoked": 5, "list.accepted": 6,
	} {
		if got := severity(&trace.Record{Event: ev}); got != want {
			t.Errorf("%s: severity %d, want %d", ev, got, want)
		}
	}
	if got := severity(&trace.Record{Event: trace.VMStopped, Outcome: trace.OutcomeFailure}); got != 4 {
		t.Errorf("failure: severity %d", got)
	}
}

func TestHeaderFieldsSanitised(t *testing.T) {
	r := trace.Record{Host: "bad host\n", Event: strings.Repeat("x", 40)}
	e := journal.Entry{Seq: 1, Hash: strings.Repeat("0", 64), Prev: strings.Repeat("0", 64), Time: time.Unix(0, 0)}
	raw := appendMessage(nil, "vmgate", &e, &r, []byte("{}"))
	m, err := ParseMessage(raw)
	if err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if m.Hostname != "bad_host_" || len(m.MsgID) != 32 || m.Timestamp != "1970-01-01T00:00:00.000000Z" {
		t.Errorf("%+v", m)
	}
	r = trace.Record{Domain: trace.Domain{Name: "a\xffb"}}
	m, err = ParseMessage(appendMessage(nil, "vmgate", &e, &r, nil))
	if err != nil || m.Hostname != "-" || m.MsgID != "-" || m.Params["domain"] != "a\uFFFDb" || m.Msg != nil {
		t.Errorf("%v %+v", err, m)
	}
}

func TestSplitFrames(t *testing.T) {
	var b []byte
	b = appendFrame(b, []byte("<86>1 a"), nil)
	b = appendFrame(b, []byte("two"), []byte("words"))
	if string(b) != "7 <86>1 a9 two words" {
		t.Fatalf("%q", b)
	}
	msgs, rest, err := SplitFrames(append(b, "12 partial"...))
	if err != nil || len(msgs) != 2 || string(msgs[1]) != "two words" || string(rest) != "12 partial" {
		t.Fatalf("%q %q %v", msgs, rest, err)
	}
	for _, bad := range []string{"x <86>", "07 abcdefg", "-1 a"} {
		if _, _, err := SplitFrames([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// appendJSON must write what encoding/json writes, byte for byte.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	odd := []string{"", "plain", `quote " and \ backslash`, "<script>&", "tab\tnl\ncr\r", "\x00\x1f\x7f", "é ü 漢字",
		"\u2028\u2029", "bad \xff utf8", "bs\b ff\f"}
	for i := range 20 {
		r := testRecord(i)
		if i < len(odd) {
			r.Host, r.Reason, r.Domain.Name = odd[i], odd[len(odd)-1-i], odd[i]+odd[len(odd)-1-i]
			r.MACs = []string{odd[i]}
		}
		if i == 3 {
			r.User, r.Images, r.IPs = nil, nil, nil
		}
		doc := r.ECS(uint64(i)*1e15, strings.Repeat("f", 64), strings.Repeat("0", 64))
		doc["extra"] = map[string]any{"f": 1.5, "n": nil, "b": true, "i": -3, "l": []any{"x", uint64(2)}, "s": []string(nil)}
		want, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendJSON([]byte("prefix"), doc)
		if err != nil || string(got) != "prefix"+string(want) {
			t.Fatalf("record %d:\n got %s\nwant prefix%s", i, got, want)
		}
	}
}
