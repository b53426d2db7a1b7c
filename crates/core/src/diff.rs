//! Declared entries vs the entries SPIRE holds → a write plan (ARCHITECTURE.md §4, §5).

use scm_spiffe::Entry;

use crate::declare::{DeclaredEntry, Protection, SourceRef};
use crate::fast::{FastMap, FastSet};
use crate::key::{deterministic_entry_id, entry_digest, is_join_token_entry};

/// Which SPIRE entries this controller owns (`entryIDPrefix`, `entryIDPrefixCleanup`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// With its trailing `.`. `None` (or empty): every entry is managed.
    pub prefix: Option<String>,
    /// `Some("")`: unprefixed IDs (no `.`) are delete-only; `Some("x.")`: IDs starting with
    /// it are delete-only. Only consulted when `prefix` is set.
    pub cleanup: Option<String>,
}

/// How an existing entry is treated, by its ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOwnership {
    /// Compared against the declared entries: reused, updated or deleted.
    Managed,
    /// Deleted (unless protected), never reused.
    DeleteOnly,
    /// Never touched.
    Ignored,
}

impl Ownership {
    fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref().filter(|p| !p.is_empty())
    }

    /// Upstream `shouldProcessOrDeleteEntryID`.
    pub fn classify(&self, entry_id: &str) -> EntryOwnership {
        let Some(prefix) = self.prefix() else {
            return EntryOwnership::Managed;
        };
        if entry_id.starts_with(prefix) {
            return EntryOwnership::Managed;
        }
        match self.cleanup.as_deref() {
            Some("") if !entry_id.contains('.') => EntryOwnership::DeleteOnly,
            Some("") => EntryOwnership::Ignored,
            Some(cleanup) if entry_id.starts_with(cleanup) => EntryOwnership::DeleteOnly,
            _ => EntryOwnership::Ignored,
        }
    }
}

/// Fields the SPIRE server was found not to store (the unsupported-field probe); they are
/// left out of the comparison so old servers don't cause endless updates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnsupportedFields {
    pub jwt_svid_ttl: bool,
    pub hint: bool,
    pub store_svid: bool,
    pub additional_attributes: bool,
}

/// The writes of one pass. Apply in the order deletes → creates → updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub deletes: Vec<Entry>,
    /// Entry `id` is [`deterministic_entry_id`] when a prefix is configured, else empty
    /// (SPIRE assigns).
    pub creates: Vec<(SourceRef, Entry)>,
    /// Full replacements, `id` set to the existing entry's.
    pub updates: Vec<(SourceRef, Entry)>,
    /// Declared entries already current in SPIRE: their source and the entry ID.
    pub unchanged: Vec<(SourceRef, String)>,
    /// Would-be deletes held back because their source failed, with the reason.
    pub kept: Vec<(Entry, String)>,
}

/// Upstream `getOutdatedEntryFields`: the names (upstream's `spireapi.Field` values) of the
/// fields of `old` that differ from `new`. SPIFFE ID, parent ID and selectors are the key and
/// not compared. federatesWith and dnsNames compare as sorted lists.
pub fn outdated_fields(new: &Entry, old: &Entry, unsupported: &UnsupportedFields) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.x509_svid_ttl != new.x509_svid_ttl {
        out.push("x509SVIDTTL");
    }
    if old.jwt_svid_ttl != new.jwt_svid_ttl && !unsupported.jwt_svid_ttl {
        out.push("jwtSVIDTTL");
    }
    if !same_sorted(&old.federates_with, &new.federates_with) {
        out.push("federatesWith");
    }
    if old.admin != new.admin {
        out.push("admin");
    }
    if old.downstream != new.downstream {
        out.push("downstream");
    }
    if !same_sorted(&old.dns_names, &new.dns_names) {
        out.push("dnsNames");
    }
    if old.hint != new.hint && !unsupported.hint {
        out.push("hint");
    }
    if old.store_svid != new.store_svid && !unsupported.store_svid {
        out.push("storeSVID");
    }
    // Declared attributes only (none declared: SPIRE's are left alone); SPIRE may return
    // an all-false message as none.
    if let Some(new_attrs) = new.additional_attributes.filter(|_| !unsupported.additional_attributes) {
        let old_attrs = old.additional_attributes.unwrap_or_default();
        if old_attrs.disable_x509_svid_prefetch != new_attrs.disable_x509_svid_prefetch {
            out.push("disableX509SVIDPrefetch");
        }
        if old_attrs.jwt_svid_include_jti != new_attrs.jwt_svid_include_jti {
            out.push("jwtSVIDIncludeJTI");
        }
    }
    out
}

fn same_sorted<T: Ord>(a: &[T], b: &[T]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a == b {
        return true;
    }
    let mut a: Vec<&T> = a.iter().collect();
    let mut b: Vec<&T> = b.iter().collect();
    a.sort();
    b.sort();
    a == b
}

/// Computes the writes that make SPIRE hold `declared`.
///
/// Per declared key: no managed entry ⇒ create; else the first existing entry (in
/// `current` order) is reused and updated if outdated; the other entries with that key are
/// duplicates and deleted. Managed entries with undeclared keys are deleted, except
/// join-token entries and protected ones (→ `kept`). Delete-only (cleanup) entries are
/// deleted unless protected; they are not join-token filtered. Ignored entries are untouched.
///
/// With a prefix, a create's ID derives from the entry's identity
/// ([`deterministic_entry_id`]), so a create retried after an unacknowledged success is
/// answered AlreadyExists instead of doubling the entry.
///
/// `current` may be entries or references to them (the caller's mirror of SPIRE): only
/// the entries that are written or kept are copied.
pub fn plan<E: std::borrow::Borrow<Entry>>(
    declared: &[DeclaredEntry],
    current: &[E],
    own: &Ownership,
    unsupported: &UnsupportedFields,
    protect: &Protection,
) -> Plan {
    let mut plan = Plan::default();
    let mut managed: Vec<(usize, [u8; 32])> = Vec::new();
    let mut cleanup: Vec<&Entry> = Vec::new();
    for (i, e) in current.iter().enumerate() {
        let e: &Entry = e.borrow();
        match own.classify(&e.id) {
            EntryOwnership::Managed => managed.push((i, entry_digest(e))),
            EntryOwnership::DeleteOnly => cleanup.push(e),
            EntryOwnership::Ignored => {}
        }
    }
    let mut first_by_key: FastMap<[u8; 32], usize> =
        FastMap::with_capacity_and_hasher(managed.len(), Default::default());
    for (i, key) in &managed {
        first_by_key.entry(*key).or_insert(*i);
    }

    let mut declared_keys: FastSet<[u8; 32]> = FastSet::with_capacity_and_hasher(declared.len(), Default::default());
    for d in declared {
        // `key` is normally `entry_key(&entry)`; recompute if it is not a digest.
        let key = d.key.digest().unwrap_or_else(|| entry_digest(&d.entry));
        if !declared_keys.insert(key) {
            continue; // keys are unique in `Declared::entries`; be robust anyway
        }
        match first_by_key.get(&key) {
            None => {
                let mut entry = Entry::clone(&d.entry);
                if let Some(prefix) = own.prefix().filter(|_| entry.id.is_empty()) {
                    entry.id = deterministic_entry_id(prefix, &entry);
                }
                plan.creates.push((d.source.clone(), entry));
            }
            Some(&i) => {
                let old: &Entry = current[i].borrow();
                if outdated_fields(&d.entry, old, unsupported).is_empty() {
                    plan.unchanged.push((d.source.clone(), old.id.clone()));
                } else {
                    let mut entry = Entry::clone(&d.entry);
                    entry.id = old.id.clone();
                    plan.updates.push((d.source.clone(), entry));
                }
            }
        }
    }

    for (i, key) in &managed {
        let e: &Entry = current[*i].borrow();
        if declared_keys.contains(key) {
            if first_by_key.get(key) != Some(i) && !is_join_token_entry(e) && !protect.is_untouchable(e) {
                plan.deletes.push(e.clone()); // duplicate of a declared entry
            }
            continue;
        }
        if is_join_token_entry(e) || protect.is_untouchable(e) {
            continue;
        }
        match protect.reason_for(e) {
            Some(reason) => plan.kept.push((e.clone(), reason.to_owned())),
            None => plan.deletes.push(e.clone()),
        }
    }

    for e in cleanup.into_iter().filter(|e| !protect.is_untouchable(e)) {
        match protect.reason_for(e) {
            Some(reason) => plan.kept.push((e.clone(), reason.to_owned())),
            None => plan.deletes.push(e.clone()),
        }
    }
    plan
}
