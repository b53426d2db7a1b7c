//! Hash maps with a fast non-cryptographic hasher for per-pass indexes (keys are object
//! names and UIDs from the snapshot, not attacker-chosen at a rate that matters here).

pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
