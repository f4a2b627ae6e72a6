package journal

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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

// BenchmarkAppendBaseline is the floor BenchmarkAppend is compared with: the same bytes
// appended to a plain file with one fdatasync each, no lock, no tail read, no hashing.
func BenchmarkAppendBaseline(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "plain"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	d := append(record1K(0), '\n')
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if _, err := f.Write(d); err != nil {
			b.Fatal(err)
		}
		if err := fdatasync(f); err != nil {
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

// BenchmarkPrune drops the first half of a journal of 1,000,000 records of about 1 KiB (1.2
// GB), which it reads and checks, and copies the other half. MB/s is over the whole journal.
// An appender runs alongside: max-append-ms is the longest an Append took meanwhile, which is
// how long VM starts would wait.
func BenchmarkPrune(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	master := filepath.Join(dir, "master")
	writeJournalT(b, master, n, record1K)
	path := filepath.Join(dir, "trace.jsonl")
	b.SetBytes(statT(b, master).Size())
	var longest time.Duration
	for b.Loop() {
		b.StopTimer()
		copyFileT(b, master, path)
		stop := make(chan struct{})
		waited := make(chan time.Duration)
		go func() {
			var w time.Duration
			defer func() { waited <- w }()
			j := openT(b, path, Options{})
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				if _, err := j.Append(record1K(0)); err != nil {
					b.Error(err)
					return
				}
				w = max(w, time.Since(t0))
			}
		}()
		b.StartTimer()

		res, err := Prune(path, keepFrom(n/2+1), Options{})

		b.StopTimer()
		close(stop)
		longest = max(longest, <-waited)
		if err != nil || res.Dropped != n/2 || res.Kept < n/2 {
			b.Fatalf("%+v, %v", res, err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(longest.Microseconds())/1000, "max-append-ms")
}

// writeJournalT writes a journal of n records straight to path, far faster than Append.
func writeJournalT(b *testing.B, path string, n int, data func(int) json.RawMessage) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	w.Write(appendHeader(nil, 0, zeroHash))
	clock := fakeClock()
	prev := zeroHash
	var buf []byte
	for i := 1; i <= n; i++ {
		buf, prev = appendRecord(buf[:0], uint64(i), clock(), prev, data(i))
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}

// copyFileT copies src to dst and syncs it, so that writing it back does not slow what follows.
func copyFileT(b *testing.B, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
}
