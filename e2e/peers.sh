#!/usr/bin/env bash
# Build, start and stop the real peers (etcd, kube-apiserver, spire-server) on loopback.
# Run `e2e/peers.sh help` for usage.
set -euo pipefail

ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
SPIRE_VERSION="${SPIRE_VERSION:-v1.15.3}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.36.3}"
KUBERNETES_FALLBACK_VERSION="${KUBERNETES_FALLBACK_VERSION:-v1.34.4}"
UPSTREAM_VERSION="${UPSTREAM_VERSION:-v0.6.6}"
# The proxy refuses v0.6.6 and v0.6.5 (403); v0.6.4 has the same entry logic.
UPSTREAM_FALLBACK_VERSION="${UPSTREAM_FALLBACK_VERSION:-v0.6.4}"
PEERS_CACHE="${PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spire-controller-manager/peers}"
PEERS_TIMEOUT="${PEERS_TIMEOUT:-120}" # seconds to wait for a peer to answer
DEFAULT_PEERS=(etcd spire kubernetes)

PROG="${0##*/}"
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

usage() {
	cat <<EOF
usage: $PROG COMMAND [ARGS...]

Builds (from the Go module proxy, into a cache outside the repo), starts and stops
the real peers of spire-controller-manager on loopback.

commands:
  build [NAME...]       build missing peers (default: ${DEFAULT_PEERS[*]});
                        NAME is one of: etcd spire kubernetes upstream
  path NAME             print the directory holding the built binaries of NAME
  up DIR [TRUST_DOMAIN] build what is missing, then start etcd, kube-apiserver and
                        spire-server (trust domain default example.org); writes
                        DIR/env (shell exports), DIR/kubeconfig, DIR/*.log, DIR/*.pid
  down DIR              stop everything started in DIR (safe to call twice)
  spire-stop DIR        stop the main spire-server of DIR (data is kept)
  spire-start DIR       start it again with the same config and data
  spire-restart DIR     spire-stop then spire-start
  spire-up DIR NAME TRUST_DOMAIN [--bundle-endpoint]
                        start another spire-server in DIR/NAME (writes DIR/NAME/env);
                        --bundle-endpoint serves its federation bundle endpoint on
                        127.0.0.1 (https_spiffe profile)
  spire-down DIR NAME   stop that spire-server (and its spire-agent)
  agent-up DIR NAME [--ttl SECONDS] [--no-admin] [--path /controller]
                        start a spire-agent beside the spire-server DIR/NAME ("spire":
                        the main one; join token, unix workload attestor) and register
                        spiffe://TD/controller for this uid (admin unless --no-admin,
                        X.509-SVID TTL 3600 s unless --ttl); writes DIR/NAME/agent-env
                        (SPIRE_AGENT_SOCKET SPIRE_AGENT_ID SPIRE_CONTROLLER_ID
                        SPIRE_SERVER_ADDRESS SPIRE_AGENT_SVID_TTL)
  agent-down DIR NAME   stop that spire-agent
  spire-ha-up DIR NAME TRUST_DOMAIN
                        two spire-servers DIR/NAME/a and DIR/NAME/b sharing one
                        PostgreSQL database NAME (DataStore "sql", database_type
                        "postgres") on the PostgreSQL of the peers (POSTGRES_PORT and
                        POSTGRES_BIN_DIR from the environment or DIR/env); writes
                        DIR/NAME/env
  spire-ha-down DIR NAME
                        stop both and drop the database
  apiserver-restart DIR stop kube-apiserver and start it again (same port, PKI, etcd);
                        apiserver-stop DIR and apiserver-start DIR do each half
  inst-kill DIR INST    SIGKILL the spire-server of DIR/INST (e.g. NAME/a); data kept
  inst-stop DIR INST    stop it (TERM)
  inst-start DIR INST   start it again with the same config and data
  free-ports N          print N distinct free TCP ports on 127.0.0.1
  help                  this text

environment:
  PEERS_CACHE   binary cache (now: $PEERS_CACHE)
  ETCD_VERSION=$ETCD_VERSION SPIRE_VERSION=$SPIRE_VERSION
  KUBERNETES_VERSION=$KUBERNETES_VERSION (fallback $KUBERNETES_FALLBACK_VERSION)
  UPSTREAM_VERSION=$UPSTREAM_VERSION (fallback $UPSTREAM_FALLBACK_VERSION; from the module proxy only)
                clone's tag instead of the module proxy
  PEERS_TIMEOUT seconds to wait for each peer to answer (now: $PEERS_TIMEOUT)

DIR/env exports: PEERS_DIR KUBECONFIG KUBECTL KUBE_APISERVER_BIN KUBE_APISERVER_URL
  KUBE_CA_FILE CONTROLLER_TOKEN ETCD_ENDPOINT SPIRE_SERVER_SOCKET SPIRE_SERVER_PORT
  SPIRE_TRUST_DOMAIN SPIRE_SERVER_BIN SPIRE_AGENT_BIN SPIRE_SERVER_CONFIG
  (DIR/kubeconfig has contexts "admin" (default; CN=admin, O=system:masters) and
  "controller" (token of system:serviceaccount:spire-system:spire-controller-manager,
  also in DIR/controller-token) and "chart" (token of
  system:serviceaccount:spire-server:spire-server, the SPIRE helm chart's identity,
  also in DIR/chart-token).)
  POSTGRES_PORT POSTGRES_HOST POSTGRES_USER POSTGRES_BIN_DIR (when PostgreSQL is
  installed: /usr/lib/postgresql/*/bin or PG_BIN_DIR; PEERS_POSTGRES=0 skips it,
  PEERS_POSTGRES=1 requires it)
HA DIR/NAME/env exports: SPIRE_SERVER_SOCKET_A SPIRE_SERVER_SOCKET_B SPIRE_INST_A
  SPIRE_INST_B SPIRE_SERVER_BIN SPIRE_TRUST_DOMAIN POSTGRES_DB POSTGRES_PORT
  POSTGRES_BIN_DIR (SPIRE_SERVER_SOCKET is A's)
DIR/NAME/env exports: SPIRE_SERVER_SOCKET SPIRE_SERVER_PORT SPIRE_TRUST_DOMAIN
  SPIRE_SERVER_BIN SPIRE_AGENT_BIN SPIRE_SERVER_CONFIG PEERS_DIR and, with
  --bundle-endpoint, SPIRE_BUNDLE_ENDPOINT_PORT SPIRE_BUNDLE_ENDPOINT_URL
EOF
}

# ---------------------------------------------------------------- build

# peer_versions NAME: candidate versions, preferred first.
peer_versions() {
	case "$1" in
	etcd) echo "$ETCD_VERSION" ;;
	spire) echo "$SPIRE_VERSION" ;;
	kubernetes) echo "$KUBERNETES_VERSION $KUBERNETES_FALLBACK_VERSION" ;;
	upstream) echo "$UPSTREAM_VERSION $UPSTREAM_FALLBACK_VERSION" ;;
	*) die "unknown peer '$1' (known: etcd spire kubernetes upstream)" ;;
	esac
}

peer_binaries() {
	case "$1" in
	etcd) echo etcd ;;
	spire) echo spire-server spire-agent ;;
	kubernetes) echo kube-apiserver kubectl ;;
	upstream) echo spire-controller-manager ;;
	*) die "unknown peer '$1'" ;;
	esac
}

# peer_complete DIR NAME: all binaries of NAME present in DIR.
peer_complete() {
	local d="$1" b
	[[ -d "$d" ]] || return 1
	for b in $(peer_binaries "$2"); do
		[[ -x "$d/$b" ]] || return 1
	done
}

# peer_path NAME: directory of a built peer, or fail.
peer_path() {
	local name="$1" v
	for v in $(peer_versions "$name"); do
		if peer_complete "$PEERS_CACHE/$name-$v" "$name"; then
			echo "$PEERS_CACHE/$name-$v"
			return 0
		fi
	done
	return 1
}

go_env() {
	# GOFLAGS: keep the caller's flags, add -mod=mod (the throwaway module has no vendor dir).
	export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod"
	export GO111MODULE=on
	export GOWORK=off
}

# new_module DIR: fresh throwaway Go module in DIR.
new_module() {
	rm -rf "$1"
	mkdir -p "$1"
	(cd "$1" && go mod init x >/dev/null 2>&1)
}

# build_etcd VERSION OUTDIR
build_etcd() {
	local v="$1" out="$2" m="$WORK/mod"
	new_module "$m"
	cd "$m"
	go get -tool "go.etcd.io/etcd/server/v3@$v"
	CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${v}" \
		-o "$out/etcd" go.etcd.io/etcd/server/v3
}

# The module proxy refuses github.com/Keyfactor/ejbca-go-client-sdk (403), which SPIRE
# >= 1.15 imports for its EJBCA UpstreamAuthority plugin only. This writes a stand-in
# module with the few names that plugin uses, every call failing with "not available in
# this build"; the tests never configure that plugin. Our own code, not the SDK's.
write_ejbca_stand_in() {
	local dir="$1/ejbca-stand-in" pkg
	pkg="$dir/api/ejbca"
	mkdir -p "$pkg"
	printf 'module github.com/Keyfactor/ejbca-go-client-sdk\n\ngo 1.22\n' >"$dir/go.mod"
	cat >"$pkg/stand_in.go" <<'GO'
// Package ejbca stands in for the EJBCA REST client that the module proxy does not
// serve: every call fails. Written by spire-controller-manager's e2e/peers.sh.
package ejbca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
)

var errUnavailable = errors.New("the EJBCA client is not available in this build")

type Authenticator interface{ unavailable() }

type MTLSAuthenticatorBuilder struct{}

func NewMTLSAuthenticatorBuilder() *MTLSAuthenticatorBuilder { return &MTLSAuthenticatorBuilder{} }
func (b *MTLSAuthenticatorBuilder) WithClientCertificate(*tls.Certificate) *MTLSAuthenticatorBuilder {
	return b
}
func (b *MTLSAuthenticatorBuilder) WithCaCertificates([]*x509.Certificate) *MTLSAuthenticatorBuilder {
	return b
}
func (b *MTLSAuthenticatorBuilder) Build() (Authenticator, error) { return nil, errUnavailable }

type Configuration struct{ Host string }

func NewConfiguration() *Configuration              { return &Configuration{} }
func (c *Configuration) SetAuthenticator(Authenticator) {}

type V1CertificateApiService struct{}

type APIClient struct{ V1CertificateApi *V1CertificateApiService }

func NewAPIClient(*Configuration) (*APIClient, error) { return nil, errUnavailable }

type EnrollCertificateRestRequest struct{}

func NewEnrollCertificateRestRequest() *EnrollCertificateRestRequest { return &EnrollCertificateRestRequest{} }
func (r *EnrollCertificateRestRequest) SetUsername(string)               {}
func (r *EnrollCertificateRestRequest) SetPassword(string)               {}
func (r *EnrollCertificateRestRequest) SetCertificateRequest(string)     {}
func (r *EnrollCertificateRestRequest) SetCertificateAuthorityName(string) {}
func (r *EnrollCertificateRestRequest) SetCertificateProfileName(string) {}
func (r *EnrollCertificateRestRequest) SetEndEntityProfileName(string)   {}
func (r *EnrollCertificateRestRequest) SetIncludeChain(bool)             {}
func (r *EnrollCertificateRestRequest) SetAccountBindingId(string)       {}

type CertificateRestResponse struct{ CertificateChain []string }

func (r *CertificateRestResponse) GetResponseFormat() string { return "" }
func (r *CertificateRestResponse) GetCertificate() string    { return "" }

type ApiEnrollPkcs10CertificateRequest struct{}

func (s *V1CertificateApiService) EnrollPkcs10Certificate(context.Context) ApiEnrollPkcs10CertificateRequest {
	return ApiEnrollPkcs10CertificateRequest{}
}
func (r ApiEnrollPkcs10CertificateRequest) EnrollCertificateRestRequest(EnrollCertificateRestRequest) ApiEnrollPkcs10CertificateRequest {
	return r
}
func (r ApiEnrollPkcs10CertificateRequest) Execute() (*CertificateRestResponse, *http.Response, error) {
	return nil, nil, errUnavailable
}

type GenericOpenAPIError struct{}

func (e *GenericOpenAPIError) Error() string { return errUnavailable.Error() }
func (e *GenericOpenAPIError) Body() []byte  { return nil }
GO
	echo "$dir"
}

build_spire() {
	local v="$1" out="$2" m="$WORK/mod"
	new_module "$m"
	cd "$m"
	local stand_in
	stand_in="$(write_ejbca_stand_in "$WORK")"
	go mod edit -replace "github.com/Keyfactor/ejbca-go-client-sdk=$stand_in"
	go get -tool "github.com/spiffe/spire/cmd/spire-server@$v" "github.com/spiffe/spire/cmd/spire-agent@$v"
	local ld="-s -w -X github.com/spiffe/spire/pkg/common/version.gittag=${v#v}"
	CGO_ENABLED=1 go build -trimpath -ldflags "$ld" -o "$out/spire-server" github.com/spiffe/spire/cmd/spire-server
	CGO_ENABLED=1 go build -trimpath -ldflags "$ld" -o "$out/spire-agent" github.com/spiffe/spire/cmd/spire-agent
}

build_kubernetes() {
	local v="$1" out="$2" m="$WORK/mod"
	local staging="v0.${v#v1.}" # v1.36.3 -> v0.36.3
	local gomod
	gomod="$(cd / && go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" ||
		die "go mod download k8s.io/kubernetes@$v failed"
	[[ -f "$gomod" ]] || die "no go.mod for k8s.io/kubernetes@$v ($gomod)"
	new_module "$m"
	cd "$m"
	# Every "k8s.io/X => ./staging/src/k8s.io/X" of the tag's go.mod becomes "k8s.io/X => k8s.io/X vSTAGING".
	local mods
	mods="$(sed -n 's#^[[:space:]]*\(replace[[:space:]]\+\)\?\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\2#p' "$gomod" | sort -u)"
	[[ -n "$mods" ]] || die "found no staging replace directives in $gomod"
	local args=() mod
	for mod in $mods; do args+=("-replace=$mod=$mod@$staging"); done
	log "kubernetes $v: pinning $(wc -w <<<"$mods") staging modules to $staging"
	go mod edit "${args[@]}"
	go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$v" "k8s.io/kubernetes/cmd/kubectl@$v"
	local minor="${v#v1.}"
	minor="${minor%%.*}"
	local ld="-s -w"
	ld+=" -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
	ld+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
	ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1"
	ld+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"
	CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
	CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out/kubectl" k8s.io/kubernetes/cmd/kubectl
}

# The Go module proxy may refuse this module (403 "This module version is not
# available"); then `build upstream` fails and says so.
build_upstream() {
	local v="$1" out="$2" m="$WORK/mod" mod=github.com/spiffe/spire-controller-manager
	new_module "$m"
	cd "$m"
	go get "$mod@$v" # the module first: the proxy may answer 403 for the path .../cmd
	# No `go get $mod/cmd`: the proxy answers 403 for that path as a module of its own;
	# the package builds from the module required above.
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/spire-controller-manager" "$mod/cmd"
}

# build_one NAME: build NAME unless cached; tries each candidate version in turn.
build_one() {
	local name="$1" v dir start secs
	local versions
	versions="$(peer_versions "$name")"
	if dir="$(peer_path "$name")"; then
		log "$name: cached ($dir)"
		return 0
	fi
	command -v go >/dev/null || die "go is not installed"
	mkdir -p "$PEERS_CACHE"
	# One builder per peer at a time (another `up` may be building the same peer).
	exec {lockfd}>"$PEERS_CACHE/.$name.lock"
	if ! flock -n "$lockfd"; then
		log "$name: another build is running, waiting for it"
		flock "$lockfd"
	fi
	if dir="$(peer_path "$name")"; then
		log "$name: cached ($dir)"
		exec {lockfd}>&-
		return 0
	fi
	for v in $versions; do
		dir="$PEERS_CACHE/$name-$v"
		rm -rf "$dir".tmp.* # left by an interrupted build
		WORK="$PEERS_CACHE/.work/$name-$v"
		local tmp="$dir.tmp.$$"
		rm -rf "$tmp" "$dir"
		mkdir -p "$tmp" "$WORK"
		log "$name: building $v into $dir"
		start=$(date +%s)
		# Run in a background subshell and wait: inside an `if` errexit would be ignored.
		local rc=0
		(
			go_env
			"build_$name" "$v" "$tmp"
		) >"$WORK/build.log" 2>&1 &
		wait $! || rc=$?
		if [[ $rc -eq 0 ]]; then
			secs=$(($(date +%s) - start))
			printf 'name=%s\nversion=%s\nbuild_seconds=%s\ngo=%s\nbuilt=%s\n' "$name" "$v" "$secs" \
				"$(go env GOVERSION)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$tmp/BUILDINFO"
			mv -T "$tmp" "$dir"
			rm -rf "$WORK/mod"
			# shellcheck disable=SC2046 # binary names are plain words
			log "$name: built $v in ${secs}s ($(cd "$dir" && du -sh $(peer_binaries "$name") | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}'))"
			exec {lockfd}>&-
			return 0
		fi
		secs=$(($(date +%s) - start))
		rm -rf "$tmp"
		log "$name: building $v FAILED after ${secs}s; last lines of $WORK/build.log:"
		tail -n 25 "$WORK/build.log" >&2
	done
	exec {lockfd}>&-
	die "$name: could not build any of: $versions"
}

cmd_build() {
	local names=("$@") n
	[[ ${#names[@]} -gt 0 ]] || names=("${DEFAULT_PEERS[@]}")
	for n in "${names[@]}"; do peer_versions "$n" >/dev/null; done # validate names first
	for n in "${names[@]}"; do build_one "$n"; done
}

cmd_path() {
	[[ $# -eq 1 ]] || die "usage: $PROG path NAME"
	peer_path "$1" || die "$1 is not built (run: $PROG build $1)"
}

# ---------------------------------------------------------------- run time helpers

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed"; }

# abs_dir DIR: create DIR and print its absolute path.
abs_dir() {
	mkdir -p "$1"
	(cd "$1" && pwd -P)
}

# free_ports N: N distinct free TCP ports on 127.0.0.1 (bound together, then released).
free_ports() {
	need python3
	python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$1"
}

# pid_alive PIDFILE BINNAME: the PID in PIDFILE runs BINNAME (and is no zombie).
pid_alive() {
	local pidfile="$1" bin="$2" pid arg0
	[[ -f "$pidfile" ]] || return 1
	pid="$(cat "$pidfile" 2>/dev/null)" || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	arg0="$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | head -n 1)" || return 1
	[[ "${arg0##*/}" == "$bin" ]] || return 1
	[[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

# start_bg PIDFILE LOG CMD...: start CMD detached (own session), its PID into PIDFILE.
start_bg() {
	local pidfile="$1" logf="$2"
	shift 2
	printf '=== %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$logf"
	# In a non-interactive shell the background child is no process group leader,
	# so setsid does not fork: $! is the PID of CMD itself.
	setsid "$@" </dev/null >>"$logf" 2>&1 &
	echo "$!" >"$pidfile"
}

# stop_pid PIDFILE BINNAME: TERM, wait, then KILL. Quiet if not running.
stop_pid() {
	local pidfile="$1" bin="$2" pid i
	[[ -f "$pidfile" ]] || return 0
	if pid_alive "$pidfile" "$bin"; then
		pid="$(cat "$pidfile")"
		log "stopping $bin (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do # 20 s
			pid_alive "$pidfile" "$bin" || break
			sleep 0.2
		done
		if pid_alive "$pidfile" "$bin"; then
			log "$bin (pid $pid) still running 20s after TERM, sending KILL"
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				pid_alive "$pidfile" "$bin" || break
				sleep 0.2
			done
			if pid_alive "$pidfile" "$bin"; then die "could not stop $bin (pid $pid)"; fi
		fi
	fi
	rm -f "$pidfile"
}

# wait_ready WHAT PIDFILE BINNAME LOG CMD...: poll CMD until it succeeds.
wait_ready() {
	local what="$1" pidfile="$2" bin="$3" logf="$4"
	shift 4
	local deadline=$((SECONDS + PEERS_TIMEOUT))
	while ! "$@" >/dev/null 2>&1; do
		if ! pid_alive "$pidfile" "$bin"; then
			log "$what exited before it was ready; last lines of $logf:"
			tail -n 30 "$logf" >&2 || true
			die "$what failed to start (log: $logf)"
		fi
		if ((SECONDS >= deadline)); then
			log "$what did not answer within ${PEERS_TIMEOUT}s; last lines of $logf:"
			tail -n 30 "$logf" >&2 || true
			die "$what did not become ready (log: $logf)"
		fi
		sleep 0.5
	done
}

# write_env FILE NAME=VALUE...: shell exports, safely quoted.
write_env() {
	local f="$1" kv
	shift
	{
		echo "# written by e2e/peers.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); source it"
		for kv in "$@"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"; done
	} >"$f.tmp"
	mv "$f.tmp" "$f"
}

# ---------------------------------------------------------------- etcd

start_etcd() {
	local dir="$1" client_port="$2" peer_port="$3" bin
	bin="$(peer_path etcd)/etcd"
	rm -rf "$dir/etcd"
	mkdir -p "$dir/etcd"
	chmod 700 "$dir/etcd"
	start_bg "$dir/etcd.pid" "$dir/etcd.log" "$bin" \
		--name peers \
		--data-dir "$dir/etcd" \
		--listen-client-urls "http://127.0.0.1:$client_port" \
		--advertise-client-urls "http://127.0.0.1:$client_port" \
		--listen-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
		--initial-cluster "peers=http://127.0.0.1:$peer_port" \
		--unsafe-no-fsync \
		--log-level warn
	wait_ready etcd "$dir/etcd.pid" etcd "$dir/etcd.log" \
		curl -fsS --max-time 2 "http://127.0.0.1:$client_port/health"
	log "etcd ready on http://127.0.0.1:$client_port"
}

# ---------------------------------------------------------------- kube-apiserver

# make_pki DIR PKI: CA, serving cert, admin client cert, service-account keys, token file.
make_pki() {
	local dir="$1" pki="$2"
	need openssl
	rm -rf "$pki"
	mkdir -p "$pki"
	chmod 700 "$pki"
	(
		cd "$pki"
		ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
		openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 3650 -subj "/CN=peers-ca" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
		openssl req "${ec[@]}" -keyout serving.key -out serving.csr -subj "/CN=kube-apiserver"
		printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
			"keyUsage=critical,digitalSignature,keyEncipherment" "basicConstraints=CA:FALSE" >serving.ext
		openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
			-extfile serving.ext -out serving.crt
		openssl req "${ec[@]}" -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin"
		printf '%s\n' "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment" \
			"basicConstraints=CA:FALSE" >admin.ext
		openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
			-extfile admin.ext -out admin.crt
		openssl genrsa -out sa.key 2048
		openssl rsa -in sa.key -pubout -out sa.pub
		rm -f ./*.csr ./*.ext
	) >"$dir/pki.log" 2>&1 &
	local rc=0
	wait $! || rc=$?
	if [[ $rc -ne 0 ]]; then
		cat "$dir/pki.log" >&2
		die "openssl failed making the PKI in $pki"
	fi
	local token
	token="$(openssl rand -hex 24)"
	printf '%s\n' "$token" >"$dir/controller-token"
	chmod 600 "$dir/controller-token"
	printf '%s,%s,%s,"%s"\n' "$token" "system:serviceaccount:spire-system:spire-controller-manager" \
		"controller-uid" "system:serviceaccounts,system:serviceaccounts:spire-system" >"$pki/tokens.csv"
	# The identity the SPIRE helm chart runs the controller as (the spire-server pod's
	# ServiceAccount in the release namespace spire-server).
	token="$(openssl rand -hex 24)"
	printf '%s\n' "$token" >"$dir/chart-token"
	chmod 600 "$dir/chart-token"
	printf '%s,%s,%s,"%s"\n' "$token" "system:serviceaccount:spire-server:spire-server" \
		"chart-uid" "system:serviceaccounts,system:serviceaccounts:spire-server" >>"$pki/tokens.csv"
}

b64() { base64 -w0 <"$1"; }

write_kubeconfig() {
	local dir="$1" pki="$2" url="$3"
	cat >"$dir/kubeconfig.tmp" <<KUBECONFIG_END
apiVersion: v1
kind: Config
clusters:
- name: peers
  cluster:
    server: $url
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$pki/admin.crt")
    client-key-data: $(b64 "$pki/admin.key")
- name: controller
  user:
    token: $(cat "$dir/controller-token")
- name: chart
  user:
    token: $(cat "$dir/chart-token")
contexts:
- name: admin
  context:
    cluster: peers
    user: admin
- name: controller
  context:
    cluster: peers
    user: controller
- name: chart
  context:
    cluster: peers
    user: chart
current-context: admin
KUBECONFIG_END
	chmod 600 "$dir/kubeconfig.tmp"
	mv "$dir/kubeconfig.tmp" "$dir/kubeconfig"
}

start_apiserver() {
	local dir="$1" port="$2" etcd_url="$3" bin pki="$1/pki"
	bin="$(peer_path kubernetes)/kube-apiserver"
	make_pki "$dir" "$pki"
	write_kubeconfig "$dir" "$pki" "https://127.0.0.1:$port"
	echo "$port $etcd_url" >"$dir/apiserver.args"
	launch_apiserver "$dir" "$port" "$etcd_url"
}

# launch_apiserver DIR PORT ETCD_URL: start kube-apiserver on the PKI of DIR and wait.
launch_apiserver() {
	local dir="$1" port="$2" etcd_url="$3" bin pki="$1/pki"
	bin="$(peer_path kubernetes)/kube-apiserver"
	mkdir -p "$dir/apiserver-certs"
	start_bg "$dir/kube-apiserver.pid" "$dir/kube-apiserver.log" "$bin" \
		--bind-address=127.0.0.1 \
		--advertise-address=127.0.0.1 \
		--secure-port="$port" \
		--cert-dir="$dir/apiserver-certs" \
		--tls-cert-file="$pki/serving.crt" \
		--tls-private-key-file="$pki/serving.key" \
		--client-ca-file="$pki/ca.crt" \
		--token-auth-file="$pki/tokens.csv" \
		--etcd-servers="$etcd_url" \
		--service-cluster-ip-range=10.0.0.0/24 \
		--authorization-mode=RBAC \
		--allow-privileged=true \
		--service-account-issuer="https://127.0.0.1:$port/" \
		--service-account-key-file="$pki/sa.pub" \
		--service-account-signing-key-file="$pki/sa.key" \
		--disable-admission-plugins=ServiceAccount \
		--endpoint-reconciler-type=none
	local curl_admin=(curl -fsS --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")
	wait_ready kube-apiserver "$dir/kube-apiserver.pid" kube-apiserver "$dir/kube-apiserver.log" \
		"${curl_admin[@]}" "https://127.0.0.1:$port/readyz"
	# (--endpoint-reconciler-type=none: the "kubernetes" Endpoints cannot hold 127.0.0.1;
	# the default reconciler would log an error every 10 s.)
	# The "default" namespace is made by a bootstrap loop that may lag /readyz a little.
	wait_ready "kube-apiserver (namespace default)" "$dir/kube-apiserver.pid" kube-apiserver \
		"$dir/kube-apiserver.log" "${curl_admin[@]}" "https://127.0.0.1:$port/api/v1/namespaces/default"
	log "kube-apiserver ready on https://127.0.0.1:$port"
}

# ---------------------------------------------------------------- spire-server

# A spire-server instance lives in INST (server.conf, data/, instance, spire-server.pid/.log).
# The main one is DIR/spire, the extra ones DIR/NAME.

# spire_socket_path INST: a socket path under 108 bytes that leads into INST.
spire_socket_path() {
	local inst="$1" short
	if ((${#inst} + 9 < 100)); then
		echo "$inst/api.sock"
		return
	fi
	short="$(mktemp -d /tmp/peers-sock.XXXXXX)"
	ln -s "$inst" "$short/s"
	echo "$short" >"$inst/short-socket-dir"
	echo "$short/s/api.sock"
}

spire_cleanup_socket() {
	local inst="$1" short
	if [[ -f "$inst/short-socket-dir" ]]; then
		short="$(cat "$inst/short-socket-dir")"
		if [[ "$short" == /tmp/peers-sock.* ]]; then rm -rf "$short"; fi
		rm -f "$inst/short-socket-dir"
	fi
}

# spire_configure INST TRUST_DOMAIN BUNDLE_ENDPOINT(0|1) [POSTGRES_CONNECTION_STRING]:
# fresh data, server.conf and instance file (sqlite unless a PostgreSQL connection is given).
spire_configure() {
	local inst="$1" td="$2" bundle="$3" pgconn="${4:-}" port bport="" sock ports
	if [[ "$bundle" == 1 ]]; then
		ports="$(free_ports 2)"
		port="${ports%% *}"
		bport="${ports##* }"
	else
		port="$(free_ports 1)"
	fi
	mkdir -p "$inst"
	spire_cleanup_socket "$inst"
	rm -rf "$inst/data" "$inst/server.conf" "$inst/instance" "$inst/api.sock"
	mkdir -p "$inst/data"
	chmod 700 "$inst" "$inst/data"
	sock="$(spire_socket_path "$inst")"
	local federation=""
	if [[ -n "$bport" ]]; then
		federation="
    federation {
        bundle_endpoint {
            address = \"127.0.0.1\"
            port = $bport
        }
    }"
	fi
	local dbtype=sqlite3 dbconn="$inst/data/datastore.sqlite3"
	if [[ -n "$pgconn" ]]; then
		dbtype=postgres
		dbconn="$pgconn"
	fi
	cat >"$inst/server.conf" <<SERVER_CONF_END
# written by e2e/peers.sh
server {
    bind_address = "127.0.0.1"
    bind_port = "$port"
    socket_path = "$sock"
    trust_domain = "$td"
    data_dir = "$inst/data"
    log_level = "INFO"$federation
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "$dbtype"
            connection_string = "$dbconn"
        }
    }

    KeyManager "disk" {
        plugin_data {
            keys_path = "$inst/data/keys.json"
        }
    }

    NodeAttestor "join_token" {
        plugin_data {}
    }
}
SERVER_CONF_END
	write_env "$inst/instance" "SPIRE_SERVER_PORT=$port" "SPIRE_SERVER_SOCKET=$sock" \
		"SPIRE_TRUST_DOMAIN=$td" "SPIRE_BUNDLE_ENDPOINT_PORT=$bport"
}

# spire_start INST: start the configured instance and wait until healthy.
spire_start() {
	local inst="$1" bin
	[[ -f "$inst/server.conf" && -f "$inst/instance" ]] || die "no spire-server configured in $inst"
	if pid_alive "$inst/spire-server.pid" spire-server; then
		log "spire-server in $inst already running (pid $(cat "$inst/spire-server.pid"))"
		return 0
	fi
	bin="$(peer_path spire)/spire-server" || die "spire is not built (run: $PROG build spire)"
	local SPIRE_SERVER_SOCKET SPIRE_SERVER_PORT SPIRE_TRUST_DOMAIN SPIRE_BUNDLE_ENDPOINT_PORT
	# shellcheck disable=SC1091
	source "$inst/instance"
	rm -f "$SPIRE_SERVER_SOCKET"
	start_bg "$inst/spire-server.pid" "$inst/spire-server.log" "$bin" run -config "$inst/server.conf"
	wait_ready "spire-server ($SPIRE_TRUST_DOMAIN)" "$inst/spire-server.pid" spire-server "$inst/spire-server.log" \
		"$bin" healthcheck -socketPath "$SPIRE_SERVER_SOCKET"
	if [[ -n "$SPIRE_BUNDLE_ENDPOINT_PORT" ]]; then
		wait_ready "spire-server bundle endpoint" "$inst/spire-server.pid" spire-server "$inst/spire-server.log" \
			curl -sSk --max-time 2 -o /dev/null "https://127.0.0.1:$SPIRE_BUNDLE_ENDPOINT_PORT/"
	fi
	log "spire-server ($SPIRE_TRUST_DOMAIN) ready: socket $SPIRE_SERVER_SOCKET, port $SPIRE_SERVER_PORT${SPIRE_BUNDLE_ENDPOINT_PORT:+, bundle endpoint port $SPIRE_BUNDLE_ENDPOINT_PORT}"
}

spire_stop() {
	stop_pid "$1/spire-server.pid" spire-server
}

# spire_env INST FILE DIR: write the env file of an extra instance.
spire_env() {
	local inst="$1" f="$2" dir="$3" sp
	local SPIRE_SERVER_SOCKET SPIRE_SERVER_PORT SPIRE_TRUST_DOMAIN SPIRE_BUNDLE_ENDPOINT_PORT
	# shellcheck disable=SC1091
	source "$inst/instance"
	sp="$(peer_path spire)"
	local vars=(
		"SPIRE_SERVER_SOCKET=$SPIRE_SERVER_SOCKET"
		"SPIRE_SERVER_PORT=$SPIRE_SERVER_PORT"
		"SPIRE_TRUST_DOMAIN=$SPIRE_TRUST_DOMAIN"
		"SPIRE_SERVER_BIN=$sp/spire-server"
		"SPIRE_AGENT_BIN=$sp/spire-agent"
		"SPIRE_SERVER_CONFIG=$inst/server.conf"
		"PEERS_DIR=$dir"
	)
	if [[ -n "$SPIRE_BUNDLE_ENDPOINT_PORT" ]]; then
		vars+=("SPIRE_BUNDLE_ENDPOINT_PORT=$SPIRE_BUNDLE_ENDPOINT_PORT"
			"SPIRE_BUNDLE_ENDPOINT_URL=https://127.0.0.1:$SPIRE_BUNDLE_ENDPOINT_PORT")
	fi
	write_env "$f" "${vars[@]}"
}

# ---------------------------------------------------------------- spire-agent (standalone)

# A spire-agent beside a spire-server instance INST (join-token attestation, the unix
# workload attestor), for the controller's TCP + mTLS transport: INST/agent.conf,
# INST/agent-data, INST/spire-agent.pid/.log, INST/agent-env.

# agent_up INST TTL ADMIN(0|1) SPIFFE_PATH: start it and register the caller's uid.
agent_up() {
	local inst="$1" ttl="$2" admin="$3" path="$4" sbin abin token agent_id asock
	[[ -f "$inst/instance" ]] || die "no spire-server configured in $inst"
	pid_alive "$inst/spire-server.pid" spire-server || die "the spire-server of $inst is not running"
	if pid_alive "$inst/spire-agent.pid" spire-agent; then
		log "spire-agent in $inst already running (pid $(cat "$inst/spire-agent.pid"))"
		return 0
	fi
	sbin="$(peer_path spire)/spire-server" || die "spire is not built (run: $PROG build spire)"
	abin="$(peer_path spire)/spire-agent"
	local SPIRE_SERVER_SOCKET SPIRE_SERVER_PORT SPIRE_TRUST_DOMAIN SPIRE_BUNDLE_ENDPOINT_PORT
	# shellcheck disable=SC1091
	source "$inst/instance"
	# Beside the admin socket: the same short path when INST is deep.
	asock="$(dirname "$SPIRE_SERVER_SOCKET")/agent.sock"
	rm -rf "$inst/agent-data" "$asock" "$inst/agent-env"
	mkdir -p "$inst/agent-data"
	chmod 700 "$inst/agent-data"
	"$sbin" bundle show -socketPath "$SPIRE_SERVER_SOCKET" >"$inst/agent-bundle.pem"
	token="$("$sbin" token generate -socketPath "$SPIRE_SERVER_SOCKET" -ttl 3600 | awk '/^Token:/ {print $2}')"
	[[ -n "$token" ]] || die "spire-server token generate gave no token"
	agent_id="spiffe://$SPIRE_TRUST_DOMAIN/spire/agent/join_token/$token"
	local id="spiffe://$SPIRE_TRUST_DOMAIN$path" flags=()
	if [[ "$admin" == 1 ]]; then flags+=(-admin); fi
	# Registered before the agent starts: its first sync has the entry.
	"$sbin" entry create -socketPath "$SPIRE_SERVER_SOCKET" -parentID "$agent_id" -spiffeID "$id" \
		-selector "unix:uid:$(id -u)" -x509SVIDTTL "$ttl" "${flags[@]}" >/dev/null
	cat >"$inst/agent.conf" <<AGENT_CONF_END
# written by e2e/peers.sh
agent {
    data_dir = "$inst/agent-data"
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "$SPIRE_SERVER_PORT"
    socket_path = "$asock"
    trust_bundle_path = "$inst/agent-bundle.pem"
    trust_domain = "$SPIRE_TRUST_DOMAIN"
}

plugins {
    KeyManager "memory" {
        plugin_data {}
    }

    NodeAttestor "join_token" {
        plugin_data {}
    }

    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
AGENT_CONF_END
	start_bg "$inst/spire-agent.pid" "$inst/spire-agent.log" "$abin" run -config "$inst/agent.conf" -joinToken "$token"
	# Ready when this uid gets its SVID (the agent has attested and synced the entry).
	wait_ready "spire-agent ($SPIRE_TRUST_DOMAIN)" "$inst/spire-agent.pid" spire-agent "$inst/spire-agent.log" \
		"$abin" api fetch x509 -socketPath "$asock"
	write_env "$inst/agent-env" "SPIRE_AGENT_SOCKET=$asock" "SPIRE_AGENT_ID=$agent_id" \
		"SPIRE_CONTROLLER_ID=$id" "SPIRE_SERVER_ADDRESS=127.0.0.1:$SPIRE_SERVER_PORT" "SPIRE_AGENT_SVID_TTL=$ttl"
	log "spire-agent ($SPIRE_TRUST_DOMAIN) ready: Workload API $asock, $id (admin=$admin, X.509-SVID TTL ${ttl}s)"
}

agent_stop() {
	stop_pid "$1/spire-agent.pid" spire-agent
}

# agent_inst DIR NAME: the instance an agent command names ("spire": the main one).
agent_inst() {
	local dir="$1" name="$2"
	if [[ "$name" == spire ]]; then
		main_inst "$dir"
	else
		extra_inst "$dir" "$name"
	fi
}

cmd_agent_up() {
	[[ $# -ge 2 ]] || die "usage: $PROG agent-up DIR NAME [--ttl SECONDS] [--no-admin] [--path /controller]"
	local dir="$1" name="$2" ttl=3600 admin=1 path=/controller inst
	shift 2
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--ttl)
			[[ "${2:-}" =~ ^[0-9]+$ ]] || die "--ttl takes seconds"
			ttl="$2"
			shift 2
			;;
		--no-admin)
			admin=0
			shift
			;;
		--path)
			[[ "${2:-}" == /* ]] || die "--path takes an absolute SPIFFE ID path"
			path="$2"
			shift 2
			;;
		*) die "unknown option '$1'" ;;
		esac
	done
	need setsid
	inst="$(agent_inst "$dir" "$name")"
	cmd_build spire
	trap 'agent_stop "'"$inst"'" || true' EXIT
	agent_up "$inst" "$ttl" "$admin" "$path"
	trap - EXIT
	log "run: source $inst/agent-env"
}

cmd_agent_down() {
	[[ $# -eq 2 ]] || die "usage: $PROG agent-down DIR NAME"
	[[ -d "$1" ]] || return 0
	agent_stop "$(agent_inst "$1" "$2")"
}

# ---------------------------------------------------------------- PostgreSQL

# pg_bindir: the directory of PostgreSQL's server binaries (newest installed), or fail.
pg_bindir() {
	local d
	if [[ -n "${PG_BIN_DIR:-}" ]]; then
		[[ -x "$PG_BIN_DIR/postgres" ]] || return 1
		echo "$PG_BIN_DIR"
		return 0
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
		if [[ -x "$d/postgres" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

# as_pg CMD...: run CMD as the owner of the PostgreSQL data (PostgreSQL refuses root).
as_pg() {
	if [[ "$(id -u)" == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# pg_home DIR: where the PostgreSQL cluster of DIR lives: a /tmp directory (recorded in
# DIR/postgres.home) that the postgres user can reach even when DIR is under /root.
pg_home() {
	[[ -f "$1/postgres.home" ]] && cat "$1/postgres.home"
}

# start_postgres DIR PORT: a throwaway PostgreSQL cluster on 127.0.0.1:PORT (trust
# authentication, user postgres, no fsync), its unix socket beside its data.
start_postgres() {
	local dir="$1" port="$2" bin home
	bin="$(pg_bindir)" || die "PostgreSQL server binaries not found (apt-get install postgresql)"
	if [[ "$(id -u)" == 0 ]] && ! id postgres >/dev/null 2>&1; then
		useradd --system --no-create-home postgres || die "cannot create the postgres user"
	fi
	home="$(mktemp -d /tmp/peers-pg.XXXXXX)"
	echo "$home" >"$dir/postgres.home"
	mkdir -p "$home/data"
	if [[ "$(id -u)" == 0 ]]; then chown -R postgres "$home"; fi
	chmod 700 "$home/data"
	as_pg "$bin/initdb" -D "$home/data" -U postgres -A trust --no-sync -E UTF8 >>"$dir/postgres.log" 2>&1 ||
		{ tail -n 20 "$dir/postgres.log" >&2; die "initdb failed"; }
	as_pg "$bin/pg_ctl" -D "$home/data" -l "$home/server.log" -w -t "$PEERS_TIMEOUT" \
		-o "-p $port -k $home -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c log_statement=mod -c log_line_prefix=%m_[%a]_" \
		start >>"$dir/postgres.log" 2>&1 || { tail -n 20 "$home/server.log" >&2; die "PostgreSQL failed to start"; }
	ln -sfn "$home/server.log" "$dir/postgres-server.log"
	log "PostgreSQL ($bin) ready on 127.0.0.1:$port (data in $home)"
}

stop_postgres() {
	local dir="$1" bin home
	home="$(pg_home "$dir")" || return 0
	[[ "$home" == /tmp/peers-pg.* ]] || return 0
	if [[ -f "$home/data/postmaster.pid" ]] && bin="$(pg_bindir)"; then
		log "stopping PostgreSQL"
		as_pg "$bin/pg_ctl" -D "$home/data" -m immediate -w stop >>"$dir/postgres.log" 2>&1 || true
	fi
	cp "$home/server.log" "$dir/postgres-server.log.saved" 2>/dev/null || true
	rm -rf "$home"
	rm -f "$dir/postgres.home"
}

# ---------------------------------------------------------------- commands

# stop_all DIR: everything started in DIR, the extra spire-servers first.
stop_all() {
	local dir="$1" pf inst
	for pf in "$dir"/*/spire-agent.pid "$dir"/t/*/spire-agent.pid; do
		[[ -e "$pf" ]] || continue
		agent_stop "${pf%/spire-agent.pid}"
	done
	for pf in "$dir"/*/spire-server.pid "$dir"/*/*/spire-server.pid; do
		[[ -e "$pf" ]] || continue
		spire_stop "${pf%/spire-server.pid}"
	done
	stop_pid "$dir/kube-apiserver.pid" kube-apiserver
	stop_pid "$dir/etcd.pid" etcd
	stop_postgres "$dir"
	for inst in "$dir"/*/ "$dir"/*/*/; do
		if [[ -f "$inst/instance" ]]; then spire_cleanup_socket "${inst%/}"; fi
	done
	return 0
}

UP_DIR=""
UP_OK=0
on_up_exit() {
	if [[ -n "$UP_DIR" && "$UP_OK" != 1 ]]; then
		log "up failed: stopping what was started in $UP_DIR (logs kept)"
		stop_all "$UP_DIR" || true
	fi
}

cmd_up() {
	[[ $# -ge 1 && $# -le 2 ]] || die "usage: $PROG up DIR [TRUST_DOMAIN]"
	local dir td="${2:-example.org}" pf b
	need curl
	need setsid
	dir="$(abs_dir "$1")"
	for pf in "$dir"/*.pid "$dir"/*/spire-server.pid; do
		[[ -e "$pf" ]] || continue
		b="${pf##*/}"
		b="${b%.pid}"
		if pid_alive "$pf" "$b"; then die "peers already running in $dir ($b, pid $(cat "$pf")); run: $PROG down $dir"; fi
	done
	cmd_build etcd spire kubernetes
	UP_DIR="$dir"
	trap on_up_exit EXIT
	rm -f "$dir/env" "$dir"/*.log "$dir"/*/spire-server.log # fresh state, fresh logs
	local etcd_client etcd_peer api_port t0=$SECONDS
	read -r etcd_client etcd_peer api_port <<<"$(free_ports 3)"
	start_etcd "$dir" "$etcd_client" "$etcd_peer"
	start_apiserver "$dir" "$api_port" "http://127.0.0.1:$etcd_client"
	spire_configure "$dir/spire" "$td" 0
	spire_start "$dir/spire"
	ln -sfn spire/spire-server.log "$dir/spire-server.log"
	local pg_vars=() pg_port pg_bin
	if [[ "${PEERS_POSTGRES:-auto}" != 0 ]] && pg_bin="$(pg_bindir)"; then
		pg_port="$(free_ports 1)"
		start_postgres "$dir" "$pg_port"
		pg_vars=("POSTGRES_HOST=127.0.0.1" "POSTGRES_PORT=$pg_port" "POSTGRES_USER=postgres" "POSTGRES_BIN_DIR=$pg_bin")
	elif [[ "${PEERS_POSTGRES:-auto}" == 1 ]]; then
		die "PEERS_POSTGRES=1 but no PostgreSQL server binaries (apt-get install postgresql)"
	else
		log "PostgreSQL not installed: no HA peers (the fault suite needs them)"
	fi
	local sp kp
	sp="$(peer_path spire)"
	kp="$(peer_path kubernetes)"
	local SPIRE_SERVER_SOCKET SPIRE_SERVER_PORT SPIRE_TRUST_DOMAIN SPIRE_BUNDLE_ENDPOINT_PORT
	# shellcheck disable=SC1091
	source "$dir/spire/instance"
	write_env "$dir/env" \
		"PEERS_DIR=$dir" \
		"KUBECONFIG=$dir/kubeconfig" \
		"KUBECTL=$kp/kubectl" \
		"KUBE_APISERVER_BIN=$kp/kube-apiserver" \
		"KUBE_APISERVER_URL=https://127.0.0.1:$api_port" \
		"KUBE_CA_FILE=$dir/pki/ca.crt" \
		"CONTROLLER_TOKEN=$(cat "$dir/controller-token")" \
		"ETCD_ENDPOINT=http://127.0.0.1:$etcd_client" \
		"SPIRE_SERVER_SOCKET=$SPIRE_SERVER_SOCKET" \
		"SPIRE_SERVER_PORT=$SPIRE_SERVER_PORT" \
		"SPIRE_TRUST_DOMAIN=$SPIRE_TRUST_DOMAIN" \
		"SPIRE_SERVER_BIN=$sp/spire-server" \
		"SPIRE_AGENT_BIN=$sp/spire-agent" \
		"SPIRE_SERVER_CONFIG=$dir/spire/server.conf" \
		${pg_vars[@]+"${pg_vars[@]}"}
	UP_OK=1
	log "peers up in $dir ($((SECONDS - t0))s); run: source $dir/env"
}

# apiserver-restart DIR: stop kube-apiserver (TERM) and start it again, same port and PKI.
cmd_apiserver() {
	local what="$1"
	shift
	[[ $# -eq 1 && -f "$1/apiserver.args" ]] || die "usage: $PROG apiserver-$what DIR (peers up in DIR)"
	local dir port etcd_url
	dir="$(cd "$1" && pwd -P)"
	read -r port etcd_url <"$dir/apiserver.args"
	if [[ "$what" != start ]]; then stop_pid "$dir/kube-apiserver.pid" kube-apiserver; fi
	if [[ "$what" != stop ]]; then launch_apiserver "$dir" "$port" "$etcd_url"; fi
}

cmd_down() {
	[[ $# -eq 1 ]] || die "usage: $PROG down DIR"
	if [[ ! -d "$1" ]]; then
		log "$1 does not exist: nothing to stop"
		return 0
	fi
	local dir
	dir="$(cd "$1" && pwd -P)"
	stop_all "$dir"
	log "peers in $dir stopped (logs kept)"
}

# main_inst DIR: the main spire-server instance of DIR.
main_inst() {
	[[ $# -eq 1 ]] || die "usage: $PROG spire-stop|spire-start|spire-restart DIR"
	[[ -f "$1/spire/instance" ]] || die "no peers were brought up in $1"
	echo "$(cd "$1" && pwd -P)/spire"
}

cmd_spire_stop() {
	local inst
	inst="$(main_inst "$@")"
	spire_stop "$inst"
}

cmd_spire_start() {
	local inst
	inst="$(main_inst "$@")"
	spire_start "$inst"
}

# extra_inst DIR NAME: the directory of an extra spire-server instance.
extra_inst() {
	local dir="$1" name="$2"
	[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad instance name '$name'"
	case "$name" in
	spire | etcd | pki | apiserver-certs) die "instance name '$name' is reserved" ;;
	esac
	echo "$(abs_dir "$dir")/$name"
}

cmd_spire_up() {
	[[ $# -ge 3 && $# -le 4 ]] || die "usage: $PROG spire-up DIR NAME TRUST_DOMAIN [--bundle-endpoint]"
	local bundle=0 inst dir
	if [[ $# -eq 4 ]]; then
		[[ "$4" == --bundle-endpoint ]] || die "unknown option '$4'"
		bundle=1
	fi
	need curl
	need setsid
	inst="$(extra_inst "$1" "$2")"
	dir="$(cd "$1" && pwd -P)"
	if pid_alive "$inst/spire-server.pid" spire-server; then die "spire-server $2 already running in $inst"; fi
	cmd_build spire
	rm -f "$inst/env"
	spire_configure "$inst" "$3" "$bundle"
	# On failure stop this instance only.
	trap 'spire_stop "'"$inst"'" || true' EXIT
	spire_start "$inst"
	trap - EXIT
	spire_env "$inst" "$inst/env" "$dir"
	log "run: source $inst/env"
}

cmd_spire_down() {
	[[ $# -eq 2 ]] || die "usage: $PROG spire-down DIR NAME"
	[[ -d "$1" ]] || return 0
	local inst
	inst="$(extra_inst "$1" "$2")"
	agent_stop "$inst"
	spire_stop "$inst"
	spire_cleanup_socket "$inst"
}

# ha_postgres DIR: POSTGRES_PORT and POSTGRES_BIN_DIR from the environment or DIR/env.
ha_postgres() {
	if [[ -z "${POSTGRES_PORT:-}" && -f "$1/env" ]]; then
		# shellcheck disable=SC1091
		source "$1/env"
	fi
	[[ -n "${POSTGRES_PORT:-}" && -n "${POSTGRES_BIN_DIR:-}" ]] ||
		die "no PostgreSQL: set POSTGRES_PORT and POSTGRES_BIN_DIR (peers.sh up starts one)"
}

cmd_spire_ha_up() {
	[[ $# -eq 3 ]] || die "usage: $PROG spire-ha-up DIR NAME TRUST_DOMAIN"
	local inst dir name="$2" td="$3" conn
	[[ "$name" =~ ^[a-z][a-z0-9_]*$ ]] || die "HA name must be a PostgreSQL identifier ([a-z][a-z0-9_]*): '$name'"
	need setsid
	inst="$(extra_inst "$1" "$name")"
	dir="$(cd "$1" && pwd -P)"
	ha_postgres "$dir"
	cmd_build spire
	"$POSTGRES_BIN_DIR/dropdb" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres --if-exists "$name" >/dev/null 2>&1 || true
	"$POSTGRES_BIN_DIR/createdb" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres "$name" || die "createdb $name failed"
	conn="dbname=$name user=postgres host=127.0.0.1 port=$POSTGRES_PORT sslmode=disable"
	rm -f "$inst/env"
	# application_name: PostgreSQL's statement log (log_statement=mod) names the server
	# that made each write: the fault suite's record of who wrote what, and when.
	spire_configure "$inst/a" "$td" 0 "$conn application_name=${name}_a"
	spire_configure "$inst/b" "$td" 0 "$conn application_name=${name}_b"
	trap 'spire_stop "'"$inst/a"'" || true; spire_stop "'"$inst/b"'" || true' EXIT
	# One after the other: the first creates the schema and the bundle.
	spire_start "$inst/a"
	spire_start "$inst/b"
	trap - EXIT
	local sock_a sock_b
	sock_a="$(source "$inst/a/instance" && echo "$SPIRE_SERVER_SOCKET")"
	sock_b="$(source "$inst/b/instance" && echo "$SPIRE_SERVER_SOCKET")"
	write_env "$inst/env" \
		"SPIRE_SERVER_SOCKET=$sock_a" \
		"SPIRE_SERVER_SOCKET_A=$sock_a" \
		"SPIRE_SERVER_SOCKET_B=$sock_b" \
		"SPIRE_INST_A=$inst/a" \
		"SPIRE_INST_B=$inst/b" \
		"SPIRE_TRUST_DOMAIN=$td" \
		"SPIRE_SERVER_BIN=$(peer_path spire)/spire-server" \
		"POSTGRES_DB=$name" \
		"POSTGRES_PORT=$POSTGRES_PORT" \
		"POSTGRES_BIN_DIR=$POSTGRES_BIN_DIR" \
		"POSTGRES_LOG=$dir/postgres-server.log" \
		"PEERS_DIR=$dir"
	log "HA pair $name up (PostgreSQL database $name): run: source $inst/env"
}

cmd_spire_ha_down() {
	[[ $# -eq 2 ]] || die "usage: $PROG spire-ha-down DIR NAME"
	[[ -d "$1" ]] || return 0
	local inst dir
	inst="$(extra_inst "$1" "$2")"
	dir="$(cd "$1" && pwd -P)"
	spire_stop "$inst/a"
	spire_stop "$inst/b"
	spire_cleanup_socket "$inst/a"
	spire_cleanup_socket "$inst/b"
	if (ha_postgres "$dir") 2>/dev/null; then
		ha_postgres "$dir"
		"$POSTGRES_BIN_DIR/dropdb" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres --if-exists "$2" >/dev/null 2>&1 || true
	fi
}

# any_inst DIR INST: DIR/INST, INST a relative path without "..".
any_inst() {
	[[ $# -eq 2 ]] || die "usage: $PROG inst-kill|inst-stop|inst-start DIR INST"
	[[ "$2" =~ ^[A-Za-z0-9][A-Za-z0-9_./-]*$ && "$2" != *..* ]] || die "bad instance '$2'"
	[[ -f "$1/$2/instance" ]] || die "no spire-server instance in $1/$2"
	echo "$(cd "$1/$2" && pwd -P)"
}

cmd_inst_kill() {
	local inst pid
	inst="$(any_inst "$@")"
	if pid_alive "$inst/spire-server.pid" spire-server; then
		pid="$(cat "$inst/spire-server.pid")"
		log "SIGKILL spire-server (pid $pid) in $inst"
		kill -KILL "$pid"
		while pid_alive "$inst/spire-server.pid" spire-server; do sleep 0.1; done
	fi
	rm -f "$inst/spire-server.pid"
}

# ---------------------------------------------------------------- main

main() {
	local cmd="${1:-help}"
	[[ $# -gt 0 ]] && shift
	case "$cmd" in
	build) cmd_build "$@" ;;
	path) cmd_path "$@" ;;
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	spire-stop) cmd_spire_stop "$@" ;;
	spire-start) cmd_spire_start "$@" ;;
	spire-restart)
		cmd_spire_stop "$@"
		cmd_spire_start "$@"
		;;
	spire-up) cmd_spire_up "$@" ;;
	spire-down) cmd_spire_down "$@" ;;
	agent-up) cmd_agent_up "$@" ;;
	agent-down) cmd_agent_down "$@" ;;
	spire-ha-up) cmd_spire_ha_up "$@" ;;
	apiserver-restart) cmd_apiserver restart "$@" ;;
	apiserver-stop) cmd_apiserver stop "$@" ;;
	apiserver-start) cmd_apiserver start "$@" ;;
	spire-ha-down) cmd_spire_ha_down "$@" ;;
	inst-kill) cmd_inst_kill "$@" ;;
	inst-stop) spire_stop "$(any_inst "$@")" ;;
	inst-start) spire_start "$(any_inst "$@")" ;;
	free-ports)
		[[ $# -eq 1 ]] || die "usage: $PROG free-ports N"
		free_ports "$1"
		;;
	help | -h | --help) usage ;;
	*)
		usage >&2
		die "unknown command '$cmd'"
		;;
	esac
}

main "$@"
