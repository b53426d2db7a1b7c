//! End-to-end tests against real peers: kube-apiserver + etcd + spire-server built from
//! the Go module proxy (see e2e/peers.sh), and the controller binary.

mod chart;
mod early;
pub mod entries;
mod faults;
mod federation;
mod harness;
mod hostile;
mod manifests;
mod ops;
mod smoke;
mod spire_compat;
mod standalone;
mod tooling;
mod transport;
mod webhook;
