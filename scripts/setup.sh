#!/usr/bin/env bash
# Installs what building, running and testing Event Flows needs, skipping
# whatever is already present at the right version. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

TRUNK_VERSION=0.21.14
WASM_BINDGEN_VERSION=0.2.130
TANSU_VERSION=0.6.0
WASM_SPLIT_VERSION=0.2.4
MOTO_VERSION=5.2.5
MOTO_VENV="$HOME/.local/share/eventflows/moto"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

need_apt=()
for pkg in build-essential pkg-config zlib1g-dev libssl-dev libpq-dev sqlite3 ${EVENTFLOWS_SETUP_BROWSER:+chromium}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

installed() { cargo install --list | grep -qx "$1 v$2:"; }
if ! installed trunk "$TRUNK_VERSION"; then
  log "installing trunk $TRUNK_VERSION (once per machine, several minutes)"
  cargo install "trunk@$TRUNK_VERSION" --locked
fi
if ! installed wasm-bindgen-cli "$WASM_BINDGEN_VERSION"; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  cargo install "wasm-bindgen-cli@$WASM_BINDGEN_VERSION"
fi
if ! installed wasm_split_cli_support "$WASM_SPLIT_VERSION"; then
  log "installing wasm-split-cli $WASM_SPLIT_VERSION (cuts the UI's wasm into one module per page)"
  cargo install "wasm_split_cli_support@$WASM_SPLIT_VERSION" --locked --features build-binary
fi
if ! installed tansu "$TANSU_VERSION"; then
  log "installing the tansu broker $TANSU_VERSION (once per machine, about 15 minutes)"
  cargo install "tansu@$TANSU_VERSION" --locked --features dynostore,libsql
fi

if ! "$MOTO_VENV/bin/python" -c "import sys, moto; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  log "installing moto $MOTO_VERSION (an SQS-compatible server the tests use) into $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

if [ ! -f node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages (Tailwind CSS, binaryen, Playwright)"
  npm install --no-audit --no-fund --loglevel=error
fi
