#!/usr/bin/env bash
# redis-sentinel.sh start|stop|env — a throwaway Redis master with two
# replicas, watched by three Sentinels, on loopback, for the tests that need
# failover under Sentinel.
#
#   start  starts a master and two replicas of it (redis-server with
#          replicaof, no persistence, daemonized) and three Sentinels that
#          monitor the master as "anonmaster" (quorum 2,
#          down-after-milliseconds 1000, failover-timeout 3000,
#          parallel-syncs 1), on free ports from $REDIS_SENTINEL_BASE_PORT
#          (default 31001) upward, in a fresh temporary folder; waits until
#          both replicas are in sync and every Sentinel sees the master, both
#          replicas and the two other Sentinels; writes the state file and
#          prints, alone on stdout, three lines:
#              REDIS_SENTINEL_ADDRS=127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3
#              REDIS_SENTINEL_MASTER=anonmaster
#              REDIS_SENTINEL_NODES=127.0.0.1:m,127.0.0.1:r1,127.0.0.1:r2
#          ADDRS are the Sentinels; NODES the data nodes, the master first
#          (as started: after a failover ask a Sentinel which is master).
#          Every line is NAME=VALUE, the value free of blanks, quotes and
#          glob characters. Export them all with
#              s=$(scripts/redis-sentinel.sh start) &&
#                  while IFS= read -r v; do export "$v"; done <<<"$s"
#          (a failed start stops a `set -e` script there), or, the same,
#              s=$(scripts/redis-sentinel.sh start) && eval "$(sed 's/^/export /' <<<"$s")"
#          A single `export "$s"` would set one variable holding all lines.
#          If the state file names processes that no longer run, start
#          removes what is left of them and starts over.
#   stop   stops every process by its pid file and removes the folder and the
#          state file; without a running setup it only says so (exit 0).
#   env    prints the three lines of the running setup, as start did.
#
# A master killed with kill -9 (its pid is process_id in INFO server) is
# replaced by a replica in about 3 s. DEBUG is allowed from loopback on
# Redis ≥ 7 (off there by default), so tests can stall a node with DEBUG
# SLEEP.
#
# The state file is $REDIS_SENTINEL_STATE (default
# ${TMPDIR:-/tmp}/anonymous-redis-sentinel.env). Needs redis-server and
# redis-cli (Debian: apt-get install redis-server redis-tools).
set -euo pipefail

STATE=${REDIS_SENTINEL_STATE:-${TMPDIR:-/tmp}/anonymous-redis-sentinel.env}
BASE=${REDIS_SENTINEL_BASE_PORT:-31001}
MASTER_NAME=anonmaster
REPLICAS=2
SENTINELS=3

log() { echo "redis-sentinel: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=scripts/redis-lib.sh
source "$(dirname "$0")/redis-lib.sh"

# cli PORT ARG...: redis-cli against 127.0.0.1:PORT, without the CRs.
cli() {
	local port=$1
	shift
	redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null | tr -d '\r'
}

# info_field PORT SECTION FIELD: FIELD of INFO SECTION on PORT.
info_field() { cli "$1" info "$2" | sed -n "s/^$3://p"; }

# reply_field FIELD: the value after the key FIELD in a key/value reply that
# redis-cli printed one element a line (such as SENTINEL MASTER).
reply_field() { awk -v k="$1" 'NR % 2 == 1 && $0 == k { getline; print; exit }'; }

# launch PORT COMMAND...: run COMMAND, which daemonizes a server on PORT that
# writes $dir/PORT.pid; succeed if the server answering on PORT is that one:
# another process may have taken the port since we probed it.
launch() {
	local port=$1 pid
	shift
	"$@" >/dev/null 2>&1 || true
	for _ in $(seq 50); do
		pid=$(cat "$dir/$port.pid" 2>/dev/null || true)
		[ -n "$pid" ] && [ "$(info_field "$port" server process_id)" = "$pid" ] && return 0
		sleep 0.1
	done
	pid=$(our_pid "$dir/$port.pid")
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	return 1
}

# start_one KIND: start a server of KIND (master, replica or sentinel) on the
# next free port, and add that port to ports.
start_one() {
	local kind=$1
	while :; do
		[ "$port" -le 65535 ] || die "no free ports from $BASE"
		if in_use "$port"; then port=$((port + 1)); continue; fi
		local ok=0
		# A data node has its own rdb file, which a replica writes when it
		# loads a full sync.
		local opts=("${data_opts[@]}" --port "$port" --pidfile "$dir/$port.pid"
			--logfile "$dir/$port.log" --dbfilename "$port.rdb")
		case $kind in
		master) launch "$port" redis-server "${opts[@]}" && ok=1 ;;
		replica) launch "$port" redis-server "${opts[@]}" --replicaof 127.0.0.1 "${ports[0]}" && ok=1 ;;
		sentinel)
			cat >"$dir/sentinel-$port.conf" <<-EOF
				port $port
				bind 127.0.0.1
				daemonize yes
				dir "$dir"
				pidfile "$dir/$port.pid"
				logfile "$dir/$port.log"
				sentinel monitor $MASTER_NAME 127.0.0.1 ${ports[0]} 2
				sentinel down-after-milliseconds $MASTER_NAME 1000
				sentinel failover-timeout $MASTER_NAME 3000
				sentinel parallel-syncs $MASTER_NAME 1
			EOF
			launch "$port" redis-server "$dir/sentinel-$port.conf" --sentinel && ok=1
			;;
		esac
		if [ $ok = 1 ]; then
			ports+=("$port")
			port=$((port + 1))
			return
		fi
		log "no $kind of ours came up on port $port; trying the next one"
		port=$((port + 1))
	done
}

# ready: the replicas are in sync with the master, and every Sentinel sees
# the master up, both replicas and the other Sentinels.
ready() {
	local p reply n
	local master=${ports[0]} replicas=("${ports[@]:1:REPLICAS}") sentinels=("${ports[@]:1+REPLICAS}")
	[ "$(cli "$master" info replication | grep -c '^slave[0-9]*:.*state=online')" = $REPLICAS ] || return 1
	for p in "${replicas[@]}"; do
		[ "$(info_field "$p" replication master_link_status)" = up ] || return 1
		[ "$(info_field "$p" replication master_sync_in_progress)" = 0 ] || return 1
	done
	for p in "${sentinels[@]}"; do
		reply=$(cli "$p" sentinel master "$MASTER_NAME")
		[ "$(reply_field flags <<<"$reply")" = master ] || return 1
		[ "$(reply_field num-slaves <<<"$reply")" = $REPLICAS ] || return 1
		[ "$(reply_field num-other-sentinels <<<"$reply")" = $((SENTINELS - 1)) ] || return 1
		# Each replica known, and not flagged down or disconnected.
		n=$(cli "$p" sentinel replicas "$MASTER_NAME" | awk '$0 == "flags" { getline; if ($0 == "slave") n++ } END { print n + 0 }')
		[ "$n" = $REPLICAS ] || return 1
		[ "$(cli "$p" sentinel get-master-addr-by-name "$MASTER_NAME" | tr '\n' ' ')" = "127.0.0.1 $master " ] || return 1
	done
}

start() {
	require_redis
	clear_stale_state "$STATE" REDIS_SENTINEL "a setup"

	# Globals, for the EXIT trap and start_one: whatever goes wrong, leave no
	# server behind.
	dir=$(mktemp -d "${TMPDIR:-/tmp}/anonymous-redis-sentinel.XXXXXX")
	ports=()
	started=0
	trap '[ "$started" = 1 ] || stop_dir "$dir" "${ports[@]}"' EXIT
	port=$BASE
	data_opts=(--bind 127.0.0.1 --daemonize yes --save "" --appendonly no
		--repl-diskless-sync-delay 0 --dir "$dir")
	if debug_refused; then data_opts+=(--enable-debug-command local); fi

	local i
	start_one master
	for ((i = 0; i < REPLICAS; i++)); do start_one replica; done
	for ((i = 0; i < SENTINELS; i++)); do start_one sentinel; done

	local ok=0
	for _ in $(seq 300); do
		if ready; then ok=1; break; fi
		sleep 0.1
	done
	[ $ok = 1 ] || die "the replicas were not in sync, or the Sentinels did not see them and each other, within 30s"

	local addrs=() nodes=() p
	for p in "${ports[@]:0:1+REPLICAS}"; do nodes+=("127.0.0.1:$p"); done
	for p in "${ports[@]:1+REPLICAS}"; do addrs+=("127.0.0.1:$p"); done
	local env
	env=$(
		IFS=,
		echo "REDIS_SENTINEL_ADDRS=${addrs[*]}"
		echo "REDIS_SENTINEL_MASTER=$MASTER_NAME"
		echo "REDIS_SENTINEL_NODES=${nodes[*]}"
	)
	{
		echo "REDIS_SENTINEL_DIR=$(printf %q "$dir")"
		echo "REDIS_SENTINEL_PORTS=\"${ports[*]}\""
		echo "$env"
	} >"$STATE"
	started=1
	log "a master, $REPLICAS replicas and $SENTINELS Sentinels up in $dir (state: $STATE)"
	echo "$env"
}

stop() {
	if [ ! -e "$STATE" ]; then
		log "nothing running ($STATE not found)"
		return 0
	fi
	local REDIS_SENTINEL_DIR REDIS_SENTINEL_PORTS
	# shellcheck disable=SC1090
	. "$STATE"
	# shellcheck disable=SC2086
	stop_dir "$REDIS_SENTINEL_DIR" $REDIS_SENTINEL_PORTS
	rm -f "$STATE"
	log "stopped"
}

print_env() {
	[ -e "$STATE" ] || die "nothing running ($STATE not found)"
	grep -E '^REDIS_SENTINEL_(ADDRS|MASTER|NODES)=' "$STATE"
}

case ${1:-} in
start) start ;;
stop) stop ;;
env) print_env ;;
*) die "usage: $0 start|stop|env" ;;
esac
