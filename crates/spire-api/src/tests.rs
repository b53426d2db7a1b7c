//! Client tests against an in-process fake SPIRE server on a Unix socket. The fake only
//! checks the client's paging, batching, status mapping, deadlines and probe logic;
//! `tests/real_server.rs` checks the client against a real spire-server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scm_spiffe::{BundleEndpointProfile, Entry, FederationRelationship, Selector, SpiffeId, TrustDomain};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Code, Request, Response, Status};

use crate::proto::spire::api::server::bundle::v1 as bundlev1;
use crate::proto::spire::api::server::entry::v1 as entryv1;
use crate::proto::spire::api::server::svid::v1 as svidv1;
use crate::proto::spire::api::server::trustdomain::v1 as trustdomainv1;
use crate::proto::spire::api::types as api;
use crate::{BatchError, Client, ClientOptions, ItemErrorKind, SpireError, UnsupportedFields};

// ---------------------------------------------------------------- the fake

#[derive(Default)]
struct State {
    entries: BTreeMap<String, api::Entry>,
    next_id: u64,
    relationships: BTreeMap<String, api::FederationRelationship>,
    /// (method, number of items in the request or requested page size)
    calls: Vec<(&'static str, usize)>,
    /// (method, 0-based call number of that method, status to fail with)
    failures: Vec<(&'static str, usize, Status)>,
    delay: Duration,
    /// Emulates an old SPIRE that drops jwt_svid_ttl, hint and store_svid.
    old_server: bool,
    /// Results of ListEntries get a broken entry with this ID.
    broken_entry: Option<String>,
    /// Results of a batch RPC lose their last item.
    short_results: bool,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

fn ok() -> Option<api::Status> {
    Some(api::Status { code: 0, message: String::new() })
}

fn status(code: Code, message: &str) -> Option<api::Status> {
    Some(api::Status { code: code as i32, message: message.into() })
}

impl Fake {
    /// Records the call, then fails it if scripted, after the configured delay.
    async fn enter(&self, method: &'static str, items: usize) -> Result<(), Status> {
        let (delay, failure) = {
            let mut s = self.0.lock().unwrap();
            let nth = s.calls.iter().filter(|(m, _)| *m == method).count();
            s.calls.push((method, items));
            let failure =
                s.failures.iter().position(|(m, n, _)| *m == method && *n == nth).map(|i| s.failures.remove(i).2);
            (s.delay, failure)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        failure.map_or(Ok(()), Err)
    }

    fn calls(&self, method: &str) -> Vec<usize> {
        self.0.lock().unwrap().calls.iter().filter(|(m, _)| *m == method).map(|(_, n)| *n).collect()
    }

    fn fail(&self, method: &'static str, nth: usize, code: Code) {
        self.0.lock().unwrap().failures.push((method, nth, Status::new(code, format!("injected {code:?}"))));
    }

    fn short(&self, results: &mut Vec<impl Sized>) {
        if self.0.lock().unwrap().short_results {
            results.pop();
        }
    }
}

fn page<T: Clone>(all: &[T], page_size: i32, token: &str) -> Result<(Vec<T>, String), Status> {
    let start: usize =
        if token.is_empty() { 0 } else { token.parse().map_err(|_| Status::invalid_argument("bad token"))? };
    let size = if page_size <= 0 { all.len().max(1) } else { page_size as usize };
    let end = (start + size).min(all.len());
    let next = if end < all.len() { end.to_string() } else { String::new() };
    Ok((all[start.min(end)..end].to_vec(), next))
}

#[tonic::async_trait]
impl entryv1::entry_server::Entry for Fake {
    async fn get_entry(&self, request: Request<entryv1::GetEntryRequest>) -> Result<Response<api::Entry>, Status> {
        let id = request.into_inner().id;
        self.enter("GetEntry", 1).await?;
        let entry = self.0.lock().unwrap().entries.get(&id).cloned();
        entry.map(Response::new).ok_or_else(|| Status::not_found("no such registration entry"))
    }

    async fn count_entries(
        &self,
        _: Request<entryv1::CountEntriesRequest>,
    ) -> Result<Response<entryv1::CountEntriesResponse>, Status> {
        self.enter("CountEntries", 0).await?;
        let count = self.0.lock().unwrap().entries.len() as i32;
        Ok(Response::new(entryv1::CountEntriesResponse { count }))
    }

    async fn list_entries(
        &self,
        request: Request<entryv1::ListEntriesRequest>,
    ) -> Result<Response<entryv1::ListEntriesResponse>, Status> {
        let r = request.into_inner();
        self.enter("ListEntries", r.page_size as usize).await?;
        let s = self.0.lock().unwrap();
        let mut all: Vec<api::Entry> = s
            .entries
            .values()
            .filter(|e| {
                let f = r.filter.clone().unwrap_or_default();
                f.by_parent_id.as_ref().is_none_or(|p| e.parent_id.as_ref() == Some(p))
                    && f.by_spiffe_id.as_ref().is_none_or(|p| e.spiffe_id.as_ref() == Some(p))
            })
            .cloned()
            .collect();
        if let Some(id) = &s.broken_entry {
            all.push(api::Entry { id: id.clone(), ..Default::default() });
        }
        let (entries, next_page_token) = page(&all, r.page_size, &r.page_token)?;
        Ok(Response::new(entryv1::ListEntriesResponse { entries, next_page_token }))
    }

    async fn batch_create_entry(
        &self,
        request: Request<entryv1::BatchCreateEntryRequest>,
    ) -> Result<Response<entryv1::BatchCreateEntryResponse>, Status> {
        let r = request.into_inner();
        self.enter("BatchCreateEntry", r.entries.len()).await?;
        let mut s = self.0.lock().unwrap();
        let mut results = Vec::new();
        for mut e in r.entries {
            let Some(spiffe_id) = &e.spiffe_id else {
                results.push(entryv1::batch_create_entry_response::Result {
                    status: status(Code::InvalidArgument, "missing SPIFFE ID"),
                    entry: None,
                });
                continue;
            };
            if spiffe_id.path.contains("reject") || spiffe_id.trust_domain.starts_with("reject") {
                results.push(entryv1::batch_create_entry_response::Result {
                    status: status(Code::InvalidArgument, "rejected by fake"),
                    entry: None,
                });
                continue;
            }
            if let Some(existing) = s.entries.values().find(|x| {
                x.spiffe_id == e.spiffe_id && x.parent_id == e.parent_id && x.selectors == e.selectors
                    || (!e.id.is_empty() && x.id == e.id)
            }) {
                results.push(entryv1::batch_create_entry_response::Result {
                    status: status(Code::AlreadyExists, "similar entry already exists"),
                    entry: Some(existing.clone()),
                });
                continue;
            }
            if e.id.is_empty() {
                s.next_id += 1;
                e.id = format!("id-{:04}", s.next_id);
            }
            if s.old_server {
                e.jwt_svid_ttl = 0;
                e.hint.clear();
                e.store_svid = false;
                e.additional_attributes = None;
            }
            s.entries.insert(e.id.clone(), e.clone());
            results.push(entryv1::batch_create_entry_response::Result { status: ok(), entry: Some(e) });
        }
        drop(s);
        self.short(&mut results);
        Ok(Response::new(entryv1::BatchCreateEntryResponse { results }))
    }

    async fn batch_update_entry(
        &self,
        request: Request<entryv1::BatchUpdateEntryRequest>,
    ) -> Result<Response<entryv1::BatchUpdateEntryResponse>, Status> {
        let r = request.into_inner();
        self.enter("BatchUpdateEntry", r.entries.len()).await?;
        let mask = r.input_mask.expect("updates carry an input mask");
        assert!(mask.spiffe_id && mask.selectors && mask.dns_names, "the managed fields are sent");
        assert!(!mask.expires_at && !mask.created_at && !mask.revision_number, "fields we do not own are not");
        let mut s = self.0.lock().unwrap();
        let results = r
            .entries
            .into_iter()
            .map(|e| match s.entries.get_mut(&e.id) {
                Some(slot) => {
                    *slot = e.clone();
                    entryv1::batch_update_entry_response::Result { status: ok(), entry: Some(e) }
                }
                None => entryv1::batch_update_entry_response::Result {
                    status: status(Code::NotFound, "entry not found"),
                    entry: None,
                },
            })
            .collect();
        Ok(Response::new(entryv1::BatchUpdateEntryResponse { results }))
    }

    async fn batch_delete_entry(
        &self,
        request: Request<entryv1::BatchDeleteEntryRequest>,
    ) -> Result<Response<entryv1::BatchDeleteEntryResponse>, Status> {
        let r = request.into_inner();
        self.enter("BatchDeleteEntry", r.ids.len()).await?;
        let mut s = self.0.lock().unwrap();
        let results = r
            .ids
            .into_iter()
            .map(|id| {
                let status =
                    if s.entries.remove(&id).is_some() { ok() } else { status(Code::NotFound, "entry not found") };
                entryv1::batch_delete_entry_response::Result { status, id }
            })
            .collect();
        Ok(Response::new(entryv1::BatchDeleteEntryResponse { results }))
    }
}

#[tonic::async_trait]
impl trustdomainv1::trust_domain_server::TrustDomain for Fake {
    async fn list_federation_relationships(
        &self,
        request: Request<trustdomainv1::ListFederationRelationshipsRequest>,
    ) -> Result<Response<trustdomainv1::ListFederationRelationshipsResponse>, Status> {
        let r = request.into_inner();
        self.enter("ListFederationRelationships", r.page_size as usize).await?;
        let all: Vec<_> = self.0.lock().unwrap().relationships.values().cloned().collect();
        let (federation_relationships, next_page_token) = page(&all, r.page_size, &r.page_token)?;
        Ok(Response::new(trustdomainv1::ListFederationRelationshipsResponse {
            federation_relationships,
            next_page_token,
        }))
    }

    async fn batch_create_federation_relationship(
        &self,
        request: Request<trustdomainv1::BatchCreateFederationRelationshipRequest>,
    ) -> Result<Response<trustdomainv1::BatchCreateFederationRelationshipResponse>, Status> {
        let r = request.into_inner();
        self.enter("BatchCreateFederationRelationship", r.federation_relationships.len()).await?;
        let mut s = self.0.lock().unwrap();
        let results = r
            .federation_relationships
            .into_iter()
            .map(|fr| {
                if s.relationships.contains_key(&fr.trust_domain) {
                    trustdomainv1::batch_create_federation_relationship_response::Result {
                        status: status(Code::AlreadyExists, "already exists"),
                        federation_relationship: None,
                    }
                } else {
                    s.relationships.insert(fr.trust_domain.clone(), fr.clone());
                    trustdomainv1::batch_create_federation_relationship_response::Result {
                        status: ok(),
                        federation_relationship: Some(fr),
                    }
                }
            })
            .collect();
        Ok(Response::new(trustdomainv1::BatchCreateFederationRelationshipResponse { results }))
    }

    async fn batch_update_federation_relationship(
        &self,
        request: Request<trustdomainv1::BatchUpdateFederationRelationshipRequest>,
    ) -> Result<Response<trustdomainv1::BatchUpdateFederationRelationshipResponse>, Status> {
        let r = request.into_inner();
        self.enter("BatchUpdateFederationRelationship", r.federation_relationships.len()).await?;
        let mut s = self.0.lock().unwrap();
        let results = r
            .federation_relationships
            .into_iter()
            .map(|fr| match s.relationships.get_mut(&fr.trust_domain) {
                Some(slot) => {
                    *slot = fr.clone();
                    trustdomainv1::batch_update_federation_relationship_response::Result {
                        status: ok(),
                        federation_relationship: Some(fr),
                    }
                }
                None => trustdomainv1::batch_update_federation_relationship_response::Result {
                    status: status(Code::NotFound, "not found"),
                    federation_relationship: None,
                },
            })
            .collect();
        Ok(Response::new(trustdomainv1::BatchUpdateFederationRelationshipResponse { results }))
    }

    async fn batch_delete_federation_relationship(
        &self,
        request: Request<trustdomainv1::BatchDeleteFederationRelationshipRequest>,
    ) -> Result<Response<trustdomainv1::BatchDeleteFederationRelationshipResponse>, Status> {
        let r = request.into_inner();
        self.enter("BatchDeleteFederationRelationship", r.trust_domains.len()).await?;
        let mut s = self.0.lock().unwrap();
        let results = r
            .trust_domains
            .into_iter()
            .map(|td| {
                let status =
                    if s.relationships.remove(&td).is_some() { ok() } else { status(Code::NotFound, "not found") };
                trustdomainv1::batch_delete_federation_relationship_response::Result { status, trust_domain: td }
            })
            .collect();
        Ok(Response::new(trustdomainv1::BatchDeleteFederationRelationshipResponse { results }))
    }

    async fn refresh_bundle(&self, _: Request<trustdomainv1::RefreshBundleRequest>) -> Result<Response<()>, Status> {
        self.enter("RefreshBundle", 0).await?;
        Err(Status::unimplemented("not part of these tests"))
    }
}

#[tonic::async_trait]
impl bundlev1::bundle_server::Bundle for Fake {
    async fn list_federated_bundles(
        &self,
        _: Request<bundlev1::ListFederatedBundlesRequest>,
    ) -> Result<Response<bundlev1::ListFederatedBundlesResponse>, Status> {
        self.enter("ListFederatedBundles", 0).await?;
        Err(Status::unimplemented("not part of these tests"))
    }

    async fn get_bundle(&self, _: Request<bundlev1::GetBundleRequest>) -> Result<Response<api::Bundle>, Status> {
        self.enter("GetBundle", 0).await?;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&key).unwrap();
        use rcgen::PublicKeyData as _;
        Ok(Response::new(api::Bundle {
            trust_domain: "example.org".into(),
            x509_authorities: vec![api::X509Certificate { asn1: cert.der().to_vec(), tainted: false }],
            jwt_authorities: vec![api::JwtKey {
                public_key: key.subject_public_key_info(),
                key_id: "kid-1".into(),
                expires_at: 1_900_000_000,
                tainted: false,
            }],
            refresh_hint: 60,
            sequence_number: 3,
        }))
    }
}

#[tonic::async_trait]
impl svidv1::svid_server::Svid for Fake {
    async fn mint_x509svid(
        &self,
        request: Request<svidv1::MintX509svidRequest>,
    ) -> Result<Response<svidv1::MintX509svidResponse>, Status> {
        let r = request.into_inner();
        self.enter("MintX509SVID", r.ttl as usize).await?;
        if r.csr.is_empty() {
            return Err(Status::invalid_argument("malformed CSR"));
        }
        Ok(Response::new(svidv1::MintX509svidResponse {
            svid: Some(api::X509svid {
                cert_chain: vec![b"leaf".to_vec(), b"intermediate".to_vec()],
                id: Some(api::Spiffeid { trust_domain: "example.org".into(), path: "/w".into() }),
                expires_at: 1_000 + r.ttl as i64,
                hint: String::new(),
            }),
        }))
    }
}

/// A fake server on a Unix socket in a fresh temp dir; stops when the guard drops.
struct Running {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start(fake: &Fake) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let router = tonic::transport::Server::builder()
        .add_service(entryv1::entry_server::EntryServer::new(fake.clone()))
        .add_service(trustdomainv1::trust_domain_server::TrustDomainServer::new(fake.clone()))
        .add_service(bundlev1::bundle_server::BundleServer::new(fake.clone()))
        .add_service(svidv1::svid_server::SvidServer::new(fake.clone()));
    let task = tokio::spawn(async move {
        router.serve_with_incoming(UnixListenerStream::new(listener)).await.unwrap();
    });
    Running { _dir: dir, socket, task }
}

fn small() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(5),
        entry_list_page_size: 2,
        entry_create_batch_size: 2,
        entry_update_batch_size: 3,
        entry_delete_batch_size: 4,
        federation_list_page_size: 1,
        federation_create_batch_size: 2,
        federation_update_batch_size: 2,
        federation_delete_batch_size: 2,
        // One batch at a time, so the call sequences below are exact.
        entry_write_concurrency: 1,
        ..ClientOptions::default()
    }
}

fn client(running: &Running, options: ClientOptions) -> Client {
    Client::connect_lazy(running.socket.to_str().unwrap(), options).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn entry(n: usize) -> Entry {
    let mut e = Entry::new(
        id(&format!("spiffe://example.org/w/{n}")),
        id("spiffe://example.org/node"),
        vec![Selector::new("k8s", format!("pod-uid:{n}"))],
    );
    e.x509_svid_ttl = Duration::from_secs(3600);
    e.jwt_svid_ttl = Duration::from_secs(300);
    e.dns_names = vec![format!("w{n}.example")];
    e.hint = "h".into();
    e.store_svid = n.is_multiple_of(2);
    e
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::parse(s).unwrap()
}

fn relationship(name: &str) -> FederationRelationship {
    FederationRelationship {
        trust_domain: td(name),
        bundle_endpoint_url: format!("https://{name}:8443"),
        bundle_endpoint_profile: BundleEndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: id(&format!("spiffe://{name}/spire/server")),
        },
        trust_domain_bundle: None,
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn address_forms() {
    use crate::socket_path_from_address as p;
    assert_eq!(p("/run/spire/api.sock").unwrap(), PathBuf::from("/run/spire/api.sock"));
    assert_eq!(p("unix:///run/spire/api.sock").unwrap(), PathBuf::from("/run/spire/api.sock"));
    assert_eq!(p("unix:rel/api.sock").unwrap(), PathBuf::from("rel/api.sock"));
    assert_eq!(p("unix:/abs/api.sock").unwrap(), PathBuf::from("/abs/api.sock"));
    assert_eq!(p("rel/api.sock").unwrap(), PathBuf::from("rel/api.sock"));
    for bad in ["", "unix:", "unix://rel/api.sock", "tcp://127.0.0.1:8081"] {
        let e = p(bad).unwrap_err();
        assert!(matches!(e, SpireError::InvalidAddress { .. }), "{bad}: {e:?}");
        assert_eq!(e.metric_label(), "invalid_address");
    }
}

#[test]
fn default_options_are_upstreams() {
    let o = ClientOptions::default();
    assert_eq!(o.timeout, Duration::from_secs(30));
    assert_eq!(
        (o.entry_list_page_size, o.entry_create_batch_size, o.entry_update_batch_size, o.entry_delete_batch_size),
        (200, 50, 50, 200)
    );
    assert_eq!(
        (
            o.federation_list_page_size,
            o.federation_create_batch_size,
            o.federation_update_batch_size,
            o.federation_delete_batch_size
        ),
        (200, 50, 50, 200)
    );
}

#[tokio::test]
async fn lazy_connect_and_unavailable_until_the_server_exists() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let c = Client::connect_lazy(format!("unix://{}", socket.display()), small()).unwrap();
    let e = c.probe().await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert_eq!(e.metric_label(), "unavailable");
    assert_eq!(e.method(), "GetBundle", "the probe costs the server O(1), not a count of every entry");
    assert!(e.is_transient());
    assert!(matches!(c.reachability(), crate::Reachability::Failing(..)));
    assert!(c.wait_ready(Duration::from_millis(300)).await.is_err());

    // The server appears later: the same client reconnects.
    let fake = Fake::default();
    let listener = UnixListener::bind(&socket).unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(entryv1::entry_server::EntryServer::new(fake.clone()))
        .add_service(bundlev1::bundle_server::BundleServer::new(fake.clone()));
    let task =
        tokio::spawn(async move { server.serve_with_incoming(UnixListenerStream::new(listener)).await.unwrap() });
    c.wait_ready(Duration::from_secs(10)).await.unwrap();
    assert!(matches!(c.reachability(), crate::Reachability::Answered(_)));
    assert_eq!(c.count_entries().await.unwrap(), 0);
    task.abort();
}

#[tokio::test]
async fn entries_create_list_update_delete_with_paging_and_batching() {
    let fake = Fake::default();
    let running = start(&fake);
    let c = client(&running, small());

    let mut entries: Vec<Entry> = (0..7).map(entry).collect();
    entries[3].id = "client-chosen".into();
    let created = c.create_entries(&entries).await.unwrap();
    assert_eq!(fake.calls("BatchCreateEntry"), vec![2, 2, 2, 1]);
    assert_eq!(created.len(), 7);
    let created: Vec<Entry> = created.into_iter().map(Result::unwrap).collect();
    assert_eq!(created[3].id, "client-chosen");
    for (sent, got) in entries.iter().zip(&created) {
        assert!(!got.id.is_empty());
        assert_eq!(Entry { id: got.id.clone(), ..sent.clone() }, *got);
    }

    let listed = c.list_entries().await.unwrap();
    assert_eq!(fake.calls("ListEntries"), vec![2, 2, 2, 2], "7 entries in pages of 2");
    let mut want = created.clone();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, want);
    assert_eq!(c.count_entries().await.unwrap(), 7);

    let by_parent = c.list_entries_by_parent(&id("spiffe://example.org/node")).await.unwrap();
    assert_eq!(by_parent.len(), 7);
    let by_id = c.list_entries_by_spiffe_id(&id("spiffe://example.org/w/5")).await.unwrap();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].spiffe_id, id("spiffe://example.org/w/5"));

    // Update: 5 existing + 1 unknown ID + 1 without ID (not sent).
    let mut updates: Vec<Entry> = created[..5].to_vec();
    for u in &mut updates {
        u.dns_names = vec!["changed.example".into()];
    }
    let mut ghost = entry(99);
    ghost.id = "ghost".into();
    updates.push(ghost);
    updates.push(entry(100));
    let results = c.update_entries(&updates).await.unwrap();
    assert_eq!(fake.calls("BatchUpdateEntry"), vec![3, 3], "the ID-less entry is not sent");
    assert!(results[..5].iter().all(|r| r.as_ref().unwrap().dns_names == ["changed.example"]));
    let e = results[5].as_ref().unwrap_err();
    assert_eq!((e.code, e.kind), (Code::NotFound, ItemErrorKind::Rejected));
    assert_eq!(crate::item_code_label(&results[5]), "not_found");
    let e = results[6].as_ref().unwrap_err();
    assert_eq!((e.code, e.kind), (Code::InvalidArgument, ItemErrorKind::Invalid));
    assert!(!e.was_sent());

    let mut ids: Vec<String> = created.iter().map(|e| e.id.clone()).collect();
    ids.push("nope".into());
    let results = c.delete_entries(&ids).await.unwrap();
    assert_eq!(fake.calls("BatchDeleteEntry"), vec![4, 4]);
    assert_eq!(results[..7].iter().map(|r| r.clone().unwrap()).collect::<Vec<_>>(), ids[..7]);
    assert_eq!(results[7].as_ref().unwrap_err().code, Code::NotFound);
    assert!(c.list_entries().await.unwrap().is_empty());
}

#[tokio::test]
async fn per_item_status_mapping_on_create() {
    let fake = Fake::default();
    let running = start(&fake);
    let c = client(&running, small());
    let first = c.create_entries(&[entry(1)]).await.unwrap();
    let existing = first[0].clone().unwrap();
    let mut rejected = entry(2);
    rejected.spiffe_id = id("spiffe://example.org/reject-me");
    let results = c.create_entries(&[entry(1), rejected, entry(3)]).await.unwrap();
    let e = results[0].as_ref().unwrap_err();
    assert_eq!(
        (e.code, e.kind, e.message.as_str()),
        (Code::AlreadyExists, ItemErrorKind::Rejected, "similar entry already exists")
    );
    assert_eq!(crate::item_code_label(&results[0]), "already_exists");
    assert_eq!(results[1].as_ref().unwrap_err().code, Code::InvalidArgument);
    assert_eq!(crate::item_code_label(&results[1]), "error");
    assert!(results[2].is_ok());
    assert_eq!(crate::item_code_label(&results[2]), "ok");
    assert_eq!(c.list_entries().await.unwrap().len(), 2);
    assert!(!existing.id.is_empty());
}

#[tokio::test]
async fn rpc_error_mid_batch_stops_and_reports_every_item() {
    let fake = Fake::default();
    let running = start(&fake);
    let c = client(&running, small());
    fake.fail("BatchCreateEntry", 1, Code::Unavailable); // the second batch
    let entries: Vec<Entry> = (0..7).map(entry).collect();
    let err: BatchError<Entry> = c.create_entries(&entries).await.unwrap_err();
    assert_eq!(fake.calls("BatchCreateEntry"), vec![2, 2], "no batch after the failed one");
    assert_eq!(err.error.code(), Code::Unavailable);
    assert_eq!(err.error.method(), "BatchCreateEntry");
    assert_eq!(err.results.len(), 7);
    assert!(err.results[0].is_ok() && err.results[1].is_ok());
    for r in &err.results[2..4] {
        let e = r.as_ref().unwrap_err();
        assert_eq!((e.code, e.kind), (Code::Unavailable, ItemErrorKind::RpcFailed));
        assert!(e.was_sent());
    }
    for r in &err.results[4..] {
        let e = r.as_ref().unwrap_err();
        assert_eq!((e.code, e.kind), (Code::Aborted, ItemErrorKind::NotAttempted));
        assert!(!e.was_sent());
    }
    assert_eq!(
        err.to_string(),
        "BatchCreateEntry failed: code = Unavailable desc = injected Unavailable (4 of 7 items sent)"
    );
    let (results, error) = BatchError::split(Err(err));
    assert_eq!(results.len(), 7);
    let error: SpireError = error.unwrap();
    assert_eq!(error.metric_label(), "unavailable");

    // Deletes stop the same way.
    fake.fail("BatchDeleteEntry", 0, Code::Internal);
    let ids: Vec<String> = (0..9).map(|i| format!("id-{i}")).collect();
    let err = c.delete_entries(&ids).await.unwrap_err();
    assert_eq!(fake.calls("BatchDeleteEntry"), vec![4]);
    assert_eq!(err.results.iter().filter(|r| matches!(r, Err(e) if e.kind == ItemErrorKind::NotAttempted)).count(), 5);
    let as_spire: SpireError = err.into();
    assert_eq!(as_spire.code(), Code::Internal);
}

#[tokio::test]
async fn wrong_result_count_is_an_invalid_response() {
    let fake = Fake::default();
    fake.0.lock().unwrap().short_results = true;
    let running = start(&fake);
    let c = client(&running, small());
    let err = c.create_entries(&[entry(1), entry(2)]).await.unwrap_err();
    assert!(matches!(err.error, SpireError::InvalidResponse { method: "BatchCreateEntry", .. }), "{:?}", err.error);
    assert_eq!(err.error.metric_label(), "invalid_response");
}

#[tokio::test]
async fn list_fails_whole_on_one_bad_entry_or_page_error() {
    let fake = Fake::default();
    let running = start(&fake);
    let c = client(&running, small());
    c.create_entries(&(0..5).map(entry).collect::<Vec<_>>()).await.unwrap();
    fake.0.lock().unwrap().broken_entry = Some("zz-broken".into());
    let e = c.list_entries().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "ListEntries: invalid response from SPIRE server: entry \"zz-broken\": invalid SPIFFE ID field: SPIFFE ID is nil"
    );
    fake.0.lock().unwrap().broken_entry = None;

    fake.fail("ListEntries", fake.calls("ListEntries").len() + 1, Code::Unavailable); // second page
    let e = c.list_entries().await.unwrap_err();
    assert_eq!((e.code(), e.method()), (Code::Unavailable, "ListEntries"));
    assert_eq!(c.list_entries().await.unwrap().len(), 5);
}

#[tokio::test]
async fn deadline_expiry() {
    let fake = Fake::default();
    fake.0.lock().unwrap().delay = Duration::from_millis(1500);
    let running = start(&fake);
    let c = client(&running, ClientOptions { timeout: Duration::from_millis(200), ..small() });
    let started = std::time::Instant::now();
    let e = c.list_entries().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(1200), "gave up at the deadline, not after the fake's delay");
    assert!(matches!(e, SpireError::DeadlineExceeded { method: "ListEntries", .. }), "{e:?}");
    assert_eq!(e.code(), Code::DeadlineExceeded);
    assert_eq!(e.metric_label(), "deadline_exceeded");
    let err = c.create_entries(&[entry(1)]).await.unwrap_err();
    assert_eq!(err.results[0].as_ref().unwrap_err().code, Code::DeadlineExceeded);

    // A slow server within the deadline is fine.
    fake.0.lock().unwrap().delay = Duration::from_millis(50);
    assert_eq!(c.count_entries().await.unwrap(), 0);
}

#[tokio::test]
async fn max_recv_message_size_is_enforced() {
    let fake = Fake::default();
    let running = start(&fake);
    let c = client(&running, small());
    c.create_entries(&(0..4).map(entry).collect::<Vec<_>>()).await.unwrap();
    let tiny = client(&running, ClientOptions { max_recv_message_size: Some(64), ..small() });
    let e = tiny.list_entries().await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e}");
}

#[tokio::test]
async fn unsupported_fields_probe() {
    let fake = Fake::default();
    let running = start(&fake);
    let c = client(&running, small());
    let td = td("example.org");
    assert_eq!(c.get_unsupported_fields(&td).await.unwrap(), UnsupportedFields::default());
    assert!(c.list_entries().await.unwrap().is_empty(), "probe entry deleted");
    assert_eq!(fake.calls("BatchCreateEntry"), vec![1]);
    assert_eq!(fake.calls("BatchDeleteEntry"), vec![1]);

    // Old server: fields dropped.
    fake.0.lock().unwrap().old_server = true;
    let u = c.get_unsupported_fields(&td).await.unwrap();
    assert_eq!(u, UnsupportedFields { jwt_svid_ttl: true, hint: true, store_svid: true, additional_attributes: true });
    assert_eq!(u.names(), vec!["jwtSVIDTTL", "hint", "storeSVID", "disableX509SVIDPrefetch", "jwtSVIDIncludeJTI"]);
    fake.0.lock().unwrap().old_server = false;

    // A leftover probe entry (AlreadyExists) is accepted and deleted.
    let probe_id = id("spiffe://example.org/spire-controller-manager/unsupported-fields-test");
    let mut leftover = Entry::new(probe_id.clone(), probe_id, vec![Selector::new("a", "1")]);
    leftover.jwt_svid_ttl = Duration::from_secs(60);
    leftover.hint = "hint".into();
    leftover.store_svid = true;
    c.create_entries(&[leftover]).await.unwrap()[0].as_ref().unwrap();
    assert!(c.get_unsupported_fields(&td).await.unwrap().is_empty());
    assert!(c.list_entries().await.unwrap().is_empty());

    // A failed delete does not fail the probe.
    fake.fail("BatchDeleteEntry", fake.calls("BatchDeleteEntry").len(), Code::Internal);
    assert!(c.get_unsupported_fields(&td).await.unwrap().is_empty());
    assert_eq!(c.list_entries().await.unwrap().len(), 1, "left behind");

    // RPC failure of the create is the probe's error.
    fake.fail("BatchCreateEntry", fake.calls("BatchCreateEntry").len(), Code::PermissionDenied);
    let e = c.get_unsupported_fields(&td).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Item status other than OK/AlreadyExists.
    let e = c.get_unsupported_fields(&TrustDomain::parse("reject.org").unwrap()).await.unwrap_err();
    assert!(matches!(e, SpireError::Rejected { code: Code::InvalidArgument, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "BatchCreateEntry: item rejected: code = InvalidArgument desc = failed to create entry: rejected by fake"
    );
}

#[tokio::test]
async fn federation_relationships() {
    let fake = Fake::default();
    let running = start(&fake);
    let c = client(&running, small());
    let mut rels: Vec<FederationRelationship> = ["a.org", "b.org", "c.org"].into_iter().map(relationship).collect();
    rels[1].bundle_endpoint_profile = BundleEndpointProfile::HttpsWeb;
    rels[2].trust_domain_bundle =
        Some(scm_spiffe::Bundle { sequence_number: 4, ..scm_spiffe::Bundle::empty(td("c.org")) });
    let mut invalid = relationship("d.org");
    invalid.bundle_endpoint_url = "http://d.org".into();
    let mut all = rels.clone();
    all.push(invalid);
    let results = c.create_federation_relationships(&all).await.unwrap();
    assert_eq!(fake.calls("BatchCreateFederationRelationship"), vec![2, 1]);
    assert_eq!(results[..3].iter().map(|r| r.clone().unwrap()).collect::<Vec<_>>(), rels);
    let e = results[3].as_ref().unwrap_err();
    assert_eq!(e.kind, ItemErrorKind::Invalid);
    assert_eq!(e.message, "invalid bundle endpoint URL: scheme must be https");

    assert_eq!(c.list_federation_relationships().await.unwrap(), rels);
    assert_eq!(fake.calls("ListFederationRelationships"), vec![1, 1, 1]);

    let mut changed = rels[0].clone();
    changed.bundle_endpoint_url = "https://a.org:9443/bundle".into();
    let results = c.update_federation_relationships(&[changed.clone(), relationship("zzz.org")]).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap(), &changed);
    assert_eq!(results[1].as_ref().unwrap_err().code, Code::NotFound);

    let results = c.delete_federation_relationships(&[td("a.org"), td("b.org"), td("nope.org")]).await.unwrap();
    assert_eq!(fake.calls("BatchDeleteFederationRelationship"), vec![2, 1]);
    assert_eq!(results[0].as_ref().unwrap(), &td("a.org"));
    assert_eq!(results[2].as_ref().unwrap_err().code, Code::NotFound);
    assert_eq!(c.list_federation_relationships().await.unwrap(), vec![rels[2].clone()]);
}

#[tokio::test]
async fn bundle_and_mint() {
    let fake = Fake::default();
    let running = start(&fake);
    let c = client(&running, small());
    let b = c.get_bundle().await.unwrap();
    assert_eq!(b.trust_domain, td("example.org"));
    assert_eq!(b.x509_authorities.len(), 1);
    assert_eq!(b.jwt_authorities[0].key_id, "kid-1");
    assert_eq!(b.jwt_authorities[0].expires_at, 1_900_000_000);
    assert_eq!((b.refresh_hint, b.sequence_number), (60, 3));

    let svid = c.mint_x509_svid(b"csr", Duration::from_secs(86400)).await.unwrap();
    assert_eq!(svid.cert_chain_der, vec![b"leaf".to_vec(), b"intermediate".to_vec()]);
    assert_eq!(svid.expires_at, 1_000 + 86400);
    let e = c.mint_x509_svid(b"", Duration::from_secs(1)).await.unwrap_err();
    assert_eq!((e.code(), e.method()), (Code::InvalidArgument, "MintX509SVID"));
    let e = c.mint_x509_svid(b"csr", Duration::from_secs(1 << 40)).await.unwrap_err();
    assert!(matches!(e, SpireError::InvalidRequest { .. }));
}

#[tokio::test]
async fn batches_in_flight_keep_input_order_and_stop_after_a_failure() {
    let fake = Fake::default();
    fake.0.lock().unwrap().delay = Duration::from_millis(50);
    let running = start(&fake);
    let c = client(&running, ClientOptions { entry_write_concurrency: 3, entry_delete_batch_size: 2, ..small() });
    let entries: Vec<Entry> = (0..10).map(entry).collect();
    let t = std::time::Instant::now();
    let created = c.create_entries(&entries).await.unwrap();
    // Five batches of two, three at a time: two rounds of the 50 ms delay, not five.
    assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
    for (sent, got) in entries.iter().zip(&created) {
        assert_eq!(got.as_ref().unwrap().spiffe_id, sent.spiffe_id, "results in input order");
    }
    // A failed batch: the ones already in flight finish, no new one is sent.
    fake.fail("BatchDeleteEntry", 0, Code::Unavailable);
    let ids: Vec<String> = created.iter().map(|r| r.as_ref().unwrap().id.clone()).collect();
    let err = c.delete_entries(&ids).await.unwrap_err();
    let sent = fake.calls("BatchDeleteEntry");
    assert_eq!(sent, [2, 2, 2], "the three in flight, then nothing: {sent:?}");
    assert_eq!(err.results.len(), 10);
    assert!(err.results[..2].iter().all(|r| r.as_ref().is_err_and(|e| e.was_sent())), "the failed batch");
    assert!(err.results[2..6].iter().all(|r| r.is_ok()), "the others in flight finished");
    assert!(err.results[6..].iter().all(|r| r.as_ref().is_err_and(|e| !e.was_sent())), "never sent");
}
