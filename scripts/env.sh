# Sourced by the other scripts: tool paths and small helpers.
# shellcheck shell=bash
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$REPO_ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# A TCP port nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until something accepts connections on 127.0.0.1:$1 (or fails after $2 seconds).
wait_for_port() {
  local port=$1 limit=${2:-60} waited=0
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    sleep 0.2
    waited=$((waited + 1))
    if [ "$waited" -ge $((limit * 5)) ]; then
      echo "nothing is listening on 127.0.0.1:$port after ${limit}s" >&2
      return 1
    fi
  done
}

# Starts a tansu broker on 127.0.0.1:$1 with storage $2 (memory://tansu/, or
# sqlite://FILE where FILE is relative to the directory $4), logging to $3.
# Sets TANSU_PID.
start_tansu() {
  local port=$1 storage=$2 logfile=$3 dir=${4:-.}
  (cd "$dir" && exec tansu broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "$storage") >"$logfile" 2>&1 &
  TANSU_PID=$!
  if ! wait_for_port "$port" 60; then
    echo "the tansu broker did not start; its log:" >&2
    tail -n 40 "$logfile" >&2
    return 1
  fi
  case "$storage" in
    sqlite://*) index_tansu_sqlite "$dir/${storage#sqlite://}" ;;
  esac
}

# tansu 0.6.0's SQLite storage has no index on its record header table, and
# a fetch looks the headers of every record up in it: a new consumer group
# reading a backlog of records with headers (every flow output) times out
# and reads nothing. This index makes those look-ups direct. tansu creates
# its tables before it listens and keeps an index it did not create.
index_tansu_sqlite() {
  sqlite3 "$1" ".timeout 5000" \
    "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id);"
}
