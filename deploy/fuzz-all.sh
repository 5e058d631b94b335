#!/usr/bin/env bash
# Runs every fuzz target in every module for a short time (default 10s each).
set -euo pipefail
fuzztime=${1:-10s}
cd "$(dirname "$0")/.."
for m in pkg authserver simapi; do
  (
    cd "$m"
    for dir in $(go list -f '{{.Dir}}' ./...); do
      for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
        echo "== fuzz $m $(realpath --relative-to=. "$dir") $target ($fuzztime)"
        go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$(realpath --relative-to=. "$dir")"
      done
    done
  )
done
