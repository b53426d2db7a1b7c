//! The typed SPIRE Server API client over the server's admin Unix socket, or over TCP with
//! SPIFFE mTLS (`Client::connect_mtls`, see `tls.rs` and `workload.rs`).

use std::borrow::Borrow;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use scm_spiffe::{Bundle, Entry, FederationRelationship, SpiffeId, TrustDomain};
use tokio::net::UnixStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::convert::{self, ConvertError};
use crate::error::{BatchError, BatchResult, ItemError, SpireError};
use crate::proto::spire::api::server::bundle::v1 as bundlev1;
use crate::proto::spire::api::server::entry::v1 as entryv1;
use crate::proto::spire::api::server::svid::v1 as svidv1;
use crate::proto::spire::api::server::trustdomain::v1 as trustdomainv1;
use crate::proto::spire::api::types as api;
use bundlev1::bundle_client::BundleClient;
use entryv1::entry_client::EntryClient;
use svidv1::svid_client::SvidClient;
use trustdomainv1::trust_domain_client::TrustDomainClient;

/// Call deadline, message size limit, page and batch sizes. `Default` has upstream's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Deadline of each RPC (each page of a list, each batch of a write).
    pub timeout: Duration,
    /// Largest response accepted (upstream's `grpc.maxCallRecvMsgSize`); `None` = 4 MiB.
    pub max_recv_message_size: Option<usize>,
    pub entry_list_page_size: u32,
    pub entry_create_batch_size: usize,
    pub entry_update_batch_size: usize,
    pub entry_delete_batch_size: usize,
    /// Entry write batches sent at once (creates, updates, deletes). SPIRE on sqlite
    /// serializes writes, so more in flight neither helps nor hurts there; on PostgreSQL
    /// four in flight wrote 1.6× as fast as one (BENCHMARKS.md).
    pub entry_write_concurrency: usize,
    pub federation_list_page_size: u32,
    pub federation_create_batch_size: usize,
    pub federation_update_batch_size: usize,
    pub federation_delete_batch_size: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_recv_message_size: None,
            entry_list_page_size: 200,
            entry_create_batch_size: 50,
            entry_update_batch_size: 50,
            entry_delete_batch_size: 200,
            entry_write_concurrency: 4,
            federation_list_page_size: 200,
            federation_create_batch_size: 50,
            federation_update_batch_size: 50,
            federation_delete_batch_size: 200,
        }
    }
}

/// Which entry fields the server silently drops (old SPIRE), found by
/// [`Client::get_unsupported_fields`]. `Default` = all supported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UnsupportedFields {
    pub jwt_svid_ttl: bool,
    pub hint: bool,
    pub store_svid: bool,
    /// SPIRE < 1.15: `disableX509SVIDPrefetch` and `jwtSVIDIncludeJTI` are dropped.
    pub additional_attributes: bool,
}

impl UnsupportedFields {
    pub fn is_empty(&self) -> bool {
        !(self.jwt_svid_ttl || self.hint || self.store_svid || self.additional_attributes)
    }

    /// The CRD field names (`jwtSVIDTTL`, `hint`, `storeSVID`, `disableX509SVIDPrefetch`,
    /// `jwtSVIDIncludeJTI`) of the unsupported ones.
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.jwt_svid_ttl {
            out.push("jwtSVIDTTL");
        }
        if self.hint {
            out.push("hint");
        }
        if self.store_svid {
            out.push("storeSVID");
        }
        if self.additional_attributes {
            out.push("disableX509SVIDPrefetch");
            out.push("jwtSVIDIncludeJTI");
        }
        out
    }
}

/// A federated bundle as [`Client::list_federated_bundles`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedBundle {
    pub trust_domain: TrustDomain,
    pub sequence_number: u64,
    /// Zero when the server has none.
    pub refresh_hint: Duration,
    /// Counts; zero when listed without authorities.
    pub x509_authorities: usize,
    pub jwt_authorities: usize,
    /// `sha256:` and the first 16 bytes (hex) of a digest of the authorities, to tell one
    /// content from another (SPIRE does not bump a federated bundle's sequence number
    /// when it refreshes it); `None` when listed without authorities.
    pub digest: Option<String>,
}

/// The digest of a bundle's authorities (see [`FederatedBundle::digest`]).
fn authorities_digest(b: &api::Bundle) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for x in &b.x509_authorities {
        h.update((x.asn1.len() as u64).to_be_bytes());
        h.update(&x.asn1);
        h.update([u8::from(x.tainted)]);
    }
    for j in &b.jwt_authorities {
        for part in [j.key_id.as_bytes(), &j.public_key] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.update(j.expires_at.to_be_bytes());
        h.update([u8::from(j.tainted)]);
    }
    let hex: String = h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The latest unsupported-field probe result, shared by every clone of a client and by
/// whoever holds a handle (the admission webhook refuses fields the server cannot store).
/// `None` until a probe has run in this process.
#[derive(Debug, Clone, Default)]
pub struct FieldSupport(Arc<std::sync::Mutex<Option<UnsupportedFields>>>);

impl FieldSupport {
    pub fn get(&self) -> Option<UnsupportedFields> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a probe result (done by [`Client::get_unsupported_fields`]).
    pub fn set(&self, fields: UnsupportedFields) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(fields);
    }
}

/// An X509-SVID minted from a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedSvid {
    /// DER certificates, leaf first.
    pub cert_chain_der: Vec<Vec<u8>>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Path of the dummy entry of the unsupported-fields probe.
pub const UNSUPPORTED_FIELDS_PROBE_PATH: &str = "/spire-controller-manager/unsupported-fields-test";

/// The socket path of a SPIRE server address, in the forms upstream accepts: a path
/// (absolute, or relative to the working directory), `unix:///abs/path`, or
/// `unix:path` (relative or absolute).
pub fn socket_path_from_address(address: &str) -> Result<PathBuf, SpireError> {
    unix_socket_path(address).map_err(|reason| SpireError::InvalidAddress { address: address.to_owned(), reason })
}

/// A Unix socket address as upstream (and the Workload API's clients) accept it: a path,
/// `unix:///abs/path` or `unix:path`; the reason when it is not one.
pub(crate) fn unix_socket_path(address: &str) -> Result<PathBuf, &'static str> {
    let path = if let Some(rest) = address.strip_prefix("unix://") {
        if !rest.starts_with('/') {
            return Err("unix:// must be followed by an absolute path (use unix:relative/path for a relative one)");
        }
        rest
    } else if let Some(rest) = address.strip_prefix("unix:") {
        rest
    } else if address.contains("://") {
        return Err("only Unix domain socket addresses are supported");
    } else {
        address
    };
    if path.is_empty() {
        return Err("socket path is empty");
    }
    Ok(PathBuf::from(path))
}

/// What the calls made so far say about the server (shared by every clone): readiness
/// rides on the calls the controller makes anyway instead of costing the server a probe.
#[derive(Debug, Default)]
struct CallLog {
    last_ok: Option<std::time::Instant>,
    last_error: Option<(std::time::Instant, String)>,
    /// faults (#12): the first failure of the current run of failures.
    failing_since: Option<std::time::Instant>,
}

/// The outcome of the latest SPIRE call, for health reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reachability {
    /// No call made yet.
    Unknown,
    /// The latest call succeeded, this long ago.
    Answered(Duration),
    /// The latest call failed (this long ago, with this error).
    Failing(Duration, String),
}

/// A SPIRE Server API client. Cheap to clone; clones share one HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct Client {
    entry: EntryClient<Channel>,
    trust_domain: TrustDomainClient<Channel>,
    bundle: BundleClient<Channel>,
    svid: SvidClient<Channel>,
    options: Arc<ClientOptions>,
    socket_path: Arc<PathBuf>,
    calls: Arc<std::sync::Mutex<CallLog>>,
    fields: FieldSupport,
    /// `Some` over TCP + mTLS (see [`Client::connect_mtls`]): the SVID the client presents.
    identity: Option<crate::workload::SvidSource>,
}

impl Client {
    /// A client for the server listening on `socket` (see [`socket_path_from_address`]).
    /// Nothing is dialled until the first call, and a failed dial is retried at the next
    /// call, so this succeeds while the socket is absent. Must be called within a Tokio
    /// runtime (the connection's driver task is spawned here).
    pub fn connect_lazy(socket: impl AsRef<str>, options: ClientOptions) -> Result<Self, SpireError> {
        let socket_path = Arc::new(socket_path_from_address(socket.as_ref())?);
        let path = socket_path.clone();
        let channel =
            Endpoint::from_static("http://localhost").connect_with_connector_lazy(service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path.as_path()).await.map(TokioIo::new) }
            }));
        Ok(Self::from_channel(channel, socket_path, options))
    }

    /// A client for the server at `address` (`host:port`, e.g.
    /// `spire-server.spire-server.svc:8081`) over TCP with SPIFFE mTLS: the client presents
    /// the current X.509-SVID of `source`, and accepts only a server whose certificate chains
    /// to the source's current bundle with the SPIFFE ID `server_id`
    /// (`spiffe://<td>/spire/server`). Lazy like [`Client::connect_lazy`]; SVID and bundle
    /// rotations need no new client (see `tls.rs`).
    pub fn connect_mtls(
        address: &str,
        source: crate::workload::SvidSource,
        server_id: &str,
        options: ClientOptions,
    ) -> Result<Self, SpireError> {
        let channel = crate::tls::lazy_channel(address, source.clone(), server_id.to_owned())?;
        let mut client = Self::from_channel(channel, Arc::new(PathBuf::from(address)), options);
        client.identity = Some(source);
        Ok(client)
    }

    /// The Workload API source of a client made by [`Client::connect_mtls`].
    pub fn identity(&self) -> Option<&crate::workload::SvidSource> {
        self.identity.as_ref()
    }

    fn from_channel(channel: Channel, socket_path: Arc<PathBuf>, options: ClientOptions) -> Self {
        let limit = options.max_recv_message_size.unwrap_or(4 * 1024 * 1024);
        Self {
            entry: EntryClient::new(channel.clone()).max_decoding_message_size(limit),
            trust_domain: TrustDomainClient::new(channel.clone()).max_decoding_message_size(limit),
            bundle: BundleClient::new(channel.clone()).max_decoding_message_size(limit),
            svid: SvidClient::new(channel).max_decoding_message_size(limit),
            options: Arc::new(options),
            socket_path,
            calls: Arc::default(),
            fields: FieldSupport::default(),
            identity: None,
        }
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The latest unsupported-field probe result of this client and its clones.
    pub fn field_support(&self) -> FieldSupport {
        self.fields.clone()
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.options.timeout);
        request
    }

    /// Runs one RPC under the per-call deadline.
    async fn call<T, Fut>(&self, method: &'static str, rpc: Fut) -> Result<T, SpireError>
    where
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeout = self.options.timeout;
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(timeout, rpc).await {
            Err(_) => Err(SpireError::DeadlineExceeded { method, timeout }),
            Ok(Err(status)) => Err(self.explain(SpireError::from_status(method, status, timeout))),
            Ok(Ok(response)) => Ok(response.into_inner()),
        };
        {
            let mut log = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            match &outcome {
                // A refusal (of the request or of one item) is an answer too.
                Ok(_)
                | Err(SpireError::Rejected { .. } | SpireError::InvalidRequest { .. })
                | Err(SpireError::Rpc {
                    code:
                        Code::InvalidArgument
                        | Code::NotFound
                        | Code::AlreadyExists
                        | Code::PermissionDenied
                        | Code::Unauthenticated
                        | Code::FailedPrecondition
                        | Code::Unimplemented
                        | Code::OutOfRange
                        | Code::Aborted,
                    ..
                }) => {
                    log.last_ok = Some(std::time::Instant::now());
                    log.last_error = None;
                    log.failing_since = None;
                }
                Err(e) => {
                    let now = std::time::Instant::now();
                    log.last_error = Some((now, e.to_string()));
                    log.failing_since.get_or_insert(now);
                }
            }
        }
        match &outcome {
            Ok(_) => tracing::debug!(method, elapsed_ms = started.elapsed().as_millis() as u64, "SPIRE API call"),
            Err(error) => {
                tracing::debug!(method, elapsed_ms = started.elapsed().as_millis() as u64, %error, "SPIRE API call failed")
            }
        }
        outcome
    }

    /// Over mTLS, a PermissionDenied names the SVID and says that its entry needs `admin`.
    fn explain(&self, error: SpireError) -> SpireError {
        match (error, &self.identity) {
            (SpireError::Rpc { method, code: Code::PermissionDenied, message }, Some(source)) => {
                let id = source.current().map(|m| m.spiffe_id.clone()).unwrap_or_else(|| "(none yet)".to_owned());
                SpireError::Rpc {
                    method,
                    code: Code::PermissionDenied,
                    message: format!("{message}; {}", crate::tls::admin_hint(&id)),
                }
            }
            (error, _) => error,
        }
    }

    // ------------------------------------------------------------ readiness

    /// One call that costs the server O(1) (GetBundle: one row, usually cached) to tell
    /// whether it answers. CountEntries is linear in the entry count on SPIRE's side.
    pub async fn probe(&self) -> Result<(), SpireError> {
        self.get_bundle().await.map(|_| ())
    }

    /// What the latest call said (see [`Reachability`]).
    pub fn reachability(&self) -> Reachability {
        let log = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        match (&log.last_error, log.last_ok) {
            (Some((at, err)), _) => Reachability::Failing(at.elapsed(), err.clone()),
            (None, Some(at)) => Reachability::Answered(at.elapsed()),
            (None, None) => Reachability::Unknown,
        }
    }

    /// faults (#12): how long every call has failed, since the first failure after the
    /// last answer (`None` while the latest call was answered, or before any call).
    pub fn failing_for(&self) -> Option<Duration> {
        let log = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        log.failing_since.map(|t| t.elapsed())
    }

    /// Probes until the server answers or `max_wait` has passed (then the last error).
    pub async fn wait_ready(&self, max_wait: Duration) -> Result<(), SpireError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut delay = Duration::from_millis(100);
        loop {
            let error = match self.probe().await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(error);
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    // ------------------------------------------------------------ entries

    pub async fn count_entries(&self) -> Result<u64, SpireError> {
        let response = self
            .call(
                "CountEntries",
                self.entry.clone().count_entries(self.request(entryv1::CountEntriesRequest::default())),
            )
            .await?;
        Ok(u64::try_from(response.count).unwrap_or(0))
    }

    /// Every entry on the server, all pages. Any entry that fails conversion fails the
    /// whole list: a partial view is never returned.
    pub async fn list_entries(&self) -> Result<Vec<Entry>, SpireError> {
        self.list_entries_filtered(None).await
    }

    /// The entries whose parent ID is `parent_id` (server-side filter).
    pub async fn list_entries_by_parent(&self, parent_id: &SpiffeId) -> Result<Vec<Entry>, SpireError> {
        let filter = entryv1::list_entries_request::Filter {
            by_parent_id: Some(convert::spiffe_id_to_api(parent_id)),
            ..Default::default()
        };
        self.list_entries_filtered(Some(filter)).await
    }

    /// The entries whose SPIFFE ID is `spiffe_id` (server-side filter).
    pub async fn list_entries_by_spiffe_id(&self, spiffe_id: &SpiffeId) -> Result<Vec<Entry>, SpireError> {
        let filter = entryv1::list_entries_request::Filter {
            by_spiffe_id: Some(convert::spiffe_id_to_api(spiffe_id)),
            ..Default::default()
        };
        self.list_entries_filtered(Some(filter)).await
    }

    /// Every entry's ID and revision number, all pages: ListEntries with an output mask of
    /// the revision only, a fraction of a full list's bytes for SPIRE to encode and for us
    /// to decode. What a cheap check of the mirror asks.
    pub async fn list_entry_revisions(&self) -> Result<Vec<(String, i64)>, SpireError> {
        const METHOD: &str = "ListEntries";
        let page_size = page_size(self.options.entry_list_page_size.max(1000));
        let mask = api::EntryMask { revision_number: true, ..Default::default() };
        all_pages(METHOD, |page_token| async move {
            let request = entryv1::ListEntriesRequest { filter: None, output_mask: Some(mask), page_size, page_token };
            let response = self.call(METHOD, self.entry.clone().list_entries(self.request(request))).await?;
            let items = response.entries.into_iter().map(|e| (e.id, e.revision_number)).collect();
            Ok((items, response.next_page_token))
        })
        .await
    }

    /// One entry by ID; `None` when SPIRE has none with it.
    pub async fn get_entry(&self, id: &str) -> Result<Option<Entry>, SpireError> {
        const METHOD: &str = "GetEntry";
        let request = entryv1::GetEntryRequest { id: id.to_owned(), output_mask: None };
        match self.call(METHOD, self.entry.clone().get_entry(self.request(request))).await {
            Ok(entry) => convert::entry_from_api(&entry).map(Some).map_err(|e| invalid_entry(METHOD, &entry, e)),
            Err(SpireError::Rpc { code: Code::NotFound, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list_entries_filtered(
        &self,
        filter: Option<entryv1::list_entries_request::Filter>,
    ) -> Result<Vec<Entry>, SpireError> {
        const METHOD: &str = "ListEntries";
        let page_size = page_size(self.options.entry_list_page_size);
        all_pages(METHOD, |page_token| {
            let filter = filter.clone();
            async move {
                let request = entryv1::ListEntriesRequest { filter, output_mask: None, page_size, page_token };
                let response = self.call(METHOD, self.entry.clone().list_entries(self.request(request))).await?;
                let entries = response
                    .entries
                    .iter()
                    .map(|entry| convert::entry_from_api(entry).map_err(|e| invalid_entry(METHOD, entry, e)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((entries, response.next_page_token))
            }
        })
        .await
    }

    /// Creates entries in batches (`entry_create_batch_size`), one result per entry in
    /// input order. An entry's `id` is sent when set (SPIRE >= 1.8 honours it). On OK the
    /// result is the entry as stored by the server (with its ID).
    pub async fn create_entries<E: Borrow<Entry>>(
        &self,
        entries: &[E],
    ) -> Result<Vec<BatchResult<Entry>>, BatchError<Entry>> {
        const METHOD: &str = "BatchCreateEntry";
        run_batches(
            METHOD,
            entries.len(),
            |i| Ok(convert::entry_to_api(entries[i].borrow())),
            self.options.entry_create_batch_size,
            self.options.entry_write_concurrency,
            |wire| async move {
                let request = entryv1::BatchCreateEntryRequest { entries: wire, output_mask: None };
                Ok(self.call(METHOD, self.entry.clone().batch_create_entry(self.request(request))).await?.results)
            },
            |i, r| entry_item(METHOD, entries[i].borrow(), r.status, r.entry),
        )
        .await
    }

    /// Updates entries (matched by `id`) in batches (`entry_update_batch_size`). Only the
    /// fields this controller manages are written ([`managed_fields_mask`]); an entry's
    /// additional attributes only when it declares them. The mask is per request, so
    /// entries with and without attributes go in separate batches; results are in input
    /// order.
    pub async fn update_entries<E: Borrow<Entry>>(
        &self,
        entries: &[E],
    ) -> Result<Vec<BatchResult<Entry>>, BatchError<Entry>> {
        let (plain, with_attributes): (Vec<usize>, Vec<usize>) =
            (0..entries.len()).partition(|&i| entries[i].borrow().additional_attributes.is_none());
        let mut results: Vec<Option<BatchResult<Entry>>> = (0..entries.len()).map(|_| None).collect();
        let mut failure = None;
        for (indexes, attributes) in [(plain, false), (with_attributes, true)] {
            if indexes.is_empty() {
                continue;
            }
            if failure.is_some() {
                for i in indexes {
                    results[i] = Some(Err(ItemError::not_attempted()));
                }
                continue;
            }
            let group: Vec<&Entry> = indexes.iter().map(|&i| entries[i].borrow()).collect();
            let (got, error) = match self.update_group(&group, attributes).await {
                Ok(got) => (got, None),
                Err(BatchError { error, results }) => (results, Some(error)),
            };
            for (i, r) in indexes.into_iter().zip(got) {
                results[i] = Some(r);
            }
            failure = error;
        }
        let results = results.into_iter().map(|r| r.unwrap_or_else(|| Err(ItemError::not_attempted()))).collect();
        match failure {
            None => Ok(results),
            Some(error) => Err(BatchError { error, results }),
        }
    }

    async fn update_group(
        &self,
        entries: &[&Entry],
        attributes: bool,
    ) -> Result<Vec<BatchResult<Entry>>, BatchError<Entry>> {
        const METHOD: &str = "BatchUpdateEntry";
        let mask = api::EntryMask { additional_attributes: attributes, ..managed_fields_mask() };
        run_batches(
            METHOD,
            entries.len(),
            |i| {
                let e = entries[i];
                if e.id.is_empty() {
                    Err(ItemError::invalid("entry ID is required for an update"))
                } else {
                    Ok(convert::entry_to_api(e))
                }
            },
            self.options.entry_update_batch_size,
            self.options.entry_write_concurrency,
            |wire| async move {
                let request =
                    entryv1::BatchUpdateEntryRequest { entries: wire, input_mask: Some(mask), output_mask: None };
                Ok(self.call(METHOD, self.entry.clone().batch_update_entry(self.request(request))).await?.results)
            },
            |i, r| entry_item(METHOD, entries[i], r.status, r.entry),
        )
        .await
    }

    /// Deletes entries by ID in batches (`entry_delete_batch_size`).
    pub async fn delete_entries(&self, ids: &[String]) -> Result<Vec<BatchResult<String>>, BatchError<String>> {
        const METHOD: &str = "BatchDeleteEntry";
        run_batches(
            METHOD,
            ids.len(),
            |i| Ok(ids[i].clone()),
            self.options.entry_delete_batch_size,
            self.options.entry_write_concurrency,
            |wire| async move {
                let request = entryv1::BatchDeleteEntryRequest { ids: wire };
                Ok(self.call(METHOD, self.entry.clone().batch_delete_entry(self.request(request))).await?.results)
            },
            |i, r| status_item(r.status).map(|()| ids[i].clone()),
        )
        .await
    }

    /// Upstream's probe for entry fields an old server drops: creates a dummy entry
    /// (`spiffe://<td>/spire-controller-manager/unsupported-fields-test`, parent the
    /// same, selector `a:1`, X.509 and JWT TTL 60 s, store_svid, hint `hint`, and — this
    /// project's addition — the additional attribute `jwt_svid_include_jti`), accepting
    /// OK (AlreadyExists: a leftover is replaced once, then accepted), deletes it again (a failed delete is only logged), and reports
    /// a field unsupported when the returned entry lacks it.
    pub async fn get_unsupported_fields(&self, trust_domain: &TrustDomain) -> Result<UnsupportedFields, SpireError> {
        const METHOD: &str = "BatchCreateEntry";
        let id = api::Spiffeid {
            trust_domain: trust_domain.name().to_owned(),
            path: UNSUPPORTED_FIELDS_PROBE_PATH.to_owned(),
        };
        let probe = api::Entry {
            spiffe_id: Some(id.clone()),
            parent_id: Some(id),
            selectors: vec![api::Selector { r#type: "a".into(), value: "1".into() }],
            x509_svid_ttl: 60,
            jwt_svid_ttl: 60,
            store_svid: true,
            hint: "hint".into(),
            // One attribute stands for the message (SPIRE refuses disable_x509_svid_prefetch
            // beside store_svid).
            additional_attributes: Some(api::entry::AdditionalAttributes {
                disable_x509_svid_prefetch: false,
                jwt_svid_include_jti: true,
            }),
            ..Default::default()
        };
        let mut attempt = 0;
        let entry = loop {
            attempt += 1;
            let request = entryv1::BatchCreateEntryRequest { entries: vec![probe.clone()], output_mask: None };
            let response = self.call(METHOD, self.entry.clone().batch_create_entry(self.request(request))).await?;
            check_result_count(METHOD, 1, response.results.len())?;
            let result = response.results.into_iter().next().expect("one result");
            let (code, message) = result
                .status
                .map(|s| (Code::from_i32(s.code), s.message))
                .unwrap_or((Code::Unknown, "status is nil".into()));
            if code != Code::Ok && code != Code::AlreadyExists {
                return Err(SpireError::Rejected {
                    method: METHOD,
                    code,
                    message: format!("failed to create entry: {message}"),
                });
            }
            let entry = result
                .entry
                .ok_or_else(|| SpireError::InvalidResponse { method: METHOD, reason: "result has no entry".into() })?;
            // A leftover probe (an earlier probe's delete failed, or an older version's
            // probe without the newer fields) says nothing about this server: replace it once.
            if code == Code::AlreadyExists && attempt == 1 {
                let _ = self.delete_entries(std::slice::from_ref(&entry.id)).await;
                continue;
            }
            break entry;
        };
        match self.delete_entries(std::slice::from_ref(&entry.id)).await {
            Ok(results) => {
                if let Some(Err(error)) = results.first() {
                    tracing::warn!(entry_id = %entry.id, %error, "Failed to delete dummy entry");
                }
            }
            Err(error) => {
                tracing::warn!(entry_id = %entry.id, %error, "Failed to delete dummy entry")
            }
        }
        let fields = UnsupportedFields {
            jwt_svid_ttl: entry.jwt_svid_ttl == 0,
            hint: entry.hint.is_empty(),
            store_svid: !entry.store_svid,
            additional_attributes: entry.additional_attributes.is_none_or(|a| !a.jwt_svid_include_jti),
        };
        self.fields.set(fields);
        Ok(fields)
    }

    // ------------------------------------------------------------ federation

    /// Every federation relationship, all pages; any conversion failure fails the list.
    pub async fn list_federation_relationships(&self) -> Result<Vec<FederationRelationship>, SpireError> {
        const METHOD: &str = "ListFederationRelationships";
        let page_size = page_size(self.options.federation_list_page_size);
        all_pages(METHOD, |page_token| async move {
            let request =
                trustdomainv1::ListFederationRelationshipsRequest { output_mask: None, page_size, page_token };
            let response = self
                .call(METHOD, self.trust_domain.clone().list_federation_relationships(self.request(request)))
                .await?;
            let relationships = response
                .federation_relationships
                .iter()
                .map(|fr| {
                    convert::federation_relationship_from_api(fr).map_err(|e| SpireError::InvalidResponse {
                        method: METHOD,
                        reason: format!("federation relationship {:?}: {e}", fr.trust_domain),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((relationships, response.next_page_token))
        })
        .await
    }

    /// Creates federation relationships in batches (`federation_create_batch_size`).
    /// One with an invalid bundle endpoint URL is not sent (`ItemErrorKind::Invalid`).
    pub async fn create_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>> {
        const METHOD: &str = "BatchCreateFederationRelationship";
        run_batches(
            METHOD,
            relationships.len(),
            prepared(prepare_relationships(relationships)),
            self.options.federation_create_batch_size,
            1,
            |wire| async move {
                let request = trustdomainv1::BatchCreateFederationRelationshipRequest {
                    federation_relationships: wire,
                    output_mask: None,
                };
                Ok(self
                    .call(METHOD, self.trust_domain.clone().batch_create_federation_relationship(self.request(request)))
                    .await?
                    .results)
            },
            |i, r| relationship_item(METHOD, &relationships[i], r.status, r.federation_relationship),
        )
        .await
    }

    /// Updates federation relationships (matched by trust domain) in batches
    /// (`federation_update_batch_size`), without an input mask (full replacement).
    pub async fn update_federation_relationships(
        &self,
        relationships: &[FederationRelationship],
    ) -> Result<Vec<BatchResult<FederationRelationship>>, BatchError<FederationRelationship>> {
        const METHOD: &str = "BatchUpdateFederationRelationship";
        run_batches(
            METHOD,
            relationships.len(),
            prepared(prepare_relationships(relationships)),
            self.options.federation_update_batch_size,
            1,
            |wire| async move {
                let request = trustdomainv1::BatchUpdateFederationRelationshipRequest {
                    federation_relationships: wire,
                    input_mask: None,
                    output_mask: None,
                };
                Ok(self
                    .call(METHOD, self.trust_domain.clone().batch_update_federation_relationship(self.request(request)))
                    .await?
                    .results)
            },
            |i, r| relationship_item(METHOD, &relationships[i], r.status, r.federation_relationship),
        )
        .await
    }

    /// Deletes the federation relationships with these trust domains, in batches
    /// (`federation_delete_batch_size`).
    pub async fn delete_federation_relationships(
        &self,
        trust_domains: &[TrustDomain],
    ) -> Result<Vec<BatchResult<TrustDomain>>, BatchError<TrustDomain>> {
        const METHOD: &str = "BatchDeleteFederationRelationship";
        run_batches(
            METHOD,
            trust_domains.len(),
            |i| Ok(trust_domains[i].name().to_owned()),
            self.options.federation_delete_batch_size,
            1,
            |wire| async move {
                let request = trustdomainv1::BatchDeleteFederationRelationshipRequest { trust_domains: wire };
                Ok(self
                    .call(METHOD, self.trust_domain.clone().batch_delete_federation_relationship(self.request(request)))
                    .await?
                    .results)
            },
            |i, r| status_item(r.status).map(|()| trust_domains[i].clone()),
        )
        .await
    }

    // ------------------------------------------------------------ bundle, SVID

    /// The trust bundle of the server's own trust domain.
    pub async fn get_bundle(&self) -> Result<Bundle, SpireError> {
        const METHOD: &str = "GetBundle";
        let response = self
            .call(METHOD, self.bundle.clone().get_bundle(self.request(bundlev1::GetBundleRequest::default())))
            .await?;
        convert::bundle_from_api(&response)
            .map_err(|e| SpireError::InvalidResponse { method: METHOD, reason: e.to_string() })
    }

    /// The federated bundles the server holds, all pages: trust domain, sequence number
    /// and, with `authorities`, how many X.509 and JWT authorities each has (without, the
    /// authorities are not sent: a cheap "which bundles exist").
    pub async fn list_federated_bundles(&self, authorities: bool) -> Result<Vec<FederatedBundle>, SpireError> {
        const METHOD: &str = "ListFederatedBundles";
        let mask = api::BundleMask {
            x509_authorities: authorities,
            jwt_authorities: authorities,
            refresh_hint: true,
            sequence_number: true,
        };
        all_pages(METHOD, |page_token| async move {
            let request = bundlev1::ListFederatedBundlesRequest { output_mask: Some(mask), page_size: 200, page_token };
            let response = self.call(METHOD, self.bundle.clone().list_federated_bundles(self.request(request))).await?;
            let bundles = response
                .bundles
                .iter()
                .map(|b| {
                    let trust_domain =
                        TrustDomain::parse(&b.trust_domain).map_err(|e| SpireError::InvalidResponse {
                            method: METHOD,
                            reason: format!("bundle trust domain {:?}: {e}", b.trust_domain),
                        })?;
                    Ok(FederatedBundle {
                        trust_domain,
                        sequence_number: b.sequence_number,
                        refresh_hint: Duration::from_secs(u64::try_from(b.refresh_hint).unwrap_or(0)),
                        x509_authorities: b.x509_authorities.len(),
                        jwt_authorities: b.jwt_authorities.len(),
                        digest: authorities.then(|| authorities_digest(b)),
                    })
                })
                .collect::<Result<Vec<_>, SpireError>>()?;
            Ok((bundles, response.next_page_token))
        })
        .await
    }

    /// Asks the server to fetch `trust_domain`'s bundle from its bundle endpoint now
    /// (TrustDomain API `RefreshBundle`). NotFound: no federation relationship with it.
    pub async fn refresh_bundle(&self, trust_domain: &TrustDomain) -> Result<(), SpireError> {
        const METHOD: &str = "RefreshBundle";
        let request = trustdomainv1::RefreshBundleRequest { trust_domain: trust_domain.name().to_owned() };
        self.call(METHOD, self.trust_domain.clone().refresh_bundle(self.request(request))).await?;
        Ok(())
    }

    /// Mints an X509-SVID for the CSR (DER PKCS#10; the SPIFFE ID is its URI SAN).
    /// `ttl` is sent in whole seconds (zero = server default); the server may cap it.
    pub async fn mint_x509_svid(&self, csr_der: &[u8], ttl: Duration) -> Result<MintedSvid, SpireError> {
        const METHOD: &str = "MintX509SVID";
        let ttl = i32::try_from(ttl.as_secs()).map_err(|_| SpireError::InvalidRequest {
            method: METHOD,
            reason: format!("ttl {ttl:?} does not fit in int32 seconds"),
        })?;
        let request = svidv1::MintX509svidRequest { csr: csr_der.to_vec(), ttl };
        let response = self.call(METHOD, self.svid.clone().mint_x509svid(self.request(request))).await?;
        let svid = response
            .svid
            .ok_or_else(|| SpireError::InvalidResponse { method: METHOD, reason: "response has no svid".into() })?;
        if svid.cert_chain.is_empty() {
            return Err(SpireError::InvalidResponse {
                method: METHOD,
                reason: "svid has an empty certificate chain".into(),
            });
        }
        Ok(MintedSvid { cert_chain_der: svid.cert_chain, expires_at: svid.expires_at })
    }
}

// ---------------------------------------------------------------- helpers

/// 0 would let the server pick; keep it as given but never negative.
fn page_size(size: u32) -> i32 {
    i32::try_from(size).unwrap_or(i32::MAX)
}

fn invalid_entry(method: &'static str, entry: &api::Entry, e: ConvertError) -> SpireError {
    SpireError::InvalidResponse { method, reason: format!("entry {:?}: {e}", entry.id) }
}

fn check_result_count(method: &'static str, sent: usize, got: usize) -> Result<(), SpireError> {
    if sent == got {
        Ok(())
    } else {
        Err(SpireError::InvalidResponse { method, reason: format!("sent {sent} items but got {got} results") })
    }
}

/// `Ok(())` for an OK item status, the item error otherwise (a missing status is
/// `Unknown`, as upstream's `statusFromAPI`).
fn status_item(status: Option<api::Status>) -> Result<(), ItemError> {
    match status {
        None => Err(ItemError::rejected(Code::Unknown, "status is nil")),
        Some(s) if s.code == Code::Ok as i32 => Ok(()),
        Some(s) => Err(ItemError::rejected(Code::from_i32(s.code), s.message)),
    }
}

/// The outcome of one entry of a create/update. On OK the server's copy is returned;
/// if it is absent or unconvertible (never seen from SPIRE) the sent entry stands in,
/// with the server's ID when there is one.
fn entry_item(
    method: &'static str,
    sent: &Entry,
    status: Option<api::Status>,
    entry: Option<api::Entry>,
) -> BatchResult<Entry> {
    status_item(status)?;
    let fallback = |id: Option<&str>| {
        let mut e = sent.clone();
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            e.id = id.to_owned();
        }
        e
    };
    Ok(match entry {
        None => fallback(None),
        Some(wire) => match convert::entry_from_api(&wire) {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(method, entry_id = %wire.id, %error, "SPIRE returned an unconvertible entry; using the one sent");
                fallback(Some(&wire.id))
            }
        },
    })
}

fn relationship_item(
    method: &'static str,
    sent: &FederationRelationship,
    status: Option<api::Status>,
    returned: Option<api::FederationRelationship>,
) -> BatchResult<FederationRelationship> {
    status_item(status)?;
    Ok(match returned.as_ref().map(convert::federation_relationship_from_api) {
        Some(Ok(fr)) => fr,
        Some(Err(error)) => {
            tracing::warn!(method, trust_domain = %sent.trust_domain, %error, "SPIRE returned an unconvertible federation relationship; using the one sent");
            sent.clone()
        }
        None => sent.clone(),
    })
}

fn prepare_relationships(
    relationships: &[FederationRelationship],
) -> Vec<Result<api::FederationRelationship, ItemError>> {
    relationships
        .iter()
        .map(|fr| convert::federation_relationship_to_api(fr).map_err(|e| ItemError::invalid(e.to_string())))
        .collect()
}

/// Sends the valid items of `prepared` in batches of `batch_size`, serially. `send`
/// makes one `method` call with a batch of wire items and returns the server's results,
/// which must be one per item, in order; `outcome` turns the result for the input at an
/// index into that input's outcome. An RPC-level failure (or a wrong result count) stops
/// the run: the failed batch's items become `RpcFailed`, the unsent ones `NotAttempted`,
/// and everything is handed back with the error.
/// Every page of a paged list: `page(token)` returns one page's items and the next page's
/// token (empty after the last page). A token that repeats the request's is an error, not
/// an endless loop.
async fn all_pages<T, Fut>(method: &'static str, mut page: impl FnMut(String) -> Fut) -> Result<Vec<T>, SpireError>
where
    Fut: std::future::Future<Output = Result<(Vec<T>, String), SpireError>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token.clone()).await?;
        out.extend(items);
        if next.is_empty() {
            return Ok(out);
        }
        if next == token {
            return Err(SpireError::InvalidResponse {
                method,
                reason: format!("next_page_token {token:?} repeats the request's token"),
            });
        }
        token = next;
    }
}

// A plain closure returning a future (not an `async` closure): the futures of async
// closures are not provably `Send` for every lifetime, which callers spawning the pass
// on a multi-threaded runtime need.
async fn run_batches<P, R, T, Fut>(
    method: &'static str,
    count: usize,
    mut prepare: impl FnMut(usize) -> Result<P, ItemError>,
    batch_size: usize,
    in_flight: usize,
    mut send: impl FnMut(Vec<P>) -> Fut,
    mut outcome: impl FnMut(usize, R) -> BatchResult<T>,
) -> Result<Vec<BatchResult<T>>, BatchError<T>>
where
    Fut: std::future::Future<Output = Result<Vec<R>, SpireError>>,
{
    use futures::StreamExt as _;
    // `prepare` is called once per index, in order, one batch at a time, and at most
    // `in_flight` batches are sent at once: only that many batches of wire messages exist.
    // After a failed call no new batch is sent; the ones in flight finish.
    let batch_size = batch_size.max(1);
    let mut results: Vec<Option<BatchResult<T>>> = (0..count).map(|_| None).collect();
    let mut next = 0;
    let mut failure = None;
    let mut pending = futures::stream::FuturesUnordered::new();
    loop {
        while failure.is_none() && next < count && pending.len() < in_flight.max(1) {
            let mut indexes = Vec::with_capacity(batch_size.min(count - next));
            let mut wire = Vec::with_capacity(batch_size.min(count - next));
            while next < count && wire.len() < batch_size {
                match prepare(next) {
                    Ok(w) => {
                        indexes.push(next);
                        wire.push(w);
                    }
                    Err(e) => results[next] = Some(Err(e)),
                }
                next += 1;
            }
            if !wire.is_empty() {
                let sent = send(wire);
                pending.push(async move { (indexes, sent.await) });
            }
        }
        let Some((indexes, sent)) = pending.next().await else { break };
        match sent.and_then(|got| check_result_count(method, indexes.len(), got.len()).map(|()| got)) {
            Ok(got) => {
                for (i, r) in indexes.into_iter().zip(got) {
                    results[i] = Some(outcome(i, r));
                }
            }
            Err(error) => {
                for i in indexes {
                    results[i] = Some(Err(ItemError::rpc_failed(&error)));
                }
                failure.get_or_insert(error);
            }
        }
    }
    // After a failed call: items that could not have been sent keep their own error.
    for (i, slot) in results.iter_mut().enumerate().skip(next) {
        if let Err(e) = prepare(i) {
            *slot = Some(Err(e));
        }
    }
    let results = results.into_iter().map(|r| r.unwrap_or_else(|| Err(ItemError::not_attempted()))).collect();
    match failure {
        None => Ok(results),
        Some(error) => Err(BatchError { error, results }),
    }
}

/// [`run_batches`]' `prepare` over items prepared up front.
fn prepared<P>(items: Vec<Result<P, ItemError>>) -> impl FnMut(usize) -> Result<P, ItemError> {
    let mut it = items.into_iter();
    move |_| it.next().expect("prepare is called once per item")
}

/// The entry fields this controller manages, and so the only ones an update sends: an
/// update without an input mask replaces every field, including those other tools set
/// (the expiry, and SPIRE 1.15's additional attributes).
pub fn managed_fields_mask() -> api::EntryMask {
    api::EntryMask {
        spiffe_id: true,
        parent_id: true,
        selectors: true,
        x509_svid_ttl: true,
        federates_with: true,
        admin: true,
        downstream: true,
        dns_names: true,
        store_svid: true,
        jwt_svid_ttl: true,
        hint: true,
        ..Default::default()
    }
}
