#!/usr/bin/env bash
# Three Confab nodes on loopback, one service: one PostgreSQL database and the NATS
# bus of this machine (docs/scaling.md).
#
#   bash examples/cluster/run.sh            # start, print the nodes, run until Ctrl-C
#   bash examples/cluster/run.sh --bench    # start, measure how fast a revocation
#                                           # reaches the other nodes and what the
#                                           # relay adds to signaling, stop
#   bash examples/cluster/run.sh --failover # start, kill a call's node ROUNDS times
#                                           # and time the call's return, stop
#
# Settings (environment): PG_URL (default postgres://postgres@127.0.0.1:5432),
# NATS_URL (default nats://127.0.0.1:4222), NODES (default 3), FIRST_PORT (default
# 8081: nodes listen on 8081, 8082, …; media on 10001, 10002, …), ROUNDS (--bench,
# default 20). The database `confab_cluster_example` is created if missing and left
# in place; the data directories and logs go to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/../.."

pg_url="${PG_URL:-postgres://postgres@127.0.0.1:5432}"
nats_url="${NATS_URL:-nats://127.0.0.1:4222}"
nodes="${NODES:-3}"
first_port="${FIRST_PORT:-8081}"
database="confab_cluster_example"
work="$(mktemp -d -t confab-cluster.XXXXXX)"

cargo build --release --locked --bin confab
confab="$PWD/target/release/confab"

if ! psql "$pg_url/postgres" -Atqc "select 1 from pg_database where datname = '$database'" | grep -q 1; then
  psql "$pg_url/postgres" -qc "create database $database"
fi
export CONFAB_DATABASE_URL="$pg_url/$database"
export CONFAB_CLUSTER_NATS_URL="$nats_url"
export CONFAB_CLUSTER_SUBJECT_PREFIX="confab-example"
export CONFAB_PLUGINS_BUNDLED=false
# The benchmarks place each call on the node its first member reaches.
if [ -n "${1:-}" ]; then export CONFAB_CLUSTER_PLACEMENT=first_asked; fi
"$confab" migrate >/dev/null

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

for n in $(seq 1 "$nodes"); do
  port=$((first_port + n - 1))
  mkdir -p "$work/node-$n"
  CONFAB_CLUSTER_NODE_ID="node-$n" \
  CONFAB_DATA_DIR="$work/node-$n" \
  CONFAB_SERVER_LISTEN="127.0.0.1:$port" \
  CONFAB_MEDIA_UDP_PORT=$((10000 + n)) \
  CONFAB_MEDIA_TCP_PORT=$((10000 + n)) \
    "$confab" serve >"$work/node-$n.log" 2>&1 &
  pids+=("$!")
done
for n in $(seq 1 "$nodes"); do
  port=$((first_port + n - 1))
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "node-$n did not start:"; cat "$work/node-$n.log"; exit 1; }
  echo "  node-$n on http://127.0.0.1:$port"
done
"$confab" node list

if [ "${1:-}" = "--bench" ] || [ "${1:-}" = "--failover" ]; then
  email="bench-$(date +%s%N)@example.org"
  "$confab" user create --email "$email" --name "Cluster bench" --admin >/dev/null
  token="$("$confab" token create --user "$email" --name cluster-bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
  ports=()
  for n in $(seq 1 "$nodes"); do ports+=($((first_port + n - 1))); done
  if [ "$1" = "--failover" ]; then
    TOKEN="$token" CONFAB="$confab" ROUNDS="${ROUNDS:-20}" python3 examples/cluster/failover.py "${ports[@]}"
    exit 0
  fi
  TOKEN="$token" ROUNDS="${ROUNDS:-20}" python3 examples/cluster/revocation.py "${ports[@]}"
  TOKEN="$token" python3 examples/cluster/relay.py "${ports[@]}"
  exit 0
fi

echo "Logs in $work. Ctrl-C stops the nodes."
wait
