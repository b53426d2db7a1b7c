//! Serving certificate from PEM files, reloaded when they change.
//!
//! The files are polled (modification time and size of both) every `poll_interval`. When
//! either changed, both are read and parsed; the new pair is swapped in only when the
//! certificate chain and the key parse **and** the key matches the leaf, so a half-written
//! rotation (new certificate, old key) keeps the previous pair until the key arrives.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{CertError, CertResolver, ServingCert};

/// Reads and parses a certificate chain PEM file and a private key PEM file.
pub fn load_pem_files(cert_path: &Path, key_path: &Path) -> Result<ServingCert, FileCertError> {
    let cert = std::fs::read(cert_path).map_err(|e| FileCertError::Read(cert_path.to_owned(), e))?;
    let key = std::fs::read(key_path).map_err(|e| FileCertError::Read(key_path.to_owned(), e))?;
    Ok(ServingCert::from_pem(&cert, &key)?)
}

#[derive(Debug, thiserror::Error)]
pub enum FileCertError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// Parameters of [`FileCertSource::spawn`].
#[derive(Debug, Clone)]
pub struct FileCertParams {
    /// PEM certificate chain, leaf first (e.g. `tls.crt`).
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; e.g. `tls.key`).
    pub key_path: PathBuf,
    /// How often to look at the files' modification times (default 2 s).
    pub poll_interval: Duration,
}

impl FileCertParams {
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        Self { cert_path: cert_path.into(), key_path: key_path.into(), poll_interval: Duration::from_secs(2) }
    }
}

/// Keeps a [`CertResolver`] loaded from files.
pub struct FileCertSource;

impl FileCertSource {
    /// Loads the files now (an error is logged, not returned: the resolver stays empty and
    /// `cert_loaded()` false until valid files appear), then polls them until `cancel`.
    pub fn spawn(params: FileCertParams, resolver: Arc<CertResolver>, cancel: CancellationToken) -> JoinHandle<()> {
        let mut last = stamp(&params);
        match load_pem_files(&params.cert_path, &params.key_path) {
            Ok(cert) => resolver.set(cert),
            Err(err) => {
                tracing::error!(%err, "webhook certificate files not usable yet; will retry when they change")
            }
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(params.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now = stamp(&params);
                if now == last {
                    continue;
                }
                // Remember what we tried, success or not: a failed pair is retried when either
                // file changes again (e.g. the key arriving after the certificate).
                last = now;
                match load_pem_files(&params.cert_path, &params.key_path) {
                    Ok(cert) => {
                        let unchanged = resolver
                            .info()
                            .is_some_and(|i| i.serial == cert.info.serial && i.not_after == cert.info.not_after);
                        if !unchanged {
                            resolver.set(cert);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, "webhook certificate files changed but are not usable; keeping the current certificate");
                    }
                }
            }
        })
    }
}

type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

fn stamp(p: &FileCertParams) -> Stamp {
    let c = std::fs::metadata(&p.cert_path).ok()?;
    let k = std::fs::metadata(&p.key_path).ok()?;
    Some((c.modified().ok()?, c.len(), k.modified().ok()?, k.len()))
}
