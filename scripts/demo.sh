#!/usr/bin/env bash
# The whole story on this machine, with real parts: an endorser signs an image list with
# cosign, vmgate syncs it, the hook in a real libvirtd lets a VM on an endorsed image start
# and refuses one on another image; after the endorser revokes the image a new start on it
# is refused, the trace tells which VM had which address, and vmgate terminate takes the
# running VM down. Run it with `make demo` (as root). It cleans up after itself.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [[ $(id -u) -ne 0 ]]; then
	echo "make demo needs root: it installs packages, starts libvirtd and QEMU, and installs a" >&2
	echo "libvirt hook. Run: sudo make demo" >&2
	exit 1
fi
hook=/etc/libvirt/hooks/qemu.d/vmgate
if [[ -e $hook ]]; then
	echo "demo: $hook exists (a real installation?); the demo will not replace it" >&2
	exit 1
fi

export PATH="$(go env GOPATH)/bin:$PATH"
work=$(mktemp -d /tmp/vmgate-demo.XXXXXX)
virsh() { command virsh -q -c qemu:///system "$@"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
say() { printf '    %s\n' "$*"; }
run() {
	printf '    $ %s\n' "$*"
	"$@" 2>&1 | sed 's/^/      /'
	return "${PIPESTATUS[0]}"
}
cleanup() {
	for d in demo-endorsed demo-unvetted demo-revoked; do
		virsh destroy "$d" >/dev/null 2>&1 || true
		virsh undefine "$d" >/dev/null 2>&1 || true
	done
	rm -f "$hook"
	bash scripts/libvirt.sh hup >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

vmgate() { "$repo/bin/vmgate" --config "$work/vmgate.yaml" "$@"; }
# cosign looks for sigstore's public services even for offline work: keep it off the network.
cosign() { COSIGN_PASSWORD=demo HOME=$work TUF_ROOT=$work/tuf unshare --net "$(command -v cosign)" "$@"; }

step "An endorser makes a cosign key pair"
(cd "$work" && cosign generate-key-pair >/dev/null 2>&1)
say "$work/cosign.key (private, the endorser keeps it) and $work/cosign.pub (every site gets it)"

step "Three base images: two the endorser vouches for, one nobody vouches for"
for img in worker-el9 analysis-2404 unvetted; do
	head -c 1048576 /dev/urandom >"$work/$img.raw"
	say "$work/$img.raw  sha512 $(sha512sum "$work/$img.raw" | cut -c1-16)…"
done

publish() { # publish VERSION IMAGES…: a HEPiX list endorsing the images, signed with cosign sign-blob
	local version=$1
	shift
	local args=()
	for img in "$@"; do args+=(-image "$work/$img.raw"); done
	go run ./test/tools/mklist -n 0 -version "$version" "${args[@]}" -o "$work/image.list"
	(cd "$work" && cosign sign-blob --yes --key cosign.key --tlog-upload=false --output-signature image.list.sig image.list >/dev/null 2>&1)
}

step "The endorser publishes version 1 of the list, signed, endorsing worker-el9 and analysis-2404"
publish 1 worker-el9 analysis-2404
cat >"$work/vmgate.yaml" <<EOF
state_dir: $work/state
subscriptions:
  - name: example
    url: file://$work/image.list
    identifier: 5b0e7c9a-3f1d-4c2b-9e8a-7d6c5b4a3f2e
    cosign_keys: [$work/cosign.pub]
EOF
say "the site subscribes to it in $work/vmgate.yaml"

step "The site syncs: verify the signature, check the list, record the history, write the snapshot"
run vmgate --log-level warn sync
run vmgate images

step "The hook goes into the real libvirtd"
bash scripts/libvirt.sh up >/dev/null
run vmgate hook install --hooks-dir "$work/hooks" --hook "$repo/bin/vmgate-hook"
install -m 0755 "$work/hooks/qemu.d/vmgate" "$hook"
bash scripts/libvirt.sh hup >/dev/null
say "installed as $hook; libvirtd was sent SIGHUP so that it runs it"

define() { # define NAME IMAGE: a small TCG domain on a qcow2 overlay of the image
	qemu-img create -q -f qcow2 -b "$work/$2.raw" -F raw "$work/$1.qcow2"
	cat >"$work/$1.xml" <<EOF
<domain type='qemu'><name>$1</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$work/$1.qcow2'/><target dev='vda' bus='virtio'/></disk>
<interface type='user'><mac address='52:54:00:00:00:0$3'/><model type='virtio'/></interface></devices></domain>
EOF
	virsh define "$work/$1.xml" >/dev/null
}

step "A VM on the endorsed image worker-el9 starts"
define demo-endorsed worker-el9 1
run virsh start demo-endorsed
run virsh domstate demo-endorsed

step "A VM on the unvetted image is refused, and virsh says why"
define demo-unvetted unvetted 2
if run virsh start demo-unvetted; then
	echo "demo: the unvetted VM started; the hook did not refuse it" >&2
	exit 1
fi

step "Every decision is on record, hash-chained, before the VM was let start"
run vmgate trace verify
say "the allow record of demo-endorsed:"
grep '"event":"admission.allow"' "$work/state/trace/journal.jsonl" | grep demo-endorsed | tail -1 | cut -c1-400 | sed 's/^/      /'

step "The endorser revokes worker-el9: version 2 of the list no longer names it"
publish 2 analysis-2404
run vmgate --log-level warn sync
run vmgate images --all

step "A new VM on worker-el9 is refused now, with when and why"
define demo-revoked worker-el9 3
if run virsh start demo-revoked; then
	echo "demo: a VM on a revoked image started" >&2
	exit 1
fi

step "The auditable history of worker-el9"
run vmgate images --history worker-el9.raw

step "Which VM had the MAC address 52:54:00:00:00:01, and on what image? The trace says"
run vmgate trace query --mac 52:54:00:00:00:01

step "demo-endorsed still runs: its image was revoked after it started"
run virsh domstate demo-endorsed

step "The security team takes down running VMs whose image is revoked"
say "(--max 1: if anything but the demo's VM were a target, vmgate would refuse to act)"
run vmgate terminate --revoked --dry-run --max 1 || true
run vmgate terminate --revoked --action destroy --max 1
run virsh domstate demo-endorsed
say "the record says who did it and why:"
grep '"event":"vm.terminated"' "$work/state/trace/journal.jsonl" | tail -1 | cut -c1-400 | sed 's/^/      /'

step "Cleaning up: domains, the hook, $work"
