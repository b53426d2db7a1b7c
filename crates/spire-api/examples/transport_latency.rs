//! RPC latency of the two transports against one real SPIRE server: the admin Unix socket
//! and TCP + SPIFFE mTLS (an X.509-SVID from a spire-agent's Workload API).
//!
//! ```sh
//! e2e/peers.sh up .e2e/peers && e2e/peers.sh agent-up .e2e/peers spire
//! source .e2e/peers/env && source .e2e/peers/spire/agent-env
//! cargo run -p scm-spire-api --example transport_latency -- \
//!   "$SPIRE_SERVER_SOCKET" "$SPIRE_SERVER_ADDRESS" "$SPIRE_AGENT_SOCKET" "$SPIRE_TRUST_DOMAIN" [ROUNDS]
//! ```
//!
//! Per transport, on a warm connection: GetBundle, ListEntries of 200 entries (one page),
//! BatchCreateEntry of 50 and BatchDeleteEntry of 50; and a new connection each time (dial,
//! handshake, GetBundle); p50 / p90 / p99 in milliseconds.

use std::time::{Duration, Instant};

use scm_spiffe::{Entry, Selector, SpiffeId};
use scm_spire_api::{Client, ClientOptions, SvidSource};

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
    format!("p50 {:7.3}  p90 {:7.3}  p99 {:7.3} ms  (n={})", at(0.5), at(0.9), at(0.99), v.len())
}

fn entries(td: &str, tag: &str, n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            Entry::new(
                SpiffeId::parse(&format!("spiffe://{td}/latency/{tag}/{i}")).unwrap(),
                SpiffeId::parse(&format!("spiffe://{td}/spire/server")).unwrap(),
                vec![Selector::new("unix", format!("uid:{}", 100_000 + i))],
            )
        })
        .collect()
}

async fn measure(name: &str, c: &Client, td: &str, rounds: usize) {
    c.get_bundle().await.expect("warm-up");
    let mut get = Vec::new();
    let mut list = Vec::new();
    let mut create = Vec::new();
    let mut delete = Vec::new();
    for r in 0..rounds {
        let t = Instant::now();
        c.get_bundle().await.unwrap();
        get.push(t.elapsed());
        let t = Instant::now();
        c.list_entries().await.unwrap();
        list.push(t.elapsed());
        if r % 4 == 0 {
            let batch = entries(td, &format!("{name}-{r}"), 50);
            let t = Instant::now();
            let out = c.create_entries(&batch).await.unwrap();
            create.push(t.elapsed());
            let ids: Vec<String> = out.into_iter().map(|r| r.unwrap().id).collect();
            let t = Instant::now();
            for r in c.delete_entries(&ids).await.unwrap() {
                r.unwrap();
            }
            delete.push(t.elapsed());
        }
    }
    println!("{name:6} GetBundle             {}", percentiles(get));
    println!("{name:6} ListEntries (200)     {}", percentiles(list));
    println!("{name:6} BatchCreateEntry (50) {}", percentiles(create));
    println!("{name:6} BatchDeleteEntry (50) {}", percentiles(delete));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, address, workload, td, rest @ ..] = args.as_slice() else {
        eprintln!("usage: transport_latency SERVER_SOCKET SERVER_ADDRESS WORKLOAD_SOCKET TRUST_DOMAIN [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = rest.first().map(|r| r.parse().unwrap()).unwrap_or(200);
    let unix = Client::connect_lazy(socket, ClientOptions::default()).unwrap();
    let source = SvidSource::start(workload).unwrap();
    source.wait_ready(Duration::from_secs(10)).await.expect("an SVID");
    let mtls = Client::connect_mtls(address, source, &format!("spiffe://{td}/spire/server"), ClientOptions::default())
        .unwrap();
    // A new connection (dial, for mTLS the handshake, then GetBundle), 50 times each.
    let (mut fresh_unix, mut fresh_mtls) = (Vec::new(), Vec::new());
    let source = mtls.identity().unwrap().clone();
    for _ in 0..50 {
        let t = Instant::now();
        Client::connect_lazy(socket, ClientOptions::default()).unwrap().get_bundle().await.unwrap();
        fresh_unix.push(t.elapsed());
        let t = Instant::now();
        let c =
            Client::connect_mtls(address, source.clone(), &format!("spiffe://{td}/spire/server"), Default::default());
        c.unwrap().get_bundle().await.unwrap();
        fresh_mtls.push(t.elapsed());
    }
    println!("socket new connection + GetBundle  {}", percentiles(fresh_unix));
    println!("mtls   new connection + GetBundle  {}", percentiles(fresh_mtls));
    // 200 entries to list (one page), removed at the end.
    let seeded: Vec<String> =
        unix.create_entries(&entries(td, "seed", 200)).await.unwrap().into_iter().map(|r| r.unwrap().id).collect();
    // Twice each, alternating, so neither transport gets the server warmer.
    measure("socket", &unix, td, rounds / 2).await;
    measure("mtls", &mtls, td, rounds / 2).await;
    measure("socket", &unix, td, rounds / 2).await;
    measure("mtls", &mtls, td, rounds / 2).await;
    unix.delete_entries(&seeded).await.unwrap();
}
