//! Any bytes as an AdmissionReview body, on every route of the webhook (the first byte
//! picks the route), through the axum router as the HTTPS server calls it.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use scm_webhook::{AdmissionSettings, Metrics, NoPodSink, Route, Webhook};
use tower::ServiceExt;

struct Env {
    rt: tokio::runtime::Runtime,
    webhook: Webhook,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut settings =
            AdmissionSettings::new(scm_spiffe::TrustDomain::parse("example.org").unwrap(), "cluster1");
        settings.cluster_domain = "cluster.local".into();
        let webhook = Webhook::new(settings, Arc::new(NoPodSink), Metrics::unregistered().unwrap());
        Env { rt, webhook }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let route = Route::ALL[pick as usize % Route::ALL.len()];
    let env = env();
    let req = http::Request::post(route.path())
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    env.rt.block_on(async {
        let res = env.webhook.router().oneshot(req).await.unwrap();
        let _ = res.into_body().collect().await;
    });
});
