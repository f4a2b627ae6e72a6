package fetch

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Sentinels for the caller to record why a fetch failed (errors.Is).
var (
	// ErrTooLarge: the response or file is larger than Options.MaxSize.
	ErrTooLarge = errors.New("too large")
	// ErrTimeout: one attempt ran longer than Options.Timeout.
	ErrTimeout = errors.New("timed out")
	// ErrRedirect: a redirect left https or went on for too many hops.
	ErrRedirect = errors.New("redirect refused")
	// ErrScheme: the URL is neither https:// nor file://, or is malformed for its scheme.
	ErrScheme = errors.New("unsupported URL")
)

// StatusError is an HTTP response other than 200 or a 304 to a conditional request.
type StatusError struct {
	Code int
}

// Error shows the standard reason phrase, not the server's: the server's text is
// attacker-controlled and could echo anything, the token included.
func (e *StatusError) Error() string {
	if text := http.StatusText(e.Code); text != "" {
		return fmt.Sprintf("HTTP %d %s", e.Code, text)
	}
	return fmt.Sprintf("HTTP %d", e.Code)
}

// Retryable reports whether the status is worth another attempt: 408, 429 and 5xx.
func (e *StatusError) Retryable() bool {
	return e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests || e.Code >= 500
}

// retryable reports whether another attempt might succeed. Certificate and protocol
// failures, refused redirects and oversized answers will not change within a sync.
func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Retryable()
	}
	if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrRedirect) || errors.Is(err, ErrScheme) {
		return false
	}
	var (
		verify    *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		alert     tls.AlertError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname),
		errors.As(err, &invalid), errors.As(err, &record), errors.As(err, &alert):
		return false
	}
	return true
}

// shownURL is u as error messages may show it: no userinfo, query values masked (a signed
// URL carries its credential there), no fragment.
func shownURL(u *url.URL) string {
	s := *u
	s.User = nil
	s.Fragment, s.RawFragment = "", ""
	if s.RawQuery != "" {
		q, err := url.ParseQuery(s.RawQuery)
		if err != nil {
			s.RawQuery = "REDACTED"
		} else {
			for k := range q {
				q[k] = []string{"REDACTED"}
			}
			s.RawQuery = q.Encode()
		}
	}
	return s.String()
}

// minSecret keeps the last-resort scrub below from mangling messages over a one- or
// two-letter user name; messages are built from shownURL, so nothing should need it.
const minSecret = 4

// redact is a last line of defence: should any message below still contain the token or
// the URL's userinfo, mask it, keeping the chain intact for errors.Is and errors.As.
func (f *Fetcher) redact(err error, u *url.URL) error {
	secrets := []string{f.token}
	if u.User != nil {
		pass, _ := u.User.Password()
		secrets = append(secrets, u.User.Username(), pass, u.User.String())
	}
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if len(s) >= minSecret && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "REDACTED")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
