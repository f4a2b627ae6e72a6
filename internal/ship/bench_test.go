package ship

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"

	"github.com/vmgate/vmgate/internal/config"
)

// BenchmarkShipTLS ships a 20,000-record journal (about 1 KB of JSON per record) over TLS to
// an in-process receiver that only counts frames, from an empty cursor each time: the
// journal walk with its hash checks, the ECS and RFC 5424 encoding, TLS and the confirming
// close. The issue's target is 20,000 records/s; scripts/bench.sh and the rsyslog integration
// test measure against the real rsyslog.
func BenchmarkShipTLS(b *testing.B) {
	const records = 20000
	dir := b.TempDir()
	appendRecords(b, dir, 0, records)
	pki := newTestPKI(b)
	cert, _, _ := pki.issue(b, "server", "siem.test", false)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var frames atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go countFrames(c, &frames)
		}
	}()
	sh := testShipper(b, dir, []config.Sink{tlsSink(ln.Addr().String(), pki.caFile, "siem.test")}, Options{})
	b.ResetTimer()
	for b.Loop() {
		os.Remove(CursorPath(dir, "siem"))
		if k, err := once(b, sh); err != nil || k.Shipped != records {
			b.Fatalf("%+v %v", k, err)
		}
	}
	b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "records/s")
	if got := frames.Load(); got != int64(records*b.N) {
		b.Fatalf("receiver counted %d frames, want %d", got, records*b.N)
	}
}

// countFrames reads octet-counted frames until EOF, then closes: a receiver at its cheapest.
func countFrames(c net.Conn, n *atomic.Int64) {
	defer c.Close()
	buf := make([]byte, 0, 256<<10)
	chunk := make([]byte, 64<<10)
	for {
		k, err := c.Read(chunk)
		buf = append(buf, chunk[:k]...)
		msgs, rest, ferr := SplitFrames(buf)
		if ferr != nil {
			return
		}
		n.Add(int64(len(msgs)))
		buf = append(buf[:0], rest...)
		if err == io.EOF || err != nil {
			return
		}
	}
}
