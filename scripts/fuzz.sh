#!/usr/bin/env bash
# Fuzzes every parser of untrusted input for a while each: `make fuzz FUZZTIME=5m`.
# `make test` already runs each target's seed corpus (testdata/fuzz/<Target>/).
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-30s}
grep -rl --include='*_test.go' '^func Fuzz' internal | sort -u | while read -r file; do
	pkg=./$(dirname "$file")
	for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
		echo "== $pkg $target ($time)"
		go test -tags libvirt_dlopen -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg"
	done
done
