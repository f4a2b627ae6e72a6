package ship

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

// checkAll fails t unless every journal record arrived at least once, with its hash.
func checkAll(t *testing.T, stateDir string, msgs []Message) {
	t.Helper()
	hashes := map[uint64]string{}
	for _, m := range msgs {
		seq, _ := strconv.ParseUint(m.Params["seq"], 10, 64)
		if h, ok := hashes[seq]; ok && h != m.Params["hash"] {
			t.Errorf("seq %d arrived with two hashes", seq)
		}
		hashes[seq] = m.Params["hash"]
	}
	for _, e := range journalEntries(t, stateDir) {
		if got, ok := hashes[e.Seq]; !ok {
			t.Errorf("record %d never arrived", e.Seq)
		} else if got != e.Hash {
			t.Errorf("record %d arrived with hash %s, the journal has %s", e.Seq, got, e.Hash)
		}
	}
}

func TestShipInOrderAndMoveCursor(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 25)
	srv := newServer(t, readAll, nil)
	sh := testShipper(t, dir, []config.Sink{plainSink(srv.addr())}, Options{SessionRecords: 10})

	k, err := once(t, sh)
	if err != nil {
		t.Fatal(err)
	}
	if k.Shipped != 25 || k.Sent != 25 || k.Cursor != 25 || k.LastSeq != 25 || k.Backlog != 0 {
		t.Errorf("stats %+v", k)
	}
	if srv.connections() != 3 {
		t.Errorf("%d connections, want 3 sessions of at most 10 records", srv.connections())
	}
	count, msgs := srv.received()
	for i, m := range msgs {
		if m.Params["seq"] != strconv.Itoa(i+1) {
			t.Fatalf("message %d has seq %s: out of order", i, m.Params["seq"])
		}
	}
	if len(count) != 25 || len(msgs) != 25 {
		t.Errorf("%d messages, %d records", len(msgs), len(count))
	}
	checkAll(t, dir, msgs)
	es := journalEntries(t, dir)
	if c := mustCursor(t, dir, "siem"); c.Seq != 25 || c.Hash != es[24].Hash {
		t.Errorf("cursor %+v", c)
	}

	// Nothing new: no connection at all. Then only the new records go.
	if k, err := once(t, sh); err != nil || k.Shipped != 0 || srv.connections() != 3 {
		t.Errorf("up-to-date pass: %+v %v, %d connections", k, err, srv.connections())
	}
	appendRecords(t, dir, 25, 5)
	if k, err := once(t, sh); err != nil || k.Shipped != 5 || k.Cursor != 30 {
		t.Errorf("after 5 more: %+v %v", k, err)
	}
	_, msgs = srv.received()
	if len(msgs) != 30 || msgs[25].Params["seq"] != "26" {
		t.Errorf("%d messages, 26th seq %s", len(msgs), msgs[25].Params["seq"])
	}
	st := sh.Status()[0]
	if st.Cursor != 30 || st.Backlog != 0 || st.LastSuccess.IsZero() || st.LastError != "" || st.MaxBacklog != 100 {
		t.Errorf("status %+v", st)
	}
}

func TestResendAfterDroppedConnection(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 50)
	bad := newServer(t, dropAfter, nil)
	bad.dropN = 15 // in the second session of 10
	sh := testShipper(t, dir, []config.Sink{plainSink(bad.addr())}, Options{SessionRecords: 10})
	k, err := once(t, sh)
	if !IsDelivery(err) {
		t.Fatalf("err = %v, want a delivery error", err)
	}
	// The first session was confirmed; the second was cut off in its middle.
	if k.Cursor != 10 || k.Shipped != 10 || k.Backlog != 40 || k.LastSeq != 50 {
		t.Errorf("stats after the drop: %+v", k)
	}
	if st := sh.Status()[0]; st.Backlog != 40 || st.LastError == "" || st.Failures != 1 {
		t.Errorf("status %+v", st)
	}

	good := newServer(t, readAll, nil)
	sh = testShipper(t, dir, []config.Sink{plainSink(good.addr())}, Options{SessionRecords: 10})
	if k, err := once(t, sh); err != nil || k.Cursor != 50 || k.Shipped != 40 {
		t.Fatalf("after reconnecting: %+v %v", k, err)
	}
	_, first := bad.received()
	_, second := good.received()
	if second[0].Params["seq"] != "11" {
		t.Errorf("resent from seq %s, want 11 (the cursor)", second[0].Params["seq"])
	}
	checkAll(t, dir, append(first, second...))
}

func TestServerThatAcceptsThenCloses(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 20)
	srv := newServer(t, acceptClose, nil)
	sh := testShipper(t, dir, []config.Sink{plainSink(srv.addr())}, Options{})
	start := time.Now()
	k, err := once(t, sh)
	if !IsDelivery(err) || k.Cursor != 0 || k.Backlog != 20 {
		t.Fatalf("%+v %v", k, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v to notice the reset", d)
	}
	if _, err := os.Stat(CursorPath(dir, "siem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cursor written: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 3)
	srv := newServer(t, readAll, nil)
	addr := srv.addr()
	srv.close()
	sh := testShipper(t, dir, []config.Sink{plainSink(addr)}, Options{})
	k, err := once(t, sh)
	if !IsDelivery(err) || !strings.Contains(err.Error(), "refused") || k.Backlog != 3 || k.Sent != 0 {
		t.Fatalf("%+v %v", k, err)
	}
}

// A receiver that keeps the connection after our end but acknowledged every byte: accepted
// once ConfirmTimeout passes.
func TestReceiverThatNeverCloses(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 5)
	srv := newServer(t, neverClose, nil)
	sh := testShipper(t, dir, []config.Sink{plainSink(srv.addr())}, Options{ConfirmTimeout: 200 * time.Millisecond})
	if k, err := once(t, sh); err != nil || k.Cursor != 5 {
		t.Fatalf("%+v %v", k, err)
	}
}

// A receiver that stops reading: the write deadline fails the session, the cursor stays.
func TestStalledReceiver(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 20000) // far more than socket buffers hold
	srv := newServer(t, stall, nil)
	sh := testShipper(t, dir, []config.Sink{plainSink(srv.addr())}, Options{IOTimeout: 300 * time.Millisecond, SessionRecords: 100000})
	start := time.Now()
	k, err := once(t, sh)
	if !IsDelivery(err) || k.Cursor != 0 || k.Backlog != 20000 {
		t.Fatalf("%+v %v", k, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestCancelEndsAStalledWrite(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 20000)
	srv := newServer(t, stall, nil)
	sh := testShipper(t, dir, []config.Sink{plainSink(srv.addr())}, Options{IOTimeout: time.Minute, SessionRecords: 100000})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	st, err := sh.Once(ctx)
	if err == nil || st.Sinks[0].Cursor != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	serverCert, _, _ := pki.issue(t, "server", "siem.test", false)
	_, clientCert, clientKey := pki.issue(t, "client", "compute-07.test", true)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{serverCert}}

	t.Run("ok", func(t *testing.T) {
		dir := t.TempDir()
		appendRecords(t, dir, 0, 12)
		srv := newServer(t, readAll, serverTLS)
		sh := testShipper(t, dir, []config.Sink{tlsSink(srv.addr(), pki.caFile, "siem.test")}, Options{SessionRecords: 5})
		if k, err := once(t, sh); err != nil || k.Cursor != 12 || k.Shipped != 12 {
			t.Fatalf("%+v %v", k, err)
		}
		_, msgs := srv.received()
		checkAll(t, dir, msgs)
		if len(msgs) != 12 {
			t.Errorf("%d messages", len(msgs))
		}
	})
	t.Run("server name mismatch", func(t *testing.T) {
		dir := t.TempDir()
		appendRecords(t, dir, 0, 3)
		srv := newServer(t, readAll, serverTLS)
		sh := testShipper(t, dir, []config.Sink{tlsSink(srv.addr(), pki.caFile, "other.test")}, Options{})
		k, err := once(t, sh)
		if !IsDelivery(err) || !strings.Contains(err.Error(), "other.test") || k.Cursor != 0 {
			t.Fatalf("%+v %v", k, err)
		}
		if _, msgs := srv.received(); len(msgs) != 0 {
			t.Errorf("%d messages reached a server that failed the name check", len(msgs))
		}
	})
	t.Run("unknown CA", func(t *testing.T) {
		dir := t.TempDir()
		appendRecords(t, dir, 0, 3)
		other := newTestPKI(t)
		srv := newServer(t, readAll, serverTLS)
		sh := testShipper(t, dir, []config.Sink{tlsSink(srv.addr(), other.caFile, "siem.test")}, Options{})
		if _, err := once(t, sh); !IsDelivery(err) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		dir := t.TempDir()
		appendRecords(t, dir, 0, 3)
		srv := newServer(t, readAll, &tls.Config{Certificates: []tls.Certificate{serverCert}, MaxVersion: tls.VersionTLS11})
		sh := testShipper(t, dir, []config.Sink{tlsSink(srv.addr(), pki.caFile, "siem.test")}, Options{})
		if _, err := once(t, sh); !IsDelivery(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("client certificate", func(t *testing.T) {
		dir := t.TempDir()
		appendRecords(t, dir, 0, 4)
		srv := newServer(t, readAll, &tls.Config{Certificates: []tls.Certificate{serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool()})
		without := testShipper(t, dir, []config.Sink{tlsSink(srv.addr(), pki.caFile, "siem.test")}, Options{})
		if _, err := once(t, without); !IsDelivery(err) {
			t.Fatalf("without a client certificate: err = %v", err)
		}
		c := tlsSink(srv.addr(), pki.caFile, "siem.test")
		c.CertFile, c.KeyFile = clientCert, clientKey
		with := testShipper(t, dir, []config.Sink{c}, Options{})
		if k, err := once(t, with); err != nil || k.Cursor != 4 {
			t.Fatalf("with a client certificate: %+v %v", k, err)
		}
	})
	t.Run("bad files are configuration errors", func(t *testing.T) {
		for name, c := range map[string]config.Sink{
			"ca_file": tlsSink("127.0.0.1:1", filepath.Join(pki.dir, "missing.pem"), ""),
			"no PEM":  tlsSink("127.0.0.1:1", clientKey, ""),
			"cert_file": func() config.Sink {
				c := tlsSink("127.0.0.1:1", "", "")
				c.CertFile, c.KeyFile = clientCert, pki.caFile
				return c
			}(),
		} {
			if _, err := New(t.TempDir(), []config.Sink{c}, nil, Options{}); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
}

func TestJSONFile(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "log", "records.jsonl")
	appendRecords(t, dir, 0, 7)
	sink := config.Sink{Name: "filebeat", Type: config.SinkJSONFile, Path: out}
	sh := testShipper(t, dir, []config.Sink{sink}, Options{SessionRecords: 3})
	if k, err := once(t, sh); err != nil || k.Cursor != 7 || k.Shipped != 7 {
		t.Fatalf("%+v %v", k, err)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("%v %v", fi.Mode(), err)
	}
	// A torn line from a crash stays a line of its own.
	f, _ := os.OpenFile(out, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"torn":`)
	f.Close()
	appendRecords(t, dir, 7, 2)
	if k, err := once(t, sh); err != nil || k.Cursor != 9 {
		t.Fatalf("%+v %v", k, err)
	}
	b, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 10 || lines[7] != `{"torn":` {
		t.Fatalf("%d lines:\n%s", len(lines), b)
	}
	es := journalEntries(t, dir)
	for i, l := range slices.Delete(lines, 7, 8) {
		var doc struct {
			Event  struct{ Action string }
			VMGate struct {
				Seq  uint64
				Hash string
			} `json:"vmgate"`
		}
		if err := json.Unmarshal([]byte(l), &doc); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if doc.VMGate.Seq != es[i].Seq || doc.VMGate.Hash != es[i].Hash || doc.Event.Action == "" {
			t.Errorf("line %d: %+v", i, doc)
		}
	}

	// A file that cannot be written is a delivery failure; the records wait.
	os.Remove(out)
	os.Mkdir(out, 0o700)
	appendRecords(t, dir, 9, 1)
	if k, err := once(t, sh); !IsDelivery(err) || k.Cursor != 9 || k.Backlog != 1 {
		t.Fatalf("%+v %v", k, err)
	}
}

func TestReplacedJournal(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "records.jsonl")
	sink := config.Sink{Name: "filebeat", Type: config.SinkJSONFile, Path: out}
	appendRecords(t, dir, 0, 5)
	sh := testShipper(t, dir, []config.Sink{sink}, Options{})
	if _, err := once(t, sh); err != nil {
		t.Fatal(err)
	}
	// A new journal, shorter than the cursor.
	os.Remove(trace.JournalPath(dir))
	appendRecords(t, dir, 100, 3)
	k, err := once(t, sh)
	if err != nil || !k.Replaced || k.Shipped != 3 || k.Cursor != 3 {
		t.Fatalf("shorter: %+v %v", k, err)
	}
	// A new journal as long as the cursor, other hashes.
	os.Remove(trace.JournalPath(dir))
	appendRecords(t, dir, 200, 4)
	if k, err := once(t, sh); err != nil || !k.Replaced || k.Shipped != 4 {
		t.Fatalf("other chain: %+v %v", k, err)
	}
	if c := mustCursor(t, dir, "filebeat"); c.Hash != journalEntries(t, dir)[3].Hash {
		t.Errorf("cursor %+v", c)
	}
}

// Retention replaces the journal by one anchored at the last pruned record; a cursor at or
// past the anchor carries on without a reset.
func TestPrunedJournalContinues(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "records.jsonl")
	sink := config.Sink{Name: "filebeat", Type: config.SinkJSONFile, Path: out}
	appendRecords(t, dir, 0, 5)
	sh := testShipper(t, dir, []config.Sink{sink}, Options{})
	if _, err := once(t, sh); err != nil {
		t.Fatal(err)
	}
	last := journalEntries(t, dir)[4]
	header := `{"journal":"vmgate/1","anchor_seq":5,"anchor":"` + last.Hash + "\"}\n"
	if err := os.WriteFile(trace.JournalPath(dir), []byte(header), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := once(t, sh); err != nil || k.Replaced || k.Cursor != 5 || k.Backlog != 0 || k.LastSeq != 5 {
		t.Fatalf("header only: %+v %v", k, err)
	}
	appendRecords(t, dir, 5, 2)
	if k, err := once(t, sh); err != nil || k.Replaced || k.Shipped != 2 || k.Cursor != 7 {
		t.Fatalf("after the anchor: %+v %v", k, err)
	}
	// An anchor that is not the cursor's record: shipped again from the start.
	bad := `{"journal":"vmgate/1","anchor_seq":7,"anchor":"` + strings.Repeat("e", 64) + "\"}\n"
	os.WriteFile(trace.JournalPath(dir), []byte(bad), 0o600)
	if k, err := once(t, sh); err != nil || !k.Replaced {
		t.Fatalf("foreign anchor: %+v %v", k, err)
	}
}

func TestDamagedCursorIsAnError(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 2)
	os.MkdirAll(CursorDir(dir), 0o700)
	os.WriteFile(CursorPath(dir, "filebeat"), []byte("{\"seq\":"), 0o600)
	sh := testShipper(t, dir, []config.Sink{{Name: "filebeat", Type: config.SinkJSONFile, Path: filepath.Join(dir, "out")}}, Options{})
	_, err := once(t, sh)
	if err == nil || IsDelivery(err) || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("err = %v", err)
	}
}

func TestBrokenJournalIsAnError(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 3)
	b, _ := os.ReadFile(trace.JournalPath(dir))
	lines := strings.SplitAfter(string(b), "\n") // header, records 1, 2, 3
	lines[2] = strings.Replace(lines[2], "alice", "mallory", 1)
	os.WriteFile(trace.JournalPath(dir), []byte(strings.Join(lines, "")), 0o600)
	srv := newServer(t, readAll, nil)
	sh := testShipper(t, dir, []config.Sink{plainSink(srv.addr())}, Options{})
	k, err := once(t, sh)
	var p *journal.Problem
	if err == nil || IsDelivery(err) || !errors.As(err, &p) {
		t.Fatalf("%+v %v", k, err)
	}
	if k.Cursor != 1 { // the intact record before the edited one went out
		t.Errorf("cursor %d", k.Cursor)
	}
}

func TestRunBacksOffThenCatchesUp(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 10)
	srv := newServer(t, readAll, nil)
	addr := srv.addr()
	srv.close() // the SIEM is down
	sh := testShipper(t, dir, []config.Sink{plainSink(addr)}, Options{PollInterval: 20 * time.Millisecond,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 80 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sh.Run(ctx) }()

	waitFor(t, 5*time.Second, "failures", func() bool { return sh.Status()[0].Failures >= 3 })
	appendRecords(t, dir, 10, 5) // the hook goes on appending
	waitFor(t, 5*time.Second, "backlog 15", func() bool { return sh.Status()[0].Backlog == 15 })
	if st := sh.Status()[0]; st.LastError == "" || !st.LastSuccess.IsZero() {
		t.Errorf("status while down: %+v", st)
	}

	srv2 := listenOn(t, addr) // up again, same address
	waitFor(t, 10*time.Second, "catching up", func() bool { st := sh.Status()[0]; return st.Backlog == 0 && st.Cursor == 15 })
	appendRecords(t, dir, 15, 1)
	waitFor(t, 5*time.Second, "the next record", func() bool { return sh.Status()[0].Cursor == 16 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := sh.Status()[0]; st.LastSuccess.IsZero() || st.LastError != "" || st.Failures != 0 {
		t.Errorf("status after catching up: %+v", st)
	}
	_, msgs := srv2.received()
	checkAll(t, dir, msgs)
}

// listenOn starts a good receiver on a given address (a restarted SIEM).
func listenOn(t *testing.T, addr string) *server {
	t.Helper()
	var s *server
	waitFor(t, 5*time.Second, "the port", func() bool {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		s = &server{t: t, ln: ln, how: readAll}
		return true
	})
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func TestTwoShippersDoNotShipTwice(t *testing.T) {
	dir := t.TempDir()
	appendRecords(t, dir, 0, 2000)
	srv := newServer(t, readAll, nil)
	a := testShipper(t, dir, []config.Sink{plainSink(srv.addr())}, Options{SessionRecords: 100})
	b := testShipper(t, dir, []config.Sink{plainSink(srv.addr())}, Options{SessionRecords: 100})
	errs := make(chan error, 2)
	for _, sh := range []*Shipper{a, b} {
		go func() { _, err := sh.Once(context.Background()); errs <- err }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	count, _ := srv.received()
	for seq, n := range count {
		if n != 1 {
			t.Errorf("seq %d arrived %d times", seq, n)
		}
	}
	if len(count) != 2000 {
		t.Errorf("%d records", len(count))
	}
}
