#!/usr/bin/env bash
# HTTP benchmark of a release build on the embedded SQLite default:
#   - startup to ready on an empty database, and idle resident memory;
#   - link creation through the REST API with a token (POST /api/v1/links);
#   - renders of the public link page (GET /j/{id}).
# Peak throughput: wrk (closed loop), RUNS runs of DURATION after a warm-up, medians.
# Latency at the target load: oha at a fixed rate (3,000 creations/s, 10,000
# renders/s), RUNS runs, medians of p50/p99 — a closed-loop tool's latency only
# measures its own queue at saturation.
# Needs: wrk (Debian package `wrk`), oha (`cargo install oha`), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10s}"
RUNS="${RUNS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-18080}"

cargo build --release --quiet
# SERVER=path/to/confab measures another build of the server (say, an older commit's).
bin="${SERVER:-$PWD/target/release/confab}"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export CONFAB_DATA_DIR="$work/data" CONFAB_SERVER_LISTEN="127.0.0.1:$PORT" CONFAB_LOG_LEVEL=warn
base="http://127.0.0.1:$PORT"

start_ns=$(date +%s%N)
"$bin" serve >"$work/serve.log" 2>&1 &
pid=$!
until curl -sf "$base/readyz" >/dev/null; do sleep 0.002; done
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
sleep 2
idle_rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

echo "a good long password" | "$bin" user create --admin --email bench@example.org --name Bench --password-stdin >/dev/null
export CONFAB_TOKEN
CONFAB_TOKEN=$("$bin" token create --user bench@example.org --name bench --json | sed -n 's/.*"token": "\(cf_[A-Za-z0-9]*\)".*/\1/p')
link_id=$(curl -sf -X POST "$base/api/v1/links" -H "Authorization: Bearer $CONFAB_TOKEN" \
  -H 'Content-Type: application/json' -d '{"title":"Page render benchmark"}' | sed -n 's/.*"id":"\([A-Za-z0-9]*\)".*/\1/p')

# wrk runs and their medians: measure.
source examples/bench/wrk.sh

# Runs oha at a fixed rate RUNS times; prints "achieved_rps median_p50_ms median_p99_ms success".
at_rate() {
  local rate="$1"; shift
  rm -f "$work"/oha-*.json
  for n in $(seq "$RUNS"); do
    oha --no-tui --output-format json -z "$DURATION" -q "$rate" -c "$CONNECTIONS" "$@" >"$work/oha-$n.json"
  done
  python3 - "$work"/oha-*.json <<'PY'
import json, statistics, sys
runs = [json.load(open(path)) for path in sys.argv[1:]]
med = lambda key: statistics.median(r["latencyPercentiles"][key] * 1000 for r in runs)
rps = statistics.median(r["summary"]["requestsPerSec"] for r in runs)
ok = min(r["summary"]["successRate"] for r in runs)
print(f"{rps:.0f} {med('p50'):.2f} {med('p99'):.2f} {ok:.4f}")
PY
}

page=$(measure "$base/j/$link_id")
create=$(measure -s examples/bench/create-link.lua "$base/api/v1/links")
page_at=$(at_rate 10000 "$base/j/$link_id")
create_at=$(at_rate 3000 -m POST -H "Authorization: Bearer $CONFAB_TOKEN" -T application/json \
  -d '{"title":"Benchmark call"}' "$base/api/v1/links")
loaded_rss_kib=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
links=$("$bin" link list --owner bench@example.org --limit 10000 --json | grep -c '"id"' || true)

cat <<REPORT
machine:            $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)
runs:               $RUNS of $DURATION each (medians)
startup to ready:   ${ready_ms} ms (empty database, migrations included)
idle RSS:           $((idle_rss_kib / 1024)) MiB
peak, closed loop (wrk -c$CONNECTIONS):
  link page renders:  $(awk '{printf "%s req/s, p50 %s ms, p99 %s ms", $1, $2, $3}' <<<"$page")
  link creations:     $(awk '{printf "%s req/s, p50 %s ms, p99 %s ms", $1, $2, $3}' <<<"$create")
at the target rate (oha -q, -c$CONNECTIONS):
  renders @ 10,000/s: $(awk '{printf "%s req/s achieved, p50 %s ms, p99 %s ms, success %s", $1, $2, $3, $4}' <<<"$page_at")
  creations @ 3,000/s: $(awk '{printf "%s req/s achieved, p50 %s ms, p99 %s ms, success %s", $1, $2, $3, $4}' <<<"$create_at")
RSS after load:     $((loaded_rss_kib / 1024)) MiB (${links} links in the database; listing capped at 10000)
REPORT
