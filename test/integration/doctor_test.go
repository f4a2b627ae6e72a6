package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDoctor runs `vmgate doctor` on a working site: lists signed by the cosign CLI, the hook
// installed in the real libvirtd, a real rsyslog over TLS and a jsonfile sink. Every check
// passes (libvirtd "?" until it restarts, then ok); with the sink down and the hook not
// executable it fails, one line each with what to do; a configuration that does not parse is
// one failed line.
func TestDoctor(t *testing.T) {
	l := requireLibvirt(t)
	r := newRsyslog(t)
	r.start()
	s := newSite(t, fmt.Sprintf(`trace:
  sinks:
    - {name: siem, type: syslog, address: '%s', ca_file: %s, server_name: %s}
    - {name: files, type: jsonfile, path: %s}
`, r.address(), r.CA, rsyslogServerName, filepath.Join(t.TempDir(), "out", "records.jsonl")))
	_, a := s.baseImage("a.raw")
	s.publish(a)
	if _, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: %s", stderr)
	}
	s.installVMGateHook(l)
	hookPath := filepath.Join(qemuHookDir, "vmgate")

	doctor := func(what string, wantCode int, want ...string) string {
		t.Helper()
		out, stderr, code := s.vmgate("doctor")
		t.Logf("vmgate doctor, %s:\n%s", what, out)
		if code != wantCode {
			t.Fatalf("doctor, %s: exit %d, want %d\n%s%s", what, code, wantCode, out, stderr)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("doctor, %s: output lacks %q", what, w)
			}
		}
		// One line per check: config, a subscription, snapshot, hook, libvirtd, journal, two sinks.
		if n := strings.Count(strings.TrimSpace(out), "\n") + 1; n != 8 {
			t.Errorf("doctor, %s: %d lines, want 8", what, n)
		}
		return out
	}

	out := doctor("a working site", 0,
		"ok   config:", "ok   subscription example: file://", "signature verifies", "ok   snapshot:", "vouching for 1 images",
		"ok   hook: "+hookPath+" installed", "reads "+s.config,
		"?    libvirtd: libvirtd (pid", "before the hook was installed",
		"ok   trace journal:", "ok   sink siem: syslog tls://", "ok   sink files: jsonfile")
	if strings.Contains(out, "FAIL") {
		t.Errorf("a check failed on a working site")
	}

	// libvirtd restarted after the hook was installed: now it can tell. /proc gives the boot
	// time in whole seconds, so a start within a second of the install could read as before.
	time.Sleep(1100 * time.Millisecond)
	l.Restart(t)
	doctor("libvirtd restarted", 0, "ok   libvirtd: libvirtd (pid", "after the hook was installed: it runs the hook")

	r.kill(syscall.SIGTERM)
	if err := os.Chmod(hookPath, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(hookPath, 0o755)
	doctor("the sink down and the hook not executable", 1,
		"FAIL sink siem: syslog tls://", "connection refused; what to do: check address",
		"FAIL hook: "+hookPath+" is not executable: libvirtd skips it; what to do: run vmgate hook install")
	os.Chmod(hookPath, 0o755)

	// A configuration that does not parse: one line, exit 1.
	if err := os.WriteFile(s.config, []byte("no_such_key: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code := s.vmgate("doctor")
	if code != 1 || !strings.HasPrefix(out, "FAIL config:") || !strings.Contains(out, "no_such_key") || strings.Count(out, "\n") != 1 {
		t.Errorf("doctor with a bad config: exit %d\n%s", code, out)
	}
}
