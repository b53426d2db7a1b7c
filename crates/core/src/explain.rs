//! Why a pod has, or lacks, an identity (the `explain` tooling), from the same selection,
//! masking and render steps as [`declare_entries`], in the same order (ARCHITECTURE.md
//! §2–§4). The entries a pod "should have" are taken from `declare_entries` itself; the
//! per-object verdicts walk the pass's checks one by one so the first failing one is named.

use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use scm_api::ClusterSPIFFEID;
use scm_spiffe::{Entry, TrustDomain};

use crate::bundles::restrict_federation;
use crate::declare::{
    DeclaredEntry, RenderCache, SourceKind, SourceRef, declare_entries, labels_match, spiffe_id_sources,
};
use crate::diff::{EntryOwnership, Ownership, UnsupportedFields, outdated_fields};
use crate::key::entry_key;
use crate::parse::{class_matches, parse_cluster_spiffe_id};
use crate::render::{ServiceIndex, render_parent_id, render_pod_entry};
use crate::settings::Settings;
use crate::world::{PodInfo, World};

/// Why a ClusterSPIFFEID gives a pod no entry: the first check of the pass that fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `reconcile.clusterSPIFFEIDs` is off in the configuration.
    ReconcileDisabled,
    /// The object's `className` is not ours (`None`: it has none and `watchClassless` is off).
    ClassMismatch {
        class_name: Option<String>,
        ours: String,
    },
    /// The spec does not parse; nothing is declared from it.
    InvalidSpec {
        field: String,
        message: String,
    },
    /// The pod's namespace is not in the snapshot.
    NamespaceMissing {
        namespace: String,
    },
    NamespaceNotSelected {
        namespace: String,
    },
    /// `ignoreNamespaces` pattern that matched.
    NamespaceIgnored {
        namespace: String,
        pattern: String,
    },
    PodNotSelected,
    /// A fallback object; these non-fallback objects already give the pod an entry.
    FallbackSkipped {
        by: Vec<String>,
    },
    NotScheduled,
    NodeMissing {
        node: String,
    },
    /// A template (`field`) failed to render for this pod.
    RenderFailed {
        field: String,
        message: String,
    },
    /// The entry rendered, but an object with precedence declares the same entry key.
    Masked {
        entry: Box<Entry>,
        winner: SourceRef,
    },
}

impl Reason {
    /// A short, stable name for machine output.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::ReconcileDisabled => "ReconcileDisabled",
            Reason::ClassMismatch { .. } => "ClassMismatch",
            Reason::InvalidSpec { .. } => "InvalidSpec",
            Reason::NamespaceMissing { .. } => "NamespaceMissing",
            Reason::NamespaceNotSelected { .. } => "NamespaceNotSelected",
            Reason::NamespaceIgnored { .. } => "NamespaceIgnored",
            Reason::PodNotSelected => "PodNotSelected",
            Reason::FallbackSkipped { .. } => "FallbackSkipped",
            Reason::NotScheduled => "PodNotScheduled",
            Reason::NodeMissing { .. } => "NodeMissing",
            Reason::RenderFailed { .. } => "RenderFailed",
            Reason::Masked { .. } => "Masked",
        }
    }
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::ClusterSPIFFEID => "ClusterSPIFFEID",
        SourceKind::ClusterStaticEntry => "ClusterStaticEntry",
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", kind_name(self.kind), self.name)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ReconcileDisabled => f.write_str("reconcile.clusterSPIFFEIDs is false in the configuration"),
            Reason::ClassMismatch { class_name: Some(c), ours } => {
                write!(f, "className {c:?} is not this controller's className {ours:?}")
            }
            Reason::ClassMismatch { class_name: None, ours } => write!(
                f,
                "the object has no className and watchClassless is false (this controller's className is {ours:?})"
            ),
            Reason::InvalidSpec { field, message } => write!(f, "the spec is invalid: {field}: {message}"),
            Reason::NamespaceMissing { namespace } => write!(f, "namespace {namespace:?} does not exist"),
            Reason::NamespaceNotSelected { namespace } => {
                write!(f, "namespace {namespace:?} does not match spec.namespaceSelector")
            }
            Reason::NamespaceIgnored { namespace, pattern } => {
                write!(f, "namespace {namespace:?} is ignored (ignoreNamespaces pattern {pattern:?})")
            }
            Reason::PodNotSelected => f.write_str("the pod's labels do not match spec.podSelector"),
            Reason::FallbackSkipped { by } => write!(
                f,
                "fallback object skipped: the pod already has an entry from ClusterSPIFFEID {}",
                by.join(", ")
            ),
            Reason::NotScheduled => f.write_str("the pod is not scheduled (spec.nodeName is empty)"),
            Reason::NodeMissing { node } => write!(f, "the pod's node {node:?} does not exist"),
            Reason::RenderFailed { field, message } => write!(f, "render failed: {field}: {message}"),
            Reason::Masked { winner, .. } => write!(
                f,
                "masked: {winner} declares the same entry (SPIFFE ID, parent ID, selectors) and takes precedence"
            ),
        }
    }
}

/// What one ClusterSPIFFEID does for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The object gives the pod this entry (it won its key).
    Applies(Box<Entry>),
    NotApplied(Reason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVerdict {
    pub name: String,
    pub fallback: bool,
    pub verdict: Verdict,
}

/// The pod as the explanation saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    pub uid: String,
    pub node: String,
}

/// [`explain_pod`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodExplanation {
    pub namespace: String,
    pub name: String,
    /// `None`: no such pod in the snapshot.
    pub pod: Option<PodSummary>,
    /// One per ClusterSPIFFEID: ours in the order a pass walks them, then the others.
    pub verdicts: Vec<ObjectVerdict>,
    /// The entries a pass declares for the pod (from `declare_entries`).
    pub entries: Vec<DeclaredEntry>,
}

/// Walks each ClusterSPIFFEID for the pod `namespace/name`, naming the first reason one
/// does not apply, and lists the entries `declare_entries` gives the pod.
pub fn explain_pod(world: &World, settings: &Settings, namespace: &str, name: &str) -> PodExplanation {
    let declared = declare_entries(world, settings, &mut RenderCache::new());
    let mut out = PodExplanation {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        pod: None,
        verdicts: Vec::new(),
        entries: Vec::new(),
    };
    let Some(pod) = find_pod(world, namespace, name) else {
        return out;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    out.pod = Some(PodSummary { uid: uid.clone(), node: pod.node_name().to_owned() });
    out.entries = declared.entries.iter().filter(|d| d.pod_uid.as_deref() == Some(uid.as_str())).cloned().collect();
    let walker = Walker::new(world, settings, &declared.entries);
    out.verdicts = walker.pod_verdicts(pod);
    out
}

fn find_pod<'w>(world: &'w World, namespace: &str, name: &str) -> Option<&'w Arc<PodInfo>> {
    world
        .pods
        .iter()
        .find(|p| p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(name))
}

/// [`explain_cluster_spiffe_id`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSPIFFEIDExplanation {
    pub name: String,
    pub found: bool,
    /// Set when the object is not walked at all (class, configuration, invalid spec).
    pub skipped: Option<Reason>,
    /// Namespaces that match `namespaceSelector` but are ignored, with the pattern.
    pub ignored_namespaces: Vec<(String, String)>,
    /// Every pod of a selected, not ignored namespace: `(namespace, name, verdict)`.
    pub pods: Vec<(String, String, Verdict)>,
}

/// What the ClusterSPIFFEID `name` does: the pods of the namespaces it selects, each with
/// its verdict (the same walk as [`explain_pod`]).
pub fn explain_cluster_spiffe_id(world: &World, settings: &Settings, name: &str) -> ClusterSPIFFEIDExplanation {
    let mut out = ClusterSPIFFEIDExplanation {
        name: name.to_owned(),
        found: false,
        skipped: None,
        ignored_namespaces: Vec::new(),
        pods: Vec::new(),
    };
    let Some(cr) = world.cluster_spiffe_ids.iter().find(|cr| cr.metadata.name.as_deref() == Some(name)) else {
        return out;
    };
    out.found = true;
    if let Some(reason) = object_skip(cr, settings) {
        out.skipped = Some(reason);
        return out;
    }
    let declared = declare_entries(world, settings, &mut RenderCache::new());
    let walker = Walker::new(world, settings, &declared.entries);
    if let Ok(spec) = parse_cluster_spiffe_id(&cr.spec) {
        for ns in &world.namespaces {
            let ns_name = ns.metadata.name.as_deref().unwrap_or_default();
            if labels_match(spec.namespace_selector.as_ref(), &ns.metadata)
                && let Some(re) = settings.ignored_by(ns_name)
            {
                out.ignored_namespaces.push((ns_name.to_owned(), re.as_str().to_owned()));
            }
        }
    }
    for pod in &world.pods {
        let Some(v) = walker.pod_verdicts(pod).into_iter().find(|v| v.name == name) else { continue };
        match &v.verdict {
            Verdict::NotApplied(
                Reason::NamespaceNotSelected { .. } | Reason::NamespaceIgnored { .. } | Reason::NamespaceMissing { .. },
            ) => {}
            _ => out.pods.push((
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
                v.verdict,
            )),
        }
    }
    out
}

/// Why the whole object is skipped before any pod is looked at.
fn object_skip(cr: &ClusterSPIFFEID, settings: &Settings) -> Option<Reason> {
    if !settings.reconcile_cluster_spiffe_ids {
        return Some(Reason::ReconcileDisabled);
    }
    let class = cr.spec.class_name.as_deref();
    if !class_matches(class, &settings.class_name, settings.watch_classless) {
        return Some(Reason::ClassMismatch {
            class_name: class.filter(|c| !c.is_empty()).map(str::to_owned),
            ours: settings.class_name.clone(),
        });
    }
    parse_cluster_spiffe_id(&cr.spec).err().map(|e| Reason::InvalidSpec { field: e.field, message: e.message })
}

/// The per-(object, pod) walk of a pass.
struct Walker<'w> {
    world: &'w World,
    settings: &'w Settings,
    winners: &'w [DeclaredEntry],
    services: ServiceIndex<'w>,
}

impl<'w> Walker<'w> {
    fn new(world: &'w World, settings: &'w Settings, winners: &'w [DeclaredEntry]) -> Self {
        Self { world, settings, winners, services: ServiceIndex::build(world) }
    }

    fn node(&self, name: &str) -> Option<&'w Node> {
        self.world.nodes.iter().map(|n| &**n).find(|n| n.metadata.name.as_deref() == Some(name))
    }

    /// Every ClusterSPIFFEID's verdict for `pod`: the walked ones in pass order, then the
    /// ones a pass skips (other class, configuration).
    fn pod_verdicts(&self, pod: &PodInfo) -> Vec<ObjectVerdict> {
        let walked = spiffe_id_sources(self.world, self.settings);
        let mut out = Vec::new();
        // Non-fallback objects that rendered an entry for the pod (masked or not), as the
        // pass counts them for fallback objects.
        let mut applied: Vec<String> = Vec::new();
        for cr in &walked {
            let name = cr.metadata.name.clone().unwrap_or_default();
            let fallback = cr.spec.fallback.unwrap_or(false);
            let verdict = match self.verdict(cr, pod, fallback, &applied) {
                Ok(entry) => {
                    if !fallback {
                        applied.push(name.clone());
                    }
                    self.winner_verdict(cr, entry)
                }
                Err(reason) => Verdict::NotApplied(reason),
            };
            out.push(ObjectVerdict { name, fallback, verdict });
        }
        for cr in &self.world.cluster_spiffe_ids {
            if walked.iter().any(|w| Arc::ptr_eq(w, cr)) {
                continue;
            }
            let reason = object_skip(cr, self.settings).unwrap_or(Reason::ReconcileDisabled);
            out.push(ObjectVerdict {
                name: cr.metadata.name.clone().unwrap_or_default(),
                fallback: cr.spec.fallback.unwrap_or(false),
                verdict: Verdict::NotApplied(reason),
            });
        }
        out
    }

    /// The pass's checks in its order; `Ok` with the rendered entry when all pass.
    fn verdict(
        &self,
        cr: &ClusterSPIFFEID,
        pod: &PodInfo,
        fallback: bool,
        applied: &[String],
    ) -> Result<Entry, Reason> {
        let spec = parse_cluster_spiffe_id(&cr.spec)
            .map_err(|e| Reason::InvalidSpec { field: e.field, message: e.message })?;
        let ns_name = pod.metadata.namespace.as_deref().unwrap_or_default();
        let ns = self
            .world
            .namespaces
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(ns_name))
            .ok_or_else(|| Reason::NamespaceMissing { namespace: ns_name.to_owned() })?;
        if !labels_match(spec.namespace_selector.as_ref(), &ns.metadata) {
            return Err(Reason::NamespaceNotSelected { namespace: ns_name.to_owned() });
        }
        if let Some(re) = self.settings.ignored_by(ns_name) {
            return Err(Reason::NamespaceIgnored { namespace: ns_name.to_owned(), pattern: re.as_str().to_owned() });
        }
        if !labels_match(spec.pod_selector.as_ref(), &pod.metadata) {
            return Err(Reason::PodNotSelected);
        }
        if fallback && !applied.is_empty() {
            return Err(Reason::FallbackSkipped { by: applied.to_vec() });
        }
        let node_name = pod.node_name();
        if node_name.is_empty() {
            return Err(Reason::NotScheduled);
        }
        let Some(node) = self.node(node_name) else {
            return Err(Reason::NodeMissing { node: node_name.to_owned() });
        };
        let pod_uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let services = if spec.auto_populate_dns_names { self.services.services(pod_uid, ns_name) } else { Vec::new() };
        render_parent_id(self.settings, node)
            .and_then(|parent| render_pod_entry(&spec, self.settings, pod, node, &parent, &services))
            .map_err(|e| Reason::RenderFailed { field: e.field, message: e.message })
    }

    /// Applies when this object won the entry's key in the pass, else masked by the winner.
    fn winner_verdict(&self, cr: &ClusterSPIFFEID, entry: Entry) -> Verdict {
        let key = entry_key(&entry);
        let name = cr.metadata.name.as_deref().unwrap_or_default();
        let uid = cr.metadata.uid.as_deref().unwrap_or_default();
        match self.winners.iter().find(|d| d.key == key) {
            Some(w) if w.source.kind == SourceKind::ClusterSPIFFEID && w.source.name == name && w.source.uid == uid => {
                Verdict::Applies(Box::new(entry))
            }
            Some(w) => Verdict::NotApplied(Reason::Masked { entry: Box::new(entry), winner: w.source.clone() }),
            // Not reachable when the world is the one declared; say so rather than guess.
            None => Verdict::NotApplied(Reason::RenderFailed {
                field: String::new(),
                message: "the entry is not among the declared entries (inconsistent snapshot)".into(),
            }),
        }
    }
}

/// Where a declared entry stands in SPIRE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpireState {
    /// SPIRE holds it as declared (entry ID).
    InSync { id: String },
    /// SPIRE holds an entry with its key that differs in these fields.
    Differs { id: String, fields: Vec<&'static str> },
    /// SPIRE holds no entry with its key that this controller owns. `foreign` lists the IDs
    /// of entries with the same key that it does not own (another prefix).
    Missing { foreign: Vec<String> },
}

/// A declared entry and its state in SPIRE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCheck {
    pub declared: DeclaredEntry,
    /// Compared as a pass writes it: without the `missing_bundles` trust domains.
    pub state: SpireState,
    /// `federatesWith` trust domains SPIRE holds no bundle for: a pass writes the entry
    /// without them and completes it when the bundle arrives ([`restrict_federation`]).
    /// Empty when the bundle list is unknown.
    pub missing_bundles: Vec<TrustDomain>,
}

/// Compares declared entries with SPIRE's entries as a pass would: federatesWith
/// restricted to the trust domains SPIRE holds a bundle for ([`restrict_federation`],
/// when `federated_bundles` is known), and the first managed entry with the key (in
/// `current` order) is the one kept, as in [`plan`](crate::plan).
pub fn check_in_spire(
    declared: &[DeclaredEntry],
    current: &[Entry],
    own: &Ownership,
    unsupported: &UnsupportedFields,
    own_trust_domain: &TrustDomain,
    federated_bundles: Option<&[TrustDomain]>,
) -> Vec<EntryCheck> {
    let mut written = declared.to_vec();
    if let Some(have) = federated_bundles {
        restrict_federation(&mut written, own_trust_domain, |td| have.contains(td));
    }
    declared
        .iter()
        .zip(&written)
        .map(|(d, w)| {
            let same_key: Vec<&Entry> = current.iter().filter(|e| entry_key(e) == d.key).collect();
            let managed = same_key.iter().find(|e| own.classify(&e.id) == EntryOwnership::Managed);
            let state = match managed {
                Some(old) => {
                    let fields = outdated_fields(&w.entry, old, unsupported);
                    if fields.is_empty() {
                        SpireState::InSync { id: old.id.clone() }
                    } else {
                        SpireState::Differs { id: old.id.clone(), fields }
                    }
                }
                None => SpireState::Missing { foreign: same_key.iter().map(|e| e.id.clone()).collect() },
            };
            let missing_bundles =
                d.entry.federates_with.iter().filter(|td| !w.entry.federates_with.contains(td)).cloned().collect();
            EntryCheck { declared: d.clone(), state, missing_bundles }
        })
        .collect()
}
