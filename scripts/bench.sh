#!/usr/bin/env bash
# Runs vmgate's benchmarks and prints, for each figure, the median and its ratio to a
# baseline measured in the same run (the machine is shared and noisy: compare ratios).
# The results, with this script's output, are kept in docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(go env GOPATH)/bin:$PATH"
COUNT=${BENCH_COUNT:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[[ $(id -u) -eq 0 ]] || { echo "bench: run as root (it starts libvirtd and QEMU domains)" >&2; exit 1; }

# median reads numbers, one a line, and prints their median.
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) exit 1; if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# gobench PKG REGEX [BENCHTIME]: runs Go benchmarks COUNT times; leaves "name ns/op" lines in $work/go.txt.
gobench() {
	go test -tags libvirt_dlopen -run '^$' -bench "$2" -benchtime "${3:-1s}" -count "$COUNT" "$1" |
		awk '/^Benchmark/ {name=$1; sub(/-[0-9]+$/, "", name); for (i=2;i<=NF;i++) if ($(i+1)=="ns/op") print name, $i}' >>"$work/go.txt"
}
# med NAME: median ns/op of one Go benchmark.
med() { awk -v n="$1" '$1==n {print $2}' "$work/go.txt" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
ms() { awk -v x="$1" 'BEGIN {printf "%.3f ms", x/1e6}'; }

echo "# vmgate benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(go version | cut -d' ' -f3), median of $COUNT"
echo

if [[ -z ${BENCH_ONLY:-} ]]; then
echo "## Image lists: sync of a signed 10,000-image list"
echo "command: go test ./internal/policy -bench 'Sync|DecodeBaseline' -count $COUNT"
gobench ./internal/policy 'BenchmarkSync$|BenchmarkDecodeBaseline$' 20x
s=$(med BenchmarkSync/images=10000); d=$(med BenchmarkDecodeBaseline/images=10000)
echo "- sync (verify, parse, check, archive, history, state, snapshot): $(ms "$s") (target ≤ 1000 ms)"
echo "- baseline, read + json decode of the same list: $(ms "$d")"
echo "- ratio sync / baseline: $(ratio "$s" "$d")"
echo

echo "## Snapshot lookup (open + one lookup, as the hook does per start)"
echo "command: go test ./internal/policy/snapshot -bench Lookup -count $COUNT"
gobench ./internal/policy/snapshot 'BenchmarkLookup' 2000x
l10=$(med BenchmarkLookup/images=10); l10k=$(med BenchmarkLookup/images=10000); l100k=$(med BenchmarkLookup/images=100000)
echo "- 10 images: $(ms "$l10") (baseline)"
echo "- 10,000 images: $(ms "$l10k"), ratio $(ratio "$l10k" "$l10")"
echo "- 100,000 images: $(ms "$l100k"), ratio $(ratio "$l100k" "$l10") (target ≤ 2)"
echo

echo "## vmgate list verify and cosign verify-blob, same 10,000-image list"
go run ./test/tools/mklist -n 10000 -o "$work/image.list"
(cd "$work" && COSIGN_PASSWORD=bench cosign generate-key-pair >/dev/null 2>&1)
COSIGN_PASSWORD=bench cosign sign-blob --yes --key "$work/cosign.key" --tlog-upload=false \
	--output-signature "$work/image.list.sig" "$work/image.list" >/dev/null 2>&1
vm="bin/vmgate list verify --key $work/cosign.pub --signature $work/image.list.sig $work/image.list"
# cosign verify-blob looks for sigstore's TUF repository even with --key: no network for it,
# and the same namespace for both, so that the comparison is fair.
vm="unshare --net $vm"
co="unshare --net cosign verify-blob --key $work/cosign.pub --signature $work/image.list.sig --insecure-ignore-tlog $work/image.list"
echo "command: hyperfine -N --warmup 3 --runs 30 '$vm' '$co'"
hyperfine -N --warmup 3 --runs 30 --export-csv "$work/verify.csv" "$vm" "$co" >/dev/null 2>&1
v=$(awk -F, 'NR==2 {print $4*1e9}' "$work/verify.csv"); c=$(awk -F, 'NR==3 {print $4*1e9}' "$work/verify.csv")
echo "- vmgate list verify: $(ms "$v")"
echo "- cosign verify-blob (baseline): $(ms "$c")"
echo "- ratio vmgate / cosign: $(ratio "$v" "$c")"
echo

fi

# node DIR N: a node whose snapshot endorses DIR/base.raw among N made-up images, from a list
# signed with cosign and synced by vmgate; DIR/domain.xml is a plain domain on that image.
node() {
	local dir=$1 n=$2 bindir=${3:-bin}
	mkdir -p "$dir"
	head -c 1048576 /dev/urandom >"$dir/base.raw"
	go run ./test/tools/mklist -n "$n" -image "$dir/base.raw" -o "$dir/image.list"
	COSIGN_PASSWORD=bench cosign sign-blob --yes --key "$work/cosign.key" --tlog-upload=false \
		--output-signature "$dir/image.list.sig" "$dir/image.list" >/dev/null 2>&1
	cat >"$dir/vmgate.yaml" <<-YAML
		state_dir: $dir/state
		subscriptions: [{name: bench, url: "file://$dir/image.list", cosign_keys: [$work/cosign.pub]}]
	YAML
	"$bindir/vmgate" --config "$dir/vmgate.yaml" --log-level warn sync >/dev/null
	cat >"$dir/domain.xml" <<-XML
		<domain type='qemu'><name>bench</name><uuid>3f2e1d0c-9b8a-4766-8554-433221100fed</uuid>
		<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$dir/base.raw'/><target dev='vda'/></disk>
		<interface type='network'><mac address='52:54:00:ab:cd:ef'/><source network='default'/></interface></devices></domain>
	XML
	# The first start hashes the base image; what is measured is every start after it.
	VMGATE_CONFIG="$dir/vmgate.yaml" "$bindir/vmgate-hook" bench prepare begin - <"$dir/domain.xml"
}

# bench_blocks: what the site's blocks cost the hook and what a block costs the operator.
# BENCH_ONLY=blocks runs this section alone.
bench_blocks() {
	echo "## Site blocks: the hook with 10,000 blocks, and vmgate block"
	[[ -e $work/cosign.key ]] || (cd "$work" && COSIGN_PASSWORD=bench cosign generate-key-pair >/dev/null 2>&1)
	echo "command: go test ./internal/admission -bench DecideBlocks -count $COUNT (open the snapshot, judge a Nova instance: 10,000 images, 0 or 10,000 blocks)"
	gobench ./internal/admission 'BenchmarkDecideBlocks' 2000x
	d0=$(med BenchmarkDecideBlocks/blocks=0); d10k=$(med BenchmarkDecideBlocks/blocks=10000)
	echo "- decision, no blocks (baseline): $(ms "$d0")"
	echo "- decision, 10,000 blocks: $(ms "$d10k"), ratio $(ratio "$d10k" "$d0") (target ≤ 1.2)"
	node "$work/nb0" 10
	node "$work/nb10k" 10
	# 10,000 user blocks written as vmgate keeps them, brought into the snapshot by a sync.
	awk 'BEGIN {printf "{\"blocks\":["; for (i = 0; i < 10000; i++) printf "%s{\"kind\":\"user\",\"target\":\"user-%d\",\"reason\":\"bench\",\"at\":\"2026-11-22T00:00:00Z\",\"by\":\"bench\",\"source\":\"cli\"}", (i ? "," : ""), i; print "]}"}' >"$work/nb10k/state/blocks.json"
	bin/vmgate --config "$work/nb10k/vmgate.yaml" --log-level warn sync >/dev/null
	bin/vmgate --config "$work/nb10k/vmgate.yaml" block image "$(sha512sum "$work/nb10k/base.raw" | cut -c1-128)" --reason bench --until 1s >/dev/null
	sleep 1.1 # an expired block: looked up on every start, refuses nothing
	h0="VMGATE_CONFIG=$work/nb0/vmgate.yaml bin/vmgate-hook bench prepare begin - <$work/nb0/domain.xml"
	h10k="VMGATE_CONFIG=$work/nb10k/vmgate.yaml bin/vmgate-hook bench prepare begin - <$work/nb10k/domain.xml"
	echo "command: 3 rounds of hyperfine --shell=bash --warmup 5 --runs 50 '<hook, no blocks>' '<hook, 10,000 blocks>'"
	for r in 1 2 3; do
		hyperfine --shell=bash --warmup 5 --runs 50 --export-csv "$work/blocks$r.csv" "$h0" "$h10k" >/dev/null 2>&1
	done
	bcol() { for r in 1 2 3; do awk -F, -v row="$1" 'NR==row {print $4*1e9}' "$work/blocks$r.csv"; done | median; }
	brat() { for r in 1 2 3; do awk -F, 'NR==2 {x=$4} NR==3 {y=$4} END {print y/x}' "$work/blocks$r.csv"; done | median; }
	echo "- hook, no blocks (baseline): $(ms "$(bcol 2)")"
	echo "- hook, 10,000 blocks: $(ms "$(bcol 3)"), ratio $(brat | xargs printf %.2f) (target ≤ 1.2)"
	echo "command: go test ./internal/policy -bench 'BenchmarkBlock\$|BenchmarkSync\$' -count $COUNT"
	gobench ./internal/policy 'BenchmarkBlock$|BenchmarkSync$' 10x
	bk=$(med BenchmarkBlock/images=10000); sy=$(med BenchmarkSync/images=10000)
	echo "- vmgate block, snapshot of 10,000 images rewritten: $(ms "$bk")"
	echo "- baseline, a first sync of the same list: $(ms "$sy"); ratio block / sync $(ratio "$bk" "$sy")"
	echo
}

# bench_gate: the hook's allow path on a plain domain whose disk is a qcow2 overlay of an
# endorsed base (the chain, the overlay and the per-host memory judged), against the hook
# of BENCH_BASE (the commit before the gate judged chains, overlays, devices and Nova disks)
# and against the durable floor: a Go program that appends 1 KiB and fdatasyncs.
# BENCH_ONLY=gate runs this section alone.
bench_gate() {
	local rev=${BENCH_BASE:-a08211c}
	echo "## The gate: hook allow path against the hook of $rev and the durable floor"
	[[ -e $work/cosign.key ]] || (cd "$work" && COSIGN_PASSWORD=bench cosign generate-key-pair >/dev/null 2>&1)
	mkdir -p "$work/old/src" "$work/old/bin"
	git archive "$rev" | tar -x -C "$work/old/src"
	(cd "$work/old/src" && go build -tags libvirt_dlopen -o "$work/old/bin/vmgate" ./cmd/vmgate && go build -o "$work/old/bin/vmgate-hook" ./cmd/vmgate-hook)
	go build -o "$work/appendsync" ./test/tools/appendsync
	local v
	for v in new old; do
		local bindir=bin
		[[ $v == old ]] && bindir=$work/old/bin
		node "$work/g$v" 10 "$bindir"
		qemu-img create -q -f qcow2 -b "$work/g$v/base.raw" -F raw "$work/g$v/top.qcow2"
		sed -e "s|type='raw'/><source file='$work/g$v/base.raw'|type='qcow2'/><source file='$work/g$v/top.qcow2'|" "$work/g$v/domain.xml" >"$work/g$v/overlay.xml"
		grep -q top.qcow2 "$work/g$v/overlay.xml" || { echo "bench: overlay domain not written" >&2; exit 1; }
		VMGATE_CONFIG="$work/g$v/vmgate.yaml" "$bindir/vmgate-hook" bench prepare begin - <"$work/g$v/overlay.xml" ||
			{ echo "bench: the $v hook refused the overlay domain" >&2; exit 1; }
	done
	local hnew="VMGATE_CONFIG=$work/gnew/vmgate.yaml bin/vmgate-hook bench prepare begin - <$work/gnew/overlay.xml"
	local hold="VMGATE_CONFIG=$work/gold/vmgate.yaml $work/old/bin/vmgate-hook bench prepare begin - <$work/gold/overlay.xml"
	local floor="$work/appendsync $work/appendsync.out"
	echo "command: 3 rounds of hyperfine --shell=bash --warmup 5 --runs 50 '<hook>' '<hook of $rev>' '$floor'"
	for r in 1 2 3; do
		hyperfine --shell=bash --warmup 5 --runs 50 --export-csv "$work/gate$r.csv" "$hnew" "$hold" "$floor" >/dev/null 2>&1
	done
	gcol() { for r in 1 2 3; do awk -F, -v row="$1" 'NR==row {print $4*1e9}' "$work/gate$r.csv"; done | median; }
	grat() { for r in 1 2 3; do awk -F, -v a="$1" -v b="$2" 'NR==a {x=$4} NR==b {y=$4} END {print x/y}' "$work/gate$r.csv"; done | median | xargs printf %.2f; }
	echo "- hook, qcow2 overlay on an endorsed base: $(ms "$(gcol 2)"), ratio to the floor $(grat 2 4), to the hook of $rev $(grat 2 3) (target ≤ 1.5)"
	echo "- hook of $rev, the same domain: $(ms "$(gcol 3)"), ratio to the floor $(grat 3 4)"
	echo "- floor, a Go program that appends 1 KiB and fdatasyncs: $(ms "$(gcol 4)")"
	echo "command: go test ./internal/admission -bench 'DecideNova' -count $COUNT"
	gobench ./internal/admission 'BenchmarkDecideNova' 2000x
	awk '$1 ~ /^BenchmarkDecideNova/ {print $1}' "$work/go.txt" | sort -u | while read -r name; do
		echo "- $name: $(ms "$(med "$name")")"
	done
	echo
}
case ${BENCH_ONLY:-} in
"") bench_blocks; bench_gate ;;
blocks) bench_blocks; exit 0 ;;
gate) bench_gate; exit 0 ;;
*) echo "bench: BENCH_ONLY is blocks or gate" >&2; exit 1 ;;
esac

echo "## Hook: prepare begin, allow path, durable record included"
go build -o "$work/appendsync" ./test/tools/appendsync
node "$work/n10" 10
node "$work/n100k" 100000
hook10="VMGATE_CONFIG=$work/n10/vmgate.yaml bin/vmgate-hook bench prepare begin - <$work/n10/domain.xml"
hook100k="VMGATE_CONFIG=$work/n100k/vmgate.yaml bin/vmgate-hook bench prepare begin - <$work/n100k/domain.xml"
base="$work/appendsync $work/appendsync.out"
# hyperfine runs all of one command's runs, then the next's; the disk's fsync time drifts,
# so take three rounds and the median of each figure over them.
echo "command: 3 rounds of hyperfine --shell=bash --warmup 5 --runs 50 '<hook, 10 images>' '<hook, 100,000 images>' '$base'"
for r in 1 2 3; do
	hyperfine --shell=bash --warmup 5 --runs 50 --export-csv "$work/hook$r.csv" "$hook10" "$hook100k" "$base" >/dev/null 2>&1
done
col() { for r in 1 2 3; do awk -F, -v row="$1" 'NR==row {print $4*1e9}' "$work/hook$r.csv"; done | median; }
rcol() { for r in 1 2 3; do awk -F, -v a="$1" -v b="$2" 'NR==a {x=$4} NR==b {y=$4} END {print x/y}' "$work/hook$r.csv"; done | median; }
h10=$(col 2); h100k=$(col 3); b=$(col 4)
echo "- hook, snapshot of 10 images: $(ms "$h10") (target ≤ 5 ms), ratio to baseline $(rcol 2 4 | xargs printf %.2f) (target ≤ 3)"
echo "- hook, snapshot of 100,000 images: $(ms "$h100k"), ratio to 10 images $(rcol 3 2 | xargs printf %.2f) (target ≤ 1.2)"
echo "- baseline, a Go program that appends 1 KiB and fdatasyncs: $(ms "$b")"
rss=$(for i in 1 2 3 4 5; do VMGATE_CONFIG="$work/n100k/vmgate.yaml" /usr/bin/time -f %M bin/vmgate-hook bench prepare begin - <"$work/n100k/domain.xml" 2>&1 >/dev/null | tail -1; done | median)
echo "- peak RSS of the hook, 100,000 images (/usr/bin/time -f %M, median of 5): $((rss / 1024)) MiB (target ≤ 30 MB)"
echo

echo "## Hook: 32 started at once"
node "$work/burst" 10 # its journal holds the one record of the first start
start=$(date +%s%N)
seq 32 | xargs -P 32 -I{} sh -c "VMGATE_CONFIG=$work/burst/vmgate.yaml bin/vmgate-hook burst-{} prepare begin - <$work/burst/domain.xml || echo REFUSED {}" >"$work/burst.txt"
end=$(date +%s%N)
refused=$(grep -c REFUSED "$work/burst.txt" || true)
records=$(grep -c '"event":"admission.allow"' "$work/burst/state/trace/journal.jsonl")
verify=$(bin/vmgate --config "$work/burst/vmgate.yaml" trace verify 2>&1 | tail -1)
echo "command: seq 32 | xargs -P 32 vmgate-hook burst-N prepare begin -"
echo "- $((32 - refused)) of 32 allowed in $(ms $((end - start))); admission.allow records: $records (want 33 with the first start); vmgate trace verify: $verify"
echo

echo "## virsh start of one domain, without and with the hook"
bash scripts/libvirt.sh up >/dev/null
hookdir=/etc/libvirt/hooks/qemu.d
[[ ! -e $hookdir/vmgate ]] || { echo "bench: $hookdir/vmgate exists; remove it first" >&2; exit 1; }
qemu-img create -q -f qcow2 -b "$work/n10/base.raw" -F raw "$work/vm.qcow2"
cat >"$work/vm.xml" <<XML
<domain type='qemu'><name>vmgate-bench</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$work/vm.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>
XML
virsh -q -c qemu:///system define "$work/vm.xml" >/dev/null
cleanup_vm() {
	virsh -q -c qemu:///system destroy vmgate-bench >/dev/null 2>&1 || true
	virsh -q -c qemu:///system undefine vmgate-bench >/dev/null 2>&1 || true
	rm -f "$hookdir/vmgate"
	bash scripts/libvirt.sh hup >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup_vm EXIT
start="virsh -q -c qemu:///system start vmgate-bench"
stopvm="virsh -q -c qemu:///system destroy vmgate-bench >/dev/null 2>&1 || true"
echo "command: hyperfine --runs 15 --prepare '$stopvm' '$start' (without, then with $hookdir/vmgate)"
hyperfine --runs 15 --prepare "$stopvm" --export-csv "$work/without.csv" "$start" >/dev/null 2>&1
mkdir -p "$hookdir"
printf '#!/bin/sh\nVMGATE_CONFIG=%s exec %s "$@"\n' "$work/n10/vmgate.yaml" "$PWD/bin/vmgate-hook" >"$hookdir/.vmgate.tmp"
chmod 0755 "$hookdir/.vmgate.tmp" && mv "$hookdir/.vmgate.tmp" "$hookdir/vmgate"
bash scripts/libvirt.sh hup >/dev/null
hyperfine --runs 15 --prepare "$stopvm" --export-csv "$work/with.csv" "$start" >/dev/null 2>&1
grep -q '"domain":{"name":"vmgate-bench"' "$work/n10/state/trace/journal.jsonl" || { echo "bench: the hook did not run" >&2; exit 1; }
wo=$(awk -F, 'NR==2 {print $4*1e9}' "$work/without.csv"); wi=$(awk -F, 'NR==2 {print $4*1e9}' "$work/with.csv")
echo "- virsh start without the hook (baseline): $(ms "$wo")"
echo "- virsh start with the hook: $(ms "$wi"), ratio $(ratio "$wi" "$wo")"
echo

echo "## vmgate terminate --revoked --dry-run over 1,000 domains (libvirt's test driver)"
echo "command: go test -tags libvirt_dlopen ./internal/terminate -bench 'HostDryRun|HostListBaseline' -count $COUNT"
gobench ./internal/terminate 'BenchmarkHostDryRun$|BenchmarkHostListBaseline$' 3x
t=$(med BenchmarkHostDryRun); tb=$(med BenchmarkHostListBaseline)
echo "- connect, list, read every live XML, judge, plan: $(ms "$t") (target ≤ 2000 ms)"
echo "- baseline, connect, list and read every live XML only: $(ms "$tb")"
echo "- ratio dry run / baseline: $(ratio "$t" "$tb")"
# The same through the binary: a node whose snapshot endorses base.raw (node above); every
# 100th of 1,000 running test-driver domains runs an image no list names, so is a target.
node "$work/term" 10
head -c 1048576 /dev/urandom >"$work/term/unknown.raw"
{
	echo "<node>"
	for i in $(seq 0 999); do
		img=$work/term/base.raw
		((i % 100)) || img=$work/term/unknown.raw
		printf "<domain type='test'><name>vm-%04d</name><memory>8192</memory><os><type>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/><target dev='vda'/></disk></devices></domain>\n" "$i" "$img"
	done
	echo "</node>"
} >"$work/term/node.xml"
sleep 3 # the hash cache keys only files older than its 2 s racy window; real images are older
dry="bin/vmgate --config $work/term/vmgate.yaml terminate --revoked --dry-run --connect test://$work/term/node.xml"
$dry >"$work/term/dry.txt" 2>&1 && { echo "bench: the dry run found no target" >&2; exit 1; }
grep -q "1000 running VMs: 990 endorsed, 0 exempt, 10 targets" "$work/term/dry.txt" || { cat "$work/term/dry.txt" >&2; exit 1; }
vl="virsh -c test://$work/term/node.xml list --all"
echo "command: hyperfine -N -i --warmup 2 --runs 10 '$dry' '$vl'"
hyperfine -N -i --warmup 2 --runs 10 --export-csv "$work/term.csv" "$dry" "$vl" >/dev/null 2>&1
d=$(awk -F, 'NR==2 {print $4*1e9}' "$work/term.csv"); v=$(awk -F, 'NR==3 {print $4*1e9}' "$work/term.csv")
echo "- vmgate terminate --revoked --dry-run (exit 3, 10 targets): $(ms "$d") (target ≤ 2000 ms)"
echo "- baseline, virsh list --all on the same node file: $(ms "$v")"
echo "- ratio vmgate / virsh: $(ratio "$d" "$v")"
echo

echo "## Trace records: append, query, ship"
echo "command: go test ./internal/journal -bench 'BenchmarkAppend(Baseline|Parallel)?\$' -benchtime 500x -count $COUNT"
gobench ./internal/journal 'BenchmarkAppend$|BenchmarkAppendBaseline$|BenchmarkAppendParallel$' 500x
a=$(med BenchmarkAppend); ab=$(med BenchmarkAppendBaseline); ap=$(med BenchmarkAppendParallel/own); as=$(med BenchmarkAppendParallel/shared)
rate() { awk -v ns="$1" 'BEGIN {printf "%.0f records/s", 1e9/ns}'; }
echo "- one writer (1 KiB record, fdatasync each): $(ms "$a"), $(rate "$a"); ratio to baseline $(ratio "$a" "$ab")"
echo "- 8 writers, each its own file handle (like hook processes): $(ms "$ap") per record, $(rate "$ap")"
echo "- 8 writers sharing one journal (a daemon's goroutines): $(ms "$as") per record, $(rate "$as")"
echo "- baseline, 1 KiB append + fdatasync to a plain file: $(ms "$ab"), $(rate "$ab")"
echo "command: VMGATE_BENCH_RECORDS=1000000 go test ./internal/trace/index -bench 'QueryIPAt|QueryIP\$' -count $COUNT (builds a 1,000,000-record index first, about 2 minutes)"
gobench ./internal/trace/index 'BenchmarkQueryIPAt$|BenchmarkQueryIP$' 200x
q=$(med BenchmarkQueryIPAt); qi=$(med BenchmarkQueryIP)
echo "- --ip A --at T over 1,000,000 records: $(ms "$q") (target ≤ 20 ms)"
echo "- --ip A alone (every record of the address, about 250): $(ms "$qi"); ratio --at / --ip $(ratio "$q" "$qi")"
echo "command: go test ./internal/ship -bench ShipTLS -count $COUNT (20,000 records to a TLS receiver on loopback)"
go test -run '^$' -bench 'BenchmarkShipTLS$' -benchtime 1x -count "$COUNT" ./internal/ship |
	awk '/records\/s/ {for (i=2;i<=NF;i++) if ($(i+1)=="records/s") print $i}' >"$work/ship.txt"
sr=$(median <"$work/ship.txt")
echo "- shipping, RFC 5424 over TLS with octet counting: $(awk -v r="$sr" 'BEGIN {printf "%.0f", r}') records/s (target ≥ 20,000); ratio to the one-writer append rate $(awk -v r="$sr" -v a="$a" 'BEGIN {printf "%.1f", r/(1e9/a)}')"
echo

echo "## vmgate serve: what the daemon adds (metrics over a 1,000,000-record journal)"
echo "command: VMGATE_BENCH_RECORDS=1000000 go test ./internal/metrics -bench 'Scrape|Follow' -count $COUNT (writes a 1,000,000-record journal first)"
VMGATE_BENCH_RECORDS=1000000 gobench ./internal/metrics 'BenchmarkScrape$|BenchmarkScrapeBaseline$|BenchmarkFollowNew$' 50x
VMGATE_BENCH_RECORDS=1000000 gobench ./internal/metrics 'BenchmarkFollowWhole$' 3x
sc=$(med BenchmarkScrape); scb=$(med BenchmarkScrapeBaseline); fn=$(med BenchmarkFollowNew); fw=$(med BenchmarkFollowWhole)
echo "- /metrics scrape, journal already followed, snapshot of 1,000 images, one sink: $(ms "$sc"); ratio to a Go exporter's bare scrape ($(ms "$scb")) $(ratio "$sc" "$scb")"
echo "- following 1,000 new records after 1,000,000: $(ms "$fn") ($(awk -v x="$fn" 'BEGIN {printf "%.1f", x/1000/1e3}') µs per record)"
echo "- baseline, reading the whole journal without an offset (also the daemon's start): $(ms "$fw"); ratio follow / whole $(awk -v a="$fn" -v b="$fw" 'BEGIN {printf "%.4f", a/b}')"
