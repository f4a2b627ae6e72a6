package doctor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/hook"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/policytest"
	"github.com/vmgate/vmgate/internal/trace"
)

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func want(t *testing.T, r Result, status Status, detail string) {
	t.Helper()
	if r.Status != status || !strings.Contains(r.Detail, detail) {
		t.Errorf("%s: %s %q; want %s and %q", r.Check, r.Status, r.Detail, status, detail)
	}
	if status == Problem && r.Fix == "" {
		t.Errorf("%s: a problem without a fix", r.Check)
	}
}

// site is a state directory with one subscription to a signed file:// list.
func site(t *testing.T) (*config.Config, *policytest.Endorser, string) {
	dir := t.TempDir()
	e := policytest.NewEndorser(t, dir)
	now := time.Now().UTC()
	l := policytest.List{Identifier: "l", Version: "1", Created: now.Add(-time.Hour), Expires: now.Add(48 * time.Hour), Images: policytest.Images(2)}
	url := e.Publish(t, dir, "image.list", l.Bytes())
	cfg, err := config.Parse([]byte(fmt.Sprintf("state_dir: %s\nsubscriptions: [{name: example, url: '%s', cosign_keys: [%s]}]\n",
		filepath.Join(dir, "state"), url, e.PubKey)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, e, dir
}

func TestSubscription(t *testing.T) {
	cfg, _, dir := site(t)
	ctx := context.Background()
	s := cfg.Subscriptions[0]
	want(t, Subscription(ctx, s, time.Second), OK, "signature verifies with 1 key")

	bad := s
	bad.CosignKeys = []string{filepath.Join(dir, "missing.pub")}
	want(t, Subscription(ctx, bad, time.Second), Problem, "keys:")

	other := s
	other.CosignKeys = []string{policytest.NewEndorser(t, t.TempDir()).PubKey}
	want(t, Subscription(ctx, other, time.Second), Problem, "signature does not verify")

	gone := s
	gone.URL, gone.SignatureURL = "file://"+filepath.Join(dir, "nope.list"), "file://"+filepath.Join(dir, "nope.list.sig")
	want(t, Subscription(ctx, gone, time.Second), Problem, "list:")

	nosig := s
	nosig.SignatureURL = "file://" + filepath.Join(dir, "nope.sig")
	want(t, Subscription(ctx, nosig, time.Second), Problem, "signature:")
}

func TestSnapshot(t *testing.T) {
	cfg, _, _ := site(t)
	want(t, Snapshot(cfg.StateDir, time.Now()), Problem, "no snapshot")
	if _, err := (&policy.Syncer{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want(t, Snapshot(cfg.StateDir, time.Now()), OK, "vouching for 2 images")
	want(t, Snapshot(cfg.StateDir, time.Now().Add(72*time.Hour)), Problem, "expired at")
}

func TestHook(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vmgate.yaml")
	want(t, Hook(dir, cfg), Problem, "is not there")
	write(t, hook.Target(dir), "#!/bin/sh\n", 0o644)
	want(t, Hook(dir, cfg), Problem, "not executable")
	os.Chmod(hook.Target(dir), 0o755)
	want(t, Hook(dir, cfg), Problem, "neither vmgate-hook nor the wrapper")

	// The wrapper vmgate hook install writes for a configuration file of its own.
	bin := filepath.Join(dir, "it's", "vmgate-hook")
	write(t, bin, "#!/bin/sh\n", 0o755)
	os.Remove(hook.Target(dir))
	if _, err := hook.Install(dir, bin, cfg); err != nil {
		t.Fatal(err)
	}
	want(t, Hook(dir, cfg), OK, "executable, reads "+cfg)
	want(t, Hook(dir, filepath.Join(dir, "other.yaml")), Problem, "reads "+cfg+", not ")
	os.Chmod(bin, 0o644)
	want(t, Hook(dir, cfg), Problem, "cannot be run")

	// The binary itself reads the default configuration file.
	write(t, hook.Target(dir), "\x7fELF...", 0o755)
	want(t, Hook(dir, config.DefaultPath), OK, "reads "+config.DefaultPath)
	want(t, Hook(dir, cfg), Problem, "reads "+config.DefaultPath+", not "+cfg)
}

func TestParseWrapper(t *testing.T) {
	cfg, bin, ok := parseWrapper([]byte("#!/bin/sh\n# x\nVMGATE_CONFIG='/etc/a b'\\''c.yaml' exec '/usr/bin/vmgate-hook' \"$@\"\n"))
	if !ok || cfg != "/etc/a b'c.yaml" || bin != "/usr/bin/vmgate-hook" {
		t.Fatalf("parseWrapper: %q %q %v", cfg, bin, ok)
	}
	for _, bad := range []string{"#!/bin/sh\nexec /x\n", "VMGATE_CONFIG='/a exec '/b'", "VMGATE_CONFIG='/a' '/b'"} {
		if _, _, ok := parseWrapper([]byte(bad)); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestX509Subscription(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "list.p7m"), "not an S/MIME document", 0o644)
	s := config.Subscription{Name: "appdb", URL: "file://" + filepath.Join(dir, "list.p7m"), MaxSize: 1 << 20, Timeout: time.Second,
		X509: &config.X509Trust{CADir: filepath.Join(dir, "no-such-dir"), DN: "/DC=org/CN=host", CA: "/DC=org/CN=CA"}}
	ctx := context.Background()
	want(t, Subscription(ctx, s, time.Second), Problem, "x509.ca_dir")

	// A CA directory that loads, and a document sync would refuse.
	ca := filepath.Join(dir, "certificates")
	os.Mkdir(ca, 0o755)
	s.X509.CADir = ca
	r := Subscription(ctx, s, time.Second)
	if r.Status != Problem || (!strings.Contains(r.Detail, "would refuse") && !strings.Contains(r.Detail, "x509.ca_dir")) {
		t.Errorf("%s %q", r.Status, r.Detail)
	}
}

// fakeProc writes a /proc with a boot time and the given processes (pid: comm and start in
// seconds after boot).
func fakeProc(t *testing.T, boot time.Time, procs map[int]struct {
	comm  string
	start int
}) string {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "stat"), fmt.Sprintf("cpu  1 2 3\nbtime %d\nprocesses 9\n", boot.Unix()), 0o644)
	for pid, p := range procs {
		// Fields 3 to 21 are filler; field 22 is the start time in ticks (1/100 s).
		fill := strings.Repeat("0 ", 19)
		state := "S"
		if strings.HasSuffix(p.comm, "<defunct>") { // a zombie, for the test
			p.comm, state = strings.TrimSuffix(p.comm, "<defunct>"), "Z"
		}
		write(t, filepath.Join(dir, fmt.Sprint(pid), "stat"), fmt.Sprintf("%d (%s) %s %s%d 0 0\n", pid, p.comm, state, fill[2:], p.start*userHZ), 0o644)
	}
	return dir
}

func TestLibvirtd(t *testing.T) {
	boot := time.Now().Add(-time.Hour).Truncate(time.Second)
	hooks := t.TempDir()
	target := hook.Target(hooks)
	write(t, target, "x", 0o755)
	installed := boot.Add(30 * time.Minute)
	os.Chtimes(target, installed, installed)
	type p = struct {
		comm  string
		start int
	}

	none := fakeProc(t, boot, map[int]p{1: {"systemd", 0}, 50: {"bash (x) y", 5}})
	want(t, Libvirtd(none, target), Problem, "neither libvirtd nor virtqemud")

	after := fakeProc(t, boot, map[int]p{1: {"systemd", 0}, 700: {"libvirtd", 40 * 60}})
	want(t, Libvirtd(after, target), OK, "after the hook was installed")

	// Restarted: the old daemon is a zombie not reaped yet, the new one runs.
	restarted := fakeProc(t, boot, map[int]p{1: {"systemd", 0}, 300: {"libvirtd<defunct>", 10 * 60}, 700: {"libvirtd", 40 * 60}})
	r := Libvirtd(restarted, target)
	want(t, r, OK, "after the hook was installed")
	if !strings.Contains(r.Detail, "pid 700") {
		t.Errorf("a zombie taken for the daemon: %q", r.Detail)
	}

	before := fakeProc(t, boot, map[int]p{1: {"systemd", 0}, 300: {"virtqemud", 10 * 60}})
	r = Libvirtd(before, target)
	want(t, r, Unknown, "cannot tell whether it was sent SIGHUP")
	if !strings.Contains(r.Detail, "pid 300") {
		t.Errorf("the pid is not named: %q", r.Detail)
	}

	want(t, Libvirtd(t.TempDir(), target), Unknown, "cannot tell")
}

func TestParseStat(t *testing.T) {
	comm, state, start, ok := parseStat([]byte("42 (a) b) (c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 1234 99\n"))
	if !ok || comm != "a) b) (c" || state != "R" || start != 1234 {
		t.Fatalf("parseStat: %q %q %d %v", comm, state, start, ok)
	}
	if _, _, _, ok := parseStat([]byte("42 (short) R 1 2")); ok {
		t.Fatal("a short line parsed")
	}
}

func TestJournal(t *testing.T) {
	dir := t.TempDir()
	want(t, Journal(dir), OK, "does not exist yet")
	rec := trace.Record{Time: time.Now().UTC(), Event: trace.AdmissionAllow, Outcome: trace.OutcomeSuccess, Reason: "first"}
	if err := trace.Append(dir, rec, rec, rec); err != nil {
		t.Fatal(err)
	}
	want(t, Journal(dir), OK, "3 records intact")
	// An edited record with good ones after it: damage, not a torn tail.
	path := trace.JournalPath(dir)
	b, _ := os.ReadFile(path)
	write(t, path, strings.Replace(string(b), `"first"`, `"FIRST"`, 1), 0o600)
	want(t, Journal(dir), Problem, "hash chain breaks")
}

func TestSink(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	want(t, Sink(ctx, config.Sink{Name: "f", Type: config.SinkJSONFile, Path: filepath.Join(dir, "new", "records.jsonl")}, time.Second), OK, "writable")
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o500)
		want(t, Sink(ctx, config.Sink{Name: "f", Type: config.SinkJSONFile, Path: filepath.Join(ro, "r.jsonl")}, time.Second), Problem, "ro")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	off := false
	want(t, Sink(ctx, config.Sink{Name: "s", Type: config.SinkSyslog, Address: ln.Addr().String(), TLS: &off}, time.Second), OK, "reachable")
	addr := ln.Addr().String()
	ln.Close()
	want(t, Sink(ctx, config.Sink{Name: "s", Type: config.SinkSyslog, Address: addr, TLS: &off}, time.Second), Problem, "tcp://"+addr)
}

func TestRunAndFailed(t *testing.T) {
	cfg, _, _ := site(t)
	var got []Result
	Run(context.Background(), Env{Config: cfg, ConfigPath: "/etc/vmgate/vmgate.yaml", HooksDir: t.TempDir(), Proc: t.TempDir()},
		func(r Result) { got = append(got, r) })
	var names []string
	for _, r := range got {
		names = append(names, r.Check)
	}
	if strings.Join(names, ",") != "config,subscription example,snapshot,hook,libvirtd,trace journal" {
		t.Errorf("checks: %v", names)
	}
	if !Failed(got) {
		t.Errorf("no snapshot and no hook, yet nothing failed")
	}
	if Failed([]Result{{Status: OK}, {Status: Unknown}}) {
		t.Errorf("cannot tell counts as a failure")
	}
}

func TestLine(t *testing.T) {
	got := Line(Result{Check: "config", Status: Problem, Detail: "yaml: unmarshal errors:\n  line 1: field x not found", Fix: "fix it"})
	if got != "FAIL config: yaml: unmarshal errors: line 1: field x not found; what to do: fix it" {
		t.Errorf("Line: %q", got)
	}
	if got := Line(Result{Check: "hook", Status: OK, Detail: "installed"}); got != "ok   hook: installed" {
		t.Errorf("Line: %q", got)
	}
}
