// Package doctor is vmgate doctor: a list of small checks of a node's installation, each
// saying what it found and, when something is wrong, what to do.
//
// Every host path the checks read (/proc, libvirt's hook directory) is a field of Env, so
// that tests run them against a temporary directory.
package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/hook"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/metrics"
	"github.com/vmgate/vmgate/internal/policy"
	"github.com/vmgate/vmgate/internal/policy/fetch"
	"github.com/vmgate/vmgate/internal/policy/smime"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/policy/verify"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/trace"
)

// Status of one check.
type Status int

const (
	OK      Status = iota // as it should be
	Problem               // wrong: vmgate does not work as configured until it is fixed
	Unknown               // cannot tell; not a failure
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Problem:
		return "FAIL"
	}
	return "?"
}

// Result is what one check found.
type Result struct {
	Check  string // what was checked, a few words
	Status Status
	Detail string // what was found
	Fix    string // what to do; empty when OK
}

// Line is the result as vmgate doctor prints it: one line, what was found and, when
// something is wrong, what to do.
func Line(r Result) string {
	line := fmt.Sprintf("%-4s %s: %s", r.Status, r.Check, oneLine(r.Detail))
	if r.Fix != "" {
		line += "; what to do: " + oneLine(r.Fix)
	}
	return line
}

// oneLine joins the lines of a message (a YAML error spans several) into one.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " ")
}

// Env is the node the checks look at.
type Env struct {
	Config *config.Config
	// ConfigPath is the file Config came from, for messages.
	ConfigPath string
	// HooksDir is libvirt's hook directory [hook.DefaultHooksDir].
	HooksDir string
	// Proc is where procfs is mounted [/proc].
	Proc string
	// Now is the clock [time.Now].
	Now func() time.Time
	// Timeout bounds each network check [10s].
	Timeout time.Duration
}

func (e *Env) fill() {
	if e.HooksDir == "" {
		e.HooksDir = hook.DefaultHooksDir
	}
	if e.Proc == "" {
		e.Proc = "/proc"
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Timeout <= 0 {
		e.Timeout = 10 * time.Second
	}
}

// Run runs every check, in the order an operator would fix things, and passes each result to
// report as it comes (a network check can take a while).
func Run(ctx context.Context, env Env, report func(Result)) {
	env.fill()
	report(Result{Check: "config", Status: OK, Detail: fmt.Sprintf("%s parses: %d subscriptions, %d sinks, admission.mode %s",
		env.ConfigPath, len(env.Config.Subscriptions), len(env.Config.Trace.Sinks), env.Config.Admission.Mode)})
	if len(env.Config.Subscriptions) == 0 {
		report(Result{Check: "subscriptions", Status: Problem, Detail: "none configured: no image is ever endorsed, the hook refuses every start",
			Fix: "add the endorsers' lists under subscriptions: in " + env.ConfigPath})
	}
	for _, s := range env.Config.Subscriptions {
		report(Subscription(ctx, s, env.Timeout))
	}
	report(Snapshot(env.Config.StateDir, env.Now()))
	report(Hook(env.HooksDir, env.ConfigPath))
	report(Libvirtd(env.Proc, hook.Target(env.HooksDir)))
	report(Journal(env.Config.StateDir))
	for _, s := range env.Config.Trace.Sinks {
		report(Sink(ctx, s, env.Timeout))
	}
}

// Failed reports whether any result is a Problem.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Status == Problem {
			return true
		}
	}
	return false
}

// Subscription checks that the endorser's trust loads (cosign keys, or the CA directory of
// an S/MIME list) and that the list and its signature can be fetched with the subscription's
// settings and size cap, and verify: what vmgate sync would do, short of checking and
// recording the list.
func Subscription(ctx context.Context, s config.Subscription, timeout time.Duration) Result {
	if s.X509 != nil {
		return x509Subscription(ctx, s, timeout)
	}
	r := Result{Check: "subscription " + s.Name}
	keys, err := verify.LoadKeys(s.CosignKeys...)
	if err != nil {
		r.Status, r.Detail = Problem, fmt.Sprintf("keys: %v", err)
		r.Fix = "check cosign_keys: each a PEM public key of the endorser, readable by root (cosign generate-key-pair writes cosign.pub)"
		return r
	}
	f, list, ok := fetchList(ctx, s, timeout, &r)
	if !ok {
		return r
	}
	sigURL, bundle := s.SignatureURL, s.BundleURL != ""
	if bundle {
		sigURL = s.BundleURL
	}
	sig, err := f.Get(ctx, sigURL, fetch.Validators{})
	if err != nil {
		r.Status, r.Detail = Problem, fmt.Sprintf("signature: %v", err)
		r.Fix = "check signature_url or bundle_url: the endorser publishes the signature beside the list (default <url>.sig)"
		return r
	}
	if bundle {
		err = keys.VerifyBundle(list, sig.Body)
	} else {
		err = keys.VerifySignature(list, sig.Body)
	}
	if err != nil {
		r.Status, r.Detail = Problem, fmt.Sprintf("reachable, but the signature does not verify: %v", err)
		r.Fix = "check that cosign_keys holds the endorser's current public key; vmgate sync refuses this list"
		return r
	}
	r.Status = OK
	r.Detail = fmt.Sprintf("%s reachable (%d bytes), signature verifies with %d key(s)", redact(s.URL), len(list), len(s.CosignKeys))
	return r
}

// x509Subscription is Subscription for an S/MIME signed list: the CA directory loads, and
// the document verifies (chain, CRLs, signer's subject and issuer) as vmgate sync checks it.
func x509Subscription(ctx context.Context, s config.Subscription, timeout time.Duration) Result {
	r := Result{Check: "subscription " + s.Name}
	if _, err := smime.LoadCADir(s.X509.CADir); err != nil {
		r.Status, r.Detail = Problem, fmt.Sprintf("x509.ca_dir: %v", err)
		r.Fix = "install the IGTF CA bundle in x509.ca_dir and keep fetch-crl running for its CRLs"
		return r
	}
	_, doc, ok := fetchList(ctx, s, timeout, &r)
	if !ok {
		return r
	}
	if _, _, err := policy.VerifySMIMEList(doc, *s.X509, time.Now()); err != nil {
		r.Status, r.Detail = Problem, fmt.Sprintf("reachable, but vmgate sync would refuse it: %v", err)
		r.Fix = "check x509.dn and x509.ca against the list's signer, and the CRLs in x509.ca_dir (fetch-crl)"
		var re *policy.RefusalError
		if errors.As(err, &re) {
			r.Fix = re.Hint()
		}
		return r
	}
	r.Status = OK
	r.Detail = fmt.Sprintf("%s reachable (%d bytes), S/MIME signature by %s verifies", redact(s.URL), len(doc), s.X509.DN)
	return r
}

// fetchList fetches a subscription's list once (no retries: doctor reports, sync retries);
// on failure it fills r and returns false.
func fetchList(ctx context.Context, s config.Subscription, timeout time.Duration, r *Result) (*fetch.Fetcher, []byte, bool) {
	f, err := fetch.New(fetch.Options{CAFile: s.CAFile, Timeout: min(s.Timeout, timeout), MaxSize: s.MaxSize, Token: s.Token, Retries: 1})
	if err != nil {
		r.Status, r.Detail, r.Fix = Problem, err.Error(), "check ca_file"
		return nil, nil, false
	}
	list, err := f.Get(ctx, s.URL, fetch.Validators{})
	if err != nil {
		r.Status, r.Detail = Problem, fmt.Sprintf("list: %v", err)
		r.Fix = "check url, the network path and proxy to it, ca_file and token; the list in force stays until it lapses"
		return nil, nil, false
	}
	return f, list.Body, true
}

// Snapshot checks that the snapshot is there, fresh, and vouches for some image.
func Snapshot(stateDir string, now time.Time) Result {
	r := Result{Check: "snapshot"}
	snap, err := metrics.ReadSnapshot(stateDir, now)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Status, r.Detail, r.Fix = Problem, "no snapshot: the hook refuses every start", "run vmgate sync (or start vmgate serve, or the vmgate-sync timer)"
	case err != nil:
		r.Status, r.Detail, r.Fix = Problem, fmt.Sprintf("%v: the hook refuses every start", err), "run vmgate sync to write a new one"
	case !snap.Fresh:
		r.Status = Problem
		r.Detail = fmt.Sprintf("expired at %s: the hook refuses every start", snap.Meta.Expires.UTC().Format(time.RFC3339))
		r.Fix = "run vmgate sync; if it refuses the lists, the endorser must publish a newer one"
	case snap.Images[snapshot.Endorsed] == 0:
		r.Status = Problem
		r.Detail = fmt.Sprintf("fresh until %s, but vouches for no image: every start is refused", snap.Meta.Expires.UTC().Format(time.RFC3339))
		r.Fix = "check that the subscriptions' lists endorse images (vmgate images --all)"
	default:
		r.Status = OK
		r.Detail = fmt.Sprintf("serial %d, written %s ago, fresh until %s, vouching for %d images (%d revoked, %d expired)",
			snap.Meta.Serial, now.Sub(snap.Meta.Created).Round(time.Second), snap.Meta.Expires.UTC().Format(time.RFC3339),
			snap.Images[snapshot.Endorsed], snap.Images[snapshot.Revoked], snap.Images[snapshot.Expired])
	}
	return r
}

// Hook checks that the hook is installed and executable, and that it reads the
// configuration these checks read (configPath): libvirtd gives hooks no environment, so the
// installed file decides, either the vmgate-hook binary itself (the default configuration
// file) or the wrapper vmgate hook install writes for another one.
func Hook(hooksDir, configPath string) Result {
	target := hook.Target(hooksDir)
	r := Result{Check: "hook"}
	fi, err := os.Stat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Status, r.Detail, r.Fix = Problem, target+" is not there: libvirtd starts every VM unchecked", "run vmgate hook install, then systemctl reload libvirtd"
		return r
	case err != nil:
		r.Status, r.Detail, r.Fix = Problem, err.Error(), "check the permissions of "+filepath.Dir(target)
		return r
	case !fi.Mode().IsRegular():
		r.Status, r.Detail, r.Fix = Problem, target+" is not a regular file", "remove it and run vmgate hook install"
		return r
	case fi.Mode().Perm()&0o100 == 0:
		r.Status, r.Detail, r.Fix = Problem, target+" is not executable: libvirtd skips it", "run vmgate hook install (it sets mode 0755)"
		return r
	}
	content, err := os.ReadFile(target)
	if err != nil {
		r.Status, r.Detail, r.Fix = Problem, err.Error(), "check the permissions of "+target
		return r
	}
	reinstall := "run vmgate hook install with the configuration the node uses (--config " + configPath + ")"
	var hookConfig string
	switch {
	case bytes.HasPrefix(content, []byte("\x7fELF")):
		hookConfig = config.DefaultPath
	default:
		cfg, bin, ok := parseWrapper(content)
		if !ok {
			r.Status, r.Detail = Problem, target+" is neither vmgate-hook nor the wrapper vmgate hook install writes"
			r.Fix = "if it is not another tool's hook, run vmgate hook install (it replaces it)"
			return r
		}
		if err := syscall.Access(bin, 1 /* X_OK */); err != nil {
			r.Status, r.Detail = Problem, fmt.Sprintf("%s runs %s, which cannot be run (%v): libvirtd refuses every start", target, bin, err)
			r.Fix = "install vmgate-hook there, or " + reinstall
			return r
		}
		hookConfig = cfg
	}
	if abs, err := filepath.Abs(configPath); err == nil && filepath.Clean(hookConfig) != abs {
		r.Status = Problem
		r.Detail = fmt.Sprintf("%s reads %s, not %s: the hook judges by another state_dir than the one checked here", target, hookConfig, configPath)
		r.Fix = reinstall
		return r
	}
	r.Status, r.Detail = OK, fmt.Sprintf("%s installed %s, executable, reads %s", target, fi.ModTime().UTC().Format(time.RFC3339), hookConfig)
	return r
}

// parseWrapper reads the configuration file and the hook binary out of the two-line wrapper
// vmgate hook install writes: VMGATE_CONFIG='cfg' exec 'bin' "$@".
func parseWrapper(content []byte) (cfg, bin string, ok bool) {
	for _, line := range strings.Split(string(content), "\n") {
		rest, found := strings.CutPrefix(line, "VMGATE_CONFIG=")
		if !found {
			continue
		}
		if cfg, rest, ok = cutQuoted(rest); !ok {
			return "", "", false
		}
		if rest, found = strings.CutPrefix(rest, " exec "); !found {
			return "", "", false
		}
		bin, _, ok = cutQuoted(rest)
		return cfg, bin, ok
	}
	return "", "", false
}

// cutQuoted reads one shell word made of single-quoted parts and \' (the quoting of
// hook.Install) from the start of s.
func cutQuoted(s string) (word, rest string, ok bool) {
	var b strings.Builder
	for {
		switch {
		case strings.HasPrefix(s, `\'`):
			b.WriteByte('\'')
			s = s[2:]
		case strings.HasPrefix(s, "'"):
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return "", "", false
			}
			b.WriteString(s[1 : 1+end])
			s = s[end+2:]
		default:
			return b.String(), s, b.Len() > 0
		}
	}
}

// libvirtdNames are the daemons that run QEMU hooks: the monolithic libvirtd, or virtqemud
// with the modular daemons.
var libvirtdNames = []string{"libvirtd", "virtqemud"}

// Libvirtd checks that libvirtd (or virtqemud) runs, and whether it started after the hook
// was installed: it reads hook files only when it starts or is sent SIGHUP, and a SIGHUP
// leaves no trace that can be read, so a daemon older than the hook is "cannot tell".
func Libvirtd(proc, hookPath string) Result {
	r := Result{Check: "libvirtd"}
	pid, name, started, err := findDaemon(proc)
	if err != nil {
		r.Status, r.Detail, r.Fix = Unknown, fmt.Sprintf("cannot tell whether libvirtd runs: %v", err), ""
		return r
	}
	if pid == 0 {
		r.Status, r.Detail, r.Fix = Problem, "neither libvirtd nor virtqemud is running", "systemctl start libvirtd (or virtqemud)"
		return r
	}
	fi, err := os.Stat(hookPath)
	if err != nil {
		r.Status, r.Detail = OK, fmt.Sprintf("%s (pid %d) running since %s; no hook to compare with", name, pid, started.UTC().Format(time.RFC3339))
		return r
	}
	if started.After(fi.ModTime()) {
		r.Status, r.Detail = OK, fmt.Sprintf("%s (pid %d) started %s, after the hook was installed: it runs the hook",
			name, pid, started.UTC().Format(time.RFC3339))
		return r
	}
	r.Status = Unknown
	r.Detail = fmt.Sprintf("%s (pid %d) started %s, before the hook was installed (%s): cannot tell whether it was sent SIGHUP since",
		name, pid, started.UTC().Format(time.RFC3339), fi.ModTime().UTC().Format(time.RFC3339))
	r.Fix = "if unsure, systemctl reload " + name + " (running VMs are not affected)"
	return r
}

// userHZ is the unit of the start times in /proc/<pid>/stat: fixed at 100 for user space on
// Linux, whatever the kernel's own tick.
const userHZ = 100

// findDaemon finds the oldest libvirtd or virtqemud process and when it started.
func findDaemon(proc string) (pid int, name string, started time.Time, err error) {
	boot, err := bootTime(proc)
	if err != nil {
		return 0, "", time.Time{}, err
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return 0, "", time.Time{}, err
	}
	var best uint64
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(proc, e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		comm, state, ticks, ok := parseStat(stat)
		// A daemon that exited stays a zombie until its parent reaps it: not the one running.
		if !ok || !slices.Contains(libvirtdNames, comm) || state == "Z" || state == "X" {
			continue
		}
		if pid == 0 || ticks < best {
			pid, name, best = p, comm, ticks
		}
	}
	if pid == 0 {
		return 0, "", time.Time{}, nil
	}
	return pid, name, boot.Add(time.Duration(best) * time.Second / userHZ), nil
}

// parseStat reads the command name, the state (field 3) and the start time (field 22, in
// clock ticks since boot) of /proc/<pid>/stat. The name is in parentheses and may itself hold
// spaces and parentheses, so the fields are counted from the last ')'.
func parseStat(b []byte) (comm, state string, start uint64, ok bool) {
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return "", "", 0, false
	}
	fields := strings.Fields(string(b[j+1:]))
	// fields[0] is field 3 (state); the start time is field 22.
	if len(fields) < 20 {
		return "", "", 0, false
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	return string(b[i+1 : j]), fields[0], start, err == nil
}

// bootTime reads btime from /proc/stat.
func bootTime(proc string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("%s/stat: btime %q", proc, v)
			}
			return time.Unix(n, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s/stat: no btime", proc)
}

// Journal checks that the trace journal can be appended to (the hook refuses every start
// when it cannot record) and that its hash chain verifies.
func Journal(stateDir string) Result {
	path := trace.JournalPath(stateDir)
	r := Result{Check: "trace journal"}
	target := path
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		target = filepath.Dir(path)
		if _, err := os.Stat(target); errors.Is(err, fs.ErrNotExist) {
			target = stateDir
		}
	}
	if err := syscall.Access(target, 2 /* W_OK */); err != nil {
		r.Status, r.Detail = Problem, fmt.Sprintf("%s is not writable (%v): the hook refuses every start, since it records before it allows", target, err)
		r.Fix = "the hook runs as root: check the permissions and the free space of " + filepath.Dir(path)
		return r
	}
	rep, err := journal.Verify(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Status, r.Detail = OK, path+" does not exist yet (no VM operation recorded); its directory is writable"
	case err != nil:
		r.Status, r.Detail, r.Fix = Problem, err.Error(), "check the permissions of "+path
	case rep.Problem != nil:
		r.Status, r.Detail = Problem, fmt.Sprintf("writable, but the hash chain breaks: %v", rep.Problem)
		r.Fix = "run vmgate trace verify for the details and keep a copy for the security team; the records before the break stand"
	default:
		r.Status, r.Detail = OK, fmt.Sprintf("%s writable; the hash chain verifies: %d records intact, last seq %d", path, rep.Records, rep.LastSeq)
		if rep.Torn != nil {
			r.Detail += fmt.Sprintf("; %s (a crash cut an append short; the next append moves it aside)", rep.Torn)
		}
	}
	return r
}

// Sink checks that a sink takes connections (syslog, TLS included) or that its file can be
// written (jsonfile).
func Sink(ctx context.Context, s config.Sink, timeout time.Duration) Result {
	r := Result{Check: "sink " + s.Name}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	where, err := ship.Probe(ctx, s, ship.Options{DialTimeout: timeout})
	if err != nil {
		r.Status, r.Detail = Problem, fmt.Sprintf("%s: %v", where, err)
		if s.Type == config.SinkSyslog {
			r.Fix = "check address, the firewall, and for TLS ca_file, cert_file, key_file and server_name; records wait in the journal meanwhile"
		} else {
			r.Fix = "check that the directory of path exists or can be created, and is writable by root"
		}
		return r
	}
	r.Status, r.Detail = OK, where+" reachable"
	if s.Type == config.SinkJSONFile {
		r.Detail = where + " writable"
	}
	return r
}

// redact drops user information from a URL before it is shown.
func redact(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if at := strings.IndexByte(raw[i+3:], '@'); at >= 0 && !strings.Contains(raw[i+3:i+3+at], "/") {
			return raw[:i+3] + raw[i+3+at+1:]
		}
	}
	return raw
}
