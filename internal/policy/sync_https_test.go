package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmgate/vmgate/internal/config"
	"github.com/vmgate/vmgate/internal/policy/policytest"
)

// TestSyncOverHTTPSWithConditionalGET syncs from a real TLS server that honours ETags, as
// endorsers' web servers do: the second sync asks If-None-Match and takes the 304.
func TestSyncOverHTTPSWithConditionalGET(t *testing.T) {
	dir := t.TempDir()
	e := policytest.NewEndorser(t, dir)
	var served, sig atomic.Value
	var notModified, auth atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok && u == "s3cret-token" && p == "x-oauth-basic" {
			auth.Add(1)
		}
		switch r.URL.Path {
		case "/image.list":
			body := served.Load().([]byte)
			sum := sha256.Sum256(body)
			etag := `"` + hex.EncodeToString(sum[:8]) + `"`
			w.Header().Set("ETag", etag)
			if r.Header.Get("If-None-Match") == etag {
				notModified.Add(1)
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Write(body)
		case "/image.list.sig":
			w.Write(sig.Load().([]byte))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
state_dir: %s
subscriptions:
  - {name: remote, url: %q, cosign_keys: [%s], ca_file: %s, token: s3cret-token}
`, filepath.Join(dir, "state"), srv.URL+"/image.list", e.PubKey, ca)))
	if err != nil {
		t.Fatal(err)
	}
	s := &site{t: t, cfg: cfg, endorser: e, clock: now}
	publish := func(l policytest.List) {
		b := l.Bytes()
		served.Store(b)
		sig.Store(e.Sign(t, b))
	}
	publish(list("1", policytest.Images(2)...))
	if r := s.sync().Results[0]; r.Outcome != OutcomeAccepted {
		t.Fatalf("first sync: %+v", r)
	}
	s.clock = s.clock.Add(time.Hour)
	if r := s.sync().Results[0]; r.Outcome != OutcomeUnchanged || notModified.Load() != 1 {
		t.Fatalf("second sync: %+v, %d not-modified answers", r, notModified.Load())
	}
	publish(list("2", policytest.Images(1)...))
	if r := s.sync().Results[0]; r.Outcome != OutcomeAccepted || r.Changes[EventImageRevoked] != 1 {
		t.Fatalf("third sync: %+v", r)
	}
	if auth.Load() == 0 {
		t.Fatal("the token was never sent as basic auth")
	}
}
