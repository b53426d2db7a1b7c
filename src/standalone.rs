//! The SPIRE client of either transport (ARCHITECTURE.md "The rooms": wiring, like `cli`):
//! the server's admin socket (sidecar), or `spireServerAddress` over TCP + SPIFFE mTLS
//! with an X.509-SVID from the agent at `workloadAPISocketPath` (standalone).

use std::time::Duration;

use scm_config::Config;
use scm_spire_api::{Client, ClientOptions, SvidSource};

/// How long startup waits for the first X.509-SVID before going on (calls fail and are
/// retried until it comes).
const FIRST_SVID_WAIT: Duration = Duration::from_secs(15);

/// The client the configuration asks for. Over mTLS, waits (at most [`FIRST_SVID_WAIT`])
/// for the first SVID and checks in the background that its entry is admin.
pub async fn spire_client(config: &Config, registry: &prometheus::Registry) -> anyhow::Result<Client> {
    let options = ClientOptions { max_recv_message_size: config.grpc_max_call_recv_msg_size, ..Default::default() };
    let (Some(address), Some(workload)) = (&config.spire_server_address, &config.workload_api_socket_path) else {
        return Ok(Client::connect_lazy(&config.spire_server_socket_path, options)?);
    };
    let source = SvidSource::start(workload)?;
    let server_id = config.spire_server_id();
    let client = Client::connect_mtls(address, source.clone(), &server_id, options)?;
    watch_svid(source.clone(), registry);
    tracing::info!(address = %address, server_id = %server_id, workload_api = %workload, "SPIRE Server API over TCP + mTLS");
    match source.wait_ready(FIRST_SVID_WAIT).await {
        Ok(svid) => {
            tracing::info!(spiffe_id = %svid.spiffe_id, "first X.509-SVID from the Workload API");
            tokio::spawn(check_admin(client.clone()));
        }
        Err(error) => tracing::error!(%error, "no X.509-SVID yet: SPIRE calls fail until the agent gives one"),
    }
    Ok(client)
}

/// One cheap call that only an admin may make (GetEntry of an ID that does not exist):
/// a PermissionDenied is logged at once with what to do, instead of at the first pass.
async fn check_admin(client: Client) {
    match client.get_entry("spire-controller-manager-admin-check").await {
        Ok(_) => tracing::info!("the SPIRE server accepts this controller's X.509-SVID as admin"),
        Err(error) if error.code() == tonic::Code::PermissionDenied => {
            tracing::error!(%error, "this controller is not admin in SPIRE: nothing can be reconciled")
        }
        Err(error) => {
            tracing::warn!(%error, "could not check that this controller is admin in SPIRE (tried again at every call)")
        }
    }
}

/// `spire_controller_manager_svid_updates_total` (each rotation counts one) and
/// `spire_controller_manager_svid_expiry_timestamp_seconds` (notAfter of the current SVID:
/// alert when it comes close, the agent has stopped renewing it).
fn watch_svid(source: SvidSource, registry: &prometheus::Registry) {
    let updates = prometheus::IntCounter::new(
        "spire_controller_manager_svid_updates_total",
        "X.509-SVID updates from the Workload API (mTLS to SPIRE; each rotation counts one)",
    )
    .expect("valid metric");
    let expiry = prometheus::IntGauge::new(
        "spire_controller_manager_svid_expiry_timestamp_seconds",
        "notAfter of the X.509-SVID this controller presents to SPIRE (Unix seconds)",
    )
    .expect("valid metric");
    for m in [Box::new(updates.clone()) as Box<dyn prometheus::core::Collector>, Box::new(expiry.clone())] {
        if let Err(error) = registry.register(m) {
            tracing::warn!(%error, "SVID metrics not registered");
        }
    }
    let mut rx = source.updates();
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let n = *rx.borrow_and_update();
            updates.inc_by(n.saturating_sub(seen));
            seen = n;
            if let Some(m) = source.current() {
                let secs = m.expires_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
                expiry.set(i64::try_from(secs).unwrap_or(i64::MAX));
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}
