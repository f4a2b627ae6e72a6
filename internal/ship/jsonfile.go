package ship

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vmgate/vmgate/internal/atomicfile"
	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

// fileSink appends ECS JSON lines to a file that a log shipper (Filebeat, Fluent Bit,
// Vector) follows. The file is opened for each session, so that a rotation (rename, then a
// new file) needs no signal.
type fileSink struct {
	path string
}

func (s *fileSink) describe() string { return "jsonfile " + s.path }

// fileMode lets a log shipper in the adm group read the records, nobody else: they name
// users and addresses.
const fileMode = 0o640

func (s *fileSink) open(context.Context) (session, error) {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	_, err := os.Stat(s.path)
	created := errors.Is(err, fs.ErrNotExist)
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return nil, err
	}
	sess := &fileSession{f: f, w: bufio.NewWriterSize(f, 256<<10), created: created, dir: dir}
	// A crash in an earlier session can have left half a line; start on a line of our own so
	// that it stays one bad line, not two. Its records are sent again, since that session
	// was never committed.
	fi, err := f.Stat()
	if err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err = f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			err = sess.w.WriteByte('\n')
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return sess, nil
}

type fileSession struct {
	f       *os.File
	w       *bufio.Writer
	created bool
	dir     string
}

// encode appends one line of ECS JSON.
func (s *fileSink) encode(dst []byte, _ *scratch, e *journal.Entry, r *trace.Record) ([]byte, error) {
	dst, err := encodeECS(dst, e, r)
	if err != nil {
		return dst, fmt.Errorf("record %d: %w", e.Seq, err)
	}
	return append(dst, '\n'), nil
}

func (s *fileSession) write(p []byte) error {
	_, err := s.w.Write(p)
	return err
}

// commit: the lines are accepted once they are on disk, and a new file's name too.
func (s *fileSession) commit() error {
	defer s.f.Close()
	if err := s.w.Flush(); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	if s.created {
		return atomicfile.SyncDir(s.dir)
	}
	return nil
}

func (s *fileSession) abort() { s.f.Close() }
