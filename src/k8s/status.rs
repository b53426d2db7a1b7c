//! The Kubernetes side of the status port (`reconcile::ports::StatusSink`): status
//! subresources and Events. Statuses are written only when they change; every kind's
//! status and every Event go through this one adapter.
//!
//! Events are optional: the SPIRE helm chart lets the controller write them only in its
//! own namespace, while the Events of cluster-scoped objects go to `default`. A refusal
//! (403) is reported once (see `crate::degraded`), Events are then dropped for a while,
//! and the Ready condition still says what the Event would have said.

use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use scm_api::{BundleRefreshStatus, ClusterSPIFFEIDStats, FederatedBundleStatus};
use scm_api::{CONDITION_DEGRADED, CONDITION_READY, ClusterFederatedTrustDomain, ClusterSPIFFEID, ClusterStaticEntry};
use scm_core::{RenderFailure, SourceKind, SourceRef, StaticEntryOutcome};
use serde_json::json;

use crate::degraded::{Degradations, RETRY_FORBIDDEN, is_forbidden};
use crate::reconcile::ports::{BoxFuture, Shortfall, StatusSink};

/// The longest Event note written (the apiserver refuses notes over 1 kB).
const MAX_NOTE_BYTES: usize = 1000;

pub struct KubeStatus {
    client: Client,
    events: EventPublisher,
}

impl KubeStatus {
    pub fn new(client: Client, degradations: Degradations) -> Self {
        Self { events: EventPublisher::new(client.clone(), degradations), client }
    }
}

/// Publishes Warning Events; a refusal (403) pauses Events for [`RETRY_FORBIDDEN`].
struct EventPublisher {
    recorder: Recorder,
    degradations: Degradations,
    paused_until: Mutex<Option<Instant>>,
}

impl EventPublisher {
    fn new(client: Client, degradations: Degradations) -> Self {
        let reporter =
            Reporter { controller: "spire-controller-manager".into(), instance: std::env::var("POD_NAME").ok() };
        Self { recorder: Recorder::new(client, reporter), degradations, paused_until: Mutex::new(None) }
    }

    async fn warn(
        &self,
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        note: String,
        secondary: Option<ObjectReference>,
    ) {
        if self.paused_until.lock().unwrap().is_some_and(|t| Instant::now() < t) {
            return;
        }
        let ev = Event {
            type_: EventType::Warning,
            reason: reason.into(),
            note: Some(truncate_utf8(note, MAX_NOTE_BYTES)),
            action: action.into(),
            secondary,
        };
        match self.recorder.publish(&ev, regarding).await {
            Ok(()) => self.degradations.restored("events"),
            Err(err) if is_forbidden(&err) => {
                let ns = regarding.namespace.as_deref().unwrap_or("default");
                self.degradations.degrade(
                    "events",
                    &format!("create/patch events.events.k8s.io in namespace {ns}"),
                    "Warning Events are dropped (the Ready condition still reports each problem)",
                );
                *self.paused_until.lock().unwrap() = Some(Instant::now() + RETRY_FORBIDDEN);
            }
            Err(err) => tracing::debug!(error = %err, "failed to publish event"),
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate_utf8(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The Ready condition, keeping `lastTransitionTime` when the status did not change.
pub(crate) fn ready_condition(
    existing: &[Condition],
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    condition(CONDITION_READY, existing, ok, reason, message, generation)
}

/// A condition of `type_`, keeping `lastTransitionTime` when its status did not change.
fn condition(
    type_: &str,
    existing: &[Condition],
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last = existing
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(jiff::Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: last,
        observed_generation: generation,
    }
}

/// The conditions of an entry source: Ready, and Degraded (True) while a shortfall lasts;
/// `None` when they equal `existing` (nothing to write).
fn source_conditions(
    existing: &[Condition],
    ready: Condition,
    shortfall: Option<&Shortfall>,
    generation: Option<i64>,
) -> Option<Vec<Condition>> {
    let degraded =
        shortfall.map(|s| condition(CONDITION_DEGRADED, existing, true, s.reason, s.message.clone(), generation));
    let find = |t: &str| existing.iter().find(|c| c.type_ == t);
    let same_ready = same_condition(find(CONDITION_READY), &ready);
    let same_degraded = match (&degraded, find(CONDITION_DEGRADED)) {
        (None, None) => true,
        (Some(d), current) => same_condition(current, d),
        (None, Some(_)) => false,
    };
    if same_ready && same_degraded {
        return None;
    }
    Some([Some(ready), degraded].into_iter().flatten().collect())
}

pub(crate) fn same_condition(a: Option<&Condition>, b: &Condition) -> bool {
    a.is_some_and(|a| {
        a.status == b.status
            && a.reason == b.reason
            && a.message == b.message
            && a.observed_generation == b.observed_generation
    })
}

fn stats_json(s: &ClusterSPIFFEIDStats) -> serde_json::Value {
    // Merge patch: zero values are sent as null so that they clear (upstream omits zeros).
    let v = |n: i64| {
        if n == 0 { serde_json::Value::Null } else { json!(n) }
    };
    json!({
        "namespacesSelected": v(s.namespaces_selected),
        "namespacesIgnored": v(s.namespaces_ignored),
        "podsSelected": v(s.pods_selected),
        "podEntryRenderFailures": v(s.pod_entry_render_failures),
        "entriesMasked": v(s.entries_masked),
        "entriesToSet": v(s.entries_to_set),
        "entryFailures": v(s.entry_failures),
    })
}

impl KubeStatus {
    /// A merge patch of `cr`'s status subresource; a failure is logged (the next pass
    /// writes again, statuses are compared with what is there).
    async fn patch_status<K>(&self, cr: &K, patch: &serde_json::Value)
    where
        K: Resource<Scope = kube::core::ClusterResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        if let Err(err) = api.patch_status(&cr.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            tracing::warn!(kind = %K::kind(&()), name = %cr.name_any(), error = %err, "failed to update status");
        }
    }
}

impl StatusSink for KubeStatus {
    fn cluster_spiffe_id<'a>(
        &'a self,
        cr: &'a ClusterSPIFFEID,
        stats: ClusterSPIFFEIDStats,
        failures: &'a [&'a RenderFailure],
        shortfall: Option<&'a Shortfall>,
    ) -> BoxFuture<'a> {
        Box::pin(async move {
            let existing = cr.status.clone().unwrap_or_default();
            let (ok, reason, message) = if let Some(f) = failures.first() {
                let pod = f.pod.as_ref().map(|(ns, n)| format!(" for pod {ns}/{n}")).unwrap_or_default();
                (
                    false,
                    "RenderFailed",
                    format!("{} failure(s); first{pod}: {}: {}", failures.len(), f.field, f.message),
                )
            } else if stats.entry_failures > 0 {
                (false, "EntryWriteFailed", format!("{} entries could not be written to SPIRE", stats.entry_failures))
            } else {
                (true, "Reconciled", format!("{} entries set for {} pods", stats.entries_to_set, stats.pods_selected))
            };
            let generation = cr.metadata.generation;
            let cond = ready_condition(&existing.conditions, ok, reason, message, generation);
            let conditions = source_conditions(&existing.conditions, cond, shortfall, generation);
            if existing.stats.clone().unwrap_or_default() == stats && conditions.is_none() {
                return;
            }
            let conditions = conditions.unwrap_or_else(|| existing.conditions.clone());
            let patch = json!({"status": {"stats": stats_json(&stats), "conditions": conditions}});
            self.patch_status(cr, &patch).await;
        })
    }

    fn cluster_static_entry<'a>(
        &'a self,
        cr: &'a ClusterStaticEntry,
        outcome: &'a StaticEntryOutcome,
        set: bool,
        shortfall: Option<&'a Shortfall>,
    ) -> BoxFuture<'a> {
        Box::pin(async move {
            let existing = cr.status.clone().unwrap_or_default();
            let (ok, reason, message) = match (&outcome.error, outcome.masked, set) {
                (Some(err), _, _) => (false, "Invalid", err.clone()),
                (None, true, _) => (
                    false,
                    "Masked",
                    "another resource declares an entry with the same SPIFFE ID, parent ID and selectors".to_owned(),
                ),
                (None, false, true) => (true, "Reconciled", "the entry is present in SPIRE and current".to_owned()),
                (None, false, false) => {
                    (false, "EntryWriteFailed", "the entry could not be written to SPIRE".to_owned())
                }
            };
            let generation = cr.metadata.generation;
            let cond = ready_condition(&existing.conditions, ok, reason, message, generation);
            let conditions = source_conditions(&existing.conditions, cond, shortfall, generation);
            if existing.rendered == outcome.rendered
                && existing.masked == outcome.masked
                && existing.set == set
                && conditions.is_none()
            {
                return;
            }
            let conditions = conditions.unwrap_or_else(|| existing.conditions.clone());
            let patch = json!({"status": {"rendered": outcome.rendered, "masked": outcome.masked, "set": set, "conditions": conditions}});
            self.patch_status(cr, &patch).await;
        })
    }

    fn event_render_failed<'a>(
        &'a self,
        source: &'a SourceRef,
        pod: Option<(String, String)>,
        field: &'a str,
        message: &'a str,
    ) -> BoxFuture<'a> {
        Box::pin(async move {
            let reference = source_reference(source);
            let pod_text = pod.as_ref().map(|(ns, n)| format!("pod {ns}/{n}: ")).unwrap_or_default();
            let secondary = pod.map(|(ns, name)| ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(ns),
                name: Some(name),
                ..Default::default()
            });
            let note = format!("{pod_text}{field}: {message}");
            self.events.warn(&reference, "RenderFailed", "Render", note, secondary).await;
        })
    }

    fn event_source<'a>(&'a self, source: &'a SourceRef, reason: &'a str, message: &'a str) -> BoxFuture<'a> {
        Box::pin(async move {
            self.events.warn(&source_reference(source), reason, "Reconcile", message.to_owned(), None).await;
        })
    }

    fn cluster_federated_trust_domain<'a>(
        &'a self,
        cr: &'a ClusterFederatedTrustDomain,
        ok: bool,
        reason: &'a str,
        message: String,
    ) -> BoxFuture<'a> {
        Box::pin(async move {
            let existing = cr.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
            let cond = ready_condition(&existing, ok, reason, message, cr.metadata.generation);
            if same_condition(existing.iter().find(|c| c.type_ == CONDITION_READY), &cond) {
                return;
            }
            let patch = json!({"status": {"conditions": [cond]}});
            self.patch_status(cr, &patch).await;
        })
    }

    fn event_federation<'a>(
        &'a self,
        cr: &'a ClusterFederatedTrustDomain,
        reason: &'a str,
        message: &'a str,
    ) -> BoxFuture<'a> {
        Box::pin(async move {
            self.events.warn(&cr.object_ref(&()), reason, "Reconcile", message.to_owned(), None).await;
        })
    }

    fn federated_bundle<'a>(
        &'a self,
        cr: &'a ClusterFederatedTrustDomain,
        bundle: FederatedBundleStatus,
        refresh: Option<BundleRefreshStatus>,
    ) -> BoxFuture<'a> {
        Box::pin(async move {
            let existing = cr.status.as_ref().and_then(|s| s.bundle.as_ref());
            if existing == Some(&bundle) && refresh.is_none() {
                return;
            }
            // Merge patch: fields that went away are sent as null so that they clear.
            let b = &bundle;
            let mut status = json!({"bundle": {
                "present": b.present,
                "sequenceNumber": b.sequence_number,
                "x509Authorities": b.x509_authorities,
                "jwtAuthorities": b.jwt_authorities,
                "digest": b.digest,
                "lastChanged": b.last_changed,
            }});
            if let Some(r) = refresh {
                status["lastRefresh"] =
                    json!({"request": r.request, "result": r.result, "message": r.message, "time": r.time});
            }
            self.patch_status(cr, &json!({ "status": status })).await;
        })
    }

    fn deletes_held<'a>(&'a self, message: &'a str) -> BoxFuture<'a> {
        Box::pin(async move {
            let (Ok(name), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE")) else {
                return;
            };
            let pod = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(namespace),
                ..Default::default()
            };
            self.events.warn(&pod, "DeletesHeld", "Reconcile", message.to_owned(), None).await;
        })
    }
}

/// The object reference of an entry source, for its Events.
fn source_reference(source: &SourceRef) -> ObjectReference {
    match source.kind {
        SourceKind::ClusterSPIFFEID => {
            let mut cr = ClusterSPIFFEID::new(&source.name, Default::default());
            cr.metadata.uid = Some(source.uid.clone());
            cr.object_ref(&())
        }
        SourceKind::ClusterStaticEntry => {
            let mut cr = ClusterStaticEntry::new(&source.name, Default::default());
            cr.metadata.uid = Some(source.uid.clone());
            cr.object_ref(&())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::truncate_utf8;

    #[test]
    fn truncation_never_splits_a_character() {
        // 700 × 'é' (2 bytes each): byte 1000 is a boundary, byte 999 is not.
        let s = "é".repeat(700);
        assert_eq!(truncate_utf8(s.clone(), 1000).len(), 1000);
        assert_eq!(truncate_utf8(format!("x{s}"), 1000).len(), 999);
        assert_eq!(truncate_utf8("short".into(), 1000), "short");
        assert_eq!(truncate_utf8("€€".into(), 4), "€");
    }
}
