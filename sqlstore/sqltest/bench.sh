#!/usr/bin/env bash
# Runs the store-against-raw benchmarks in interleaved rounds, keeps the raw
# output, and prints benchstat's medians with each column compared with
# via=raw. A round runs each contender once, in a process of its own (raw,
# text, store; the next round in the other order), so that neither a burst
# of noise nor going first favours one of them.
#
#   ./bench.sh                             # PostgreSQL, COUNT=8 BENCHTIME=2s
#   DB='Postgres|MySQL|SQLite' ./bench.sh  # every database
#   COUNT=10 BENCHTIME=3s OPS=Get DB=MySQL ./bench.sh
#   OPS='Get|GetElsewhere' DB='Postgres|MySQL|SQLite|Memory|Redis' ./bench.sh
#
# Environment: COUNT (default 8), BENCHTIME (default 2s), OPS (default
# Get|Update|GetElsewhere), DB (default Postgres; GetElsewhere has Memory and
# Redis), OUT (raw output; default a new temporary file), ANON_POSTGRES_URL,
# ANON_MYSQL_DSN, REDIS_URL (see doc.go). Each run writes a table (or Redis
# keys) of its own and removes it.
set -euo pipefail
cd "$(dirname "$0")"

COUNT=${COUNT:-8}
BENCHTIME=${BENCHTIME:-2s}
OPS=${OPS:-Get|Update|GetElsewhere}
DB=${DB:-Postgres}
OUT=${OUT:-$(mktemp --suffix=.txt)}
export PATH="$PATH:$(go env GOPATH)/bin"
command -v benchstat >/dev/null || go install golang.org/x/perf/cmd/benchstat@latest

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) COUNT=$COUNT BENCHTIME=$BENCHTIME OPS=$OPS DB=$DB"
  echo "# nproc: $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "# $(go version)"
  echo "# postgres: $(psql "${ANON_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}" -Atc 'SHOW server_version' 2>/dev/null || echo '?')"
  echo "# mysql: $(mysql -h 127.0.0.1 -u root -Nse 'SELECT VERSION()' 2>/dev/null || echo '?')"
} >"$OUT"
echo "raw output: $OUT" >&2

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go test -c -o "$bin/sqltest.test" .
for i in $(seq "$COUNT"); do
  echo "# round $i of $COUNT" | tee -a "$OUT" >&2
  vias="raw text store"
  if [ $((i % 2)) -eq 0 ]; then vias="store text raw"; fi
  for via in $vias; do
    "$bin/sqltest.test" -test.run '^$' -test.bench "^Benchmark($OPS)\$/^db=($DB)\$/^via=$via\$" \
      -test.benchtime "$BENCHTIME" -test.benchmem | { grep '^Benchmark' || true; } | tee -a "$OUT"
  done
done

echo
benchstat -col /via "$OUT"
