//! Table tests: parsing, declare, plan and the pass over an in-memory fake SPIRE.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use scm_api::{
    BundleEndpointProfile as CrProfile, BundleEndpointProfileType, ClusterFederatedTrustDomain,
    ClusterFederatedTrustDomainSpec, ClusterFederatedTrustDomainStatus,
};
use scm_spiffe::{Bundle, BundleEndpointProfile, FederationRelationship, JwtAuthority, SpiffeId, TrustDomain};
use scm_spire_api::{BatchError, BatchResult, ItemError, ItemErrorKind, SpireError};
use tonic::Code;

use crate::*;

// ---------------------------------------------------------------- fixtures

fn td(s: &str) -> TrustDomain {
    TrustDomain::parse(s).unwrap()
}

fn ca_der() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().der().to_vec()
}

fn jwt_key(kid: &str) -> JwtAuthority {
    use rcgen::PublicKeyData as _;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    JwtAuthority { key_id: kid.into(), public_key: key.subject_public_key_info(), expires_at: 0 }
}

fn bundle(name: &str, x509: &[&Vec<u8>], jwt: &[&JwtAuthority]) -> Bundle {
    Bundle {
        trust_domain: td(name),
        x509_authorities: x509.iter().map(|d| (*d).clone()).collect(),
        jwt_authorities: jwt.iter().map(|k| (*k).clone()).collect(),
        refresh_hint: 0,
        sequence_number: 0,
    }
}

fn web_spec(trust_domain: &str, url: &str) -> ClusterFederatedTrustDomainSpec {
    ClusterFederatedTrustDomainSpec {
        trust_domain: trust_domain.into(),
        bundle_endpoint_url: url.into(),
        bundle_endpoint_profile: CrProfile { r#type: BundleEndpointProfileType::HttpsWeb, endpoint_spiffe_id: None },
        trust_domain_bundle: None,
        class_name: None,
    }
}

fn spiffe_spec(
    trust_domain: &str,
    url: &str,
    endpoint_id: &str,
    bundle: Option<&Bundle>,
) -> ClusterFederatedTrustDomainSpec {
    ClusterFederatedTrustDomainSpec {
        trust_domain: trust_domain.into(),
        bundle_endpoint_url: url.into(),
        bundle_endpoint_profile: CrProfile {
            r#type: BundleEndpointProfileType::HttpsSpiffe,
            endpoint_spiffe_id: Some(endpoint_id.into()),
        },
        trust_domain_bundle: bundle.map(Bundle::to_jwks),
        class_name: None,
    }
}

fn cr(name: &str, uid: &str, created: i64, spec: ClusterFederatedTrustDomainSpec) -> Arc<ClusterFederatedTrustDomain> {
    let mut cr = ClusterFederatedTrustDomain::new(name, spec);
    cr.metadata = ObjectMeta {
        name: Some(name.into()),
        uid: Some(uid.into()),
        generation: Some(1),
        creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
        ..Default::default()
    };
    Arc::new(cr)
}

fn with_class(mut spec: ClusterFederatedTrustDomainSpec, class: &str) -> ClusterFederatedTrustDomainSpec {
    spec.class_name = Some(class.into());
    spec
}

fn web_fr(name: &str, url: &str) -> FederationRelationship {
    FederationRelationship {
        trust_domain: td(name),
        bundle_endpoint_url: url.into(),
        bundle_endpoint_profile: BundleEndpointProfile::HttpsWeb,
        trust_domain_bundle: None,
    }
}

fn spiffe_fr(name: &str, url: &str, endpoint_id: &str, bundle: Option<Bundle>) -> FederationRelationship {
    FederationRelationship {
        trust_domain: td(name),
        bundle_endpoint_url: url.into(),
        bundle_endpoint_profile: BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: SpiffeId::parse(endpoint_id).unwrap(),
        },
        trust_domain_bundle: bundle,
    }
}

// ---------------------------------------------------------------- parse

#[test]
fn parse_valid_specs() {
    let fr = parse_federated_trust_domain(&web_spec("other.org", "https://other.org/bundle")).unwrap();
    assert_eq!(fr, web_fr("other.org", "https://other.org/bundle"));

    let ca = ca_der();
    let k = jwt_key("k1");
    let b = bundle("partner.example", &[&ca], &[&k]);
    // The endpoint SPIFFE ID may be in any trust domain.
    let spec =
        spiffe_spec("partner.example", "https://127.0.0.1:8443", "spiffe://elsewhere.test/spire/server", Some(&b));
    let fr = parse_federated_trust_domain(&spec).unwrap();
    assert_eq!(
        fr,
        spiffe_fr("partner.example", "https://127.0.0.1:8443", "spiffe://elsewhere.test/spire/server", Some(b))
    );

    // go-spiffe TrustDomainFromString: a SPIFFE ID gives its trust domain.
    let fr = parse_federated_trust_domain(&web_spec("spiffe://other.org/x", "https://other.org")).unwrap();
    assert_eq!(fr.trust_domain, td("other.org"));

    // Schemes are case-insensitive (Go's url.Parse lower-cases them too).
    assert!(parse_federated_trust_domain(&web_spec("other.org", "HTTPS://other.org:8443/b")).is_ok());

    // An empty bundle string is "no bundle"; an empty endpoint ID is "none" for https_web.
    let mut spec = web_spec("other.org", "https://other.org");
    spec.trust_domain_bundle = Some(String::new());
    spec.bundle_endpoint_profile.endpoint_spiffe_id = Some(String::new());
    assert_eq!(parse_federated_trust_domain(&spec).unwrap().trust_domain_bundle, None);
}

#[test]
fn parse_errors_name_their_field() {
    let bundle_doc = |doc: &str| {
        let mut s = web_spec("other.org", "https://other.org");
        s.trust_domain_bundle = Some(doc.into());
        s
    };
    let ca = ca_der();
    let cases: Vec<(&str, ClusterFederatedTrustDomainSpec, &str, &str)> = vec![
        (
            "empty trust domain",
            web_spec("", "https://x.org"),
            FIELD_TRUST_DOMAIN,
            "invalid trustDomain value: trust domain is missing",
        ),
        (
            "upper-case trust domain",
            web_spec("Other.org", "https://x.org"),
            FIELD_TRUST_DOMAIN,
            "invalid trustDomain value: trust domain characters are limited",
        ),
        (
            "bad SPIFFE ID as trust domain",
            web_spec("spiffe://", "https://x.org"),
            FIELD_TRUST_DOMAIN,
            "invalid trustDomain value: trust domain is missing",
        ),
        (
            "empty URL",
            web_spec("other.org", ""),
            FIELD_BUNDLE_ENDPOINT_URL,
            "invalid bundleEndpointURL value: bundle endpoint URL is missing",
        ),
        (
            "not a URL",
            web_spec("other.org", "other.org/bundle"),
            FIELD_BUNDLE_ENDPOINT_URL,
            "invalid bundleEndpointURL value: not a valid URL",
        ),
        (
            "http scheme",
            web_spec("other.org", "http://other.org"),
            FIELD_BUNDLE_ENDPOINT_URL,
            "invalid bundleEndpointURL value: scheme must be https",
        ),
        (
            "ftp scheme",
            web_spec("other.org", "ftp://other.org"),
            FIELD_BUNDLE_ENDPOINT_URL,
            "invalid bundleEndpointURL value: scheme must be https",
        ),
        (
            "no host",
            web_spec("other.org", "https://"),
            FIELD_BUNDLE_ENDPOINT_URL,
            "invalid bundleEndpointURL value: not a valid URL: empty host",
        ),
        (
            "userinfo",
            web_spec("other.org", "https://user:pw@other.org"),
            FIELD_BUNDLE_ENDPOINT_URL,
            "invalid bundleEndpointURL value: cannot contain userinfo",
        ),
        (
            "user only",
            web_spec("other.org", "https://user@other.org"),
            FIELD_BUNDLE_ENDPOINT_URL,
            "invalid bundleEndpointURL value: cannot contain userinfo",
        ),
        (
            "https_web with endpoint ID",
            {
                let mut s = web_spec("other.org", "https://other.org");
                s.bundle_endpoint_profile.endpoint_spiffe_id = Some("spiffe://other.org/spire/server".into());
                s
            },
            FIELD_ENDPOINT_SPIFFE_ID,
            "invalid bundle endpoint profile endpointSPIFFEID value: not applicable to the \"https_web\" profile",
        ),
        (
            "https_spiffe without endpoint ID",
            {
                let mut s = spiffe_spec("other.org", "https://other.org", "", None);
                s.bundle_endpoint_profile.endpoint_spiffe_id = None;
                s
            },
            FIELD_ENDPOINT_SPIFFE_ID,
            "invalid bundle endpoint profile endpointSPIFFEID value: cannot be empty (required by the \"https_spiffe\" profile)",
        ),
        (
            "https_spiffe with a bad endpoint ID",
            spiffe_spec("other.org", "https://other.org", "spiffe://other.org/a//b", None),
            FIELD_ENDPOINT_SPIFFE_ID,
            "invalid bundle endpoint profile endpointSPIFFEID value: path cannot contain empty segments",
        ),
        (
            "https_spiffe with a trust domain as endpoint ID",
            spiffe_spec("other.org", "https://other.org", "other.org", None),
            FIELD_ENDPOINT_SPIFFE_ID,
            "invalid bundle endpoint profile endpointSPIFFEID value: scheme is missing or invalid",
        ),
        (
            "bundle not JSON",
            bundle_doc("-----BEGIN CERTIFICATE-----"),
            FIELD_TRUST_DOMAIN_BUNDLE,
            "invalid trustDomainBundle value: spiffebundle: unable to parse JWKS",
        ),
        (
            "bundle without keys",
            bundle_doc("{}"),
            FIELD_TRUST_DOMAIN_BUNDLE,
            "invalid trustDomainBundle value: spiffebundle: no authorities found",
        ),
        (
            "bundle with a bad certificate",
            bundle_doc(r#"{"keys":[{"use":"x509-svid","x5c":["bm90IGEgY2VydA=="]}]}"#),
            FIELD_TRUST_DOMAIN_BUNDLE,
            "invalid trustDomainBundle value: spiffebundle: error adding authority 0 of JWKS",
        ),
        (
            "bundle with two certificates in one key",
            {
                use base64::Engine as _;
                let c = base64::engine::general_purpose::STANDARD.encode(&ca);
                bundle_doc(&format!(r#"{{"keys":[{{"use":"x509-svid","x5c":["{c}","{c}"]}}]}}"#))
            },
            FIELD_TRUST_DOMAIN_BUNDLE,
            "invalid trustDomainBundle value: spiffebundle: expected a single certificate in x509-svid entry 0; got 2",
        ),
        // Checked in upstream's order: the trust domain first.
        (
            "several problems: the first is reported",
            web_spec("BAD", "http://x"),
            FIELD_TRUST_DOMAIN,
            "invalid trustDomain value",
        ),
        (
            "URL before profile",
            {
                let mut s = spiffe_spec("other.org", "http://other.org", "", None);
                s.bundle_endpoint_profile.endpoint_spiffe_id = None;
                s
            },
            FIELD_BUNDLE_ENDPOINT_URL,
            "invalid bundleEndpointURL value",
        ),
    ];
    for (what, spec, field, message_prefix) in cases {
        let err = parse_federated_trust_domain(&spec).unwrap_err();
        assert_eq!(err.field, field, "{what}: {err}");
        assert!(
            err.message.starts_with(message_prefix),
            "{what}: got {:?}, want prefix {message_prefix:?}",
            err.message
        );
        assert_eq!(err.to_string(), format!("{field}: {}", err.message), "{what}");
    }
}

#[test]
fn parse_bundle_is_for_the_spec_trust_domain() {
    // The bundle document carries no trust domain: it is the spec's.
    let b = bundle("whatever.test", &[&ca_der()], &[]);
    let fr = parse_federated_trust_domain(&spiffe_spec(
        "partner.example",
        "https://p",
        "spiffe://partner.example/s",
        Some(&b),
    ))
    .unwrap();
    assert_eq!(fr.trust_domain_bundle.unwrap().trust_domain, td("partner.example"));
}

// ---------------------------------------------------------------- declare

#[test]
fn class_filter_combinations() {
    let crs = vec![
        cr("classless", "u1", 1, web_spec("a.org", "https://a.org")),
        cr("class-x", "u2", 2, with_class(web_spec("b.org", "https://b.org"), "x")),
        cr("class-y", "u3", 3, with_class(web_spec("c.org", "https://c.org"), "y")),
        cr("class-empty", "u4", 4, with_class(web_spec("d.org", "https://d.org"), "")),
    ];
    // (config className, watchClassless, CRs processed)
    let cases: &[(&str, bool, &[&str])] = &[
        ("", false, &["class-empty", "classless"]), // "" == "" matches regardless of watchClassless
        ("", true, &["class-empty", "classless"]),
        ("x", false, &["class-x"]),
        ("x", true, &["class-empty", "class-x", "classless"]),
        ("z", false, &[]),
        ("z", true, &["class-empty", "classless"]),
    ];
    for (class, watch, want) in cases {
        let d = declare(&crs, class, *watch);
        let got: Vec<&str> = d.outcomes.keys().map(String::as_str).collect();
        assert_eq!(got, *want, "className={class:?} watchClassless={watch}");
        assert_eq!(d.relationships.len(), want.len());
        assert!(d.outcomes.values().all(|o| *o == Outcome::Declared));
    }
}

#[test]
fn oldest_wins_with_uid_tie_break() {
    let crs = vec![
        cr("newest", "a", 300, web_spec("x.org", "https://newest")),
        cr("tie-b", "uid-b", 100, web_spec("x.org", "https://tie-b")),
        cr("tie-a", "uid-a", 100, web_spec("x.org", "https://tie-a")),
        cr("other", "z", 200, web_spec("y.org", "https://y")),
    ];
    let d = declare(&crs, "", true);
    assert_eq!(d.outcomes["tie-a"], Outcome::Declared);
    assert_eq!(d.outcomes["tie-b"], Outcome::Conflict { winner: "tie-a".into() });
    assert_eq!(d.outcomes["newest"], Outcome::Conflict { winner: "tie-a".into() });
    assert_eq!(d.outcomes["other"], Outcome::Declared);
    let urls: Vec<&str> = d.relationships.iter().map(|(_, fr)| fr.bundle_endpoint_url.as_str()).collect();
    assert_eq!(urls, ["https://tie-a", "https://y"], "winners, oldest first");
    assert_eq!(d.cr_of(&td("x.org")).unwrap().uid, "uid-a");
}

#[test]
fn invalid_crs_do_not_win_conflicts() {
    let crs = vec![
        cr("old-invalid", "a", 1, web_spec("x.org", "http://insecure")),
        cr("young-valid", "b", 2, web_spec("x.org", "https://ok")),
        cr("bad-td", "c", 3, web_spec("NOT VALID", "https://ok")),
    ];
    let d = declare(&crs, "", true);
    assert!(matches!(&d.outcomes["old-invalid"], Outcome::Invalid(m) if m.starts_with("spec.bundleEndpointURL: ")));
    assert_eq!(d.outcomes["young-valid"], Outcome::Declared);
    assert!(matches!(&d.outcomes["bad-td"], Outcome::Invalid(m) if m.starts_with("spec.trustDomain: ")));
    assert_eq!(d.invalid_trust_domains.get("x.org").map(String::as_str), Some("old-invalid"));
    assert_eq!(d.invalid_trust_domains.get("NOT VALID").map(String::as_str), Some("bad-td"));
}

#[test]
fn cr_ref_ready_at_generation() {
    let mut c = (*cr("a", "u", 1, web_spec("x.org", "https://x"))).clone();
    c.metadata.generation = Some(3);
    let cond = |status: &str, generation: i64| Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: "Applied".into(),
        message: String::new(),
        last_transition_time: Time(Timestamp::from_second(1).unwrap()),
        observed_generation: Some(generation),
    };
    assert!(!CrRef::of(&c).ready_at_generation);
    for (status, generation, want) in [("True", 3, true), ("True", 2, false), ("False", 3, false)] {
        c.status = Some(ClusterFederatedTrustDomainStatus {
            conditions: vec![cond(status, generation)],
            ..Default::default()
        });
        assert_eq!(CrRef::of(&c).ready_at_generation, want, "{status} {generation}");
    }
}

// ---------------------------------------------------------------- plan

#[test]
fn plan_create_update_delete_unchanged() {
    let crs = vec![
        cr("new", "1", 1, web_spec("new.org", "https://new")),
        cr("same", "2", 2, web_spec("same.org", "https://same")),
        cr("url", "3", 3, web_spec("url.org", "https://url/v2")),
        cr("profile", "4", 4, spiffe_spec("profile.org", "https://p", "spiffe://profile.org/s", None)),
        cr("endpoint-id", "5", 5, spiffe_spec("eid.org", "https://e", "spiffe://eid.org/new", None)),
    ];
    let current = vec![
        web_fr("same.org", "https://same"),
        web_fr("url.org", "https://url/v1"),
        web_fr("profile.org", "https://p"),
        spiffe_fr("eid.org", "https://e", "spiffe://eid.org/old", None),
        web_fr("gone.org", "https://gone"),
        web_fr("another-gone.org", "https://gone"),
    ];
    let p = plan(&declare(&crs, "", true), &current);
    assert_eq!(p.deletes, vec![td("another-gone.org"), td("gone.org")]);
    assert_eq!(p.creates, vec![web_fr("new.org", "https://new")]);
    let updated: Vec<&str> = p.updates.iter().map(|fr| fr.trust_domain.name()).collect();
    assert_eq!(updated, ["url.org", "profile.org", "eid.org"]);
    assert_eq!(p.changed_fields[&td("url.org")], ["bundleEndpointURL"]);
    assert_eq!(p.changed_fields[&td("profile.org")], ["bundleEndpointProfile"]);
    assert_eq!(p.changed_fields[&td("eid.org")], ["bundleEndpointProfile.endpointSPIFFEID"]);
    assert_eq!(p.unchanged, vec![td("same.org")]);
    assert!(p.kept.is_empty());
    assert_eq!(p.write_count(), 6);
}

#[test]
fn invalid_cr_keeps_its_relationship() {
    let current = vec![web_fr("x.org", "https://x"), web_fr("y.org", "https://y"), web_fr("z.org", "https://z")];
    let crs = vec![
        // Was valid (x.org exists in SPIRE), now broken: kept.
        cr("x", "1", 1, web_spec("x.org", "http://x")),
        // Broken trust domain: cannot name a relationship, protects nothing.
        cr("y", "2", 2, web_spec("Y.ORG", "https://y")),
        // Invalid, but a valid CR declares the same trust domain: that one rules.
        cr("z-invalid", "3", 3, web_spec("z.org", "http://z")),
        cr("z-valid", "4", 4, web_spec("z.org", "https://z2")),
    ];
    let p = plan(&declare(&crs, "", true), &current);
    assert_eq!(p.kept, vec![(td("x.org"), "x".to_owned())]);
    assert_eq!(p.deletes, vec![td("y.org")]);
    assert_eq!(p.updates, vec![web_fr("z.org", "https://z2")]);
    // Once the CR is deleted, the relationship goes.
    let p = plan(&declare(&crs[1..], "", true), &current);
    assert!(p.kept.is_empty());
    assert_eq!(p.deletes, vec![td("x.org"), td("y.org")]);
    // A CR of another class does not protect anything either.
    let other_class = vec![cr("x", "1", 1, with_class(web_spec("x.org", "http://x"), "other"))];
    assert_eq!(plan(&declare(&other_class, "", true), &current[..1]).deletes, vec![td("x.org")]);
}

#[test]
fn bundle_rule_table() {
    let (ca1, ca2, ca3) = (ca_der(), ca_der(), ca_der());
    let k1 = jwt_key("k1");
    let url = "https://p";
    let eid = "spiffe://p.org/spire/server";
    let b1 = bundle("p.org", &[&ca1], &[&k1]);
    let b12 = bundle("p.org", &[&ca1, &ca2], &[&k1]);
    let b2 = bundle("p.org", &[&ca2], &[]);
    let mut b1_reordered_meta = bundle("p.org", &[&ca1], &[&k1]);
    b1_reordered_meta.sequence_number = 7;
    let refreshed = {
        // What SPIRE holds after refreshing: new authority, its own metadata.
        let mut b = bundle("p.org", &[&ca1, &ca3], &[&k1]);
        b.refresh_hint = 300;
        b
    };
    let rotated = bundle("p.org", &[&ca3], &[]);
    let mem = |b: Option<&Bundle>| {
        let mut m = BundleMemory::default();
        if let Some(b) = b {
            m.record(b);
        }
        m
    };
    // (what, CR bundle, SPIRE bundle, memory, ready_at_generation, want: None = unchanged, Some(pushed bundle?))
    type Case<'a> = (&'a str, Option<&'a Bundle>, Option<&'a Bundle>, Option<&'a Bundle>, bool, Option<bool>, bool);
    let cases: Vec<Case> = vec![
        ("no CR bundle, SPIRE refreshed", None, Some(&refreshed), None, false, None, false),
        ("remembered, SPIRE refreshed: no fight", Some(&b1), Some(&refreshed), Some(&b1), false, None, false),
        ("remembered, SPIRE rotated away: no fight", Some(&b1), Some(&rotated), Some(&b1), false, None, false),
        ("remembered, CR edited: pushed", Some(&b12), Some(&refreshed), Some(&b1), false, Some(true), false),
        (
            "remembered, CR edited (metadata only): pushed",
            Some(&b1_reordered_meta),
            Some(&b1),
            Some(&b1),
            false,
            Some(true),
            false,
        ),
        ("first pass, CR subset of SPIRE: adopted", Some(&b1), Some(&refreshed), None, false, None, true),
        ("first pass, CR has a new authority: pushed", Some(&b2), Some(&refreshed), None, false, Some(true), false),
        ("first pass, SPIRE has no bundle: pushed", Some(&b1), None, None, false, Some(true), false),
        ("first pass, rotated, status says applied: adopted", Some(&b1), Some(&rotated), None, true, None, true),
        (
            "first pass, status says applied, SPIRE has no bundle: pushed",
            Some(&b1),
            None,
            None,
            true,
            Some(true),
            false,
        ),
    ];
    for (what, cr_bundle, spire_bundle, remembered, ready, want_push, want_adopt) in cases {
        let mut c = (*cr("p", "u", 1, spiffe_spec("p.org", url, eid, cr_bundle))).clone();
        if ready {
            c.metadata.generation = Some(2);
            c.status = Some(ClusterFederatedTrustDomainStatus {
                conditions: vec![Condition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    reason: "Applied".into(),
                    message: String::new(),
                    last_transition_time: Time(Timestamp::from_second(1).unwrap()),
                    observed_generation: Some(2),
                }],
                ..Default::default()
            });
        }
        let current = vec![spiffe_fr("p.org", url, eid, spire_bundle.cloned())];
        let p = plan_with_memory(&declare(&[Arc::new(c)], "", true), &current, &mem(remembered));
        match want_push {
            None => {
                assert_eq!(p.unchanged, vec![td("p.org")], "{what}");
                assert!(p.updates.is_empty(), "{what}");
            }
            Some(_) => {
                assert_eq!(p.updates.len(), 1, "{what}");
                assert_eq!(p.changed_fields[&td("p.org")], ["trustDomainBundle"], "{what}");
                let sent = p.updates[0].trust_domain_bundle.as_ref().expect("bundle sent");
                assert_eq!(
                    Some(sent),
                    cr_bundle.map(|b| Bundle { trust_domain: td("p.org"), ..b.clone() }).as_ref(),
                    "{what}"
                );
            }
        }
        assert_eq!(!p.adopted.is_empty(), want_adopt, "{what}");
    }
}

#[test]
fn url_update_without_bundle_change_sends_no_bundle() {
    let ca = ca_der();
    let b = bundle("p.org", &[&ca], &[]);
    let crs = vec![cr("p", "u", 1, spiffe_spec("p.org", "https://new", "spiffe://p.org/s", Some(&b)))];
    let current = vec![spiffe_fr("p.org", "https://old", "spiffe://p.org/s", Some(b.clone()))];
    let mut memory = BundleMemory::default();
    memory.record(&b);
    let p = plan_with_memory(&declare(&crs, "", true), &current, &memory);
    assert_eq!(p.updates.len(), 1);
    assert_eq!(p.updates[0].trust_domain_bundle, None, "SPIRE keeps its (possibly refreshed) bundle");
    assert_eq!(p.changed_fields[&td("p.org")], ["bundleEndpointURL"]);
    // Creates always carry the CR's bundle (the bootstrap https_spiffe needs).
    let p = plan_with_memory(&declare(&crs, "", true), &[], &memory);
    assert_eq!(p.creates[0].trust_domain_bundle.as_ref(), Some(&b));
}

#[test]
fn authority_subset() {
    let (c1, c2) = (ca_der(), ca_der());
    let (k1, k2) = (jwt_key("k1"), jwt_key("k2"));
    let mut k1_other_key = jwt_key("k1");
    k1_other_key.expires_at = 5;
    let big = bundle("p.org", &[&c1, &c2], &[&k1, &k2]);
    assert!(authorities_subset(&bundle("p.org", &[], &[]), &big));
    assert!(authorities_subset(&bundle("p.org", &[&c2], &[&k2]), &big));
    assert!(!authorities_subset(&bundle("p.org", &[&ca_der()], &[]), &big));
    assert!(!authorities_subset(&bundle("p.org", &[], &[&k1_other_key]), &big), "same kid, other key");
    let mut k1_expiring = k1.clone();
    k1_expiring.expires_at = 99;
    assert!(authorities_subset(&bundle("p.org", &[], &[&k1_expiring]), &big), "expiry does not matter");
}

// ---------------------------------------------------------------- pass over a fake SPIRE

/// SPIRE's federation behaviour as observed on v1.13.3: create/update store the
/// relationship and, when a bundle is given, replace the trust domain's bundle; an
/// update without a bundle leaves the stored one.
#[derive(Default)]
struct FakeSpire {
    relationships: Mutex<BTreeMap<TrustDomain, FederationRelationship>>,
    calls: Mutex<Vec<String>>,
    fail_list: Mutex<bool>,
    fail_update_rpc: Mutex<bool>,
    reject_create: Mutex<Option<TrustDomain>>,
}

impl FakeSpire {
    fn with(relationships: Vec<FederationRelationship>) -> Self {
        let f = FakeSpire::default();
        *f.relationships.lock().unwrap() = relationships.into_iter().map(|fr| (fr.trust_domain.clone(), fr)).collect();
        f
    }
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
    fn get(&self, name: &str) -> Option<FederationRelationship> {
        self.relationships.lock().unwrap().get(&td(name)).cloned()
    }
    /// SPIRE's bundle refresher.
    fn refresh(&self, name: &str, bundle: Bundle) {
        self.relationships.lock().unwrap().get_mut(&td(name)).unwrap().trust_domain_bundle = Some(bundle);
    }
    fn rpc_error(method: &'static str) -> SpireError {
        SpireError::Rpc { method, code: Code::Unavailable, message: "down".into() }
    }
}

impl FederationApi for FakeSpire {
    async fn list_federation_relationships(&self) -> Result<Vec<FederationRelationship>, SpireError> {
        self.calls.lock().unwrap().push("list".into());
        if *self.fail_list.lock().unwrap() {
            return Err(Self::rpc_error("ListFederationRelationships"));
        }
        Ok(self.relationships.lock().unwrap().values().cloned().collect())
    }

    async fn create_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>> {
        let names: Vec<&str> = relationships.iter().map(|fr| fr.trust_domain.name()).collect();
        self.calls.lock().unwrap().push(format!("create {}", names.join(",")));
        let reject = self.reject_create.lock().unwrap().clone();
        let mut state = self.relationships.lock().unwrap();
        Ok(relationships
            .iter()
            .map(|fr| {
                if Some(&fr.trust_domain) == reject.as_ref() {
                    return Err(ItemError {
                        code: Code::Internal,
                        message: "datastore error".into(),
                        kind: ItemErrorKind::Rejected,
                    });
                }
                if state.contains_key(&fr.trust_domain) {
                    return Err(ItemError {
                        code: Code::AlreadyExists,
                        message: "exists".into(),
                        kind: ItemErrorKind::Rejected,
                    });
                }
                state.insert(fr.trust_domain.clone(), fr.clone());
                Ok(fr.clone())
            })
            .collect())
    }

    async fn update_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>> {
        let names: Vec<&str> = relationships.iter().map(|fr| fr.trust_domain.name()).collect();
        self.calls.lock().unwrap().push(format!("update {}", names.join(",")));
        if *self.fail_update_rpc.lock().unwrap() {
            let error = Self::rpc_error("BatchUpdateFederationRelationship");
            let results = relationships
                .iter()
                .map(|_| {
                    Err(ItemError {
                        code: Code::Unavailable,
                        message: error.to_string(),
                        kind: ItemErrorKind::RpcFailed,
                    })
                })
                .collect();
            return Err(BatchError { error, results });
        }
        let mut state = self.relationships.lock().unwrap();
        Ok(relationships
            .iter()
            .map(|fr| {
                let Some(stored) = state.get_mut(&fr.trust_domain) else {
                    return Err(ItemError {
                        code: Code::NotFound,
                        message: "not found".into(),
                        kind: ItemErrorKind::Rejected,
                    });
                };
                let bundle = fr.trust_domain_bundle.clone().or_else(|| stored.trust_domain_bundle.clone());
                *stored = FederationRelationship { trust_domain_bundle: bundle, ..fr.clone() };
                Ok(stored.clone())
            })
            .collect())
    }

    async fn delete_federation_relationships(
        &self,
        trust_domains: &[TrustDomain],
    ) -> Result<Vec<BatchResult<TrustDomain>>, BatchError<TrustDomain>> {
        let names: Vec<&str> = trust_domains.iter().map(TrustDomain::name).collect();
        self.calls.lock().unwrap().push(format!("delete {}", names.join(",")));
        let mut state = self.relationships.lock().unwrap();
        Ok(trust_domains
            .iter()
            .map(|t| match state.remove(t) {
                Some(_) => Ok(t.clone()),
                None => {
                    Err(ItemError { code: Code::NotFound, message: "not found".into(), kind: ItemErrorKind::Rejected })
                }
            })
            .collect())
    }
}

#[tokio::test]
async fn pass_applies_in_order_and_reports() {
    let spire = FakeSpire::with(vec![
        web_fr("gone.org", "https://gone"),
        web_fr("url.org", "https://url/v1"),
        web_fr("kept.org", "https://kept"),
        web_fr("same.org", "https://same"),
    ]);
    let crs = vec![
        cr("new", "1", 1, web_spec("new.org", "https://new")),
        cr("url", "2", 2, web_spec("url.org", "https://url/v2")),
        cr("kept", "3", 3, web_spec("kept.org", "http://now-invalid")),
        cr("same", "4", 4, web_spec("same.org", "https://same")),
        cr("dup", "5", 5, web_spec("same.org", "https://other")),
        cr("foreign", "6", 6, with_class(web_spec("foreign.org", "https://f"), "other")),
    ];
    let mut r = FederationReconciler::new("", true);
    let res = r.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list", "delete gone.org", "create new.org", "update url.org"]);
    assert_eq!((res.current, res.created, res.updated, res.deleted, res.failed, res.unchanged), (4, 1, 1, 1, 0, 1));
    assert_eq!(res.kept, vec![(td("kept.org"), "kept".to_owned())]);
    assert_eq!(res.deleted_trust_domains, vec![td("gone.org")]);
    assert_eq!(res.outcomes["new"], PassOutcome::Ready { trust_domain: td("new.org"), action: Action::Created });
    assert_eq!(
        res.outcomes["url"],
        PassOutcome::Ready {
            trust_domain: td("url.org"),
            action: Action::Updated { fields: vec!["bundleEndpointURL"] }
        }
    );
    assert_eq!(res.outcomes["same"], PassOutcome::Ready { trust_domain: td("same.org"), action: Action::Unchanged });
    assert_eq!(res.outcomes["dup"], PassOutcome::Conflict { winner: "same".into() });
    assert!(matches!(&res.outcomes["kept"], PassOutcome::Invalid { message, kept: Some(t) }
        if message.starts_with("spec.bundleEndpointURL: invalid bundleEndpointURL value: scheme must be https") && *t == td("kept.org")));
    assert!(!res.outcomes.contains_key("foreign"));
    assert_eq!(res.outcomes["kept"].reason(), "Invalid");
    assert_eq!(res.outcomes["dup"].reason(), "Conflict");
    assert_eq!(res.outcomes["new"].reason(), "Applied");
    assert!(res.outcomes["kept"].message().contains("is kept until this is fixed"));
    assert_eq!(
        res.outcome_counts(),
        BTreeMap::from([("apply_failed", 0), ("conflict", 1), ("invalid", 1), ("ready", 3)])
    );
    assert_eq!(res.writes, BTreeMap::from([(("create", "ok"), 1), (("delete", "ok"), 1), (("update", "ok"), 1)]));
    assert!(spire.get("kept.org").is_some());

    // Nothing changed: one list, zero writes.
    let res = r.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list"]);
    assert_eq!((res.created, res.updated, res.deleted, res.failed, res.unchanged), (0, 0, 0, 0, 3));
    assert_eq!(res.write_attempts(), 0);
}

#[tokio::test]
async fn bundle_change_pushed_once_and_spire_refresh_not_fought() {
    let (ca1, ca2, ca3) = (ca_der(), ca_der(), ca_der());
    let b1 = bundle("p.org", &[&ca1], &[]);
    let b2 = bundle("p.org", &[&ca2], &[]);
    let eid = "spiffe://p.org/spire/server";
    let spire = FakeSpire::default();
    let mut r = FederationReconciler::new("", true);

    let crs = vec![cr("p", "u", 1, spiffe_spec("p.org", "https://p", eid, Some(&b1)))];
    r.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list", "create p.org"]);
    assert_eq!(spire.get("p.org").unwrap().trust_domain_bundle, Some(b1.clone()));
    assert_eq!(r.memory().len(), 1);

    // SPIRE refreshes from the endpoint: its bundle now differs from the CR's. No write.
    spire.refresh("p.org", bundle("p.org", &[&ca3], &[]));
    let res = r.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list"]);
    assert_eq!(res.outcomes["p"], PassOutcome::Ready { trust_domain: td("p.org"), action: Action::Unchanged });

    // The CR's bundle is edited: pushed once...
    let crs = vec![cr("p", "u", 1, spiffe_spec("p.org", "https://p", eid, Some(&b2)))];
    let res = r.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list", "update p.org"]);
    assert_eq!(
        res.outcomes["p"],
        PassOutcome::Ready { trust_domain: td("p.org"), action: Action::Updated { fields: vec!["trustDomainBundle"] } }
    );
    assert_eq!(spire.get("p.org").unwrap().trust_domain_bundle, Some(b2.clone()));
    // ...and not again, even after SPIRE refreshes once more.
    spire.refresh("p.org", bundle("p.org", &[&ca3], &[]));
    r.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list"]);

    // A URL change alone does not re-send the bootstrap bundle.
    let crs = vec![cr("p", "u", 1, spiffe_spec("p.org", "https://p2", eid, Some(&b2)))];
    r.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list", "update p.org"]);
    assert_eq!(spire.get("p.org").unwrap().trust_domain_bundle, Some(bundle("p.org", &[&ca3], &[])));

    // A restart (empty memory) with SPIRE holding a superset of the CR bundle: no write.
    let with_b2 = bundle("p.org", &[&ca2, &ca3], &[]);
    spire.refresh("p.org", with_b2);
    let mut restarted = FederationReconciler::new("", true);
    restarted.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list"]);
    assert_eq!(restarted.memory().len(), 1, "adopted");

    // Removing the CR deletes the relationship and forgets the bundle.
    restarted.pass_with(&spire, &[]).await.unwrap();
    assert_eq!(spire.take_calls(), ["list", "delete p.org"]);
    assert!(restarted.memory().is_empty());
}

#[tokio::test]
async fn failures() {
    let ca = ca_der();
    let b = bundle("p.org", &[&ca], &[]);
    let eid = "spiffe://p.org/s";
    let spire = FakeSpire::with(vec![spiffe_fr("p.org", "https://p", eid, Some(bundle("p.org", &[&ca_der()], &[])))]);
    let mut r = FederationReconciler::new("", true);

    // A failed list: Err, nothing written.
    *spire.fail_list.lock().unwrap() = true;
    let err = r.pass_with(&spire, &[]).await.unwrap_err();
    assert!(
        err.to_string().starts_with("failed to list federation relationships: ListFederationRelationships failed"),
        "{err}"
    );
    assert_eq!(spire.take_calls(), ["list"]);
    *spire.fail_list.lock().unwrap() = false;

    // An update RPC failure: ApplyFailed, counted, bundle not remembered, retried next pass.
    let crs = vec![
        cr("p", "u", 1, spiffe_spec("p.org", "https://p", eid, Some(&b))),
        cr("q", "v", 2, web_spec("q.org", "https://q")),
    ];
    *spire.fail_update_rpc.lock().unwrap() = true;
    *spire.reject_create.lock().unwrap() = Some(td("q.org"));
    let res = r.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list", "create q.org", "update p.org"]);
    assert_eq!((res.updated, res.created, res.failed), (0, 0, 2));
    assert_eq!(res.write_errors.len(), 1);
    assert!(matches!(&res.outcomes["p"], PassOutcome::ApplyFailed { message, .. } if message.contains("down")));
    assert!(
        matches!(&res.outcomes["q"], PassOutcome::ApplyFailed { message, .. } if message.contains("datastore error"))
    );
    assert_eq!(res.outcomes["p"].reason(), "ApplyFailed");
    assert_eq!(res.writes, BTreeMap::from([(("create", "error"), 1), (("update", "error"), 1)]));
    assert!(r.memory().is_empty());

    *spire.fail_update_rpc.lock().unwrap() = false;
    *spire.reject_create.lock().unwrap() = None;
    let res = r.pass_with(&spire, &crs).await.unwrap();
    assert_eq!(spire.take_calls(), ["list", "create q.org", "update p.org"]);
    assert_eq!((res.updated, res.created, res.failed), (1, 1, 0));
    assert_eq!(spire.get("p.org").unwrap().trust_domain_bundle, Some(b));
}

#[tokio::test]
async fn delete_of_a_vanished_relationship_counts_as_deleted() {
    // SPIRE lists it, but it is gone by the time the delete arrives.
    struct Vanishing(FakeSpire);
    impl FederationApi for Vanishing {
        async fn list_federation_relationships(&self) -> Result<Vec<FederationRelationship>, SpireError> {
            let out = self.0.list_federation_relationships().await;
            self.0.relationships.lock().unwrap().clear();
            out
        }
        async fn create_federation_relationships(
            &self,
            r: &[FederationRelationship],
        ) -> Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>> {
            self.0.create_federation_relationships(r).await
        }
        async fn update_federation_relationships(
            &self,
            r: &[FederationRelationship],
        ) -> Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>> {
            self.0.update_federation_relationships(r).await
        }
        async fn delete_federation_relationships(
            &self,
            t: &[TrustDomain],
        ) -> Result<Vec<BatchResult<TrustDomain>>, BatchError<TrustDomain>> {
            self.0.delete_federation_relationships(t).await
        }
    }
    let spire = Vanishing(FakeSpire::with(vec![web_fr("x.org", "https://x")]));
    let res = FederationReconciler::new("", true).pass_with(&spire, &[]).await.unwrap();
    assert_eq!((res.deleted, res.failed), (1, 0));
    assert_eq!(res.writes, BTreeMap::from([(("delete", "not_found"), 1)]));
}

/// Compile-time check: the pass can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn pass_future_is_send(
    r: &mut FederationReconciler,
    client: &scm_spire_api::Client,
    crs: &[Arc<ClusterFederatedTrustDomain>],
) {
    fn send<T: Send>(_: &T) {}
    let f = r.pass(client, crs);
    send(&f);
}

#[test]
fn explain_trust_domain_states() {
    let crs = vec![
        cr("partner", "u1", 1, web_spec("partner.org", "https://partner.org/bundle")),
        cr("dup", "u2", 2, web_spec("partner.org", "https://other/bundle")),
        cr("theirs", "u3", 1, with_class(web_spec("x.org", "https://x.org/b"), "other")),
        cr("broken", "u4", 1, web_spec("partner2.org", "not a url")),
    ];
    let have = [td("partner.org")];
    let x = explain_trust_domain(&crs, "", true, "partner", &[], Some(&have));
    assert_eq!(
        (x.outcome, x.relationship, x.bundle_in_spire),
        (Some(Outcome::Declared), Some(RelationshipState::Missing), Some(true))
    );
    let current = [web_fr("partner.org", "https://partner.org/bundle")];
    let x = explain_trust_domain(&crs, "", true, "partner", &current, None);
    assert_eq!((x.relationship, x.bundle_in_spire), (Some(RelationshipState::InSync), None));
    let current = [web_fr("partner.org", "https://moved/bundle")];
    let x = explain_trust_domain(&crs, "", true, "partner", &current, Some(&[]));
    assert!(matches!(x.relationship, Some(RelationshipState::Differs(f)) if !f.is_empty()));
    assert_eq!(x.bundle_in_spire, Some(false));
    let x = explain_trust_domain(&crs, "", true, "dup", &[], None);
    assert_eq!(x.outcome, Some(Outcome::Conflict { winner: "partner".into() }));
    let x = explain_trust_domain(&crs, "", true, "theirs", &[], None);
    assert_eq!(x.class_mismatch, Some(Some("other".into())));
    let x = explain_trust_domain(&crs, "", true, "broken", &[], None);
    assert!(matches!(x.outcome, Some(Outcome::Invalid(_))));
    assert!(!explain_trust_domain(&crs, "", true, "nope", &[], None).found);
}
