//! A snapshot of the cluster as `declare_entries` sees it. Cheap to build from reflector
//! stores: the objects are shared, not copied.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use scm_api::{ClusterSPIFFEID, ClusterStaticEntry};

#[derive(Debug, Clone, Default)]
pub struct World {
    pub pods: Vec<Arc<Pod>>,
    pub nodes: Vec<Arc<Node>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub endpoints: Vec<Arc<Endpoints>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub cluster_spiffe_ids: Vec<Arc<ClusterSPIFFEID>>,
    pub cluster_static_entries: Vec<Arc<ClusterStaticEntry>>,
}
