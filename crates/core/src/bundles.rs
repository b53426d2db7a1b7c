//! Federation that degrades per trust domain. SPIRE refuses an entry whose federatesWith
//! names a trust domain it holds no bundle for, so one missing bundle would cost every
//! identity of the object that declares it. Instead the entries are written with the trust
//! domains whose bundles exist (never with more than declared) and completed when the
//! missing bundle arrives; the sources are told which trust domains are missing.

use std::collections::{BTreeMap, BTreeSet};

use scm_spiffe::TrustDomain;

use crate::declare::{DeclaredEntry, SourceRef};

/// The trust domains that `entries` federate with, other than `own` (the server's own
/// bundle always exists).
pub fn federated_trust_domains(entries: &[DeclaredEntry], own: &TrustDomain) -> BTreeSet<TrustDomain> {
    entries.iter().flat_map(|d| d.entry.federates_with.iter()).filter(|td| *td != own).cloned().collect()
}

/// Drops from each entry's federatesWith the trust domains without a bundle (`own`
/// always has one) and returns, per source, the trust domains it lost.
pub fn restrict_federation(
    entries: &mut [DeclaredEntry],
    own: &TrustDomain,
    has_bundle: impl Fn(&TrustDomain) -> bool,
) -> BTreeMap<SourceRef, BTreeSet<TrustDomain>> {
    let mut missing: BTreeMap<SourceRef, BTreeSet<TrustDomain>> = BTreeMap::new();
    for d in entries.iter_mut() {
        if d.entry.federates_with.iter().all(|td| td == own || has_bundle(td)) {
            continue;
        }
        let mut lost = BTreeSet::new();
        std::sync::Arc::make_mut(&mut d.entry).federates_with.retain(|td| {
            let keep = td == own || has_bundle(td);
            if !keep {
                lost.insert(td.clone());
            }
            keep
        });
        missing.entry(d.source.clone()).or_default().extend(lost);
    }
    missing
}

#[cfg(test)]
mod tests {
    use scm_spiffe::{Entry, SpiffeId};

    use super::*;
    use crate::declare::SourceKind;
    use crate::key::entry_key;

    fn td(s: &str) -> TrustDomain {
        TrustDomain::parse(s).unwrap()
    }

    fn declared(source: &str, path: &str, federates: &[&str]) -> DeclaredEntry {
        let mut entry = Entry::new(
            SpiffeId::parse(&format!("spiffe://own.org/{path}")).unwrap(),
            SpiffeId::parse("spiffe://own.org/node").unwrap(),
            vec![],
        );
        entry.federates_with = federates.iter().map(|s| td(s)).collect();
        DeclaredEntry {
            key: entry_key(&entry),
            entry: std::sync::Arc::new(entry),
            source: SourceRef { kind: SourceKind::ClusterSPIFFEID, name: source.into(), uid: String::new() },
            pod_uid: None,
        }
    }

    #[test]
    fn entries_keep_the_trust_domains_with_bundles_and_sources_learn_the_rest() {
        let own = td("own.org");
        let mut entries = vec![
            declared("a", "w1", &["b.org", "missing.org", "own.org"]),
            declared("a", "w2", &["missing.org", "other-missing.org"]),
            declared("c", "w3", &["b.org"]),
            declared("d", "w4", &[]),
        ];
        assert_eq!(
            federated_trust_domains(&entries, &own),
            [td("b.org"), td("missing.org"), td("other-missing.org")].into_iter().collect()
        );
        let missing = restrict_federation(&mut entries, &own, |t| t.name() == "b.org");
        let fw = |i: usize| entries[i].entry.federates_with.iter().map(|t| t.name().to_owned()).collect::<Vec<_>>();
        assert_eq!(fw(0), ["b.org", "own.org"]);
        assert!(fw(1).is_empty(), "an entry whose every trust domain is missing federates with none");
        assert_eq!(fw(2), ["b.org"]);
        assert!(fw(3).is_empty());
        assert_eq!(missing.len(), 1, "only source a lost anything: {missing:?}");
        let (src, lost) = missing.iter().next().unwrap();
        assert_eq!(src.name, "a");
        assert_eq!(lost.iter().map(|t| t.name()).collect::<Vec<_>>(), ["missing.org", "other-missing.org"]);
    }

    #[test]
    fn with_every_bundle_present_nothing_changes() {
        let own = td("own.org");
        let mut entries = vec![declared("a", "w1", &["b.org", "c.org"])];
        let before = entries.clone();
        assert!(restrict_federation(&mut entries, &own, |_| true).is_empty());
        assert_eq!(entries, before);
    }
}
