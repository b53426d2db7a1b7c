//! The serving certificate: an in-memory resolver that can be swapped atomically, and the
//! two ways of filling it.
//!
//! - [`CertResolver`] implements rustls' `ResolvesServerCert` over an `ArcSwap`, so a
//!   rotation is one atomic store: handshakes after it get the new certificate, sessions
//!   already established keep theirs, and no connection is dropped.
//! - [`spire::CertManager`] mints the certificate from SPIRE (upstream's behaviour) and
//!   rotates it before expiry.
//! - [`files::FileCertSource`] loads a PEM certificate and key from files and reloads them
//!   when they change (for clusters that issue webhook certificates another way).

pub mod files;
pub mod spire;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;

/// Why a certificate/key pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate in the chain")]
    EmptyChain,
    #[error("certificate PEM: {0}")]
    CertPem(String),
    #[error("private key PEM: {0}")]
    KeyPem(String),
    #[error("certificate: {0}")]
    X509(String),
    #[error("private key does not fit the certificate or is unsupported: {0}")]
    Key(#[from] rustls::Error),
}

/// What is known about a certificate in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// When this process loaded (or minted) it; upstream measures the lifetime from here.
    pub loaded_at: SystemTime,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    /// Hex serial number of the leaf.
    pub serial: String,
}

impl CertInfo {
    /// Parses the leaf certificate (DER).
    pub fn from_leaf(der: &[u8]) -> Result<Self, CertError> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| CertError::X509(e.to_string()))?;
        let to_time = |t: x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            if secs >= 0 { UNIX_EPOCH + Duration::from_secs(secs as u64) } else { UNIX_EPOCH }
        };
        let mut info = CertInfo {
            not_before: to_time(cert.validity().not_before),
            not_after: to_time(cert.validity().not_after),
            loaded_at: SystemTime::now(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            serial: cert.raw_serial_as_string(),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => info.dns_names.push((*d).to_owned()),
                    GeneralName::URI(u) => info.uris.push((*u).to_owned()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => info.ip_addresses.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                        16 => info.ip_addresses.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        Ok(info)
    }

    /// Unix seconds of NotAfter.
    pub fn not_after_unix(&self) -> f64 {
        self.not_after.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }
}

/// A certificate chain with its private key, checked to belong together.
#[derive(Clone, Debug)]
pub struct ServingCert {
    pub(crate) key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

impl ServingCert {
    /// From a DER chain (leaf first) and a DER private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_der(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, CertError> {
        let leaf = chain.first().ok_or(CertError::EmptyChain)?;
        let info = CertInfo::from_leaf(leaf)?;
        let key = CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())?;
        Ok(Self { key: Arc::new(key), info })
    }

    /// From PEM text: every `CERTIFICATE` block of `cert_pem` (leaf first) and the first
    /// private key of `key_pem`.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CertError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::CertPem(e.to_string()))?;
        if chain.is_empty() {
            return Err(CertError::EmptyChain);
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::KeyPem(e.to_string()))?;
        Self::from_der(chain, key)
    }

    /// The DER chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }
}

struct Current {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

/// rustls certificate resolver holding the serving certificate in an `ArcSwap`.
///
/// Share one `Arc<CertResolver>` between the TLS server and whatever fills it
/// ([`spire::CertManager`], [`files::FileCertSource`], or a test calling [`Self::set`]).
/// Until a certificate is set, handshakes fail (no certificate to offer) and
/// [`Self::cert_loaded`] is false: gate readiness on it.
pub struct CertResolver {
    current: ArcSwapOption<Current>,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver").field("info", &self.info()).finish()
    }
}

impl Default for CertResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl CertResolver {
    /// An empty resolver without metrics.
    pub fn new() -> Self {
        Self { current: ArcSwapOption::empty(), metrics: None }
    }

    /// An empty resolver that records expiry and rotations in `metrics`.
    pub fn with_metrics(metrics: &Metrics) -> Self {
        Self { current: ArcSwapOption::empty(), metrics: Some(metrics.clone()) }
    }

    /// Swaps in `cert` for every handshake from now on. Established connections are not
    /// touched.
    pub fn set(&self, cert: ServingCert) {
        if let Some(m) = &self.metrics {
            m.certificate_expiry.set(cert.info.not_after_unix());
            m.certificate_rotations.inc();
        }
        tracing::info!(
            serial = %cert.info.serial,
            not_after = %fmt_time(cert.info.not_after),
            dns_names = ?cert.info.dns_names,
            uris = ?cert.info.uris,
            "webhook serving certificate loaded"
        );
        self.current.store(Some(Arc::new(Current { key: cert.key, info: cert.info })));
    }

    /// True once a certificate has been set.
    pub fn cert_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// The certificate in use, if any.
    pub fn info(&self) -> Option<CertInfo> {
        self.current.load().as_ref().map(|c| c.info.clone())
    }

    /// A rustls server configuration (TLS 1.2 and 1.3, ring, ALPN h2 and http/1.1) that
    /// resolves certificates through `resolver`.
    pub fn server_config(resolver: Arc<CertResolver>) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .with_no_client_auth()
                .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // No session resumption: a resumed session skips the certificate, so a client would
        // keep "seeing" (and trusting) a rotated-out certificate on new connections. Full
        // handshakes cost little at admission-webhook connection rates.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(config)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().map(|c| c.key.clone())
    }
}

pub(crate) fn fmt_time(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}s since epoch", d.as_secs()),
        Err(_) => "before epoch".into(),
    }
}

/// Upstream's "expires soon" rule (`pkg/webhookmanager/manager.go`): with `lifetime` =
/// NotAfter − the time the certificate was obtained, renew when the time left is under
/// 7 d (lifetime > 30 d), 3.5 d (> 7 d), 12 h (> 1 d), 30 min (> 1 h), else half the lifetime.
pub fn expires_soon(lifetime: Duration, remaining: Duration) -> bool {
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;
    let threshold = if lifetime > Duration::from_secs(30 * DAY) {
        Duration::from_secs(7 * DAY)
    } else if lifetime > Duration::from_secs(7 * DAY) {
        Duration::from_secs(7 * DAY / 2)
    } else if lifetime > Duration::from_secs(DAY) {
        Duration::from_secs(12 * HOUR)
    } else if lifetime > Duration::from_secs(HOUR) {
        Duration::from_secs(HOUR / 2)
    } else {
        lifetime / 2
    };
    remaining < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;
    const D: u64 = 24 * H;

    #[test]
    fn expires_soon_thresholds() {
        let s = Duration::from_secs;
        // (lifetime, remaining, expected)
        let table = [
            (s(90 * D), s(8 * D), false),
            (s(90 * D), s(7 * D - 1), true),
            (s(30 * D), s(4 * D), false), // 30 d is not > 30 d: 3.5 d rule
            (s(30 * D), s(3 * D), true),
            (s(10 * D), s(84 * H), false),
            (s(10 * D), s(84 * H - 1), true),
            (s(2 * D), s(12 * H), false),
            (s(2 * D), s(12 * H - 1), true),
            (s(24 * H - 5), s(31 * 60), false), // a 24 h SVID, minted a little late: 30 min rule
            (s(24 * H - 5), s(29 * 60), true),
            (s(H), s(31 * 60), false), // 1 h is not > 1 h: half-life rule
            (s(H), s(29 * 60), true),
            (s(60), s(31), false),
            (s(60), s(29), true),
        ];
        for (lifetime, remaining, want) in table {
            assert_eq!(expires_soon(lifetime, remaining), want, "lifetime {lifetime:?} remaining {remaining:?}");
        }
    }

    #[test]
    fn serving_cert_from_pem_and_mismatch() {
        let a = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example".into()]).unwrap();
        let ok = ServingCert::from_pem(a.cert.pem().as_bytes(), a.signing_key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(ok.info.dns_names, vec!["a.example".to_owned()]);
        let mismatch = ServingCert::from_pem(a.cert.pem().as_bytes(), b.signing_key.serialize_pem().as_bytes());
        assert!(matches!(mismatch, Err(CertError::Key(_))), "{mismatch:?}");
        assert!(matches!(
            ServingCert::from_pem(b"", a.signing_key.serialize_pem().as_bytes()),
            Err(CertError::EmptyChain)
        ));
        assert!(ServingCert::from_pem(a.cert.pem().as_bytes(), b"garbage").is_err());

        let resolver = CertResolver::new();
        assert!(!resolver.cert_loaded());
        resolver.set(ok);
        assert!(resolver.cert_loaded());
        assert_eq!(resolver.info().unwrap().dns_names, vec!["a.example".to_owned()]);
    }
}
