#!/usr/bin/env bash
# Runs Event Flows with everything it needs: installs what is missing, builds,
# starts a local tansu broker (state kept under the data directory) and the
# server on SQLite with the demo seeded. Ctrl-C stops both.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/setup.sh"

log "building the web UI"
trunk build --release
log "building the server"
cargo build --release --locked -p server

export EVENTFLOWS_DATA_DIR="${EVENTFLOWS_DATA_DIR:-$REPO_ROOT/data}"
export EVENTFLOWS_DIST_DIR="${EVENTFLOWS_DIST_DIR:-$REPO_ROOT/dist}"
export EVENTFLOWS_LISTEN="${EVENTFLOWS_LISTEN:-127.0.0.1:3000}"
KAFKA_PORT="${EVENTFLOWS_KAFKA_PORT:-9092}"
mkdir -p "$EVENTFLOWS_DATA_DIR"

eventflows="$REPO_ROOT/target/release/eventflows"
TANSU_PID=""
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [ -n "$TANSU_PID" ] && kill "$TANSU_PID" 2>/dev/null && wait "$TANSU_PID" 2>/dev/null
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting the tansu broker on 127.0.0.1:$KAFKA_PORT"
start_tansu "$KAFKA_PORT" "sqlite://tansu.db" "$EVENTFLOWS_DATA_DIR/tansu.log" "$EVENTFLOWS_DATA_DIR"

log "seeding the demo"
"$eventflows" demo --kafka "127.0.0.1:$KAFKA_PORT"

"$eventflows" serve &
SERVER_PID=$!
wait_for_port "${EVENTFLOWS_LISTEN##*:}" 60
cat <<MSG

  Event Flows is running at http://$EVENTFLOWS_LISTEN
  Kafka broker (tansu):      127.0.0.1:$KAFKA_PORT
  Press Ctrl-C to stop both.

MSG
wait "$SERVER_PID"
