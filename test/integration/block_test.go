package integration

// The site's own blocks (vmgate block, unblock, blocks) against the real libvirtd: the hook
// refuses what is blocked with the block's reason, the block shows in vmgate images, the
// history and the trace, lifts itself at --until, and vmgate serve's audit reports (and with
// audit_action terminate takes down) a VM that runs what was blocked after it started.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// blockSite is a site whose hook judges only the domains named prefix* (the others on this
// shared libvirtd are exempt), with extra configuration after that.
func blockSite(t *testing.T, extra string) (s *site, prefix string) {
	t.Helper()
	run := make([]byte, 3)
	rand.Read(run)
	prefix = testDomainPrefix + "blk-" + hex.EncodeToString(run) + "-"
	var cfg strings.Builder
	cfg.WriteString("admission:\n  exempt_domains:\n")
	for _, p := range exemptAllBut(prefix) {
		fmt.Fprintf(&cfg, "    - '%s'\n", p)
	}
	cfg.WriteString(extra)
	return newSite(t, cfg.String()), prefix
}

// blockRow is a row of `vmgate blocks --json`.
type blockRow struct {
	Kind, Target, Reason, By, Source, Status string
	At, Until                                time.Time
}

func (s *site) blocks() []blockRow {
	s.t.Helper()
	out, stderr, code := s.vmgate("blocks", "--json")
	var rows []blockRow
	if code != 0 {
		s.t.Fatalf("vmgate blocks --json: exit %d\n%s%s", code, out, stderr)
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		s.t.Fatalf("vmgate blocks --json: %v\n%s", err, out)
	}
	return rows
}

// historyEvents returns `vmgate images --history --json` rows of the event.
func (s *site) historyEvents(event string) []map[string]any {
	s.t.Helper()
	out, stderr, code := s.vmgate("images", "--history", "--json")
	if code != 0 {
		s.t.Fatalf("vmgate images --history --json: exit %d\n%s%s", code, out, stderr)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		s.t.Fatalf("vmgate images --history --json: %v\n%s", err, out)
	}
	var evs []map[string]any
	for _, r := range rows {
		if r["event"] == event {
			evs = append(evs, r)
		}
	}
	return evs
}

// recordsOf returns the trace records of event for the domain named name, in order.
func recordsOf(recs []map[string]any, event, name string) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if d, _ := r["domain"].(map[string]any); r["event"] == event && d["name"] == name {
			out = append(out, r)
		}
	}
	return out
}

// TestBlockImageAuditAndTerminate: domain A runs an endorsed image; the site blocks the
// image by its sha512; a new start on it is refused with the block's reason, and vmgate
// images, blocks, the history and the trace say so. vmgate serve's audit then reports A
// (and C, which runs an image no list names) in its metrics, /healthz and one vm.audit
// record each, however many passes; terminate --revoked --blocked-only --dry-run lists A
// only; reloaded with audit_action terminate, the audit shuts A and C down (the guests
// ignore ACPI: destroyed after audit_timeout) and records it.
func TestBlockImageAuditAndTerminate(t *testing.T) {
	l := requireLibvirt(t)
	addr := freePort(t)
	const reason = "CVE-2024-6387: regreSSHion in the image's sshd"
	serveCfg := "serve: {listen: '" + addr + "', audit_interval: 2s, audit_action: report, audit_timeout: 5s}\n"
	s, prefix := blockSite(t, serveCfg)
	name := strings.TrimPrefix(prefix, testDomainPrefix)
	aPath, a := s.baseImage(name + "a.raw")
	cPath, _ := s.baseImage(name + "c.raw") // no list names it
	s.publish(a)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	// C starts before the hook is there: it runs an image no list names.
	domC := l.NewDomain(t, name+"c-unknown", DomainOptions{BaseImage: cPath})
	if stderr, err := domC.Start(); err != nil {
		t.Fatalf("start %s: %v\n%s", domC.Name, err, stderr)
	}
	s.installVMGateHook(l)
	domA := l.NewDomain(t, name+"a-running", DomainOptions{BaseImage: aPath})
	if stderr, err := domA.Start(); err != nil {
		t.Fatalf("a domain on an endorsed image was refused: %v\n%s", err, stderr)
	}

	out, stderr, code := s.vmgate("block", "image", a.SHA512, "--reason", reason)
	if code != 0 || !strings.Contains(out, "blocked image "+a.SHA512+": "+reason) || !strings.Contains(out, a.Identifier) {
		t.Fatalf("vmgate block image: exit %d\n%s%s", code, out, stderr)
	}
	if st, _ := domA.State(); st != "running" {
		t.Fatalf("a block touched the running domain: %q", st)
	}

	// A new start on the blocked image is refused, with the block's reason.
	domB := l.NewDomain(t, name+"b-refused", DomainOptions{BaseImage: aPath})
	stderr, err := domB.Start()
	if err == nil || !strings.Contains(stderr, "vmgate: blocked by the site: ") || !strings.Contains(stderr, reason) {
		t.Fatalf("start on a blocked image: err %v, virsh said:\n%s", err, stderr)
	}
	if st, _ := domB.State(); st != "shut off" {
		t.Fatalf("refused domain is %q", st)
	}
	t.Logf("virsh start on the blocked image:\n%s", stderr)

	if im := s.images()[a.SHA512]; im["status"] != "blocked" || !strings.Contains(fmt.Sprint(im["reason"]), reason) {
		t.Errorf("vmgate images --all: %v, want status blocked with the reason", im)
	}
	rows := s.blocks()
	if len(rows) != 1 || rows[0].Kind != "image" || rows[0].Target != a.SHA512 || rows[0].Reason != reason ||
		rows[0].Source != "cli" || rows[0].Status != "active" || !strings.HasPrefix(rows[0].By, "root") || !rows[0].Until.IsZero() {
		t.Errorf("vmgate blocks --json: %+v", rows)
	}
	added := s.historyEvents("block.added")
	if len(added) != 1 || !strings.Contains(toJSON(added[0]["block"]), `"source":"cli"`) ||
		!strings.Contains(toJSON(added[0]["block"]), `"target":"`+a.SHA512+`"`) || !strings.Contains(toJSON(added[0]["block"]), reason) {
		t.Errorf("history block.added: %v", added)
	}
	recs := s.traceRecords()
	if r := findEvent(recs, "block.added"); r == nil || !strings.Contains(toJSON(r["block"]), `"kind":"image"`) ||
		!strings.Contains(toJSON(r["block"]), reason) || !strings.Contains(toJSON(r["actor"]), `"name":"root"`) {
		t.Errorf("trace block.added: %v", r)
	}
	if r := findRecord(recs, "admission.refuse", domB.Name); r == nil || !strings.Contains(fmt.Sprint(r["reason"]), "blocked by the site") ||
		!strings.Contains(fmt.Sprint(r["reason"]), reason) || !strings.Contains(toJSON(r["block"]), `"target":"`+a.SHA512+`"`) {
		t.Errorf("trace admission.refuse of %s: %v", domB.Name, r)
	}

	// The audit: both running domains are found, each recorded once.
	d := s.serve(t)
	eventually(t, 60*time.Second, "auditing A as blocked", wantMetric(addr, `vmgate_running_unendorsed{reason="blocked"}`, 1))
	if ok, last := wantMetric(addr, `vmgate_running_unendorsed{reason="unknown"}`, 1)(); !ok {
		t.Errorf("C not audited as unknown: %s", last)
	}
	hcode, body, err := httpGet(addr, "/healthz")
	if err != nil || hcode != 503 || !strings.Contains(body, "audit: 2 running VMs are not endorsed") ||
		!strings.Contains(body, domA.Name+" (blocked: blocked by the site: ") || !strings.Contains(body, domC.Name+" (unknown: ") {
		t.Errorf("/healthz with blocked VMs running: %d %v\n%s", hcode, err, body)
	}
	t.Logf("/healthz: %d\n%s", hcode, body)
	lastAudit := func() float64 {
		_, body, err := httpGet(addr, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		v, _ := metricValue(body, "vmgate_audit_last_success_timestamp_seconds")
		return v
	}
	first := lastAudit()
	time.Sleep(7 * time.Second) // three more passes
	if now := lastAudit(); now < first+4 {
		t.Errorf("the audit did not run every 2s: last success %v, 7s after %v", now, first)
	}
	recs = s.traceRecords()
	auditA, auditC := recordsOf(recs, "vm.audit", domA.Name), recordsOf(recs, "vm.audit", domC.Name)
	if len(auditA) != 1 || len(auditC) != 1 {
		t.Fatalf("%d vm.audit records for A and %d for C after several passes, want 1 each: %v %v", len(auditA), len(auditC), auditA, auditC)
	}
	if r := auditA[0]; r["outcome"] != "failure" || !strings.HasPrefix(fmt.Sprint(r["reason"]), "blocked: blocked by the site: ") ||
		!strings.Contains(fmt.Sprint(r["reason"]), reason) || !strings.Contains(toJSON(r["block"]), `"target":"`+a.SHA512+`"`) ||
		!strings.Contains(toJSON(r["macs"]), domA.MAC) {
		t.Errorf("vm.audit record of A: %v", r)
	}
	if r := auditC[0]; r["outcome"] != "failure" || !strings.HasPrefix(fmt.Sprint(r["reason"]), "unknown: ") || r["block"] != nil {
		t.Errorf("vm.audit record of C: %v", r)
	}
	if len(recordsOf(recs, "vm.audit", domB.Name)) != 0 {
		t.Error("a vm.audit record for the refused domain, which does not run")
	}

	// --blocked-only: A is the one target; C is left alone. Exit 3: a dry run with targets.
	out, stderr, code = s.vmgate("terminate", "--revoked", "--blocked-only", "--dry-run", "--json")
	var plan terminateJSON
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("terminate --blocked-only --dry-run --json: exit %d, %v\n%s%s", code, err, out, stderr)
	}
	verdicts := map[string]string{}
	for _, vm := range plan.VMs {
		verdicts[vm.Name] = vm.Verdict + "/" + vm.Status
	}
	if code != 3 || plan.Counts.Targets != 1 || verdicts[domA.Name] != "target/blocked" || verdicts[domC.Name] != "not-blocked/unknown" {
		t.Fatalf("terminate --revoked --blocked-only --dry-run: exit %d, verdicts %v\n%s%s", code, verdicts, out, stderr)
	}
	if out, _, code := s.vmgate("terminate", "--revoked", "--blocked-only", "--dry-run"); code != 3 || !strings.Contains(out, domA.Name) {
		t.Errorf("terminate --blocked-only --dry-run (table): exit %d\n%s", code, out)
	} else {
		t.Logf("vmgate terminate --revoked --blocked-only --dry-run:\n%s", out)
	}
	for _, dom := range []*Domain{domA, domC} {
		if st, _ := dom.State(); st != "running" {
			t.Fatalf("after the dry run %s is %q", dom.Name, st)
		}
	}

	// audit_action terminate, picked up by a reload: A and C go down.
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.config, []byte(strings.Replace(string(cfg), "audit_action: report", "audit_action: terminate", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 90*time.Second, "A and C shut off by the audit", func() (bool, string) {
		a, _ := domA.State()
		c, _ := domC.State()
		return a == "shut off" && c == "shut off", "A " + a + ", C " + c
	})
	t.Logf("audit_action terminate took the domains down %v after the reload", time.Since(start).Round(time.Millisecond))
	eventually(t, 30*time.Second, "counting the terminations", wantMetric(addr, `vmgate_audit_terminations_total{result="done"}`, 2))
	recs = s.traceRecords()
	for _, dom := range []*Domain{domA, domC} {
		term := recordsOf(recs, "vm.terminated", dom.Name)
		if len(term) != 1 || term[0]["outcome"] != "success" || term[0]["action"] != "shutdown" ||
			!strings.Contains(fmt.Sprint(term[0]["reason"]), "did not shut down within 5s: destroyed") {
			t.Errorf("vm.terminated records of %s: %v", dom.Name, term)
		}
	}
	if r := recordsOf(recs, "vm.terminated", domA.Name); len(r) == 1 && !strings.Contains(fmt.Sprint(r[0]["reason"]), reason) {
		t.Errorf("the vm.terminated record of A does not say it was blocked: %v", r[0])
	}
	// The auditor outlives the reload: A's standing did not change, so no second record.
	if n := len(recordsOf(recs, "vm.audit", domA.Name)); n != 1 {
		t.Errorf("%d vm.audit records for A after the reload, want 1", n)
	}
	eventually(t, 30*time.Second, "healthy once nothing unendorsed runs", func() (bool, string) {
		code, body, err := httpGet(addr, "/healthz")
		return err == nil && code == 200, fmt.Sprintf("%d %s %v", code, body, err)
	})
	if ok, last := wantMetric(addr, `vmgate_running_unendorsed{reason="blocked"}`, 0)(); !ok {
		t.Errorf("after the terminations: %s", last)
	}
	if out, stderr, code := s.vmgate("trace", "verify"); code != 0 || !strings.Contains(out, "records intact") {
		t.Errorf("trace verify: exit %d\n%s%s", code, out, stderr)
	}
}

// TestBlockExpiryLiftsIt: a block by the image's identifier with --until 15s refuses a start
// until then and lifts itself after, without a sync; a sync then records its expiry. A block
// by sha512 with an RFC 3339 --until is lifted by vmgate unblock at once; unblocking what is
// not blocked exits 1.
func TestBlockExpiryLiftsIt(t *testing.T) {
	l := requireLibvirt(t)
	s, prefix := blockSite(t, "")
	name := strings.TrimPrefix(prefix, testDomainPrefix)
	aPath, a := s.baseImage(name + "a.raw")
	s.publish(a)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	s.installVMGateHook(l)
	dom := l.NewDomain(t, name+"expiry", DomainOptions{BaseImage: aPath})

	const reason = "image under investigation"
	out, stderr, code := s.vmgate("block", "image", a.Identifier, "--reason", reason, "--until", "15s")
	if code != 0 || !strings.Contains(out, "blocked image "+a.Identifier+": "+reason+" (until ") {
		t.Fatalf("vmgate block --until 15s: exit %d\n%s%s", code, out, stderr)
	}
	rows := s.blocks()
	if len(rows) != 1 || rows[0].Target != a.Identifier || rows[0].Status != "active" || rows[0].Until.IsZero() {
		t.Fatalf("vmgate blocks: %+v", rows)
	}
	until := rows[0].Until
	if d := time.Until(until); d < 5*time.Second || d > 16*time.Second {
		t.Fatalf("--until 15s gave until %v, %v from now", until, d)
	}
	stderr, err := dom.Start()
	if err == nil || !strings.Contains(stderr, "vmgate: blocked by the site: ") ||
		!strings.Contains(stderr, reason+" (until "+until.UTC().Format(time.RFC3339)+")") {
		t.Fatalf("start while blocked until %v: err %v\n%s", until, err, stderr)
	}
	if time.Now().After(until) {
		t.Fatalf("the start was refused only after the block's until %v: the test proves nothing", until)
	}

	// Past until: the same start is allowed, with no sync in between.
	time.Sleep(time.Until(until) + time.Second)
	if stderr, err := dom.Start(); err != nil {
		t.Fatalf("start after the block expired at %v: %v\n%s", until, err, stderr)
	}
	if st, _ := dom.State(); st != "running" {
		t.Fatalf("after the expiry the domain is %q", st)
	}
	if rows := s.blocks(); len(rows) != 1 || rows[0].Status != "expired" {
		t.Errorf("vmgate blocks after the expiry: %+v", rows)
	}
	if im := s.images()[a.SHA512]; im["status"] != "endorsed" {
		t.Errorf("vmgate images after the expiry: %v", im)
	}
	// The next sync lifts it for good and says so in the history and the trace.
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync after the expiry: exit %d\n%s%s", code, out, stderr)
	}
	if ev := s.historyEvents("block.expired"); len(ev) != 1 || !strings.Contains(toJSON(ev[0]["block"]), `"target":"`+a.Identifier+`"`) {
		t.Errorf("history block.expired: %v", ev)
	}
	if r := findEvent(s.traceRecords(), "block.expired"); r == nil || !strings.Contains(toJSON(r["block"]), reason) {
		t.Errorf("trace block.expired: %v", r)
	}
	if rows := s.blocks(); len(rows) != 0 {
		t.Errorf("vmgate blocks after the sync: %+v", rows)
	}
	if err := dom.Destroy(); err != nil {
		t.Fatal(err)
	}

	// A block by sha512 until an RFC 3339 time, lifted by vmgate unblock.
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if out, stderr, code := s.vmgate("block", "image", strings.ToUpper(a.SHA512), "--reason", "second look", "--until", later.Format(time.RFC3339)); code != 0 {
		t.Fatalf("vmgate block --until RFC 3339: exit %d\n%s%s", code, out, stderr)
	}
	if rows := s.blocks(); len(rows) != 1 || rows[0].Target != a.SHA512 || !rows[0].Until.Equal(later) {
		t.Fatalf("vmgate blocks: %+v, want sha512 %s… until %v", rows, a.SHA512[:16], later)
	}
	if stderr, err := dom.Start(); err == nil || !strings.Contains(stderr, "blocked by the site") || !strings.Contains(stderr, "second look") {
		t.Fatalf("start while blocked by sha512: err %v\n%s", err, stderr)
	}
	out, stderr, code = s.vmgate("unblock", "image", a.SHA512, "--reason", "false alarm")
	if code != 0 || !strings.Contains(out, "unblocked image "+a.SHA512+" (false alarm)") {
		t.Fatalf("vmgate unblock: exit %d\n%s%s", code, out, stderr)
	}
	if stderr, err := dom.Start(); err != nil {
		t.Fatalf("start after vmgate unblock: %v\n%s", err, stderr)
	}
	if rows := s.blocks(); len(rows) != 0 {
		t.Errorf("vmgate blocks after the unblock: %+v", rows)
	}
	removed := s.historyEvents("block.removed")
	if len(removed) != 1 || removed[0]["message"] != "false alarm" || !strings.Contains(toJSON(removed[0]["block"]), `"by":"root`) {
		t.Errorf("history block.removed: %v", removed)
	}
	if r := findEvent(s.traceRecords(), "block.removed"); r == nil || !strings.Contains(toJSON(r["block"]), `"target":"`+a.SHA512+`"`) {
		t.Errorf("trace block.removed: %v", r)
	}

	// Nothing blocked by that name: exit 1, and nothing recorded.
	before := len(s.traceRecords())
	out, stderr, code = s.vmgate("unblock", "image", a.SHA512, "--reason", "again")
	if code != 1 || !strings.Contains(stderr, "not blocked") {
		t.Errorf("unblock of what is not blocked: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := s.vmgate("unblock", "user", "0123456789abcdef0123456789abcdef", "--reason", "never was"); code != 1 || !strings.Contains(stderr, "not blocked") {
		t.Errorf("unblock of a user never blocked: exit %d\n%s%s", code, out, stderr)
	}
	if n := len(s.traceRecords()); n != before {
		t.Errorf("a refused unblock wrote %d trace records", n-before)
	}
	// --reason is required.
	if out, stderr, code := s.vmgate("block", "image", a.SHA512); code != 2 || !strings.Contains(stderr, "reason") {
		t.Errorf("block without --reason: exit %d\n%s%s", code, out, stderr)
	}
}
