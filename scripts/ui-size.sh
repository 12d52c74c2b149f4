#!/usr/bin/env bash
# Prints what the browser downloads from the built web UI in dist/, each
# file gzip-compressed: on a first visit (the page, its CSS, the JS glue and
# the shell's wasm, which holds the login page), and then for each page
# opened (its own wasm module and the shared modules it needs, as
# dist/ui-pkg/__wasm_split.js lists them). Fails when the first visit is
# above its limit, or a page's modules above theirs, so that the UI cannot
# grow unnoticed.
# Usage: scripts/ui-size.sh   (limits in KiB: EVENTFLOWS_UI_FIRST_KIB, default
# 250; EVENTFLOWS_UI_PAGE_KIB, default 300)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f dist/ui-pkg/frontend_bg.wasm ]; then
  echo "no built UI in dist/: run trunk build --release first" >&2
  exit 1
fi

python3 - "${EVENTFLOWS_UI_FIRST_KIB:-250}" "${EVENTFLOWS_UI_PAGE_KIB:-300}" <<'PY'
import glob, gzip, os, re, sys

first_limit, page_limit = (int(a) * 1024 for a in sys.argv[1:3])
pkg = "dist/ui-pkg"

def gz(path):
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), 9))

first = ["dist/index.html", *glob.glob("dist/*.css"), f"{pkg}/frontend.js",
         f"{pkg}/__wasm_split.js", f"{pkg}/frontend_bg.wasm"]
print(f"{'first visit (login page and shell)':<44} {'bytes':>10} {'gzip':>9}")
first_total = 0
for path in first:
    size = gz(path)
    first_total += size
    print(f"  {os.path.relpath(path, 'dist'):<42} {os.path.getsize(path):>10} {size:>9}")
print(f"  {'total':<42} {'':>10} {first_total:>9}")

loader = open(f"{pkg}/__wasm_split.js").read()
pages = re.findall(
    r'export const __wasm_split_load_(\w+?)_\d+ = .*?new URL\("\./([^"]+)".*?\n, \[([^\]]*)\]\)\);',
    loader, re.S)
print(f"\n{'opening a page (its modules, after the shell)':<44} {'modules':>10} {'gzip':>9}")
worst = 0
failed = []
for name, own, deps in sorted(pages):
    modules = [own] + [d.strip().lstrip("_") + ".wasm" for d in deps.split(",") if d.strip()]
    total = sum(gz(f"{pkg}/{m}") for m in modules)
    worst = max(worst, total)
    if total > page_limit:
        failed.append(name)
    print(f"  {name.removeprefix('lazy_'):<42} {len(modules):>10} {total:>9}")

ok = True
if first_total > first_limit:
    print(f"the first visit is {first_total // 1024} KiB gzip-compressed, above the limit of {first_limit // 1024} KiB", file=sys.stderr)
    ok = False
if failed:
    print(f"these pages need more than {page_limit // 1024} KiB: {', '.join(failed)}", file=sys.stderr)
    ok = False
if not ok:
    sys.exit(1)
print(f"\nwithin the limits: first visit {first_limit // 1024} KiB, each page {page_limit // 1024} KiB (gzip-compressed)")
PY
