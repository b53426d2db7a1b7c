//! The client against a REAL spire-server (`SPIRE_VERSION`, default v1.15.3; `make test` runs
//! it against v1.13.3 as well), built by `e2e/peers.sh build spire`.
//!
//! Starts its own server with `e2e/peers.sh spire-up <tempdir> scm-api example.org` and
//! stops it on drop. Without the binaries the test prints a loud SKIP, unless
//! `SPIRE_TESTS_REQUIRE_PEERS` is set (as under `make test`): then it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scm_spiffe::{
    Bundle, BundleEndpointProfile, Entry, FederationRelationship, JwtAuthority, Selector, SpiffeId, TrustDomain,
};
use scm_spire_api::proto::spire::api::server::entry::v1 as entryv1;
use scm_spire_api::{Client, ClientOptions, ItemErrorKind, SpireError};
use scm_testkit::{SpireServer, require_peers};
use serde_json::Value;
use tonic::Code;
use x509_parser::extensions::GeneralName;

const TRUST_DOMAIN: &str = "example.org";
const NAME: &str = "scm-api";

/// `entry show -output json`, keyed by entry ID.
fn cli_entries(server: &SpireServer) -> BTreeMap<String, Value> {
    server.entry_show().into_iter().map(|e| (e["id"].as_str().unwrap().to_owned(), e)).collect()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::parse(s).unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn test_entry(i: usize) -> Entry {
    let mut e = Entry::new(
        id(&format!("spiffe://example.org/workload/{i}")),
        id("spiffe://example.org/spire/agent/join_token/node-a"),
        vec![Selector::new("k8s", "ns:default"), Selector::new("k8s", format!("pod-uid:{i}"))],
    );
    e.x509_svid_ttl = Duration::from_secs(3600 + i as u64);
    e.jwt_svid_ttl = Duration::from_secs(300 + i as u64);
    e.dns_names = vec![format!("w{i}.default.svc"), format!("w{i}.example.org")];
    e.hint = format!("hint-{i}");
    e.store_svid = i.is_multiple_of(2);
    e.admin = i == 1;
    e.downstream = i == 2;
    if i == 4 {
        e.federates_with = vec![td("other.org")];
    }
    e
}

/// A bundle for a foreign trust domain: a CA certificate and an EC JWT key made here.
fn foreign_bundle(trust_domain: &str) -> Bundle {
    use rcgen::PublicKeyData as _;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from(format!("spiffe://{trust_domain}")).unwrap()));
    let cert = params.self_signed(&key).unwrap();
    let jwt_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    Bundle {
        trust_domain: td(trust_domain),
        x509_authorities: vec![cert.der().to_vec()],
        jwt_authorities: vec![JwtAuthority {
            key_id: "foreign-jwt-key".into(),
            public_key: jwt_key.subject_public_key_info(),
            expires_at: now() + 86400,
        }],
        refresh_hint: 120,
        sequence_number: 5,
    }
}

/// ListEntries pages as the server returns them for `page_size` (raw generated client).
async fn raw_page_sizes(socket: &str, page_size: i32) -> Vec<usize> {
    let socket = socket.to_owned();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(socket).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
        .unwrap();
    let mut api = entryv1::entry_client::EntryClient::new(channel);
    let mut sizes = Vec::new();
    let mut page_token = String::new();
    loop {
        let r = api
            .list_entries(entryv1::ListEntriesRequest {
                page_size,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        sizes.push(r.entries.len());
        if r.next_page_token.is_empty() {
            return sizes;
        }
        page_token = r.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_spire_server() {
    if !require_peers("real_server", &["spire"]) {
        return;
    }
    let server = SpireServer::start(NAME, TRUST_DOMAIN);
    let options = ClientOptions {
        timeout: Duration::from_secs(20),
        entry_list_page_size: 2,
        entry_create_batch_size: 3,
        entry_update_batch_size: 2,
        entry_delete_batch_size: 3,
        federation_list_page_size: 1,
        ..ClientOptions::default()
    };
    // The unix:/// form of the address, as upstream accepts it.
    let client = Client::connect_lazy(format!("unix://{}", server.socket()), options).unwrap();
    client.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert_eq!(client.count_entries().await.unwrap(), 0);

    unsupported_fields_probe(&server, &client).await;
    federation(&server, &client).await;
    entries(&server, &client).await;
    bundle(&server, &client).await;
    mint(&server, &client).await;
    federation_cleanup(&server, &client).await;
}

async fn unsupported_fields_probe(server: &SpireServer, client: &Client) {
    let unsupported = client.get_unsupported_fields(&td(TRUST_DOMAIN)).await.unwrap();
    // Additional attributes came with SPIRE 1.15; the rest is older than 1.13.
    let before_1_15 = std::env::var("SPIRE_VERSION").is_ok_and(|v| v.starts_with("v1.13") || v.starts_with("v1.14"));
    let expected = scm_spire_api::UnsupportedFields { additional_attributes: before_1_15, ..Default::default() };
    assert_eq!(unsupported, expected, "SPIRE {:?}", std::env::var("SPIRE_VERSION"));
    assert_eq!(client.count_entries().await.unwrap(), 0, "the probe entry is deleted again");
    assert!(cli_entries(server).is_empty());
}

async fn federation(server: &SpireServer, client: &Client) {
    let web = FederationRelationship {
        trust_domain: td("web.org"),
        bundle_endpoint_url: "https://web.org/bundle".into(),
        bundle_endpoint_profile: BundleEndpointProfile::HttpsWeb,
        trust_domain_bundle: None,
    };
    let spiffe = FederationRelationship {
        trust_domain: td("other.org"),
        bundle_endpoint_url: "https://127.0.0.1:8443".into(),
        bundle_endpoint_profile: BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: id("spiffe://other.org/spire/server"),
        },
        trust_domain_bundle: Some(foreign_bundle("other.org")),
    };
    let created = client.create_federation_relationships(&[web.clone(), spiffe.clone()]).await.unwrap();
    let created: Vec<FederationRelationship> = created.into_iter().map(Result::unwrap).collect();
    assert_eq!(created[0], web);
    assert_eq!(created[1].bundle_endpoint_profile, spiffe.bundle_endpoint_profile);
    let stored = created[1].trust_domain_bundle.as_ref().expect("SPIRE returns the stored bundle");
    let sent = spiffe.trust_domain_bundle.as_ref().unwrap();
    assert_eq!(stored.x509_authorities, sent.x509_authorities);
    assert_eq!(stored.jwt_authorities, sent.jwt_authorities, "JWT keys (PKIX, kid, expiry) survive");
    assert_eq!((stored.refresh_hint, stored.sequence_number), (sent.refresh_hint, sent.sequence_number));

    // Creating again: a per-item failure. SPIRE 1.13 answers INTERNAL with the SQL
    // unique-constraint message, not ALREADY_EXISTS.
    let again = client.create_federation_relationships(std::slice::from_ref(&web)).await.unwrap();
    let e = again[0].as_ref().unwrap_err();
    assert_eq!((e.code, e.kind), (Code::Internal, ItemErrorKind::Rejected), "{e}");
    assert!(e.message.contains("UNIQUE constraint failed"), "{e}");
    eprintln!("real_server: duplicate federation relationship create: {e}");

    let mut listed = client.list_federation_relationships().await.unwrap();
    listed.sort_by(|a, b| a.trust_domain.cmp(&b.trust_domain));
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].trust_domain, td("other.org"));
    assert_eq!(listed[0].bundle_endpoint_profile, spiffe.bundle_endpoint_profile);
    assert_eq!(listed[0].trust_domain_bundle.as_ref().map(|b| &b.x509_authorities), Some(&sent.x509_authorities));
    eprintln!(
        "real_server: ListFederationRelationships returns trust_domain_bundle for https_web: {}",
        listed[1].trust_domain_bundle.is_some()
    );
    assert_eq!(listed[1].trust_domain, web.trust_domain);
    assert_eq!(listed[1].bundle_endpoint_url, web.bundle_endpoint_url);

    let cli = server.cli_json(&["federation", "list"]);
    let cli_tds: BTreeSet<&str> = cli["federation_relationships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["trust_domain"].as_str().unwrap())
        .collect();
    assert_eq!(cli_tds, BTreeSet::from(["other.org", "web.org"]));

    // The bundle reached the server's federated bundles.
    let fb = server.cli_ok(&["bundle", "list", "-id", "spiffe://other.org", "-format", "spiffe"]);
    let parsed = Bundle::parse_jwks(td("other.org"), fb.trim()).unwrap();
    assert_eq!(parsed.x509_authorities, sent.x509_authorities);
    assert_eq!(parsed.jwt_authorities[0].public_key, sent.jwt_authorities[0].public_key);
    // ListFederatedBundles names it (web.org has a relationship but no bundle yet).
    let with_bundles: Vec<_> =
        client.list_federated_bundles(false).await.unwrap().into_iter().map(|b| b.trust_domain).collect();
    assert!(with_bundles.contains(&td("other.org")), "{with_bundles:?}");
    assert!(!with_bundles.contains(&td("web.org")), "{with_bundles:?}");

    // Update: URL change (no input mask: full replacement).
    let mut web2 = web.clone();
    web2.bundle_endpoint_url = "https://web.org:9443/v2/bundle".into();
    let missing = FederationRelationship { trust_domain: td("missing.org"), ..web.clone() };
    let updated = client.update_federation_relationships(&[web2.clone(), missing]).await.unwrap();
    assert_eq!(updated[0].as_ref().unwrap(), &web2);
    let e = updated[1].as_ref().unwrap_err();
    eprintln!("real_server: update of a missing federation relationship: {e}");
    assert_eq!((e.code, e.kind), (Code::Internal, ItemErrorKind::Rejected), "SPIRE 1.13 says INTERNAL, not NOT_FOUND");
    assert!(e.message.contains("record not found"), "{e}");
    let listed = client.list_federation_relationships().await.unwrap();
    assert!(listed.iter().any(|r| r == &web2));
}

async fn federation_cleanup(server: &SpireServer, client: &Client) {
    let deleted =
        client.delete_federation_relationships(&[td("web.org"), td("other.org"), td("missing.org")]).await.unwrap();
    assert!(deleted[0].is_ok() && deleted[1].is_ok());
    assert_eq!(deleted[2].as_ref().unwrap_err().code, Code::NotFound);
    assert!(client.list_federation_relationships().await.unwrap().is_empty());
    let cli = server.cli_json(&["federation", "list"]);
    assert!(cli["federation_relationships"].as_array().is_none_or(Vec::is_empty));
}

/// Checks one `entry show -output json` record against an entry.
fn assert_cli_entry(cli: &Value, e: &Entry) {
    assert_eq!(cli["id"], e.id.as_str());
    assert_eq!(cli["spiffe_id"]["trust_domain"], e.spiffe_id.trust_domain_name());
    assert_eq!(cli["spiffe_id"]["path"], e.spiffe_id.path());
    assert_eq!(cli["parent_id"]["path"], e.parent_id.path());
    assert_eq!(cli["x509_svid_ttl"], e.x509_svid_ttl.as_secs());
    assert_eq!(cli["jwt_svid_ttl"], e.jwt_svid_ttl.as_secs());
    assert_eq!(cli["hint"], e.hint.as_str());
    assert_eq!(cli["store_svid"], e.store_svid);
    assert_eq!(cli["admin"], e.admin);
    assert_eq!(cli["downstream"], e.downstream);
    let dns: Vec<&str> = cli["dns_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(dns, e.dns_names);
    let fed: Vec<&str> = cli["federates_with"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(fed, e.federates_with.iter().map(TrustDomain::name).collect::<Vec<_>>());
    let sel: BTreeSet<String> = cli["selectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s["type"].as_str().unwrap(), s["value"].as_str().unwrap()))
        .collect();
    assert_eq!(sel, e.selectors.iter().map(Selector::to_string).collect());
}

fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    for e in &mut entries {
        e.selectors.sort();
    }
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    entries
}

async fn entries(server: &SpireServer, client: &Client) {
    let mut wanted: Vec<Entry> = (0..7).map(test_entry).collect();
    wanted[3].id = "scm-client-chosen-id-3".into();
    let created = client.create_entries(&wanted).await.unwrap();
    let created: Vec<Entry> = created.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(created[3].id, "scm-client-chosen-id-3", "SPIRE >= 1.8 honours client-chosen entry IDs");
    for (sent, got) in wanted.iter().zip(&created) {
        assert!(!got.id.is_empty());
        let mut want = sent.clone();
        want.id = got.id.clone();
        assert_eq!(sorted(vec![got.clone()]), sorted(vec![want]), "created entry round-trips");
    }

    // Paging is real: the server hands out pages of 2. SPIRE's SQL datastore sets
    // next_page_token on every non-empty page, so the end is an extra empty page.
    assert_eq!(raw_page_sizes(server.socket(), 2).await, vec![2, 2, 2, 1, 0]);
    let listed = client.list_entries().await.unwrap();
    assert_eq!(sorted(listed.clone()), sorted(created.clone()));
    assert_eq!(client.count_entries().await.unwrap(), 7);

    let cli = cli_entries(server);
    assert_eq!(cli.len(), 7);
    for e in &created {
        assert_cli_entry(&cli[&e.id], e);
    }

    let by_parent =
        client.list_entries_by_parent(&id("spiffe://example.org/spire/agent/join_token/node-a")).await.unwrap();
    assert_eq!(by_parent.len(), 7);
    let by_id = client.list_entries_by_spiffe_id(&id("spiffe://example.org/workload/5")).await.unwrap();
    assert_eq!(by_id.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec![created[5].id.as_str()]);

    // Per-item statuses: a duplicate (AlreadyExists) and a foreign SPIFFE ID (InvalidArgument).
    let mut foreign = test_entry(8);
    foreign.spiffe_id = id("spiffe://elsewhere.org/workload/8");
    let mut dup = wanted[0].clone();
    dup.id.clear();
    let results = client.create_entries(&[dup, foreign, test_entry(9)]).await.unwrap();
    let e = results[0].as_ref().unwrap_err();
    assert_eq!((e.code, e.kind), (Code::AlreadyExists, ItemErrorKind::Rejected), "{e}");
    let e = results[1].as_ref().unwrap_err();
    assert_eq!(e.code, Code::InvalidArgument, "{e}");
    eprintln!("real_server: foreign SPIFFE ID rejected with: {}", e.message);
    let extra = results[2].clone().unwrap();
    let mut all_ids: Vec<String> = created.iter().map(|e| e.id.clone()).collect();
    all_ids.push(extra.id.clone());

    // Update: full replacement of three entries; an unknown ID is NotFound.
    let mut updates: Vec<Entry> = created[..3].to_vec();
    for u in &mut updates {
        u.dns_names = vec!["changed.example.org".into()];
        u.hint = String::new();
        u.jwt_svid_ttl = Duration::from_secs(120);
        u.store_svid = !u.store_svid;
        // (SPIRE requires one selector type when store_svid is set.)
        u.selectors.push(Selector::new("k8s", "sa:updated"));
        u.federates_with = vec![td("other.org")];
    }
    let mut ghost = test_entry(20);
    ghost.id = "no-such-entry".into();
    updates.push(ghost);
    let results = client.update_entries(&updates).await.unwrap();
    for (sent, got) in updates[..3].iter().zip(&results) {
        // SPIRE bumps the revision number on every update.
        let want = Entry { revision: sent.revision + 1, ..sent.clone() };
        assert_eq!(sorted(vec![got.clone().unwrap()]), sorted(vec![want]));
    }
    assert_eq!(results[3].as_ref().unwrap_err().code, Code::NotFound);
    let cli = cli_entries(server);
    for u in &updates[..3] {
        assert_cli_entry(&cli[&u.id], u);
    }
    let listed = client.list_entries().await.unwrap();
    assert_eq!(listed.len(), 8);
    for u in &updates[..3] {
        let got = listed.iter().find(|e| e.id == u.id).unwrap();
        assert_eq!(sorted(vec![got.clone()]), sorted(vec![Entry { revision: 1, ..u.clone() }]));
    }

    // Delete everything (+ one unknown ID) in batches of 3.
    let mut ids = all_ids.clone();
    ids.push("no-such-entry".into());
    let results = client.delete_entries(&ids).await.unwrap();
    assert_eq!(results[..8].iter().map(|r| r.clone().unwrap()).collect::<Vec<_>>(), all_ids);
    assert_eq!(results[8].as_ref().unwrap_err().code, Code::NotFound);
    assert_eq!(client.count_entries().await.unwrap(), 0);
    assert!(client.list_entries().await.unwrap().is_empty());
    assert!(cli_entries(server).is_empty());
}

async fn bundle(server: &SpireServer, client: &Client) {
    let b = client.get_bundle().await.unwrap();
    assert_eq!(b.trust_domain, td(TRUST_DOMAIN));
    assert!(!b.x509_authorities.is_empty());
    assert!(!b.jwt_authorities.is_empty(), "SPIRE publishes a JWT key");
    // The same bundle through the CLI in SPIFFE format, read by our JWKS parser.
    let cli = server.cli_ok(&["bundle", "show", "-format", "spiffe"]);
    let parsed = Bundle::parse_jwks(td(TRUST_DOMAIN), cli.trim()).unwrap();
    assert_eq!(parsed.x509_authorities, b.x509_authorities);
    let keys = |b: &Bundle| {
        b.jwt_authorities.iter().map(|k| (k.key_id.clone(), k.public_key.clone())).collect::<BTreeSet<_>>()
    };
    assert_eq!(keys(&parsed), keys(&b), "JWKS EC parameters re-encode to SPIRE's PKIX DER");
    assert_eq!(parsed.sequence_number, b.sequence_number);
    assert_eq!(parsed.refresh_hint, b.refresh_hint);
    // And our writer produces what our parser (and the CLI's format) reads.
    let again = Bundle::parse_jwks(td(TRUST_DOMAIN), b.to_jwks()).unwrap();
    assert_eq!(again.x509_authorities, b.x509_authorities);
    assert_eq!(keys(&again), keys(&b));
    assert!(b.x509_authorities_pem().contains("BEGIN CERTIFICATE"));
}

async fn mint(server: &SpireServer, client: &Client) {
    let spiffe_id = "spiffe://example.org/spire-controller-manager-webhook";
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![
        rcgen::SanType::URI(rcgen::string::Ia5String::try_from(spiffe_id).unwrap()),
        rcgen::SanType::DnsName("spire-controller-manager-webhook-service.spire-system.svc".try_into().unwrap()),
        rcgen::SanType::DnsName("second.example.org".try_into().unwrap()),
        rcgen::SanType::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap()),
    ];
    let csr = params.serialize_request(&key).unwrap();

    let before = now();
    let svid = client.mint_x509_svid(csr.der(), Duration::from_secs(24 * 3600)).await.unwrap();
    assert!(!svid.cert_chain_der.is_empty());
    let (_, leaf) = x509_parser::parse_x509_certificate(&svid.cert_chain_der[0]).unwrap();
    let not_after = leaf.validity().not_after.timestamp();
    assert_eq!(svid.expires_at, not_after, "expires_at is the leaf's NotAfter");
    assert!(
        not_after > before && not_after <= now() + 24 * 3600 + 5,
        "24h TTL, possibly capped: {}",
        not_after - before
    );

    let san = leaf.subject_alternative_name().unwrap().expect("leaf has a SAN extension").value;
    let uris: Vec<String> = san
        .general_names
        .iter()
        .filter_map(|n| if let GeneralName::URI(u) = n { Some(u.to_string()) } else { None })
        .collect();
    let dns: Vec<String> = san
        .general_names
        .iter()
        .filter_map(|n| if let GeneralName::DNSName(d) = n { Some(d.to_string()) } else { None })
        .collect();
    let ips: Vec<Vec<u8>> = san
        .general_names
        .iter()
        .filter_map(|n| if let GeneralName::IPAddress(ip) = n { Some(ip.to_vec()) } else { None })
        .collect();
    assert_eq!(uris, vec![spiffe_id.to_owned()]);
    eprintln!(
        "real_server: MintX509SVID lifetime {}s for a 24h request; chain length {}; DNS SANs kept: {dns:?}; IP SANs kept: {ips:?}; subject: {}",
        not_after - before,
        svid.cert_chain_der.len(),
        leaf.subject()
    );
    assert_eq!(
        dns,
        vec!["spire-controller-manager-webhook-service.spire-system.svc".to_owned(), "second.example.org".to_owned()],
        "SPIRE keeps the CSR's DNS SANs"
    );
    assert!(ips.is_empty(), "SPIRE drops the CSR's IP SANs");

    // The leaf is issued by one of the bundle's X.509 authorities (no upstream CA here).
    let bundle = client.get_bundle().await.unwrap();
    let issuers: Vec<String> = bundle
        .x509_authorities
        .iter()
        .map(|der| x509_parser::parse_x509_certificate(der).unwrap().1.subject().to_string())
        .collect();
    assert!(issuers.contains(&leaf.issuer().to_string()), "leaf issuer {} in {issuers:?}", leaf.issuer());
    let ca_not_after = bundle
        .x509_authorities
        .iter()
        .map(|der| x509_parser::parse_x509_certificate(der).unwrap().1)
        .find(|ca| ca.subject() == leaf.issuer())
        .map(|ca| ca.validity().not_after.timestamp())
        .unwrap();
    eprintln!("real_server: CA NotAfter - leaf NotAfter = {}s", ca_not_after - not_after);
    assert!(not_after <= ca_not_after, "an SVID never outlives its CA");

    // A short TTL is honoured.
    let svid = client.mint_x509_svid(csr.der(), Duration::from_secs(120)).await.unwrap();
    let lifetime = svid.expires_at - now();
    assert!((100..=125).contains(&lifetime), "120s TTL gave {lifetime}s");

    // A CSR without a URI SAN is refused by the server (RPC-level InvalidArgument).
    let mut bad = rcgen::CertificateParams::new(vec!["only-dns.example.org".to_owned()]).unwrap();
    bad.subject_alt_names.truncate(1);
    let bad_csr = bad.serialize_request(&key).unwrap();
    let e = client.mint_x509_svid(bad_csr.der(), Duration::from_secs(60)).await.unwrap_err();
    assert!(matches!(e, SpireError::Rpc { code: Code::InvalidArgument, method: "MintX509SVID", .. }), "{e:?}");
    eprintln!("real_server: CSR without URI SAN rejected with: {e}");
    let _ = server;
}
