#!/usr/bin/env bash
# Confab's SFU side by side with Janus's VideoRoom: the same load from the same load
# generator (examples/loadgen), on the same machine, the two servers alternating run
# by run. Every participant publishes Opus (50 packets/s) and three-layer VP8
# simulcast and receives every other participant's audio and one video layer.
#
# Janus skips loopback interfaces for ICE, so both servers run in a network
# namespace of their own, reached over a veth pair; the load generator stays in this
# namespace. Nothing leaves the machine. Needs root (ip netns), cargo, and Janus
# (Debian's package `janus`, installed if missing).
#
#   CASES="8:1 8:2 16:1 16:2 32:0"
#                       participants per call : the simulcast layer everyone
#                       receives (0: smallest, 1: middle, 2: full). 32 people at
#                       layer 1 or 2 is 109,000 or 228,000 packets/s to decrypt,
#                       more than the generator keeps up with on 2 cores.
#   RUNS=3              runs of each server per case
#   SECONDS_MEASURED=20 measured seconds per run (after 8 s of warm-up)
#   SERVER=path         another build of Confab's server
#
# Prints every run's figures, then a table of medians (with the lowest and highest
# run) for each server and the ratios Confab / Janus.
set -euo pipefail
cd "$(dirname "$0")/../.."

CASES="${CASES:-8:1 8:2 16:1 16:2 32:0}"
RUNS="${RUNS:-3}"
SECONDS_MEASURED="${SECONDS_MEASURED:-20}"

if [ "$(id -u)" -ne 0 ]; then
  echo "error: vs-janus.sh makes a network namespace, which needs root" >&2
  exit 1
fi
if ! command -v janus >/dev/null 2>&1; then
  echo "Installing Janus (Debian's package janus)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus >/dev/null
fi
janus_lib=$(dirname "$(dirname "$(find /usr/lib -path '*janus/plugins/libjanus_videoroom.so' -print -quit)")")

cargo build --release --quiet -p confab-core -p confab-loadgen
bin="${SERVER:-$PWD/target/release/confab}"
gen="$PWD/target/release/confab-loadgen"

work="$(mktemp -d)"
ns="confab-vs-janus-$$"
outside=10.216.0.1
inside=10.216.0.2
veth_out="cvj$(( $$ % 100000 ))o"
veth_in="cvj$(( $$ % 100000 ))i"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip link add "$veth_out" type veth peer name "$veth_in"
ip link set "$veth_in" netns "$ns"
ip addr add "$outside/30" dev "$veth_out"
ip link set "$veth_out" up
ip netns exec "$ns" ip addr add "$inside/30" dev "$veth_in"
ip netns exec "$ns" ip link set "$veth_in" up
ip netns exec "$ns" ip link set lo up

# Janus: the VideoRoom plugin and the WebSocket transport only, one room for up to
# 32 publishers on VP8 and Opus, no recording; warnings only (as Confab's server).
mkdir -p "$work/janus"
cat >"$work/janus/janus.jcfg" <<EOF
general: {
  configs_folder = "$work/janus"
  plugins_folder = "$janus_lib/plugins"
  transports_folder = "$janus_lib/transports"
  events_folder = "$janus_lib/events"
  loggers_folder = "$janus_lib/loggers"
  debug_level = 3
}
media: { rtp_port_range = "20000-40000" }
nat: { nice_debug = false }
plugins: { disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so" }
transports: { disable = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so" }
events: { broadcast = false }
loggers: { disable = "libjanus_jsonlog.so" }
EOF
cat >"$work/janus/janus.transport.websockets.jcfg" <<EOF
general: { json = "compact" ws = true ws_port = 8188 ws_ip = "$inside" wss = false }
admin: { admin_ws = false }
EOF
cat >"$work/janus/janus.plugin.videoroom.jcfg" <<EOF
general: { }
room-1234: {
  description = "Benchmark"
  publishers = 32
  bitrate = 0
  fir_freq = 10
  audiocodec = "opus"
  videocodec = "vp8"
  record = false
  notify_joining = false
}
EOF

# Confab: the embedded default (SQLite), its media on the namespace's address.
export CONFAB_DATA_DIR="$work/confab" CONFAB_LOG_LEVEL=warn
export CONFAB_SERVER_LISTEN="$inside:18090" CONFAB_SERVER_PUBLIC_URL="http://$inside:18090"
export CONFAB_MEDIA_BIND="$inside" CONFAB_MEDIA_UDP_PORT=18091 CONFAB_MEDIA_TCP_PORT=18091
# Every synthetic participant comes from one address: lift the per-address limits
# (docs/security.md, "Limits") that would stop a large call from one address.
export CONFAB_SERVER_MAX_WEBSOCKETS_PER_ADDRESS=1000 CONFAB_CALLS_MAX_WAITING_PER_ADDRESS=100
export CONFAB_CALLS_JOIN_REQUESTS_PER_MINUTE=1000
echo "a good long password" | "$bin" user create --admin --email bench@example.org --name Bench --password-stdin >/dev/null
token=$("$bin" token create --user bench@example.org --name bench --json | sed -n 's/.*"token": "\(cf_[A-Za-z0-9]*\)".*/\1/p')

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Starts one server in the namespace and sets $pid and $target (the generator's
# arguments that point at it).
start() {
  case "$1" in
    confab)
      ip netns exec "$ns" "$bin" serve >"$work/server.log" 2>&1 &
      pid=$!
      until curl -sf "http://$inside:18090/readyz" >/dev/null; do sleep 0.05; done
      link=$(curl -sf -X POST "http://$inside:18090/api/v1/links" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d '{"title":"SFU benchmark","max_participants":32}' \
        | sed -n 's/.*"id":"\([A-Za-z0-9]*\)".*/\1/p')
      target=(--server "http://$inside:18090" --link "$link" --token "$token")
      ;;
    janus)
      ip netns exec "$ns" janus -F "$work/janus" -C "$work/janus/janus.jcfg" -i "$inside" -o \
        >"$work/server.log" 2>&1 &
      pid=$!
      until port_open "$inside" 8188; do sleep 0.05; done
      target=(--janus "ws://$inside:8188" --room 1234)
      ;;
  esac
  sleep 1
}

results="$work/results"
: >"$results"
for case in $CASES; do
  size="${case%%:*}"
  layer="${case##*:}"
  for run in $(seq "$RUNS"); do
    # Alternate which server goes first, run by run.
    order="confab janus"
    [ $((run % 2)) -eq 0 ] && order="janus confab"
    for server in $order; do
      start "$server"
      echo "== $server, $size participants, layer $layer, run $run"
      if ! "$gen" "${target[@]}" --bind "$outside" --server-pid "$pid" --participants "$size" \
          --seconds "$SECONDS_MEASURED" --layer "$layer" >"$work/gen.out" 2>"$work/gen.err"; then
        cat "$work/gen.out" "$work/gen.err"
        echo "-- server log:"; tail -n 20 "$work/server.log"
        exit 1
      fi
      cat "$work/gen.out"
      kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
      # packets/s, loss %, p50, p99, CPU % of a core, packets per CPU-s, MiB per participant
      awk -v server="$server" -v size="$size" -v layer="$layer" '
        /^forwarded packets\/s:/ { pps = $3 }
        /^loss:/ { loss = $2 }
        /^added latency:/ { p50 = $4; p99 = $7 }
        /^server CPU:/ { gsub(/\(/, "", $8); cpu = $8 }
        /^packets per server CPU-s:/ { ppc = $5 }
        /^server memory:/ { mem = $11 }
        END { print server, size, layer, pps, loss, p50, p99, cpu, ppc, mem }
      ' "$work/gen.out" >>"$results"
    done
  done
done

echo
echo "Medians of $RUNS runs [lowest–highest]; $SECONDS_MEASURED s measured per run; $(nproc) cores"
python3 - "$results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
cols = ["pkts/s", "loss %", "p50 ms", "p99 ms", "CPU %", "pkts/CPU-s", "MiB/part."]
groups = {}
for r in rows:
    groups.setdefault((int(r[1]), int(r[2])), {}).setdefault(r[0], []).append([float(x) for x in r[3:]])
def med(runs, i):
    values = sorted(run[i] for run in runs)
    return statistics.median(values), values[0], values[-1]
def fmt(v):
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
print(f"{'size':>4} {'layer':>5} {'server':<7}" + "".join(f"{c:>26}" for c in cols))
for (size, layer), servers in sorted(groups.items()):
    for server in ("confab", "janus"):
        if server not in servers:
            continue
        cells = []
        for i in range(len(cols)):
            m, lo, hi = med(servers[server], i)
            cells.append(f"{fmt(m)} [{fmt(lo)}–{fmt(hi)}]")
        print(f"{size:>4} {layer:>5} {server:<7}" + "".join(f"{c:>26}" for c in cells))
    if "confab" in servers and "janus" in servers:
        ratio = lambda i: med(servers["confab"], i)[0] / max(med(servers["janus"], i)[0], 1e-9)
        print(f"{size:>4} {layer:>5} {'ratio':<7} pkts/CPU-s {ratio(5):.2f}×, p99 {ratio(3):.2f}×, memory {ratio(6):.2f}×, CPU {ratio(4):.2f}× (Confab / Janus)")
PY
