//! The loop and the entry pass against their seams, with tokio's paused clock: in-memory
//! implementations of the ports (a unit test of the loop's logic; the e2e tests run the
//! real peers).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scm_api::{ClusterStaticEntry, ClusterStaticEntrySpec};
use scm_core::{Ownership, Settings, World};
use scm_spiffe::{Entry, TrustDomain};
use scm_spire_api::{BatchError, ItemError, SpireError, UnsupportedFields};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::entries::EntryReconciler;
use super::ports::{Batch, BoxFuture, EntryApi, NoStatus, WorldSource};
use super::{PassKind, PassOutcome, Reconciler, run_loop};
use crate::metrics::Metrics;
use crate::trigger::Trigger;

// ------------------------------------------------------------------ the loop

/// Records every pass and answers with scripted outcomes (then `Done`). A pass can be
/// made to hang until released, to lose leadership in the middle of it.
#[derive(Clone, Default)]
struct Script {
    passes: Arc<Mutex<Vec<(PassKind, tokio::time::Instant)>>>,
    outcomes: Arc<Mutex<VecDeque<PassOutcome>>>,
    resets: Arc<Mutex<usize>>,
    hang: Arc<Mutex<bool>>,
}

impl Reconciler for Script {
    fn pass(&mut self, kind: PassKind) -> futures::future::BoxFuture<'_, PassOutcome> {
        self.passes.lock().unwrap().push((kind, tokio::time::Instant::now()));
        let outcome = self.outcomes.lock().unwrap().pop_front().unwrap_or(PassOutcome::Done);
        let hang = *self.hang.lock().unwrap();
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            outcome
        })
    }

    fn reset(&mut self) {
        *self.resets.lock().unwrap() += 1;
    }
}

impl Script {
    fn kinds(&self) -> Vec<&'static str> {
        self.passes
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| match k {
                PassKind::Full => "full",
                PassKind::Triggered(_) => "triggered",
                PassKind::Retry => "retry",
            })
            .collect()
    }
}

struct Loop {
    script: Script,
    trigger: Trigger,
    leader: watch::Sender<bool>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_loop(gc: Duration, leading: bool) -> Loop {
    let script = Script::default();
    let trigger = Trigger::new();
    let (leader, rx) = watch::channel(leading);
    let cancel = CancellationToken::new();
    let mut r = script.clone();
    let (t, c) = (trigger.clone(), cancel.clone());
    let task = tokio::spawn(async move { run_loop("test", t, gc, rx, c, &mut r, || {}).await });
    Loop { script, trigger, leader, cancel, task }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_pass_first_then_triggers_then_the_timer() {
    let l = spawn_loop(Duration::from_secs(60), true);
    settle().await;
    assert_eq!(l.script.kinds(), ["full"]);
    l.trigger.notify();
    l.trigger.notify();
    settle().await;
    assert_eq!(l.script.kinds(), ["full", "triggered"], "two notifications, one pass");
    tokio::time::sleep(Duration::from_secs(61)).await;
    settle().await;
    assert_eq!(l.script.kinds(), ["full", "triggered", "full"]);
    l.cancel.cancel();
    l.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_passes_back_off_and_a_failed_full_pass_stays_due() {
    let l = spawn_loop(Duration::from_secs(3600), true);
    l.script.outcomes.lock().unwrap().extend([
        PassOutcome::Retry(Duration::ZERO),
        PassOutcome::Retry(Duration::ZERO),
        PassOutcome::Retry(Duration::ZERO),
    ]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    settle().await;
    let passes = l.script.passes.lock().unwrap().clone();
    // The first full pass failed: it is retried as a full pass, after 200, 400, 800 ms.
    let kinds = l.script.kinds();
    assert_eq!(kinds, ["full", "full", "full", "full"], "{kinds:?}");
    let gaps: Vec<u128> = passes.windows(2).map(|w| (w[1].1 - w[0].1).as_millis()).collect();
    assert_eq!(gaps, [200, 400, 800], "doubling backoff");
    // A failed triggered pass is retried as a retry, not a full pass.
    l.script.outcomes.lock().unwrap().push_back(PassOutcome::Retry(Duration::ZERO));
    l.trigger.notify();
    tokio::time::sleep(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(&l.script.kinds()[4..], ["triggered", "retry"]);
    l.cancel.cancel();
    l.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn leadership_lost_mid_pass_abandons_it_and_regained_starts_over() {
    let l = spawn_loop(Duration::from_secs(3600), true);
    settle().await;
    assert_eq!(l.script.kinds(), ["full"]);
    assert_eq!(*l.script.resets.lock().unwrap(), 1, "leading at start resets the reconciler");
    *l.script.hang.lock().unwrap() = true;
    l.trigger.notify();
    settle().await;
    assert_eq!(l.script.kinds(), ["full", "triggered"]);
    l.leader.send(false).unwrap();
    settle().await;
    // No passes while not leading, whatever is notified.
    *l.script.hang.lock().unwrap() = false;
    l.trigger.notify();
    tokio::time::sleep(Duration::from_secs(10)).await;
    settle().await;
    assert_eq!(l.script.kinds(), ["full", "triggered"], "the hung pass was dropped, nothing ran since");
    l.leader.send(true).unwrap();
    settle().await;
    assert_eq!(l.script.kinds(), ["full", "triggered", "full"], "leading again: a full pass first");
    assert_eq!(*l.script.resets.lock().unwrap(), 2, "and the reconciler forgot what it knew");
    l.cancel.cancel();
    l.task.await.unwrap();
}

// ------------------------------------------------------------------ the entry pass

/// SPIRE as a map; creates whose SPIFFE ID is in `reject` fail, and `rpc_down` fails
/// whole batches.
#[derive(Default)]
struct Spire {
    entries: Mutex<BTreeMap<String, Entry>>,
    reject: Mutex<Vec<String>>,
    next_id: Mutex<u64>,
    lists: Mutex<usize>,
    deletes: Mutex<usize>,
    /// Federated bundles SPIRE holds; entries federating with others are refused.
    bundles: Mutex<Vec<TrustDomain>>,
    bundle_lists: Mutex<usize>,
    revision_lists: Mutex<usize>,
    gets: Mutex<usize>,
}

impl EntryApi for Spire {
    fn list_entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, SpireError>> {
        *self.lists.lock().unwrap() += 1;
        let all = self.entries.lock().unwrap().values().cloned().collect();
        Box::pin(async move { Ok(all) })
    }
    fn list_revisions(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, SpireError>> {
        *self.revision_lists.lock().unwrap() += 1;
        let all = self.entries.lock().unwrap().values().map(|e| (e.id.clone(), e.revision)).collect();
        Box::pin(async move { Ok(all) })
    }
    fn get_entry<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Entry>, SpireError>> {
        *self.gets.lock().unwrap() += 1;
        let e = self.entries.lock().unwrap().get(id).cloned();
        Box::pin(async move { Ok(e) })
    }
    fn create_entries<'a>(&'a self, entries: &'a [&'a Entry]) -> BoxFuture<'a, Batch<Entry>> {
        let out = entries
            .iter()
            .map(|e| {
                let bundles = self.bundles.lock().unwrap();
                if let Some(td) = e.federates_with.iter().find(|td| !bundles.contains(td)) {
                    return Err(ItemError {
                        code: tonic::Code::InvalidArgument,
                        message: format!("unable to find federated bundle \"spiffe://{td}\""),
                        kind: scm_spire_api::ItemErrorKind::Rejected,
                    });
                }
                if self.reject.lock().unwrap().contains(&e.spiffe_id.to_string()) {
                    return Err(ItemError {
                        code: tonic::Code::InvalidArgument,
                        message: "no".into(),
                        kind: scm_spire_api::ItemErrorKind::Rejected,
                    });
                }
                let mut e = (*e).clone();
                if e.id.is_empty() {
                    let mut n = self.next_id.lock().unwrap();
                    *n += 1;
                    e.id = format!("id-{n}");
                }
                // SPIRE bumps the revision on every update.
                e.revision = self.entries.lock().unwrap().get(&e.id).map_or(0, |old| old.revision + 1);
                self.entries.lock().unwrap().insert(e.id.clone(), e.clone());
                Ok(e)
            })
            .collect();
        Box::pin(async move { Ok(out) })
    }
    fn update_entries<'a>(&'a self, entries: &'a [&'a Entry]) -> BoxFuture<'a, Batch<Entry>> {
        self.create_entries(entries)
    }
    fn delete_entries<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Batch<String>> {
        *self.deletes.lock().unwrap() += ids.len();
        let out = ids
            .iter()
            .map(|id| Ok(self.entries.lock().unwrap().remove(id).map(|_| id.clone()).unwrap_or_default()))
            .collect();
        Box::pin(async move { Ok::<_, BatchError<String>>(out) })
    }
    fn get_unsupported_fields<'a>(
        &'a self,
        _: &'a TrustDomain,
    ) -> BoxFuture<'a, Result<UnsupportedFields, SpireError>> {
        Box::pin(async { Ok(UnsupportedFields::default()) })
    }
    fn federated_bundles(&self) -> BoxFuture<'_, Result<Vec<TrustDomain>, SpireError>> {
        *self.bundle_lists.lock().unwrap() += 1;
        let all = self.bundles.lock().unwrap().clone();
        Box::pin(async move { Ok(all) })
    }
}

struct Static(Mutex<Vec<Arc<ClusterStaticEntry>>>);

impl WorldSource for Static {
    fn snapshot(&self) -> Result<World, String> {
        Ok(World { cluster_static_entries: self.0.lock().unwrap().clone(), ..Default::default() })
    }
}

fn cse(i: usize) -> Arc<ClusterStaticEntry> {
    let spec = ClusterStaticEntrySpec {
        spiffe_id: format!("spiffe://example.org/w{i}"),
        parent_id: "spiffe://example.org/spire/server".into(),
        selectors: vec![format!("unix:uid:{i}")],
        ..Default::default()
    };
    let mut cr = ClusterStaticEntry::new(&format!("w{i}"), spec);
    cr.metadata.uid = Some(format!("uid-{i}"));
    cr.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::from_second(1_700_000_000).unwrap(),
    ));
    Arc::new(cr)
}

fn reconciler(spire: &Arc<Spire>, world: &Arc<Static>) -> EntryReconciler {
    let settings = Settings {
        trust_domain: TrustDomain::parse("example.org").unwrap(),
        cluster_name: "c".into(),
        cluster_domain: String::new(),
        parent_id_template: scm_template::Template::parse("parentIDTemplate", scm_template::DEFAULT_PARENT_ID_TEMPLATE)
            .unwrap(),
        ignore_namespaces: Vec::new(),
        class_name: String::new(),
        watch_classless: true,
        reconcile_cluster_spiffe_ids: true,
        reconcile_cluster_static_entries: true,
    };
    EntryReconciler::new(
        world.clone(),
        spire.clone(),
        settings,
        Ownership::default(),
        Metrics::new(),
        Arc::new(NoStatus),
    )
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_failure_writes_the_rest_and_relists_next_time() {
    let spire = Arc::new(Spire::default());
    spire.reject.lock().unwrap().push("spiffe://example.org/w1".into());
    let world = Arc::new(Static(Mutex::new((0..3).map(cse).collect())));
    let mut r = reconciler(&spire, &world);
    assert!(matches!(r.pass(PassKind::Full).await, PassOutcome::Done));
    let mut ids: Vec<String> = spire.entries.lock().unwrap().values().map(|e| e.spiffe_id.to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["spiffe://example.org/w0", "spiffe://example.org/w2"], "the others were written");
    assert_eq!(*spire.lists.lock().unwrap(), 1);
    // The failed write made the mirror doubtful: the next (triggered) pass lists first,
    // and retries the failed create.
    spire.reject.lock().unwrap().clear();
    assert!(matches!(r.pass(PassKind::Triggered(Duration::ZERO)).await, PassOutcome::Done));
    assert_eq!(*spire.lists.lock().unwrap(), 2);
    assert_eq!(spire.entries.lock().unwrap().len(), 3);
    // In line now: a triggered pass neither lists nor writes.
    assert!(matches!(r.pass(PassKind::Triggered(Duration::ZERO)).await, PassOutcome::Done));
    assert_eq!(*spire.lists.lock().unwrap(), 2);
    assert_eq!(spire.entries.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_circuit_breaker_holds_a_mass_delete_in_the_pass() {
    let spire = Arc::new(Spire::default());
    let world = Arc::new(Static(Mutex::new((0..30).map(cse).collect())));
    let mut r = reconciler(&spire, &world);
    r.pass(PassKind::Full).await;
    assert_eq!(spire.entries.lock().unwrap().len(), 30);
    // The view comes up empty: 30 of 30 would go.
    world.0.lock().unwrap().clear();
    r.pass(PassKind::Triggered(Duration::ZERO)).await;
    assert_eq!(*spire.deletes.lock().unwrap(), 0, "held");
    assert_eq!(spire.entries.lock().unwrap().len(), 30);
    // One object gone of 30 is ordinary.
    *world.0.lock().unwrap() = (0..29).map(cse).collect();
    r.pass(PassKind::Triggered(Duration::ZERO)).await;
    assert_eq!(*spire.deletes.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_missing_bundle_costs_only_its_trust_domain_and_its_arrival_completes_the_entry() {
    let td = |s: &str| TrustDomain::parse(s).unwrap();
    let spire = Arc::new(Spire::default());
    spire.bundles.lock().unwrap().push(td("present.org"));
    let mut cr = (*cse(0)).clone();
    cr.spec.federates_with = Some(vec!["present.org".into(), "later.org".into()]);
    let world = Arc::new(Static(Mutex::new(vec![Arc::new(cr)])));
    let trigger = Trigger::new();
    let mut r = reconciler(&spire, &world).with_background_lists(trigger.clone());
    r.pass(PassKind::Full).await;
    let federates = || -> Vec<String> {
        let entries = spire.entries.lock().unwrap();
        assert_eq!(entries.len(), 1, "the entry is written, not refused");
        let mut v: Vec<String> =
            entries.values().next().unwrap().federates_with.iter().map(|t| t.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(federates(), ["present.org"], "only the trust domain with a bundle");
    // Nothing changes in the cluster; the bundle arrives. The armed look-again notices it
    // (2 s), long before any gcInterval.
    spire.bundles.lock().unwrap().push(td("later.org"));
    let woke = tokio::time::timeout(Duration::from_secs(3), trigger.notified()).await;
    assert!(woke.is_ok(), "a pass was triggered to look for the bundle again");
    r.pass(PassKind::Triggered(Duration::ZERO)).await;
    assert_eq!(federates(), ["later.org", "present.org"], "completed");
    // Nothing missing any more: no further look-again, and no bundle list per pass.
    let lists = *spire.bundle_lists.lock().unwrap();
    r.pass(PassKind::Triggered(Duration::ZERO)).await;
    assert_eq!(*spire.bundle_lists.lock().unwrap(), lists, "bundles known: not listed again");
    assert!(tokio::time::timeout(Duration::from_secs(120), trigger.notified()).await.is_err(), "no poll armed");
}

#[tokio::test(start_paused = true)]
async fn the_gc_interval_check_reads_revisions_and_fetches_only_what_changed() {
    let spire = Arc::new(Spire::default());
    let world = Arc::new(Static(Mutex::new((0..50).map(cse).collect())));
    let trigger = Trigger::new();
    let mut r = reconciler(&spire, &world).with_background_lists(trigger.clone());
    r.pass(PassKind::Full).await;
    assert_eq!((*spire.lists.lock().unwrap(), spire.entries.lock().unwrap().len()), (1, 50));
    // Idle: a revision list, nothing fetched, nothing written, no full list.
    gc_check(&mut r, &trigger).await;
    assert_eq!(*spire.revision_lists.lock().unwrap(), 1);
    assert_eq!((*spire.lists.lock().unwrap(), *spire.gets.lock().unwrap()), (1, 0));
    // Another tool changes one entry behind our back: only that one is fetched, and put back.
    let id = {
        let mut entries = spire.entries.lock().unwrap();
        let e = entries.values_mut().next().unwrap();
        e.hint = "tampered".into();
        e.revision += 1;
        e.id.clone()
    };
    gc_check(&mut r, &trigger).await;
    assert_eq!((*spire.lists.lock().unwrap(), *spire.gets.lock().unwrap()), (1, 1), "one GetEntry, no full list");
    assert_eq!(spire.entries.lock().unwrap()[&id].hint, "", "the controller's value is back");
    // Someone deletes one: the check notices, and the entry is created again.
    spire.entries.lock().unwrap().remove(&id);
    gc_check(&mut r, &trigger).await;
    assert_eq!(spire.entries.lock().unwrap().len(), 50);
    assert_eq!(*spire.lists.lock().unwrap(), 1, "still no full list");
}

/// A gcInterval pass (the background read starts), then the pass its end triggers.
async fn gc_check(r: &mut EntryReconciler, trigger: &Trigger) {
    r.pass(PassKind::Full).await;
    tokio::time::timeout(Duration::from_secs(5), trigger.notified()).await.expect("the read finished");
    r.pass(PassKind::Triggered(Duration::ZERO)).await;
}

/// A whole world (pods, namespaces, nodes, ClusterSPIFFEIDs), editable by the test.
struct Cluster(Mutex<World>);

impl WorldSource for Cluster {
    fn snapshot(&self) -> Result<World, String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

fn pod(name: &str) -> Arc<scm_core::PodInfo> {
    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    let mut p = Pod::default();
    p.metadata.namespace = Some("default".into());
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.resource_version = Some("1".into());
    p.spec =
        Some(PodSpec { service_account_name: Some(name.into()), node_name: Some("n1".into()), ..Default::default() });
    Arc::new(p.into())
}

#[tokio::test(start_paused = true)]
async fn a_pod_change_declares_and_plans_only_that_pod_and_the_gc_pass_checks_the_rest() {
    use k8s_openapi::api::core::v1::{Namespace, Node};
    let mut cr = scm_api::ClusterSPIFFEID::new(
        "sa",
        scm_api::ClusterSPIFFEIDSpec {
            spiffe_id_template: "spiffe://{{ .TrustDomain }}/sa/{{ .PodSpec.ServiceAccountName }}".into(),
            ..Default::default()
        },
    );
    cr.metadata.uid = Some("cr-uid".into());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("default".into());
    let mut node = Node::default();
    node.metadata.name = Some("n1".into());
    node.metadata.uid = Some("node-uid".into());
    node.metadata.resource_version = Some("1".into());
    let world = World {
        namespaces: vec![Arc::new(ns)],
        nodes: vec![Arc::new(node)],
        pods: vec![pod("a"), pod("b")],
        cluster_spiffe_ids: vec![Arc::new(cr)],
        ..Default::default()
    };
    let cluster = Arc::new(Cluster(Mutex::new(world)));
    let spire = Arc::new(Spire::default());
    let trigger = Trigger::new();
    let mut r = EntryReconciler::new(
        cluster.clone(),
        spire.clone(),
        reconciler(&spire, &Arc::new(Static(Mutex::new(vec![])))).settings.clone(),
        Ownership::default(),
        Metrics::new(),
        Arc::new(NoStatus),
    )
    .with_background_lists(trigger.clone());
    let scope = |r: &EntryReconciler, s: &str| r.metrics.declarations.with_label_values(&[s]).get();
    let spiffe_ids = || -> Vec<String> {
        let mut v: Vec<String> = spire.entries.lock().unwrap().values().map(|e| e.spiffe_id.to_string()).collect();
        v.sort();
        v
    };
    r.pass(PassKind::Full).await;
    assert_eq!(spiffe_ids(), ["spiffe://example.org/sa/a", "spiffe://example.org/sa/b"]);
    assert_eq!(scope(&r, "whole"), 1);

    // b's entry is deleted behind the controller's back, then pod c is created: the pass
    // the watch triggers declares and plans c alone, so it does not notice b.
    spire.entries.lock().unwrap().retain(|_, e| !e.spiffe_id.to_string().ends_with("/b"));
    cluster.0.lock().unwrap().pods.push(pod("c"));
    trigger.notify_change(|c| c.pod("default", "c"));
    triggered(&mut r, &trigger).await;
    assert_eq!(spiffe_ids(), ["spiffe://example.org/sa/a", "spiffe://example.org/sa/c"]);
    assert_eq!((scope(&r, "whole"), scope(&r, "incremental")), (1, 1));

    // Pod a deleted: its entry goes, in another incremental pass.
    cluster.0.lock().unwrap().pods.retain(|p| p.metadata.name.as_deref() != Some("a"));
    trigger.notify_change(|c| c.pod("default", "a"));
    triggered(&mut r, &trigger).await;
    assert_eq!(spiffe_ids(), ["spiffe://example.org/sa/c"]);
    assert_eq!(scope(&r, "incremental"), 2);

    // The gcInterval check reads SPIRE and the pass after it is whole: b comes back, and
    // the kept declaration agreed with the whole one.
    gc_check(&mut r, &trigger).await;
    assert_eq!(spiffe_ids(), ["spiffe://example.org/sa/b", "spiffe://example.org/sa/c"]);
    assert_eq!(scope(&r, "whole"), 2);
    assert_eq!(r.metrics.declaration_disagreements.get(), 0);

    // A change the watches cannot name (a custom resource: a plain notify) is whole.
    trigger.notify();
    triggered(&mut r, &trigger).await;
    assert_eq!(scope(&r, "whole"), 3);

    // A change the trigger was never told about is what the disagreement counter catches:
    // the kept declaration lacks pod d's entry and counts it in the ClusterSPIFFEID's stats.
    cluster.0.lock().unwrap().pods.push(pod("d"));
    gc_check(&mut r, &trigger).await;
    assert_eq!(r.metrics.declaration_disagreements.get(), 2, "the entry and the stats");
    assert_eq!(spiffe_ids().len(), 3, "the whole pass wrote d's entry");
}

/// A pass as the loop runs it on a notification (which it consumes).
async fn triggered(r: &mut EntryReconciler, trigger: &Trigger) {
    let lag = tokio::time::timeout(Duration::from_secs(5), trigger.notified()).await.expect("notified");
    r.pass(PassKind::Triggered(lag)).await;
}

#[tokio::test(start_paused = true)]
async fn idle_reads_of_spire_stretch_while_nothing_changes_and_snap_back_on_a_change() {
    let spire = Arc::new(Spire::default());
    let world = Arc::new(Static(Mutex::new((0..3).map(cse).collect())));
    let trigger = Trigger::new();
    let mut r = reconciler(&spire, &world)
        .with_background_lists(trigger.clone())
        .with_spire_checks(Duration::from_secs(10), Duration::from_secs(60));
    r.pass(PassKind::Full).await;
    let reads = gc_ticks(&mut r, &spire, &trigger, 10, 300).await;
    assert_eq!(reads, [10, 30, 70, 130, 190, 250], "doubling from gcInterval up to 60 s");
    assert_eq!(*spire.lists.lock().unwrap(), 1, "no full read");

    // Another tool edits an entry: the next read finds it, and reads are gcInterval apart again.
    {
        let mut entries = spire.entries.lock().unwrap();
        let e = entries.values_mut().next().unwrap();
        e.hint = "tampered".into();
        e.revision += 1;
    }
    let reads = gc_ticks(&mut r, &spire, &trigger, 310, 400).await;
    assert_eq!(reads, [310, 320, 340, 380], "found at the next read; then 10, 20, 40 s apart");
    assert!(spire.entries.lock().unwrap().values().all(|e| e.hint.is_empty()), "put back");
}

/// The loop's timer from second `from` to `to`: a gcInterval (10 s) pass, then the pass a
/// finished read wakes. Returns the seconds at which SPIRE was read.
async fn gc_ticks(r: &mut EntryReconciler, spire: &Spire, trigger: &Trigger, from: u64, to: u64) -> Vec<u64> {
    let mut reads = Vec::new();
    for t in (from..=to).step_by(10) {
        tokio::time::advance(Duration::from_secs(10)).await;
        let before = *spire.revision_lists.lock().unwrap();
        r.pass(PassKind::Full).await;
        if let Ok(lag) = tokio::time::timeout(Duration::from_millis(1), trigger.notified()).await {
            r.pass(PassKind::Triggered(lag)).await;
        }
        if *spire.revision_lists.lock().unwrap() > before {
            reads.push(t);
        }
    }
    reads
}
