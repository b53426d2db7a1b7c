//! The entry reconciler: ClusterSPIFFEIDs × pods and ClusterStaticEntries → SPIRE entries.
//!
//! A pass is: sources synced? → snapshot → declare (pure, `scm_core::Declaration`) →
//! refresh the SPIRE mirror if stale → `scm_core::plan` (pure) → delete, create, update in
//! upstream's batch sizes → statuses, events, metrics.
//!
//! How much a pass declares: a pass triggered by pods, namespaces, nodes or Endpoints
//! declares again only the pods they touch and plans only those pods' entries
//! (`Declaration::update`); the pass after each read of SPIRE (every gcInterval, further
//! apart while idle: `spireCheckMaxInterval`), a retry, a change to a ClusterSPIFFEID or
//! ClusterStaticEntry, a held deletion and the first pass after an error or regained
//! leadership declare the whole world and plan every entry. A whole pass first brings the kept declaration up to date and compares it with
//! the whole one (`declaration_disagreements_total`, which must stay 0). Nothing is deleted on a partial
//! view: an unsynced cache or a failed list skips the pass; sources that fail to parse
//! or render protect their entries (see `scm_core::Protection`); and a plan that would
//! delete most of what this controller owns holds those deletes (the circuit breaker,
//! `scm_core::GuardState`) until the same plan persists or an operator acknowledges it by
//! annotating the controller's namespace with [`ALLOW_DELETES_ANNOTATION`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scm_api::ClusterSPIFFEIDStats;
use scm_core::{
    Changes, Declaration, DeclaredEntry, Ownership, Plan, RenderCache, Settings, SourceKind, SourceRef,
    UnsupportedFields, World,
};
use scm_spiffe::{Entry, TrustDomain};

use super::PassGuard;
use super::mirror::Mirror;
use super::ports::{EntryApi, Shortfall, StatusSink, WorldSource};
use super::{PassKind, PassOutcome, log_writes, observe, observe_batch};
use crate::metrics::Metrics;
use crate::trigger::Trigger;

/// The annotation on the controller's namespace that acknowledges a held plan (its id).
pub const ALLOW_DELETES_ANNOTATION: &str = "spire.spiffe.io/allow-deletes";

/// The circuit breaker's wiring.
pub struct Guard {
    pub settings: scm_core::DeletionGuard,
    /// Where [`ALLOW_DELETES_ANNOTATION`] is read (`None`: only `releaseAfter` releases).
    pub namespace: Option<String>,
    /// What is held now (shown by `/status`).
    pub held: Arc<std::sync::Mutex<Option<String>>>,
}

/// A gcInterval check reads every entry in full at least this often (a backstop; in
/// between it reads IDs and revision numbers only).
const FULL_READ_EVERY: Duration = Duration::from_secs(3600);

/// More changed entries than this in one check: read them all in one list instead of
/// one GetEntry each.
const FETCH_LIMIT: usize = 200;

/// What a background read of SPIRE brought.
enum Listed {
    Full(Vec<Entry>),
    Revisions(Vec<(String, i64)>),
}

/// Incremental passes write ClusterSPIFFEID statuses at most this often (see `try_pass`).
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// How often the unsupported-field probe runs (upstream: 10 minutes).
const PROBE_INTERVAL: Duration = Duration::from_secs(600);

/// While a federatesWith trust domain has no bundle, SPIRE is asked again after this long,
/// doubling up to [`BUNDLE_POLL_MAX`] while the missing set stays the same.
const BUNDLE_POLL_MIN: Duration = Duration::from_secs(2);
const BUNDLE_POLL_MAX: Duration = Duration::from_secs(30);

pub struct EntryReconciler {
    pub source: Arc<dyn WorldSource>,
    pub spire: Arc<dyn EntryApi>,
    pub settings: Settings,
    pub ownership: Ownership,
    pub metrics: Metrics,
    pub status: Arc<dyn StatusSink>,
    mirror: Mirror,
    cache: RenderCache,
    unsupported: UnsupportedFields,
    last_probe: Option<Instant>,
    reported_failures: HashSet<String>,
    /// The entry trigger: what changed is taken from it, gcInterval lists run in the
    /// background and poke it when done. Without it every pass is whole and lists inline.
    relisted: Option<Trigger>,
    /// The declaration kept between passes.
    declaration: Option<Declaration>,
    /// The next pass declares the whole world (see the module docs).
    whole_due: bool,
    /// Changes were lost (a failed or abandoned pass): the kept declaration is not
    /// compared with the next whole one.
    declaration_stale: bool,
    background_list: Option<tokio::task::JoinHandle<Result<Listed, String>>>,
    /// When SPIRE's entries were last read in full (the gcInterval checks read only IDs
    /// and revisions in between).
    last_full_read: Option<Instant>,
    /// How far apart the gcInterval reads of SPIRE may grow (see [`Checks`]).
    checks: Checks,
    /// Entries in SPIRE this controller owns (see `try_pass`).
    owned: usize,
    guard: Guard,
    guard_state: scm_core::GuardState,
    epoch: Instant,
    reported_hold: Option<String>,
    /// The federated bundles SPIRE holds, as last listed (`None`: list before use).
    bundles: Option<BTreeSet<TrustDomain>>,
    /// The pass that looks again for missing bundles, and its current delay.
    bundle_poll: Option<(tokio::task::JoinHandle<()>, Duration, BTreeSet<TrustDomain>)>,
    reported_shortfalls: BTreeMap<SourceRef, Shortfall>,
    /// When statuses were last written, and the pass armed to write skipped ones.
    last_statuses: Option<tokio::time::Instant>,
    status_flush: Option<tokio::task::JoinHandle<()>>,
    statuses_skipped: bool,
    /// Shortfalls as of the last whole pass, plus those incremental passes found since.
    shortfalls: BTreeMap<SourceRef, Shortfall>,
}

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone)]
pub struct PassReport {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub failed: usize,
    pub kept: usize,
}

impl EntryReconciler {
    pub fn new(
        source: Arc<dyn WorldSource>,
        spire: Arc<dyn EntryApi>,
        settings: Settings,
        ownership: Ownership,
        metrics: Metrics,
        status: Arc<dyn StatusSink>,
    ) -> Self {
        Self {
            source,
            spire,
            settings,
            ownership,
            metrics,
            status,
            mirror: Mirror::default(),
            cache: RenderCache::default(),
            unsupported: UnsupportedFields::default(),
            last_probe: None,
            reported_failures: HashSet::new(),
            relisted: None,
            declaration: None,
            whole_due: true,
            declaration_stale: true,
            background_list: None,
            last_full_read: None,
            checks: Checks::default(),
            owned: 0,
            guard: Guard { settings: scm_core::DeletionGuard::default(), namespace: None, held: Arc::default() },
            guard_state: scm_core::GuardState::default(),
            epoch: Instant::now(),
            reported_hold: None,
            bundles: None,
            bundle_poll: None,
            reported_shortfalls: BTreeMap::new(),
            shortfalls: BTreeMap::new(),
            last_statuses: None,
            status_flush: None,
            statuses_skipped: false,
        }
    }

    /// The mass-deletion circuit breaker's settings and acknowledgement namespace.
    pub fn with_guard(mut self, guard: Guard) -> Self {
        self.guard = guard;
        self
    }

    /// Lets gcInterval refreshes of the SPIRE mirror run beside passes: the full list is
    /// made in the background while triggered passes go on with the mirror (our own
    /// writes meanwhile are replayed over the list), and `trigger` starts the pass that
    /// uses it. Without this, a full pass lists inline and a pod arriving meanwhile waits.
    pub fn with_background_lists(mut self, trigger: Trigger) -> Self {
        self.relisted = Some(trigger);
        self
    }

    /// The gcInterval reads of SPIRE start `gc_interval` apart and double, up to `max`,
    /// while each finds SPIRE as this controller left it (`spireCheckMaxInterval`).
    pub fn with_spire_checks(mut self, gc_interval: Duration, max: Duration) -> Self {
        self.checks = Checks { base: gc_interval, max: max.max(gc_interval), every: gc_interval, last: None };
        self
    }

    /// Leadership moved or a write failed elsewhere: re-list before the next diff.
    pub fn invalidate(&mut self) {
        self.checks.changed();
        self.mirror.invalidate();
        self.whole_due = true;
        self.declaration_stale = true;
        if let Some(h) = self.background_list.take() {
            h.abort();
        }
    }

    pub async fn pass(&mut self, kind: PassKind) -> PassOutcome {
        let lists_before = self.mirror.lists_installed();
        let wholes_before = self.metrics.declarations.with_label_values(&["whole"]).get();
        let outcome = {
            let mut pass = PassGuard::start(&self.metrics, "entry", kind);
            let outcome = self.try_pass(kind).await;
            if outcome.is_err() {
                // The changes this pass took are gone: the next pass declares everything.
                self.whole_due = true;
                self.declaration_stale = true;
            }
            match outcome {
                Ok(report) => {
                    let r = &report;
                    log_writes("entry", r.created, r.updated, r.deleted, r.failed, r.kept, pass.elapsed());
                    pass.result("ok");
                    PassOutcome::Done
                }
                Err(PassError::NotReady(why)) => {
                    if self.mirror.is_fresh() || self.last_probe.is_some() {
                        tracing::info!(reason = %why, "entry pass skipped: view incomplete");
                    } else {
                        tracing::debug!(reason = %why, "waiting for a complete view before the first pass");
                    }
                    pass.result("skipped");
                    PassOutcome::Retry(Duration::from_millis(500))
                }
                Err(PassError::Spire(err)) => {
                    tracing::warn!(error = %err, "entry pass aborted: SPIRE Server API");
                    self.mirror.invalidate();
                    pass.result("error");
                    PassOutcome::Retry(Duration::from_secs(1))
                }
            }
        };
        // A pass that installed a list of SPIRE's entries freed the previous copy of every
        // entry, and a whole declaration the previous declaration and the whole plan: hand
        // the freed pages back (off the measured pass; incremental passes reuse what they
        // free).
        let whole = self.metrics.declarations.with_label_values(&["whole"]).get() != wholes_before;
        if whole || self.mirror.lists_installed() != lists_before {
            // On a blocking thread: a trim of a large heap takes milliseconds that the
            // next pass (a new pod) should not wait for.
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(crate::memory::release_free_pages)),
                Err(_) => crate::memory::release_free_pages(),
            }
        }
        outcome
    }

    async fn try_pass(&mut self, kind: PassKind) -> Result<PassReport, PassError> {
        // What changed, taken before the snapshot: a change recorded after it is in the
        // next pass's.
        let changes = self.relisted.as_ref().map_or_else(Changes::everything, Trigger::take_changes);
        let world = self.source.snapshot().map_err(PassError::NotReady)?;

        if self.last_probe.is_none_or(|t| t.elapsed() >= PROBE_INTERVAL) {
            let probe = self.spire.get_unsupported_fields(&self.settings.trust_domain);
            match observe(&self.metrics, "UnsupportedFieldsProbe", probe).await {
                Ok(fields) => {
                    self.unsupported = convert_unsupported(&fields);
                    self.last_probe = Some(Instant::now());
                }
                Err(err) => {
                    tracing::warn!(error = %err, "unsupported-field probe failed; keeping the last known set")
                }
            }
        }

        if self.install_background_list().await {
            // What SPIRE holds was read again: the pass that uses it plans everything.
            self.whole_due = true;
        }
        let background = self.relisted.is_some() && self.mirror.is_fresh();
        if background && matches!(kind, PassKind::Full) && self.checks.due() {
            if self.background_list.is_none() {
                self.checks.started();
                self.start_background_list();
            }
            // The pass that follows the list does the work (and these changes with it).
            if let Some(t) = &self.relisted {
                t.restore_changes(changes);
            }
            return Ok(PassReport::default());
        }
        // A gcInterval pass whose read of SPIRE is not due (spireCheckMaxInterval) goes on
        // like a triggered one: nothing was read, so only what changed is declared.
        if !self.mirror.is_fresh() || (matches!(kind, PassKind::Full) && !background) {
            if let Some(h) = self.background_list.take() {
                h.abort();
            }
            let t = Instant::now();
            let listed = observe(&self.metrics, "ListEntries", self.spire.list_entries())
                .await
                .map_err(|e| PassError::Spire(e.to_string()))?;
            tracing::debug!(
                entries = listed.len(),
                elapsed_ms = t.elapsed().as_millis() as u64,
                "listed SPIRE entries"
            );
            self.mirror.replace(listed);
            self.last_full_read = Some(Instant::now());
            self.whole_due = true;
            // Read because of a doubt (start, error, new leader): read often again.
            self.checks.changed();
        }

        let mut delta = self.declare(&world, kind, &changes);
        let whole = delta.pods.is_none();
        if let Some(own) = self.spire.own_spiffe_id() {
            // Standalone: the entry of our own SVID is what lets us in (it is admin).
            delta.protect.protect_spiffe_id(own);
        }
        let found = self.shortfalls(&mut delta.entries, kind, whole).await;
        if whole {
            self.shortfalls = found;
        } else {
            self.shortfalls.extend(found);
        }
        let plan = match &delta.pods {
            None => {
                let all = self.mirror.entries();
                self.owned = scm_core::owned_count(&all, &self.ownership);
                scm_core::plan(&delta.entries, &all, &self.ownership, &self.unsupported, &delta.protect)
            }
            Some(uids) => {
                let current = self.mirror.entries_of_pods(uids.iter().map(String::as_str));
                scm_core::plan(&delta.entries, &current, &self.ownership, &self.unsupported, &delta.protect)
            }
        };
        let mut plan = plan;
        self.check_deletes(&world, self.owned, &mut plan).await;

        let mut report = PassReport { kept: plan.kept.len(), ..Default::default() };
        for (entry, why) in &plan.kept {
            tracing::debug!(entry_id = %entry.id, spiffe_id = %entry.spiffe_id, reason = %why, "keeping undeclared entry");
        }
        let failures = self.apply(&plan, &mut report).await;
        // What this controller owns, counted in full by each whole pass and kept by our
        // own writes in between (a write that failed makes the next pass whole).
        self.owned = (self.owned + report.created).saturating_sub(report.deleted);

        let Some(declaration) = self.declaration.take() else {
            return Ok(report);
        };
        self.record_metrics(&declaration, &plan, whole);
        self.report_render_failures(&declaration).await;
        let shortfalls = std::mem::take(&mut self.shortfalls);
        self.report_shortfalls(&shortfalls).await;
        // ClusterSPIFFEID stats change with every pod: under churn, one status write per
        // pass would put an apiserver round trip into every pass. An incremental pass
        // without write failures writes them at most every STATUS_EVERY; a pass then
        // follows to write what was skipped.
        let now = tokio::time::Instant::now();
        let changed = whole || !changes.is_empty() || !failures.failures.is_empty() || self.statuses_skipped;
        if !changed {
            // Nothing this pass declared can have moved a status.
        } else if whole || !failures.failures.is_empty() || self.last_statuses.is_none_or(|t| now - t >= STATUS_EVERY) {
            self.write_statuses(&world, &declaration, &failures, &shortfalls, whole).await;
            self.last_statuses = Some(now);
            self.statuses_skipped = false;
        } else {
            // Skipped: a pass writes them once STATUS_EVERY has passed.
            self.statuses_skipped = true;
            if let Some(trigger) = self.relisted.clone()
                && self.status_flush.as_ref().is_none_or(|h| h.is_finished())
            {
                let at = self.last_statuses.map_or(now, |t| t + STATUS_EVERY);
                self.status_flush = Some(tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    trigger.notify_change(|_| {});
                }));
            }
        }
        self.shortfalls = shortfalls;
        self.declaration = Some(declaration);
        Ok(report)
    }

    /// The entries this pass plans: those of the pods `changes` touches when the kept
    /// declaration can answer for them, else the whole world's (see the module docs).
    fn declare(&mut self, world: &World, kind: PassKind, changes: &Changes) -> scm_core::Delta {
        let incremental = !self.whole_due && !matches!(kind, PassKind::Retry) && self.reported_hold.is_none();
        if incremental
            && let Some(kept) = self.declaration.as_mut()
            && let Some(delta) = kept.update(world, &self.settings, &mut self.cache, changes)
        {
            self.metrics.declarations.with_label_values(&["incremental"]).inc();
            return delta;
        }
        let whole = Declaration::build(world, &self.settings, &mut self.cache);
        if let Some(mut kept) = self.declaration.take()
            && !self.declaration_stale
            && kept.update(world, &self.settings, &mut self.cache, changes).is_some()
        {
            let n = kept.disagreements(&whole);
            if n > 0 {
                tracing::warn!(
                    disagreements = n,
                    "the incrementally kept declaration differed from a whole one; the whole one is used"
                );
                self.metrics.declaration_disagreements.inc_by(n as u64);
            }
        }
        self.metrics.declarations.with_label_values(&["whole"]).inc();
        let delta = whole.everything();
        self.declaration = Some(whole);
        self.whole_due = false;
        self.declaration_stale = false;
        delta
    }

    /// What the declared entries cannot have: federatesWith trust domains SPIRE holds no
    /// bundle for are dropped from the entries (`scm_core::restrict_federation`; a pass
    /// is armed to look again, so the entries are completed when the bundle arrives), and
    /// additional attributes an old server does not store are named.
    /// An incremental pass (`whole` false) only adds to what the last whole pass found.
    async fn shortfalls(
        &mut self,
        entries: &mut [DeclaredEntry],
        kind: PassKind,
        whole: bool,
    ) -> BTreeMap<SourceRef, Shortfall> {
        let own = self.settings.trust_domain.clone();
        let wanted = scm_core::federated_trust_domains(entries, &own);
        let mut missing = BTreeMap::new();
        if !wanted.is_empty() {
            let stale = match &self.bundles {
                None => true,
                Some(held) => matches!(kind, PassKind::Full) || !wanted.is_subset(held),
            };
            if stale {
                match observe(&self.metrics, "ListFederatedBundles", self.spire.federated_bundles()).await {
                    Ok(list) => self.bundles = Some(list.into_iter().collect()),
                    Err(err) => tracing::warn!(
                        error = %err,
                        "cannot list SPIRE's federated bundles; entries federate with every declared trust domain"
                    ),
                }
            }
            if let Some(held) = &self.bundles {
                missing = scm_core::restrict_federation(entries, &own, |td| held.contains(td));
            }
        }
        if whole || !missing.is_empty() {
            self.arm_bundle_poll(&missing);
        }

        let mut out = BTreeMap::new();
        for (src, tds) in missing {
            let names: Vec<&str> = tds.iter().map(|t| t.name()).collect();
            let message = format!(
                "SPIRE holds no bundle for federatesWith trust domain(s) {}: the entries federate with the others and are completed when the bundle arrives",
                names.join(", ")
            );
            out.insert(src, Shortfall { reason: "BundleMissing", message });
        }
        if self.unsupported.additional_attributes {
            let note = "disableX509SVIDPrefetch and jwtSVIDIncludeJTI need SPIRE Server 1.15 or later; this server does not store them";
            let sources: BTreeSet<&SourceRef> =
                entries.iter().filter(|d| d.entry.additional_attributes.is_some()).map(|d| &d.source).collect();
            for src in sources {
                match out.get_mut(src) {
                    Some(s) => s.message = format!("{}; {note}", s.message),
                    None => {
                        out.insert(src.clone(), Shortfall { reason: "FieldUnsupported", message: note.to_owned() });
                    }
                }
            }
        }
        out
    }

    /// While bundles are missing, a pass looks again (2 s, doubling to 30 s while the
    /// missing set is the same): a bundle's arrival is seen without waiting for gcInterval.
    fn arm_bundle_poll(&mut self, missing: &BTreeMap<SourceRef, BTreeSet<TrustDomain>>) {
        let all: BTreeSet<TrustDomain> = missing.values().flatten().cloned().collect();
        let Some(trigger) = self.relisted.clone().filter(|_| !all.is_empty()) else {
            if let Some((h, _, _)) = self.bundle_poll.take() {
                h.abort();
            }
            return;
        };
        let delay = match &self.bundle_poll {
            Some((h, _, _)) if !h.is_finished() => return,
            Some((_, d, same)) if *same == all => (*d * 2).min(BUNDLE_POLL_MAX),
            _ => BUNDLE_POLL_MIN,
        };
        let h = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            trigger.notify();
        });
        self.bundle_poll = Some((h, delay, all));
    }

    /// Logs and raises an Event for each new or changed shortfall.
    async fn report_shortfalls(&mut self, shortfalls: &BTreeMap<SourceRef, Shortfall>) {
        for (src, s) in shortfalls {
            if self.reported_shortfalls.get(src) != Some(s) {
                tracing::warn!(kind = kind_name(src.kind), name = %src.name, reason = s.reason, "{}", s.message);
                self.status.event_source(src, s.reason, &s.message).await;
            }
        }
        for src in self.reported_shortfalls.keys() {
            if !shortfalls.contains_key(src) {
                tracing::info!(kind = kind_name(src.kind), name = %src.name, "entries written as declared again");
            }
        }
        self.reported_shortfalls = shortfalls.clone();
    }

    /// The circuit breaker: holds (removes from `plan`) deletes of most of what we own.
    async fn check_deletes(&mut self, world: &World, owned: usize, plan: &mut Plan) {
        let ack = self.guard.namespace.as_ref().and_then(|ns| {
            world
                .namespaces
                .iter()
                .find(|n| n.metadata.name.as_ref() == Some(ns))
                .and_then(|n| n.metadata.annotations.as_ref()?.get(ALLOW_DELETES_ANNOTATION).cloned())
        });
        let now = self.epoch.elapsed();
        let verdict = self.guard_state.check(&self.guard.settings, &plan.deletes, owned, ack.as_deref(), now);
        match verdict {
            scm_core::DeleteVerdict::Proceed => {
                if self.reported_hold.take().is_some() && !plan.deletes.is_empty() {
                    tracing::warn!(deletes = plan.deletes.len(), "held deletes released");
                }
                self.metrics.entry_deletes_held.set(0);
                *self.guard.held.lock().unwrap() = None;
            }
            scm_core::DeleteVerdict::Hold { plan_id, deletes, owned, held_for } => {
                let release = match (&self.guard.namespace, self.guard.settings.release_after) {
                    (Some(ns), Some(after)) => format!(
                        "released when the same plan has persisted for {}s, or at once with: kubectl annotate namespace {ns} {ALLOW_DELETES_ANNOTATION}={plan_id} --overwrite",
                        after.as_secs()
                    ),
                    (Some(ns), None) => format!(
                        "released with: kubectl annotate namespace {ns} {ALLOW_DELETES_ANNOTATION}={plan_id} --overwrite"
                    ),
                    (None, Some(after)) => {
                        format!("released when the same plan has persisted for {}s", after.as_secs())
                    }
                    (None, None) => "never released on its own (deletionGuard.releaseAfter is 0)".to_owned(),
                };
                let message = format!(
                    "holding {deletes} of {owned} owned SPIRE entries from deletion (plan {plan_id}, held {}s): {release}",
                    held_for.as_secs()
                );
                if self.reported_hold.as_deref() != Some(plan_id.as_str()) {
                    tracing::warn!(plan_id, deletes, owned, "mass deletion held: {message}");
                    for e in plan.deletes.iter().take(5) {
                        tracing::warn!(entry_id = %e.id, spiffe_id = %e.spiffe_id, "held delete (first 5 shown)");
                    }
                    self.status.deletes_held(&message).await;
                    self.reported_hold = Some(plan_id);
                }
                self.metrics.entry_deletes_held.set(deletes as i64);
                *self.guard.held.lock().unwrap() = Some(message);
                plan.deletes.clear();
            }
        }
    }

    /// A read of SPIRE in the background, journaling our writes until it is installed: IDs
    /// and revision numbers only, or every entry when the last full read is
    /// [`FULL_READ_EVERY`] old.
    fn start_background_list(&mut self) {
        let (spire, metrics, trigger) = (self.spire.clone(), self.metrics.clone(), self.relisted.clone());
        let full = self.last_full_read.is_none_or(|t| t.elapsed() >= FULL_READ_EVERY);
        tracing::debug!(full, "gcInterval: reading SPIRE entries in the background");
        self.mirror.start_journal();
        self.background_list = Some(tokio::spawn(async move {
            let t = Instant::now();
            let listed = if full {
                observe(&metrics, "ListEntries", spire.list_entries()).await.map(Listed::Full)
            } else {
                observe(&metrics, "ListEntries(revisions)", spire.list_revisions()).await.map(Listed::Revisions)
            };
            if let Ok(Listed::Full(l)) = &listed {
                tracing::debug!(entries = l.len(), elapsed_ms = t.elapsed().as_millis() as u64, "listed SPIRE entries");
            }
            if let Some(t) = trigger {
                // A wake-up that names no change: the pass that installs the read is
                // whole anyway, and the changes it takes are the watches' own, so the
                // kept declaration can be checked against it.
                t.notify_change(|_| {});
            }
            listed.map_err(|e| e.to_string())
        }));
    }

    /// Installs a finished background read: a full list with our writes since it started
    /// on top, or a revision check (entries gone dropped, changed ones fetched; many
    /// changed, or any doubt: the next step reads everything).
    /// `true` when a read finished (whatever it found): the gcInterval check is done, and
    /// the pass that follows it is the whole, authoritative one.
    async fn install_background_list(&mut self) -> bool {
        if !self.background_list.as_ref().is_some_and(|h| h.is_finished()) {
            return false;
        }
        let Some(h) = self.background_list.take() else { return false };
        let checks = &self.metrics.mirror_checks;
        match h.await {
            Ok(Ok(Listed::Full(listed))) => {
                if self.mirror.finish_list(listed) {
                    self.last_full_read = Some(Instant::now());
                    checks.with_label_values(&["full"]).inc();
                } else {
                    tracing::debug!("background list discarded: the mirror was invalidated meanwhile");
                }
            }
            Ok(Ok(Listed::Revisions(listed))) => match self.mirror.finish_revisions(listed) {
                None => tracing::debug!("revision check discarded: the mirror was invalidated meanwhile"),
                Some(changed) if changed.is_empty() => {
                    checks.with_label_values(&["in_sync"]).inc();
                    self.checks.in_sync();
                }
                Some(changed) if changed.len() > FETCH_LIMIT => {
                    self.checks.changed();
                    tracing::info!(changed = changed.len(), "many SPIRE entries changed behind our back; reading all");
                    self.mirror.invalidate();
                }
                Some(changed) => {
                    self.checks.changed();
                    tracing::info!(changed = changed.len(), "SPIRE entries changed behind our back; fetching them");
                    for id in &changed {
                        match observe(&self.metrics, "GetEntry", self.spire.get_entry(id)).await {
                            Ok(entry) => self.mirror.fetched(id, entry),
                            Err(err) => {
                                tracing::warn!(entry_id = %id, error = %err, "GetEntry failed; the next pass lists again");
                                self.mirror.invalidate();
                                return true;
                            }
                        }
                    }
                    self.metrics.mirror_entries_fetched.inc_by(changed.len() as u64);
                    checks.with_label_values(&["fetched"]).inc();
                }
            },
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "background read of SPIRE failed; the next pass lists again");
                self.mirror.invalidate();
            }
            Err(err) => {
                tracing::warn!(error = %err, "background read of SPIRE failed");
                self.mirror.invalidate();
            }
        }
        true
    }

    /// Applies the plan: deletes, then creates, then updates (upstream's order). Returns
    /// per-source counts of failed creates/updates.
    async fn apply(&mut self, plan: &Plan, report: &mut PassReport) -> Applied {
        let mut applied = Applied::default();
        for e in &plan.deletes {
            tracing::info!(entry_id = %e.id, spiffe_id = %e.spiffe_id, parent_id = %e.parent_id, selectors = %fmt_selectors(e), "deleting entry");
        }
        for (op, items) in [("create", &plan.creates), ("update", &plan.updates)] {
            for (src, e) in items.iter() {
                tracing::info!(
                    op, source = %src.name, kind = ?src.kind, entry_id = %e.id, spiffe_id = %e.spiffe_id,
                    parent_id = %e.parent_id, selectors = %fmt_selectors(e), dns_names = ?e.dns_names,
                    federates_with = ?e.federates_with.iter().map(|t| t.name().to_owned()).collect::<Vec<_>>(),
                    x509_ttl = e.x509_svid_ttl.as_secs(), jwt_ttl = e.jwt_svid_ttl.as_secs(), admin = e.admin,
                    downstream = e.downstream, hint = %e.hint, store_svid = e.store_svid,
                    "{op} entry"
                );
            }
        }
        // Deletes, then creates, never both at once: sending them together was measured
        // slower under churn on sqlite, where SPIRE's writers queue on one database lock
        // (BENCHMARKS.md, "Session 6"). (Batches of one kind may still overlap: the
        // client's `entry_write_concurrency`.)
        if !plan.deletes.is_empty() {
            let ids: Vec<String> = plan.deletes.iter().map(|e| e.id.clone()).collect();
            let outcome = observe_batch(&self.metrics, "BatchDeleteEntry", self.spire.delete_entries(&ids)).await;
            let (results, rpc_error) = scm_spire_api::BatchError::split(outcome);
            if let Some(err) = rpc_error {
                tracing::warn!(error = %err, "BatchDeleteEntry failed");
                self.mirror.invalidate();
            }
            for (id, res) in ids.iter().zip(results.iter()) {
                match res {
                    Ok(_) => {
                        self.mirror.removed(id);
                        report.deleted += 1;
                        self.metrics.entry_writes.with_label_values(&["delete", "ok"]).inc();
                    }
                    Err(err) => {
                        tracing::warn!(entry_id = %id, error = %err, "failed to delete entry");
                        self.metrics.entry_writes.with_label_values(&["delete", "failed"]).inc();
                        self.mirror.invalidate();
                    }
                }
            }
        }
        if !plan.creates.is_empty() {
            let creates: Vec<&Entry> = plan.creates.iter().map(|(_, e)| e).collect();
            let outcome = observe_batch(&self.metrics, "BatchCreateEntry", self.spire.create_entries(&creates)).await;
            self.written("create", &plan.creates, outcome, report, &mut applied);
        }
        if !plan.updates.is_empty() {
            let entries: Vec<&Entry> = plan.updates.iter().map(|(_, e)| e).collect();
            let outcome = observe_batch(&self.metrics, "BatchUpdateEntry", self.spire.update_entries(&entries)).await;
            self.written("update", &plan.updates, outcome, report, &mut applied);
        }
        for (src, _) in &plan.unchanged {
            applied.set.insert(src.clone());
        }
        applied
    }

    /// Records the results of a create or update batch: the mirror, the counts, the metrics.
    fn written(
        &mut self,
        op: &'static str,
        items: &[(SourceRef, Entry)],
        outcome: Result<Vec<scm_spire_api::BatchResult<Entry>>, scm_spire_api::BatchError<Entry>>,
        report: &mut PassReport,
        applied: &mut Applied,
    ) {
        let (results, rpc_error) = scm_spire_api::BatchError::split(outcome);
        if let Some(err) = rpc_error {
            tracing::warn!(op, error = %err, "batch {op} failed");
            self.mirror.invalidate();
        }
        for ((src, e), res) in items.iter().zip(results) {
            match res {
                Ok(written) => {
                    self.mirror.upserted(written);
                    if op == "create" {
                        report.created += 1;
                    } else {
                        report.updated += 1;
                    }
                    self.metrics.entry_writes.with_label_values(&[op, "ok"]).inc();
                    applied.set.insert(src.clone());
                }
                // faults (#12): SPIRE holds this entry already (an earlier create it
                // applied whose answer we lost): not a failure; the next pass re-lists.
                Err(err) if op == "create" && err.code == tonic::Code::AlreadyExists => {
                    tracing::info!(source = %src.name, entry_id = %e.id, spiffe_id = %e.spiffe_id, error = %err, "entry already in SPIRE; not created again");
                    self.metrics.entry_writes.with_label_values(&[op, "exists"]).inc();
                    applied.set.insert(src.clone());
                    self.mirror.invalidate();
                }
                Err(err) => {
                    tracing::warn!(op, source = %src.name, spiffe_id = %e.spiffe_id, error = %err, "entry write failed");
                    if err.message.contains("federated bundle") {
                        // A bundle went away since it was listed: list again.
                        self.bundles = None;
                    }
                    report.failed += 1;
                    self.metrics.entry_writes.with_label_values(&[op, "failed"]).inc();
                    *applied.failures.entry(src.clone()).or_default() += 1;
                    self.mirror.invalidate();
                }
            }
        }
    }

    fn record_metrics(&self, declared: &Declaration, plan: &Plan, whole: bool) {
        let m = &self.metrics;
        m.entries_declared.set(declared.len() as i64);
        // Entries in SPIRE this controller owns (not every entry of the server).
        m.entries_current.set(self.owned as i64);
        if whole {
            // Entries kept although undeclared are only known to a whole plan.
            m.entries_kept.set(plan.kept.len() as i64);
        }
        let masked: i64 = declared.spiffe_id_stats().values().map(|s| s.entries_masked).sum::<i64>()
            + declared.static_entries().values().filter(|s| s.masked).count() as i64;
        m.entries_masked.set(masked);
        let failures = declared.failures();
        let mut by_kind: BTreeMap<&str, i64> = BTreeMap::from([("ClusterSPIFFEID", 0), ("ClusterStaticEntry", 0)]);
        for f in &failures {
            *by_kind.entry(kind_name(f.source.kind)).or_default() += 1;
        }
        for (kind, n) in by_kind {
            m.render_failures.with_label_values(&[kind]).set(n);
        }
        let cse_failures = declared.static_entries().values().filter(|s| !s.rendered).count();
        if cse_failures > 0 {
            m.cluster_static_entry_failures.add(cse_failures as f64);
        }
    }

    /// Logs each render failure once (until it goes away) and emits an Event for it.
    async fn report_render_failures(&mut self, declared: &Declaration) {
        let mut now = HashSet::new();
        for f in declared.failures() {
            let pod = f.pod.as_ref().map(|(ns, n)| format!("{ns}/{n}"));
            let key = format!("{}|{}|{:?}|{}|{}", kind_name(f.source.kind), f.source.name, pod, f.field, f.message);
            if !self.reported_failures.contains(&key) {
                tracing::warn!(kind = kind_name(f.source.kind), name = %f.source.name, pod = ?pod, field = %f.field, error = %f.message, "render failed; existing entries are kept");
                self.status.event_render_failed(&f.source, f.pod.clone(), &f.field, &f.message).await;
            }
            now.insert(key);
        }
        self.reported_failures = now;
    }

    /// ClusterStaticEntries only after a whole pass (an incremental one does not plan
    /// their entries).
    async fn write_statuses(
        &self,
        world: &World,
        declared: &Declaration,
        applied: &Applied,
        shortfalls: &BTreeMap<SourceRef, Shortfall>,
        whole: bool,
    ) {
        let all_failures = declared.failures();
        for cr in &world.cluster_spiffe_ids {
            let name = cr.metadata.name.clone().unwrap_or_default();
            let Some(stats) = declared.spiffe_id_stats().get(&name) else {
                continue;
            };
            let mut stats: ClusterSPIFFEIDStats = stats.clone();
            let uid = cr.metadata.uid.clone().unwrap_or_default();
            let src = SourceRef { kind: SourceKind::ClusterSPIFFEID, name: name.clone(), uid };
            stats.entry_failures = applied.failures.get(&src).copied().unwrap_or(0);
            let failures: Vec<&scm_core::RenderFailure> = all_failures
                .iter()
                .copied()
                .filter(|f| f.source.name == name && f.source.kind == SourceKind::ClusterSPIFFEID)
                .collect();
            self.status.cluster_spiffe_id(cr, stats, &failures, shortfalls.get(&src)).await;
        }
        if !whole {
            return;
        }
        for cr in &world.cluster_static_entries {
            let name = cr.metadata.name.clone().unwrap_or_default();
            let Some(outcome) = declared.static_entries().get(&name) else {
                continue;
            };
            let uid = cr.metadata.uid.clone().unwrap_or_default();
            let src = SourceRef { kind: SourceKind::ClusterStaticEntry, name: name.clone(), uid };
            let set = outcome.rendered
                && !outcome.masked
                && applied.set.contains(&src)
                && !applied.failures.contains_key(&src);
            self.status.cluster_static_entry(cr, outcome, set, shortfalls.get(&src)).await;
        }
    }
}

/// How far apart the gcInterval reads of SPIRE are: from `base` (gcInterval), doubling
/// after each read that found nothing changed, up to `max`; back to `base` on any change
/// found, write error or leadership change. With `max == base`, every gcInterval.
#[derive(Debug, Default)]
struct Checks {
    base: Duration,
    max: Duration,
    every: Duration,
    /// Tokio's clock, so that tests can move it.
    last: Option<tokio::time::Instant>,
}

impl Checks {
    /// Whether this gcInterval pass reads SPIRE (with half a gcInterval of slack: passes
    /// are gcInterval apart plus their own duration).
    fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() + self.base / 2 >= self.every)
    }

    fn started(&mut self) {
        self.last = Some(tokio::time::Instant::now());
    }

    fn in_sync(&mut self) {
        self.every = (self.every * 2).min(self.max).max(self.base);
    }

    fn changed(&mut self) {
        self.every = self.base;
    }
}

#[derive(Default)]
struct Applied {
    /// Sources whose entry is present and current after this pass.
    set: HashSet<SourceRef>,
    failures: HashMap<SourceRef, i64>,
}

enum PassError {
    NotReady(String),
    Spire(String),
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::ClusterSPIFFEID => "ClusterSPIFFEID",
        SourceKind::ClusterStaticEntry => "ClusterStaticEntry",
    }
}

fn fmt_selectors(e: &Entry) -> String {
    e.selectors.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")
}

fn convert_unsupported(f: &scm_spire_api::UnsupportedFields) -> UnsupportedFields {
    UnsupportedFields {
        jwt_svid_ttl: f.jwt_svid_ttl,
        hint: f.hint,
        store_svid: f.store_svid,
        additional_attributes: f.additional_attributes,
    }
}

impl super::Reconciler for EntryReconciler {
    fn pass(&mut self, kind: PassKind) -> futures::future::BoxFuture<'_, PassOutcome> {
        Box::pin(EntryReconciler::pass(self, kind))
    }

    fn reset(&mut self) {
        self.invalidate();
    }
}
