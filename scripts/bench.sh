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
co="cosign verify-blob --key $work/cosign.pub --signature $work/image.list.sig --insecure-ignore-tlog $work/image.list"
echo "command: hyperfine -N --warmup 3 --runs 30 '$vm' '$co'"
hyperfine -N --warmup 3 --runs 30 --export-csv "$work/verify.csv" "$vm" "$co" >/dev/null 2>&1
v=$(awk -F, 'NR==2 {print $4*1e9}' "$work/verify.csv"); c=$(awk -F, 'NR==3 {print $4*1e9}' "$work/verify.csv")
echo "- vmgate list verify: $(ms "$v")"
echo "- cosign verify-blob (baseline): $(ms "$c")"
echo "- ratio vmgate / cosign: $(ratio "$v" "$c")"
