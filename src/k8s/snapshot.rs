//! One-shot read of the cluster for the `plan` and `explain` tooling: one LIST per kind,
//! scoped as the watches are (`cacheNamespaces`, `filterByClassName`), into the same
//! `World` the pass reads. Read-only: no watch, no lease, no status.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams, ObjectList};
use scm_api::{CLASS_NAME_LABEL, ClusterFederatedTrustDomain, ClusterSPIFFEID, ClusterStaticEntry};
use scm_core::{PodInfo, World};

use super::world::WatchSet;
use crate::scope::NamespaceScope;

/// The cluster as a pass would see it now, and the ClusterFederatedTrustDomains.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub world: World,
    pub cluster_federated_trust_domains: Vec<Arc<ClusterFederatedTrustDomain>>,
    /// Optional lists that were refused (Endpoints, EndpointSlices), as the pass degrades.
    pub notes: Vec<String>,
}

type ListError = String;

async fn list_all<K>(api: Api<K>, params: &ListParams, what: &str) -> Result<Vec<K>, ListError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = params.clone().limit(500);
    loop {
        let page: ObjectList<K> = api.list(&params).await.map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => {
                format!("listing {what}: the apiserver does not serve them (is the CRD installed?)")
            }
            kube::Error::Api(s) if s.code == 403 => format!("listing {what}: forbidden ({})", s.message),
            e => format!("listing {what}: {e}"),
        })?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => return Ok(out),
        }
    }
}

/// Lists a namespaced kind over the `cacheNamespaces` scope (the whole cluster when empty).
async fn list_scoped<K>(client: &Client, scope: &[NamespaceScope], what: &str) -> Result<Vec<K>, ListError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    if scope.is_empty() {
        return list_all(Api::all(client.clone()), &ListParams::default(), what).await;
    }
    let mut out = Vec::new();
    for n in scope {
        let mut params = ListParams::default();
        if let Some(l) = NamespaceScope::selector(&n.labels) {
            params = params.labels(&l);
        }
        if let Some(f) = NamespaceScope::selector(&n.fields) {
            params = params.fields(&f);
        }
        out.extend(list_all(Api::namespaced(client.clone(), &n.namespace), &params, what).await?);
    }
    Ok(out)
}

fn arcs<K>(v: Vec<K>) -> Vec<Arc<K>> {
    v.into_iter().map(Arc::new).collect()
}

/// Reads everything the enabled reconcilers read, once.
pub async fn read(client: &Client, set: &WatchSet) -> Result<Snapshot, String> {
    let mut s = Snapshot::default();
    let all = ListParams::default();
    if set.cluster_spiffe_ids {
        let params = if set.filter_by_class_name {
            ListParams::default().labels(&format!("{CLASS_NAME_LABEL}={}", set.class_name))
        } else {
            ListParams::default()
        };
        s.world.cluster_spiffe_ids =
            arcs(list_all(Api::<ClusterSPIFFEID>::all(client.clone()), &params, "clusterspiffeids").await?);
        let pods: Vec<Pod> = list_scoped(client, &set.namespaces, "pods").await?;
        s.world.pods = pods.into_iter().map(|p| Arc::new(PodInfo::from(p))).collect();
        s.world.nodes = arcs(list_all(Api::<Node>::all(client.clone()), &all, "nodes").await?);
        s.world.namespaces = arcs(list_all(Api::<Namespace>::all(client.clone()), &all, "namespaces").await?);
        match list_scoped::<Endpoints>(client, &set.namespaces, "endpoints").await {
            Ok(v) => s.world.endpoints = arcs(v),
            Err(e) => s.notes.push(format!("{e} (autoPopulateDNSNames uses EndpointSlices only)")),
        }
        match list_scoped::<EndpointSlice>(client, &set.namespaces, "endpointslices").await {
            Ok(v) => s.world.endpoint_slices = arcs(v),
            Err(e) => s.notes.push(format!("{e} (autoPopulateDNSNames uses Endpoints only)")),
        }
    }
    if set.cluster_static_entries {
        s.world.cluster_static_entries =
            arcs(list_all(Api::<ClusterStaticEntry>::all(client.clone()), &all, "clusterstaticentries").await?);
    }
    if set.cluster_federated_trust_domains {
        s.cluster_federated_trust_domains = arcs(
            list_all(Api::<ClusterFederatedTrustDomain>::all(client.clone()), &all, "clusterfederatedtrustdomains")
                .await?,
        );
    }
    Ok(s)
}
