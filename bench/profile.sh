#!/usr/bin/env bash
# Profiles package anonymous's contenders: for each benchmark below, a CPU
# and a memory (allocation) profile in results/, and the top entries of
# each printed. Not part of CI.
#
#   ./profile.sh                       # all anonymous contenders, 3s each
#   BENCHTIME=5s ./profile.sh 'Returning/anonymous-memstore-onreturn'
set -euo pipefail
cd "$(dirname "$0")"
BENCHTIME=${BENCHTIME:-3s}
TOP=${TOP:-20}
mkdir -p results

if [ $# -eq 0 ]; then
  set -- Returning/anonymous-memstore-onreturn Returning/anonymous-redisstore-onreturn \
         New/anonymous-memstore-onreturn New/anonymous-memstore-onissue New/anonymous-redisstore-onissue
fi

go test -c -o results/bench.test .
for b in "$@"; do
  group=${b%%/*} contender=${b#*/}
  name=$(echo "$b" | tr '/' '-')
  echo
  echo "== $b"
  ./results/bench.test -test.run '^$' -test.bench "^Benchmark${group}\$/^${contender}\$" \
    -test.benchtime "$BENCHTIME" -test.benchmem \
    -test.cpuprofile "results/cpu-$name.prof" -test.memprofile "results/mem-$name.prof" | grep '^Benchmark'
  echo "-- CPU (cumulative, top $TOP)"
  go tool pprof -top -cum -nodecount "$TOP" results/bench.test "results/cpu-$name.prof" 2>/dev/null | sed -n '/flat%/,$p'
  echo "-- allocations (objects, top $TOP)"
  go tool pprof -top -sample_index=alloc_objects -nodecount "$TOP" results/bench.test "results/mem-$name.prof" 2>/dev/null | sed -n '/flat%/,$p'
done
