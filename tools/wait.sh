# wait.sh: waiting helpers sourced by tools/cluster.sh and tools/bench.sh.
# The caller sets WAIT_WHO (the name prefixed to messages) and logdir.

# wait_http URL SECONDS: poll until URL answers 2xx.
wait_http() {
	local url=$1 deadline=$((SECONDS + $2))
	until curl -fsS -o /dev/null "$url" 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "$WAIT_WHO: $url did not come up; logs in $logdir" >&2
			return 1
		fi
		sleep 0.1
	done
}

# wait_consul_leader ADDR SECONDS: wait until the Consul agent at ADDR
# (host:port) answers and has elected a leader (its leader endpoint answers
# "" before that).
wait_consul_leader() {
	local addr=$1 deadline=$((SECONDS + $2))
	wait_http "http://$addr/v1/status/leader" "$2" || return 1
	until [ "$(curl -fsS "http://$addr/v1/status/leader")" != '""' ]; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "$WAIT_WHO: consul at $addr elected no leader" >&2
			return 1
		fi
		sleep 0.2
	done
}
