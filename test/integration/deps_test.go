// Package integration tests vmgate against the real programs it works with (libvirtd and
// QEMU, rsyslog, the cosign CLI, OpenStack, openssl).
//
// The rule for every test here: it runs only when VMGATE_INTEGRATION=1 (make test sets it),
// and then a missing dependency FAILS the test, never skips it, so that CI cannot pass by
// testing nothing. Without the variable every test skips with a message, so plain
// `go test ./...` (make unit) needs no root and no installs. Use requireIntegration and
// requireTool below rather than checking the environment or calling t.Skip yourself.
package integration

import (
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// integrationEnv switches the integration tests on.
const integrationEnv = "VMGATE_INTEGRATION"

// requireIntegration skips t unless VMGATE_INTEGRATION=1.
func requireIntegration(t testing.TB) {
	t.Helper()
	if os.Getenv(integrationEnv) != "1" {
		t.Skipf("integration test: set %s=1 to run it (make test does)", integrationEnv)
	}
}

// requireTool returns the path of the program name. It skips t unless VMGATE_INTEGRATION=1,
// and fails t when the program cannot be found: in PATH, then in Go's bin directories
// ($GOBIN, $GOPATH/bin), where `go install` and so scripts/deps.sh put cosign.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	requireIntegration(t)
	path, err := findTool(name)
	if err != nil {
		t.Fatalf("%s: this test needs it and %s=1 forbids skipping: %v (make deps installs the test dependencies)", name, integrationEnv, err)
	}
	return path
}

func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs := goBinDirs()
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("not found in PATH nor in " + strings.Join(dirs, ", "))
}

// goBinDirs asks the go command (go test puts it in PATH) so that settings made with
// `go env -w` count too; the environment is the fallback.
func goBinDirs() []string {
	var gobin, gopath string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if len(lines) == 2 {
			gobin, gopath = lines[0], lines[1]
		}
	}
	if gobin == "" {
		gobin = os.Getenv("GOBIN")
	}
	if gopath == "" {
		gopath = build.Default.GOPATH
	}
	var dirs []string
	if gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, p := range filepath.SplitList(gopath) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	return dirs
}

// runTool runs a dependency in dir and returns its combined output; the error says which
// command failed and how.
func runTool(dir string, env []string, path string, args ...string) (string, error) {
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
