//! Prometheus metrics, in client_golang's names and text format (prometheus crate).
//! Upstream's only custom series, `cluster_static_entry_failures` (a gauge used as a
//! counter), is kept as it was; everything else is prefixed `spire_controller_manager_`.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

const NS: &str = "spire_controller_manager";

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Upstream's gauge: incremented once per ClusterStaticEntry render failure per pass.
    pub cluster_static_entry_failures: Gauge,
    /// Pass duration by reconciler (`entry`, `federation`) and result.
    pub pass_duration: HistogramVec,
    /// Passes by reconciler and result (`ok`, `skipped`, `error`).
    pub passes: IntCounterVec,
    /// Time from the first change notification to the start of the pass that handled it.
    pub trigger_lag: HistogramVec,
    /// SPIRE API calls by method and gRPC code; latency by method.
    pub spire_rpc_duration: HistogramVec,
    pub spire_rpc_errors: IntCounterVec,
    /// Writes to SPIRE entries by operation (`create`, `update`, `delete`) and result (`ok`, `failed`).
    pub entry_writes: IntCounterVec,
    /// Entries declared (winners) and entries in SPIRE owned by this controller.
    pub entries_declared: IntGauge,
    pub entries_current: IntGauge,
    pub entries_masked: IntGauge,
    /// Entries kept although undeclared, because their source failed.
    pub entries_kept: IntGauge,
    /// Deletes held back by the mass-deletion circuit breaker.
    pub entry_deletes_held: IntGauge,
    /// gcInterval checks of the SPIRE mirror by result: `in_sync`, `fetched` (changed
    /// entries fetched one by one), `full` (a full list).
    pub mirror_checks: IntCounterVec,
    /// Entries fetched by those checks (changed behind the controller's back).
    pub mirror_entries_fetched: IntCounter,
    /// Entry passes by how much they declared: `whole` or `incremental`.
    pub declarations: IntCounterVec,
    /// Entries, stats and protections where the incrementally kept declaration differed
    /// from a whole one of the same world (must stay 0).
    pub declaration_disagreements: IntCounter,
    pub render_failures: IntGaugeVec,
    /// Federation relationships by outcome.
    pub federation_relationships: IntGaugeVec,
    pub federation_writes: IntCounterVec,
    /// 1 while this replica holds the lease (or leader election is off).
    pub leader: IntGauge,
    /// Times this replica released the lease because its SPIRE Server kept failing.
    pub leader_spire_handovers: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Metrics {
            cluster_static_entry_failures: Gauge::with_opts(Opts::new(
                "cluster_static_entry_failures",
                "Number of ClusterStaticEntry render failures (upstream-compatible gauge, grows per pass)",
            ))
            .unwrap(),
            pass_duration: HistogramVec::new(
                HistogramOpts::new("reconcile_pass_duration_seconds", "Duration of a reconcile pass")
                    .namespace(NS)
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["reconciler", "result"],
            )
            .unwrap(),
            passes: IntCounterVec::new(
                Opts::new("reconcile_passes_total", "Reconcile passes").namespace(NS),
                &["reconciler", "result"],
            )
            .unwrap(),
            trigger_lag: HistogramVec::new(
                HistogramOpts::new(
                    "reconcile_trigger_lag_seconds",
                    "Time from a change notification to the start of its pass",
                )
                .namespace(NS)
                .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0]),
                &["reconciler"],
            )
            .unwrap(),
            spire_rpc_duration: HistogramVec::new(
                HistogramOpts::new("spire_rpc_duration_seconds", "SPIRE Server API call latency")
                    .namespace(NS)
                    .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0]),
                &["method"],
            )
            .unwrap(),
            spire_rpc_errors: IntCounterVec::new(
                Opts::new("spire_rpc_errors_total", "SPIRE Server API call errors").namespace(NS),
                &["method", "code"],
            )
            .unwrap(),
            entry_writes: IntCounterVec::new(
                Opts::new("entry_writes_total", "SPIRE entry writes by operation and result").namespace(NS),
                &["operation", "result"],
            )
            .unwrap(),
            entries_declared: IntGauge::with_opts(
                Opts::new("entries_declared", "Entries declared by the resources (after masking)").namespace(NS),
            )
            .unwrap(),
            entries_current: IntGauge::with_opts(
                Opts::new("entries_current", "Entries in SPIRE managed by this controller").namespace(NS),
            )
            .unwrap(),
            entries_masked: IntGauge::with_opts(
                Opts::new("entries_masked", "Declared entries masked by another resource with the same key")
                    .namespace(NS),
            )
            .unwrap(),
            entries_kept: IntGauge::with_opts(
                Opts::new("entries_kept", "Undeclared entries kept because their source failed to parse or render")
                    .namespace(NS),
            )
            .unwrap(),
            entry_deletes_held: IntGauge::with_opts(
                Opts::new("entry_deletes_held", "Entry deletes held back by the mass-deletion circuit breaker")
                    .namespace(NS),
            )
            .unwrap(),
            mirror_checks: IntCounterVec::new(
                Opts::new("mirror_checks_total", "gcInterval checks of the SPIRE mirror by result").namespace(NS),
                &["result"],
            )
            .unwrap(),
            declarations: IntCounterVec::new(
                Opts::new("entry_declarations_total", "Entry passes by scope of declaration (whole, incremental)")
                    .namespace(NS),
                &["scope"],
            )
            .unwrap(),
            declaration_disagreements: IntCounter::with_opts(
                Opts::new(
                    "declaration_disagreements_total",
                    "Differences found between the incrementally kept declaration and a whole one (must stay 0)",
                )
                .namespace(NS),
            )
            .unwrap(),
            mirror_entries_fetched: IntCounter::with_opts(
                Opts::new("mirror_entries_fetched_total", "Entries fetched because their revision changed")
                    .namespace(NS),
            )
            .unwrap(),
            render_failures: IntGaugeVec::new(
                Opts::new("render_failures", "Render failures in the last pass by kind").namespace(NS),
                &["kind"],
            )
            .unwrap(),
            federation_relationships: IntGaugeVec::new(
                Opts::new("federation_relationships", "ClusterFederatedTrustDomains by outcome of the last pass")
                    .namespace(NS),
                &["outcome"],
            )
            .unwrap(),
            federation_writes: IntCounterVec::new(
                Opts::new("federation_writes_total", "SPIRE federation relationship writes by operation and result")
                    .namespace(NS),
                &["operation", "result"],
            )
            .unwrap(),
            leader: IntGauge::with_opts(Opts::new("leader", "1 while this replica is the leader").namespace(NS))
                .unwrap(),
            leader_spire_handovers: IntCounter::with_opts(
                Opts::new(
                    "leader_spire_handovers_total",
                    "Times leadership was released because this replica's SPIRE Server failed every call for leaseDuration",
                )
                .namespace(NS),
            )
            .unwrap(),
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.cluster_static_entry_failures.clone())).unwrap();
        r.register(Box::new(m.pass_duration.clone())).unwrap();
        r.register(Box::new(m.passes.clone())).unwrap();
        r.register(Box::new(m.trigger_lag.clone())).unwrap();
        r.register(Box::new(m.spire_rpc_duration.clone())).unwrap();
        r.register(Box::new(m.spire_rpc_errors.clone())).unwrap();
        r.register(Box::new(m.entry_writes.clone())).unwrap();
        r.register(Box::new(m.entries_declared.clone())).unwrap();
        r.register(Box::new(m.entries_current.clone())).unwrap();
        r.register(Box::new(m.entries_masked.clone())).unwrap();
        r.register(Box::new(m.entries_kept.clone())).unwrap();
        r.register(Box::new(m.entry_deletes_held.clone())).unwrap();
        r.register(Box::new(m.mirror_checks.clone())).unwrap();
        r.register(Box::new(m.mirror_entries_fetched.clone())).unwrap();
        r.register(Box::new(m.declarations.clone())).unwrap();
        r.register(Box::new(m.declaration_disagreements.clone())).unwrap();
        r.register(Box::new(m.render_failures.clone())).unwrap();
        r.register(Box::new(m.federation_relationships.clone())).unwrap();
        r.register(Box::new(m.federation_writes.clone())).unwrap();
        r.register(Box::new(m.leader.clone())).unwrap();
        r.register(Box::new(m.leader_spire_handovers.clone())).unwrap();
        #[cfg(target_os = "linux")]
        {
            let _ = r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
