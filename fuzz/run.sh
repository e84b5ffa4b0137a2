#!/usr/bin/env bash
# Fuzzes what a stranger can send to Confab, with libFuzzer on the stable toolchain:
#
#   bash fuzz/run.sh                  # every target, 1,000,000 runs each
#   RUNS=50000 bash fuzz/run.sh ics   # one target, fewer runs
#
# Coverage instrumentation comes from stable rustc flags (the SanitizerCoverage
# pass), so no nightly toolchain is needed; there is no AddressSanitizer (safe Rust
# needs none for memory errors; panics, aborts and hangs are what is looked for).
# Inputs that found new paths are kept in fuzz/corpus/<target>/ (merged down to a
# minimal set at the end); a crash is saved under fuzz/artifacts/<target>/ and
# fails the run. The corpus test in core/tests/it/fuzz_corpus.rs replays
# fuzz/corpus/ in the normal test suite.
set -euo pipefail
cd "$(dirname "$0")"

runs="${RUNS:-1000000}"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(signaling next manifest mail_address tcp_frames ics sdp_offer media_before_auth media_after_auth)
host="$(rustc -vV | sed -n 's/^host: //p')"

export CONFAB_BUNDLED_PLUGINS=0
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# --target keeps the instrumentation out of build scripts and proc macros.
cargo build --release --target "$host" --bins

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target" "work/$target"
  echo "== $target: $runs runs"
  # A new input goes to work/ first; merging keeps only what adds coverage.
  status=0
  "target/$host/release/$target" -runs="$runs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 \
    "work/$target" "corpus/$target" >"work/$target.log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE|SUMMARY)|panicked" "work/$target.log" || true
  if [ "$status" -ne 0 ] || [ -n "$(ls -A "artifacts/$target")" ]; then
    tail -40 "work/$target.log" >&2
    echo "!! $target failed (exit $status): see fuzz/artifacts/$target/" >&2
    exit 1
  fi
  "target/$host/release/$target" -merge=1 -max_len=4096 "corpus/$target" "work/$target" >/dev/null 2>&1
  rm -rf "work/$target" "work/$target.log"
done
