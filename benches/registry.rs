//! The session registry: the cost of the per-request update, and memory per tracked session.
//!
//! `cargo bench --bench registry` prints the memory figures first, then criterion's timings:
//!
//! - `registry/learn_hit`: what a sticky hit costs the request path (`Registry::learn` with the
//!   request's id: xxh3 of the id + one DashMap shard-locked update), in a registry that holds
//!   1M sessions;
//! - `registry/learn_failover`: a session moving to another node (entry update + two per-node
//!   counters);
//! - `registry/learn_new_then_forget`: a new session learned from `Set-Cookie`, then removed
//!   (so the map does not grow during the run);
//! - `registry/touch_prehashed`: the map update alone, without hashing the id.
//!
//! Memory is measured two ways on a fresh registry filled with 1,000,000 sessions: (1) the
//! process's resident set before and after (`/proc/self/statm`, Linux), which includes every
//! allocator and table-resize effect; (2) from the layout: hashbrown buckets (capacity × 8/7,
//! each 16 bytes of key and entry + 1 control byte).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use stickyroute::state::registry::{session_hash, Registry};

const SESSIONS: usize = 1_000_000;

fn id(i: usize) -> String {
    format!(
        "{:032X}.jvm{}",
        (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
        i % 4 + 1
    )
}

fn filled(n: usize) -> Registry {
    let r = Registry::new(n * 2, Duration::from_secs(1800));
    for i in 0..n {
        r.touch_at(session_hash(&id(i)), (i % 4) as u32, 0);
    }
    r
}

/// Resident set size in bytes (Linux), or `None`.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn memory_report() {
    // Build the ids first so their memory is not counted.
    let hashes: Vec<u64> = (0..SESSIONS).map(|i| session_hash(&id(i))).collect();
    let before = rss_bytes();
    let r = Registry::new(SESSIONS * 2, Duration::from_secs(1800));
    for (i, h) in hashes.iter().enumerate() {
        r.touch_at(*h, (i % 4) as u32, 0);
    }
    let after = rss_bytes();
    let stats = r.stats();
    assert_eq!(stats.sessions, SESSIONS);
    let capacity = r.capacity();
    let buckets = capacity as f64 * 8.0 / 7.0;
    let layout = buckets * (16.0 + 1.0) / SESSIONS as f64;
    println!("registry memory, {SESSIONS} sessions tracked:");
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "  measured (RSS delta): {:.1} MiB = {:.1} bytes per session",
            (a - b) as f64 / (1024.0 * 1024.0),
            (a - b) as f64 / SESSIONS as f64
        );
    }
    println!(
        "  layout: capacity {capacity} sessions, about {buckets:.0} buckets x 17 bytes = {layout:.1} bytes per session"
    );
    println!(
        "  (entry: {} bytes of key + value; bounded by registry.max_sessions)",
        std::mem::size_of::<(u64, stickyroute::state::registry::Entry)>()
    );
    drop(r);
}

fn bench(c: &mut Criterion) {
    let n = if std::env::args().any(|a| a == "--bench") {
        SESSIONS
    } else {
        10_000
    };
    let r = filled(n);
    let ids: Vec<String> = (0..1024).map(|i| id(i * 97 % n)).collect();
    let nodes: Vec<u32> = (0..1024).map(|i| ((i * 97 % n) % 4) as u32).collect();
    let mut g = c.benchmark_group("registry");

    let mut k = 0usize;
    g.bench_function("learn_hit", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            let id = ids[k].as_str();
            r.learn(nodes[k], black_box(Some(id)), Some(id), std::iter::empty());
        })
    });

    let hashes: Vec<u64> = ids.iter().map(|i| session_hash(i)).collect();
    let now = r.now();
    let mut k = 0usize;
    g.bench_function("touch_prehashed", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            r.touch_at(black_box(hashes[k]), nodes[k], now);
        })
    });
    let mut k = 0usize;
    let mut flip = 0u32;
    g.bench_function("learn_failover", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            flip ^= 1;
            let id = ids[k].as_str();
            r.learn(4 + flip, black_box(Some(id)), Some(id), std::iter::empty());
        })
    });

    let fresh: Vec<String> = (0..1024).map(|i| format!("NEW{i:029}.jvm1")).collect();
    let mut k = 0usize;
    g.bench_function("learn_new_then_forget", |b| {
        b.iter(|| {
            k = (k + 1) & 1023;
            let id = fresh[k].as_str();
            r.learn(1, None, None, std::iter::once(black_box(id)));
            r.forget(session_hash(id));
        })
    });

    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        memory_report();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
