package ship

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/vmgate/vmgate/internal/trace"
)

// decodeRecord reads a journal record's data into r, with the result json.Unmarshal would
// give. Records are what json.Marshal wrote from a trace.Record, and for those a direct
// reader needs a quarter of json.Unmarshal's time, which was the largest cost of shipping a
// record. Anything it does not expect (a key it does not know, as a newer Record would
// have, a key twice, a null where it wants a value, an escape, a non-ASCII byte in a key)
// and it leaves the whole record to json.Unmarshal, so being out of date costs speed, never
// correctness. FuzzDecodeRecord holds the two to the same results.
func decodeRecord(data []byte, r *trace.Record) error {
	d := recordDecoder{b: data}
	if d.record(r) && d.end() {
		return nil
	}
	*r = trace.Record{}
	return json.Unmarshal(data, r)
}

type recordDecoder struct {
	b []byte
	i int
}

func (d *recordDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *recordDecoder) end() bool { d.ws(); return d.i == len(d.b) }

// consume skips c (after blanks) and reports whether it was there.
func (d *recordDecoder) consume(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// null skips a null and reports whether it was there.
func (d *recordDecoder) null() bool {
	d.ws()
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// token returns the next string token, quotes included, and whether it needs unescaping.
func (d *recordDecoder) token() (tok []byte, plain, ok bool) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false, false
	}
	start := d.i
	plain = true
	for j := d.i + 1; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			d.i = j + 1
			return d.b[start:d.i], plain, true
		case c == '\\':
			plain = false
			j++ // the escaped byte cannot end the string
		case c < 0x20:
			return nil, false, false
		case c >= 0x80:
			plain = false // json.Unmarshal replaces invalid UTF-8: let it
		}
	}
	return nil, false, false
}

// str reads a string, or a null (which leaves *s as it is, as json.Unmarshal does).
func (d *recordDecoder) str(s *string) bool {
	if d.null() {
		return true
	}
	tok, plain, ok := d.token()
	if !ok {
		return false
	}
	if plain {
		*s = string(tok[1 : len(tok)-1])
		return true
	}
	return json.Unmarshal(tok, s) == nil
}

// key reads the next key of an object whose '{' was consumed: first tells whether it is the
// first. done at the '}'. Keys must be plain: an escaped one could spell a known key
// differently.
func (d *recordDecoder) key(first bool) (key []byte, done, ok bool) {
	if d.consume('}') {
		return nil, true, true
	}
	if !first && !d.consume(',') {
		return nil, false, false
	}
	tok, plain, ok := d.token()
	if !ok || !plain || !d.consume(':') {
		return nil, false, false
	}
	return tok[1 : len(tok)-1], false, true
}

// elem moves to the next element of an array whose '[' was consumed; done at the ']'.
func (d *recordDecoder) elem(first bool) (done, ok bool) {
	if d.consume(']') {
		return true, true
	}
	return false, first || d.consume(',')
}

// seen marks bit in *mask and reports whether it was clear: a key seen twice is
// json.Unmarshal's to decide (it merges repeated objects; not worth copying).
func seen(mask *uint32, bit uint) bool {
	if *mask&(1<<bit) != 0 {
		return false
	}
	*mask |= 1 << bit
	return true
}

func (d *recordDecoder) record(r *trace.Record) bool {
	if !d.consume('{') {
		return false
	}
	var mask uint32
	for first := true; ; first = false {
		key, done, ok := d.key(first)
		if !ok {
			return false
		}
		if done {
			return true
		}
		if !d.recordField(r, key, &mask) {
			return false
		}
	}
}

func (d *recordDecoder) recordField(r *trace.Record, key []byte, mask *uint32) bool {
	var bit uint
	var p *string
	switch string(key) {
	case "host":
		bit, p = 0, &r.Host
	case "event":
		bit, p = 1, &r.Event
	case "outcome":
		bit, p = 2, &r.Outcome
	case "reason":
		bit, p = 3, &r.Reason
	case "exemption":
		bit, p = 4, &r.Exemption
	case "mode":
		bit, p = 5, &r.Mode
	case "libvirt_op":
		bit, p = 6, &r.Op
	case "vmgate_version":
		bit, p = 7, &r.Version
	case "action":
		bit, p = 8, &r.Action
	}
	if p != nil {
		return seen(mask, bit) && d.str(p)
	}
	switch string(key) {
	case "time":
		if !seen(mask, 9) {
			return false
		}
		if d.null() {
			return true
		}
		tok, _, ok := d.token()
		return ok && r.Time.UnmarshalJSON(tok) == nil
	case "revoked_at":
		if !seen(mask, 10) {
			return false
		}
		if d.null() {
			r.RevokedAt = nil
			return true
		}
		tok, _, ok := d.token()
		r.RevokedAt = new(time.Time)
		return ok && r.RevokedAt.UnmarshalJSON(tok) == nil
	case "domain":
		return seen(mask, 11) && !d.null() && readStrings(d, &r.Domain, domainField)
	case "instance":
		if !seen(mask, 12) {
			return false
		}
		r.Instance = nil
		if d.null() {
			return true
		}
		r.Instance = &trace.Instance{}
		return readStrings(d, r.Instance, instanceField)
	case "user", "project":
		o, bit := &r.User, uint(13)
		if string(key) == "project" {
			o, bit = &r.Project, 14
		}
		if !seen(mask, bit) {
			return false
		}
		*o = nil
		if d.null() {
			return true
		}
		*o = &trace.Owner{}
		return readStrings(d, *o, ownerField)
	case "list":
		if !seen(mask, 19) {
			return false
		}
		r.List = nil
		if d.null() {
			return true
		}
		r.List = &trace.List{}
		return readStrings(d, r.List, listField)
	case "block":
		if !seen(mask, 20) {
			return false
		}
		r.Block = nil
		if d.null() {
			return true
		}
		r.Block = &trace.Block{}
		return d.block(r.Block)
	case "actor":
		if !seen(mask, 15) {
			return false
		}
		r.Actor = nil
		if d.null() {
			return true
		}
		r.Actor = &trace.Actor{}
		return d.actor(r.Actor)
	case "images":
		if !seen(mask, 16) {
			return false
		}
		r.Images = nil
		if d.null() {
			return true
		}
		if !d.consume('[') {
			return false
		}
		r.Images = []trace.Image{}
		for first := true; ; first = false {
			done, ok := d.elem(first)
			if !ok {
				return false
			}
			if done {
				return true
			}
			r.Images = append(r.Images, trace.Image{})
			if !d.null() && !readStrings(d, &r.Images[len(r.Images)-1], imageField) {
				return false
			}
		}
	case "macs":
		return seen(mask, 17) && d.strings(&r.MACs)
	case "truncated":
		return seen(mask, 21) && d.strings(&r.Truncated)
	case "ips":
		if !seen(mask, 18) {
			return false
		}
		r.IPs = nil
		if d.null() {
			return true
		}
		if !d.consume('[') {
			return false
		}
		r.IPs = []trace.IP{}
		for first := true; ; first = false {
			done, ok := d.elem(first)
			if !ok {
				return false
			}
			if done {
				return true
			}
			r.IPs = append(r.IPs, trace.IP{})
			if !d.null() && !readStrings(d, &r.IPs[len(r.IPs)-1], ipField) {
				return false
			}
		}
	}
	return false // a key this version does not know
}

// strings reads a list of strings, or null, into *l.
func (d *recordDecoder) strings(l *[]string) bool {
	*l = nil
	if d.null() {
		return true
	}
	if !d.consume('[') {
		return false
	}
	*l = []string{}
	for first := true; ; first = false {
		done, ok := d.elem(first)
		if !ok {
			return false
		}
		if done {
			return true
		}
		*l = append(*l, "")
		if !d.str(&(*l)[len(*l)-1]) {
			return false
		}
	}
}

func (d *recordDecoder) actor(a *trace.Actor) bool {
	if !d.consume('{') {
		return false
	}
	var mask uint32
	for first := true; ; first = false {
		key, done, ok := d.key(first)
		switch {
		case !ok:
			return false
		case done:
			return true
		case string(key) == "uid":
			ok = seen(&mask, 0) && d.int(&a.UID)
		case string(key) == "name":
			ok = seen(&mask, 1) && d.str(&a.Name)
		default:
			ok = false
		}
		if !ok {
			return false
		}
	}
}

func (d *recordDecoder) block(b *trace.Block) bool {
	if !d.consume('{') {
		return false
	}
	var mask uint32
	for first := true; ; first = false {
		key, done, ok := d.key(first)
		switch {
		case !ok:
			return false
		case done:
			return true
		case string(key) == "until":
			if !seen(&mask, 0) {
				return false
			}
			if d.null() {
				b.Until = nil
				continue
			}
			tok, _, ok := d.token()
			b.Until = new(time.Time)
			if !ok || b.Until.UnmarshalJSON(tok) != nil {
				return false
			}
			continue
		}
		p, bit := blockField(b, key)
		if p == nil || !seen(&mask, bit) || !d.str(p) {
			return false
		}
	}
}

func blockField(v *trace.Block, key []byte) (*string, uint) {
	switch string(key) {
	case "kind":
		return &v.Kind, 1
	case "target":
		return &v.Target, 2
	case "reason":
		return &v.Reason, 3
	case "by":
		return &v.By, 4
	case "source":
		return &v.Source, 5
	}
	return nil, 0
}

// int reads an integer in the plain form json.Marshal writes; anything else (fractions,
// exponents, out of range) is json.Unmarshal's to judge.
func (d *recordDecoder) int(n *int) bool {
	d.ws()
	j := d.i
	if j < len(d.b) && d.b[j] == '-' {
		j++
	}
	digits := j
	for j < len(d.b) && d.b[j] >= '0' && d.b[j] <= '9' {
		j++
	}
	if j == digits || j-digits > 18 || (d.b[digits] == '0' && j-digits > 1) {
		return false
	}
	if j < len(d.b) && (d.b[j] == '.' || d.b[j] == 'e' || d.b[j] == 'E') {
		return false
	}
	v, err := strconv.Atoi(string(d.b[d.i:j]))
	if err != nil {
		return false
	}
	*n, d.i = v, j
	return true
}

// readStrings reads an object of string fields into v: field says where a key's value goes
// and gives it a bit for telling repeats, or nil for a key it does not know.
func readStrings[T any](d *recordDecoder, v T, field func(T, []byte) (*string, uint)) bool {
	if !d.consume('{') {
		return false
	}
	var mask uint32
	for first := true; ; first = false {
		key, done, ok := d.key(first)
		if !ok {
			return false
		}
		if done {
			return true
		}
		p, bit := field(v, key)
		if p == nil || !seen(&mask, bit) || !d.str(p) {
			return false
		}
	}
}

func domainField(v *trace.Domain, key []byte) (*string, uint) {
	switch string(key) {
	case "name":
		return &v.Name, 0
	case "uuid":
		return &v.UUID, 1
	}
	return nil, 0
}

func listField(v *trace.List, key []byte) (*string, uint) {
	switch string(key) {
	case "subscription":
		return &v.Subscription, 0
	case "identifier":
		return &v.Identifier, 1
	case "version":
		return &v.Version, 2
	case "sha256":
		return &v.SHA256, 3
	case "endorser":
		return &v.Endorser, 4
	}
	return nil, 0
}

func instanceField(v *trace.Instance, key []byte) (*string, uint) {
	switch string(key) {
	case "id":
		return &v.ID, 0
	case "name":
		return &v.Name, 1
	}
	return nil, 0
}

func ownerField(v *trace.Owner, key []byte) (*string, uint) {
	switch string(key) {
	case "id":
		return &v.ID, 0
	case "name":
		return &v.Name, 1
	}
	return nil, 0
}

func ipField(v *trace.IP, key []byte) (*string, uint) {
	switch string(key) {
	case "address":
		return &v.Address, 0
	case "type":
		return &v.Type, 1
	}
	return nil, 0
}

func imageField(v *trace.Image, key []byte) (*string, uint) {
	switch string(key) {
	case "disk":
		return &v.Disk, 0
	case "source":
		return &v.Source, 1
	case "glance_id":
		return &v.GlanceID, 2
	case "sha512":
		return &v.SHA512, 3
	case "identifier":
		return &v.Identifier, 4
	case "title":
		return &v.Title, 5
	case "version":
		return &v.Version, 6
	case "status":
		return &v.Status, 7
	case "subscription":
		return &v.Subscription, 8
	case "list":
		return &v.List, 9
	case "list_version":
		return &v.ListVersion, 10
	case "endorser":
		return &v.Endorser, 11
	}
	return nil, 0
}
