#!/usr/bin/env bash
# Runs a real libvirtd + QEMU (TCG) on this machine kind, which has no systemd, for vmgate's
# integration tests: the recipe in DESIGN.md ("Checked recipes on this machine kind").
# Safe to run again: it installs, configures and starts only what is missing.
#
#   scripts/libvirt.sh [up]    install, configure, start virtlogd and libvirtd, wait until they answer
#   scripts/libvirt.sh restart stop libvirtd cleanly and start it again; QEMU domains keep running
#   scripts/libvirt.sh hup     SIGHUP libvirtd and wait until it has looked for hook scripts again
#   scripts/libvirt.sh down    stop libvirtd (and virtlogd when no QEMU runs)
#
# The daemons run with a service's environment (as systemd would give them), not the caller's:
# hooks inherit libvirtd's PATH. libvirtd logs warnings, and the debug messages of its hook
# code (which hooks it found, each call), to /var/log/libvirt/libvirtd.log: `hup` reads them to
# know that libvirtd has looked for hooks again.
set -Eeuo pipefail
trap 'echo "libvirt.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# procps: pgrep, which this script uses and a minimal Debian lacks.
PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils procps)
URI=qemu:///system
QEMU_CONF=/etc/libvirt/qemu.conf
LOG=/var/log/libvirt/libvirtd.log
SOCK=/var/run/libvirt/libvirt-sock
TIMEOUT=${VMGATE_LIBVIRT_TIMEOUT:-30} # seconds to wait for a daemon to answer or to stop
LOCK=/run/lock/vmgate-libvirt.lock
LOG_FILTERS=1:util.hook
CONF_MARK="# vmgate (scripts/libvirt.sh): QEMU as root, unconfined, without cgroups (no systemd here)"

say() { echo "libvirt.sh: $*"; }
die() {
	echo "libvirt.sh: $*" >&2
	exit 1
}

# pid_of NAME prints the pid of the running daemon NAME, if any: the oldest process of that
# name (libvirtd's children are called libvirtd too until they exec) that is not a zombie.
pid_of() { pgrep -o -x -r R,S,D,T "$1" || true; }

# log_tail shows libvirtd's last errors and warnings.
log_tail() {
	if [[ -s $LOG ]]; then
		echo "--- last lines of $LOG (without debug):"
		grep -v ' debug : ' "$LOG" | tail -n 20
	else
		echo "--- $LOG is empty or missing"
	fi
}

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Without recommends: they would pull QEMU for every architecture and libvirt's systemd units.
	# force-confold: keep our edited qemu.conf rather than stop at dpkg's conffile prompt.
	local apt=(apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}")
	# Update the package lists only when the install cannot do without it.
	if ! "${apt[@]}" >/tmp/vmgate-libvirt-apt.log 2>&1; then
		say "apt-get install failed; updating the package lists once and retrying"
		apt-get update -qq >>/tmp/vmgate-libvirt-apt.log 2>&1 || {
			tail -n 20 /tmp/vmgate-libvirt-apt.log >&2
			die "apt-get update failed (log above)"
		}
		"${apt[@]}" >>/tmp/vmgate-libvirt-apt.log 2>&1 || {
			tail -n 20 /tmp/vmgate-libvirt-apt.log >&2
			die "apt-get install ${missing[*]} failed (log above)"
		}
	fi
	rm -f /tmp/vmgate-libvirt-apt.log
}

# set_conf KEY VALUE makes "KEY = VALUE" the one active setting of KEY in qemu.conf (the
# commented examples stay) and sets conf_changed when it had to write.
conf_changed=0
set_conf() {
	local key=$1 line="$1 = $2" active
	active=$(grep -E "^[[:space:]]*${key}[[:space:]]*=" "$QEMU_CONF" || true)
	[[ $active == "$line" ]] && return 0
	[[ -z $active ]] || sed -i -E "/^[[:space:]]*${key}[[:space:]]*=/d" "$QEMU_CONF"
	grep -qxF "$CONF_MARK" "$QEMU_CONF" || echo "$CONF_MARK" >>"$QEMU_CONF"
	echo "$line" >>"$QEMU_CONF"
	conf_changed=1
}

configure() {
	mkdir -p /var/log/libvirt /var/run/libvirt
	# libvirt's QEMU driver looks this user up even when qemu.conf says root, and without it
	# fails ("Failed to parse user 'libvirt-qemu'"); Debian creates it in libvirt-daemon-system.
	getent passwd libvirt-qemu >/dev/null ||
		useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
	# Debian ships qemu.conf in libvirt-daemon-system (systemd units and all), which we skip:
	# start from an empty file, libvirt's built-in defaults apply to everything else.
	[[ -f $QEMU_CONF ]] || : >"$QEMU_CONF"
	set_conf security_driver '"none"'
	set_conf cgroup_controllers '[ ]'
	set_conf user '"root"'
	set_conf group '"root"'
}

# daemon NAME runs NAME -d with a service's environment and no descriptor but 0-2: it must
# not inherit (and so hold forever) this script's lock, or a lock its caller holds (flock).
daemon() {
	(
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
		done
		exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			LIBVIRT_LOG_OUTPUTS="1:file:$LOG" LIBVIRT_LOG_FILTERS="$LOG_FILTERS" "$1" -d
	)
}

start_virtlogd() {
	[[ -n $(pid_of virtlogd) ]] && return 0
	say "starting virtlogd"
	daemon virtlogd || die "virtlogd -d failed"
}

start_libvirtd() {
	[[ -n $(pid_of libvirtd) ]] && return 0
	say "starting libvirtd"
	daemon libvirtd || {
		log_tail >&2
		die "libvirtd -d failed"
	}
}

# ours PID: whether that libvirtd was started by this script, and so logs what hup waits for.
ours() {
	tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | grep -qxF "LIBVIRT_LOG_FILTERS=$LOG_FILTERS"
}

wait_ready() {
	local deadline=$((SECONDS + TIMEOUT)) err
	until err=$(virsh -c "$URI" version 2>&1 >/dev/null); do
		if [[ -z $(pid_of libvirtd) ]]; then
			log_tail >&2
			die "libvirtd exited while starting; virsh said: $err"
		fi
		if ((SECONDS >= deadline)); then
			log_tail >&2
			die "libvirtd did not answer on $URI within ${TIMEOUT}s (socket $SOCK); virsh said: $err"
		fi
		sleep 0.1
	done
}

# stop NAME: SIGTERM, then wait for it to exit. No SIGKILL: a libvirtd that does not stop is a
# problem to see, not to hide.
stop() {
	local pid deadline=$((SECONDS + TIMEOUT))
	pid=$(pid_of "$1")
	[[ -n $pid ]] || return 0
	say "stopping $1 ($pid)"
	kill -TERM "$pid"
	while [[ -n $(pid_of "$1") ]]; do
		((SECONDS < deadline)) || die "$1 ($pid) did not exit within ${TIMEOUT}s of SIGTERM"
		sleep 0.1
	done
}

up() {
	install_packages
	configure
	start_virtlogd
	local pid
	pid=$(pid_of libvirtd)
	if [[ -n $pid ]] && ((conf_changed)); then
		say "$QEMU_CONF changed: restarting libvirtd so that it reads it"
		stop libvirtd
	elif [[ -n $pid ]] && ! ours "$pid"; then
		say "libvirtd ($pid) was started elsewhere, without the hook log that hup needs: restarting it"
		stop libvirtd
	fi
	start_libvirtd
	wait_ready
}

# hup sends SIGHUP and returns once libvirtd has looked for hook scripts again: a caller may
# start a domain right after and rely on a hook it has just installed. libvirtd ignores a SIGHUP
# that comes while it is still starting or reloading (it logs "reload ignored"): then send again.
hup() {
	local pid offset new deadline tries found
	pid=$(pid_of libvirtd)
	[[ -n $pid ]] || die "libvirtd is not running; run '$0 up' first"
	ours "$pid" || die "libvirtd ($pid) was not started by this script, so its log does not show when it has reloaded; run '$0 up'"
	for ((tries = 1; ; tries++)); do
		offset=$(stat -c %s "$LOG")
		kill -HUP "$pid"
		deadline=$((SECONDS + TIMEOUT))
		while :; do
			new=$(tail -c "+$((offset + 1))" "$LOG")
			# The reload rescans the drivers' hooks in order daemon, qemu, lxc, network,
			# libxl, bhyve: a message about bhyve's means the qemu hooks are settled.
			if grep -q "hook script /etc/libvirt/hooks/bhyve" <<<"$new"; then
				found=$(grep -o "Found hook script /etc/libvirt/hooks/qemu[^ ]*" <<<"$new" | head -n 1 || true)
				if [[ -n $found ]]; then
					say "libvirtd reloaded; qemu hooks found (${found#Found hook script }, maybe more)"
				else
					say "libvirtd reloaded; no qemu hooks"
				fi
				return 0
			fi
			grep -q "reload ignored" <<<"$new" && break
			[[ -n $(pid_of libvirtd) ]] || {
				log_tail >&2
				die "libvirtd exited after SIGHUP"
			}
			((SECONDS < deadline)) || {
				log_tail >&2
				die "libvirtd did not rescan its hooks within ${TIMEOUT}s of SIGHUP"
			}
			sleep 0.05
		done
		((tries < 100)) || die "libvirtd ignored SIGHUP $tries times (it was reloading each time)"
		sleep 0.1
	done
}

main() {
	local cmd=${1:-up}
	case $cmd in
	up | restart | hup | down) ;;
	*) die "unknown command '$cmd'; usage: $0 [up|restart|hup|down]" ;;
	esac
	[[ $(id -u) -eq 0 ]] || die "needs root: it installs Debian packages, edits $QEMU_CONF and runs libvirtd as root (try: sudo $0 $cmd)"

	# Test binaries of several packages may run this at once. /run/lock is made at boot by
	# systemd or initscripts; a container or chroot may have an empty /run.
	mkdir -p "$(dirname "$LOCK")"
	exec 9>"$LOCK"
	flock -w 600 9 || die "another scripts/libvirt.sh held $LOCK for 10 minutes"

	case $cmd in
	up) up ;;
	restart)
		command -v libvirtd >/dev/null || die "libvirtd is not installed; run '$0 up' first"
		stop libvirtd
		start_virtlogd
		start_libvirtd
		wait_ready
		;;
	hup) hup ;;
	down)
		stop libvirtd
		if pgrep -x 'qemu-system-.*' >/dev/null; then
			say "QEMU still runs (domains survive libvirtd); leaving virtlogd, which holds their logs"
		else
			stop virtlogd
		fi
		;;
	esac
}

main "$@"
