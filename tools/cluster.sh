#!/usr/bin/env bash
# cluster.sh: a three-node confab cluster on this machine, for trying rooms
# that span nodes. Starts a Consul dev agent (in memory, loopback only) and
# nodes n1..n3 on http://127.0.0.1:8081..8083 (UDP 50001..50003), prints the
# URLs and follows the logs. Ctrl-C stops everything.
#
# Environment:
#   CONSUL_HTTP_PORT       Consul HTTP port (default 8500)
#   CONFAB_CLUSTER_SECRET  shared secret (default: a random one made per run);
#                          handed to the nodes in their environment, never
#                          on the command line
#   CLUSTER_LOG_DIR        where logs go (default: a new temporary directory)
#   CLUSTER_FOLLOW=0       do not follow the logs, just wait
set -euo pipefail
cd "$(dirname "$0")/.."

confab=bin/confab
consul=bin/consul
for b in "$confab" "$consul"; do
	if [ ! -x "$b" ]; then
		echo "cluster: $b is missing; run 'make build consul' first" >&2
		exit 1
	fi
done

consul_port=${CONSUL_HTTP_PORT:-8500}
secret=${CONFAB_CLUSTER_SECRET:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}
# One TURN key for all nodes: a credential one node issued works on all.
export CONFAB_TURN_SECRET=${CONFAB_TURN_SECRET:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}
logdir=${CLUSTER_LOG_DIR:-$(mktemp -d -t confab-cluster.XXXXXX)}
mkdir -p "$logdir"

pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "cluster: stopping"
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	echo "cluster: stopped (logs in $logdir)"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WAIT_WHO=cluster
# shellcheck source=tools/wait.sh
. tools/wait.sh

"$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 \
	-http-port "$consul_port" -dns-port -1 -grpc-port -1 \
	-log-level warn >"$logdir/consul.log" 2>&1 &
pids+=($!)
wait_consul_leader "127.0.0.1:$consul_port" 30

for i in 1 2 3; do
	CONFAB_CLUSTER_SECRET="$secret" "$confab" \
		--node-id "n$i" \
		--http-addr "127.0.0.1:808$i" \
		--udp-port "5000$i" \
		--turn-port "$((3477 + i))" \
		--consul "127.0.0.1:$consul_port" \
		>"$logdir/n$i.log" 2>&1 &
	pids+=($!)
done
for i in 1 2 3; do
	wait_http "http://127.0.0.1:808$i/healthz" 30 || exit 1
done

cat <<EOF

confab cluster is up (Ctrl-C stops it)
  consul  http://127.0.0.1:$consul_port/ui/
  n1      http://127.0.0.1:8081/
  n2      http://127.0.0.1:8082/
  n3      http://127.0.0.1:8083/
  status  http://127.0.0.1:8081/api/cluster
  logs    $logdir

Try http://127.0.0.1:8081/rooms/demo?name=alice and http://127.0.0.1:8082/rooms/demo?name=bob

EOF

if [ "${CLUSTER_FOLLOW:-1}" != 0 ]; then
	tail -n +1 -F "$logdir"/n1.log "$logdir"/n2.log "$logdir"/n3.log &
	pids+=($!)
fi
# Return (and stop everything) as soon as any process exits.
set +e
wait -n "${pids[@]}"
echo "cluster: a process exited; see $logdir" >&2
exit 1
