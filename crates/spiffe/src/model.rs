//! What SPIRE stores, as plain data: registration entries and federation relationships.

use std::fmt;
use std::time::Duration;

use crate::{Bundle, SpiffeId, TrustDomain};

/// A workload selector `type:value`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Selector {
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("selector {0:?} is not of the form type:value")]
    NoColon(String),
    #[error("selector {0:?} has an empty type")]
    EmptyType(String),
    #[error("selector {0:?} has an empty value")]
    EmptyValue(String),
}

impl Selector {
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Self { kind: kind.into(), value: value.into() }
    }

    /// Splits on the first `:`; both halves must be non-empty (upstream's `parseSelector`).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let Some((kind, value)) = s.split_once(':') else {
            return Err(SelectorError::NoColon(s.to_owned()));
        };
        if kind.is_empty() {
            return Err(SelectorError::EmptyType(s.to_owned()));
        }
        if value.is_empty() {
            return Err(SelectorError::EmptyValue(s.to_owned()));
        }
        Ok(Self::new(kind, value))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// A SPIRE registration entry. TTLs are whole seconds on the wire; `Duration` here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Empty for an entry not yet created (SPIRE assigns one unless the client does).
    pub id: String,
    pub spiffe_id: SpiffeId,
    pub parent_id: SpiffeId,
    pub selectors: Vec<Selector>,
    pub x509_svid_ttl: Duration,
    pub jwt_svid_ttl: Duration,
    pub federates_with: Vec<TrustDomain>,
    pub admin: bool,
    pub downstream: bool,
    pub dns_names: Vec<String>,
    pub hint: String,
    pub store_svid: bool,
    /// SPIRE >= 1.15's optional attributes; `None`: not set (and, on a declared entry,
    /// not managed: whatever SPIRE holds is left alone).
    pub additional_attributes: Option<AdditionalAttributes>,
    /// SPIRE's revision number of a stored entry (bumped by every update); 0 on a declared
    /// one. Never compared by a plan: it tells a cheap check which entries changed.
    pub revision: i64,
}

/// SPIRE >= 1.15's optional entry attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AdditionalAttributes {
    /// Agents mint this entry's X509-SVID only when a workload asks for it.
    pub disable_x509_svid_prefetch: bool,
    /// JWT-SVIDs of this entry carry a `jti` claim.
    pub jwt_svid_include_jti: bool,
}

impl Entry {
    /// A minimal entry; the rest default to zero values.
    pub fn new(spiffe_id: SpiffeId, parent_id: SpiffeId, selectors: Vec<Selector>) -> Self {
        Self {
            id: String::new(),
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: Duration::ZERO,
            jwt_svid_ttl: Duration::ZERO,
            federates_with: Vec::new(),
            admin: false,
            downstream: false,
            dns_names: Vec::new(),
            hint: String::new(),
            store_svid: false,
            additional_attributes: None,
            revision: 0,
        }
    }
}

/// How SPIRE authenticates a foreign bundle endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleEndpointProfile {
    HttpsWeb,
    HttpsSpiffe { endpoint_spiffe_id: SpiffeId },
}

/// A SPIRE federation relationship with a foreign trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationRelationship {
    pub trust_domain: TrustDomain,
    pub bundle_endpoint_url: String,
    pub bundle_endpoint_profile: BundleEndpointProfile,
    pub trust_domain_bundle: Option<Bundle>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parse() {
        assert_eq!(Selector::parse("k8s:ns:default").unwrap(), Selector::new("k8s", "ns:default"));
        assert_eq!(Selector::parse("unix:uid:0").unwrap().to_string(), "unix:uid:0");
        assert!(matches!(Selector::parse("nocolon"), Err(SelectorError::NoColon(_))));
        assert!(matches!(Selector::parse(":v"), Err(SelectorError::EmptyType(_))));
        assert!(matches!(Selector::parse("t:"), Err(SelectorError::EmptyValue(_))));
    }
}
