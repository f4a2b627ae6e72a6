package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary bytes to the journal checker. It must not panic; it must call
// the bytes intact exactly when refChain, an independent check built on encoding/json, finds
// them a valid chain; what it reports as intact before a torn tail or a problem must be a
// valid chain too; and Append's backward search for the last good record must agree with it.
// The seeds are in testdata/fuzz/FuzzVerify; `go test -fuzz FuzzVerify` explores further.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var entries []Entry
		rep, err := walk(bytes.NewReader(b), func(e Entry) bool { entries = append(entries, e); return true })
		if err != nil {
			t.Fatal(err)
		}
		if rep.Problem != nil && rep.Torn != nil {
			t.Fatalf("both a problem and a torn tail: %v", rep)
		}
		if len(entries) != rep.Records {
			t.Fatalf("%d entries passed on, %d records reported", len(entries), rep.Records)
		}

		// Intact exactly when the reference check finds a valid chain.
		records, last, err := refChain(b)
		if rep.Intact() != (err == nil) {
			t.Fatalf("Verify: %v; the reference check: %v", rep, err)
		}
		// What comes before a torn tail or a problem is a valid chain of the records reported.
		good := len(b)
		switch {
		case rep.Torn != nil:
			good = int(rep.Torn.Offset)
			if rep.Torn.Offset+rep.Torn.Size != int64(len(b)) {
				t.Fatalf("torn tail does not reach the end: %v", rep)
			}
		case rep.Problem != nil:
			good = int(rep.Problem.Offset)
		}
		if good < len(b) {
			records, last, err = refChain(b[:good])
			if err != nil {
				t.Fatalf("Verify: %v; the reference check of the first %d bytes: %v", rep, good, err)
			}
		}
		if records != rep.Records || last != rep.LastHash {
			t.Fatalf("Verify: %v; the reference check: %d records, last hash %s", rep, records, last)
		}

		// What Append would chain onto: the same record, and what it would cut off is the
		// torn tail Verify reports.
		if rep.Problem == nil {
			tl, found, err := scanTail(b, 0, int64(len(b)))
			if err != nil || !found || tl.seq != rep.LastSeq || tl.hash != rep.LastHash || tl.end != int64(good) {
				t.Fatalf("Verify: %v; scanTail: %+v, %v, %v", rep, tl, found, err)
			}
		}
	})
}

// refChain checks that b is a journal as Append writes it, decoding each line with
// encoding/json and writing it out again, and returns the number of records and the last
// hash (or the anchor).
func refChain(b []byte) (records int, last string, err error) {
	if len(b) == 0 {
		return 0, zeroHash, nil
	}
	if b[len(b)-1] != '\n' {
		return 0, "", fmt.Errorf("no newline at the end")
	}
	ls := bytes.Split(b[:len(b)-1], []byte("\n"))
	var h struct {
		Journal   string `json:"journal"`
		AnchorSeq uint64 `json:"anchor_seq"`
		Anchor    string `json:"anchor"`
	}
	if err := strictUnmarshal(ls[0], &h); err != nil {
		return 0, "", fmt.Errorf("header: %v", err)
	}
	if again := fmt.Sprintf(`{"journal":"vmgate/1","anchor_seq":%d,"anchor":"%s"}`, h.AnchorSeq, h.Anchor); again != string(ls[0]) || !refHex(h.Anchor) {
		return 0, "", fmt.Errorf("header not in its one form")
	}
	seq, prev := h.AnchorSeq, h.Anchor
	for i, l := range ls[1:] {
		var r struct {
			Seq  uint64          `json:"seq"`
			Time string          `json:"time"`
			Prev string          `json:"prev"`
			Data json.RawMessage `json:"data"`
			Hash string          `json:"hash"`
		}
		if len(l)+1 > MaxRecordSize {
			return 0, "", fmt.Errorf("line %d too long", i+2)
		}
		if err := strictUnmarshal(l, &r); err != nil {
			return 0, "", fmt.Errorf("line %d: %v", i+2, err)
		}
		again := fmt.Sprintf(`{"seq":%d,"time":"%s","prev":"%s","data":%s,"hash":"%s"}`, r.Seq, r.Time, r.Prev, r.Data, r.Hash)
		if again != string(l) || !refHex(r.Prev) || !refHex(r.Hash) || len(r.Data) > MaxDataSize || bytes.ContainsAny(r.Data, "\r\n") {
			return 0, "", fmt.Errorf("line %d not in its one form", i+2)
		}
		if tm, err := time.Parse(time.RFC3339Nano, r.Time); err != nil || tm.UTC().Format(time.RFC3339Nano) != r.Time {
			return 0, "", fmt.Errorf("line %d: time %q", i+2, r.Time)
		}
		sum := sha256.Sum256(l[:bytes.LastIndex(l, []byte(`,"hash":"`))])
		if hex.EncodeToString(sum[:]) != r.Hash {
			return 0, "", fmt.Errorf("line %d: hash", i+2)
		}
		if r.Seq != seq+1 || r.Prev != prev {
			return 0, "", fmt.Errorf("line %d: chain", i+2)
		}
		seq, prev = r.Seq, r.Hash
		records++
	}
	return records, prev, nil
}

func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func refHex(s string) bool {
	_, err := hex.DecodeString(s)
	return len(s) == 64 && err == nil && s == fmt.Sprintf("%x", mustHex(s))
}

func mustHex(s string) []byte { b, _ := hex.DecodeString(s); return b }
