//! Faults as SPIRE runs in production (issue #12): two spire-servers on one PostgreSQL
//! database (`peers.sh spire-ha-up`), servers killed mid-write, SPIRE away for minutes,
//! leadership moving, an apiserver connection that stalls, an apiserver restarted with
//! its watches answered 410 Gone. Every case ends by checking SPIRE's own state: the
//! exact entry set (nothing missing), no entry twice (same SPIFFE ID, parent and
//! selectors), and a foreign entry (made with the spire-server CLI) untouched. Who wrote
//! what, and when, is read from PostgreSQL's statement log (`log_statement=mod`, each
//! server connecting with its own `application_name`), not from the controllers' logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use scm_testkit::PeersEnv;

const TD: &str = "example.org";
const PARENT: &str = "spiffe://example.org/spire/server";

// ---------------------------------------------------------------- plumbing

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// A PostgreSQL identifier unique to this run.
fn db_name(prefix: &str) -> String {
    unique(prefix).replace('-', "_")
}

/// Two spire-servers (`a`, `b`) sharing one PostgreSQL database; down (and the database
/// dropped) on drop.
struct Ha {
    env: PeersEnv,
    dir: PathBuf,
    name: String,
}

impl Ha {
    fn start(prefix: &str) -> Option<Ha> {
        let peers = peers();
        if peers.env.0.get("POSTGRES_PORT").is_none_or(|p| p.is_empty()) {
            assert!(!scm_testkit::peers_required(), "the peers have no PostgreSQL (apt-get install postgresql)");
            eprintln!("skipping: no PostgreSQL among the peers");
            return None;
        }
        let name = db_name(prefix);
        let dir = peers.dir.join("t");
        std::fs::create_dir_all(&dir).unwrap();
        let ha = Ha { env: PeersEnv::default(), dir: dir.clone(), name: name.clone() };
        run_ok(
            peers_sh()
                .args(["spire-ha-up"])
                .arg(&dir)
                .args([&name, TD])
                .env("POSTGRES_PORT", peers.env.get("POSTGRES_PORT"))
                .env("POSTGRES_BIN_DIR", peers.env.get("POSTGRES_BIN_DIR")),
            "peers.sh spire-ha-up",
        );
        let mut ha = ha;
        ha.env = PeersEnv::read(dir.join(&name).join("env"));
        ha.env.0.insert("POSTGRES_LOG".into(), peers.dir.join("postgres-server.log").display().to_string());
        Some(ha)
    }

    fn socket(&self, which: char) -> &str {
        self.env.get(if which == 'a' { "SPIRE_SERVER_SOCKET_A" } else { "SPIRE_SERVER_SOCKET_B" })
    }

    fn client(&self, which: char) -> scm_spire_api::Client {
        scm_spire_api::Client::connect_lazy(self.socket(which), Default::default()).unwrap()
    }

    fn inst(&self, cmd: &str, which: char) {
        run_ok(
            peers_sh().arg(cmd).arg(&self.dir).arg(format!("{}/{which}", self.name)),
            &format!("peers.sh {cmd} {which}"),
        );
    }

    fn cli(&self, which: char, args: &[&str]) -> String {
        run_ok(
            Command::new(self.env.get("SPIRE_SERVER_BIN")).args(args).args(["-socketPath", self.socket(which)]),
            &format!("spire-server {args:?}"),
        )
    }

    /// PostgreSQL's log lines of entry writes made by server `which`, with their time.
    fn writes(&self, which: char) -> Vec<(String, String)> {
        let tag = format!("[{}_{which}]", self.name);
        let log = std::fs::read_to_string(self.env.get("POSTGRES_LOG")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(&tag))
            .filter(|l| {
                l.contains("INSERT INTO \"registered_entries\"")
                    || l.contains("UPDATE \"registered_entries\"")
                    || l.contains("DELETE FROM \"registered_entries\"")
            })
            .map(|l| (l.get(..23).unwrap_or("").to_owned(), l.to_owned()))
            .collect()
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        let _ = peers_sh().arg("spire-ha-down").arg(&self.dir).arg(&self.name).output();
    }
}

/// An entry's identity: SPIFFE ID, parent ID, sorted selectors.
fn identity(e: &scm_spiffe::Entry) -> String {
    let mut s: Vec<String> = e.selectors.iter().map(|s| s.to_string()).collect();
    s.sort();
    format!("{} {} {}", e.spiffe_id, e.parent_id, s.join(","))
}

/// What SPIRE holds, checked: every wanted SPIFFE ID present once, nothing else of ours,
/// no identity twice, the foreign entry as it was. Returns (missing, duplicated, extra).
fn census(
    entries: &[scm_spiffe::Entry],
    wanted: &BTreeSet<String>,
    foreign: &scm_spiffe::Entry,
) -> (usize, usize, usize) {
    let mut by_identity: BTreeMap<String, usize> = BTreeMap::new();
    for e in entries {
        *by_identity.entry(identity(e)).or_default() += 1;
    }
    let duplicated = by_identity.values().filter(|n| **n > 1).map(|n| n - 1).sum();
    let ours: BTreeSet<String> =
        entries.iter().filter(|e| e.id != foreign.id).map(|e| e.spiffe_id.to_string()).collect();
    let missing = wanted.difference(&ours).count();
    let extra = ours.difference(wanted).count();
    let f = entries.iter().find(|e| e.id == foreign.id);
    assert_eq!(f, Some(foreign), "the foreign entry must be untouched");
    (missing, duplicated, extra)
}

async fn list(c: &scm_spire_api::Client) -> Option<Vec<scm_spiffe::Entry>> {
    c.list_entries().await.ok()
}

/// A foreign entry (not ours: no prefix) made with the CLI; as SPIRE holds it.
async fn foreign_entry(ha_cli: impl Fn(&[&str]) -> String, c: &scm_spire_api::Client, tag: &str) -> scm_spiffe::Entry {
    let id = format!("foreign-{tag}");
    ha_cli(&[
        "entry",
        "create",
        "-entryID",
        &id,
        "-spiffeID",
        &format!("spiffe://{TD}/foreign/{tag}"),
        "-parentID",
        PARENT,
        "-selector",
        "unix:uid:4242",
    ]);
    c.list_entries().await.unwrap().into_iter().find(|e| e.id == id).expect("foreign entry listed")
}

/// `n` ClusterStaticEntries in one multi-document file; their SPIFFE IDs.
fn write_manifests(dir: &Path, file: &str, tag: &str, range: std::ops::Range<usize>) -> BTreeSet<String> {
    std::fs::create_dir_all(dir).unwrap();
    let mut doc = String::new();
    let mut ids = BTreeSet::new();
    for i in range {
        let sid = format!("spiffe://{TD}/{tag}/w{i}");
        doc.push_str(&format!(
            "---\napiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: {tag}-{i}\nspec:\n  spiffeID: {sid}\n  parentID: {PARENT}\n  selectors: [\"unix:uid:{i}\"]\n"
        ));
        ids.insert(sid);
    }
    std::fs::write(dir.join(file), doc).unwrap();
    ids
}

fn static_config(socket: &str, dir: &Path, extra: &str) -> String {
    format!(
        "trustDomain: {TD}\nclusterName: e2e\nspireServerSocketPath: {socket}\nstaticManifestPath: {}\nentryIDPrefix: scm.\n{extra}",
        dir.display()
    )
}

fn static_controller(name: &str, config: &str) -> Controller {
    Controller::start_env(name, config, &[("ENABLE_WEBHOOKS", "false"), ("KUBECONFIG", "/nonexistent")])
}

/// Waits until SPIRE holds exactly `wanted` (plus the foreign entry) with no duplicate.
async fn converged(
    c: &scm_spire_api::Client,
    wanted: &BTreeSet<String>,
    foreign: &scm_spiffe::Entry,
    timeout: Duration,
    what: &str,
) -> Vec<scm_spiffe::Entry> {
    eventually(timeout, what, || async {
        let e = list(c).await?;
        (census(&e, wanted, foreign) == (0, 0, 0)).then_some(e)
    })
    .await
}

// ---------------------------------------------------------------- the faults

/// spire-server SIGKILLed while the controller creates 5,000 entries, then restarted:
/// the controller converges to exactly the 5,000, none twice. The server that was killed
/// may have committed a batch whose answer never left it; the retried create carries the
/// same (deterministic) IDs, so SPIRE answers AlreadyExists instead of adding another.
#[tokio::test]
async fn spire_killed_mid_5000_creates() {
    let Some(ha) = Ha::start("fkill") else { return };
    let a = ha.client('a');
    let foreign = foreign_entry(|args| ha.cli('a', args), &a, "kill").await;
    let dir = peers().dir.join("t").join(unique("fkill"));
    let wanted = write_manifests(&dir, "entries.yaml", "kill", 0..5000);
    let config = static_config(ha.socket('a'), &dir, "gcInterval: 5s\n");
    let ctl = static_controller(&unique("fkill"), &config);
    // Kill it once a good part (not all) is written.
    let b = ha.client('b');
    eventually(Duration::from_secs(120), "1,000 entries written", || async {
        (b.count_entries().await.ok()? >= 1000).then_some(())
    })
    .await;
    ha.inst("inst-kill", 'a');
    let at_kill = b.count_entries().await.unwrap();
    assert!(at_kill < 5001, "killed before the end ({at_kill} entries)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    ha.inst("inst-start", 'a');
    let restarted = Instant::now();
    let entries = converged(&b, &wanted, &foreign, Duration::from_secs(240), "5,000 entries after the kill").await;
    let took = restarted.elapsed();
    assert_eq!(entries.len(), 5001);
    assert!(entries.iter().filter(|e| e.id != foreign.id).all(|e| e.id.starts_with("scm.")));
    eprintln!(
        "FAULT spire_killed_mid_5000_creates: killed at {at_kill} entries; lost 0, duplicated 0, extra 0; converged {took:?} after the restart"
    );
    assert!(ctl.pid().is_some());
}

/// SPIRE away for two minutes: the controller stays up (liveness 200), /status names
/// SPIRE as failing, passes back off (the error counters grow slowly: no burst), and it
/// converges after SPIRE returns without being restarted — including a change made
/// during the outage.
#[tokio::test]
async fn spire_unreachable_two_minutes() {
    let Some(ha) = Ha::start("fdown") else { return };
    let a = ha.client('a');
    let foreign = foreign_entry(|args| ha.cli('a', args), &a, "down").await;
    let dir = peers().dir.join("t").join(unique("fdown"));
    let mut wanted = write_manifests(&dir, "entries.yaml", "down", 0..20);
    let config = static_config(ha.socket('a'), &dir, "gcInterval: 5s\n");
    let ctl = static_controller(&unique("fdown"), &config);
    converged(&a, &wanted, &foreign, Duration::from_secs(60), "20 entries").await;
    let pid = ctl.pid();

    let errors = || async {
        (
            ctl.metric("spire_controller_manager_spire_rpc_errors_total", &[]).await,
            ctl.metric("spire_controller_manager_reconcile_passes_total", &["result=\"error\""]).await,
        )
    };
    let (rpc0, err0) = errors().await;
    ha.inst("inst-stop", 'a');
    let down_at = Instant::now();
    eventually(Duration::from_secs(60), "/status reports SPIRE down", || async {
        (!check_ok(&ctl.health_addr, "spire").await?).then_some(())
    })
    .await;
    // A change during the outage: its pass fails and retries with backoff.
    wanted.extend(write_manifests(&dir, "more.yaml", "down-more", 0..5));
    let mut samples = Vec::new();
    while down_at.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (code, _) = http_get(&ctl.health_addr, "/healthz").await.expect("healthz answers during the outage");
        assert_eq!(code, 200, "liveness must hold while SPIRE is away");
        samples.push(errors().await);
    }
    let (rpc1, err1) = errors().await;
    assert_eq!(ctl.pid(), pid, "no restart");
    let status = health_status(&ctl.health_addr).await.unwrap();
    assert_eq!(status["checks"]["spire"]["ok"], json!(false), "{status}");
    ha.inst("inst-start", 'a');
    let back = Instant::now();
    converged(&a, &wanted, &foreign, Duration::from_secs(90), "25 entries after the outage").await;
    let took = back.elapsed();
    eventually(Duration::from_secs(60), "/status reports SPIRE back", || async {
        check_ok(&ctl.health_addr, "spire").await?.then_some(())
    })
    .await;
    let (rpc_calls, failed_passes) = (rpc1 - rpc0, err1 - err0);
    eprintln!(
        "FAULT spire_unreachable_two_minutes: {rpc_calls} failed SPIRE calls and {failed_passes} failed passes in 120 s (samples {samples:?}); lost 0, duplicated 0; converged {took:?} after SPIRE returned"
    );
    // Backoff (200 ms doubling to 30 s) allows ~12 retries in two minutes, plus the
    // reachability probes (every 10 s at most) and gcInterval passes (every 5 s at most).
    assert!(failed_passes <= 40.0, "a burst of retries: {failed_passes} failed passes in 120 s");
    assert!(rpc_calls <= 80.0, "a burst of SPIRE calls: {rpc_calls} failures in 120 s");
}

/// The config of one of two controllers (one per spire-server of the HA pair) that elect a
/// leader on a Lease in `lease_ns`, with `entryIDPrefix: scm.` and gcInterval 2 s.
fn leader_config(class: &str, lease_ns: &str, lease: &str, renew: &str, sock: &str) -> String {
    format!(
        "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\nspireServerSocketPath: {sock}\nclassName: {class}\nwatchClassless: false\nentryIDPrefix: scm.\ngcInterval: 2s\n\
         leaderElection:\n  leaderElect: true\n  resourceName: {class}.spiffe.io\n  resourceNamespace: {lease_ns}\n  leaseDuration: {lease}\n  renewDeadline: {renew}\n  retryPeriod: 1s\n"
    )
}

/// One controller per spire-server of the HA pair, Lease election: the leader's
/// spire-server dies, leadership moves to the controller whose SPIRE works within
/// leaseDuration + a pass, and that one writes.
#[tokio::test]
async fn leader_spire_dies_leadership_moves() {
    let Some(ha) = Ha::start("fho") else { return };
    let client = kube().await;
    let class = unique("fho");
    let lease_ns = unique("fho-lease");
    create_namespace(&client, &lease_ns, &[]).await;
    let a = ha.client('a');
    let b = ha.client('b');
    let foreign = foreign_entry(|args| ha.cli('a', args), &a, "fho").await;
    let config = |sock: &str| leader_config(&class, &lease_ns, "4s", "3s", sock);
    let cse = |i: usize| {
        json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterStaticEntry", "metadata": {"name": format!("{class}-{i}")},
            "spec": {"className": class, "spiffeID": format!("spiffe://{TD}/{class}/w{i}"), "parentID": PARENT, "selectors": [format!("unix:uid:{i}")]}})
    };
    let mut wanted = BTreeSet::new();
    for i in 0..5 {
        apply_json(&client, "clusterstaticentries", cse(i)).await;
        wanted.insert(format!("spiffe://{TD}/{class}/w{i}"));
    }
    let ca = Controller::start(&format!("{class}-a"), &config(ha.socket('a')));
    eventually(Duration::from_secs(30), "a leads", || async {
        (ca.metric("spire_controller_manager_leader", &[]).await == 1.0).then_some(())
    })
    .await;
    let cb = Controller::start(&format!("{class}-b"), &config(ha.socket('b')));
    eventually(Duration::from_secs(30), "b up", || async { (!cb.metrics().await.is_empty()).then_some(()) }).await;
    converged(&b, &wanted, &foreign, Duration::from_secs(30), "5 entries").await;

    ha.inst("inst-kill", 'a');
    let killed = Instant::now();
    eventually(Duration::from_secs(30), "b leads", || async {
        (cb.metric("spire_controller_manager_leader", &[]).await == 1.0).then_some(())
    })
    .await;
    let moved = killed.elapsed();
    assert_eq!(ca.metric("spire_controller_manager_leader", &[]).await, 0.0, "a gave up");
    assert_eq!(ca.metric("spire_controller_manager_leader_spire_handovers_total", &[]).await, 1.0);
    // The new leader writes a change.
    apply_json(&client, "clusterstaticentries", cse(5)).await;
    wanted.insert(format!("spiffe://{TD}/{class}/w5"));
    converged(&b, &wanted, &foreign, Duration::from_secs(30), "b writes the 6th entry").await;
    let took = killed.elapsed();
    // A, back, stays standby: b's SPIRE works.
    ha.inst("inst-start", 'a');
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(cb.metric("spire_controller_manager_leader", &[]).await, 1.0);
    let (_, dup, _) = census(&list(&b).await.unwrap(), &wanted, &foreign);
    assert_eq!(dup, 0);
    eprintln!(
        "FAULT leader_spire_dies_leadership_moves: leadership moved {moved:?} after the kill (leaseDuration 4s); the change written {took:?} after; lost 0, duplicated 0"
    );
}

// ---------------------------------------------------------------- a TCP proxy that stalls

/// Forwards 127.0.0.1:<port> to `target` until `stall` is set; then stops forwarding in
/// both directions without closing anything (a stalled network, not a reset).
struct StallProxy {
    port: u16,
    stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallProxy {
    /// On a runtime of its own (a thread): the test's blocking calls must not stall it.
    fn start(target: String) -> StallProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let stall = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stall.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(Self::serve(std_listener, target, s));
        });
        StallProxy { port, stall }
    }

    async fn serve(
        std_listener: std::net::TcpListener,
        target: String,
        s: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { return };
                let s = s.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    let pump = |mut r: tokio::net::tcp::OwnedReadHalf,
                                mut w: tokio::net::tcp::OwnedWriteHalf,
                                s: std::sync::Arc<std::sync::atomic::AtomicBool>| async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match r.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            while s.load(Ordering::SeqCst) {
                                // Stalled: hold the bytes, keep both sockets open.
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            if w.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::spawn(pump(ri, wo, s.clone()));
                    tokio::spawn(pump(ro, wi, s));
                });
            }
        }
    }

    fn stall(&self) {
        self.stall.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A kubeconfig like the peers' whose server is `127.0.0.1:<port>`.
fn kubeconfig_via(port: u16, path: &Path) {
    let peers = peers();
    let text = std::fs::read_to_string(peers.env.get("KUBECONFIG")).unwrap();
    let url = peers.env.get("KUBE_APISERVER_URL");
    std::fs::write(path, text.replace(url, &format!("https://127.0.0.1:{port}"))).unwrap();
}

/// The leader's apiserver connection stalls (a proxy that stops forwarding, no close)
/// while it writes 1,500 entries: it stops writing to SPIRE before its lease could
/// expire, so the other replica's writes (through the other spire-server) start only
/// after the leader's last one — read from PostgreSQL's statement log.
#[tokio::test]
async fn leader_apiserver_stall_no_overlapping_writers() {
    let Some(ha) = Ha::start("fstall") else { return };
    let client = kube().await;
    let class = unique("fstall");
    let lease_ns = unique("fstall-lease");
    create_namespace(&client, &lease_ns, &[]).await;
    let b = ha.client('b');
    let foreign = foreign_entry(|args| ha.cli('b', args), &b, "stall").await;
    let config = |sock: &str| leader_config(&class, &lease_ns, "6s", "4s", sock);
    let api = peers().env.get("KUBE_APISERVER_URL").trim_start_matches("https://").to_owned();
    let proxy = StallProxy::start(api);
    let ca = Controller::start(&format!("{class}-a"), &config(ha.socket('a')));
    let kc = ca.dir.join("kubeconfig-proxy");
    kubeconfig_via(proxy.port, &kc);
    drop(ca);
    let kc_s = kc.display().to_string();
    let ca = Controller::start_env(
        &format!("{class}-a"),
        &config(ha.socket('a')),
        &[("ENABLE_WEBHOOKS", "false"), ("KUBECONFIG", kc_s.as_str())],
    );
    eventually(Duration::from_secs(30), "a leads", || async {
        (ca.metric("spire_controller_manager_leader", &[]).await == 1.0).then_some(())
    })
    .await;
    let cb = Controller::start(&format!("{class}-b"), &config(ha.socket('b')));
    eventually(Duration::from_secs(30), "b up", || async { (!cb.metrics().await.is_empty()).then_some(()) }).await;
    // 1,500 entries declared at once (server-side apply of a list): a writes them in batches.
    let n = 1500;
    let mut wanted = BTreeSet::new();
    let mut doc = String::new();
    for i in 0..n {
        let sid = format!("spiffe://{TD}/{class}/w{i}");
        doc.push_str(&format!(
            "---\napiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: {class}-{i}\nspec:\n  className: {class}\n  spiffeID: {sid}\n  parentID: {PARENT}\n  selectors: [\"unix:uid:{i}\"]\n"
        ));
        wanted.insert(sid);
    }
    let (ok, out) = kubectl_apply(&doc);
    assert!(ok, "{out}");
    // Stall a's apiserver connection once it is writing.
    eventually(Duration::from_secs(120), "a is writing", || async {
        (b.count_entries().await.ok()? >= 200).then_some(())
    })
    .await;
    assert_eq!(ca.metric("spire_controller_manager_leader", &[]).await, 1.0, "a leads when the stall starts");
    proxy.stall();
    let stalled = Instant::now();
    let stalled_wall = jiff_now();
    // The lease a renewed last (before the stall) expires no earlier than this.
    let lease_expiry = wall_in(Duration::from_secs(6) - Duration::from_secs(1));
    eventually(Duration::from_secs(30), "b leads", || async {
        (cb.metric("spire_controller_manager_leader", &[]).await == 1.0).then_some(())
    })
    .await;
    let moved = stalled.elapsed();
    let entries = converged(&b, &wanted, &foreign, Duration::from_secs(180), "1,500 entries").await;
    let took = stalled.elapsed();
    assert_eq!(entries.len(), n + 1);
    let wa = ha.writes('a');
    let wb = ha.writes('b');
    assert!(wa.len() >= 200, "a was writing when its connection stalled ({} statements)", wa.len());
    let last_a = wa.iter().map(|(t, _)| t.clone()).max().unwrap();
    // b's writes since a's first (the foreign entry was made through b before that).
    let first_b_after = wb.iter().map(|(t, _)| t.clone()).filter(|t| t.as_str() >= wa[0].0.as_str()).min();
    eprintln!(
        "FAULT leader_apiserver_stall_no_overlapping_writers: a's last write {last_a}, b's first write {first_b_after:?}; stall at {stalled_wall}; leadership moved {moved:?} after the stall; converged {took:?}; a wrote {} and b {} statements",
        wa.len(),
        wb.len()
    );
    let first_b_after = first_b_after.expect("b wrote after the stall");
    assert!(last_a < lease_expiry, "a wrote at {last_a}, after its lease could have expired ({lease_expiry})");
    assert!(last_a < first_b_after, "writers overlapped: a wrote at {last_a}, b already at {first_b_after}");
    drop(ca);
}

// ---------------------------------------------------------------- apiserver restart + 410

fn etcd_post(endpoint: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let out = run_ok(
        Command::new("curl").args(["-fsS", "-X", "POST", &format!("{endpoint}{path}"), "-d", &body.to_string()]),
        path,
    );
    serde_json::from_str(out.trim()).unwrap_or(json!({}))
}

/// Peers of its own (etcd, kube-apiserver, spire-server): the apiserver is restarted here.
struct OwnPeers {
    env: PeersEnv,
    dir: PathBuf,
}

impl Drop for OwnPeers {
    fn drop(&mut self) {
        let _ = peers_sh().arg("down").arg(&self.dir).output();
    }
}

/// kube-apiserver restarted, and, while it is down, etcd compacted past everything the
/// controller has seen: its watches come back to 410 Gone, the caches list again, and no
/// entry is deleted on the way (SPIRE's entry IDs never change); a change made after the
/// restart is written.
#[tokio::test]
async fn apiserver_restart_and_410_gone_delete_nothing() {
    let _ = peers();
    let dir = peers().dir.join("t").join(unique("f410"));
    let mut own = OwnPeers { env: PeersEnv::default(), dir: dir.clone() };
    run_ok(peers_sh().arg("up").arg(&dir).env("PEERS_POSTGRES", "0"), "peers.sh up (own)");
    own.env = PeersEnv::read(dir.join("env"));
    let kubectl_own = |args: &[&str]| own.env.kubectl(args);
    let crds = root().join("crds").display().to_string();
    let out = kubectl_own(&["apply", "--server-side", "-f", &crds]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kubectl_own(&["wait", "--for=condition=Established", "--timeout=60s", "-f", &crds]);
    assert!(out.status.success());
    let class = unique("f410");
    let mut doc = String::new();
    let mut wanted = BTreeSet::new();
    for i in 0..20 {
        let sid = format!("spiffe://{TD}/{class}/w{i}");
        doc.push_str(&format!(
            "---\napiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: {class}-{i}\nspec:\n  className: {class}\n  spiffeID: {sid}\n  parentID: {PARENT}\n  selectors: [\"unix:uid:{i}\"]\n"
        ));
        wanted.insert(sid);
    }
    let f = dir.join("cses.yaml");
    std::fs::write(&f, &doc).unwrap();
    let out = kubectl_own(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sock = own.env.get("SPIRE_SERVER_SOCKET").to_owned();
    let c = scm_spire_api::Client::connect_lazy(&sock, Default::default()).unwrap();
    let spire_bin = own.env.get("SPIRE_SERVER_BIN").to_owned();
    run_ok(
        Command::new(&spire_bin).args([
            "entry",
            "create",
            "-socketPath",
            &sock,
            "-entryID",
            "foreign-410",
            "-spiffeID",
            &format!("spiffe://{TD}/foreign/410"),
            "-parentID",
            PARENT,
            "-selector",
            "unix:uid:4242",
        ]),
        "foreign entry",
    );
    let foreign = c.list_entries().await.unwrap().into_iter().find(|e| e.id == "foreign-410").unwrap();
    let config = format!(
        "trustDomain: {TD}\nclusterName: e2e\nclusterDomain: cluster.local\nspireServerSocketPath: {sock}\nclassName: {class}\nwatchClassless: false\nentryIDPrefix: scm.\ngcInterval: 2s\n"
    );
    let kc = own.env.get("KUBECONFIG").to_owned();
    let ctl = Controller::start_env(&class, &config, &[("ENABLE_WEBHOOKS", "false"), ("KUBECONFIG", kc.as_str())]);
    let before = converged(&c, &wanted, &foreign, Duration::from_secs(60), "20 entries").await;
    let ids = |v: &[scm_spiffe::Entry]| v.iter().map(|e| e.id.clone()).collect::<BTreeSet<_>>();
    let ids_before = ids(&before);

    // Stop the apiserver; advance and compact etcd past the controller's resourceVersions.
    let etcd = own.env.get("ETCD_ENDPOINT").to_owned();
    run_ok(peers_sh().arg("apiserver-stop").arg(&dir), "apiserver stop");
    for key in ["L3NjbS1mYXVsdHMvMQ==", "L3NjbS1mYXVsdHMvMg==", "L3NjbS1mYXVsdHMvMw=="] {
        etcd_post(&etcd, "/v3/kv/put", &json!({"key": key, "value": "eA=="}));
    }
    let rev = etcd_post(&etcd, "/v3/kv/range", &json!({"key": "AA=="}))["header"]["revision"].clone();
    etcd_post(&etcd, "/v3/kv/compaction", &json!({"revision": rev, "physical": true}));
    run_ok(peers_sh().arg("apiserver-start").arg(&dir), "apiserver start");
    let restarted = Instant::now();
    // Watch SPIRE for 20 s: no entry of ours may disappear (or change ID) meanwhile.
    while restarted.elapsed() < Duration::from_secs(20) {
        if let Some(now) = list(&c).await {
            assert!(ids_before.is_subset(&ids(&now)), "an entry was deleted after the restart");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The caches relisted and watch again: a new object is written.
    let extra = format!(
        "apiVersion: spire.spiffe.io/v1alpha1\nkind: ClusterStaticEntry\nmetadata:\n  name: {class}-new\nspec:\n  className: {class}\n  spiffeID: spiffe://{TD}/{class}/new\n  parentID: {PARENT}\n  selectors: [\"unix:uid:99999\"]\n"
    );
    let ef = dir.join("new.yaml");
    std::fs::write(&ef, extra).unwrap();
    let out = kubectl_own(&["apply", "-f", ef.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let changed = Instant::now();
    wanted.insert(format!("spiffe://{TD}/{class}/new"));
    let after = converged(&c, &wanted, &foreign, Duration::from_secs(60), "the new entry after the restart").await;
    let took = changed.elapsed();
    assert!(ids_before.is_subset(&ids(&after)));
    let logs = ctl.logs();
    eprintln!(
        "FAULT apiserver_restart_and_410_gone_delete_nothing: 0 deleted, 0 duplicated; a change made 20 s after the restart written {took:?} after it was made; 410 seen in logs: {}",
        logs.contains("410") || logs.to_lowercase().contains("too old") || logs.contains("Gone")
    );
}

/// Wall-clock UTC in PostgreSQL's log format (`YYYY-MM-DD HH:MM:SS.mmm`).
fn jiff_now() -> String {
    wall_in(Duration::ZERO)
}

/// [`jiff_now`] plus `d`.
fn wall_in(d: Duration) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + d;
    let at = format!("@{}.{:03}", t.as_secs(), t.subsec_millis());
    let out = Command::new("date").args(["-u", "-d", &at, "+%Y-%m-%d %H:%M:%S.%3N"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
