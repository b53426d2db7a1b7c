//! A [`Plan`] told for people (the `plan` tooling): writes grouped by the object that
//! declares them, the fields each update changes, why each delete happens, and the
//! entries a pass leaves alone and why (ARCHITECTURE.md §4, §5).

use std::collections::BTreeMap;
use std::fmt;

use scm_spiffe::Entry;

use crate::declare::{DeclaredEntry, SourceRef};
use crate::diff::{EntryOwnership, Ownership, Plan, UnsupportedFields, outdated_fields};
use crate::fast::FastSet;
use crate::key::{entry_key, is_join_token_entry};

/// Why an entry would be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteReason {
    /// Owned, and no object declares its key.
    Undeclared,
    /// Another entry with the same key is the one kept.
    Duplicate,
    /// Its ID is under `entryIDPrefixCleanup` (delete-only).
    Cleanup,
}

impl fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeleteReason::Undeclared => "no object declares it",
            DeleteReason::Duplicate => "duplicate of a declared entry (another entry with its key is kept)",
            DeleteReason::Cleanup => "its ID is under entryIDPrefixCleanup",
        })
    }
}

/// Why a pass leaves an existing entry alone (not counting entries that are in sync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftAlone {
    /// `entryIDPrefix` is set and the ID has no prefix (created by hand or by another tool).
    Foreign,
    /// `entryIDPrefix` is set and the ID carries another prefix (another controller's).
    OtherPrefix(String),
    /// A join-token (node) entry: never deleted.
    JoinToken,
    /// Would be deleted, but the object that declares it failed to parse or render.
    Protected(String),
}

impl fmt::Display for LeftAlone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeftAlone::Foreign => f.write_str("foreign: its ID has no entryIDPrefix"),
            LeftAlone::OtherPrefix(p) => write!(f, "other prefix {p:?}: not this controller's entryIDPrefix"),
            LeftAlone::JoinToken => f.write_str("join token entry"),
            LeftAlone::Protected(why) => write!(f, "kept: {why}"),
        }
    }
}

/// The writes declared by one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceWrites {
    pub creates: Vec<Entry>,
    /// The new entry (ID of the existing one) and the fields that differ.
    pub updates: Vec<(Entry, Vec<&'static str>)>,
    /// Declared entries already in line.
    pub unchanged: usize,
}

/// [`describe_plan`]'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanReport {
    pub by_source: BTreeMap<SourceRef, SourceWrites>,
    pub deletes: Vec<(Entry, DeleteReason)>,
    pub left_alone: Vec<(Entry, LeftAlone)>,
}

impl PlanReport {
    /// Whether the pass would write anything.
    pub fn has_drift(&self) -> bool {
        !self.deletes.is_empty() || self.by_source.values().any(|w| !w.creates.is_empty() || !w.updates.is_empty())
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let creates = self.by_source.values().map(|w| w.creates.len()).sum();
        let updates = self.by_source.values().map(|w| w.updates.len()).sum();
        (creates, updates, self.deletes.len())
    }
}

/// Describes `plan` (computed by [`plan`](crate::plan) from `declared` and `current`).
pub fn describe_plan(
    plan: &Plan,
    declared: &[DeclaredEntry],
    current: &[Entry],
    own: &Ownership,
    unsupported: &UnsupportedFields,
) -> PlanReport {
    let mut out = PlanReport::default();
    for (source, entry) in &plan.creates {
        out.by_source.entry(source.clone()).or_default().creates.push(entry.clone());
    }
    for (source, entry) in &plan.updates {
        let fields = current
            .iter()
            .find(|e| e.id == entry.id)
            .map(|old| outdated_fields(entry, old, unsupported))
            .unwrap_or_default();
        out.by_source.entry(source.clone()).or_default().updates.push((entry.clone(), fields));
    }
    for (source, _) in &plan.unchanged {
        out.by_source.entry(source.clone()).or_default().unchanged += 1;
    }
    let declared_keys: FastSet<&str> = declared.iter().map(|d| d.key.0.as_str()).collect();
    for e in &plan.deletes {
        let reason = if own.classify(&e.id) == EntryOwnership::DeleteOnly {
            DeleteReason::Cleanup
        } else if declared_keys.contains(entry_key(e).0.as_str()) {
            DeleteReason::Duplicate
        } else {
            DeleteReason::Undeclared
        };
        out.deletes.push((e.clone(), reason));
    }
    for (e, why) in &plan.kept {
        out.left_alone.push((e.clone(), LeftAlone::Protected(why.clone())));
    }
    let deleted: FastSet<&str> = plan.deletes.iter().map(|e| e.id.as_str()).collect();
    for e in current {
        match own.classify(&e.id) {
            EntryOwnership::Ignored => {
                let alone = match e.id.split_once('.') {
                    Some((p, _)) => LeftAlone::OtherPrefix(format!("{p}.")),
                    None => LeftAlone::Foreign,
                };
                out.left_alone.push((e.clone(), alone));
            }
            EntryOwnership::Managed
                if is_join_token_entry(e)
                    && !deleted.contains(e.id.as_str())
                    && !declared_keys.contains(entry_key(e).0.as_str()) =>
            {
                out.left_alone.push((e.clone(), LeftAlone::JoinToken));
            }
            _ => {}
        }
    }
    out
}
