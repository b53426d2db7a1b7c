//! The admission webhook of spire-controller-manager: an HTTPS server (axum over
//! tokio-rustls) that validates and defaults the three custom resources, observes pod
//! admissions, and serves a certificate minted by SPIRE (or read from files) that is
//! rotated in memory, while `caBundle` of the webhook configurations is kept equal to
//! SPIRE's trust bundle.
//!
//! Wiring (see the crate README for a complete example):
//!
//! ```text
//! let metrics  = Metrics::register(&registry)?;
//! let webhook  = Webhook::new(settings, pod_sink, metrics.clone());
//! let resolver = Arc::new(CertResolver::with_metrics(&metrics));
//! let cab      = CaBundleManager::spawn(kube, CaBundleParams::new(vwc_name, mwc_name, pods_name), spire.clone(), cancel.clone());
//! let certs    = CertManager::spawn(CertManagerParams::new(td), spire, cab.hosts(), resolver.clone(), cancel.clone());
//! let server   = Server::bind(ServerConfig::with_host_port(host, port)?, resolver.clone()).await?;
//! server.serve(webhook.router(), cancel).await?;
//! ```

pub mod admission;
pub mod cabundle;
pub mod cert;
mod defaulting;
pub mod metrics;
pub mod pods;
pub mod server;
mod spire_adapter;
pub mod validate;

use std::sync::Arc;

use scm_spiffe::TrustDomain;

pub use admission::{Limits, MAX_BODY_BYTES, Route};
pub use cabundle::{BundleSource, CaBundleHandle, CaBundleManager, CaBundleParams, DegradationSink};
pub use cert::files::{FileCertParams, FileCertSource};
pub use cert::spire::{CertManager, CertManagerHandle, CertManagerParams, SvidMinter};
pub use cert::{CertInfo, CertResolver, ServingCert};
pub use metrics::Metrics;
pub use pods::{NoPodSink, ObservedPod, PodSink};
pub use server::{Server, ServerConfig};

/// Where the webhook side reports an optional permission it lacks (the runtime keeps
/// the registry: one warning, a gauge, the health document).
pub trait Degradations: Send + Sync + 'static {
    /// `capability` is unavailable because `missing_rule` is not granted; `lost` says
    /// what the controller does without it. Called on every refusal: report once.
    fn degrade(&self, capability: &str, missing_rule: &str, lost: &str);
    /// The rule works again.
    fn restored(&self, capability: &str);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDegradations;

impl Degradations for NoDegradations {
    fn degrade(&self, _: &str, _: &str, _: &str) {}
    fn restored(&self, _: &str) {}
}

/// What admission decisions depend on (from the ControllerManagerConfig).
#[derive(Debug, Clone)]
pub struct AdmissionSettings {
    /// `trustDomain`: rendered SPIFFE IDs must be in it.
    pub trust_domain: TrustDomain,
    /// `clusterName` (template data).
    pub cluster_name: String,
    /// `clusterDomain` (template data; may be empty).
    pub cluster_domain: String,
    /// `className` of this install; empty = unset.
    pub class_name: String,
    /// `watchClassless`.
    pub watch_classless: bool,
    /// Opt-in: stamp `spec.className` on classless objects when `class_name` is set and
    /// `watch_classless` is false. Off by default because it changes which installs act on
    /// the object; see the README ("Defaulting").
    pub default_class_name: bool,
    /// What the SPIRE server stores (the reconciler's unsupported-field probe, when it has
    /// run in this process): fields it drops are refused.
    pub spire_fields: scm_spire_api::FieldSupport,
}

impl AdmissionSettings {
    pub fn new(trust_domain: TrustDomain, cluster_name: impl Into<String>) -> Self {
        Self {
            trust_domain,
            cluster_name: cluster_name.into(),
            cluster_domain: String::new(),
            class_name: String::new(),
            watch_classless: false,
            default_class_name: false,
            spire_fields: Default::default(),
        }
    }
}

pub(crate) struct Inner {
    pub settings: AdmissionSettings,
    pub pod_sink: Arc<dyn PodSink>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub permits: Arc<tokio::sync::Semaphore>,
    pub read_permits: Arc<tokio::sync::Semaphore>,
}

/// The admission logic behind the HTTP routes. Cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    inner: Arc<Inner>,
}

impl Webhook {
    pub fn new(settings: AdmissionSettings, pod_sink: Arc<dyn PodSink>, metrics: Metrics) -> Self {
        Self::with_limits(settings, pod_sink, metrics, Limits::default())
    }

    /// [`Webhook::new`] with other admission budgets.
    pub fn with_limits(
        settings: AdmissionSettings,
        pod_sink: Arc<dyn PodSink>,
        metrics: Metrics,
        limits: Limits,
    ) -> Self {
        let permits = Arc::new(tokio::sync::Semaphore::new(limits.concurrent.max(1)));
        let read_permits = Arc::new(tokio::sync::Semaphore::new(limits.reading.max(1)));
        Self { inner: Arc::new(Inner { settings, pod_sink, metrics, limits, permits, read_permits }) }
    }

    /// The router with every admission path ([`Route::ALL`]); POST only. Serve it with
    /// [`Server`], or call it in-process (`tower::ServiceExt::oneshot`) in tests.
    pub fn router(&self) -> axum::Router {
        admission::router(self.inner.clone())
    }

    pub fn settings(&self) -> &AdmissionSettings {
        &self.inner.settings
    }
}
