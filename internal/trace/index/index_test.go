package index

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// vm is a domain as the records name it.
type vm struct {
	host, name, uuid string
	user, project    trace.Owner
	ips              []trace.IP
	macs             []string
	image            trace.Image // what the admission found
}

var (
	carol = trace.Owner{ID: "9f8e7d6c5b4a49388776655443322110", Name: "carol"}
	dave  = trace.Owner{ID: "1a2b3c4d5e6f47788990aabbccddeeff", Name: "dave"}
	hep   = trace.Owner{ID: "0a1b2c3d4e5f46778899aabbccddeeff", Name: "hep-analysis"}
	astro = trace.Owner{ID: "5f4e3d2c1b0a49887766554433221100", Name: "astro"}

	el9 = trace.Image{Disk: "vda", GlanceID: "4c0f6a7e-2b1d-4e3f-8a9b-5c6d7e8f9a0b", SHA512: strings.Repeat("ab", 64),
		Identifier: "el9-worker", Title: "EL9 worker", Version: "9.4", Status: "endorsed", Subscription: "example",
		List: "5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e", ListVersion: "20261120", Endorser: "/DC=org/DC=example/CN=Endorser"}
	deb = trace.Image{Disk: "vda", GlanceID: "7e6d5c4b-3a29-4817-8a9b-0c1d2e3f4a5b", SHA512: strings.Repeat("cd", 64),
		Identifier: "debian-12", Status: "endorsed"}

	vmA = vm{host: "node1", name: "instance-0000002a", uuid: "7d3c1f0e-5b8a-4f1e-9c2d-0a1b2c3d4e5f", user: carol, project: hep,
		ips:  []trace.IP{{Address: "10.20.30.41", Type: "fixed"}, {Address: "192.0.2.77", Type: "floating"}},
		macs: []string{"fa:16:3e:12:34:56"}, image: el9}
	vmB = vm{host: "node1", name: "instance-0000002b", uuid: "8e4d2a1f-6c9b-4a2e-8d3e-1b2c3d4e5f60", user: dave, project: astro,
		ips:  []trace.IP{{Address: "10.20.30.42", Type: "fixed"}, {Address: "192.0.2.77", Type: "floating"}},
		macs: []string{"fa:16:3e:65:43:21"}, image: deb}
	vmC = vm{host: "node2", name: "build-runner-01", uuid: "3f2e1d0c-9b8a-4766-8554-433221100fed",
		macs: []string{"52:54:00:ab:cd:ef"}, image: trace.Image{Disk: "vda", Source: "/var/lib/libvirt/images/el9.raw",
			SHA512: strings.Repeat("ef", 64), Status: "revoked"}}
)

// rec is the record the hook writes for vm at t: the admission records carry the decision's
// images, the others only what the domain XML says.
func (v vm) rec(t time.Time, event string) trace.Record {
	r := trace.Record{Time: t, Host: v.host, Event: event, Outcome: trace.OutcomeSuccess, Version: "test",
		Domain: trace.Domain{Name: v.name, UUID: v.uuid}, MACs: v.macs, IPs: v.ips}
	if v.user.ID != "" {
		u, p := v.user, v.project
		r.Instance, r.User, r.Project = &trace.Instance{ID: v.uuid, Name: "vm-" + v.name[len(v.name)-2:]}, &u, &p
	}
	switch event {
	case trace.AdmissionAllow, trace.AdmissionWarn, trace.AdmissionRefuse:
		r.Op, r.Mode, r.Images = "prepare begin", "enforce", []trace.Image{v.image}
		if event == trace.AdmissionRefuse {
			r.Outcome, r.Reason = trace.OutcomeFailure, "image is not endorsed: revoked"
		}
	default:
		r.Op = map[string]string{trace.VMStarted: "started begin", trace.VMStopped: "stopped end",
			trace.VMReleased: "release end", trace.VMReconnected: "reconnect begin"}[event]
		if v.image.GlanceID != "" {
			r.Images = []trace.Image{{GlanceID: v.image.GlanceID}}
		}
	}
	return r
}

// run is the records of a start that was allowed, and of its stop when stop is not zero.
func (v vm) run(start, stop time.Time) []trace.Record {
	recs := []trace.Record{v.rec(start, trace.AdmissionAllow), v.rec(start.Add(500*time.Millisecond), trace.VMStarted)}
	if !stop.IsZero() {
		recs = append(recs, v.rec(stop, trace.VMStopped), v.rec(stop.Add(100*time.Millisecond), trace.VMReleased))
	}
	return recs
}

func appendT(t testing.TB, dir string, recs ...trace.Record) {
	t.Helper()
	if err := trace.Append(dir, recs...); err != nil {
		t.Fatal(err)
	}
}

// quietLog collects what the index logs, so that tests can check a rebuild was reported.
func quietLog() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func openT(t testing.TB, dir string) *Index {
	t.Helper()
	log, _ := quietLog()
	ix, err := Open(context.Background(), dir, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func updateT(t testing.TB, ix *Index) Stats {
	t.Helper()
	st, err := ix.Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func queryT(t testing.TB, ix *Index, f Filter) []Result {
	t.Helper()
	res, err := ix.Query(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// seqs are the record seqs of results.
func seqs(res []Result) []uint64 {
	out := []uint64{}
	for _, r := range res {
		out = append(out, r.Entry.Seq)
	}
	return out
}

// domains are the domain names of lifetime results.
func domains(res []Result) []string {
	out := []string{}
	for _, r := range res {
		out = append(out, r.Lifetime.Domain.Name)
	}
	return out
}

func journalEntries(t testing.TB, dir string) []journal.Entry {
	t.Helper()
	var es []journal.Entry
	if err := journal.Read(trace.JournalPath(dir), 0, func(e journal.Entry) error { es = append(es, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return es
}

func TestIndexHoldsTheJournal(t *testing.T) {
	dir := t.TempDir()
	recs := append(vmA.run(t0, t0.Add(time.Hour)), vmC.rec(t0.Add(2*time.Hour), trace.AdmissionRefuse))
	appendT(t, dir, recs...)
	ix := openT(t, dir)
	st := updateT(t, ix)
	if st.Records != len(recs) || st.LastSeq != uint64(len(recs)) || st.Rebuilt {
		t.Fatalf("stats %+v", st)
	}
	res := queryT(t, ix, Filter{})
	es := journalEntries(t, dir)
	if len(res) != len(es) {
		t.Fatalf("%d results, %d records", len(res), len(es))
	}
	for i, r := range res {
		e := es[i]
		if r.Entry.Seq != e.Seq || r.Entry.Hash != e.Hash || r.Entry.Prev != e.Prev {
			t.Errorf("result %d: seq %d hash %s prev %s, journal %d %s %s", i, r.Entry.Seq, r.Entry.Hash, r.Entry.Prev, e.Seq, e.Hash, e.Prev)
		}
		got, _ := json.Marshal(r.Entry.Record)
		if !bytes.Equal(got, e.Data) {
			t.Errorf("result %d:\n%s\njournal:\n%s", i, got, e.Data)
		}
	}
	// The index is private, like the journal.
	fi, err := os.Stat(Path(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("index mode %v, %v", fi.Mode(), err)
	}
}

func TestUpdateIsIncremental(t *testing.T) {
	dir := t.TempDir()
	ix := openT(t, dir)
	if st := updateT(t, ix); st.Records != 0 || st.LastSeq != 0 {
		t.Fatalf("no journal: %+v", st)
	}
	appendT(t, dir, vmA.run(t0, time.Time{})...)
	if st := updateT(t, ix); st.Records != 2 || st.LastSeq != 2 {
		t.Fatalf("first: %+v", st)
	}
	if st := updateT(t, ix); st.Records != 0 || st.LastSeq != 2 {
		t.Fatalf("nothing new: %+v", st)
	}
	appendT(t, dir, vmA.rec(t0.Add(time.Hour), trace.VMStopped), vmA.rec(t0.Add(time.Hour), trace.VMReleased))
	if st := updateT(t, ix); st.Records != 2 || st.LastSeq != 4 || st.Rebuilt {
		t.Fatalf("second: %+v", st)
	}
	if got := seqs(queryT(t, ix, Filter{})); !reflect.DeepEqual(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("seqs %v", got)
	}
	// The lifetime opened in the first update was closed by the second.
	res := queryT(t, ix, Filter{At: t0.Add(30 * time.Minute)})
	if len(res) != 1 || res[0].Lifetime.Until == nil || !res[0].Lifetime.Until.Equal(t0.Add(time.Hour)) {
		t.Fatalf("lifetime %+v", res)
	}
	// Another process's index sees the same.
	ix2 := openT(t, dir)
	if st := updateT(t, ix2); st.Records != 0 || st.LastSeq != 4 {
		t.Fatalf("second index: %+v", st)
	}
}

func TestConcurrentUpdatesIndexEachRecordOnce(t *testing.T) {
	dir := t.TempDir()
	for i := range 20 {
		appendT(t, dir, vmA.run(t0.Add(time.Duration(i)*time.Hour), t0.Add(time.Duration(i)*time.Hour+time.Minute))...)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			ix, err := Open(context.Background(), dir, Options{})
			if err != nil {
				errs <- err
				return
			}
			defer ix.Close()
			if _, err := ix.Update(context.Background()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ix := openT(t, dir)
	if n := len(queryT(t, ix, Filter{})); n != 80 {
		t.Fatalf("%d records, want 80", n)
	}
	if n := len(queryT(t, ix, Filter{IP: "192.0.2.77", At: t0.Add(5*time.Hour + 30*time.Second)})); n != 1 {
		t.Fatalf("%d lifetimes, want 1", n)
	}
}

// removeIndex removes the index and its sidecars.
func removeIndex(t *testing.T, dir string) {
	t.Helper()
	for _, s := range []string{"", "-wal", "-shm", "-journal"} {
		if err := os.Remove(Path(dir) + s); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

func TestDeletedOrCorruptIndexIsRebuilt(t *testing.T) {
	recs := append(vmA.run(t0, t0.Add(time.Hour)), vmB.run(t0.Add(2*time.Hour), time.Time{})...)
	want := func(t *testing.T, ix *Index) {
		t.Helper()
		if got := seqs(queryT(t, ix, Filter{IP: "192.0.2.77"})); !reflect.DeepEqual(got, []uint64{1, 2, 3, 4, 5, 6}) {
			t.Fatalf("seqs %v", got)
		}
		if got := domains(queryT(t, ix, Filter{IP: "192.0.2.77", At: t0.Add(3 * time.Hour)})); !reflect.DeepEqual(got, []string{vmB.name}) {
			t.Fatalf("lifetimes %v", got)
		}
	}
	cases := map[string]func(t *testing.T, path string){
		"deleted": func(t *testing.T, path string) { removeIndex(t, filepath.Dir(filepath.Dir(path))) },
		"deleted, stale WAL left": func(t *testing.T, path string) {
			os.Remove(path)
			os.WriteFile(path+"-wal", bytes.Repeat([]byte{0x37}, 4096), 0o600)
		},
		"garbage": func(t *testing.T, path string) {
			os.WriteFile(path, bytes.Repeat([]byte("not a database "), 1000), 0o600)
		},
		"empty": func(t *testing.T, path string) { os.WriteFile(path, nil, 0o600) },
		"truncated": func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			os.Truncate(path, fi.Size()/3)
		},
		"pages overwritten": func(t *testing.T, path string) {
			// The header and the schema stay; the tables' pages are noise.
			b, _ := os.ReadFile(path)
			for i := 16384; i < len(b); i++ {
				b[i] = byte(i * 7)
			}
			os.WriteFile(path, b, 0o600)
		},
		"other schema": func(t *testing.T, path string) {
			ix, err := OpenFiles(context.Background(), path, "/nonexistent", Options{})
			if err != nil {
				t.Fatal(err)
			}
			ix.db.Exec(`UPDATE meta SET value = '0' WHERE key = 'schema'`)
			ix.Close()
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			appendT(t, dir, recs...)
			ix := openT(t, dir)
			updateT(t, ix)
			want(t, ix)
			ix.Close()

			damage(t, Path(dir))
			log, logged := quietLog()
			ix, err := Open(context.Background(), dir, Options{Logger: log})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer ix.Close()
			updateT(t, ix)
			want(t, ix)
			// A missing or empty file is a new index, not damage.
			fresh := strings.HasPrefix(name, "deleted") || name == "empty"
			if !fresh && !strings.Contains(logged.String(), "building it again") {
				t.Errorf("rebuild not logged: %q", logged.String())
			}
		})
	}
}

func TestDamageFoundByAQueryRebuilds(t *testing.T) {
	dir := t.TempDir()
	appendT(t, dir, vmA.run(t0, t0.Add(time.Hour))...)
	ix := openT(t, dir)
	updateT(t, ix)
	var metaPage int
	if err := ix.db.QueryRow(`SELECT rootpage FROM sqlite_schema WHERE name = 'meta'`).Scan(&metaPage); err != nil {
		t.Fatal(err)
	}
	ix.Close() // moves every page from the WAL into the file

	// Damage every page but the schema and meta, which opening reads: the query finds it.
	b, err := os.ReadFile(Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	const page = 16384
	for i := page; i < len(b); i++ {
		if i/page+1 != metaPage {
			b[i] = 0xff
		}
	}
	if err := os.WriteFile(Path(dir), b, 0o600); err != nil {
		t.Fatal(err)
	}
	log, logged := quietLog()
	ix, err = Open(context.Background(), dir, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if st := updateT(t, ix); st.Records != 0 {
		t.Fatalf("update read the journal again: %+v", st)
	}
	if got := seqs(queryT(t, ix, Filter{User: "carol"})); !reflect.DeepEqual(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("seqs %v", got)
	}
	if !strings.Contains(logged.String(), "damaged") {
		t.Fatalf("no rebuild logged: %q", logged.String())
	}
}

func TestRebuildAndReindexAgree(t *testing.T) {
	dir := t.TempDir()
	appendT(t, dir, vmA.run(t0, t0.Add(time.Hour))...)
	ix := openT(t, dir)
	updateT(t, ix)
	appendT(t, dir, vmB.run(t0.Add(2*time.Hour), time.Time{})...)
	updateT(t, ix)
	inc := queryT(t, ix, Filter{At: t0.Add(3 * time.Hour)})
	st, err := ix.Rebuild(context.Background())
	if err != nil || st.Records != 6 || !st.Rebuilt {
		t.Fatalf("rebuild %+v %v", st, err)
	}
	if re := queryT(t, ix, Filter{At: t0.Add(3 * time.Hour)}); !reflect.DeepEqual(inc, re) {
		t.Fatalf("incremental %+v\nrebuilt %+v", inc[0].Lifetime, re[0].Lifetime)
	}
}

func TestReplacedJournalRebuilds(t *testing.T) {
	dir := t.TempDir()
	appendT(t, dir, vmA.run(t0, t0.Add(time.Hour))...)
	ix := openT(t, dir)
	updateT(t, ix)

	// A journal with other records takes its place (restored from a backup, say).
	other := t.TempDir()
	appendT(t, other, vmB.run(t0, time.Time{})...)
	appendT(t, other, vmB.rec(t0.Add(time.Minute), trace.VMReconnected))
	if err := os.Rename(trace.JournalPath(other), trace.JournalPath(dir)); err != nil {
		t.Fatal(err)
	}
	st := updateT(t, ix)
	if !st.Rebuilt || st.Records != 3 {
		t.Fatalf("stats %+v", st)
	}
	if got := queryT(t, ix, Filter{User: "carol"}); len(got) != 0 {
		t.Fatalf("records of the old journal remain: %v", seqs(got))
	}
	if got := seqs(queryT(t, ix, Filter{User: "dave"})); !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
		t.Fatalf("seqs %v", got)
	}

	// A shorter journal: the last record indexed is gone.
	short := t.TempDir()
	appendT(t, short, vmC.rec(t0, trace.AdmissionRefuse))
	if err := os.Rename(trace.JournalPath(short), trace.JournalPath(dir)); err != nil {
		t.Fatal(err)
	}
	if st := updateT(t, ix); !st.Rebuilt || st.LastSeq != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBrokenJournalIndexesWhatPrecedesTheBreak(t *testing.T) {
	dir := t.TempDir()
	appendT(t, dir, vmA.run(t0, t0.Add(time.Hour))...)
	path := trace.JournalPath(dir)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Edit the third record: carol becomes mallory.
	lines := bytes.SplitAfter(b, []byte("\n"))
	lines[3] = bytes.Replace(lines[3], []byte(`"carol"`), []byte(`"malory"`), 1)
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	ix := openT(t, dir)
	st, err := ix.Update(context.Background())
	var p *journal.Problem
	if !errors.As(err, &p) || p.Seq != 3 || st.Records != 2 {
		t.Fatalf("stats %+v, error %v", st, err)
	}
	if got := seqs(queryT(t, ix, Filter{})); !reflect.DeepEqual(got, []uint64{1, 2}) {
		t.Fatalf("seqs %v", got)
	}
	// Every update reports the break again, until the journal is mended.
	if _, err := ix.Update(context.Background()); !errors.As(err, &p) {
		t.Fatalf("second update: %v", err)
	}
}

func TestUnknownDataIsKept(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(trace.JournalPath(dir), journal.Options{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(json.RawMessage(`["a later format"]`), json.RawMessage(`{"event":"list.accepted","time":"2026-11-20T10:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	ix := openT(t, dir)
	if st := updateT(t, ix); st.Records != 2 {
		t.Fatalf("stats %+v", st)
	}
	if got := seqs(queryT(t, ix, Filter{Since: t0, Until: t0})); !reflect.DeepEqual(got, []uint64{1}) {
		t.Fatalf("by the journal's time: %v", got)
	}
	if got := seqs(queryT(t, ix, Filter{Since: t0.Add(time.Hour)})); !reflect.DeepEqual(got, []uint64{2}) {
		t.Fatalf("by the record's time: %v", got)
	}
}

func TestCancelledUpdateLeavesTheIndexAsItWas(t *testing.T) {
	dir := t.TempDir()
	appendT(t, dir, vmA.run(t0, t0.Add(time.Hour))...)
	ix := openT(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ix.Update(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if st := updateT(t, ix); st.Records != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOpenRefusesWhatItCannotMend(t *testing.T) {
	dir := t.TempDir()
	// A directory where the index file should be: not damage, a mistake to show.
	if err := os.MkdirAll(Path(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), dir, Options{}); err == nil {
		t.Fatal("opened a directory as the index")
	}
}

// pruneJournal drops the records through seq as retention does: a header anchored on the
// last one dropped, then the kept lines as they were.
func pruneJournal(t *testing.T, dir string, seq uint64) {
	t.Helper()
	path := trace.JournalPath(dir)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	es := journalEntries(t, dir)
	var anchor string
	for _, e := range es {
		if e.Seq == seq {
			anchor = e.Hash
		}
	}
	out := []byte(`{"journal":"vmgate/1","anchor_seq":` + strconv.FormatUint(seq, 10) + `,"anchor":"` + anchor + "\"}\n")
	out = append(out, bytes.Join(lines[1+int(seq-es[0].Seq+1):], nil)...)
	if err := os.WriteFile(path+".new", out, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	if rep, err := journal.Verify(path); err != nil || !rep.Intact() || rep.AnchorSeq != seq {
		t.Fatalf("pruned journal: %v %v", rep, err)
	}
}

func TestRetentionPrunesTheIndexToo(t *testing.T) {
	dir := t.TempDir()
	appendT(t, dir, vmA.run(at("09:00"), at("10:00"))...) // 1-4
	appendT(t, dir, vmB.run(at("11:00"), time.Time{})...) // 5, 6
	ix := openT(t, dir)
	updateT(t, ix)
	pruneJournal(t, dir, 5)                                    // vmA's records and vmB's admission
	appendT(t, dir, vmB.rec(at("12:00"), trace.VMReconnected)) // 7
	if st := updateT(t, ix); st.Records != 1 || st.Rebuilt {
		t.Fatalf("stats %+v", st)
	}
	if got := seqs(queryT(t, ix, Filter{})); !reflect.DeepEqual(got, []uint64{6, 7}) {
		t.Fatalf("seqs %v", got)
	}
	if got := queryT(t, ix, Filter{User: "carol", At: at("09:30")}); len(got) != 0 {
		t.Fatalf("pruned lifetime remains: %+v", got[0].Lifetime)
	}
	// vmB's lifetime was open at the anchor: it stays, whole.
	res := queryT(t, ix, Filter{IP: "192.0.2.77", At: at("11:30")})
	if len(res) != 1 || res[0].Lifetime.AdmissionSeq != 5 || len(res[0].Lifetime.Images) != 1 {
		t.Fatalf("lifetimes %+v", res)
	}

	// Pruned just up to what the index had seen: the anchor is its last record.
	pruneJournal(t, dir, 7)
	appendT(t, dir, vmB.rec(at("12:30"), trace.VMStopped)) // 8
	if st := updateT(t, ix); st.Rebuilt || st.Records != 1 || st.LastSeq != 8 {
		t.Fatalf("stats %+v", st)
	}

	// Pruned past what the index had seen: it starts again from the journal.
	appendT(t, dir, vmB.rec(at("12:30"), trace.VMReleased), vmA.rec(at("13:00"), trace.AdmissionAllow)) // 9, 10
	pruneJournal(t, dir, 9)
	if st := updateT(t, ix); !st.Rebuilt || st.Records != 1 || st.LastSeq != 10 {
		t.Fatalf("stats %+v", st)
	}
	if got := seqs(queryT(t, ix, Filter{})); !reflect.DeepEqual(got, []uint64{10}) {
		t.Fatalf("seqs %v", got)
	}
}

// tamperFirst edits the first record in place (same length): reading the whole journal
// reports it, reading only what follows the last record indexed does not see it.
func tamperFirst(t *testing.T, dir string) {
	t.Helper()
	path := trace.JournalPath(dir)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"vmgate_version":"test"`))
	if i < 0 {
		t.Fatal("no record to edit")
	}
	copy(b[i:], `"vmgate_version":"TEST"`)
	if err := os.WriteFile(path, b, 0o600); err != nil { // same file: in place
		t.Fatal(err)
	}
}

func TestUpdateReadsOnlyWhatFollows(t *testing.T) {
	dir := t.TempDir()
	appendT(t, dir, vmA.run(at("09:00"), at("10:00"))...)
	ix := openT(t, dir)
	updateT(t, ix)
	tamperFirst(t, dir)
	appendT(t, dir, vmB.run(at("11:00"), time.Time{})...)
	if st := updateT(t, ix); st.Records != 2 || st.LastSeq != 6 || st.Rebuilt {
		t.Fatalf("stats %+v", st)
	}
	if got := domains(queryT(t, ix, Filter{IP: "192.0.2.77", At: at("11:30")})); !reflect.DeepEqual(got, []string{vmB.name}) {
		t.Fatalf("lifetimes %v", got)
	}
	// A reindex reads everything, and finds the edit.
	var p *journal.Problem
	if _, err := ix.Rebuild(context.Background()); !errors.As(err, &p) || p.Seq != 1 {
		t.Fatalf("rebuild: %v", err)
	}
}

func TestUpdateTailEdges(t *testing.T) {
	dir := t.TempDir()
	path := trace.JournalPath(dir)
	appendT(t, dir, vmA.run(at("09:00"), time.Time{})...)
	ix := openT(t, dir)
	updateT(t, ix)

	// An append under way (or cut short): its line has no newline yet. Nothing to index.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":3,"time":"2026-11-20T10:00:00Z","prev":"`)
	f.Close()
	if st, err := ix.Update(context.Background()); err != nil || st.Records != 0 || st.LastSeq != 2 {
		t.Fatalf("torn: %+v %v", st, err)
	}
	// The next append moves the torn bytes aside (and logs it); the index reads on from
	// where it was.
	appendT(t, dir, vmA.rec(at("10:00"), trace.VMStopped))
	if st := updateT(t, ix); st.Records != 1 || st.LastSeq != 3 || st.Rebuilt {
		t.Fatalf("after the repair: %+v", st)
	}

	// A complete line that is no record: reading the whole journal decides (a torn tail).
	f, _ = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("{\"seq\":4,\"garbage\":true}\n")
	f.Close()
	if st, err := ix.Update(context.Background()); err != nil || st.Records != 0 || st.LastSeq != 3 {
		t.Fatalf("garbage: %+v %v", st, err)
	}
	appendT(t, dir, vmA.rec(at("10:00:01"), trace.VMReleased))
	if st := updateT(t, ix); st.Records != 1 || st.LastSeq != 4 {
		t.Fatalf("after the garbage: %+v", st)
	}
	if got := seqs(queryT(t, ix, Filter{})); !reflect.DeepEqual(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("seqs %v", got)
	}
}
