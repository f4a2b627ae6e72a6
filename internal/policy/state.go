package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/vmgate/vmgate/internal/atomicfile"
	"github.com/vmgate/vmgate/internal/policy/snapshot"
)

// State is what vmgate remembers between syncs: per subscription, the last accepted list and
// the status of every image any accepted list ever named. It is the source the snapshot is
// compiled from; the history journal is the audit trail of how it got here.
type State struct {
	Serial        uint64               `json:"snapshot_serial"` // of the last snapshot written
	Subscriptions map[string]*SubState `json:"subscriptions"`
	// Glance maps an OpenStack cloud's image ids to sha512 values (openstack.cloud).
	Glance *GlanceState `json:"glance,omitempty"`
}

// SubState is one subscription's state.
type SubState struct {
	Accepted *Accepted `json:"accepted,omitempty"`
	// Validators for the next conditional GET of the list.
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	LastSuccess  time.Time `json:"last_success,omitzero"`
	LastReason   Reason    `json:"last_reason,omitempty"` // of the last refusal, cleared on success
	LastError    string    `json:"last_error,omitempty"`
	// Images by sha512: endorsed ones and every one revoked or expired since.
	Images map[string]*ImageState `json:"images"`
}

// Accepted is the list currently in force for a subscription.
type Accepted struct {
	Identifier string        `json:"identifier"`
	Title      string        `json:"title,omitempty"`
	Version    string        `json:"version"`
	Created    time.Time     `json:"created"`
	Expires    time.Time     `json:"expires"`
	MaxAge     time.Duration `json:"max_age"` // the subscription's, when the list was accepted
	SHA256     string        `json:"sha256"`
	Endorser   Endorser      `json:"endorser"`
	AcceptedAt time.Time     `json:"accepted_at"`
	Archive    string        `json:"archive"` // path of the raw list under the policy dir
}

// Lapses is when the accepted list stops vouching: its expiry or, earlier, its max_age.
func (a *Accepted) Lapses() time.Time {
	if a.MaxAge > 0 {
		if frozen := a.Created.Add(a.MaxAge); frozen.Before(a.Expires) {
			return frozen
		}
	}
	return a.Expires
}

// ImageState is one image's standing in one subscription.
type ImageState struct {
	SHA512      string          `json:"sha512"`
	Identifier  string          `json:"identifier"`
	Title       string          `json:"title,omitempty"`
	Version     string          `json:"version,omitempty"`
	URI         string          `json:"uri,omitempty"`
	Size        int64           `json:"size,omitempty"`
	Expires     time.Time       `json:"expires,omitzero"` // the image's own dc:date:expires
	Status      snapshot.Status `json:"status"`
	Since       time.Time       `json:"since,omitzero"`
	RevokedAt   time.Time       `json:"revoked_at,omitzero"` // when it stopped being endorsed
	Reason      string          `json:"reason,omitempty"`
	ListVersion string          `json:"list_version"`
}

// LoadState reads the state file; a missing file is an empty state (a new node).
func LoadState(path string) (*State, error) {
	s := &State{Subscriptions: map[string]*SubState{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("policy state: %w", err)
	}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("policy state %s is corrupt: %w (the history and archived lists are intact; move the file aside and run vmgate sync to rebuild it)", path, err)
	}
	if s.Subscriptions == nil {
		s.Subscriptions = map[string]*SubState{}
	}
	return s, nil
}

// Save writes the state atomically.
func (s *State) Save(path string) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("policy state: %w", err)
	}
	return atomicfile.WriteFile(path, data, 0o644)
}

func (s *State) sub(name string) *SubState {
	ss := s.Subscriptions[name]
	if ss == nil {
		ss = &SubState{Images: map[string]*ImageState{}}
		s.Subscriptions[name] = ss
	}
	if ss.Images == nil {
		ss.Images = map[string]*ImageState{}
	}
	return ss
}
