// Package snapshot is the compiled form of the endorsement state that the hook reads at every
// VM start. A lookup opens the file read-only and touches a handful of B+tree pages, so it
// costs the same at 10 images and at 100,000: the hook never parses the whole snapshot.
//
// It is linked into the hook: keep its imports to the standard library and bbolt.
package snapshot

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vmgate/vmgate/internal/atomicfile"
)

// Format is the snapshot layout version; Open refuses others.
const Format = 1

var (
	bucketMeta   = []byte("meta")
	bucketSHA512 = []byte("sha512")
	bucketGlance = []byte("glance")
	bucketBlocks = []byte("blocks")
	// bucketNovaBase maps the sha1 of a Glance id (20 bytes) to the id: Nova names the
	// hypervisor's copy of an image <instances_path>/_base/<sha1 hex of the id>.
	bucketNovaBase = []byte("nova_base")
	keyMeta        = []byte("meta")
)

// Status of an image in one subscription's list.
type Status string

const (
	Endorsed Status = "endorsed"
	Revoked  Status = "revoked"
	Expired  Status = "expired"
)

// Meta describes a whole snapshot.
type Meta struct {
	Format  int       `json:"format"`
	Serial  uint64    `json:"serial"`  // increases with every snapshot written on this node
	Created time.Time `json:"created"` // when vmgate sync wrote it
	// Expires is the earliest time one of the lists behind it stops vouching (its
	// dc:date:expires, or its dc:date:created plus the subscription's max_age). After it the
	// snapshot is stale and the hook refuses every start until vmgate sync runs again.
	Expires time.Time `json:"expires"`
	Lists   []ListRef `json:"lists"`
	Images  int       `json:"images"` // distinct sha512 values it knows, whatever their status
	Blocks  int       `json:"blocks"` // the site's blocks in force when it was written
}

// ListRef names one accepted list behind the snapshot.
type ListRef struct {
	Subscription string    `json:"subscription"`
	Identifier   string    `json:"identifier"`
	Version      string    `json:"version"`
	Created      time.Time `json:"created"`
	Expires      time.Time `json:"expires"`
	Endorser     string    `json:"endorser"`
}

// Entry is everything the snapshot knows of one image (one sha512): one Image per
// subscription whose lists name it now or named it before.
type Entry struct {
	SHA512 string  `json:"sha512"`
	Images []Image `json:"images"`
	// GlanceIDs are the OpenStack image ids whose bytes have this sha512.
	GlanceIDs []string `json:"glance_ids,omitempty"`
}

// Image is one subscription's word on an image.
type Image struct {
	Subscription string    `json:"subscription"`
	List         string    `json:"list"`         // the list's dc:identifier
	ListVersion  string    `json:"list_version"` // the version that last endorsed or revoked it
	Endorser     string    `json:"endorser,omitempty"`
	Identifier   string    `json:"identifier"`
	Title        string    `json:"title,omitempty"`
	Version      string    `json:"version,omitempty"`
	Status       Status    `json:"status"`
	Since        time.Time `json:"since"`            // when it was endorsed (zero if never)
	Expires      time.Time `json:"expires,omitzero"` // when the endorsement lapses (image, list or max_age)
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	Reason       string    `json:"reason,omitempty"` // why it is revoked or expired
}

// StatusAt is the image's status at now: an endorsement whose expiry has passed since the
// snapshot was written is expired, whatever the snapshot said then.
func (im *Image) StatusAt(now time.Time) Status {
	if im.Status == Endorsed && !im.Expires.IsZero() && !now.Before(im.Expires) {
		return Expired
	}
	return im.Status
}

// ReasonAt says why the image is not endorsed at now ("" when it is).
func (im *Image) ReasonAt(now time.Time) string {
	switch im.StatusAt(now) {
	case Endorsed:
		return ""
	case Expired:
		if im.Status == Endorsed {
			return fmt.Sprintf("endorsement expired at %s", im.Expires.UTC().Format(time.RFC3339))
		}
	}
	return im.Reason
}

// EndorsedAt returns an image record that endorses the entry at now, if any does.
func (e *Entry) EndorsedAt(now time.Time) (*Image, bool) {
	for i := range e.Images {
		if e.Images[i].StatusAt(now) == Endorsed {
			return &e.Images[i], true
		}
	}
	return nil, false
}

// Latest returns the record that changed last: the one to quote when nothing endorses the
// image any more.
func (e *Entry) Latest() *Image {
	var best *Image
	for i := range e.Images {
		if im := &e.Images[i]; best == nil || im.changedAt().After(best.changedAt()) {
			best = im
		}
	}
	return best
}

func (im *Image) changedAt() time.Time {
	if im.RevokedAt.After(im.Expires) {
		return im.RevokedAt
	}
	return im.Expires
}

// ErrStale is returned by Fresh when the snapshot has expired.
var ErrStale = errors.New("snapshot is stale")

// Snapshot is an open, read-only snapshot.
type Snapshot struct {
	db   *bolt.DB
	meta Meta
}

// Open opens the snapshot at path read-only and reads its metadata. A missing or corrupt
// file is an error; callers must refuse what they cannot check.
func Open(path string) (*Snapshot, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	s := &Snapshot{db: db}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if b == nil {
			return errors.New("no metadata")
		}
		v := b.Get(keyMeta)
		if v == nil {
			return errors.New("no metadata")
		}
		return json.Unmarshal(v, &s.meta)
	})
	if err == nil && s.meta.Format != Format {
		err = fmt.Errorf("format %d, this vmgate reads format %d", s.meta.Format, Format)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("snapshot %s is corrupt: %w", path, err)
	}
	return s, nil
}

// Close releases the file.
func (s *Snapshot) Close() error { return s.db.Close() }

// Meta returns the snapshot's metadata.
func (s *Snapshot) Meta() Meta { return s.meta }

// Fresh returns ErrStale (wrapped, with the time) when the snapshot has expired at now.
func (s *Snapshot) Fresh(now time.Time) error {
	if !now.Before(s.meta.Expires) {
		return fmt.Errorf("%w: it expired at %s", ErrStale, s.meta.Expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// Lookup finds the image with this sha512 (hex, any case). ok is false when the snapshot has
// never heard of it.
func (s *Snapshot) Lookup(sha512 string) (e *Entry, ok bool, err error) {
	key, err := hex.DecodeString(sha512)
	if err != nil || len(key) != 64 {
		return nil, false, fmt.Errorf("snapshot lookup: %q is not a sha512", sha512)
	}
	return s.get(bucketSHA512, key)
}

// LookupGlance finds the image behind a Glance image id (a uuid, any case).
func (s *Snapshot) LookupGlance(id string) (*Entry, bool, error) {
	return s.get(bucketGlance, []byte(strings.ToLower(id)))
}

// ErrNoNovaIndex is returned by LookupNovaBase on a snapshot written before the index of
// Nova's base file names existed.
var ErrNoNovaIndex = errors.New("the snapshot has no index of Nova base images (written by an older vmgate): run `vmgate sync`")

// NovaBaseName is the file name Nova gives the hypervisor's copy of a Glance image under
// <instances_path>/_base: the sha1 hex of the image id (nova.virt.imagecache.get_cache_fname).
// Glance ids are lower-case uuids, as Nova stores them.
func NovaBaseName(glanceID string) string {
	h := sha1.Sum([]byte(strings.ToLower(glanceID)))
	return hex.EncodeToString(h[:])
}

// LookupNovaBase finds the Glance image whose Nova base file is named name (40 hex digits)
// and the image behind it, in one read. ok is false when no mapped Glance id has that name.
// sha1 is used as Nova uses it, as a name: a collision would need a second preimage of a
// Glance id that vmgate sync mapped, and only Nova writes under _base.
func (s *Snapshot) LookupNovaBase(name string) (glanceID string, e *Entry, ok bool, err error) {
	key, err := hex.DecodeString(name)
	if err != nil || len(key) != sha1.Size || strings.ToLower(name) != name {
		return "", nil, false, fmt.Errorf("snapshot lookup: %q is not a Nova base image name", name)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		nb := tx.Bucket(bucketNovaBase)
		if nb == nil {
			return ErrNoNovaIndex
		}
		id := nb.Get(key)
		if id == nil {
			return nil
		}
		glanceID = string(id)
		gb, sb := tx.Bucket(bucketGlance), tx.Bucket(bucketSHA512)
		if gb == nil || sb == nil {
			return errors.New("missing buckets")
		}
		sum := gb.Get(id)
		if sum == nil {
			return fmt.Errorf("Glance id %s has no sha512", glanceID)
		}
		v := sb.Get(sum)
		if v == nil {
			return fmt.Errorf("Glance id %s names a missing image", glanceID)
		}
		e = new(Entry)
		return json.Unmarshal(v, e)
	})
	if errors.Is(err, ErrNoNovaIndex) {
		return "", nil, false, err
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("snapshot lookup: corrupt entry: %w", err)
	}
	return glanceID, e, e != nil, nil
}

// get looks key up in bucket; the glance bucket maps to a sha512 key, looked up in turn.
func (s *Snapshot) get(bucket, key []byte) (*Entry, bool, error) {
	var e *Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		if string(bucket) == string(bucketGlance) {
			b := tx.Bucket(bucketGlance)
			if b == nil {
				return nil
			}
			if key = b.Get(key); key == nil {
				return nil
			}
			bucket = bucketSHA512
		}
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		v := b.Get(key)
		if v == nil {
			return nil
		}
		e = new(Entry)
		return json.Unmarshal(v, e)
	})
	if err != nil {
		return nil, false, fmt.Errorf("snapshot lookup: corrupt entry: %w", err)
	}
	return e, e != nil, nil
}

// Each calls fn for every image entry, in sha512 order.
func (s *Snapshot) Each(fn func(*Entry) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSHA512)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("snapshot: corrupt entry: %w", err)
			}
			return fn(&e)
		})
	})
}

// Write compiles entries and the site's blocks into a new snapshot at path, atomically: readers see the old
// snapshot or the new one, never a mix, and the new one is durable when Write returns. The
// file is writable by its owner only.
func Write(path string, meta Meta, entries []Entry, blocks []Block) (err error) {
	meta.Format = Format
	meta.Images = len(entries)
	meta.Blocks = len(blocks)
	dir := filepath.Dir(path)
	tmpf, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	tmp := tmpf.Name()
	tmpf.Close()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	// Mapping the whole file up front spares bbolt a remap each time the file doubles.
	db, err := bolt.Open(tmp, 0o644, &bolt.Options{NoFreelistSync: true, InitialMmapSize: 1 << 20 * (1 + len(entries)/1000)})
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := fill(tx, meta, entries); err != nil {
			return err
		}
		return fillBlocks(tx, blocks)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	// bbolt synced the data at commit; make the mode and the rename durable too.
	if err = os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return atomicfile.SyncDir(dir)
}

func fill(tx *bolt.Tx, meta Meta, entries []Entry) error {
	mb, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := mb.Put(keyMeta, raw); err != nil {
		return err
	}
	gb, err := tx.CreateBucket(bucketGlance)
	if err != nil {
		return err
	}
	nb, err := tx.CreateBucket(bucketNovaBase)
	if err != nil {
		return err
	}
	sb, err := tx.CreateBucket(bucketSHA512)
	if err != nil {
		return err
	}
	// Keys go in sorted, so pages can be packed full: a smaller file and fewer pages to touch.
	sb.FillPercent = 1.0
	keyed := make([]struct {
		key []byte
		e   *Entry
	}, len(entries))
	for i := range entries {
		k, err := hex.DecodeString(entries[i].SHA512)
		if err != nil || len(k) != 64 {
			return fmt.Errorf("entry %d: %q is not a sha512", i, entries[i].SHA512)
		}
		keyed[i].key, keyed[i].e = k, &entries[i]
	}
	sort.Slice(keyed, func(i, j int) bool { return string(keyed[i].key) < string(keyed[j].key) })
	for i, k := range keyed {
		if i > 0 && string(keyed[i-1].key) == string(k.key) {
			return fmt.Errorf("sha512 %s appears twice", k.e.SHA512)
		}
		v, err := json.Marshal(k.e)
		if err != nil {
			return err
		}
		if err := sb.Put(k.key, v); err != nil {
			return err
		}
		for _, id := range k.e.GlanceIDs {
			if gb.Get([]byte(id)) != nil {
				return fmt.Errorf("glance image %s maps to two sha512 values", id)
			}
			if err := gb.Put([]byte(id), k.key); err != nil {
				return err
			}
			base := sha1.Sum([]byte(strings.ToLower(id)))
			if other := nb.Get(base[:]); other != nil {
				return fmt.Errorf("glance images %s and %s have the same Nova base name", other, id)
			}
			if err := nb.Put(base[:], []byte(id)); err != nil {
				return err
			}
		}
	}
	return nil
}
