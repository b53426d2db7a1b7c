#!/usr/bin/env bash
# SPIRE's idle cost beside a controller (BENCHMARKS.md, "SPIRE's idle cost"): a fresh
# spire-server holding N entries that no controller owns (they have no entryIDPrefix), then
# the CPU seconds spire-server and the controller burn per idle minute: spire-server alone,
# beside this controller, beside the Go one (when `e2e/peers.sh path upstream` has it).
# Each controller runs with gcInterval 10 s (written in nanoseconds, which both read), the
# same config, against the same apiserver.
#
# This controller runs twice: with its defaults (reads of SPIRE stretch up to
# spireCheckMaxInterval, 1 minute, while nothing changes) and with spireCheckMaxInterval 0s
# (a read every gcInterval, as the Go controller does). SETTLE (seconds, default 20) is how
# long each controller runs before its window (the stretching needs ~130 s to reach its bound).
#
#   [SETTLE=140] e2e/bench/idle_spire.sh PEERS_ENV [N=11666] [SECONDS=60]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ENV_FILE=${1:?usage: idle_spire.sh PEERS_ENV [N] [SECONDS]}
N=${2:-11666}
SECS=${3:-60}
# shellcheck disable=SC1090
source "$ENV_FILE"
OUT=$ROOT/target/bench/idle-spire-$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$OUT"
TCK=$(getconf CLK_TCK)
cpu() { awk -v t="$TCK" '{print ($14+$15)/t}' "/proc/$1/stat"; }

cargo build -q --release --bin spire-controller-manager
cargo build -q --release -p scm-spire-api --example spire_limit
OURS=$ROOT/target/release/spire-controller-manager
GO=""
if d=$(e2e/peers.sh path upstream 2>/dev/null); then GO=$d/spire-controller-manager; fi

e2e/peers.sh spire-up "$OUT" idle example.org >"$OUT/spire-up.log" 2>&1
SOCK=$OUT/idle/api.sock
SPID=$(cat "$OUT"/idle/*.pid | head -1)
trap 'kill "$SPID" 2>/dev/null || true' EXIT
KEEP=1 "$ROOT/target/release/examples/spire_limit" "$SOCK" example.org "$N" 200 1 >"$OUT/create.json"
sleep 10

measure() { # label [pid of a controller]
	local s0 c0=0 s1 c1=0
	s0=$(cpu "$SPID")
	[[ -n ${2:-} ]] && c0=$(cpu "$2")
	sleep "$SECS"
	s1=$(cpu "$SPID")
	[[ -n ${2:-} ]] && c1=$(cpu "$2")
	awk -v l="$1" -v s="$(echo "$s1 - $s0" | bc)" -v c="$(echo "$c1 - $c0" | bc)" -v d="$SECS" \
		'BEGIN { printf "| %s | %.2f | %.2f |\n", l, s * 60 / d, c * 60 / d }' | tee -a "$OUT/results.md"
}

SETTLE=${SETTLE:-20}

run_ctl() { # label binary flag-style [extra config]
	local cfg=$OUT/${1//[^a-zA-Z0-9]/_}.yaml log=$OUT/${1//[^a-zA-Z0-9]/_}.log pid
	printf 'apiVersion: spire.spiffe.io/v1alpha1\nkind: ControllerManagerConfig\nmetrics:\n  bindAddress: 127.0.0.1:0\nhealth:\n  healthProbeBindAddress: 127.0.0.1:0\ntrustDomain: example.org\nclusterName: idle\nclusterDomain: cluster.local\nspireServerSocketPath: %s\nclassName: idle-bench\nwatchClassless: false\nentryIDPrefix: bench\ngcInterval: 10000000000\n%b' "$SOCK" "${4:-}" >"$cfg"
	if [[ $3 == go ]]; then
		KUBECONFIG=$KUBECONFIG ENABLE_WEBHOOKS=false "$2" -config "$cfg" >"$log" 2>&1 &
	else
		KUBECONFIG=$KUBECONFIG ENABLE_WEBHOOKS=false "$2" --config "$cfg" >"$log" 2>&1 &
	fi
	pid=$!
	sleep "$SETTLE" # started, listed once, settled
	measure "$1" "$pid"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	sleep 5
}

printf '| %s entries, %ss windows | spire-server CPU-s per idle minute | controller CPU-s per idle minute |\n|---|---|---|\n' "$N" "$SECS" | tee "$OUT/results.md"
measure "spire-server alone"
run_ctl "this controller (defaults: masked reads, stretching to 1m)" "$OURS" rust
run_ctl "this controller, spireCheckMaxInterval 0s (a masked read every gcInterval)" "$OURS" rust 'spireCheckMaxInterval: 0s\n'
[[ -n $GO ]] && run_ctl "Go controller $(basename "$(dirname "$GO")")" "$GO" go
measure "spire-server alone, again"
echo "results: $OUT/results.md"
