//! What happens to one ClusterFederatedTrustDomain (the `explain trustdomain` tooling),
//! from [`declare`] and [`plan()`] themselves.

use std::sync::Arc;

use scm_api::ClusterFederatedTrustDomain;
use scm_spiffe::{FederationRelationship, TrustDomain};

use crate::declare::{Outcome, declare};
use crate::plan::plan;

/// Where the relationship of a declared trust domain stands in SPIRE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelationshipState {
    InSync,
    /// A pass would create it.
    Missing,
    /// A pass would update these fields.
    Differs(Vec<&'static str>),
}

/// [`explain_trust_domain`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomainExplanation {
    pub name: String,
    pub found: bool,
    /// The object's `className` when it is not ours (`Some(None)`: it has none and
    /// `watchClassless` is off).
    pub class_mismatch: Option<Option<String>>,
    /// What `declare` made of it (None when the class does not match).
    pub outcome: Option<Outcome>,
    /// `spec.trustDomain` as written.
    pub trust_domain: String,
    /// Only for a declared trust domain.
    pub relationship: Option<RelationshipState>,
    /// Whether SPIRE holds a bundle for the trust domain (`None`: unknown).
    pub bundle_in_spire: Option<bool>,
}

/// Explains the ClusterFederatedTrustDomain `name` against SPIRE's relationships and the
/// trust domains it holds bundles for. The bundle comparison is the one of a first pass
/// after a start (no bundle memory).
pub fn explain_trust_domain(
    crs: &[Arc<ClusterFederatedTrustDomain>],
    class_name: &str,
    watch_classless: bool,
    name: &str,
    current: &[FederationRelationship],
    federated_bundles: Option<&[TrustDomain]>,
) -> TrustDomainExplanation {
    let mut out = TrustDomainExplanation {
        name: name.to_owned(),
        found: false,
        class_mismatch: None,
        outcome: None,
        trust_domain: String::new(),
        relationship: None,
        bundle_in_spire: None,
    };
    let Some(cr) = crs.iter().find(|cr| cr.metadata.name.as_deref() == Some(name)) else {
        return out;
    };
    out.found = true;
    out.trust_domain = cr.spec.trust_domain.clone();
    if let (Ok(td), Some(have)) = (TrustDomain::parse(&cr.spec.trust_domain), federated_bundles) {
        out.bundle_in_spire = Some(have.contains(&td));
    }
    let class = cr.spec.class_name.as_deref();
    if !scm_core::class_matches(class, class_name, watch_classless) {
        out.class_mismatch = Some(class.filter(|c| !c.is_empty()).map(str::to_owned));
        return out;
    }
    let declared = declare(crs, class_name, watch_classless);
    out.outcome = declared.outcomes.get(name).cloned();
    if out.outcome != Some(Outcome::Declared) {
        return out;
    }
    let Some((_, fr)) = declared.relationships.iter().find(|(c, _)| c.name == name) else {
        return out;
    };
    let p = plan(&declared, current);
    out.relationship = Some(if p.creates.iter().any(|c| c.trust_domain == fr.trust_domain) {
        RelationshipState::Missing
    } else if let Some(fields) = p.changed_fields.get(&fr.trust_domain) {
        RelationshipState::Differs(fields.clone())
    } else {
        RelationshipState::InSync
    });
    out
}
