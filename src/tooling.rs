//! The operator tooling: `plan` (what a pass would write now) and `explain` (why a pod
//! has or lacks an identity; what a ClusterSPIFFEID or ClusterFederatedTrustDomain does).
//!
//! Read-only by construction: one LIST per kind from the apiserver (`k8s::snapshot`),
//! ListEntries, ListFederationRelationships and ListFederatedBundles from SPIRE; no
//! write, no status, no lease. Every decision comes from the pure functions the
//! reconcilers use (`scm_core::declare_entries`, `plan`, `explain_*`, `describe_plan`;
//! `scm_federation::declare`, `plan`), so the answer cannot differ from a pass's.
//! This module only gathers the inputs and prints.

use std::fmt::Write as _;

use scm_config::Config;
use scm_core::{
    DeclaredEntry, EntryCheck, Ownership, Reason, RenderCache, RenderFailure, SpireState, UnsupportedFields, Verdict,
};
use scm_spiffe::{Entry, FederationRelationship, TrustDomain};
use serde_json::{Value, json};

use crate::k8s::snapshot::Snapshot;

/// Exit status of `plan`: in sync.
pub const EXIT_IN_SYNC: u8 = 0;
/// Exit status of `plan`: a pass would write something.
pub const EXIT_DRIFT: u8 = 2;

/// What `explain` is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Pod { namespace: String, name: String },
    ClusterSPIFFEID(String),
    TrustDomain(String),
}

impl Target {
    /// `KIND NAME` as typed (`pod shop/web-1`, `pod web-1 -n shop`, `clusterspiffeid x`,
    /// `trustdomain y`; kubectl's plural and short names are accepted).
    pub fn parse(kind: &str, name: &str, namespace: Option<&str>) -> Result<Target, String> {
        let (kind, name) = match kind.split_once('/') {
            Some((k, n)) if name.is_empty() => (k, n),
            _ => (kind, name),
        };
        if name.is_empty() {
            return Err(format!("explain {kind}: a NAME is required"));
        }
        match kind.to_ascii_lowercase().as_str() {
            "pod" | "pods" | "po" => {
                let (namespace, name) = match name.split_once('/') {
                    Some((ns, n)) => (ns.to_owned(), n.to_owned()),
                    None => (namespace.unwrap_or("default").to_owned(), name.to_owned()),
                };
                Ok(Target::Pod { namespace, name })
            }
            "clusterspiffeid" | "clusterspiffeids" | "csid" => Ok(Target::ClusterSPIFFEID(name.to_owned())),
            "trustdomain"
            | "trustdomains"
            | "clusterfederatedtrustdomain"
            | "clusterfederatedtrustdomains"
            | "cftd" => Ok(Target::TrustDomain(name.to_owned())),
            other => Err(format!("explain: unknown kind {other:?} (one of: pod, clusterspiffeid, trustdomain)")),
        }
    }
}

/// Everything read, once.
pub struct Inputs {
    pub config: Config,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
    pub relationships: Vec<FederationRelationship>,
    /// `None` when the list failed (older server, or no permission): said so in the output.
    pub federated_bundles: Option<Vec<TrustDomain>>,
}

impl Inputs {
    fn ownership(&self) -> Ownership {
        Ownership {
            prefix: Some(self.config.entry_id_prefix.clone()).filter(|p| !p.is_empty()),
            cleanup: self.config.entry_id_prefix_cleanup.clone(),
        }
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.snapshot.notes.clone();
        if self.config.cluster_domain.is_empty() {
            notes.push(
                "clusterDomain is empty in this configuration: in a pod the controller detects it, so DNS names \
                 may differ (set clusterDomain)"
                    .into(),
            );
        }
        if self.federated_bundles.is_none() {
            notes.push("could not list SPIRE's federated bundles: federatesWith bundles are not checked".into());
        }
        notes
    }
}

/// Reads the cluster and SPIRE (read-only calls only).
pub async fn gather(config: Config, client: &kube::Client, spire: &scm_spire_api::Client) -> anyhow::Result<Inputs> {
    let watch_set = crate::k8s::world::WatchSet::from_config(&config);
    let snapshot = crate::k8s::snapshot::read(client, &watch_set).await.map_err(|e| anyhow::anyhow!(e))?;
    let socket = spire.socket_path().display().to_string();
    let mut entries = spire
        .list_entries()
        .await
        .map_err(|e| anyhow::anyhow!("listing SPIRE entries at {socket} (spireServerSocketPath): {e}"))?;
    // Standalone (mTLS): the entries of the controller's own SVID are never its to change,
    // as in the pass (reconcile/entries.rs protects them).
    if let Some(own) = spire.identity().and_then(|s| s.current()) {
        entries.retain(|e| e.spiffe_id.as_str() != own.spiffe_id);
    }
    let relationships = if config.reconcile.cluster_federated_trust_domains {
        spire
            .list_federation_relationships()
            .await
            .map_err(|e| anyhow::anyhow!("listing SPIRE federation relationships at {socket}: {e}"))?
    } else {
        Vec::new()
    };
    let federated_bundles =
        spire.list_federated_bundles(false).await.ok().map(|list| list.into_iter().map(|b| b.trust_domain).collect());
    Ok(Inputs { config, snapshot, entries, relationships, federated_bundles })
}

// ---------------------------------------------------------------- plan

/// `plan`: prints what a pass would write; returns [`EXIT_IN_SYNC`] or [`EXIT_DRIFT`].
pub fn plan(inputs: &Inputs, settings: &scm_core::Settings, json_out: bool) -> (String, u8) {
    let own = inputs.ownership();
    let unsupported = UnsupportedFields::default();
    let entries_on = inputs.config.reconcile.cluster_spiffe_ids || inputs.config.reconcile.cluster_static_entries;
    let mut declared = if entries_on {
        scm_core::declare_entries(&inputs.snapshot.world, settings, &mut RenderCache::new())
    } else {
        scm_core::Declared::default()
    };
    // As the pass: federatesWith keeps only the trust domains SPIRE holds a bundle for.
    let degraded = match &inputs.federated_bundles {
        Some(have) => {
            scm_core::restrict_federation(&mut declared.entries, &settings.trust_domain, |td| have.contains(td))
        }
        None => Default::default(),
    };
    let report = if entries_on {
        let p = scm_core::plan(&declared.entries, &inputs.entries, &own, &unsupported, &declared.protect);
        scm_core::describe_plan(&p, &declared.entries, &inputs.entries, &own, &unsupported)
    } else {
        scm_core::PlanReport::default()
    };
    let fed = inputs.config.reconcile.cluster_federated_trust_domains.then(|| {
        let d = scm_federation::declare(
            &inputs.snapshot.cluster_federated_trust_domains,
            &inputs.config.class_name,
            inputs.config.watch_classless,
        );
        scm_federation::plan(&d, &inputs.relationships)
    });
    let drift = report.has_drift() || fed.as_ref().is_some_and(|p| p.write_count() > 0);
    let code = if drift { EXIT_DRIFT } else { EXIT_IN_SYNC };
    let mut notes = inputs.notes();
    for (source, tds) in &degraded {
        let names: Vec<&str> = tds.iter().map(|t| t.name()).collect();
        notes.push(format!(
            "{source}: SPIRE holds no bundle for federatesWith {}: its entries are written without it and completed \
             when the bundle arrives",
            names.join(", ")
        ));
    }
    let held = guard_hold(inputs, &report, &own);
    notes.extend(held.clone());
    let shown = PlanShown {
        report: &report,
        fed: fed.as_ref(),
        failures: &declared.failures,
        current: &inputs.entries,
        drift,
        notes: &notes,
    };
    let text = if json_out {
        let mut v = plan_json(&shown);
        v["deletionGuard"] = json!({"wouldHold": held.is_some(), "message": held});
        format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
    } else {
        plan_text(&shown)
    };
    (text, code)
}

/// Whether the running controller's deletion guard (`deletionGuard`) would hold these
/// deletes on its first look at them (same pure check as the pass).
fn guard_hold(inputs: &Inputs, report: &scm_core::PlanReport, own: &Ownership) -> Option<String> {
    let deletes: Vec<Entry> = report.deletes.iter().map(|(e, _)| e.clone()).collect();
    let owned = scm_core::owned_count(&inputs.entries, own);
    let verdict = scm_core::GuardState::default().check(
        &inputs.config.deletion_guard,
        &deletes,
        owned,
        None,
        std::time::Duration::ZERO,
    );
    match verdict {
        scm_core::DeleteVerdict::Proceed => None,
        scm_core::DeleteVerdict::Hold { plan_id, deletes, owned, .. } => {
            let release = match inputs.config.deletion_guard.release_after {
                Some(d) => format!("after {} of the same plan, or ", scm_config::format_std_duration(d)),
                None => String::new(),
            };
            Some(format!(
                "the deletion guard would hold these {deletes} deletes (of {owned} owned entries): they go {release}when \
                 the controller's namespace is annotated {}={plan_id}",
                crate::reconcile::entries::ALLOW_DELETES_ANNOTATION
            ))
        }
    }
}

/// What `plan` prints, as text or JSON.
struct PlanShown<'a> {
    report: &'a scm_core::PlanReport,
    fed: Option<&'a scm_federation::Plan>,
    failures: &'a [RenderFailure],
    current: &'a [Entry],
    drift: bool,
    notes: &'a [String],
}

fn plan_text(shown: &PlanShown<'_>) -> String {
    let &PlanShown { report: r, fed, failures, current, drift, notes } = shown;
    let mut o = String::new();
    let (c, u, d) = r.counts();
    let unchanged: usize = r.by_source.values().map(|w| w.unchanged).sum();
    let _ = writeln!(
        o,
        "Entries: {c} to create, {u} to update, {d} to delete; {unchanged} in sync, {} left alone",
        r.left_alone.len()
    );
    for (source, w) in &r.by_source {
        if w.creates.is_empty() && w.updates.is_empty() {
            continue;
        }
        let _ = writeln!(o, "\n{source} ({} in sync)", w.unchanged);
        for e in &w.creates {
            let _ = writeln!(o, "  + create {}", entry_line(e));
        }
        for (e, fields) in &w.updates {
            let _ = writeln!(o, "  ~ update {} {}", e.id, entry_line(e));
            let old = current.iter().find(|x| x.id == e.id);
            for f in fields {
                let before = old.map(|x| field_value(x, f)).unwrap_or_default();
                let _ = writeln!(o, "      {f}: {before} -> {}", field_value(e, f));
            }
        }
    }
    if !r.deletes.is_empty() {
        let _ = writeln!(o, "\nDeclared by no object");
        for (e, why) in &r.deletes {
            let _ = writeln!(o, "  - delete {} {} ({why})", e.id, entry_line(e));
        }
    }
    if !r.left_alone.is_empty() {
        let _ = writeln!(o, "\nLeft alone");
        for (e, why) in &r.left_alone {
            let _ = writeln!(o, "  . {} {} ({why})", e.id, e.spiffe_id);
        }
    }
    if let Some(p) = fed {
        let _ = writeln!(
            o,
            "\nFederation relationships: {} to create, {} to update, {} to delete; {} in sync",
            p.creates.len(),
            p.updates.len(),
            p.deletes.len(),
            p.unchanged.len()
        );
        for fr in &p.creates {
            let _ = writeln!(o, "  + create {} ({})", fr.trust_domain, fr.bundle_endpoint_url);
        }
        for fr in &p.updates {
            let fields = p.changed_fields.get(&fr.trust_domain).map(|f| f.join(", ")).unwrap_or_default();
            let _ = writeln!(o, "  ~ update {}: {fields}", fr.trust_domain);
        }
        for td in &p.deletes {
            let _ = writeln!(o, "  - delete {td} (no ClusterFederatedTrustDomain declares it)");
        }
        for (td, cr) in &p.kept {
            let _ = writeln!(o, "  . {td} kept (ClusterFederatedTrustDomain {cr} is invalid)");
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(o, "\nFailures (the entries of these sources are kept, not deleted)");
        for f in failures {
            let _ = writeln!(o, "  ! {}", failure_line(f));
        }
    }
    for n in notes {
        let _ = writeln!(o, "\nnote: {n}");
    }
    let _ = writeln!(
        o,
        "\n{}",
        if drift { "Drift: a pass would write the changes above." } else { "In sync: a pass would write nothing." }
    );
    o
}

fn plan_json(shown: &PlanShown<'_>) -> Value {
    let &PlanShown { report: r, fed, failures, current, drift, notes } = shown;
    let by_source: Vec<Value> = r
        .by_source
        .iter()
        .map(|(s, w)| {
            json!({
                "kind": kind_name(s.kind), "name": s.name, "uid": s.uid,
                "creates": w.creates.iter().map(entry_json).collect::<Vec<_>>(),
                "updates": w.updates.iter().map(|(e, fields)| {
                    let old = current.iter().find(|x| x.id == e.id);
                    json!({"entry": entry_json(e), "fields": fields.iter().map(|f| json!({
                        "name": f, "old": old.map(|x| field_value(x, f)), "new": field_value(e, f)})).collect::<Vec<_>>()})
                }).collect::<Vec<_>>(),
                "unchanged": w.unchanged,
            })
        })
        .collect();
    let fed = fed.map(|p| {
        json!({
            "creates": p.creates.iter().map(|f| f.trust_domain.to_string()).collect::<Vec<_>>(),
            "updates": p.updates.iter().map(|f| json!({"trustDomain": f.trust_domain.to_string(),
                "fields": p.changed_fields.get(&f.trust_domain)})).collect::<Vec<_>>(),
            "deletes": p.deletes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "unchanged": p.unchanged.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "kept": p.kept.iter().map(|(td, cr)| json!({"trustDomain": td.to_string(), "invalidObject": cr})).collect::<Vec<_>>(),
        })
    });
    let v = json!({
        "inSync": !drift,
        "entries": {
            "bySource": by_source,
            "deletes": r.deletes.iter().map(|(e, why)| json!({"entry": entry_json(e), "reason": why.to_string()})).collect::<Vec<_>>(),
            "leftAlone": r.left_alone.iter().map(|(e, why)| json!({"entry": entry_json(e), "reason": left_alone_code(why), "message": why.to_string()})).collect::<Vec<_>>(),
        },
        "federationRelationships": fed,
        "failures": failures.iter().map(failure_json).collect::<Vec<_>>(),
        "notes": notes,
    });
    v
}

fn left_alone_code(l: &scm_core::LeftAlone) -> &'static str {
    match l {
        scm_core::LeftAlone::Foreign => "Foreign",
        scm_core::LeftAlone::OtherPrefix(_) => "OtherPrefix",
        scm_core::LeftAlone::JoinToken => "JoinToken",
        scm_core::LeftAlone::Protected(_) => "Protected",
    }
}

// ---------------------------------------------------------------- explain

/// `explain`: the text (or JSON) to print. Errors name what was not found.
pub fn explain(
    inputs: &Inputs,
    settings: &scm_core::Settings,
    target: &Target,
    json_out: bool,
) -> anyhow::Result<String> {
    match target {
        Target::Pod { namespace, name } => explain_pod(inputs, settings, namespace, name, json_out),
        Target::ClusterSPIFFEID(name) => explain_cluster_spiffe_id(inputs, settings, name, json_out),
        Target::TrustDomain(name) => explain_trust_domain(inputs, name, json_out),
    }
}

fn checks(inputs: &Inputs, settings: &scm_core::Settings, declared: &[DeclaredEntry]) -> Vec<EntryCheck> {
    scm_core::check_in_spire(
        declared,
        &inputs.entries,
        &inputs.ownership(),
        &UnsupportedFields::default(),
        &settings.trust_domain,
        inputs.federated_bundles.as_deref(),
    )
}

fn explain_pod(
    inputs: &Inputs,
    settings: &scm_core::Settings,
    namespace: &str,
    name: &str,
    json_out: bool,
) -> anyhow::Result<String> {
    let x = scm_core::explain_pod(&inputs.snapshot.world, settings, namespace, name);
    let Some(pod) = &x.pod else {
        let scope = if inputs.config.cache_namespaces.is_empty() {
            String::new()
        } else {
            " or outside cacheNamespaces".to_owned()
        };
        if !inputs.config.reconcile.cluster_spiffe_ids {
            anyhow::bail!("reconcile.clusterSPIFFEIDs is false in the configuration: no pod gets an entry");
        }
        anyhow::bail!("pod {namespace}/{name} not found{scope}");
    };
    let checks = checks(inputs, settings, &x.entries);
    if json_out {
        let v = json!({
            "pod": {"namespace": namespace, "name": name, "uid": pod.uid, "node": pod.node},
            "hasIdentity": !x.entries.is_empty(),
            "clusterSPIFFEIDs": x.verdicts.iter().map(|v| verdict_json(&v.name, v.fallback, &v.verdict)).collect::<Vec<_>>(),
            "entries": checks.iter().map(check_json).collect::<Vec<_>>(),
            "notes": inputs.notes(),
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let mut o = String::new();
    let node = if pod.node.is_empty() { "(not scheduled)" } else { pod.node.as_str() };
    let _ = writeln!(o, "Pod {namespace}/{name} (uid {}, node {node})", pod.uid);
    let _ = writeln!(o, "\nClusterSPIFFEIDs");
    if x.verdicts.is_empty() {
        let _ = writeln!(o, "  (none in the cluster)");
    }
    for v in &x.verdicts {
        let fallback = if v.fallback { " (fallback)" } else { "" };
        let _ = writeln!(o, "  {}{fallback}: {}", v.name, verdict_text(&v.verdict));
    }
    let _ = writeln!(o, "\nEntries the pod should have: {}", x.entries.len());
    for c in &checks {
        write_check(&mut o, c);
    }
    if x.entries.is_empty() {
        let _ = writeln!(o, "\nThe pod has no identity: no ClusterSPIFFEID gives it an entry (reasons above).");
    }
    for n in inputs.notes() {
        let _ = writeln!(o, "\nnote: {n}");
    }
    Ok(o)
}

fn explain_cluster_spiffe_id(
    inputs: &Inputs,
    settings: &scm_core::Settings,
    name: &str,
    json_out: bool,
) -> anyhow::Result<String> {
    let x = scm_core::explain_cluster_spiffe_id(&inputs.snapshot.world, settings, name);
    if !x.found {
        let filtered = if inputs.config.filter_by_class_name { " (filterByClassName is on)" } else { "" };
        anyhow::bail!("ClusterSPIFFEID {name:?} not found{filtered}");
    }
    let declared = scm_core::declare_entries(&inputs.snapshot.world, settings, &mut RenderCache::new());
    let mine: Vec<DeclaredEntry> =
        declared.entries.into_iter().filter(|d| d.source.name == name && d.pod_uid.is_some()).collect();
    let checks = checks(inputs, settings, &mine);
    if json_out {
        let v = json!({
            "name": name,
            "skipped": x.skipped.as_ref().map(reason_json),
            "ignoredNamespaces": x.ignored_namespaces.iter().map(|(ns, p)| json!({"namespace": ns, "pattern": p})).collect::<Vec<_>>(),
            "pods": x.pods.iter().map(|(ns, n, v)| {
                let mut j = verdict_json("", false, v);
                j["pod"] = json!(format!("{ns}/{n}"));
                j
            }).collect::<Vec<_>>(),
            "entries": checks.iter().map(check_json).collect::<Vec<_>>(),
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let mut o = String::new();
    let _ = writeln!(o, "ClusterSPIFFEID {name}");
    if let Some(r) = &x.skipped {
        let _ = writeln!(o, "  not used by this controller: {r}");
        return Ok(o);
    }
    for (ns, pattern) in &x.ignored_namespaces {
        let _ = writeln!(o, "  namespace {ns} selected but ignored (ignoreNamespaces pattern {pattern:?})");
    }
    let _ = writeln!(o, "\nPods of the selected namespaces: {}", x.pods.len());
    for (ns, n, v) in &x.pods {
        let _ = writeln!(o, "  {ns}/{n}: {}", verdict_text(v));
    }
    let _ = writeln!(o, "\nEntries it declares: {}", checks.len());
    for c in &checks {
        write_check(&mut o, c);
    }
    Ok(o)
}

fn explain_trust_domain(inputs: &Inputs, name: &str, json_out: bool) -> anyhow::Result<String> {
    if !inputs.config.reconcile.cluster_federated_trust_domains {
        anyhow::bail!("reconcile.clusterFederatedTrustDomains is false in the configuration");
    }
    let x = scm_federation::explain_trust_domain(
        &inputs.snapshot.cluster_federated_trust_domains,
        &inputs.config.class_name,
        inputs.config.watch_classless,
        name,
        &inputs.relationships,
        inputs.federated_bundles.as_deref(),
    );
    if !x.found {
        anyhow::bail!("ClusterFederatedTrustDomain {name:?} not found");
    }
    let class = x.class_mismatch.as_ref().map(|c| match c {
        Some(c) => format!("className {c:?} is not this controller's className {:?}", inputs.config.class_name),
        None => format!(
            "the object has no className and watchClassless is false (this controller's className is {:?})",
            inputs.config.class_name
        ),
    });
    let relationship = x.relationship.as_ref().map(|r| match r {
        scm_federation::RelationshipState::InSync => "in sync".to_owned(),
        scm_federation::RelationshipState::Missing => "missing: a pass would create it".to_owned(),
        scm_federation::RelationshipState::Differs(f) => format!("differs: a pass would update {}", f.join(", ")),
    });
    let bundle = match x.bundle_in_spire {
        Some(true) => "SPIRE holds a bundle for it".to_owned(),
        Some(false) => "SPIRE holds no bundle for it yet: entries federate with it once it arrives".to_owned(),
        None => "unknown (could not list federated bundles)".to_owned(),
    };
    if json_out {
        let v = json!({
            "name": name, "trustDomain": x.trust_domain, "classMismatch": class,
            "outcome": x.outcome.as_ref().map(ToString::to_string),
            "relationship": relationship, "bundleInSpire": x.bundle_in_spire,
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
    }
    let mut o = String::new();
    let _ = writeln!(o, "ClusterFederatedTrustDomain {name} (trust domain {})", x.trust_domain);
    if let Some(c) = class {
        let _ = writeln!(o, "  not used by this controller: {c}");
    }
    if let Some(out) = &x.outcome {
        let _ = writeln!(o, "  {out}");
    }
    if let Some(r) = relationship {
        let _ = writeln!(o, "  relationship in SPIRE: {r}");
    }
    let _ = writeln!(o, "  bundle: {bundle}");
    Ok(o)
}

// ---------------------------------------------------------------- formatting

fn kind_name(kind: scm_core::SourceKind) -> &'static str {
    match kind {
        scm_core::SourceKind::ClusterSPIFFEID => "ClusterSPIFFEID",
        scm_core::SourceKind::ClusterStaticEntry => "ClusterStaticEntry",
    }
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Applies(e) => format!("applies -> {}", e.spiffe_id),
        Verdict::NotApplied(r) => format!("does not apply: {r}"),
    }
}

fn reason_json(r: &Reason) -> Value {
    let mut j = json!({"code": r.code(), "message": r.to_string()});
    match r {
        Reason::NamespaceIgnored { pattern, .. } => j["pattern"] = json!(pattern),
        Reason::Masked { winner, entry } => {
            j["winner"] = json!({"kind": kind_name(winner.kind), "name": winner.name});
            j["entry"] = entry_json(entry);
        }
        Reason::RenderFailed { field, message } | Reason::InvalidSpec { field, message } => {
            j["field"] = json!(field);
            j["error"] = json!(message);
        }
        Reason::FallbackSkipped { by } => j["by"] = json!(by),
        Reason::NodeMissing { node } => j["node"] = json!(node),
        _ => {}
    }
    j
}

fn verdict_json(name: &str, fallback: bool, v: &Verdict) -> Value {
    let mut j = json!({"name": name, "fallback": fallback});
    match v {
        Verdict::Applies(e) => {
            j["applies"] = json!(true);
            j["entry"] = entry_json(e);
        }
        Verdict::NotApplied(r) => {
            j["applies"] = json!(false);
            j["reason"] = reason_json(r);
        }
    }
    j
}

fn write_check(o: &mut String, c: &EntryCheck) {
    let e = &c.declared.entry;
    let _ = writeln!(o, "  {} (from {})", e.spiffe_id, c.declared.source);
    let _ = writeln!(o, "    parent {}", e.parent_id);
    let _ = writeln!(o, "    selectors {}", selectors(e));
    let state = match &c.state {
        SpireState::InSync { id } => format!("in sync (entry {id})"),
        SpireState::Differs { id, fields } => {
            format!("differs (entry {id}): {}; a pass would update it", fields.join(", "))
        }
        SpireState::Missing { foreign } if foreign.is_empty() => "missing: a pass would create it".to_owned(),
        SpireState::Missing { foreign } => format!(
            "missing: held by entries this controller does not own ({}); a pass would create its own",
            foreign.join(", ")
        ),
    };
    let _ = writeln!(o, "    SPIRE: {state}");
    for td in &c.missing_bundles {
        let _ = writeln!(
            o,
            "    ! federatesWith {td}: SPIRE holds no bundle for this trust domain: the entry is written without it \
             and completed when the bundle arrives"
        );
    }
}

fn check_json(c: &EntryCheck) -> Value {
    let (state, id, fields, foreign) = match &c.state {
        SpireState::InSync { id } => ("InSync", Some(id), None, None),
        SpireState::Differs { id, fields } => ("Differs", Some(id), Some(fields), None),
        SpireState::Missing { foreign } => ("Missing", None, None, Some(foreign)),
    };
    json!({
        "entry": entry_json(&c.declared.entry),
        "source": {"kind": kind_name(c.declared.source.kind), "name": c.declared.source.name},
        "spire": {"state": state, "id": id, "fields": fields, "foreignIDs": foreign},
        "missingBundles": c.missing_bundles.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn failure_line(f: &RenderFailure) -> String {
    let pod = f.pod.as_ref().map(|(ns, n)| format!(" pod {ns}/{n}")).unwrap_or_default();
    format!("{}{pod}: {}: {}", f.source, f.field, f.message)
}

fn failure_json(f: &RenderFailure) -> Value {
    json!({"kind": kind_name(f.source.kind), "name": f.source.name,
        "pod": f.pod.as_ref().map(|(ns, n)| format!("{ns}/{n}")), "field": f.field, "message": f.message})
}

fn selectors(e: &Entry) -> String {
    e.selectors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn entry_line(e: &Entry) -> String {
    format!("{} (parent {}; {})", e.spiffe_id, e.parent_id, selectors(e))
}

fn entry_json(e: &Entry) -> Value {
    json!({
        "id": e.id, "spiffeID": e.spiffe_id.to_string(), "parentID": e.parent_id.to_string(),
        "selectors": e.selectors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "x509SVIDTTL": e.x509_svid_ttl.as_secs(), "jwtSVIDTTL": e.jwt_svid_ttl.as_secs(),
        "federatesWith": e.federates_with.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "admin": e.admin, "downstream": e.downstream, "dnsNames": e.dns_names, "hint": e.hint, "storeSVID": e.store_svid,
        "additionalAttributes": e.additional_attributes.map(|a| json!({
            "disableX509SVIDPrefetch": a.disable_x509_svid_prefetch, "jwtSVIDIncludeJTI": a.jwt_svid_include_jti})),
    })
}

/// One field of an entry (names from `scm_core::outdated_fields`), for "old -> new".
fn field_value(e: &Entry, field: &str) -> String {
    match field {
        "x509SVIDTTL" => format!("{}s", e.x509_svid_ttl.as_secs()),
        "jwtSVIDTTL" => format!("{}s", e.jwt_svid_ttl.as_secs()),
        "federatesWith" => format!("{:?}", e.federates_with.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "admin" => e.admin.to_string(),
        "downstream" => e.downstream.to_string(),
        "dnsNames" => format!("{:?}", e.dns_names),
        "hint" => format!("{:?}", e.hint),
        "storeSVID" => e.store_svid.to_string(),
        "disableX509SVIDPrefetch" => e.additional_attributes.unwrap_or_default().disable_x509_svid_prefetch.to_string(),
        "jwtSVIDIncludeJTI" => e.additional_attributes.unwrap_or_default().jwt_svid_include_jti.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_as_kubectl_spells_them() {
        let pod = |ns: &str, n: &str| Target::Pod { namespace: ns.into(), name: n.into() };
        assert_eq!(Target::parse("pod", "shop/web-1", None).unwrap(), pod("shop", "web-1"));
        assert_eq!(Target::parse("pod", "web-1", Some("shop")).unwrap(), pod("shop", "web-1"));
        assert_eq!(Target::parse("po", "web-1", None).unwrap(), pod("default", "web-1"));
        assert_eq!(Target::parse("pod/web-1", "", Some("shop")).unwrap(), pod("shop", "web-1"));
        assert_eq!(Target::parse("csid", "x", None).unwrap(), Target::ClusterSPIFFEID("x".into()));
        assert_eq!(Target::parse("trustdomain", "y", None).unwrap(), Target::TrustDomain("y".into()));
        assert!(Target::parse("deployment", "x", None).unwrap_err().contains("unknown kind"));
        assert!(Target::parse("pod", "", None).is_err());
    }
}
