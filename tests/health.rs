//! Active health checks through real TCP: a node failing its
//! check is down within `fall × interval`, back after `rise` good checks, and requests go
//! elsewhere meanwhile. Waits are bounded polls; durations are asserted with generous slack.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use stickyroute::demo::node::DemoNodeConfig;
use stickyroute::store::SessionStore;
use tokio::time::Instant;

const INTERVAL: Duration = Duration::from_millis(100);
/// Scheduling slack for a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(900);

async fn health_of(ctl: &stickyroute::cli::ctl::Client, route: &str) -> String {
    node_report(&ctl.status().await.unwrap(), route)
        .health
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_node_goes_down_within_fall_checks_and_returns_after_rise() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n2 = node("jvm2", &store).await;
    let jvm1_addr = n1.addr;
    let (rise, fall) = (3u32, 2u32);
    let pool = format!(
        "health: {{ path: /health, interval: 100ms, timeout: 300ms, rise: {rise}, fall: {fall} }}\nfailover: {{ recover_after: 60s }}"
    );
    let lines = vec![
        node_line("jvm1", n1.addr, ""),
        node_line("jvm2", n2.addr, ""),
    ];
    let lb = balancer(&with_admin(&yaml(&pool, &lines), None)).await;
    let ctl = admin_client(&lb, None);
    assert_eq!(health_of(&ctl, "jvm1").await, "up");

    // Stop jvm1 (no request touches it, so only the checker can notice).
    n1.stop().await;
    let stopped = Instant::now();
    let bound = INTERVAL * fall + SLACK;
    eventually("jvm1 marked down by the health check", bound, || async {
        health_of(&ctl, "jvm1").await == "down"
    })
    .await;
    let took = stopped.elapsed();
    assert!(took <= bound, "down after {took:?}, bound {bound:?}");
    let report = node_report(&ctl.status().await.unwrap(), "jvm1").clone();
    assert!(
        report
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("health check"),
        "{report:?}"
    );

    // Meanwhile requests go elsewhere: new sessions, and jvm1's sessions fail over.
    for _ in 0..10 {
        let r = get(lb.addr(), "/whoami", None).await;
        assert_eq!((r.status.as_u16(), r.node()), (200, "jvm2"));
    }
    let r = get(lb.addr(), "/whoami", Some("ABC.jvm1")).await;
    assert_eq!((r.status.as_u16(), r.node()), (200, "jvm2"));
    assert_eq!(r.session_cookies(), vec!["ABC.jvm1.jvm2".to_string()]);

    // Restart: back up after `rise` good checks, not before.
    let n1 = node_at(jvm1_addr, DemoNodeConfig::new("jvm1", store.clone())).await;
    let restarted = Instant::now();
    let bound = INTERVAL * rise + SLACK;
    eventually("jvm1 back up after rise good checks", bound, || async {
        health_of(&ctl, "jvm1").await == "up"
    })
    .await;
    let took = restarted.elapsed();
    assert!(
        took >= INTERVAL * (rise - 1) - Duration::from_millis(20),
        "up after {took:?}: fewer than {rise} checks"
    );
    eventually(
        "new sessions reach jvm1 again",
        Duration::from_secs(5),
        || async { get(lb.addr(), "/whoami", None).await.node() == "jvm1" },
    )
    .await;

    let snap = lb.balancer.snapshot();
    let m = &snap.pool("app").unwrap().node("jvm1").unwrap().rt.metrics;
    assert_eq!(m.health_down_active.load(Ordering::Relaxed), 1);
    assert_eq!(m.health_up_active.load(Ordering::Relaxed), 1);
    lb.stop().await;
    drop((n1, n2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_mark_is_lifted_by_good_checks_before_recover_after() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n2 = node("jvm2", &store).await;
    let jvm1_addr = n1.addr;
    // `fall` high: the checker alone would take long to notice; the failed request does.
    let pool = "health: { path: /health, interval: 100ms, timeout: 300ms, rise: 2, fall: 50 }\nfailover: { recover_after: 60s }";
    let lines = vec![
        node_line("jvm1", n1.addr, ""),
        node_line("jvm2", n2.addr, ""),
    ];
    let lb = balancer(&with_admin(&yaml(pool, &lines), None)).await;
    let ctl = admin_client(&lb, None);

    n1.stop().await;
    let r = get(lb.addr(), "/whoami", Some("S.jvm1")).await;
    assert_eq!(
        (r.status.as_u16(), r.node()),
        (200, "jvm2"),
        "connect refused → failover"
    );
    assert_eq!(
        health_of(&ctl, "jvm1").await,
        "down",
        "passively marked down"
    );

    let n1 = node_at(jvm1_addr, DemoNodeConfig::new("jvm1", store.clone())).await;
    eventually(
        "good checks lift the passive mark long before recover_after (60 s)",
        Duration::from_secs(5),
        || async { health_of(&ctl, "jvm1").await == "up" },
    )
    .await;
    let r = get(lb.addr(), "/whoami", Some("T.jvm1")).await;
    assert_eq!(r.node(), "jvm1");
    lb.stop().await;
    drop((n1, n2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_status_decides_and_unhealthy_nodes_get_no_new_sessions() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n2 = node("jvm2", &store).await;
    // Two pools on the same nodes: /missing answers 404, healthy only where 404 is expected.
    let text = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nadmin: {{ bind: \"127.0.0.1:0\" }}\npools:\n\
         \x20 - name: ok404\n    path_prefix: /a\n    health: {{ path: /missing, interval: 100ms, expect_status: [404], fall: 1 }}\n\
         \x20   nodes: [{{ route: jvm1, address: \"{a1}\" }}, {{ route: jvm2, address: \"{a2}\" }}]\n\
         \x20 - name: strict\n    path_prefix: /b\n    health: {{ path: /missing, interval: 100ms, fall: 1 }}\n\
         \x20   nodes: [{{ route: jvm1, address: \"{a1}\" }}, {{ route: jvm2, address: \"{a2}\" }}]\n",
        a1 = n1.addr,
        a2 = n2.addr
    );
    let lb = balancer(&text).await;
    let ctl = admin_client(&lb, None);
    eventually(
        "the strict pool's nodes go down",
        Duration::from_secs(5),
        || async {
            let s = ctl.status().await.unwrap();
            s.pools[1].nodes.iter().all(|n| n.health == "down")
        },
    )
    .await;
    let s = ctl.status().await.unwrap();
    assert!(s.pools[0].nodes.iter().all(|n| n.health == "up"), "{s:?}");
    assert!(s.pools[1].nodes[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("404"));
    assert_eq!(get(lb.addr(), "/b/whoami", None).await.status, 503);
    let r = get(lb.addr(), "/a/whoami", None).await;
    assert!(
        r.header("x-node").is_some(),
        "the healthy pool reaches a node"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_follow_reloads() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let dead = dead_addr().await;
    let lines = vec![node_line("jvm1", n1.addr, ""), node_line("gone", dead, "")];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("balancer.yaml");
    let without = with_admin(&yaml("", &lines), None);
    let with = with_admin(
        &yaml(
            "health: { path: /health, interval: 100ms, fall: 1, rise: 1 }",
            &lines,
        ),
        None,
    );
    std::fs::write(&path, &without).unwrap();
    let cfg = stickyroute::control::load_config(&path).unwrap();
    let lb = stickyroute::control::Running::start(cfg).await.unwrap();
    let ctl = admin_client(&lb, None);
    assert_eq!(health_of(&ctl, "gone").await, "up", "nothing probes it yet");

    std::fs::write(&path, &with).unwrap();
    ctl.reload().await.unwrap();
    eventually(
        "the new checker marks the dead node down",
        Duration::from_secs(5),
        || async { health_of(&ctl, "gone").await == "down" },
    )
    .await;
    assert_eq!(health_of(&ctl, "jvm1").await, "up");

    std::fs::write(&path, &without).unwrap();
    ctl.reload().await.unwrap();
    assert_eq!(
        health_of(&ctl, "gone").await,
        "up",
        "without active checks nothing holds it down"
    );
    lb.stop().await;
}
