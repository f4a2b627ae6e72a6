package hook

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// TestInstallCreatesTheHooksDirectory: a fresh libvirt install has no hooks directory;
// Install makes it and its qemu.d, 0755 whatever the umask, and leaves existing ones alone.
func TestInstallCreatesTheHooksDirectory(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	bin := filepath.Join(dir, "vmgate-hook")
	os.WriteFile(bin, []byte("binary"), 0o755)
	etc := filepath.Join(dir, "etc-libvirt")
	if err := os.Mkdir(etc, 0o700); err != nil {
		t.Fatal(err)
	}
	hooks := filepath.Join(etc, "hooks")
	if got, err := Install(hooks, bin, ""); err != nil || got != Installed {
		t.Fatalf("install into a missing hooks directory: %v %v", got, err)
	}
	for _, d := range []string{hooks, filepath.Join(hooks, "qemu.d")} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v, want a directory 0755", d, st.Mode(), err)
		}
	}
	if st, err := os.Stat(Target(hooks)); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("hook: %v %v", st, err)
	}
	if st, _ := os.Stat(etc); st.Mode().Perm() != 0o700 {
		t.Errorf("the parent's mode changed: %v", st.Mode())
	}

	// An existing qemu.d keeps its mode (the site's choice).
	os.Remove(Target(hooks))
	os.Chmod(filepath.Join(hooks, "qemu.d"), 0o750)
	if _, err := Install(hooks, bin, ""); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(hooks, "qemu.d")); st.Mode().Perm() != 0o750 {
		t.Errorf("an existing qemu.d was changed to %v", st.Mode())
	}

	// No libvirt at all: the parent is missing, and Install says so rather than invent /etc/libvirt.
	_, err := Install(filepath.Join(dir, "no-libvirt", "hooks"), bin, "")
	if err == nil || !strings.Contains(err.Error(), "is libvirt installed on this host?") {
		t.Errorf("without a parent: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "no-libvirt")); err == nil {
		t.Error("Install created the parent of the hooks directory")
	}
	// A file where qemu.d should be.
	other := filepath.Join(dir, "other")
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "qemu.d"), nil, 0o644)
	if _, err := Install(other, bin, ""); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("qemu.d a file: %v", err)
	}
}
