#!/usr/bin/env bash
# The whole story on this machine, with real parts: an endorser signs an image list with
# cosign, vmgate syncs it, the hook in a real libvirtd lets a VM on an endorsed image start
# and refuses one on another image; the trace tells which VM had which MAC address; the
# endorser revokes the image, and vmgate terminate takes the running VM down, with a record
# that says why. Run it with `make demo` (as root). It cleans up after itself.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if [[ $(id -u) -ne 0 ]]; then
	cat >&2 <<-'EOF'
	make demo needs root, because it uses the real parts of a hypervisor:
	  - it installs Debian packages (libvirt, QEMU, openssl, gcc for cgo) when they are
	    missing, and builds the cosign CLI with go install,
	  - it starts libvirtd and runs small QEMU virtual machines,
	  - it installs vmgate's hook as /etc/libvirt/hooks/qemu.d/vmgate, making the directory
	    when libvirt has none, and sends libvirtd SIGHUP (and removes them after).
	Run: sudo make demo
	EOF
	exit 1
fi
hooks_dir=/etc/libvirt/hooks # a fresh libvirt install has none: vmgate hook install makes it
hook=$hooks_dir/qemu.d/vmgate
if [[ -e $hook ]]; then
	echo "demo: $hook exists (a real installation?); the demo will not replace it" >&2
	exit 1
fi

if ! command -v go >/dev/null; then
	echo "demo: needs the Go toolchain (go) on PATH, to build vmgate and the cosign CLI" >&2
	exit 1
fi
export PATH="$(go env GOPATH)/bin:$PATH"
echo "==> Getting what the demo needs: libvirt, QEMU, openssl, the cosign CLI (the first time takes a few minutes)"
# Only what the demo uses: scripts/deps.sh would also bring up the test OpenStack. gcc and
# libc6-dev: vmgate reaches libvirt through cgo; ca-certificates: go fetches modules over HTTPS.
missing=()
for p in openssl qemu-utils util-linux ca-certificates gcc libc6-dev; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "    installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
fi
cosign_version=$(sed -n 's/^COSIGN_VERSION=//p' scripts/deps.sh) # one pinned version for tests and demo
if ! cosign version 2>/dev/null | grep -q "GitVersion:.*${cosign_version#v}"; then
	echo "    building the cosign CLI ${cosign_version} (about 4 minutes the first time)"
	GOFLAGS=-buildvcs=false go install "github.com/sigstore/cosign/v2/cmd/cosign@${cosign_version}"
fi
bash scripts/libvirt.sh up | sed 's/^/    /'
make --no-print-directory build >/dev/null
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
	# The directories vmgate hook install made, when the machine had none: leave it as found.
	for ((i = ${#created_dirs[@]} - 1; i >= 0; i--)); do
		rmdir "${created_dirs[i]}" 2>/dev/null || true
	done
	bash scripts/libvirt.sh hup >/dev/null 2>&1 || true
	rm -rf "$work"
}
created_dirs=()
for d in "$hooks_dir" "$hooks_dir/qemu.d"; do
	[[ -e $d ]] || created_dirs+=("$d")
done
trap cleanup EXIT
trap 'exit 130' INT TERM # so that an interrupted demo cleans up too

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

step "The site syncs: vmgate fetches the list, checks the endorser's signature before reading it, checks its dates and version, records it, and writes the snapshot the hook reads"
run vmgate --log-level warn sync
say "what the hook will let start now:"
run vmgate images

step "vmgate's hook goes into the real libvirtd: from now on libvirtd asks it before every VM start"
run vmgate hook install --hook "$repo/bin/vmgate-hook"
# libvirtd looked for hooks when it started; into a qemu.d that was missing or empty then, it
# runs a new hook only after SIGHUP. hup returns once libvirtd has looked again.
found=$(bash scripts/libvirt.sh hup)
if [[ $found != *"qemu hooks found"* ]]; then
	echo "demo: libvirtd did not find $hook after SIGHUP: $found" >&2
	exit 1
fi
say "libvirtd was sent SIGHUP, as hook install asks, and found the hook: $hook"
say "vmgate doctor checks the whole installation, one line each:"
run vmgate doctor || true

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

step "A VM on the endorsed image worker-el9 starts: the hook finds its base image's sha512 in the list"
define demo-endorsed worker-el9 1
run virsh start demo-endorsed
run virsh domstate demo-endorsed

step "A VM on the image nobody vouches for is refused: virsh shows vmgate's reason"
define demo-unvetted unvetted 2
if run virsh start demo-unvetted; then
	echo "demo: the unvetted VM started; the hook did not refuse it" >&2
	exit 1
fi

step "Both decisions were written to the hash-chained trace journal before libvirtd went on"
run vmgate trace verify

step "An incident report names a MAC address: which VM had 52:54:00:00:00:01, on what image, since when? The trace answers"
run vmgate trace query --mac 52:54:00:00:00:01

step "The endorser finds a flaw in worker-el9 and publishes version 2 of the list without it: the image is revoked"
publish 2 analysis-2404
run vmgate --log-level warn sync
run vmgate images --all
say "the auditable history of worker-el9: when it was endorsed, when and why revoked"
run vmgate images --history worker-el9.raw

step "No new VM can start on worker-el9 now; the refusal says when and why it was revoked"
define demo-revoked worker-el9 3
if run virsh start demo-revoked; then
	echo "demo: a VM on a revoked image started" >&2
	exit 1
fi

step "But demo-endorsed started before the revocation and is still running"
run virsh domstate demo-endorsed

step "The security team takes down every running VM whose image is no longer endorsed"
say "first a dry run, to see what would be done; --max 1 refuses to act on more than one VM"
run vmgate terminate --revoked --dry-run --max 1 || true
run vmgate terminate --revoked --action destroy --max 1
say "the VM is down:"
run virsh domstate demo-endorsed
say "and the trace says why it went down (the record also names who ran vmgate terminate: --format json shows it):"
run vmgate trace query --mac 52:54:00:00:00:01

step "Cleaning up: the demo's VMs, the hook, $work"
