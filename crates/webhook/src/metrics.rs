//! Prometheus metrics of the webhook server and its certificate.
//!
//! Registered once into a registry the caller owns ([`Metrics::register`]); the handle is
//! cheap to clone and shared by the router, the certificate resolver and the managers.

use prometheus::{Counter, CounterVec, Gauge, HistogramOpts, HistogramVec, Opts, Registry};

const PREFIX: &str = "spire_controller_manager_webhook";

/// All webhook metrics. Clone freely: clones share the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `..._webhook_requests_total{path,operation,allowed}`.
    pub requests: CounterVec,
    /// `..._webhook_request_duration_seconds{path}`.
    pub request_duration: HistogramVec,
    /// `..._webhook_denials_total{path,kind}`.
    pub denials: CounterVec,
    /// `..._webhook_certificate_expiry_timestamp_seconds`: NotAfter (Unix seconds) of the
    /// serving certificate now in use; 0 until one is loaded.
    pub certificate_expiry: Gauge,
    /// `..._webhook_certificate_rotations_total`: serving certificates swapped in (the first
    /// load counts too).
    pub certificate_rotations: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.denials.clone()))?;
        registry.register(Box::new(m.certificate_expiry.clone()))?;
        registry.register(Box::new(m.certificate_rotations.clone()))?;
        Ok(m)
    }

    /// Metrics that are counted but exported nowhere (tests, or a caller without a registry).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(Self {
            requests: CounterVec::new(
                Opts::new(
                    format!("{PREFIX}_requests_total"),
                    "Admission requests answered, by path, operation and decision.",
                ),
                &["path", "operation", "allowed"],
            )?,
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    format!("{PREFIX}_request_duration_seconds"),
                    "Time to answer an admission request (decode, decide, encode), by path.",
                )
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
                &["path"],
            )?,
            denials: CounterVec::new(
                Opts::new(format!("{PREFIX}_denials_total"), "Admission requests denied, by path and object kind."),
                &["path", "kind"],
            )?,
            certificate_expiry: Gauge::new(
                format!("{PREFIX}_certificate_expiry_timestamp_seconds"),
                "NotAfter of the serving certificate in use, in Unix seconds.",
            )?,
            certificate_rotations: Counter::new(
                format!("{PREFIX}_certificate_rotations_total"),
                "Serving certificates swapped in (including the first).",
            )?,
        })
    }
}
