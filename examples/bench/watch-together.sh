#!/usr/bin/env bash
# watch-together in three headless Chromium browsers (Debian's chromium and
# chromium-driver), driven over WebDriver by examples/bench/watch-together.py:
# pairwise drift during steady playback, a late joiner 1 s after it got the video,
# and the time play, pause and seek take to reach the other players. RUNS runs of
# STEADY s of steady playback and COMMANDS rounds of commands each.
# Needs: cargo, python3 with PyAV and cryptography (pip install aiortc brings both),
# /usr/bin/chromium, /usr/bin/chromedriver.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS="${RUNS:-3}"
STEADY="${STEADY:-20}"
COMMANDS="${COMMANDS:-4}"

cargo build --release --locked -p confab-core
python3 examples/bench/watch-together.py --bin target/release/confab \
  --runs "$RUNS" --steady "$STEADY" --commands "$COMMANDS"
