package policy

import (
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/policy/policytest"
)

var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func testList(t *testing.T, mut func(*policytest.List)) (*List, []byte) {
	t.Helper()
	tl := policytest.List{Identifier: "list-a", Version: "20261120", Created: now.Add(-time.Hour), Expires: now.Add(30 * 24 * time.Hour), Images: policytest.Images(3)}
	if mut != nil {
		mut(&tl)
	}
	raw := tl.Bytes()
	l, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return l, raw
}

func TestCheckRefusals(t *testing.T) {
	want := Expect{Identifier: "list-a", MaxAge: 720 * time.Hour, ClockSkew: 5 * time.Minute}
	prev := &Previous{Identifier: "list-a", Version: "20261110", SHA256: "old"}
	cases := []struct {
		name   string
		mut    func(*policytest.List)
		want   Expect
		prev   *Previous
		reason Reason
	}{
		{"identifier", func(l *policytest.List) { l.Identifier = "other" }, want, nil, ReasonIdentifierMismatch},
		{"identifier changed", func(l *policytest.List) { l.Identifier = "other" }, Expect{}, prev, ReasonIdentifierMismatch},
		{"future", func(l *policytest.List) { l.Created = now.Add(10 * time.Minute) }, want, nil, ReasonCreatedInFuture},
		{"expired", func(l *policytest.List) { l.Expires = now }, want, nil, ReasonExpired},
		{"frozen", func(l *policytest.List) { l.Created = now.Add(-721 * time.Hour) }, want, nil, ReasonFrozen},
		{"older version", func(l *policytest.List) { l.Version = "20261101" }, want, prev, ReasonRollback},
		{"same version other bytes", func(l *policytest.List) { l.Version = "20261110" }, want, prev, ReasonRollback},
		{"duplicate identifier", func(l *policytest.List) { l.Images[1].Identifier = l.Images[0].Identifier }, want, nil, ReasonDuplicateIdentifier},
		{"duplicate sha512", func(l *policytest.List) { l.Images[2].SHA512 = l.Images[0].SHA512 }, want, nil, ReasonDuplicateSHA512},
	}
	for _, c := range cases {
		l, _ := testList(t, c.mut)
		err := Check(l, "new", c.want, c.prev, now)
		r, ok := AsRefusal(err)
		if !ok || r.Reason != c.reason {
			t.Errorf("%s: err = %v, want reason %s", c.name, err, c.reason)
			continue
		}
		if r.Hint() == "" {
			t.Errorf("%s: no hint for %s", c.name, r.Reason)
		}
	}
}

func TestCheckAccepts(t *testing.T) {
	want := Expect{Identifier: "list-a", MaxAge: 720 * time.Hour, ClockSkew: 5 * time.Minute}
	l, _ := testList(t, func(l *policytest.List) { l.Created = now.Add(4 * time.Minute) })
	if err := Check(l, "x", want, &Previous{Identifier: "list-a", Version: "20261119", SHA256: "y"}, now); err != nil {
		t.Fatalf("within clock skew, newer version: %v", err)
	}
	if err := Check(l, "same", want, &Previous{Identifier: "list-a", Version: "20261120", SHA256: "same"}, now); err != nil {
		t.Fatalf("same version, same bytes: %v", err)
	}
}

func TestBadSHA512IsItsOwnReason(t *testing.T) {
	tl := policytest.List{Identifier: "l", Version: "1", Created: now, Expires: now.Add(time.Hour), Images: []policytest.Image{{Identifier: "a", SHA512: "zz", Version: "1"}}}
	_, err := Parse(tl.Bytes())
	if r, ok := AsRefusal(err); !ok || r.Reason != ReasonBadSHA512 {
		t.Fatalf("err = %v", err)
	}
}
