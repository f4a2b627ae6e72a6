package trace

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestECS(t *testing.T) {
	sha := strings.Repeat("ab", 64)
	r := Record{
		Time: time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC), Host: "node1", Event: AdmissionRefuse,
		Outcome: OutcomeFailure, Reason: "image is not endorsed", Mode: "enforce", Op: "prepare begin",
		Domain:   Domain{Name: "instance-0000002a", UUID: "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f"},
		Instance: &Instance{ID: "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f", Name: "analysis-node-3"},
		User:     &Owner{ID: "9f8e7d6c5b4a49388776655443322110", Name: "carol"},
		Project:  &Owner{ID: "0a1b2c3d4e5f46778899aabbccddeeff", Name: "hep-analysis"},
		Images: []Image{{Disk: "vda", GlanceID: "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b", SHA512: sha, Identifier: "el9",
			Status: "revoked", Subscription: "example", List: "5b0e7c9a", ListVersion: "7", Endorser: "/CN=E"},
			{Disk: "vdb", SHA512: sha, Status: "endorsed"}},
		MACs:    []string{"fa:16:3e:12:34:56"},
		IPs:     []IP{{Address: "10.20.30.41", Type: "fixed"}, {Address: "192.0.2.77", Type: "floating"}, {Address: "10.20.30.41", Type: "fixed"}},
		Version: "1.0.0",
	}
	b, err := json.Marshal(r.ECS(42, "h42", "h41"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"@timestamp":"2026-11-20T10:00:00.123456789Z",` +
		`"cloud":{"instance":{"id":"7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f","name":"analysis-node-3"},` +
		`"project":{"id":"0a1b2c3d4e5f46778899aabbccddeeff","name":"hep-analysis"},"provider":"openstack"},` +
		`"ecs":{"version":"8.17.0"},` +
		`"event":{"action":"admission.refuse","dataset":"vmgate.trace","kind":"event","module":"vmgate","outcome":"failure","reason":"image is not endorsed"},` +
		`"hash":{"sha512":"` + sha + `"},"host":{"name":"node1"},` +
		`"related":{"hash":["` + sha + `"],"ip":["10.20.30.41","192.0.2.77"],"user":["9f8e7d6c5b4a49388776655443322110","carol"]},` +
		`"user":{"id":"9f8e7d6c5b4a49388776655443322110","name":"carol"},` +
		`"vmgate":{"domain":{"name":"instance-0000002a","uuid":"7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f"},"hash":"h42",` +
		`"images":[{"disk":"vda","endorser":"/CN=E","glance_id":"4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b","identifier":"el9","list":"5b0e7c9a","list_version":"7","sha512":"` + sha + `","status":"revoked","subscription":"example"},` +
		`{"disk":"vdb","sha512":"` + sha + `","status":"endorsed"}],` +
		`"ips":[{"address":"10.20.30.41","type":"fixed"},{"address":"192.0.2.77","type":"floating"},{"address":"10.20.30.41","type":"fixed"}],` +
		`"libvirt_op":"prepare begin","list":{"endorser":"/CN=E","identifier":"5b0e7c9a","subscription":"example","version":"7"},` +
		`"macs":["fa:16:3e:12:34:56"],"mode":"enforce","prev_hash":"h41","seq":42,"version":"1.0.0"}}`
	if string(b) != want {
		t.Fatalf("ECS\n%s\nwant\n%s", b, want)
	}
	// Pure: the same record gives the same document, and the record is not changed.
	again, _ := json.Marshal(r.ECS(42, "h42", "h41"))
	if string(again) != want {
		t.Fatal("a second call differs")
	}
}

func TestECSLeavesOutWhatIsMissing(t *testing.T) {
	r := Record{Time: time.Date(2026, 11, 20, 10, 0, 0, 0, time.FixedZone("x", 3600)), Host: "node2",
		Event: VMStopped, Outcome: OutcomeSuccess, Domain: Domain{Name: "build-runner-01"}, Version: "dev"}
	got := r.ECS(7, "h7", "h6")
	want := map[string]any{
		"@timestamp": "2026-11-20T09:00:00Z",
		"ecs":        map[string]any{"version": ECSVersion},
		"event":      map[string]any{"kind": "event", "module": "vmgate", "dataset": "vmgate.trace", "action": "vm.stopped", "outcome": "success"},
		"host":       map[string]any{"name": "node2"},
		"vmgate":     map[string]any{"seq": uint64(7), "hash": "h7", "prev_hash": "h6", "domain": map[string]any{"name": "build-runner-01"}, "version": "dev"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ECS\n%#v\nwant\n%#v", got, want)
	}
}

func TestECSTerminated(t *testing.T) {
	revoked := time.Date(2026, 11, 18, 9, 0, 0, 0, time.UTC)
	r := Record{Time: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), Host: "node1", Event: VMTerminated,
		Outcome: OutcomeSuccess, Domain: Domain{Name: "vm1"}, User: &Owner{Name: "carol"},
		Action: "suspend", Actor: &Actor{UID: 0, Name: "root"}, RevokedAt: &revoked, Version: "1"}
	doc := r.ECS(9, "h9", "h8")
	vm := doc["vmgate"].(map[string]any)
	if vm["action"] != "suspend" || !reflect.DeepEqual(vm["actor"], map[string]any{"uid": 0, "name": "root"}) ||
		vm["revoked_at"] != "2026-11-18T09:00:00Z" {
		t.Fatalf("vmgate %#v", vm)
	}
	if rel := doc["related"].(map[string]any); !reflect.DeepEqual(rel["user"], []string{"carol", "root"}) {
		t.Fatalf("related %#v", rel)
	}
	if u := doc["user"].(map[string]any); u["name"] != "carol" {
		t.Fatalf("user %#v: the VM's owner, not the actor", u)
	}
}
