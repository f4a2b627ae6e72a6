package index

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/journal"
	"github.com/vmgate/vmgate/internal/trace"
)

var benchStart = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// writeSimJournal writes n simulated records to the trace journal under stateDir with
// trace.Append, in batches as large as the journal takes, and returns the time of the last.
func writeSimJournal(tb testing.TB, stateDir string, n, addrs int) time.Time {
	tb.Helper()
	s := newSim(1, benchStart, addrs, 300)
	var batch []trace.Record
	for written := 0; written < n; {
		recs := s.next()
		if len(recs) > n-written {
			recs = recs[:n-written]
		}
		batch = append(batch, recs...)
		written += len(recs)
		if len(batch) >= 8192 || written == n {
			if err := trace.Append(stateDir, batch...); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return s.now
}

// benchAddrs is how many addresses the simulated VMs share: with 300 running at a time, each
// address was held by about 60 VMs over 1,000,000 records.
const benchAddrs = 4096

// The index the benchmarks query, built once per process: VMGATE_BENCH_RECORDS records
// (1,000,000 by default, the figure the issue sets the query target at), in a temporary
// directory that TestMain removes, or in VMGATE_BENCH_DIR, which is kept (to time the
// vmgate command against it).
var bench struct {
	once sync.Once
	dir  string
	keep bool
	ix   *Index
	end  time.Time // of the last record
	st   Stats     // of the build
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.ix != nil {
		bench.ix.Close()
	}
	if bench.dir != "" && !bench.keep {
		os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

func benchIndex(b *testing.B) *Index {
	b.Helper()
	bench.once.Do(func() {
		n := 1_000_000
		if s := os.Getenv("VMGATE_BENCH_RECORDS"); s != "" {
			if n, bench.err = strconv.Atoi(s); bench.err != nil {
				return
			}
		}
		bench.dir, bench.keep = os.Getenv("VMGATE_BENCH_DIR"), true
		if bench.dir == "" {
			bench.keep = false
			if bench.dir, bench.err = os.MkdirTemp("", "vmgate-index-bench-"); bench.err != nil {
				return
			}
		}
		if _, err := os.Stat(trace.JournalPath(bench.dir)); err != nil {
			bench.end = writeSimJournal(b, bench.dir, n, benchAddrs)
		} else if bench.end, bench.err = lastRecordTime(trace.JournalPath(bench.dir)); bench.err != nil {
			return
		}
		ctx := context.Background()
		if bench.ix, bench.err = Open(ctx, bench.dir, Options{}); bench.err != nil {
			return
		}
		if bench.st, bench.err = bench.ix.Rebuild(ctx); bench.err == nil && bench.st.Records != n {
			bench.err = fmt.Errorf("indexed %d records, want %d", bench.st.Records, n)
		}
		fmt.Fprintf(os.Stderr, "index of %d records built in %v: %.0f records/s (%s)\n", bench.st.Records,
			bench.st.Duration.Round(time.Millisecond), float64(bench.st.Records)/bench.st.Duration.Seconds(), bench.dir)
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.ix
}

// lastRecordTime is the time of the last record in a journal that an earlier run kept.
func lastRecordTime(path string) (time.Time, error) {
	var last []byte
	err := journal.Read(path, 0, func(e journal.Entry) error { last = e.Data; return nil })
	if err != nil {
		return time.Time{}, err
	}
	var r trace.Record
	err = json.Unmarshal(last, &r)
	return r.Time, err
}

// benchQuery runs the filters next gives and reports how many results each had.
func benchQuery(b *testing.B, next func(*rand.Rand) Filter) {
	ix := benchIndex(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(2, 3))
	results, queries := 0, 0
	for b.Loop() {
		res, err := ix.Query(ctx, next(rng))
		if err != nil {
			b.Fatal(err)
		}
		results += len(res)
		queries++
	}
	b.ReportMetric(float64(results)/float64(queries), "results/op")
	b.ReportMetric(float64(bench.st.Records)/bench.st.Duration.Seconds(), "indexed-records/s")
}

func randomAddr(rng *rand.Rand) string {
	k := 1 + rng.IntN(benchAddrs) // the sim's addresses: 10.0.0.1 on
	return netip.AddrFrom4([4]byte{10, 0, byte(k >> 8), byte(k)}).String()
}

func randomTime(rng *rand.Rand) time.Time {
	return benchStart.Add(time.Duration(rng.Int64N(int64(bench.end.Sub(benchStart)))))
}

// BenchmarkQueryIPAt is `vmgate trace query --ip A --at T`: who held the address then.
// Building the index is not timed; its throughput is reported as indexed-records/s.
func BenchmarkQueryIPAt(b *testing.B) {
	benchQuery(b, func(rng *rand.Rand) Filter { return Filter{IP: randomAddr(rng), At: randomTime(rng)} })
}

// BenchmarkQueryIP is `vmgate trace query --ip A`: every record that names the address,
// about 240 of them.
func BenchmarkQueryIP(b *testing.B) {
	benchQuery(b, func(rng *rand.Rand) Filter { return Filter{IP: randomAddr(rng)} })
}

// BenchmarkQueryUserAt is `vmgate trace query --user U --at T`.
func BenchmarkQueryUserAt(b *testing.B) {
	benchQuery(b, func(rng *rand.Rand) Filter {
		return Filter{User: fmt.Sprintf("user%03d", rng.IntN(500)), At: randomTime(rng)}
	})
}

// BenchmarkQueryAt is `vmgate trace query --at T`: every VM running then, about 300.
func BenchmarkQueryAt(b *testing.B) {
	benchQuery(b, func(rng *rand.Rand) Filter { return Filter{At: randomTime(rng)} })
}

// BenchmarkUpdateNothingNew is what `vmgate trace query` pays before querying when no record
// came since the last update.
func BenchmarkUpdateNothingNew(b *testing.B) {
	ix := benchIndex(b)
	for b.Loop() {
		if st, err := ix.Update(context.Background()); err != nil || st.Records != 0 {
			b.Fatal(st, err)
		}
	}
}
