//! spire-controller-manager: the runtime around the pure crates (`scm-*`).
//!
//! Rooms: `cli` (flags, subcommands, wiring), `degraded` (optional permissions), `k8s` (watches → stores, the lease),
//! `reconcile` (loops and passes), `status` (status subresources, events), `manifests`
//! (static manifest mode), `metrics`, `health`.

pub mod cli;
pub mod cluster_domain;
pub mod degraded;
pub mod health;
pub mod k8s;
pub mod manifests;
pub mod memory;
pub mod metrics;
pub mod reconcile;
pub mod scope;
pub mod trigger;
