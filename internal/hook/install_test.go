package hook

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "vmgate-hook")
	os.WriteFile(bin, []byte("binary v1"), 0o755)
	hooks := filepath.Join(dir, "hooks")
	for i, want := range []InstallResult{Installed, Unchanged} {
		got, err := Install(hooks, bin, "")
		if err != nil || got != want {
			t.Fatalf("install %d: %v %v, want %v", i, got, err, want)
		}
	}
	st, err := os.Stat(Target(hooks))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("installed hook: %v %v", st, err)
	}
	os.WriteFile(bin, []byte("binary v2"), 0o755)
	if got, _ := Install(hooks, bin, ""); got != Updated {
		t.Fatalf("new binary: %v", got)
	}
	if b, _ := os.ReadFile(Target(hooks)); string(b) != "binary v2" {
		t.Fatalf("content %q", b)
	}
	if ok, err := Uninstall(hooks); !ok || err != nil {
		t.Fatalf("uninstall: %v %v", ok, err)
	}
	if ok, err := Uninstall(hooks); ok || err != nil {
		t.Fatalf("second uninstall: %v %v", ok, err)
	}
}

func TestInstallWrapperPassesConfig(t *testing.T) {
	dir := t.TempDir()
	// A stand-in hook binary that prints the configuration it was given and its arguments.
	bin := filepath.Join(dir, "it's the hook")
	os.WriteFile(bin, []byte("#!/bin/sh\necho \"$VMGATE_CONFIG|$*\"\n"), 0o755)
	cfg := filepath.Join(dir, "site's vmgate.yaml")
	if _, err := Install(dir, bin, cfg); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(Target(dir), "vm", "prepare", "begin", "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != cfg+"|vm prepare begin -" {
		t.Fatalf("wrapper ran %q", got)
	}
}
