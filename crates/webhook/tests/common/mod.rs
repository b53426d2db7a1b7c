//! Test helpers: throwaway CAs (rcgen), a TLS client, admission review bodies.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use scm_webhook::ServingCert;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub struct TestCa {
    pub issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Self { der: cert.der().clone(), pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A leaf for `sans` (DNS names or IPs) valid for `validity` from now; PEM chain + key.
    pub fn leaf_pem(&self, sans: &[&str], validity: Duration) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.not_before = time_now() - time::Duration::minutes(1);
        params.not_after = time_now() + validity;
        for s in sans {
            params.subject_alt_names.push(match s.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().unwrap()),
            });
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (format!("{}{}", cert.pem(), self.pem), key.serialize_pem())
    }

    pub fn leaf(&self, sans: &[&str]) -> ServingCert {
        let (c, k) = self.leaf_pem(sans, Duration::from_secs(3600));
        ServingCert::from_pem(c.as_bytes(), k.as_bytes()).unwrap()
    }

    /// What a SPIRE server does with MintX509SVID: sign the CSR's key and SANs, TTL `ttl`.
    pub fn sign_csr(&self, csr_der: &[u8], ttl: Duration) -> Vec<Vec<u8>> {
        let csr = rcgen::CertificateSigningRequestParams::from_der(&csr_der.to_vec().into()).unwrap();
        let mut csr = csr;
        csr.params.not_before = time_now() - time::Duration::seconds(1);
        csr.params.not_after = time_now() + ttl;
        let cert = csr.signed_by(&self.issuer).unwrap();
        vec![cert.der().to_vec(), self.der.to_vec()]
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

pub fn key_der(pem: &str) -> PrivateKeyDer<'static> {
    use rustls_pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

pub fn pkcs8(k: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.serialize_der()))
}

/// A TLS client trusting `cas`, offering `alpn`.
pub fn connector(cas: &[&TestCa], alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.der.clone()).unwrap();
    }
    connector_with_roots(roots, alpn)
}

/// A TLS client trusting `roots`, offering `alpn`.
pub fn connector_with_roots(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> TlsConnector {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(cfg))
}

pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Connects, handshakes, and returns the HTTP sender, the served leaf and the ALPN result.
pub async fn connect(
    addr: SocketAddr,
    tls: &TlsConnector,
    h2: bool,
) -> (Conn, CertificateDer<'static>, Option<Vec<u8>>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let (_, session) = stream.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].clone().into_owned();
    let alpn = session.alpn_protocol().map(|p| p.to_vec());
    let io = TokioIo::new(stream);
    let conn = if h2 {
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        Conn::H2(send)
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        Conn::H1(send)
    };
    (conn, leaf, alpn)
}

impl Conn {
    /// POSTs `body` to `path`; returns status and body.
    pub async fn post(&mut self, path: &str, body: Bytes) -> Result<(u16, Bytes), String> {
        let req = http::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let res = match self {
            Conn::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
            Conn::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
        }
        .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, body))
    }
}

/// A CREATE review of a valid ClusterSPIFFEID.
pub fn valid_review() -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "bench-uid",
                "kind": {"group": "spire.spiffe.io", "version": "v1alpha1", "kind": "ClusterSPIFFEID"},
                "resource": {"group": "spire.spiffe.io", "version": "v1alpha1", "resource": "clusterspiffeids"},
                "name": "web",
                "operation": "CREATE",
                "userInfo": {"username": "admin"},
                "object": {
                    "apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID",
                    "metadata": {"name": "web"},
                    "spec": {
                        "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
                        "podSelector": {"matchLabels": {"app": "web"}},
                        "ttl": "1h"
                    }
                }
            }
        }))
        .unwrap(),
    )
}

/// The serial number (hex) of a DER certificate.
pub fn serial(der: &[u8]) -> String {
    scm_webhook::CertInfo::from_leaf(der).unwrap().serial
}
