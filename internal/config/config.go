// Package config defines vmgate's configuration file, its defaults and its validation.
//
// There is one decoder (strict YAML, unknown keys rejected) shared by the hook, every vmgate
// command and vmgate serve's reload, so they can never read the same file differently. The
// vmgate command applies VMGATE_<KEY> overrides (EnvOverrides) on top, each typed by its
// field as the file's text would be; the hook reads the file only, because libvirt runs
// hooks with an almost empty environment.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where the hook and the vmgate command look when neither --config nor
// VMGATE_CONFIG names a file.
const DefaultPath = "/etc/vmgate/vmgate.yaml"

// Defaults that the issue contract and DESIGN.md fix.
const (
	DefaultStateDir  = "/var/lib/vmgate"
	DefaultMaxAge    = 720 * time.Hour
	DefaultRefresh   = time.Hour
	DefaultMaxSize   = 64 << 20 // bytes fetched for one list, signature or bundle
	DefaultClockSkew = 5 * time.Minute
	DefaultTimeout   = 60 * time.Second

	// DefaultRetention is how long trace records are kept: the 180 days the EGI
	// traceability policy asks for.
	DefaultRetention = 180 * 24 * time.Hour
	// MinRetention keeps a typo ("24m") from pruning records within the hour.
	MinRetention = 24 * time.Hour
	// DefaultAppName is the RFC 5424 APP-NAME of shipped records.
	DefaultAppName = "vmgate"
	// DefaultMaxBacklog is how many records a sink may leave unacknowledged before vmgate
	// reports it unhealthy.
	DefaultMaxBacklog = 100000
	// DefaultListen is where vmgate serve answers /healthz and /metrics: this host only,
	// since the metrics name images and sinks.
	DefaultListen = "127.0.0.1:9477"
)

// Config is the whole configuration file.
type Config struct {
	// StateDir holds everything vmgate keeps on this node.
	StateDir string `yaml:"state_dir"`
	// ClockSkew is how far in the future a list's dc:date:created may lie before the list
	// is refused.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// Subscriptions are the endorsers' image lists this site trusts.
	Subscriptions []Subscription `yaml:"subscriptions"`
	// ImageDirs hold base images of plain-libvirt VMs; vmgate sync hashes what is new in them
	// so that the hook finds the hash cached at a VM's first start.
	ImageDirs []string `yaml:"image_dirs"`
	// Admission is how the hook decides.
	Admission Admission `yaml:"admission"`
	// Trace is how long traceability records are kept and where they are shipped.
	Trace Trace `yaml:"trace"`
	// Serve configures the daemon, vmgate serve.
	Serve Serve `yaml:"serve"`
	// OpenStack connects vmgate sync to the cloud's Glance, so that the hook can judge
	// Nova instances by their Glance image id.
	OpenStack OpenStack `yaml:"openstack"`
	// Blocks are the site's own blocks, for sites that manage their configuration with
	// Puppet or Ansible; `vmgate block` adds others. They take effect at the next sync.
	Blocks []Block `yaml:"blocks"`
}

// Block is one block declared in the configuration: exactly one of Image, User and Project.
type Block struct {
	// Image is a sha512, an image's dc:identifier or a Glance image id.
	Image   string    `yaml:"image"`
	User    string    `yaml:"user"`    // a Keystone user id
	Project string    `yaml:"project"` // a Keystone project id
	Reason  string    `yaml:"reason"`
	Until   time.Time `yaml:"until"` // optional: when the block lifts itself
}

// Target returns what the block names: its kind (image, user or project) and id.
func (b *Block) Target() (kind, id string) {
	switch {
	case b.Image != "":
		return "image", b.Image
	case b.User != "":
		return "user", b.User
	}
	return "project", b.Project
}

func validateBlocks(blocks []Block) error {
	for i, b := range blocks {
		n := 0
		for _, v := range []string{b.Image, b.User, b.Project} {
			if strings.TrimSpace(v) != "" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("config: blocks[%d]: set exactly one of image, user and project", i)
		}
		if strings.TrimSpace(b.Reason) == "" {
			return fmt.Errorf("config: blocks[%d]: reason is required: the history keeps why", i)
		}
	}
	return nil
}

// OpenStack configures the cloud side of vmgate sync (and the default of terminate
// --cloud).
type OpenStack struct {
	// Cloud names the cloud in clouds.yaml. When set, every sync lists Glance and maps each
	// image id whose sha512 a list names; --cloud on the command line overrides it.
	Cloud string `yaml:"cloud"`
	// DeactivateRevoked deactivates in Glance the images whose sha512 a list revoked, and
	// reactivates those vmgate deactivated when a list endorses them again.
	DeactivateRevoked bool `yaml:"deactivate_revoked"`
	// TrustedProjects are the projects (ids) of the image-sync tool (atrope, cloudkeeper),
	// whose hash properties are believed for images whose sha512 Glance did not compute.
	TrustedProjects []string `yaml:"trusted_projects"`
	// AllowImageBlockDeviceMapping maps images whose properties give Nova block device
	// mappings (block_device_mapping, bdm_v2), which make an instance boot from something
	// other than the image's bytes. Off, such an image is not mapped to its endorsement.
	AllowImageBlockDeviceMapping bool `yaml:"allow_image_block_device_mapping"`
}

// Sink types.
const (
	SinkSyslog   = "syslog"   // RFC 5424 over TCP, octet-counting framing; TLS (RFC 5425) by default
	SinkJSONFile = "jsonfile" // ECS JSON lines appended to a file, for Filebeat, Fluent Bit or Vector
)

// Trace configures the traceability records: retention and shipping.
type Trace struct {
	// Retention is how long records are kept; a record past it is pruned only once every
	// sink has acknowledged it.
	Retention time.Duration `yaml:"retention"`
	// Sinks receive every record, at least once, each with its own cursor.
	Sinks []Sink `yaml:"sinks"`
}

// Sink is one destination of the trace records. Which keys apply depends on Type; a key set
// for the other type is refused, so that a typo cannot leave, say, TLS silently unused.
type Sink struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`

	// syslog
	Address string `yaml:"address"` // host:port
	// TLS is RFC 5425 (true, the default when unset) or plain TCP with RFC 6587 octet
	// counting (false). After Parse it is never nil; use UseTLS.
	TLS *bool `yaml:"tls"`
	// CAFile, when set, is the only trust for the server certificate (the SIEM's CA);
	// otherwise the system CAs are used.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are an optional client certificate, both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is checked against the server certificate; default the host of Address.
	ServerName string `yaml:"server_name"`
	AppName    string `yaml:"app_name"`
	// MaxBacklog is how many records may wait for this sink before vmgate reports it
	// unhealthy.
	MaxBacklog int64 `yaml:"max_backlog"`

	// jsonfile
	Path string `yaml:"path"`
}

// UseTLS reports whether a syslog sink speaks TLS.
func (s *Sink) UseTLS() bool { return s.TLS == nil || *s.TLS }

// Admission modes.
const (
	ModeEnforce = "enforce" // refuse what is not endorsed
	ModeWarn    = "warn"    // allow, but record what would have been refused
)

// Values of admission.incoming_migration.
const (
	MigrationJudge  = "judge"  // judge the base images; the VM's state comes from the source
	MigrationRefuse = "refuse" // refuse every incoming migration
)

// Admission configures the hook's decision. Every exemption is recorded each time it is used.
type Admission struct {
	Mode string `yaml:"mode"`
	// AllowBootFromVolume admits Nova instances whose root disk is a Cinder volume, whose
	// content no image list can vouch for.
	AllowBootFromVolume bool `yaml:"allow_boot_from_volume"`
	// ExemptDisks are glob patterns (path.Match) on disk source files that need no
	// endorsement. They exempt only read-only CD-ROM and floppy media that the firmware
	// cannot boot, and never count as the endorsed disk; what lies below such a file in a
	// backing chain is judged as usual. A pattern without a slash matches the file name
	// ("*.iso"), one with a slash the whole path.
	ExemptDisks []string `yaml:"exempt_disks"`
	// IncomingMigration is what the hook does when a domain migrates in (migrate begin on
	// this host): "judge" (the default) judges its base images as at a start and takes its
	// overlays' data and its memory as the VM's state on the source host; "refuse" refuses
	// every incoming migration.
	IncomingMigration string `yaml:"incoming_migration"`
	// ExemptDomains are glob patterns on domain names that are admitted without a check.
	ExemptDomains []string `yaml:"exempt_domains"`
	// ExemptProjects are Keystone project ids whose instances are admitted without a check.
	ExemptProjects []string `yaml:"exempt_projects"`
	// FirmwareDirs are the directories from which a domain may load firmware, NVRAM
	// templates, ROM files, ACPI tables, device trees and fw_cfg blobs: the guest runs
	// them, and no image list vouches for them. Absent: DefaultFirmwareDirs().
	FirmwareDirs []string `yaml:"firmware_dirs"`
	// Emulators are glob patterns (path.Match) on the path, symbolic links resolved, of the
	// programs a domain's <emulator> may run as QEMU. Absent: DefaultEmulators().
	Emulators []string `yaml:"emulators"`
	// NovaInstancesPath is nova-compute's [DEFAULT] instances_path: instance disks are
	// <path>/<uuid>/disk*, the hypervisor's copies of Glance images <path>/_base/<sha1>.
	NovaInstancesPath string `yaml:"nova_instances_path"`
	// NovaVolumesPath is where nova-compute mounts file-based Cinder volumes (NFS, ...):
	// its [libvirt] nfs_mount_point_base and the like, $state_path/mnt by default.
	NovaVolumesPath string `yaml:"nova_volumes_path"`
}

// DefaultFirmwareDirs are where Debian's and RHEL's packages put firmware and ROMs: OVMF
// and AAVMF (edk2), SeaBIOS, iPXE and QEMU's own data directory.
func DefaultFirmwareDirs() []string {
	return []string{
		"/usr/share/qemu",             // QEMU's data (Debian, Fedora): vgabios, links to the others
		"/usr/share/qemu-kvm",         // RHEL's QEMU data directory
		"/usr/share/OVMF",             // edk2 for x86 (Debian: ovmf; RHEL: links into edk2/ovmf)
		"/usr/share/ovmf",             // Debian's ovmf: OVMF.fd
		"/usr/share/edk2",             // RHEL and Fedora's edk2-ovmf, edk2-aarch64
		"/usr/share/AAVMF",            // edk2 for Arm (Debian: qemu-efi-aarch64, qemu-efi-arm; RHEL)
		"/usr/share/qemu-efi-aarch64", // Debian's qemu-efi-aarch64: QEMU_EFI.fd
		"/usr/share/seabios",          // SeaBIOS (Debian: seabios; RHEL: seabios-bin)
		"/usr/share/seavgabios",       // RHEL's seavgabios-bin
		"/usr/lib/ipxe",               // Debian's ipxe-qemu: NIC option ROMs
		"/usr/share/ipxe",             // RHEL's ipxe-roms-qemu
	}
}

// DefaultEmulators are the QEMU binaries Debian's and RHEL's packages install.
func DefaultEmulators() []string {
	return []string{
		"/usr/bin/qemu-system-*", // Debian, Fedora
		"/usr/bin/kvm",           // Debian's wrapper
		"/usr/libexec/qemu-kvm",  // RHEL (/usr/bin/qemu-kvm links to it)
	}
}

// Defaults of the Nova paths, Nova's own.
const (
	DefaultNovaInstancesPath = "/var/lib/nova/instances"
	DefaultNovaVolumesPath   = "/var/lib/nova/mnt"
)

// Subscription is one endorser's signed image list.
type Subscription struct {
	Name         string        `yaml:"name"`
	URL          string        `yaml:"url"`
	Identifier   string        `yaml:"identifier"`
	CosignKeys   []string      `yaml:"cosign_keys"`
	SignatureURL string        `yaml:"signature_url"`
	BundleURL    string        `yaml:"bundle_url"`
	MaxAge       time.Duration `yaml:"max_age"`
	Refresh      time.Duration `yaml:"refresh"`
	Token        string        `yaml:"token"`
	// CAFile adds a PEM bundle to the system CAs for this subscription's HTTPS fetches.
	CAFile string `yaml:"ca_file"`
	// MaxSize caps the bytes fetched for the list and for its signature or bundle.
	MaxSize int64 `yaml:"max_size"`
	// Timeout bounds one HTTP request.
	Timeout time.Duration `yaml:"timeout"`
	// X509 is the trust of an S/MIME signed list (EGI AppDB, vmcaster), in place of
	// CosignKeys: exactly one of the two is set.
	X509 *X509Trust `yaml:"x509"`
}

// X509Trust pins the endorser of an S/MIME signed list: the IGTF CA directory its chain must
// end in, and its certificate's subject and issuer in OpenSSL's one-line form, which must
// also be the list's hv:dn and hv:ca.
type X509Trust struct {
	CADir string `yaml:"ca_dir"` // /etc/grid-security/certificates: <hash>.0 CAs, <hash>.r0 CRLs
	DN    string `yaml:"dn"`     // "/DC=…/CN=host": the signer's subject
	CA    string `yaml:"ca"`     // "/DC=…/CN=CA": the signer's issuer
}

// Paths are the files under StateDir; every component reaches them through here so that
// tests can point a whole vmgate at a temporary directory.
type Paths struct{ Root string }

// PolicyDir holds the accepted lists, the state and the history.
func (p Paths) PolicyDir() string { return filepath.Join(p.Root, "policy") }

// Snapshot is the compiled file the hook reads.
func (p Paths) Snapshot() string { return filepath.Join(p.Root, "snapshot.db") }

// Blocks is the site's own blocks (`vmgate block`): site state, kept apart from the policy
// state that a sync can rebuild.
func (p Paths) Blocks() string { return filepath.Join(p.Root, "blocks.json") }

// Paths returns the state directory layout.
func (c *Config) Paths() Paths { return Paths{Root: c.StateDir} }

var nameRE = regexp.MustCompile(`^[a-z0-9-]+$`)

// Parse decodes a configuration file, fills defaults and validates it. Errors name the key.
func Parse(data []byte) (*Config, error) { return ParseWith(data, nil) }

// ParseWith is Parse with overrides applied on top of the file, before defaults and
// validation. The file is decoded strictly first, on its own, so that what the hook (which
// reads the file only) would refuse is refused here too, with the file's line numbers.
func ParseWith(data []byte, overrides []Override) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) { // an empty file means all defaults
		return nil, fmt.Errorf("config: %w", err)
	}
	// A second document would be read by nobody: say so rather than ignore it.
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, errors.New("config: the file holds more than one YAML document (a second ---); keep one")
	}
	for _, o := range overrides {
		if err := c.apply(o); err != nil {
			return nil, err
		}
	}
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		if len(overrides) > 0 {
			from := make([]string, len(overrides))
			for i, o := range overrides {
				from[i] = o.From
			}
			return nil, fmt.Errorf("%w (with %s from the environment)", err, strings.Join(from, ", "))
		}
		return nil, err
	}
	return &c, nil
}

// Load reads and parses the file at path, as the hook does.
func Load(path string) (*Config, error) { return LoadWith(path, nil) }

// LoadWith reads and parses the file at path with overrides on top, as the vmgate command
// does with EnvOverrides: the same decoder, so the file's values are the hook's values.
func LoadWith(path string, overrides []Override) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := ParseWith(data, overrides)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Config) fillDefaults() {
	if c.Admission.Mode == "" {
		c.Admission.Mode = ModeEnforce
	}
	if c.Admission.IncomingMigration == "" {
		c.Admission.IncomingMigration = MigrationJudge
	}
	// An explicit empty list is kept: it allows none.
	if c.Admission.FirmwareDirs == nil {
		c.Admission.FirmwareDirs = DefaultFirmwareDirs()
	}
	if c.Admission.Emulators == nil {
		c.Admission.Emulators = DefaultEmulators()
	}
	if c.Admission.NovaInstancesPath == "" {
		c.Admission.NovaInstancesPath = DefaultNovaInstancesPath
	}
	if c.Admission.NovaVolumesPath == "" {
		c.Admission.NovaVolumesPath = DefaultNovaVolumesPath
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	c.Trace.fillDefaults()
	if c.Serve.Listen == "" {
		c.Serve.Listen = DefaultListen
	}
	c.Serve.fillDefaults()
	for i := range c.Subscriptions {
		s := &c.Subscriptions[i]
		if s.MaxAge == 0 {
			s.MaxAge = DefaultMaxAge
		}
		if s.Refresh == 0 {
			s.Refresh = DefaultRefresh
		}
		if s.MaxSize == 0 {
			s.MaxSize = DefaultMaxSize
		}
		if s.Timeout == 0 {
			s.Timeout = DefaultTimeout
		}
		if s.SignatureURL == "" && s.BundleURL == "" && s.X509 == nil { // S/MIME carries its signature inside
			s.SignatureURL = s.URL + ".sig"
		}
	}
}

// Validate checks every key and names the offending one.
func (c *Config) Validate() error {
	if !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("config: state_dir %q must be an absolute path", c.StateDir)
	}
	if c.ClockSkew < 0 {
		return fmt.Errorf("config: clock_skew must not be negative")
	}
	if err := c.Admission.validate(); err != nil {
		return err
	}
	if err := c.Serve.validate(); err != nil {
		return err
	}
	if c.OpenStack.DeactivateRevoked && c.OpenStack.Cloud == "" {
		return fmt.Errorf("config: openstack.deactivate_revoked needs openstack.cloud")
	}
	if err := c.Trace.validate(); err != nil {
		return err
	}
	if err := validateBlocks(c.Blocks); err != nil {
		return err
	}
	for _, d := range c.ImageDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("config: image_dirs: %q must be an absolute path", d)
		}
	}
	seen := map[string]bool{}
	for i, s := range c.Subscriptions {
		where, err := checkName("subscriptions", "subscription", i, s.Name, seen)
		if err != nil {
			return err
		}
		if err := checkURL(s.URL); err != nil {
			return fmt.Errorf("%s: url: %w", where, err)
		}
		for key, u := range map[string]string{"signature_url": s.SignatureURL, "bundle_url": s.BundleURL} {
			if u == "" {
				continue
			}
			if err := checkURL(u); err != nil {
				return fmt.Errorf("%s: %s: %w", where, key, err)
			}
		}
		if err := s.X509.validate(&s); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if len(s.CosignKeys) == 0 && s.X509 == nil {
			return fmt.Errorf("%s: cosign_keys: at least one endorser public key is required (or x509, for an S/MIME signed list)", where)
		}
		for _, k := range s.CosignKeys {
			if !filepath.IsAbs(k) {
				return fmt.Errorf("%s: cosign_keys: %q must be an absolute path", where, k)
			}
		}
		if s.MaxAge < 0 || s.Refresh < 0 || s.Timeout < 0 || s.MaxSize < 0 {
			return fmt.Errorf("%s: max_age, refresh, timeout and max_size must not be negative", where)
		}
		if s.CAFile != "" && !filepath.IsAbs(s.CAFile) {
			return fmt.Errorf("%s: ca_file %q must be an absolute path", where, s.CAFile)
		}
	}
	return nil
}

func (a *Admission) validate() error {
	if a.Mode != ModeEnforce && a.Mode != ModeWarn {
		return fmt.Errorf("config: admission.mode %q: want %s or %s", a.Mode, ModeEnforce, ModeWarn)
	}
	if a.IncomingMigration != MigrationJudge && a.IncomingMigration != MigrationRefuse {
		return fmt.Errorf("config: admission.incoming_migration %q: want %s or %s", a.IncomingMigration, MigrationJudge, MigrationRefuse)
	}
	for key, pats := range map[string][]string{"admission.exempt_disks": a.ExemptDisks, "admission.exempt_domains": a.ExemptDomains} {
		for _, p := range pats {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				return fmt.Errorf("config: %s: %q is not a valid glob pattern", key, p)
			}
		}
	}
	for _, d := range a.FirmwareDirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
			return fmt.Errorf("config: admission.firmware_dirs: %q must be a clean absolute path of a directory other than /", d)
		}
	}
	for _, p := range a.Emulators {
		if _, err := path.Match(p, ""); err != nil || !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("config: admission.emulators: %q must be a clean absolute path or glob pattern", p)
		}
	}
	for key, p := range map[string]string{"admission.nova_instances_path": a.NovaInstancesPath, "admission.nova_volumes_path": a.NovaVolumesPath} {
		if p != "" && (!path.IsAbs(p) || path.Clean(p) != p || p == "/") {
			return fmt.Errorf("config: %s: %q is not a clean absolute directory path", key, p)
		}
	}
	return nil
}

func (t *Trace) fillDefaults() {
	if t.Retention == 0 {
		t.Retention = DefaultRetention
	}
	for i := range t.Sinks {
		s := &t.Sinks[i]
		if s.MaxBacklog == 0 {
			s.MaxBacklog = DefaultMaxBacklog
		}
		if s.Type != SinkSyslog {
			continue // syslog keys stay unset elsewhere, so that validate can refuse them
		}
		if s.TLS == nil {
			on := true
			s.TLS = &on
		}
		if s.AppName == "" {
			s.AppName = DefaultAppName
		}
		if s.ServerName == "" && s.UseTLS() {
			if host, _, err := splitAddress(s.Address); err == nil {
				s.ServerName = host
			}
		}
	}
}

func (t *Trace) validate() error {
	if t.Retention < MinRetention {
		return fmt.Errorf("config: trace.retention %v: must be at least %v", t.Retention, MinRetention)
	}
	names := map[string]bool{}
	paths := map[string]string{}
	for i := range t.Sinks {
		s := &t.Sinks[i]
		where, err := checkName("trace.sinks", "trace sink", i, s.Name, names)
		if err != nil {
			return err
		}
		if s.MaxBacklog < 0 {
			return fmt.Errorf("%s: max_backlog must not be negative", where)
		}
		switch s.Type {
		case SinkSyslog:
			if err := s.validateSyslog(); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		case SinkJSONFile:
			if err := s.validateJSONFile(); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if other, ok := paths[s.Path]; ok {
				return fmt.Errorf("%s: path %s is also the path of sink %q", where, s.Path, other)
			}
			paths[s.Path] = s.Name
		default:
			return fmt.Errorf("%s: type %q: want %s or %s", where, s.Type, SinkSyslog, SinkJSONFile)
		}
	}
	return nil
}

func (s *Sink) validateSyslog() error {
	if s.Path != "" {
		return errors.New("path applies only to type jsonfile")
	}
	if s.Address == "" {
		return errors.New("address (host:port) is required")
	}
	if _, _, err := splitAddress(s.Address); err != nil {
		return fmt.Errorf("address %q: %w", s.Address, err)
	}
	// RFC 5424 APP-NAME: 1 to 48 printable US-ASCII characters, no space.
	if len(s.AppName) > 48 || strings.IndexFunc(s.AppName, func(r rune) bool { return r < '!' || r > '~' }) >= 0 {
		return fmt.Errorf("app_name %q: want 1 to 48 printable ASCII characters without spaces (RFC 5424 APP-NAME)", s.AppName)
	}
	if !s.UseTLS() {
		for key, v := range map[string]string{"ca_file": s.CAFile, "cert_file": s.CertFile, "key_file": s.KeyFile, "server_name": s.ServerName} {
			if v != "" {
				return fmt.Errorf("%s applies only with tls: true", key)
			}
		}
		return nil
	}
	for key, v := range map[string]string{"ca_file": s.CAFile, "cert_file": s.CertFile, "key_file": s.KeyFile} {
		if v != "" && !filepath.IsAbs(v) {
			return fmt.Errorf("%s %q must be an absolute path", key, v)
		}
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return errors.New("cert_file and key_file: give both or neither")
	}
	return nil
}

func (s *Sink) validateJSONFile() error {
	for key, set := range map[string]bool{
		"address": s.Address != "", "tls": s.TLS != nil, "ca_file": s.CAFile != "", "cert_file": s.CertFile != "",
		"key_file": s.KeyFile != "", "server_name": s.ServerName != "", "app_name": s.AppName != "",
	} {
		if set {
			return fmt.Errorf("%s applies only to type syslog", key)
		}
	}
	if s.Path == "" {
		return errors.New("path is required")
	}
	if !filepath.IsAbs(s.Path) {
		return fmt.Errorf("path %q must be an absolute path", s.Path)
	}
	return nil
}

// splitAddress splits host:port. net.SplitHostPort would do, but package net is not linked
// into the hook, which reads this package, and costs start-up time there.
func splitAddress(addr string) (host, port string, err error) {
	u, err := url.Parse("//" + addr)
	if err != nil || u.Host != addr || u.User != nil {
		return "", "", errors.New("want host:port")
	}
	host, port = u.Hostname(), u.Port()
	if host == "" {
		return "", "", errors.New("no host: want host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", "", errors.New("no port or a bad one: want host:port, port 1 to 65535")
	}
	return host, port, nil
}

// checkName checks the name of the i-th entry of a list (subscriptions, sinks): the
// [a-z0-9-]+ form and uniqueness. It returns how errors should name the entry.
func checkName(key, what string, i int, name string, seen map[string]bool) (string, error) {
	where := fmt.Sprintf("config: %s[%d]", key, i)
	if name != "" {
		where = fmt.Sprintf("config: %s %q", what, name)
	}
	if !nameRE.MatchString(name) {
		return where, fmt.Errorf("%s: name %q must match [a-z0-9-]+", where, name)
	}
	if seen[name] {
		return where, fmt.Errorf("%s: name is used twice", where)
	}
	seen[name] = true
	return where, nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL") // the text may hold a password: do not echo it
	}
	shown := u.Redacted()
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return fmt.Errorf("%q has no host", shown)
		}
	case "file":
		if u.Path == "" || !filepath.IsAbs(u.Path) {
			return fmt.Errorf("%q must name an absolute path (file:///…)", shown)
		}
	default:
		return fmt.Errorf("%q: only https:// and file:// are accepted", shown)
	}
	return nil
}

// Serve configures vmgate serve, the daemon that syncs, ships and prunes on its own.
type Serve struct {
	// Listen is the host:port of the HTTP server (/healthz, /metrics); port 0 picks a free
	// one, an empty host listens on every address.
	Listen string `yaml:"listen"`
	// AuditInterval is how often the daemon judges every running domain on this host.
	AuditInterval time.Duration `yaml:"audit_interval"`
	// AuditAction is what an audit does about a VM that runs what is no longer endorsed:
	// report (the default: metrics, /healthz, vm.audit records), terminate (report, then
	// what `vmgate terminate --revoked` does, with its guards) or off (no audit: a node
	// without libvirt).
	AuditAction string `yaml:"audit_action"`
	// AuditConnect is the libvirt URI audited.
	AuditConnect string `yaml:"audit_connect"`
	// AuditEvents makes the audit follow the domain events of audit_connect and judge a
	// domain again within seconds of a change (a disk hot-plugged, a start); nil is true.
	AuditEvents *bool `yaml:"audit_events"`
	// AuditGrace, AuditMax and AuditTimeout are terminate's --grace, --max and --timeout
	// for audit_action terminate.
	AuditGrace   time.Duration `yaml:"audit_grace"`
	AuditMax     int           `yaml:"audit_max"`
	AuditTimeout time.Duration `yaml:"audit_timeout"`
}

// Events reports whether the audit follows libvirt's domain events: serve.audit_events,
// true unless set, and never with the audit off.
func (s *Serve) Events() bool {
	return s.AuditAction != AuditOff && (s.AuditEvents == nil || *s.AuditEvents)
}

// Audit actions.
const (
	AuditReport    = "report"
	AuditTerminate = "terminate"
	AuditOff       = "off"
)

// Defaults of the audit.
const (
	DefaultAuditInterval = 10 * time.Minute
	DefaultAuditConnect  = "qemu:///system"
	DefaultAuditMax      = 50
	DefaultAuditTimeout  = 2 * time.Minute
)

func (s *Serve) fillDefaults() {
	if s.AuditInterval == 0 {
		s.AuditInterval = DefaultAuditInterval
	}
	if s.AuditAction == "" {
		s.AuditAction = AuditReport
	}
	if s.AuditConnect == "" {
		s.AuditConnect = DefaultAuditConnect
	}
	if s.AuditMax == 0 {
		s.AuditMax = DefaultAuditMax
	}
	if s.AuditTimeout == 0 {
		s.AuditTimeout = DefaultAuditTimeout
	}
}

func (s *Serve) validate() error {
	switch s.AuditAction {
	case AuditReport, AuditTerminate, AuditOff:
	default:
		return fmt.Errorf("config: serve.audit_action %q: want report, terminate or off", s.AuditAction)
	}
	if s.AuditInterval < time.Second || s.AuditGrace < 0 || s.AuditMax < 0 || s.AuditTimeout <= 0 {
		return fmt.Errorf("config: serve.audit_interval must be at least 1s, audit_grace and audit_max not negative, audit_timeout positive")
	}
	u, err := url.Parse("//" + s.Listen)
	if err != nil || u.Host != s.Listen || u.User != nil || u.Port() == "" {
		return fmt.Errorf("config: serve.listen %q: want host:port (127.0.0.1:9477, [::1]:9477, :9477)", s.Listen)
	}
	if n, err := strconv.Atoi(u.Port()); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("config: serve.listen %q: port must be 0 to 65535", s.Listen)
	}
	return nil
}

// validate checks an x509 subscription; x is nil for a cosign one.
func (x *X509Trust) validate(s *Subscription) error {
	if x == nil {
		return nil
	}
	if len(s.CosignKeys) > 0 {
		return errors.New("cosign_keys and x509: give one or the other, not both")
	}
	if s.SignatureURL != "" || s.BundleURL != "" {
		return errors.New("signature_url and bundle_url do not apply with x509: an S/MIME list carries its signature")
	}
	if x.CADir == "" || !filepath.IsAbs(x.CADir) {
		return fmt.Errorf("x509.ca_dir %q must be an absolute path (/etc/grid-security/certificates)", x.CADir)
	}
	for key, v := range map[string]string{"x509.dn": x.DN, "x509.ca": x.CA} {
		if !strings.HasPrefix(v, "/") || !strings.Contains(v, "=") {
			return fmt.Errorf("%s %q: want the OpenSSL one-line form, /DC=org/DC=example/CN=…", key, v)
		}
	}
	return nil
}
