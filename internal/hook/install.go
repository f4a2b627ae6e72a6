package hook

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmgate/vmgate/internal/atomicfile"
	"github.com/vmgate/vmgate/internal/config"
)

// DefaultHooksDir is libvirt's hook directory; the hook goes into its qemu.d.
const DefaultHooksDir = "/etc/libvirt/hooks"

// InstalledName is the hook's file name in qemu.d.
const InstalledName = "vmgate"

// InstallResult says what Install did.
type InstallResult int

const (
	Unchanged InstallResult = iota // the same hook was already installed
	Installed                      // there was no vmgate hook before: libvirtd must notice it
	Updated                        // an older hook was replaced; libvirtd runs the new one at once
)

// Target is where the hook is installed under hooksDir.
func Target(hooksDir string) string { return filepath.Join(hooksDir, "qemu.d", InstalledName) }

// Install puts the hook binary at Target(hooksDir). With the default configuration file it
// copies the binary; otherwise it writes a small wrapper that sets VMGATE_CONFIG and runs the
// binary where it is, because libvirtd gives hooks no environment of their own. It creates
// hooksDir and its qemu.d when they are missing, as they are on a fresh libvirt install.
func Install(hooksDir, hookBinary, configPath string) (InstallResult, error) {
	bin, err := filepath.Abs(hookBinary)
	if err != nil {
		return 0, err
	}
	var content []byte
	if configPath == "" || configPath == config.DefaultPath {
		if content, err = os.ReadFile(bin); err != nil {
			return 0, fmt.Errorf("hook install: %w (build it with make build, or give --hook)", err)
		}
	} else {
		cfg, err := filepath.Abs(configPath)
		if err != nil {
			return 0, err
		}
		content = []byte("#!/bin/sh\n# vmgate's libvirt hook, with this node's configuration file.\nVMGATE_CONFIG=" +
			shellQuote(cfg) + " exec " + shellQuote(bin) + " \"$@\"\n")
	}
	if err := makeHookDirs(hooksDir); err != nil {
		return 0, err
	}
	target := Target(hooksDir)
	old, err := os.ReadFile(target)
	switch {
	case err == nil && bytes.Equal(old, content):
		return Unchanged, os.Chmod(target, 0o755)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return 0, fmt.Errorf("hook install: %w", err)
	}
	if err := atomicfile.WriteFile(target, content, 0o755); err != nil {
		return 0, fmt.Errorf("hook install: %w", err)
	}
	if old != nil {
		return Updated, nil
	}
	return Installed, nil
}

// makeHookDirs creates hooksDir and hooksDir/qemu.d where missing, 0755 whatever
// the umask, as libvirt's own packages make /etc/libvirt/hooks where they ship it: libvirtd
// runs as root and reads them, and they hold nothing secret. It leaves existing directories
// alone, and refuses when hooksDir's parent is missing: then libvirt is not installed here
// (or --hooks-dir is wrong), and a hook nobody runs would protect nothing.
func makeHookDirs(hooksDir string) error {
	parent := filepath.Dir(filepath.Clean(hooksDir))
	if st, err := os.Stat(parent); err != nil || !st.IsDir() {
		return fmt.Errorf("hook install: %s is not a directory: is libvirt installed on this host? Install it (libvirt-daemon), or give --hooks-dir", parent)
	}
	for _, dir := range []string{hooksDir, filepath.Join(hooksDir, "qemu.d")} {
		err := os.Mkdir(dir, 0o755)
		switch {
		case err == nil:
			if err := os.Chmod(dir, 0o755); err != nil { // Mkdir's mode is masked by the umask
				return fmt.Errorf("hook install: %w", err)
			}
		case errors.Is(err, fs.ErrExist):
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return fmt.Errorf("hook install: %s exists but is not a directory; libvirtd looks for hooks in it", dir)
			}
		default:
			return fmt.Errorf("hook install: %w", err)
		}
	}
	return nil
}

// Uninstall removes the hook; it reports false when there was none.
func Uninstall(hooksDir string) (bool, error) {
	err := os.Remove(Target(hooksDir))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("hook uninstall: %w", err)
	}
	return true, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
