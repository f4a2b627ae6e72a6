package fetch

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
)

// getFile reads a local file under the same size cap as https. There are no validators:
// reading a local file costs less than deciding whether it changed.
func (f *Fetcher) getFile(ctx context.Context, u *url.URL) (*Result, error) {
	shown := shownURL(u)
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("fetch %s: %w: file URLs name a local absolute path (file:///path)", shown, ErrScheme)
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return nil, fmt.Errorf("fetch %s: %w: file URLs need an absolute path (file:///path)", shown, ErrScheme)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", shown, err)
	}
	// Stat before open: opening a FIFO would block with no way to cancel, and a device such
	// as /dev/zero has no meaningful size.
	fi, err := os.Stat(u.Path)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", shown, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("fetch %s: not a regular file", shown)
	}
	if fi.Size() > f.maxSize {
		return nil, fmt.Errorf("fetch %s: %w: %d bytes is over the %d-byte cap", shown, ErrTooLarge, fi.Size(), f.maxSize)
	}
	fh, err := os.Open(u.Path)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", shown, err)
	}
	defer fh.Close()
	// The file may have grown since Stat; the cap holds on what is actually read.
	body, err := readCapped(fh, f.maxSize)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", shown, err)
	}
	return &Result{Body: body}, nil
}

// readCapped reads all of r, failing with ErrTooLarge as soon as it yields more than limit
// bytes; it never holds more than limit+1 bytes.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	n := limit + 1
	if n <= 0 { // limit is math.MaxInt64
		n = limit
	}
	body, err := io.ReadAll(io.LimitReader(r, n))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: more than the %d-byte cap", ErrTooLarge, limit)
	}
	return body, nil
}
