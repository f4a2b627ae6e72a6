package integration

// Shipping trace records to the real rsyslog from Debian (rsyslog + rsyslog-gnutls, which
// scripts/deps.sh installs), started by the test on a loopback port with TLS (imtcp with the
// gtls stream driver, certificates made here), writing each message it receives, raw, as one
// line of a file.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/ship"
	"github.com/vmgate/vmgate/internal/trace"
)

// rsyslogServerName is the name in the test server certificate, checked by the shipper.
const rsyslogServerName = "siem.test"

// rsyslogConf: the main queue is direct, so that a message is written to the file before
// imtcp reads the next bytes; an in-memory queue would lose, at a kill -9, messages the
// connection's clean close had already confirmed (see package ship: what "accepted" means).
var rsyslogConf = template.Must(template.New("conf").Parse(`
global(
  workDirectory="{{.Dir}}"
  maxMessageSize="64k"
  net.enableDNS="off"
  defaultNetstreamDriverCAFile="{{.CA}}"
  defaultNetstreamDriverCertFile="{{.Cert}}"
  defaultNetstreamDriverKeyFile="{{.Key}}"
)
main_queue(queue.type="Direct")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{{.Port}}" ruleset="siem")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="siem") {
  action(type="omfile" file="{{.Out}}" template="raw")
}
`))

// rsyslog is one rsyslogd that the test runs.
type rsyslog struct {
	t                  *testing.T
	bin, dir, conf     string
	Port               int
	Out                string // received messages, one a line
	CA, Cert, Key, Dir string // for the configuration
	cmd                *exec.Cmd
	exited             chan struct{}
	cpu                time.Duration // used by the rsyslogd processes that exited
}

// requireRsyslog installs rsyslog and its TLS driver from Debian when they are missing (as
// root), and fails the test when it cannot: VMGATE_INTEGRATION=1 forbids skipping.
func requireRsyslog(t *testing.T) string {
	t.Helper()
	requireIntegration(t)
	pkgs := []string{"rsyslog", "rsyslog-gnutls"}
	var missing []string
	for _, p := range pkgs {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", p).Output()
		if err != nil || !strings.Contains(string(out), "install ok installed") {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		if os.Geteuid() != 0 {
			t.Fatalf("%v not installed; run scripts/deps.sh as root (%s=1 forbids skipping)", missing, integrationEnv)
		}
		env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		args := append([]string{"install", "-y", "-qq", "-o", "Dpkg::Options::=--force-confold"}, missing...)
		if _, err := runTool("/", env, "apt-get", args...); err != nil {
			if _, uerr := runTool("/", env, "apt-get", "update", "-qq"); uerr != nil {
				t.Fatalf("apt-get update: %v", uerr)
			}
			if _, err := runTool("/", env, "apt-get", args...); err != nil {
				t.Fatalf("installing %v: %v", missing, err)
			}
		}
		t.Logf("installed %v", missing)
	}
	return requireTool(t, "rsyslogd")
}

// newRsyslog writes a CA, a server certificate and a configuration into a temporary
// directory; start runs it.
func newRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	bin := requireRsyslog(t)
	dir := t.TempDir()
	r := &rsyslog{t: t, bin: bin, dir: dir, Dir: dir, Out: filepath.Join(dir, "received.log")}
	r.CA, r.Cert, r.Key = rsyslogPKI(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.Port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r.conf = filepath.Join(dir, "rsyslog.conf")
	f, err := os.Create(r.conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsyslogConf.Execute(f, r); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { r.kill(syscall.SIGKILL) })
	return r
}

func (r *rsyslog) address() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port)) }

// start runs rsyslogd in the foreground as the test's child, not the system's service, and
// waits until it accepts connections.
func (r *rsyslog) start() {
	r.t.Helper()
	log, err := os.OpenFile(filepath.Join(r.dir, "rsyslogd.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	defer log.Close()
	r.cmd = exec.Command(r.bin, "-n", "-f", r.conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	r.cmd.Stdout, r.cmd.Stderr = log, log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(r.cmd, r.exited)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.address(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-r.exited:
			r.t.Fatalf("rsyslogd exited at start:\n%s", r.log())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd does not listen on %s: %v\n%s", r.address(), err, r.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends sig and waits for rsyslogd to exit. SIGTERM lets it finish writing.
func (r *rsyslog) kill(sig syscall.Signal) {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(sig)
	select {
	case <-r.exited:
	case <-time.After(20 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
	r.cpu += r.cmd.ProcessState.UserTime() + r.cmd.ProcessState.SystemTime()
	r.cmd = nil
}

func (r *rsyslog) log() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "rsyslogd.log"))
	return string(b)
}

// rsyslogPKI makes a CA and a server certificate for rsyslogServerName and 127.0.0.1, as PEM
// files in dir.
func rsyslogPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vmgate test SIEM CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: rsyslogServerName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{rsyslogServerName},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key) // SEC 1, which every GnuTLS reads
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server.key", "EC PRIVATE KEY", keyDER)
}

// rsyslogRecord is a record as the hook writes them for a Nova instance, about 1 KB.
func rsyslogRecord(i int) trace.Record {
	return trace.Record{
		Time: time.Now().UTC(), Host: "compute-07.example.org", Event: trace.AdmissionAllow, Outcome: trace.OutcomeSuccess,
		Mode: "enforce", Op: "prepare begin -",
		Domain:   trace.Domain{Name: fmt.Sprintf("instance-%08x", i), UUID: "9b2c1a3e-8f4d-4b6a-9c2e-1d3f5a7b9c0d"},
		Instance: &trace.Instance{ID: "3f0c8b2e-5a1d-4e7f-9b6c-2d4e6f8a0b1c", Name: fmt.Sprintf("worker-%d", i)},
		User:     &trace.Owner{ID: "7d1e3f5a9b2c4d6e8f0a1b3c5d7e9f1a", Name: "alice"},
		Project:  &trace.Owner{ID: "0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d", Name: "atlas-production"},
		Images: []trace.Image{{Disk: "vda", GlanceID: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", SHA512: strings.Repeat("ab", 64),
			Identifier: "c0ffee00-1234-4abc-8def-0123456789ab", Title: "EL9 worker node", Version: "2026.11",
			Status: "endorsed", Subscription: "example", List: "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", ListVersion: "20261120"}},
		MACs:    []string{"fa:16:3e:12:34:56"},
		IPs:     []trace.IP{{Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Type: "fixed"}},
		Version: "test",
	}
}

// appendRsyslogRecords appends n records with trace.Append, as the hook does (in batches here,
// to be quick), numbered from `from`.
func appendRsyslogRecords(t *testing.T, stateDir string, from, n int) {
	t.Helper()
	for n > 0 {
		k := min(n, 500)
		recs := make([]trace.Record, k)
		for i := range recs {
			recs[i] = rsyslogRecord(from + i)
		}
		if err := trace.Append(stateDir, recs...); err != nil {
			t.Error(err) // not Fatal: producers run on their own goroutines
			return
		}
		from, n = from+k, n-k
	}
}

func rsyslogShipper(t *testing.T, stateDir string, r *rsyslog, opts ship.Options) *ship.Shipper {
	t.Helper()
	on := true
	sink := config.Sink{Name: "siem", Type: config.SinkSyslog, Address: r.address(), TLS: &on, CAFile: r.CA,
		ServerName: rsyslogServerName, AppName: "vmgate", MaxBacklog: 100000}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	sh, err := ship.New(stateDir, []config.Sink{sink}, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// msgStart finds where a message begins; a line may hold the torn start of a message that
// rsyslogd was writing when it was killed, followed by the next one.
var msgStart = regexp.MustCompile(`<\d{1,3}>1 `)

// received reads rsyslogd's file: the seq → hash of every whole message that arrived, how
// many whole messages there were, and how many pieces could not be read.
func received(t *testing.T, path string) (hashes map[uint64]string, messages, torn int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hashes = map[uint64]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		starts := msgStart.FindAllStringIndex(line, -1)
		if len(starts) == 0 || starts[0][0] != 0 {
			torn++
		}
		for i, s := range starts {
			end := len(line)
			if i+1 < len(starts) {
				end = starts[i+1][0]
			}
			m, err := ship.ParseMessage([]byte(line[s[0]:end]))
			var doc struct {
				VMGate struct {
					Seq  uint64 `json:"seq"`
					Hash string `json:"hash"`
				} `json:"vmgate"`
			}
			if err != nil || m.SDID != ship.SDID || json.Unmarshal(m.Msg, &doc) != nil {
				torn++
				continue
			}
			seq, err := strconv.ParseUint(m.Params["seq"], 10, 64)
			if err != nil || doc.VMGate.Seq != seq || doc.VMGate.Hash != m.Params["hash"] {
				t.Errorf("message with SD seq %s hash %s and ECS %d %s", m.Params["seq"], m.Params["hash"], doc.VMGate.Seq, doc.VMGate.Hash)
				continue
			}
			if h, ok := hashes[seq]; ok && h != m.Params["hash"] {
				t.Errorf("seq %d arrived with hashes %s and %s", seq, h, m.Params["hash"])
			}
			hashes[seq] = m.Params["hash"]
			messages++
		}
	}
	return hashes, messages, torn
}

// checkArrived fails t unless every record of the journal arrived, with its hash.
func checkArrived(t *testing.T, stateDir string, hashes map[uint64]string) int {
	t.Helper()
	n, missing := 0, 0
	err := journal.Read(trace.JournalPath(stateDir), 0, func(e journal.Entry) error {
		n++
		switch h, ok := hashes[e.Seq]; {
		case !ok:
			if missing++; missing <= 10 {
				t.Errorf("record %d never arrived", e.Seq)
			}
		case h != e.Hash:
			t.Errorf("record %d arrived with hash %s, the journal has %s", e.Seq, h, e.Hash)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if missing > 0 {
		t.Errorf("%d of %d records missing", missing, n)
	}
	return n
}

// TestRsyslogAtLeastOnce ships to rsyslog, kills it (SIGKILL) while a backlog is being sent,
// keeps appending and shipping while it is down, starts it again, and checks that every
// record arrived: duplicates allowed, none missing.
func TestRsyslogAtLeastOnce(t *testing.T) {
	r := newRsyslog(t)
	r.start()
	stateDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	// 1. A first batch, one pass.
	appendRsyslogRecords(t, stateDir, 0, 2000)
	sh := rsyslogShipper(t, stateDir, r, ship.Options{SessionRecords: 1000, PollInterval: 50 * time.Millisecond,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 400 * time.Millisecond, ConfirmTimeout: 5 * time.Second})
	st, err := sh.Once(ctx)
	if err != nil || !st.UpToDate() || st.Sinks[0].Shipped != 2000 {
		t.Fatalf("first pass: %+v %v\n%s", st, err, r.log())
	}

	// 2. The daemon's loop, and a producer appending as hooks do.
	runDone := make(chan error, 1)
	runCtx, stopRun := context.WithCancel(ctx)
	go func() { runDone <- sh.Run(runCtx) }()
	var (
		produced    = 2000
		produceMu   sync.Mutex
		slowest     time.Duration
		stopProduce = make(chan struct{})
		producerWG  sync.WaitGroup
	)
	producerWG.Go(func() {
		for {
			select {
			case <-stopProduce:
				return
			case <-time.After(20 * time.Millisecond):
			}
			produceMu.Lock()
			start := time.Now()
			appendRsyslogRecords(t, stateDir, produced, 50)
			slowest = max(slowest, time.Since(start))
			produced += 50
			produceMu.Unlock()
		}
	})

	// 3. A backlog in flight, then rsyslogd dies.
	produceMu.Lock()
	appendRsyslogRecords(t, stateDir, produced, 20000)
	produced += 20000
	produceMu.Unlock()
	before := sh.Status()[0].Cursor
	waitUntil(t, 20*time.Second, "shipping of the backlog to begin", func() bool { return sh.Status()[0].Cursor > before })
	killedAt := sh.Status()[0]
	r.kill(syscall.SIGKILL)
	t.Logf("rsyslogd killed with cursor at %d of %d", killedAt.Cursor, killedAt.LastSeq)
	if killedAt.Backlog == 0 {
		t.Errorf("rsyslogd was killed with nothing in flight: %+v", killedAt)
	}

	// 4. Down: the hooks' appends go on, the shipper reports a growing backlog and an error.
	time.Sleep(1500 * time.Millisecond)
	down := sh.Status()[0]
	if down.LastError == "" || down.Failures == 0 || down.Backlog == 0 || down.LastSeq <= killedAt.LastSeq {
		t.Errorf("status while rsyslogd is down: %+v", down)
	}
	t.Logf("while down: backlog %d, %d failures, last error: %s", down.Backlog, down.Failures, down.LastError)

	// 5. Up again: everything arrives.
	r.start()
	time.Sleep(300 * time.Millisecond)
	close(stopProduce)
	producerWG.Wait()
	var last uint64
	if err := journal.Read(trace.JournalPath(stateDir), 0, func(e journal.Entry) error { last = e.Seq; return nil }); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the backlog to drain", func() bool {
		s := sh.Status()[0]
		return s.Cursor == last && s.Backlog == 0
	})
	stopRun()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	r.kill(syscall.SIGTERM) // flushes its file

	hashes, messages, torn := received(t, r.Out)
	n := checkArrived(t, stateDir, hashes)
	if n != produced {
		t.Errorf("journal has %d records, %d were produced", n, produced)
	}
	t.Logf("%d records in the journal, %d messages received (%d duplicates), %d torn pieces from the kill; slowest append while shipping: %v",
		n, messages, messages-len(hashes), torn, slowest.Round(time.Millisecond))
	if slowest > 2*time.Second {
		t.Errorf("an append took %v while rsyslogd was down: shipping must not hold up the hook", slowest)
	}
}

// TestRsyslogThroughput measures shipping over TLS to rsyslogd: one pass over 50,000
// records, from the journal to rsyslogd's confirming close. The target is 20,000
// records/s.
func TestRsyslogThroughput(t *testing.T) {
	r := newRsyslog(t)
	r.start()
	stateDir := t.TempDir()
	const n = 50000
	appendRsyslogRecords(t, stateDir, 0, n)
	sh := rsyslogShipper(t, stateDir, r, ship.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cpu0 := processCPU()
	start := time.Now()
	st, err := sh.Once(ctx)
	d := time.Since(start)
	cpu := processCPU() - cpu0
	if err != nil || st.Sinks[0].Shipped != n {
		t.Fatalf("%+v %v\n%s", st, err, r.log())
	}
	r.kill(syscall.SIGTERM)
	hashes, messages, _ := received(t, r.Out)
	checkArrived(t, stateDir, hashes)
	if messages != n {
		t.Errorf("%d messages for %d records", messages, n)
	}
	t.Logf("shipped %d records over TLS to rsyslogd in %v: %.0f records/s; CPU: shipper %v, rsyslogd %v",
		n, d.Round(time.Millisecond), n/d.Seconds(), cpu.Round(time.Millisecond), r.cpu.Round(time.Millisecond))
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
