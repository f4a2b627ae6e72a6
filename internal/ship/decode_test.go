package ship

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/vmgate/vmgate/internal/trace"
)

// filled sets every string of v (addressable) to a distinct value, every pointer to a new
// value and every slice to two elements, so that a field added to trace.Record shows up
// here without anyone listing it.
func filled(v reflect.Value, n *int) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		filled(v.Elem(), n)
	case reflect.Struct:
		if v.Type().String() == "time.Time" {
			return
		}
		for i := range v.NumField() {
			filled(v.Field(i), n)
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		filled(v.Index(0), n)
		filled(v.Index(1), n)
	case reflect.String:
		*n++
		v.SetString("v" + strings.Repeat("x", *n))
	case reflect.Int:
		*n++
		v.SetInt(int64(*n) - 20)
	}
}

func TestDecodeRecordTakesTheFastPath(t *testing.T) {
	var r trace.Record
	n := 0
	filled(reflect.ValueOf(&r).Elem(), &n)
	r.Time = testRecord(1).Time
	data, _ := json.Marshal(r)
	var got trace.Record
	d := recordDecoder{b: data}
	if !d.record(&got) || !d.end() {
		t.Fatalf("a record with every field set went to json.Unmarshal (a new field in trace.Record? add it to decode.go): %s", data)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("got %+v\nwant %+v", got, r)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for i := range 5 {
		b, _ := json.Marshal(testRecord(i))
		f.Add(b)
	}
	var r trace.Record
	n := 0
	filled(reflect.ValueOf(&r).Elem(), &n)
	b, _ := json.Marshal(r)
	f.Add(b)
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"host":null,"images":null,"user":null,"macs":[]}`, `{"host":"a","host":"b"}`,
		`{"Host":"case"}`, `{"host":"esc\u00e9\"\\"}`, "{\"host\":\"\xff\"}", `{"domain":{"name":"n","name":"m"}}`,
		`{"images":[null,{"sha512":"x"}],"ips":[{"address":"a"},null]}`, `{"time":"2026-11-20T10:00:00Z"}`,
		`{"time":"2026-11-20 10:00:00"}`, `{"time":null}`, ` { "host" : "a" , "macs" : [ "m" ] } `, `{"instance":{}}`,
		`{"unknown":1,"host":"a"}`, `{"host":1}`, `{"actor":{"uid":-0,"name":"root"}}`, `{"actor":{"uid":1.0}}`,
		`{"actor":{"uid":99999999999999999999}}`, `{"actor":null,"revoked_at":null}`, `{"revoked_at":"2026-11-20T10:00:00.5+01:00"}`,
		`{"actor":{"uid":007}}`, `{"action":"destroy","actor":{"uid":0}}`,
		`{"block":{"kind":"user","target":"u","until":null}}`, `{"block":{"until":"2026-12-01T00:00:00Z","by":"root"}}`,
		`{"block":{"kind":"a","kind":"b"}}`, `{"block":{"until":"tomorrow"}}`, `{"block":null}`, `{"block":{"other":"x"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		var want, got trace.Record
		werr := json.Unmarshal(data, &want)
		d := recordDecoder{b: data}
		fast := d.record(&got) && d.end()
		if !fast {
			return // json.Unmarshal's, by construction
		}
		if werr != nil {
			t.Fatalf("fast path accepted what json.Unmarshal refuses (%v): %s", werr, data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s\n fast %#v\n json %#v", data, got, want)
		}
	})
}

// BenchmarkDecodeRecord compares decodeRecord with json.Unmarshal on a typical record.
func BenchmarkDecodeRecord(b *testing.B) {
	data, _ := json.Marshal(testRecord(3))
	for name, decode := range map[string]func([]byte, *trace.Record) error{
		"fast": decodeRecord, "json.Unmarshal": func(d []byte, r *trace.Record) error { return json.Unmarshal(d, r) },
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var r trace.Record
				decode(data, &r)
			}
		})
	}
}
