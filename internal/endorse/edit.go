package endorse

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/vmgate/vmgate/internal/atomicfile"
	"github.com/vmgate/vmgate/internal/policy"
)

// DefaultExpiresIn is how long a signed list stays valid unless told otherwise: 30 days, the
// default max_age of a vmgate subscription, so a list lapses on sites no earlier than they
// would stop trusting it anyway.
const DefaultExpiresIn = 720 * time.Hour

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// NewUUID returns a random (version 4) UUID for an image that is given no identifier.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// InitOptions describe a new list.
type InitOptions struct {
	Identifier string // dc:identifier, a UUID
	Title      string
	EndorserDN string // hv:endorser → hv:x509 → hv:dn
	EndorserCA string // … → hv:ca
	URI        string // hv:uri, where the list is published; optional
	ExpiresIn  time.Duration
}

// Init writes a new list with no images, version 0, and starts its history. It refuses to
// replace a list or a history that exist.
func (w *Workspace) Init(o InitOptions) error {
	if !uuidRE.MatchString(o.Identifier) {
		return refusef("--identifier %q is not a UUID (e.g. %s)", o.Identifier, NewUUID())
	}
	for _, f := range []struct{ flag, v string }{{"--title", o.Title}, {"--endorser-dn", o.EndorserDN}, {"--endorser-ca", o.EndorserCA}} {
		if strings.TrimSpace(f.v) == "" {
			return refusef("%s is required", f.flag)
		}
	}
	if o.URI != "" {
		if err := checkURI(o.URI); err != nil {
			return err
		}
	}
	if o.ExpiresIn <= 0 {
		o.ExpiresIn = DefaultExpiresIn
	}
	unlock, err := w.lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, p := range []string{w.List, w.HistoryPath()} {
		if _, err := os.Stat(p); err == nil {
			return refusef("%s exists: init makes a new list", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("init: %w", err)
		}
	}
	now := w.now().Truncate(time.Second)
	d := &document{list: map[string]json.RawMessage{}}
	d.setList("dc:identifier", o.Identifier)
	d.setList("dc:title", o.Title)
	d.setList("hv:version", "0")
	d.setList("dc:date:created", hepixTime(now))
	d.setList("dc:date:expires", hepixTime(now.Add(o.ExpiresIn)))
	if o.URI != "" {
		d.setList("hv:uri", o.URI)
	}
	d.setList("hv:endorser", map[string]any{"hv:x509": map[string]string{"hv:dn": o.EndorserDN, "hv:ca": o.EndorserCA}})
	data, err := d.render()
	if err != nil {
		return err
	}
	if err := w.record(Change{Action: ActionInit, List: o.Identifier, ListVersion: "0", Title: o.Title,
		Expires: hepixTime(now.Add(o.ExpiresIn))}); err != nil {
		return err
	}
	return w.writeList(data)
}

// checkURI accepts absolute http(s) and file URLs, what sites and endorsers publish with.
func checkURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || (u.Host == "" && u.Scheme != "file") {
		return refusef("%q is not an absolute URL", s)
	}
	return nil
}

// AddOptions describe an image to endorse.
type AddOptions struct {
	Image      string // path of the image file
	Title      string
	Version    string // the image's hv:version
	Identifier string // dc:identifier; a new UUID when empty, an existing one to replace an image
	Software   string // path of a software inventory; optional
	URI        string // hv:uri, where sites download the image; see imageURI for the default
}

// Added is what Add did.
type Added struct {
	Identifier string
	Info       ImageInfo
	URI        string
	Replaced   string // sha512 of the image replaced, if the identifier was listed
	Software   *Software
}

// Add endorses an image: it hashes the file, detects its format, keeps its software
// inventory, and adds or replaces the entry in the list. The change is pending until Sign.
func (w *Workspace) Add(o AddOptions) (*Added, error) {
	if err := w.exists(); err != nil {
		return nil, err
	}
	if strings.TrimSpace(o.Title) == "" || strings.TrimSpace(o.Version) == "" {
		return nil, refusef("--title and --version are required")
	}
	if o.Identifier != "" && strings.TrimSpace(o.Identifier) != o.Identifier {
		return nil, refusef("--identifier %q has surrounding spaces", o.Identifier)
	}
	if o.URI != "" {
		if err := checkURI(o.URI); err != nil {
			return nil, err
		}
	}
	// Hashing takes a while for large images: done before taking the lock, so that other
	// endorsers are not held up, and the list is read only once the lock is held.
	info, err := InspectImage(o.Image)
	if err != nil {
		return nil, err
	}
	var sw *Software
	if o.Software != "" {
		if sw, err = w.storeInventory(o.Software); err != nil {
			return nil, err
		}
	}
	d, recs, unlock, err := w.beginEdit()
	if err != nil {
		return nil, err
	}
	defer unlock()
	res := &Added{Identifier: o.Identifier, Info: info, Software: sw}
	if res.Identifier == "" {
		res.Identifier = NewUUID()
	}
	at := d.findImage(res.Identifier)
	for i, img := range d.parsed.Images {
		if img.SHA512 == info.SHA512 && i != at {
			return nil, refusef("image %s has the same sha512 as image %s (%s), already in the list", o.Image, img.Identifier, img.Title)
		}
	}
	entry := map[string]json.RawMessage{}
	if at >= 0 {
		// A new version of a listed image: keep the keys vmgate does not set (AppDB's, the
		// description, the OS), drop what described the old bytes.
		entry = d.images[at]
		res.Replaced = d.parsed.Images[at].SHA512
		for _, k := range []string{KeySoftwareSHA512, KeySoftwareFormat, "dc:date:expires"} {
			delete(entry, k)
		}
	}
	res.URI = o.URI
	if res.URI == "" {
		if res.URI, err = imageURI(d.parsed, at, o.Image); err != nil {
			return nil, err
		}
	}
	entry["dc:identifier"] = raw(res.Identifier)
	entry["dc:title"] = raw(o.Title)
	entry["hv:version"] = raw(o.Version)
	entry["hv:uri"] = raw(res.URI)
	entry["hv:format"] = raw(info.Format)
	entry["hv:size"] = raw(info.Size)
	entry["sl:checksum:sha512"] = raw(info.SHA512)
	if sw != nil {
		entry[KeySoftwareSHA512] = raw(sw.SHA512)
		entry[KeySoftwareFormat] = raw(sw.Format)
	}
	if at >= 0 {
		d.images[at] = entry
	} else {
		d.images = append(d.images, entry)
	}
	data, err := d.render()
	if err != nil {
		return nil, err
	}
	c := Change{Action: ActionAdd, List: d.parsed.Identifier, ListVersion: lastSigned(recs),
		Image: res.Identifier, Title: o.Title, Version: o.Version, SHA512: info.SHA512, Size: info.Size,
		Format: info.Format, Replaces: res.Replaced, Software: sw}
	if err := w.record(c); err != nil {
		return nil, err
	}
	return res, w.writeList(data)
}

// imageURI is where an image is downloaded from when --uri is not given: the URI it had, for
// a new version of a listed image; else the image's file name beside the list's own hv:uri.
func imageURI(l *policy.List, at int, image string) (string, error) {
	if at >= 0 && l.Images[at].URI != "" {
		return l.Images[at].URI, nil
	}
	if l.URI == "" {
		return "", refusef("give --uri: the list has no hv:uri to place the image beside")
	}
	u, err := url.Parse(l.URI)
	if err != nil {
		return "", refusef("the list's hv:uri %q: %v", l.URI, err)
	}
	u.Path = path.Join(path.Dir(u.Path), filepath.Base(image))
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// Removed is what Remove did.
type Removed struct {
	Identifier, Title, Version, SHA512 string
}

// Remove revokes an image: it leaves the list, and the reason goes into the history. Sites
// revoke it when they accept the next signed version.
func (w *Workspace) Remove(identifier, reason string) (*Removed, error) {
	if err := w.exists(); err != nil {
		return nil, err
	}
	if strings.TrimSpace(reason) == "" {
		return nil, refusef("--reason is required: the history must say why an image was revoked")
	}
	d, recs, unlock, err := w.beginEdit()
	if err != nil {
		return nil, err
	}
	defer unlock()
	at := d.findImage(identifier)
	if at < 0 {
		return nil, refusef("list %s has no image %s", w.List, identifier)
	}
	img := d.parsed.Images[at]
	d.images = append(d.images[:at], d.images[at+1:]...)
	data, err := d.render()
	if err != nil {
		return nil, err
	}
	if err := w.record(Change{Action: ActionRemove, List: d.parsed.Identifier, ListVersion: lastSigned(recs),
		Image: img.Identifier, Title: img.Title, Version: img.Version, SHA512: img.SHA512, Reason: reason}); err != nil {
		return nil, err
	}
	return &Removed{Identifier: img.Identifier, Title: img.Title, Version: img.Version, SHA512: img.SHA512}, w.writeList(data)
}

// exists checks that the list is there before anything is written beside it.
func (w *Workspace) exists() error {
	if _, err := os.Stat(w.List); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	return nil
}

// beginEdit takes the list's lock and reads the list and its history, as every edit does
// first. The caller must call unlock when it is done.
func (w *Workspace) beginEdit() (d *document, recs []Record, unlock func(), err error) {
	if unlock, err = w.lock(); err != nil {
		return nil, nil, nil, err
	}
	if d, _, err = w.loadDocument(); err == nil {
		recs, err = w.editHistory()
	}
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return d, recs, unlock, nil
}

// editHistory is the history an edit continues. A list without one is refused: its history
// would not account for the images already listed, and verify-history could never pass.
func (w *Workspace) editHistory() ([]Record, error) {
	recs, err := w.History()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, refusef("list %s has no history (%s): lists that vmgate endorse keeps begin with vmgate endorse init", w.List, w.HistoryPath())
	}
	return recs, nil
}

// SignOptions are how a list is signed.
type SignOptions struct {
	Signer *Signer
	// ExpiresIn is how long the signed version stays valid; zero keeps the list's current
	// validity period (its dc:date:expires less its dc:date:created).
	ExpiresIn time.Duration
}

// Signed is what Sign did.
type Signed struct {
	Version    string
	Created    time.Time
	Expires    time.Time
	Images     int
	ListSHA512 string
	Archive    string
	Pending    int // changes this signature published
}

// Sign publishes the list as a new version: it bumps hv:version, sets dc:date:created to
// now and dc:date:expires to now plus the validity period, signs the exact bytes, archives
// them with their signature, records the version in the history, then writes the list,
// FILE.sig and FILE.bundle. Signing without changes is how an endorser renews a list
// before it expires or sites consider it frozen.
func (w *Workspace) Sign(o SignOptions) (*Signed, error) {
	if err := w.exists(); err != nil {
		return nil, err
	}
	if o.Signer == nil {
		return nil, errors.New("sign: no key")
	}
	d, recs, unlock, err := w.beginEdit()
	if err != nil {
		return nil, err
	}
	defer unlock()
	l := d.parsed
	if err := agrees(recs, l); err != nil {
		return nil, err
	}
	base := l.Version
	if prev := lastSigned(recs); policy.CompareVersions(prev, base) > 0 {
		// A signature recorded whose list was never written (a crash in between): number
		// after it, since sites may have fetched it from a copy of the archive.
		base = prev
	}
	version, err := nextVersion(base, w.now())
	if err != nil {
		return nil, err
	}
	if prev := lastSigned(recs); policy.CompareVersions(version, prev) <= 0 {
		return nil, refusef("the next version %s would not be newer than the last signed version %s", version, prev)
	}
	validity := o.ExpiresIn
	if validity <= 0 {
		validity = l.Expires.Sub(l.Created)
	}
	if validity <= 0 {
		validity = DefaultExpiresIn
	}
	now := w.now().Truncate(time.Second)
	res := &Signed{Version: version, Created: now, Expires: now.Add(validity), Images: len(l.Images)}
	d.setList("hv:version", version)
	d.setList("dc:date:created", hepixTime(res.Created))
	d.setList("dc:date:expires", hepixTime(res.Expires))
	data, err := d.render()
	if err != nil {
		return nil, err
	}
	// What a site will check first, checked here too: no endorser should publish a list that
	// every site refuses (duplicates, dates).
	if err := policy.CheckContent(d.parsed, now, 0); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	sig, bundle, err := o.Signer.Sign(data)
	if err != nil {
		return nil, err
	}
	sum := sha512.Sum512(data)
	res.ListSHA512 = hex.EncodeToString(sum[:])
	for _, r := range recs {
		if r.Pending && r.Action != ActionInit {
			res.Pending++
		}
	}
	archive, err := w.archive(version, data, sig, bundle)
	if err != nil {
		return nil, err
	}
	if res.Archive, err = filepath.Rel(filepath.Dir(w.List), archive); err != nil {
		res.Archive = archive
	}
	if err := w.record(Change{Action: ActionSign, List: l.Identifier, ListVersion: version, ListSHA512: res.ListSHA512,
		Key: o.Signer.Fingerprint, Archive: res.Archive, Images: len(l.Images), Expires: hepixTime(res.Expires)}); err != nil {
		return nil, err
	}
	// The list first, then what signs it: a site that fetches in between refuses the list
	// as badly signed and keeps the previous one until its next sync.
	if err := w.writeList(data); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(w.SignaturePath(), sig, 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(w.BundlePath(), bundle, 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

// nextVersion numbers versions 1, 2, 3…: a version of digits goes up by one. A list that
// came with another scheme (AppDB's, a date) moves to the UTC time, YYYYMMDDhhmmss, if that
// sorts after it as sites compare versions.
func nextVersion(cur string, now time.Time) (string, error) {
	if cur != "" && strings.Trim(cur, "0123456789") == "" {
		n := []byte(strings.TrimLeft(cur, "0"))
		i := len(n) - 1
		for ; i >= 0 && n[i] == '9'; i-- {
			n[i] = '0'
		}
		if i < 0 {
			n = append([]byte{'1'}, n...)
		} else {
			n[i]++
		}
		return string(n), nil
	}
	v := now.UTC().Format("20060102150405")
	if policy.CompareVersions(v, cur) <= 0 {
		return "", refusef("hv:version %q: cannot number the next version after it", cur)
	}
	return v, nil
}

// archive keeps the signed bytes of a version with its signature and bundle, so that the
// history can show any version's full list as it was published.
func (w *Workspace) archive(version string, data, sig, bundle []byte) (string, error) {
	if err := os.MkdirAll(w.versionsDir(), 0o755); err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	p := filepath.Join(w.versionsDir(), version+".json")
	if _, err := os.Stat(p); err == nil {
		return "", refusef("version %s is archived already (%s): the history and the list disagree", version, p)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{p + ".sig", sig}, {p + ".bundle", bundle}, {p, data}} {
		if err := atomicfile.WriteFile(f.path, f.data, 0o644); err != nil {
			return "", fmt.Errorf("archive: %w", err)
		}
	}
	return p, nil
}
