package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/trace"
	"github.com/vmgate/vmgate/internal/trace/index"
)

// traceFixture is a node whose journal holds two VMs that had 192.0.2.77 one after the
// other, and a refused start.
type traceFixture struct {
	cfg, stateDir string
}

var (
	traceCarol = trace.Owner{ID: "9f8e7d6c5b4a49388776655443322110", Name: "carol"}
	traceDave  = trace.Owner{ID: "1a2b3c4d5e6f47788990aabbccddeeff", Name: "dave"}
	traceHEP   = trace.Owner{ID: "0a1b2c3d4e5f46778899aabbccddeeff", Name: "hep-analysis"}
)

func traceRec(hhmm, event, name, uuid string, user *trace.Owner, addr string) trace.Record {
	t, _ := time.Parse("15:04", hhmm)
	r := trace.Record{Time: time.Date(2026, 11, 20, t.Hour(), t.Minute(), 0, 0, time.UTC), Host: "node1", Event: event,
		Outcome: trace.OutcomeSuccess, Domain: trace.Domain{Name: name, UUID: uuid}, Version: "test",
		Instance: &trace.Instance{ID: uuid, Name: "vm-" + name}, User: user, Project: &traceHEP,
		IPs: []trace.IP{{Address: addr, Type: "floating"}}, MACs: []string{"fa:16:3e:00:00:" + uuid[:2]},
		Images: []trace.Image{{GlanceID: "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b"}}}
	switch event {
	case trace.AdmissionAllow:
		r.Images = []trace.Image{{Disk: "vda", GlanceID: "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b",
			SHA512: strings.Repeat("ab", 64), Identifier: "el9-worker", Version: "9.4", Status: "endorsed"}}
	case trace.AdmissionRefuse:
		r.Outcome, r.Reason = trace.OutcomeFailure, "image 4c0f6a7e is not endorsed: unknown Glance image"
	}
	return r
}

func newTraceFixture(t *testing.T) traceFixture {
	t.Helper()
	dir := t.TempDir()
	f := traceFixture{cfg: filepath.Join(dir, "vmgate.yaml"), stateDir: filepath.Join(dir, "state")}
	if err := os.WriteFile(f.cfg, []byte("state_dir: "+f.stateDir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f", "8e4d2a1f-6c9b-4a2e-8d3e-1b2c3d4e5f60"
	f.append(t,
		traceRec("09:00", trace.AdmissionAllow, "analysis-node-3", a, &traceCarol, "192.0.2.77"),
		traceRec("09:00", trace.VMStarted, "analysis-node-3", a, &traceCarol, "192.0.2.77"),
		traceRec("09:30", trace.AdmissionRefuse, "miner", "0badc0de-0000-4000-8000-000000000000", &traceDave, "192.0.2.88"),
		traceRec("09:30", trace.VMStopped, "miner", "0badc0de-0000-4000-8000-000000000000", &traceDave, "192.0.2.88"),
		traceRec("09:30", trace.VMReleased, "miner", "0badc0de-0000-4000-8000-000000000000", &traceDave, "192.0.2.88"),
		traceRec("10:30", trace.VMStopped, "analysis-node-3", a, &traceCarol, "192.0.2.77"),
		traceRec("10:30", trace.VMReleased, "analysis-node-3", a, &traceCarol, "192.0.2.77"),
		traceRec("11:00", trace.AdmissionAllow, "batch-7", b, &traceDave, "192.0.2.77"),
		traceRec("11:00", trace.VMStarted, "batch-7", b, &traceDave, "192.0.2.77"),
	)
	return f
}

func (f traceFixture) append(t *testing.T, recs ...trace.Record) {
	t.Helper()
	if err := trace.Append(f.stateDir, recs...); err != nil {
		t.Fatal(err)
	}
}

func (f traceFixture) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code, _ = runListCmd(t, append(append([]string{"trace"}, args...), "--config", f.cfg)...)
	return stdout, stderr, code
}

func TestTraceQueryWhoHadTheAddress(t *testing.T) {
	f := newTraceFixture(t)
	stdout, stderr, code := f.run(t, "query", "--ip", "192.0.2.77", "--at", "2026-11-20T10:00Z")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "DOMAIN") {
		t.Fatalf("stdout\n%s", stdout)
	}
	for _, col := range []string{"DOMAIN", "INSTANCE", "USER", "PROJECT", "HOST", "IMAGE", "IPS", "FROM", "UNTIL"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("header lacks %s: %q", col, lines[0])
		}
	}
	for _, want := range []string{"analysis-node-3 (7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f)", "vm-analysis-node-3 (7d3c1f0e",
		"carol (9f8e7d6c5b4a49388776655443322110)", "hep-analysis (0a1b2c3d4e5f46778899aabbccddeeff)", "node1",
		"el9-worker 9.4", "192.0.2.77", "2026-11-20T09:00:00Z", "2026-11-20T10:30:00Z"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row lacks %q: %q", want, lines[1])
		}
	}
	if strings.Contains(stdout, "dave") {
		t.Errorf("the later holder is shown:\n%s", stdout)
	}

	// Later the same address was dave's, and still is.
	stdout, _, code = f.run(t, "query", "--ip", "192.0.2.77", "--at", "2026-11-20T12:00:00+01:00")
	if code != exitOK || strings.Contains(stdout, "carol") {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
	stdout, _, code = f.run(t, "query", "--ip", "192.0.2.77", "--at", "2026-11-20T11:30Z")
	if code != exitOK || !strings.Contains(stdout, "batch-7") || !strings.Contains(stdout, "dave") || !strings.Contains(stdout, "(running)") {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
}

func TestTraceQueryNothingMatched(t *testing.T) {
	f := newTraceFixture(t)
	for _, args := range [][]string{
		{"--ip", "192.0.2.77", "--at", "2026-11-20T10:45Z"}, // between the two holders
		{"--ip", "192.0.2.88", "--at", "2026-11-20T09:30Z"}, // refused: never ran
		{"--user", "mallory"},
	} {
		stdout, stderr, code := f.run(t, append([]string{"query"}, args...)...)
		if code != exitRefused || stdout != "" || !strings.Contains(stderr, "nothing matched") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

func TestTraceQueryRecords(t *testing.T) {
	f := newTraceFixture(t)
	stdout, _, code := f.run(t, "query", "--user", "dave")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "SEQ") || !strings.Contains(lines[1], "admission.refuse") ||
		!strings.Contains(lines[1], "not endorsed: unknown Glance image") || !strings.HasPrefix(lines[5], "9 ") {
		t.Fatalf("stdout\n%s", stdout)
	}

	stdout, _, code = f.run(t, "query", "--instance", "analysis-node-3", "--since", "2026-11-20T10:00Z", "--format", "json")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var got []index.Entry
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var e index.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		got = append(got, e)
	}
	if len(got) != 2 || got[0].Seq != 6 || got[1].Record.Event != trace.VMReleased || len(got[1].Hash) != 64 || got[1].Prev != got[0].Hash {
		t.Fatalf("entries %+v", got)
	}

	// Records appended since are found: the query updates the index first.
	f.append(t, traceRec("12:00", trace.VMStopped, "batch-7", "8e4d2a1f-6c9b-4a2e-8d3e-1b2c3d4e5f60", &traceDave, "192.0.2.77"))
	stdout, _, code = f.run(t, "query", "--ip", "192.0.2.77", "--since", "2026-11-20T11:30Z")
	if code != exitOK || !strings.Contains(stdout, "vm.stopped") {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
}

func TestTraceQueryECS(t *testing.T) {
	f := newTraceFixture(t)
	stdout, _, code := f.run(t, "query", "--image", "el9-worker", "--format", "ecs")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout\n%s", stdout)
	}
	var doc struct {
		Event struct {
			Action, Outcome string
		}
		Cloud struct {
			Instance struct{ ID string }
		}
		Related struct{ IP []string }
		Hash    struct{ SHA512 string }
		Vmgate  struct {
			Seq  uint64
			Hash string
		}
	}
	if err := json.Unmarshal([]byte(lines[0]), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Event.Action != trace.AdmissionAllow || doc.Event.Outcome != "success" || doc.Cloud.Instance.ID != "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f" ||
		doc.Related.IP[0] != "192.0.2.77" || doc.Hash.SHA512 != strings.Repeat("ab", 64) || doc.Vmgate.Seq != 1 || len(doc.Vmgate.Hash) != 64 {
		t.Fatalf("document %+v\n%s", doc, lines[0])
	}
}

func TestTraceQueryLifetimesJSON(t *testing.T) {
	f := newTraceFixture(t)
	stdout, _, code := f.run(t, "query", "--project", "hep-analysis", "--at", "2026-11-20T11:00:00Z", "--format", "json")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var lt index.Lifetime
	if err := json.Unmarshal([]byte(stdout), &lt); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if lt.Domain.Name != "batch-7" || lt.User.Name != "dave" || lt.Until != nil || lt.FromSeq != 9 || lt.AdmissionSeq != 8 {
		t.Fatalf("lifetime %+v", lt)
	}
}

func TestTraceQueryLimit(t *testing.T) {
	f := newTraceFixture(t)
	stdout, stderr, code := f.run(t, "query", "--limit", "2")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != exitOK || len(lines) != 3 || !strings.HasPrefix(lines[1], "8 ") || !strings.Contains(stderr, "more matched") {
		t.Fatalf("exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	stdout, stderr, code = f.run(t, "query", "--limit", "0")
	if code != exitOK || strings.Count(stdout, "\n") != 10 || stderr != "" {
		t.Fatalf("exit %d, stderr %q\n%s", code, stderr, stdout)
	}
}

func TestTraceQueryUsageErrors(t *testing.T) {
	f := newTraceFixture(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--at", "yesterday"}, "--at: time \"yesterday\""},
		{[]string{"--since", "2026-11-20"}, "--since"},
		{[]string{"--at", "2026-11-20T10:00Z", "--since", "2026-11-20T09:00Z"}, "--since and --until select records"},
		{[]string{"--at", "2026-11-20T10:00Z", "--format", "ecs"}, "--format ecs prints records"},
		{[]string{"--format", "xml"}, "want table, json or ecs"},
		{[]string{"--ip", "192.0.2.777"}, "not an IP address"},
		{[]string{"--limit", "-1"}, "--limit -1"},
		{[]string{"surplus"}, "unknown command"},
	} {
		stdout, stderr, code := f.run(t, append([]string{"query"}, c.args...)...)
		if code != exitError || stdout != "" || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", c.args, code, stdout, stderr)
		}
	}
}

func TestTraceQueryNoJournal(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vmgate.yaml")
	os.WriteFile(cfg, []byte("state_dir: "+filepath.Join(dir, "state")+"\n"), 0o644)
	_, stderr, code, _ := runListCmd(t, "trace", "query", "--ip", "192.0.2.77", "--config", cfg)
	if code != exitRefused || !strings.Contains(stderr, "no records yet") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Error("a query made the state directory")
	}
}

func TestTraceReindex(t *testing.T) {
	f := newTraceFixture(t)
	if _, _, code := f.run(t, "query", "--user", "carol"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	stdout, stderr, code := f.run(t, "reindex")
	if code != exitOK || !strings.Contains(stdout, "indexed 9 records, last seq 9") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// A damaged index is rebuilt by the next query, with a warning.
	if err := os.WriteFile(index.Path(f.stateDir), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, _, code = f.run(t, "query", "--ip", "192.0.2.77", "--at", "2026-11-20T10:00Z")
	if code != exitOK || !strings.Contains(stdout, "carol") {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
}

func TestTraceHelpListsExitCodes(t *testing.T) {
	for _, sub := range []string{"query", "reindex"} {
		stdout, _, code, _ := runListCmd(t, "trace", sub, "--help")
		if code != exitOK || !strings.Contains(stdout, "Exit codes: 0") {
			t.Errorf("%s: exit %d\n%s", sub, code, stdout)
		}
	}
}
