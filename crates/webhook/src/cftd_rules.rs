//! ClusterFederatedTrustDomain parsing rules (compat-spec §1.3, upstream
//! `ParseClusterFederatedTrustDomainSpec`).
//!
//! NOTE: this is a local stand-in. The shared parser
//! `parse_federated_trust_domain(&ClusterFederatedTrustDomainSpec) -> Result<FederationRelationship, FieldError>`
//! is announced for the crate the federation reconciler uses; when it exists, the webhook
//! must call that one instead (so it refuses exactly what the reconciler cannot process)
//! and this module goes away. Until then the rules here are upstream's:
//!
//! - `trustDomain`: a valid trust domain name;
//! - `bundleEndpointURL`: non-empty, parses as a URL, scheme exactly `https`, non-empty
//!   host, no user info;
//! - profile `https_web` ⇒ no `endpointSPIFFEID`; `https_spiffe` ⇒ `endpointSPIFFEID` a
//!   valid SPIFFE ID (any trust domain); any other type ⇒ error;
//! - `trustDomainBundle`, if non-empty, parses as a SPIFFE bundle of that trust domain.

use scm_api::{BundleEndpointProfileType, ClusterFederatedTrustDomainSpec};
use scm_spiffe::{Bundle, BundleEndpointProfile, FederationRelationship, SpiffeId, TrustDomain};

use crate::validate::FieldError;

pub fn parse_federated_trust_domain(spec: &ClusterFederatedTrustDomainSpec) -> Result<FederationRelationship, FieldError> {
    let trust_domain = TrustDomain::parse(&spec.trust_domain)
        .map_err(|e| FieldError::new("spec.trustDomain", format!("invalid trustDomain value: {e}")))?;
    validate_bundle_endpoint_url(&spec.bundle_endpoint_url)
        .map_err(|e| FieldError::new("spec.bundleEndpointURL", format!("invalid bundleEndpointURL value: {e}")))?;
    let endpoint_id = spec.bundle_endpoint_profile.endpoint_spiffe_id.as_deref().unwrap_or("");
    let bundle_endpoint_profile = match spec.bundle_endpoint_profile.r#type {
        BundleEndpointProfileType::HttpsWeb => {
            if !endpoint_id.is_empty() {
                return Err(FieldError::new(
                    "spec.bundleEndpointProfile.endpointSPIFFEID",
                    "endpointSPIFFEID is not applicable for the https_web profile",
                ));
            }
            BundleEndpointProfile::HttpsWeb
        }
        BundleEndpointProfileType::HttpsSpiffe => {
            let endpoint_spiffe_id = SpiffeId::parse(endpoint_id).map_err(|e| {
                FieldError::new(
                    "spec.bundleEndpointProfile.endpointSPIFFEID",
                    format!("invalid endpointSPIFFEID value: {e}"),
                )
            })?;
            BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id }
        }
    };
    let trust_domain_bundle = match spec.trust_domain_bundle.as_deref() {
        None | Some("") => None,
        Some(doc) => Some(Bundle::parse_jwks(trust_domain.clone(), doc).map_err(|e| {
            FieldError::new("spec.trustDomainBundle", format!("invalid trustDomainBundle value: {e}"))
        })?),
    };
    Ok(FederationRelationship {
        trust_domain,
        bundle_endpoint_url: spec.bundle_endpoint_url.clone(),
        bundle_endpoint_profile,
        trust_domain_bundle,
    })
}

/// Upstream `spireapi.ValidateBundleEndpointURL`.
fn validate_bundle_endpoint_url(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("cannot be empty".into());
    }
    let u = url::Url::parse(s).map_err(|e| format!("parse {s:?}: {e}"))?;
    if u.scheme() != "https" {
        return Err("scheme must be https".into());
    }
    if u.host_str().unwrap_or("").is_empty() {
        return Err("host is not specified".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("cannot contain userinfo".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scm_api::BundleEndpointProfile as Profile;

    fn spec(td: &str, url: &str, ty: BundleEndpointProfileType, id: Option<&str>) -> ClusterFederatedTrustDomainSpec {
        ClusterFederatedTrustDomainSpec {
            trust_domain: td.into(),
            bundle_endpoint_url: url.into(),
            bundle_endpoint_profile: Profile { r#type: ty, endpoint_spiffe_id: id.map(Into::into) },
            trust_domain_bundle: None,
            class_name: None,
        }
    }

    #[test]
    fn rules() {
        use BundleEndpointProfileType::*;
        let ok = spec("other.org", "https://other.org:8443/bundle", HttpsSpiffe, Some("spiffe://other.org/spire/server"));
        let rel = parse_federated_trust_domain(&ok).unwrap();
        assert_eq!(rel.trust_domain.name(), "other.org");
        assert!(parse_federated_trust_domain(&spec("other.org", "https://x", HttpsWeb, None)).is_ok());

        let bad = [
            (spec("Other.org", "https://x", HttpsWeb, None), "spec.trustDomain"),
            (spec("o", "", HttpsWeb, None), "spec.bundleEndpointURL"),
            (spec("o", "http://x", HttpsWeb, None), "spec.bundleEndpointURL"),
            (spec("o", "https://user:pw@x", HttpsWeb, None), "spec.bundleEndpointURL"),
            (spec("o", "not a url", HttpsWeb, None), "spec.bundleEndpointURL"),
            (spec("o", "https://x", HttpsWeb, Some("spiffe://o/x")), "spec.bundleEndpointProfile.endpointSPIFFEID"),
            (spec("o", "https://x", HttpsSpiffe, None), "spec.bundleEndpointProfile.endpointSPIFFEID"),
            (spec("o", "https://x", HttpsSpiffe, Some("spiffe://o/")), "spec.bundleEndpointProfile.endpointSPIFFEID"),
        ];
        for (s, field) in bad {
            assert_eq!(parse_federated_trust_domain(&s).unwrap_err().field, field, "{s:?}");
        }
        let mut with_bundle = ok.clone();
        with_bundle.trust_domain_bundle = Some("{not json".into());
        assert_eq!(parse_federated_trust_domain(&with_bundle).unwrap_err().field, "spec.trustDomainBundle");
        with_bundle.trust_domain_bundle = Some(r#"{"keys":[]}"#.into());
        assert!(parse_federated_trust_domain(&with_bundle).unwrap().trust_domain_bundle.is_some());
    }
}
