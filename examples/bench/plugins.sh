#!/usr/bin/env bash
# Plugin benchmarks on a release build with the embedded SQLite default:
#   - the host's own cost (criterion, core/benches/plugins.rs, with a plugin that does
#     nothing): medians of one instantiate + call of a no-op hook, and of one event
#     delivered to four plugins and awaited;
#   - a plugin's HTTP route through the real server, examples/hello-plugin installed:
#     GET /p/hello/newest (instantiate, handle-http, one kv read) and
#     GET /p/hello/?name=… (two kv calls, one a write, and a template); wrk closed
#     loop, RUNS runs of DURATION after a warm-up, medians;
#   - idle resident memory with 0, 1 and COPIES copies of the hello plugin loaded
#     (under different names), median of RUNS starts each.
# CRITERION_ARGS go to criterion (e.g. "--warm-up-time 1 --measurement-time 2").
# SERVER=path/to/confab measures another build's HTTP routes and memory (say, an
# older commit's, alternating run by run); SKIP_CRITERION=1 leaves out the host's
# own cost, which criterion measures on this checkout only.
# Needs: wrk (Debian package `wrk`), curl, python3, bc, the wasm32-wasip2 target.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10s}"
RUNS="${RUNS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT="${PORT:-18100}"
COPIES="${COPIES:-8}"
CRITERION_ARGS="${CRITERION_ARGS:-}"
SERVER="${SERVER:-}"
SKIP_CRITERION="${SKIP_CRITERION:-0}"

# wrk runs and their medians: measure, median.
source examples/bench/wrk.sh

work="$(mktemp -d)"
pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
trap 'stop; rm -rf "$work"' EXIT

# The host's own cost. criterion keeps its estimates under CRITERION_HOME.
micro="- - -
- - -"
if [ "$SKIP_CRITERION" != 1 ]; then
# shellcheck disable=SC2086 # CRITERION_ARGS is a list of arguments
CRITERION_HOME="$work/criterion" cargo bench --quiet -p confab-core --bench plugins -- $CRITERION_ARGS
micro=$(python3 - "$work/criterion/plugins" <<'PY'
import json, sys
for name in ["noop-hook", "event-to-4-plugins"]:
    e = json.load(open(f"{sys.argv[1]}/{name}/new/estimates.json"))["median"]
    print(f"{e['point_estimate'] / 1000:.1f} {e['confidence_interval']['lower_bound'] / 1000:.1f}"
          f" {e['confidence_interval']['upper_bound'] / 1000:.1f}")
PY
)
fi

if [ -n "$SERVER" ]; then
  bin="$SERVER"
else
  cargo build --release --quiet -p confab-core
  bin="$PWD/target/release/confab"
fi
# Plugins are their own workspaces; their target directory is the one the tests use.
CARGO_TARGET_DIR="$PWD/target/plugin-builds" cargo build --release --quiet --locked \
  --target wasm32-wasip2 --manifest-path examples/hello-plugin/Cargo.toml
wasm="$PWD/target/plugin-builds/wasm32-wasip2/release/hello_plugin.wasm"

# Installs the hello plugin as NAME into the plugins directory DIR.
install_hello() {
  local dir="$1/$2"
  mkdir -p "$dir"
  sed -e "s/^name = \"hello\"/name = \"$2\"/" -e 's/^component = .*/component = "plugin.wasm"/' \
    examples/hello-plugin/plugin.toml >"$dir/plugin.toml"
  cp "$wasm" "$dir/plugin.wasm"
  cp -r examples/hello-plugin/static examples/hello-plugin/templates "$dir/"
}

# Compiled components are cached across the servers started here, as across restarts.
cat >"$work/confab.toml" <<TOML
[plugins]
watch = false
cache_dir = "$work/plugin-cache"

[plugins.settings.hello]
grant = ["kv", "links", "calls", "templates"]
TOML
export CONFAB_CONFIG="$work/confab.toml" CONFAB_SERVER_LISTEN="127.0.0.1:$PORT" CONFAB_LOG_LEVEL=warn
export CONFAB_MEDIA_BIND=127.0.0.1 CONFAB_MEDIA_UDP_PORT=0 CONFAB_MEDIA_TCP_PORT=0
# Only the hello copies measured here, not the bundled plugins.
export CONFAB_PLUGINS_BUNDLED=false
base="http://127.0.0.1:$PORT"

# Starts the server on the data directory $1 (plugins in $1/plugins).
start() {
  export CONFAB_DATA_DIR="$1" CONFAB_PLUGINS_DIR="$1/plugins"
  mkdir -p "$1/plugins"
  "$bin" serve >"$1/serve.log" 2>&1 &
  pid=$!
  until curl -sf "$base/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$1/serve.log"; exit 1; }
    sleep 0.01
  done
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }

# A plugin HTTP route under load.
install_hello "$work/http/plugins" hello
start "$work/http"
echo "a good long password" | "$bin" user create --admin --email bench@example.org --name Bench --password-stdin >/dev/null
token=$("$bin" token create --user bench@example.org --name bench --json | sed -n 's/.*"token": "\(cf_[A-Za-z0-9]*\)".*/\1/p')
curl -sf -X POST "$base/api/v1/links" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"title":"Plugin benchmark"}' >/dev/null
# The plugin hears link.created and keeps the newest link's id.
for _ in $(seq 500); do curl -sf "$base/p/hello/newest" >/dev/null && break; sleep 0.01; done
curl -sf "$base/p/hello/newest" >/dev/null || { echo "the hello plugin does not answer"; cat "$work/http/serve.log"; exit 1; }
newest=$(measure "$base/p/hello/newest")
greeting=$(measure "$base/p/hello/?name=bench")
loaded_rss_kib=$(rss_kib)
invocations=$(curl -sf "$base/metrics" | grep '^confab_plugin_invocations_total' || true)
stop

# Idle memory with 0, 1 and COPIES copies loaded (no request made to any of them).
idle_rss() {
  local n="$1" samples=() run dir i
  for run in $(seq "$RUNS"); do
    dir="$work/idle-$n-$run"
    for i in $(seq "$n"); do install_hello "$dir/plugins" "hello-$i"; done
    start "$dir"
    for i in $(seq "$n"); do
      curl -sf "$base/p/hello-$i/static/hello.js" >/dev/null || { echo "hello-$i is not loaded"; cat "$dir/serve.log"; exit 1; }
    done
    sleep 2
    samples+=("$(rss_kib)")
    stop
  done
  median "${samples[@]}"
}
idle0=$(idle_rss 0)
idle1=$(idle_rss 1)
idleN=$(idle_rss "$COPIES")

cat <<REPORT
machine:            $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)
host cost (criterion, median [95 % interval], no-op plugin):
  instantiate + call a no-op hook:  $(awk 'NR==1 {printf "%s µs [%s, %s]", $1, $2, $3}' <<<"$micro")
  one event to 4 plugins, awaited:  $(awk 'NR==2 {printf "%s µs [%s, %s]", $1, $2, $3}' <<<"$micro")
plugin HTTP routes, closed loop (wrk -c$CONNECTIONS, $RUNS runs of $DURATION, medians):
  GET /p/hello/newest:         $(awk '{printf "%s req/s, p50 %s ms, p99 %s ms", $1, $2, $3}' <<<"$newest")
  GET /p/hello/?name=bench:    $(awk '{printf "%s req/s, p50 %s ms, p99 %s ms", $1, $2, $3}' <<<"$greeting")
  RSS after the load:          $((loaded_rss_kib / 1024)) MiB
$(sed 's/^/  /' <<<"$invocations")
idle RSS (median of $RUNS starts):
  0 plugins:                   $((idle0 / 1024)) MiB
  1 plugin:                    $((idle1 / 1024)) MiB
  $COPIES plugins:                   $((idleN / 1024)) MiB
  per plugin, 0 → $COPIES:            $(((idleN - idle0) / COPIES)) KiB (the engine and its pool included)
  per plugin, 1 → $COPIES:            $(((idleN - idle1) / (COPIES - 1))) KiB (each one more)
REPORT
