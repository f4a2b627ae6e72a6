package integration

// vmgate serve follows libvirt's domain events: a disk hot-plugged into a running VM (no hook
// runs) is judged within seconds, not at the next periodic audit.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// auditRecords reads the vm.audit records of the domain from the site's journal. It reads
// the file as the daemon appends to it, so it skips a last line not yet whole.
func (s *site) auditRecords(domainName, outcome string) []map[string]any {
	s.t.Helper()
	data, err := os.ReadFile(filepath.Join(s.stateDir, "trace", "journal.jsonl"))
	if err != nil {
		s.t.Fatal(err)
	}
	var out []map[string]any
	for line := range bytes.Lines(data) {
		if !bytes.HasSuffix(line, []byte("\n")) {
			break
		}
		var l struct {
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal(line, &l) != nil || l.Data == nil {
			continue
		}
		if d, _ := l.Data["domain"].(map[string]any); l.Data["event"] == "vm.audit" && d["name"] == domainName && l.Data["outcome"] == outcome {
			out = append(out, l.Data)
		}
	}
	return out
}

func scrape(t *testing.T, addr, sample string) float64 {
	t.Helper()
	_, body, err := httpGet(addr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	v, ok := metricValue(body, sample)
	if !ok {
		t.Fatalf("/metrics has no %s", sample)
	}
	return v
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestAuditSeesAHotpluggedDisk: a VM starts on an endorsed image through the hook; `virsh
// attach-disk --live` then plugs in a raw file no list names. With serve.audit_interval 1h,
// the periodic audit cannot be what finds it: within seconds a vm.audit record names the
// domain and the disk, vmgate_running_unendorsed rises and /healthz is 503. Measured over
// several runs (the VM restarted in between): attach to record, against the time of one pass
// over every domain of the host. libvirtd restarted: the events are lost, then followed
// again. With audit_action terminate, the hot-plug takes the VM down.
func TestAuditSeesAHotpluggedDisk(t *testing.T) {
	l := requireLibvirt(t)
	addr := freePort(t)
	s, prefix := blockSite(t, "serve: {listen: '"+addr+"', audit_interval: 1h, audit_action: report, audit_timeout: 2s}\n")
	name := strings.TrimPrefix(prefix, testDomainPrefix)
	aPath, a := s.baseImage(name + "a.raw")
	evil := filepath.Join(s.dir, name+"unendorsed.raw")
	if err := os.WriteFile(evil, bytes.Repeat([]byte("code no endorser vouches for\n"), 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	s.publish(a)
	if out, stderr, code := s.vmgate("sync"); code != 0 {
		t.Fatalf("sync: exit %d\n%s%s", code, out, stderr)
	}
	s.installVMGateHook(l)
	dom := l.NewDomain(t, name+"hotplug", DomainOptions{BaseImage: aPath})
	if stderr, err := dom.Start(); err != nil {
		t.Fatalf("a domain on an endorsed image was refused: %v\n%s", err, stderr)
	}

	d := s.serve(t)
	healthy := func() (bool, string) {
		code, body, err := httpGet(addr, "/healthz")
		return err == nil && code == 200, fmt.Sprintf("%d %s %v", code, body, err)
	}
	eventually(t, 30*time.Second, "following the events", wantMetric(addr, "vmgate_audit_events_connected", 1))
	eventually(t, 30*time.Second, "a first pass", func() (bool, string) {
		_, body, _ := httpGet(addr, "/metrics")
		v, _ := metricValue(body, `vmgate_audit_duration_seconds_count{trigger="pass"}`)
		return v >= 1, fmt.Sprint(v)
	})
	eventually(t, 10*time.Second, "healthy", healthy)

	const runs = 7
	var fromStart, fromReturn []time.Duration
	for i := range runs {
		if i > 0 {
			// A fresh boot without the disk: compliant again.
			if err := dom.Destroy(); err != nil {
				t.Fatal(err)
			}
			if stderr, err := dom.Start(); err != nil {
				t.Fatalf("restart %d: %v\n%s", i, err, stderr)
			}
			eventually(t, 10*time.Second, "healthy after the restart", healthy)
		}
		passes := scrape(t, addr, `vmgate_audit_duration_seconds_count{trigger="pass"}`)
		before := len(s.auditRecords(dom.Name, "failure"))
		t0 := time.Now()
		if _, _, err := l.Virsh("attach-disk", dom.Name, evil, "sdb", "--targetbus", "usb", "--live", "--driver", "qemu", "--subdriver", "raw"); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		var rec map[string]any
		for deadline := t1.Add(10 * time.Second); ; {
			if recs := s.auditRecords(dom.Name, "failure"); len(recs) > before {
				rec = recs[len(recs)-1]
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %d: no vm.audit record for %s 10s after the attach (audit_interval is 1h)", i, dom.Name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t2 := time.Now()
		fromStart, fromReturn = append(fromStart, t2.Sub(t0)), append(fromReturn, t2.Sub(t1))
		if reason := fmt.Sprint(rec["reason"]); !strings.HasPrefix(reason, "unknown: ") || !strings.Contains(reason, "sdb") || !strings.Contains(toJSON(rec), evil) {
			t.Fatalf("run %d: the vm.audit record does not name the hot-plugged disk %s: %v", i, evil, rec)
		}
		if now := scrape(t, addr, `vmgate_audit_duration_seconds_count{trigger="pass"}`); now != passes {
			t.Fatalf("run %d: a pass over every domain ran (%v, was %v): the events should have found it alone", i, now, passes)
		}
		if i == 0 {
			t.Logf("vm.audit record after the attach: %s", toJSON(rec))
			eventually(t, 5*time.Second, "counted unendorsed", wantMetric(addr, `vmgate_running_unendorsed{reason="unknown"}`, 1))
			code, body, err := httpGet(addr, "/healthz")
			if err != nil || code != 503 || !strings.Contains(body, "audit: 1 running VMs are not endorsed") || !strings.Contains(body, dom.Name+" (unknown: ") {
				t.Fatalf("/healthz after the hot-plug: %d %v\n%s", code, err, body)
			}
		}
	}

	// The baseline: one pass over every domain of this host, as the periodic audit makes it
	// (each reload makes one at once).
	var passes []time.Duration
	for range runs {
		n := scrape(t, addr, `vmgate_audit_duration_seconds_count{trigger="pass"}`)
		sum := scrape(t, addr, `vmgate_audit_duration_seconds_sum{trigger="pass"}`)
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "a pass after the reload", func() (bool, string) {
			_, body, _ := httpGet(addr, "/metrics")
			v, _ := metricValue(body, `vmgate_audit_duration_seconds_count{trigger="pass"}`)
			return v > n, fmt.Sprint(v)
		})
		took := scrape(t, addr, `vmgate_audit_duration_seconds_sum{trigger="pass"}`) - sum
		passes = append(passes, time.Duration(took*float64(time.Second)))
	}
	_, body, _ := httpGet(addr, "/metrics")
	running, _ := metricValue(body, `vmgate_audit_event_delay_seconds_count`)
	mStart, mReturn, mPass := median(fromStart), median(fromReturn), median(passes)
	t.Logf("BENCH hotplug: %d runs; attach-disk start to vm.audit record: median %v (%v); attach-disk return to record: median %v (%v); "+
		"one audit pass over the host: median %v (%v); ratio detection/pass %.2f; periodic audit at the default 10m interval finds it after 5m on average: %.0fx slower; %v event judgements observed",
		runs, mStart.Round(time.Millisecond), fromStart, mReturn.Round(time.Millisecond), fromReturn, mPass.Round(time.Microsecond), passes,
		float64(mStart)/float64(mPass), float64(5*time.Minute)/float64(mStart), running)

	// libvirtd restarts: the events are lost, said so, and followed again.
	lost := scrape(t, addr, "vmgate_audit_events_lost_total")
	l.Restart(t)
	eventually(t, 30*time.Second, "the loss counted", wantMetric(addr, "vmgate_audit_events_lost_total", lost+1))
	eventually(t, 60*time.Second, "following the events again", wantMetric(addr, "vmgate_audit_events_connected", 1))
	if !strings.Contains(d.log.String(), "lost libvirt's domain events") || !strings.Contains(d.log.String(), "following libvirt's domain events again") {
		t.Errorf("the log does not say the events were lost and back:\n%s", d.log)
	}

	// audit_action terminate: the hot-plug takes the VM down (it ignores ACPI: destroyed
	// after audit_timeout).
	if err := dom.Destroy(); err != nil {
		t.Fatal(err)
	}
	if stderr, err := dom.Start(); err != nil {
		t.Fatalf("start: %v\n%s", err, stderr)
	}
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.config, bytes.Replace(cfg, []byte("audit_action: report"), []byte("audit_action: terminate"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	n := scrape(t, addr, `vmgate_audit_duration_seconds_count{trigger="pass"}`)
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 30*time.Second, "a pass after the reload", func() (bool, string) {
		_, body, _ := httpGet(addr, "/metrics")
		v, _ := metricValue(body, `vmgate_audit_duration_seconds_count{trigger="pass"}`)
		return v > n, fmt.Sprint(v)
	})
	eventually(t, 30*time.Second, "following the events", wantMetric(addr, "vmgate_audit_events_connected", 1))
	if st, _ := dom.State(); st != "running" {
		t.Fatalf("the reload took down a compliant VM: %q", st)
	}
	start := time.Now()
	if _, _, err := l.Virsh("attach-disk", dom.Name, evil, "sdb", "--targetbus", "usb", "--live", "--driver", "qemu", "--subdriver", "raw"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the VM taken down", func() (bool, string) {
		st, _ := dom.State()
		return st == "shut off", st
	})
	t.Logf("audit_action terminate: %s shut off %v after the attach", dom.Name, time.Since(start).Round(time.Millisecond))
	term := recordsOf(s.traceRecords(), "vm.terminated", dom.Name)
	if len(term) != 1 || term[0]["outcome"] != "success" || !strings.Contains(toJSON(term[0]), evil) {
		t.Errorf("vm.terminated records: %v", term)
	}
	eventually(t, 10*time.Second, "healthy once it is down", healthy)
}
