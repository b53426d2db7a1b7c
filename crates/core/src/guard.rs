//! The mass-deletion circuit breaker.
//!
//! A view that comes up empty (a label filter switched on before the labels exist, a
//! missing CRD, a class renamed, a migration between entry ID prefixes) makes a correct
//! diff delete everything. So a plan that would delete more than `max_share` of the
//! entries this controller owns, and at least `min_count` of them, holds its deletes
//! (creates and updates still go ahead) until either the *same* set of deletes has been
//! planned for `release_after`, or an operator acknowledges that exact plan by its id.
//!
//! Pure: the caller passes a monotonic "now".

use std::time::Duration;

use scm_spiffe::Entry;

use crate::diff::{EntryOwnership, Ownership};
use crate::key::is_join_token_entry;

/// The breaker's knobs: the config's `deletionGuard` (maxShare, minEntries, releaseAfter).
pub use scm_config::DeletionGuard;

/// What to do with a plan's deletes.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteVerdict {
    Proceed,
    /// Hold them: `plan_id` names this exact set of deletes (what an operator acknowledges).
    Hold {
        plan_id: String,
        deletes: usize,
        owned: usize,
        held_for: Duration,
    },
}

/// The breaker's memory between passes.
#[derive(Debug, Clone, Default)]
pub struct GuardState {
    held: Option<(String, Duration)>,
}

/// Entries this controller would delete or update: managed and delete-only ones, less
/// join-token entries (which are never deleted).
pub fn owned_count<E: std::borrow::Borrow<Entry>>(current: &[E], own: &Ownership) -> usize {
    current
        .iter()
        .map(|e| e.borrow())
        .filter(|e| match own.classify(&e.id) {
            EntryOwnership::Managed => !is_join_token_entry(e),
            EntryOwnership::DeleteOnly => true,
            EntryOwnership::Ignored => false,
        })
        .count()
}

/// A short, stable id of a set of entry IDs (FNV-1a over the sorted IDs).
pub fn plan_id<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for b in id.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

impl GuardState {
    /// Judges `deletes` against `owned` entries. `acknowledged` is the plan id an operator
    /// allowed, if any; `now` any monotonic clock.
    pub fn check(
        &mut self,
        guard: &DeletionGuard,
        deletes: &[Entry],
        owned: usize,
        acknowledged: Option<&str>,
        now: Duration,
    ) -> DeleteVerdict {
        let n = deletes.len();
        let trips = n >= guard.min_entries.max(1) && (n as f64) > guard.max_share * owned as f64;
        if !trips {
            self.held = None;
            return DeleteVerdict::Proceed;
        }
        let id = plan_id(deletes.iter().map(|e| e.id.as_str()));
        if acknowledged == Some(id.as_str()) {
            self.held = None;
            return DeleteVerdict::Proceed;
        }
        let since = match &self.held {
            Some((held, since)) if *held == id => *since,
            _ => {
                self.held = Some((id.clone(), now));
                now
            }
        };
        let held_for = now.saturating_sub(since);
        if guard.release_after.is_some_and(|d| held_for >= d) {
            self.held = None;
            return DeleteVerdict::Proceed;
        }
        DeleteVerdict::Hold { plan_id: id, deletes: n, owned, held_for }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        let td = scm_spiffe::SpiffeId::parse("spiffe://example.org/w").unwrap();
        let mut e = Entry::new(td.clone(), td, vec![]);
        e.id = id.to_owned();
        e
    }

    fn entries(n: usize) -> Vec<Entry> {
        (0..n).map(|i| entry(&format!("p.{i}"))).collect()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn small_or_partial_deletes_proceed() {
        let g = DeletionGuard::default();
        let mut st = GuardState::default();
        assert_eq!(st.check(&g, &entries(19), 19, None, secs(0)), DeleteVerdict::Proceed, "fewer than 20");
        assert_eq!(st.check(&g, &entries(50), 100, None, secs(0)), DeleteVerdict::Proceed, "exactly half");
        assert_eq!(st.check(&g, &[], 0, None, secs(0)), DeleteVerdict::Proceed);
    }

    #[test]
    fn mass_deletes_are_held_until_the_same_plan_persists() {
        let g = DeletionGuard { release_after: Some(secs(60)), ..Default::default() };
        let mut st = GuardState::default();
        let all = entries(30);
        let DeleteVerdict::Hold { deletes, owned, .. } = st.check(&g, &all, 30, None, secs(0)) else {
            panic!("30 of 30 must be held")
        };
        assert_eq!((deletes, owned), (30, 30));
        assert!(matches!(st.check(&g, &all, 30, None, secs(59)), DeleteVerdict::Hold { .. }));
        // Another plan restarts the clock.
        let other = entries(29);
        assert!(
            matches!(st.check(&g, &other, 30, None, secs(61)), DeleteVerdict::Hold { held_for, .. } if held_for.is_zero())
        );
        assert!(matches!(st.check(&g, &all, 30, None, secs(62)), DeleteVerdict::Hold { .. }));
        assert_eq!(st.check(&g, &all, 30, None, secs(122)), DeleteVerdict::Proceed);
        assert_eq!(plan_id(all.iter().rev().map(|e| e.id.as_str())), plan_id_of(&all), "order does not matter");
    }

    fn plan_id_of(e: &[Entry]) -> String {
        plan_id(e.iter().map(|e| e.id.as_str()))
    }

    #[test]
    fn an_acknowledged_plan_proceeds_and_only_that_plan() {
        let g = DeletionGuard { release_after: None, ..Default::default() };
        let mut st = GuardState::default();
        let all = entries(40);
        assert!(matches!(st.check(&g, &all, 40, Some("0000000000000000"), secs(0)), DeleteVerdict::Hold { .. }));
        assert!(matches!(st.check(&g, &all, 40, None, secs(100_000)), DeleteVerdict::Hold { .. }), "never on its own");
        assert_eq!(st.check(&g, &all, 40, Some(&plan_id_of(&all)), secs(1)), DeleteVerdict::Proceed);
    }

    #[test]
    fn owned_entries_exclude_foreign_and_join_token_ones() {
        let own = Ownership { prefix: Some("p.".into()), cleanup: Some(String::new()) };
        let mut current = entries(3);
        current.push(entry("other.1"));
        current.push(entry("legacy")); // delete-only
        assert_eq!(owned_count(&current, &own), 4);
    }
}
