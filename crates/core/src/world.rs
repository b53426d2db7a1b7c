//! A snapshot of the cluster as `declare_entries` sees it. Cheap to build from reflector
//! stores: the objects are shared, not copied.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, PodSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use scm_api::{ClusterSPIFFEID, ClusterStaticEntry};

#[derive(Debug, Clone, Default)]
pub struct World {
    pub pods: Vec<Arc<PodInfo>>,
    pub nodes: Vec<Arc<Node>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub endpoints: Vec<Arc<Endpoints>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub cluster_spiffe_ids: Vec<Arc<ClusterSPIFFEID>>,
    pub cluster_static_entries: Vec<Arc<ClusterStaticEntry>>,
}

/// A pod as declaration reads it: its metadata and its spec (a missing spec is Go's zero
/// value, as `&pod.Spec` is upstream). The spec sits behind its own `Arc` so that pods
/// whose (trimmed) specs are equal can share one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    pub metadata: ObjectMeta,
    pub spec: Arc<PodSpec>,
}

impl PodInfo {
    /// `spec.nodeName`, "" when unscheduled.
    pub fn node_name(&self) -> &str {
        self.spec.node_name.as_deref().unwrap_or_default()
    }
}

impl From<Pod> for PodInfo {
    fn from(pod: Pod) -> Self {
        PodInfo { metadata: pod.metadata, spec: Arc::new(pod.spec.unwrap_or_default()) }
    }
}

/// Lets a [`PodInfo`] stand where a `Pod` is expected by generic object stores (keyed
/// by namespace and name): it has the Pod's API identity and metadata.
impl k8s_openapi::Resource for PodInfo {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for PodInfo {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
