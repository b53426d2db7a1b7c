//! An in-memory mirror of SPIRE's entries, so a pass triggered by one change does not
//! list every entry again. Refreshed by a full paged list on every gcInterval pass and
//! after any write error; kept current from the results of our own writes in between.

use std::collections::HashMap;

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

enum Write {
    Upserted(Entry),
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
                    self.entries.insert(e.id.clone(), e);
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
            j.push(Write::Upserted(entry.clone()));
        }
        self.entries.insert(entry.id.clone(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, hint: &str) -> Entry {
        Entry {
            id: id.into(),
            spiffe_id: scm_spiffe::SpiffeId::parse("spiffe://td/w").unwrap(),
            parent_id: scm_spiffe::SpiffeId::parse("spiffe://td/p").unwrap(),
            selectors: vec![],
            x509_svid_ttl: Default::default(),
            jwt_svid_ttl: Default::default(),
            federates_with: vec![],
            admin: false,
            downstream: false,
            dns_names: vec![],
            hint: hint.into(),
            store_svid: false,
            additional_attributes: None,
        }
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
}
