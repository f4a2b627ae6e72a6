package terminate

import (
	"cmp"
	"slices"
)

// DefaultConnect is the libvirt URI of the host scope.
const DefaultConnect = "qemu:///system"

// HostSource is the host scope, a libvirt connection to close after use.
type HostSource interface {
	Source
	Close() error
}

// ConnectHost opens the host scope: the running domains of libvirt at uri.
func ConnectHost(uri string) (HostSource, error) { return connectHost(uri) }

// ConnectHostReadOnly opens the host scope read-only: enough to list and judge the running
// domains (vmgate serve's audit), not to act on them.
func ConnectHostReadOnly(uri string) (HostSource, error) { return connectHostReadOnly(uri) }

// sortVMs orders VMs by name (then uuid), so that reports read the same from run to run:
// libvirt lists domains in no particular order.
func sortVMs(vms []VM) {
	slices.SortFunc(vms, func(a, b VM) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.UUID, b.UUID)) })
}
