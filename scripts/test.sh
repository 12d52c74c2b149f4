#!/usr/bin/env bash
# Runs every test: the Rust tests on SQLite and again on PostgreSQL, then the
# Playwright suite in headless Chromium against the real server and a real
# tansu broker. Installs what is missing first.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

EVENTFLOWS_SETUP_BROWSER=1 "$REPO_ROOT/scripts/setup.sh"

PG_URL="${EVENTFLOWS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "PostgreSQL is not answering on 127.0.0.1:5432; trying to start it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is needed on 127.0.0.1:5432" >&2; exit 1; }
fi

log "Rust tests: shared types"
# Generous limits (they include compiling on a fresh machine): a hung test
# fails the run instead of stalling it.
timeout 1800 cargo test --locked -p app --features ssr
log "Rust tests: server on SQLite"
timeout 1800 cargo test --locked -p server
log "Rust tests: server on PostgreSQL"
EVENTFLOWS_TEST_DATABASE=postgres EVENTFLOWS_TEST_POSTGRES_URL="$PG_URL" \
  timeout 900 cargo test --locked -p server --test api

log "benchmark smoke run (few messages; checks outputs, not speed)"
timeout 600 cargo run --locked -q -p server --bin bench -- --smoke --json target/bench-smoke.json

log "building the web UI"
trunk build --release
log "the web UI's first load (fails above its limit; see BENCHMARKS.md)"
scripts/ui-size.sh

log "end-to-end tests (Playwright, headless Chromium)"
export EVENTFLOWS_E2E_BINARY="$REPO_ROOT/target/debug/eventflows"
npx playwright test --config end2end/playwright.config.ts
