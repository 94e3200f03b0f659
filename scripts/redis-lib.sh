# shellcheck shell=bash
# Shared by redis-cluster.sh and redis-sentinel.sh: sourced, not run.

# in_use PORT: something listens on 127.0.0.1:PORT.
in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# alive PID: PID runs and has not exited. A daemonized server that exited
# stays a zombie until init reaps it, which some inits do late or never.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ -n "$stat" ] && [ "${stat:0:1}" != Z ]
}

# our_pid PIDFILE: the pid in PIDFILE if it is still a running redis-server
# (a Sentinel is a redis-server too; its comm is redis-sentinel).
our_pid() {
	local pid
	pid=$(cat "$1" 2>/dev/null || true)
	[ -n "$pid" ] && grep -q redis-se "/proc/$pid/comm" 2>/dev/null && alive "$pid" && echo "$pid"
	return 0
}

# debug_refused: the server refuses DEBUG unless allowed by enable-debug-command
# (Redis 7 and later; older servers allow it and reject that option).
debug_refused() {
	local v
	v=$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
	[ "${v:-0}" -ge 7 ]
}

# require_redis: dies unless redis-server and redis-cli are on the PATH.
require_redis() {
	command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
	command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools)"
}

# clear_stale_state STATE PREFIX WHAT: STATE is the state file of an earlier
# setup, WHAT ("a cluster"), whose directory and ports it keeps in
# PREFIX_DIR and PREFIX_PORTS. If one of its servers still runs, die;
# otherwise remove the setup's files. Nothing to do without STATE.
clear_stale_state() {
	local state=$1 prefix=$2 what=$3 p
	[ -e "$state" ] || return 0
	local "${prefix}_DIR" "${prefix}_PORTS"
	# shellcheck disable=SC1090
	. "$state"
	local dir_var=${prefix}_DIR ports_var=${prefix}_PORTS
	for p in ${!ports_var}; do
		[ -z "$(our_pid "${!dir_var}/$p.pid")" ] || die "$what from $state is running (run stop first)"
	done
	log "removing the state of $what that no longer runs ($state)"
	rm -rf "${!dir_var}" "$state"
}

# stop_dir DIR PORT...: stop the servers by the pids they wrote, the last
# port first (a Sentinel before the nodes it watches, replicas before their
# masters), then remove DIR.
stop_dir() {
	local dir=$1 port pid i
	shift
	local ports=("$@")
	for ((i = ${#ports[@]} - 1; i >= 0; i--)); do
		port=${ports[i]}
		pid=$(our_pid "$dir/$port.pid")
		[ -n "$pid" ] || continue
		kill "$pid" 2>/dev/null || true # SIGTERM: with save "" nothing is written
		for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
		if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
	done
	rm -rf "$dir"
}
