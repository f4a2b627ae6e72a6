package journal

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// record1K is a trace record of about 1 KiB, the size the hook writes.
func record1K(n int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"n":%d,"event.action":"start","pad":"%s"}`, n, strings.Repeat("x", 980)))
}

// BenchmarkAppend is the hook's case: one record per Append, one fdatasync each.
func BenchmarkAppend(b *testing.B) {
	j := openT(b, filepath.Join(b.TempDir(), "j"), Options{})
	d := record1K(0)
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if _, err := j.Append(d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendParallel has 8 writers appending at once, sharing one Journal (a daemon's
// goroutines) or each with its own (like hook processes, serialised by flock).
func BenchmarkAppendParallel(b *testing.B) {
	for _, shared := range []bool{true, false} {
		name := map[bool]string{true: "shared", false: "own"}[shared]
		b.Run(name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "j")
			one := openT(b, path, Options{})
			d := record1K(0)
			b.SetBytes(int64(len(d)))
			// RunParallel starts parallelism × GOMAXPROCS goroutines: at least 8.
			b.SetParallelism((8 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			var writers atomic.Int32
			b.RunParallel(func(pb *testing.PB) {
				writers.Add(1)
				j := one
				if !shared {
					j = openT(b, path, Options{})
				}
				for pb.Next() {
					if _, err := j.Append(d); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(writers.Load()), "writers")
		})
	}
}

// BenchmarkVerify checks a journal of 10,000 records of about 1 KiB.
func BenchmarkVerify(b *testing.B) {
	path := filepath.Join(b.TempDir(), "j")
	j := openT(b, path, Options{})
	const n = 10000
	var batch []json.RawMessage
	for i := range n {
		batch = append(batch, record1K(i))
		if len(batch) == 1000 {
			if _, err := j.Append(batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	rep, _ := Verify(path)
	b.SetBytes(int64(n * len(record1K(0))))
	for b.Loop() {
		if r, err := Verify(path); err != nil || !r.Intact() || r.Records != n {
			b.Fatal(rep, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
