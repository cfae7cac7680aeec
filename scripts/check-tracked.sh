#!/usr/bin/env bash
# Fails when git tracks build output: any ELF binary, or any file over 1 MB
# (make lint runs it). A stray `go build ./plugins/libvirt` at the root once
# committed a 25 MB binary; this keeps that from landing unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  size=$(stat -c %s "$f")
  if [ "$size" -gt "$limit" ]; then
    echo "tracked file over 1 MB: $f ($size bytes); build output and caches stay out of git" >&2
    bad=1
  fi
  if [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
    echo "tracked ELF binary: $f; build output stays out of git (make build puts it in bin/)" >&2
    bad=1
  fi
done < <(git ls-files -z)
exit $bad
