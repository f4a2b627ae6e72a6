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
// binary where it is, because libvirtd gives hooks no environment of their own.
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
	target := Target(hooksDir)
	old, err := os.ReadFile(target)
	switch {
	case err == nil && bytes.Equal(old, content):
		return Unchanged, os.Chmod(target, 0o755)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return 0, fmt.Errorf("hook install: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
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
