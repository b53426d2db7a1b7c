//! Declared relationships vs the ones in SPIRE → deletes, creates, updates (pure).
//!
//! # Equality
//!
//! Upstream compares trust domain, bundle endpoint URL and profile (type and endpoint
//! SPIFFE ID) only, so an edit of `trustDomainBundle` alone never reaches SPIRE. Here the
//! bundle counts too, but not by plain equality: SPIRE keeps refreshing the bundle it
//! holds for a federated trust domain from the bundle endpoint (and rewrites its
//! sequence number and refresh hint even on the first fetch), so the bundle that
//! `ListFederationRelationships` returns soon differs from the CR's bootstrap bundle.
//! Pushing the CR's bundle whenever they differ would overwrite SPIRE's fresher bundle on
//! every pass, and after the partner rotates its CA it would keep installing a bundle
//! without the new authority.
//!
//! # The bundle rule
//!
//! A CR's `trustDomainBundle` is pushed when **it changed since this process last pushed
//! (or accepted) it**, not when it differs from SPIRE's:
//!
//! - [`BundleMemory`] holds, per trust domain, the CR bundle last pushed (or accepted as
//!   already in SPIRE); the reconciler keeps it across passes.
//! - When the memory has the trust domain: push iff the CR bundle differs from the
//!   remembered one (order-insensitive over authorities; sequence number and refresh hint
//!   count, so any edit is pushed). SPIRE's own bundle is not consulted: a refreshed
//!   bundle in SPIRE never causes a write.
//! - When it does not (first pass after a start, or a CR bundle never seen): the CR bundle
//!   is pushed when SPIRE holds no bundle for the trust domain; otherwise it is accepted
//!   as in sync — remembered, nothing written — when the CR's status says its
//!   current spec was applied (`Ready=True` at `observedGeneration == generation`, see
//!   [`CrRef::ready_at_generation`]), or when every authority of the CR bundle is already
//!   in SPIRE's bundle (X.509 authorities by DER, JWT authorities by key ID and key).
//!   Otherwise it is pushed.
//! - A bundle is pushed once; when the write fails the memory is left as it was, so the
//!   next pass pushes again.
//! - A relationship created from a CR carries the CR's bundle when it has one.
//! - An update made for another reason (URL or profile) carries the CR bundle only when
//!   the bundle is due by the rule above; otherwise it carries no bundle, and SPIRE keeps
//!   the one it holds.
//! - Removing `trustDomainBundle` from a CR writes nothing (SPIRE keeps refreshing its
//!   bundle from the endpoint), and deleting a relationship leaves SPIRE's federated
//!   bundle in place (as upstream; `spire-server bundle delete` removes it).
//!
//! # Deletion safety
//!
//! Upstream deletes every relationship that no valid CR declares, so a CR edit that fails
//! validation (e.g. applied while the webhook was down, or in static manifest mode)
//! removes a working federation. Here a current relationship whose trust domain is named
//! by an Invalid CR (and declared by no valid one) is kept and reported
//! ([`Plan::kept`]); it is deleted once the CR is fixed to another trust domain or removed.

use std::collections::{BTreeMap, BTreeSet};

use scm_spiffe::{Bundle, BundleEndpointProfile, FederationRelationship, TrustDomain};

use crate::declare::{CrRef, Declared};

/// Field names (as in the CRD) reported in [`Plan::changed_fields`].
pub const CHANGED_URL: &str = "bundleEndpointURL";
pub const CHANGED_PROFILE: &str = "bundleEndpointProfile";
pub const CHANGED_ENDPOINT_SPIFFE_ID: &str = "bundleEndpointProfile.endpointSPIFFEID";
pub const CHANGED_BUNDLE: &str = "trustDomainBundle";

/// Per trust domain, the CR bundle this process last pushed to SPIRE or accepted as
/// already there. See the module documentation for the rule it implements. Starts
/// empty; [`FederationReconciler`](crate::FederationReconciler) keeps one across passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleMemory {
    bundles: BTreeMap<TrustDomain, Bundle>,
}

impl BundleMemory {
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&Bundle> {
        self.bundles.get(trust_domain)
    }

    /// Remembers `bundle` (normalized) for its trust domain.
    pub fn record(&mut self, bundle: &Bundle) {
        self.bundles.insert(bundle.trust_domain.clone(), normalized(bundle));
    }

    pub fn forget(&mut self, trust_domain: &TrustDomain) {
        self.bundles.remove(trust_domain);
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&TrustDomain) -> bool) {
        self.bundles.retain(|td, _| keep(td));
    }

    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }

    pub fn trust_domains(&self) -> impl Iterator<Item = &TrustDomain> {
        self.bundles.keys()
    }
}

/// The writes that bring SPIRE in line with the declared relationships.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In SPIRE, declared by no CR (and named by no Invalid CR). Sorted.
    pub deletes: Vec<TrustDomain>,
    /// Declared, absent from SPIRE; carries the CR's bundle when it has one. Oldest CR first.
    pub creates: Vec<FederationRelationship>,
    /// Declared and different. `trust_domain_bundle` is `Some` only when the bundle is
    /// to be pushed (see the module docs); `None` leaves SPIRE's bundle as it is.
    pub updates: Vec<FederationRelationship>,
    /// Declared and in line: no write.
    pub unchanged: Vec<TrustDomain>,
    /// In SPIRE, declared by no valid CR, but named by this Invalid CR: kept, not deleted.
    pub kept: Vec<(TrustDomain, String)>,
    /// Per updated trust domain, what differs ([`CHANGED_URL`], [`CHANGED_PROFILE`],
    /// [`CHANGED_ENDPOINT_SPIFFE_ID`], [`CHANGED_BUNDLE`]).
    pub changed_fields: BTreeMap<TrustDomain, Vec<&'static str>>,
    /// CR bundles found already in SPIRE (or already applied per the CR's status) that
    /// the memory did not hold yet: record them, nothing is written.
    pub adopted: Vec<Bundle>,
}

impl Plan {
    /// Number of relationships to write.
    pub fn write_count(&self) -> usize {
        self.deletes.len() + self.creates.len() + self.updates.len()
    }
}

/// [`plan_with_memory`] with an empty memory (as on the first pass after a start).
pub fn plan(declared: &Declared, current: &[FederationRelationship]) -> Plan {
    plan_with_memory(declared, current, &BundleMemory::default())
}

/// Diffs the declared relationships against SPIRE's: a current trust domain not declared
/// is deleted (unless an Invalid CR names it: kept), a declared one absent is created,
/// and one present but different is updated. Equality: URL and profile as upstream, plus
/// the bundle rule of the module docs.
pub fn plan_with_memory(declared: &Declared, current: &[FederationRelationship], memory: &BundleMemory) -> Plan {
    let mut out = Plan::default();
    let declared_tds: BTreeSet<&TrustDomain> = declared.relationships.iter().map(|(_, fr)| &fr.trust_domain).collect();
    let mut current_by_td: BTreeMap<&TrustDomain, &FederationRelationship> = BTreeMap::new();
    for fr in current {
        current_by_td.insert(&fr.trust_domain, fr);
    }

    for td in current_by_td.keys() {
        if declared_tds.contains(td) {
            continue;
        }
        match declared.invalid_trust_domains.get(td.name()) {
            Some(cr) => out.kept.push(((*td).clone(), cr.clone())),
            None => out.deletes.push((*td).clone()),
        }
    }

    for (cr, want) in &declared.relationships {
        let Some(have) = current_by_td.get(&want.trust_domain) else {
            out.creates.push(want.clone());
            continue;
        };
        let mut fields = Vec::new();
        if want.bundle_endpoint_url != have.bundle_endpoint_url {
            fields.push(CHANGED_URL);
        }
        match (&want.bundle_endpoint_profile, &have.bundle_endpoint_profile) {
            (BundleEndpointProfile::HttpsWeb, BundleEndpointProfile::HttpsWeb) => {}
            (
                BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id: a },
                BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id: b },
            ) => {
                if a != b {
                    fields.push(CHANGED_ENDPOINT_SPIFFE_ID);
                }
            }
            _ => fields.push(CHANGED_PROFILE),
        }
        let mut push_bundle = false;
        if let Some(bundle) = &want.trust_domain_bundle {
            match bundle_decision(bundle, cr, have.trust_domain_bundle.as_ref(), memory) {
                BundleDecision::InSync => {}
                BundleDecision::Adopt => out.adopted.push(bundle.clone()),
                BundleDecision::Push => {
                    push_bundle = true;
                    fields.push(CHANGED_BUNDLE);
                }
            }
        }
        if fields.is_empty() {
            out.unchanged.push(want.trust_domain.clone());
            continue;
        }
        let mut update = want.clone();
        if !push_bundle {
            update.trust_domain_bundle = None;
        }
        out.changed_fields.insert(want.trust_domain.clone(), fields);
        out.updates.push(update);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BundleDecision {
    /// The memory holds exactly this bundle: nothing to do.
    InSync,
    /// Not in the memory, but already applied: remember it, write nothing.
    Adopt,
    /// Write it.
    Push,
}

fn bundle_decision(cr_bundle: &Bundle, cr: &CrRef, spire: Option<&Bundle>, memory: &BundleMemory) -> BundleDecision {
    match memory.get(&cr_bundle.trust_domain) {
        Some(remembered) if *remembered == normalized(cr_bundle) => BundleDecision::InSync,
        Some(_) => BundleDecision::Push,
        // SPIRE holds nothing for the trust domain: there is nothing fresher to protect.
        None if spire.is_none() => BundleDecision::Push,
        None if cr.ready_at_generation => BundleDecision::Adopt,
        None if spire.is_some_and(|s| authorities_subset(cr_bundle, s)) => BundleDecision::Adopt,
        None => BundleDecision::Push,
    }
}

/// Whether every authority of `a` is in `b` (X.509 by DER; JWT by key ID and key).
pub fn authorities_subset(a: &Bundle, b: &Bundle) -> bool {
    a.x509_authorities.iter().all(|der| b.x509_authorities.contains(der))
        && a.jwt_authorities
            .iter()
            .all(|k| b.jwt_authorities.iter().any(|j| j.key_id == k.key_id && j.public_key == k.public_key))
}

/// Authorities sorted and deduplicated, so that key order in the JWKS does not matter.
fn normalized(b: &Bundle) -> Bundle {
    let mut n = b.clone();
    n.x509_authorities.sort();
    n.x509_authorities.dedup();
    n.jwt_authorities
        .sort_by(|x, y| (&x.key_id, &x.public_key, x.expires_at).cmp(&(&y.key_id, &y.public_key, y.expires_at)));
    n.jwt_authorities.dedup();
    n
}
