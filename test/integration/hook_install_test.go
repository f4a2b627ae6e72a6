package integration

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	libvirtHooksDir = "/etc/libvirt/hooks"
	// hooksAside is where TestHookInstallIntoAFreshLibvirt keeps the machine's hooks directory
	// while it runs; a killed run leaves it there, and the next run puts it back.
	hooksAside = "/etc/libvirt/hooks.vmgate-test-aside"
)

// withoutHooksDir makes the real libvirtd a fresh install's, without /etc/libvirt/hooks, for
// the rest of t: it moves the directory aside and makes libvirtd look for hooks again (it finds
// none). Cleanup removes what the test made there and puts the directory back.
func withoutHooksDir(t *testing.T, l *Libvirt) {
	t.Helper()
	if _, err := os.Stat(hooksAside); err == nil {
		if _, err := os.Stat(libvirtHooksDir); err == nil {
			t.Fatalf("both %s and %s (left by a killed run) exist: put back the right one by hand", libvirtHooksDir, hooksAside)
		}
		if err := os.Rename(hooksAside, libvirtHooksDir); err != nil {
			t.Fatal(err)
		}
		t.Logf("put back %s, left aside by a killed run", libvirtHooksDir)
	}
	moved := false
	switch _, err := os.Stat(libvirtHooksDir); {
	case err == nil:
		if err := os.Rename(libvirtHooksDir, hooksAside); err != nil {
			t.Fatal(err)
		}
		moved = true
	case !errors.Is(err, fs.ErrNotExist):
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Only what the test made: the hook, qemu.d and the hooks directory. Anything else
		// there means another hook appeared, which the integration lock should prevent.
		for _, p := range []string{filepath.Join(qemuHookDir, "vmgate"), qemuHookDir, libvirtHooksDir} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("restoring the hooks directory: %v", err)
				return
			}
		}
		if moved {
			if err := os.Rename(hooksAside, libvirtHooksDir); err != nil {
				t.Errorf("putting back %s: %v", libvirtHooksDir, err)
			}
		}
		l.hup(t)
	})
	if l.hup(t) {
		t.Fatalf("libvirtd still finds a qemu hook with %s moved aside", libvirtHooksDir)
	}
}

// TestHookInstallIntoAFreshLibvirt: on a libvirt without /etc/libvirt/hooks (a fresh Debian
// install), `vmgate hook install` makes the directory and its qemu.d and installs the hook;
// libvirtd runs it from the next SIGHUP on (not before: that is why hook install and the demo
// ask for one), and it refuses an unendorsed image with vmgate's reason.
func TestHookInstallIntoAFreshLibvirt(t *testing.T) {
	l := requireLibvirt(t)
	s := newSite(t, "")
	aPath, a := s.baseImage("a.raw")
	bPath, _ := s.baseImage("b.raw")
	s.publish(a)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	withoutHooksDir(t, l)

	out, stderr, code := s.vmgate("hook", "install", "--hook", filepath.Join(s.bin, "vmgate-hook"))
	if code != 0 || !strings.Contains(out, "created "+qemuHookDir) || !strings.Contains(out, "installed "+qemuHookDir+"/vmgate") ||
		!strings.Contains(out, "SIGHUP") {
		t.Fatalf("vmgate hook install: exit %d\n%s%s", code, out, stderr)
	}
	for _, p := range []string{libvirtHooksDir, qemuHookDir, filepath.Join(qemuHookDir, "vmgate")} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v %v, want mode 0755", p, st, err)
		}
	}

	// libvirtd found no qemu hook when it last looked, so it does not run the new one yet.
	early := l.NewDomain(t, "fresh-before-hup", DomainOptions{BaseImage: bPath})
	if stderr, err := early.Start(); err != nil {
		t.Fatalf("before SIGHUP libvirtd already ran the hook (libvirt changed?): %v\n%s", err, stderr)
	}
	if err := early.Destroy(); err != nil {
		t.Fatal(err)
	}

	if !l.hup(t) {
		t.Fatalf("libvirtd found no qemu hook after SIGHUP although vmgate hook install put %s/vmgate there", qemuHookDir)
	}
	refused := l.NewDomain(t, "fresh-unendorsed", DomainOptions{BaseImage: bPath})
	if stderr, err := refused.Start(); err == nil || !strings.Contains(stderr, "vmgate: not endorsed: disk vda image "+bPath) {
		t.Fatalf("unendorsed domain after SIGHUP: err %v\n%s", err, stderr)
	}
	endorsed := l.NewDomain(t, "fresh-endorsed", DomainOptions{BaseImage: aPath})
	if stderr, err := endorsed.Start(); err != nil {
		t.Fatalf("endorsed domain refused: %v\n%s", err, stderr)
	}

	// Running it again changes nothing and says so.
	if out, _, code := s.vmgate("hook", "install", "--hook", filepath.Join(s.bin, "vmgate-hook")); code != 0 || strings.Contains(out, "created") || !strings.Contains(out, "up to date") {
		t.Errorf("second hook install: exit %d\n%s", code, out)
	}
}
