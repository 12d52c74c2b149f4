#!/usr/bin/env bash
# Prints what the browser downloads on a first visit (the built web UI in
# dist/: wasm, JS and CSS, raw and gzip-compressed) and fails when the
# compressed total is above the limit, so that the UI cannot grow unnoticed.
# Usage: scripts/ui-size.sh [limit in KiB, gzip]
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT_KIB="${1:-${EVENTFLOWS_UI_LIMIT_KIB:-540}}"

shopt -s nullglob
files=(dist/*.wasm dist/*.js dist/*.css)
if [ ${#files[@]} -eq 0 ]; then
  echo "no built UI in dist/: run trunk build --release first" >&2
  exit 1
fi

total_raw=0
total_gzip=0
printf '%-44s %10s %10s\n' "file" "bytes" "gzip"
for f in "${files[@]}"; do
  raw=$(stat -c %s "$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  total_raw=$((total_raw + raw))
  total_gzip=$((total_gzip + gz))
  printf '%-44s %10d %10d\n' "$(basename "$f")" "$raw" "$gz"
done
printf '%-44s %10d %10d\n' "total" "$total_raw" "$total_gzip"

limit=$((LIMIT_KIB * 1024))
if [ "$total_gzip" -gt "$limit" ]; then
  echo "the UI is $((total_gzip / 1024)) KiB gzip-compressed, above the limit of $LIMIT_KIB KiB" >&2
  exit 1
fi
echo "within the limit of $LIMIT_KIB KiB gzip-compressed"
