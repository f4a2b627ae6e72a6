package integration

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lockedBuffer collects a child's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// daemon is a running `vmgate serve`.
type daemon struct {
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan struct{}
}

func (s *site) serve(t *testing.T) *daemon {
	t.Helper()
	d := &daemon{log: &lockedBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(filepath.Join(s.bin, "vmgate"), "--config", s.config, "serve", "--log-format", "json")
	d.cmd.Stderr, d.cmd.Stdout = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			t.Logf("vmgate serve log:\n%s", d.log)
		}
	})
	return d
}

func httpGet(addr, path string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// eventually retries cond for up to d; it fails t with what cond said last.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still not %s; last: %s", d, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metricValue finds the value of the first sample of the scrape that matches name{labels}.
func metricValue(scrape, sample string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(scrape)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

func wantMetric(addr, sample string, want float64) func() (bool, string) {
	return func() (bool, string) {
		_, body, err := httpGet(addr, "/metrics")
		if err != nil {
			return false, err.Error()
		}
		v, ok := metricValue(body, sample)
		return ok && v == want, fmt.Sprintf("%s = %v (found %v)", sample, v, ok)
	}
}

// TestServe runs the real `vmgate serve` against a site with lists signed by the cosign CLI
// and a real rsyslog over TLS: it syncs and turns healthy, its metrics show the list, the
// images and the hook's decisions, the records reach rsyslog, SIGHUP picks up a new
// configuration, and SIGTERM stops it at once with exit 0.
func TestServe(t *testing.T) {
	requireIntegration(t)
	r := newRsyslog(t)
	r.start()
	addr := freePort(t)
	sinks := fmt.Sprintf(`trace:
  sinks:
    - {name: siem, type: syslog, address: '%s', ca_file: %s, server_name: %s}
`, r.address(), r.CA, rsyslogServerName)
	// The audit has its own test (block_test.go); here it would judge whatever else runs on
	// the shared libvirtd.
	s := newSite(t, sinks+"serve: {listen: '"+addr+"', audit_action: off}\n")
	aPath, a := s.baseImage("a.raw")
	_, b := s.baseImage("b.raw")
	otherPath, _ := s.baseImage("other.raw")
	s.publish(a, b)

	d := s.serve(t)
	eventually(t, 30*time.Second, "healthy after the first sync", func() (bool, string) {
		code, body, err := httpGet(addr, "/healthz")
		if err != nil {
			return false, err.Error()
		}
		return code == 200 && strings.HasPrefix(body, "ok"), fmt.Sprintf("%d %s", code, body)
	})
	_, body, err := httpGet(addr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for sample, want := range map[string]float64{
		`vmgate_lists_total{outcome="accepted",reason="",subscription="example"}`: 1,
		`vmgate_snapshot_images{status="endorsed"}`:                               2,
		`vmgate_snapshot_fresh`:                                                   1,
		`vmgate_sync_duration_seconds_count{subscription="example"}`:              1,
	} {
		if v, ok := metricValue(body, sample); !ok || v != want {
			t.Errorf("%s = %v (found %v), want %v", sample, v, ok, want)
		}
	}

	// The hook, as libvirtd runs it, with the daemon beside it: its decisions are counted.
	xml := func(name, disk string) string {
		return `<domain type='qemu'><name>` + name + `</name><devices><disk type='file' device='disk'><driver type='raw'/><source file='` +
			disk + `'/><target dev='vda'/></disk></devices></domain>`
	}
	if code, stderr := runHook(t, s, "serve-a", xml("serve-a", aPath)); code != 0 {
		t.Fatalf("hook on an endorsed image: exit %d %s", code, stderr)
	}
	if code, stderr := runHook(t, s, "serve-other", xml("serve-other", otherPath)); code != 1 {
		t.Fatalf("hook on an unendorsed image: exit %d %s", code, stderr)
	}
	eventually(t, 10*time.Second, "counting the allow", wantMetric(addr, `vmgate_hook_decisions_total{decision="allow"}`, 1))
	eventually(t, 10*time.Second, "counting the refusal", wantMetric(addr, `vmgate_hook_decisions_total{decision="refuse"}`, 1))

	// Every record (the sync's and the hook's) reaches rsyslog over TLS.
	eventually(t, 30*time.Second, "every record at the sink", func() (bool, string) {
		if _, err := os.Stat(r.Out); err != nil {
			return false, err.Error()
		}
		hashes, _, _ := received(t, r.Out)
		recs := s.traceRecords()
		return len(recs) > 0 && len(hashes) == len(recs), fmt.Sprintf("%d of %d records arrived", len(hashes), len(recs))
	})
	eventually(t, 10*time.Second, "a backlog of 0", wantMetric(addr, `vmgate_sink_backlog_records{sink="siem"}`, 0))

	// SIGHUP: a new listen address and a new list version are picked up.
	addr2 := freePort(t)
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.config, bytes.Replace(cfg, []byte(addr), []byte(addr2), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	s.publish(a)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "serving the new configuration on "+addr2, wantMetric(addr2, `vmgate_snapshot_images{status="revoked"}`, 1))
	if _, _, err := httpGet(addr, "/healthz"); err == nil {
		t.Errorf("the old address %s still answers after the reload", addr)
	}
	// The counters carry over the reload.
	if ok, last := wantMetric(addr2, `vmgate_lists_total{outcome="accepted",reason="",subscription="example"}`, 2)(); !ok {
		t.Errorf("after the reload: %s", last)
	}

	// An invalid configuration is refused; the daemon runs on.
	if err := os.WriteFile(s.config, append(bytes.Replace(cfg, []byte(addr), []byte(addr2), 1), []byte("no_such_key: 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the refused reload logged", func() (bool, string) {
		return strings.Contains(d.log.String(), "reload refused"), ""
	})
	if code, _, err := httpGet(addr2, "/healthz"); err != nil || code != 200 {
		t.Fatalf("after a refused reload: %d %v", code, err)
	}

	// SIGTERM: a clean stop, promptly.
	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("vmgate serve still runs 15s after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(d.log.String(), `"msg":"serve: stopping"`) {
		t.Errorf("no JSON log line of the stop:\n%s", d.log)
	}
}

// TestHookWithTheDaemonDown: the hook needs only the snapshot and the journal. With `vmgate
// serve` stopped, the real libvirtd still starts a VM on an endorsed image and refuses one on
// another; started again, the daemon counts those decisions and ships their records.
func TestHookWithTheDaemonDown(t *testing.T) {
	l := requireLibvirt(t)
	r := newRsyslog(t)
	r.start()
	addr := freePort(t)
	s := newSite(t, fmt.Sprintf(`trace:
  sinks:
    - {name: siem, type: syslog, address: '%s', ca_file: %s, server_name: %s}
serve: {listen: '%s', audit_action: off}
`, r.address(), r.CA, rsyslogServerName, addr))
	aPath, a := s.baseImage("a.raw")
	bPath, _ := s.baseImage("b.raw")
	s.publish(a)

	d := s.serve(t)
	eventually(t, 30*time.Second, "healthy after the first sync", func() (bool, string) {
		code, body, err := httpGet(addr, "/healthz")
		return err == nil && code == 200, fmt.Sprintf("%d %s %v", code, body, err)
	})
	s.installVMGateHook(l)
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("vmgate serve still runs 15s after SIGTERM")
	}
	if _, _, err := httpGet(addr, "/healthz"); err == nil {
		t.Fatal("the daemon still answers after SIGTERM")
	}

	running := l.NewDomain(t, "daemon-down-endorsed", DomainOptions{BaseImage: aPath})
	if stderr, err := running.Start(); err != nil {
		t.Fatalf("with the daemon down, a domain on an endorsed image was refused: %v\n%s", err, stderr)
	}
	if st, _ := running.State(); st != "running" {
		t.Fatalf("endorsed domain is %q", st)
	}
	refused := l.NewDomain(t, "daemon-down-unendorsed", DomainOptions{BaseImage: bPath})
	if stderr, err := refused.Start(); err == nil || !strings.Contains(stderr, "vmgate: not endorsed: disk ") {
		t.Fatalf("with the daemon down, a domain on an unendorsed image: err %v\n%s", err, stderr)
	}
	recs := s.traceRecords()
	if findRecord(recs, "admission.allow", running.Name) == nil || findRecord(recs, "admission.refuse", refused.Name) == nil {
		t.Fatalf("the hook did not record its decisions while the daemon was down: %v", recs)
	}

	// Back up: the decisions made meanwhile are counted and shipped.
	s.serve(t)
	eventually(t, 30*time.Second, "counting the allow made while down", wantMetric(addr, `vmgate_hook_decisions_total{decision="allow"}`, 1))
	eventually(t, 10*time.Second, "counting the refusal made while down", wantMetric(addr, `vmgate_hook_decisions_total{decision="refuse"}`, 1))
	eventually(t, 30*time.Second, "every record at the sink", func() (bool, string) {
		hashes, _, _ := received(t, r.Out)
		n := len(s.traceRecords())
		return len(hashes) == n, fmt.Sprintf("%d of %d records arrived", len(hashes), n)
	})
	if code, body, err := httpGet(addr, "/healthz"); err != nil || code != 200 {
		t.Fatalf("healthz after the restart: %d %s %v", code, body, err)
	}
}
