package admission

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmgate/vmgate/internal/atomicfile"
	"github.com/vmgate/vmgate/internal/domain"
)

// Memory is what vmgate admitted on this host: one small file per domain uuid, written by
// the hook when it lets a domain with endorsed disks start, listing every layer of every
// disk. A start reads one file, whatever the number of images or domains.
//
// It is what makes an overlay with data the VM's own state rather than content someone put
// there: an overlay seen for the first time must be empty (its content is then exactly
// its base's), and one that holds data is admitted only when this domain was admitted
// before with that very file. It is also what a restore is checked against (a memory image
// can be endorsed by no one: it is admitted only for a domain admitted here, with the same
// disks). The uuid comes from the domain XML, which whoever starts the domain writes; so a
// file is identified by device, inode and birth time, never by name, and the memory of a
// domain is forgotten whenever it runs something vmgate did not find endorsed.
type Memory struct{ dir string }

// MemoryDir is where a node keeps what it admitted.
func MemoryDir(stateDir string) string { return filepath.Join(stateDir, "admitted") }

// NewMemory returns the memory kept in dir. It does no I/O.
func NewMemory(dir string) Memory { return Memory{dir: dir} }

// FileID identifies a file for as long as it exists: device and inode, and the birth time
// where the file system keeps one, so that a new file reusing a deleted one's inode number
// is another file.
type FileID struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Btime int64  `json:"btime,omitempty"` // ns since the epoch; 0 when unknown
}

// Layer is one remembered file of a disk's chain.
type Layer struct {
	Disk string `json:"disk"` // target: vda
	Path string `json:"path"`
	FileID
}

// Admitted is what the memory holds for one domain.
type Admitted struct {
	UUID string `json:"uuid"`
	Name string `json:"name"`
	// Time is when the domain was admitted with these layers (first admission or last
	// change), Op by which operation.
	Time   time.Time `json:"time"`
	Op     string    `json:"op"` // "prepare begin", "migrate begin", "restore begin", "adopt"
	Layers []Layer   `json:"layers"`
	// Restoring marks a restore of a memory image vmgate did not admit (warn mode): libvirt
	// runs prepare begin right after restore begin with the same XML, and that prepare must
	// not take the domain for admitted. The next prepare begin consumes the mark.
	Restoring bool `json:"restoring,omitempty"`
}

// Has reports whether id is one of the remembered layers.
func (a *Admitted) Has(id FileID) bool {
	if a == nil || a.Restoring {
		return false
	}
	for _, l := range a.Layers {
		if l.FileID == id {
			return true
		}
	}
	return false
}

// maxMemorySize bounds what a read takes: a domain has a few disks of a few layers.
const maxMemorySize = 1 << 20

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func (m Memory) path(uuid string) (string, error) {
	if !uuidRE.MatchString(uuid) {
		return "", fmt.Errorf("domain uuid %q is not a lower-case uuid", uuid)
	}
	return filepath.Join(m.dir, uuid), nil
}

// Load returns what was remembered of the domain uuid, nil when nothing was. An entry that
// someone other than root or this user could have written is an error, never trusted.
func (m Memory) Load(uuid string) (*Admitted, error) {
	p, err := m.path(uuid)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("vmgate's memory of admitted domains: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || st == nil || st.Uid != 0 && int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("vmgate's memory of admitted domains: %s is not a file only root can write", p)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMemorySize+1))
	if err != nil {
		return nil, fmt.Errorf("vmgate's memory of admitted domains: %w", err)
	}
	if len(data) > maxMemorySize {
		return nil, fmt.Errorf("vmgate's memory of admitted domains: %s is larger than %d bytes", p, maxMemorySize)
	}
	var a Admitted
	if err := json.Unmarshal(data, &a); err != nil || a.UUID != uuid {
		return nil, fmt.Errorf("vmgate's memory of admitted domains: %s is damaged: %v", p, err)
	}
	return &a, nil
}

// Store remembers a, replacing what was remembered of the domain: written to a temporary
// file, synced and renamed, so a crash leaves the old memory or the new, never a mix.
func (m Memory) Store(a Admitted) error {
	p, err := m.path(a.UUID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return fmt.Errorf("vmgate's memory of admitted domains: %w", err)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("vmgate's memory of admitted domains: %w", err)
	}
	return nil
}

// Forget drops what was remembered of the domain uuid: it ran something vmgate did not find
// endorsed, so its overlays may now hold anything.
func (m Memory) Forget(uuid string) error {
	p, err := m.path(uuid)
	if err != nil {
		return nil // nothing can have been stored under it
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("vmgate's memory of admitted domains: %w", err)
	}
	return atomicfile.SyncDir(m.dir)
}

// fileID identifies the file at path (following symbolic links, as QEMU opens it).
func fileID(path string) (FileID, error) {
	var sx unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_INO|unix.STATX_BTIME, &sx)
	if err != nil {
		return FileID{}, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	id := FileID{Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), Ino: sx.Ino}
	if sx.Mask&unix.STATX_BTIME != 0 {
		id.Btime = sx.Btime.Sec*1e9 + int64(sx.Btime.Nsec)
	}
	return id, nil
}

// Layers lists every layer of every file disk of d, as libvirt will open them (see chainOf),
// with their identities: what Remember stores and a restore is compared with. Disks it
// cannot follow are left out: a decision that admitted the domain followed them all.
func Layers(d *domain.Domain) []Layer {
	var out []Layer
	for i := range d.Disks {
		dd := &d.Disks[i]
		if dd.Empty() || dd.Type != "file" || dd.Source == nil {
			continue
		}
		chain, err := chainOf(dd)
		if err != nil {
			continue
		}
		for _, l := range chain {
			if id, err := fileID(l.Path); err == nil {
				out = append(out, Layer{Disk: dd.Target, Path: l.Path, FileID: id})
			}
		}
	}
	return out
}

// Remember records that d was admitted now by op: its layers are this domain's state from
// here on. When the memory already holds exactly these layers (every restart of a VM after
// the first), nothing is written: the allow path then costs one small read, no fsync.
func (m Memory) Remember(d *domain.Domain, op string, now time.Time) error {
	if d.UUID == "" {
		return nil
	}
	layers := Layers(d)
	if old, err := m.Load(d.UUID); err == nil && old != nil && !old.Restoring && old.Name == d.Name && slices.Equal(old.Layers, layers) {
		return nil
	}
	return m.Store(Admitted{UUID: d.UUID, Name: d.Name, Time: now.UTC(), Op: op, Layers: layers})
}
