//! Conversions between the plain `scm_spiffe` types and SPIRE's wire types, with the
//! checks upstream's `pkg/spireapi/types.go` makes on what the server returns.

use std::time::Duration;

use scm_spiffe::{
    AdditionalAttributes, Bundle, BundleEndpointProfile, Entry, FederationRelationship, JwtAuthority, Selector,
    SpiffeId, TrustDomain,
};
use x509_parser::prelude::FromDer as _;

use crate::proto::spire::api::types as api;
use api::federation_relationship::BundleEndpointProfile as ApiProfile;

/// Why a wire value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

fn err(msg: impl Into<String>) -> ConvertError {
    ConvertError(msg.into())
}

/// Whole seconds, saturating at `i32::MAX` (the wire type).
pub fn ttl_to_api(ttl: Duration) -> i32 {
    i32::try_from(ttl.as_secs()).unwrap_or(i32::MAX)
}

/// Negative values (never sent by SPIRE) read as zero.
pub fn ttl_from_api(secs: i32) -> Duration {
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

pub fn spiffe_id_to_api(id: &SpiffeId) -> api::Spiffeid {
    api::Spiffeid { trust_domain: id.trust_domain_name().to_owned(), path: id.path().to_owned() }
}

pub fn spiffe_id_from_api(id: Option<&api::Spiffeid>) -> Result<SpiffeId, ConvertError> {
    let id = id.ok_or_else(|| err("SPIFFE ID is nil"))?;
    SpiffeId::from_parts(&id.trust_domain, &id.path).map_err(|e| err(e.to_string()))
}

pub fn selector_from_api(s: &api::Selector) -> Result<Selector, ConvertError> {
    if s.r#type.is_empty() {
        return Err(err("selector type is empty"));
    }
    if s.value.is_empty() {
        return Err(err("selector value is empty"));
    }
    if s.r#type.contains(':') {
        return Err(err("selector type cannot contain a colon"));
    }
    Ok(Selector::new(&s.r#type, &s.value))
}

/// Every field is converted; updates send only the managed ones (`managed_fields_mask`).
/// `id` is sent when set.
pub fn entry_to_api(e: &Entry) -> api::Entry {
    api::Entry {
        id: e.id.clone(),
        spiffe_id: Some(spiffe_id_to_api(&e.spiffe_id)),
        parent_id: Some(spiffe_id_to_api(&e.parent_id)),
        selectors: e
            .selectors
            .iter()
            .map(|s| api::Selector { r#type: s.kind.clone(), value: s.value.clone() })
            .collect(),
        x509_svid_ttl: ttl_to_api(e.x509_svid_ttl),
        federates_with: e.federates_with.iter().map(|td| td.name().to_owned()).collect(),
        admin: e.admin,
        downstream: e.downstream,
        expires_at: 0,
        dns_names: e.dns_names.clone(),
        revision_number: 0,
        store_svid: e.store_svid,
        jwt_svid_ttl: ttl_to_api(e.jwt_svid_ttl),
        hint: e.hint.clone(),
        created_at: 0,
        additional_attributes: e.additional_attributes.map(|a| api::entry::AdditionalAttributes {
            disable_x509_svid_prefetch: a.disable_x509_svid_prefetch,
            jwt_svid_include_jti: a.jwt_svid_include_jti,
        }),
    }
}

pub fn entry_from_api(e: &api::Entry) -> Result<Entry, ConvertError> {
    let spiffe_id =
        spiffe_id_from_api(e.spiffe_id.as_ref()).map_err(|e| err(format!("invalid SPIFFE ID field: {e}")))?;
    let parent_id =
        spiffe_id_from_api(e.parent_id.as_ref()).map_err(|e| err(format!("invalid parent ID field: {e}")))?;
    let selectors = e
        .selectors
        .iter()
        .map(selector_from_api)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("invalid selectors field: {e}")))?;
    let federates_with = e
        .federates_with
        .iter()
        .map(|td| {
            TrustDomain::parse(td).map_err(|e| err(format!("invalid federatesWith field: invalid trust domain: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Entry {
        id: e.id.clone(),
        spiffe_id,
        parent_id,
        selectors,
        x509_svid_ttl: ttl_from_api(e.x509_svid_ttl),
        jwt_svid_ttl: ttl_from_api(e.jwt_svid_ttl),
        federates_with,
        admin: e.admin,
        downstream: e.downstream,
        dns_names: e.dns_names.clone(),
        hint: e.hint.clone(),
        store_svid: e.store_svid,
        additional_attributes: e.additional_attributes.as_ref().map(|a| AdditionalAttributes {
            disable_x509_svid_prefetch: a.disable_x509_svid_prefetch,
            jwt_svid_include_jti: a.jwt_svid_include_jti,
        }),
        revision: e.revision_number,
    })
}

/// Upstream's `ValidateBundleEndpointURL`: present, parses, `https`, has a host, no userinfo.
pub fn validate_bundle_endpoint_url(s: &str) -> Result<(), ConvertError> {
    if s.is_empty() {
        return Err(err("bundle endpoint URL is missing"));
    }
    let u = url::Url::parse(s).map_err(|e| err(e.to_string()))?;
    if u.scheme() != "https" {
        return Err(err("scheme must be https"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(err("host must be specified"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(err("cannot contain userinfo"));
    }
    Ok(())
}

pub fn bundle_to_api(b: &Bundle) -> api::Bundle {
    api::Bundle {
        trust_domain: b.trust_domain.name().to_owned(),
        x509_authorities: b
            .x509_authorities
            .iter()
            .map(|der| api::X509Certificate { asn1: der.clone(), tainted: false })
            .collect(),
        jwt_authorities: b
            .jwt_authorities
            .iter()
            .map(|k| api::JwtKey {
                public_key: k.public_key.clone(),
                key_id: k.key_id.clone(),
                expires_at: k.expires_at,
                tainted: false,
            })
            .collect(),
        refresh_hint: b.refresh_hint,
        sequence_number: b.sequence_number,
    }
}

/// Checks that each X.509 authority is a certificate and each JWT authority has a key
/// ID and a PKIX public key, as upstream's conversion (which parses them) does.
pub fn bundle_from_api(b: &api::Bundle) -> Result<Bundle, ConvertError> {
    let trust_domain = TrustDomain::parse(&b.trust_domain).map_err(|e| err(format!("invalid trust domain: {e}")))?;
    let mut x509_authorities = Vec::with_capacity(b.x509_authorities.len());
    for (i, cert) in b.x509_authorities.iter().enumerate() {
        x509_parser::parse_x509_certificate(&cert.asn1)
            .map_err(|e| err(format!("x509 authority {i}: invalid certificate: {e}")))?;
        x509_authorities.push(cert.asn1.clone());
    }
    let mut jwt_authorities = Vec::with_capacity(b.jwt_authorities.len());
    for key in &b.jwt_authorities {
        if key.key_id.is_empty() {
            return Err(err("key ID is missing"));
        }
        x509_parser::x509::SubjectPublicKeyInfo::from_der(&key.public_key)
            .map_err(|e| err(format!("JWT authority {:?}: failed to unmarshal public key: {e}", key.key_id)))?;
        jwt_authorities.push(JwtAuthority {
            key_id: key.key_id.clone(),
            public_key: key.public_key.clone(),
            expires_at: key.expires_at,
        });
    }
    Ok(Bundle {
        trust_domain,
        x509_authorities,
        jwt_authorities,
        refresh_hint: b.refresh_hint,
        sequence_number: b.sequence_number,
    })
}

/// Fails (like upstream) on an invalid bundle endpoint URL; nothing is sent then.
pub fn federation_relationship_to_api(
    fr: &FederationRelationship,
) -> Result<api::FederationRelationship, ConvertError> {
    validate_bundle_endpoint_url(&fr.bundle_endpoint_url)
        .map_err(|e| err(format!("invalid bundle endpoint URL: {e}")))?;
    let profile = match &fr.bundle_endpoint_profile {
        BundleEndpointProfile::HttpsWeb => ApiProfile::HttpsWeb(api::HttpsWebProfile {}),
        BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
            ApiProfile::HttpsSpiffe(api::HttpsspiffeProfile { endpoint_spiffe_id: endpoint_spiffe_id.to_string() })
        }
    };
    Ok(api::FederationRelationship {
        trust_domain: fr.trust_domain.name().to_owned(),
        bundle_endpoint_url: fr.bundle_endpoint_url.clone(),
        bundle_endpoint_profile: Some(profile),
        trust_domain_bundle: fr.trust_domain_bundle.as_ref().map(bundle_to_api),
    })
}

pub fn federation_relationship_from_api(
    fr: &api::FederationRelationship,
) -> Result<FederationRelationship, ConvertError> {
    let trust_domain = TrustDomain::parse(&fr.trust_domain).map_err(|e| err(format!("invalid trust domain: {e}")))?;
    validate_bundle_endpoint_url(&fr.bundle_endpoint_url)
        .map_err(|e| err(format!("invalid bundle endpoint URL: {e}")))?;
    let trust_domain_bundle = fr
        .trust_domain_bundle
        .as_ref()
        .map(bundle_from_api)
        .transpose()
        .map_err(|e| err(format!("invalid trust domain bundle: {e}")))?;
    let bundle_endpoint_profile = match &fr.bundle_endpoint_profile {
        Some(ApiProfile::HttpsWeb(_)) => BundleEndpointProfile::HttpsWeb,
        Some(ApiProfile::HttpsSpiffe(p)) => BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: SpiffeId::parse(&p.endpoint_spiffe_id)
                .map_err(|e| err(format!("invalid endpoint SPIFFE ID: {e}")))?,
        },
        None => return Err(err("bundle endpoint profile is missing")),
    };
    Ok(FederationRelationship {
        trust_domain,
        bundle_endpoint_url: fr.bundle_endpoint_url.clone(),
        bundle_endpoint_profile,
        trust_domain_bundle,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn entry_round_trip() {
        let mut e = Entry::new(
            id("spiffe://example.org/a"),
            id("spiffe://example.org/node"),
            vec![Selector::new("k8s", "ns:x")],
        );
        e.id = "abc".into();
        e.x509_svid_ttl = Duration::from_secs(3600);
        e.jwt_svid_ttl = Duration::from_millis(60_900); // truncated to whole seconds
        e.federates_with = vec![TrustDomain::parse("other.org").unwrap()];
        e.admin = true;
        e.downstream = true;
        e.dns_names = vec!["a.example".into(), "b.example".into()];
        e.hint = "h".into();
        e.store_svid = true;
        let wire = entry_to_api(&e);
        assert_eq!(wire.spiffe_id, Some(api::Spiffeid { trust_domain: "example.org".into(), path: "/a".into() }));
        assert_eq!(wire.jwt_svid_ttl, 60);
        assert_eq!(wire.federates_with, vec!["other.org".to_string()]);
        let back = entry_from_api(&wire).unwrap();
        e.jwt_svid_ttl = Duration::from_secs(60);
        assert_eq!(back, e);
    }

    #[test]
    fn entry_from_api_rejects() {
        let good = entry_to_api(&Entry::new(
            id("spiffe://example.org/a"),
            id("spiffe://example.org/b"),
            vec![Selector::new("a", "1")],
        ));
        type Mutation = Box<dyn Fn(&mut api::Entry)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|e| e.spiffe_id = None), "invalid SPIFFE ID field: SPIFFE ID is nil"),
            (
                Box::new(|e| e.parent_id.as_mut().unwrap().path = "x".into()),
                "invalid parent ID field: path must have a leading slash",
            ),
            (
                Box::new(|e| e.spiffe_id.as_mut().unwrap().trust_domain = "Bad".into()),
                "invalid SPIFFE ID field: trust domain characters",
            ),
            (Box::new(|e| e.selectors[0].r#type = String::new()), "invalid selectors field: selector type is empty"),
            (Box::new(|e| e.selectors[0].value = String::new()), "invalid selectors field: selector value is empty"),
            (
                Box::new(|e| e.selectors[0].r#type = "a:b".into()),
                "invalid selectors field: selector type cannot contain a colon",
            ),
            (Box::new(|e| e.federates_with = vec!["B@d".into()]), "invalid federatesWith field: invalid trust domain"),
        ];
        for (mutate, want) in cases {
            let mut e = good.clone();
            mutate(&mut e);
            let got = entry_from_api(&e).unwrap_err().to_string();
            assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn bundle_endpoint_url_rules() {
        assert!(validate_bundle_endpoint_url("https://example.org/bundle").is_ok());
        assert!(validate_bundle_endpoint_url("https://127.0.0.1:8443").is_ok());
        assert_eq!(validate_bundle_endpoint_url("").unwrap_err().0, "bundle endpoint URL is missing");
        assert_eq!(validate_bundle_endpoint_url("http://example.org").unwrap_err().0, "scheme must be https");
        assert_eq!(validate_bundle_endpoint_url("https://u:p@example.org").unwrap_err().0, "cannot contain userinfo");
        assert!(validate_bundle_endpoint_url("not a url").is_err());
    }

    #[test]
    fn federation_relationship_round_trip() {
        let bundle =
            Bundle { refresh_hint: 30, sequence_number: 2, ..Bundle::empty(TrustDomain::parse("other.org").unwrap()) };
        for profile in [
            BundleEndpointProfile::HttpsWeb,
            BundleEndpointProfile::HttpsSpiffe { endpoint_spiffe_id: id("spiffe://other.org/spire/server") },
        ] {
            let fr = FederationRelationship {
                trust_domain: TrustDomain::parse("other.org").unwrap(),
                bundle_endpoint_url: "https://other.org:8443".into(),
                bundle_endpoint_profile: profile,
                trust_domain_bundle: Some(bundle.clone()),
            };
            let wire = federation_relationship_to_api(&fr).unwrap();
            assert_eq!(federation_relationship_from_api(&wire).unwrap(), fr);
        }
        let mut wire = federation_relationship_to_api(&FederationRelationship {
            trust_domain: TrustDomain::parse("other.org").unwrap(),
            bundle_endpoint_url: "https://other.org".into(),
            bundle_endpoint_profile: BundleEndpointProfile::HttpsWeb,
            trust_domain_bundle: None,
        })
        .unwrap();
        wire.bundle_endpoint_profile = None;
        assert_eq!(federation_relationship_from_api(&wire).unwrap_err().0, "bundle endpoint profile is missing");
        wire.bundle_endpoint_profile =
            Some(ApiProfile::HttpsSpiffe(api::HttpsspiffeProfile { endpoint_spiffe_id: "nope".into() }));
        assert!(federation_relationship_from_api(&wire).unwrap_err().0.starts_with("invalid endpoint SPIFFE ID"));
        wire.bundle_endpoint_url = "http://x".into();
        assert!(federation_relationship_from_api(&wire).unwrap_err().0.starts_with("invalid bundle endpoint URL"));
    }

    #[test]
    fn bundle_from_api_checks_material() {
        let mut b = bundle_to_api(&Bundle::empty(TrustDomain::parse("example.org").unwrap()));
        b.x509_authorities.push(api::X509Certificate { asn1: vec![1, 2, 3], tainted: false });
        assert!(bundle_from_api(&b).unwrap_err().0.starts_with("x509 authority 0: invalid certificate"));
        b.x509_authorities.clear();
        b.jwt_authorities.push(api::JwtKey {
            public_key: vec![1],
            key_id: String::new(),
            expires_at: 0,
            tainted: false,
        });
        assert_eq!(bundle_from_api(&b).unwrap_err().0, "key ID is missing");
        b.jwt_authorities[0].key_id = "k".into();
        assert!(bundle_from_api(&b).unwrap_err().0.contains("failed to unmarshal public key"));
    }
}
