package ship

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

// testRecord is a record like the hook writes for a Nova instance, about 1 KB of JSON, with
// the characters RFC 5424 wants escaped in its domain name.
func testRecord(i int) trace.Record {
	event, outcome := trace.AdmissionAllow, trace.OutcomeSuccess
	if i%5 == 4 {
		event, outcome = trace.AdmissionRefuse, trace.OutcomeFailure
	}
	sha := strings.Repeat(fmt.Sprintf("%02x", i%256), 64)
	return trace.Record{
		Time:     time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC).Add(time.Duration(i) * time.Second),
		Host:     "compute-07.example.org",
		Event:    event,
		Outcome:  outcome,
		Reason:   "disk vda image is not endorsed: removed from list \"example\"",
		Mode:     "enforce",
		Op:       "prepare begin -",
		Domain:   trace.Domain{Name: fmt.Sprintf(`instance-%08x "q]\`, i), UUID: "9b2c1a3e-8f4d-4b6a-9c2e-1d3f5a7b9c0d"},
		Instance: &trace.Instance{ID: "3f0c8b2e-5a1d-4e7f-9b6c-2d4e6f8a0b1c", Name: fmt.Sprintf("build-runner-%02d", i%100)},
		User:     &trace.Owner{ID: "7d1e3f5a9b2c4d6e8f0a1b3c5d7e9f1a", Name: "alice"},
		Project:  &trace.Owner{ID: "0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d", Name: "atlas-production"},
		Images: []trace.Image{{Disk: "vda", GlanceID: "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", SHA512: sha,
			Identifier: "c0ffee00-1234-4abc-8def-0123456789ab", Title: "EL9 worker node", Version: "2026.11",
			Status: "endorsed", Subscription: "example", List: "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", ListVersion: "20261120"}},
		MACs:    []string{"fa:16:3e:12:34:56"},
		IPs:     []trace.IP{{Address: "192.0.2.77", Type: "fixed"}, {Address: "2001:db8::77", Type: "fixed"}, {Address: "198.51.100.7", Type: "floating"}},
		Version: "test",
	}
}

// appendRecords adds n records to the trace journal under stateDir, first numbered from.
func appendRecords(t testing.TB, stateDir string, from, n int) {
	t.Helper()
	for n > 0 {
		batch := min(n, 1000)
		recs := make([]trace.Record, batch)
		for i := range recs {
			recs[i] = testRecord(from + i)
		}
		if err := trace.Append(stateDir, recs...); err != nil {
			t.Fatal(err)
		}
		from, n = from+batch, n-batch
	}
}

// journalEntries are the journal's records.
func journalEntries(t testing.TB, stateDir string) []journal.Entry {
	t.Helper()
	var es []journal.Entry
	if err := journal.Read(trace.JournalPath(stateDir), 0, func(e journal.Entry) error {
		es = append(es, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return es
}

// behaviour is what a test server does with one connection.
type behaviour int

const (
	readAll     behaviour = iota // read up to the client's end, then close: a good receiver
	acceptClose                  // close at once, reading nothing
	neverClose                   // read everything, keep the connection open
	dropAfter                    // read dropN messages, then reset the connection
	stall                        // read nothing, keep the connection open
)

// server is an in-process syslog receiver over TCP or TLS that parses what it gets.
type server struct {
	t     testing.TB
	ln    net.Listener
	how   behaviour
	dropN int // dropAfter: reset the connection that brings the total to dropN messages

	mu    sync.Mutex
	conns int
	total int
	msgs  []Message  // parsed, in arrival order
	bySes [][]uint64 // seqs per connection
	errs  []error
	wg    sync.WaitGroup
	open  []net.Conn
}

func newServer(t testing.TB, how behaviour, tlsConf *tls.Config) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	s := &server{t: t, ln: ln, how: how}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		s.open = append(s.open, c)
		s.bySes = append(s.bySes, nil)
		n := len(s.bySes) - 1
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c, n)
		}()
	}
}

func (s *server) serve(c net.Conn, n int) {
	if s.how == acceptClose {
		c.Close()
		return
	}
	if s.how == stall {
		return // closed by close()
	}
	defer func() {
		if s.how != neverClose {
			c.Close()
		}
	}()
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		k, err := c.Read(chunk)
		buf = append(buf, chunk[:k]...)
		msgs, rest, ferr := SplitFrames(buf)
		buf = append([]byte(nil), rest...)
		s.mu.Lock()
		if ferr != nil {
			s.errs = append(s.errs, ferr)
		}
		for _, raw := range msgs {
			m, perr := ParseMessage(raw)
			if perr != nil {
				s.errs = append(s.errs, fmt.Errorf("%w: %q", perr, raw))
				continue
			}
			seq, _ := strconv.ParseUint(m.Params["seq"], 10, 64)
			s.msgs = append(s.msgs, m)
			s.bySes[n] = append(s.bySes[n], seq)
		}
		s.total += len(msgs)
		drop := s.how == dropAfter && s.total >= s.dropN
		s.mu.Unlock()
		if drop {
			reset(c)
			return
		}
		if err != nil {
			if len(buf) > 0 {
				s.mu.Lock()
				s.errs = append(s.errs, fmt.Errorf("%d bytes of an incomplete frame at the end", len(buf)))
				s.mu.Unlock()
			}
			return
		}
	}
}

// reset drops the connection with a RST, as a receiver that dies with data unread does.
func reset(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// seqs returns, for each seq received, how often; and fails t on any malformed frame.
func (s *server) received() (count map[uint64]int, msgs []Message) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.errs {
		s.t.Errorf("server: %v", err)
	}
	count = map[uint64]int{}
	for _, m := range s.msgs {
		seq, _ := strconv.ParseUint(m.Params["seq"], 10, 64)
		count[seq]++
	}
	return count, append([]Message(nil), s.msgs...)
}

func (s *server) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// testShipper is a Shipper for stateDir with quick timeouts.
func testShipper(t testing.TB, stateDir string, sinks []config.Sink, opts Options) *Shipper {
	t.Helper()
	if opts.ConfirmTimeout == 0 {
		opts.ConfirmTimeout = 2 * time.Second
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if opts.IOTimeout == 0 {
		opts.IOTimeout = 2 * time.Second
	}
	sh, err := New(stateDir, sinks, slog.New(slog.NewTextHandler(io.Discard, nil)), opts)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

func plainSink(addr string) config.Sink {
	off := false
	return config.Sink{Name: "siem", Type: config.SinkSyslog, Address: addr, TLS: &off, AppName: "vmgate", MaxBacklog: 100}
}

func tlsSink(addr, caFile, serverName string) config.Sink {
	on := true
	return config.Sink{Name: "siem", Type: config.SinkSyslog, Address: addr, TLS: &on, CAFile: caFile,
		ServerName: serverName, AppName: "vmgate", MaxBacklog: 100}
}

func once(t testing.TB, sh *Shipper) (SinkStats, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sh.Once(ctx)
	if len(st.Sinks) != 1 {
		t.Fatalf("stats for %d sinks", len(st.Sinks))
	}
	return st.Sinks[0], err
}

func mustCursor(t testing.TB, stateDir, sink string) Cursor {
	t.Helper()
	c, err := ReadCursor(stateDir, sink)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testPKI is a CA and certificates it issued, written as PEM files into dir.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vmgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key}
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate for dnsName (and 127.0.0.1), for a server or a client, and
// returns it with the paths of its PEM files.
func (p *testPKI) issue(t testing.TB, name, dnsName string, client bool) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{dnsName}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := p.write(t, name+".pem", "CERTIFICATE", der)
	keyFile := p.write(t, name+".key", "PRIVATE KEY", kder)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certFile, keyFile
}

func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return pool
}

// waitFor polls cond until it holds or fails t after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
