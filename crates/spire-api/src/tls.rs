//! SPIFFE mTLS to the SPIRE Server API: rustls (ring) configured from an [`SvidSource`].
//!
//! - The server is authenticated as an X.509-SVID: its chain must lead to one of the
//!   current bundle's authorities (path validation for server use, no hostname check) and
//!   its URI SAN must be the expected server ID (`spiffe://<td>/spire/server`).
//! - The client presents the current SVID: [`SvidResolver`] reads the source at every
//!   handshake, so a rotated SVID is used by the next connection while the connections
//!   already open keep working (SPIRE authorizes an admin caller from the certificate of
//!   its connection without an expiry check of its own).

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::workload::SvidSource;

/// Checks that `end_entity` (with `intermediates`) chains to one of `roots` for server use
/// at `now`, and that its only URI SAN is `expected_id`.
pub fn verify_spiffe_server(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[TrustAnchor<'_>],
    expected_id: &str,
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(), rustls::Error> {
    let general = |m: String| rustls::Error::General(m);
    let cert =
        webpki::EndEntityCert::try_from(end_entity).map_err(|e| general(format!("SPIRE server certificate: {e}")))?;
    cert.verify_for_usage(algorithms.all, roots, intermediates, now, webpki::KeyUsage::server_auth(), None, None)
        .map_err(|e| general(format!("SPIRE server certificate does not chain to the trust bundle: {e}")))?;
    let ids = uri_sans(end_entity).map_err(|e| general(format!("SPIRE server certificate: {e}")))?;
    match ids.as_slice() {
        [id] if id == expected_id => Ok(()),
        [id] => Err(general(format!("SPIRE server presented {id}, expected {expected_id}"))),
        [] => Err(general(format!("SPIRE server certificate has no SPIFFE ID (expected {expected_id})"))),
        more => {
            Err(general(format!("SPIRE server certificate has {} URI SANs (expected only {expected_id})", more.len())))
        }
    }
}

/// The URI SANs of a certificate.
pub fn uri_sans(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? else { return Ok(Vec::new()) };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect())
}

/// Verifies the SPIRE server against the source's current bundle.
#[derive(Debug)]
struct SpiffeServerVerifier {
    source: SvidSource,
    expected_id: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let material = self
            .source
            .current()
            .ok_or_else(|| rustls::Error::General("no trust bundle from the Workload API yet".to_owned()))?;
        verify_spiffe_server(end_entity, intermediates, &material.roots, &self.expected_id, now, &self.algorithms)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Presents the source's current SVID at every handshake.
#[derive(Debug)]
pub struct SvidResolver(pub SvidSource);

impl ResolvesClientCert for SvidResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.current().map(|m| m.certified_key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The client configuration for the SPIRE server `expected_id` (HTTP/2 by ALPN).
pub fn client_config(source: SvidSource, expected_id: String) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier {
            source: source.clone(),
            expected_id,
            algorithms,
        }))
        .with_client_cert_resolver(Arc::new(SvidResolver(source)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// `host:port` of a SPIRE server address (`host` a DNS name, an IPv4 address or a bracketed
/// IPv6 address; an optional `tcp://` or `dns:///` prefix is dropped).
pub fn parse_server_address(address: &str) -> Result<(String, u16), &'static str> {
    let rest = address.strip_prefix("tcp://").or_else(|| address.strip_prefix("dns:///")).unwrap_or(address);
    if rest.contains('/') || rest.contains("://") {
        return Err("expected host:port (no scheme or path)");
    }
    let (host, port) = rest.rsplit_once(':').ok_or("expected host:port (the port is missing)")?;
    let port: u16 = port.parse().map_err(|_| "the port is not a number from 1 to 65535")?;
    if port == 0 {
        return Err("the port is not a number from 1 to 65535");
    }
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or("unclosed [ in an IPv6 address")?,
        None if host.contains(':') => return Err("an IPv6 address must be in brackets: [::1]:8081"),
        None => host,
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    Ok((host.to_owned(), port))
}

/// A tonic channel to the SPIRE server at `address` over TCP + SPIFFE mTLS. Lazy like the
/// Unix one: nothing is dialled until the first call; a failed dial or handshake fails
/// that call and is tried again at the next.
pub(crate) fn lazy_channel(
    address: &str,
    source: SvidSource,
    expected_id: String,
) -> Result<tonic::transport::Channel, crate::SpireError> {
    use hyper_util::rt::TokioIo;
    let invalid = |reason| crate::SpireError::InvalidAddress { address: address.to_owned(), reason };
    let (host, port) = parse_server_address(address).map_err(invalid)?;
    let server_name =
        ServerName::try_from(host.clone()).map_err(|_| invalid("the host is no DNS name or IP address"))?;
    let endpoint = tonic::transport::Endpoint::from_shared(format!(
        "http://{}:{port}",
        if host.contains(':') { format!("[{host}]") } else { host.clone() }
    ))
    .map_err(|_| invalid("not a valid authority"))?;
    let connector = tokio_rustls::TlsConnector::from(client_config(source, expected_id));
    Ok(endpoint.connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
        let (connector, server_name, host) = (connector.clone(), server_name.clone(), host.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    })))
}

/// What a PermissionDenied from SPIRE means for a caller on mTLS: its SVID's entry is no admin.
pub fn admin_hint(spiffe_id: &str) -> String {
    format!(
        "the SPIRE server refused the X.509-SVID {spiffe_id}: its registration entry needs admin: true \
         (e.g. spire-server entry create -admin -spiffeID {spiffe_id} -parentID <agent ID> -selector <...>), \
         or the server's admin_ids must list it"
    )
}
