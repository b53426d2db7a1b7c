//! What one idle read costs SPIRE: lists every entry `TIMES` times, in full or IDs and
//! revision numbers only, with a page size, and prints the wall time per list. Run beside
//! a reading of spire-server's CPU time (e2e/bench/idle_spire.sh does this for whole
//! controllers).
//!
//!   cargo run --release -p scm-spire-api --example list_cost -- SOCKET full|revisions PAGE TIMES

use std::time::{Duration, Instant};

use scm_spire_api::{Client, ClientOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, mode, page, times] = args.as_slice() else {
        eprintln!("usage: list_cost SOCKET full|revisions PAGE TIMES");
        std::process::exit(2);
    };
    let options = ClientOptions {
        entry_list_page_size: page.parse()?,
        max_recv_message_size: Some(64 << 20),
        timeout: Duration::from_secs(120),
        ..Default::default()
    };
    let client = Client::connect_lazy(socket, options)?;
    client.wait_ready(Duration::from_secs(30)).await?;
    let times: u32 = times.parse()?;
    let t = Instant::now();
    let mut n = 0;
    for _ in 0..times {
        n = match mode.as_str() {
            "full" => client.list_entries().await?.len(),
            _ => client.list_entry_revisions().await?.len(),
        };
    }
    println!(
        "{mode} page {page}: {n} entries, {:.1} ms per list",
        t.elapsed().as_secs_f64() * 1000.0 / f64::from(times)
    );
    Ok(())
}
