#!/usr/bin/env bash
# Runs the comparison benchmarks COUNT times, each in a process of its own,
# keeps the raw output, and prints a benchstat table and the ratios of medians (cmd/ratios), with the
# performance targets met or not. About 30 minutes on 2 cores (the
# comparison and the floor alone, BENCH=... below: 10).
#
#   ./run.sh                      # COUNT=6 BENCHTIME=1s
#   COUNT=10 BENCHTIME=2s ./run.sh
#   BENCH='^BenchmarkReturning$' ./run.sh
#   COUNT=5 BENCH='^Benchmark(Returning|New|ReturningFresh|NewFresh|Floor)$' ./run.sh
#   BENCH='^Benchmark(ReturningWithData|UpdateCart|NewGuestBudget)$' ./run.sh
#
# Environment: COUNT (default 6), BENCHTIME (default 1s), BENCH (default .),
# OUT (raw output file; default results/raw-<date>.txt), REDIS_URL (default
# redis://127.0.0.1:6379/0; the Redis contenders are skipped loudly when it
# is unreachable, or fail with ANON_REQUIRE_REDIS=1). Keys are written under
# random prefixes and removed afterwards; nothing is flushed.
set -euo pipefail
cd "$(dirname "$0")"

COUNT=${COUNT:-6}
BENCHTIME=${BENCHTIME:-1s}
BENCH=${BENCH:-.}
mkdir -p results
OUT=${OUT:-results/raw-$(date +%Y%m%d-%H%M%S).txt}
export PATH="$PATH:$(go env GOPATH)/bin"

if ! command -v benchstat >/dev/null; then
  echo "installing benchstat" >&2
  go install golang.org/x/perf/cmd/benchstat@latest
fi

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) COUNT=$COUNT BENCHTIME=$BENCHTIME BENCH=$BENCH"
  echo "# nproc: $(nproc)"
  echo "# cpu model: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "# $(go version)"
  echo "# redis: $(redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379/0}" info server 2>/dev/null | tr -d '\r' | grep -m1 '^redis_version:' || echo unreachable)"
} >"$OUT"

# A binary of its own, so that two runs at once do not replace each other's.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go test -c -o "$bin/bench.test" .

# Every benchmark runs in a process of its own: in one process, one
# benchmark's garbage sets the collector's pace for the next. The names
# come from one quick pass (-benchtime 1x), each made an anchored pattern;
# one that skips there (BenchmarkScale's larger cases) is listed all the
# same, and one that fails stops the run.
# results keeps the lines worth keeping: results, FAIL and SKIP lines, and
# the log lines that say why.
results() {
  grep -E '^(Benchmark.*ns/op|--- (FAIL|SKIP)|FAIL|[[:space:]]+[^[:space:]]+\.go:[0-9]+: )' || true
}
if ! "$bin/bench.test" -test.run '^$' -test.bench "$BENCH" -test.benchtime 1x -test.v >"$bin/list.txt" 2>&1; then
  results <"$bin/list.txt" >&2
  echo "the listing pass failed" >&2
  exit 1
fi
mapfile -t names < <(awk '/^Benchmark.*ns\/op/ { print $1 } /^--- SKIP: Benchmark/ { print $3 }' "$bin/list.txt" |
  sed -E 's/-[0-9]+$//' | awk '!seen[$0]++')
grep -E '^--- SKIP' "$bin/list.txt" >&2 || true
if [ ${#names[@]} -eq 0 ]; then
  echo "no benchmark matches $BENCH" >&2
  exit 1
fi
pattern() { # BenchmarkA/b-c -> ^BenchmarkA$/^b-c$, regexp characters escaped
  local out="" part
  IFS=/ read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    out+="${out:+/}^$(printf '%s' "$part" | sed 's/[][\\.*^$+?(){}|]/\\&/g')\$"
  done
  printf '%s' "$out"
}

echo "running ${#names[@]} benchmarks, each in its own process, $COUNT rounds × $BENCHTIME; raw output: bench/$OUT" >&2
# Rounds repeat COUNT times, each running every benchmark once, in reverse
# order every other round: a burst of noise from elsewhere on the machine
# spreads over all benchmarks instead of hitting all the samples of one,
# and none always runs first.
for i in $(seq "$COUNT"); do
  echo "# round $i of $COUNT" | tee -a "$OUT" >&2
  order=("${names[@]}")
  if (( i % 2 == 0 )); then
    order=()
    for ((k = ${#names[@]} - 1; k >= 0; k--)); do order+=("${names[k]}"); done
  fi
  for name in "${order[@]}"; do
    "$bin/bench.test" -test.run '^$' -test.bench "$(pattern "$name")" -test.benchtime "$BENCHTIME" -test.v |
      results | tee -a "$OUT"
  done
done

echo
echo "== benchstat"
benchstat "$OUT"
echo
echo "== ratios of medians"
go run ./cmd/ratios "$OUT"
