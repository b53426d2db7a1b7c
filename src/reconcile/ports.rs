//! The ports of the reconcilers: what a pass reads (the world, the federation CRs), where
//! its results go (statuses and Events) and how it talks to SPIRE. `src/k8s/` and
//! `src/manifests.rs` implement the sources and the status sink; `scm_spire_api::Client`
//! implements [`EntryApi`]. Nothing here knows Kubernetes clients or sockets, so passes
//! and loops are unit-tested against in-memory implementations.

use std::sync::Arc;

use scm_api::{
    BundleRefreshStatus, ClusterFederatedTrustDomain, ClusterSPIFFEID, ClusterSPIFFEIDStats, ClusterStaticEntry,
    FederatedBundleStatus,
};
use scm_core::{RenderFailure, SourceRef, StaticEntryOutcome, World};
use scm_spiffe::{Entry, TrustDomain};
use scm_spire_api::{BatchError, BatchResult, SpireError, UnsupportedFields};

/// A boxed future, for the object-safe ports.
pub type BoxFuture<'a, T = ()> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where the world comes from: Kubernetes watches or a static manifest directory.
pub trait WorldSource: Send + Sync {
    /// `Err(why)` when the view is not complete (unsynced cache, unreadable manifest).
    fn snapshot(&self) -> Result<World, String>;
}

/// Where the ClusterFederatedTrustDomains come from.
pub trait CftdSource: Send + Sync {
    fn list(&self) -> Result<Vec<Arc<ClusterFederatedTrustDomain>>, String>;
}

/// Where a pass's results go.
pub trait StatusSink: Send + Sync {
    fn cluster_spiffe_id<'a>(
        &'a self,
        cr: &'a ClusterSPIFFEID,
        stats: ClusterSPIFFEIDStats,
        failures: &'a [&'a RenderFailure],
        shortfall: Option<&'a Shortfall>,
    ) -> BoxFuture<'a>;
    fn cluster_static_entry<'a>(
        &'a self,
        cr: &'a ClusterStaticEntry,
        outcome: &'a StaticEntryOutcome,
        set: bool,
        shortfall: Option<&'a Shortfall>,
    ) -> BoxFuture<'a>;
    /// A Warning Event about a ClusterSPIFFEID or ClusterStaticEntry.
    fn event_source<'a>(&'a self, source: &'a SourceRef, reason: &'a str, message: &'a str) -> BoxFuture<'a>;
    fn event_render_failed<'a>(
        &'a self,
        source: &'a SourceRef,
        pod: Option<(String, String)>,
        field: &'a str,
        message: &'a str,
    ) -> BoxFuture<'a>;
    /// The Ready condition of a ClusterFederatedTrustDomain.
    fn cluster_federated_trust_domain<'a>(
        &'a self,
        cr: &'a ClusterFederatedTrustDomain,
        ok: bool,
        reason: &'a str,
        message: String,
    ) -> BoxFuture<'a>;
    /// A Warning Event about a ClusterFederatedTrustDomain.
    fn event_federation<'a>(
        &'a self,
        cr: &'a ClusterFederatedTrustDomain,
        reason: &'a str,
        message: &'a str,
    ) -> BoxFuture<'a>;
    /// The bundle part of a ClusterFederatedTrustDomain's status, and the outcome of a
    /// refresh made this pass.
    fn federated_bundle<'a>(
        &'a self,
        cr: &'a ClusterFederatedTrustDomain,
        bundle: FederatedBundleStatus,
        refresh: Option<BundleRefreshStatus>,
    ) -> BoxFuture<'a>;
    /// The circuit breaker held deletes: a Warning Event on the controller's own Pod.
    fn deletes_held<'a>(&'a self, message: &'a str) -> BoxFuture<'a>;
}

/// Why a source's entries are written with less than it declares (the `Degraded`
/// condition): trust domains without a bundle, fields this SPIRE server does not store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub reason: &'static str,
    pub message: String,
}

/// Static manifest mode: nothing to write.
pub struct NoStatus;

impl StatusSink for NoStatus {
    fn cluster_spiffe_id<'a>(
        &'a self,
        _: &'a ClusterSPIFFEID,
        _: ClusterSPIFFEIDStats,
        _: &'a [&'a RenderFailure],
        _: Option<&'a Shortfall>,
    ) -> BoxFuture<'a> {
        Box::pin(async {})
    }
    fn cluster_static_entry<'a>(
        &'a self,
        _: &'a ClusterStaticEntry,
        _: &'a StaticEntryOutcome,
        _: bool,
        _: Option<&'a Shortfall>,
    ) -> BoxFuture<'a> {
        Box::pin(async {})
    }
    fn event_source<'a>(&'a self, _: &'a SourceRef, _: &'a str, _: &'a str) -> BoxFuture<'a> {
        Box::pin(async {})
    }
    fn event_render_failed<'a>(
        &'a self,
        _: &'a SourceRef,
        _: Option<(String, String)>,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a> {
        Box::pin(async {})
    }
    fn cluster_federated_trust_domain<'a>(
        &'a self,
        _: &'a ClusterFederatedTrustDomain,
        _: bool,
        _: &'a str,
        _: String,
    ) -> BoxFuture<'a> {
        Box::pin(async {})
    }
    fn event_federation<'a>(&'a self, _: &'a ClusterFederatedTrustDomain, _: &'a str, _: &'a str) -> BoxFuture<'a> {
        Box::pin(async {})
    }
    fn federated_bundle<'a>(
        &'a self,
        _: &'a ClusterFederatedTrustDomain,
        _: FederatedBundleStatus,
        _: Option<BundleRefreshStatus>,
    ) -> BoxFuture<'a> {
        Box::pin(async {})
    }
    fn deletes_held<'a>(&'a self, _: &'a str) -> BoxFuture<'a> {
        Box::pin(async {})
    }
}

/// The SPIRE entry calls a pass makes (the seam between a pass and the gRPC client).
pub trait EntryApi: Send + Sync {
    fn list_entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, SpireError>>;
    /// Every entry's ID and revision number (a masked list).
    fn list_revisions(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, SpireError>>;
    /// One entry; `None` when it is gone.
    fn get_entry<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Entry>, SpireError>>;
    fn create_entries<'a>(&'a self, entries: &'a [&'a Entry]) -> BoxFuture<'a, Batch<Entry>>;
    fn update_entries<'a>(&'a self, entries: &'a [&'a Entry]) -> BoxFuture<'a, Batch<Entry>>;
    fn delete_entries<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Batch<String>>;
    fn get_unsupported_fields<'a>(
        &'a self,
        td: &'a TrustDomain,
    ) -> BoxFuture<'a, Result<UnsupportedFields, SpireError>>;
    /// The trust domains whose bundles SPIRE holds (federated ones; not the own).
    fn federated_bundles(&self) -> BoxFuture<'_, Result<Vec<TrustDomain>, SpireError>>;
    /// The SPIFFE ID this client authenticates as (TCP + mTLS), whose entries are never
    /// deleted; `None` over the admin socket.
    fn own_spiffe_id(&self) -> Option<String> {
        None
    }
}

/// The per-item results of a batched write, or the RPC error with the items done before it.
pub type Batch<T> = Result<Vec<BatchResult<T>>, BatchError<T>>;

impl EntryApi for scm_spire_api::Client {
    fn own_spiffe_id(&self) -> Option<String> {
        self.identity()?.current().map(|m| m.spiffe_id.clone())
    }
    fn list_entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, SpireError>> {
        Box::pin(scm_spire_api::Client::list_entries(self))
    }
    fn list_revisions(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, SpireError>> {
        Box::pin(scm_spire_api::Client::list_entry_revisions(self))
    }
    fn get_entry<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Entry>, SpireError>> {
        Box::pin(scm_spire_api::Client::get_entry(self, id))
    }
    fn create_entries<'a>(&'a self, entries: &'a [&'a Entry]) -> BoxFuture<'a, Batch<Entry>> {
        Box::pin(scm_spire_api::Client::create_entries(self, entries))
    }
    fn update_entries<'a>(&'a self, entries: &'a [&'a Entry]) -> BoxFuture<'a, Batch<Entry>> {
        Box::pin(scm_spire_api::Client::update_entries(self, entries))
    }
    fn delete_entries<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Batch<String>> {
        Box::pin(scm_spire_api::Client::delete_entries(self, ids))
    }
    fn get_unsupported_fields<'a>(
        &'a self,
        td: &'a TrustDomain,
    ) -> BoxFuture<'a, Result<UnsupportedFields, SpireError>> {
        Box::pin(scm_spire_api::Client::get_unsupported_fields(self, td))
    }
    fn federated_bundles(&self) -> BoxFuture<'_, Result<Vec<TrustDomain>, SpireError>> {
        Box::pin(async move {
            let bundles = scm_spire_api::Client::list_federated_bundles(self, false).await?;
            Ok(bundles.into_iter().map(|b| b.trust_domain).collect())
        })
    }
}

/// Shared handles work as ports too.
impl<T: EntryApi + ?Sized> EntryApi for Arc<T> {
    fn list_entries(&self) -> BoxFuture<'_, Result<Vec<Entry>, SpireError>> {
        (**self).list_entries()
    }
    fn list_revisions(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, SpireError>> {
        (**self).list_revisions()
    }
    fn get_entry<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Entry>, SpireError>> {
        (**self).get_entry(id)
    }
    fn create_entries<'a>(&'a self, entries: &'a [&'a Entry]) -> BoxFuture<'a, Batch<Entry>> {
        (**self).create_entries(entries)
    }
    fn update_entries<'a>(&'a self, entries: &'a [&'a Entry]) -> BoxFuture<'a, Batch<Entry>> {
        (**self).update_entries(entries)
    }
    fn delete_entries<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Batch<String>> {
        (**self).delete_entries(ids)
    }
    fn get_unsupported_fields<'a>(
        &'a self,
        td: &'a TrustDomain,
    ) -> BoxFuture<'a, Result<UnsupportedFields, SpireError>> {
        (**self).get_unsupported_fields(td)
    }
    fn federated_bundles(&self) -> BoxFuture<'_, Result<Vec<TrustDomain>, SpireError>> {
        (**self).federated_bundles()
    }
    fn own_spiffe_id(&self) -> Option<String> {
        (**self).own_spiffe_id()
    }
}
