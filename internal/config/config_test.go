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
