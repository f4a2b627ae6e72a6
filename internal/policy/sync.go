package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"time"

	"github.com/vmgate/vmgate/internal/atomicfile"
	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/fetch"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
	"github.com/vmgate/vmgate/internal/policy/verify"
)

// Files under the policy directory.
const (
	stateFile   = "state.json"
	historyFile = "history.jsonl"
	lockFile    = "sync.lock"
	listsDir    = "lists"
)

// StatePath, HistoryPath: where a policy directory keeps its state and its history.
func StatePath(policyDir string) string   { return filepath.Join(policyDir, stateFile) }
func HistoryPath(policyDir string) string { return filepath.Join(policyDir, historyFile) }

// Outcome of one subscription in one sync.
type Outcome string

const (
	OutcomeAccepted  Outcome = "accepted"  // a new list version is now in force
	OutcomeUnchanged Outcome = "unchanged" // the list in force is still the newest
	OutcomeRefused   Outcome = "refused"   // the fetched list was refused; the previous one stays
	OutcomeSkipped   Outcome = "skipped"   // not in Syncer.Only: not fetched; the list in force stays
)

// Result reports one subscription's sync.
type Result struct {
	Subscription string
	Outcome      Outcome
	List         string // dc:identifier of the list in force, if any
	Version      string
	Endorsed     int // images endorsed after this sync
	Changes      map[string]int
	Refusal      *RefusalError
}

// Report is one whole sync.
type Report struct {
	Results  []Result
	Snapshot snapshot.Meta
	Events   []Event // what this sync recorded in the history, in order
	// Glance is what the sync learnt from, and did to, the cloud's Glance (nil without one).
	Glance *GlanceReport
}

// Refused reports whether any subscription's list was refused.
func (r *Report) Refused() bool {
	for _, res := range r.Results {
		if res.Outcome == OutcomeRefused {
			return true
		}
	}
	return false
}

// Syncer runs one pass over every subscription.
type Syncer struct {
	Config *config.Config
	Log    *slog.Logger
	Now    func() time.Time // the clock; time.Now when nil
	// Only, when not nil, names the subscriptions to fetch in this pass (vmgate serve syncs
	// each on its own refresh); the others keep their lists, which still lapse and still go
	// into the snapshot.
	Only []string
	// Glance, when set, is listed at every sync to map its image ids to sha512 values.
	Glance        Glance
	GlanceOptions GlanceOptions
}

// Run fetches, verifies and checks every subscription's list, records what changed in the
// history, saves the state and writes a new snapshot. A refused list is reported in the
// Report, not as an error; an error means nothing was saved (state and snapshot are as
// before) because vmgate could not record what it learnt.
func (s *Syncer) Run(ctx context.Context) (*Report, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	dir := s.Config.Paths().PolicyDir()
	if err := os.MkdirAll(filepath.Join(dir, listsDir), 0o755); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	st, err := LoadState(StatePath(dir))
	if err != nil {
		return nil, err
	}
	blocks, err := LoadBlocks(s.Config.Paths().Blocks())
	if err != nil {
		return nil, err
	}
	report := &Report{}
	var events []Event
	configured := make([]string, 0, len(s.Config.Subscriptions))
	for _, sub := range s.Config.Subscriptions {
		configured = append(configured, sub.Name)
		if s.Only != nil && !slices.Contains(s.Only, sub.Name) {
			res := Result{Subscription: sub.Name, Outcome: OutcomeSkipped, Changes: map[string]int{}}
			if a := st.sub(sub.Name).Accepted; a != nil {
				res.List, res.Version = a.Identifier, a.Version
			}
			report.Results = append(report.Results, res)
			continue
		}
		res, evs := s.syncOne(ctx, sub, st.sub(sub.Name), dir, now().UTC())
		events = append(events, evs...)
		report.Results = append(report.Results, res)
	}
	t := now().UTC()
	for _, name := range sortedKeys(st.Subscriptions) {
		if !slices.Contains(configured, name) {
			events = append(events, revokeAll(name, st.Subscriptions[name], t)...)
			delete(st.Subscriptions, name)
		}
	}
	for i, name := range configured {
		evs := expire(name, st.Subscriptions[name], t)
		events = append(events, evs...)
		r := &report.Results[i]
		for _, ev := range evs {
			r.Changes[ev.Event]++
		}
		r.Endorsed = countEndorsed(st.Subscriptions[name])
	}

	if s.Glance != nil {
		rep, evs := resolveGlance(ctx, s.Glance, &s.GlanceOptions, st, t)
		report.Glance = rep
		events = append(events, evs...)
	} else {
		st.Glance = nil // no cloud configured any more: its ids vouch for nothing
	}

	blocks, bevs := reconcileBlocks(blocks, s.Config.Blocks, t)
	events = append(events, bevs...)

	// The history first: a change that is not recorded must not take effect.
	if err := appendHistory(HistoryPath(dir), events); err != nil {
		return nil, err
	}
	report.Events = events
	if len(bevs) > 0 {
		if err := saveBlocks(s.Config.Paths().Blocks(), blocks); err != nil {
			return nil, err
		}
	}
	st.Serial++
	if err := st.Save(StatePath(dir)); err != nil {
		return nil, err
	}
	meta, entries := Compile(st, configured, t)
	if err := snapshot.Write(s.Config.Paths().Snapshot(), meta, entries, blocks); err != nil {
		return nil, err
	}
	meta.Blocks = len(blocks)
	meta.Images = len(entries)
	meta.Format = snapshot.Format
	report.Snapshot = meta
	if s.Glance != nil && s.GlanceOptions.DeactivateRevoked && report.Glance.Err == nil {
		if err := s.guard(ctx, st, entries, t, dir, report); err != nil {
			return nil, err
		}
	}
	return report, nil
}

// guard applies openstack.deactivate_revoked once the snapshot is in force, and records
// what it did. A failed call to Glance is reported, not fatal: the hook refuses the image
// at boot either way.
func (s *Syncer) guard(ctx context.Context, st *State, entries []snapshot.Entry, now time.Time, dir string, report *Report) error {
	evs := guardGlance(ctx, s.Glance, st.Glance, entries, now, report.Glance)
	if len(evs) == 0 {
		return nil
	}
	if err := appendHistory(HistoryPath(dir), evs); err != nil {
		return fmt.Errorf("Glance was changed but the change could not be recorded: %w", err)
	}
	report.Events = append(report.Events, evs...)
	if err := st.Save(StatePath(dir)); err != nil {
		return fmt.Errorf("Glance was changed and recorded in the history, but the state could not be saved: %w", err)
	}
	return nil
}

// syncOne handles one subscription. It changes ss only when the list is accepted or when
// the validators of an unchanged list are refreshed.
func (s *Syncer) syncOne(ctx context.Context, sub config.Subscription, ss *SubState, dir string, now time.Time) (Result, []Event) {
	res := Result{Subscription: sub.Name, Changes: map[string]int{}}
	if ss.Accepted != nil {
		res.List, res.Version = ss.Accepted.Identifier, ss.Accepted.Version
	}
	ss.LastAttempt = now
	if ss.Accepted != nil {
		// The list in force lapses by the max_age configured now, not when it was accepted.
		ss.Accepted.MaxAge = sub.MaxAge
	}
	log := s.Log.With("subscription", sub.Name)
	events, err := s.fetchAndAccept(ctx, sub, ss, dir, now, &res)
	if err != nil {
		r, ok := AsRefusal(err)
		if !ok {
			r = &RefusalError{Reason: ReasonFetch, Msg: err.Error(), Err: err}
		}
		res.Outcome, res.Refusal = OutcomeRefused, r
		ss.LastReason, ss.LastError = r.Reason, r.Msg
		log.Warn("list refused", "reason", r.Reason, "error", r.Msg)
		ev := Event{Event: EventListRefused, Subscription: sub.Name, Reason: string(r.Reason), Message: r.Msg}
		if ss.Accepted != nil {
			ev.List, ev.ListVersion = ss.Accepted.Identifier, ss.Accepted.Version
		}
		return res, []Event{ev}
	}
	ss.LastReason, ss.LastError, ss.LastSuccess = "", "", now
	for _, ev := range events {
		res.Changes[ev.Event]++
	}
	log.Info("list "+string(res.Outcome), "list", res.List, "version", res.Version)
	return res, events
}

func (s *Syncer) fetchAndAccept(ctx context.Context, sub config.Subscription, ss *SubState, dir string, now time.Time, res *Result) ([]Event, error) {
	var keys *verify.Keys
	if sub.X509 == nil {
		var err error
		if keys, err = verify.LoadKeys(sub.CosignKeys...); err != nil {
			return nil, &RefusalError{Reason: ReasonConfig, Msg: err.Error(), Err: err}
		}
	}
	f, err := fetch.New(fetch.Options{CAFile: sub.CAFile, Timeout: sub.Timeout, MaxSize: sub.MaxSize, Token: sub.Token})
	if err != nil {
		return nil, &RefusalError{Reason: ReasonConfig, Msg: err.Error(), Err: err}
	}
	var cond fetch.Validators
	if ss.Accepted != nil {
		cond = fetch.Validators{ETag: ss.ETag, LastModified: ss.LastModified}
	}
	got, err := f.Get(ctx, sub.URL, cond)
	if err != nil {
		return nil, fetchRefusal("list", err)
	}
	if got.NotModified {
		res.Outcome = OutcomeUnchanged
		return nil, nil
	}
	body := got.Body
	signed, sigExt, sig := body, "", []byte(nil) // what was signed; the separate signature
	var l *List
	if sub.X509 != nil {
		// The S/MIME document carries the list and its signature. The list it signs
		// identifies the version; the whole document is archived, signature included.
		if l, signed, err = VerifySMIMEList(body, *sub.X509, now); err != nil {
			return nil, err
		}
	} else {
		if sigExt, sig, err = fetchVerifyCosign(ctx, f, keys, sub, body); err != nil {
			return nil, err
		}
		// Only verified bytes are parsed.
		if l, err = Parse(body); err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256(signed)
	digest := hex.EncodeToString(sum[:])
	var prev *Previous
	if a := ss.Accepted; a != nil {
		prev = &Previous{Identifier: a.Identifier, Version: a.Version, SHA256: a.SHA256}
		if a.SHA256 == digest {
			// The same bytes again (the server ignores conditional GET): nothing new.
			ss.ETag, ss.LastModified = got.ETag, got.LastModified
			res.Outcome = OutcomeUnchanged
			return nil, nil
		}
	}
	want := Expect{Identifier: sub.Identifier, MaxAge: sub.MaxAge, ClockSkew: s.Config.ClockSkew}
	if err := Check(l, digest, want, prev, now); err != nil {
		return nil, err
	}
	archive, err := archiveList(dir, sub.Name, l.Version, digest, body, sigExt, sig)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	acc := &Accepted{
		Identifier: l.Identifier, Title: l.Title, Version: l.Version, Created: l.Created, Expires: l.Expires,
		MaxAge: sub.MaxAge, SHA256: digest, Endorser: l.Endorser, AcceptedAt: now, Archive: archive,
	}
	events := []Event{{
		Event: EventListAccepted, Subscription: sub.Name, List: l.Identifier, ListVersion: l.Version,
		ListSHA256: digest, Archive: archive,
		Message: fmt.Sprintf("%d images, created %s, expires %s", len(l.Images), l.Created.Format(TimeLayout), l.Expires.Format(TimeLayout)),
	}}
	events = append(events, apply(sub.Name, ss, l, acc, now)...)
	ss.Accepted = acc
	ss.ETag, ss.LastModified = got.ETag, got.LastModified
	res.Outcome, res.List, res.Version = OutcomeAccepted, l.Identifier, l.Version
	return events, nil
}

// fetchVerifyCosign fetches a cosign subscription's detached signature or bundle and
// verifies it over body; it returns the archive extension and the signature's bytes.
func fetchVerifyCosign(ctx context.Context, f *fetch.Fetcher, keys *verify.Keys, sub config.Subscription, body []byte) (string, []byte, error) {
	sigURL, sigExt := sub.SignatureURL, ".sig"
	if sub.BundleURL != "" {
		sigURL, sigExt = sub.BundleURL, ".bundle"
	}
	sig, err := f.Get(ctx, sigURL, fetch.Validators{})
	if err != nil {
		var se *fetch.StatusError
		if errors.As(err, &se) && se.Code == 404 || errors.Is(err, fs.ErrNotExist) {
			return "", nil, &RefusalError{Reason: ReasonMissingSignature, Msg: fmt.Sprintf("no signature at %s", redactURL(sigURL)), Err: err}
		}
		return "", nil, fetchRefusal("signature", err)
	}
	if sub.BundleURL != "" {
		err = keys.VerifyBundle(body, sig.Body)
	} else {
		err = keys.VerifySignature(body, sig.Body)
	}
	if err != nil {
		return "", nil, &RefusalError{Reason: ReasonBadSignature, Msg: err.Error(), Err: err}
	}
	return sigExt, sig.Body, nil
}

func fetchRefusal(what string, err error) error {
	if errors.Is(err, fetch.ErrTooLarge) {
		return &RefusalError{Reason: ReasonTooLarge, Msg: fmt.Sprintf("%s: %v", what, err), Err: err}
	}
	return &RefusalError{Reason: ReasonFetch, Msg: fmt.Sprintf("%s: %v", what, err), Err: err}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// archiveList keeps the exact accepted bytes and their signature (for S/MIME, the whole
// signed document, sigExt empty), named by version and
// content hash, and returns the list's path relative to the policy directory.
func archiveList(dir, sub, version, digest string, body []byte, sigExt string, sig []byte) (string, error) {
	v := unsafeName.ReplaceAllString(version, "_")
	if len(v) > 64 {
		v = v[:64]
	}
	rel := filepath.Join(listsDir, sub, v+"-"+digest[:16]+".list")
	abs := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return "", err
	}
	if sigExt != "" { // an S/MIME list has its signature inside
		if err := atomicfile.WriteFile(abs+sigExt, sig, 0o644); err != nil {
			return "", err
		}
	}
	if err := atomicfile.WriteFile(abs, body, 0o644); err != nil {
		return "", err
	}
	return rel, nil
}

// lockDir keeps two syncs (a timer and an operator, say) from interleaving.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sync lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func countEndorsed(ss *SubState) int {
	n := 0
	for _, im := range ss.Images {
		if im.Status == snapshot.Endorsed {
			n++
		}
	}
	return n
}

// redactURL drops any user information from a URL before it is shown.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return raw
}
