//! SPIRE Server API client (entry, trustdomain, bundle and svid services) over the
//! server's admin Unix socket (or TCP + SPIFFE mTLS with an X.509-SVID from a SPIRE agent's
//! Workload API: [`Client::connect_mtls`], [`workload`], [`tls`]), as spire-controller-manager
//! uses it.
//!
//! - [`Client`]: typed calls with a per-call deadline, paged lists (never a partial
//!   view), and batched writes that report one outcome per item in input order.
//! - [`convert`]: the conversions between `scm_spiffe` types and the wire types.
//! - [`proto`]: the generated messages, clients and servers (the `.proto` files under
//!   `proto/` are a wire-compatible subset of SPIRE's spire-api-sdk).

mod client;
pub mod convert;
mod error;
pub mod tls;
pub mod workload;

pub use client::{
    Client, ClientOptions, FederatedBundle, FieldSupport, MintedSvid, Reachability, UNSUPPORTED_FIELDS_PROBE_PATH,
    UnsupportedFields, socket_path_from_address,
};
pub use error::{BatchError, BatchResult, ItemError, ItemErrorKind, SpireError, code_label, item_code_label};
pub use workload::{SvidSource, WorkloadError, X509Material};

/// Generated from `proto/` by `build.rs` (prost + tonic). Servers are generated too, for
/// in-process fakes in tests.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    pub mod spire {
        pub mod api {
            pub mod types {
                tonic::include_proto!("spire.api.types");
            }
            pub mod server {
                pub mod entry {
                    pub mod v1 {
                        tonic::include_proto!("spire.api.server.entry.v1");
                    }
                }
                pub mod trustdomain {
                    pub mod v1 {
                        tonic::include_proto!("spire.api.server.trustdomain.v1");
                    }
                }
                pub mod bundle {
                    pub mod v1 {
                        tonic::include_proto!("spire.api.server.bundle.v1");
                    }
                }
                pub mod svid {
                    pub mod v1 {
                        tonic::include_proto!("spire.api.server.svid.v1");
                    }
                }
            }
        }
    }
    /// The SPIFFE Workload API subset (`FetchX509SVID`), see `workload.rs`.
    pub mod workload {
        tonic::include_proto!("_");
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
