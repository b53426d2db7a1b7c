//! The Kubernetes edge (adapters of `reconcile::ports`): watches into stores, early
//! registration, the status writer, the lease.

pub mod early;
pub mod lease;
mod pods;
pub mod snapshot;
pub mod status;
mod watch;
pub mod world;
