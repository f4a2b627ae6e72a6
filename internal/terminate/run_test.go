package terminate

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/trace"
)

// fakeSource acts by remembering; VMs named fail-* fail.
type fakeSource struct {
	mu    sync.Mutex
	acted map[string]Action
}

func (f *fakeSource) Scope() string                      { return "fake" }
func (f *fakeSource) Actions() []Action                  { return []Action{Shutdown, Destroy} }
func (f *fakeSource) List(context.Context) ([]VM, error) { return nil, nil }
func (f *fakeSource) Act(_ context.Context, vm *VM, a Action, _ Options) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.HasPrefix(vm.Name, "fail-") {
		return "", errors.New("domain is locked by another job")
	}
	if f.acted == nil {
		f.acted = map[string]Action{}
	}
	f.acted[vm.Name] = a
	if vm.Name == "slow" {
		return "the guest did not shut down within 2m0s: destroyed", nil
	}
	return "", nil
}

func novaVM(name string) VM {
	v := vm(name, refusedBy(disk("vda", "revoked", revokedImage(now.Add(-time.Hour)))))
	v.Decision.Reason = "disk vda image /img/vda.raw (sha512 abab…) is not endorsed: removed"
	v.Domain = &domain.Domain{Name: name, UUID: "uuid-" + name, Interfaces: []domain.Interface{{MAC: "fa:16:3e:00:00:01"}},
		Nova: &domain.Nova{Name: "analysis-" + name, UserID: "u-carol", ProjectID: "p-hep",
			Ports: []domain.NovaPort{{IPs: []domain.NovaIP{{Type: "floating", Address: netip.MustParseAddr("192.0.2.77")}}}}}}
	return v
}

func TestExecute(t *testing.T) {
	vms := []VM{novaVM("a"), novaVM("fail-b"), novaVM("slow"), vm("ok", admission.Decision{Endorsed: true}), vm("q", admission.Decision{Reason: "kernel"})}
	p := MakePlan(vms, Options{Action: Shutdown, Max: 3, Now: now})
	var recs []trace.Record
	src := &fakeSource{}
	res, err := Execute(context.Background(), src, p, testEnv(func(r ...trace.Record) error { recs = append(recs, r...); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || len(src.acted) != 2 || src.acted["a"] != Shutdown || src.acted["slow"] != Shutdown {
		t.Fatalf("results %+v, acted %v", res, src.acted)
	}
	if res[1].Err == nil || res[0].Err != nil || res[2].Note == "" {
		t.Errorf("results: %+v", res)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want one per action, failed ones included", len(recs))
	}
	byName := map[string]trace.Record{}
	for _, r := range recs {
		byName[r.Domain.Name] = r
		if r.Event != trace.VMTerminated || r.Action != "shutdown" || r.Actor == nil || r.Actor.Name != "secteam" || r.RevokedAt == nil ||
			!r.RevokedAt.Equal(now.Add(-time.Hour)) || r.Instance == nil || r.User.ID != "u-carol" || r.Project.ID != "p-hep" ||
			len(r.IPs) != 1 || r.IPs[0].Address != "192.0.2.77" || len(r.MACs) != 1 || len(r.Images) != 1 || r.Images[0].Identifier != "img-r" {
			t.Errorf("record: %+v", r)
		}
	}
	if r := byName["fail-b"]; r.Outcome != trace.OutcomeFailure || !strings.Contains(r.Reason, "shutdown failed: domain is locked") {
		t.Errorf("failed action's record: %+v", r)
	}
	if r := byName["a"]; r.Outcome != trace.OutcomeSuccess || !strings.HasPrefix(r.Reason, "disk vda image") {
		t.Errorf("record: %+v", r)
	}
	if r := byName["slow"]; !strings.HasPrefix(r.Reason, "the guest did not shut down within 2m0s: destroyed; disk vda") {
		t.Errorf("record: %+v", r)
	}

	// The report: failures listed, counts, JSON for scripts.
	rep := &Report{Scope: "fake", Plan: p, Results: res}
	var table, js strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"failed: domain is locked", "done: the guest did not shut down", "not acted on: unclassified", "shutdown: 2 done, 1 failed"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var out reportJSON
	if err := json.Unmarshal([]byte(js.String()), &out); err != nil {
		t.Fatal(err)
	}
	if out.Counts.Targets != 3 || out.Counts.Failed != 1 || out.Counts.Done != 2 || out.Counts.Unclassified != 1 || len(out.VMs) != 4 || out.VMs[0].RevokedAt == nil {
		t.Errorf("json: %s", js.String())
	}
}

func TestExecuteRecordFails(t *testing.T) {
	p := MakePlan([]VM{novaVM("a")}, Options{Action: Destroy, Max: 50, Now: now})
	res, err := Execute(context.Background(), &fakeSource{}, p, testEnv(func(...trace.Record) error { return errors.New("no space left on device") }))
	if err != nil || len(res) != 1 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "trace record could not be written: no space left") {
		t.Errorf("%v %+v", err, res)
	}
}

func TestExecuteRefused(t *testing.T) {
	p := MakePlan([]VM{novaVM("a"), novaVM("b")}, Options{Action: Destroy, Max: 1, Now: now})
	src := &fakeSource{}
	if _, err := Execute(context.Background(), src, p, testEnv(nil)); !errors.Is(err, ErrRefused) || len(src.acted) != 0 {
		t.Errorf("%v, acted %v", err, src.acted)
	}
	p = MakePlan([]VM{novaVM("a")}, Options{Action: Lock, Max: 1, Now: now})
	if _, err := Execute(context.Background(), src, p, testEnv(nil)); err == nil || len(src.acted) != 0 {
		t.Errorf("an action the source cannot take: %v", err)
	}
}

func testEnv(rec Recorder) Env {
	return Env{Host: "node1", Version: "test", Actor: trace.Actor{UID: 4242, Name: "secteam"}, Record: rec, Parallel: 8,
		Now: func() time.Time { return now }}
}
