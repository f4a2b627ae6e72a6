package integration

// Helpers for tests against the machine's real libvirtd + QEMU (TCG), which scripts/libvirt.sh
// installs and runs, driven with the virsh CLI as an operator would.
//
// What a qemu hook sees, recorded by TestLibvirtHookProtocol on Debian 12's libvirt 9.0.0 and
// QEMU 7.2 (libvirtd started by scripts/libvirt.sh); the hook and `vmgate terminate` rely on it:
//
//   - argv: [/etc/libvirt/hooks/qemu.d/NAME, DOMAIN, OP, SUBOP, EXTRA], argv[0] the full path.
//     virsh start:   "prepare begin -", "start begin -", "started begin -".
//     refused start: "prepare begin -" (a hook exits non-zero), then still "stopped end -" and
//                    "release end -": the release of a start the hook refused.
//     virsh destroy: "stopped end -", "release end -".
//     libvirtd restart with the domain running: "reconnect begin -", after libvirtd already
//                    answers. A hook failing there makes libvirtd kill the domain.
//   - stdin: the domain XML, also for stopped/release/reconnect. At prepare it is the defined
//     XML plus what libvirt fills in (id, defaults), <metadata> (Nova's) untouched; the disk's
//     <backingStore> chain appears only from "start begin" on: at prepare the hook must read
//     qcow2 headers itself.
//   - environment: LC_ALL=C, and those of PATH, HOME, USER, LOGNAME, TMPDIR, LD_PRELOAD and
//     LD_LIBRARY_PATH that libvirtd itself has (virCommandAddEnvPassCommon). libvirtd under
//     systemd, and so scripts/libvirt.sh's, has only PATH: the hook gets exactly LC_ALL=C and
//     PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin, no HOME (one started
//     from a root shell passes HOME=/root too). Working directory /, uid 0, parent libvirtd.
//   - a refusal: libvirt ends the start and virsh prints, on stderr, "error: Failed to start
//     domain 'D'" then "error: Hook script execution failed: internal error: Child process
//     (LC_ALL=C PATH=… /etc/libvirt/hooks/qemu.d/NAME D prepare begin -) unexpected exit
//     status 1: " and the hook's stderr: the hook's reason comes after some 200 characters. The
//     hook's stdout is not shown.
//   - every executable in qemu.d runs, in name order, even after one has refused. libvirtd
//     reads the directory at every call, but only once it has found some qemu hook at start or
//     SIGHUP: into a qemu.d that was empty then, a new hook is not run until the next SIGHUP.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"
)

const (
	libvirtURI = "qemu:///system"
	// qemuHookDir is where libvirtd looks for qemu hooks besides /etc/libvirt/hooks/qemu.
	qemuHookDir = "/etc/libvirt/hooks/qemu.d"
	// testDomainPrefix marks domains as made by these tests, so that a run may remove what a
	// killed run left behind.
	testDomainPrefix = "vmgate-test-"
	// baseImageSize is the size of the base images NewDomain writes.
	baseImageSize = 1 << 20
)

// Libvirt is the machine's libvirtd, as scripts/libvirt.sh runs it.
type Libvirt struct {
	root string // of the repository
}

var (
	libvirtOnce sync.Once
	libvirtUp   *Libvirt
	libvirtErr  error
)

// requireLibvirt returns the running libvirtd, bringing it up once per test binary with
// scripts/libvirt.sh (which installs it when missing). It skips t unless VMGATE_INTEGRATION=1
// and then fails t when it cannot: not root, or libvirt does not come up.
func requireLibvirt(t *testing.T) *Libvirt {
	t.Helper()
	requireIntegration(t)
	if os.Geteuid() != 0 {
		t.Fatalf("libvirt tests need root (they install and run libvirtd) and %s=1 forbids skipping", integrationEnv)
	}
	libvirtOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			libvirtErr = err
			return
		}
		l := &Libvirt{root: root}
		start := time.Now()
		out, err := l.run("up") // a fresh install takes about two minutes
		if err != nil {
			libvirtErr = err
			return
		}
		t.Logf("scripts/libvirt.sh up: %v\n%s", time.Since(start).Round(time.Millisecond), out)
		libvirtUp = l
	})
	if libvirtErr != nil {
		t.Fatalf("libvirt is not available: %v", libvirtErr)
	}
	return libvirtUp
}

// repoRoot finds the module's root from the working directory, which go test sets to the
// package's directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if mod, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.HasPrefix(mod, []byte("module github.com/vmgate/vmgate\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of github.com/vmgate/vmgate above %s", dir)
		}
	}
}

// run runs scripts/libvirt.sh CMD and returns its output.
func (l *Libvirt) run(cmd string) (string, error) {
	return runTool(l.root, nil, "bash", filepath.Join("scripts", "libvirt.sh"), cmd)
}

// Virsh runs virsh on qemu:///system. The error, if any, carries virsh's stderr.
func (l *Libvirt) Virsh(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command("virsh", append([]string{"-c", libvirtURI}, args...)...)
	// English messages, whatever the caller's locale: tests match them.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), e.String(), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), nil
}

// Restart stops libvirtd cleanly and starts it again; running domains keep running and the
// hooks see "reconnect begin" for each, shortly after Restart returns.
func (l *Libvirt) Restart(t testing.TB) {
	t.Helper()
	start := time.Now()
	if _, err := l.run("restart"); err != nil {
		t.Fatal(err)
	}
	t.Logf("libvirtd restarted in %v", time.Since(start).Round(time.Millisecond))
}

// hup makes libvirtd look for hooks again and returns once it has; it reports whether
// libvirtd found a qemu hook.
func (l *Libvirt) hup(t testing.TB) (found bool) {
	t.Helper()
	out, err := l.run("hup")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(out, "qemu hooks found")
}

// InstallHook installs the executable at path as the qemu hook
// /etc/libvirt/hooks/qemu.d/<base name of path> and makes libvirtd see it, for the rest of
// t: Cleanup removes it. It refuses to replace a hook that is there already (the real vmgate
// one, another test's).
func (l *Libvirt) InstallHook(t testing.TB, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(qemuHookDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(qemuHookDir, filepath.Base(path))
	if _, err := os.Lstat(dst); err == nil {
		t.Fatalf("hook %s exists already; not replacing it", dst)
	}
	// Written under another name and not executable, which libvirtd skips, then moved and
	// made executable: libvirtd never runs a half-written hook.
	tmp := filepath.Join(qemuHookDir, "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dst); err != nil {
			t.Errorf("removing hook: %v", err)
		}
		l.hup(t)
	})
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	// libvirtd runs qemu.d hooks only once it has found one at start or SIGHUP.
	if !l.hup(t) {
		t.Fatalf("libvirtd found no qemu hook after SIGHUP although %s is there", dst)
	}
}

// DomainOptions shape the domain NewDomain defines.
type DomainOptions struct {
	// BaseImage is the image at the bottom of the disk chain, below a new qcow2 overlay. Empty:
	// NewDomain writes a 1 MiB raw image whose bytes depend on the domain's name only.
	BaseImage string
	// BaseFormat is BaseImage's format: "raw" (empty) or "qcow2".
	BaseFormat string
	// MAC of the domain's one NIC; empty: one derived from the name.
	MAC string
	// Nova, when set, adds the metadata nova-compute writes. As with Nova, the domain's UUID
	// stands for the instance's.
	Nova *NovaInstance
}

// NovaInstance is what nova-compute puts in <metadata> (namespace 1.1, as Nova 26 writes it;
// see /work/shared/fixtures/nova-instance.xml).
type NovaInstance struct {
	Name                   string // the server's display name
	UserID, UserName       string
	ProjectID, ProjectName string
	ImageID                string // Glance image id (nova:root type="image")
	Ports                  []NovaPort
}

// NovaPort is a Neutron port with its addresses.
type NovaPort struct {
	ID  string
	IPs []NovaIP
}

// NovaIP is an address of a port: Type is "fixed" or "floating".
type NovaIP struct {
	Type    string
	Address string
}

// Domain is a defined libvirt domain made by NewDomain.
type Domain struct {
	l       *Libvirt
	Name    string
	UUID    string
	MAC     string
	Dir     string // holds the disk chain, the console log and the XML
	Base    string // base image, bottom of the chain
	Disk    string // qcow2 overlay the domain boots from
	Console string // serial console output
	XML     string // as defined
}

// NewDomain defines the domain vmgate-test-<name>: QEMU with TCG, 64 MiB, no graphics, a
// qcow2 overlay on a base image, a serial console to a file, one virtio NIC on user-mode
// networking. Its disk boots nothing: QEMU sits in the BIOS, which is "running" enough.
// Cleanup destroys and undefines it.
func (l *Libvirt) NewDomain(t testing.TB, name string, opts DomainOptions) *Domain {
	t.Helper()
	dir := t.TempDir() // before the domain's cleanup, so removed after it
	d := &Domain{
		l:       l,
		Name:    testDomainPrefix + name,
		UUID:    newUUID(t),
		MAC:     opts.MAC,
		Dir:     dir,
		Base:    opts.BaseImage,
		Disk:    filepath.Join(dir, "disk.qcow2"),
		Console: filepath.Join(dir, "console.log"),
	}
	if d.MAC == "" {
		h := sha256.Sum256([]byte(d.Name))
		d.MAC = fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
	}
	format := opts.BaseFormat
	if format == "" {
		format = "raw"
	}
	if d.Base == "" {
		d.Base = filepath.Join(dir, "base.img")
		if err := os.WriteFile(d.Base, baseImage(d.Name), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if abs, err := filepath.Abs(d.Base); err != nil {
		t.Fatal(err)
	} else {
		d.Base = abs // qemu-img would take a relative one relative to the overlay
	}
	if _, err := runTool(dir, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-b", d.Base, "-F", format, d.Disk); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := domainXML.Execute(&buf, struct {
		*Domain
		Nova    *NovaInstance
		Created string
	}{d, opts.Nova, time.Now().UTC().Format(time.DateTime)}); err != nil {
		t.Fatal(err)
	}
	d.XML = buf.String()
	xmlPath := filepath.Join(dir, "domain.xml")
	if err := os.WriteFile(xmlPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	// A domain of this name can only be left over from a run that was killed.
	if _, _, err := l.Virsh("dominfo", d.Name); err == nil {
		t.Logf("removing %s, left over from an earlier run", d.Name)
		d.remove(t)
	}
	if _, _, err := l.Virsh("define", xmlPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.remove(t) })
	return d
}

// remove destroys the domain if it runs and undefines it.
func (d *Domain) remove(t testing.TB) {
	if state, err := d.State(); err == nil && state != "shut off" {
		if err := d.Destroy(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	// --nvram: libvirt refuses to undefine a UEFI domain that keeps its NVRAM file.
	if _, _, err := d.l.Virsh("undefine", "--nvram", d.Name); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// Start starts the domain and returns virsh's stderr, where a hook's refusal shows.
func (d *Domain) Start() (stderr string, err error) {
	_, stderr, err = d.l.Virsh("start", d.Name)
	return stderr, err
}

// State is virsh domstate: "running", "shut off", "paused", ...
func (d *Domain) State() (string, error) {
	out, _, err := d.l.Virsh("domstate", d.Name)
	return strings.TrimSpace(out), err
}

// Destroy stops the domain at once, as pulling the plug does.
func (d *Domain) Destroy() error {
	_, _, err := d.l.Virsh("destroy", d.Name)
	return err
}

// Shutdown asks the guest to shut down (ACPI). It returns at once; a guest in the BIOS, as
// NewDomain's are, never acts on it.
func (d *Domain) Shutdown() error {
	_, _, err := d.l.Virsh("shutdown", d.Name)
	return err
}

// DumpXML is the domain's current XML: the live one while it runs.
func (d *Domain) DumpXML() (string, error) {
	out, _, err := d.l.Virsh("dumpxml", d.Name)
	return out, err
}

// baseImage is the content of a base image NewDomain writes: its bytes, and so its sha512,
// depend on the domain's name only.
func baseImage(name string) []byte {
	b := make([]byte, baseImageSize)
	copy(b, "vmgate test image "+name+"\n")
	return b
}

func newUUID(t testing.TB) string {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		t.Fatal(err)
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

var domainXML = template.Must(template.New("domain").Funcs(template.FuncMap{
	"x": func(s string) (string, error) {
		var b strings.Builder
		err := xml.EscapeText(&b, []byte(s))
		return b.String(), err
	},
	"ipVersion": func(addr string) string {
		if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
			return "6"
		}
		return "4"
	},
}).Parse(`<domain type='qemu'>
  <name>{{x .Name}}</name>
  <uuid>{{.UUID}}</uuid>
{{- with .Nova}}
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:package version="26.2.2"/>
      <nova:name>{{x .Name}}</nova:name>
      <nova:creationTime>{{$.Created}}</nova:creationTime>
      <nova:flavor name="m1.tiny">
        <nova:memory>64</nova:memory>
        <nova:disk>1</nova:disk>
        <nova:swap>0</nova:swap>
        <nova:ephemeral>0</nova:ephemeral>
        <nova:vcpus>1</nova:vcpus>
      </nova:flavor>
      <nova:owner>
        <nova:user uuid="{{x .UserID}}">{{x .UserName}}</nova:user>
        <nova:project uuid="{{x .ProjectID}}">{{x .ProjectName}}</nova:project>
      </nova:owner>
      <nova:root type="image" uuid="{{x .ImageID}}"/>
      {{- if .Ports}}
      <nova:ports>
        {{- range .Ports}}
        <nova:port uuid="{{x .ID}}">
          {{- range .IPs}}
          <nova:ip type="{{x .Type}}" address="{{x .Address}}" ipVersion="{{ipVersion .Address}}"/>
          {{- end}}
        </nova:port>
        {{- end}}
      </nova:ports>
      {{- else}}
      <nova:ports/>
      {{- end}}
    </nova:instance>
  </metadata>
{{- end}}
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{{x .Disk}}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'>
      <mac address='{{.MAC}}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='{{x .Console}}'/>
    </serial>
  </devices>
</domain>
`))

// hookCall is one run of the recording hook.
type hookCall struct {
	Argv0 string
	Args  []string // argv[1:]
	Env   []string // KEY=VALUE
	Stdin string
}

// recordingHook writes a hook named name that logs each call into dir (argv, the environment
// libvirtd gave it, stdin) and exits 0, and returns its path.
func recordingHook(t *testing.T, name, dir string) string {
	t.Helper()
	// /proc/$$/environ is the environment as exec'd: sh itself adds PWD to what `env` shows.
	// N.argv comes last and whole (mv): hookCalls takes a call as logged once it is there.
	script := fmt.Sprintf(`#!/bin/sh
d=%q
n=$(( $(cat "$d/n" 2>/dev/null || echo 0) + 1 ))
echo $n >"$d/n"
cat >"$d/$n.stdin"
tr '\0' '\n' </proc/$$/environ >"$d/$n.env"
for a in "$0" "$@"; do printf '%%s\n' "$a"; done >"$d/tmp.argv"
mv "$d/tmp.argv" "$d/$n.argv"
`, dir)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// hookCalls reads what the recording hook logged into dir, in order.
func hookCalls(t *testing.T, dir string) []hookCall {
	t.Helper()
	var calls []hookCall
	for n := 1; ; n++ {
		argv, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.argv", n)))
		if errors.Is(err, os.ErrNotExist) {
			return calls
		}
		if err != nil {
			t.Fatal(err)
		}
		env, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.env", n)))
		if err != nil {
			t.Fatal(err)
		}
		stdin, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.stdin", n)))
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Split(strings.TrimSuffix(string(argv), "\n"), "\n")
		calls = append(calls, hookCall{Argv0: args[0], Args: args[1:], Env: strings.Split(strings.TrimSuffix(string(env), "\n"), "\n"), Stdin: string(stdin)})
	}
}

// ops is the hook's arguments, call by call: "DOMAIN OP SUBOP EXTRA".
func ops(calls []hookCall) []string {
	var s []string
	for _, c := range calls {
		s = append(s, strings.Join(c.Args, " "))
	}
	return s
}

// TestLibvirtHookProtocol checks, against the real libvirtd, what the comment at the top of
// this file says a qemu hook sees, and that the helpers above work.
func TestLibvirtHookProtocol(t *testing.T) {
	l := requireLibvirt(t)
	rec := t.TempDir()
	recorder := recordingHook(t, "vmgate-test-record", rec)
	l.InstallHook(t, recorder)

	nova := &NovaInstance{
		Name: "smoke", UserID: "9f8e7d6c5b4a49388776655443322110", UserName: "carol",
		ProjectID: "0a1b2c3d4e5f46778899aabbccddeeff", ProjectName: "hep-analysis",
		ImageID: "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b",
		Ports: []NovaPort{{ID: "1e2d3c4b-5a69-4788-9aab-bccddeeff001", IPs: []NovaIP{
			{Type: "fixed", Address: "10.20.30.41"}, {Type: "fixed", Address: "2001:db8:20::29"}, {Type: "floating", Address: "192.0.2.77"},
		}}},
	}
	d := l.NewDomain(t, "smoke", DomainOptions{Nova: nova})

	start := time.Now()
	if stderr, err := d.Start(); err != nil {
		t.Fatalf("start: %v\n%s", err, stderr)
	}
	t.Logf("domain started in %v", time.Since(start).Round(time.Millisecond))
	if s, err := d.State(); err != nil || s != "running" {
		t.Fatalf("state after start = %q, %v; want running", s, err)
	}
	calls := hookCalls(t, rec)
	want := []string{d.Name + " prepare begin -", d.Name + " start begin -", d.Name + " started begin -"}
	if got := ops(calls); !slices.Equal(got, want) {
		t.Fatalf("hook calls for virsh start:\n got %q\nwant %q", got, want)
	}
	prepare := calls[0]
	if prepare.Argv0 != filepath.Join(qemuHookDir, filepath.Base(recorder)) {
		t.Errorf("argv[0] = %q", prepare.Argv0)
	}
	env := slices.Sorted(slices.Values(prepare.Env))
	if want := []string{"LC_ALL=C", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}; !slices.Equal(env, want) {
		t.Errorf("hook environment = %q; want %q", env, want)
	}
	// At prepare, stdin is the domain's XML with Nova's metadata as defined.
	var dom struct {
		Name string `xml:"name"`
		UUID string `xml:"uuid"`
		Nova struct {
			Root struct {
				UUID string `xml:"uuid,attr"`
			} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 instance>root"`
			IPs []struct {
				Address string `xml:"address,attr"`
			} `xml:"http://openstack.org/xmlns/libvirt/nova/1.1 instance>ports>port>ip"`
		} `xml:"metadata"`
		MACs []struct {
			Address string `xml:"address,attr"`
		} `xml:"devices>interface>mac"`
		Backing []struct{} `xml:"devices>disk>backingStore"`
	}
	if err := xml.Unmarshal([]byte(prepare.Stdin), &dom); err != nil {
		t.Fatalf("hook stdin at prepare is not XML: %v\n%s", err, prepare.Stdin)
	}
	if dom.Name != d.Name || dom.UUID != d.UUID || dom.Nova.Root.UUID != nova.ImageID ||
		len(dom.Nova.IPs) != 3 || len(dom.MACs) != 1 || dom.MACs[0].Address != d.MAC {
		t.Errorf("hook stdin at prepare: %+v\n%s", dom, prepare.Stdin)
	}
	if len(dom.Backing) != 0 {
		t.Errorf("the XML at prepare has a backingStore, so the hook need not read qcow2 headers:\n%s", prepare.Stdin)
	}
	if !strings.Contains(calls[1].Stdin, d.Base) {
		t.Errorf("the XML at start begin does not name the base image %s:\n%s", d.Base, calls[1].Stdin)
	}

	t.Run("refuse", func(t *testing.T) {
		const reason = "vmgate-test: image not endorsed"
		// Named to run before the recorder: its calls show that the others run on.
		refuser := filepath.Join(t.TempDir(), "vmgate-test-deny")
		if err := os.WriteFile(refuser, []byte(`#!/bin/sh
cat >/dev/null
[ "$2" = prepare ] || exit 0
echo "`+reason+` ($1)" >&2
exit 1
`), 0o755); err != nil {
			t.Fatal(err)
		}
		l.InstallHook(t, refuser)
		other := l.NewDomain(t, "smoke-refused", DomainOptions{})
		before := len(hookCalls(t, rec))
		stderr, err := other.Start()
		if err == nil {
			t.Fatal("virsh start succeeded although a hook refused")
		}
		if !strings.Contains(stderr, reason+" ("+other.Name+")") {
			t.Errorf("virsh's stderr does not carry the hook's reason:\n%s", stderr)
		}
		t.Logf("virsh start, refused:\n%s", stderr)
		if s, err := other.State(); err != nil || s != "shut off" {
			t.Errorf("state after a refused start = %q, %v; want shut off", s, err)
		}
		want := []string{other.Name + " prepare begin -", other.Name + " stopped end -", other.Name + " release end -"}
		if got := ops(hookCalls(t, rec)[before:]); !slices.Equal(got, want) {
			t.Errorf("hook calls for a refused start:\n got %q\nwant %q", got, want)
		}
	})

	t.Run("restart", func(t *testing.T) {
		pidFile := "/var/run/libvirt/qemu/" + d.Name + ".pid"
		pid, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		before := len(hookCalls(t, rec))
		l.Restart(t)
		// libvirtd reconnects to its domains in the background: it answers before.
		want := []string{d.Name + " reconnect begin -"}
		deadline := time.Now().Add(30 * time.Second)
		var got []string
		for {
			if got = ops(hookCalls(t, rec)[before:]); len(got) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !slices.Equal(got, want) {
			t.Errorf("hook calls on libvirtd restart:\n got %q\nwant %q", got, want)
		}
		if s, err := d.State(); err != nil || s != "running" {
			t.Errorf("state after libvirtd restart = %q, %v; want running", s, err)
		}
		if now, err := os.ReadFile(pidFile); err != nil || !bytes.Equal(now, pid) {
			t.Errorf("QEMU pid was %s, is %s (%v): not the same process", pid, now, err)
		}
	})

	// A guest in the BIOS ignores the ACPI request; virsh only passes it on.
	if err := d.Shutdown(); err != nil {
		t.Error(err)
	}
	before := len(hookCalls(t, rec))
	if err := d.Destroy(); err != nil {
		t.Fatal(err)
	}
	want = []string{d.Name + " stopped end -", d.Name + " release end -"}
	if got := ops(hookCalls(t, rec)[before:]); !slices.Equal(got, want) {
		t.Errorf("hook calls for virsh destroy:\n got %q\nwant %q", got, want)
	}
	if x, err := d.DumpXML(); err != nil || !strings.Contains(x, d.MAC) {
		t.Errorf("dumpxml: %v\n%s", err, x)
	}
}
