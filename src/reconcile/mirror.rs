//! An in-memory mirror of SPIRE's entries, so a pass triggered by one change does not
//! list every entry again. Refreshed by a full paged list on every gcInterval pass and
//! after any write error; kept current from the results of our own writes in between.

use std::collections::HashMap;

use scm_spiffe::Entry;

#[derive(Default)]
pub struct Mirror {
    entries: HashMap<String, Entry>,
    fresh: bool,
}

impl Mirror {
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Something may have changed behind our back (a write failed, leadership moved).
    pub fn invalidate(&mut self) {
        self.fresh = false;
    }

    /// Replaces the mirror with a complete list (never a partial one).
    pub fn replace(&mut self, entries: Vec<Entry>) {
        self.entries = entries.into_iter().map(|e| (e.id.clone(), e)).collect();
        self.fresh = true;
    }

    pub fn entries(&self) -> Vec<&Entry> {
        self.entries.values().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn removed(&mut self, id: &str) {
        self.entries.remove(id);
    }

    pub fn upserted(&mut self, entry: Entry) {
        self.entries.insert(entry.id.clone(), entry);
    }
}
