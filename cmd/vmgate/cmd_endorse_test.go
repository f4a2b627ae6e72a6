package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/term"

	"github.com/vmgate/vmgate/internal/policy/verify"
)

// runEndorseCmd runs vmgate in-process as main does.
func runEndorseCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	if err := root.ExecuteContext(context.Background()); err != nil {
		errOut.WriteString("vmgate: " + err.Error() + "\n")
		return out.String(), errOut.String(), exitCode(err)
	}
	return out.String(), errOut.String(), exitOK
}

// TestEndorseCLI walks the endorser's flow through the commands and their exit codes.
func TestEndorseCLI(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGN_PASSWORD", "endorser-pw")
	list := filepath.Join(dir, "image.list")
	key := filepath.Join(dir, "endorser")
	img := filepath.Join(dir, "worker.raw")
	os.WriteFile(img, bytes.Repeat([]byte("worker image\n"), 1000), 0o644)
	sw := filepath.Join(dir, "worker.rpm-qa.txt")
	os.WriteFile(sw, []byte("bash-5.1.8-9.el9.x86_64\nopenssh-server-8.7p1-38.el9.x86_64\n"), 0o644)

	steps := []struct {
		args []string
		code int
		want string // in stdout for exit 0, else in stderr
	}{
		{[]string{"endorse", "keygen", "--output-key-prefix", key}, 0, "Private key written to " + key + ".key"},
		{[]string{"endorse", "keygen", "--output-key-prefix", key}, 1, "exists: not replacing a key"},
		{[]string{"endorse", "init", "--list", list, "--identifier", "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", "--title", "VO images",
			"--endorser-dn", "/CN=Jane Doe", "--endorser-ca", "/CN=Example CA", "--uri", "https://images.example.org/image.list"}, 0, "new list"},
		{[]string{"endorse", "init", "--list", list, "--identifier", "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", "--title", "VO images",
			"--endorser-dn", "/CN=Jane Doe", "--endorser-ca", "/CN=Example CA"}, 1, "exists: init makes a new list"},
		{[]string{"endorse", "init", "--list", list}, 2, `required flag(s) "endorser-ca", "endorser-dn", "identifier", "title" not set`},
		{[]string{"endorse", "add", "--list", list, "--image", img, "--title", "Worker", "--version", "9.4-1", "--identifier",
			"8a1f2e3d-4c5b-4a69-8877-665544332211", "--software", sw}, 0, "software rpm-qa, 2 packages"},
		{[]string{"endorse", "add", "--list", list, "--image", filepath.Join(dir, "missing.raw"), "--title", "X", "--version", "1"}, 2, "no such file"},
		{[]string{"endorse", "sign", "--list", list, "--key", key + ".key"}, 0, "signed version 1 (1 images, 1 changes published)"},
		{[]string{"endorse", "verify-history", "--list", list}, 0, "1 signed versions match their archive, 0 changes pending"},
		{[]string{"endorse", "remove", "--list", list, "8a1f2e3d-4c5b-4a69-8877-665544332211"}, 2, `required flag(s) "reason" not set`},
		{[]string{"endorse", "remove", "--list", list, "8a1f2e3d-4c5b-4a69-8877-665544332211", "--reason", "CVE-2026-1234"}, 0, "pending"},
		{[]string{"endorse", "remove", "--list", list, "8a1f2e3d-4c5b-4a69-8877-665544332211", "--reason", "again"}, 1, "has no image"},
		{[]string{"endorse", "history", "--list", list}, 0, "1 change(s) pending"},
		{[]string{"endorse", "sign", "--list", list, "--key", key + ".pub"}, 1, "this is a public key"},
		{[]string{"endorse", "sign", "--list", list, "--key", key + ".key", "--expires-in", "240h"}, 0, "signed version 2 (0 images, 1 changes published)"},
	}
	for _, st := range steps {
		out, errOut, code := runEndorseCmd(t, st.args...)
		where := out
		if st.code != 0 {
			where = errOut
		}
		if code != st.code || !strings.Contains(where, st.want) {
			t.Fatalf("vmgate %s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant: %s", strings.Join(st.args, " "), code, st.code, out, errOut, st.want)
		}
	}

	out, _, code := runEndorseCmd(t, "endorse", "history", "--list", list, "--json")
	var recs []map[string]any
	if err := json.Unmarshal([]byte(out), &recs); code != 0 || err != nil || len(recs) != 5 {
		t.Fatalf("history --json: exit %d, %v\n%s", code, err, out)
	}
	rm := recs[3]
	if rm["action"] != "remove" || rm["reason"] != "CVE-2026-1234" || rm["uid"] != float64(os.Getuid()) || rm["user"] == "" || rm["pending"] != false {
		t.Fatalf("remove record: %v", rm)
	}

	// What sites verify: the signed list with the key keygen wrote.
	keys, err := verify.LoadKeys(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(list)
	sig, _ := os.ReadFile(list + ".sig")
	bundle, _ := os.ReadFile(list + ".bundle")
	if err := keys.VerifySignature(data, sig); err != nil {
		t.Fatal(err)
	}
	if err := keys.VerifyBundle(data, bundle); err != nil {
		t.Fatal(err)
	}

	// Tampering shows, with exit code 1.
	hist, _ := os.ReadFile(list + ".history")
	os.WriteFile(list+".history", bytes.Replace(hist, []byte("CVE-2026-1234"), []byte("routine cleanup"), 1), 0o644)
	if out, errOut, code := runEndorseCmd(t, "endorse", "verify-history", "--list", list); code != 1 || !strings.Contains(errOut, "BROKEN") {
		t.Fatalf("verify-history of a tampered history: exit %d\n%s%s", code, out, errOut)
	}
}

func TestEndorseKeyPassword(t *testing.T) {
	dir := t.TempDir()
	if term.IsTerminal(int(os.Stdin.Fd())) {
		t.Skip("stdin is a terminal: keygen would ask for the password")
	}
	// No COSIGN_PASSWORD and no terminal: a script's mistake, not a prompt that hangs.
	t.Setenv("COSIGN_PASSWORD", "") // restores the variable afterwards
	os.Unsetenv("COSIGN_PASSWORD")
	_, errOut, code := runEndorseCmd(t, "endorse", "keygen", "--output-key-prefix", filepath.Join(dir, "k"))
	if code != 2 || !strings.Contains(errOut, "set COSIGN_PASSWORD") {
		t.Fatalf("keygen without a password: exit %d\n%s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "k.key")); err == nil {
		t.Fatal("a key was written")
	}
	// An empty COSIGN_PASSWORD is a password, as with cosign.
	t.Setenv("COSIGN_PASSWORD", "")
	if _, errOut, code := runEndorseCmd(t, "endorse", "keygen", "--output-key-prefix", filepath.Join(dir, "k")); code != 0 {
		t.Fatalf("keygen with an empty password: exit %d\n%s", code, errOut)
	}
}

// TestEndorseHelp: every subcommand has help that names its flags and exit codes.
func TestEndorseHelp(t *testing.T) {
	for _, sub := range []struct {
		name  string
		flags []string
	}{
		{"", []string{"init", "add", "remove", "sign", "history", "verify-history", "keygen"}},
		{"init", []string{"--list", "--identifier", "--title", "--endorser-dn", "--endorser-ca", "--uri", "--expires-in"}},
		{"add", []string{"--list", "--image", "--title", "--version", "--identifier", "--software", "--uri"}},
		{"remove", []string{"--list", "IDENTIFIER", "--reason"}},
		{"sign", []string{"--list", "--key", "--expires-in", "COSIGN_PASSWORD"}},
		{"history", []string{"--list", "--json"}},
		{"verify-history", []string{"--list"}},
		{"keygen", []string{"--output-key-prefix", "COSIGN_PASSWORD"}},
	} {
		args := []string{"endorse"}
		if sub.name != "" {
			args = append(args, sub.name)
		}
		out, _, code := runEndorseCmd(t, append(args, "--help")...)
		if code != 0 || !strings.Contains(out, "Exit codes:") {
			t.Errorf("vmgate %s --help: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		for _, f := range sub.flags {
			if !strings.Contains(out, f) {
				t.Errorf("vmgate %s --help does not mention %s", strings.Join(args, " "), f)
			}
		}
	}
}
