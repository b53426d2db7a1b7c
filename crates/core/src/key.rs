//! Entry identity (upstream `makeEntryKey`) and small classifiers over SPIRE entries.

use std::fmt;

use sha2::{Digest, Sha256};

use scm_spiffe::{Entry, Selector};

/// Hex SHA-256 identifying an entry: SPIFFE ID, parent ID and selectors only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryKey(pub String);

impl fmt::Display for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Upstream `makeEntryKey`: SHA-256 over `spiffeID ‖ parentID ‖ (type ‖ value)*` with the
/// selectors sorted by type then value, no separators; lowercase hex.
pub fn entry_key(e: &Entry) -> EntryKey {
    EntryKey(hex::encode(entry_digest(e)))
}

/// The raw digest behind [`entry_key`].
pub(crate) fn entry_digest(e: &Entry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(e.spiffe_id.as_str().as_bytes());
    h.update(e.parent_id.as_str().as_bytes());
    let by_type_then_value = |a: &&Selector, b: &&Selector| a.kind.cmp(&b.kind).then_with(|| a.value.cmp(&b.value));
    let mut feed = |s: &Selector| {
        h.update(s.kind.as_bytes());
        h.update(s.value.as_bytes());
    };
    if e.selectors.is_sorted_by(|a, b| by_type_then_value(&a, &b).is_le()) {
        e.selectors.iter().for_each(&mut feed);
    } else {
        let mut sorted: Vec<&Selector> = e.selectors.iter().collect();
        sorted.sort_by(by_type_then_value);
        sorted.into_iter().for_each(feed);
    }
    h.finalize().into()
}

impl EntryKey {
    /// The digest this key spells; `None` if it is not 64 hex digits.
    pub(crate) fn digest(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.0, &mut out).ok()?;
        Some(out)
    }
}

const JOIN_TOKEN_PARENT_PATH_PREFIX: &str = "/spire/agent/join_token/";
const JOIN_TOKEN_SELECTOR_TYPE: &str = "spiffe_id";

/// Upstream `isJoinTokenEntry`: the parent ID's path starts with `/spire/agent/join_token/`
/// and the entry has a selector of type `spiffe_id`. Such entries are never deleted as
/// undeclared or duplicate (#247/#306).
pub fn is_join_token_entry(e: &Entry) -> bool {
    e.parent_id.path().starts_with(JOIN_TOKEN_PARENT_PATH_PREFIX)
        && e.selectors.iter().any(|s| s.kind == JOIN_TOKEN_SELECTOR_TYPE)
}

/// The pod UID of a `k8s:pod-uid:<uid>` selector, if the entry has one.
pub fn pod_uid_of(e: &Entry) -> Option<&str> {
    e.selectors.iter().find_map(|s| if s.kind == "k8s" { s.value.strip_prefix("pod-uid:") } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scm_spiffe::{SpiffeId, TrustDomain};
    use std::time::Duration;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn sels(pairs: &[(&str, &str)]) -> Vec<Selector> {
        pairs.iter().map(|(t, v)| Selector::new(*t, *v)).collect()
    }

    fn entry(parent: &str, spiffe: &str, s: &[(&str, &str)]) -> Entry {
        Entry::new(id(spiffe), id(parent), sels(s))
    }

    // Upstream reconciler_test.go TestMakeEntryKey.
    #[test]
    fn key_contents() {
        let id1 = "spiffe://domain.test/1";
        let id2 = "spiffe://domain.test/2";
        let aabb = [("A", "A"), ("B", "B")];
        let bbaa = [("B", "B"), ("A", "A")];
        let aaac = [("A", "A"), ("A", "C")];
        let base = entry(id1, id2, &aabb);
        let k = entry_key(&base);

        let mut other_id = base.clone();
        other_id.id = "B".into();
        assert_eq!(entry_key(&other_id), k, "same tuple yields same key");
        assert_eq!(entry_key(&entry(id1, id2, &bbaa)), k, "selector order does not matter");
        assert_ne!(entry_key(&entry(id2, id2, &aabb)), k, "parent ID changes key");
        assert_ne!(entry_key(&entry(id1, id1, &aabb)), k, "SPIFFE ID changes key");
        assert_ne!(entry_key(&entry(id1, id2, &aaac)), k, "selectors change key");

        let variants: Vec<fn(&mut Entry)> = vec![
            |e| e.x509_svid_ttl = Duration::from_secs(2),
            |e| e.jwt_svid_ttl = Duration::from_secs(2),
            |e| e.federates_with = vec![TrustDomain::parse("domaina").unwrap()],
            |e| e.admin = true,
            |e| e.downstream = true,
            |e| e.dns_names = vec!["A".into()],
            |e| e.hint = "h".into(),
            |e| e.store_svid = true,
        ];
        for (i, f) in variants.into_iter().enumerate() {
            let mut e = base.clone();
            f(&mut e);
            assert_eq!(entry_key(&e), k, "field variant {i} must not change the key");
        }
    }

    #[test]
    fn key_is_sha256_hex_of_concatenation() {
        let e = entry("spiffe://td/p", "spiffe://td/s", &[("b", "2"), ("a", "1")]);
        let want = hex::encode(Sha256::digest(b"spiffe://td/sspiffe://td/pa1b2"));
        assert_eq!(entry_key(&e).0, want);
    }

    // Upstream TestFilterJoinTokenEntries, plus the two halves of the rule on their own.
    #[test]
    fn join_token_rule() {
        let jt = "spiffe://domain.test/spire/agent/join_token/717290d1-6e81-40cc-b9c4-1416f8c30cfd";
        let cases = [
            (entry("spiffe://domain.test/1", "spiffe://domain.test/2", &[("A", "A"), ("B", "B")]), false),
            (entry(jt, "spiffe://domain.test/3", &[("spiffe_id", "A")]), true),
            (entry(jt, "spiffe://domain.test/3", &[("x", "y"), ("spiffe_id", "A")]), true),
            (entry(jt, "spiffe://domain.test/3", &[("A", "A")]), false),
            (
                entry("spiffe://domain.test/spire/agent/k8s_psat/c/n", "spiffe://domain.test/3", &[("spiffe_id", "A")]),
                false,
            ),
            (
                entry(
                    "spiffe://domain.test/x/spire/agent/join_token/t",
                    "spiffe://domain.test/3",
                    &[("spiffe_id", "A")],
                ),
                false,
            ),
        ];
        for (i, (e, want)) in cases.iter().enumerate() {
            assert_eq!(is_join_token_entry(e), *want, "case {i}");
        }
    }

    #[test]
    fn pod_uid_selector() {
        let e = entry("spiffe://td/p", "spiffe://td/s", &[("k8s", "ns:x"), ("k8s", "pod-uid:123")]);
        assert_eq!(pod_uid_of(&e), Some("123"));
        let e = entry("spiffe://td/p", "spiffe://td/s", &[("unix", "pod-uid:123")]);
        assert_eq!(pod_uid_of(&e), None);
    }
}
