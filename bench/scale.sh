#!/usr/bin/env bash
# Runs BenchmarkScale (scale_test.go): returning guests through the
# middleware while memstore, then Redis, holds 1,000, 100,000 and 1,000,000
# guests; it reports heap (or Redis) bytes per guest, CPU and GC CPU per
# request and p50/p99/max latency. About a minute on 2 idle cores, up to
# five on a busy machine.
#
#   ./scale.sh
#   COUNT=3 ./scale.sh
#   BENCH=memstore ./scale.sh        # one store only
#
# Environment: COUNT (default 1); REQUESTS (default 2000000): requests per
# memstore case, a fixed count so that even the largest heap sees several
# garbage collections during the measurement; REDIS_BENCHTIME (default 2s);
# BENCH (default both: memstore and redis); OUT (raw output file, default
# results/scale-<date>.txt). The Redis cases use a private redis-server
# when one is on the PATH, else REDIS_URL (default redis://127.0.0.1:6379/0)
# under a random key prefix, which they remove afterwards.
set -euo pipefail
cd "$(dirname "$0")"

COUNT=${COUNT:-1}
REQUESTS=${REQUESTS:-2000000}
REDIS_BENCHTIME=${REDIS_BENCHTIME:-2s}
BENCH=${BENCH:-memstore redis}
mkdir -p results
OUT=${OUT:-results/scale-$(date +%Y%m%d-%H%M%S).txt}

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) COUNT=$COUNT REQUESTS=$REQUESTS REDIS_BENCHTIME=$REDIS_BENCHTIME"
  echo "# nproc: $(nproc), load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
  echo "# cpu model: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "# $(go version)"
  echo "# redis-server: $(redis-server --version 2>/dev/null || echo 'not on the PATH: REDIS_URL')"
} >"$OUT"

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go test -c -o "$bin/bench.test" .
for store in $BENCH; do
  case $store in
  memstore) benchtime=${REQUESTS}x ;;
  redis) benchtime=$REDIS_BENCHTIME ;;
  *) echo "unknown store $store (memstore or redis)" >&2; exit 2 ;;
  esac
  "$bin/bench.test" -test.run '^$' -test.bench "^BenchmarkScale\$/^$store/" \
    -test.benchtime "$benchtime" -test.count "$COUNT" -test.timeout 30m | tee -a "$OUT"
done
echo "raw output: bench/$OUT" >&2
