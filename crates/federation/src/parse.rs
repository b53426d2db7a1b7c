//! `ClusterFederatedTrustDomainSpec` → `FederationRelationship`, with upstream's rules
//! (`ParseClusterFederatedTrustDomainSpec`). Shared by the reconciler and the admission
//! webhook, so the webhook refuses exactly what the reconciler cannot apply.

use scm_api::{BundleEndpointProfileType, ClusterFederatedTrustDomainSpec};
use scm_core::FieldError;
use scm_spiffe::{Bundle, BundleEndpointProfile, FederationRelationship, SpiffeId, TrustDomain};

pub const FIELD_TRUST_DOMAIN: &str = "spec.trustDomain";
pub const FIELD_BUNDLE_ENDPOINT_URL: &str = "spec.bundleEndpointURL";
pub const FIELD_ENDPOINT_SPIFFE_ID: &str = "spec.bundleEndpointProfile.endpointSPIFFEID";
pub const FIELD_TRUST_DOMAIN_BUNDLE: &str = "spec.trustDomainBundle";

/// Upstream's `ParseClusterFederatedTrustDomainSpec`, checked in its order (the first
/// problem is reported):
///
/// - `trustDomain`: a trust domain name (go-spiffe `TrustDomainFromString`, so a SPIFFE ID
///   such as `spiffe://example.org` is accepted and its trust domain taken);
/// - `bundleEndpointURL`: non-empty, parses as a URL, scheme exactly `https`, a non-empty
///   host, no userinfo;
/// - `bundleEndpointProfile`: `https_web` ⇒ `endpointSPIFFEID` empty; `https_spiffe` ⇒
///   `endpointSPIFFEID` a valid SPIFFE ID of any trust domain (unknown profile types are
///   already refused when the object is decoded);
/// - `trustDomainBundle`: when non-empty, a SPIFFE bundle (JWKS) for that trust domain.
///
/// The messages are upstream's (`invalid trustDomain value: ...`), and the error's
/// `field` names the offending field, so `Display` reads
/// `spec.bundleEndpointURL: invalid bundleEndpointURL value: scheme must be https`.
pub fn parse_federated_trust_domain(
    spec: &ClusterFederatedTrustDomainSpec,
) -> Result<FederationRelationship, FieldError> {
    let trust_domain = TrustDomain::parse(&spec.trust_domain)
        .map_err(|e| FieldError::new(FIELD_TRUST_DOMAIN, format!("invalid trustDomain value: {e}")))?;

    validate_bundle_endpoint_url(&spec.bundle_endpoint_url).map_err(|reason| {
        FieldError::new(FIELD_BUNDLE_ENDPOINT_URL, format!("invalid bundleEndpointURL value: {reason}"))
    })?;

    let endpoint_spiffe_id = spec.bundle_endpoint_profile.endpoint_spiffe_id.as_deref().unwrap_or_default();
    let bundle_endpoint_profile = match spec.bundle_endpoint_profile.r#type {
        BundleEndpointProfileType::HttpsWeb => {
            if !endpoint_spiffe_id.is_empty() {
                return Err(FieldError::new(
                    FIELD_ENDPOINT_SPIFFE_ID,
                    "invalid bundle endpoint profile endpointSPIFFEID value: not applicable to the \"https_web\" profile",
                ));
            }
            BundleEndpointProfile::HttpsWeb
        }
        BundleEndpointProfileType::HttpsSpiffe => {
            let endpoint_spiffe_id = SpiffeId::parse(endpoint_spiffe_id).map_err(|e| {
                let hint =
                    if endpoint_spiffe_id.is_empty() { " (required by the \"https_spiffe\" profile)" } else { "" };
                FieldError::new(
                    FIELD_ENDPOINT_SPIFFE_ID,
                    format!("invalid bundle endpoint profile endpointSPIFFEID value: {e}{hint}"),
                )
            })?;
            BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id }
        }
    };

    let trust_domain_bundle = match spec.trust_domain_bundle.as_deref() {
        None | Some("") => None,
        Some(doc) => Some(Bundle::parse_jwks(trust_domain.clone(), doc).map_err(|e| {
            FieldError::new(FIELD_TRUST_DOMAIN_BUNDLE, format!("invalid trustDomainBundle value: {e}"))
        })?),
    };

    Ok(FederationRelationship {
        trust_domain,
        bundle_endpoint_url: spec.bundle_endpoint_url.clone(),
        bundle_endpoint_profile,
        trust_domain_bundle,
    })
}

/// Upstream's `ValidateBundleEndpointURL`, with the `url` crate (WHATWG parsing: a URL
/// without a scheme does not parse at all, where Go's parser accepts it and then fails
/// the scheme check; both are refused).
fn validate_bundle_endpoint_url(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("bundle endpoint URL is missing".into());
    }
    let u = url::Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
    if u.scheme() != "https" {
        return Err(format!("scheme must be https (got {:?})", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("host must be specified".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("cannot contain userinfo".into());
    }
    Ok(())
}
