//! The Kubernetes edge: watches into stores, the lease.

pub mod early;
pub mod lease;
mod pods;
mod watch;
pub mod world;
