package ship

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

// SDID names vmgate's structured data element. 32473 is RFC 5612's documentation PEN: a
// placeholder until vmgate has its own private enterprise number (see the package doc).
const SDID = "vmgate@32473"

// Syslog facility and severities (RFC 5424 section 6.2.1).
const (
	facilityAuthpriv = 10
	severityWarning  = 4
	severityNotice   = 5
	severityInfo     = 6
)

// timeLayout is RFC 5424's TIMESTAMP with its maximum of six fraction digits.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// severity chooses by what the record says: refusals need a person's attention more than
// the steady stream of allowed starts and stops.
func severity(r *trace.Record) int {
	switch r.Event {
	case trace.AdmissionRefuse, "list.refused":
		return severityWarning
	case trace.AdmissionWarn, "image.revoked", trace.VMTerminated:
		return severityNotice
	}
	if r.Outcome == trace.OutcomeFailure {
		return severityWarning
	}
	return severityInfo
}

// appendMessage appends the RFC 5424 message (without framing) for one record, whose ECS
// JSON is msg.
func appendMessage(b []byte, appName string, e *journal.Entry, r *trace.Record, msg []byte) []byte {
	b = appendHead(b, appName, e, r)
	if len(msg) == 0 {
		return b
	}
	b = append(b, ' ')
	return append(b, msg...)
}

// appendHead appends a message's header and structured data, everything but SP MSG.
func appendHead(b []byte, appName string, e *journal.Entry, r *trace.Record) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, facilityAuthpriv*8+int64(severity(r)), 10)
	b = append(b, ">1 "...)
	b = recordTime(e, r).UTC().AppendFormat(b, timeLayout)
	b = append(b, ' ')
	b = appendHeaderField(b, r.Host, 255)
	b = append(b, ' ')
	b = appendHeaderField(b, appName, 48)
	b = append(b, " - "...) // PROCID
	b = appendHeaderField(b, r.Event, 32)
	b = append(b, ' ')
	return appendSD(b, e, r)
}

// appendHeaderField appends a header field as RFC 5424 allows it: 1 to max printable
// US-ASCII characters, or "-" when empty. Other characters become '_' rather than making the
// whole message unparsable.
func appendHeaderField(b []byte, s string, max int) []byte {
	if s == "" {
		return append(b, '-')
	}
	if len(s) > max {
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' {
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

// appendSD appends the one structured data element, in the order the package doc gives.
func appendSD(b []byte, e *journal.Entry, r *trace.Record) []byte {
	b = append(b, '[')
	b = append(b, SDID...)
	b = appendParam(b, "seq", strconv.FormatUint(e.Seq, 10))
	b = appendParam(b, "hash", e.Hash)
	b = appendParam(b, "prev", e.Prev)
	b = appendParam(b, "event", r.Event)
	b = appendParam(b, "outcome", r.Outcome)
	b = appendParam(b, "domain", r.Domain.Name)
	b = appendParam(b, "domain_uuid", r.Domain.UUID)
	if r.Instance != nil {
		b = appendParam(b, "instance", r.Instance.ID)
	}
	if r.User != nil {
		b = appendParam(b, "user", r.User.ID)
	}
	if r.Project != nil {
		b = appendParam(b, "project", r.Project.ID)
	}
	b = appendListParam(b, "image_sha512", len(r.Images), func(i int) string { return r.Images[i].SHA512 })
	b = appendListParam(b, "ips", len(r.IPs), func(i int) string { return r.IPs[i].Address })
	return append(b, ']')
}

// appendListParam appends the n values of a list as one comma-separated parameter, empty
// and repeated ones left out.
func appendListParam(b []byte, name string, n int, value func(int) string) []byte {
	first := true
	for i := range n {
		v := value(i)
		if v == "" {
			continue
		}
		dup := false
		for j := range i {
			if value(j) == v {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		if first {
			b = append(b, ' ')
			b = append(b, name...)
			b = append(b, `="`...)
			first = false
		} else {
			b = append(b, ',')
		}
		b = appendParamValue(b, v)
	}
	if !first {
		b = append(b, '"')
	}
	return b
}

// appendParam appends ` name="value"`, leaving out empty values.
func appendParam(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, `="`...)
	b = appendParamValue(b, value)
	return append(b, '"')
}

// appendParamValue appends a PARAM-VALUE: UTF-8 (invalid bytes become U+FFFD) with `"`, `\`
// and `]` escaped (RFC 5424 section 6.3.3).
func appendParamValue(b []byte, value string) []byte {
	if !strings.ContainsAny(value, "\"\\]") && utf8.ValidString(value) {
		return append(b, value...) // nearly always
	}
	value = strings.ToValidUTF8(value, "\uFFFD")
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFrame appends the message made of head and msg (the two parts appendMessage joins)
// with RFC 6587 octet-counting framing: its length in decimal, a space, the message. No
// trailer: the receiver knows where the next one starts.
func appendFrame(b, head, msg []byte) []byte {
	n := len(head)
	if len(msg) > 0 {
		n += 1 + len(msg)
	}
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, ' ')
	b = append(b, head...)
	if len(msg) == 0 {
		return b
	}
	b = append(b, ' ')
	return append(b, msg...)
}

// recordTime is the time a record stands for: its own, else when the journal took it.
func recordTime(e *journal.Entry, r *trace.Record) time.Time {
	if !r.Time.IsZero() {
		return r.Time
	}
	return e.Time
}
