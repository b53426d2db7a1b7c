//! Admission latency benchmark (not a test): serves the webhook router over TLS on
//! loopback with a development certificate and drives it at a fixed request rate over
//! kept-alive connections, then prints latency percentiles.
//!
//! ```text
//! cargo run --release -p scm-webhook --example admission_bench -- \
//!     [--rate 1000] [--seconds 10] [--connections 8] [--h2] [--cert-dir DIR]
//! ```
//!
//! `--cert-dir` uses `tls.crt`/`tls.key`/`ca.crt` from `certs/make-dev-certs.sh DIR`;
//! without it a throwaway CA and certificate are made in memory. The load is open-loop:
//! each connection sends on a fixed schedule (rate / connections per second). Two numbers
//! per request: the latency from the actual send to the complete response (what the
//! apiserver waits for), and the latency from the *scheduled* send time, which also
//! includes tokio's millisecond timer granularity and any queueing behind a slow previous
//! request on the same connection (coordinated omission shows up there). Requests alternate between the ClusterSPIFFEID
//! validation path (templates parsed and rendered), the ClusterSPIFFEID defaulting path
//! and the pod observation path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use scm_spiffe::TrustDomain;
use scm_webhook::{
    AdmissionSettings, CertResolver, Metrics, NoPodSink, Route, Server, ServerConfig, ServingCert, Webhook,
};
use tokio_util::sync::CancellationToken;

struct Args {
    rate: u64,
    seconds: u64,
    connections: usize,
    h2: bool,
    cert_dir: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args { rate: 1000, seconds: 10, connections: 8, h2: false, cert_dir: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rate" => a.rate = val().parse().expect("--rate N"),
            "--seconds" => a.seconds = val().parse().expect("--seconds N"),
            "--connections" => a.connections = val().parse().expect("--connections N"),
            "--cert-dir" => a.cert_dir = Some(val().into()),
            "--h2" => a.h2 = true,
            "-h" | "--help" => {
                println!("admission_bench [--rate N] [--seconds N] [--connections N] [--h2] [--cert-dir DIR]");
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// (serving certificate, CA PEM the client trusts).
fn dev_cert(dir: Option<&std::path::Path>) -> (ServingCert, String) {
    if let Some(dir) = dir {
        let cert = std::fs::read(dir.join("tls.crt")).expect("tls.crt");
        let key = std::fs::read(dir.join("tls.key")).expect("tls.key");
        let ca = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
        return (ServingCert::from_pem(&cert, &key).expect("usable tls.crt/tls.key"), ca);
    }
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let serving = ServingCert::from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    (serving, ca_cert.pem())
}

fn review(route: Route) -> Bytes {
    let request = match route {
        Route::ObservePod => serde_json::json!({
            "uid": "bench",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web-1", "namespace": "default", "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-1", "namespace": "default", "uid": "u1", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "i"}], "serviceAccountName": "web", "nodeName": "n1"}
            }
        }),
        _ => serde_json::json!({
            "uid": "bench",
            "kind": {"group": "spire.spiffe.io", "version": "v1alpha1", "kind": "ClusterSPIFFEID"},
            "resource": {"group": "spire.spiffe.io", "version": "v1alpha1", "resource": "clusterspiffeids"},
            "name": "web", "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": {
                "apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
                "metadata": {"name": "web", "labels": {"team": "a"}},
                "spec": {
                    "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]},
                    "dnsNameTemplates": ["{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.svc"],
                    "workloadSelectorTemplates": ["k8s:ns:{{ .PodMeta.Namespace }}"],
                    "ttl": "1h",
                    "className": "bench"
                }
            }
        }),
    };
    Bytes::from(
        serde_json::to_vec(
            &serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}),
        )
        .unwrap(),
    )
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn connect(addr: std::net::SocketAddr, tls: &tokio_rustls::TlsConnector, h2: bool) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let io = TokioIo::new(tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap());
    if h2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(c);
        Sender::H2(s)
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(c);
        Sender::H1(s)
    }
}

async fn send(s: &mut Sender, path: &str, body: Bytes) -> Result<(), String> {
    let req = http::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let res = match s {
        Sender::H1(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            s.send_request(req).await
        }
        Sender::H2(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            s.send_request(req).await
        }
    }
    .map_err(|e| e.to_string())?;
    let status = res.status();
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if status != 200 || !body.windows(14).any(|w| w == b"\"allowed\":true") {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let a = args();
    let (cert, ca_pem) = dev_cert(a.cert_dir.as_deref());
    let resolver = Arc::new(CertResolver::new());
    resolver.set(cert);
    let mut settings = AdmissionSettings::new(TrustDomain::parse("example.org").unwrap(), "bench");
    settings.class_name = "bench".into();
    let webhook = Webhook::new(settings, Arc::new(NoPodSink), Metrics::unregistered().unwrap());
    let server = Server::bind(ServerConfig { addr: "127.0.0.1:0".parse().unwrap(), ..Default::default() }, resolver)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let serving = tokio::spawn(server.serve(webhook.router(), cancel.clone()));

    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![if a.h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg));

    let routes = [Route::ValidateClusterSPIFFEID, Route::MutateClusterSPIFFEID, Route::ObservePod];
    let bodies: Vec<Bytes> = routes.iter().map(|r| review(*r)).collect();

    // Warm up every connection (handshake, first request) before measuring.
    let mut senders = Vec::new();
    for _ in 0..a.connections {
        let mut s = connect(addr, &tls, a.h2).await;
        for (r, b) in routes.iter().zip(&bodies) {
            send(&mut s, r.path(), b.clone()).await.expect("warm-up request");
        }
        senders.push(s);
    }

    let per_conn_interval = Duration::from_secs_f64(a.connections as f64 / a.rate as f64);
    let total_per_conn = (a.rate * a.seconds) as usize / a.connections;
    println!(
        "admission_bench: {} req/s for {} s over {} kept-alive {} connections (TLS, loopback); paths: {}",
        a.rate,
        a.seconds,
        a.connections,
        if a.h2 { "h2" } else { "HTTP/1.1" },
        routes.map(|r| r.path()).join(", ")
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (ci, mut s) in senders.into_iter().enumerate() {
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            // Stagger connections evenly inside one interval.
            let offset = per_conn_interval.mul_f64(ci as f64 / a.connections as f64);
            let mut lat: Vec<(usize, Duration, Duration)> = Vec::with_capacity(total_per_conn);
            let mut errors = Vec::new();
            for i in 0..total_per_conn {
                let scheduled = start + offset + per_conn_interval * i as u32;
                tokio::time::sleep_until(scheduled.into()).await;
                let ri = (ci + i) % routes.len();
                let sent = Instant::now();
                match send(&mut s, routes[ri].path(), bodies[ri].clone()).await {
                    Ok(()) => lat.push((ri, sent.elapsed(), scheduled.elapsed())),
                    Err(e) => errors.push(e),
                }
            }
            (lat, errors)
        }));
    }
    let mut all: Vec<(usize, Duration, Duration)> = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors.extend(e);
    }
    let elapsed = start.elapsed();
    cancel.cancel();
    let _ = serving.await;

    let report = |label: &str, mut v: Vec<Duration>| {
        v.sort();
        println!(
            "  {label:<58} n={:<6} p50={:>8.3}ms p90={:>8.3}ms p99={:>8.3}ms p99.9={:>8.3}ms max={:>8.3}ms",
            v.len(),
            pct(&v, 0.50).as_secs_f64() * 1e3,
            pct(&v, 0.90).as_secs_f64() * 1e3,
            pct(&v, 0.99).as_secs_f64() * 1e3,
            pct(&v, 0.999).as_secs_f64() * 1e3,
            v.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    };
    println!(
        "achieved {:.0} req/s over {:.2} s, {} errors{}",
        all.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        errors.len(),
        errors.first().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
    println!("latency from send to complete response:");
    report("all", all.iter().map(|(_, d, _)| *d).collect());
    for (ri, r) in routes.iter().enumerate() {
        report(r.path(), all.iter().filter(|(i, _, _)| *i == ri).map(|(_, d, _)| *d).collect());
    }
    println!("latency from the scheduled send time (includes ~1 ms timer granularity):");
    report("all", all.iter().map(|(_, _, d)| *d).collect());
}
