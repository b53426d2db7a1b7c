//! End-to-end tests against real peers: kube-apiserver + etcd + spire-server built from
//! the Go module proxy (see e2e/peers.sh), and the controller binary.

mod federation;
mod harness;
pub mod entries;
mod ops;
mod smoke;
mod webhook;
mod manifests;
