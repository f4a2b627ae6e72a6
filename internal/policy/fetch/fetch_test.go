package fetch

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tlsServer is an httptest TLS server whose handshake complaints (expected when a test
// refuses its certificate) stay out of the test output.
func tlsServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// caFile writes the test server's certificate as a PEM bundle. All httptest servers share
// one certificate, so the file trusts every server of a test.
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// waits records the backoff the Fetcher asks for instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) get() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// newFetcher trusts srv (when given) and records waits instead of sleeping.
func newFetcher(t *testing.T, srv *httptest.Server, opts Options) (*Fetcher, *waits) {
	t.Helper()
	if srv != nil && opts.CAFile == "" {
		opts.CAFile = caFile(t, srv)
	}
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w := &waits{}
	f.sleep = w.sleep
	return f, w
}

// counting serves the given statuses in turn (the last one repeats) and counts requests.
func counting(n *atomic.Int32, statuses ...int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		code := statuses[min(i, len(statuses)-1)]
		w.WriteHeader(code)
		if code == http.StatusOK {
			io.WriteString(w, "list")
		}
	}
}

func TestGetWithCAFile(t *testing.T) {
	srv := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ua := r.UserAgent(); ua != DefaultUserAgent {
			t.Errorf("User-Agent = %q", ua)
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		io.WriteString(w, `{"hv:imagelist":{}}`)
	}))
	f, _ := newFetcher(t, srv, Options{})
	res, err := f.Get(context.Background(), srv.URL+"/list.json", Validators{})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Body) != `{"hv:imagelist":{}}` || res.NotModified ||
		res.ETag != `"v1"` || res.LastModified != "Mon, 02 Jan 2006 15:04:05 GMT" {
		t.Fatalf("result = %+v", res)
	}
}

func TestNewRejectsBadCAFile(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("not a certificate\n"), 0o644)
	for _, path := range []string{empty, filepath.Join(t.TempDir(), "missing.pem")} {
		if _, err := New(Options{CAFile: path}); err == nil {
			t.Errorf("New(CAFile: %s) succeeded", path)
		}
	}
	if _, err := New(Options{Timeout: -time.Second}); err == nil {
		t.Error("New accepted a negative timeout")
	}
}

func TestGetUnknownCARefused(t *testing.T) {
	var n atomic.Int32
	srv := tlsServer(t, counting(&n, http.StatusOK))
	f, w := newFetcher(t, nil, Options{}) // system pool only
	_, err := f.Get(context.Background(), srv.URL+"/list", Validators{})
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a certificate verification error", err)
	}
	// A certificate that fails now fails in a second too: no retry.
	if n.Load() != 0 || len(w.get()) != 0 || !strings.Contains(err.Error(), "1 attempt") {
		t.Fatalf("requests = %d, waits = %v, err = %v", n.Load(), w.get(), err)
	}
}

func TestGetConditional(t *testing.T) {
	content := strings.NewReader("the list")
	modified := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var got304 atomic.Int32
	serve := func(etag string, mod time.Time) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if etag != "" {
				w.Header().Set("ETag", etag)
			}
			// ServeContent implements If-None-Match and If-Modified-Since as real servers do.
			rec := &statusRecorder{ResponseWriter: w}
			http.ServeContent(rec, r, "list.json", mod, content)
			if rec.code == http.StatusNotModified {
				got304.Add(1)
			}
		})
	}
	for _, tc := range []struct {
		name string
		etag string
		mod  time.Time
	}{
		{"etag", `"abc123"`, time.Time{}},
		{"last-modified", "", modified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got304.Store(0)
			srv := tlsServer(t, serve(tc.etag, tc.mod))
			f, _ := newFetcher(t, srv, Options{})
			first, err := f.Get(context.Background(), srv.URL, Validators{})
			if err != nil {
				t.Fatal(err)
			}
			if string(first.Body) != "the list" || first.NotModified {
				t.Fatalf("first = %+v", first)
			}
			if first.ETag == "" && first.LastModified == "" {
				t.Fatalf("first fetch returned no validators: %+v", first)
			}
			second, err := f.Get(context.Background(), srv.URL, Validators{ETag: first.ETag, LastModified: first.LastModified})
			if err != nil {
				t.Fatal(err)
			}
			if !second.NotModified || second.Body != nil || got304.Load() != 1 {
				t.Fatalf("second = %+v, 304s = %d", second, got304.Load())
			}
			if second.ETag != first.ETag || second.LastModified != first.LastModified {
				t.Fatalf("validators not kept: first %+v, second %+v", first, second)
			}
		})
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func TestGet304WithoutValidatorsIsAnError(t *testing.T) {
	var n atomic.Int32
	srv := tlsServer(t, counting(&n, http.StatusNotModified))
	f, _ := newFetcher(t, srv, Options{})
	_, err := f.Get(context.Background(), srv.URL, Validators{})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotModified || n.Load() != 1 {
		t.Fatalf("err = %v after %d requests", err, n.Load())
	}
}

func TestGetSizeCap(t *testing.T) {
	const limit = 1024
	tests := []struct {
		name string
		h    http.HandlerFunc
		ok   bool
	}{
		{"at the cap", func(w http.ResponseWriter, r *http.Request) {
			w.Write(make([]byte, limit))
		}, true},
		{"content-length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(limit+1))
			w.Write(make([]byte, limit+1))
		}, false},
		{"chunked", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush() // commits to chunked encoding: no Content-Length
			for range 4 {
				w.Write(make([]byte, limit/2))
			}
		}, false},
		// A huge Content-Length must fail before reading: this body never ends, so reading
		// it would run into the 5 s timeout instead.
		{"content-length, endless body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(1<<40))
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			srv := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				tc.h(w, r)
			}))
			f, _ := newFetcher(t, srv, Options{MaxSize: limit, Timeout: 5 * time.Second})
			start := time.Now()
			res, err := f.Get(context.Background(), srv.URL, Validators{})
			if tc.ok {
				if err != nil || len(res.Body) != limit {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1024-byte cap") {
				t.Fatalf("err = %v, want ErrTooLarge naming the cap", err)
			}
			if n.Load() != 1 {
				t.Errorf("%d requests; too large is not worth a retry", n.Load())
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestGetTimeout(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"trickling body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100000")
			for {
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}},
		{"no headers", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := tlsServer(t, tc.h)
			f, w := newFetcher(t, srv, Options{Timeout: 300 * time.Millisecond, Retries: 1})
			start := time.Now()
			_, err := f.Get(context.Background(), srv.URL, Validators{})
			if !errors.Is(err, ErrTimeout) {
				t.Fatalf("err = %v, want ErrTimeout", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %s for two 300ms attempts", d)
			}
			// A timeout may be a passing overload: it is retried.
			if len(w.get()) != 1 || !strings.Contains(err.Error(), "2 attempts") {
				t.Errorf("waits = %v, err = %v", w.get(), err)
			}
		})
	}
}

func TestGetRetriesServerErrors(t *testing.T) {
	var n atomic.Int32
	srv := tlsServer(t, counting(&n, 500, 500, 200))
	f, w := newFetcher(t, srv, Options{Backoff: 100 * time.Millisecond})
	res, err := f.Get(context.Background(), srv.URL, Validators{})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Body) != "list" || n.Load() != 3 {
		t.Fatalf("body = %q after %d requests", res.Body, n.Load())
	}
	// Jittered between half and all of 100ms, then of 200ms.
	got := w.get()
	if len(got) != 2 ||
		got[0] < 50*time.Millisecond || got[0] > 100*time.Millisecond ||
		got[1] < 100*time.Millisecond || got[1] > 200*time.Millisecond {
		t.Fatalf("waits = %v", got)
	}
}

func TestGetGivesUp(t *testing.T) {
	var n atomic.Int32
	srv := tlsServer(t, counting(&n, http.StatusServiceUnavailable))
	f, w := newFetcher(t, srv, Options{})
	_, err := f.Get(context.Background(), srv.URL+"/lists/egi.json", Validators{})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 {
		t.Fatalf("err = %v", err)
	}
	want := fmt.Sprintf("fetch %s/lists/egi.json: HTTP 503 Service Unavailable (3 attempts)", srv.URL)
	if err.Error() != want || n.Load() != 3 || len(w.get()) != 2 {
		t.Fatalf("err = %q, want %q; %d requests, waits %v", err, want, n.Load(), w.get())
	}
}

func TestGetNoRetryOnClientErrors(t *testing.T) {
	for _, code := range []int{400, 401, 403, 404, 410} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			var n atomic.Int32
			srv := tlsServer(t, counting(&n, code))
			f, w := newFetcher(t, srv, Options{})
			_, err := f.Get(context.Background(), srv.URL, Validators{})
			var se *StatusError
			if !errors.As(err, &se) || se.Code != code {
				t.Fatalf("err = %v", err)
			}
			if n.Load() != 1 || len(w.get()) != 0 || !strings.Contains(err.Error(), "(1 attempt)") {
				t.Fatalf("%d requests, waits %v, err %v", n.Load(), w.get(), err)
			}
		})
	}
}

func TestGetRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"2", 2 * time.Second},
		{"100000", maxRetryAfter},
	} {
		t.Run(tc.header, func(t *testing.T) {
			var n atomic.Int32
			srv := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) == 1 {
					w.Header().Set("Retry-After", tc.header)
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				io.WriteString(w, "list")
			}))
			f, w := newFetcher(t, srv, Options{Backoff: time.Millisecond})
			if _, err := f.Get(context.Background(), srv.URL, Validators{}); err != nil {
				t.Fatal(err)
			}
			if got := w.get(); len(got) != 1 || got[0] != tc.want || n.Load() != 2 {
				t.Fatalf("waits = %v, want [%s]; %d requests", got, tc.want, n.Load())
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"-5":                            0,
		"7":                             7 * time.Second,
		"99999999999999999":             maxRetryAfter,
		"soon":                          0,
		"Wed, 01 Jan 2025 00:00:30 GMT": 30 * time.Second,
		"Tue, 31 Dec 2024 00:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}

func TestWaitDoublesUpToCap(t *testing.T) {
	f, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.jitter = func(n int64) int64 { return n - 1 } // the top of the range
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: maxBackoff, 100: maxBackoff} {
		if got := f.wait(n); got != want {
			t.Errorf("wait(%d) = %s, want %s", n, got, want)
		}
	}
	f.jitter = func(int64) int64 { return 0 }
	if got := f.wait(1); got != time.Second/2 {
		t.Errorf("wait(1) with no jitter = %s, want 500ms", got)
	}
}

const token = "s3cr3t-t0ken-value"

func TestGetToken(t *testing.T) {
	srv := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != token || pass != "x-oauth-basic" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/denied" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		io.WriteString(w, "list")
	}))
	f, _ := newFetcher(t, srv, Options{Token: token})
	if _, err := f.Get(context.Background(), srv.URL+"/list", Validators{}); err != nil {
		t.Fatal(err)
	}
	_, err := f.Get(context.Background(), srv.URL+"/denied", Validators{})
	if err == nil || strings.Contains(err.Error(), token) {
		t.Fatalf("err = %v", err)
	}
	// Also when the URL itself is broken or refused.
	for _, u := range []string{"https://" + token + "@[::1", "http://" + token + "@example.org/", "ftp://" + token + ":x@h/"} {
		_, err := f.Get(context.Background(), u, Validators{})
		if err == nil || strings.Contains(err.Error(), token) {
			t.Errorf("Get(%q): err = %v", u, err)
		}
	}
}

func TestGetURLUserinfo(t *testing.T) {
	const user, pass = "alice-endorser", "hunter2-secret"
	srv := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	f, _ := newFetcher(t, srv, Options{})
	withCreds := strings.Replace(srv.URL, "https://", "https://"+user+":"+pass+"@", 1)
	_, err := f.Get(context.Background(), withCreds+"/gone?sig=abcdef", Validators{})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Fatalf("err = %v, want 404 (credentials used)", err)
	}
	for _, secret := range []string{user, pass, "abcdef"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows %q: %v", secret, err)
		}
	}
	if !strings.Contains(err.Error(), srv.URL+"/gone?sig=REDACTED") {
		t.Errorf("error does not name the URL: %v", err)
	}
}

func TestGetTokenNotSentToAnotherHost(t *testing.T) {
	var otherAuth atomic.Value
	other := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherAuth.Store(r.Header.Get("Authorization"))
		io.WriteString(w, "list")
	}))
	var sameHostAuth atomic.Value
	origin := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/elsewhere": // same IP, another port: another origin
			http.Redirect(w, r, other.URL+"/list", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, "/list", http.StatusMovedPermanently)
		case "/list":
			sameHostAuth.Store(r.Header.Get("Authorization"))
			io.WriteString(w, "list")
		}
	}))
	f, _ := newFetcher(t, origin, Options{Token: token})
	if _, err := f.Get(context.Background(), origin.URL+"/elsewhere", Validators{}); err != nil {
		t.Fatal(err)
	}
	if got := otherAuth.Load(); got != "" {
		t.Errorf("the other host got Authorization %q", got)
	}
	if _, err := f.Get(context.Background(), origin.URL+"/moved", Validators{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := sameHostAuth.Load().(string); !strings.HasPrefix(got, "Basic ") {
		t.Errorf("same-host redirect lost the token: Authorization %q", got)
	}
}

func TestGetRedirectToHTTPRefused(t *testing.T) {
	var plainHits atomic.Int32
	plain := httptest.NewServer(counting(&plainHits, http.StatusOK))
	t.Cleanup(plain.Close)
	srv := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/list", http.StatusFound)
	}))
	f, w := newFetcher(t, srv, Options{Token: token})
	_, err := f.Get(context.Background(), srv.URL, Validators{})
	if !errors.Is(err, ErrRedirect) || plainHits.Load() != 0 || len(w.get()) != 0 {
		t.Fatalf("err = %v, plain hits = %d, waits = %v", err, plainHits.Load(), w.get())
	}
	if !strings.Contains(err.Error(), plain.URL) {
		t.Errorf("error does not name the refused target: %v", err)
	}
}

func TestGetRedirectLimit(t *testing.T) {
	var n atomic.Int32
	srv := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		var hop int
		fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/"), &hop)
		if r.URL.Query().Get("end") == fmt.Sprint(hop) {
			io.WriteString(w, "list")
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/%d?%s", hop+1, r.URL.RawQuery), http.StatusFound)
	}))
	f, _ := newFetcher(t, srv, Options{})
	if _, err := f.Get(context.Background(), srv.URL+"/0?end=5", Validators{}); err != nil {
		t.Fatalf("5 redirects: %v", err)
	}
	n.Store(0)
	_, err := f.Get(context.Background(), srv.URL+"/0?end=-1", Validators{})
	if !errors.Is(err, ErrRedirect) || n.Load() != 6 {
		t.Fatalf("endless redirects: err = %v after %d requests", err, n.Load())
	}
}

func TestGetRefusesSchemes(t *testing.T) {
	f, w := newFetcher(t, nil, Options{})
	for _, u := range []string{
		"http://example.org/list.json",
		"ftp://example.org/list.json",
		"list.json",
		"https:///list.json",
		"file://server/list.json",
		"file:list.json",
	} {
		_, err := f.Get(context.Background(), u, Validators{})
		if !errors.Is(err, ErrScheme) {
			t.Errorf("Get(%q): err = %v, want ErrScheme", u, err)
		}
	}
	_, err := f.Get(context.Background(), "http://example.org/", Validators{})
	if err == nil || !strings.Contains(err.Error(), "plain http is refused") {
		t.Errorf("http error does not say why: %v", err)
	}
	if len(w.get()) != 0 {
		t.Errorf("waits = %v", w.get())
	}
}

func TestGetFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "list.json")
	big := filepath.Join(dir, "big.json")
	os.WriteFile(small, []byte("list"), 0o644)
	os.WriteFile(big, make([]byte, 101), 0o644)
	f, _ := newFetcher(t, nil, Options{MaxSize: 100})
	ctx := context.Background()

	res, err := f.Get(ctx, "file://"+small, Validators{ETag: `"x"`})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Body) != "list" || res.NotModified || res.ETag != "" || res.LastModified != "" {
		t.Fatalf("result = %+v", res)
	}
	if _, err := f.Get(ctx, "file://localhost"+small, Validators{}); err != nil {
		t.Errorf("file://localhost: %v", err)
	}
	if _, err := f.Get(ctx, "file://"+filepath.Join(dir, "missing.json"), Validators{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
	if _, err := f.Get(ctx, "file://"+big, Validators{}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "100-byte cap") {
		t.Errorf("big file: err = %v", err)
	}
	if _, err := f.Get(ctx, "file://"+dir, Validators{}); err == nil {
		t.Error("a directory was read")
	}
}

func TestGetCancelDuringBackoff(t *testing.T) {
	var n atomic.Int32
	srv := tlsServer(t, counting(&n, http.StatusInternalServerError))
	f, err := New(Options{CAFile: caFile(t, srv), Backoff: time.Minute}) // the real sleep
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(200*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := f.Get(ctx, srv.URL, Validators{})
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Get still waiting 3s after the context was cancelled")
	}
	var se *StatusError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &se) || se.Code != 500 || n.Load() != 1 {
		t.Fatalf("err = %v after %d requests", err, n.Load())
	}
	if !strings.Contains(err.Error(), "while waiting to retry") {
		t.Errorf("err = %v", err)
	}
}

func TestShownURL(t *testing.T) {
	u, _ := url.Parse("https://tok:pw@appdb.example.org/store/list.json?X-Amz-Signature=abc&a=1#frag")
	if got, want := shownURL(u), "https://appdb.example.org/store/list.json?X-Amz-Signature=REDACTED&a=REDACTED"; got != want {
		t.Errorf("shownURL = %q, want %q", got, want)
	}
}
