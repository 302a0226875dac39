//! The per-request decision: parse the Cookie header, extract the session id and its route,
//! select the node (sticky hit, new session, failover). No I/O.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use stickyroute::config::Config;
use stickyroute::proxy::pipeline;
use stickyroute::state::node::now_ms;
use stickyroute::state::registry::Registry;
use stickyroute::state::snapshot::Snapshot;

const CONFIG: &str = r#"
listeners: [{ bind: "127.0.0.1:8080" }]
pools:
  - name: app
    nodes:
      - { route: jvm1, address: "127.0.0.1:18081", domain: a }
      - { route: jvm2, address: "127.0.0.1:18082", domain: a }
      - { route: jvm3, address: "127.0.0.1:18083", domain: a, weight: 2 }
      - { route: jvm4, address: "127.0.0.1:18084", domain: b }
"#;

const COOKIE: &str = "_ga=GA1.2.1234567890.1700000000; theme=dark; \
                      JSESSIONID=4F1CA9D2E6B7A1C3D5E7F9081726354A.jvm2; lang=en";

/// Phases 1–3 of the request path, through the functions the request path calls.
fn decide(snap: &Snapshot, cookie: &str, path: &str) -> usize {
    let lines = [Some(cookie)];
    let now = now_ms();
    let m = pipeline::match_and_extract(snap, Some("app.example"), path, &lines, now).unwrap();
    pipeline::select(m.pool, m.ids.map(|i| i.key()), &[], now)
        .unwrap()
        .node
}

fn bench(c: &mut Criterion) {
    let config = Config::from_yaml(CONFIG, "bench.yaml").unwrap();
    let registry = Registry::new(1000, Duration::from_secs(60));
    let snap = Snapshot::build(Arc::new(config), None, &registry).unwrap();

    c.bench_function("decision/sticky_hit_cookie", |b| {
        b.iter(|| decide(&snap, black_box(COOKIE), black_box("/app/cart")))
    });
    c.bench_function("decision/sticky_hit_path_param", |b| {
        b.iter(|| {
            decide(
                &snap,
                black_box("theme=dark"),
                black_box("/app/cart;jsessionid=4F1CA9D2E6B7A1C3D5E7F9081726354A.jvm3"),
            )
        })
    });
    c.bench_function("decision/new_session_p2c", |b| {
        b.iter(|| decide(&snap, black_box("theme=dark; lang=en"), black_box("/app/")))
    });

    // jvm2 down: every request of its sessions is a rendezvous-hashed failover.
    let jvm2 = snap.pools[0].node("jvm2").unwrap();
    jvm2.rt
        .health
        .mark_down(now_ms(), Duration::from_secs(3600), "bench".into());
    c.bench_function("decision/failover_rendezvous", |b| {
        b.iter(|| decide(&snap, black_box(COOKIE), black_box("/app/cart")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
