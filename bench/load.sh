#!/usr/bin/env bash
# End-to-end load check on loopback: wrk against cmd/loadserver's page
# without the middleware, with one raw Redis GET and no middleware, with the
# middleware on memstore and on Redis, and against examples/shop (memstore
# and Redis), all as returning guests: each request carries the cookie of
# one of $GUESTS settled guests (a Lua script rotates them). Every server
# runs once per round, ROUNDS rounds; prints the median requests/s and p99
# latency of each. About 4 minutes. Not part of CI.
#
#   ./load.sh                          # 3 rounds of 10s per server
#   ROUNDS=5 DURATION=30s CONNECTIONS=64 ./load.sh
#
# Needs wrk (apt-get install -y wrk), curl and a Redis at REDIS_URL
# (default redis://127.0.0.1:6379/0). Servers listen on 127.0.0.1 only and
# are stopped at the end; Redis keys go under random prefixes, removed by
# loadserver on exit (the shop's under bench:load:shop:<random>:, removed
# here). Nothing is flushed.
set -euo pipefail
cd "$(dirname "$0")"

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
GUESTS=${GUESTS:-50}
ROUNDS=${ROUNDS:-3}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}

command -v wrk >/dev/null || { echo "load.sh: wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v curl >/dev/null || { echo "load.sh: curl is missing" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/loadserver" ./cmd/loadserver
have_shop=0
if (cd .. && go build -o "$work/shop" ./examples/shop) 2>"$work/shop-build.log"; then
  have_shop=1
else
  echo "load.sh: examples/shop does not build; skipping it:" >&2
  cat "$work/shop-build.log" >&2
fi

# free_port asks the kernel for a free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_up URL: polls until the server answers, at most 10 s.
wait_up() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "load.sh: $1 never came up" >&2
  return 1
}

# settle URL: a new visitor's first request, then its cookies sent back until
# the server sets no more; prints the Cookie header of that returning guest.
settle() {
  local url=$1 ck="" set
  for _ in 1 2 3 4; do
    set=$(curl -s -o /dev/null -D - ${ck:+-H "Cookie: $ck"} "$url" | tr -d '\r' |
      awk 'tolower($1)=="set-cookie:" { sub(/^[^:]*: */, ""); split($0, a, ";"); print a[1] }')
    [ -z "$set" ] && break
    ck=$(printf '%s\n%s\n' "$(tr ';' '\n' <<<"$ck" | sed 's/^ *//')" "$set" |
      awk -F= 'NF >= 2 { v[$1] = substr($0, length($1) + 2); if (!($1 in o)) { o[$1] = ++n; k[n] = $1 } }
               END { s = ""; for (i = 1; i <= n; i++) if (v[k[i]] != "") s = s (s ? "; " : "") k[i] "=" v[k[i]]; print s }')
  done
  echo "$ck"
}

# lua COOKIEFILE: a wrk script sending the cookies round robin.
lua() {
  {
    echo 'local cookies = {'
    sed 's/\\/\\\\/g; s/"/\\"/g; s/.*/  "&",/' "$1"
    echo '}'
    echo 'local i = 0'
    echo 'request = function()'
    echo '  i = i % #cookies + 1'
    echo '  return wrk.format("GET", "/", { ["Cookie"] = cookies[i] })'
    echo 'end'
  } >"$work/cookies.lua"
  echo "$work/cookies.lua"
}

names=()
# measure NAME URL COOKIEFILE: runs wrk and appends "requests/s p99-in-ms"
# to $work/res-NAME.
measure() {
  local name=$1 url=$2 out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$(lua "$3")" "$url")
  echo "$out" >>"$work/wrk-$name.txt"
  local rps p99 errs
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
                          print (u == "us" ? v / 1000 : u == "s" ? v * 1000 : v) }' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/' <<<"$out")
  if [ -n "$errs" ]; then echo "load.sh: $name: $errs" >&2; fi
  [ -e "$work/res-$name" ] || names+=("$name")
  echo "$rps $p99" >>"$work/res-$name"
  echo "$name: $rps requests/s, p99 ${p99}ms" >&2
}

# median FILE COLUMN
median() { sort -g -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# run_server NAME COOKIEFILE-OR-"" CMD...: starts a server, settles guests
# (unless given a cookie file), measures, stops it.
run_server() {
  local name=$1 cookies=$2 port url
  shift 2
  port=$(free_port)
  "$@" -addr "127.0.0.1:$port" >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  url="http://127.0.0.1:$port/"
  wait_up "$url"
  if [ -z "$cookies" ]; then
    cookies="$work/cookies-$name.txt"
    : >"$cookies"
    for _ in $(seq "$GUESTS"); do settle "$url" >>"$cookies"; done
    if ! grep -q . "$cookies"; then echo "load.sh: $name set no cookie" >&2; return 1; fi
    # A settled guest's request sets no cookie: it is a returning guest.
    if curl -s -o /dev/null -D - -H "Cookie: $(head -1 "$cookies")" "$url" | grep -qi '^set-cookie:'; then
      echo "load.sh: $name: the settled cookie still gets a new one; not a returning guest" >&2
      return 1
    fi
  fi
  measure "$name" "$url" "$cookies"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  run_server loadserver-memstore "" "$work/loadserver" -mode memstore
  # The servers without the middleware get the same Cookie headers, and
  # ignore them.
  run_server loadserver-none "$work/cookies-loadserver-memstore.txt" "$work/loadserver" -mode none
  run_server loadserver-rawget "$work/cookies-loadserver-memstore.txt" "$work/loadserver" -mode rawget -redis "$REDIS_URL"
  run_server loadserver-redis "" "$work/loadserver" -mode redis -redis "$REDIS_URL"
  if [ "$have_shop" = 1 ]; then
    run_server shop-memstore "" "$work/shop"
    shop_prefix="bench:load:shop:$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n'):"
    run_server shop-redis "" "$work/shop" -redis "$REDIS_URL" -redis-prefix "$shop_prefix"
    redis-cli -u "$REDIS_URL" --scan --pattern "${shop_prefix}*" | xargs -r redis-cli -u "$REDIS_URL" unlink >/dev/null
  fi
done

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $GUESTS returning guests, medians of $ROUNDS rounds;"
echo "loopback, $(nproc) cores shared by wrk, the server and Redis"
echo
echo "| server | requests/s | p99 latency (ms) |"
echo "|---|--:|--:|"
for n in "${names[@]}"; do
  printf '| %s | %.0f | %.2f |\n' "$n" "$(median "$work/res-$n" 1)" "$(median "$work/res-$n" 2)"
done
