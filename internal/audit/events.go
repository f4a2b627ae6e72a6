package audit

// Domain events: a disk hot-plugged into a running domain (virsh attach-disk, attach-device)
// runs no hook, and would otherwise be seen only at the next periodic pass. The daemon
// follows libvirt's domain events and judges the domain again within seconds (Domains).

// Event kinds, the values of the kind argument of a SubscribeFunc's callback.
const (
	EventLifecycle      = "lifecycle"       // defined, started, resumed, stopped, ...
	EventDeviceAdded    = "device-added"    // a device hot-plugged
	EventDeviceRemoved  = "device-removed"  // a device unplugged: the domain may be compliant again
	EventBlockJob       = "block-job"       // a block copy, commit or pull ended: a disk's chain changed
	EventTrayChange     = "tray-change"     // removable media opened or closed
	EventDiskChange     = "disk-change"     // a disk's media changed or was dropped
	EventJobCompleted   = "job-completed"   // a job ended (snapshot, migration, ...)
	EventMetadataChange = "metadata-change" // <metadata> changed (Nova's names the owner)
)

// EventKinds are every kind a subscription reports.
var EventKinds = []string{EventLifecycle, EventDeviceAdded, EventDeviceRemoved, EventBlockJob,
	EventTrayChange, EventDiskChange, EventJobCompleted, EventMetadataChange}

// Watch is a subscription to the domain events of one libvirt connection, which also
// reads the domains they name.
type Watch interface {
	Reader
	// Lost is closed when the connection is lost: libvirtd stopped or restarted, or did not
	// answer its keepalives.
	Lost() <-chan struct{}
	// Close ends the subscription and closes the connection.
	Close() error
}

// SubscribeFunc opens a read-only connection to uri and subscribes to its domain events:
// event(uuid, kind) is called for each, from libvirt's event loop, so it must return at
// once.
type SubscribeFunc func(uri string, event func(uuid, kind string)) (Watch, error)
