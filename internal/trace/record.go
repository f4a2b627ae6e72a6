// Package trace keeps the traceability records that tie every VM to its operator, its image
// and its addresses. The hook writes them through here, durably, before it lets a VM start.
//
// It is linked into the hook: keep its imports to the standard library and internal/journal.
package trace

import (
	"time"
)

// Event names of trace records; part of the record format.
const (
	AdmissionAllow  = "admission.allow"
	AdmissionRefuse = "admission.refuse"
	AdmissionWarn   = "admission.warn" // warn mode: would have been refused, was allowed
	VMStarted       = "vm.started"
	VMStopped       = "vm.stopped"
	VMReleased      = "vm.released"
	VMMigratedIn    = "vm.migrated_in"
	VMRestored      = "vm.restored"
	VMReconnected   = "vm.reconnected"
	VMTerminated    = "vm.terminated"
	VMOther         = "vm.other" // a hook operation vmgate does not know; recorded, allowed
	ListAccepted    = "list.accepted"
	ListRefused     = "list.refused"
	ImageEndorsed   = "image.endorsed"
	ImageRevoked    = "image.revoked" // also an endorsement that expired: the reason says which
	// ImageDeactivated and ImageReactivated: openstack.deactivate_revoked changed a Glance
	// image.
	ImageDeactivated = "image.deactivated"
	ImageReactivated = "image.reactivated"
	// BlockAdded, BlockRemoved and BlockExpired: the site's own blocks (vmgate block).
	BlockAdded   = "block.added"
	BlockRemoved = "block.removed"
	BlockExpired = "block.expired"
	// VMAudit: vmgate serve's audit found a running VM that is not endorsed, or found it
	// endorsed again (outcome success); one record each time that changes.
	VMAudit = "vm.audit"
)

// Outcomes, as ECS event.outcome spells them.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeUnknown = "unknown"
)

// Record is one traceability record. The journal adds the sequence number and the hash chain.
type Record struct {
	Time      time.Time `json:"time"`
	Host      string    `json:"host"`
	Event     string    `json:"event"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason,omitempty"`
	Exemption string    `json:"exemption,omitempty"` // the configured exemption that applied
	Mode      string    `json:"mode,omitempty"`      // admission mode: enforce or warn
	Op        string    `json:"libvirt_op,omitempty"`
	Domain    Domain    `json:"domain"`
	Instance  *Instance `json:"instance,omitempty"` // OpenStack only
	User      *Owner    `json:"user,omitempty"`
	Project   *Owner    `json:"project,omitempty"`
	Images    []Image   `json:"images,omitempty"` // one per disk judged
	List      *List     `json:"list,omitempty"`   // list.accepted and list.refused
	MACs      []string  `json:"macs,omitempty"`
	IPs       []IP      `json:"ips,omitempty"`
	// Action is what vmgate terminate did (shutdown, destroy, suspend, stop, lock), and
	// Actor who ran it; RevokedAt is when the image stopped being endorsed.
	Action    string     `json:"action,omitempty"`
	Actor     *Actor     `json:"actor,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Block     *Block     `json:"block,omitempty"` // block.* records, and refusals by a block
	Version   string     `json:"vmgate_version"`
	// Truncated names the fields Bound cut to make the record fit ("reason",
	// "images[0].source", "images" when entries were dropped); empty when none was.
	Truncated []string `json:"truncated,omitempty"`
}

// Block is one of the site's own blocks: what it names, why, until when, who set it and
// whether from the command line or the configuration.
type Block struct {
	Kind   string     `json:"kind"` // image, user or project
	Target string     `json:"target"`
	Reason string     `json:"reason"`
	Until  *time.Time `json:"until,omitempty"`
	By     string     `json:"by,omitempty"`
	Source string     `json:"source,omitempty"` // cli or config
}

// Actor is the person (Unix account) who ran a command that acted on VMs.
type Actor struct {
	UID  int    `json:"uid"`
	Name string `json:"name,omitempty"`
}

// Domain names the libvirt domain.
type Domain struct {
	Name string `json:"name"`
	UUID string `json:"uuid,omitempty"`
}

// Instance is the Nova instance behind a domain.
type Instance struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// Owner is a Keystone user or project.
type Owner struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// Image is what vmgate found for one disk, and which endorsement vouched for it.
type Image struct {
	Disk         string `json:"disk,omitempty"` // target device, e.g. vda
	Source       string `json:"source,omitempty"`
	GlanceID     string `json:"glance_id,omitempty"`
	SHA512       string `json:"sha512,omitempty"`
	Identifier   string `json:"identifier,omitempty"`
	Title        string `json:"title,omitempty"`
	Version      string `json:"version,omitempty"`
	Status       string `json:"status,omitempty"` // endorsed, revoked, expired, unknown, exempt
	Subscription string `json:"subscription,omitempty"`
	List         string `json:"list,omitempty"`
	ListVersion  string `json:"list_version,omitempty"`
	Endorser     string `json:"endorser,omitempty"`
}

// List is an endorser's image list, for the events of vmgate sync.
type List struct {
	Subscription string `json:"subscription"`
	Identifier   string `json:"identifier,omitempty"`
	Version      string `json:"version,omitempty"`
	SHA256       string `json:"sha256,omitempty"`
	Endorser     string `json:"endorser,omitempty"`
}

// IP is an address the VM holds.
type IP struct {
	Address string `json:"address"`
	Type    string `json:"type,omitempty"` // fixed or floating (Nova)
}
