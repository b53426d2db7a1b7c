//! Optional permissions: what the controller does without them.
//!
//! The SPIRE helm chart grants a floor of RBAC rules, not this project's `manifests/`.
//! Every rule beyond what entries strictly need is optional: when the apiserver answers
//! 403 for it, the capability it buys is marked degraded here *once* (one warning naming
//! the missing rule and what is lost, a gauge `spire_controller_manager_degraded{capability}`
//! set to 1, a line in the `/status` health document), and the work goes on without it.
//! Nothing waits on an optional resource and nothing retries it in a tight loop: each
//! owner retries on its own slow schedule ([`RETRY_FORBIDDEN`]) and calls
//! [`Degradations::restored`] when the rule appears.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntGaugeVec, Opts};

/// How long an owner waits before trying a forbidden optional resource again.
pub const RETRY_FORBIDDEN: Duration = Duration::from_secs(300);

/// One degraded capability.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Degraded {
    /// The RBAC rule that is missing, e.g. `list/watch endpointslices.discovery.k8s.io`.
    pub missing_rule: String,
    /// What the controller does without it.
    pub lost: String,
}

/// The registry of degraded capabilities (cheap to clone).
#[derive(Clone)]
pub struct Degradations {
    inner: Arc<Mutex<BTreeMap<String, Degraded>>>,
    gauge: IntGaugeVec,
}

impl Degradations {
    pub fn new(registry: &prometheus::Registry) -> Self {
        let gauge = IntGaugeVec::new(
            Opts::new("degraded", "1 while an optional capability is unavailable (its RBAC rule is missing)")
                .namespace("spire_controller_manager"),
            &["capability"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(gauge.clone()));
        Self { inner: Arc::default(), gauge }
    }

    /// Marks `capability` degraded. Logs one warning the first time (until restored);
    /// returns whether it was newly degraded.
    pub fn degrade(&self, capability: &str, missing_rule: &str, lost: &str) -> bool {
        let new = Degraded { missing_rule: missing_rule.to_owned(), lost: lost.to_owned() };
        let fresh = self.inner.lock().unwrap().insert(capability.to_owned(), new).is_none();
        if fresh {
            tracing::warn!(
                capability,
                missing_rule,
                lost,
                "optional permission missing: continuing without it (checked again every {}s)",
                RETRY_FORBIDDEN.as_secs()
            );
            self.gauge.with_label_values(&[capability]).set(1);
        }
        fresh
    }

    /// The rule is back.
    pub fn restored(&self, capability: &str) {
        if self.inner.lock().unwrap().remove(capability).is_some() {
            tracing::info!(capability, "optional permission granted again: capability restored");
            self.gauge.with_label_values(&[capability]).set(0);
        }
    }

    #[cfg(test)]
    pub fn is_degraded(&self, capability: &str) -> bool {
        self.inner.lock().unwrap().contains_key(capability)
    }

    pub fn list(&self) -> BTreeMap<String, Degraded> {
        self.inner.lock().unwrap().clone()
    }
}

impl scm_webhook::Degradations for Degradations {
    fn degrade(&self, capability: &str, missing_rule: &str, lost: &str) {
        Degradations::degrade(self, capability, missing_rule, lost);
    }

    fn restored(&self, capability: &str) {
        Degradations::restored(self, capability);
    }
}

pub use scm_webhook::cabundle::{is_forbidden, watch_forbidden};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrade_once_restore_once() {
        let reg = prometheus::Registry::new();
        let d = Degradations::new(&reg);
        assert!(d.degrade("events", "create events", "Events"));
        assert!(!d.degrade("events", "create events", "Events"), "a second 403 is not news");
        assert!(d.is_degraded("events"));
        let text = {
            let mut buf = Vec::new();
            prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &reg.gather(), &mut buf).unwrap();
            String::from_utf8(buf).unwrap()
        };
        assert!(text.contains("spire_controller_manager_degraded{capability=\"events\"} 1"), "{text}");
        d.restored("events");
        assert!(!d.is_degraded("events"));
        assert!(d.list().is_empty());
    }
}
