package policy

import (
	"time"

	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// emptySnapshotLife is how long a snapshot that vouches for no list stays fresh. It admits
// nothing either way; its expiry only decides whether the hook says "not endorsed" or "run
// vmgate sync".
const emptySnapshotLife = 24 * time.Hour

// Compile turns the state of the configured subscriptions (in their configured order) into
// the snapshot's metadata and entries.
func Compile(st *State, subs []string, now time.Time) (snapshot.Meta, []snapshot.Entry) {
	meta := snapshot.Meta{Serial: st.Serial, Created: now}
	byHash := map[string]int{}
	var entries []snapshot.Entry
	for _, name := range subs {
		ss := st.Subscriptions[name]
		if ss == nil {
			continue
		}
		acc := ss.Accepted
		if acc != nil {
			meta.Lists = append(meta.Lists, snapshot.ListRef{
				Subscription: name, Identifier: acc.Identifier, Version: acc.Version,
				Created: acc.Created, Expires: acc.Expires, Endorser: acc.Endorser.DN,
			})
			if l := acc.Lapses(); l.After(now) && (meta.Expires.IsZero() || l.Before(meta.Expires)) {
				meta.Expires = l
			}
		}
		for _, sha := range sortedKeys(ss.Images) {
			im := ss.Images[sha]
			rec := snapshot.Image{
				Subscription: name, ListVersion: im.ListVersion, Identifier: im.Identifier,
				Title: im.Title, Version: im.Version, Status: im.Status, Since: im.Since,
				RevokedAt: im.RevokedAt, Reason: im.Reason,
			}
			if acc != nil {
				rec.List, rec.Endorser = acc.Identifier, acc.Endorser.DN
				if im.Status == snapshot.Endorsed {
					rec.Expires, _ = lapse(acc, im)
				}
			}
			i, seen := byHash[sha]
			if !seen {
				i = len(entries)
				byHash[sha] = i
				entries = append(entries, snapshot.Entry{SHA512: sha})
			}
			entries[i].Images = append(entries[i].Images, rec)
		}
	}
	if st.Glance != nil {
		for _, id := range sortedKeys(st.Glance.Images) {
			if i, ok := byHash[st.Glance.Images[id].SHA512]; ok {
				entries[i].GlanceIDs = append(entries[i].GlanceIDs, id)
			}
		}
	}
	if meta.Expires.IsZero() {
		meta.Expires = now.Add(emptySnapshotLife)
	}
	return meta, entries
}
