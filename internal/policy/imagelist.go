package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is how HEPiX image lists write times.
const TimeLayout = "2006-01-02T15:04:05Z"

// List is a parsed HEPiX image list (hv:imagelist). Every key of the original, known or not,
// stays in Raw, so nothing an endorser wrote is lost when the list is archived or shown.
type List struct {
	Identifier  string
	Title       string
	Description string
	Created     time.Time
	Expires     time.Time
	Version     string
	URI         string
	Endorser    Endorser
	Images      []Image
	Raw         map[string]json.RawMessage // every key of hv:imagelist but hv:images
}

// Endorser is hv:endorser → hv:x509.
type Endorser struct {
	DN      string `json:"dn"`
	CA      string `json:"ca,omitempty"`
	Creator string `json:"creator,omitempty"`
	Email   string `json:"email,omitempty"`
}

// Image is one hv:image of a list.
type Image struct {
	Identifier  string
	Title       string
	Description string
	Version     string
	URI         string
	Format      string
	Size        int64
	Arch        string
	OS          string
	OSName      string
	OSVersion   string
	SHA512      string    // lower-case hex
	Expires     time.Time // zero when the image has no expiry of its own
	Raw         map[string]json.RawMessage
}

// MalformedError is a list that cannot be parsed or lacks a required key. It names the key,
// the image and the list where it can.
type MalformedError struct {
	List  string // dc:identifier of the list, when known
	Image string // dc:identifier or index of the image, when the problem is in one
	Key   string
	Msg   string
}

func (e *MalformedError) Error() string {
	var b strings.Builder
	b.WriteString("malformed image list")
	if e.List != "" {
		fmt.Fprintf(&b, " %s", e.List)
	}
	if e.Image != "" {
		fmt.Fprintf(&b, ": image %s", e.Image)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Parse decodes a HEPiX image list. It checks the form (required keys present, typed right,
// times in the HEPiX layout, sha512 well formed); rules that compare the list with the
// subscription, the clock or a previous list are in Check.
func Parse(data []byte) (*List, error) {
	raw, entries, err := decodeList(data)
	if err != nil {
		return nil, err
	}
	l := &List{Raw: raw}
	f := fields{raw: raw, err: func(key, msg string) error {
		return &MalformedError{List: l.Identifier, Key: key, Msg: msg}
	}}
	if l.Identifier, err = f.str("dc:identifier", true); err != nil {
		return nil, err
	}
	if l.Title, err = f.str("dc:title", false); err != nil {
		return nil, err
	}
	if l.Description, err = f.str("dc:description", false); err != nil {
		return nil, err
	}
	if l.Version, err = f.str("hv:version", true); err != nil {
		return nil, err
	}
	if l.URI, err = f.str("hv:uri", false); err != nil {
		return nil, err
	}
	if l.Created, err = f.time("dc:date:created", true); err != nil {
		return nil, err
	}
	if l.Expires, err = f.time("dc:date:expires", true); err != nil {
		return nil, err
	}
	if l.Endorser, err = parseEndorser(raw, f.err); err != nil {
		return nil, err
	}
	if entries == nil {
		return nil, f.err("hv:images", "missing")
	}
	l.Images = make([]Image, 0, len(entries))
	for i, e := range entries {
		img, err := parseImage(l.Identifier, i, e.Image)
		if err != nil {
			return nil, err
		}
		l.Images = append(l.Images, img)
	}
	return l, nil
}

// imageEntry is one element of hv:images.
type imageEntry struct {
	Image map[string]json.RawMessage `json:"hv:image"`
}

// decodeList reads the document in one pass: the list's own keys into a map of raw values,
// and hv:images straight into per-image maps, so that a list of 10,000 images is scanned
// once rather than once per level of nesting. Duplicate keys in the list are refused: a
// signed document should not say two things.
func decodeList(data []byte) (map[string]json.RawMessage, []imageEntry, error) {
	// A byte order mark is what some editors save before JSON; RFC 8259 lets a parser ignore
	// it, and the signature was checked over the bytes as they are.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	dec := json.NewDecoder(bytes.NewReader(data))
	malformed := func(err error) error { return &MalformedError{Msg: jsonError(err)} }
	if err := expectDelim(dec, '{'); err != nil {
		return nil, nil, &MalformedError{Msg: "a HEPiX image list is a JSON object: " + err.Error()}
	}
	var raw map[string]json.RawMessage
	var entries []imageEntry
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, nil, malformed(err)
		}
		if key != "hv:imagelist" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, nil, malformed(err)
			}
			continue
		}
		if raw != nil {
			return nil, nil, &MalformedError{Key: "hv:imagelist", Msg: "appears twice"}
		}
		if err := expectDelim(dec, '{'); err != nil {
			return nil, nil, &MalformedError{Key: "hv:imagelist", Msg: "must be an object"}
		}
		raw = map[string]json.RawMessage{}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return nil, nil, malformed(err)
			}
			k := t.(string) // inside an object the decoder only yields string keys here
			if _, dup := raw[k]; dup {
				return nil, nil, &MalformedError{Key: k, Msg: "appears twice"}
			}
			if k == "hv:images" {
				if err := dec.Decode(&entries); err != nil {
					return nil, nil, &MalformedError{Key: "hv:images", Msg: "must be an array of {\"hv:image\": {…}} objects: " + jsonError(err)}
				}
				raw[k] = nil
				continue
			}
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return nil, nil, malformed(err)
			}
			raw[k] = v
		}
		if err := expectDelim(dec, '}'); err != nil {
			return nil, nil, malformed(err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, nil, malformed(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, &MalformedError{Msg: "invalid JSON: data after the object"}
	}
	if raw == nil {
		return nil, nil, &MalformedError{Key: "hv:imagelist", Msg: "missing (not a HEPiX image list)"}
	}
	if _, ok := raw["hv:images"]; ok && entries == nil {
		entries = []imageEntry{} // "hv:images": [] or null: present, empty
	}
	return raw, entries, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		return errors.New(jsonError(err))
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q, found %v", want, t)
	}
	return nil
}

// jsonError words a decoding error for a person; encoding/json's own text names Go types.
func jsonError(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("%s has the wrong type (%s)", te.Field, te.Value)
		}
		return fmt.Sprintf("a HEPiX image list is a JSON object, found %s", te.Value)
	}
	return "invalid JSON: " + err.Error()
}

func parseEndorser(raw map[string]json.RawMessage, mkErr func(key, msg string) error) (Endorser, error) {
	var outer map[string]json.RawMessage
	e, ok := raw["hv:endorser"]
	if !ok {
		return Endorser{}, mkErr("hv:endorser", "missing")
	}
	if err := decodeObject(e, &outer); err != nil {
		return Endorser{}, mkErr("hv:endorser", "must be an object")
	}
	x, ok := outer["hv:x509"]
	if !ok {
		return Endorser{}, mkErr("hv:endorser.hv:x509", "missing")
	}
	var inner map[string]json.RawMessage
	if err := decodeObject(x, &inner); err != nil {
		return Endorser{}, mkErr("hv:endorser.hv:x509", "must be an object")
	}
	f := fields{raw: inner, err: func(key, msg string) error { return mkErr("hv:endorser.hv:x509."+key, msg) }}
	var en Endorser
	var err error
	if en.DN, err = f.str("hv:dn", true); err != nil {
		return en, err
	}
	if en.CA, err = f.str("hv:ca", true); err != nil {
		return en, err
	}
	if en.Creator, err = f.str("dc:creator", false); err != nil {
		return en, err
	}
	if en.Email, err = f.str("hv:email", false); err != nil {
		return en, err
	}
	return en, nil
}

func parseImage(list string, index int, raw map[string]json.RawMessage) (Image, error) {
	name := fmt.Sprintf("#%d", index+1)
	if raw == nil {
		return Image{}, &MalformedError{List: list, Image: name, Key: "hv:image", Msg: "missing (each entry of hv:images is {\"hv:image\": {…}})"}
	}
	img := Image{Raw: raw}
	f := fields{raw: raw, err: func(key, msg string) error {
		return &MalformedError{List: list, Image: name, Key: key, Msg: msg}
	}}
	var err error
	if img.Identifier, err = f.str("dc:identifier", true); err != nil {
		return img, err
	}
	name = img.Identifier
	for _, s := range []struct {
		key      string
		dst      *string
		required bool
	}{
		{"dc:title", &img.Title, false},
		{"dc:description", &img.Description, false},
		{"hv:version", &img.Version, true},
		{"hv:uri", &img.URI, true},
		{"hv:format", &img.Format, false},
		{"sl:arch", &img.Arch, false},
		{"sl:os", &img.OS, false},
		{"sl:osname", &img.OSName, false},
		{"sl:osversion", &img.OSVersion, false},
		{"sl:checksum:sha512", &img.SHA512, true},
	} {
		if *s.dst, err = f.str(s.key, s.required); err != nil {
			return img, err
		}
	}
	if img.SHA512, err = NormalizeSHA512(img.SHA512); err != nil {
		return img, f.err("sl:checksum:sha512", err.Error())
	}
	if img.Size, err = f.size("hv:size"); err != nil {
		return img, err
	}
	if img.Expires, err = f.time("dc:date:expires", false); err != nil {
		return img, err
	}
	return img, nil
}

// NormalizeSHA512 returns h in lower case, or an error unless it is 128 hex digits.
func NormalizeSHA512(h string) (string, error) {
	if len(h) != 128 {
		return "", fmt.Errorf("sha512 must be 128 hex digits, got %d characters", len(h))
	}
	h = strings.ToLower(h)
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("sha512 must be 128 hex digits, found %q", c)
		}
	}
	return h, nil
}

// fields reads typed values out of one JSON object, producing errors that name the key.
type fields struct {
	raw map[string]json.RawMessage
	err func(key, msg string) error
}

func (f fields) str(key string, required bool) (string, error) {
	v, ok := f.raw[key]
	if !ok || isNull(v) {
		if required {
			return "", f.err(key, "missing")
		}
		return "", nil
	}
	s, err := unquote(v)
	if err != nil {
		return "", f.err(key, "must be a string")
	}
	if required && strings.TrimSpace(s) == "" {
		return "", f.err(key, "is empty")
	}
	return s, nil
}

func (f fields) time(key string, required bool) (time.Time, error) {
	s, err := f.str(key, required)
	if err != nil || s == "" {
		return time.Time{}, err
	}
	t, err := time.Parse(TimeLayout, s)
	if err != nil {
		return time.Time{}, f.err(key, fmt.Sprintf("%q is not a time like 2026-11-01T08:00:00Z", s))
	}
	return t, nil
}

// size accepts hv:size as a JSON number or a string of digits: both occur in the wild.
func (f fields) size(key string) (int64, error) {
	v, ok := f.raw[key]
	if !ok || isNull(v) {
		return 0, nil
	}
	s := string(bytes.Trim(v, `"`))
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, f.err(key, fmt.Sprintf("%s is not a size in bytes", v))
	}
	return n, nil
}

// unquote decodes a JSON string value. v was validated by the decoder already, so a string
// without escapes is its bytes between the quotes; only escaped strings take the slow path.
func unquote(v json.RawMessage) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// decodeObject decodes a nested JSON object, refusing null.
func decodeObject(data []byte, v *map[string]json.RawMessage) error {
	if err := json.Unmarshal(data, v); err != nil {
		return err
	}
	if *v == nil {
		return errors.New("must be a JSON object")
	}
	return nil
}
