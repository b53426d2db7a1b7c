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
    /// Pod UID (of a `k8s:pod-uid` selector) → the IDs of its entries: an incremental
    /// pass looks at the entries of the pods it declared, not at every entry.
    by_pod: HashMap<Box<str>, Vec<Box<str>>>,
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
                Write::Upserted(e) => self.put(*e),
                Write::Removed(id) => self.take(&id),
            }
        }
        true
    }

    /// Replaces the mirror with a complete list (never a partial one); a background
    /// list in progress is void.
    pub fn replace(&mut self, entries: Vec<Entry>) {
        self.entries = entries.into_iter().map(|e| (e.id.clone(), e)).collect();
        self.index();
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
        self.index();
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
            Some(e) => self.put(e),
            None => self.take(id),
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

    /// The entries of the pods `uids` names (by their `k8s:pod-uid` selector).
    pub fn entries_of_pods<'a>(&'a self, uids: impl IntoIterator<Item = &'a str>) -> Vec<&'a Entry> {
        uids.into_iter()
            .filter_map(|uid| self.by_pod.get(uid))
            .flatten()
            .filter_map(|id| self.entries.get(&**id))
            .collect()
    }

    fn put(&mut self, e: Entry) {
        self.take(&e.id);
        if let Some(uid) = scm_core::pod_uid_of(&e) {
            self.by_pod.entry(uid.into()).or_default().push(e.id.as_str().into());
        }
        self.entries.insert(e.id.clone(), e);
    }

    fn take(&mut self, id: &str) {
        let Some(old) = self.entries.remove(id) else { return };
        if let Some(uid) = scm_core::pod_uid_of(&old)
            && let Some(ids) = self.by_pod.get_mut(uid)
        {
            ids.retain(|i| &**i != id);
            if ids.is_empty() {
                self.by_pod.remove(uid);
            }
        }
    }

    /// Rebuilds the pod index after the entries changed wholesale.
    fn index(&mut self) {
        self.by_pod.clear();
        for (id, e) in &self.entries {
            if let Some(uid) = scm_core::pod_uid_of(e) {
                self.by_pod.entry(uid.into()).or_default().push(id.as_str().into());
            }
        }
    }

    pub fn removed(&mut self, id: &str) {
        self.take(id);
        if let Some(j) = self.journal.as_mut() {
            j.push(Write::Removed(id.to_owned()));
        }
    }

    pub fn upserted(&mut self, entry: Entry) {
        if let Some(j) = self.journal.as_mut() {
            j.push(Write::Upserted(Box::new(entry.clone())));
        }
        self.put(entry);
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

    #[test]
    fn the_pod_index_follows_every_change() {
        let pod = |id: &str, uid: &str, rev: i64| {
            let sel = scm_spiffe::Selector::new("k8s", format!("pod-uid:{uid}"));
            Entry { selectors: vec![sel], revision: rev, ..entry(id, "") }
        };
        let of = |m: &Mirror, uid: &str| {
            let mut v: Vec<String> = m.entries_of_pods([uid]).iter().map(|e| e.id.clone()).collect();
            v.sort();
            v
        };
        let mut m = Mirror::default();
        m.replace(vec![pod("a1", "A", 1), pod("a2", "A", 1), pod("b1", "B", 1), entry("static", "")]);
        assert_eq!(
            (of(&m, "A"), of(&m, "B"), of(&m, "C")),
            (vec!["a1".into(), "a2".into()], vec!["b1".into()], vec![])
        );
        m.removed("a1");
        m.upserted(pod("c1", "C", 0));
        m.upserted(pod("b1", "C", 2)); // the same ID, now another pod's
        assert_eq!(
            (of(&m, "A"), of(&m, "B"), of(&m, "C")),
            (vec!["a2".into()], vec![], vec!["b1".into(), "c1".into()])
        );
        m.start_journal();
        m.upserted(pod("d1", "D", 0));
        assert!(m.finish_list(vec![pod("a2", "A", 1), pod("x", "B", 0)]));
        assert_eq!(
            (of(&m, "A"), of(&m, "B"), of(&m, "C"), of(&m, "D")),
            (vec!["a2".into()], vec!["x".into()], vec![], vec!["d1".into()])
        );
        m.start_journal();
        assert_eq!(m.finish_revisions(vec![("a2".into(), 1)]), Some(vec![]));
        assert_eq!((of(&m, "B"), of(&m, "D")), (vec![], vec![]), "dropped with their entries");
        m.fetched("e1", Some(pod("e1", "A", 0)));
        m.fetched("a2", None);
        assert_eq!(of(&m, "A"), ["e1"]);
    }
}
