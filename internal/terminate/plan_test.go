package terminate

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/admission"
	"github.com/vmgate/vmgate/internal/domain"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func disk(target, status string, im *snapshot.Image) admission.Disk {
	d := admission.Disk{Target: target, Source: "/img/" + target + ".raw", SHA512: strings.Repeat("ab", 64), Status: status, Image: im}
	if im != nil {
		d.Reason = im.ReasonAt(now)
	}
	switch status {
	case admission.StatusUnknown:
		d.Reason = "no subscribed list endorses it"
	case admission.StatusError:
		d.Reason, d.SHA512 = "cannot follow its backing chain: no such file", ""
	}
	return d
}

func revokedImage(at time.Time) *snapshot.Image {
	return &snapshot.Image{Subscription: "example", Identifier: "img-r", Title: "Worker", Status: snapshot.Revoked, RevokedAt: at,
		Reason: `removed from list "example" version 2 on ` + at.Format(time.RFC3339)}
}

func vm(name string, dec admission.Decision) VM {
	return VM{Name: name, UUID: "uuid-" + name, Domain: &domain.Domain{Name: name}, Decision: dec}
}

func refusedBy(disks ...admission.Disk) admission.Decision {
	return admission.Decision{Reason: "refused", Disks: disks}
}

func TestPlanVerdicts(t *testing.T) {
	endorsedIm := &snapshot.Image{Identifier: "img-e", Status: snapshot.Endorsed, Expires: now.Add(time.Hour)}
	expiredIm := &snapshot.Image{Identifier: "img-x", Status: snapshot.Endorsed, Expires: now.Add(-3 * time.Hour)}
	expiredBySync := &snapshot.Image{Identifier: "img-y", Status: snapshot.Expired, RevokedAt: now.Add(-5 * time.Hour), Reason: "image expired"}
	cases := []struct {
		name    string
		vm      VM
		grace   time.Duration
		verdict Verdict
		at      time.Time
		note    string
	}{
		{"endorsed", vm("e", admission.Decision{Endorsed: true, Disks: []admission.Disk{disk("vda", "endorsed", endorsedIm)}}), 0, Endorsed, time.Time{}, ""},
		{"exempt", vm("x", admission.Decision{Endorsed: true, Exemption: `domain name matches admission.exempt_domains "x"`}), 0, Exempt, time.Time{}, ""},
		{"revoked", vm("r", refusedBy(disk("vda", "revoked", revokedImage(now.Add(-time.Hour))))), 0, Target, now.Add(-time.Hour), ""},
		{"revoked, past grace", vm("r", refusedBy(disk("vda", "revoked", revokedImage(now.Add(-48*time.Hour))))), 24 * time.Hour, Target, now.Add(-48 * time.Hour), ""},
		{"revoked, within grace", vm("r", refusedBy(disk("vda", "revoked", revokedImage(now.Add(-time.Hour))))), 24 * time.Hour, Grace, now.Add(-time.Hour), "within --grace 24h0m0s"},
		{"revoked exactly grace ago", vm("r", refusedBy(disk("vda", "revoked", revokedImage(now.Add(-24*time.Hour))))), 24 * time.Hour, Target, now.Add(-24 * time.Hour), ""},
		{"expired since the snapshot, counts from expiry", vm("x", refusedBy(disk("vda", "expired", expiredIm))), 2 * time.Hour, Target, now.Add(-3 * time.Hour), ""},
		{"expired since the snapshot, within grace", vm("x", refusedBy(disk("vda", "expired", expiredIm))), 4 * time.Hour, Grace, now.Add(-3 * time.Hour), ""},
		{"expired by sync", vm("y", refusedBy(disk("vda", "expired", expiredBySync))), 4 * time.Hour, Target, now.Add(-5 * time.Hour), ""},
		{"unknown ignores grace", vm("u", refusedBy(disk("vda", "unknown", nil))), 1000 * time.Hour, Target, time.Time{}, "no revocation time"},
		{"unknown beside endorsed", vm("u", refusedBy(disk("vda", "endorsed", endorsedIm), disk("vdb", "unknown", nil))), 0, Target, time.Time{}, "no revocation time"},
		{"error only", vm("m", refusedBy(disk("vda", "error", nil))), 0, Unclassified, time.Time{}, "cannot identify"},
		{"error beside endorsed", vm("m", refusedBy(disk("vda", "endorsed", endorsedIm), disk("vdb", "error", nil))), 0, Unclassified, time.Time{}, "cannot identify"},
		{"revoked beside error: revoked is certain", vm("m", refusedBy(disk("vda", "revoked", revokedImage(now.Add(-time.Hour))), disk("vdb", "error", nil))), 0, Target, now.Add(-time.Hour), "disk vdb (/img/vdb.raw) could not be identified either"},
		{"revoked within grace beside error", vm("m", refusedBy(disk("vda", "revoked", revokedImage(now.Add(-time.Hour))), disk("vdb", "error", nil))), 24 * time.Hour, Grace, now.Add(-time.Hour), "within --grace"},
		{"no disk judged (qemu:commandline, boot from volume)", vm("q", admission.Decision{Reason: "the domain passes raw QEMU arguments"}), 0, Unclassified, time.Time{}, "cannot tell which image"},
		{"XML unreadable", VM{Name: "bad", Problem: "domain XML: two <source> elements"}, 0, Unclassified, time.Time{}, ""},
		{"two revoked disks: the older one decides", vm("rr", refusedBy(disk("vda", "revoked", revokedImage(now.Add(-time.Hour))), disk("vdb", "revoked", revokedImage(now.Add(-50*time.Hour))))), 24 * time.Hour, Target, now.Add(-50 * time.Hour), ""},
		{"revoked without a time: as unknown", vm("r0", refusedBy(disk("vda", "revoked", &snapshot.Image{Status: snapshot.Revoked, Reason: "removed"}))), 24 * time.Hour, Target, time.Time{}, "gives no time"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := MakePlan([]VM{c.vm}, Options{Action: Destroy, Grace: c.grace, Max: 50, Now: now})
			it := p.Items[0]
			if it.Verdict != c.verdict || !it.RevokedAt.Equal(c.at) || !strings.Contains(it.Note, c.note) {
				t.Errorf("verdict %s, revoked at %v, note %q; want %s, %v, note with %q", it.Verdict, it.RevokedAt, it.Note, c.verdict, c.at, c.note)
			}
			if it.Verdict == Target && it.Reason == "" {
				t.Error("a target without a reason")
			}
		})
	}
}

func TestPlanMax(t *testing.T) {
	var vms []VM
	for i := range 5 {
		vms = append(vms, vm(string(rune('a'+i)), refusedBy(disk("vda", "revoked", revokedImage(now.Add(-time.Hour))))))
	}
	vms = append(vms, vm("ok", admission.Decision{Endorsed: true}))
	for _, c := range []struct {
		max     int
		force   bool
		refused bool
	}{{5, false, false}, {4, false, true}, {4, true, false}, {0, false, true}, {0, true, false}} {
		p := MakePlan(vms, Options{Action: Shutdown, Max: c.max, Force: c.force, Now: now})
		if (p.Refused != nil) != c.refused || len(p.Targets()) != 5 {
			t.Errorf("max %d force %v: refused %v, %d targets", c.max, c.force, p.Refused, len(p.Targets()))
		}
		if p.Refused != nil && (!errors.Is(p.Refused, ErrTooMany) || !strings.Contains(p.Refused.Error(), "5 VMs")) {
			t.Errorf("refusal: %v", p.Refused)
		}
	}
}
