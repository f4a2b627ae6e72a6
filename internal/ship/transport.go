package ship

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

// sink is one destination. Records go out in sessions: what a session wrote counts as
// accepted only when commit returns nil (see "What accepted means" in the package doc).
type sink interface {
	describe() string // for messages: where the records go
	// encode appends one record as the sink sends it. It runs on several goroutines at
	// once, each with its own scratch.
	encode(dst []byte, sc *scratch, e *journal.Entry, r *trace.Record) ([]byte, error)
	open(ctx context.Context) (session, error)
}

// scratch is one encoder's reusable memory.
type scratch struct{ doc, head []byte }

type session interface {
	write(records []byte) error // encoded records, in order
	// commit makes everything written accepted, or fails; either way the session is over.
	commit() error
	// abort ends the session without a commit; nothing written counts.
	abort()
}

// syslogSink sends RFC 5424 messages over TCP, with TLS unless tls: false.
type syslogSink struct {
	address string
	tls     *tls.Config // nil: plain TCP
	appName string
	opts    *Options
}

func newSyslogSink(c *config.Sink, opts *Options) (*syslogSink, error) {
	s := &syslogSink{address: c.Address, appName: c.AppName, opts: opts}
	if !c.UseTLS() {
		return s, nil
	}
	// TLS 1.2 is RFC 5425's floor (RFC 9662 updates it to 1.2); rsyslog's gtls speaks 1.3 too.
	s.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", c.CAFile)
		}
		s.tls.RootCAs = pool // the SIEM's CA only, not every public CA as well
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file and key_file: %w", err)
		}
		s.tls.Certificates = []tls.Certificate{cert}
	}
	return s, nil
}

func (s *syslogSink) describe() string {
	if s.tls == nil {
		return "syslog tcp://" + s.address
	}
	return "syslog tls://" + s.address
}

func (s *syslogSink) open(ctx context.Context) (session, error) {
	d := net.Dialer{Timeout: s.opts.DialTimeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", s.address)
	if err != nil {
		return nil, err
	}
	tcp := c.(*net.TCPConn)
	sess := &syslogSession{sink: s, tcp: tcp, conn: c}
	// A cancelled ctx must end a write that a stalled receiver holds up.
	sess.stop = context.AfterFunc(ctx, func() { tcp.SetDeadline(time.Unix(1, 0)) })
	if s.tls != nil {
		tc := tls.Client(c, s.tls)
		hctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			sess.abort()
			return nil, fmt.Errorf("tls: %w", err)
		}
		sess.tlsConn, sess.conn = tc, tc
	}
	sess.w = bufio.NewWriterSize(deadlineWriter{sess.conn, s.opts.IOTimeout}, 64<<10)
	return sess, nil
}

type syslogSession struct {
	sink    *syslogSink
	tcp     *net.TCPConn
	tlsConn *tls.Conn // nil for plain TCP
	conn    net.Conn  // tlsConn or tcp
	w       *bufio.Writer
	stop    func() bool
}

// encode appends one octet-counted RFC 5424 message.
func (s *syslogSink) encode(dst []byte, sc *scratch, e *journal.Entry, r *trace.Record) ([]byte, error) {
	var err error
	if sc.doc, err = encodeECS(sc.doc[:0], e, r); err != nil {
		return dst, fmt.Errorf("record %d: %w", e.Seq, err)
	}
	sc.head = appendHead(sc.head[:0], s.appName, e, r)
	return appendFrame(dst, sc.head, sc.doc), nil
}

func (s *syslogSession) write(p []byte) error {
	_, err := s.w.Write(p)
	return err
}

func (s *syslogSession) commit() error {
	defer s.abort()
	if err := s.w.Flush(); err != nil {
		return err
	}
	// End our side: close_notify for TLS, then FIN. The receiver reads up to it, and only a
	// receiver that has read everything before it closes cleanly.
	if s.tlsConn != nil {
		if err := s.tlsConn.CloseWrite(); err != nil {
			return err
		}
	}
	if err := s.tcp.CloseWrite(); err != nil {
		return err
	}
	deadline := time.Now().Add(s.sink.opts.ConfirmTimeout)
	s.conn.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, s.conn) // a syslog receiver sends nothing; nil at its close
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	if err != nil && !timedOut {
		return fmt.Errorf("receiver did not close cleanly: %w", err)
	}
	// The peer's close, or its silence, accepts the session only once its TCP acknowledged
	// every byte: a peer that closed before reading our data resets instead of acknowledging
	// it, and the EOF we read may have come before that reset.
	for {
		n, sockErr, ok := unacked(s.tcp)
		switch {
		case !ok && !timedOut:
			return nil // no way to ask: the clean close has to do
		case !ok:
			return fmt.Errorf("receiver did not close the connection within %v", s.sink.opts.ConfirmTimeout)
		case sockErr != nil:
			return fmt.Errorf("receiver reset the connection: %w", sockErr)
		case n == 0:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("receiver did not acknowledge the last %d bytes within %v", n, s.sink.opts.ConfirmTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *syslogSession) abort() {
	s.stop()
	s.tcp.Close()
}

// deadlineWriter gives each write to the connection a deadline, so that a receiver that
// stops reading fails the session instead of holding the shipper forever.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Write(p)
}
