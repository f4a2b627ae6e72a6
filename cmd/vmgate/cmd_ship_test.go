package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/trace"
)

// runShipCmd runs vmgate in-process as main does, with ctx, and returns stdout, what main
// would print on stderr and the exit code.
func runShipCmd(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append(args, "--log-level", "error"))
	err := root.ExecuteContext(ctx)
	var o *outcome
	if err != nil && (!errors.As(err, &o) || o.msg != "") {
		errOut.WriteString("vmgate: " + err.Error() + "\n")
	}
	return out.String(), errOut.String(), exitCode(err)
}

// shipFixture is a state directory with three trace records and a configuration file whose
// trace section is sinks.
func shipFixture(t *testing.T, sinks string) (stateDir, configPath string) {
	t.Helper()
	dir := t.TempDir()
	stateDir = filepath.Join(dir, "state")
	for i := range 3 {
		if err := trace.Append(stateDir, trace.Record{Time: time.Now(), Host: "h", Event: trace.VMStarted,
			Outcome: trace.OutcomeSuccess, Domain: trace.Domain{Name: "d" + string(rune('0'+i))}}); err != nil {
			t.Fatal(err)
		}
	}
	configPath = filepath.Join(dir, "vmgate.yaml")
	cfg := "state_dir: " + stateDir + "\ntrace:\n  sinks:\n" + sinks
	if err := os.WriteFile(configPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return stateDir, configPath
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestShipOnceExitCodes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.jsonl")
	fileSink := "    - {name: filebeat, type: jsonfile, path: " + out + "}\n"

	stateDir, fileCfg := shipFixture(t, fileSink)
	stdout, stderr, code := runShipCmd(t, context.Background(), "ship", "--once", "--config", fileCfg)
	if code != exitOK || !strings.Contains(stdout, "filebeat: shipped 3 records, up to date at seq 3") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if stdout, _, code = runShipCmd(t, context.Background(), "ship", "--once", "--config", fileCfg); code != exitOK || !strings.Contains(stdout, "shipped 0 records") {
		t.Errorf("second run: exit %d, %s", code, stdout)
	}

	// An unreachable SIEM: exit 1, the other sink still served.
	out2 := filepath.Join(t.TempDir(), "records.jsonl")
	_, cfg := shipFixture(t, "    - {name: siem, type: syslog, address: '"+closedPort(t)+"', tls: false}\n"+
		"    - {name: filebeat, type: jsonfile, path: "+out2+"}\n")
	stdout, stderr, code = runShipCmd(t, context.Background(), "ship", "--once", "--config", cfg)
	if code != exitRefused || !strings.Contains(stderr, "sink siem") || !strings.Contains(stderr, "3 records wait for the next run") ||
		!strings.Contains(stdout, "filebeat: shipped 3") {
		t.Errorf("unreachable: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	// A damaged cursor is vmgate's problem, not the sink's: exit 2.
	os.WriteFile(ship.CursorPath(stateDir, "filebeat"), []byte("junk"), 0o600)
	if _, stderr, code = runShipCmd(t, context.Background(), "ship", "--once", "--config", fileCfg); code != exitError || !strings.Contains(stderr, "damaged") {
		t.Errorf("damaged cursor: exit %d, %s", code, stderr)
	}

	// No sink, a bad CA file: configuration errors, exit 2.
	_, cfg = shipFixture(t, "    []\n")
	if _, stderr, code = runShipCmd(t, context.Background(), "ship", "--once", "--config", cfg); code != exitError || !strings.Contains(stderr, "trace.sinks") {
		t.Errorf("no sinks: exit %d, %s", code, stderr)
	}
	_, cfg = shipFixture(t, "    - {name: siem, type: syslog, address: 'siem.example.org:6514', ca_file: /nonexistent/ca.pem}\n")
	if _, stderr, code = runShipCmd(t, context.Background(), "ship", "--once", "--config", cfg); code != exitError || !strings.Contains(stderr, "ca_file") {
		t.Errorf("bad ca_file: exit %d, %s", code, stderr)
	}
}

func TestShipRunsUntilStopped(t *testing.T) {
	out := filepath.Join(t.TempDir(), "records.jsonl")
	_, cfg := shipFixture(t, "    - {name: filebeat, type: jsonfile, path: "+out+"}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, stderr, code := runShipCmd(t, ctx, "ship", "--config", cfg); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if time.Since(start) < time.Second {
		t.Errorf("returned before it was stopped")
	}
	if b, err := os.ReadFile(out); err != nil || bytes.Count(b, []byte("\n")) != 3 {
		t.Errorf("%v: %s", err, b)
	}
}

func TestShipHelpListsExitCodes(t *testing.T) {
	stdout, _, code := runShipCmd(t, context.Background(), "ship", "--help")
	if code != exitOK || !strings.Contains(stdout, "Exit codes (--once): 0") || !strings.Contains(stdout, "--once") {
		t.Errorf("exit %d: %s", code, stdout)
	}
}
