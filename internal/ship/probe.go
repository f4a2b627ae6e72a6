package ship

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/vmgate/vmgate/internal/config"
)

// Probe checks that a sink would take records, without sending any: for syslog it connects
// (and completes the TLS handshake, with the sink's CA and client certificate) as the
// shipper does, then hangs up; for jsonfile it checks that the file, or the nearest
// directory that exists on its path, is writable by this process. It returns where the sink
// is, as messages name it.
func Probe(ctx context.Context, c config.Sink, opts Options) (where string, err error) {
	opts.fill()
	switch c.Type {
	case config.SinkSyslog:
		s, err := newSyslogSink(&c, &opts)
		if err != nil {
			return "syslog " + c.Address, err
		}
		sess, err := s.open(ctx)
		if err != nil {
			return s.describe(), err
		}
		sess.abort()
		return s.describe(), nil
	case config.SinkJSONFile:
		s := &fileSink{path: c.Path}
		return s.describe(), writable(c.Path)
	}
	return c.Type, fmt.Errorf("unknown sink type %q", c.Type)
}

// writable reports whether path can be written, or created: the shipper creates the file
// and its missing directories.
func writable(path string) error {
	p := path
	for {
		err := syscall.Access(p, 2 /* W_OK */)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return &fs.PathError{Op: "write", Path: p, Err: err}
		}
		parent := filepath.Dir(p)
		if parent == p {
			return &fs.PathError{Op: "write", Path: path, Err: err}
		}
		p = parent
		if _, serr := os.Stat(p); serr == nil {
			if err := syscall.Access(p, 2|1 /* W_OK|X_OK */); err != nil {
				return &fs.PathError{Op: "create in", Path: p, Err: err}
			}
			return nil
		}
	}
}
