#!/usr/bin/env bash
# Browser cost of end-to-end encryption: a call of 4 in headless Chromium (Debian's
# chromium and chromium-driver), driven over WebDriver by examples/bench/e2ee.py,
# which starts a release server per run on a fresh data directory (an admin user
# and a token made with the CLI, a link with the REST API), joins a host and three
# admitted guests, and reports the browsers' and the server's CPU (from /proc),
# getStats of every page, the media worker's sealed and opened frames, and the time
# from admission to the first decoded (and, with E2EE, decrypted) frame. RUNS runs
# of SECONDS_MEASURED s after WARMUP s; the camera plays a WIDTHxHEIGHT y4m at FPS.
#
# Without COMMITS it measures the working tree's release build. With COMMITS it
# builds each commit in a git worktree, reusing this checkout's target directory
# for the dependencies, keeps a copy of each binary, removes the worktree, and
# measures the builds in turn, run by run. The A/B of encryption, against the
# commit before it landed:
#   COMMITS="0409f63 HEAD" bash examples/bench/e2ee.sh
# which is, by hand:
#   git worktree add /tmp/confab-pre-e2ee 0409f63
#   (cd /tmp/confab-pre-e2ee && CARGO_TARGET_DIR=/work/main/target cargo build --release -p confab-core)
#   cp target/release/confab /tmp/confab-pre-e2ee.bin && git worktree remove /tmp/confab-pre-e2ee
#   cargo build --release -p confab-core
#   python3 examples/bench/e2ee.py --bin pre-e2ee=/tmp/confab-pre-e2ee.bin --bin e2ee=target/release/confab
# Needs: cargo, git, python3, /usr/bin/chromium, /usr/bin/chromedriver.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

RUNS="${RUNS:-3}"
SECONDS_MEASURED="${SECONDS_MEASURED:-30}"
WARMUP="${WARMUP:-10}"
WIDTH="${WIDTH:-640}"
HEIGHT="${HEIGHT:-480}"
FPS="${FPS:-10}"
PORT="${PORT:-18190}"
MEDIA_PORT="${MEDIA_PORT:-18191}"
COMMITS="${COMMITS:-}"

work="$(mktemp -d)"
tree=""
trap 'if [ -n "$tree" ]; then git worktree remove --force "$tree" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

bins=()
if [ -z "$COMMITS" ]; then
  cargo build --release --quiet -p confab-core
  bins+=(--bin "working-tree=$root/target/release/confab")
else
  for commit in $COMMITS; do
    rev="$(git rev-parse --short "$commit^{commit}")"
    tree="$work/tree-$rev"
    git worktree add --detach --quiet "$tree" "$rev"
    (cd "$tree" && CARGO_TARGET_DIR="$root/target" cargo build --release --quiet -p confab-core)
    cp "$root/target/release/confab" "$work/confab-$rev"
    git worktree remove --force "$tree"
    tree=""
    bins+=(--bin "$commit=$work/confab-$rev")
  done
fi

echo "machine: $(nproc) cores, $(uptime | sed 's/.*load average/load average/')"
python3 examples/bench/e2ee.py "${bins[@]}" --runs "$RUNS" --seconds "$SECONDS_MEASURED" \
  --warmup "$WARMUP" --width "$WIDTH" --height "$HEIGHT" --fps "$FPS" \
  --port "$PORT" --media-port "$MEDIA_PORT" ${JSON:+--json "$JSON"}
