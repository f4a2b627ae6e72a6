#!/usr/bin/env bash
# A small, real OpenStack (Zed, from Debian's packages) on 127.0.0.1, for vmgate's integration
# tests: Keystone, Glance (file store), Placement, Nova (api, conductor, scheduler, and compute
# with the libvirt driver on QEMU/TCG, through the libvirtd of scripts/libvirt.sh), PostgreSQL 15
# and RabbitMQ. This machine kind has no systemd: every service runs as a plain process started
# here. Safe to run again: it installs, configures and starts only what is missing, and restarts
# a service only when its configuration changed.
#
#   setup.sh [up]    install, configure, start everything, wait until a server can be booted
#   setup.sh status  what runs; exit 1 when something is down
#   setup.sh down    stop the services this script started (libvirtd stays: scripts/libvirt.sh owns it)
#
# Deviation from "no Neutron": a neutron-server (ML2, no mechanism driver, no agent, no network
# at all) runs too. Nova's API and compute call the network API even for servers booted with
# `--nic none` (networks "none", microversion 2.37), at boot and when they delete a server (to
# deallocate its ports): without a network endpoint in the catalog those calls fail. Nothing
# else of Neutron runs: no agent, no DHCP, no L3, no OVS.
#
# Credentials for tests: /etc/openstack/clouds.yaml with the clouds vmgate-admin (user admin,
# project admin, role admin), vmgate-user (user alice, project demo, role member) and
# vmgate-appcred (an application credential of admin), and /etc/openstack/<cloud>.openrc for
# each. The flavor m1.vmgate (1 vCPU, 128 MiB, 1 GiB disk) is public.
#
# Logs: /var/log/vmgate-openstack/<service>.log (rabbitmq.log and postgresql.log link to where
# those daemons write). On any failure the script prints the end of the failing service's log
# and exits non-zero.
set -Eeuo pipefail
trap 'echo "setup.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# The system's programs, not a developer's (a pyenv python3 lacks Debian's OpenStack modules).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
STATE=/var/lib/vmgate-openstack # passwords, markers of one-time steps
LOGS=/var/log/vmgate-openstack
RUN=/run/vmgate-openstack # pid files; gone at reboot, as the processes are
CLOUDS_DIR=/etc/openstack
LOCK=/run/lock/vmgate-openstack.lock
TIMEOUT=${VMGATE_OPENSTACK_TIMEOUT:-180} # seconds to wait for one service to answer
PG_VERSION=15
HOST=127.0.0.1
KEYSTONE=http://$HOST:5000
REGION=RegionOne
FLAVOR=m1.vmgate

PACKAGES=(keystone glance-api placement-api nova-api nova-conductor nova-scheduler nova-compute
	nova-compute-qemu neutron-server neutron-common rabbitmq-server python3-openstackclient
	python3-osc-placement python3-openstacksdk python3-psycopg2 "postgresql-$PG_VERSION" uwsgi-core uwsgi-plugin-python3 curl)
# Installed when missing but left out of the version stamp of one-time steps (once), which
# only the services' packages decide. genisoimage: Nova writes config drives with it
# (nova-compute only suggests it).
TOOL_PACKAGES=(genisoimage)

# The services this script runs as its own processes, in start order; down stops them in reverse.
SERVICES=(keystone glance placement neutron nova-api nova-conductor nova-scheduler nova-compute)

say() { echo "setup.sh: $*"; }
die() {
	echo "setup.sh: $*" >&2
	exit 1
}

# log_tail NAME prints the end of service NAME's log.
log_tail() {
	local f=$LOGS/$1.log
	if [[ -s $f ]]; then
		echo "--- last lines of $f:"
		tail -n 40 "$f"
	else
		echo "--- $f is empty or missing"
	fi
}

# fail NAME MESSAGE: the end of NAME's log, then MESSAGE, then exit 1.
fail() {
	log_tail "$1" >&2
	die "$1: $2"
}

# logged NAME CMD...: runs a one-time command (db sync, ...) with its output appended to
# $LOGS/NAME.log, and fails with the end of that log when it fails.
logged() {
	local name=$1
	shift
	echo "=== $(date -u +%FT%TZ) $*" >>"$LOGS/$name.log"
	"$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- || fail "$name" "'$*' failed (exit $?)"
}

# once NAME CMD...: runs CMD only if it has not succeeded before with the installed packages
# (an upgrade may bring a new database schema), and remembers it.
once() {
	local marker=$STATE/done/$1 stamp
	shift
	stamp=$(dpkg-query -W -f='${Version} ' "${PACKAGES[@]}" 2>/dev/null || true)
	[[ -f $marker && $(<"$marker") == "$stamp" ]] && return 0
	"$@"
	echo "$stamp" >"$marker"
}

# --- packages ---

install_packages() {
	local missing=() p created_policy=0
	for p in "${PACKAGES[@]}" "${TOOL_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	say "installing ${missing[*]} (a few minutes)"
	# The packages' maintainer scripts must not start the daemons their own way (with their
	# own configuration, on their default addresses): a policy-rc.d that says no, as in
	# containers, for the time of the install.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		created_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	# force-confold: scripts/libvirt.sh may have written /etc/libvirt/qemu.conf before
	# libvirt-daemon-system (pulled by nova-compute-qemu) brings its own: keep ours rather than
	# stop at dpkg's conffile prompt. Same for the service configurations written below.
	local apt=(apt-get install -y -o Dpkg::Options::=--force-confold "${missing[@]}") rc=0
	if ! "${apt[@]}" >>"$LOGS/apt.log" 2>&1; then
		say "apt-get install failed; updating the package lists once and retrying"
		{ apt-get update >>"$LOGS/apt.log" 2>&1 && "${apt[@]}" >>"$LOGS/apt.log" 2>&1; } || rc=$?
	fi
	((created_policy)) && rm -f /usr/sbin/policy-rc.d
	((rc == 0)) || fail apt "apt-get install ${missing[*]} failed"
}

# --- secrets ---

# Random passwords, made once and kept: the databases and Keystone hold them.
load_passwords() {
	local f=$STATE/passwords
	if [[ ! -s $f ]]; then
		umask 077
		{
			local k
			for k in ADMIN_PASS ALICE_PASS SERVICE_PASS DB_PASS; do
				echo "$k=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
			done
		} >"$f.tmp"
		mv "$f.tmp" "$f"
		umask 022
	fi
	# shellcheck source=/dev/null
	source "$f"
}

# --- processes ---

# running NAME: whether the process in NAME's pid file is alive and is still what we started
# (the pid was not reused).
running() {
	local pid
	pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	grep -qaF "$(cat "$RUN/$1.cmd" 2>/dev/null || echo '?')" "/proc/$pid/cmdline" 2>/dev/null || return 1
	[[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]
}

# start NAME CMD...: runs CMD detached, in its own session (so that down can stop its whole
# process group), with a service's environment rather than the caller's (a test's OS_* must
# not leak in), its output appended to $LOGS/NAME.log. Nothing when it runs already.
start() {
	local name=$1
	shift
	running "$name" && return 0
	say "starting $name"
	echo "=== $(date -u +%FT%TZ) starting: $*" >>"$LOGS/$name.log"
	# 9>&-: the service must not hold this script's lock.
	env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
	echo $! >"$RUN/$name.pid"
	basename "$1" >"$RUN/$name.cmd"
}

# stop NAME: SIGTERM to its process group, SIGKILL if it has not exited within 30 s.
stop() {
	local name=$1 pid deadline=$((SECONDS + 30))
	if running "$name"; then
		pid=$(<"$RUN/$name.pid")
		say "stopping $name ($pid)"
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				say "$name ($pid) did not exit within 30 s of SIGTERM: SIGKILL"
				kill -KILL -- "-$pid" 2>/dev/null || true
				break
			fi
			sleep 0.2
		done
	fi
	rm -f "$RUN/$name.pid" "$RUN/$name.cmd"
}

# uwsgi_start NAME PORT WSGI_FILE: a WSGI API under uwsgi, as devstack runs them.
# --die-on-term: without it SIGTERM only reloads uwsgi. 'Connection: close': uwsgi's
# --http-socket drops kept-alive connections now and then (clients see "RemoteDisconnected").
# --lazy-apps: each worker loads the application itself, no database or RPC connection made
# before the fork is shared.
uwsgi_start() {
	start "$1" uwsgi --plugin python3 --http-socket "$HOST:$2" --wsgi-file "$3" \
		--master --die-on-term --processes 2 --threads 1 --lazy-apps --enable-threads \
		--buffer-size 65535 --add-header 'Connection: close' --need-app
}

# wait_http NAME URL: until URL answers at all (any HTTP status), failing early when NAME died.
wait_http() {
	local name=$1 url=$2 deadline=$((SECONDS + TIMEOUT)) code
	while :; do
		code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" || true)
		[[ $code != 000 && $code != 5* ]] && return 0
		running "$name" || fail "$name" "exited while starting (see its log above)"
		((SECONDS < deadline)) || fail "$name" "$url did not answer within ${TIMEOUT}s (last HTTP status $code)"
		sleep 0.5
	done
}

# --- configuration ---

declare -A changed=()

# put FILE SERVICE...: makes FILE's content stdin's and, when that changed it, marks the
# services that read FILE for a restart.
put() {
	local file=$1 tmp
	shift
	tmp=$(mktemp "$file.XXXXXX")
	cat >"$tmp"
	if cmp -s "$tmp" "$file"; then
		rm -f "$tmp"
		return 0
	fi
	# Keep the package's own file once, for reference.
	[[ -f $file && ! -f $file.dist ]] && cp -p "$file" "$file.dist"
	chmod 0640 "$tmp"
	mv "$tmp" "$file"
	local s
	for s in "$@"; do changed[$s]=1; done
}

# authtoken USER: the [keystone_authtoken] section of a service that authenticates as USER.
authtoken() {
	cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KEYSTONE
auth_url = $KEYSTONE
auth_type = password
user_domain_name = Default
project_domain_name = Default
project_name = service
username = $1
password = $SERVICE_PASS
region_name = $REGION
EOF
}

# service_auth SECTION USER: keystoneauth options of a client section ([placement], [neutron]).
service_auth() {
	cat <<EOF
[$1]
auth_type = password
auth_url = $KEYSTONE
user_domain_name = Default
project_domain_name = Default
project_name = service
username = $2
password = $SERVICE_PASS
region_name = $REGION
EOF
}

db_url() { echo "postgresql+psycopg2://$1:$DB_PASS@$HOST/${2:-$1}"; }

configure() {
	mkdir -p /etc/keystone /etc/glance /etc/placement /etc/nova /etc/neutron/plugins/ml2 \
		/var/lib/glance/images /var/lib/glance/lock /var/lib/nova/instances /var/lib/nova/tmp \
		/var/lib/neutron/lock

	put /etc/keystone/keystone.conf keystone <<EOF
# Written by vmgate's test/integration/openstack/setup.sh; rewritten at every run.
[DEFAULT]
debug = false
[database]
connection = $(db_url keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = /etc/keystone/fernet-keys/
[credential]
key_repository = /etc/keystone/credential-keys/
EOF

	put /etc/glance/glance-api.conf glance <<EOF
# Written by vmgate's test/integration/openstack/setup.sh; rewritten at every run.
[DEFAULT]
bind_host = $HOST
bind_port = 9292
workers = 1
[database]
connection = $(db_url glance)
[glance_store]
stores = file
default_store = file
filesystem_store_datadir = /var/lib/glance/images/
[oslo_concurrency]
lock_path = /var/lib/glance/lock
[oslo_messaging_notifications]
driver = noop
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
$(authtoken glance)
EOF

	put /etc/placement/placement.conf placement <<EOF
# Written by vmgate's test/integration/openstack/setup.sh; rewritten at every run.
[placement_database]
connection = $(db_url placement)
[api]
auth_strategy = keystone
$(authtoken placement)
EOF

	put /etc/neutron/neutron.conf neutron <<EOF
# Written by vmgate's test/integration/openstack/setup.sh; rewritten at every run.
# Only the API, for Nova (see the top of setup.sh): ML2 without mechanism drivers, no agents,
# no extra service plugins, everything in one process.
[DEFAULT]
bind_host = $HOST
bind_port = 9696
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = rabbit://guest:guest@$HOST:5672/
api_workers = 0
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
[database]
connection = $(db_url neutron)
[oslo_concurrency]
lock_path = /var/lib/neutron/lock
$(authtoken neutron)
EOF
	put /etc/neutron/plugins/ml2/ml2_conf.ini neutron <<EOF
# Written by vmgate's test/integration/openstack/setup.sh; rewritten at every run.
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
extension_drivers =
EOF

	put /etc/nova/nova.conf nova-api nova-conductor nova-scheduler nova-compute <<EOF
# Written by vmgate's test/integration/openstack/setup.sh; rewritten at every run.
[DEFAULT]
my_ip = $HOST
transport_url = rabbit://guest:guest@$HOST:5672/
enabled_apis = osapi_compute
state_path = /var/lib/nova
instances_path = /var/lib/nova/instances
rootwrap_config = /etc/nova/rootwrap.conf
compute_driver = libvirt.LibvirtDriver
graceful_shutdown_timeout = 5
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[api_database]
connection = $(db_url nova nova_api)
[database]
connection = $(db_url nova)
[conductor]
workers = 1
[scheduler]
workers = 1
# One host: a refusal (a vmgate hook's) is the server's fault, not "Exceeded maximum number of
# retries".
max_attempts = 1
# Hosts are mapped by this script (nova-manage cell_v2 discover_hosts).
discover_hosts_in_cells_interval = -1
[libvirt]
connection_uri = qemu:///system
virt_type = qemu
cpu_mode = none
[vnc]
enabled = false
[oslo_concurrency]
lock_path = /var/lib/nova/tmp
[oslo_messaging_notifications]
driver = noop
[glance]
region_name = $REGION
$(authtoken nova)
$(service_auth placement nova)
$(service_auth neutron nova)
EOF
}

# --- PostgreSQL and RabbitMQ ---

psql_admin() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }

postgres_up() {
	ln -sfn "/var/log/postgresql/postgresql-$PG_VERSION-main.log" "$LOGS/postgresql.log"
	if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$PG_VERSION main"; then
		logged postgresql pg_createcluster "$PG_VERSION" main
	fi
	if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
		say "starting PostgreSQL $PG_VERSION"
		pg_ctlcluster "$PG_VERSION" main start 9>&- || fail postgresql "pg_ctlcluster $PG_VERSION main start failed"
		touch "$RUN/started-postgresql"
	fi
	local deadline=$((SECONDS + 60))
	until pg_isready -q -h "$HOST"; do
		((SECONDS < deadline)) || fail postgresql "not ready on $HOST:5432 within 60 s"
		sleep 0.2
	done
	local role db
	for role in keystone glance placement nova neutron; do
		if [[ -z $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'") ]]; then
			psql_admin -c "CREATE ROLE $role LOGIN PASSWORD '$DB_PASS'"
		else
			psql_admin -c "ALTER ROLE $role PASSWORD '$DB_PASS'"
		fi
	done
	for db in keystone:keystone glance:glance placement:placement nova:nova nova_api:nova nova_cell0:nova neutron:neutron; do
		[[ -n $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '${db%%:*}'") ]] ||
			psql_admin -c "CREATE DATABASE ${db%%:*} OWNER ${db#*:}"
	done
}

rabbitmq_up() {
	# Loopback only; the guest user may log in from there, which is all we need.
	mkdir -p /etc/rabbitmq
	put /etc/rabbitmq/rabbitmq-env.conf rabbitmq <<EOF
# Written by vmgate's test/integration/openstack/setup.sh.
NODE_IP_ADDRESS=$HOST
EOF
	chmod 0644 /etc/rabbitmq/rabbitmq-env.conf # read by the rabbitmq user
	ln -sfn "/var/log/rabbitmq/rabbit@$(hostname -s).log" "$LOGS/rabbitmq.log"
	if ! rabbitmqctl -q status >/dev/null 2>&1; then
		say "starting RabbitMQ"
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/rabbitmq ERL_EPMD_ADDRESS=$HOST \
			rabbitmq-server -detached 9>&- >>"$LOGS/rabbitmq-start.log" 2>&1 ||
			fail rabbitmq-start "rabbitmq-server -detached failed"
		touch "$RUN/started-rabbitmq"
	fi
	# await_startup gives up at once while the node does not answer at all: ask again.
	local deadline=$((SECONDS + TIMEOUT))
	until timeout 60 rabbitmqctl -q await_startup >/dev/null 2>&1; do
		((SECONDS < deadline)) || fail rabbitmq "not started within ${TIMEOUT}s (rabbitmqctl await_startup)"
		sleep 1
	done
}

# --- the OpenStack services ---

keystone_up() {
	if [[ ! -f /etc/keystone/fernet-keys/0 ]]; then
		logged keystone keystone-manage fernet_setup --keystone-user root --keystone-group root
	fi
	if [[ ! -f /etc/keystone/credential-keys/0 ]]; then
		logged keystone keystone-manage credential_setup --keystone-user root --keystone-group root
	fi
	once keystone-db logged keystone keystone-manage db_sync
	[[ -n ${changed[keystone]:-} ]] && stop keystone
	uwsgi_start keystone 5000 /usr/bin/keystone-wsgi-public
	wait_http keystone "$KEYSTONE/v3"
	once keystone-bootstrap logged keystone keystone-manage bootstrap \
		--bootstrap-password "$ADMIN_PASS" \
		--bootstrap-admin-url "$KEYSTONE/v3/" \
		--bootstrap-internal-url "$KEYSTONE/v3/" \
		--bootstrap-public-url "$KEYSTONE/v3/" \
		--bootstrap-region-id "$REGION"
}

# keystone_objects makes the projects, users, services and endpoints, the application
# credential and the credential files: find or create, in one Python process (one CLI call
# per object would take a minute).
keystone_objects() {
	ADMIN_PASS=$ADMIN_PASS ALICE_PASS=$ALICE_PASS SERVICE_PASS=$SERVICE_PASS \
		KEYSTONE=$KEYSTONE REGION=$REGION HOST=$HOST CLOUDS_DIR=$CLOUDS_DIR \
		python3 - >>"$LOGS/provision.log" 2>&1 <<'PY' || fail provision "creating Keystone's users, projects, services and endpoints failed"
import os, yaml, openstack
E = os.environ
host, region, url = E["HOST"], E["REGION"], E["KEYSTONE"] + "/v3"

def cloud(user, password, project):
    return {"auth": {"auth_url": url, "username": user, "password": password,
                     "project_name": project, "user_domain_name": "Default",
                     "project_domain_name": "Default"},
            "region_name": region, "identity_api_version": 3, "interface": "public"}

admin = cloud("admin", E["ADMIN_PASS"], "admin")
conn = openstack.connect(**admin["auth"], region_name=region, identity_api_version="3")
idn = conn.identity

def project(name):
    return idn.find_project(name, domain_id="default") or idn.create_project(name=name, domain_id="default")

def user(name, password, proj, role):
    u = idn.find_user(name, domain_id="default")
    if u is None:
        u = idn.create_user(name=name, password=password, domain_id="default", default_project_id=proj.id)
    idn.assign_project_role_to_user(proj, u, idn.find_role(role, ignore_missing=False))
    return u

service_project, demo = project("service"), project("demo")
for name in ("glance", "placement", "nova", "neutron"):
    user(name, E["SERVICE_PASS"], service_project, "admin")
user("alice", E["ALICE_PASS"], demo, "member")

for name, kind, endpoint in (("glance", "image", f"http://{host}:9292"),
                             ("placement", "placement", f"http://{host}:8778"),
                             ("nova", "compute", f"http://{host}:8774/v2.1"),
                             ("neutron", "network", f"http://{host}:9696")):
    svc = next((s for s in idn.services() if s.type == kind), None) or \
        idn.create_service(name=name, type=kind, description=name)
    have = {e.interface: e for e in idn.endpoints(service_id=svc.id)}
    for interface in ("public", "internal", "admin"):
        e = have.get(interface)
        if e is not None and e.url != endpoint:
            idn.delete_endpoint(e)
            e = None
        if e is None:
            idn.create_endpoint(service_id=svc.id, interface=interface, url=endpoint, region_id=region)

# The application credential: kept while it still authenticates, made anew otherwise (its
# secret is shown once, at creation).
path = os.path.join(E["CLOUDS_DIR"], "clouds.yaml")
old = {}
if os.path.exists(path):
    with open(path) as f:
        old = (yaml.safe_load(f) or {}).get("clouds", {})
appcred = old.get("vmgate-appcred")
if appcred is not None:
    try:
        openstack.connect(**appcred["auth"], auth_type="v3applicationcredential",
                          region_name=region, identity_api_version="3").authorize()
    except Exception as e:
        print("application credential no longer works, making a new one:", e)
        appcred = None
if appcred is None:
    me = idn.find_user("admin", domain_id="default", ignore_missing=False)
    for ac in idn.application_credentials(user=me):
        if ac.name == "vmgate-appcred":
            idn.delete_application_credential(me, ac)
    ac = idn.create_application_credential(user=me, name="vmgate-appcred",
                                           description="vmgate integration tests")
    appcred = {"auth_type": "v3applicationcredential",
               "auth": {"auth_url": url, "application_credential_id": ac.id,
                        "application_credential_secret": ac.secret},
               "region_name": region, "identity_api_version": 3, "interface": "public"}

clouds = {"vmgate-admin": admin,
          "vmgate-user": cloud("alice", E["ALICE_PASS"], "demo"),
          "vmgate-appcred": appcred}
os.makedirs(E["CLOUDS_DIR"], exist_ok=True)
def write(name, text):
    tmp = os.path.join(E["CLOUDS_DIR"], "." + name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(E["CLOUDS_DIR"], name))
write("clouds.yaml", "# Written by vmgate's test/integration/openstack/setup.sh.\n" +
      yaml.safe_dump({"clouds": clouds}, sort_keys=True))
for name, c in clouds.items():
    a = c["auth"]
    lines = [f"export OS_AUTH_URL={url}", "export OS_IDENTITY_API_VERSION=3",
             f"export OS_REGION_NAME={region}", "export OS_INTERFACE=public"]
    if c.get("auth_type") == "v3applicationcredential":
        lines += ["export OS_AUTH_TYPE=v3applicationcredential",
                  f"export OS_APPLICATION_CREDENTIAL_ID={a['application_credential_id']}",
                  f"export OS_APPLICATION_CREDENTIAL_SECRET={a['application_credential_secret']}"]
    else:
        lines += [f"export OS_USERNAME={a['username']}", f"export OS_PASSWORD={a['password']}",
                  f"export OS_PROJECT_NAME={a['project_name']}",
                  "export OS_USER_DOMAIN_NAME=Default", "export OS_PROJECT_DOMAIN_NAME=Default"]
    write(name + ".openrc", "# Written by vmgate's test/integration/openstack/setup.sh.\n" +
          "\n".join(lines) + "\n")
print("keystone objects and", path, "up to date")
PY
}

nova_cells() {
	logged nova-manage nova-manage api_db sync
	logged nova-manage nova-manage cell_v2 map_cell0
	# grep reads all of it: with pipefail, grep -q stopping early makes nova-manage die of
	# SIGPIPE and the test fail.
	if ! nova-manage cell_v2 list_cells 2>/dev/null | grep ' cell1 ' >/dev/null; then
		logged nova-manage nova-manage cell_v2 create_cell --name cell1
	fi
	logged nova-manage nova-manage db sync
}

# restart_changed NAME: stops NAME when its configuration changed, so that start runs it anew.
restart_changed() { if [[ -n ${changed[$1]:-} ]]; then stop "$1"; fi; }

services_up() {
	once glance-db logged glance glance-manage db_sync
	once placement-db logged placement placement-manage db sync
	once neutron-db logged neutron neutron-db-manage --config-file /etc/neutron/neutron.conf \
		--config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade head
	once nova-db nova_cells

	local s
	for s in glance placement neutron nova-api nova-conductor nova-scheduler nova-compute; do
		restart_changed "$s"
	done
	start glance glance-api --config-file /etc/glance/glance-api.conf
	uwsgi_start placement 8778 /usr/bin/placement-api
	start neutron neutron-server --config-file /etc/neutron/neutron.conf \
		--config-file /etc/neutron/plugins/ml2/ml2_conf.ini
	uwsgi_start nova-api 8774 /usr/bin/nova-api-wsgi
	start nova-conductor nova-conductor --config-file /etc/nova/nova.conf
	start nova-scheduler nova-scheduler --config-file /etc/nova/nova.conf
	start nova-compute nova-compute --config-file /etc/nova/nova.conf

	wait_http glance "http://$HOST:9292/"
	wait_http placement "http://$HOST:8778/"
	wait_http neutron "http://$HOST:9696/"
	wait_http nova-api "http://$HOST:8774/"
}

# nova_check WHAT: whether the three Nova services report up (WHAT=services), or the
# hypervisor is listed and up (WHAT=hypervisor); prints what is missing.
nova_check() {
	OS_CLIENT_CONFIG_FILE=$CLOUDS_DIR/clouds.yaml WHAT=$1 python3 - 2>&1 <<'PY'
import os, sys, openstack
conn = openstack.connect(cloud="vmgate-admin")
if os.environ["WHAT"] == "services":
    up = {s.binary for s in conn.compute.services() if s.state == "up" and s.status == "enabled"}
    missing = {"nova-conductor", "nova-scheduler", "nova-compute"} - up
    if missing:
        sys.exit("nova services not up yet: " + ", ".join(sorted(missing)))
elif not [h for h in conn.compute.hypervisors(details=True) if h.state == "up"]:
    sys.exit("no hypervisor up yet")
PY
}

# wait_nova WHAT: until nova_check WHAT passes, failing early when a Nova process died.
wait_nova() {
	local deadline=$((SECONDS + TIMEOUT)) out s
	until out=$(nova_check "$1"); do
		for s in nova-conductor nova-scheduler nova-compute; do
			running "$s" || fail "$s" "exited while starting (see its log above)"
		done
		((SECONDS < deadline)) || fail nova-compute "compute not ready within ${TIMEOUT}s: $out"
		sleep 2
	done
}

# compute_ready waits until the three Nova services report up, maps the compute host into
# cell1, waits for its hypervisor, then makes the flavor, touches Neutron once and checks every
# cloud of clouds.yaml: the last step of up, and what status checks.
compute_ready() {
	wait_nova services
	# A new compute host is mapped into cell1 only by discover_hosts; until then the scheduler
	# finds no host and the hypervisor list leaves it out.
	if ! nova-manage cell_v2 list_hosts 2>/dev/null | grep -q "| $(hostname) "; then
		logged nova-manage nova-manage cell_v2 discover_hosts --verbose
	fi
	wait_nova hypervisor
	OS_CLIENT_CONFIG_FILE=$CLOUDS_DIR/clouds.yaml FLAVOR=$FLAVOR python3 - 2>&1 <<'PY' || fail nova-api "the final check failed (output above)"
import os, openstack
flavor = os.environ["FLAVOR"]
admin = openstack.connect(cloud="vmgate-admin")
if admin.compute.find_flavor(flavor) is None:
    admin.compute.create_flavor(name=flavor, vcpus=1, ram=128, disk=1, is_public=True)
# neutron-server sets its ORM mappers up lazily: a port listing as its very first request
# answers 500 until another query has run.
list(admin.network.networks())
for name in ("vmgate-admin", "vmgate-user", "vmgate-appcred"):
    c = openstack.connect(cloud=name)
    assert c.compute.find_flavor(flavor) is not None, f"{name}: flavor {flavor} not visible"
    list(c.image.images())
    list(c.compute.servers())
print("clouds vmgate-admin, vmgate-user, vmgate-appcred answer; flavor", flavor, "visible to all")
PY
}

up() {
	local t0=$SECONDS t
	install_packages
	say "packages: $((SECONDS - t0)) s"
	# The libvirtd that nova-compute uses is the one of the other integration tests.
	t=$SECONDS
	bash "$REPO/scripts/libvirt.sh" up 9>&- || die "scripts/libvirt.sh up failed (output above)"
	load_passwords
	configure
	postgres_up
	rabbitmq_up
	say "libvirtd, PostgreSQL, RabbitMQ: $((SECONDS - t)) s"
	t=$SECONDS
	keystone_up
	keystone_objects
	say "keystone: $((SECONDS - t)) s"
	t=$SECONDS
	services_up
	compute_ready
	say "glance, placement, neutron, nova: $((SECONDS - t)) s"
	say "up in $((SECONDS - t0)) s; clouds in $CLOUDS_DIR/clouds.yaml, logs in $LOGS"
}

status() {
	local s bad=0
	for s in "${SERVICES[@]}"; do
		if running "$s"; then
			echo "$s: running (pid $(<"$RUN/$s.pid"))"
		else
			echo "$s: not running"
			bad=1
		fi
	done
	if pg_isready -q -h "$HOST"; then echo "postgresql: running"; else
		echo "postgresql: not running"
		bad=1
	fi
	if rabbitmqctl -q status >/dev/null 2>&1; then echo "rabbitmq: running"; else
		echo "rabbitmq: not running"
		bad=1
	fi
	if ((bad == 0)); then
		compute_ready
	fi
	return "$bad"
}

down() {
	local i
	for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
		stop "${SERVICES[i]}"
	done
	# PostgreSQL and RabbitMQ only when this script started them: others may use them.
	if [[ -f $RUN/started-rabbitmq ]]; then
		say "stopping RabbitMQ"
		rabbitmqctl -q stop >/dev/null 2>&1 || true
		rm -f "$RUN/started-rabbitmq"
	fi
	if [[ -f $RUN/started-postgresql ]]; then
		say "stopping PostgreSQL $PG_VERSION"
		pg_ctlcluster "$PG_VERSION" main stop || true
		rm -f "$RUN/started-postgresql"
	fi
}

main() {
	local cmd=${1:-up}
	case $cmd in
	up | status | down) ;;
	*) die "unknown command '$cmd'; usage: $0 [up|status|down]" ;;
	esac
	[[ $(id -u) -eq 0 ]] || die "needs root: it installs Debian packages and runs OpenStack's services (try: sudo $0 $cmd)"
	mkdir -p "$STATE/done" "$LOGS" "$RUN" "$CLOUDS_DIR"
	chmod 0700 "$STATE"

	# Test binaries of several packages may run this at once.
	exec 9>"$LOCK"
	flock -w 1200 9 || die "another setup.sh held $LOCK for 20 minutes"

	case $cmd in
	up) up ;;
	status) status ;;
	down) down ;;
	esac
}

main "$@"
