#!/usr/bin/env bash
# redis-cluster.sh start [--replicas N]|stop|addrs — a throwaway Redis Cluster
# of three masters (each with N replicas, default none) on loopback, for the
# tests that need a real Cluster.
#
#   start  starts 3×(1+N) redis-server processes (cluster mode, no
#          persistence, daemonized) on free ports from
#          $REDIS_CLUSTER_BASE_PORT (default 30001) upward, in a fresh
#          temporary folder; joins them with `redis-cli --cluster create
#          --cluster-replicas N`; waits until every node reports
#          cluster_state:ok and knows all the others and which are replicas,
#          and every replica reports master_link_status:up; writes the state
#          file and prints, alone on stdout, one line with every node,
#          masters first:
#              REDIS_CLUSTER_ADDRS=127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
#          so that `a=$(scripts/redis-cluster.sh start) && export "$a"` sets
#          it (and a failed start stops a `set -e` script).
#          With --replicas N ≥ 1 the nodes run with cluster-node-timeout
#          2000 ms instead of 5000, so that a replica takes over a dead master
#          in about 4 s: failover tests can kill a master (its pid is
#          process_id in INFO server), SHUTDOWN NOSAVE it, or stall it with
#          DEBUG SLEEP (DEBUG is allowed from loopback on Redis ≥ 7, where it
#          is off by default). Without replicas a lost master cannot be
#          replaced anyway, and the longer timeout keeps a busy machine from
#          marking nodes failed.
#   stop   shuts the nodes down and removes the folder and the state file.
#   addrs  prints the REDIS_CLUSTER_ADDRS line of the running cluster.
#
# The state file is $REDIS_CLUSTER_STATE (default
# ${TMPDIR:-/tmp}/anonymous-redis-cluster.env). Needs redis-server and
# redis-cli (Debian: apt-get install redis-server redis-tools).
set -euo pipefail

STATE=${REDIS_CLUSTER_STATE:-${TMPDIR:-/tmp}/anonymous-redis-cluster.env}
BASE=${REDIS_CLUSTER_BASE_PORT:-30001}
MASTERS=3

log() { echo "redis-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=scripts/redis-lib.sh
source "$(dirname "$0")/redis-lib.sh"

# node_pid PORT: the pid of the redis-server answering on PORT.
node_pid() { redis-cli -p "$1" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p'; }

# info_field PORT SECTION FIELD: FIELD of INFO SECTION on PORT.
info_field() { redis-cli -p "$1" info "$2" 2>/dev/null | tr -d '\r' | sed -n "s/^$3://p"; }

start() {
	local replicas=0
	while [ $# -gt 0 ]; do
		case $1 in
		--replicas)
			if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then die "--replicas needs a number"; fi
			replicas=$2
			shift 2
			;;
		*) die "start: unknown option $1" ;;
		esac
	done
	require_redis
	local nodes=$((MASTERS * (1 + replicas))) timeout=5000 extra=()
	[ "$replicas" = 0 ] || timeout=2000
	if debug_refused; then extra+=(--enable-debug-command local); fi
	clear_stale_state "$STATE" REDIS_CLUSTER "a cluster"

	local port addrs=() pid
	# Globals, for the EXIT trap: whatever goes wrong, leave no node behind.
	dir=$(mktemp -d "${TMPDIR:-/tmp}/anonymous-redis-cluster.XXXXXX")
	ports=()
	started=0
	trap '[ "$started" = 1 ] || stop_dir "$dir" "${ports[@]}"' EXIT
	port=$BASE
	while [ ${#ports[@]} -lt $nodes ]; do
		[ "$port" -le 55535 ] || die "no free ports from $BASE"
		# A node also listens on its bus port, port+10000.
		if in_use "$port" || in_use $((port + 10000)); then port=$((port + 1)); continue; fi
		redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
			--cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
			--cluster-node-timeout "$timeout" --save "" --appendonly no "${extra[@]}" \
			--repl-diskless-sync-delay 0 --dbfilename "$port.rdb" \
			--dir "$dir" --pidfile "$dir/$port.pid" --logfile "$dir/$port.log" >/dev/null 2>&1 || true
		# Ours only if the server answering is the one whose pid file we named:
		# another process may have taken the port since we probed it.
		for _ in $(seq 50); do
			pid=$(cat "$dir/$port.pid" 2>/dev/null || true)
			[ -n "$pid" ] && [ "$(node_pid "$port")" = "$pid" ] && break
			pid=
			sleep 0.1
		done
		if [ -n "$pid" ]; then
			ports+=("$port")
			addrs+=("127.0.0.1:$port")
		else
			log "no node of ours came up on port $port; trying the next one"
			stop_dir_pid "$dir/$port.pid"
		fi
		port=$((port + 1))
	done

	redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log" 2>&1 ||
		{ cat "$dir/create.log" >&2; die "cluster create failed"; }

	# Ready when every node is ok, knows every other and which of them are
	# replicas (that spreads by gossip, after the slots), none flagged failing,
	# and every replica has its master's data.
	local p ok=0 info
	for _ in $(seq 300); do
		ok=1
		for p in "${ports[@]}"; do
			info=$(redis-cli -p "$p" cluster info 2>/dev/null | tr -d '\r')
			grep -q '^cluster_state:ok$' <<<"$info" && grep -q "^cluster_known_nodes:$nodes$" <<<"$info" || ok=0
			info=$(redis-cli -p "$p" cluster nodes 2>/dev/null | tr -d '\r')
			[ "$(awk '$3 ~ /fail|handshake|noaddr/ { bad = 1 } $3 ~ /slave/ { n++ } END { print bad ? -1 : n + 0 }' <<<"$info")" = $((nodes - MASTERS)) ] || ok=0
			[ "$(info_field "$p" replication role)" != slave ] ||
				[ "$(info_field "$p" replication master_link_status)" = up ] || ok=0
		done
		[ $ok = 1 ] && break
		sleep 0.1
	done
	[ $ok = 1 ] || die "the cluster was not ok, with every replica in sync, within 30s"

	# Masters first: redis-cli chose which nodes replicate which.
	local masters=() others=()
	for p in "${ports[@]}"; do
		if [ "$(info_field "$p" replication role)" = master ]; then masters+=("127.0.0.1:$p"); else others+=("127.0.0.1:$p"); fi
	done
	[ ${#masters[@]} = $MASTERS ] || die "expected $MASTERS masters, found ${#masters[@]}"
	addrs=("${masters[@]}" "${others[@]}")

	local joined
	joined=$(IFS=,; echo "${addrs[*]}")
	{
		echo "REDIS_CLUSTER_DIR=$dir"
		echo "REDIS_CLUSTER_PORTS=\"${ports[*]}\""
		echo "REDIS_CLUSTER_ADDRS=$joined"
	} >"$STATE"
	started=1
	log "$MASTERS masters, $((nodes - MASTERS)) replicas up in $dir (state: $STATE)"
	echo "REDIS_CLUSTER_ADDRS=$joined"
}

# stop_dir_pid PIDFILE: stop the node a pid file names, if it still runs.
stop_dir_pid() {
	local pid
	pid=$(our_pid "$1")
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
}

stop() {
	if [ ! -e "$STATE" ]; then
		log "no cluster running ($STATE not found)"
		return 0
	fi
	local REDIS_CLUSTER_DIR REDIS_CLUSTER_PORTS
	# shellcheck disable=SC1090
	. "$STATE"
	# shellcheck disable=SC2086
	stop_dir "$REDIS_CLUSTER_DIR" $REDIS_CLUSTER_PORTS
	rm -f "$STATE"
	log "stopped"
}

addrs() {
	[ -e "$STATE" ] || die "no cluster running ($STATE not found)"
	grep '^REDIS_CLUSTER_ADDRS=' "$STATE"
}

case ${1:-} in
start) shift; start "$@" ;;
stop) stop ;;
addrs) addrs ;;
*) die "usage: $0 start [--replicas N]|stop|addrs" ;;
esac
