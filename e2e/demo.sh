#!/usr/bin/env bash
# `make demo`: spire-controller-manager on one machine, end to end.
#
#   e2e/demo.sh          build the controller, bring up the real peers (etcd,
#                        kube-apiserver, spire-server; built by e2e/peers.sh if missing),
#                        install manifests/ (CRDs, RBAC) and the webhooks, run the
#                        controller, create nodes, namespaces and pods and the samples
#                        of manifests/examples/, print the SPIRE entries and federation
#                        relationships, show a bad ClusterSPIFFEID being refused, run
#                        `plan`, end with `kubectl spire explain` of a pod that has no
#                        identity, then stop everything.
#   KEEP=1 e2e/demo.sh   the same, but leave it all running and write .demo/env.
#   e2e/demo.sh down     (`make demo-down`) stop everything a KEEP=1 run started.
#
# There is no scheduler and no kubelet: pods are created with spec.nodeName and never run.
# The controller runs as a local process with the least-privilege RBAC of
# manifests/rbac.yaml (as the token user of the peers' kubeconfig), with the
# configuration of manifests/config.yaml adapted to loopback.
#
# Environment: DEMO_DIR (default .demo), KEEP=1, CARGO (default cargo), DEMO_TIMEOUT
# (seconds to wait for each step, default 90).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DEMO_DIR="${DEMO_DIR:-$ROOT/.demo}"
PEERS_DIR="$DEMO_DIR/peers"
CARGO="${CARGO:-cargo}"
TIMEOUT="${DEMO_TIMEOUT:-90}"
KEEP="${KEEP:-}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$ROOT/$TARGET_DIR"
BIN="$TARGET_DIR/debug/spire-controller-manager"
PROG="demo.sh"

# The names manifests/ uses.
CLASS="spire-system-spire"
LEASE="spire-controller-manager.spiffe.io"
VWC="spire-controller-manager-webhook"

if [[ -t 1 ]]; then
	BOLD=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' GREEN=$'\e[32m' RESET=$'\e[0m'
else
	BOLD="" DIM="" RED="" GREEN="" RESET=""
fi
STEP=0
section() {
	STEP=$((STEP + 1))
	printf '\n%s== %d. %s%s\n' "$BOLD" "$STEP" "$*" "$RESET"
}
say() { printf '   %s\n' "$*"; }
ok() { printf '   %s✓%s %s\n' "$GREEN" "$RESET" "$*"; }
note() { printf '   %s%s%s\n' "$DIM" "$*" "$RESET"; }
die() {
	printf '%s%s: %s%s\n' "$RED" "$PROG" "$*" "$RESET" >&2
	exit 1
}
# indent CMD...: run CMD, its output indented.
indent() { "$@" 2>&1 | sed 's/^/     /'; }

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

# ------------------------------------------------------------------ processes

# pid_alive PIDFILE: the PID in PIDFILE is the controller binary (not a reused PID).
pid_alive() {
	local pid arg0
	[[ -f "$1" ]] || return 1
	pid="$(cat "$1" 2>/dev/null)" || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	arg0="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)" || return 1
	[[ "${arg0##*/}" == spire-controller-manager ]] || return 1
	[[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

stop_controller() {
	local pf="$DEMO_DIR/controller.pid" pid i
	if pid_alive "$pf"; then
		pid="$(cat "$pf")"
		say "stopping the controller (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 150; i++)); do
			pid_alive "$pf" || break
			sleep 0.2
		done
		if pid_alive "$pf"; then
			say "the controller did not stop within 30s of SIGTERM: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pf"
}

stop_all() {
	stop_controller
	if [[ -d "$PEERS_DIR" ]]; then
		"$ROOT/e2e/peers.sh" down "$PEERS_DIR" 2>&1 | sed 's/^/   /'
	fi
	rm -f "$DEMO_DIR/env"
}

cmd_down() {
	printf '%s== stopping the demo in %s%s\n' "$BOLD" "$DEMO_DIR" "$RESET"
	if [[ ! -d "$DEMO_DIR" ]]; then
		say "nothing to stop"
		return 0
	fi
	stop_all
	say "stopped (logs kept in $DEMO_DIR)"
}

KEEP_UP=0
on_exit() {
	local rc=$?
	if [[ "$KEEP_UP" == 1 ]]; then return; fi
	printf '\n%s== cleaning up%s\n' "$BOLD" "$RESET"
	if [[ $rc -eq 130 || $rc -eq 143 ]]; then
		say "interrupted"
	elif [[ $rc -ne 0 && -f "$DEMO_DIR/controller.log" ]]; then
		say "the demo failed; last lines of the controller log ($DEMO_DIR/controller.log):"
		tail -n 25 "$DEMO_DIR/controller.log" | sed 's/^/     /'
	fi
	stop_all
	say "logs kept in $DEMO_DIR"
	exit "$rc"
}

# ------------------------------------------------------------------ helpers

# wait_for WHAT CMD...: poll CMD every 0.5 s until it succeeds, at most TIMEOUT seconds.
wait_for() {
	local what="$1" deadline=$((SECONDS + TIMEOUT))
	shift
	until "$@" >/dev/null 2>&1; do
		if ! pid_alive "$DEMO_DIR/controller.pid" && [[ -f "$DEMO_DIR/controller.pid" ]]; then
			die "the controller exited while waiting for: $what"
		fi
		((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for: $what"
		sleep 0.5
	done
}

k() { "$KUBECTL" "$@"; }

# expect_refused KIND NAME < manifest: `kubectl apply` must fail (the webhook refuses);
# prints kubectl's answer. If it was admitted after all, deletes it and dies.
expect_refused() {
	local kind="$1" name="$2" out rc=0
	out="$(k apply -f - 2>&1)" || rc=$?
	printf '%s\n' "$out" | sed 's/^/     /'
	if [[ $rc -eq 0 ]]; then
		k delete "$kind" "$name" --ignore-not-found >/dev/null 2>&1 || true
		die "the bad $kind was admitted"
	fi
	ok "refused (kubectl exit code $rc)"
}

spire() { "$SPIRE_SERVER_BIN" "$@" -socketPath "$SPIRE_SERVER_SOCKET"; }

# render_webhook FILE BASE_URL: FILE with each `service:` clientConfig replaced by
# `url: BASE_URL<path>` (the kube-apiserver here cannot reach Services).
render_webhook() {
	awk -v base="$2" '
		function flush() { print pad "url: \"" base path "\""; skipping = 0 }
		skipping {
			match($0, /^ */)
			if (RLENGTH > ind && $0 !~ /^ *$/) { if ($1 == "path:") path = $2; next }
			flush()
		}
		/^ *service: *$/ { match($0, /^ */); ind = RLENGTH; pad = substr($0, 1, RLENGTH); skipping = 1; path = ""; next }
		{ print }
		END { if (skipping) flush() }
	' "$1"
}

# demo_config: manifests/config.yaml's ControllerManagerConfig, adapted to loopback.
demo_config() {
	awk '/^  config.yaml: \|/ { on = 1; next } on && /^[^ ]/ { on = 0 } on { sub(/^    /, ""); print }' \
		"$ROOT/manifests/config.yaml" |
		sed -e "s|bindAddress: .*|bindAddress: 127.0.0.1:$METRICS_PORT|" \
			-e "s|healthProbeBindAddress: .*|healthProbeBindAddress: 127.0.0.1:$HEALTH_PORT|" \
			-e "s|spireServerSocketPath: .*|spireServerSocketPath: $SPIRE_SERVER_SOCKET|" \
			-e "s|^  port: 9443|  port: $WEBHOOK_PORT\n  host: 127.0.0.1|"
	cat <<EOF
# demo: no cluster DNS to detect it from
clusterDomain: cluster.local
EOF
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true; }
ready() { [[ "$(http_code "http://127.0.0.1:$HEALTH_PORT/readyz")" == 200 ]]; }
# Every /status check passes (caches synced, SPIRE reachable, webhook certificate).
all_checks_ok() {
	local s
	s="$(curl -s --max-time 2 "http://127.0.0.1:$HEALTH_PORT/status" || true)"
	[[ "$s" == *'"checks"'* && "$s" != *'"ok":false'* ]]
}
ca_bundle_filled() {
	[[ -n "$(k get validatingwebhookconfiguration "$VWC" -o jsonpath='{.webhooks[*].clientConfig.caBundle}')" ]]
}
entry_count() { spire entry count 2>/dev/null | grep -oE '[0-9]+' | head -n 1; }
entries_at_least() { [[ "$(entry_count)" -ge "$1" ]]; }
federations_at_least() {
	[[ "$(spire federation list 2>/dev/null | grep -c '^Trust domain')" -ge "$1" ]]
}

# entry_summary: one line per SPIRE entry (from `entry show -output json`).
entry_summary() {
	spire entry show -output json | python3 -c '
import json, sys
entries = json.load(sys.stdin).get("entries") or []
def sid(v): return "spiffe://%s%s" % (v["trust_domain"], v["path"])
for e in sorted(entries, key=lambda e: sid(e["spiffe_id"])):
    sel = ",".join("%s:%s" % (s["type"], s["value"]) for s in e.get("selectors", []) if not s["value"].startswith("pod-uid:"))
    dns = ",".join(e.get("dns_names") or [])
    print("%-42s  %-28s  %s%s" % (sid(e["spiffe_id"]), e["id"], sel or "-", ("  dns=" + dns) if dns else ""))
'
}

# ------------------------------------------------------------------ the demo

cmd_up() {
	command -v python3 >/dev/null || die "python3 is required"
	command -v curl >/dev/null || die "curl is required"
	mkdir -p "$DEMO_DIR"
	if pid_alive "$DEMO_DIR/controller.pid" || [[ -f "$PEERS_DIR/kube-apiserver.pid" && -f "$DEMO_DIR/env" ]]; then
		say "a demo is already running in $DEMO_DIR: stopping it first"
		stop_all
	fi
	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	printf '%sspire-controller-manager demo%s (state and logs: %s)\n' "$BOLD" "$RESET" "$DEMO_DIR"

	section "Building the controller"
	note "the first build of a fresh clone takes several minutes"
	(cd "$ROOT" && "$CARGO" build --bin spire-controller-manager)
	[[ -x "$BIN" ]] || die "$BIN was not built"
	ok "$BIN"

	section "Starting the real peers (etcd, kube-apiserver, spire-server) on loopback"
	note "e2e/peers.sh builds them from source on first use (several minutes); later runs use the cache"
	"$ROOT/e2e/peers.sh" up "$PEERS_DIR" 2>&1 | sed 's/^/   /'
	[[ -f "$PEERS_DIR/env" ]] || die "peers.sh up did not write $PEERS_DIR/env"
	# shellcheck disable=SC1091
	source "$PEERS_DIR/env"
	export KUBECONFIG
	ok "kube-apiserver $KUBE_APISERVER_URL, spire-server socket $SPIRE_SERVER_SOCKET (trust domain $SPIRE_TRUST_DOMAIN)"

	section "Installing manifests/: namespace, CRDs, RBAC"
	indent k apply -f "$ROOT/manifests/namespace.yaml"
	indent k apply --server-side -f "$ROOT/manifests/crds"
	indent k wait --for=condition=Established --timeout=60s -f "$ROOT/manifests/crds"
	indent k apply -f "$ROOT/manifests/rbac.yaml"
	# The controller runs as the kubeconfig's token user,
	# system:serviceaccount:spire-system:spire-controller-manager. In a cluster it would be
	# the spire-server ServiceAccount: bind the same roles to this user.
	k apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: demo-spire-controller-manager
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: spire-controller-manager}
subjects: [{kind: ServiceAccount, name: spire-controller-manager, namespace: spire-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: demo-spire-controller-manager-leader-election
  namespace: spire-system
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: spire-controller-manager-leader-election}
subjects: [{kind: ServiceAccount, name: spire-controller-manager, namespace: spire-system}]
EOF
	ok "the controller's user (system:serviceaccount:spire-system:spire-controller-manager) is bound to manifests/rbac.yaml's roles and nothing else"
	local can
	can="$(k auth can-i delete pods --as=system:serviceaccount:spire-system:spire-controller-manager 2>/dev/null || true)"
	say "can it delete pods? $can; create ClusterSPIFFEIDs? $(k auth can-i create clusterspiffeids.spire.spiffe.io --as=system:serviceaccount:spire-system:spire-controller-manager 2>/dev/null || true); read secrets? $(k auth can-i get secrets -n spire-system --as=system:serviceaccount:spire-system:spire-controller-manager 2>/dev/null || true)"

	read -r METRICS_PORT HEALTH_PORT WEBHOOK_PORT <<<"$("$ROOT/e2e/peers.sh" free-ports 3)"
	METRICS_URL="http://127.0.0.1:$METRICS_PORT/metrics"

	section "Registering the admission webhooks (webhooks/*.yaml, service references turned into https://localhost:$WEBHOOK_PORT/...)"
	mkdir -p "$DEMO_DIR/webhooks"
	local f
	for f in "$ROOT"/webhooks/*.yaml; do
		render_webhook "$f" "https://localhost:$WEBHOOK_PORT" >"$DEMO_DIR/webhooks/${f##*/}"
		! grep -q '^ *service:' "$DEMO_DIR/webhooks/${f##*/}" || die "could not render $f"
	done
	indent k apply -f "$DEMO_DIR/webhooks"
	note "caBundle is empty for now: the controller fills it with SPIRE's trust bundle"

	section "Starting the controller (config: manifests/config.yaml on loopback ports)"
	demo_config >"$DEMO_DIR/config.yaml"
	cp "$KUBECONFIG" "$DEMO_DIR/kubeconfig-controller"
	chmod 600 "$DEMO_DIR/kubeconfig-controller"
	KUBECONFIG="$DEMO_DIR/kubeconfig-controller" k config use-context controller >/dev/null
	"$BIN" --config "$DEMO_DIR/config.yaml" check-config >"$DEMO_DIR/effective-config.yaml" ||
		die "the configuration $DEMO_DIR/config.yaml is invalid"
	(
		export ENABLE_WEBHOOKS=true POD_NAME=demo-controller-0 POD_NAMESPACE=spire-system
		exec setsid "$BIN" --config="$DEMO_DIR/config.yaml" --kubeconfig="$DEMO_DIR/kubeconfig-controller" \
			</dev/null >"$DEMO_DIR/controller.log" 2>&1
	) &
	echo "$!" >"$DEMO_DIR/controller.pid"
	say "pid $(cat "$DEMO_DIR/controller.pid"), log $DEMO_DIR/controller.log, config $DEMO_DIR/config.yaml"
	say "metrics $METRICS_URL, health http://127.0.0.1:$HEALTH_PORT/readyz, webhook https://localhost:$WEBHOOK_PORT"
	wait_for "/readyz (serving)" ready
	wait_for "/status (caches synced, SPIRE reachable, webhook certificate minted)" all_checks_ok
	ok "ready: $(curl -s --max-time 2 "http://127.0.0.1:$HEALTH_PORT/status" | tr '\n' ' ')"
	wait_for "caBundle of $VWC" ca_bundle_filled
	ok "caBundle of the webhook configurations filled with SPIRE's X.509 authorities"
	wait_for "the leader-election Lease" k -n spire-system get lease "$LEASE"
	ok "leader: $(k -n spire-system get lease "$LEASE" -o jsonpath='{.spec.holderIdentity}')"

	section "Creating nodes, namespaces, pods (with spec.nodeName: no scheduler here) and a Service's EndpointSlice"
	k apply -f - <<'EOF' | sed 's/^/     /'
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {kubernetes.io/hostname: node-1}}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {kubernetes.io/hostname: node-2}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: billing}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-1
  serviceAccountName: web
  containers: [{name: web, image: example/web:1}, {name: proxy, image: example/proxy:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-2
  serviceAccountName: web
  containers: [{name: web, image: example/web:1}, {name: proxy, image: example/proxy:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: cart, namespace: shop, labels: {app: cart}}
spec:
  nodeName: node-1
  serviceAccountName: cart
  containers: [{name: cart, image: example/cart:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: invoicer, namespace: billing, labels: {app: invoicer}}
spec:
  nodeName: node-2
  serviceAccountName: invoicer
  containers: [{name: invoicer, image: example/invoicer:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: spire-agent-x, namespace: spire-system}
spec:
  nodeName: node-1
  serviceAccountName: spire-agent
  containers: [{name: agent, image: example/agent:1}]
EOF
	local uid1 uid2
	uid1="$(k -n shop get pod web-1 -o jsonpath='{.metadata.uid}')"
	uid2="$(k -n shop get pod web-2 -o jsonpath='{.metadata.uid}')"
	k apply -f - <<EOF | sed 's/^/     /'
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: ["10.1.0.1"]
    targetRef: {kind: Pod, namespace: shop, name: web-1, uid: $uid1}
  - addresses: ["10.1.0.2"]
    targetRef: {kind: Pod, namespace: shop, name: web-2, uid: $uid2}
EOF
	note "spire-system/spire-agent-x is in an ignored namespace: it gets no entry"

	section "Applying manifests/examples/ (admitted by the controller's webhook)"
	indent k apply -k "$ROOT/manifests/examples"

	section "SPIRE entries (spire-server entry show)"
	# 2 web pods (web ID), cart and invoicer (fallback ID), the static entry.
	wait_for "5 SPIRE entries" entries_at_least 5
	wait_for "2 federation relationships" federations_at_least 2
	sleep 1
	note "web-1 and web-2 get the web identity (the fallback identity yields to it), cart and invoicer"
	note "the fallback one, spire-system/spire-agent-x none (ignored namespace); plus the static entry"
	spire entry show 2>&1 | sed 's/^/     /'
	say "${BOLD}in short${RESET} (SPIFFE ID, entry ID, selectors other than k8s:pod-uid, DNS names):"
	entry_summary | sed 's/^/     /'

	section "SPIRE federation relationships (spire-server federation list)"
	spire federation list 2>&1 | sed 's/^/     /'

	section "The resources' status"
	indent k get clusterspiffeids,clusterstaticentries,clusterfederatedtrustdomains -o wide

	section "A bad ClusterSPIFFEID is refused at kubectl apply time"
	local bad
	for bad in 'spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Nmae }}' 'spiffe://other.org/ns/{{ .PodMeta.Namespace }}'; do
		say "spiffeIDTemplate: $bad"
		expect_refused clusterspiffeid bad-example <<EOF
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: bad-example}
spec:
  className: $CLASS
  spiffeIDTemplate: "$bad"
EOF
	done
	say "a ClusterFederatedTrustDomain with an http:// bundle endpoint:"
	expect_refused clusterfederatedtrustdomain bad-federation <<EOF
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterFederatedTrustDomain
metadata: {name: bad-federation}
spec:
  className: $CLASS
  trustDomain: bad.example
  bundleEndpointURL: http://bundle.bad.example
  bundleEndpointProfile: {type: https_web}
EOF

	section "Metrics ($METRICS_URL)"
	curl -s --max-time 5 "$METRICS_URL" |
		grep -E '^spire_controller_manager_(entries_(declared|current|masked)|leader|federation_relationships|entry_writes_total|webhook_denials_total|webhook_certificate_rotations_total)[ {]' |
		head -n 25 | sed 's/^/     /' || true

	section "plan: what a pass would write now (read-only; exit 0 in sync, 2 drift)"
	local rc=0
	"$BIN" plan --config="$DEMO_DIR/config.yaml" --kubeconfig="$KUBECONFIG" 2>&1 | sed 's/^/     /' || rc=$?
	say "exit status $rc"
	mkdir -p "$DEMO_DIR/bin"
	ln -sf "$BIN" "$DEMO_DIR/bin/kubectl-spire"

	section "Why has spire-system/spire-agent-x no identity? (kubectl spire explain, as a kubectl plugin)"
	say "\$ ln -s \$(which spire-controller-manager) ~/.local/bin/kubectl-spire"
	say "\$ kubectl spire explain pod spire-system/spire-agent-x --config config.yaml"
	PATH="$DEMO_DIR/bin:$PATH" "$KUBECTL" spire explain pod spire-system/spire-agent-x \
		--config="$DEMO_DIR/config.yaml" --kubeconfig="$KUBECONFIG" 2>&1 | sed 's/^/     /' ||
		die "kubectl spire explain failed"

	if [[ -n "$KEEP" && "$KEEP" != 0 ]]; then
		cat >"$DEMO_DIR/env" <<EOF
# written by e2e/demo.sh; source it. Stop everything with: make demo-down
export KUBECONFIG=$(printf '%q' "$KUBECONFIG")
export KUBECTL=$(printf '%q' "$KUBECTL")
export SPIRE_SERVER_SOCKET=$(printf '%q' "$SPIRE_SERVER_SOCKET")
export SPIRE_SERVER_BIN=$(printf '%q' "$SPIRE_SERVER_BIN")
export METRICS_URL=$(printf '%q' "$METRICS_URL")
export HEALTH_URL=$(printf '%q' "http://127.0.0.1:$HEALTH_PORT")
export WEBHOOK_URL=$(printf '%q' "https://localhost:$WEBHOOK_PORT")
export CONTROLLER_LOG=$(printf '%q' "$DEMO_DIR/controller.log")
EOF
		KEEP_UP=1
		section "Still running (KEEP=1)"
		say "source $DEMO_DIR/env, then for example:"
		say '  $KUBECTL get clusterspiffeids,clusterstaticentries,clusterfederatedtrustdomains'
		say '  $KUBECTL -n shop delete pod cart --force --grace-period=0   # its entry goes (no kubelet: force)'
		say '  $SPIRE_SERVER_BIN entry show -socketPath $SPIRE_SERVER_SOCKET'
		say '  $SPIRE_SERVER_BIN federation list -socketPath $SPIRE_SERVER_SOCKET'
		say '  curl -s $METRICS_URL | grep ^spire_controller_manager'
		say '  tail -f $CONTROLLER_LOG'
		say "stop it all with: make demo-down (e2e/demo.sh down)"
	else
		printf '\n%sdone%s (KEEP=1 make demo leaves it running)\n' "$BOLD" "$RESET"
	fi
}

case "${1:-up}" in
up) cmd_up ;;
down) cmd_down ;;
help | -h | --help) usage ;;
*) die "unknown command '$1' (up, down, help)" ;;
esac
