package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/serve"
)

// trickyConfig writes internal/config/testdata/tricky.yaml (values that YAML 1.1 and 1.2,
// or a decoder into untyped values, read differently) into a temporary directory.
func trickyConfig(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../internal/config/testdata/tricky.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "vmgate.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(data), "@DIR@", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// noOverrides clears every VMGATE_<KEY> variable for the test (an empty one overrides
// nothing), whatever the environment of go test holds.
func noOverrides(t *testing.T) {
	for _, key := range config.ScalarKeys() {
		t.Setenv(config.EnvName(key), "")
	}
}

// asJSON shows every field of a configuration, times by instant and offset.
func asJSON(t *testing.T, c *config.Config) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConfigSameValuesOnEveryPath: the hook's config.Load, the vmgate command's loader
// (--config or VMGATE_CONFIG) and vmgate serve at start read the tricky file into the same
// values; VMGATE_<KEY> overrides change only their keys, typed as in the file.
func TestConfigSameValuesOnEveryPath(t *testing.T) {
	noOverrides(t)
	path := trickyConfig(t)
	hook, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := asJSON(t, hook)
	for _, g := range []*globalOptions{{configPath: path}, {}} {
		if g.configPath == "" {
			t.Setenv(config.EnvConfig, path)
		}
		got, err := g.loadConfig()
		if err != nil {
			t.Fatal(err)
		}
		if s := asJSON(t, got); s != want {
			t.Errorf("vmgate (--config %q) read\n%s\nthe hook read\n%s", g.configPath, s, want)
		}
	}
	// The values a generic decoder got wrong, by name.
	if hook.Subscriptions[0].Token != "0123" || hook.Admission.ExemptProjects[0] != "12345678901234567890123456789012" {
		t.Errorf("token %q, exempt_projects[0] %q", hook.Subscriptions[0].Token, hook.Admission.ExemptProjects[0])
	}

	// With overrides: their keys change, typed by the key; nothing else does.
	t.Setenv("VMGATE_OPENSTACK_CLOUD", "00042")
	t.Setenv("VMGATE_ADMISSION_ALLOW_BOOT_FROM_VOLUME", "off")
	t.Setenv("VMGATE_SERVE_AUDIT_MAX", "0x20")
	t.Setenv("VMGATE_CLOCK_SKEW", "2m")
	t.Setenv("VMGATE_SERVE_LISTEN", "[::1]:0")
	g := &globalOptions{configPath: path}
	got, err := g.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got.OpenStack.Cloud != "00042" || got.Admission.AllowBootFromVolume || got.Serve.AuditMax != 32 || got.ClockSkew != 2*time.Minute || got.Serve.Listen != "[::1]:0" {
		t.Errorf("overrides: cloud %q, allow_boot_from_volume %v, audit_max %d, clock_skew %v, listen %q",
			got.OpenStack.Cloud, got.Admission.AllowBootFromVolume, got.Serve.AuditMax, got.ClockSkew, got.Serve.Listen)
	}
	got.OpenStack.Cloud, got.Admission.AllowBootFromVolume, got.Serve.AuditMax, got.ClockSkew, got.Serve.Listen =
		hook.OpenStack.Cloud, hook.Admission.AllowBootFromVolume, hook.Serve.AuditMax, hook.ClockSkew, hook.Serve.Listen
	if s := asJSON(t, got); s != want {
		t.Errorf("overrides changed other keys:\n%s\nthe hook read\n%s", s, want)
	}

	// A bad override names its variable; the hook's view (hook install checks it) is unaffected.
	t.Setenv("VMGATE_CLOCK_SKEW", "soon")
	if _, err := g.loadConfig(); err == nil || !strings.Contains(err.Error(), "VMGATE_CLOCK_SKEW") {
		t.Errorf("VMGATE_CLOCK_SKEW=soon: %v", err)
	}
}

// TestServeReloadReadsTheSameValues: vmgate serve, reloaded by a real SIGHUP, runs its syncs
// with the configuration the hook reads from the new file (overrides on top).
func TestServeReloadReadsTheSameValues(t *testing.T) {
	noOverrides(t)
	path := trickyConfig(t)
	tricky, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	first := "state_dir: " + dir + "/state\nserve: {listen: '127.0.0.1:0', audit_action: off}\n" +
		"subscriptions: [{name: first, url: 'file://" + dir + "/first.list', cosign_keys: [" + dir + "/k.pub]}]\n"
	if err := os.WriteFile(path, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var seen []*config.Config
	g := &globalOptions{configPath: path}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := g.serveOptions(ServeOptions{}, log)
	newSyncer := opts.NewSyncer
	opts.NewSyncer = func(cfg *config.Config) *policy.Syncer {
		mu.Lock()
		seen = append(seen, cfg)
		mu.Unlock()
		return newSyncer(cfg)
	}
	opts.OnSync = nil // no trace records, no image_dirs hashing: only the configuration matters here
	d, err := serve.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, reloadOnSIGHUP(ctx)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	// waitSeen waits until the daemon has synced with a configuration whose state_dir is dir.
	waitSeen := func(what, stateDir string) *config.Config {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			for _, c := range seen {
				if c.StateDir == stateDir && (what != "reload" || len(c.Subscriptions) == 2) {
					mu.Unlock()
					return c
				}
			}
			mu.Unlock()
			if time.Now().After(deadline) {
				t.Fatalf("serve never synced with the %s configuration", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	start := waitSeen("first", dir+"/state")
	if want, _ := config.Load(path); asJSON(t, start) != asJSON(t, want) {
		t.Errorf("serve at start read\n%s\nthe hook reads\n%s", asJSON(t, start), asJSON(t, want))
	}

	// The tricky file, and an override, then SIGHUP, as an operator would.
	if err := os.WriteFile(path, tricky, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VMGATE_ADMISSION_MODE", "enforce")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reloaded := waitSeen("reload", dir+"/state")
	want, err := config.LoadWith(path, []config.Override{{Key: "admission.mode", From: "VMGATE_ADMISSION_MODE", Value: "enforce"}})
	if err != nil {
		t.Fatal(err)
	}
	if asJSON(t, reloaded) != asJSON(t, want) {
		t.Errorf("serve after SIGHUP read\n%s\nwant\n%s", asJSON(t, reloaded), asJSON(t, want))
	}
	if reloaded.Subscriptions[0].Token != "0123" || reloaded.Admission.ExemptProjects[0] != "12345678901234567890123456789012" || reloaded.Admission.Mode != "enforce" {
		t.Errorf("after SIGHUP: token %q, exempt_projects[0] %q, mode %q", reloaded.Subscriptions[0].Token, reloaded.Admission.ExemptProjects[0], reloaded.Admission.Mode)
	}
}

// TestDoctorChecksTheFileAsTheHookReadsIt: doctor judges the installation by the file alone,
// as the hook reads it, and shows each override it was run with.
func TestDoctorChecksTheFileAsTheHookReadsIt(t *testing.T) {
	noOverrides(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "vmgate.yaml")
	if err := os.WriteFile(path, []byte("state_dir: "+dir+"/state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VMGATE_ADMISSION_MODE", "warn")
	var out strings.Builder
	runDoctor(context.Background(), DoctorOptions{HooksDir: filepath.Join(dir, "hooks"), Timeout: time.Second}, &globalOptions{configPath: path}, &out)
	if !strings.Contains(out.String(), "admission.mode enforce") ||
		!strings.Contains(out.String(), "?    config: VMGATE_ADMISSION_MODE overrides admission.mode for the vmgate commands run with it; the hook, and these checks, read the file only") {
		t.Errorf("doctor said:\n%s", out.String())
	}
}
