package config

import (
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
	for in, want := range map[string]string{
		"admission: {mode: audit}":           "admission.mode",
		"admission: {exempt_domains: ['[']}": "admission.exempt_domains",
		"image_dirs: [images]":               "image_dirs",
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
