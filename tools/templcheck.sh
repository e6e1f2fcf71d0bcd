#!/usr/bin/env bash
# templcheck.sh: fail when a generated *_templ.go file under the given
# directories (default: templates) is missing or differs from what
# `go tool templ generate` produces for its .templ source. Nothing is written;
# run `make generate` to refresh the generated files.
set -euo pipefail
cd "$(dirname "$0")/.."

dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(templates)

stale=0
count=0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
while IFS= read -r -d '' src; do
	count=$((count + 1))
	gen="${src%.templ}_templ.go"
	# Generate from the file's directory: the generated code records the
	# source path relative to where templ runs, as `templ generate -path` does.
	(cd "$(dirname "$src")" && go tool templ generate -log-level error -f "$(basename "$src")" -stdout) >"$tmp"
	if [ ! -f "$gen" ]; then
		echo "templcheck: $gen is missing (generated from $src)" >&2
		stale=1
	elif ! cmp -s "$tmp" "$gen"; then
		echo "templcheck: $gen is stale (differs from templ generate output for $src)" >&2
		diff -u "$gen" "$tmp" | head -40 >&2 || true
		stale=1
	fi
done < <(find "${dirs[@]}" -name '*.templ' -print0 2>/dev/null)

if [ "$stale" -ne 0 ]; then
	echo "templcheck: generated templ code is out of date; run 'make generate' and commit the result" >&2
	exit 1
fi
echo "templcheck: $count templ file(s) up to date"
