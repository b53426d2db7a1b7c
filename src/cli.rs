//! Flags, subcommands and wiring. Upstream's flags (`--config`, `--kubeconfig`,
//! `--expand-env`, the deprecated `--spire-api-socket`) and `ENABLE_WEBHOOKS` keep their
//! names and meaning.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use scm_config::{Config, LoadOptions};
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::reconcile::ports::StatusSink;
use crate::reconcile::ports::{CftdSource, WorldSource};

#[derive(Parser, Debug)]
#[command(
    name = "spire-controller-manager",
    version,
    about = "Keeps SPIRE Server entries and federation relationships in line with ClusterSPIFFEID, ClusterStaticEntry and ClusterFederatedTrustDomain resources"
)]
pub struct Args {
    /// The controller manager configuration file (kind ControllerManagerConfig).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Expand environment variables ($VAR, ${VAR}) in the configuration file.
    #[arg(long = "expand-env", global = true)]
    pub expand_env: bool,
    /// Path to a kubeconfig; otherwise $KUBECONFIG, ~/.kube/config or in-cluster configuration.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Deprecated: the SPIRE Server API socket (use spireServerSocketPath in the config file).
    #[arg(long = "spire-api-socket", global = true)]
    pub spire_api_socket: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the CRD YAML files (to --dir, or to standard output).
    Crds {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Load and validate a configuration file and print the effective configuration.
    CheckConfig,
    /// Show what a reconcile pass would write now: creates, updates (with the fields that
    /// differ) and deletes by source object, and the entries it leaves alone. Read-only.
    /// Exit status: 0 in sync, 2 drift, 1 error.
    Plan {
        #[command(flatten)]
        tool: ToolFlags,
    },
    /// Explain why a pod has (or lacks) an identity, what a ClusterSPIFFEID selects, or
    /// where a ClusterFederatedTrustDomain stands. Read-only.
    Explain {
        /// pod, clusterspiffeid or trustdomain (kubectl's `pod/NAME` form works too).
        kind: String,
        /// NAME; for a pod NAMESPACE/NAME, or NAME with -n.
        #[arg(default_value = "")]
        name: String,
        /// The pod's namespace (default: "default").
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[command(flatten)]
        tool: ToolFlags,
    },
}

/// Flags of `plan` and `explain` (kubectl's `--context`; a minimal configuration when
/// there is no `--config` file).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ToolFlags {
    /// Output format.
    #[arg(short = 'o', long = "output", default_value = "text", value_parser = ["text", "json"])]
    pub output: String,
    /// The kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,
    /// Without --config: the trust domain (required then).
    #[arg(long = "trust-domain")]
    pub trust_domain: Option<String>,
    /// Without --config: the cluster name.
    #[arg(long = "cluster-name")]
    pub cluster_name: Option<String>,
    /// Without --config: the class name (and watchClassless is false when set).
    #[arg(long = "class-name")]
    pub class_name: Option<String>,
}

/// The file name under which the binary acts as a kubectl plugin (`kubectl spire ...`).
pub const KUBECTL_PLUGIN_NAME: &str = "kubectl-spire";

/// Upstream parses its flags with Go's `flag` package, where `-config=FILE` and
/// `-config FILE` are the same as `--config`: the chart and old manifests use either.
pub fn go_style_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const LONG: [&str; 4] = ["config", "kubeconfig", "expand-env", "spire-api-socket"];
    const TAKES_VALUE: [&str; 3] = ["config", "kubeconfig", "spire-api-socket"];
    let mut value_next = false;
    args.into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let Some(text) = arg.to_str().filter(|_| i > 0 && !std::mem::take(&mut value_next)) else { return arg };
            let name = text.trim_start_matches('-');
            let (name, inline_value) = match name.split_once('=') {
                Some((n, _)) => (n, true),
                None => (name, false),
            };
            value_next = text.starts_with('-') && TAKES_VALUE.contains(&name) && !inline_value;
            if text.starts_with('-') && !text.starts_with("--") && LONG.contains(&name) {
                format!("-{text}").into()
            } else {
                arg
            }
        })
        .collect()
}

/// A panic anywhere (a reconcile loop, a watch, a request) ends the process at once with
/// one clear log line: a half-dead controller that still answers probes is worse than a
/// restart.
fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(%thread, panic = %info, "a task panicked: exiting so that the process is restarted");
        std::process::exit(70);
    }));
}

/// Whether argv[0] names the kubectl plugin.
fn invoked_as_plugin(argv0: Option<&std::ffi::OsString>) -> bool {
    argv0.map(std::path::Path::new).and_then(|p| p.file_name()).is_some_and(|n| n == KUBECTL_PLUGIN_NAME)
}

pub fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let plugin = invoked_as_plugin(argv.first());
    let args = if plugin {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Args::command().bin_name("kubectl spire").get_matches_from(go_style_args(argv));
        Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    } else {
        Args::parse_from(go_style_args(argv))
    };
    let result = match &args.command {
        Some(Command::Crds { dir }) => write_crds(dir.clone()).map(|()| 0),
        Some(Command::CheckConfig) => check_config(&args).map(|()| 0),
        Some(Command::Plan { tool }) => run_tool(&args, tool, None),
        Some(Command::Explain { kind, name, namespace, tool }) => {
            match crate::tooling::Target::parse(kind, name, namespace.as_deref()) {
                Ok(target) => run_tool(&args, tool, Some(target)),
                Err(e) => Err(anyhow::anyhow!(e)),
            }
        }
        // As a kubectl plugin, never start the controller.
        None if plugin => Err(anyhow::anyhow!("usage: kubectl spire plan | kubectl spire explain pod NAMESPACE/NAME")),
        None => run(args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_crds(dir: Option<PathBuf>) -> anyhow::Result<()> {
    for (name, yaml) in scm_api::crd::all() {
        match &dir {
            Some(dir) => {
                std::fs::write(dir.join(name), yaml).with_context(|| format!("writing {}", dir.join(name).display()))?
            }
            None => print!("{yaml}"),
        }
    }
    Ok(())
}

fn load_config(args: &Args) -> anyhow::Result<scm_config::Loaded> {
    let opts = LoadOptions {
        path: args.config.clone(),
        expand_env: args.expand_env,
        spire_api_socket_flag: args.spire_api_socket.clone(),
    };
    Ok(scm_config::load(&opts, scm_config::process_env)?)
}

fn check_config(args: &Args) -> anyhow::Result<()> {
    if args.config.is_none() {
        anyhow::bail!("check-config needs --config FILE");
    }
    let loaded = load_config(args)?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", loaded.config.effective_yaml());
    Ok(())
}

/// The configuration of `plan` and `explain`: `--config`, or a minimal one from flags.
fn tool_config(args: &Args, tool: &ToolFlags) -> anyhow::Result<Config> {
    if args.config.is_some() {
        let loaded = load_config(args)?;
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        return Ok(loaded.config);
    }
    let Some(td) = &tool.trust_domain else {
        anyhow::bail!("needs --config FILE (the controller's configuration) or at least --trust-domain");
    };
    let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let mut text = format!("trustDomain: {}\n", quote(td));
    if let Some(c) = &tool.cluster_name {
        text.push_str(&format!("clusterName: {}\n", quote(c)));
    }
    if let Some(c) = &tool.class_name {
        text.push_str(&format!("className: {}\nwatchClassless: false\n", quote(c)));
    }
    let opts = LoadOptions { path: None, expand_env: false, spire_api_socket_flag: args.spire_api_socket.clone() };
    Ok(scm_config::from_str(&text, "(flags)", &opts, scm_config::process_env)?.config)
}

/// `plan` (no target) or `explain`: read once, print, exit with the command's status.
fn run_tool(args: &Args, tool: &ToolFlags, target: Option<crate::tooling::Target>) -> anyhow::Result<u8> {
    let config = tool_config(args, tool)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = settings_from(&config)?;
    let json_out = tool.output == "json";
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let client = kube_client_for(args.kubeconfig.as_deref(), tool.context.as_deref()).await?;
        let spire = crate::standalone::spire_client(&config, &prometheus::Registry::new()).await?;
        let inputs = crate::tooling::gather(config, &client, &spire).await?;
        match target {
            None => {
                let (text, code) = crate::tooling::plan(&inputs, &settings, json_out);
                print!("{text}");
                Ok(code)
            }
            Some(target) => {
                print!("{}", crate::tooling::explain(&inputs, &settings, &target, json_out)?);
                Ok(0)
            }
        }
    })
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let level = config.log_level.as_str();
    // RUST_LOG, when set and not empty, wins over `logLevel`.
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        // kube's watcher logs every failed list itself; ours log once per failing streak
        // and report refused optional lists as degraded capabilities (see degraded.rs).
        _ => EnvFilter::new(format!(
            "{level},kube=warn,kube_runtime::watcher=error,tower=warn,hyper=warn,h2=warn,rustls=warn"
        )),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.log_encoding {
        scm_config::LogEncoding::Json => builder.json().flatten_event(true).init(),
        _ => builder.init(),
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let loaded = load_config(&args)?;
    let config = loaded.config;
    init_logging(&config);
    exit_on_panic();
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    crate::memory::limit_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let result = run_async(args, config).await;
        if let Err(err) = &result {
            tracing::error!(error = format!("{err:#}"), "exiting");
        }
        result
    })
}

/// SIGTERM or SIGINT cancels `token`; a second signal exits at once.
fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: draining servers, finishing the current pass, releasing the lease");
        token.cancel();
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
}

pub fn settings_from(config: &Config) -> anyhow::Result<scm_core::Settings> {
    let parent_id_template = scm_template::Template::parse("parentIDTemplate", &config.parent_id_template)
        .map_err(|e| anyhow::anyhow!("parentIDTemplate: {e}"))?;
    Ok(scm_core::Settings {
        trust_domain: config.trust_domain.clone(),
        cluster_name: config.cluster_name.clone(),
        cluster_domain: config.cluster_domain.clone(),
        parent_id_template,
        ignore_namespaces: config.ignore_namespaces.clone(),
        class_name: config.class_name.clone(),
        watch_classless: config.watch_classless,
        reconcile_cluster_spiffe_ids: config.reconcile.cluster_spiffe_ids,
        reconcile_cluster_static_entries: config.reconcile.cluster_static_entries,
    })
}

async fn kube_client(args: &Args) -> anyhow::Result<kube::Client> {
    kube_client_for(args.kubeconfig.as_deref(), None).await
}

/// A client from `kubeconfig` (else $KUBECONFIG, ~/.kube/config or in-cluster), using
/// `context` when given.
async fn kube_client_for(kubeconfig: Option<&std::path::Path>, context: Option<&str>) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &options).await?
        }
        (None, Some(context)) => {
            kube::Config::from_kubeconfig(&options).await.with_context(|| format!("kubeconfig context {context:?}"))?
        }
        (None, None) => kube::Config::infer().await.context("no Kubernetes configuration (use --kubeconfig)")?,
    };
    Ok(kube::Client::try_from(config)?)
}

fn pod_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .or_else(|| std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// What every part of the process shares.
struct Shared {
    cancel: CancellationToken,
    metrics: Metrics,
    degradations: crate::degraded::Degradations,
    health: Health,
    spire: scm_spire_api::Client,
    entry_trigger: crate::trigger::Trigger,
    federation_trigger: crate::trigger::Trigger,
}

/// What a mode (Kubernetes, or static manifests) feeds the reconcilers.
struct Sources {
    leader: tokio::sync::watch::Receiver<bool>,
    lease_task: Option<tokio::task::JoinHandle<Result<(), crate::k8s::lease::LeaseError>>>,
    entries: Option<(Arc<dyn WorldSource>, Arc<dyn StatusSink>)>,
    federation: Option<(Arc<dyn CftdSource>, Arc<dyn StatusSink>)>,
}

type Servers = tokio::task::JoinSet<anyhow::Result<()>>;
type Loops = tokio::task::JoinSet<&'static str>;

async fn run_async(args: Args, mut config: Config) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let metrics = Metrics::new();
    let degradations = crate::degraded::Degradations::new(&metrics.registry);
    let health = Health::new(&metrics, degradations.clone());
    health.spawn_gauge_refresh(Duration::from_secs(5), cancel.clone());
    if config.cluster_domain.is_empty() && config.static_manifest_path.is_none() {
        match tokio::task::spawn_blocking(crate::cluster_domain::detect).await.ok().flatten() {
            Some(domain) => config.cluster_domain = domain,
            None => tracing::info!("clusterDomain is not set and could not be detected; it stays empty"),
        }
    }
    // socket, or TCP + mTLS (standalone: spireServerAddress)
    let spire = crate::standalone::spire_client(&config, &metrics.registry).await?;
    // faults (#12): with leader election the standby probes often enough for the lease's
    // SPIRE gate to see a failing (or recovered) server within a lease duration.
    let quiet = if config.leader_election.leader_elect {
        config.leader_election.lease_duration.clamp(Duration::from_secs(1), Duration::from_secs(30))
    } else {
        Duration::from_secs(30)
    };
    spawn_spire_reachability(&spire, &health, &cancel, quiet);
    let sh = Shared {
        cancel,
        metrics,
        degradations,
        health,
        spire,
        entry_trigger: crate::trigger::Trigger::new(),
        federation_trigger: crate::trigger::Trigger::new(),
    };

    let mut servers = Servers::new();
    start_probe_servers(&config, &sh, &mut servers).await?;
    let sources = match config.static_manifest_path.clone() {
        Some(dir) => static_mode(&config, &sh, dir),
        None => kube_mode(&args, &config, &sh, &mut servers).await?,
    };
    // Every listener is bound: /readyz answers from here on (see health.rs for why it
    // depends on nothing else).
    sh.health.set_serving();
    tracing::info!("serving; /readyz is ready");
    let loops = spawn_reconcilers(&config, &sh, &sources)?;
    wait_for_shutdown(&sh.cancel, sources.lease_task, servers, loops).await
}

/// The metrics and probe servers (bound before anything else, so probes answer at once).
async fn start_probe_servers(config: &Config, sh: &Shared, servers: &mut Servers) -> anyhow::Result<()> {
    if let Some(addr) = config.metrics.bind_address.clone() {
        let router = crate::health::metrics_router(sh.metrics.clone());
        let listener = crate::health::bind(&addr).await.context("metrics server")?;
        let c = sh.cancel.clone();
        servers.spawn(async move { crate::health::serve(listener, router, c).await.context("metrics server") });
    }
    if let Some(addr) = config.health.health_probe_bind_address.clone() {
        let router = crate::health::probe_router(
            sh.health.clone(),
            &config.health.readiness_endpoint_name,
            &config.health.liveness_endpoint_name,
        );
        let listener = crate::health::bind(&addr).await.context("health server")?;
        let c = sh.cancel.clone();
        servers.spawn(async move { crate::health::serve(listener, router, c).await.context("health server") });
    }
    Ok(())
}

/// Static manifest mode: no Kubernetes API at all; always the leader.
fn static_mode(config: &Config, sh: &Shared, dir: PathBuf) -> Sources {
    tracing::info!(dir = %dir.display(), "static manifest mode");
    let source = Arc::new(crate::manifests::ManifestDir { dir, expand_env: config.expand_env_static_manifests });
    source.spawn_watch(vec![sh.entry_trigger.clone(), sh.federation_trigger.clone()], sh.cancel.clone());
    sh.metrics.leader.set(1);
    let none: Arc<dyn StatusSink> = Arc::new(crate::reconcile::ports::NoStatus);
    Sources {
        leader: crate::k8s::lease::always_leader(),
        lease_task: None,
        entries: config
            .reconcile
            .cluster_static_entries
            .then(|| (source.clone() as Arc<dyn WorldSource>, none.clone())),
        federation: config.reconcile.cluster_federated_trust_domains.then_some((source as Arc<dyn CftdSource>, none)),
    }
}

/// Kubernetes mode: the watches, the lease, early registration and the webhook.
async fn kube_mode(args: &Args, config: &Config, sh: &Shared, servers: &mut Servers) -> anyhow::Result<Sources> {
    let client = kube_client(args).await?;
    let watch_set = crate::k8s::world::WatchSet::from_config(config);
    let cache_namespaces = watch_set.namespaces.clone();
    let stores = crate::k8s::world::Stores::spawn(
        &client,
        watch_set,
        &sh.entry_trigger,
        &sh.federation_trigger,
        &sh.cancel,
        &sh.degradations,
    );
    {
        let stores = stores.clone();
        sh.health.add_check("caches", move || {
            let unsynced = stores.unsynced();
            if unsynced.is_empty() { Ok(()) } else { Err(format!("not synced: {}", unsynced.join(", "))) }
        });
    }
    let (leader, lease_task) = start_lease(config, &client, sh)?;
    let early = crate::k8s::early::EarlyPods::new(sh.entry_trigger.clone(), cache_namespaces, Arc::new(client.clone()))
        .with_metrics(&sh.metrics.registry);
    if webhooks_enabled() {
        spawn_webhook(config, &client, sh, early.clone(), servers).await?;
    } else {
        tracing::info!("webhooks disabled (ENABLE_WEBHOOKS=false)");
    }
    let status: Arc<dyn StatusSink> =
        Arc::new(crate::k8s::status::KubeStatus::new(client.clone(), sh.degradations.clone()));
    let r = &config.reconcile;
    Ok(Sources {
        leader,
        lease_task,
        federation: r
            .cluster_federated_trust_domains
            .then(|| (Arc::new(crate::k8s::world::KubeCftds(stores.clone())) as Arc<dyn CftdSource>, status.clone())),
        entries: (r.cluster_spiffe_ids || r.cluster_static_entries)
            .then(|| (Arc::new(crate::k8s::world::KubeWorld(stores, Some(early))) as Arc<dyn WorldSource>, status)),
    })
}

/// The Lease (when `leaderElection.leaderElect`), and the `leader` gauge following it.
#[allow(clippy::type_complexity)]
fn start_lease(
    config: &Config,
    client: &kube::Client,
    sh: &Shared,
) -> anyhow::Result<(
    tokio::sync::watch::Receiver<bool>,
    Option<tokio::task::JoinHandle<Result<(), crate::k8s::lease::LeaseError>>>,
)> {
    let (leader, task) = if config.leader_election.leader_elect {
        let le = &config.leader_election;
        let namespace = le
            .resource_namespace
            .clone()
            .or_else(pod_namespace)
            .context("leaderElection.resourceNamespace is not set and the pod namespace is unknown")?;
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "spire-controller-manager".into());
        let params = crate::k8s::lease::LeaseParams {
            name: le.resource_name.clone(),
            namespace,
            identity: format!("{host}_{}", uuid::Uuid::new_v4()),
            lease_duration: le.lease_duration,
            renew_deadline: le.renew_deadline,
            retry_period: le.retry_period,
            // faults (#12): a leader whose SPIRE fails for leaseDuration hands over.
            spire: Some(crate::k8s::lease::SpireGate {
                failing_for: {
                    let s = sh.spire.clone();
                    Arc::new(move || s.failing_for())
                },
                on_handover: {
                    let m = sh.metrics.clone();
                    Arc::new(move || m.leader_spire_handovers.inc())
                },
            }),
        };
        let (rx, handle) = crate::k8s::lease::spawn(client.clone(), params, sh.cancel.clone());
        (rx, Some(handle))
    } else {
        (crate::k8s::lease::always_leader(), None)
    };
    let m = sh.metrics.clone();
    let mut rx = leader.clone();
    tokio::spawn(async move {
        loop {
            m.leader.set(i64::from(*rx.borrow_and_update()));
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    Ok((leader, task))
}

/// The entry and federation loops, each driven by its trigger, the timer and the lease.
fn spawn_reconcilers(config: &Config, sh: &Shared, sources: &Sources) -> anyhow::Result<Loops> {
    let mut loops = Loops::new();
    let cx = LoopContext {
        gc_interval: config.gc_interval,
        leader: sources.leader.clone(),
        cancel: sh.cancel.clone(),
        health: sh.health.clone(),
    };
    if let Some((source, status)) = sources.entries.clone() {
        let g = &config.deletion_guard;
        let guard = crate::reconcile::entries::Guard {
            settings: g.clone(),
            namespace: pod_namespace().filter(|_| config.static_manifest_path.is_none()),
            held: Arc::default(),
        };
        let held = guard.held.clone();
        sh.health.add_check("deletions", move || match held.lock().unwrap().as_ref() {
            None => Ok(()),
            Some(message) => Err(message.clone()),
        });
        let ownership = scm_core::Ownership {
            prefix: Some(config.entry_id_prefix.clone()).filter(|p| !p.is_empty()),
            cleanup: config.entry_id_prefix_cleanup.clone(),
        };
        let r = crate::reconcile::entries::EntryReconciler::new(
            source,
            Arc::new(sh.spire.clone()),
            settings_from(config)?,
            ownership,
            sh.metrics.clone(),
            status,
        )
        .with_background_lists(sh.entry_trigger.clone())
        .with_spire_checks(config.gc_interval, config.spire_check_max_interval)
        .with_guard(guard);
        cx.spawn(&mut loops, "entry", sh.entry_trigger.clone(), r);
    }
    if let Some((source, status)) = sources.federation.clone() {
        let f = crate::reconcile::federation::FederationLoop::new(
            source,
            sh.spire.clone(),
            &config.class_name,
            config.watch_classless,
            sh.metrics.clone(),
            status,
        );
        cx.spawn(&mut loops, "federation", sh.federation_trigger.clone(), f);
    }
    Ok(loops)
}

/// Runs until shutdown; a failed server, a failed lease or a loop that ends ends the
/// process. Then lets the loops finish their pass and the servers drain.
async fn wait_for_shutdown(
    cancel: &CancellationToken,
    lease_task: Option<tokio::task::JoinHandle<Result<(), crate::k8s::lease::LeaseError>>>,
    mut servers: Servers,
    mut loops: Loops,
) -> anyhow::Result<()> {
    let lease_wait = async {
        match lease_task {
            Some(h) => match h.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::anyhow!(e)),
                Err(e) => Err(anyhow::anyhow!("lease task panicked: {e}")),
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        r = lease_wait => {
            if let Err(e) = r {
                cancel.cancel();
                return Err(e.context("leader election failed"));
            }
        }
        Some(r) = servers.join_next() => {
            cancel.cancel();
            match r {
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(anyhow::anyhow!("server task failed: {e}")),
                Ok(Ok(())) => {}
            }
        }
        Some(r) = loops.join_next() => {
            // Loops run until shutdown: one that ends early leaves its resources unmanaged.
            if !cancel.is_cancelled() {
                cancel.cancel();
                let what = match r {
                    Ok(name) => format!("the {name} reconcile loop ended"),
                    Err(e) => format!("a reconcile loop failed: {e}"),
                };
                return Err(anyhow::anyhow!("{what}; exiting so that the process is restarted"));
            }
        }
    }
    let drain = async {
        while loops.join_next().await.is_some() {}
        while servers.join_next().await.is_some() {}
    };
    if tokio::time::timeout(Duration::from_secs(30), drain).await.is_err() {
        tracing::warn!("shutdown timed out");
    }
    // Give the lease release a moment (it runs in its task on cancel).
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// Upstream: webhooks are on unless `ENABLE_WEBHOOKS` is exactly "false".
fn webhooks_enabled() -> bool {
    std::env::var("ENABLE_WEBHOOKS").map(|v| v != "false").unwrap_or(true)
}

/// SPIRE reachability for `/status`, from the calls the controller makes anyway; a cheap
/// probe (GetBundle, O(1) on the server) only when nothing called SPIRE for a while.
fn spawn_spire_reachability(
    spire: &scm_spire_api::Client,
    health: &Health,
    cancel: &CancellationToken,
    quiet: Duration,
) {
    use scm_spire_api::Reachability;
    let (s, c) = (spire.clone(), cancel.clone());
    tokio::spawn(async move {
        loop {
            let idle = match s.reachability() {
                Reachability::Unknown => true,
                Reachability::Answered(ago) | Reachability::Failing(ago, _) => ago >= quiet,
            };
            if idle {
                let _ = s.probe().await;
            }
            tokio::select! { _ = c.cancelled() => return, _ = tokio::time::sleep(quiet / 3) => {} }
        }
    });
    let s = spire.clone();
    health.add_check("spire", move || match s.reachability() {
        Reachability::Answered(_) => Ok(()),
        Reachability::Unknown => Err("no call answered yet".into()),
        Reachability::Failing(ago, err) => Err(format!("{err} ({}s ago)", ago.as_secs())),
    });
}

/// The admission webhook: served by every replica (not leader-gated), with a certificate
/// minted from SPIRE (or read from `webhook.certDir`) and caBundle kept current.
async fn spawn_webhook(
    config: &Config,
    client: &kube::Client,
    sh: &Shared,
    early: crate::k8s::early::EarlyPods,
    servers: &mut Servers,
) -> anyhow::Result<()> {
    use scm_webhook::*;
    let (spire, metrics, health, degradations, cancel) =
        (&sh.spire, &sh.metrics, &sh.health, &sh.degradations, &sh.cancel);
    let wm = scm_webhook::Metrics::register(&metrics.registry)?;
    let mut settings = AdmissionSettings::new(config.trust_domain.clone(), config.cluster_name.clone());
    settings.cluster_domain = config.cluster_domain.clone();
    settings.class_name = config.class_name.clone();
    settings.watch_classless = config.watch_classless;
    settings.spire_fields = spire.field_support();
    let webhook = Webhook::new(settings, Arc::new(early), wm.clone());
    let resolver = Arc::new(CertResolver::with_metrics(&wm));
    {
        let r = resolver.clone();
        health.add_check("webhook-certificate", move || {
            if r.cert_loaded() { Ok(()) } else { Err("no serving certificate yet".into()) }
        });
    }
    let spire = Arc::new(spire.clone());
    // SPIRE-minted certificate (upstream's way): caBundle is kept equal to SPIRE's trust
    // bundle. Files from webhook.certDir (e.g. cert-manager): caBundle is left to whoever
    // issues them, since SPIRE's CA would not verify that certificate.
    let mut cab_task = None;
    match &config.webhook.cert_dir {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            tracing::info!(dir = %dir.display(), "webhook certificate from files (tls.crt, tls.key); caBundle is not managed");
            FileCertSource::spawn(
                FileCertParams::new(dir.join("tls.crt"), dir.join("tls.key")),
                resolver.clone(),
                cancel.clone(),
            );
        }
        _ => {
            let mut cab_params = CaBundleParams::new(
                config.validating_webhook_configuration_name.clone(),
                config.mutating_webhook_configuration_name.clone(),
                config.pod_observer_webhook_configuration_name.clone(),
            );
            cab_params.degradations = DegradationSink(Arc::new(degradations.clone()));
            let cab = CaBundleManager::spawn(client.clone(), cab_params, spire.clone(), cancel.clone());
            let mut params = CertManagerParams::new(config.trust_domain.clone());
            if let Ok(ttl) = std::env::var("SCM_WEBHOOK_CERT_TTL") {
                params.ttl = scm_config::parse_go_duration_std(&ttl)
                    .map_err(|e| anyhow::anyhow!("SCM_WEBHOOK_CERT_TTL: {}", e.go_message()))?;
            }
            CertManager::spawn(params, spire, cab.hosts(), resolver.clone(), cancel.clone());
            cab_task = Some(cab.task);
        }
    }
    let host = if config.webhook.host.is_empty() { "0.0.0.0" } else { config.webhook.host.as_str() };
    let server = Server::bind(ServerConfig::with_host_port(host, config.webhook.port)?, resolver)
        .await
        .with_context(|| format!("binding the webhook server on {host}:{}", config.webhook.port))?;
    tracing::info!(addr = %server.local_addr()?, "serving admission webhooks");
    let c = cancel.clone();
    servers.spawn(async move { server.serve(webhook.router(), c).await.context("webhook server") });
    if let Some(cab_task) = cab_task {
        servers.spawn(async move {
            match cab_task.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::anyhow!(e).context("webhook caBundle manager")),
                Err(e) => Err(anyhow::anyhow!("caBundle manager panicked: {e}")),
            }
        });
    }
    Ok(())
}

/// What every reconciler loop shares.
struct LoopContext {
    gc_interval: Duration,
    leader: tokio::sync::watch::Receiver<bool>,
    cancel: CancellationToken,
    health: Health,
}

impl LoopContext {
    fn spawn<R: crate::reconcile::Reconciler + 'static>(
        &self,
        set: &mut Loops,
        name: &'static str,
        trigger: crate::trigger::Trigger,
        mut reconciler: R,
    ) {
        let (gc_interval, leader, cancel, health) =
            (self.gc_interval, self.leader.clone(), self.cancel.clone(), self.health.clone());
        set.spawn(async move {
            // Waiting is normal for up to gcInterval; a pass is bounded by SPIRE deadlines.
            let wedge = gc_interval.max(Duration::from_secs(60)) * 3;
            crate::reconcile::run_loop(name, trigger, gc_interval, leader, cancel, &mut reconciler, || {
                health.beat(name, wedge)
            })
            .await;
            name
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(go_style_args(args.iter().map(std::ffi::OsString::from))).unwrap()
    }

    #[tokio::test]
    async fn a_reconcile_loop_that_ends_ends_the_process() {
        let cancel = CancellationToken::new();
        let mut loops = Loops::new();
        loops.spawn(async { "entry" });
        let err = wait_for_shutdown(&cancel, None, Servers::new(), loops).await.unwrap_err();
        assert!(err.to_string().contains("the entry reconcile loop ended"), "{err}");
        assert!(cancel.is_cancelled(), "everything else is told to stop");

        let mut loops = Loops::new();
        loops.spawn(async { panic!("boom") });
        let err = wait_for_shutdown(&CancellationToken::new(), None, Servers::new(), loops).await.unwrap_err();
        assert!(err.to_string().contains("a reconcile loop failed"), "{err}");
    }

    #[test]
    fn tool_subcommands_take_kubectl_flags() {
        let a = parse(&[
            "kubectl-spire",
            "explain",
            "pod",
            "web-1",
            "-n",
            "shop",
            "--context",
            "prod",
            "--kubeconfig",
            "/k",
        ]);
        assert_eq!(a.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
        let Some(Command::Explain { kind, name, namespace, tool }) = a.command else { panic!("{a:?}") };
        assert_eq!((kind.as_str(), name.as_str(), namespace.as_deref()), ("pod", "web-1", Some("shop")));
        assert_eq!(tool.context.as_deref(), Some("prod"));
        let b = parse(&["scm", "plan", "-o", "json", "-config=/c", "--trust-domain", "td"]);
        assert_eq!(b.config.as_deref(), Some(std::path::Path::new("/c")));
        let Some(Command::Plan { tool }) = b.command else { panic!("{b:?}") };
        assert_eq!((tool.output.as_str(), tool.trust_domain.as_deref()), ("json", Some("td")));
        assert!(Args::try_parse_from(["scm", "plan", "-o", "yaml"]).is_err());
    }

    #[test]
    fn the_plugin_is_recognised_by_its_file_name() {
        let is = |s: &str| invoked_as_plugin(Some(&std::ffi::OsString::from(s)));
        assert!(is("/home/me/.local/bin/kubectl-spire") && is("kubectl-spire"));
        assert!(!is("/usr/bin/spire-controller-manager") && !is("kubectl-spire-x"));
        assert!(!invoked_as_plugin(None));
    }

    #[test]
    fn go_flag_spellings() {
        let a = parse(&["scm", "-config=/etc/c.yaml", "-expand-env", "-kubeconfig", "/k"]);
        assert_eq!(a.config.as_deref(), Some(std::path::Path::new("/etc/c.yaml")));
        assert!(a.expand_env);
        assert_eq!(a.kubeconfig.as_deref(), Some(std::path::Path::new("/k")));
        let b = parse(&["scm", "--config", "/c", "-spire-api-socket=/s"]);
        assert_eq!(b.config.as_deref(), Some(std::path::Path::new("/c")));
        assert_eq!(b.spire_api_socket.as_deref(), Some("/s"));
        // A value that looks like a flag is left alone.
        let c = go_style_args(["scm", "-config", "-config"].map(std::ffi::OsString::from));
        assert_eq!(c, ["scm", "--config", "-config"].map(std::ffi::OsString::from));
    }
}
