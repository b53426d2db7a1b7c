//! Certificate sources: SPIRE-style minting with rotation (against a fake CA standing in
//! for SPIRE's MintX509SVID) and PEM files with hot reload.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestCa, connect, connector, serial, valid_review};
use futures::future::BoxFuture;
use scm_spiffe::TrustDomain;
use scm_webhook::cert::spire::BoxError;
use scm_webhook::{
    AdmissionSettings, CertManager, CertManagerParams, CertResolver, FileCertParams, FileCertSource, Metrics,
    NoPodSink, Route, Server, ServerConfig, SvidMinter, Webhook,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Signs CSRs like SPIRE's MintX509SVID would (SANs from the CSR, requested TTL).
struct FakeSpire {
    ca: TestCa,
    calls: AtomicUsize,
    fail_first: usize,
    requested_ttl: std::sync::Mutex<Vec<Duration>>,
}

impl SvidMinter for FakeSpire {
    fn mint_x509_svid(&self, csr_der: Vec<u8>, ttl: Duration) -> BoxFuture<'_, Result<Vec<Vec<u8>>, BoxError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            self.requested_ttl.lock().unwrap().push(ttl);
            if n < self.fail_first {
                return Err("spire unavailable".into());
            }
            Ok(self.ca.sign_csr(&csr_der, ttl))
        })
    }
}

async fn wait_for<T>(rx: &mut watch::Receiver<T>, what: &str, f: impl FnMut(&T) -> bool) {
    tokio::time::timeout(Duration::from_secs(15), rx.wait_for(f))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_certificate_rotates_under_traffic_without_failures() {
    let spire = Arc::new(FakeSpire {
        ca: TestCa::new("SPIRE CA"),
        calls: AtomicUsize::new(0),
        fail_first: 2,
        requested_ttl: Default::default(),
    });
    let metrics = Metrics::unregistered().unwrap();
    let resolver = Arc::new(CertResolver::with_metrics(&metrics));
    let (hosts_tx, hosts_rx) = watch::channel(None);
    let cancel = CancellationToken::new();
    let mut params = CertManagerParams::new(TrustDomain::parse("example.org").unwrap());
    params.ttl = Duration::from_secs(6);
    params.check_interval = Duration::from_millis(100);
    params.max_backoff = Duration::from_millis(300);
    let handle = CertManager::spawn(params, spire.clone(), hosts_rx, resolver.clone(), cancel.clone());

    // No host names yet: nothing minted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(spire.calls.load(Ordering::SeqCst), 0);
    assert!(!resolver.cert_loaded());

    hosts_tx.send_replace(Some(vec!["localhost".into(), "scm-webhook.spire-system.svc".into()]));
    assert!(tokio::time::timeout(Duration::from_secs(10), handle.wait_minted()).await.unwrap());
    assert!(spire.calls.load(Ordering::SeqCst) >= 3, "two failures, then a retry that succeeds");
    assert_eq!(spire.requested_ttl.lock().unwrap()[0], Duration::from_secs(6));
    let first = resolver.info().unwrap();
    assert_eq!(first.uris, vec!["spiffe://example.org/spire-controller-manager-webhook".to_owned()]);
    assert_eq!(first.dns_names, vec!["localhost".to_owned(), "scm-webhook.spire-system.svc".to_owned()]);
    assert_eq!(metrics.certificate_expiry.get() as u64, first.not_after_unix() as u64);

    // Serve with it and keep a connection busy while the certificate rotates.
    let webhook = Webhook::new(
        AdmissionSettings::new(TrustDomain::parse("example.org").unwrap(), "c1"),
        Arc::new(NoPodSink),
        Metrics::unregistered().unwrap(),
    );
    let server =
        Server::bind(ServerConfig { addr: "127.0.0.1:0".parse().unwrap(), ..Default::default() }, resolver.clone())
            .await
            .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = tokio::spawn(server.serve(webhook.router(), cancel.clone()));
    let tls = connector(&[&spire.ca], &[b"http/1.1"]);
    let (mut conn, leaf, _) = connect(addr, &tls, false).await;
    assert_eq!(serial(&leaf), first.serial);
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
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failed)
        })
    };

    // Lifetime ~6 s, under an hour: re-minted when less than half is left.
    let mut minted = handle.subscribe();
    wait_for(&mut minted, "rotation", |i| i.as_ref().is_some_and(|i| i.serial != first.serial)).await;
    let second = resolver.info().unwrap();
    assert_ne!(second.serial, first.serial);
    let remaining_at_rotation = first.not_after.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    assert!(remaining_at_rotation <= Duration::from_secs(4), "rotated too early: {remaining_at_rotation:?} left");
    let (_, leaf, _) = connect(addr, &tls, false).await;
    assert_eq!(serial(&leaf), second.serial, "new connections get the rotated certificate");

    // Host names change ⇒ re-mint with the new names, promptly.
    hosts_tx.send_replace(Some(vec!["localhost".into(), "other.spire-system.svc".into()]));
    wait_for(&mut minted, "re-mint for new host names", |i| {
        i.as_ref().is_some_and(|i| i.dns_names.contains(&"other.spire-system.svc".to_owned()))
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = traffic.await.unwrap();
    assert!(failed.is_empty(), "requests failed during rotation: {failed:?}");
    assert!(ok > 10, "too little traffic: {ok}");
    assert!(metrics.certificate_rotations.get() >= 3.0);

    cancel.cancel();
    serving.await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle.task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_reloaded_only_as_matching_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let ca = TestCa::new("files CA");
    let (cert_a, key_a) = ca.leaf_pem(&["localhost"], Duration::from_secs(3600));
    let (cert_b, key_b) = ca.leaf_pem(&["localhost", "b.example"], Duration::from_secs(7200));

    let resolver = Arc::new(CertResolver::new());
    let cancel = CancellationToken::new();
    let mut params = FileCertParams::new(&cert_path, &key_path);
    params.poll_interval = Duration::from_millis(50);

    // Files absent at start: not loaded, and not fatal.
    let task = FileCertSource::spawn(params, resolver.clone(), cancel.clone());
    assert!(!resolver.cert_loaded());
    std::fs::write(&key_path, &key_a).unwrap();
    std::fs::write(&cert_path, &cert_a).unwrap();
    let loaded = async {
        while !resolver.cert_loaded() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), loaded).await.unwrap();
    let a = resolver.info().unwrap();
    assert_eq!(a.dns_names, vec!["localhost".to_owned()]);

    // Certificate B written, key still A: refused, A stays.
    std::fs::write(&cert_path, &cert_b).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(resolver.info().unwrap().serial, a.serial, "a mismatched pair must not be swapped in");

    // Key B arrives: B is swapped in.
    std::fs::write(&key_path, &key_b).unwrap();
    let swapped = async {
        while resolver.info().unwrap().serial == a.serial {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), swapped).await.unwrap();
    let b = resolver.info().unwrap();
    assert!(b.dns_names.contains(&"b.example".to_owned()));

    // Garbage: B stays.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(resolver.info().unwrap().serial, b.serial);

    cancel.cancel();
    task.await.unwrap();
}
