package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// installVMGateHook installs the site's hook into the real libvirtd with `vmgate hook
// install`: a wrapper that passes the site's configuration, copied into qemu.d.
func (s *site) installVMGateHook(l *Libvirt) {
	s.t.Helper()
	hooksDir := filepath.Join(s.dir, "hooks")
	out, stderr, code := s.vmgate("hook", "install", "--hooks-dir", hooksDir, "--hook", filepath.Join(s.bin, "vmgate-hook"))
	if code != 0 || !strings.Contains(out, "installed") {
		s.t.Fatalf("vmgate hook install: exit %d\n%s%s", code, out, stderr)
	}
	l.InstallHook(s.t, filepath.Join(hooksDir, "qemu.d", "vmgate"))
}

// traceRecords reads the site's trace journal (not through vmgate: the test checks the file).
func (s *site) traceRecords() []map[string]any {
	s.t.Helper()
	f, err := os.Open(filepath.Join(s.stateDir, "trace", "journal.jsonl"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			s.t.Fatal(err)
		}
		if line.Data != nil {
			recs = append(recs, line.Data)
		}
	}
	return recs
}

func findRecord(recs []map[string]any, event, domain string) map[string]any {
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if d, _ := r["domain"].(map[string]any); r["event"] == event && d["name"] == domain {
			return r
		}
	}
	return nil
}

// TestHookWithRealLibvirt: libvirtd runs vmgate-hook at every start. A domain on an endorsed
// image starts; one on an unendorsed image is refused with vmgate's reason in virsh's error;
// after a newer signed list drops the image and vmgate sync runs, a new start on it is
// refused; a running domain survives a libvirtd restart.
func TestHookWithRealLibvirt(t *testing.T) {
	l := requireLibvirt(t)
	s := newSite(t, "")
	aPath, a := s.baseImage("a.raw")
	bPath, b := s.baseImage("b.raw")
	s.publish(a)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	s.installVMGateHook(l)

	running := l.NewDomain(t, "endorsed", DomainOptions{BaseImage: aPath})
	if stderr, err := running.Start(); err != nil {
		t.Fatalf("a domain on an endorsed image was refused: %v\n%s", err, stderr)
	}
	if st, _ := running.State(); st != "running" {
		t.Fatalf("endorsed domain is %q", st)
	}

	refusedDom := l.NewDomain(t, "unendorsed", DomainOptions{BaseImage: bPath})
	stderr, err := refusedDom.Start()
	want := "vmgate: not endorsed: disk vda image " + bPath + " (sha512 " + b.SHA512[:16] + "…): no subscribed list endorses it"
	if err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("unendorsed domain: err %v, virsh said:\n%s\nwant it to contain:\n%s", err, stderr, want)
	}
	if st, _ := refusedDom.State(); st != "shut off" {
		t.Fatalf("refused domain is %q", st)
	}

	// Nova metadata on a disk that is not one of Nova's proves nothing: the disk is judged
	// as a plain one, and the refusal records the owner the metadata names.
	nova := l.NewDomain(t, "nova", DomainOptions{BaseImage: bPath, Nova: &NovaInstance{Name: "analysis-1", UserID: "u-carol", UserName: "carol",
		ProjectID: "p-hep", ProjectName: "hep", ImageID: "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b",
		Ports: []NovaPort{{ID: "1e2d3c4b-5a69-4788-9aab-bccddeeff001", IPs: []NovaIP{{Type: "fixed", Address: "10.20.30.41"}, {Type: "floating", Address: "192.0.2.77"}}}}}})
	if stderr, err := nova.Start(); err == nil || !strings.Contains(stderr, "vmgate: not endorsed: disk vda image "+bPath) {
		t.Fatalf("nova domain: err %v\n%s", err, stderr)
	}

	// The endorser drops a and endorses b: a new start on a is refused with when and why.
	s.publish(b)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("second sync: exit %d\n%s%s", code, out, stderr)
	}
	again := l.NewDomain(t, "revoked", DomainOptions{BaseImage: aPath})
	stderr, err = again.Start()
	if err == nil || !strings.Contains(stderr, `): removed from list "example" version 2 on `) {
		t.Fatalf("revoked image: err %v\n%s", err, stderr)
	}

	// libvirtd restarts: the running domain (whose image is now revoked) must survive.
	l.Restart(t)
	if st, _ := running.State(); st != "running" {
		t.Fatalf("after a libvirtd restart the domain is %q", st)
	}

	recs := s.traceRecords()
	allow := findRecord(recs, "admission.allow", running.Name)
	if allow == nil || allow["libvirt_op"] != "prepare begin" || !strings.Contains(toJSON(allow["macs"]), running.MAC) || !strings.Contains(toJSON(allow["images"]), a.SHA512) {
		t.Errorf("allow record: %v", allow)
	}
	if r := findRecord(recs, "admission.refuse", refusedDom.Name); r == nil || !strings.Contains(r["reason"].(string), "not endorsed") {
		t.Errorf("refuse record: %v", r)
	}
	nr := findRecord(recs, "admission.refuse", nova.Name)
	if nr == nil || !strings.Contains(toJSON(nr["user"]), "u-carol") || !strings.Contains(toJSON(nr["ips"]), "192.0.2.77") {
		t.Errorf("nova refuse record: %v", nr)
	}
	if findRecord(recs, "vm.started", running.Name) == nil || findRecord(recs, "vm.reconnected", running.Name) == nil {
		t.Errorf("lifecycle records missing: %v", recs)
	}
	if out, stderr, code := s.vmgate("trace", "verify"); code != 0 || !strings.Contains(out, "records intact") {
		t.Errorf("trace verify: exit %d\n%s%s", code, out, stderr)
	}
	// vmgate check agrees with the hook, without recording.
	before := len(s.traceRecords())
	xml := filepath.Join(again.Dir, "domain.xml")
	if out, _, code := s.vmgate("check", xml); code != 1 || !strings.Contains(out, "refused") {
		t.Errorf("vmgate check on the revoked domain: exit %d\n%s", code, out)
	}
	if len(s.traceRecords()) != before {
		t.Error("vmgate check wrote a trace record")
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestHookBurst starts 32 hooks at once on one node: every one decides right and no record
// is lost or duplicated.
func TestHookBurst(t *testing.T) {
	s := newSite(t, "")
	aPath, a := s.baseImage("a.raw")
	s.publish(a)
	if _, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: %s", stderr)
	}
	xml := func(name, disk string) string {
		return `<domain type='qemu'><name>` + name + `</name><devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='` +
			disk + `'/><target dev='vda'/></disk></devices></domain>`
	}
	unendorsed, _ := s.baseImage("u.raw")
	type result struct {
		name string
		code int
		err  string
	}
	results := make(chan result, 32)
	for i := range 32 {
		name, disk := "vm-allow-"+strconv.Itoa(i), aPath
		if i%4 == 3 {
			name, disk = "vm-refuse-"+strconv.Itoa(i), unendorsed
		}
		go func() {
			code, stderr := runHook(t, s, name, xml(name, disk))
			results <- result{name, code, stderr}
		}()
	}
	deadline := time.After(60 * time.Second)
	for range 32 {
		select {
		case r := <-results:
			wantRefuse := strings.HasPrefix(r.name, "vm-refuse-")
			if (r.code != 0) != wantRefuse {
				t.Errorf("%s: exit %d: %s", r.name, r.code, r.err)
			}
		case <-deadline:
			t.Fatal("hooks did not finish in 60 s")
		}
	}
	// The sync wrote its own records (list.accepted, image.endorsed) before the hooks ran.
	var recs []map[string]any
	for _, r := range s.traceRecords() {
		if strings.HasPrefix(r["event"].(string), "admission.") {
			recs = append(recs, r)
		}
	}
	seen := map[string]int{}
	for _, r := range recs {
		seen[r["domain"].(map[string]any)["name"].(string)]++
	}
	if len(recs) != 32 || len(seen) != 32 {
		t.Fatalf("%d records for %d domains, want 32 and 32", len(recs), len(seen))
	}
	if out, stderr, code := s.vmgate("trace", "verify"); code != 0 || !strings.Contains(out, strconv.Itoa(len(s.traceRecords()))+" records intact") {
		t.Fatalf("trace verify: exit %d\n%s%s", code, out, stderr)
	}
}

// runHook runs vmgate-hook as libvirtd does for prepare begin: almost no environment, the
// domain XML on stdin.
func runHook(t *testing.T, s *site, name, xml string) (int, string) {
	cmd := exec.Command(filepath.Join(s.bin, "vmgate-hook"), name, "prepare", "begin", "-")
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "VMGATE_CONFIG=" + s.config}
	cmd.Stdin = strings.NewReader(xml)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Errorf("%s: %v", name, err)
	return -1, err.Error()
}

// TestHookRefusesWhenTheDiskIsFull: the state directory is on a tmpfs that is full. The hook
// cannot make its record durable, so it refuses the start, and the records written before are
// intact.
func TestHookRefusesWhenTheDiskIsFull(t *testing.T) {
	requireIntegration(t)
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs: run it as root")
	}
	s := newSite(t, "")
	aPath, a := s.baseImage("a.raw")
	s.publish(a)
	if err := os.MkdirAll(s.stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", s.stateDir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", s.stateDir).Run() })
	if _, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: %s", stderr)
	}
	domain := `<domain type='qemu'><name>vm</name><devices><disk type='file' device='disk'><driver type='raw'/><source file='` + aPath + `'/><target dev='vda'/></disk></devices></domain>`
	if code, stderr := runHook(t, s, "vm", domain); code != 0 {
		t.Fatalf("before the disk is full: exit %d %s", code, stderr)
	}
	before := len(s.traceRecords()) // the sync's records and the first start
	// Fill the file system to the last byte.
	f, err := os.Create(filepath.Join(s.stateDir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
	f.Close()
	// The journal's last page may still hold a record or two; the start after that must be
	// refused, and every start allowed before must have its record.
	allowed := 0
	for ; ; allowed++ {
		code, stderr := runHook(t, s, "vm", domain)
		if code == 0 {
			if allowed > 20 {
				t.Fatal("20 starts allowed on a full disk")
			}
			continue
		}
		if code != 1 || !strings.Contains(stderr, "no record, no start") || !strings.Contains(stderr, "no space left on device") {
			t.Fatalf("full disk: exit %d, stderr %q", code, stderr)
		}
		break
	}
	os.Remove(filepath.Join(s.stateDir, "filler"))
	if out, stderr, code := s.vmgate("trace", "verify"); code != 0 || !strings.Contains(out, strconv.Itoa(before+allowed)+" records intact") {
		t.Fatalf("trace verify after the full disk (%d allowed): exit %d\n%s%s", allowed, code, out, stderr)
	}
}
