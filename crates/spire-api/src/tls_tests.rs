//! Pure checks of the mTLS pieces: DER splitting, SVID material, the server verifier and
//! server addresses (certificates from rcgen; the real agent and server are in e2e).

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, UnixTime};

use crate::proto::workload::{X509svid, X509svidResponse};
use crate::tls::{parse_server_address, verify_spiffe_server};
use crate::workload::{material_from_response, split_der};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(td: &str) -> Ca {
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        Ca { issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap() }
    }

    /// A leaf with `uris` as URI SANs: (DER, PKCS#8 key).
    fn leaf(&self, uris: &[&str]) -> (Vec<u8>, Vec<u8>) {
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.subject_alt_names = uris.iter().map(|u| SanType::URI((*u).try_into().unwrap())).collect();
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }

    fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }
}

fn algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn verify(ca: &Ca, leaf: &[u8], expected: &str) -> Result<(), rustls::Error> {
    let anchor_der = CertificateDer::from(ca.der());
    let anchor = webpki::anchor_from_trusted_cert(&anchor_der).unwrap().to_owned();
    verify_spiffe_server(&CertificateDer::from(leaf.to_vec()), &[], &[anchor], expected, UnixTime::now(), &algorithms())
}

const SERVER: &str = "spiffe://example.org/spire/server";

#[test]
fn split_der_concatenations() {
    let ca = Ca::new("example.org");
    let (a, _) = ca.leaf(&["spiffe://example.org/a"]);
    let b = ca.der();
    let both = [a.clone(), b.clone()].concat();
    assert_eq!(split_der(&both).unwrap(), vec![a.as_slice(), b.as_slice()]);
    assert_eq!(split_der(&[]).unwrap(), Vec::<&[u8]>::new());
    // Short forms, truncation, a wrong tag.
    assert_eq!(split_der(&[0x30, 0x01, 0x05]).unwrap(), vec![&[0x30, 0x01, 0x05][..]]);
    assert!(split_der(&both[..both.len() - 1]).is_err());
    assert!(split_der(&[0x02, 0x01, 0x00]).is_err());
    assert!(split_der(&[0x30]).is_err());
    assert!(split_der(&[0x30, 0x82, 0x01]).is_err());
}

#[test]
fn the_server_must_chain_to_the_bundle_and_be_the_spire_server() {
    let ca = Ca::new("example.org");
    let (good, _) = ca.leaf(&[SERVER]);
    verify(&ca, &good, SERVER).expect("the SPIRE server of the bundle");

    let (other_id, _) = ca.leaf(&["spiffe://example.org/not-the-server"]);
    let e = verify(&ca, &other_id, SERVER).unwrap_err().to_string();
    assert!(e.contains("presented spiffe://example.org/not-the-server") && e.contains(SERVER), "{e}");

    let (two, _) = ca.leaf(&[SERVER, "spiffe://example.org/x"]);
    assert!(verify(&ca, &two, SERVER).unwrap_err().to_string().contains("2 URI SANs"));

    let (none, _) = ca.leaf(&[]);
    assert!(verify(&ca, &none, SERVER).unwrap_err().to_string().contains("no SPIFFE ID"));

    // Signed by another authority (another trust domain's server, an attacker's CA).
    let stranger = Ca::new("example.org");
    let (forged, _) = stranger.leaf(&[SERVER]);
    let e = verify(&ca, &forged, SERVER).unwrap_err().to_string();
    assert!(e.contains("does not chain to the trust bundle"), "{e}");
}

#[test]
fn svid_material_from_a_workload_api_message() {
    let ca = Ca::new("example.org");
    let (leaf, key) = ca.leaf(&["spiffe://example.org/controller"]);
    let other_root = Ca::new("example.org").der();
    let message = X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: "spiffe://example.org/controller".into(),
            x509_svid: leaf.clone(),
            x509_svid_key: key.clone(),
            bundle: [ca.der(), other_root].concat(),
            hint: String::new(),
        }],
        ..Default::default()
    };
    let m = material_from_response(&message).unwrap();
    assert_eq!(m.spiffe_id, "spiffe://example.org/controller");
    assert_eq!(m.roots.len(), 2, "every authority of the bundle");
    assert_eq!(m.certified_key.cert.len(), 1);
    assert_eq!(m.certified_key.cert[0].as_ref(), leaf.as_slice());
    assert!(m.expires_at > std::time::SystemTime::now());
    assert!(!m.serial.is_empty());

    let mut bad = message.clone();
    bad.svids[0].x509_svid_key = vec![1, 2, 3];
    assert!(material_from_response(&bad).unwrap_err().to_string().contains("private key"));
    let mut bad = message.clone();
    bad.svids[0].bundle.clear();
    assert!(material_from_response(&bad).unwrap_err().to_string().contains("no X.509 authority"));
    assert!(material_from_response(&X509svidResponse::default()).unwrap_err().to_string().contains("no SVID"));
}

#[test]
fn server_addresses() {
    assert_eq!(parse_server_address("spire-server.spire.svc:8081"), Ok(("spire-server.spire.svc".into(), 8081)));
    assert_eq!(parse_server_address("127.0.0.1:1"), Ok(("127.0.0.1".into(), 1)));
    assert_eq!(parse_server_address("[::1]:8081"), Ok(("::1".into(), 8081)));
    assert_eq!(parse_server_address("dns:///h:443"), Ok(("h".into(), 443)));
    for bad in ["h", "h:0", "h:65536", ":1", "::1:8081", "unix:///x", "http://h:1", "[::1:2"] {
        assert!(parse_server_address(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_admin_hint_says_what_to_do() {
    let h = crate::tls::admin_hint("spiffe://example.org/controller");
    assert!(h.contains("spiffe://example.org/controller") && h.contains("admin: true") && h.contains("-admin"), "{h}");
}

// ---------------------------------------------------------------- handshakes

/// The material of an SVID `id` issued by `ca`, as the Workload API would give it.
fn material(ca: &Ca, id: &str) -> crate::workload::X509Material {
    let (leaf, key) = ca.leaf(&[id]);
    let message = X509svidResponse {
        svids: vec![X509svid {
            spiffe_id: id.into(),
            x509_svid: leaf,
            x509_svid_key: key,
            bundle: ca.der(),
            hint: String::new(),
        }],
        ..Default::default()
    };
    material_from_response(&message).unwrap()
}

/// A TLS server (the SPIRE server's part) presenting `server_id` from `ca` and requiring a
/// client certificate from `ca`; every accepted connection echoes one byte back and
/// reports the client's leaf certificate.
async fn tls_server(ca: &Ca, server_id: &str) -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der())).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone()).build().unwrap();
    let (leaf, key) = ca.leaf(&[server_id]);
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(leaf)], rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let peer = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                let _ = tx.send(peer);
                let mut b = [0u8; 1];
                while tls.read_exact(&mut b).await.is_ok() {
                    if tls.write_all(&b).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn connect(
    addr: std::net::SocketAddr,
    source: &crate::workload::SvidSource,
    expected: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config(source.clone(), expected.to_owned()));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector.connect(rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap().to_owned(), tcp).await
}

async fn echo(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, byte: u8) -> std::io::Result<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(&[byte]).await?;
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).await?;
    Ok(b[0])
}

/// A rotated SVID is presented by the next handshake, while the connection made with the
/// previous one keeps working; a rotated bundle is what the next handshake trusts; a server
/// with another SPIFFE ID is refused.
#[tokio::test]
async fn rotation_needs_no_reconnect_and_new_handshakes_use_the_new_svid() {
    let ca = Ca::new("example.org");
    let (addr, mut presented) = tls_server(&ca, SERVER).await;
    let first = material(&ca, "spiffe://example.org/controller");
    let first_leaf = first.certified_key.cert[0].to_vec();
    let source = crate::workload::SvidSource::fixed(first);

    let mut old = connect(addr, &source, SERVER).await.expect("handshake with the first SVID");
    assert_eq!(echo(&mut old, 1).await.unwrap(), 1);
    assert_eq!(presented.recv().await.unwrap(), first_leaf);

    let second = material(&ca, "spiffe://example.org/controller");
    let second_leaf = second.certified_key.cert[0].to_vec();
    assert_ne!(first_leaf, second_leaf);
    source.replace(second);
    let mut new = connect(addr, &source, SERVER).await.expect("handshake with the rotated SVID");
    assert_eq!(echo(&mut new, 2).await.unwrap(), 2);
    assert_eq!(presented.recv().await.unwrap(), second_leaf, "the new connection presents the new SVID");
    assert_eq!(echo(&mut old, 3).await.unwrap(), 3, "the old connection still works");

    // The bundle rotates to another authority: the old server no longer chains to it.
    let other = Ca::new("example.org");
    source.replace(material(&other, "spiffe://example.org/controller"));
    let e = connect(addr, &source, SERVER).await.unwrap_err().to_string();
    assert!(e.contains("does not chain to the trust bundle"), "{e}");

    // Another SPIFFE ID than the expected server's.
    source.replace(material(&ca, "spiffe://example.org/controller"));
    let e = connect(addr, &source, "spiffe://example.org/spire/other-server").await.unwrap_err().to_string();
    assert!(e.contains("expected spiffe://example.org/spire/other-server"), "{e}");
}
