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
