//! The SPIFFE and SPIRE vocabulary shared by every other crate: SPIFFE IDs and trust
//! domains parsed with go-spiffe's rules, and the plain data that SPIRE stores
//! (registration entries, federation relationships, bundles).
//!
//! Pure: no I/O, no Kubernetes, no network. The SPIRE API client converts these to and
//! from the wire types; the declare/diff logic works on them directly.

mod bundle;
mod id;
mod model;

pub use bundle::{Bundle, BundleError, JwtAuthority};
pub use id::{IdError, SpiffeId, TrustDomain};
pub use model::{AdditionalAttributes, BundleEndpointProfile, Entry, FederationRelationship, Selector, SelectorError};
