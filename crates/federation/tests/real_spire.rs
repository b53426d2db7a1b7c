//! The federation pass against two REAL spire-servers (v1.13.3, built by
//! `e2e/peers.sh build spire`): `main` (example.org), which the pass writes to, and
//! `partner` (partner.example), which serves its SPIFFE bundle endpoint on loopback.
//!
//! Both are started with `e2e/peers.sh spire-up <tempdir> ...` and stopped on drop.
//! Without the binaries the test prints a loud SKIP, unless `SPIRE_TESTS_REQUIRE_PEERS`
//! is set (as under `make test`): then it fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use scm_api::{
    BundleEndpointProfile as CrProfile, BundleEndpointProfileType, ClusterFederatedTrustDomain,
    ClusterFederatedTrustDomainSpec, ClusterFederatedTrustDomainStatus,
};
use scm_federation::{Action, FederationReconciler, PassOutcome, PassResult};
use scm_spiffe::{Bundle, TrustDomain};
use scm_spire_api::{Client, ClientOptions};
use scm_testkit::{SpireServer, require_peers};

const MAIN: &str = "main";
const PARTNER: &str = "partner";
const PARTNER_TD: &str = "partner.example";
const PARTNER_ENDPOINT_ID: &str = "spiffe://partner.example/spire/server";

/// `main` and `partner`, each started by `peers.sh spire-up` (see [`SpireServer`]).
fn start_servers() -> Option<(SpireServer, SpireServer)> {
    if !require_peers("real_spire", &["spire"]) {
        return None;
    }
    let main = SpireServer::start(MAIN, "example.org");
    let partner = SpireServer::start_with(PARTNER, PARTNER_TD, &["--bundle-endpoint"]);
    Some((main, partner))
}

/// `federation list` of `server`: trust domain → (URL, profile, endpoint SPIFFE ID).
fn federations(server: &SpireServer) -> BTreeMap<String, (String, &'static str, String)> {
    let v = server.cli_json(&["federation", "list"]);
    v["federation_relationships"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|fr| {
                    let (profile, id) = if fr.get("https_spiffe").is_some_and(|p| !p.is_null()) {
                        ("https_spiffe", fr["https_spiffe"]["endpoint_spiffe_id"].as_str().unwrap().to_owned())
                    } else {
                        ("https_web", String::new())
                    };
                    (
                        fr["trust_domain"].as_str().unwrap().to_owned(),
                        (fr["bundle_endpoint_url"].as_str().unwrap().to_owned(), profile, id),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `bundle list` of `server`: federated trust domain → X.509 authorities (DER).
fn federated_bundles(server: &SpireServer) -> BTreeMap<String, Vec<Vec<u8>>> {
    let v = server.cli_json(&["bundle", "list"]);
    v["bundles"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    let mut certs: Vec<Vec<u8>> = b["x509_authorities"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| base64::engine::general_purpose::STANDARD.decode(c["asn1"].as_str().unwrap()).unwrap())
                        .collect();
                    certs.sort();
                    (b["trust_domain"].as_str().unwrap().to_owned(), certs)
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- CRs

fn cr(name: &str, created: i64, spec: ClusterFederatedTrustDomainSpec) -> Arc<ClusterFederatedTrustDomain> {
    let mut cr = ClusterFederatedTrustDomain::new(name, spec);
    cr.metadata = ObjectMeta {
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        creation_timestamp: Some(Time(Timestamp::from_second(1_700_000_000 + created).unwrap())),
        ..Default::default()
    };
    Arc::new(cr)
}

fn web(trust_domain: &str, url: &str) -> ClusterFederatedTrustDomainSpec {
    ClusterFederatedTrustDomainSpec {
        trust_domain: trust_domain.into(),
        bundle_endpoint_url: url.into(),
        bundle_endpoint_profile: CrProfile { r#type: BundleEndpointProfileType::HttpsWeb, endpoint_spiffe_id: None },
        trust_domain_bundle: None,
        class_name: None,
    }
}

fn spiffe(trust_domain: &str, url: &str, endpoint_id: &str, bundle: Option<String>) -> ClusterFederatedTrustDomainSpec {
    ClusterFederatedTrustDomainSpec {
        trust_domain: trust_domain.into(),
        bundle_endpoint_url: url.into(),
        bundle_endpoint_profile: CrProfile {
            r#type: BundleEndpointProfileType::HttpsSpiffe,
            endpoint_spiffe_id: Some(endpoint_id.into()),
        },
        trust_domain_bundle: bundle,
        class_name: None,
    }
}

/// As the runtime writes it after a successful pass: Ready=True at the current generation.
fn with_ready_status(cr: &Arc<ClusterFederatedTrustDomain>) -> Arc<ClusterFederatedTrustDomain> {
    let mut c = (**cr).clone();
    c.status = Some(ClusterFederatedTrustDomainStatus {
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Applied".into(),
            message: String::new(),
            last_transition_time: Time(Timestamp::now()),
            observed_generation: c.metadata.generation,
        }],
        ..Default::default()
    });
    Arc::new(c)
}

fn ca_der(trust_domain: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.subject_alt_names = vec![rcgen::SanType::URI(format!("spiffe://{trust_domain}").try_into().unwrap())];
    params.self_signed(&key).unwrap().der().to_vec()
}

fn assert_zero_writes(res: &PassResult, what: &str) {
    assert_eq!(
        (res.created, res.updated, res.deleted, res.failed, res.write_attempts()),
        (0, 0, 0, 0, 0),
        "{what}: {res:#?}"
    );
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

#[tokio::test]
async fn federation_against_real_spire_servers() {
    let Some((main, partner)) = start_servers() else {
        return;
    };
    let client = Client::connect_lazy(main.socket(), ClientOptions::default()).unwrap();
    client.wait_ready(Duration::from_secs(30)).await.unwrap();
    let mut reconciler = FederationReconciler::new("", false);

    let partner_url = partner.var("SPIRE_BUNDLE_ENDPOINT_URL").to_owned();
    let partner_port = partner.var("SPIRE_BUNDLE_ENDPOINT_PORT").to_owned();
    let partner_doc = partner.cli_ok(&["bundle", "show", "-format", "spiffe"]);
    let partner_bundle = Bundle::parse_jwks(TrustDomain::parse(PARTNER_TD).unwrap(), &partner_doc).unwrap();
    assert!(!partner_bundle.x509_authorities.is_empty());
    assert!(federations(&main).is_empty());
    assert!(!federated_bundles(&main).contains_key(PARTNER_TD), "main starts without the partner's bundle");

    // ---- create: one https_web, one https_spiffe (with the partner's bundle as bootstrap)
    let web_v1 = cr("web", 1, web("web.example", "https://web.example.invalid/bundle"));
    let partner_v1 = cr("partner", 2, spiffe(PARTNER_TD, &partner_url, PARTNER_ENDPOINT_ID, Some(partner_doc.clone())));
    // https_web with a bootstrap bundle (SPIRE cannot fetch from this URL: it keeps ours).
    let boot_ca = ca_der("boot.example");
    let boot_bundle = Bundle { x509_authorities: vec![boot_ca.clone()], ..Bundle::empty(td("boot.example")) };
    let mut boot_spec = web("boot.example", "https://boot.example.invalid/");
    boot_spec.trust_domain_bundle = Some(boot_bundle.to_jwks());
    let mut crs = vec![web_v1.clone(), partner_v1.clone(), cr("boot", 0, boot_spec)];
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_eq!((res.created, res.updated, res.deleted, res.failed), (3, 0, 0, 0), "{res:#?}");
    assert_eq!(federated_bundles(&main).get("boot.example"), Some(&vec![boot_ca.clone()]));

    assert_eq!(res.outcomes["web"], PassOutcome::Ready { trust_domain: td("web.example"), action: Action::Created });
    assert_eq!(res.outcomes["partner"], PassOutcome::Ready { trust_domain: td(PARTNER_TD), action: Action::Created });
    assert_eq!(federations(&main).remove("boot.example").unwrap().1, "https_web");
    assert_eq!(
        federations(&main).into_iter().filter(|(k, _)| k != "boot.example").collect::<BTreeMap<_, _>>(),
        BTreeMap::from([
            ("web.example".to_owned(), ("https://web.example.invalid/bundle".to_owned(), "https_web", String::new())),
            (PARTNER_TD.to_owned(), (partner_url.clone(), "https_spiffe", PARTNER_ENDPOINT_ID.to_owned())),
        ])
    );

    // ---- main now holds the partner's bundle, and fetches it from the partner's endpoint
    let partner_cas = sorted(partner_bundle.x509_authorities.clone());
    assert_eq!(federated_bundles(&main).get(PARTNER_TD), Some(&partner_cas));
    assert!(main.cli_ok(&["bundle", "list"]).contains(PARTNER_TD));
    // An authenticated fetch from the https_spiffe endpoint (fails unless the endpoint's
    // SVID verifies against the bootstrap bundle and has the endpoint SPIFFE ID).
    assert!(main.cli_ok(&["federation", "refresh", "-id", PARTNER_TD]).contains("Bundle refreshed"));
    assert_eq!(federated_bundles(&main).get(PARTNER_TD), Some(&partner_cas));

    // ---- no change: zero writes (SPIRE's refreshed bundle differs in metadata from the CR's)
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_zero_writes(&res, "second pass");
    assert_eq!(res.unchanged, 3);
    assert_eq!(reconciler.memory().len(), 2, "the partner's and boot's bundles");
    // A restart (fresh reconciler, empty bundle memory): still zero writes.
    let res = FederationReconciler::new("", false).pass(&client, &crs).await.unwrap();
    assert_zero_writes(&res, "pass after a restart");
    // The https_web relationship goes with its CR.
    crs.pop();
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_eq!((res.deleted, res.failed, res.write_attempts()), (1, 0, 1), "{res:#?}");
    assert_eq!(res.deleted_trust_domains, vec![td("boot.example")]);
    assert_eq!(reconciler.memory().len(), 1);

    // ---- update: URL (https_web)
    crs[0] = cr("web", 1, web("web.example", "https://web2.example.invalid/bundle"));
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_eq!((res.updated, res.failed, res.write_attempts()), (1, 0, 1), "{res:#?}");
    assert_eq!(
        res.outcomes["web"],
        PassOutcome::Ready {
            trust_domain: td("web.example"),
            action: Action::Updated { fields: vec!["bundleEndpointURL"] }
        }
    );
    assert_eq!(federations(&main)["web.example"].0, "https://web2.example.invalid/bundle");

    // ---- update: profile https_web -> https_spiffe, then back
    crs[0] = cr(
        "web",
        1,
        spiffe("web.example", "https://web2.example.invalid/bundle", "spiffe://web.example/spire/server", None),
    );
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_eq!((res.updated, res.failed), (1, 0), "{res:#?}");
    assert_eq!(
        federations(&main)["web.example"],
        (
            "https://web2.example.invalid/bundle".to_owned(),
            "https_spiffe",
            "spiffe://web.example/spire/server".to_owned()
        )
    );
    crs[0] = cr("web", 1, web("web.example", "https://web2.example.invalid/bundle"));
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_eq!(
        res.outcomes["web"],
        PassOutcome::Ready {
            trust_domain: td("web.example"),
            action: Action::Updated { fields: vec!["bundleEndpointProfile"] }
        }
    );
    assert_eq!(
        federations(&main)["web.example"],
        ("https://web2.example.invalid/bundle".to_owned(), "https_web", String::new())
    );

    // ---- update: URL of the https_spiffe relationship (bundle unchanged: none sent, SPIRE keeps its own)
    let partner_url2 = format!("https://localhost:{partner_port}");
    crs[1] = cr("partner", 2, spiffe(PARTNER_TD, &partner_url2, PARTNER_ENDPOINT_ID, Some(partner_doc.clone())));
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_eq!(
        res.outcomes["partner"],
        PassOutcome::Ready {
            trust_domain: td(PARTNER_TD),
            action: Action::Updated { fields: vec!["bundleEndpointURL"] }
        }
    );
    assert_eq!(federations(&main)[PARTNER_TD].0, partner_url2);
    assert_eq!(
        federated_bundles(&main).get(PARTNER_TD),
        Some(&partner_cas),
        "an update without a bundle keeps SPIRE's"
    );
    assert!(main.cli_ok(&["federation", "refresh", "-id", PARTNER_TD]).contains("Bundle refreshed"));

    // ---- update: the bundle alone (upstream would not push this)
    let extra_ca = ca_der(PARTNER_TD);
    let mut edited = partner_bundle.clone();
    edited.x509_authorities.push(extra_ca.clone());
    crs[1] = cr("partner", 2, spiffe(PARTNER_TD, &partner_url2, PARTNER_ENDPOINT_ID, Some(edited.to_jwks())));
    crs[1] = {
        let mut c = (*crs[1]).clone();
        c.metadata.generation = Some(2);
        Arc::new(c)
    };
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_eq!((res.updated, res.failed, res.write_attempts()), (1, 0, 1), "{res:#?}");
    assert_eq!(
        res.outcomes["partner"],
        PassOutcome::Ready {
            trust_domain: td(PARTNER_TD),
            action: Action::Updated { fields: vec!["trustDomainBundle"] }
        }
    );
    let with_extra = sorted([partner_cas.clone(), vec![extra_ca.clone()]].concat());
    assert_eq!(federated_bundles(&main).get(PARTNER_TD), Some(&with_extra), "the edited bundle reached SPIRE");

    // Pushed once: SPIRE refreshes from the endpoint (dropping the extra authority) and
    // the pass does not put it back.
    assert!(main.cli_ok(&["federation", "refresh", "-id", PARTNER_TD]).contains("Bundle refreshed"));
    assert_eq!(federated_bundles(&main).get(PARTNER_TD), Some(&partner_cas), "SPIRE refreshed from the endpoint");
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_zero_writes(&res, "after SPIRE's refresh");
    assert_eq!(federated_bundles(&main).get(PARTNER_TD), Some(&partner_cas), "no fight with SPIRE's refreshed bundle");
    // After a restart, the CR's status (Ready at its generation, as the runtime writes it)
    // says the bundle was applied: zero writes too.
    let with_status: Vec<_> = crs.iter().map(with_ready_status).collect();
    let res = FederationReconciler::new("", false).pass(&client, &with_status).await.unwrap();
    assert_zero_writes(&res, "restart with status");

    // ---- conflict: a newer CR for the same trust domain loses, nothing is written
    crs.push(cr("partner-dup", 3, web(PARTNER_TD, "https://elsewhere.invalid")));
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_zero_writes(&res, "conflict");
    assert_eq!(res.outcomes["partner-dup"], PassOutcome::Conflict { winner: "partner".into() });
    assert_eq!(res.outcomes["partner-dup"].reason(), "Conflict");
    assert_eq!(federations(&main)[PARTNER_TD].0, partner_url2);

    // ---- invalid: the relationship is kept (upstream would delete it) and reported
    crs[0] = cr("web", 1, web("web.example", "http://web2.example.invalid/bundle"));
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_zero_writes(&res, "invalid CR");
    match &res.outcomes["web"] {
        PassOutcome::Invalid { message, kept } => {
            assert!(
                message.starts_with("spec.bundleEndpointURL: invalid bundleEndpointURL value: scheme must be https"),
                "{message}"
            );
            assert_eq!(kept.as_ref(), Some(&td("web.example")));
        }
        other => panic!("web: {other:?}"),
    }
    assert_eq!(res.kept, vec![(td("web.example"), "web".to_owned())]);
    assert!(federations(&main).contains_key("web.example"));

    // ---- delete: the CR goes, so does the relationship; the loser of the conflict takes over
    crs.remove(0);
    crs.retain(|c| c.metadata.name.as_deref() != Some("partner"));
    let res = reconciler.pass(&client, &crs).await.unwrap();
    assert_eq!((res.deleted, res.updated, res.failed), (1, 1, 0), "{res:#?}");
    assert_eq!(res.deleted_trust_domains, vec![td("web.example")]);
    assert_eq!(
        res.outcomes["partner-dup"],
        PassOutcome::Ready {
            trust_domain: td(PARTNER_TD),
            action: Action::Updated { fields: vec!["bundleEndpointURL", "bundleEndpointProfile"] },
        }
    );
    assert_eq!(
        federations(&main),
        BTreeMap::from([(PARTNER_TD.to_owned(), ("https://elsewhere.invalid".to_owned(), "https_web", String::new()))])
    );

    // ---- everything goes
    let res = reconciler.pass(&client, &[]).await.unwrap();
    assert_eq!((res.deleted, res.failed), (1, 0));
    assert!(federations(&main).is_empty());
    let res = reconciler.pass(&client, &[]).await.unwrap();
    assert_zero_writes(&res, "empty");
    assert!(reconciler.memory().is_empty());
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::parse(s).unwrap()
}
