//! SPIFFE bundles (the JWKS document of a trust domain), as SPIRE's API carries them.
//!
//! `Bundle::parse_jwks` reads the SPIFFE bundle format (`keys` with `use` = `x509-svid`
//! or `jwt-svid`, `spiffe_sequence`, `spiffe_refresh_hint`) with the rules of go-spiffe's
//! `spiffebundle.Parse`; `Bundle::to_jwks` writes it back. JWT keys are carried as PKIX
//! SubjectPublicKeyInfo DER (what SPIRE's API uses), so JWK key parameters are converted
//! to and from DER by the small encoder/decoder at the bottom of this file.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};

use crate::TrustDomain;

const X509_SVID_USE: &str = "x509-svid";
const JWT_SVID_USE: &str = "jwt-svid";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    pub key_id: String,
    /// PKIX (SubjectPublicKeyInfo) DER.
    pub public_key: Vec<u8>,
    /// Unix seconds; 0 = no expiry.
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub trust_domain: TrustDomain,
    /// DER certificates.
    pub x509_authorities: Vec<Vec<u8>>,
    pub jwt_authorities: Vec<JwtAuthority>,
    /// Seconds; 0 = unset.
    pub refresh_hint: i64,
    /// 0 = unset.
    pub sequence_number: u64,
}

/// Why a SPIFFE bundle document was rejected. The texts follow go-spiffe's
/// `spiffebundle.Parse` errors; key indexes count from 0 over the `keys` array.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not JSON, or not shaped like a JWKS (`keys` not an array, a key not an object, ...).
    #[error("spiffebundle: unable to parse JWKS: {0}")]
    Json(String),
    /// The `keys` member is absent (it is required, though it may be empty).
    #[error("spiffebundle: no authorities found")]
    NoKeys,
    /// An `x509-svid` key whose `x5c` does not hold exactly one certificate.
    #[error("spiffebundle: expected a single certificate in x509-svid entry {index}; got {count}")]
    CertificateCount { index: usize, count: usize },
    /// A key that is present but unusable (bad certificate, missing `kid`, bad key parameters).
    #[error("spiffebundle: error adding authority {index} of JWKS: {reason}")]
    Key { index: usize, reason: String },
}

impl Bundle {
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            x509_authorities: Vec::new(),
            jwt_authorities: Vec::new(),
            refresh_hint: 0,
            sequence_number: 0,
        }
    }

    /// PEM text of the X.509 authorities (what a webhook configuration's caBundle holds).
    pub fn x509_authorities_pem(&self) -> String {
        let mut out = String::new();
        for der in &self.x509_authorities {
            out.push_str("-----BEGIN CERTIFICATE-----\n");
            let b64 = STANDARD.encode(der);
            for chunk in b64.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                out.push('\n');
            }
            out.push_str("-----END CERTIFICATE-----\n");
        }
        out
    }

    /// Parses a SPIFFE bundle document (a JWKS) for `trust_domain`, as go-spiffe's
    /// `spiffebundle.Parse` does:
    ///
    /// - `keys` must be present (it may be empty);
    /// - a key with `use` = `x509-svid` must carry exactly one certificate in `x5c`
    ///   (standard base64 DER); duplicates are kept once;
    /// - a key with `use` = `jwt-svid` needs a `kid` and EC (`P-256`/`P-384`/`P-521`),
    ///   RSA or Ed25519 (`OKP`) parameters; a later key with the same `kid` replaces an
    ///   earlier one;
    /// - keys with any other `use` are ignored;
    /// - `spiffe_sequence` and `spiffe_refresh_hint` (seconds) are optional.
    ///
    /// EC points are checked for size, not for lying on the curve.
    pub fn parse_jwks(trust_domain: TrustDomain, json: impl AsRef<[u8]>) -> Result<Self, BundleError> {
        let doc: Value = serde_json::from_slice(json.as_ref()).map_err(|e| BundleError::Json(e.to_string()))?;
        let Value::Object(doc) = doc else {
            return Err(BundleError::Json("document is not a JSON object".into()));
        };
        let mut bundle = Bundle::empty(trust_domain);
        match doc.get("spiffe_refresh_hint") {
            None | Some(Value::Null) => {}
            Some(v) => {
                bundle.refresh_hint = v
                    .as_i64()
                    .ok_or_else(|| BundleError::Json(format!("spiffe_refresh_hint is not an integer: {v}")))?
            }
        }
        match doc.get("spiffe_sequence") {
            None | Some(Value::Null) => {}
            Some(v) => {
                bundle.sequence_number = v
                    .as_u64()
                    .ok_or_else(|| BundleError::Json(format!("spiffe_sequence is not an unsigned integer: {v}")))?
            }
        }
        let keys = match doc.get("keys") {
            None | Some(Value::Null) => return Err(BundleError::NoKeys),
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(BundleError::Json("keys is not an array".into())),
        };
        for (index, key) in keys.iter().enumerate() {
            let Value::Object(key) = key else {
                return Err(BundleError::Json(format!("key {index} is not a JSON object")));
            };
            let key_err = |reason: String| BundleError::Key { index, reason };
            match opt_str(key, "use").map_err(key_err)? {
                Some(X509_SVID_USE) => {
                    let certs = match key.get("x5c") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(certs)) => certs.clone(),
                        Some(_) => {
                            return Err(BundleError::Key { index, reason: "x5c is not an array".into() });
                        }
                    };
                    if certs.len() != 1 {
                        return Err(BundleError::CertificateCount { index, count: certs.len() });
                    }
                    let Value::String(b64) = &certs[0] else {
                        return Err(key_err("x5c[0] is not a string".into()));
                    };
                    let der =
                        STANDARD.decode(b64.trim()).map_err(|e| key_err(format!("x5c[0] is not valid base64: {e}")))?;
                    x509_parser::parse_x509_certificate(&der)
                        .map_err(|e| key_err(format!("x5c[0] is not a valid certificate: {e}")))?;
                    if !bundle.x509_authorities.contains(&der) {
                        bundle.x509_authorities.push(der);
                    }
                }
                Some(JWT_SVID_USE) => {
                    let key_id = opt_str(key, "kid").map_err(key_err)?.unwrap_or_default();
                    if key_id.is_empty() {
                        return Err(key_err("keyID cannot be empty".into()));
                    }
                    let public_key = jwk_to_spki(key).map_err(key_err)?;
                    let authority = JwtAuthority { key_id: key_id.to_owned(), public_key, expires_at: 0 };
                    match bundle.jwt_authorities.iter_mut().find(|a| a.key_id == authority.key_id) {
                        Some(existing) => *existing = authority,
                        None => bundle.jwt_authorities.push(authority),
                    }
                }
                _ => {}
            }
        }
        Ok(bundle)
    }

    /// The SPIFFE bundle document (JWKS) of this bundle: X.509 authorities first (with
    /// their public key parameters and `x5c`), then JWT authorities; `spiffe_sequence` and
    /// `spiffe_refresh_hint` only when non-zero. JWT expiry times are not part of the
    /// format and are dropped. Keys whose type is not understood are written without
    /// key parameters (`use` and `x5c`, or `use` and `kid`).
    pub fn to_jwks(&self) -> String {
        let mut keys = Vec::new();
        for der in &self.x509_authorities {
            let mut key = Map::new();
            key.insert("use".into(), X509_SVID_USE.into());
            if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der)
                && let Ok(params) = spki_to_jwk(cert.public_key().raw)
            {
                key.extend(params);
            }
            key.insert("x5c".into(), Value::Array(vec![STANDARD.encode(der).into()]));
            keys.push(Value::Object(key));
        }
        for authority in &self.jwt_authorities {
            let mut key = Map::new();
            key.insert("use".into(), JWT_SVID_USE.into());
            key.insert("kid".into(), authority.key_id.clone().into());
            if let Ok(params) = spki_to_jwk(&authority.public_key) {
                key.extend(params);
            }
            keys.push(Value::Object(key));
        }
        let mut doc = Map::new();
        doc.insert("keys".into(), Value::Array(keys));
        if self.refresh_hint != 0 {
            doc.insert("spiffe_refresh_hint".into(), self.refresh_hint.into());
        }
        if self.sequence_number != 0 {
            doc.insert("spiffe_sequence".into(), self.sequence_number.into());
        }
        Value::Object(doc).to_string()
    }
}

fn opt_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn b64url_param(obj: &Map<String, Value>, kty: &str, name: &str) -> Result<Vec<u8>, String> {
    let s = opt_str(obj, name)?.ok_or_else(|| format!("invalid {kty} key, missing {name} value"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("invalid {kty} key, {name} is not valid base64url: {e}"))?;
    if bytes.is_empty() {
        return Err(format!("invalid {kty} key, {name} is empty"));
    }
    Ok(bytes)
}

// ---------------------------------------------------------------- JWK <-> PKIX DER

/// id-ecPublicKey 1.2.840.10045.2.1
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// rsaEncryption 1.2.840.113549.1.1.1
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-Ed25519 1.3.101.112
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// (JWK curve name, named-curve OID, coordinate size in bytes).
const CURVES: &[(&str, &[u8], usize)] = &[
    // prime256v1 1.2.840.10045.3.1.7
    ("P-256", &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], 32),
    // secp384r1 1.3.132.0.34
    ("P-384", &[0x2b, 0x81, 0x04, 0x00, 0x22], 48),
    // secp521r1 1.3.132.0.35
    ("P-521", &[0x2b, 0x81, 0x04, 0x00, 0x23], 66),
];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// The SubjectPublicKeyInfo DER of a JWK's public key parameters.
fn jwk_to_spki(key: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let kty = opt_str(key, "kty")?.ok_or("missing kty")?;
    match kty {
        "EC" => {
            let crv = opt_str(key, "crv")?.ok_or("invalid EC key, missing crv value")?;
            let &(_, curve_oid, size) = CURVES
                .iter()
                .find(|(name, _, _)| *name == crv)
                .ok_or_else(|| format!("unsupported elliptic curve '{crv}'"))?;
            let x = b64url_param(key, "EC", "x")?;
            let y = b64url_param(key, "EC", "y")?;
            if x.len() != size || y.len() != size {
                return Err(format!(
                    "invalid EC key, {crv} coordinates must be {size} bytes (x has {}, y has {})",
                    x.len(),
                    y.len()
                ));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04); // uncompressed
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let algorithm =
                der_tlv(TAG_SEQUENCE, &[der_tlv(TAG_OID, OID_EC_PUBLIC_KEY), der_tlv(TAG_OID, curve_oid)].concat());
            Ok(der_tlv(TAG_SEQUENCE, &[algorithm, der_bit_string(&point)].concat()))
        }
        "RSA" => {
            let n = b64url_param(key, "RSA", "n")?;
            let e = b64url_param(key, "RSA", "e")?;
            let rsa_key = der_tlv(TAG_SEQUENCE, &[der_unsigned_integer(&n), der_unsigned_integer(&e)].concat());
            let algorithm =
                der_tlv(TAG_SEQUENCE, &[der_tlv(TAG_OID, OID_RSA_ENCRYPTION), der_tlv(TAG_NULL, &[])].concat());
            Ok(der_tlv(TAG_SEQUENCE, &[algorithm, der_bit_string(&rsa_key)].concat()))
        }
        "OKP" => {
            let crv = opt_str(key, "crv")?.ok_or("invalid OKP key, missing crv value")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP curve '{crv}'"));
            }
            let x = b64url_param(key, "OKP", "x")?;
            if x.len() != 32 {
                return Err(format!("invalid Ed25519 key, x must be 32 bytes (has {})", x.len()));
            }
            let algorithm = der_tlv(TAG_SEQUENCE, &der_tlv(TAG_OID, OID_ED25519));
            Ok(der_tlv(TAG_SEQUENCE, &[algorithm, der_bit_string(&x)].concat()))
        }
        other => Err(format!("unsupported key type '{other}'")),
    }
}

/// The JWK key parameters (`kty` and its members) of a SubjectPublicKeyInfo DER.
fn spki_to_jwk(spki: &[u8]) -> Result<Map<String, Value>, String> {
    let (spki_body, _) = der_read(spki, TAG_SEQUENCE)?;
    let (algorithm, rest) = der_read(spki_body, TAG_SEQUENCE)?;
    let (key_bits, _) = der_read(rest, TAG_BIT_STRING)?;
    let key_bytes = match key_bits.split_first() {
        Some((0, bytes)) => bytes,
        _ => return Err("public key bit string has unused bits".into()),
    };
    let (oid, params) = der_read(algorithm, TAG_OID)?;
    let mut out = Map::new();
    let b64 = |bytes: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(bytes));
    if oid == OID_EC_PUBLIC_KEY {
        let (curve_oid, _) = der_read(params, TAG_OID)?;
        let &(name, _, size) =
            CURVES.iter().find(|(_, oid, _)| *oid == curve_oid).ok_or("unsupported elliptic curve")?;
        if key_bytes.len() != 1 + 2 * size || key_bytes[0] != 0x04 {
            return Err("EC point is not an uncompressed point of its curve".into());
        }
        out.insert("kty".into(), "EC".into());
        out.insert("crv".into(), name.into());
        out.insert("x".into(), b64(&key_bytes[1..1 + size]));
        out.insert("y".into(), b64(&key_bytes[1 + size..]));
    } else if oid == OID_RSA_ENCRYPTION {
        let (rsa_key, _) = der_read(key_bytes, TAG_SEQUENCE)?;
        let (n, rest) = der_read(rsa_key, TAG_INTEGER)?;
        let (e, _) = der_read(rest, TAG_INTEGER)?;
        out.insert("kty".into(), "RSA".into());
        out.insert("n".into(), b64(strip_leading_zeros(n)));
        out.insert("e".into(), b64(strip_leading_zeros(e)));
    } else if oid == OID_ED25519 {
        out.insert("kty".into(), "OKP".into());
        out.insert("crv".into(), "Ed25519".into());
        out.insert("x".into(), b64(key_bytes));
    } else {
        return Err("unsupported public key algorithm".into());
    }
    Ok(out)
}

fn strip_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while bytes.len() > 1 && bytes[0] == 0 {
        bytes = &bytes[1..];
    }
    bytes
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant = strip_leading_zeros(&bytes);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

fn der_bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0); // no unused bits
    content.extend_from_slice(bytes);
    der_tlv(TAG_BIT_STRING, &content)
}

/// A non-negative INTEGER from big-endian magnitude bytes.
fn der_unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let magnitude = strip_leading_zeros(magnitude);
    let mut content = Vec::with_capacity(magnitude.len() + 1);
    if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(magnitude);
    der_tlv(TAG_INTEGER, &content)
}

/// Reads one TLV with the expected tag: (content, rest).
fn der_read(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
    let (&actual, rest) = input.split_first().ok_or("truncated DER")?;
    if actual != tag {
        return Err(format!("unexpected DER tag 0x{actual:02x} (want 0x{tag:02x})"));
    }
    let (&first, mut rest) = rest.split_first().ok_or("truncated DER")?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > std::mem::size_of::<usize>() || rest.len() < n {
            return Err("bad DER length".into());
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err("truncated DER".into());
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::PublicKeyData as _;

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn ec_key(alg: &'static rcgen::SignatureAlgorithm) -> rcgen::KeyPair {
        rcgen::KeyPair::generate_for(alg).unwrap()
    }

    fn ca_cert() -> (Vec<u8>, Vec<u8>) {
        let key = ec_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.der().to_vec(), key.subject_public_key_info())
    }

    #[test]
    fn round_trip_x509_and_ec_jwt_keys() {
        let (cert, _) = ca_cert();
        let p256 = ec_key(&rcgen::PKCS_ECDSA_P256_SHA256).subject_public_key_info();
        let p384 = ec_key(&rcgen::PKCS_ECDSA_P384_SHA384).subject_public_key_info();
        let ed = ec_key(&rcgen::PKCS_ED25519).subject_public_key_info();
        let bundle = Bundle {
            trust_domain: td(),
            x509_authorities: vec![cert.clone()],
            jwt_authorities: vec![
                JwtAuthority { key_id: "k1".into(), public_key: p256.clone(), expires_at: 0 },
                JwtAuthority { key_id: "k2".into(), public_key: p384.clone(), expires_at: 0 },
                JwtAuthority { key_id: "k3".into(), public_key: ed.clone(), expires_at: 0 },
            ],
            refresh_hint: 300,
            sequence_number: 7,
        };
        let json = bundle.to_jwks();
        let doc: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(doc["spiffe_refresh_hint"], 300);
        assert_eq!(doc["spiffe_sequence"], 7);
        assert_eq!(doc["keys"][0]["use"], "x509-svid");
        assert_eq!(doc["keys"][0]["kty"], "EC");
        assert_eq!(doc["keys"][0]["crv"], "P-256");
        assert_eq!(doc["keys"][1]["kid"], "k1");
        assert_eq!(doc["keys"][2]["crv"], "P-384");
        assert_eq!(doc["keys"][3]["kty"], "OKP");
        let parsed = Bundle::parse_jwks(td(), &json).unwrap();
        assert_eq!(parsed, bundle);
    }

    #[test]
    fn rsa_jwk_to_pkix() {
        // A 2048-bit RSA SPKI made by openssl (`openssl genrsa 2048 | openssl rsa -pubout -outform der`).
        let spki = STANDARD
            .decode(concat!(
                "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAm6sxUlHPGatzq3udoAFN+MJmuX3ha8jsWEZnMaqP4x0kA/",
                "wyGgjhc7Gsh6uUn+9Ll+NjMey9IanGJQt1TpYZdY9Nk3V0xxOHIA5PEIqyyM72zS2HtXJZGSrSVgEVPrEVU1jyqPdI",
                "i3leoKwjwxfPlGWM5m7IyKmuOBXdCguBTiPz6kLMQaTU4Rt3idTuSpNKAqJjFQ0cBNs9F9Wi8akmitF3KmZtorZBs+",
                "KpoQgOVrtiaOx4rHeyyNcbFRk4L7+qSXHewPMVIM9Vu+EkqE2yNA3wxX/TGH1U4qeR2FbWOjpCml5phlePznZFe7Db",
                "C0NgIVuNvhDPVXRDFEqXtRiZ8wIDAQAB"
            ))
            .unwrap();
        let params = spki_to_jwk(&spki).unwrap();
        assert_eq!(params["kty"], "RSA");
        assert_eq!(params["e"], "AQAB");
        let mut key = params.clone();
        key.insert("use".into(), "jwt-svid".into());
        key.insert("kid".into(), "rsa".into());
        let doc = serde_json::json!({ "keys": [key] }).to_string();
        let bundle = Bundle::parse_jwks(td(), doc).unwrap();
        assert_eq!(bundle.jwt_authorities[0].public_key, spki, "re-encoded SPKI is byte-identical");
        // And what we build is what a real X.509 parser accepts.
        use x509_parser::prelude::FromDer as _;
        let (_, parsed) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).unwrap();
        assert!(matches!(parsed.parsed().unwrap(), x509_parser::public_key::PublicKey::RSA(_)));
    }

    #[test]
    fn ec_jwk_matches_rcgen_spki() {
        let key = ec_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let spki = key.subject_public_key_info();
        let mut jwk = spki_to_jwk(&spki).unwrap();
        assert_eq!(jwk_to_spki(&jwk).unwrap(), spki);
        jwk.insert("x".into(), URL_SAFE_NO_PAD.encode([1u8; 31]).into());
        assert!(jwk_to_spki(&jwk).unwrap_err().contains("must be 32 bytes"));
    }

    #[test]
    fn spire_style_document() {
        // Shape of SPIRE's bundle endpoint output, key material made here.
        let (cert, _) = ca_cert();
        let jwt = spki_to_jwk(&ec_key(&rcgen::PKCS_ECDSA_P256_SHA256).subject_public_key_info()).unwrap();
        let doc = serde_json::json!({
            "keys": [
                { "use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "ignored", "y": "ignored", "x5c": [STANDARD.encode(&cert)] },
                { "use": "jwt-svid", "kid": "abc", "kty": jwt["kty"], "crv": jwt["crv"], "x": jwt["x"], "y": jwt["y"] },
                { "use": "something-else", "kty": "bogus" },
                { "kty": "EC" }
            ],
            "spiffe_sequence": 1,
            "spiffe_refresh_hint": 60
        });
        let b = Bundle::parse_jwks(td(), doc.to_string()).unwrap();
        assert_eq!(b.x509_authorities, vec![cert]);
        assert_eq!(b.jwt_authorities.len(), 1);
        assert_eq!(b.jwt_authorities[0].key_id, "abc");
        assert_eq!((b.sequence_number, b.refresh_hint), (1, 60));
        assert!(b.x509_authorities_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    }

    #[test]
    fn empty_keys_is_fine_missing_keys_is_not() {
        let b = Bundle::parse_jwks(td(), r#"{"keys":[]}"#).unwrap();
        assert_eq!(b, Bundle::empty(td()));
        assert_eq!(Bundle::parse_jwks(td(), r#"{}"#).unwrap_err(), BundleError::NoKeys);
        assert_eq!(Bundle::parse_jwks(td(), r#"{"keys":null}"#).unwrap_err(), BundleError::NoKeys);
        assert_eq!(Bundle::parse_jwks(td(), "{}").unwrap_err().to_string(), "spiffebundle: no authorities found");
    }

    #[test]
    fn errors_name_the_key() {
        let (cert, _) = ca_cert();
        let c = STANDARD.encode(&cert);
        let cases: Vec<(Value, &str)> = vec![
            (
                serde_json::json!({"keys": [{"use": "x509-svid", "x5c": []}]}),
                "spiffebundle: expected a single certificate in x509-svid entry 0; got 0",
            ),
            (
                serde_json::json!({"keys": [{"use": "jwt-svid", "kid": "a", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, {"use": "x509-svid", "x5c": [c, c]}]}),
                "spiffebundle: error adding authority 0 of JWKS: invalid EC key, P-256 coordinates must be 32 bytes (x has 1, y has 1)",
            ),
            (
                serde_json::json!({"keys": [{"use": "x509-svid", "x5c": [c]}, {"use": "x509-svid", "x5c": [c, c]}]}),
                "spiffebundle: expected a single certificate in x509-svid entry 1; got 2",
            ),
            (
                serde_json::json!({"keys": [{"use": "x509-svid", "x5c": ["bm90IGEgY2VydA=="]}]}),
                "spiffebundle: error adding authority 0 of JWKS: x5c[0] is not a valid certificate",
            ),
            (
                serde_json::json!({"keys": [{"use": "x509-svid", "x5c": ["%%%"]}]}),
                "spiffebundle: error adding authority 0 of JWKS: x5c[0] is not valid base64",
            ),
            (
                serde_json::json!({"keys": [{"use": "jwt-svid", "kty": "EC", "crv": "P-256"}]}),
                "spiffebundle: error adding authority 0 of JWKS: keyID cannot be empty",
            ),
            (
                serde_json::json!({"keys": [{"use": "jwt-svid", "kid": "k", "kty": "EC", "crv": "P-999", "x": "AA", "y": "AA"}]}),
                "spiffebundle: error adding authority 0 of JWKS: unsupported elliptic curve 'P-999'",
            ),
            (
                serde_json::json!({"keys": [{"use": "jwt-svid", "kid": "k", "kty": "EC", "crv": "P-256", "y": "AA"}]}),
                "spiffebundle: error adding authority 0 of JWKS: invalid EC key, missing x value",
            ),
            (
                serde_json::json!({"keys": [{"use": "jwt-svid", "kid": "k", "kty": "RSA", "n": "AQAB"}]}),
                "spiffebundle: error adding authority 0 of JWKS: invalid RSA key, missing e value",
            ),
            (
                serde_json::json!({"keys": [{"use": "jwt-svid", "kid": "k", "kty": "oct", "k": "AA"}]}),
                "spiffebundle: error adding authority 0 of JWKS: unsupported key type 'oct'",
            ),
            (
                serde_json::json!({"keys": [{"use": "jwt-svid", "kid": "k"}]}),
                "spiffebundle: error adding authority 0 of JWKS: missing kty",
            ),
            (serde_json::json!({"keys": {}}), "spiffebundle: unable to parse JWKS: keys is not an array"),
            (serde_json::json!({"keys": [1]}), "spiffebundle: unable to parse JWKS: key 0 is not a JSON object"),
            (serde_json::json!([]), "spiffebundle: unable to parse JWKS: document is not a JSON object"),
            (
                serde_json::json!({"keys": [], "spiffe_sequence": -1}),
                "spiffebundle: unable to parse JWKS: spiffe_sequence is not an unsigned integer: -1",
            ),
        ];
        for (doc, want) in cases {
            let err = Bundle::parse_jwks(td(), doc.to_string()).unwrap_err().to_string();
            assert!(err.starts_with(want), "{doc}: got {err:?}, want prefix {want:?}");
        }
        let err = Bundle::parse_jwks(td(), "not json").unwrap_err();
        assert!(matches!(err, BundleError::Json(_)), "{err:?}");
    }

    #[test]
    fn duplicates() {
        let (cert, _) = ca_cert();
        let c = STANDARD.encode(&cert);
        let k1 = spki_to_jwk(&ec_key(&rcgen::PKCS_ECDSA_P256_SHA256).subject_public_key_info()).unwrap();
        let k2 = spki_to_jwk(&ec_key(&rcgen::PKCS_ECDSA_P256_SHA256).subject_public_key_info()).unwrap();
        let mut j1 = k1.clone();
        j1.insert("use".into(), "jwt-svid".into());
        j1.insert("kid".into(), "same".into());
        let mut j2 = k2.clone();
        j2.insert("use".into(), "jwt-svid".into());
        j2.insert("kid".into(), "same".into());
        let doc =
            serde_json::json!({"keys": [{"use": "x509-svid", "x5c": [c]}, {"use": "x509-svid", "x5c": [c]}, j1, j2]});
        let b = Bundle::parse_jwks(td(), doc.to_string()).unwrap();
        assert_eq!(b.x509_authorities.len(), 1);
        assert_eq!(b.jwt_authorities.len(), 1);
        assert_eq!(b.jwt_authorities[0].public_key, jwk_to_spki(&k2).unwrap());
    }

    #[test]
    fn der_long_lengths() {
        let content = vec![7u8; 300];
        let tlv = der_tlv(TAG_SEQUENCE, &content);
        assert_eq!(&tlv[..4], &[0x30, 0x82, 0x01, 0x2c]);
        let (read, rest) = der_read(&tlv, TAG_SEQUENCE).unwrap();
        assert_eq!((read, rest.len()), (&content[..], 0));
        assert_eq!(der_unsigned_integer(&[0x00, 0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_unsigned_integer(&[0x01, 0x00, 0x01]), vec![0x02, 0x03, 0x01, 0x00, 0x01]);
    }
}
