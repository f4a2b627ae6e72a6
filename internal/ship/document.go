package ship

import (
	"encoding/json"
	"strconv"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

// encodeECS appends the record as one line of ECS JSON, the document both sink types send.
// The mapping is package trace's ((Record).ECS), so that `vmgate trace query --format ecs`
// and the SIEM see the same fields.
func encodeECS(dst []byte, e *journal.Entry, r *trace.Record) ([]byte, error) {
	return appendJSON(dst, r.ECS(e.Seq, e.Hash, e.Prev))
}

// appendJSON appends v as encoding/json would, byte for byte (sorted keys, the same
// escapes), for the types an ECS document is made of; anything else goes to json.Marshal.
// encoding/json spends most of its time on reflection over the nested maps, and at the
// 20,000 records/s the SIEM must take that was half of a core of its own.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendJSONString(b, v)
	case map[string]any:
		b = append(b, '{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONString(b, k); err != nil {
				return b, err
			}
			b = append(b, ':')
			if b, err = appendJSON(b, v[k]); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	case []string:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONString(b, s); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case []any:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, x); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case nil:
		return append(b, "null"...), nil
	}
	j, err := json.Marshal(v)
	return append(b, j...), err
}

// sortedKeys returns m's keys in order. ECS maps have a handful of keys: an insertion sort
// into a small array beats sorting a fresh slice, which allocation and GC made a fifth of
// the cost of a record.
func sortedKeys(m map[string]any) []string {
	var arr [16]string
	keys := arr[:0]
	for k := range m {
		i := len(keys)
		keys = append(keys, k)
		for ; i > 0 && keys[i-1] > k; i-- {
			keys[i] = keys[i-1]
		}
		keys[i] = k
	}
	return keys
}

// appendJSONString writes plain strings (printable ASCII that encoding/json leaves as is)
// itself and lets encoding/json escape the others.
func appendJSONString(b []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			j, err := json.Marshal(s)
			return append(b, j...), err
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}
