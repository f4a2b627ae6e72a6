#!/usr/bin/env bash
# Installs what vmgate's tests, benchmarks and demo need, when it is missing. Used by
# `make test`, `make bench`, `make demo` and so by .ci/run. Safe to run again.
set -euo pipefail

COSIGN_VERSION=v2.6.5
# gcc and libc6-dev: vmgate reaches libvirt through cgo (without a C compiler go turns cgo off
# and the build fails on the libvirt package). ovmf: UEFI guests, for the firmware allowlist's test.
DEBIAN_PACKAGES=(openssl ca-certificates hyperfine qemu-utils time rsyslog rsyslog-gnutls gcc libc6-dev ovmf)

if ! command -v go >/dev/null; then
	echo "deps: needs the Go toolchain (go) on PATH, to build vmgate and the cosign CLI" >&2
	exit 1
fi
# took PHASE START: how long a phase took, since fresh machines are where that matters.
took() { echo "deps: $1: $((SECONDS - $2)) s"; }

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps: missing Debian packages: ${missing[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	start=$SECONDS
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
	took "Debian packages" "$start"
fi

# The real cosign CLI, for interoperability tests and benchmarks.
gobin=$(go env GOPATH)/bin
if ! "$gobin/cosign" version 2>/dev/null | grep -q "GitVersion:.*${COSIGN_VERSION#v}"; then
	echo "deps: building cosign ${COSIGN_VERSION} (takes a few minutes the first time)"
	start=$SECONDS
	GOFLAGS=-buildvcs=false go install "github.com/sigstore/cosign/v2/cmd/cosign@${COSIGN_VERSION}"
	took "cosign" "$start"
fi

# A real libvirtd and QEMU (TCG), for the hook's integration tests, the benchmarks and the demo.
if [[ $(id -u) -eq 0 ]]; then
	start=$SECONDS
	bash "$(dirname "$0")/libvirt.sh" up
	took "libvirt" "$start"
	# A real OpenStack on 127.0.0.1 whose Nova uses that libvirtd, for the OpenStack tests.
	# Here rather than only in the tests: its first install takes minutes, which would count
	# against go test's -timeout; the tests run it again, which takes seconds.
	start=$SECONDS
	bash "$(dirname "$0")/../test/integration/openstack/setup.sh" up
	took "OpenStack" "$start"
fi
