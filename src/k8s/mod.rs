//! The Kubernetes edge: watches into stores, the lease.

pub mod early;
pub mod lease;
pub mod world;
