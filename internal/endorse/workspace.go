package endorse

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrRefused marks a request that endorse declines for a reason the endorser can fix (a list
// that already exists, an unknown identifier, an image that cannot be endorsed). The CLI
// turns it into exit code 1; other errors are failures (exit code 2).
var ErrRefused = errors.New("refused")

func refusef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Actor is who makes a change, as the history records it.
type Actor struct {
	UID  int    `json:"uid"`
	User string `json:"user"`
	Host string `json:"host,omitempty"`
}

// CurrentActor is the user running this process. The user name comes from the user database
// rather than $USER, which anyone can set; when there is no entry, it is the uid.
func CurrentActor() Actor {
	a := Actor{UID: os.Getuid()}
	a.User = strconv.Itoa(a.UID)
	if u, err := user.LookupId(a.User); err == nil {
		a.User = u.Username
	}
	a.Host, _ = os.Hostname()
	return a
}

// Workspace is one list and the files beside it.
type Workspace struct {
	List  string           // path of the list file
	Now   func() time.Time // the clock; time.Now when nil
	Actor Actor            // who makes the changes; CurrentActor() when zero
}

// Open returns the workspace of the list at path.
func Open(path string) *Workspace {
	return &Workspace{List: path}
}

func (w *Workspace) now() time.Time {
	if w.Now != nil {
		return w.Now().UTC()
	}
	return time.Now().UTC()
}

func (w *Workspace) actor() Actor {
	if w.Actor == (Actor{}) {
		return CurrentActor()
	}
	return w.Actor
}

// Dir holds the lock, the software inventories and the signed versions.
func (w *Workspace) Dir() string { return w.List + ".d" }

// HistoryPath is the history file.
func (w *Workspace) HistoryPath() string { return w.List + ".history" }

// SignaturePath and BundlePath are where sign writes the detached signature and the bundle.
func (w *Workspace) SignaturePath() string { return w.List + ".sig" }
func (w *Workspace) BundlePath() string    { return w.List + ".bundle" }

func (w *Workspace) softwareDir() string { return filepath.Join(w.Dir(), "software") }
func (w *Workspace) versionsDir() string { return filepath.Join(w.Dir(), "versions") }

// lock takes the workspace's exclusive lock, creating FILE.d if needed. The lock is on a file
// of its own, not on the list: the list is replaced by rename at every edit, and a lock on
// a replaced file would protect nothing.
func (w *Workspace) lock() (unlock func(), err error) {
	if err := os.MkdirAll(w.Dir(), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", w.List, err)
	}
	p := filepath.Join(w.Dir(), "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", w.List, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil // closing drops the lock
}
