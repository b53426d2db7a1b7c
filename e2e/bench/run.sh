#!/usr/bin/env bash
# `make bench`: benchmarks of spire-controller-manager (measurements, not tests).
#
#   e2e/bench/run.sh [SCENARIO...]      default: admission scale one-pod
#
# scenarios:
#   scale     10,000 pods (50 nodes, 20 namespaces) and 3 ClusterSPIFFEIDs made through a
#             real kube-apiserver, then the controller is started against a fresh
#             spire-server: time to converge, peak and steady RSS, CPU for convergence
#             and per idle minute, idle pass duration, writes while idle.
#   one-pod   in the converged world, one more pod at a time (20 times): from the
#             apiserver's response to its entries being visible in SPIRE; the
#             controller's trigger lag and pass duration.
#   churn     in the converged world, pods created at each of BENCH_CHURN_RATES per second
#             (default 50,200) for BENCH_CHURN_SECONDS (60), each deleted 5 s after its
#             creation: from the apiserver's response to its entry's row in SPIRE's sqlite
#             datastore (created_at, read every 250 ms; no load on SPIRE's API) —
#             p50/p90/p99/max, entries never seen, controller CPU and RSS. sqlite only.
#   admission crates/webhook/examples/admission_bench.rs at 1,000 req/s (p50/p99).
#   upstream  scale + one-pod with the Go upstream binary (e2e/peers.sh build upstream),
#             repetitions interleaved with ours.
#   all       all of the above.
#
# Each controller scenario repeats BENCH_REPS times (default 3), each repetition with a
# fresh spire-server and a fresh controller process on the same Kubernetes world. Before
# each repetition the script waits (at most BENCH_LOAD_WAIT s, default 180) for the 1-min
# load average to drop below BENCH_MAX_LOAD (default 1.5); the load is recorded either way.
#
# environment: BENCH_DIR (default target/bench), BENCH_REPS, BENCH_PODS (10000),
#   BENCH_DATASTORE (sqlite; postgres: an HA pair of spire-servers on the peers' PostgreSQL, the
#   controller on server A), BENCH_NODES (50), BENCH_NAMESPACES (20), BENCH_POD_SHAPE (full: 2 containers with env,
#   probes, resources, a CSI volume, ~5.4 kB as JSON; minimal: 1 bare container), BENCH_ONE_POD (20), BENCH_IDLE_SECONDS (60),
#   BENCH_ADMISSION_RUNS (3), BENCH_ADMISSION_SECONDS (10), BENCH_MAX_LOAD, BENCH_LOAD_WAIT,
#   BENCH_ALSO ("label=path,...": further builds of this controller, each run like the release
#   build and reported under its label; the binary must be named spire-controller-manager).
#
# Output: a results table on stdout and in $BENCH_DIR/results-<time>/results.md, with the
# per-repetition JSON, controller logs and configs next to it. Peers are brought up in
# $BENCH_DIR/peers and brought down on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench}
REPS=${BENCH_REPS:-3}
PODS=${BENCH_PODS:-10000}
NODES=${BENCH_NODES:-50}
NAMESPACES=${BENCH_NAMESPACES:-20}
POD_SHAPE=${BENCH_POD_SHAPE:-full}
ONE_POD=${BENCH_ONE_POD:-20}
IDLE=${BENCH_IDLE_SECONDS:-60}
CHURN_RATES=${BENCH_CHURN_RATES:-50,200}
CHURN_SECONDS=${BENCH_CHURN_SECONDS:-60}
ADMISSION_RUNS=${BENCH_ADMISSION_RUNS:-3}
ADMISSION_SECONDS=${BENCH_ADMISSION_SECONDS:-10}
MAX_LOAD=${BENCH_MAX_LOAD:-1.5}
LOAD_WAIT=${BENCH_LOAD_WAIT:-180}
DRIVER_TARGET=$ROOT/target/bench-driver
# BENCH_ALSO="label=path,...": other builds of this controller measured in the same run
# after the release build (e.g. musl=target/bench-bins/musl/spire-controller-manager).
IFS=, read -r -a ALSO <<<"${BENCH_ALSO:-}"
DRIVER=$DRIVER_TARGET/release/scm-bench

log() { printf '== %s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

want_scale=0 want_one=0 want_adm=0 want_up=0 want_churn=0
[[ $# -gt 0 ]] || set -- admission scale one-pod
for s in "$@"; do
	case "$s" in
	scale) want_scale=1 ;;
	one-pod) want_one=1 ;;
	churn) want_churn=1 ;;
	admission) want_adm=1 ;;
	upstream) want_up=1 ;;
	all) want_scale=1 want_one=1 want_adm=1 want_up=1 ;;
	-h | --help | help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown scenario '$s' (scale one-pod churn admission upstream all)" ;;
	esac
done
# upstream alone means: its scale and one-pod numbers.
if [[ $want_up == 1 && $want_scale == 0 && $want_one == 0 && $want_churn == 0 ]]; then up_only=1; else up_only=0; fi
if [[ $up_only == 1 ]]; then want_scale=1 want_one=1; fi
need_peers=$((want_scale || want_one || want_churn))

OUT="$BENCH_DIR/results-$(date -u +%Y%m%dT%H%M%SZ)"
PEERS="$BENCH_DIR/peers"
mkdir -p "$OUT"

# wait_load: up to LOAD_WAIT s for the 1-min load average to drop below MAX_LOAD.
wait_load() {
	local i l
	for ((i = 0; i < LOAD_WAIT / 10; i++)); do
		l="$(cut -d' ' -f1 /proc/loadavg)"
		if awk -v l="$l" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }'; then return 0; fi
		((i == 0)) && log "load $l ≥ $MAX_LOAD: waiting up to ${LOAD_WAIT}s"
		sleep 10
	done
	log "load still $(cut -d' ' -f1 /proc/loadavg) after ${LOAD_WAIT}s; measuring anyway (recorded)"
}

machine_info() {
	{
		echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo ?)$(git diff --quiet HEAD -- src crates 2>/dev/null || echo ' (+ uncommitted changes in src/ or crates/)')"
		echo "nproc: $(nproc)"
		echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
		echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB total, " $7 " MiB available"}')"
		echo "kernel: $(uname -r)"
		echo "uptime: $(uptime)"
		echo "rustc: $(rustc --version)"
		local n
		for n in etcd kubernetes spire upstream; do
			local d
			if d="$(e2e/peers.sh path "$n" 2>/dev/null)"; then
				echo "$n: $(grep -E '^(version|go)=' "$d/BUILDINFO" | tr '\n' ' ')"
			fi
		done
		echo "scenarios: $*"
		echo "reps: $REPS, pods: $PODS ($POD_SHAPE), nodes: $NODES, namespaces: $NAMESPACES, one-pod: $ONE_POD, idle: ${IDLE}s"
	} >"$OUT/machine.txt"
	cat "$OUT/machine.txt" >&2
}

cleanup() {
	local pid
	if [[ -f "$OUT/controller.pid" ]]; then
		pid="$(cat "$OUT/controller.pid")"
		if [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n1)" == */spire-controller-manager ]]; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	fi
	if [[ $need_peers == 1 ]]; then e2e/peers.sh down "$PEERS" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

machine_info "$@"

if [[ $want_adm == 1 ]]; then
	log "building the admission benchmark"
	cargo build --release -p scm-webhook --example admission_bench
fi
if [[ $need_peers == 1 ]]; then
	log "building the release binary"
	cargo build --release --bin spire-controller-manager
	log "building the driver (e2e/bench, target/bench-driver)"
	CARGO_TARGET_DIR="$DRIVER_TARGET" cargo build --release --manifest-path e2e/bench/Cargo.toml
fi
UPSTREAM_BIN=""
if [[ $want_up == 1 ]]; then
	if d="$(e2e/peers.sh path upstream 2>/dev/null)" || { e2e/peers.sh build upstream && d="$(e2e/peers.sh path upstream)"; }; then
		UPSTREAM_BIN="$d/spire-controller-manager"
	else
		log "upstream: the Go binary cannot be built here (module proxy); skipping that scenario"
		want_up=0
	fi
fi

# Admission first: it needs no peers, so it runs on the quietest machine.
if [[ $want_adm == 1 ]]; then
	for ((i = 1; i <= ADMISSION_RUNS; i++)); do
		wait_load
		log "admission run $i/$ADMISSION_RUNS (load $(cut -d' ' -f1-3 /proc/loadavg))"
		{
			echo "load: $(cat /proc/loadavg)"
			target/release/examples/admission_bench --rate 1000 --seconds "$ADMISSION_SECONDS" --connections 8
		} | tee "$OUT/admission-$i.txt" >&2
	done
fi

if [[ $need_peers == 1 ]]; then
	log "bringing up the peers in $PEERS"
	e2e/peers.sh down "$PEERS" >/dev/null 2>&1 || true
	rm -rf "$PEERS"
	e2e/peers.sh up "$PEERS"
	# shellcheck disable=SC1091
	source "$PEERS/env"
	"$KUBECTL" apply --server-side --force-conflicts -f crds >/dev/null
	"$KUBECTL" wait --for=condition=Established --timeout=60s -f crds >/dev/null
	log "creating the world ($PODS pods)"
	"$DRIVER" world --peers-env "$PEERS/env" --pods "$PODS" --nodes "$NODES" --namespaces "$NAMESPACES" --pod-shape "$POD_SHAPE" | tee "$OUT/world.txt" >&2
	cp "$PEERS/world.json" "$OUT/"

	phase_args=()
	[[ $want_scale == 1 ]] || phase_args+=(--no-idle)
	if [[ $want_one == 1 ]]; then phase_args+=(--one-pod "$ONE_POD"); else phase_args+=(--one-pod 0); fi
	if [[ $want_churn == 1 ]]; then phase_args+=(--churn-rates "$CHURN_RATES" --churn-seconds "$CHURN_SECONDS"); fi
	run_rep() { # FLAVOR LABEL BIN REP
		wait_load
		log "$2: repetition $4/$REPS (load $(cut -d' ' -f1-3 /proc/loadavg))"
		"$DRIVER" controller --peers-env "$PEERS/env" --peers-sh "$ROOT/e2e/peers.sh" --flavor "$1" --label "$2" \
			--bin "$3" --rep "$4" --out "$OUT" --idle-secs "$IDLE" "${phase_args[@]}"
	}
	for ((rep = 1; rep <= REPS; rep++)); do
		if [[ $up_only == 0 ]]; then run_rep ours ours "$ROOT/target/release/spire-controller-manager" "$rep"; fi
		for also in "${ALSO[@]}"; do run_rep ours "${also%%=*}" "${also#*=}" "$rep"; done
		if [[ $want_up == 1 ]]; then run_rep upstream upstream "$UPSTREAM_BIN" "$rep"; fi
	done
fi

log "results ($OUT)"
if [[ -x "$DRIVER" ]]; then
	"$DRIVER" report "$OUT"
else
	CARGO_TARGET_DIR="$DRIVER_TARGET" cargo build --release --manifest-path e2e/bench/Cargo.toml >&2
	"$DRIVER" report "$OUT"
fi
echo
echo "machine:"
sed 's/^/  /' "$OUT/machine.txt"
