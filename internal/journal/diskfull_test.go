//go:build linux

package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// needIntegration skips a test that cannot run here, unless VMGATE_INTEGRATION=1 asks for
// every test to run (as in CI), where a skip would hide that it never ran.
func needIntegration(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("VMGATE_INTEGRATION") == "1" {
		t.Fatalf("VMGATE_INTEGRATION=1 but %s", why)
	}
	t.Skip(why)
}

// On a full disk the failing Append returns ENOSPC, leaves no part of its records behind, and
// every record confirmed before is still there and verifies.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		needIntegration(t, "mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		needIntegration(t, fmt.Sprintf("cannot mount a tmpfs: %v", err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Error(err)
		}
	})
	path := filepath.Join(dir, "trace.jsonl")
	j := openT(t, path, Options{})

	pad := strings.Repeat("x", 1000)
	var confirmed []string
	var err error
	for i := 0; i < 1000; i++ {
		d := fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, pad)
		if _, err = j.Append(json.RawMessage(d)); err != nil {
			break
		}
		confirmed = append(confirmed, d)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("after %d records: %v, want ENOSPC", len(confirmed), err)
	}
	t.Logf("disk full after %d records: %v", len(confirmed), err)

	// A batch that does not fit either, and a small record that may.
	if _, err := j.Append(json.RawMessage(`{"a":1}`), json.RawMessage(`{"pad":"`+pad+`"}`)); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("batch on a full disk: %v", err)
	}
	if _, err := j.Append(json.RawMessage(`{"small":1}`)); err == nil {
		confirmed = append(confirmed, `{"small":1}`)
	} else if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("small record on a full disk: %v", err)
	}

	rep := verifyT(t, path)
	if !rep.Intact() || rep.Records != len(confirmed) {
		t.Errorf("verify: %v; %d records confirmed", rep, len(confirmed))
	}
	all := readAll(t, path)
	for i, e := range all {
		if i >= len(confirmed) || string(e.Data) != confirmed[i] {
			t.Fatalf("seq %d is %s", e.Seq, e.Data)
		}
	}
}
