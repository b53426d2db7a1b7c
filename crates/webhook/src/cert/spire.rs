//! Serving certificate minted by SPIRE, as upstream's `pkg/webhookmanager` does.
//!
//! Every `check_interval` (1 s) the manager decides whether to mint: never minted; the
//! certificate expired or "expires soon" ([`super::expires_soon`], lifetime measured from
//! the local mint time); or the set of host names changed. A mint generates a fresh ECDSA
//! P-256 key, sends a CSR with the URI SAN `spiffe://<td>/spire-controller-manager-webhook`
//! and the host names as SANs to `SVID.MintX509SVID` with the configured TTL (24 h), and
//! swaps the result into the [`CertResolver`]. Failures back off (doubling, up to
//! `max_backoff`, 1 min), the current certificate stays in use meanwhile.
//!
//! Host names come from a `watch` channel (`None` = not known yet, do not mint): usually
//! [`crate::cabundle::CaBundleHandle::hosts`], which derives them from the webhook
//! configurations (`<svc>.<ns>.svc` for service references, the URL host for URL
//! references); a test or a static setup can pass a fixed `watch::channel(Some(..))`.
//! A host that parses as an IP address is requested as an IP SAN; whether SPIRE keeps it
//! is SPIRE's business (see the crate README), so prefer `localhost` in URL-style
//! configurations.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use scm_spiffe::TrustDomain;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{CertInfo, CertResolver, ServingCert, expires_soon};

/// Boxed error of the SPIRE traits (whatever the client's error type is).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The SPIRE call the certificate manager needs (`svid.v1.SVID/MintX509SVID`).
pub trait SvidMinter: Send + Sync + 'static {
    /// Mints an X509-SVID for the DER PKCS#10 `csr_der`; returns the chain (DER, leaf first).
    fn mint_x509_svid(&self, csr_der: Vec<u8>, ttl: Duration) -> BoxFuture<'_, Result<Vec<Vec<u8>>, BoxError>>;
}

/// Path of the webhook's SPIFFE ID (upstream's).
pub const WEBHOOK_ID_PATH: &str = "/spire-controller-manager-webhook";

/// Parameters of [`CertManager::spawn`].
#[derive(Debug, Clone)]
pub struct CertManagerParams {
    pub trust_domain: TrustDomain,
    /// Requested SVID TTL (upstream: 24 h; SPIRE may cap it). Short values make rotation
    /// observable in tests.
    pub ttl: Duration,
    /// How often to decide whether to (re-)mint (upstream: 1 s).
    pub check_interval: Duration,
    /// Upper bound of the retry backoff after a failed mint (upstream: 1 min).
    pub max_backoff: Duration,
}

impl CertManagerParams {
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            ttl: Duration::from_secs(24 * 3600),
            check_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Mints and rotates the serving certificate from SPIRE. See the module docs.
pub struct CertManager;

/// Returned by [`CertManager::spawn`].
pub struct CertManagerHandle {
    pub task: JoinHandle<()>,
    minted: watch::Receiver<Option<CertInfo>>,
}

impl CertManagerHandle {
    /// The certificate minted last (`None` before the first mint). Changes on every mint.
    pub fn subscribe(&self) -> watch::Receiver<Option<CertInfo>> {
        self.minted.clone()
    }

    /// Waits for the first successful mint; false if the manager stopped first.
    pub async fn wait_minted(&self) -> bool {
        let mut rx = self.minted.clone();
        rx.wait_for(Option::is_some).await.is_ok()
    }
}

impl CertManager {
    /// Starts the manager on the current runtime; it stops when `cancel` fires.
    pub fn spawn(
        params: CertManagerParams,
        minter: Arc<dyn SvidMinter>,
        hosts: watch::Receiver<Option<Vec<String>>>,
        resolver: Arc<CertResolver>,
        cancel: CancellationToken,
    ) -> CertManagerHandle {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(run(params, minter, hosts, resolver, cancel, tx));
        CertManagerHandle { task, minted: rx }
    }
}

struct Minted {
    hosts: Vec<String>,
    minted_at: SystemTime,
    not_after: SystemTime,
}

async fn run(
    params: CertManagerParams,
    minter: Arc<dyn SvidMinter>,
    mut hosts_rx: watch::Receiver<Option<Vec<String>>>,
    resolver: Arc<CertResolver>,
    cancel: CancellationToken,
    minted_tx: watch::Sender<Option<CertInfo>>,
) {
    let mut state: Option<Minted> = None;
    let mut backoff: Option<Duration> = None;
    let mut hosts_open = true;
    loop {
        let hosts = normalize_hosts(hosts_rx.borrow_and_update().clone());
        if let Some(hosts) = hosts {
            match mint_reason(state.as_ref(), &hosts, SystemTime::now()) {
                None => backoff = None,
                Some(reason) => {
                    tracing::info!(reason, ?hosts, "minting webhook serving certificate from SPIRE");
                    match mint(&params, minter.as_ref(), &hosts).await {
                        Ok(cert) => {
                            let info = cert.info.clone();
                            warn_dropped_sans(&hosts, &info);
                            let minted_at = SystemTime::now();
                            state = Some(Minted { hosts, minted_at, not_after: info.not_after });
                            resolver.set(cert);
                            minted_tx.send_replace(Some(info));
                            backoff = None;
                        }
                        Err(err) => {
                            let next = backoff.map_or(params.check_interval.max(Duration::from_secs(1)), |b| {
                                (b * 2).min(params.max_backoff)
                            });
                            tracing::error!(%err, retry_in = ?next, "minting webhook serving certificate failed");
                            backoff = Some(next);
                        }
                    }
                }
            }
        }
        let wait = backoff.unwrap_or(params.check_interval);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            changed = hosts_rx.changed(), if hosts_open && backoff.is_none() => {
                if changed.is_err() {
                    hosts_open = false; // keep the last value; keep rotating
                }
            }
        }
    }
}

/// SPIRE keeps a CSR's DNS SANs but drops IP SANs (checked against spire-server 1.13):
/// say so once per mint instead of letting TLS fail mysteriously later.
fn warn_dropped_sans(hosts: &[String], info: &CertInfo) {
    let missing: Vec<&str> = hosts
        .iter()
        .filter(|h| match h.parse::<IpAddr>() {
            Ok(ip) => !info.ip_addresses.contains(&ip),
            Err(_) => !info.dns_names.iter().any(|d| d.eq_ignore_ascii_case(h)),
        })
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "the minted certificate lacks some requested names (SPIRE drops IP SANs); clients calling those names will fail TLS verification — use a DNS name such as localhost in URL-style webhook configurations"
        );
    }
}

fn normalize_hosts(hosts: Option<Vec<String>>) -> Option<Vec<String>> {
    hosts.map(|mut h| {
        h.retain(|s| !s.is_empty());
        h.sort();
        h.dedup();
        h
    })
}

/// Why a (re-)mint is due, or `None`.
fn mint_reason(state: Option<&Minted>, hosts: &[String], now: SystemTime) -> Option<&'static str> {
    let Some(m) = state else {
        return Some("initializing");
    };
    let Ok(remaining) = m.not_after.duration_since(now) else {
        return Some("expired");
    };
    if m.hosts != hosts {
        return Some("host names changed");
    }
    let lifetime = m.not_after.duration_since(m.minted_at).unwrap_or_default();
    if expires_soon(lifetime, remaining) {
        return Some("expires soon");
    }
    None
}

/// Builds the key and CSR, calls SPIRE, and pairs the returned chain with the key.
async fn mint(params: &CertManagerParams, minter: &dyn SvidMinter, hosts: &[String]) -> Result<ServingCert, BoxError> {
    let (key, csr) = build_csr(&params.trust_domain, hosts)?;
    let chain = minter.mint_x509_svid(csr, params.ttl).await?;
    let chain: Vec<CertificateDer<'static>> = chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(ServingCert::from_der(chain, key)?)
}

/// A fresh P-256 key and a DER CSR carrying the webhook's SPIFFE ID and `hosts` as SANs.
pub fn build_csr(trust_domain: &TrustDomain, hosts: &[String]) -> Result<(rcgen::KeyPair, Vec<u8>), BoxError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let id = trust_domain.id_with_path(WEBHOOK_ID_PATH)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names.push(rcgen::SanType::URI(id.as_str().try_into()?));
    for host in hosts {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(host.as_str().try_into()?),
        };
        params.subject_alt_names.push(san);
    }
    let csr = params.serialize_request(&key)?;
    Ok((key, csr.der().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(hosts: &[&str], lifetime_s: u64, age_s: u64) -> (Minted, SystemTime) {
        let minted_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let m = Minted {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            minted_at,
            not_after: minted_at + Duration::from_secs(lifetime_s),
        };
        (m, minted_at + Duration::from_secs(age_s))
    }

    #[test]
    fn mint_reasons() {
        let hosts = vec!["svc.ns.svc".to_owned()];
        assert_eq!(mint_reason(None, &hosts, SystemTime::now()), Some("initializing"));
        let (m, now) = minted(&["svc.ns.svc"], 86_400, 3_600);
        assert_eq!(mint_reason(Some(&m), &hosts, now), None);
        assert_eq!(mint_reason(Some(&m), &["other.ns.svc".to_owned()], now), Some("host names changed"));
        let (m, now) = minted(&["svc.ns.svc"], 86_400, 86_400 - 29 * 60);
        assert_eq!(mint_reason(Some(&m), &hosts, now), Some("expires soon"));
        let (m, now) = minted(&["svc.ns.svc"], 60, 61);
        assert_eq!(mint_reason(Some(&m), &hosts, now), Some("expired"));
        let (m, now) = minted(&["svc.ns.svc"], 60, 29);
        assert_eq!(mint_reason(Some(&m), &hosts, now), None);
        let (m, now) = minted(&["svc.ns.svc"], 60, 31);
        assert_eq!(mint_reason(Some(&m), &hosts, now), Some("expires soon"));
    }

    #[test]
    fn csr_carries_the_sans() {
        let td = TrustDomain::parse("example.org").unwrap();
        let hosts = vec!["svc.ns.svc".to_owned(), "localhost".to_owned(), "127.0.0.1".to_owned()];
        let (_key, der) = build_csr(&td, &hosts).unwrap();
        use x509_parser::prelude::FromDer;
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        let mut found = Vec::new();
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    found.push(format!("{n}"));
                }
            }
        }
        let all = found.join(" ");
        assert!(all.contains("spiffe://example.org/spire-controller-manager-webhook"), "{all}");
        assert!(all.contains("svc.ns.svc"), "{all}");
        assert!(all.contains("localhost"), "{all}");
        assert!(all.contains("IPAddress(7f:00:00:01)"), "{all}");
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(
            normalize_hosts(Some(vec!["b".into(), "a".into(), "b".into(), "".into()])),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(normalize_hosts(None), None);
    }
}
