//! The metrics and probe servers (plain HTTP, like upstream's).
//!
//! `/healthz`: the process is alive and no loop is wedged (each loop beats at least
//! every `wedge_after`). `/readyz`: caches synced, SPIRE reachable, webhook
//! certificate loaded (each a named check; the body lists failures).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<HealthInner>>,
}

#[derive(Default)]
struct HealthInner {
    ready: BTreeMap<&'static str, Check>,
    beats: BTreeMap<&'static str, (Instant, Duration)>,
}

impl Health {
    pub fn add_ready_check(&self, name: &'static str, check: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        self.inner.lock().unwrap().ready.insert(name, Arc::new(check));
    }

    /// A loop reports it is alive; `/healthz` fails if it stays silent longer than `wedge_after`.
    pub fn beat(&self, name: &'static str, wedge_after: Duration) {
        self.inner.lock().unwrap().beats.insert(name, (Instant::now(), wedge_after));
    }

    pub fn readiness(&self) -> Result<(), String> {
        let checks: Vec<(&'static str, Check)> =
            self.inner.lock().unwrap().ready.iter().map(|(k, v)| (*k, v.clone())).collect();
        let failures: Vec<String> =
            checks.iter().filter_map(|(name, c)| c().err().map(|e| format!("{name}: {e}"))).collect();
        if failures.is_empty() { Ok(()) } else { Err(failures.join("\n")) }
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
}

pub fn probe_router(health: Health, readiness_path: &str, liveness_path: &str) -> Router {
    Router::new().route(readiness_path, get(readyz)).route(liveness_path, get(healthz)).with_state(health)
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

/// Serves `router` on `addr` until `cancel`. Go-style addresses (":8080") mean all interfaces.
pub async fn serve(addr: &str, router: Router, cancel: CancellationToken) -> anyhow::Result<()> {
    let addr = parse_addr(addr)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    tracing::info!(%addr, "serving");
    axum::serve(listener, router).with_graceful_shutdown(async move { cancel.cancelled().await }).await?;
    Ok(())
}

pub fn parse_addr(addr: &str) -> anyhow::Result<SocketAddr> {
    let full = if addr.starts_with(':') { format!("0.0.0.0{addr}") } else { addr.to_owned() };
    full.parse().map_err(|e| anyhow::anyhow!("invalid bind address {addr:?}: {e}"))
}
