//! The SPIFFE Workload API client: this process's X.509-SVID and its trust domain's X.509
//! bundle, kept current from a SPIRE agent's `FetchX509SVID` stream.
//!
//! [`SvidSource::start`] spawns one task that holds the stream open (and opens it again,
//! 1 s doubling to 30 s, when it fails or ends); every message replaces the current
//! [`X509Material`] at once (an `ArcSwap`), so the TLS code in `tls.rs` always reads the
//! latest SVID and bundle without locking and without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, TrustAnchor};
use rustls::sign::CertifiedKey;
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};
use tower::service_fn;

use crate::proto::workload::{X509svidRequest, X509svidResponse, spiffe_workload_api_client::SpiffeWorkloadApiClient};

/// The metadata header every Workload API call carries (the agent refuses calls without it).
pub const WORKLOAD_API_HEADER: &str = "workload.spiffe.io";

/// Why an X.509-SVID could not be taken from the Workload API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error("invalid Workload API socket address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: &'static str },
    #[error("Workload API: {0}")]
    Stream(String),
    #[error("Workload API sent an unusable X.509-SVID: {0}")]
    Invalid(String),
    #[error("no X.509-SVID from the Workload API at {socket} within {waited:?} (last error: {last})")]
    NotYet { socket: String, waited: Duration, last: String },
}

/// One X.509-SVID with its key and the bundle of its trust domain, ready for rustls.
#[derive(Debug)]
pub struct X509Material {
    pub spiffe_id: String,
    /// The leaf and intermediates with the signing key.
    pub certified_key: Arc<CertifiedKey>,
    /// The X.509 authorities of the SVID's trust domain.
    pub roots: Vec<TrustAnchor<'static>>,
    /// The leaf's notAfter.
    pub expires_at: SystemTime,
    /// Serial number of the leaf (hex), to tell one SVID from the next.
    pub serial: String,
}

/// The splits of concatenated DER values (ASN.1 SEQUENCEs, as the Workload API sends
/// certificate chains and bundles).
pub fn split_der(mut bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes[0] != 0x30 {
            return Err(format!("expected a DER SEQUENCE, found tag {:#04x}", bytes[0]));
        }
        let (header, len) = match bytes.get(1).copied() {
            None => return Err("truncated DER header".to_owned()),
            Some(b) if b < 0x80 => (2usize, usize::from(b)),
            Some(b) => {
                let n = usize::from(b & 0x7f);
                if n == 0 || n > 4 {
                    return Err(format!("unsupported DER length of {n} bytes"));
                }
                let digits = bytes.get(2..2 + n).ok_or("truncated DER length")?;
                (2 + n, digits.iter().fold(0usize, |acc, d| (acc << 8) | usize::from(*d)))
            }
        };
        let total = header.checked_add(len).ok_or("DER length overflows")?;
        if total > bytes.len() {
            return Err(format!("DER value of {total} bytes, only {} left", bytes.len()));
        }
        out.push(&bytes[..total]);
        bytes = &bytes[total..];
    }
    Ok(out)
}

/// Builds the material of the first (default) SVID of a `FetchX509SVID` message.
pub fn material_from_response(response: &X509svidResponse) -> Result<X509Material, WorkloadError> {
    let invalid = |m: String| WorkloadError::Invalid(m);
    let svid = response.svids.first().ok_or_else(|| invalid("the response holds no SVID".to_owned()))?;
    let chain: Vec<CertificateDer<'static>> = split_der(&svid.x509_svid)
        .map_err(|e| invalid(format!("certificate chain of {}: {e}", svid.spiffe_id)))?
        .into_iter()
        .map(|c| CertificateDer::from(c.to_vec()))
        .collect();
    let leaf = chain.first().ok_or_else(|| invalid(format!("{}: empty certificate chain", svid.spiffe_id)))?;
    let (expires_at, serial) = {
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| invalid(format!("{}: leaf certificate: {e}", svid.spiffe_id)))?;
        let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
        (SystemTime::UNIX_EPOCH + Duration::from_secs(secs), cert.raw_serial_as_string())
    };
    let provider = rustls::crypto::ring::default_provider();
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.x509_svid_key.clone())))
        .map_err(|e| invalid(format!("{}: private key: {e}", svid.spiffe_id)))?;
    let mut roots = Vec::new();
    for der in split_der(&svid.bundle).map_err(|e| invalid(format!("bundle of {}: {e}", svid.spiffe_id)))? {
        let cert = CertificateDer::from(der);
        let anchor = webpki::anchor_from_trusted_cert(&cert)
            .map_err(|e| invalid(format!("bundle of {}: authority: {e}", svid.spiffe_id)))?;
        roots.push(anchor.to_owned());
    }
    if roots.is_empty() {
        return Err(invalid(format!("{}: the bundle holds no X.509 authority", svid.spiffe_id)));
    }
    Ok(X509Material {
        spiffe_id: svid.spiffe_id.clone(),
        certified_key: Arc::new(CertifiedKey::new(chain, key)),
        roots,
        expires_at,
        serial,
    })
}

/// The Unix socket path of a Workload API address: a path, `unix:///abs/path` or `unix:path`.
pub fn workload_socket_path(address: &str) -> Result<PathBuf, WorkloadError> {
    crate::client::unix_socket_path(address)
        .map_err(|reason| WorkloadError::InvalidAddress { address: address.to_owned(), reason })
}

#[derive(Debug)]
struct Inner {
    socket: PathBuf,
    current: ArcSwapOption<X509Material>,
    last_error: std::sync::Mutex<String>,
    updates: tokio::sync::watch::Sender<u64>,
    task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// The current X.509-SVID and bundle from a Workload API socket. Cheap to clone; the
/// stream stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct SvidSource {
    inner: Arc<Inner>,
}

impl SvidSource {
    /// Starts streaming from the agent at `address` (see [`workload_socket_path`]). Returns
    /// at once: the socket may not exist yet; see [`SvidSource::wait_ready`]. Must be
    /// called within a Tokio runtime.
    pub fn start(address: &str) -> Result<SvidSource, WorkloadError> {
        let socket = workload_socket_path(address)?;
        let (updates, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner {
            socket,
            current: ArcSwapOption::empty(),
            last_error: std::sync::Mutex::new("no answer yet".to_owned()),
            updates,
            task: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::downgrade(&inner)));
        *inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        Ok(SvidSource { inner })
    }

    /// A source that always holds `material` (tests, fixed identities).
    pub fn fixed(material: X509Material) -> SvidSource {
        let (updates, _) = tokio::sync::watch::channel(1);
        SvidSource {
            inner: Arc::new(Inner {
                socket: PathBuf::new(),
                current: ArcSwapOption::from_pointee(material),
                last_error: std::sync::Mutex::new(String::new()),
                updates,
                task: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Replaces the current material as a Workload API update would (tests).
    #[cfg(test)]
    pub(crate) fn replace(&self, material: X509Material) {
        self.inner.current.store(Some(Arc::new(material)));
        self.inner.updates.send_modify(|n| *n += 1);
    }

    pub fn socket(&self) -> &Path {
        &self.inner.socket
    }

    /// The latest SVID and bundle, `None` before the first message.
    pub fn current(&self) -> Option<Arc<X509Material>> {
        self.inner.current.load_full()
    }

    /// How many SVID updates have arrived so far (each rotation counts one).
    pub fn updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.updates.subscribe()
    }

    /// The latest stream error (empty when none since the last update).
    pub fn last_error(&self) -> String {
        self.inner.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until an SVID is present, at most `max_wait`.
    pub async fn wait_ready(&self, max_wait: Duration) -> Result<Arc<X509Material>, WorkloadError> {
        let mut rx = self.updates();
        let wait = async {
            loop {
                if let Some(m) = self.current() {
                    return m;
                }
                if rx.changed().await.is_err() {
                    // The sender lives in `inner`, which we hold: never reached.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(max_wait, wait).await.map_err(|_| WorkloadError::NotYet {
            socket: self.inner.socket.display().to_string(),
            waited: max_wait,
            last: self.last_error(),
        })
    }
}

async fn run(inner: Weak<Inner>) {
    let mut delay = Duration::from_secs(1);
    loop {
        let Some(socket) = inner.upgrade().map(|i| i.socket.clone()) else { return };
        let got_one = match stream_once(&inner, &socket).await {
            Ok(got) => {
                tracing::debug!(socket = %socket.display(), "Workload API stream ended; opening it again");
                got
            }
            Err((got, error)) => {
                let Some(i) = inner.upgrade() else { return };
                tracing::warn!(socket = %socket.display(), %error, "Workload API stream failed");
                *i.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error.to_string();
                got
            }
        };
        if got_one {
            delay = Duration::from_secs(1);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// One stream, until it ends or fails. Reports whether any update was applied.
async fn stream_once(inner: &Weak<Inner>, socket: &Path) -> Result<bool, (bool, WorkloadError)> {
    let path = socket.to_owned();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| (false, WorkloadError::Stream(format!("connect: {}", error_chain(&e)))))?;
    let mut client = SpiffeWorkloadApiClient::new(channel);
    let mut request = tonic::Request::new(X509svidRequest {});
    request.metadata_mut().insert(WORKLOAD_API_HEADER, tonic::metadata::MetadataValue::from_static("true"));
    let mut stream = client
        .fetch_x509svid(request)
        .await
        .map_err(|s| (false, WorkloadError::Stream(format!("FetchX509SVID: {}", status_text(&s)))))?
        .into_inner();
    let mut got = false;
    loop {
        let message = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(got),
            Err(s) => return Err((got, WorkloadError::Stream(format!("FetchX509SVID: {}", status_text(&s))))),
        };
        let Some(i) = inner.upgrade() else { return Ok(got) };
        match material_from_response(&message) {
            Ok(material) => {
                tracing::info!(
                    spiffe_id = %material.spiffe_id,
                    serial = %material.serial,
                    expires_in_s = material.expires_at.duration_since(SystemTime::now()).unwrap_or_default().as_secs(),
                    authorities = material.roots.len(),
                    "X.509-SVID from the Workload API"
                );
                i.current.store(Some(Arc::new(material)));
                i.last_error.lock().unwrap_or_else(|e| e.into_inner()).clear();
                i.updates.send_modify(|n| *n += 1);
                got = true;
            }
            // Keep the previous SVID: it may still be valid.
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a Workload API update");
                *i.last_error.lock().unwrap_or_else(|e| e.into_inner()) = e.to_string();
            }
        }
    }
}

fn status_text(s: &tonic::Status) -> String {
    let mut text = format!("code = {:?} desc = {}", s.code(), s.message());
    if s.message().is_empty() {
        text.push_str(&error_chain(s));
    }
    text
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
