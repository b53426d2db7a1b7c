//! The SPIRE-minted serving certificate against a REAL spire-server (v1.13.3, built by
//! `e2e/peers.sh build spire`): mint through `scm-spire-api`, serve TLS with it, verify the
//! chain against SPIRE's bundle (what `caBundle` will hold), and rotate under traffic.
//!
//! Starts its own server with `e2e/peers.sh spire-up <tempdir> scm-webhook example.org` and
//! stops it on drop. Without the binaries the test prints a loud SKIP, unless
//! `SPIRE_TESTS_REQUIRE_PEERS` is set (as under `make test`): then it fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use common::{Conn, serial, valid_review};
use rustls_pki_types::{CertificateDer, ServerName};
use scm_spiffe::TrustDomain;
use scm_spire_api::{Client, ClientOptions};
use scm_webhook::cabundle::BundleSource;
use scm_webhook::{
    AdmissionSettings, CertManager, CertManagerParams, CertResolver, Metrics, NoPodSink, Route,
    Server, ServerConfig, Webhook,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const NAME: &str = "scm-webhook";

fn peers_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e/peers.sh")
}

struct SpireServer {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl SpireServer {
    fn start() -> Option<Self> {
        let script = peers_script();
        let required = std::env::var_os("SPIRE_TESTS_REQUIRE_PEERS").is_some_and(|v| !v.is_empty());
        let built = script.exists()
            && Command::new("bash")
                .arg(&script)
                .args(["path", "spire"])
                .output()
                .is_ok_and(|o| o.status.success());
        if !built {
            let why = "spire-server is not built (run: e2e/peers.sh build spire)";
            if required {
                panic!("SPIRE_TESTS_REQUIRE_PEERS is set but {why}");
            }
            eprintln!(
                "\n{bar}\nSKIPPED real_spire: {why}\n{bar}\n",
                bar = "!".repeat(78)
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("scm-webhook.")
            .tempdir_in("/tmp")
            .unwrap();
        let out = Command::new("bash")
            .arg(&script)
            .args([
                "spire-up",
                dir.path().to_str().unwrap(),
                NAME,
                "example.org",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "peers.sh spire-up failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = parse_env(&std::fs::read_to_string(dir.path().join(NAME).join("env")).unwrap());
        Some(Self { dir, env })
    }
}

impl Drop for SpireServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(peers_script())
            .args(["spire-down", self.dir.path().to_str().unwrap(), NAME])
            .status();
    }
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let mut out = String::new();
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    '\'' => {}
                    c => out.push(c),
                }
            }
            (k.to_owned(), out)
        })
        .collect()
}

/// A TLS client trusting exactly SPIRE's X.509 authorities (parsed back from the PEM that
/// the caBundle manager would write into caBundle).
fn client_trusting(pem: &str) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    assert!(!roots.is_empty());
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn connect(addr: std::net::SocketAddr, tls: &tokio_rustls::TlsConnector) -> (Conn, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS verification against SPIRE's bundle");
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    (Conn::H1(send), serial(&leaf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spire_minted_certificate_serves_and_rotates() {
    let Some(server) = SpireServer::start() else {
        return;
    };
    let socket = server.env["SPIRE_SERVER_SOCKET"].clone();
    let client =
        Client::connect_lazy(format!("unix://{socket}"), ClientOptions::default()).unwrap();
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
    let hosts = vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "scm-webhook.spire-system.svc".to_owned(),
    ];
    let (_hosts_tx, hosts_rx) = watch::channel(Some(hosts));
    let handle = CertManager::spawn(
        params,
        client.clone(),
        hosts_rx,
        resolver.clone(),
        cancel.clone(),
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(30), handle.wait_minted())
            .await
            .unwrap()
    );
    let first = resolver.info().unwrap();
    assert_eq!(
        first.uris,
        vec!["spiffe://example.org/spire-controller-manager-webhook".to_owned()]
    );
    assert_eq!(
        first.dns_names,
        vec![
            "localhost".to_owned(),
            "scm-webhook.spire-system.svc".to_owned()
        ]
    );
    let lifetime = first.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(
        lifetime <= Duration::from_secs(21),
        "TTL 20s requested, got {lifetime:?}"
    );
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
    let srv = Server::bind(
        ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
        resolver.clone(),
    )
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
                match conn
                    .post(Route::ValidateClusterSPIFFEID.path(), valid_review())
                    .await
                {
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
    assert_eq!(
        fresh
            .post(Route::ObservePod.path(), valid_review())
            .await
            .unwrap()
            .0,
        200
    );

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    assert!(
        failed.is_empty(),
        "requests failed across the rotation: {failed:?}"
    );
    assert!(ok > 20, "too little traffic: {ok}");
    // One mint plus one rotation (not a loop caused by the dropped IP SAN).
    let rotations = metrics.certificate_rotations.get();
    assert!(
        (2.0..=3.0).contains(&rotations),
        "unexpected number of mints: {rotations}"
    );

    cancel.cancel();
    serving.await.unwrap().unwrap();
    handle.task.await.unwrap();
    drop(server);
}
