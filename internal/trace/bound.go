package trace

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Limits that make every record fit in one journal line (journal.MaxDataSize, 1 MiB)
// whatever the domain XML held: a 400 KB disk path, thousands of NICs. A refusal is
// recorded like any other decision, its oversized parts cut and named in Truncated.
const (
	// MaxString is the most bytes one string value may take once JSON-encoded.
	MaxString = 2048
	// MaxImages, MaxMACs and MaxIPs cap the lists of a record.
	MaxImages = 16
	MaxMACs   = 64
	MaxIPs    = 64
)

// ellipsis ends a string that was cut.
const ellipsis = "…"

// Bound cuts what is too large in r, in place (what r points to included), and names each
// cut field in r.Truncated ("reason", "images[0].source", "images" when entries were
// dropped). The work is bounded by the limits, not by the input: a long string is scanned
// only up to MaxString, a long list only up to its cap.
func Bound(r *Record) {
	b := bounder{r: r}
	for _, f := range []struct {
		name string
		s    *string
	}{
		{"host", &r.Host}, {"event", &r.Event}, {"outcome", &r.Outcome}, {"reason", &r.Reason},
		{"exemption", &r.Exemption}, {"mode", &r.Mode}, {"libvirt_op", &r.Op},
		{"domain.name", &r.Domain.Name}, {"domain.uuid", &r.Domain.UUID},
		{"action", &r.Action}, {"vmgate_version", &r.Version},
	} {
		b.str(f.name, f.s)
	}
	if i := r.Instance; i != nil {
		b.str("instance.id", &i.ID)
		b.str("instance.name", &i.Name)
	}
	for _, o := range []struct {
		name string
		o    *Owner
	}{{"user", r.User}, {"project", r.Project}} {
		if o.o != nil {
			b.str(o.name+".id", &o.o.ID)
			b.str(o.name+".name", &o.o.Name)
		}
	}
	if l := r.List; l != nil {
		b.str("list.subscription", &l.Subscription)
		b.str("list.identifier", &l.Identifier)
		b.str("list.version", &l.Version)
		b.str("list.sha256", &l.SHA256)
		b.str("list.endorser", &l.Endorser)
	}
	if a := r.Actor; a != nil {
		b.str("actor.name", &a.Name)
	}
	if k := r.Block; k != nil {
		b.str("block.kind", &k.Kind)
		b.str("block.target", &k.Target)
		b.str("block.reason", &k.Reason)
		b.str("block.by", &k.By)
		b.str("block.source", &k.Source)
	}
	if len(r.Images) > MaxImages {
		r.Images = r.Images[:MaxImages:MaxImages]
		b.cut("images")
	}
	for i := range r.Images {
		im := &r.Images[i]
		p := "images[" + strconv.Itoa(i) + "]."
		for _, f := range []struct {
			name string
			s    *string
		}{
			{"disk", &im.Disk}, {"source", &im.Source}, {"glance_id", &im.GlanceID}, {"sha512", &im.SHA512},
			{"identifier", &im.Identifier}, {"title", &im.Title}, {"version", &im.Version}, {"status", &im.Status},
			{"subscription", &im.Subscription}, {"list", &im.List}, {"list_version", &im.ListVersion}, {"endorser", &im.Endorser},
		} {
			if fits(*f.s) {
				continue // no name built for what is not cut: the common case stays cheap
			}
			b.str(p+f.name, f.s)
		}
	}
	if len(r.MACs) > MaxMACs {
		r.MACs = r.MACs[:MaxMACs:MaxMACs]
		b.cut("macs")
	}
	for i := range r.MACs {
		if !fits(r.MACs[i]) { // no name built for what is not cut
			b.str(fmt.Sprintf("macs[%d]", i), &r.MACs[i])
		}
	}
	if len(r.IPs) > MaxIPs {
		r.IPs = r.IPs[:MaxIPs:MaxIPs]
		b.cut("ips")
	}
	for i := range r.IPs {
		if !fits(r.IPs[i].Address) {
			b.str(fmt.Sprintf("ips[%d].address", i), &r.IPs[i].Address)
		}
		if !fits(r.IPs[i].Type) {
			b.str(fmt.Sprintf("ips[%d].type", i), &r.IPs[i].Type)
		}
	}
}

type bounder struct {
	r    *Record
	seen bool // r.Truncated was reset
}

// cut records that the field name was cut. A record bounded twice lists each field once.
func (b *bounder) cut(name string) {
	if !b.seen {
		b.r.Truncated, b.seen = nil, true
	}
	b.r.Truncated = append(b.r.Truncated, name)
}

func (b *bounder) str(name string, s *string) {
	if fits(*s) {
		return
	}
	*s = shorten(*s, MaxString-len(ellipsis)) + ellipsis
	b.cut(name)
}

// fits reports whether s takes at most MaxString bytes as JSON: a short string does
// whatever it holds (at most 6 bytes a byte, for \u00XX), a longer one is measured.
func fits(s string) bool {
	if len(s)*6 <= MaxString {
		return true
	}
	return len(shorten(s, MaxString)) == len(s)
}

// shorten returns the longest prefix of s, cut between characters, whose JSON encoding
// (as encoding/json writes it) takes at most budget bytes. It reads at most budget bytes
// of s.
func shorten(s string, budget int) string {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		w, size := 1, 1
		switch {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
			w = 2
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			w = 6
		case c >= utf8.RuneSelf:
			r, sz := utf8.DecodeRuneInString(s[i:])
			size, w = sz, sz
			if r == utf8.RuneError && sz == 1 || r == '\u2028' || r == '\u2029' {
				w = 6
			}
		}
		if n+w > budget {
			return s[:i]
		}
		n += w
		i += size
	}
	return s
}
