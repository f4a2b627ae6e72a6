// Package fetch downloads an endorser's image list, its detached signature or its bundle.
//
// Everything fetched here is untrusted until internal/policy/verify has checked it, so this
// package only has to be safe and robust: a size cap on every byte read, a deadline on every
// attempt (a server that trickles bytes must not stall a sync), TLS 1.2+ with an optional
// site CA bundle, no plain http, no credentials leaking to another host or into an error
// message, and bounded retries for failures that may go away on their own.
package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// Defaults for the zero values of Options.
const (
	DefaultTimeout   = 60 * time.Second
	DefaultMaxSize   = 64 << 20 // 64 MiB
	DefaultRetries   = 2        // 3 attempts in all
	DefaultBackoff   = time.Second
	DefaultUserAgent = "vmgate"

	// maxBackoff caps the doubling so that a long run of failures does not park a sync for
	// minutes; maxRetryAfter does the same for a server's Retry-After.
	maxBackoff    = 30 * time.Second
	maxRetryAfter = time.Minute
	// maxRedirects is lower than net/http's 10: an endorser's list has no business being
	// more than a couple of hops away.
	maxRedirects = 5
	// tokenPassword is what EGI AppDB (and GitHub) expect beside a token in basic auth.
	tokenPassword = "x-oauth-basic"
)

// Options configure a Fetcher. Zero values take the defaults above.
type Options struct {
	// CAFile is a PEM bundle trusted in addition to the system CAs for https.
	CAFile string
	// Timeout bounds one attempt: connect, TLS handshake, response headers and the whole body.
	Timeout time.Duration
	// MaxSize caps the bytes of one response body or file.
	MaxSize int64
	// Token is sent as HTTP basic auth (user = token, password = x-oauth-basic), AppDB style.
	// It is never sent across a redirect to another host and never shown in an error.
	Token string
	// Retries is how many times a failed attempt is retried: 0 means DefaultRetries,
	// a negative value means no retry at all.
	Retries int
	// Backoff is the wait before the first retry; it doubles for each further retry, up to
	// 30 s (or Backoff itself if larger), and the actual wait is drawn between half of it and all of it so that many nodes
	// that failed together do not retry together.
	Backoff time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// Validators come from the previous successful fetch of the same URL and make the request
// conditional (If-None-Match, If-Modified-Since).
type Validators struct {
	ETag, LastModified string
}

// Result is one successful fetch.
type Result struct {
	// Body is nil when NotModified is set.
	Body []byte
	// ETag and LastModified are the validators to pass to the next Get of the same URL.
	// They are empty for file:// URLs.
	ETag, LastModified string
	// NotModified reports a 304: the content is still what the Validators described.
	NotModified bool
}

// Fetcher fetches over https and from local files. Use one per subscription, since the CA
// bundle, the token and the limits are per subscription. It is safe for concurrent use.
type Fetcher struct {
	client    *http.Client
	timeout   time.Duration
	maxSize   int64
	token     string
	attempts  int
	backoff   time.Duration
	userAgent string

	// sleep waits between attempts and jitter draws a number in [0, n); tests replace them
	// so that retries take no wall-clock time and waits can be checked.
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(n int64) int64
}

// New checks opts, loads the CA bundle and returns a Fetcher.
func New(opts Options) (*Fetcher, error) {
	if opts.Timeout < 0 || opts.MaxSize < 0 || opts.Backoff < 0 {
		return nil, errors.New("fetch: timeout, max size and backoff must not be negative")
	}
	f := &Fetcher{
		timeout:   orDefault(opts.Timeout, DefaultTimeout),
		maxSize:   orDefault(opts.MaxSize, DefaultMaxSize),
		token:     opts.Token,
		attempts:  1 + DefaultRetries,
		backoff:   orDefault(opts.Backoff, DefaultBackoff),
		userAgent: orDefault(opts.UserAgent, DefaultUserAgent),
		sleep:     sleepContext,
		jitter:    rand.Int64N,
	}
	switch {
	case opts.Retries < 0:
		f.attempts = 1
	case opts.Retries > 0:
		f.attempts = 1 + opts.Retries
	}

	roots, err := rootCAs(opts.CAFile)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: f.timeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		// Sites often reach endorsers through a proxy; CONNECT keeps TLS end to end.
		Proxy:       http.ProxyFromEnvironment,
		DialContext: dialer.DialContext,
		TLSClientConfig: &tls.Config{
			RootCAs:    roots,
			MinVersion: tls.VersionTLS12,
		},
		// A custom TLSClientConfig turns HTTP/2 off unless asked for.
		ForceAttemptHTTP2: true,
		// The per-attempt context bounds these too; the separate limits make a stalled
		// phase fail with an error that says which phase it was.
		TLSHandshakeTimeout:   f.timeout,
		ResponseHeaderTimeout: f.timeout,
		MaxIdleConns:          4,
		IdleConnTimeout:       90 * time.Second,
	}
	f.client = &http.Client{Transport: transport, CheckRedirect: checkRedirect}
	return f, nil
}

// rootCAs is the system pool plus the certificates in caFile.
func rootCAs(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		if caFile == "" {
			return nil, fmt.Errorf("fetch: system CA pool: %w", err)
		}
		// A site that names its own CA bundle can still work without a system pool.
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("fetch: CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("fetch: CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// Get fetches rawURL, an https:// or file:// URL. cond makes an https request conditional;
// pass the zero Validators for the first fetch. Userinfo in an https URL is used as basic
// auth when Options.Token is empty, under the same rules as the token.
//
// Errors wrap, as the case may be, a *StatusError, ErrTooLarge, ErrTimeout, ErrRedirect,
// ErrScheme, a TLS or network error from the standard library, fs errors for file://, or
// the context's error. Neither the token nor a URL's userinfo appears in any of them.
func (f *Fetcher) Get(ctx context.Context, rawURL string, cond Validators) (*Result, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the raw URL, credentials and all: keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("fetch: invalid URL: %w", err)
	}
	var res *Result
	switch u.Scheme {
	case "https":
		res, err = f.getHTTPS(ctx, u, cond)
	case "file":
		res, err = f.getFile(ctx, u)
	case "http":
		err = fmt.Errorf("fetch %s: %w: plain http is refused (anyone on the path could "+
			"change or withhold the list); use https:// or file://", shownURL(u), ErrScheme)
	default:
		err = fmt.Errorf("fetch %s: %w %q: use https:// or file://", shownURL(u), ErrScheme, u.Scheme)
	}
	if err != nil {
		return nil, f.redact(err, u)
	}
	return res, nil
}

func (f *Fetcher) getHTTPS(ctx context.Context, u *url.URL, cond Validators) (*Result, error) {
	shown := shownURL(u)
	if u.Host == "" {
		return nil, fmt.Errorf("fetch %s: %w: no host", shown, ErrScheme)
	}
	// Credentials go into the Authorization header ourselves, not through the URL, so that
	// checkRedirect alone decides where they may travel.
	user, pass := "", ""
	if f.token != "" {
		user, pass = f.token, tokenPassword
	} else if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	target := *u
	target.User = nil

	for n := 1; ; n++ {
		res, retryAfter, err := f.attempt(ctx, &target, user, pass, cond)
		if err == nil {
			return res, nil
		}
		if cerr := ctx.Err(); cerr != nil {
			if errors.Is(err, cerr) {
				return nil, fmt.Errorf("fetch %s: %w (%s)", shown, err, attempts(n))
			}
			return nil, fmt.Errorf("fetch %s: %w (%s; last error: %w)", shown, cerr, attempts(n), err)
		}
		if n >= f.attempts || !retryable(err) {
			return nil, fmt.Errorf("fetch %s: %w (%s)", shown, err, attempts(n))
		}
		wait := max(f.wait(n), retryAfter)
		if serr := f.sleep(ctx, wait); serr != nil {
			return nil, fmt.Errorf("fetch %s: %w while waiting to retry (%s; last error: %w)",
				shown, serr, attempts(n), err)
		}
	}
}

// attempt makes one request under its own deadline. retryAfter is the server's Retry-After
// when it sent one with a 429 or 503.
func (f *Fetcher) attempt(ctx context.Context, u *url.URL, user, pass string, cond Validators) (res *Result, retryAfter time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, f.transportError(actx, ctx, err)
	}
	req.Header.Set("User-Agent", f.userAgent)
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	if cond.ETag != "" {
		req.Header.Set("If-None-Match", cond.ETag)
	}
	if cond.LastModified != "" {
		req.Header.Set("If-Modified-Since", cond.LastModified)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, f.transportError(actx, ctx, err)
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if cond == (Validators{}) {
			// Without a previous fetch there is no content for "not modified" to refer to.
			return nil, 0, fmt.Errorf("%w without a conditional request", &StatusError{Code: resp.StatusCode})
		}
		// A 304 should repeat the validators; where it does not, the old ones still hold.
		return &Result{
			NotModified:  true,
			ETag:         orDefault(resp.Header.Get("ETag"), cond.ETag),
			LastModified: orDefault(resp.Header.Get("Last-Modified"), cond.LastModified),
		}, 0, nil
	default:
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return nil, retryAfter, &StatusError{Code: resp.StatusCode}
	}

	if resp.ContentLength > f.maxSize {
		return nil, 0, fmt.Errorf("%w: Content-Length %d is over the %d-byte cap",
			ErrTooLarge, resp.ContentLength, f.maxSize)
	}
	body, err := readCapped(resp.Body, f.maxSize)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, 0, err
		}
		return nil, 0, fmt.Errorf("read body: %w", f.transportError(actx, ctx, err))
	}
	return &Result{
		Body:         body,
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
	}, 0, nil
}

// transportError drops net/http's url.Error, whose message repeats the URL, and marks an
// attempt that ran out of its own time (as opposed to the caller cancelling).
func (f *Fetcher) transportError(actx, ctx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w after %s: %w", ErrTimeout, f.timeout, err)
	}
	return err
}

// checkRedirect keeps every hop on https, bounds the hops and drops the credentials as soon
// as a hop leaves the host they were meant for. net/http alone would still send them to a
// subdomain or another port of the same host.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrRedirect, maxRedirects)
	}
	if req.URL.Scheme != "https" {
		return fmt.Errorf("%w to %s: only https is allowed", ErrRedirect, shownURL(req.URL))
	}
	if hostPort(req.URL) != hostPort(via[0].URL) {
		req.Header.Del("Authorization")
	}
	return nil
}

// hostPort names an https origin with its port made explicit, so that host and host:443
// compare equal.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// wait is the jittered backoff before retry number n (1 for the first retry).
func (f *Fetcher) wait(n int) time.Duration {
	limit := max(maxBackoff, f.backoff)
	d := f.backoff
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	return half + time.Duration(f.jitter(int64(d-half)+1))
}

// parseRetryAfter reads delay-seconds or an HTTP date, capped at maxRetryAfter; 0 when
// absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		// Compare in seconds first: a huge value would overflow a Duration.
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return max(0, time.Duration(secs)*time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, min(t.Sub(now), maxRetryAfter))
	}
	return 0
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
