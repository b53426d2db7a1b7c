# spire-controller-manager (Rust). `make test` runs every test against real peers;
# `make demo` runs the controller on a local control plane and SPIRE server.
SHELL := /bin/bash
CARGO ?= cargo
E2E_DIR ?= $(CURDIR)/.e2e

.PHONY: all build release test test-faults unit lint fuzz e2e peers crds check-crds demo demo-down bench clean

all: build

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release --bin spire-controller-manager

## Every test: unit tests, then e2e tests against real peers (built and started here).
test:
	e2e/run-tests.sh

## Only the fault suite (HA spire-servers on PostgreSQL, kills, outages, stalls), on
## peers started here; `make test` runs it too.
test-faults:
	$(CARGO) build --bins
	rm -rf $(E2E_DIR)/faults && PEERS_POSTGRES=1 e2e/peers.sh up $(E2E_DIR)/faults
	PEERS_ENV=$(E2E_DIR)/faults/env SPIRE_TESTS_REQUIRE_PEERS=1 CONTROLLER_BIN=$(CURDIR)/target/debug/spire-controller-manager \
		$(CARGO) test --test e2e -- --test-threads=2 faults:: ; rc=$$?; e2e/peers.sh down $(E2E_DIR)/faults; exit $$rc

## Formatting, clippy (warnings are errors), the module graph of src/ (no cycle between
## rooms), and cargo deny (bans, licenses, sources; advisories need the network).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 tools/imports.py src --check
	$(CARGO) deny check bans licenses sources

## Fuzz every cargo-fuzz target for FUZZ_SECONDS each (default 60); not part of `make test`.
fuzz:
	fuzz/run.sh

## Unit tests only (no peers).
unit:
	$(CARGO) test --workspace --lib --bins

## Build the real peers (spire-server, kube-apiserver, etcd, kubectl) into the cache.
peers:
	e2e/peers.sh build

## Regenerate crds/ from the Rust types.
crds:
	$(CARGO) run -q --bin spire-controller-manager -- crds --dir crds

check-crds: crds
	git diff --exit-code -- crds

demo:
	e2e/demo.sh

demo-down:
	e2e/demo.sh down

bench:
	e2e/bench/run.sh

clean:
	$(CARGO) clean
	rm -rf $(E2E_DIR) .demo
