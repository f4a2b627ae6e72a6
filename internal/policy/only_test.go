package policy

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/policy/policytest"
)

// Syncer.Only fetches the subscriptions named and leaves the others' lists in force, in the
// state and in the snapshot.
func TestSyncOnly(t *testing.T) {
	s := newSite(t)
	imgs := policytest.Images(3)
	s.publish(list("1", imgs[0], imgs[1]))
	s.sync()

	// A second subscription to the same list, under another name.
	second := s.cfg.Subscriptions[0]
	second.Name = "second"
	s.cfg.Subscriptions = append(s.cfg.Subscriptions, second)
	s.publish(list("2", imgs[0], imgs[1], imgs[2]))

	run := func(only ...string) *Report {
		t.Helper()
		rep, err := (&Syncer{Config: s.cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Now: func() time.Time { return s.clock }, Only: only}).Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	rep := run("second")
	want := map[string]Outcome{"example": OutcomeSkipped, "second": OutcomeAccepted}
	for _, r := range rep.Results {
		if r.Outcome != want[r.Subscription] {
			t.Errorf("%s: %s, want %s", r.Subscription, r.Outcome, want[r.Subscription])
		}
	}
	if r := rep.Results[0]; r.Version != "1" || r.Endorsed != 2 {
		t.Errorf("skipped example: version %q, %d endorsed; want its list 1 in force, 2 endorsed", r.Version, r.Endorsed)
	}
	if len(rep.Snapshot.Lists) != 2 {
		t.Errorf("the snapshot has %d lists behind it, want both", len(rep.Snapshot.Lists))
	}
	if s.lookup(imgs[2].SHA512) == nil {
		t.Errorf("the image only the second subscription endorses is not in the snapshot")
	}
	rep = run("example")
	if rep.Results[0].Outcome != OutcomeAccepted || rep.Results[1].Outcome != OutcomeSkipped {
		t.Errorf("Only example: %+v", rep.Results)
	}
}
