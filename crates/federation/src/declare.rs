//! Which federation relationships the ClusterFederatedTrustDomains declare (pure).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use scm_api::{CONDITION_READY, ClusterFederatedTrustDomain};
use scm_spiffe::{FederationRelationship, TrustDomain};

use crate::parse::parse_federated_trust_domain;

/// The ClusterFederatedTrustDomain a relationship was declared by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrRef {
    /// `metadata.name` (cluster-scoped, so unique).
    pub name: String,
    /// `metadata.uid`; empty in static manifest mode.
    pub uid: String,
    /// `metadata.generation`, when the object has one.
    pub generation: Option<i64>,
    /// The object's status says its current spec was applied: a `Ready` condition with
    /// status `True` whose `observedGeneration` equals `metadata.generation`. Used by
    /// [`plan_with_memory`](crate::plan_with_memory) after a restart, when the bundle
    /// memory is empty (see [`BundleMemory`](crate::BundleMemory)).
    pub ready_at_generation: bool,
}

impl CrRef {
    pub fn of(cr: &ClusterFederatedTrustDomain) -> Self {
        let generation = cr.metadata.generation;
        let ready_at_generation = generation.is_some()
            && cr.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == CONDITION_READY && c.status == "True" && c.observed_generation == generation)
            });
        Self {
            name: cr.metadata.name.clone().unwrap_or_default(),
            uid: cr.metadata.uid.clone().unwrap_or_default(),
            generation,
            ready_at_generation,
        }
    }
}

/// What `declare` made of one (class-matching) ClusterFederatedTrustDomain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Valid, and the oldest CR for its trust domain: its relationship is declared.
    Declared,
    /// The spec does not parse; the message is the `FieldError` text (`spec.x: ...`).
    Invalid(String),
    /// Valid, but an older CR (`winner`, by name) declares the same trust domain.
    Conflict { winner: String },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Declared => f.write_str("declared"),
            Outcome::Invalid(msg) => write!(f, "invalid: {msg}"),
            Outcome::Conflict { winner } => {
                write!(f, "conflict: trust domain already declared by {winner}")
            }
        }
    }
}

/// The result of [`declare`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// The winning CR per trust domain and its relationship, oldest CR first.
    pub relationships: Vec<(CrRef, FederationRelationship)>,
    /// Per class-matching CR name. CRs of other classes have no entry.
    pub outcomes: BTreeMap<String, Outcome>,
    /// Trust domain name → the oldest Invalid CR naming it (its `spec.trustDomain` as
    /// parsed, or verbatim when it does not parse). `plan` keeps (does not delete)
    /// current relationships with these trust domains unless a valid CR declares them.
    pub invalid_trust_domains: BTreeMap<String, String>,
}

impl Declared {
    /// The declaring CR of `trust_domain`, if any.
    pub fn cr_of(&self, trust_domain: &TrustDomain) -> Option<&CrRef> {
        self.relationships.iter().find(|(_, fr)| &fr.trust_domain == trust_domain).map(|(cr, _)| cr)
    }
}

/// Upstream's declare step of the federation pass, plus reporting:
///
/// 1. CRs are taken oldest first: `creationTimestamp` ascending, then `uid` ascending
///    (then name, so the order is total where both are missing, e.g. static manifests);
/// 2. CRs whose class does not match are skipped without an outcome:
///    process iff `(className == "" && watch_classless) || className == class_name`;
/// 3. a CR whose spec fails [`parse_federated_trust_domain`] is `Invalid` and declares
///    nothing (its trust domain is remembered in `invalid_trust_domains`);
/// 4. the first valid CR per trust domain is `Declared`; later ones are `Conflict`,
///    naming the winner.
pub fn declare(crs: &[Arc<ClusterFederatedTrustDomain>], class_name: &str, watch_classless: bool) -> Declared {
    let mut ordered: Vec<&ClusterFederatedTrustDomain> = crs
        .iter()
        .map(Arc::as_ref)
        .filter(|cr| scm_core::class_matches(cr.spec.class_name.as_deref(), class_name, watch_classless))
        .collect();
    ordered.sort_by(|a, b| precedence(a, b));

    let mut out = Declared::default();
    let mut winners: BTreeMap<TrustDomain, String> = BTreeMap::new();
    for cr in ordered {
        let cr_ref = CrRef::of(cr);
        let outcome = match parse_federated_trust_domain(&cr.spec) {
            Err(err) => {
                let td = TrustDomain::parse(&cr.spec.trust_domain)
                    .map(|td| td.name().to_owned())
                    .unwrap_or_else(|_| cr.spec.trust_domain.clone());
                out.invalid_trust_domains.entry(td).or_insert_with(|| cr_ref.name.clone());
                Outcome::Invalid(err.to_string())
            }
            Ok(fr) => match winners.get(&fr.trust_domain) {
                Some(winner) => Outcome::Conflict { winner: winner.clone() },
                None => {
                    winners.insert(fr.trust_domain.clone(), cr_ref.name.clone());
                    out.relationships.push((cr_ref.clone(), fr));
                    Outcome::Declared
                }
            },
        };
        out.outcomes.insert(cr_ref.name, outcome);
    }
    out
}

fn precedence(a: &ClusterFederatedTrustDomain, b: &ClusterFederatedTrustDomain) -> Ordering {
    let created = |cr: &ClusterFederatedTrustDomain| cr.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.uid.as_deref().unwrap_or_default().cmp(b.metadata.uid.as_deref().unwrap_or_default()))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}
