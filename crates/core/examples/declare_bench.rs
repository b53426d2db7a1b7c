//! Times `declare_entries`, a whole `Declaration` and an incremental update of one pod on a
//! synthetic cluster.
//! `cargo run -p scm-core --release --example declare_bench -- [pods] [crs]`

use std::time::Instant;

use scm_core::{Changes, Declaration, Ownership, RenderCache, UnsupportedFields, declare_entries, plan};

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
            let mut e = scm_spiffe::Entry::clone(&e.entry);
            e.id = format!("id-{i}");
            e
        })
        .collect();
    let t = Instant::now();
    let p = plan(&d.entries, &current, &Ownership::default(), &UnsupportedFields::default(), &d.protect);
    println!("plan (all current): {:?} ({} unchanged)", t.elapsed(), p.unchanged.len());

    // The pass's own steps: a whole declaration kept, then one pod declared again.
    let t = Instant::now();
    let mut model = Declaration::build(&world, &settings, &mut cache);
    println!("Declaration::build: {:?}", t.elapsed());
    let t = Instant::now();
    let all = model.everything();
    println!("Declaration::everything: {:?} ({} entries)", t.elapsed(), all.entries.len());
    let pod = &world.pods[pods / 2];
    let mut changes = Changes::default();
    changes
        .pod(pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default());
    let mut best = std::time::Duration::MAX;
    for _ in 0..iters {
        let t = Instant::now();
        let delta = model.update(&world, &settings, &mut cache, &changes).expect("a pod change is incremental");
        let covered: Vec<&scm_spiffe::Entry> = current.iter().filter(|e| delta.covers(e)).collect();
        let p = plan(&delta.entries, &covered, &Ownership::default(), &UnsupportedFields::default(), &delta.protect);
        let el = t.elapsed();
        best = best.min(el);
        assert_eq!(p.unchanged.len(), delta.entries.len());
    }
    println!("one pod: update + plan of its entries, best {best:?}");
}
