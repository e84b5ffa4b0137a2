#!/usr/bin/env bash
# Flood benchmark: a call of PARTICIPANTS (4) synthetic participants on a release
# server (embedded SQLite default) is measured while strangers knock, each from its
# own loopback address: JOINS (1,000) guests ask to join at once, TCP (200) idle
# ICE-TCP connections and SLOW_HTTP (200) HTTP clients trickling a request's
# headers are held open the whole time (each one the server closes is opened
# again). Reports the call's loss and latency, the host's signaling round trip
# through the call, what each stranger was answered and when the server let go,
# and the server's peak memory. RUNS runs; the server and the rest are set up by
# sfu.sh (SERVER= measures another build there too). Needs only cargo and curl.
set -euo pipefail
cd "$(dirname "$0")"

JOINS="${JOINS:-1000}"
TCP="${TCP:-200}"
SLOW_HTTP="${SLOW_HTTP:-200}"
export MEDIA_PORT="${MEDIA_PORT:-18091}"
export PARTICIPANTS="${PARTICIPANTS:-4}" LAYER="${LAYER:-2}"

# The shipped per-address limits (sfu.sh lifts them for calls from one address;
# here each stranger has an address of its own and the call has 4 people).
export CONFAB_SERVER_MAX_WEBSOCKETS_PER_ADDRESS=20 CONFAB_CALLS_MAX_WAITING_PER_ADDRESS=3
export CONFAB_CALLS_JOIN_REQUESTS_PER_MINUTE=10

# Every stranger holds a socket on both sides.
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# The media port listens on 127.0.0.1; connections from 127.3.x.y reach it over
# loopback too.
export GEN_ARGS="--flood-joins $JOINS --flood-tcp $TCP --media-tcp 127.0.0.1:$MEDIA_PORT --flood-slow-http $SLOW_HTTP"
exec bash sfu.sh
