package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Tricky writes testdata/tricky.yaml into a temporary directory, with @DIR@ that directory,
// and returns the file's path. cmd/vmgate's tests read the same file through the vmgate
// command's loader and vmgate serve.
func tricky(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/tricky.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "vmgate.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(data), "@DIR@", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTrickyValuesAsWritten pins what the one decoder makes of each tricky value: text keys
// keep the text as written (no octal, no float, no date, no boolean), typed keys take YAML's
// reading of it.
func TestTrickyValuesAsWritten(t *testing.T) {
	path := tricky(t)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	s0, s1 := c.Subscriptions[0], c.Subscriptions[1]
	for _, g := range []struct{ what, got, want string }{
		{"subscriptions[0].name", s0.Name, "0123"},
		{"subscriptions[0].token", s0.Token, "0123"},
		{"subscriptions[0].identifier", s0.Identifier, "2024-01-02"},
		{"subscriptions[1].name", s1.Name, "yes"},
		{"subscriptions[1].token", s1.Token, "1e3"},
		{"subscriptions[1].identifier", s1.Identifier, "12345678901234567890123456789012"},
		{"admission.mode", c.Admission.Mode, "warn"},
		{"openstack.cloud", c.OpenStack.Cloud, "0123"},
		{"serve.audit_action", c.Serve.AuditAction, "off"},
		{"trace.sinks[0].name", c.Trace.Sinks[0].Name, "0123"},
		{"blocks[0].project", c.Blocks[0].Project, "0123"},
		{"blocks[0].reason", c.Blocks[0].Reason, "no"},
		{"blocks[1].user", c.Blocks[1].User, "12345678901234567890123456789012"},
		{"blocks[1].reason", c.Blocks[1].Reason, "2024-01-02"},
		{"state_dir", c.StateDir, dir + "/state"},
	} {
		if g.got != g.want {
			t.Errorf("%s = %q, want %q", g.what, g.got, g.want)
		}
	}
	for _, g := range []struct {
		what      string
		got, want []string
	}{
		{"admission.exempt_projects", c.Admission.ExemptProjects, []string{"12345678901234567890123456789012", "0123",
			"00000000000000000000000000000001", "1.50", ".inf", "-.Inf", ".NaN", "2024-01-02", "2001-12-14t21:59:43.10-05:00",
			"no", "0123", "1e3", "0b101", "0o17", "1_000", "+12", "12:30:00"}}, // ~ and null: no entry
		{"admission.exempt_disks", c.Admission.ExemptDisks, []string{"*.iso", "0777"}},
		{"admission.exempt_domains", c.Admission.ExemptDomains, []string{"on", "off", "~", "Yes", "NO", "y"}},
		{"openstack.trusted_projects", c.OpenStack.TrustedProjects, []string{"0123", "1e3", "123456789012345678901234567890123456789"}},
		{"image_dirs", c.ImageDirs, []string{dir + "/images", dir + "/0123", dir + "/2024-01-02"}},
	} {
		if !slices.Equal(g.got, g.want) {
			t.Errorf("%s = %q\nwant %q", g.what, g.got, g.want)
		}
	}
	if !c.Admission.AllowBootFromVolume || !c.OpenStack.DeactivateRevoked {
		t.Errorf("yes/on: allow_boot_from_volume %v, deactivate_revoked %v", c.Admission.AllowBootFromVolume, c.OpenStack.DeactivateRevoked)
	}
	if s0.MaxSize != 16 || c.Serve.AuditMax != 8 || c.Trace.Sinks[0].MaxBacklog != 83 {
		t.Errorf("integers (0x10, 010, 0123 as YAML reads them): max_size %d, audit_max %d, max_backlog %d", s0.MaxSize, c.Serve.AuditMax, c.Trace.Sinks[0].MaxBacklog)
	}
	if c.ClockSkew != 90*time.Second || s0.Refresh != 90*time.Minute || s1.MaxAge != 90*time.Minute || s1.Timeout != 17*time.Second {
		t.Errorf("durations: clock_skew %v, refresh %v, max_age %v, timeout %v", c.ClockSkew, s0.Refresh, s1.MaxAge, s1.Timeout)
	}
	if want := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC); !c.Blocks[0].Until.Equal(want) {
		t.Errorf("blocks[0].until = %v", c.Blocks[0].Until)
	}
}

// sameConfig compares two configurations by their JSON form, which sees every field and
// compares times by instant and zone offset rather than by *time.Location pointer.
func sameConfig(t *testing.T, what string, got, want *Config) {
	t.Helper()
	g, err1 := json.Marshal(got)
	w, err2 := json.Marshal(want)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if string(g) != string(w) {
		t.Errorf("%s differs:\n got %s\nwant %s", what, g, w)
	}
}

// setKey writes text at a dotted key of a YAML document, as a person would type it without
// quotes (the encoder quotes it only where YAML would otherwise not read it as one scalar).
func setKey(t *testing.T, data []byte, key, text string) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	m := doc.Content[0]
	parts := strings.Split(key, ".")
	for i, p := range parts {
		var v *yaml.Node
		for j := 0; j+1 < len(m.Content); j += 2 {
			if m.Content[j].Value == p {
				v = m.Content[j+1]
			}
		}
		if v == nil {
			v = &yaml.Node{Kind: yaml.MappingNode}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: p}, v)
		}
		if i == len(parts)-1 {
			*v = yaml.Node{Kind: yaml.ScalarNode, Value: text}
		}
		m = v
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOverrideIsTypedAsTheFile: an override gives the value that the same text written at
// its key in the file gives, whatever the text looks like.
func TestOverrideIsTypedAsTheFile(t *testing.T) {
	path := tricky(t)
	base, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Override{
		{Key: "openstack.cloud", Value: "0123"},
		{Key: "openstack.cloud", Value: "12345678901234567890123456789012"},
		{Key: "openstack.cloud", Value: "1e3"},
		{Key: "openstack.cloud", Value: "2024-01-02"},
		{Key: "openstack.cloud", Value: "yes"},
		{Key: "openstack.cloud", Value: "1.50"},
		{Key: "openstack.deactivate_revoked", Value: "off"},
		{Key: "admission.allow_boot_from_volume", Value: "no"},
		{Key: "admission.allow_boot_from_volume", Value: "ON"},
		{Key: "admission.allow_boot_from_volume", Value: "true"},
		{Key: "admission.mode", Value: "enforce"},
		{Key: "serve.audit_max", Value: "010"},
		{Key: "serve.audit_max", Value: "0x10"},
		{Key: "serve.audit_max", Value: "1_000"},
		{Key: "serve.audit_interval", Value: "90s"},
		{Key: "serve.audit_connect", Value: "qemu+ssh://root@h/system?keyfile=/k#x"},
		{Key: "serve.listen", Value: "[::1]:9477"},
		{Key: "clock_skew", Value: "~"},
		{Key: "clock_skew", Value: "null"},
		{Key: "trace.retention", Value: "4320h"},
		{Key: "state_dir", Value: "/srv/vmgate: 0123"},
	} {
		o.From = EnvName(o.Key)
		got, err := ParseWith(base, []Override{o})
		if err != nil {
			t.Errorf("%s=%s: %v", o.From, o.Value, err)
			continue
		}
		file := setKey(t, base, o.Key, o.Value)
		want, err := Parse(file)
		if err != nil {
			t.Fatalf("%s: %s in the file: %v\n%s", o.From, o.Value, err, file)
		}
		sameConfig(t, o.From+"="+o.Value, got, want)
	}
}

func TestOverrideRefusesWithTheVariable(t *testing.T) {
	base, err := os.ReadFile(tricky(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ key, text, want string }{
		{"clock_skew", "soon", "VMGATE_CLOCK_SKEW: cannot unmarshal !!str `soon` into time.Duration"},
		{"serve.audit_max", "ten", "VMGATE_SERVE_AUDIT_MAX: cannot unmarshal !!str `ten` into int"},
		{"admission.allow_boot_from_volume", "maybe", "VMGATE_ADMISSION_ALLOW_BOOT_FROM_VOLUME: cannot unmarshal !!str `maybe` into bool"},
		{"admission.mode", "audit", `admission.mode "audit": want enforce or warn (with VMGATE_ADMISSION_MODE from the environment)`},
	} {
		_, err := ParseWith(base, []Override{{Key: c.key, From: EnvName(c.key), Value: c.text}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%s: err %v, want it to contain %q", EnvName(c.key), c.text, err, c.want)
		}
	}
	// The file must hold on its own, since the hook reads it alone: an override does not
	// mend it.
	if _, err := ParseWith([]byte("admission: {mode: 1s, keep: 1}"), []Override{{Key: "admission.mode", From: "VMGATE_ADMISSION_MODE", Value: "warn"}}); err == nil || !strings.Contains(err.Error(), "keep") {
		t.Errorf("a file with an unknown key, mended by an override: %v", err)
	}
}

// TestEveryScalarKeyCanBeOverridden guards keys added later: each has one variable of its
// own, and an override reaches it.
func TestEveryScalarKeyCanBeOverridden(t *testing.T) {
	seen := map[string]string{}
	for _, key := range ScalarKeys() {
		env := EnvName(key)
		if other, ok := seen[env]; ok {
			t.Errorf("%s and %s are both overridden by %s", key, other, env)
		}
		seen[env] = key
		// ~ leaves the key to its default, which every key has.
		if _, err := ParseWith(nil, []Override{{Key: key, From: env, Value: "~"}}); err != nil {
			t.Errorf("%s=~: %v", env, err)
		}
	}
	for _, key := range []string{"state_dir", "admission.mode", "admission.allow_boot_from_volume", "serve.audit_max", "openstack.cloud", "trace.retention"} {
		if seen[EnvName(key)] != key {
			t.Errorf("ScalarKeys() lacks %s", key)
		}
	}
	for _, key := range []string{"subscriptions", "trace.sinks", "blocks", "admission.exempt_projects", "image_dirs"} {
		if _, ok := seen[EnvName(key)]; ok {
			t.Errorf("ScalarKeys() has the list %s", key)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"VMGATE_ADMISSION_MODE":  "warn",
		"VMGATE_STATE_DIR":       "", // empty: overrides nothing
		"VMGATE_CONFIG":          "/etc/other.yaml",
		"VMGATE_SUBSCRIPTIONS":   "x", // a list: not a scalar key
		"VMGATE_INTEGRATION":     "1",
		"VMGATE_OPENSTACK_CLOUD": "0123",
	}
	got := EnvOverrides(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	want := []Override{
		{Key: "admission.mode", From: "VMGATE_ADMISSION_MODE", Value: "warn"},
		{Key: "openstack.cloud", From: "VMGATE_OPENSTACK_CLOUD", Value: "0123"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EnvOverrides = %+v\nwant %+v", got, want)
	}
}

func TestFilePath(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == EnvConfig {
				return v
			}
			return ""
		}
	}
	for _, c := range []struct{ flag, env, want string }{
		{"/a.yaml", "/b.yaml", "/a.yaml"},
		{"", "/b.yaml", "/b.yaml"},
		{"", "", DefaultPath},
	} {
		if got := FilePath(c.flag, env(c.env)); got != c.want {
			t.Errorf("FilePath(%q) with VMGATE_CONFIG=%q = %q, want %q", c.flag, c.env, got, c.want)
		}
	}
}

func TestParseRefusesASecondDocument(t *testing.T) {
	if _, err := Parse([]byte("state_dir: /a\n---\nstate_dir: /b\n")); err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Errorf("two documents: %v", err)
	}
	for _, ok := range []string{"", "# only a comment\n", "---\nstate_dir: /a\n", "state_dir: /a\n...\n"} {
		if _, err := Parse([]byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestOverrideInAnOptionalSection: a key under a pointer to a struct (an optional section)
// makes the section only when it sets something.
func TestOverrideInAnOptionalSection(t *testing.T) {
	type section struct {
		Name string `yaml:"name"`
		On   bool   `yaml:"on"`
	}
	var x struct {
		Sec *section `yaml:"sec"`
	}
	set := func(key, text string) {
		t.Helper()
		d := decodeScalar(reflect.ValueOf(&x).Elem(), key)
		if d == nil {
			t.Fatalf("%s: not found", key)
		}
		n := yaml.Node{Kind: yaml.ScalarNode, Value: text}
		if err := n.Decode(d.target.Interface()); err != nil {
			t.Fatal(err)
		}
		d.set()
	}
	set("sec.name", "~")
	if x.Sec != nil {
		t.Fatalf("~ made the section: %+v", x.Sec)
	}
	set("sec.name", "0123")
	set("sec.on", "yes")
	if x.Sec == nil || x.Sec.Name != "0123" || !x.Sec.On {
		t.Fatalf("section %+v", x.Sec)
	}
	if decodeScalar(reflect.ValueOf(&x).Elem(), "sec.nope") != nil || decodeScalar(reflect.ValueOf(&x).Elem(), "nope") != nil {
		t.Error("an unknown key was found")
	}
}
