//! Times `declare_entries` on a synthetic cluster.
//! `cargo run -p scm-core --release --example declare_bench -- [pods] [crs]`

use std::time::Instant;

use scm_core::{Ownership, RenderCache, UnsupportedFields, declare_entries, plan};

fn main() {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let crs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let (world, settings) = scm_core::bench::big_world(pods, crs);
    let mut cache = RenderCache::new();

    let t = Instant::now();
    let d = declare_entries(&world, &settings, &mut cache);
    println!(
        "cold: {:?} ({} entries, {} failures, {:?})",
        t.elapsed(),
        d.entries.len(),
        d.failures.len(),
        cache.stats()
    );

    let mut best = std::time::Duration::MAX;
    let iters: usize = std::env::var("WARM_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    for i in 0..iters {
        let t = Instant::now();
        let d = declare_entries(&world, &settings, &mut cache);
        let el = t.elapsed();
        best = best.min(el);
        println!("warm {i}: {el:?} ({} entries, {:?})", d.entries.len(), cache.stats());
    }
    println!("warm best: {best:?}");

    let current: Vec<_> = d
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.entry.clone();
            e.id = format!("id-{i}");
            e
        })
        .collect();
    let t = Instant::now();
    let p = plan(&d.entries, &current, &Ownership::default(), &UnsupportedFields::default(), &d.protect);
    println!("plan (all current): {:?} ({} unchanged)", t.elapsed(), p.unchanged.len());
}
