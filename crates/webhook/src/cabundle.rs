//! Keeps `caBundle` of the webhook configurations equal to SPIRE's X.509 authorities
//! (upstream `pkg/webhookmanager`, extended to this project's extra configurations).
//!
//! - The trust bundle is fetched every `refresh_interval` (5 s; backoff doubling to
//!   `max_backoff`, 1 min, on errors) and rendered as PEM (`Bundle::x509_authorities_pem`).
//! - Each named configuration is watched (`metadata.name=` field selector); on every event
//!   and every `check_interval` (5 s) each webhook entry whose `clientConfig.caBundle`
//!   differs is fixed, all entries of one configuration in one strategic-merge PATCH
//!   (the `webhooks` list merges by `name`).
//! - The configurations also give the host names of the serving certificate
//!   ([`CaBundleHandle::hosts`]): `<service>.<namespace>.svc` for service references, the
//!   URL's host for URL references.
//! - A `required` configuration (the validating one) that does not exist when the first
//!   list completes is fatal, as upstream's startup check: the task ends with
//!   [`CaBundleError::Missing`]. An apiserver that cannot be reached is not: the watches
//!   retry with backoff. Optional configurations that are missing are logged.
//! - Runs on every replica (each serves the webhook; caBundle patches are idempotent).
//!
//! - A configuration the controller may not read or patch (403) is skipped, the others
//!   are kept: the gap is reported once through [`Degradations`] and the forbidden call is
//!   tried again only on the watch's slow backoff (reads) or every five minutes (patches).
//!
//! RBAC: get/list/watch/patch on `validatingwebhookconfigurations` and
//! `mutatingwebhookconfigurations` (admissionregistration.k8s.io); each is optional.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use scm_spiffe::Bundle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Degradations;
use crate::cert::spire::BoxError;

/// How long a configuration whose read or patch was refused (403) is left alone.
const RETRY_FORBIDDEN: Duration = Duration::from_secs(300);

/// The SPIRE call the caBundle manager needs (`bundle.v1.Bundle/GetBundle`).
pub trait BundleSource: Send + Sync + 'static {
    fn get_bundle(&self) -> BoxFuture<'_, Result<Bundle, BoxError>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    Validating,
    Mutating,
}

impl ConfigKind {
    fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Validating => "ValidatingWebhookConfiguration",
            ConfigKind::Mutating => "MutatingWebhookConfiguration",
        }
    }

    fn resource(self) -> &'static str {
        match self {
            ConfigKind::Validating => "validatingwebhookconfigurations.admissionregistration.k8s.io",
            ConfigKind::Mutating => "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        }
    }
}

/// Where missing optional permissions are reported (see [`Degradations`]).
#[derive(Clone)]
pub struct DegradationSink(pub Arc<dyn Degradations>);

impl std::fmt::Debug for DegradationSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DegradationSink")
    }
}

impl Default for DegradationSink {
    fn default() -> Self {
        Self(Arc::new(crate::NoDegradations))
    }
}

/// One webhook configuration to keep up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfigRef {
    pub kind: ConfigKind,
    pub name: String,
    /// Missing at startup ⇒ the manager fails (upstream's behaviour for the validating one).
    pub required: bool,
}

/// Parameters of [`CaBundleManager::spawn`].
#[derive(Debug, Clone)]
pub struct CaBundleParams {
    pub configs: Vec<WebhookConfigRef>,
    pub refresh_interval: Duration,
    pub check_interval: Duration,
    pub max_backoff: Duration,
    /// Field manager name of the patches.
    pub field_manager: String,
    /// Where a configuration that may not be read or patched is reported.
    pub degradations: DegradationSink,
}

impl CaBundleParams {
    /// The required ValidatingWebhookConfiguration `validating_name` (config
    /// `validatingWebhookConfigurationName`) plus the optional MutatingWebhookConfiguration
    /// `mutating_name` and pod-observation ValidatingWebhookConfiguration
    /// `pod_observer_name` (config `mutatingWebhookConfigurationName`,
    /// `podObserverWebhookConfigurationName`).
    pub fn new(
        validating_name: impl Into<String>,
        mutating_name: impl Into<String>,
        pod_observer_name: impl Into<String>,
    ) -> Self {
        Self {
            configs: vec![
                WebhookConfigRef { kind: ConfigKind::Validating, name: validating_name.into(), required: true },
                WebhookConfigRef { kind: ConfigKind::Mutating, name: mutating_name.into(), required: false },
                WebhookConfigRef { kind: ConfigKind::Validating, name: pod_observer_name.into(), required: false },
            ],
            refresh_interval: Duration::from_secs(5),
            check_interval: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
            field_manager: "spire-controller-manager".into(),
            degradations: DegradationSink::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaBundleError {
    #[error("{kind} {name:?} does not exist")]
    Missing { kind: &'static str, name: String },
}

/// See the module docs.
pub struct CaBundleManager;

/// Returned by [`CaBundleManager::spawn`]. `task` ends with an error only for a missing
/// required configuration at startup; otherwise it runs until cancelled.
pub struct CaBundleHandle {
    pub task: JoinHandle<Result<(), CaBundleError>>,
    hosts: watch::Receiver<Option<Vec<String>>>,
    synced: watch::Receiver<bool>,
}

impl CaBundleHandle {
    /// Host names for the serving certificate (`None` until every configuration was listed
    /// once). Feed this to [`crate::cert::spire::CertManager::spawn`].
    pub fn hosts(&self) -> watch::Receiver<Option<Vec<String>>> {
        self.hosts.clone()
    }

    /// Waits until every existing configuration carried the current bundle at least once;
    /// false if the manager stopped first.
    pub async fn wait_synced(&self) -> bool {
        let mut rx = self.synced.clone();
        rx.wait_for(|s| *s).await.is_ok()
    }
}

impl CaBundleManager {
    pub fn spawn(
        client: kube::Client,
        params: CaBundleParams,
        bundles: Arc<dyn BundleSource>,
        cancel: CancellationToken,
    ) -> CaBundleHandle {
        let (hosts_tx, hosts) = watch::channel(None);
        let (synced_tx, synced) = watch::channel(false);
        let task = tokio::spawn(run(client, params, bundles, cancel, hosts_tx, synced_tx));
        CaBundleHandle { task, hosts, synced }
    }
}

/// What we need of one webhook entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hook {
    name: String,
    ca_bundle: Vec<u8>,
    host: Option<String>,
}

type Key = (ConfigKind, String);

enum Ev {
    /// The object now (`None`: absent).
    Object(Key, Option<Vec<Hook>>),
    /// A (re-)list of this key is complete; `bool`: the object was in it.
    Listed(Key, bool),
    /// The apiserver refused to list or watch it (403).
    Forbidden(Key),
}

fn hooks_of<'a>(configs: impl Iterator<Item = (&'a str, &'a WebhookClientConfig)>) -> Vec<Hook> {
    configs
        .map(|(name, cc)| Hook {
            name: name.to_owned(),
            ca_bundle: cc.ca_bundle.as_ref().map(|b| b.0.clone()).unwrap_or_default(),
            host: host_of(cc),
        })
        .collect()
}

/// `<svc>.<ns>.svc` for a service reference, the URL's host for a URL.
pub fn host_of(cc: &WebhookClientConfig) -> Option<String> {
    if let Some(svc) = &cc.service {
        return Some(format!("{}.{}.svc", svc.name, svc.namespace));
    }
    let url = url::Url::parse(cc.url.as_deref()?).ok()?;
    match url.host()? {
        url::Host::Domain(d) => Some(d.to_owned()),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(ip) => Some(ip.to_string()),
    }
}

fn vwc_hooks(o: &ValidatingWebhookConfiguration) -> Vec<Hook> {
    hooks_of(o.webhooks.iter().flatten().map(|w| (w.name.as_str(), &w.client_config)))
}

fn mwc_hooks(o: &MutatingWebhookConfiguration) -> Vec<Hook> {
    hooks_of(o.webhooks.iter().flatten().map(|w| (w.name.as_str(), &w.client_config)))
}

fn watch_one(client: &kube::Client, r: &WebhookConfigRef) -> BoxStream<'static, Ev> {
    let key: Key = (r.kind, r.name.clone());
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", r.name));
    fn map<K>(
        key: Key,
        ev: Result<watcher::Event<K>, watcher::Error>,
        hooks: fn(&K) -> Vec<Hook>,
        seen: &mut bool,
    ) -> Option<Ev> {
        match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                *seen = true;
                Some(Ev::Object(key, Some(hooks(&o))))
            }
            Ok(watcher::Event::Delete(_)) => Some(Ev::Object(key, None)),
            Ok(watcher::Event::Init) => {
                *seen = false;
                None
            }
            Ok(watcher::Event::InitDone) => Some(Ev::Listed(key, *seen)),
            Err(err) if watch_forbidden(&err) => Some(Ev::Forbidden(key)),
            Err(err) => {
                tracing::warn!(kind = key.0.as_str(), name = %key.1, %err, "watching webhook configuration failed; retrying");
                None
            }
        }
    }
    // One watch until it is refused (403); then a fresh one after RETRY_FORBIDDEN.
    let (client, kind) = (client.clone(), r.kind);
    futures::stream::iter(0u64..)
        .then(move |round| {
            let (client, key, cfg) = (client.clone(), key.clone(), cfg.clone());
            async move {
                if round > 0 {
                    tokio::time::sleep(RETRY_FORBIDDEN).await;
                }
                let mut seen = false;
                let events: BoxStream<'static, Option<Ev>> = match kind {
                    ConfigKind::Validating => watcher(Api::<ValidatingWebhookConfiguration>::all(client), cfg)
                        .default_backoff()
                        .map(move |ev| map(key.clone(), ev, vwc_hooks, &mut seen))
                        .boxed(),
                    ConfigKind::Mutating => watcher(Api::<MutatingWebhookConfiguration>::all(client), cfg)
                        .default_backoff()
                        .map(move |ev| map(key.clone(), ev, mwc_hooks, &mut seen))
                        .boxed(),
                };
                // Up to and including the first refusal.
                events.scan(false, |refused, ev| {
                    if *refused {
                        return futures::future::ready(None);
                    }
                    *refused = matches!(ev, Some(Ev::Forbidden(_)));
                    futures::future::ready(Some(ev))
                })
            }
        })
        .flatten()
        .filter_map(futures::future::ready)
        .boxed()
}

/// The apiserver refused the call (403).
pub fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 403)
}

/// The apiserver refused a list or watch (403).
pub fn watch_forbidden(err: &watcher::Error) -> bool {
    match err {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            is_forbidden(e)
        }
        watcher::Error::WatchError(s) => s.code == 403,
        watcher::Error::NoResourceVersion => false,
    }
}

fn capability(key: &Key, verb: &str) -> String {
    format!("webhook-config-{verb}:{}", key.1)
}

struct State {
    /// Latest object per configuration; `None` inside = known absent.
    objects: BTreeMap<Key, Option<Vec<Hook>>>,
    /// Configurations the controller may not read (skipped until a read succeeds).
    unreadable: std::collections::BTreeSet<Key>,
    /// Configurations whose patch was refused, and when to try again.
    unpatchable: BTreeMap<Key, Instant>,
    listed: BTreeMap<Key, bool>,
    desired_pem: Option<String>,
}

async fn run(
    client: kube::Client,
    params: CaBundleParams,
    bundles: Arc<dyn BundleSource>,
    cancel: CancellationToken,
    hosts_tx: watch::Sender<Option<Vec<String>>>,
    synced_tx: watch::Sender<bool>,
) -> Result<(), CaBundleError> {
    let mut events = futures::stream::select_all(params.configs.iter().map(|r| watch_one(&client, r)));
    let mut state = State {
        objects: BTreeMap::new(),
        listed: params.configs.iter().map(|r| ((r.kind, r.name.clone()), false)).collect(),
        desired_pem: None,
        unreadable: Default::default(),
        unpatchable: BTreeMap::new(),
    };
    let degradations = params.degradations.0.clone();
    let mut next_bundle = Instant::now();
    let mut bundle_backoff: Option<Duration> = None;
    let mut check = tokio::time::interval(params.check_interval);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut started = false;

    loop {
        let mut dirty = false;
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(next_bundle) => {
                match bundles.get_bundle().await {
                    Ok(bundle) => {
                        bundle_backoff = None;
                        next_bundle = Instant::now() + params.refresh_interval;
                        let pem = bundle.x509_authorities_pem();
                        if pem.is_empty() {
                            tracing::warn!("SPIRE trust bundle has no X.509 authorities; leaving caBundle alone");
                        } else if state.desired_pem.as_deref() != Some(pem.as_str()) {
                            tracing::info!(authorities = bundle.x509_authorities.len(), "SPIRE trust bundle changed; caBundle will follow");
                            state.desired_pem = Some(pem);
                            dirty = true;
                        }
                    }
                    Err(err) => {
                        let b = bundle_backoff.map_or(params.refresh_interval, |b| (b * 2).min(params.max_backoff));
                        tracing::warn!(%err, retry_in = ?b, "fetching SPIRE trust bundle failed");
                        bundle_backoff = Some(b);
                        next_bundle = Instant::now() + b;
                    }
                }
            }
            _ = check.tick() => dirty = true,
            ev = events.next() => match ev {
                None => return Ok(()), // watchers never end on their own
                Some(Ev::Object(key, obj)) => {
                    if obj.is_none() {
                        tracing::warn!(kind = key.0.as_str(), name = %key.1, "webhook configuration deleted");
                    }
                    if state.unreadable.remove(&key) {
                        degradations.restored(&capability(&key, "read"));
                    }
                    state.objects.insert(key, obj);
                    dirty = true;
                }
                Some(Ev::Listed(key, present)) => {
                    if !present {
                        state.objects.insert(key.clone(), None);
                    }
                    if state.unreadable.remove(&key) {
                        degradations.restored(&capability(&key, "read"));
                    }
                    state.listed.insert(key, true);
                    dirty = true;
                }
                Some(Ev::Forbidden(key)) => {
                    // Skipped: it counts as listed and absent, so the others go on.
                    if state.unreadable.insert(key.clone()) {
                        degradations.degrade(
                            &capability(&key, "read"),
                            &format!("get/list/watch {}", key.0.resource()),
                            &format!("the caBundle of {} {:?} is not kept current", key.0.as_str(), key.1),
                        );
                        state.objects.insert(key.clone(), None);
                        state.listed.insert(key, true);
                        dirty = true;
                    }
                }
            },
        }

        if !started && state.listed.values().all(|l| *l) {
            started = true;
            for r in &params.configs {
                let present = matches!(state.objects.get(&(r.kind, r.name.clone())), Some(Some(_)));
                if present {
                    continue;
                }
                if r.required && !state.unreadable.contains(&(r.kind, r.name.clone())) {
                    tracing::error!(kind = r.kind.as_str(), name = %r.name, "required webhook configuration does not exist");
                    return Err(CaBundleError::Missing { kind: r.kind.as_str(), name: r.name.clone() });
                }
                tracing::info!(kind = r.kind.as_str(), name = %r.name, "optional webhook configuration does not exist; not managing it");
            }
        }
        if !started {
            continue;
        }
        let hosts = collect_hosts(&state);
        hosts_tx.send_if_modified(|cur| {
            if cur.as_ref() != Some(&hosts) {
                *cur = Some(hosts.clone());
                true
            } else {
                false
            }
        });
        if dirty && let Some(pem) = state.desired_pem.clone() {
            let mut all_ok = true;
            let mut forbidden_patches = Vec::new();
            for (key, obj) in &state.objects {
                let Some(hooks) = obj else { continue };
                if state.unpatchable.get(key).is_some_and(|until| Instant::now() < *until) {
                    continue;
                }
                let stale: Vec<&str> =
                    hooks.iter().filter(|h| h.ca_bundle != pem.as_bytes()).map(|h| h.name.as_str()).collect();
                if stale.is_empty() {
                    continue;
                }
                all_ok = false;
                match patch(&client, key, &stale, &pem, &params.field_manager).await {
                    Ok(()) => {
                        if state.unpatchable.remove(key).is_some() {
                            degradations.restored(&capability(key, "patch"));
                        }
                        tracing::info!(kind = key.0.as_str(), name = %key.1, webhooks = ?stale, "caBundle updated")
                    }
                    Err(err) if is_forbidden(&err) => {
                        degradations.degrade(
                            &capability(key, "patch"),
                            &format!("patch {} {:?}", key.0.resource(), key.1),
                            &format!("the caBundle of {} {:?} is not kept current", key.0.as_str(), key.1),
                        );
                        forbidden_patches.push(key.clone());
                    }
                    Err(err) => {
                        tracing::warn!(kind = key.0.as_str(), name = %key.1, %err, "patching caBundle failed; will retry")
                    }
                }
            }
            for key in forbidden_patches {
                state.unpatchable.insert(key, Instant::now() + RETRY_FORBIDDEN);
            }
            if all_ok {
                synced_tx.send_if_modified(|s| !std::mem::replace(s, true));
            }
        }
    }
}

fn collect_hosts(state: &State) -> Vec<String> {
    let mut hosts: Vec<String> = state.objects.values().flatten().flatten().filter_map(|h| h.host.clone()).collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Strategic-merge patch fixing the listed webhooks' caBundle.
pub fn ca_bundle_patch(webhooks: &[&str], pem: &str) -> serde_json::Value {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
    serde_json::json!({
        "webhooks": webhooks.iter().map(|n| serde_json::json!({"name": n, "clientConfig": {"caBundle": b64}})).collect::<Vec<_>>()
    })
}

async fn patch(
    client: &kube::Client,
    key: &Key,
    webhooks: &[&str],
    pem: &str,
    manager: &str,
) -> Result<(), kube::Error> {
    let body = ca_bundle_patch(webhooks, pem);
    let pp = PatchParams { field_manager: Some(manager.to_owned()), ..Default::default() };
    match key.0 {
        ConfigKind::Validating => {
            Api::<ValidatingWebhookConfiguration>::all(client.clone())
                .patch(&key.1, &pp, &Patch::Strategic(body))
                .await?;
        }
        ConfigKind::Mutating => {
            Api::<MutatingWebhookConfiguration>::all(client.clone())
                .patch(&key.1, &pp, &Patch::Strategic(body))
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::ServiceReference;

    #[test]
    fn hosts_from_client_configs() {
        let svc = WebhookClientConfig {
            service: Some(ServiceReference {
                name: "scm-webhook".into(),
                namespace: "spire-system".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(host_of(&svc).as_deref(), Some("scm-webhook.spire-system.svc"));
        let url = WebhookClientConfig { url: Some("https://localhost:9443/validate-x".into()), ..Default::default() };
        assert_eq!(host_of(&url).as_deref(), Some("localhost"));
        let ip = WebhookClientConfig { url: Some("https://127.0.0.1:9443/x".into()), ..Default::default() };
        assert_eq!(host_of(&ip).as_deref(), Some("127.0.0.1"));
        assert_eq!(host_of(&WebhookClientConfig::default()), None);
    }

    #[test]
    fn patch_body() {
        let p = ca_bundle_patch(&["a.kb.io", "b.kb.io"], "PEM");
        assert_eq!(
            p,
            serde_json::json!({"webhooks":[
                {"name":"a.kb.io","clientConfig":{"caBundle":"UEVN"}},
                {"name":"b.kb.io","clientConfig":{"caBundle":"UEVN"}}
            ]})
        );
    }
}
