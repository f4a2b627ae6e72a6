package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const example = `
state_dir: /var/lib/vmgate
subscriptions:
  - name: example
    url: https://images.example.org/vo/example/image.list
    identifier: 5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e
    cosign_keys: [/etc/vmgate/keys/example.pub]
    signature_url: ""
    bundle_url: ""
    max_age: 720h
    refresh: 1h
    token: ""
`

func TestParseContractExample(t *testing.T) {
	c, err := Parse([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Subscriptions[0]
	if s.MaxAge != 720*time.Hour || s.Refresh != time.Hour {
		t.Errorf("durations: %v %v", s.MaxAge, s.Refresh)
	}
	if s.SignatureURL != s.URL+".sig" {
		t.Errorf("default signature_url = %q", s.SignatureURL)
	}
	if s.MaxSize != DefaultMaxSize {
		t.Errorf("max_size = %d", s.MaxSize)
	}
	if c.Paths().Snapshot() != "/var/lib/vmgate/snapshot.db" {
		t.Errorf("snapshot path = %q", c.Paths().Snapshot())
	}
}

func TestParseEmptyIsDefaults(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != DefaultStateDir || len(c.Subscriptions) != 0 {
		t.Fatalf("%+v", c)
	}
}

func TestParseRefusesWithKeyName(t *testing.T) {
	cases := map[string]string{
		"unknown key":     "state_dir: /x\nstate_dri: /y\n",
		"relative dir":    "state_dir: var/lib\n",
		"bad name":        "subscriptions: [{name: Ex, url: 'https://a/b', cosign_keys: [/k]}]",
		"duplicate name":  "subscriptions: [{name: a, url: 'https://a/b', cosign_keys: [/k]}, {name: a, url: 'https://a/c', cosign_keys: [/k]}]",
		"http url":        "subscriptions: [{name: a, url: 'http://a/b', cosign_keys: [/k]}]",
		"no keys":         "subscriptions: [{name: a, url: 'https://a/b'}]",
		"bad duration":    "subscriptions: [{name: a, url: 'https://a/b', cosign_keys: [/k], max_age: soon}]",
		"unknown sub key": "subscriptions: [{name: a, url: 'https://a/b', cosign_keys: [/k], keys: [/k]}]",
	}
	want := map[string]string{
		"unknown key": "state_dri", "relative dir": "state_dir", "bad name": "name",
		"duplicate name": "twice", "http url": "url", "no keys": "cosign_keys",
		"bad duration": "soon", "unknown sub key": "keys",
	}
	for name, in := range cases {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), want[name]) {
			t.Errorf("%s: error %q does not name %q", name, err, want[name])
		}
	}
}

func TestScalarKeys(t *testing.T) {
	got := strings.Join(ScalarKeys(), ",")
	if !strings.Contains(got, "state_dir") || strings.Contains(got, "subscriptions") {
		t.Fatalf("ScalarKeys() = %s", got)
	}
}

func TestAdmissionDefaultsAndValidation(t *testing.T) {
	c, err := Parse([]byte("admission: {exempt_disks: ['*.iso'], exempt_projects: [p1]}\nimage_dirs: [/var/lib/libvirt/images]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Admission.Mode != ModeEnforce || c.Admission.ExemptDisks[0] != "*.iso" {
		t.Fatalf("%+v", c.Admission)
	}
	if !slices.Contains(c.Admission.FirmwareDirs, "/usr/share/OVMF") || !slices.Contains(c.Admission.Emulators, "/usr/libexec/qemu-kvm") {
		t.Errorf("defaults: %+v", c.Admission)
	}
	// A list replaces the defaults; an empty one allows nothing.
	c, err = Parse([]byte("admission: {firmware_dirs: [/opt/fw], emulators: []}\n"))
	if err != nil || !slices.Equal(c.Admission.FirmwareDirs, []string{"/opt/fw"}) || c.Admission.Emulators == nil || len(c.Admission.Emulators) != 0 {
		t.Errorf("%v %+v", err, c.Admission)
	}
	for in, want := range map[string]string{
		"admission: {mode: audit}":                           "admission.mode",
		"admission: {exempt_domains: ['[']}":                 "admission.exempt_domains",
		"image_dirs: [images]":                               "image_dirs",
		"admission: {firmware_dirs: [fw]}":                   "admission.firmware_dirs",
		"admission: {firmware_dirs: [/]}":                    "admission.firmware_dirs",
		"admission: {firmware_dirs: [/usr/share/../../tmp]}": "admission.firmware_dirs",
		"admission: {firmware_dirs: [/usr/share/qemu/]}":     "admission.firmware_dirs",
		"admission: {emulators: [qemu]}":                     "admission.emulators",
		"admission: {emulators: ['/usr/bin/[']}":             "admission.emulators",
		"admission: {emulator: [/usr/bin/qemu]}":             "field emulator not found",
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to name %s", in, err, want)
		}
	}
}

const traceExample = `
trace:
  retention: 4320h
  sinks:
    - name: siem
      type: syslog
      address: siem.example.org:6514
      tls: true
      ca_file: /etc/vmgate/siem-ca.pem
      cert_file: ""
      key_file: ""
      server_name: ""
      app_name: vmgate
      max_backlog: 100000
    - name: filebeat
      type: jsonfile
      path: /var/log/vmgate/records.jsonl
`

func TestTraceContractExample(t *testing.T) {
	c, err := Parse([]byte(traceExample))
	if err != nil {
		t.Fatal(err)
	}
	if c.Trace.Retention != 180*24*time.Hour || len(c.Trace.Sinks) != 2 {
		t.Fatalf("%+v", c.Trace)
	}
	s := c.Trace.Sinks[0]
	if !s.UseTLS() || s.ServerName != "siem.example.org" || s.AppName != "vmgate" || s.MaxBacklog != 100000 {
		t.Errorf("syslog sink: %+v", s)
	}
	f := c.Trace.Sinks[1]
	if f.Type != SinkJSONFile || f.Path != "/var/log/vmgate/records.jsonl" || f.TLS != nil || f.MaxBacklog != DefaultMaxBacklog {
		t.Errorf("jsonfile sink: %+v", f)
	}
}

func TestTraceDefaults(t *testing.T) {
	c, err := Parse([]byte("trace: {sinks: [{name: s, type: syslog, address: '[2001:db8::1]:6514'}, {name: p, type: syslog, address: '10.0.0.1:514', tls: false}]}"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Trace.Retention != DefaultRetention {
		t.Errorf("retention = %v", c.Trace.Retention)
	}
	s, p := c.Trace.Sinks[0], c.Trace.Sinks[1]
	if !s.UseTLS() || s.ServerName != "2001:db8::1" || s.AppName != DefaultAppName || s.MaxBacklog != DefaultMaxBacklog {
		t.Errorf("defaults: %+v", s)
	}
	if p.UseTLS() || p.ServerName != "" {
		t.Errorf("plain TCP sink: tls %v server_name %q", p.UseTLS(), p.ServerName)
	}
	if got := strings.Join(ScalarKeys(), ","); !strings.Contains(got, "trace.retention") || strings.Contains(got, "trace.sinks") {
		t.Errorf("ScalarKeys() = %s", got)
	}
}

func TestTraceRefusesWithKeyName(t *testing.T) {
	sink := func(s string) string { return "trace: {sinks: [" + s + "]}" }
	for in, want := range map[string]string{
		"trace: {retention: 12h}":                       "trace.retention",
		"trace: {retention: forever}":                   "forever",
		"trace: {keep: 1}":                              "keep",
		sink("{name: S, type: syslog, address: 'a:1'}"): "name",
		sink("{name: s, type: syslog, address: 'a:1'}, {name: s, type: jsonfile, path: /x}"): "twice",
		sink("{name: s, type: kafka}"):                                                   "type",
		sink("{name: s, type: syslog}"):                                                  "address",
		sink("{name: s, type: syslog, address: siem.example.org}"):                       "address",
		sink("{name: s, type: syslog, address: 'siem:0'}"):                               "address",
		sink("{name: s, type: syslog, address: 'https://siem:6514'}"):                    "address",
		sink("{name: s, type: syslog, address: 'a:1', ca_file: ca.pem}"):                 "ca_file",
		sink("{name: s, type: syslog, address: 'a:1', cert_file: /c.pem}"):               "key_file",
		sink("{name: s, type: syslog, address: 'a:1', tls: false, ca_file: /ca.pem}"):    "ca_file",
		sink("{name: s, type: syslog, address: 'a:1', app_name: 'vm gate'}"):             "app_name",
		sink("{name: s, type: syslog, address: 'a:1', path: /x}"):                        "path",
		sink("{name: s, type: syslog, address: 'a:1', max_backlog: -1}"):                 "max_backlog",
		sink("{name: s, type: syslog, address: 'a:1', port: 6514}"):                      "port",
		sink("{name: f, type: jsonfile}"):                                                "path",
		sink("{name: f, type: jsonfile, path: records.jsonl}"):                           "path",
		sink("{name: f, type: jsonfile, path: /x, tls: true}"):                           "tls",
		sink("{name: f, type: jsonfile, path: /x, address: 'a:1'}"):                      "address",
		sink("{name: f, type: jsonfile, path: /x}, {name: g, type: jsonfile, path: /x}"): "path",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want it to name %s", in, err, want)
		}
	}
}

func TestServe(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Serve.Listen != DefaultListen || DefaultListen != "127.0.0.1:9477" {
		t.Errorf("serve.listen default = %q", c.Serve.Listen)
	}
	for _, ok := range []string{"0.0.0.0:9477", ":9477", "[::1]:9477", "localhost:0"} {
		if _, err := Parse([]byte("serve: {listen: '" + ok + "'}")); err != nil {
			t.Errorf("serve.listen %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"9477", "host", "host:port", "a:99999", "u@h:1"} {
		_, err := Parse([]byte("serve: {listen: '" + bad + "'}"))
		if err == nil || !strings.Contains(err.Error(), "serve.listen") {
			t.Errorf("serve.listen %q: %v, want an error naming the key", bad, err)
		}
	}
	if got := strings.Join(ScalarKeys(), ","); !strings.Contains(got, "serve.listen") {
		t.Errorf("ScalarKeys() = %s: VMGATE_SERVE_LISTEN would not override", got)
	}
}

func TestSubscriptionX509(t *testing.T) {
	const ok = `subscriptions:
  - name: fedcloud
    url: https://vmcaster.appdb.egi.eu/store/vo/fedcloud.egi.eu/image.list
    token: s3cret
    x509: {ca_dir: /etc/grid-security/certificates, dn: "/DC=EU/DC=EGI/C=GR/O=Robots/O=Greek Research and Technology Network/CN=Robot:argo-egi@grnet.gr", ca: "/DC=EU/DC=EGI/C=GR/O=Greek Research and Technology Network/CN=GRNET CA"}
`
	c, err := Parse([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Subscriptions[0]
	if s.X509 == nil || s.X509.CADir != "/etc/grid-security/certificates" || !strings.HasPrefix(s.X509.DN, "/DC=EU/DC=EGI/") || !strings.HasSuffix(s.X509.CA, "/CN=GRNET CA") {
		t.Fatalf("x509: %+v", s.X509)
	}
	if s.SignatureURL != "" || s.BundleURL != "" {
		t.Fatalf("an x509 subscription got a signature URL: %q %q", s.SignatureURL, s.BundleURL)
	}
	const x509 = `x509: {ca_dir: /etc/grid-security/certificates, dn: /DC=org/CN=h, ca: /DC=org/CN=CA}`
	for name, c := range map[string]struct{ yaml, want string }{
		"both":          {"subscriptions: [{name: a, url: 'https://a/b', cosign_keys: [/k], " + x509 + "}]", "one or the other"},
		"signature_url": {"subscriptions: [{name: a, url: 'https://a/b', signature_url: 'https://a/b.sig', " + x509 + "}]", "signature_url and bundle_url do not apply"},
		"bundle_url":    {"subscriptions: [{name: a, url: 'https://a/b', bundle_url: 'https://a/b.bundle', " + x509 + "}]", "do not apply with x509"},
		"relative dir":  {"subscriptions: [{name: a, url: 'https://a/b', x509: {ca_dir: certs, dn: /DC=org/CN=h, ca: /DC=org/CN=CA}}]", "x509.ca_dir"},
		"no dn":         {"subscriptions: [{name: a, url: 'https://a/b', x509: {ca_dir: /c, ca: /DC=org/CN=CA}}]", "x509.dn"},
		"rfc4514 ca":    {"subscriptions: [{name: a, url: 'https://a/b', x509: {ca_dir: /c, dn: /DC=org/CN=h, ca: 'CN=CA,DC=org'}}]", "x509.ca"},
		"unknown key":   {"subscriptions: [{name: a, url: 'https://a/b', x509: {ca_dir: /c, dn: /DC=org/CN=h, ca: /DC=org/CN=CA, crl_dir: /c}}]", "crl_dir"},
		"neither":       {"subscriptions: [{name: a, url: 'https://a/b'}]", "or x509"},
	} {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error containing %q, got %v", name, c.want, err)
		}
	}
}

func TestOpenStack(t *testing.T) {
	c, err := Parse([]byte("openstack:\n  cloud: site-admin\n  deactivate_revoked: true\n  trusted_projects: [0a1b2c]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if o := c.OpenStack; o.Cloud != "site-admin" || !o.DeactivateRevoked || len(o.TrustedProjects) != 1 {
		t.Fatalf("openstack = %+v", o)
	}
	if _, err := Parse([]byte("openstack:\n  deactivate_revoked: true\n")); err == nil || !strings.Contains(err.Error(), "openstack.cloud") {
		t.Fatalf("deactivate_revoked without a cloud: %v", err)
	}
	if _, err := Parse([]byte("openstack:\n  clouds: x\n")); err == nil || !strings.Contains(err.Error(), "clouds") {
		t.Fatalf("unknown key: %v", err)
	}
}
