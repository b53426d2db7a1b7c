//! The real TLS server: certificate swap without dropping a connection, ALPN, drain.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Conn, TestCa, connect, connector, serial, valid_review};
use scm_spiffe::TrustDomain;
use scm_webhook::{AdmissionSettings, CertResolver, Metrics, NoPodSink, Route, Server, ServerConfig, Webhook};
use tokio_util::sync::CancellationToken;

fn webhook() -> Webhook {
    let settings = AdmissionSettings::new(TrustDomain::parse("example.org").unwrap(), "c1");
    Webhook::new(settings, Arc::new(NoPodSink), Metrics::unregistered().unwrap())
}

async fn start(
    resolver: Arc<CertResolver>,
    router: axum::Router,
) -> (std::net::SocketAddr, CancellationToken, tokio::task::JoinHandle<std::io::Result<()>>) {
    let config = ServerConfig { addr: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
    let server = Server::bind(config, resolver).await.unwrap();
    let addr = server.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.serve(router, cancel.clone()));
    (addr, cancel, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_swap_keeps_connections_and_new_ones_see_the_new_certificate() {
    let (ca_a, ca_b) = (TestCa::new("CA A"), TestCa::new("CA B"));
    let cert_a = ca_a.leaf(&["localhost", "127.0.0.1"]);
    let cert_b = ca_b.leaf(&["localhost", "127.0.0.1"]);
    let (serial_a, serial_b) = (cert_a.info.serial.clone(), cert_b.info.serial.clone());
    let metrics = Metrics::unregistered().unwrap();
    let resolver = Arc::new(CertResolver::with_metrics(&metrics));
    resolver.set(cert_a);
    let (addr, cancel, task) = start(resolver.clone(), webhook().router()).await;
    let tls_h1 = connector(&[&ca_a, &ca_b], &[b"http/1.1"]);
    let tls_h2 = connector(&[&ca_a, &ca_b], &[b"h2", b"http/1.1"]);
    let tls_for = |h2: bool| if h2 { &tls_h2 } else { &tls_h1 };
    let path = Route::ValidateClusterSPIFFEID.path();

    // Two kept-alive connections on certificate A, one per protocol, with requests running
    // continuously while the certificate is swapped.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for h2 in [false, true] {
        let (mut conn, leaf, alpn) = connect(addr, tls_for(h2), h2).await;
        assert_eq!(serial(&leaf), serial_a);
        assert_eq!(alpn.as_deref(), Some(if h2 { &b"h2"[..] } else { &b"http/1.1"[..] }));
        let (stop, ok) = (stop.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match conn.post(path, valid_review()).await {
                    Ok((200, body)) => {
                        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        assert_eq!(v["response"]["allowed"], true, "{v}");
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((status, body)) => failures.push(format!("{status}: {}", String::from_utf8_lossy(&body))),
                    Err(e) => failures.push(e),
                }
            }
            // Still the same connection: one more request after the swap.
            let after = conn.post(path, valid_review()).await.map(|(s, _)| s);
            (failures, after)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_swap = ok.load(Ordering::Relaxed);
    assert!(before_swap > 0);

    resolver.set(cert_b);
    assert_eq!(metrics.certificate_rotations.get(), 2.0);

    // New connections get B (both protocols), and they work.
    for h2 in [false, true] {
        let (mut conn, leaf, _) = connect(addr, tls_for(h2), h2).await;
        assert_eq!(serial(&leaf), serial_b, "new connection after the swap must see certificate B");
        assert_eq!(conn.post(path, valid_review()).await.unwrap().0, 200);
    }
    // A client trusting only A cannot connect any more; one trusting only B can.
    let only_a = connector(&[&ca_a], &[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(only_a.connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.is_err());

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let (failures, after) = w.await.unwrap();
        assert!(failures.is_empty(), "requests failed across the swap: {failures:?}");
        assert_eq!(after, Ok(200), "kept-alive connection stopped working after the swap");
    }
    assert!(ok.load(Ordering::Relaxed) > before_swap, "no requests were served after the swap");

    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_certificate_no_handshake_then_serving_once_loaded() {
    let ca = TestCa::new("CA");
    let resolver = Arc::new(CertResolver::new());
    let (addr, cancel, task) = start(resolver.clone(), webhook().router()).await;
    let tls = connector(&[&ca], &[b"http/1.1"]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(tls.connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.is_err());
    assert!(!resolver.cert_loaded());
    resolver.set(ca.leaf(&["localhost"]));
    assert!(resolver.cert_loaded());
    let (mut conn, _, _) = connect(addr, &tls, false).await;
    assert_eq!(conn.post(Route::ObservePod.path(), valid_review()).await.unwrap().0, 200);
    cancel.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let ca = TestCa::new("CA");
    let resolver = Arc::new(CertResolver::new());
    resolver.set(ca.leaf(&["localhost"]));
    let router = webhook().router().route(
        "/slow",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            "done"
        }),
    );
    let (addr, cancel, task) = start(resolver, router).await;
    let tls = connector(&[&ca], &[b"http/1.1"]);
    let (mut conn, _, _) = connect(addr, &tls, false).await;
    let in_flight = tokio::spawn(async move { conn.post("/slow", bytes::Bytes::new()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    let (status, body) = in_flight.await.unwrap().expect("in-flight request must complete during drain");
    assert_eq!((status, &body[..]), (200, &b"done"[..]));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve must return after draining")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener must be closed after shutdown");
}

#[tokio::test]
async fn host_port_config() {
    let c = ServerConfig::with_host_port("", 9443).unwrap();
    assert_eq!(c.addr.to_string(), "0.0.0.0:9443");
    let c = ServerConfig::with_host_port("127.0.0.1", 8443).unwrap();
    assert_eq!(c.addr.to_string(), "127.0.0.1:8443");
    let c = ServerConfig::with_host_port("::1", 8443).unwrap();
    assert_eq!(c.addr.to_string(), "[::1]:8443");
    assert!(ServerConfig::with_host_port("example.org", 1).is_err());
    assert_eq!(ServerConfig::default().addr.to_string(), "0.0.0.0:9443");
    let _ = Conn::H1; // keep the helper enum referenced
}
