#!/usr/bin/env bash
# `make test`: build the peers if missing, start them, run every test, stop them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
E2E_DIR=${E2E_DIR:-$ROOT/.e2e}

echo "== building the workspace"
cargo build --workspace --all-targets

echo "== unit tests"
cargo test --workspace --lib --bins

echo "== real peers"
e2e/peers.sh build
SPIRE_VERSION=v1.13.3 e2e/peers.sh build spire
rm -rf "$E2E_DIR"
mkdir -p "$E2E_DIR"
# PostgreSQL is required here: the fault suite (e2e/tests/faults.rs) runs the HA pair on it.
PEERS_POSTGRES=1 e2e/peers.sh up "$E2E_DIR/peers"
trap 'e2e/peers.sh down "$E2E_DIR/peers" || true' EXIT

echo "== integration and e2e tests (the fault suite, faults::, among them: ~6 min of its own)"
export PEERS_ENV="$E2E_DIR/peers/env"
export SPIRE_TESTS_REQUIRE_PEERS=1
export CONTROLLER_BIN="$ROOT/target/debug/spire-controller-manager"
cargo test --workspace --tests -- --test-threads="${E2E_THREADS:-2}"

# The entry, federation and webhook tests again over TCP + mTLS (standalone: a spire-agent
# beside each test's spire-server, spireServerAddress + workloadAPISocketPath;
# e2e/tests/transport.rs). About 3 minutes.
echo "== entries, federation and webhooks over TCP + mTLS"
SCM_E2E_TRANSPORT=mtls cargo test --test e2e -- --test-threads="${E2E_THREADS:-2}" entries:: federation:: webhook::

# The same client round trips and a core e2e subset against the second supported SPIRE.
echo "== SPIRE v1.13.3: the client round trip and a core e2e subset"
e2e/peers.sh down "$E2E_DIR/peers" || true
export SPIRE_VERSION=v1.13.3
e2e/peers.sh up "$E2E_DIR/peers-1.13"
trap 'e2e/peers.sh down "$E2E_DIR/peers-1.13" || true' EXIT
export PEERS_ENV="$E2E_DIR/peers-1.13/env"
cargo test -p scm-spire-api --test real_server
cargo test -p scm-federation --test real_spire
cargo test --test e2e -- --test-threads="${E2E_THREADS:-2}" entries:: spire_compat:: smoke:: chart::
