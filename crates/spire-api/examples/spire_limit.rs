//! SPIRE's own write limit: creates N entries straight through BatchCreateEntry (no
//! controller), with a given batch size and number of batches in flight, times it, and
//! deletes them again. The yardstick for the controller's convergence (BENCHMARKS.md).
//!
//!   cargo run --release -p scm-spire-api --example spire_limit -- SOCKET TRUST_DOMAIN N BATCH INFLIGHT
//!
//! Prints one JSON line: {"entries", "batch", "in_flight", "seconds", "per_second"}.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scm_spiffe::{Entry, Selector, SpiffeId};
use scm_spire_api::{Client, ClientOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, td, n, batch, in_flight] = args.as_slice() else {
        eprintln!("usage: spire_limit SOCKET TRUST_DOMAIN N BATCH INFLIGHT");
        std::process::exit(2);
    };
    let (n, batch, in_flight): (usize, usize, usize) = (n.parse()?, batch.parse()?, in_flight.parse()?);
    let options =
        ClientOptions { entry_create_batch_size: batch, timeout: Duration::from_secs(120), ..Default::default() };
    let client = Arc::new(Client::connect_lazy(socket, options)?);
    client.wait_ready(Duration::from_secs(30)).await?;
    let parent = SpiffeId::parse(&format!("spiffe://{td}/spire/agent/k8s_psat/bench/node"))?;
    let run = format!("{}", std::process::id());
    let entries: Vec<Entry> = (0..n)
        .map(|i| {
            let id = SpiffeId::parse(&format!("spiffe://{td}/limit/{run}/w{i}")).expect("valid");
            Entry::new(id, parent.clone(), vec![Selector::new("k8s", format!("pod-uid:{run}-{i}"))])
        })
        .collect();
    // `in_flight` workers, each taking the next chunk of `batch` entries.
    let chunks: Vec<Vec<Entry>> = entries.chunks(batch.max(1)).map(<[Entry]>::to_vec).collect();
    let queue = Arc::new(tokio::sync::Mutex::new(chunks.into_iter()));
    let t = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..in_flight.max(1) {
        let (client, queue) = (client.clone(), queue.clone());
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let Some(chunk) = queue.lock().await.next() else { return Ok::<_, String>(ids) };
                let results = client.create_entries(&chunk).await.map_err(|e| e.error.to_string())?;
                for r in results {
                    ids.push(r.map_err(|e| e.to_string())?.id);
                }
            }
        }));
    }
    let mut ids = Vec::new();
    for w in workers {
        ids.extend(w.await??);
    }
    let seconds = t.elapsed().as_secs_f64();
    println!(
        "{{\"entries\": {n}, \"batch\": {batch}, \"in_flight\": {in_flight}, \"seconds\": {seconds:.2}, \"per_second\": {:.0}}}",
        n as f64 / seconds
    );
    for chunk in ids.chunks(1000) {
        client.delete_entries(chunk).await.map_err(|e| e.error.to_string())?;
    }
    Ok(())
}
