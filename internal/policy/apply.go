package policy

import (
	"fmt"
	"slices"
	"time"

	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// History event names. They are part of the history file's format.
const (
	EventListAccepted  = "list.accepted"
	EventListRefused   = "list.refused"
	EventImageEndorsed = "image.endorsed"
	EventImageChanged  = "image.changed"
	EventImageRevoked  = "image.revoked"
	EventImageExpired  = "image.expired"
)

// Event is one entry of the policy history: what happened to a list or an image, and why.
// The journal adds the time, the sequence number and the hash chain.
type Event struct {
	Event        string   `json:"event"`
	Subscription string   `json:"subscription"`
	List         string   `json:"list,omitempty"` // the list's dc:identifier
	ListVersion  string   `json:"list_version,omitempty"`
	Image        string   `json:"image,omitempty"` // the image's dc:identifier
	SHA512       string   `json:"sha512,omitempty"`
	Title        string   `json:"title,omitempty"`
	Version      string   `json:"version,omitempty"` // the image's hv:version
	Reason       string   `json:"reason,omitempty"`  // a Reason code, for refusals
	Message      string   `json:"message,omitempty"`
	Changes      []string `json:"changes,omitempty"` // keys that changed, for image.changed
	ListSHA256   string   `json:"list_sha256,omitempty"`
	Archive      string   `json:"archive,omitempty"` // where the accepted bytes are kept
	GlanceID     string   `json:"glance_id,omitempty"`
	Cloud        string   `json:"cloud,omitempty"` // for glance.* events: the cloud's name
	// Block is the site's block, for block.* events: what, why, until when, who, from where.
	Block *snapshot.Block `json:"block,omitempty"`
}

func imageEvent(name, sub string, acc *Accepted, st *ImageState, msg string) Event {
	return Event{
		Event: name, Subscription: sub, List: acc.Identifier, ListVersion: acc.Version,
		Image: st.Identifier, SHA512: st.SHA512, Title: st.Title, Version: st.Version, Message: msg,
	}
}

// apply brings one subscription's image states in line with a newly accepted list and
// returns what changed. Images the list no longer names are revoked from now.
func apply(sub string, ss *SubState, l *List, acc *Accepted, now time.Time) []Event {
	var events []Event
	listed := make(map[string]bool, len(l.Images))
	byIdentifier := make(map[string]*Image, len(l.Images))
	for i := range l.Images {
		img := &l.Images[i]
		listed[img.SHA512] = true
		byIdentifier[img.Identifier] = img
		st := ss.Images[img.SHA512]
		fresh := &ImageState{
			SHA512: img.SHA512, Identifier: img.Identifier, Title: img.Title, Version: img.Version,
			URI: img.URI, Size: img.Size, Expires: img.Expires, ListVersion: l.Version,
		}
		if st != nil && st.Status == snapshot.Endorsed {
			fresh.Status, fresh.Since = snapshot.Endorsed, st.Since
			if changes := diffImage(st, fresh); len(changes) > 0 {
				ev := imageEvent(EventImageChanged, sub, acc, fresh, "")
				ev.Changes = changes
				events = append(events, ev)
			}
			ss.Images[img.SHA512] = fresh
			continue
		}
		if !img.Expires.IsZero() && !now.Before(img.Expires) {
			// Listed, but already past its own expiry: never endorsed by this list.
			fresh.Status, fresh.RevokedAt = snapshot.Expired, img.Expires
			fresh.Reason = fmt.Sprintf("image expired at %s (its dc:date:expires)", img.Expires.UTC().Format(TimeLayout))
			ss.Images[img.SHA512] = fresh
			if st == nil || st.Status != snapshot.Expired {
				events = append(events, imageEvent(EventImageExpired, sub, acc, fresh, fresh.Reason))
			}
			continue
		}
		fresh.Status, fresh.Since = snapshot.Endorsed, now
		ss.Images[img.SHA512] = fresh
		msg := ""
		if st != nil {
			msg = fmt.Sprintf("endorsed again (was %s: %s)", st.Status, st.Reason)
		}
		events = append(events, imageEvent(EventImageEndorsed, sub, acc, fresh, msg))
	}
	for _, sha := range sortedKeys(ss.Images) {
		st := ss.Images[sha]
		if listed[sha] || st.Status != snapshot.Endorsed {
			continue
		}
		st.Status, st.RevokedAt, st.ListVersion = snapshot.Revoked, now, l.Version
		st.Reason = fmt.Sprintf("removed from list %q version %s on %s", sub, l.Version, now.UTC().Format(TimeLayout))
		if repl, ok := byIdentifier[st.Identifier]; ok {
			st.Reason = fmt.Sprintf("replaced by version %s (sha512 %s…) in list %q version %s on %s",
				repl.Version, repl.SHA512[:16], sub, l.Version, now.UTC().Format(TimeLayout))
		}
		events = append(events, imageEvent(EventImageRevoked, sub, acc, st, st.Reason))
	}
	return events
}

// expire marks endorsed images whose own expiry, or whose list's, has passed.
func expire(sub string, ss *SubState, now time.Time) []Event {
	acc := ss.Accepted
	if acc == nil {
		return nil
	}
	var events []Event
	for _, sha := range sortedKeys(ss.Images) {
		st := ss.Images[sha]
		if st.Status != snapshot.Endorsed {
			continue
		}
		at, why := lapse(acc, st)
		if now.Before(at) {
			continue
		}
		st.Status, st.RevokedAt, st.Reason = snapshot.Expired, at, why
		events = append(events, imageEvent(EventImageExpired, sub, acc, st, why))
	}
	return events
}

// lapse is when an endorsed image stops being endorsed without a new list, and why.
func lapse(acc *Accepted, st *ImageState) (time.Time, string) {
	at := acc.Expires
	why := fmt.Sprintf("list %s version %s expired at %s", acc.Identifier, acc.Version, at.UTC().Format(TimeLayout))
	if acc.MaxAge > 0 && acc.Created.Add(acc.MaxAge).Before(at) {
		at = acc.Created.Add(acc.MaxAge)
		why = fmt.Sprintf("list %s version %s became older than max_age %s at %s (no newer list accepted)",
			acc.Identifier, acc.Version, acc.MaxAge, at.UTC().Format(TimeLayout))
	}
	if !st.Expires.IsZero() && st.Expires.Before(at) {
		at = st.Expires
		why = fmt.Sprintf("image expired at %s (its dc:date:expires)", at.UTC().Format(TimeLayout))
	}
	return at, why
}

// revokeAll withdraws every endorsement of a subscription that is no longer configured.
func revokeAll(sub string, ss *SubState, now time.Time) []Event {
	var events []Event
	acc := ss.Accepted
	if acc == nil {
		acc = &Accepted{}
	}
	for _, sha := range sortedKeys(ss.Images) {
		st := ss.Images[sha]
		if st.Status != snapshot.Endorsed {
			continue
		}
		st.Status, st.RevokedAt = snapshot.Revoked, now
		st.Reason = fmt.Sprintf("subscription %q was removed from the configuration", sub)
		events = append(events, imageEvent(EventImageRevoked, sub, acc, st, st.Reason))
	}
	return events
}

func diffImage(old, cur *ImageState) []string {
	var c []string
	if old.Identifier != cur.Identifier {
		c = append(c, "dc:identifier")
	}
	if old.Title != cur.Title {
		c = append(c, "dc:title")
	}
	if old.Version != cur.Version {
		c = append(c, "hv:version")
	}
	if old.URI != cur.URI {
		c = append(c, "hv:uri")
	}
	if old.Size != cur.Size {
		c = append(c, "hv:size")
	}
	if !old.Expires.Equal(cur.Expires) {
		c = append(c, "dc:date:expires")
	}
	return c
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
