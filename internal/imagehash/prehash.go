package imagehash

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Stats counts what Prehash did.
type Stats struct {
	Files  int   // regular files seen
	Hashed int   // files read and hashed
	Cached int   // files whose sum was already cached
	Bytes  int64 // bytes hashed
	Errors int   // files and directories skipped with a warning
	Sealed int   // files made immutable now
	// Unsealed counts files left writable: overlays, files a running VM writes to, and
	// files the file system cannot flag (each logged with the reason).
	Unsealed int
}

// Prehash hashes every regular file under dirs that is not cached yet, so that the first start
// of a VM does not wait for its image to be read. It is for `vmgate sync`, not for the hook.
//
// With seal, it first makes each file immutable (MakeImmutable), so that its sum can be
// served from the cache from then on (see trust); it leaves writable, and logs, qcow2
// overlays and files a running QEMU has open for writing (a base image should not be
// either).
//
// The directories themselves may be symbolic links; inside them, symbolic links (to files or
// directories) are not followed, so the walk stays within the trees it was given. Files that
// cannot be read are logged, counted and skipped. The error is ctx's when it is done, or a
// failure to write the cache: hashing more images would then be wasted.
func (c *Cache) Prehash(ctx context.Context, dirs []string, log *slog.Logger, seal bool) (Stats, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var st Stats
	var locked map[fileKey]bool
	if seal {
		locked = writeLocked()
	}
	buf := make([]byte, bufSize)
	for _, dir := range dirs {
		root, err := filepath.EvalSymlinks(dir)
		if err != nil {
			log.Warn("image directory skipped", "path", dir, "err", err)
			st.Errors++
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if err != nil {
				// An unreadable directory: WalkDir skips its contents and goes on.
				log.Warn("image path skipped", "path", path, "err", err)
				st.Errors++
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			st.Files++
			if seal {
				c.seal(path, locked, log, &st)
			}
			t0 := time.Now()
			res, err := c.sum(ctx, path, buf)
			switch {
			case err != nil && ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				log.Warn("image skipped", "path", path, "err", err)
				st.Errors++
			case res.StoreErr != nil:
				return res.StoreErr
			case res.Cached:
				st.Cached++
			default:
				st.Hashed++
				st.Bytes += res.Size
				log.Debug("image hashed", "path", path, "bytes", res.Size, "duration", time.Since(t0))
			}
			return nil
		})
		if err != nil {
			return st, fmt.Errorf("prehash %s: %w", dir, err)
		}
	}
	return st, nil
}

// seal makes one file immutable, or says why not.
func (c *Cache) seal(path string, locked map[fileKey]bool, log *slog.Logger, st *Stats) {
	if why := sealable(path, locked); why != "" {
		log.Info("image left writable: its cached sum is not trusted", "path", path, "why", why)
		st.Unsealed++
		return
	}
	set, err := MakeImmutable(path)
	switch {
	case err != nil:
		log.Warn("image not made immutable: its cached sum is trusted only if root alone can write it", "path", path, "err", err)
		st.Unsealed++
	case set:
		log.Info("image made immutable (chattr -i to change it)", "path", path)
		st.Sealed++
	}
}

// staleTemp is how old a temporary file must be before Prune takes it for the leftover of a
// writer that died, rather than one still being written.
const staleTemp = time.Hour

// Prune removes entries whose recorded path no longer leads to the file they describe (deleted
// or rewritten images), corrupt or untrusted entries, and temporary files left by writers that
// died. It reads the whole directory: call it from `vmgate sync`, never from the hook. Entries
// whose path cannot be checked for another reason (a mount that is down) are kept.
func (c *Cache) Prune(ctx context.Context, log *slog.Logger) (removed int, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ents, err := os.ReadDir(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("prune hash cache: %w", err)
	}
	for _, de := range ents {
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("prune hash cache: %w", err)
		}
		name := de.Name()
		p := filepath.Join(c.dir, name)
		if strings.HasPrefix(name, ".") {
			// atomicfile's temporary files are ".<name>.tmp-<random>".
			fi, err := de.Info()
			if err != nil || !strings.Contains(name, ".tmp-") || time.Since(fi.ModTime()) < staleTemp {
				continue
			}
		} else if !staleEntry(p, name, log) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("hash cache entry not removed", "path", p, "err", err)
			continue
		}
		removed++
	}
	return removed, nil
}

// staleEntry reports whether the entry at p describes no file any more.
func staleEntry(p, name string, log *slog.Logger) bool {
	e, err := readEntry(p)
	if err != nil || e.key.name() != name {
		log.Info("removing unusable hash cache entry", "path", p, "err", err)
		return true
	}
	id, err := statIdentity(e.path)
	if err != nil {
		gone := errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNotRegular)
		if !gone {
			log.Warn("hash cache entry kept: image not checked", "path", e.path, "err", err)
		}
		return gone
	}
	return id != e.key
}
