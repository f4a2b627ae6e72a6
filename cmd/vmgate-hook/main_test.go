package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestHookImportGraph keeps the hook small: libvirtd runs it at every VM start, and Go runs
// the init of every linked package before main.
func TestHookImportGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, banned := range []string{"sigstore", "gophercloud", "spf13", "libvirt.org", "sqlite", "prometheus", "net/http"} {
			if strings.Contains(d, banned) {
				t.Errorf("the hook links %s", d)
			}
		}
	}
	if len(deps) > 150 {
		t.Errorf("the hook links %d packages, more than 150", len(deps))
	}
}
