//! An in-memory mirror of SPIRE's entries, so a pass triggered by one change does not
//! list every entry again. Read in full on start, on regained leadership, after any write
//! error and now and then as a backstop; kept current from the results of our own writes
//! in between; checked every gcInterval against a list of IDs and revision numbers only
//! ([`Mirror::finish_revisions`]: entries gone are dropped, changed or new ones fetched).

use std::collections::{HashMap, HashSet};

use scm_spiffe::Entry;

#[derive(Default)]
pub struct Mirror {
    entries: HashMap<String, Entry>,
    fresh: bool,
    /// Our own writes since a background list started (see [`Mirror::start_journal`]).
    journal: Option<Vec<Write>>,
    /// How many complete lists have been installed.
    lists: u64,
}

/// A journal record of one of our own writes.
enum Write {
    Upserted(Box<Entry>),
    Removed(String),
}

impl Mirror {
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Something may have changed behind our back (a write failed, leadership moved).
    pub fn invalidate(&mut self) {
        self.fresh = false;
        self.journal = None;
    }

    /// A full list is starting while this mirror stays in use: remember our writes from
    /// now on, so that [`Mirror::finish_list`] can lay them over a list that may or may
    /// not have seen them.
    pub fn start_journal(&mut self) {
        self.journal = Some(Vec::new());
    }

    /// Installs a complete list made since [`Mirror::start_journal`], with our writes
    /// since then replayed on top. `false` (nothing installed) when the mirror was
    /// invalidated meanwhile: the list cannot be trusted to include what happened.
    pub fn finish_list(&mut self, entries: Vec<Entry>) -> bool {
        let Some(journal) = self.journal.take() else {
            return false;
        };
        if !self.fresh {
            return false;
        }
        self.replace(entries);
        for w in journal {
            match w {
                Write::Upserted(e) => {
                    self.entries.insert(e.id.clone(), *e);
                }
                Write::Removed(id) => {
                    self.entries.remove(&id);
                }
            }
        }
        true
    }

    /// Replaces the mirror with a complete list (never a partial one); a background
    /// list in progress is void.
    pub fn replace(&mut self, entries: Vec<Entry>) {
        self.entries = entries.into_iter().map(|e| (e.id.clone(), e)).collect();
        self.fresh = true;
        self.journal = None;
        self.lists += 1;
    }

    /// Checks a list of (ID, revision) made since [`Mirror::start_journal`] against the
    /// mirror: entries no longer listed are dropped, and the IDs of entries that are new
    /// or whose revision differs are returned for fetching — except entries we wrote
    /// since the list started (the mirror has our write's result, newer than the list).
    /// `None` when the mirror was invalidated meanwhile (read it in full instead).
    pub fn finish_revisions(&mut self, listed: Vec<(String, i64)>) -> Option<Vec<String>> {
        let journal = self.journal.take()?;
        if !self.fresh {
            return None;
        }
        let touched: HashSet<&str> = journal
            .iter()
            .map(|w| match w {
                Write::Upserted(e) => e.id.as_str(),
                Write::Removed(id) => id.as_str(),
            })
            .collect();
        let listed: HashMap<String, i64> = listed.into_iter().collect();
        self.entries.retain(|id, _| listed.contains_key(id) || touched.contains(id.as_str()));
        let mut changed: Vec<String> = listed
            .into_iter()
            .filter(|(id, rev)| {
                !touched.contains(id.as_str()) && self.entries.get(id).is_none_or(|e| e.revision != *rev)
            })
            .map(|(id, _)| id)
            .collect();
        changed.sort();
        Some(changed)
    }

    /// An entry fetched after [`Mirror::finish_revisions`] (`None`: it is gone).
    pub fn fetched(&mut self, id: &str, entry: Option<Entry>) {
        match entry {
            Some(e) => {
                self.entries.insert(e.id.clone(), e);
            }
            None => {
                self.entries.remove(id);
            }
        }
    }

    /// How many complete lists have been installed so far (a change tells a pass that it
    /// replaced the mirror).
    pub fn lists_installed(&self) -> u64 {
        self.lists
    }

    pub fn entries(&self) -> Vec<&Entry> {
        self.entries.values().collect()
    }

    pub fn removed(&mut self, id: &str) {
        self.entries.remove(id);
        if let Some(j) = self.journal.as_mut() {
            j.push(Write::Removed(id.to_owned()));
        }
    }

    pub fn upserted(&mut self, entry: Entry) {
        if let Some(j) = self.journal.as_mut() {
            j.push(Write::Upserted(Box::new(entry.clone())));
        }
        self.entries.insert(entry.id.clone(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, hint: &str) -> Entry {
        let spiffe_id = scm_spiffe::SpiffeId::parse("spiffe://td/w").unwrap();
        let parent_id = scm_spiffe::SpiffeId::parse("spiffe://td/p").unwrap();
        Entry { id: id.into(), hint: hint.into(), ..Entry::new(spiffe_id, parent_id, vec![]) }
    }

    fn ids(m: &Mirror) -> Vec<String> {
        let mut v: Vec<String> = m.entries().iter().map(|e| format!("{}:{}", e.id, e.hint)).collect();
        v.sort();
        v
    }

    #[test]
    fn a_background_list_gets_our_writes_replayed() {
        let mut m = Mirror::default();
        m.replace(vec![entry("a", "1"), entry("b", "1"), entry("c", "1")]);
        m.start_journal();
        // While listing: create d, update a, delete b.
        m.upserted(entry("d", "1"));
        m.upserted(entry("a", "2"));
        m.removed("b");
        // The list saw b still there, a's old version, not d; and x, made by someone else.
        assert!(m.finish_list(vec![entry("a", "1"), entry("b", "1"), entry("x", "1")]));
        assert_eq!(ids(&m), vec!["a:2", "d:1", "x:1"], "c is gone (the list is the truth), our writes win");
    }

    #[test]
    fn an_invalidated_mirror_ignores_the_list() {
        let mut m = Mirror::default();
        m.replace(vec![entry("a", "1")]);
        m.start_journal();
        m.invalidate();
        assert!(!m.finish_list(vec![entry("z", "1")]));
        assert!(!m.is_fresh());
        assert_eq!(ids(&m), vec!["a:1"]);
    }

    #[test]
    fn a_revision_check_drops_what_went_fetches_what_changed_and_trusts_our_writes() {
        let mut m = Mirror::default();
        let with_rev = |id: &str, rev: i64| Entry { revision: rev, ..entry(id, "") };
        m.replace(vec![with_rev("a", 1), with_rev("b", 1), with_rev("c", 1), with_rev("ours", 1)]);
        m.start_journal();
        // While the list runs, we update "ours" (revision 2) and create "new-ours".
        m.upserted(with_rev("ours", 2));
        m.upserted(with_rev("new-ours", 0));
        // The list: "a" unchanged, "b" changed by another tool, "c" deleted by someone,
        // "d" created by someone, "ours" at its old revision, "new-ours" not yet seen.
        let listed = vec![("a".into(), 1), ("b".into(), 2), ("d".into(), 0), ("ours".into(), 1)];
        let fetch = m.finish_revisions(listed).expect("fresh");
        assert_eq!(fetch, ["b", "d"]);
        let mut ids: Vec<&str> = m.entries().iter().map(|e| e.id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, ["a", "b", "new-ours", "ours"], "c dropped; our writes kept");
        assert_eq!(m.entries().iter().find(|e| e.id == "ours").unwrap().revision, 2);
        m.fetched("b", Some(with_rev("b", 2)));
        m.fetched("d", None);
        assert_eq!(m.entries().len(), 4);
        // Invalidated meanwhile: nothing is checked.
        m.start_journal();
        m.invalidate();
        assert!(m.finish_revisions(vec![]).is_none());
    }
}
