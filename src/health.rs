//! The metrics and probe servers (plain HTTP, like upstream's).
//!
//! Under the SPIRE helm chart this controller is a sidecar of the spire-server pod and the
//! chart points the pod's readiness probe at `/readyz` here: whatever `/readyz` says gates
//! the SPIRE server's own Service, and so every agent's access to its server. So:
//!
//! - `/readyz` means "this process is up and serving": the configuration loaded, the
//!   probe, metrics and (when enabled) webhook listeners are bound. It never depends on the
//!   apiserver, on SPIRE, on caches or on a certificate; a controller that cannot work yet
//!   must not take SPIRE out of its Service. (Upstream's `/readyz` is a plain ping.)
//! - `/healthz` fails when a reconcile loop stopped making progress (each loop beats at
//!   least every `wedge_after`), so the kubelet restarts this container only.
//! - `/status` is the deeper picture for operators, never used to gate traffic: every named
//!   check (caches synced, SPIRE reachable, webhook certificate, last pass of each loop)
//!   and every degraded capability, as JSON. The same checks are exported as
//!   `spire_controller_manager_health_check{check}` (1 ok, 0 failing).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{IntGaugeVec, Opts};
use tokio_util::sync::CancellationToken;

use crate::degraded::Degradations;
use crate::metrics::Metrics;

type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
pub struct Health {
    inner: Arc<Mutex<HealthInner>>,
    serving: Arc<AtomicBool>,
    degradations: Degradations,
    gauge: IntGaugeVec,
}

#[derive(Default)]
struct HealthInner {
    checks: BTreeMap<&'static str, Check>,
    beats: BTreeMap<&'static str, (Instant, Duration)>,
}

impl Health {
    pub fn new(metrics: &Metrics, degradations: Degradations) -> Self {
        let gauge = IntGaugeVec::new(
            Opts::new("health_check", "1 when the named health check passes, 0 when it fails (see /status)")
                .namespace("spire_controller_manager"),
            &["check"],
        )
        .expect("valid metric");
        let _ = metrics.registry.register(Box::new(gauge.clone()));
        Self { inner: Arc::default(), serving: Arc::default(), degradations, gauge }
    }

    /// A named check shown in `/status` and the `health_check` gauge (never in `/readyz`).
    pub fn add_check(&self, name: &'static str, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        self.inner.lock().unwrap().checks.insert(name, Arc::new(check));
    }

    /// Every listener is bound: `/readyz` answers 200 from now on.
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::Release);
    }

    /// A loop reports it is alive; `/healthz` fails if it stays silent longer than `wedge_after`.
    pub fn beat(&self, name: &'static str, wedge_after: Duration) {
        self.inner.lock().unwrap().beats.insert(name, (Instant::now(), wedge_after));
    }

    pub fn readiness(&self) -> Result<(), String> {
        if self.serving.load(Ordering::Acquire) { Ok(()) } else { Err("starting".into()) }
    }

    pub fn liveness(&self) -> Result<(), String> {
        let inner = self.inner.lock().unwrap();
        let wedged: Vec<String> = inner
            .beats
            .iter()
            .filter(|(_, (at, limit))| at.elapsed() > *limit)
            .map(|(name, (at, _))| format!("{name}: no progress for {:?}", at.elapsed()))
            .collect();
        if wedged.is_empty() { Ok(()) } else { Err(wedged.join("\n")) }
    }

    /// Runs every check (outside the lock) and records the gauge.
    pub fn checks(&self) -> BTreeMap<&'static str, Result<(), String>> {
        let checks: Vec<(&'static str, Check)> =
            self.inner.lock().unwrap().checks.iter().map(|(k, v)| (*k, v.clone())).collect();
        let out: BTreeMap<_, _> = checks.into_iter().map(|(name, c)| (name, c())).collect();
        for (name, r) in &out {
            self.gauge.with_label_values(&[name]).set(i64::from(r.is_ok()));
        }
        out
    }

    /// The `/status` document.
    pub fn status(&self) -> serde_json::Value {
        let checks: serde_json::Map<String, serde_json::Value> = self
            .checks()
            .into_iter()
            .map(|(name, r)| {
                let v = match r {
                    Ok(()) => serde_json::json!({"ok": true}),
                    Err(message) => serde_json::json!({"ok": false, "message": message}),
                };
                (name.to_owned(), v)
            })
            .collect();
        let loops: serde_json::Map<String, serde_json::Value> = self
            .inner
            .lock()
            .unwrap()
            .beats
            .iter()
            .map(|(name, (at, limit))| {
                let v = serde_json::json!({"lastBeatSecondsAgo": at.elapsed().as_secs_f64(), "wedgedAfterSeconds": limit.as_secs()});
                ((*name).to_owned(), v)
            })
            .collect();
        serde_json::json!({
            "ready": self.readiness().is_ok(),
            "live": self.liveness().is_ok(),
            "checks": checks,
            "loops": loops,
            "degraded": self.degradations.list(),
        })
    }

    /// Refreshes the `health_check` gauge every `every` until `cancel`.
    pub fn spawn_gauge_refresh(&self, every: Duration, cancel: CancellationToken) {
        let h = self.clone();
        tokio::spawn(async move {
            loop {
                let _ = h.checks();
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }
}

pub fn probe_router(health: Health, readiness_path: &str, liveness_path: &str) -> Router {
    Router::new()
        .route(readiness_path, get(readyz))
        .route(liveness_path, get(healthz))
        .route("/status", get(status))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> (StatusCode, String) {
    match h.readiness() {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn healthz(State(h): State<Health>) -> (StatusCode, String) {
    match h.liveness() {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn status(State(h): State<Health>) -> axum::Json<serde_json::Value> {
    axum::Json(h.status())
}

pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    )
}

/// Binds `addr` (Go-style ":8080" means all interfaces).
pub async fn bind(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = parse_addr(addr)?;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))
}

/// Serves `router` on a bound listener until `cancel`.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, cancel: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "serving");
    axum::serve(listener, router).with_graceful_shutdown(async move { cancel.cancelled().await }).await?;
    Ok(())
}

pub fn parse_addr(addr: &str) -> anyhow::Result<SocketAddr> {
    let full = if addr.starts_with(':') { format!("0.0.0.0{addr}") } else { addr.to_owned() };
    full.parse().map_err(|e| anyhow::anyhow!("invalid bind address {addr:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_ignores_failing_checks_which_status_reports() {
        let metrics = Metrics::new();
        let h = Health::new(&metrics, Degradations::new(&metrics.registry));
        h.add_check("spire", || Err("connection refused".into()));
        assert_eq!(h.readiness(), Err("starting".into()));
        h.set_serving();
        assert_eq!(h.readiness(), Ok(()), "a failing check never gates readiness");
        let s = h.status();
        assert_eq!(s["checks"]["spire"]["ok"], false);
        assert_eq!(s["checks"]["spire"]["message"], "connection refused");
        assert!(metrics.render().contains("spire_controller_manager_health_check{check=\"spire\"} 0"));
    }
}
