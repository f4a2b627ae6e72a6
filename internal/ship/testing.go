package ship

// Readers of what the syslog sink writes, for tests here and in test/integration: they accept
// what RFC 5424 and RFC 6587 allow vmgate to send and refuse anything else, so that a test
// that parses a message back checks its form too.

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// SplitFrames splits octet-counted frames (`LEN SP MSG`) and returns the complete messages
// and the bytes of an incomplete last frame.
func SplitFrames(data []byte) (msgs [][]byte, rest []byte, err error) {
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		if sp < 0 {
			if len(data) > 10 || !allDigits(data) {
				return msgs, data, fmt.Errorf("frame without a length: %.40q", data)
			}
			return msgs, data, nil
		}
		if sp == 0 || sp > 10 || !allDigits(data[:sp]) || data[0] == '0' {
			return msgs, data, fmt.Errorf("bad frame length %.20q", data[:sp])
		}
		n, _ := strconv.Atoi(string(data[:sp]))
		if len(data) < sp+1+n {
			return msgs, data, nil
		}
		msgs = append(msgs, data[sp+1:sp+1+n])
		data = data[sp+1+n:]
	}
	return msgs, nil, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// Message is an RFC 5424 message as ParseMessage reads it.
type Message struct {
	Facility, Severity int
	Timestamp          string
	Hostname           string
	AppName            string
	ProcID             string
	MsgID              string
	SDID               string            // of the one structured data element
	Params             map[string]string // unescaped
	ParamOrder         []string
	Msg                []byte
}

// ParseMessage reads one message with exactly one SD-ELEMENT, as vmgate writes them.
func ParseMessage(b []byte) (Message, error) {
	var m Message
	if len(b) < 4 || b[0] != '<' {
		return m, errors.New("no PRI")
	}
	end := bytes.IndexByte(b, '>')
	if end < 2 || end > 4 || !allDigits(b[1:end]) {
		return m, errors.New("bad PRI")
	}
	pri, _ := strconv.Atoi(string(b[1:end]))
	if pri > 191 {
		return m, errors.New("PRI over 191")
	}
	m.Facility, m.Severity = pri/8, pri%8
	b = b[end+1:]
	if !bytes.HasPrefix(b, []byte("1 ")) {
		return m, errors.New("VERSION is not 1")
	}
	b = b[2:]
	fields := []*string{&m.Timestamp, &m.Hostname, &m.AppName, &m.ProcID, &m.MsgID}
	limits := []int{32, 255, 48, 128, 32}
	for i, f := range fields {
		sp := bytes.IndexByte(b, ' ')
		if sp < 1 || sp > limits[i] {
			return m, fmt.Errorf("header field %d: empty or too long", i+2)
		}
		for _, c := range b[:sp] {
			if c < '!' || c > '~' {
				return m, fmt.Errorf("header field %d: byte %#x is not printable US-ASCII", i+2, c)
			}
		}
		*f = string(b[:sp])
		b = b[sp+1:]
	}
	if len(b) == 0 || b[0] != '[' {
		return m, errors.New("no structured data element")
	}
	b = b[1:]
	sp := bytes.IndexAny(b, " ]")
	if sp < 1 {
		return m, errors.New("bad SD-ID")
	}
	m.SDID = string(b[:sp])
	b = b[sp:]
	m.Params = map[string]string{}
	for len(b) > 0 && b[0] == ' ' {
		eq := bytes.Index(b, []byte(`="`))
		if eq < 2 || eq > 33 || bytes.ContainsAny(b[1:eq], ` ]"=`) {
			return m, errors.New("bad PARAM-NAME")
		}
		name := string(b[1:eq])
		b = b[eq+2:]
		var val []byte
		closed := false
		for i := 0; i < len(b); i++ {
			c := b[i]
			if c == '\\' && i+1 < len(b) && (b[i+1] == '"' || b[i+1] == '\\' || b[i+1] == ']') {
				val = append(val, b[i+1])
				i++
				continue
			}
			if c == ']' {
				return m, fmt.Errorf("param %s: unescaped ]", name)
			}
			if c == '"' {
				b, closed = b[i+1:], true
				break
			}
			val = append(val, c)
		}
		if !closed {
			return m, fmt.Errorf("param %s: no closing quote", name)
		}
		if _, dup := m.Params[name]; dup {
			return m, fmt.Errorf("param %s twice", name)
		}
		m.Params[name] = string(val)
		m.ParamOrder = append(m.ParamOrder, name)
	}
	if len(b) == 0 || b[0] != ']' {
		return m, errors.New("structured data element not closed")
	}
	b = b[1:]
	if len(b) > 0 {
		if b[0] != ' ' {
			return m, errors.New("no space before MSG")
		}
		m.Msg = b[1:]
	}
	return m, nil
}
