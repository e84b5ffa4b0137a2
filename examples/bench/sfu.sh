#!/usr/bin/env bash
# SFU benchmark: a release server on the embedded SQLite default, and the load
# generator (examples/loadgen) joining PARTICIPANTS synthetic participants to one
# call over the real signaling WebSocket and UDP media on loopback. Each publishes
# Opus + three-layer simulcast VP8 and receives everyone else. RUNS runs; the
# generator reports forwarded packets/s, the server's CPU time and memory (from
# /proc), loss and added latency. Needs only cargo and curl.
#
# CALLS=N runs N such calls at once, one generator each (each prints its own
# figures; the server's CPU is the whole server's over each generator's window).
# CONFAB_MEDIA_THREADS sets the server's engine threads (0, the default: one per
# core); a call stays on one thread, so several calls are what spreads the load.
set -euo pipefail
cd "$(dirname "$0")/../.."

PARTICIPANTS="${PARTICIPANTS:-16}"
SECONDS_MEASURED="${SECONDS_MEASURED:-30}"
LAYER="${LAYER:-2}"
RUNS="${RUNS:-3}"
CALLS="${CALLS:-1}"
PORT="${PORT:-18090}"
MEDIA_PORT="${MEDIA_PORT:-18091}"

cargo build --release --quiet -p confab-core -p confab-loadgen
# SERVER=path/to/confab measures another build of the server (say, an older commit's).
bin="${SERVER:-$PWD/target/release/confab}"
# GEN=path/to/confab-loadgen does the same for the load generator.
gen="${GEN:-$PWD/target/release/confab-loadgen}"
work="$(mktemp -d)"
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
export CONFAB_DATA_DIR="$work/data" CONFAB_SERVER_LISTEN="127.0.0.1:$PORT" CONFAB_LOG_LEVEL=warn
export CONFAB_SERVER_PUBLIC_URL="http://127.0.0.1:$PORT"
export CONFAB_MEDIA_BIND=127.0.0.1 CONFAB_MEDIA_UDP_PORT="$MEDIA_PORT" CONFAB_MEDIA_TCP_PORT="$MEDIA_PORT"
# Every synthetic participant comes from 127.0.0.1: lift the per-address limits
# (docs/security.md, "Limits") that would stop a large call from one address.
export CONFAB_SERVER_MAX_WEBSOCKETS_PER_ADDRESS="${CONFAB_SERVER_MAX_WEBSOCKETS_PER_ADDRESS:-1000}"
export CONFAB_CALLS_MAX_WAITING_PER_ADDRESS="${CONFAB_CALLS_MAX_WAITING_PER_ADDRESS:-100}"
export CONFAB_CALLS_JOIN_REQUESTS_PER_MINUTE="${CONFAB_CALLS_JOIN_REQUESTS_PER_MINUTE:-1000}"
base="http://127.0.0.1:$PORT"

echo "a good long password" | "$bin" user create --admin --email bench@example.org --name Bench --password-stdin >/dev/null
token=$("$bin" token create --user bench@example.org --name bench --json | sed -n 's/.*"token": "\(cf_[A-Za-z0-9]*\)".*/\1/p')

for run in $(seq "$RUNS"); do
  rm -f "$work/serve.log"
  "$bin" serve >"$work/serve.log" 2>&1 &
  pid=$!
  until curl -sf "$base/readyz" >/dev/null; do sleep 0.05; done
  sleep 1
  links=()
  for _ in $(seq "$CALLS"); do
    links+=("$(curl -sf -X POST "$base/api/v1/links" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/json' -d '{"title":"SFU benchmark","max_participants":32}' \
      | sed -n 's/.*"id":"\([A-Za-z0-9]*\)".*/\1/p')")
  done
  echo "== run $run"
  gens=()
  for call in $(seq "$CALLS"); do
    # GEN_ARGS: more arguments for the generator (examples/bench/flood.sh sets them).
    # shellcheck disable=SC2086
    "$gen" --server "$base" --link "${links[$((call - 1))]}" --token "$token" --server-pid "$pid" \
      --participants "$PARTICIPANTS" --seconds "$SECONDS_MEASURED" --layer "$LAYER" ${GEN_ARGS:-} \
      >"$work/gen-$call.out" &
    gens+=($!)
  done
  failed=0
  for g in "${gens[@]}"; do wait "$g" || failed=1; done
  for call in $(seq "$CALLS"); do
    [ "$CALLS" -gt 1 ] && echo "-- call $call"
    cat "$work/gen-$call.out"
  done
  [ "$failed" -eq 0 ] || { echo "a load generator failed" >&2; exit 1; }
  curl -sf "$base/metrics" | grep -E '^confab_media|^confab_limits_refused_total' || true
  # CPU seconds of each media thread over the whole run (joining included).
  tick=$(getconf CLK_TCK)
  for task in /proc/"$pid"/task/*; do
    name=$(cat "$task/comm" 2>/dev/null) || continue
    case "$name" in media-*)
      awk -v name="$name" -v tick="$tick" '{ sub(/^.*\) /, ""); printf "thread %-16s %.2f s CPU\n", name, ($12 + $13) / tick }' "$task/stat" ;;
    esac
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
