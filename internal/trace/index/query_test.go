package index

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/trace"
)

var (
	// vmD was running before the hook was installed: libvirtd's reconnect is its first record.
	vmD = vm{host: "node2", name: "legacy-db", uuid: "c0ffee00-1111-4222-8333-444455556666",
		ips: []trace.IP{{Address: "198.51.100.9"}}, macs: []string{"52:54:00:00:00:09"}}
	// vmE's host crashed: no stop was recorded before it started again.
	vmE = vm{host: "node2", name: "crashy", uuid: "deadbeef-1111-4222-8333-444455556666",
		ips: []trace.IP{{Address: "198.51.100.10"}}, macs: []string{"52:54:00:00:00:10"}, image: deb}
)

func at(hhmm string) time.Time {
	t, err := time.Parse("15:04:05", hhmm)
	if err != nil {
		t, _ = time.Parse("15:04", hhmm)
	}
	return time.Date(2026, 11, 20, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// scenarioIndex is a day on two nodes; the comments name the seqs.
func scenarioIndex(t *testing.T) *Index {
	t.Helper()
	a := vmA
	a.ips = append(append([]trace.IP(nil), a.ips...), trace.IP{Address: "2001:db8:20::29", Type: "fixed"})
	var recs []trace.Record
	add := func(rs ...trace.Record) { recs = append(recs, rs...) }
	add(a.run(at("09:00"), time.Time{})...)          // 1, 2
	add(vmC.rec(at("09:10"), trace.AdmissionRefuse), // 3: refused start
		vmC.rec(at("09:10:01"), trace.VMStopped), vmC.rec(at("09:10:02"), trace.VMReleased)) // 4, 5
	add(vmE.run(at("09:30"), time.Time{})...)                                             // 6, 7
	add(a.rec(at("10:00"), trace.VMStopped), a.rec(at("10:00:01"), trace.VMReleased))     // 8, 9
	add(vmB.run(at("11:00"), time.Time{})...)                                             // 10, 11
	add(vmB.rec(at("11:30"), trace.VMReconnected))                                        // 12
	add(vmD.rec(at("11:45"), trace.VMReconnected))                                        // 13
	add(vmB.rec(at("12:00"), trace.VMStopped), vmB.rec(at("12:00:01"), trace.VMReleased)) // 14, 15
	add(vmE.run(at("13:00"), time.Time{})...)                                             // 16, 17
	dir := t.TempDir()
	appendT(t, dir, recs...)
	ix := openT(t, dir)
	updateT(t, ix)
	return ix
}

func TestRecordFilters(t *testing.T) {
	ix := scenarioIndex(t)
	cases := []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"everything", Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}},
		{"ip", Filter{IP: "192.0.2.77"}, []uint64{1, 2, 8, 9, 10, 11, 12, 14, 15}},
		{"ipv6 in another spelling", Filter{IP: "2001:DB8:20:0:0::29"}, []uint64{1, 2, 8, 9}},
		{"ip no one had", Filter{IP: "203.0.113.1"}, []uint64{}},
		{"mac, upper case", Filter{MAC: "FA:16:3E:12:34:56"}, []uint64{1, 2, 8, 9}},
		{"mac, dashes", Filter{MAC: "52-54-00-ab-cd-ef"}, []uint64{3, 4, 5}},
		{"instance uuid, upper case", Filter{Instance: strings.ToUpper(vmA.uuid)}, []uint64{1, 2, 8, 9}},
		{"domain name", Filter{Instance: "build-runner-01"}, []uint64{3, 4, 5}},
		{"user name", Filter{User: "carol"}, []uint64{1, 2, 8, 9}},
		{"user id", Filter{User: dave.ID}, []uint64{10, 11, 12, 14, 15}},
		{"project name", Filter{Project: "astro"}, []uint64{10, 11, 12, 14, 15}},
		{"project id", Filter{Project: hep.ID}, []uint64{1, 2, 8, 9}},
		{"image sha512, upper case", Filter{Image: strings.ToUpper(el9.SHA512)}, []uint64{1}},
		{"image glance id", Filter{Image: el9.GlanceID}, []uint64{1, 2, 8, 9}},
		{"image identifier", Filter{Image: "debian-12"}, []uint64{6, 10, 16}},
		{"refused image", Filter{Image: vmC.image.SHA512}, []uint64{3}},
		{"host", Filter{Host: "node2"}, []uint64{3, 4, 5, 6, 7, 13, 16, 17}},
		{"since", Filter{Since: at("12:00")}, []uint64{14, 15, 16, 17}},
		{"until", Filter{Until: at("09:10")}, []uint64{1, 2, 3}},
		{"window", Filter{Since: at("09:10"), Until: at("09:30")}, []uint64{3, 4, 5, 6}},
		{"user and window", Filter{User: "dave", Since: at("11:15"), Until: at("12:00")}, []uint64{12, 14}},
		{"host and ip", Filter{Host: "node2", IP: "192.0.2.77"}, []uint64{}},
		{"limit keeps the latest", Filter{IP: "192.0.2.77", Limit: 3}, []uint64{12, 14, 15}},
		{"limit, no filter", Filter{Limit: 2}, []uint64{16, 17}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := seqs(queryT(t, ix, c.f)); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("seqs %v, want %v", got, c.want)
			}
		})
	}
	res := queryT(t, ix, Filter{IP: "192.0.2.77", Limit: 1})
	if r := res[0].Entry.Record; r.Event != trace.VMReleased || r.User.Name != "dave" || r.IPs[1].Type != "floating" {
		t.Fatalf("record %+v", r)
	}
}

func TestLifetimesAt(t *testing.T) {
	ix := scenarioIndex(t)
	cases := []struct {
		name string
		f    Filter
		want []string
	}{
		{"who held the address: A", Filter{IP: "192.0.2.77", At: at("09:30")}, []string{vmA.name}},
		{"nobody between the two", Filter{IP: "192.0.2.77", At: at("10:30")}, []string{}},
		{"who held the address: B", Filter{IP: "192.0.2.77", At: at("11:15")}, []string{vmB.name}},
		{"before the start record", Filter{IP: "192.0.2.77", At: at("09:00")}, []string{}},
		{"at the stop instant", Filter{IP: "192.0.2.77", At: at("10:00")}, []string{vmA.name}},
		{"fixed address, another spelling", Filter{IP: "2001:db8:20:0::29", At: at("09:30")}, []string{vmA.name}},
		{"reconnect continues the lifetime", Filter{IP: "192.0.2.77", At: at("11:45")}, []string{vmB.name}},
		{"everything running", Filter{At: at("11:50")}, []string{vmE.name, vmB.name, vmD.name}},
		{"on one host", Filter{Host: "node1", At: at("11:50")}, []string{vmB.name}},
		{"refused start makes no lifetime", Filter{Host: "node2", At: at("09:10:01")}, []string{}},
		{"by user", Filter{User: "dave", At: at("11:15")}, []string{vmB.name}},
		{"by user id, not then", Filter{User: carol.ID, At: at("11:15")}, []string{}},
		{"by project", Filter{Project: "hep-analysis", At: at("09:59")}, []string{vmA.name}},
		{"by mac", Filter{MAC: "FA:16:3E:65:43:21", At: at("11:59")}, []string{vmB.name}},
		{"by image identifier", Filter{Image: "el9-worker", At: at("09:30")}, []string{vmA.name}},
		{"by image glance id", Filter{Image: deb.GlanceID, At: at("11:15")}, []string{vmE.name, vmB.name}},
		{"by instance", Filter{Instance: vmB.uuid, At: at("11:15")}, []string{vmB.name}},
		{"first seen at reconnect", Filter{Instance: "legacy-db", At: at("11:45")}, []string{vmD.name}},
		{"not before it", Filter{Instance: "legacy-db", At: at("11:44")}, []string{}},
		{"latest first with limit", Filter{At: at("11:50"), Limit: 1}, []string{vmD.name}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := domains(queryT(t, ix, c.f)); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("lifetimes %v, want %v", got, c.want)
			}
		})
	}
	for _, h := range []string{"09:10", "09:10:01", "09:10:02", "12:00", "23:59"} {
		if got := queryT(t, ix, Filter{Instance: vmC.name, At: at(h)}); len(got) != 0 {
			t.Fatalf("refused start has a lifetime at %s: %+v", h, got[0].Lifetime)
		}
	}

	lt := queryT(t, ix, Filter{IP: "192.0.2.77", At: at("09:30")})[0].Lifetime
	until := at("10:00")
	want := &Lifetime{Host: "node1", Domain: trace.Domain{Name: vmA.name, UUID: vmA.uuid},
		Instance: &trace.Instance{ID: vmA.uuid, Name: "vm-2a"}, User: &carol, Project: &hep,
		Images: []trace.Image{{SHA512: el9.SHA512, GlanceID: el9.GlanceID, Identifier: el9.Identifier, Title: el9.Title, Version: el9.Version}},
		IPs: []trace.IP{{Address: "10.20.30.41", Type: "fixed"}, {Address: "192.0.2.77", Type: "floating"},
			{Address: "2001:db8:20::29", Type: "fixed"}},
		MACs: []string{"fa:16:3e:12:34:56"}, From: at("09:00").Add(500 * time.Millisecond), FromSeq: 2,
		FromEvent: trace.VMStarted, AdmissionSeq: 1, Until: &until, UntilSeq: 8, UntilEvent: trace.VMStopped}
	if !reflect.DeepEqual(lt, want) {
		t.Fatalf("lifetime\n%+v\nwant\n%+v", lt, want)
	}

	d := queryT(t, ix, Filter{Instance: "legacy-db", At: at("12:00")})[0].Lifetime
	if d.FromEvent != trace.VMReconnected || d.FromSeq != 13 || d.AdmissionSeq != 0 || d.Until != nil || d.User != nil {
		t.Fatalf("reconnected lifetime %+v", d)
	}
	// vmE's first lifetime ends when it starts again, as far as the records tell.
	e := queryT(t, ix, Filter{Instance: "crashy", At: at("12:00")})[0].Lifetime
	if e.UntilEvent != trace.VMStarted || e.UntilSeq != 17 || !e.Until.Equal(at("13:00").Add(500*time.Millisecond)) {
		t.Fatalf("crashed lifetime %+v", e)
	}
	e2 := queryT(t, ix, Filter{Instance: "crashy", At: at("14:00")})
	if len(e2) != 1 || e2[0].Lifetime.FromSeq != 17 || e2[0].Lifetime.Until != nil || e2[0].Lifetime.AdmissionSeq != 16 {
		t.Fatalf("second lifetime %+v", e2)
	}
}

// TestLifetimesAcrossUpdates feeds a lifetime's records one update at a time: what an
// update keeps for the next (the pending admission, the open lifetime) must carry over.
func TestLifetimesAcrossUpdates(t *testing.T) {
	dir := t.TempDir()
	ix := openT(t, dir)
	v := vmA
	floating := trace.IP{Address: "203.0.113.5", Type: "floating"}
	steps := [][]trace.Record{
		{v.rec(at("09:00"), trace.AdmissionAllow)}, // 1
		{v.rec(at("09:00:01"), trace.VMStopped)},   // 2: the start failed
		{v.rec(at("09:05"), trace.AdmissionAllow)}, // 3: tried again
		{v.rec(at("09:05:01"), trace.VMStarted)},   // 4
		{func() trace.Record {
			r := v.rec(at("09:30"), trace.VMReconnected)
			r.IPs = append(r.IPs, floating)
			return r
		}()}, // 5
		{v.rec(at("10:00"), trace.VMStopped)},  // 6
		{v.rec(at("10:00"), trace.VMReleased)}, // 7
	}
	for i, recs := range steps {
		appendT(t, dir, recs...)
		if st := updateT(t, ix); st.Records != 1 {
			t.Fatalf("step %d: %+v", i, st)
		}
		if i == 2 {
			if got := queryT(t, ix, Filter{At: at("09:00:01")}); len(got) != 0 {
				t.Fatalf("failed start made a lifetime: %+v", got[0].Lifetime)
			}
		}
	}
	res := queryT(t, ix, Filter{IP: "203.0.113.5", At: at("09:45")})
	if len(res) != 1 {
		t.Fatalf("%d lifetimes", len(res))
	}
	lt := res[0].Lifetime
	if lt.AdmissionSeq != 3 || lt.FromSeq != 4 || lt.UntilSeq != 6 || len(lt.IPs) != 3 || len(lt.Images) != 1 ||
		lt.Images[0].SHA512 != el9.SHA512 {
		t.Fatalf("lifetime %+v", lt)
	}
	// The floating address was seen only at 09:30, but it belongs to the whole lifetime.
	if got := queryT(t, ix, Filter{IP: "203.0.113.5", At: at("09:10")}); len(got) != 1 {
		t.Fatalf("%d lifetimes at 09:10", len(got))
	}
	if got := queryT(t, ix, Filter{At: at("09:01")}); len(got) != 0 {
		t.Fatalf("lifetime before the second start: %+v", got[0].Lifetime)
	}
	// A rebuild derives the same.
	if _, err := ix.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	if re := queryT(t, ix, Filter{IP: "203.0.113.5", At: at("09:45")}); !reflect.DeepEqual(re, res) {
		t.Fatalf("rebuilt %+v\nincremental %+v", re[0].Lifetime, lt)
	}
}

// TestSameAddressTwoVMs: only the VM that held the address at that instant answers.
func TestSameAddressTwoVMs(t *testing.T) {
	dir := t.TempDir()
	appendT(t, dir, vmA.run(at("09:00"), at("10:00"))...)
	appendT(t, dir, vmB.run(at("10:30"), at("11:30"))...)
	ix := openT(t, dir)
	updateT(t, ix)
	for hhmm, want := range map[string][]string{"08:59": {}, "09:30": {vmA.name}, "10:15": {}, "11:00": {vmB.name}, "11:45": {}} {
		res := queryT(t, ix, Filter{IP: "192.0.2.77", At: at(hhmm)})
		if got := domains(res); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", hhmm, got, want)
		}
		for _, r := range res {
			if want[0] == vmB.name && (r.Lifetime.User.Name != "dave" || r.Lifetime.Project.Name != "astro") {
				t.Errorf("%s: owner %+v %+v", hhmm, r.Lifetime.User, r.Lifetime.Project)
			}
		}
	}
}

func TestFilterErrors(t *testing.T) {
	ix := openT(t, t.TempDir())
	for name, f := range map[string]Filter{
		"at with since":  {At: t0, Since: t0},
		"until < since":  {Since: t0, Until: t0.Add(-time.Second)},
		"not an address": {IP: "192.0.2.777"},
		"negative limit": {Limit: -1},
	} {
		if _, err := ix.Query(context.Background(), f); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2026-11-20T10:00Z":                   at("10:00"),
		"2026-11-20T10:00:00Z":                at("10:00"),
		"2026-11-20T11:00+01:00":              at("10:00"),
		"2026-11-20T10:00:05.123456789Z":      at("10:00:05").Add(123456789),
		"2026-11-20T05:30:05.5-04:30":         at("10:00:05").Add(500 * time.Millisecond),
		"2026-11-20T10:00:00.000000001+00:00": at("10:00").Add(1),
	} {
		got, err := ParseTime(in)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2026-11-20", "2026-11-20T10Z", "2026-11-20 10:00Z", "2026-11-20T10:00", "yesterday"} {
		if _, err := ParseTime(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestQueryPlansUseIndexes keeps every filter on an index: a plan that reads the whole
// records or lifetimes table would be fine in these tests and take seconds on a real node.
func TestQueryPlansUseIndexes(t *testing.T) {
	ix := scenarioIndex(t)
	for _, f := range []Filter{
		{IP: "192.0.2.77"}, {MAC: "fa:16:3e:12:34:56"}, {Instance: "x"}, {User: "carol"}, {Project: "astro"},
		{Image: "el9-worker"}, {Since: t0}, {Until: t0}, {User: "carol", Since: t0, Until: t0}, {IP: "192.0.2.77", Limit: 5},
		{At: t0}, {IP: "192.0.2.77", At: t0}, {MAC: "m", At: t0}, {Instance: "x", At: t0}, {User: "u", At: t0},
		{Project: "p", At: t0}, {Image: "i", At: t0}, {Host: "node1", At: t0},
	} {
		q, args := sqlFor(f)
		rows, err := ix.db.Query("EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, step := range plan {
			// A scan of records in seq order is what --since and --until without an upper
			// bound on results would need anyway; the R*Tree's search shows as a SCAN with
			// constraints (2:B0D1); every other scan is a missing index.
			rtree := strings.Contains(step, "lifetime_spans VIRTUAL TABLE INDEX 2:B")
			if strings.HasPrefix(step, "SCAN") && !rtree && !(step == "SCAN r" && f.IP == "" && f.User == "") {
				t.Errorf("%+v: plan %q", f, plan)
			}
		}
	}
}

// TestManyLifetimes reads the details of more lifetimes than one query takes at once.
func TestManyLifetimes(t *testing.T) {
	dir := t.TempDir()
	var recs []trace.Record
	for i := range 1200 {
		v := vmA
		v.name, v.uuid = fmt.Sprintf("vm-%04d", i), fmt.Sprintf("%08d-5b8a-4f1e-9c2d-0a1b2c3d4e5f", i)
		v.ips = []trace.IP{{Address: fmt.Sprintf("10.1.%d.%d", i/256, i%256)}}
		recs = append(recs, v.run(t0.Add(time.Duration(i)*time.Second), time.Time{})...)
	}
	appendT(t, dir, recs...)
	ix := openT(t, dir)
	updateT(t, ix)
	res := queryT(t, ix, Filter{At: t0.Add(time.Hour)})
	if len(res) != 1200 {
		t.Fatalf("%d lifetimes", len(res))
	}
	for i, r := range res {
		lt := r.Lifetime
		if lt.Domain.Name != fmt.Sprintf("vm-%04d", i) || len(lt.IPs) != 1 || lt.IPs[0].Address != fmt.Sprintf("10.1.%d.%d", i/256, i%256) ||
			len(lt.MACs) != 1 || len(lt.Images) != 1 {
			t.Fatalf("lifetime %d: %+v", i, lt)
		}
	}
}

// TestTerminatedDoesNotEndALifetime: vmgate terminate may only suspend or lock a VM, which
// keeps its addresses; the hook's vm.stopped ends the lifetime when the VM does stop.
func TestTerminatedDoesNotEndALifetime(t *testing.T) {
	dir := t.TempDir()
	term := vmA.rec(at("10:00"), trace.VMTerminated)
	term.Action, term.Actor = "suspend", &trace.Actor{UID: 0, Name: "root"}
	appendT(t, dir, vmA.run(at("09:00"), time.Time{})...)
	appendT(t, dir, term, vmA.rec(at("11:00"), trace.VMStopped))
	ix := openT(t, dir)
	updateT(t, ix)
	res := queryT(t, ix, Filter{IP: "192.0.2.77", At: at("10:30")})
	if len(res) != 1 || res[0].Lifetime.UntilSeq != 4 || !res[0].Lifetime.Until.Equal(at("11:00")) {
		t.Fatalf("lifetimes %+v", res)
	}
	if got := seqs(queryT(t, ix, Filter{Instance: vmA.name, Since: at("10:00"), Until: at("10:00")})); !reflect.DeepEqual(got, []uint64{3}) {
		t.Fatalf("terminated record: %v", got)
	}
}
