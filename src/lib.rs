//! spire-controller-manager: the runtime around the pure crates (`scm-*`).
//!
//! Rooms (ARCHITECTURE.md has the map): `cli` (flags, subcommands, wiring), `reconcile`
//! (loops, passes and their ports), `k8s` and `manifests` (the adapters), `trigger`,
//! `scope`, `degraded` (optional permissions), `cluster_domain`, `metrics`, `health`,
//! `memory`, `tooling` (the read-only `plan` and `explain` commands), `standalone` (the
//! SPIRE client of either transport). Only `cli` is public: the binary is the product.

pub mod cli;
mod cluster_domain;
mod degraded;
mod health;
mod k8s;
mod manifests;
mod memory;
mod metrics;
mod reconcile;
mod scope;
mod standalone;
mod tooling;
mod trigger;
