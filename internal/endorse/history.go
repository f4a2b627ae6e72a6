package endorse

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/policy"
)

// History actions. They are part of the history file's format.
const (
	ActionInit   = "init"
	ActionAdd    = "add"
	ActionRemove = "remove"
	ActionSign   = "sign"
)

// Change is one entry of an endorser's history. The journal adds the time, the sequence
// number and the hash chain.
type Change struct {
	Action string `json:"action"`
	List   string `json:"list"` // the list's dc:identifier
	// ListVersion is the version signed (sign), or the last signed version a change comes
	// after ("0" before the first signature).
	ListVersion string `json:"list_version"`
	ListSHA512  string `json:"list_sha512,omitempty"` // sign: of the exact bytes signed
	Key         string `json:"key,omitempty"`         // sign: fingerprint of the signing key
	Archive     string `json:"archive,omitempty"`     // sign: the copy of the signed list
	Images      int    `json:"images,omitempty"`      // sign: how many images the version holds
	Expires     string `json:"expires,omitempty"`     // sign: the list's dc:date:expires

	Image    string    `json:"image,omitempty"` // the image's dc:identifier
	Title    string    `json:"title,omitempty"`
	Version  string    `json:"version,omitempty"` // the image's hv:version
	SHA512   string    `json:"sha512,omitempty"`
	Size     int64     `json:"size,omitempty"`
	Format   string    `json:"format,omitempty"`
	Replaces string    `json:"replaces,omitempty"` // add: sha512 of the image this one replaces
	Software *Software `json:"software,omitempty"`
	Reason   string    `json:"reason,omitempty"` // remove: why

	Actor
}

// Record is a Change as the history holds it.
type Record struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Hash string    `json:"hash"`
	// Pending is true for a change made after the last signature: sites will see it only
	// once the list is signed again.
	Pending bool `json:"pending"`
	Change
}

// record appends one change to the history and makes it durable before the caller changes
// the list.
func (w *Workspace) record(c Change) error {
	c.Actor = w.actor()
	data, err := json.Marshal(&c)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	j, err := journal.Open(w.HistoryPath(), journal.Options{Mode: 0o644, Now: w.Now})
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer j.Close()
	if _, err := j.Append(data); err != nil {
		return fmt.Errorf("history: %w (the change was not made)", err)
	}
	return nil
}

// History returns every change, oldest first, those after the last signature marked
// pending. A list without a history has none.
func (w *Workspace) History() ([]Record, error) {
	var recs []Record
	err := journal.Read(w.HistoryPath(), 1, func(e journal.Entry) error {
		r := Record{Seq: e.Seq, Time: e.Time, Hash: e.Hash}
		if err := json.Unmarshal(e.Data, &r.Change); err != nil {
			return fmt.Errorf("history record %d: %w", e.Seq, err)
		}
		recs = append(recs, r)
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", w.HistoryPath(), err)
	}
	for i := len(recs) - 1; i >= 0 && recs[i].Action != ActionSign; i-- {
		recs[i].Pending = true
	}
	return recs, nil
}

// lastSigned is the version of the last sign in the history, "0" before any.
func lastSigned(recs []Record) string {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Action == ActionSign {
			return recs[i].ListVersion
		}
	}
	return "0"
}

// HistoryReport is what VerifyHistory found.
type HistoryReport struct {
	Journal journal.Report
	Signed  int // signed versions whose archived bytes match the history
	Pending int // changes made since the last signature
	// Problems are what is wrong besides the chain: an archived version missing, altered or
	// not in the history, a signed version or the list holding other images than the
	// history's adds and removes say, a list newer than the history's last signature.
	Problems []string
}

// Intact reports whether the history and everything it vouches for check out.
func (r HistoryReport) Intact() bool { return r.Journal.Intact() && len(r.Problems) == 0 }

// VerifyHistory walks the history's hash chain (an edited, removed or reordered entry breaks
// it), then replays it: every signed version's archived bytes must have the sha512 the
// history recorded and hold exactly the images that the adds and removes before it leave,
// and so must the list, which must be the last signed version unless changes are pending.
//
// The chain alone cannot notice entries cut from its end; the replay does, as long as what
// they recorded is still in the list or the archive (an image the list holds that no add
// explains, a signed version that no sign entry names, a list newer than the last sign). A
// history cut back together with the list and the archive to an earlier state is beyond any
// local check: sites that synced a later version hold the proof.
func (w *Workspace) VerifyHistory() (HistoryReport, error) {
	var rep HistoryReport
	jr, err := journal.Verify(w.HistoryPath())
	if err != nil {
		return rep, fmt.Errorf("history: %w", err)
	}
	rep.Journal = jr
	if !jr.Intact() {
		return rep, nil // what follows would read records the chain no longer vouches for
	}
	recs, err := w.History()
	if err != nil {
		return rep, err
	}
	problem := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	if len(recs) == 0 || recs[0].Action != ActionInit {
		problem("the history does not begin with init")
	}
	signed := map[string]bool{}
	var last *Record
	rp := replayer{}
	for i := range recs {
		r := &recs[i]
		if r.Pending && r.Action != ActionInit {
			rep.Pending++
		}
		rep.Problems = append(rep.Problems, rp.apply(r)...)
		if r.Action != ActionSign {
			continue
		}
		last = r
		signed[r.ListVersion] = true
		l, err := w.readArchive(r)
		if err != nil {
			problem("version %s (seq %d): %v", r.ListVersion, r.Seq, err)
			continue
		}
		rep.Signed++
		for _, d := range rp.diff(l) {
			problem("version %s (seq %d), as signed: %s", r.ListVersion, r.Seq, d)
		}
	}
	rep.Problems = append(rep.Problems, w.orphanArchives(signed)...)

	data, err := os.ReadFile(w.List)
	if err != nil {
		problem("list: %v", err)
		return rep, nil
	}
	l, err := policy.Parse(data)
	if err != nil {
		problem("list %s: %v", w.List, err)
		return rep, nil
	}
	if v := lastSigned(recs); l.Version != v {
		problem("list %s is version %s, but the history's last signature is of version %s: entries cut from the end of the history?", w.List, l.Version, v)
	}
	for _, d := range rp.diff(l) {
		problem("list %s: %s", w.List, d)
	}
	if last != nil && rep.Pending == 0 && sha512Hex(data) != last.ListSHA512 {
		problem("list %s differs from its last signed version %s, and the history records no change since", w.List, last.ListVersion)
	}
	return rep, nil
}

// readArchive reads the signed version a sign entry names and checks its bytes against the
// sha512 the entry recorded.
func (w *Workspace) readArchive(r *Record) (*policy.List, error) {
	if r.Archive == "" || filepath.IsAbs(r.Archive) || !filepath.IsLocal(r.Archive) {
		return nil, fmt.Errorf("the history names no archived list inside %s (%q)", filepath.Dir(w.List), r.Archive)
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(w.List), r.Archive))
	if err != nil {
		return nil, fmt.Errorf("archived list: %w", err)
	}
	if sum := sha512Hex(data); sum != r.ListSHA512 {
		return nil, fmt.Errorf("archived list %s has sha512 %s, the history says %s", r.Archive, shortHash(sum), shortHash(r.ListSHA512))
	}
	l, err := policy.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("archived list %s: %w", r.Archive, err)
	}
	if l.Version != r.ListVersion || l.Identifier != r.List {
		return nil, fmt.Errorf("archived list %s is %s version %s, the history says %s version %s", r.Archive, l.Identifier, l.Version, r.List, r.ListVersion)
	}
	return l, nil
}

// orphanArchives names the signed versions kept in FILE.d/versions that no sign entry of the
// history accounts for: what is left of entries cut from its end.
func (w *Workspace) orphanArchives(signed map[string]bool) []string {
	names, err := filepath.Glob(filepath.Join(w.versionsDir(), "*.json"))
	if err != nil {
		return []string{fmt.Sprintf("archive: %v", err)}
	}
	var out []string
	for _, n := range names {
		if v := strings.TrimSuffix(filepath.Base(n), ".json"); !signed[v] {
			out = append(out, fmt.Sprintf("signed version %s is archived (%s) but the history records no such signature: entries cut from the end of the history?", v, n))
		}
	}
	return out
}

// replayer follows the history's adds and removes: the images (identifier → sha512) the
// list must hold after each entry.
type replayer struct {
	images map[string]string
	seen   int
}

// apply takes one entry into account and returns what is wrong with it.
func (p *replayer) apply(r *Record) []string {
	defer func() { p.seen++ }()
	if p.images == nil {
		p.images = map[string]string{}
	}
	switch r.Action {
	case ActionInit:
		if p.seen > 0 {
			return []string{fmt.Sprintf("seq %d: init in the middle of the history", r.Seq)}
		}
	case ActionAdd:
		if r.Image == "" || !isSHA512(r.SHA512) {
			return []string{fmt.Sprintf("seq %d: add without an image identifier and sha512", r.Seq)}
		}
		p.images[r.Image] = r.SHA512
	case ActionRemove:
		sum, ok := p.images[r.Image]
		delete(p.images, r.Image)
		switch {
		case !ok:
			return []string{fmt.Sprintf("seq %d: removes image %s, which no earlier entry added", r.Seq, r.Image)}
		case sum != r.SHA512:
			return []string{fmt.Sprintf("seq %d: removes image %s with sha512 %s, but it was added with %s", r.Seq, r.Image, shortHash(r.SHA512), shortHash(sum))}
		}
	case ActionSign:
		if !isSHA512(r.ListSHA512) {
			return []string{fmt.Sprintf("seq %d: sign without the sha512 of the list signed", r.Seq)}
		}
	default:
		return []string{fmt.Sprintf("seq %d: unknown action %q", r.Seq, r.Action)}
	}
	return nil
}

// diff compares a list's images with those the history accounts for so far.
func (p *replayer) diff(l *policy.List) []string {
	var out []string
	listed := make(map[string]bool, len(l.Images))
	for _, img := range l.Images {
		listed[img.Identifier] = true
		switch sum, ok := p.images[img.Identifier]; {
		case !ok:
			out = append(out, fmt.Sprintf("image %s (sha512 %s) is listed, but no history entry adds it", img.Identifier, shortHash(img.SHA512)))
		case sum != img.SHA512:
			out = append(out, fmt.Sprintf("image %s is listed with sha512 %s, but the history last added it with %s", img.Identifier, shortHash(img.SHA512), shortHash(sum)))
		}
	}
	ids := make([]string, 0, len(p.images))
	for id := range p.images {
		if !listed[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		out = append(out, fmt.Sprintf("image %s (sha512 %s) is not listed, but no history entry removes it", id, shortHash(p.images[id])))
	}
	return out
}

// agrees checks that the list holds exactly the images its history accounts for. Sign
// refuses otherwise: a signature would publish what the history does not explain.
func agrees(recs []Record, l *policy.List) error {
	var p replayer
	for i := range recs {
		p.apply(&recs[i])
	}
	if d := p.diff(l); len(d) > 0 {
		return refusef("the list and its history disagree (an edit that was interrupted, or the list was edited by hand; redo the change with vmgate endorse add or remove): %s", strings.Join(d, "; "))
	}
	return nil
}

func isSHA512(s string) bool {
	if len(s) != 128 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// shortHash is the start of a hash, for messages; whatever the history holds.
func shortHash(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func sha512Hex(data []byte) string {
	sum := sha512.Sum512(data)
	return hex.EncodeToString(sum[:])
}
