//! SPIFFE bundles (the JWKS document of a trust domain), as SPIRE's API carries them.
//!
//! `Bundle::parse_jwks` reads the SPIFFE bundle format (`keys` with `use` = `x509-svid`
//! or `jwt-svid`, `spiffe_sequence`, `spiffe_refresh_hint`).

use crate::TrustDomain;

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
    /// Seconds.
    pub refresh_hint: i64,
    pub sequence_number: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("unable to parse bundle: {0}")]
    Json(String),
    #[error("unable to parse bundle: key {index}: {reason}")]
    Key { index: usize, reason: String },
}

impl Bundle {
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self { trust_domain, x509_authorities: Vec::new(), jwt_authorities: Vec::new(), refresh_hint: 0, sequence_number: 0 }
    }

    /// PEM text of the X.509 authorities (what a webhook configuration's caBundle holds).
    pub fn x509_authorities_pem(&self) -> String {
        use base64::Engine as _;
        let mut out = String::new();
        for der in &self.x509_authorities {
            out.push_str("-----BEGIN CERTIFICATE-----\n");
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            for chunk in b64.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                out.push('\n');
            }
            out.push_str("-----END CERTIFICATE-----\n");
        }
        out
    }
}
