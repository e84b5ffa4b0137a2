# Shared by the benchmark scripts (sourced, not run): wrk runs and their medians.
# Uses RUNS, DURATION and CONNECTIONS of the sourcing script.

# The median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# wrk's latency ("850.00us", "1.21ms", "1.02s") on standard input, in milliseconds.
ms() { sed -E 's/([0-9.]+)us$/echo "scale=3;\1\/1000" | bc/e; s/([0-9.]+)ms$/\1/; s/([0-9.]+)s$/echo "\1*1000" | bc/e'; }

# Runs wrk RUNS times after a 3 s warm-up; prints "median_rps median_p50_ms median_p99_ms".
# Stops the script if any response was not 2xx.
measure() {
  local rps=() p50=() p99=() out
  wrk -t1 -c"$CONNECTIONS" -d3s "$@" >/dev/null # warm-up
  for _ in $(seq "$RUNS"); do
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
    rps+=("$(awk '/Requests\/sec/ {print $2}' <<<"$out")")
    p50+=("$(awk '$1=="50%" {print $2}' <<<"$out")")
    p99+=("$(awk '$1=="99%" {print $2}' <<<"$out")")
    if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx responses:"; echo "$out"; exit 1; fi
  done
  echo "$(median "${rps[@]}") $(median "${p50[@]}" | ms) $(median "${p99[@]}" | ms)"
}
