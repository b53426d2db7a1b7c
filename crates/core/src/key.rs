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

/// The ID this controller gives a new entry when `entryIDPrefix` is set: the prefix, then a
/// UUID (RFC 9562 version 8, i.e. application-defined) made of the first 16 bytes of a
/// SHA-256 over the entry's identity (SPIFFE ID, parent ID, selectors sorted by type then
/// value; each field NUL-terminated, under a domain tag). The same declared entry always
/// gets the same ID, so a create that SPIRE applied but whose answer was lost (a timeout,
/// a killed server, a dropped pass) cannot make a second entry when it is sent again:
/// SPIRE answers AlreadyExists, and two writers racing on one SQL database collide on the
/// entry ID's uniqueness instead of both inserting. Upstream draws a random UUID; the
/// shape (`prefix` + UUID) is the same, so ownership (§5) is unchanged.
pub fn deterministic_entry_id(prefix: &str, e: &Entry) -> String {
    let mut sorted: Vec<&Selector> = e.selectors.iter().collect();
    sorted.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.value.cmp(&b.value)));
    let mut h = Sha256::new();
    h.update(b"spire-controller-manager entry id v1\0");
    for part in [e.spiffe_id.as_str(), e.parent_id.as_str()] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    for s in sorted {
        h.update(s.kind.as_bytes());
        h.update([b':']);
        h.update(s.value.as_bytes());
        h.update([0u8]);
    }
    let d: [u8; 32] = h.finalize().into();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122/9562 variant
    let x = hex::encode(b);
    format!("{prefix}{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
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

    #[test]
    fn deterministic_ids_follow_the_identity_only() {
        let e = |sid: &str, sels_: &[(&str, &str)], hint: &str| Entry {
            hint: hint.into(),
            ..Entry::new(id(sid), id("spiffe://td/node"), sels(sels_))
        };
        let a = deterministic_entry_id("p.", &e("spiffe://td/a", &[("k8s", "ns:x"), ("k8s", "pod-uid:1")], ""));
        // Same identity (selectors in another order, another hint): same ID.
        let a2 = deterministic_entry_id("p.", &e("spiffe://td/a", &[("k8s", "pod-uid:1"), ("k8s", "ns:x")], "h"));
        assert_eq!(a, a2);
        assert!(a.starts_with("p."), "{a}");
        let uuid = &a[2..];
        assert_eq!(uuid.len(), 36, "{uuid}");
        assert_eq!(uuid.as_bytes()[14], b'8', "version 8: {uuid}");
        assert!(matches!(uuid.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "variant: {uuid}");
        // Any identity field differs: another ID.
        assert_ne!(a, deterministic_entry_id("p.", &e("spiffe://td/b", &[("k8s", "ns:x"), ("k8s", "pod-uid:1")], "")));
        assert_ne!(a, deterministic_entry_id("p.", &e("spiffe://td/a", &[("k8s", "ns:x")], "")));
        // No ambiguity from concatenation: "ns:x" + "pod-uid:1" is not "ns:xpod-uid:1".
        assert_ne!(
            deterministic_entry_id("p.", &e("spiffe://td/a", &[("k8s", "a"), ("k8s", "b")], "")),
            deterministic_entry_id("p.", &e("spiffe://td/a", &[("k8s", "ab")], ""))
        );
        assert_ne!(a, deterministic_entry_id("q.", &e("spiffe://td/a", &[("k8s", "ns:x"), ("k8s", "pod-uid:1")], "")));
    }
}
