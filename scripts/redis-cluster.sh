#!/usr/bin/env bash
# redis-cluster.sh start|stop|addrs — a throwaway 3-master Redis Cluster on
# loopback, for the tests that need a real Cluster.
#
#   start  starts three redis-server processes (cluster mode, no persistence,
#          daemonized) on free ports from $REDIS_CLUSTER_BASE_PORT (default
#          30001) upward, in a fresh temporary folder; joins them with
#          `redis-cli --cluster create`; waits for cluster_state:ok; writes
#          the state file and prints, alone on stdout,
#              REDIS_CLUSTER_ADDRS=127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
#          so that `a=$(scripts/redis-cluster.sh start) && export "$a"` sets
#          it (and a failed start stops a `set -e` script).
#   stop   shuts the nodes down and removes the folder and the state file.
#   addrs  prints the REDIS_CLUSTER_ADDRS line of the running cluster.
#
# The state file is $REDIS_CLUSTER_STATE (default
# ${TMPDIR:-/tmp}/anonymous-redis-cluster.env). Needs redis-server and
# redis-cli (Debian: apt-get install redis-server redis-tools).
set -euo pipefail

STATE=${REDIS_CLUSTER_STATE:-${TMPDIR:-/tmp}/anonymous-redis-cluster.env}
BASE=${REDIS_CLUSTER_BASE_PORT:-30001}
NODES=3

log() { echo "redis-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# in_use PORT: something listens on 127.0.0.1:PORT.
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alive PID: PID runs and has not exited. A daemonized node that exited
# stays a zombie until init reaps it, which some inits do late or never.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ -n "$stat" ] && [ "${stat:0:1}" != Z ]
}

# our_pid PIDFILE: the pid in PIDFILE if it is still a running redis-server.
our_pid() {
	local pid
	pid=$(cat "$1" 2>/dev/null || true)
	[ -n "$pid" ] && grep -q redis-server "/proc/$pid/comm" 2>/dev/null && alive "$pid" && echo "$pid"
	return 0
}

stop_dir() { # DIR PORT...: stop the nodes by the pids they wrote, then remove DIR.
	local dir=$1 port pid
	shift
	for port in "$@"; do
		pid=$(our_pid "$dir/$port.pid")
		[ -n "$pid" ] || continue
		kill "$pid" 2>/dev/null || true # SIGTERM: with save "" nothing is written
		for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
		if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
	done
	rm -rf "$dir"
}

# node_pid PORT: the pid of the redis-server answering on PORT.
node_pid() { redis-cli -p "$1" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p'; }

start() {
	command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
	command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools)"
	if [ -e "$STATE" ]; then
		local REDIS_CLUSTER_DIR REDIS_CLUSTER_PORTS p
		# shellcheck disable=SC1090
		. "$STATE"
		for p in $REDIS_CLUSTER_PORTS; do
			[ -z "$(our_pid "$REDIS_CLUSTER_DIR/$p.pid")" ] || die "a cluster from $STATE is running (run stop first)"
		done
		log "removing the state of a cluster that no longer runs ($STATE)"
		rm -rf "$REDIS_CLUSTER_DIR" "$STATE"
	fi

	local port addrs=() pid
	# Globals, for the EXIT trap: whatever goes wrong, leave no node behind.
	dir=$(mktemp -d "${TMPDIR:-/tmp}/anonymous-redis-cluster.XXXXXX")
	ports=()
	started=0
	trap '[ "$started" = 1 ] || stop_dir "$dir" "${ports[@]}"' EXIT
	port=$BASE
	while [ ${#ports[@]} -lt $NODES ]; do
		[ "$port" -le 55535 ] || die "no free ports from $BASE"
		# A node also listens on its bus port, port+10000.
		if in_use "$port" || in_use $((port + 10000)); then port=$((port + 1)); continue; fi
		redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
			--cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
			--cluster-node-timeout 5000 --save "" --appendonly no \
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

	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 ||
		{ cat "$dir/create.log" >&2; die "cluster create failed"; }

	local p ok=0
	for _ in $(seq 300); do
		ok=1
		for p in "${ports[@]}"; do
			redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
		done
		[ $ok = 1 ] && break
		sleep 0.1
	done
	[ $ok = 1 ] || die "cluster_state did not become ok within 30s"

	local joined
	joined=$(IFS=,; echo "${addrs[*]}")
	{
		echo "REDIS_CLUSTER_DIR=$dir"
		echo "REDIS_CLUSTER_PORTS=\"${ports[*]}\""
		echo "REDIS_CLUSTER_ADDRS=$joined"
	} >"$STATE"
	started=1
	log "3 masters up in $dir (state: $STATE)"
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
start) start ;;
stop) stop ;;
addrs) addrs ;;
*) die "usage: $0 start|stop|addrs" ;;
esac
