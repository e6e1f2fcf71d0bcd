#!/usr/bin/env bash
# bench.sh: measures confab and writes docs/performance.md. `make bench` runs
# it after building bin/confab, bin/confab-load, bin/consul and the 720p test
# clip. Steps:
#
#   1. the Go benchmarks of the hot paths (sfu forwarding, NACK cache, SRTP,
#      the cluster pipe link), with -benchmem, and of the control plane at
#      scale (a fleet of nodes on real Consul, one node with 5,000 rooms);
#   2. the load scenarios against real confab processes: each node pinned to
#      CPU 0 (taskset), the load generator pinned to CPU 1, the box checked
#      idle before every scenario; one fresh node (or cluster) per scenario;
#   2b. the sharded fan-out (issue 13): fan-out at BENCH_SHARDED_FANOUT
#      subscribers and the meeting, each with the node unpinned (every CPU)
#      and the generator a separate, unpinned process, once with the
#      fan-out split over the node's workers (the default) and once on the
#      reader alone (--fanout-workers 1); the table goes to
#      $BENCH_OUT/sharded/table.md and into the document between its
#      "sharded" markers;
#   3. a CPU profile of the server under the largest fan-out;
#   4. the cross-node scenarios: two nodes in one Consul cluster; then the
#      broadcast across 1, 2 and 3 nodes of one cluster (issue 13): one
#      publisher on node A, BENCH_BROADCAST_N viewers spread evenly over the
#      nodes, each node serving /metrics for the link figures;
#   5. forwarding CPU side by side with an earlier commit (BENCH_BASE): its
#      confab is built from a temporary git worktree into
#      $BENCH_OUT/base/confab, then the fan-out scenario with BENCH_BASE_N
#      subscribers runs alternately against that node and this one (base,
#      this, base, this, ...), each a fresh node with the same flags and
#      pinning;
#   6. the fast write comparison: the fan-out scenario with BENCH_FAST_N
#      subscribers alternately against this commit's node with
#      --fast-write off and on (off, on, off, on, ...), each a fresh node
#      with the same flags and pinning; reports in $BENCH_OUT/fastwrite;
#   7. docs/performance.md: the part between the "generated" markers is
#      replaced with the machine, the date, the commands and the tables.
#
# Everything is bounded: every scenario has --timeout, and the script stops
# every process it started on exit. Raw results stay in $BENCH_OUT.
#
# Environment (defaults in brackets):
#   BENCH_OUT        raw results directory [bin/bench]
#   BENCH_DOC        document to update [docs/performance.md]
#   BENCH_CLIP       clip directory [bin/media/720p]
#   BENCH_DURATION   measurement window per scenario [20s]
#   BENCH_FANOUT     subscriber counts of the fan-out scenario [50 100 200]
#   BENCH_SHARDED_FANOUT subscriber counts of step 2b's fan-outs [200 400]
#   BENCH_SKIP_SHARDED=1 skip step 2b (keeps the document's table)
#   BENCH_ONLY_SHARDED=1 run step 2b alone (about 3 minutes) and update
#                    only its table in the document
#   BENCH_BROADCAST_N viewers of the broadcast runs [300]
#   BENCH_BROADCAST_NODES node counts of the broadcast runs, 1 to 26 [1 2 3]
#   BENCH_GOTIME     -benchtime of the Go benchmarks [1s]
#   BENCH_SKIP_GO=1  skip step 1 (keeps the previous Go results)
#   BENCH_SKIP_LOAD=1 skip steps 2 to 4 (the document then lacks their results)
#   BENCH_FLEET      control-plane fleet sizes, NODESxROOMS [5x200,20x1000]
#   BENCH_MANY_ROOMS rooms of the one-node control-plane run [5000]
#   BENCH_BASE       commit to compare forwarding CPU with, side by side
#                    [9fd9194, main before simulcast]; "none" skips step 5
#   BENCH_BASE_N     subscribers of the side-by-side fan-out [200]
#   BENCH_BASE_ROUNDS rounds of the side by side, each base then this [2]
#   BENCH_FAST_N     subscribers of the fast write comparison [200];
#                    "none" skips step 6
#   BENCH_FAST_ROUNDS rounds of the fast write comparison, each off then on [2]
#   BENCH_IDLE_MAX   busy share of all CPUs above which a scenario refuses
#                    to start [0.25]
set -euo pipefail
cd "$(dirname "$0")/.."

out=${BENCH_OUT:-bin/bench}
doc=${BENCH_DOC:-docs/performance.md}
clip=${BENCH_CLIP:-bin/media/720p}
duration=${BENCH_DURATION:-20s}
fanout_ns=${BENCH_FANOUT:-50 100 200}
sharded_ns=${BENCH_SHARDED_FANOUT:-200 400}
broadcast_n=${BENCH_BROADCAST_N:-300}
broadcast_nodes=${BENCH_BROADCAST_NODES:-1 2 3}
gotime=${BENCH_GOTIME:-1s}
base=${BENCH_BASE:-9fd9194}
base_n=${BENCH_BASE_N:-200}
base_rounds=${BENCH_BASE_ROUNDS:-2}
fast_n=${BENCH_FAST_N:-200}
fast_rounds=${BENCH_FAST_ROUNDS:-2}
idle_max=${BENCH_IDLE_MAX:-0.25}
confab=bin/confab
base_confab=$out/base/confab
load=bin/confab-load
consul=bin/consul
server_cpu=0
load_cpu=1
# node_cpus and load_cpus are the CPU lists of start_node and run_load;
# "none": not pinned (step 2b).
node_cpus=$server_cpu
load_cpus=$load_cpu

for b in "$confab" "$load" "$consul"; do
	[ -x "$b" ] || { echo "bench: $b is missing; run 'make bench'" >&2; exit 1; }
done
[ -f "$clip/video.ivf" ] || { echo "bench: no clip in $clip; run 'make bench'" >&2; exit 1; }
if [ "$(nproc)" -lt 2 ]; then
	echo "bench: needs 2 CPUs to pin server and generator apart; found $(nproc)" >&2
	exit 1
fi

mkdir -p "$out"
if [ "${BENCH_ONLY_SHARDED:-0}" != 1 ]; then
	rm -f "$out"/*.json "$out"/*.pprof "$out/commands.txt"
	rm -rf "${out:?}/versus" "${out:?}/fastwrite"
	find "$out" -maxdepth 1 -name '*.txt' ! -name go-bench.txt ! -name alloc-tests.txt -delete
fi
[ "${BENCH_SKIP_SHARDED:-0}" = 1 ] || rm -rf "${out:?}/sharded"
logdir=$out/logs
mkdir -p "$logdir"
started=$(date -u +%s)

# node_bin is the confab that start_node runs.
node_bin=$confab

pids=()
stop_all() {
	local pid
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	pids=()
}
# base_tree is the temporary worktree of BENCH_BASE while it is built.
base_tree=
remove_base_tree() {
	[ -n "$base_tree" ] || return 0
	git worktree remove --force "$base_tree/src" 2>/dev/null || true
	rm -rf "$base_tree"
	git worktree prune
	base_tree=
}
trap 'stop_all; remove_base_tree' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# note CMD...: add CMD's command line (with the ports of this run) to
# $commands (commands.txt; step 2b's own in sharded/), so the document
# shows exactly what was measured.
commands=$out/commands.txt
note() {
	printf '%q ' "$@" | sed 's/ $//' >>"$commands"
	echo >>"$commands"
}

# record CMD...: note CMD and run it in the foreground.
record() {
	note "$@"
	"$@"
}

# free_port: a loopback TCP port that was free a moment ago.
free_port() {
	"$load" freeport
}

WAIT_WHO=bench
# shellcheck source=tools/wait.sh
. tools/wait.sh

# start_node NAME HTTP_PORT [confab flags...]: a node pinned to node_cpus
# (the server CPU unless step 2b says none); sets NODE_PID.
start_node() {
	local name=$1 port=$2
	shift 2
	local pin=(taskset -c "$node_cpus")
	[ "$node_cpus" = none ] && pin=()
	# Every subscriber of the generator comes from 127.0.0.1: lift the
	# per-address cap, on binaries that have it (BENCH_BASE may predate it).
	local caps=()
	"$node_bin" --help 2>&1 | grep -q -- --max-conns-per-ip && caps=(--max-conns-per-ip 10000)
	local cmd=("${pin[@]}" "$node_bin" --node-id "$name"
		--http-addr "127.0.0.1:$port" --udp-ip 127.0.0.1 --udp-port 0
		--max-participants 1000 "${caps[@]}" --log-level warn --drain-timeout 2s "$@")
	note "${cmd[@]}"
	"${cmd[@]}" >"$logdir/$name.log" 2>&1 &
	NODE_PID=$!
	pids+=("$NODE_PID")
	wait_http "http://127.0.0.1:$port/healthz" 30
}

# start_consul: a Consul dev agent on free loopback ports; sets CONSUL_ADDR.
start_consul() {
	local http serf_lan serf_wan server
	http=$(free_port); serf_lan=$(free_port); serf_wan=$(free_port); server=$(free_port)
	local cmd=("$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1
		-http-port "$http" -serf-lan-port "$serf_lan" -serf-wan-port "$serf_wan"
		-server-port "$server" -dns-port -1 -grpc-port -1 -log-level warn)
	note "${cmd[@]}"
	"${cmd[@]}" >"$logdir/consul.log" 2>&1 &
	pids+=($!)
	CONSUL_ADDR=127.0.0.1:$http
	wait_consul_leader "$CONSUL_ADDR" 30
}

# run_load NAME [confab-load run flags...]: one scenario, generator pinned
# to load_cpus (the load CPU unless step 2b says none); the JSON report
# goes to $out/NAME.json.
run_load() {
	local name=$1
	shift
	echo "bench: scenario $name"
	local pin=(taskset -c "$load_cpus")
	[ "$load_cpus" = none ] && pin=()
	record "${pin[@]}" "$load" run --clip "$clip" --duration "$duration" \
		--pin-server "$node_cpus" --pin-load "$load_cpus" --idle-max "$idle_max" \
		--timeout 4m --json "$out/$name.json" "$@" 2>"$logdir/$name.load.log" |
		tee "$out/$name.txt" ||
		echo "bench: scenario $name failed (see $logdir/$name.load.log); its goals show what is missing" >&2
}

# sharded_table NAME...: the markdown table of step 2b's runs
# ($out/sharded/NAME.json; a missing one is a row of dashes).
sharded_table() {
	echo "| run | fan-out split | clients | pkts/s | loss % | node µs/pkt | node CPU % | delay p50 / p95 / p99 ms | generator CPU % | errors |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	local name f
	for name in "$@"; do
		f=$out/sharded/$name.json
		if [ ! -s "$f" ]; then
			echo "| $name | - | - | - | - | - | - | - | - | failed |"
			continue
		fi
		jq -r --arg name "$name" '
			def r(n): (. * pow(10; n) | round) / pow(10; n);
			[ $name,
			  (if ($name | endswith("-on")) then "yes (default)" else "no (--fanout-workers 1)" end),
			  (if .scenario == "meeting" then "P=\(.params.participants)" else "N=\(.params.subscribers)" end),
			  (.pkts_per_s | r(0) | tostring),
			  (.loss_pct | r(3) | tostring),
			  (.us_per_packet | r(2) | tostring),
			  (if .duration_s > 0 then (100 * .server_cpu_s / .duration_s | r(0) | tostring) else "-" end),
			  "\(.delay_ms.p50 | r(1)) / \(.delay_ms.p95 | r(1)) / \(.delay_ms.p99 | r(1))",
			  (if .duration_s > 0 then (100 * .load_cpu_s / .duration_s | r(0) | tostring) else "-" end),
			  (.error_count | tostring) ]
			| "| " + join(" | ") + " |"' "$f"
	done
}

# splice_sharded: put $out/sharded/table.md into the document between the
# "sharded-bench" markers (left alone when either is missing).
splice_sharded() {
	local table=$out/sharded/table.md begin='<!-- BEGIN sharded-bench -->' end='<!-- END sharded-bench -->'
	[ -s "$table" ] && grep -qF "$begin" "$doc" && grep -qF "$end" "$doc" || return 0
	awk -v begin="$begin" -v end="$end" -v table="$table" '
		$0 == begin { print; while ((getline line < table) > 0) print line; skip = 1; next }
		$0 == end { skip = 0 }
		!skip { print }' "$doc" >"$doc.tmp" && mv "$doc.tmp" "$doc"
}

# run_sharded: step 2b. The sharded fan-out (issue 13), node and generator
# unpinned: each scenario with the fan-out split over the node's workers
# (on, the default) and on the reader alone (off: --fanout-workers 1), on
# then off, one fresh node each; then the table.
run_sharded() {
	mkdir -p "$out/sharded" "$logdir/sharded"
	commands=$out/sharded/commands.txt
	node_cpus=none
	load_cpus=none
	local runs=() n mode flags port
	for n in $sharded_ns meeting; do
		for mode in on off; do
			flags=()
			[ "$mode" = off ] && flags=(--fanout-workers 1)
			port=$(free_port)
			start_node bench-a "$port" "${flags[@]}"
			if [ "$n" = meeting ]; then
				run_load "sharded/meeting-10-$mode" --scenario meeting --url "http://127.0.0.1:$port" \
					--server-pid "$NODE_PID" --participants 10
				runs+=("meeting-10-$mode")
			else
				run_load "sharded/fanout-$n-$mode" --scenario fanout --url "http://127.0.0.1:$port" \
					--server-pid "$NODE_PID" --subscribers "$n"
				runs+=("fanout-$n-$mode")
			fi
			stop_all
		done
	done
	node_cpus=$server_cpu
	load_cpus=$load_cpu
	commands=$out/commands.txt
	{
		sharded_table "${runs[@]}"
		echo
		echo "Commands (ports of this run):"
		echo
		echo '```'
		cat "$out/sharded/commands.txt"
		echo '```'
	} >"$out/sharded/table.md"
}

# BENCH_ONLY_SHARDED=1: step 2b alone, its table spliced into the document
# (the generated half is left as it is).
if [ "${BENCH_ONLY_SHARDED:-0}" = 1 ]; then
	run_sharded
	splice_sharded
	echo "bench: sharded fan-out table in $out/sharded/table.md and $doc"
	exit 0
fi

# 1. Go benchmarks.
if [ "${BENCH_SKIP_GO:-0}" != 1 ]; then
	echo "bench: Go benchmarks (-benchtime $gotime)"
	# The control plane at scale runs once per size (each iteration builds a
	# whole fleet): 20 nodes x 1,000 rooms, and one node with 5,000 rooms.
	record env CONFAB_FLEET="${BENCH_FLEET:-5x200,20x1000}" CONFAB_MANY_ROOMS="${BENCH_MANY_ROOMS:-5000}" \
		go test -run '^$' -bench . -benchmem -benchtime "$gotime" -count 1 -timeout 30m \
		./sfu/ ./cluster/... ./tools/... | tee "$out/go-bench.txt"
	# The zero-allocation tests, race-free (the race detector makes
	# sync.Pool drop items); the document reads the verdict from here.
	record go test -count=1 -v -run DoesNotAllocate ./sfu/ ./cluster/ >"$out/alloc-tests.txt" ||
		echo "bench: zero-allocation tests failed; see $out/alloc-tests.txt" >&2
fi

# Steps 2 to 4 (BENCH_SKIP_LOAD=1 skips them).
if [ "${BENCH_SKIP_LOAD:-0}" != 1 ]; then
	# 2. Single-node scenarios, one fresh node each.
	for n in $fanout_ns; do
		port=$(free_port)
		start_node bench-a "$port"
		run_load "fanout-$n" --scenario fanout --url "http://127.0.0.1:$port" \
			--server-pid "$NODE_PID" --subscribers "$n"
		stop_all
	done

	port=$(free_port)
	start_node bench-a "$port"
	run_load meeting-10 --scenario meeting --url "http://127.0.0.1:$port" \
		--server-pid "$NODE_PID" --participants 10
	stop_all

	port=$(free_port)
	start_node bench-a "$port"
	run_load churn-50 --scenario churn --url "http://127.0.0.1:$port" \
		--server-pid "$NODE_PID" --subscribers 50 --churn-rate 4 --churn-lifetime 3s
	stop_all

	# 2b. Sharded fan-out (issue 13).
	[ "${BENCH_SKIP_SHARDED:-0}" = 1 ] || run_sharded

	# 3. CPU profile of the server under the largest fan-out (a separate run, so
	# that the profiler's own cost stays out of the numbers above).
	maxn=0
	for n in $fanout_ns; do [ "$n" -gt "$maxn" ] && maxn=$n; done
	port=$(free_port)
	pport=$(free_port)
	start_node bench-a "$port" --pprof-addr "127.0.0.1:$pport"
	# The generator fetches the profile during its measurement window.
	run_load "fanout-$maxn-profiled" --scenario fanout --url "http://127.0.0.1:$port" \
		--server-pid "$NODE_PID" --subscribers "$maxn" --duration 12s \
		--pprof-url "http://127.0.0.1:$pport" --pprof-out "$out/fanout-$maxn.pprof"
	stop_all
	if [ -s "$out/fanout-$maxn.pprof" ]; then
		go tool pprof -top -nodecount 35 "$confab" "$out/fanout-$maxn.pprof" >"$out/fanout-$maxn-top.txt" 2>/dev/null
		go tool pprof -top -cum -nodecount 35 "$confab" "$out/fanout-$maxn.pprof" >"$out/fanout-$maxn-cum.txt" 2>/dev/null
	fi

	# 4. Two nodes in one Consul cluster: a direct fan-out on node B as the
	# baseline, then the same subscribers on B fed by a publisher on node A
	# (placement off: the subscribers must stay on B to measure the pipe).
	start_consul
	# A fresh secret, in the nodes' environment (refused on the command line).
	CONFAB_CLUSTER_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
	export CONFAB_CLUSTER_SECRET
	echo 'export CONFAB_CLUSTER_SECRET=<64 random hex digits>' >>"$out/commands.txt"
	# Flags of every cluster node: placement off; no embedded TURN server
	# (on by default at UDP/TCP 3478, where a second node on this machine
	# fails to start; the load clients use host candidates only).
	cluster_flags=(--consul "$CONSUL_ADDR" --placement off --turn-port 0)
	pa=$(free_port)
	pb=$(free_port)
	start_node bench-a "$pa" "${cluster_flags[@]}"
	pid_a=$NODE_PID
	start_node bench-b "$pb" "${cluster_flags[@]}"
	pid_b=$NODE_PID
	run_load direct-b-100 --scenario fanout --url "http://127.0.0.1:$pb" \
		--server-pid "$pid_b" --subscribers 100
	run_load cross-node-100 --scenario cross-node --url "http://127.0.0.1:$pa" \
		--url-b "http://127.0.0.1:$pb" --server-pid "$pid_a" --server-pid-b "$pid_b" \
		--subscribers 100
	stop_all

	# Broadcast across nodes: for each node count a fresh cluster (Consul and
	# nodes A, B, ...), all nodes pinned to the server CPU, placement off so
	# that every viewer stays on the node it joined. The 1-node run is the
	# single-node figure the others are compared with.
	letters=(a b c d e f g h i j k l m n o p q r s t u v w x y z)
	for k in $broadcast_nodes; do
		start_consul
		args=()
		name=broadcast-
		for i in $(seq 0 $((k - 1))); do
			node=${letters[$i]}
			name+=$node
			p=$(free_port)
			mp=$(free_port)
			start_node "bench-$node" "$p" --consul "$CONSUL_ADDR" --placement off --turn-port 0 \
				--metrics-addr "127.0.0.1:$mp"
			if [ "$i" = 0 ]; then
				args+=(--url "http://127.0.0.1:$p" --server-pid "$NODE_PID")
			else
				args+=(--url-peer "http://127.0.0.1:$p" --server-pid-peer "$NODE_PID")
			fi
			args+=(--metrics-url "http://127.0.0.1:$mp/metrics")
		done
		run_load "$name-$broadcast_n" --scenario broadcast --subscribers "$broadcast_n" "${args[@]}"
		stop_all
	done
fi

# 5. Forwarding CPU side by side with BENCH_BASE: its confab, built from a
# temporary worktree (removed right after; the go build cache makes a
# rebuild quick), against this one, alternately on fresh nodes.
# build_base prints nothing on success and fails when the commit is
# unknown or does not build.
build_base() {
	local rev
	rev=$(git rev-parse --verify --quiet "$base^{commit}") || {
		echo "bench: BENCH_BASE $base is not a commit here" >&2
		return 1
	}
	mkdir -p "$out/base"
	rm -f "$base_confab"
	base_tree=$(mktemp -d -t confab-bench-base.XXXXXX)
	git worktree add --quiet --detach "$base_tree/src" "$rev"
	echo "git worktree add --detach <temporary directory> $rev && go build -o $base_confab ./cmd/confab (in it)" >>"$out/commands.txt"
	local ok=0 dest
	dest=$(cd "$out/base" && pwd)/confab
	(cd "$base_tree/src" && timeout 10m go build -o "$dest" ./cmd/confab) || ok=$?
	remove_base_tree
	[ "$ok" = 0 ] || { echo "bench: building $base failed" >&2; return 1; }
	git log -1 --format='%h %s' "$rev" >"$out/versus/base.txt"
}

if [ "$base" != none ]; then
	mkdir -p "$out/versus" "$logdir/versus"
	echo "bench: building confab of BENCH_BASE $base"
	if build_base; then
		for round in $(seq 1 "$base_rounds"); do
			for who in base new; do
				node_bin=$confab
				[ "$who" = base ] && node_bin=$base_confab
				port=$(free_port)
				if start_node "bench-$who" "$port"; then
					run_load "versus/$who-$round" --scenario fanout --url "http://127.0.0.1:$port" \
						--server-pid "$NODE_PID" --subscribers "$base_n"
				else
					echo "bench: the $who node did not start (see $logdir/bench-$who.log)" >&2
				fi
				stop_all
			done
		done
		node_bin=$confab
	fi
fi

# 6. The fast write comparison (experimental --fast-write), alternately off
# and on, on fresh nodes of this commit.
if [ "$fast_n" != none ]; then
	mkdir -p "$out/fastwrite" "$logdir/fastwrite"
	for round in $(seq 1 "$fast_rounds"); do
		for fw in off on; do
			port=$(free_port)
			if start_node "bench-fast-$fw" "$port" --fast-write "$fw"; then
				run_load "fastwrite/$fw-$round" --scenario fanout --url "http://127.0.0.1:$port" \
					--server-pid "$NODE_PID" --subscribers "$fast_n"
			else
				echo "bench: the --fast-write $fw node did not start (see $logdir/bench-fast-$fw.log)" >&2
			fi
			stop_all
		done
	done
fi

elapsed=$(($(date -u +%s) - started))
echo "bench: scenarios done in ${elapsed}s"

# 7. The document.
"$load" report --dir "$out" --doc "$doc" --elapsed "${elapsed}s"
splice_sharded
echo "bench: wrote $doc"
