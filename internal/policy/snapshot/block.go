package snapshot

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Kinds of block: what a site's block names.
const (
	BlockImage   = "image"   // an image: a sha512, an image's dc:identifier or a Glance id
	BlockUser    = "user"    // a Keystone user id
	BlockProject = "project" // a Keystone project id
)

// Block is one of the site's own blocks: whatever the endorsers say, what it names may not
// run here until it is lifted or Until passes.
type Block struct {
	Kind   string    `json:"kind"`
	Target string    `json:"target"`
	Reason string    `json:"reason"`
	Until  time.Time `json:"until,omitzero"`
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	// Source is "cli" for `vmgate block`, "config" for the configuration's blocks.
	Source string `json:"source"`
}

// ActiveAt reports whether the block is in force at now: an expired block lifts itself
// even before the next snapshot is written.
func (b *Block) ActiveAt(now time.Time) bool { return b.Until.IsZero() || now.Before(b.Until) }

// Describe is the block in a refusal: what it names, why, and until when.
func (b *Block) Describe() string { return fmt.Sprintf("%s %s: %s", b.Kind, b.Target, b.Why()) }

// Why is the block's reason, and until when it holds.
func (b *Block) Why() string {
	if b.Until.IsZero() {
		return b.Reason
	}
	return b.Reason + " (until " + b.Until.UTC().Format(time.RFC3339) + ")"
}

// IsSHA512 reports whether s is 128 hex digits.
func IsSHA512(s string) bool {
	if len(s) != 128 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// BlockKeys are the keys under which a block is looked up. An image block on a sha512
// matches those bytes wherever they are; on anything else it matches the image whose
// dc:identifier or Glance id it is (the two never collide in practice, and a block matches
// both so that the site need not say which it meant). Image keys ignore case, as Glance
// ids and the identifiers of AppDB do.
func BlockKeys(kind, target string) []string {
	switch kind {
	case BlockImage:
		t := strings.ToLower(target)
		if IsSHA512(t) {
			return []string{"sha512:" + t}
		}
		return []string{"image:" + t}
	default:
		return []string{kind + ":" + target}
	}
}

func fillBlocks(tx *bolt.Tx, blocks []Block) error {
	bb, err := tx.CreateBucket(bucketBlocks)
	if err != nil {
		return err
	}
	for i := range blocks {
		v, err := json.Marshal(&blocks[i])
		if err != nil {
			return err
		}
		for _, k := range BlockKeys(blocks[i].Kind, blocks[i].Target) {
			if err := bb.Put([]byte(k), v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Blocked returns the site's block in force at now on what kind and id name, if any: for
// an image, id is a sha512, a dc:identifier or a Glance id. One B+tree lookup, whatever
// the number of blocks.
func (s *Snapshot) Blocked(kind, id string, now time.Time) (*Block, error) {
	return s.firstBlock(kind, []string{id}, now)
}

// ImageBlocked returns the site's block in force at now on an image, by any of its names:
// its Glance ids, its sha512, the dc:identifier any list gives it. e may be nil (an image
// no list names); sha512 may be empty (a Glance image vmgate does not know).
func (s *Snapshot) ImageBlocked(e *Entry, sha512 string, glanceIDs []string, now time.Time) (*Block, error) {
	ids := append(glanceIDs[:len(glanceIDs):len(glanceIDs)], sha512)
	if e != nil {
		ids = append(ids, e.SHA512)
		for i := range e.Images {
			ids = append(ids, e.Images[i].Identifier)
		}
	}
	return s.firstBlock(BlockImage, ids, now)
}

// firstBlock looks every id up in one read transaction and returns the first block in
// force; empty ids are skipped.
func (s *Snapshot) firstBlock(kind string, ids []string, now time.Time) (*Block, error) {
	var found *Block
	err := s.db.View(func(tx *bolt.Tx) error {
		bb := tx.Bucket(bucketBlocks)
		if bb == nil {
			return nil
		}
		for _, id := range ids {
			if id == "" {
				continue
			}
			key := BlockKeys(kind, id)[0]
			v := bb.Get([]byte(key))
			if v == nil {
				continue
			}
			var b Block
			if err := json.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("snapshot: corrupt block %s: %w", key, err)
			}
			if b.ActiveAt(now) {
				found = &b
				return nil
			}
		}
		return nil
	})
	return found, err
}
