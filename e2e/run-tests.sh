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
rm -rf "$E2E_DIR"
mkdir -p "$E2E_DIR"
e2e/peers.sh up "$E2E_DIR/peers"
trap 'e2e/peers.sh down "$E2E_DIR/peers" || true' EXIT

echo "== integration and e2e tests"
export PEERS_ENV="$E2E_DIR/peers/env"
export SPIRE_TESTS_REQUIRE_PEERS=1
export CONTROLLER_BIN="$ROOT/target/debug/spire-controller-manager"
cargo test --workspace --tests -- --test-threads="${E2E_THREADS:-2}"
