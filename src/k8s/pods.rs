//! The pod cache's contents: which pod fields are kept ([`PodFieldsKept`]), pods turned
//! into compact [`PodInfo`] records with shared specs, and which pod changes deserve a
//! pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use scm_api::ClusterSPIFFEID;
use scm_core::{PodFields, PodInfo};
use tokio::sync::watch;

use super::watch::spec_version;

/// The pod fields the pod store keeps: what declaration itself reads plus what the
/// templates of the ClusterSPIFFEIDs can read ([`scm_core::pod_fields_needed`]); the
/// rest of each pod (containers, volumes, status, annotations, ...) is dropped as it
/// arrives. When a ClusterSPIFFEID starts reading a field the store does not hold, the
/// pods are listed again with the wider set, and no pass runs until that list is
/// complete. The set only grows while the process runs.
pub struct PodFieldsKept {
    /// What the pod watch trims to (`None` until the ClusterSPIFFEIDs are listed).
    pub(crate) requested: watch::Sender<Option<PodFields>>,
    /// What every pod in each store holds (set when a list trimmed that way completes).
    pub(crate) applied: Vec<Arc<Mutex<Option<PodFields>>>>,
    /// Per ClusterSPIFFEID `uid/generation`: the fields its templates read.
    pub(crate) per_cr: Mutex<HashMap<String, PodFields>>,
    pub(crate) class_name: String,
    pub(crate) watch_classless: bool,
}

impl PodFieldsKept {
    fn needed(&self, crs: &[Arc<ClusterSPIFFEID>]) -> PodFields {
        let mut per_cr = self.per_cr.lock().unwrap();
        let mut fresh = HashMap::with_capacity(crs.len());
        let mut out = scm_core::pod_fields_always();
        let mine = crs.iter().filter(|cr| {
            scm_core::class_matches(cr.spec.class_name.as_deref(), &self.class_name, self.watch_classless)
        });
        for cr in mine {
            let key = spec_version(cr.as_ref());
            let fields = per_cr.remove(&key).unwrap_or_else(|| scm_core::pod_fields_of(&cr.spec));
            out.union(&fields);
            fresh.insert(key, fields);
        }
        *per_cr = fresh;
        out
    }

    /// `Ok` when the pod store holds every field `crs` can read; otherwise asks for a
    /// list with the wider set (once) and says what is missing.
    pub(crate) fn ensure(&self, crs: &[Arc<ClusterSPIFFEID>]) -> Result<(), String> {
        let need = self.needed(crs);
        if self.applied.iter().all(|a| a.lock().unwrap().as_ref().is_some_and(|a| a.covers(&need))) {
            return Ok(());
        }
        let mut widened = None;
        self.requested.send_if_modified(|req| {
            let mut wider = req.clone().unwrap_or_default();
            if req.is_some() && wider.covers(&need) {
                return false;
            }
            wider.union(&need);
            widened = Some(wider.clone());
            *req = Some(wider);
            true
        });
        if let Some(w) = widened {
            tracing::info!(keep = %w, "listing pods, keeping the fields the ClusterSPIFFEID templates read");
        }
        Err(format!("pods are being listed again to keep {need}"))
    }
}

/// Pods: the same, without cloning a whole pod per event (kubelet status updates are
/// the most frequent events in a cluster and, trimmed, usually change nothing kept).
pub(crate) fn pod_changed(old: &PodInfo, new: &PodInfo) -> bool {
    let (a, b) = (&old.metadata, &new.metadata);
    let meta_same =
        ObjectMeta { resource_version: None, ..a.clone() } == ObjectMeta { resource_version: None, ..b.clone() };
    !(meta_same && old.spec == new.spec)
}

/// Shares one copy of each distinct trimmed pod spec: with the usual templates a spec
/// is a node name and a service account, the same for many pods.
#[derive(Default)]
pub(crate) struct SpecInterner {
    table: Mutex<InternTable>,
}

#[derive(Default)]
struct InternTable {
    by_hash: HashMap<u64, Vec<std::sync::Weak<PodSpec>>>,
    /// Sweep dead entries when the table has grown past this.
    sweep_at: usize,
}

impl SpecInterner {
    /// Trims `pod` to `keep` (status dropped) and returns it as a [`PodInfo`] with a
    /// shared spec.
    pub(crate) fn pod_info(&self, mut pod: Pod, keep: &PodFields) -> PodInfo {
        keep.retain_meta(&mut pod.metadata);
        let mut spec = pod.spec.take().unwrap_or_default();
        keep.retain_spec(&mut spec);
        PodInfo { metadata: pod.metadata, spec: self.intern(spec) }
    }

    fn intern(&self, spec: PodSpec) -> Arc<PodSpec> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&spec).unwrap_or_default().hash(&mut h);
        let hash = h.finish();
        let mut t = self.table.lock().unwrap();
        let bucket = t.by_hash.entry(hash).or_default();
        if let Some(shared) = bucket.iter().filter_map(|w| w.upgrade()).find(|s| **s == spec) {
            return shared;
        }
        let shared = Arc::new(spec);
        bucket.push(Arc::downgrade(&shared));
        if t.by_hash.len() > t.sweep_at {
            t.by_hash.retain(|_, bucket| {
                bucket.retain(|w| w.strong_count() > 0);
                !bucket.is_empty()
            });
            t.sweep_at = (t.by_hash.len() * 2).max(1024);
        }
        shared
    }
}
