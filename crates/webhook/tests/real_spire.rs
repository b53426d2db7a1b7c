//! The SPIRE-minted serving certificate against a REAL spire-server (v1.13.3, built by
//! `e2e/peers.sh build spire`): mint through `scm-spire-api`, serve TLS with it, verify the
//! chain against SPIRE's bundle (what `caBundle` will hold), and rotate under traffic.
//!
//! Starts its own server with `e2e/peers.sh spire-up <tempdir> scm-webhook example.org` and
//! stops it on drop. Without the binaries the test prints a loud SKIP, unless
//! `SPIRE_TESTS_REQUIRE_PEERS` is set (as under `make test`): then it fails.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use common::{Conn, connector_with_roots, serial, valid_review};
use rustls_pki_types::{CertificateDer, ServerName};
use scm_spiffe::TrustDomain;
use scm_spire_api::{Client, ClientOptions};
use scm_testkit::{SpireServer, require_peers};
use scm_webhook::cabundle::BundleSource;
use scm_webhook::{
    AdmissionSettings, CertManager, CertManagerParams, CertResolver, Metrics, NoPodSink, Route, Server, ServerConfig,
    Webhook,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const NAME: &str = "scm-webhook";

/// A TLS client trusting exactly SPIRE's X.509 authorities (parsed back from the PEM that
/// the caBundle manager would write into caBundle).
fn client_trusting(pem: &str) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    assert!(!roots.is_empty());
    connector_with_roots(roots, &[b"http/1.1"])
}

async fn connect(addr: std::net::SocketAddr, tls: &tokio_rustls::TlsConnector) -> (Conn, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS verification against SPIRE's bundle");
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    (Conn::H1(send), serial(&leaf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spire_minted_certificate_serves_and_rotates() {
    if !require_peers("real_spire", &["spire"]) {
        return;
    }
    let server = SpireServer::start(NAME, "example.org");
    let client = Client::connect_lazy(format!("unix://{}", server.socket()), ClientOptions::default()).unwrap();
    client.wait_ready(Duration::from_secs(30)).await.unwrap();
    let client = Arc::new(client);

    let metrics = Metrics::unregistered().unwrap();
    let resolver = Arc::new(CertResolver::with_metrics(&metrics));
    let cancel = CancellationToken::new();
    let mut params = CertManagerParams::new(TrustDomain::parse("example.org").unwrap());
    // Short TTL so a rotation happens within the test: < 1 h ⇒ re-mint at half-life.
    params.ttl = Duration::from_secs(20);
    // localhost (DNS SAN, kept by SPIRE), a service name, and 127.0.0.1 (IP SAN, dropped by
    // SPIRE: the manager must neither fail nor re-mint in a loop because of it).
    let hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned(), "scm-webhook.spire-system.svc".to_owned()];
    let (_hosts_tx, hosts_rx) = watch::channel(Some(hosts));
    let handle = CertManager::spawn(params, client.clone(), hosts_rx, resolver.clone(), cancel.clone());
    assert!(tokio::time::timeout(Duration::from_secs(30), handle.wait_minted()).await.unwrap());
    let first = resolver.info().unwrap();
    assert_eq!(first.uris, vec!["spiffe://example.org/spire-controller-manager-webhook".to_owned()]);
    assert_eq!(first.dns_names, vec!["localhost".to_owned(), "scm-webhook.spire-system.svc".to_owned()]);
    let lifetime = first.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(lifetime <= Duration::from_secs(21), "TTL 20s requested, got {lifetime:?}");
    eprintln!(
        "real_spire: first SVID serial {} lifetime {lifetime:?}, IP SANs kept: {:?}",
        first.serial, first.ip_addresses
    );

    let bundle = BundleSource::get_bundle(client.as_ref()).await.unwrap();
    let tls = client_trusting(&bundle.x509_authorities_pem());

    let webhook = Webhook::new(
        AdmissionSettings::new(TrustDomain::parse("example.org").unwrap(), "c1"),
        Arc::new(NoPodSink),
        Metrics::unregistered().unwrap(),
    );
    let srv =
        Server::bind(ServerConfig { addr: "127.0.0.1:0".parse().unwrap(), ..Default::default() }, resolver.clone())
            .await
            .unwrap();
    let addr = srv.local_addr().unwrap();
    let serving = tokio::spawn(srv.serve(webhook.router(), cancel.clone()));

    let (mut conn, s) = connect(addr, &tls).await;
    assert_eq!(s, first.serial);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match conn.post(Route::ValidateClusterSPIFFEID.path(), valid_review()).await {
                    Ok((200, _)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, failed)
        })
    };

    let mut minted = handle.subscribe();
    tokio::time::timeout(
        Duration::from_secs(40),
        minted.wait_for(|i| i.as_ref().is_some_and(|i| i.serial != first.serial)),
    )
    .await
    .expect("no rotation within 40 s")
    .unwrap();
    let second = resolver.info().unwrap();
    let (mut fresh, s) = connect(addr, &tls).await;
    assert_eq!(s, second.serial, "a new connection gets the rotated SVID");
    assert_eq!(fresh.post(Route::ObservePod.path(), valid_review()).await.unwrap().0, 200);

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    assert!(failed.is_empty(), "requests failed across the rotation: {failed:?}");
    assert!(ok > 20, "too little traffic: {ok}");
    // One mint plus one rotation (not a loop caused by the dropped IP SAN).
    let rotations = metrics.certificate_rotations.get();
    assert!((2.0..=3.0).contains(&rotations), "unexpected number of mints: {rotations}");

    cancel.cancel();
    serving.await.unwrap().unwrap();
    handle.task.await.unwrap();
    drop(server);
}
