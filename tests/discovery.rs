//! Pools that follow DNS (`pools[].discovery`) and nodes added and removed at runtime, against
//! a real DNS server (knotd, `common::dns`) whose zone each test rewrites, demo nodes on
//! 127.0.0.1, and the balancer's admin API. Without knotd the DNS tests skip loudly (and fail
//! under `STICKYROUTE_REQUIRE_SERVICES=1`).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::dns::{DnsServer, Record};
use common::{admin_client, balancer, eventually, get, node, node_at, sample, scrape, Session};
use stickyroute::control::api::{NodeReport, PoolReport, StatusReport};
use stickyroute::control::Running;
use stickyroute::demo::node::{DemoNodeConfig, RunningNode};
use stickyroute::store::SessionStore;

const ORIGIN: &str = "pool.test.";
const SRV: &str = "_http._tcp.tomcat";
const WAIT: Duration = Duration::from_secs(10);

/// SRV records naming each node as `ROUTE.pool.test.`, with A records on 127.0.0.1.
fn srv_zone(nodes: &[(&str, SocketAddr)], ttl: u32) -> Vec<Record> {
    let mut z = Vec::new();
    for (route, addr) in nodes {
        z.push(Record::srv(SRV, ttl, 0, 10, addr.port(), route));
        z.push(Record::a(route, ttl, Ipv4Addr::LOCALHOST));
    }
    z
}

/// A balancer with one pool `app` discovered from the fixture's SRV records.
fn discovery_yaml(dns: &DnsServer, extra: &str, file_nodes: &str) -> String {
    format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  - name: app\n    discovery:\n      srv: \"{SRV}.{ORIGIN}\"\n      resolver: \"{}\"\n      min_interval: 100ms\n      max_interval: 1s\n{extra}{file_nodes}",
        dns.addr()
    )
}

async fn status(lb: &Running) -> StatusReport {
    admin_client(lb, None).status().await.unwrap()
}

fn pool(s: &StatusReport) -> &PoolReport {
    s.pools.iter().find(|p| p.name == "app").unwrap()
}

fn find<'a>(s: &'a StatusReport, route: &str) -> Option<&'a NodeReport> {
    pool(s).nodes.iter().find(|n| n.route == route)
}

/// Waits until `route` is in the pool with this state (and `leaving` flag).
async fn wait_node(lb: &Running, route: &str, state: &str, leaving: bool) {
    eventually(
        &format!("{route} {state} leaving={leaving}"),
        WAIT,
        || async {
            let s = status(lb).await;
            find(&s, route).is_some_and(|n| n.state == state && n.leaving == leaving)
        },
    )
    .await;
}

async fn wait_gone(lb: &Running, route: &str, within: Duration) {
    eventually(&format!("{route} removed"), within, || async {
        find(&status(lb).await, route).is_none()
    })
    .await;
}

/// A new session pinned to `route`: new sessions until one lands there (bounded).
async fn session_on(addr: SocketAddr, route: &str) -> Session {
    for _ in 0..50 {
        let mut s = Session::new();
        s.get(addr, "/count").await;
        if s.pin() == route {
            return s;
        }
    }
    panic!("no new session landed on {route} in 50 tries");
}

async fn metric(lb: &Running, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(&scrape(lb).await, name, labels).unwrap_or(0.0)
}

/// Two demo nodes sharing a store, named by the zone, and a balancer discovering them (its
/// discovery block extended by `extra`).
async fn two_discovered(dns: &DnsServer, extra: &str) -> (RunningNode, RunningNode, Running) {
    let store = SessionStore::memory();
    let (n0, n1) = (
        node("tomcat-0", &store).await,
        node("tomcat-1", &store).await,
    );
    dns.set_records(&srv_zone(
        &[("tomcat-0", n0.addr), ("tomcat-1", n1.addr)],
        1,
    ))
    .await;
    let lb = balancer(&discovery_yaml(dns, extra, "")).await;
    (n0, n1, lb)
}

#[tokio::test]
async fn nodes_join_leave_come_back_and_are_removed() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let (n0, n1, lb) = two_discovered(&dns, "      drain_timeout: 3s\n").await;
    let both = [("tomcat-0", n0.addr), ("tomcat-1", n1.addr)];
    let addr = lb.listen_addrs[0];
    wait_node(&lb, "tomcat-0", "active", false).await;
    wait_node(&lb, "tomcat-1", "active", false).await;
    let s = status(&lb).await;
    assert_eq!(find(&s, "tomcat-1").unwrap().source, "discovery");
    let d = pool(&s).discovery.clone().expect("discovery status");
    assert_eq!((d.kind.as_str(), d.records, d.stale), ("srv", 2, false));

    let mut pinned = session_on(addr, "tomcat-1").await;
    // tomcat-1 leaves the answer: it drains, its session stays, new sessions go elsewhere.
    dns.set_records(&srv_zone(&both[..1], 1)).await;
    wait_node(&lb, "tomcat-1", "draining", true).await;
    for i in 2..5 {
        let r = pinned.get(addr, "/count").await;
        assert_eq!(
            (r.node(), r.json()["count"].as_u64()),
            ("tomcat-1", Some(i))
        );
    }
    for _ in 0..6 {
        assert_eq!(get(addr, "/count", None).await.node(), "tomcat-0");
    }
    // Named again before its removal: active again.
    dns.set_records(&srv_zone(&both, 1)).await;
    wait_node(&lb, "tomcat-1", "active", false).await;

    // Leaves for good: removed at its drain deadline (its session is still live).
    dns.set_records(&srv_zone(&both[..1], 1)).await;
    wait_node(&lb, "tomcat-1", "draining", true).await;
    wait_gone(&lb, "tomcat-1", WAIT).await;
    let removed = [("pool", "app"), ("source", "discovery")];
    assert_eq!(
        metric(&lb, "stickyroute_nodes_removed_total", &removed).await,
        1.0
    );
    assert_eq!(
        metric(&lb, "stickyroute_nodes_added_total", &removed).await,
        2.0
    );
    assert_eq!(
        metric(&lb, "stickyroute_discovery_nodes", &[("pool", "app")]).await,
        1.0
    );
    // The session moves, rebound to its new node, and keeps its data (shared store).
    let r = pinned.get(addr, "/count").await;
    assert_eq!(
        (r.node(), r.json()["count"].as_u64()),
        ("tomcat-0", Some(5))
    );
    assert_eq!(pinned.pin(), "tomcat-0");
    drop((n0, n1));
}

#[tokio::test]
async fn lookups_follow_the_ttl_within_the_bounds() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let store = SessionStore::memory();
    let n0 = node("tomcat-0", &store).await;
    dns.set_records(&srv_zone(&[("tomcat-0", n0.addr)], 2))
        .await;
    let yaml = discovery_yaml(&dns, "", "").replace("max_interval: 1s", "max_interval: 3s");
    let lb = balancer(&yaml).await;
    let gap = |s: &StatusReport| {
        let d = pool(s).discovery.clone().unwrap();
        d.next_lookup_ms.saturating_sub(d.last_lookup_ms)
    };
    eventually("a lookup at TTL 2", WAIT, || async {
        gap(&status(&lb).await) == 2000
    })
    .await;
    // A TTL above max_interval: the next lookup comes at max_interval.
    dns.set_records(&srv_zone(&[("tomcat-0", n0.addr)], 300))
        .await;
    eventually("a lookup capped at 3s", WAIT, || async {
        gap(&status(&lb).await) == 3000
    })
    .await;
}

#[tokio::test]
async fn failed_lookups_keep_the_last_set() {
    let Some(mut dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let (_n0, _n1, lb) = two_discovered(&dns, "").await;
    wait_node(&lb, "tomcat-1", "active", false).await;
    let errors = [("pool", "app"), ("result", "error")];

    dns.set_servfail(true).await;
    eventually("a SERVFAIL counted", WAIT, || async {
        metric(&lb, "stickyroute_discovery_lookups_total", &errors).await >= 2.0
    })
    .await;
    let s = status(&lb).await;
    let d = pool(&s).discovery.clone().unwrap();
    assert!(
        d.stale && d.error.as_deref().unwrap_or("").contains("SERVFAIL"),
        "{d:?}"
    );
    for r in ["tomcat-0", "tomcat-1"] {
        let n = find(&s, r).unwrap();
        assert_eq!((n.state.as_str(), n.leaving), ("active", false), "{r}");
    }
    assert_eq!(get(lb.listen_addrs[0], "/count", None).await.status, 200);
    dns.set_servfail(false).await;
    eventually("lookups answer again", WAIT, || async {
        pool(&status(&lb).await)
            .discovery
            .clone()
            .unwrap()
            .error
            .is_none()
    })
    .await;

    let before = metric(&lb, "stickyroute_discovery_lookups_total", &errors).await;
    dns.stop().await;
    eventually("a lookup of a stopped server counted", WAIT, || async {
        metric(&lb, "stickyroute_discovery_lookups_total", &errors).await > before
    })
    .await;
    let s = status(&lb).await;
    assert!(pool(&s).discovery.clone().unwrap().stale);
    assert_eq!(
        pool(&s)
            .nodes
            .iter()
            .filter(|n| n.state == "active")
            .count(),
        2
    );
    dns.start_again().await;
    eventually("lookups answer again", WAIT, || async {
        !pool(&status(&lb).await).discovery.clone().unwrap().stale
    })
    .await;
}

#[tokio::test]
async fn an_empty_answer_drains_only_after_the_grace_period() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let store = SessionStore::memory();
    let n0 = node("tomcat-0", &store).await;
    dns.set_records(&srv_zone(&[("tomcat-0", n0.addr)], 1))
        .await;
    let lb = balancer(&discovery_yaml(&dns, "      empty_grace: 2s\n", "")).await;
    wait_node(&lb, "tomcat-0", "active", false).await;
    let emptied = tokio::time::Instant::now();
    dns.set_records(&[]).await;
    let empty = [("pool", "app"), ("result", "empty")];
    eventually("an empty answer", WAIT, || async {
        metric(&lb, "stickyroute_discovery_lookups_total", &empty).await >= 1.0
    })
    .await;
    // Inside the grace period the node stays in service.
    let s = status(&lb).await;
    if emptied.elapsed() < Duration::from_secs(2) {
        assert_eq!(find(&s, "tomcat-0").unwrap().state, "active");
        assert!(pool(&s).discovery.clone().unwrap().stale);
    }
    wait_node(&lb, "tomcat-0", "draining", true).await;
    assert!(
        emptied.elapsed() >= Duration::from_secs(2),
        "drained {:?} after the zone emptied",
        emptied.elapsed()
    );
}

#[tokio::test]
async fn a_route_the_file_has_stays_the_file_node() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let store = SessionStore::memory();
    let file_node = node("tomcat-0", &store).await;
    let other = node("other", &store).await;
    dns.set_records(&srv_zone(&[("tomcat-0", other.addr)], 1))
        .await;
    let nodes = format!(
        "    nodes:\n      - {{ route: tomcat-0, address: \"{}\" }}\n",
        file_node.addr
    );
    let lb = balancer(&discovery_yaml(&dns, "", &nodes)).await;
    eventually("the conflict counted", WAIT, || async {
        metric(
            &lb,
            "stickyroute_discovery_conflicts_total",
            &[("pool", "app")],
        )
        .await
            == 1.0
    })
    .await;
    let s = status(&lb).await;
    let n = find(&s, "tomcat-0").unwrap();
    assert_eq!(
        (n.source.as_str(), n.address.clone()),
        ("file", file_node.addr.to_string())
    );
    assert_eq!(pool(&s).nodes.len(), 1);
    assert_eq!(
        get(lb.listen_addrs[0], "/count", None).await.node(),
        "tomcat-0"
    );
    // Counted once, however many lookups see it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        metric(
            &lb,
            "stickyroute_discovery_conflicts_total",
            &[("pool", "app")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_pool_without_file_nodes_answers_503_until_the_first_answer() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let lb = balancer(&discovery_yaml(&dns, "", "")).await;
    let addr = lb.listen_addrs[0];
    let r = get(addr, "/count", None).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    let store = SessionStore::memory();
    let n0 = node("tomcat-0", &store).await;
    dns.set_records(&srv_zone(&[("tomcat-0", n0.addr)], 1))
        .await;
    eventually("the first node serves", WAIT, || async {
        get(addr, "/count", None).await.status == 200
    })
    .await;
}

/// Two demo nodes on the same port of two loopback addresses.
async fn nodes_on_one_port(store: &SessionStore) -> (RunningNode, RunningNode) {
    for _ in 0..20 {
        let a = node_at(
            "127.0.0.11:0".parse().unwrap(),
            DemoNodeConfig::new("tomcat-a", store.clone()),
        )
        .await;
        let second: SocketAddr = SocketAddr::new([127, 0, 0, 12].into(), a.addr.port());
        if let Ok(l) = tokio::net::TcpListener::bind(second).await {
            let b = RunningNode::start(l, DemoNodeConfig::new("tomcat-b", store.clone())).await;
            return (a, b);
        }
    }
    panic!("no port free on both 127.0.0.11 and 127.0.0.12");
}

#[tokio::test]
async fn address_records_take_their_routes_from_ptr_names() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let store = SessionStore::memory();
    let (a, b) = nodes_on_one_port(&store).await;
    let (ip_a, ip_b) = (Ipv4Addr::new(127, 0, 0, 11), Ipv4Addr::new(127, 0, 0, 12));
    dns.set_records(&[
        Record::a("tomcat", 1, ip_a),
        Record::a("tomcat", 1, ip_b),
        Record::ptr(ip_a, 1, "tomcat-a.pool.test."),
        Record::ptr(ip_b, 1, "tomcat-b.pool.test."),
    ])
    .await;
    let yaml = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  - name: app\n    discovery:\n      host: \"tomcat.{ORIGIN}\"\n      port: {}\n      resolver: \"{}\"\n      min_interval: 100ms\n      max_interval: 1s\n",
        a.addr.port(),
        dns.addr()
    );
    let lb = balancer(&yaml).await;
    wait_node(&lb, "tomcat-a", "active", false).await;
    wait_node(&lb, "tomcat-b", "active", false).await;
    let s = status(&lb).await;
    assert_eq!(find(&s, "tomcat-b").unwrap().address, b.addr.to_string());
    let mut on_b = session_on(lb.listen_addrs[0], "tomcat-b").await;
    assert_eq!(
        on_b.get(lb.listen_addrs[0], "/count").await.node(),
        "tomcat-b"
    );
}

#[tokio::test]
async fn runtime_nodes_through_the_api_and_ctl() {
    let store = SessionStore::memory();
    let (n0, n1, n2) = (
        node("jvm0", &store).await,
        node("jvm1", &store).await,
        node("jvm2", &store).await,
    );
    let yaml = common::with_admin(
        &common::yaml("", &[common::node_line("jvm0", n0.addr, "")]),
        Some("t0k"),
    );
    let lb = balancer(&yaml).await;
    let addr = lb.listen_addrs[0];
    let admin = lb.admin_addr.unwrap();
    let call = |method: &'static str, path: String, body: &'static str, token: bool| async move {
        let auth = if token {
            "Authorization: Bearer t0k\r\n"
        } else {
            ""
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: a\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let text = common::raw(admin, req.as_bytes()).await;
        text[9..12].parse::<u16>().unwrap()
    };
    let body: &'static str =
        Box::leak(format!("{{\"route\":\"jvm1\",\"address\":\"{}\"}}", n1.addr).into_boxed_str());
    assert_eq!(
        call("POST", "/api/v1/nodes?pool=app".into(), body, false).await,
        401
    );
    assert_eq!(
        call("POST", "/api/v1/nodes?pool=nope".into(), body, true).await,
        404
    );
    assert_eq!(
        call(
            "POST",
            "/api/v1/nodes?pool=app".into(),
            "{\"route\":1}",
            true
        )
        .await,
        400
    );
    assert_eq!(
        call(
            "POST",
            "/api/v1/nodes?pool=app".into(),
            "{\"route\":\"a b\",\"address\":\"127.0.0.1:1\"}",
            true
        )
        .await,
        400
    );
    assert_eq!(
        call("POST", "/api/v1/nodes?pool=app".into(), body, true).await,
        201
    );
    assert_eq!(
        call("POST", "/api/v1/nodes?pool=app".into(), body, true).await,
        409
    );
    let s = status(&lb).await;
    assert_eq!(common::node_report(&s, "jvm1").source, "api");
    let _on_jvm1 = session_on(addr, "jvm1").await;
    assert_eq!(
        call("DELETE", "/api/v1/nodes/jvm0?pool=app".into(), "", true).await,
        409
    );
    assert_eq!(
        call("DELETE", "/api/v1/nodes/nope?pool=app".into(), "", true).await,
        404
    );

    // ctl: add jvm2, remove it (no session: gone at once), then time out removing jvm1,
    // which still has a live session.
    let client = admin_client(&lb, Some("t0k"));
    let add = stickyroute::cli::node_changes::AddNodeArgs {
        route: "jvm2".into(),
        address: n2.addr.to_string(),
        pool: "app".into(),
        weight: Some(2),
        domain: None,
    };
    stickyroute::cli::node_changes::add(&client, &add)
        .await
        .unwrap();
    assert_eq!(common::node_report(&status(&lb).await, "jvm2").weight, 2);
    let remove = |route: &str, secs| stickyroute::cli::node_changes::RemoveNodeArgs {
        route: route.into(),
        pool: "app".into(),
        timeout: Duration::from_secs(secs),
    };
    let out = stickyroute::cli::node_changes::remove(&client, &remove("jvm2", 10))
        .await
        .unwrap();
    assert!(out.contains("jvm2: removed from pool app"), "{out}");
    let e = stickyroute::cli::node_changes::remove(&client, &remove("jvm1", 1))
        .await
        .unwrap_err();
    assert_eq!(stickyroute::cli::node_changes::exit_code(&e), 3, "{e}");
    let n = common::node_report(&status(&lb).await, "jvm1").clone();
    assert_eq!((n.state.as_str(), n.leaving), ("draining", true));
    let api = [("pool", "app"), ("source", "api")];
    assert_eq!(
        metric_token(&lb, "stickyroute_nodes_added_total", &api).await,
        2.0
    );
    assert_eq!(
        metric_token(&lb, "stickyroute_nodes_removed_total", &api).await,
        1.0
    );
    // A reload keeps runtime nodes.
    lb.balancer
        .apply(lb.balancer.file_config().as_ref().clone())
        .unwrap();
    assert!(find(&status(&lb).await, "jvm1").is_some());
}

/// `/metrics` on a balancer whose reads are open on loopback (a token is set).
async fn metric_token(lb: &Running, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(lb, name, labels).await
}

/// Where one node of the rolling update is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Named,
    /// Out of the DNS answer, still running: its sessions must still reach it.
    Left,
    /// Being stopped, or stopped.
    Stopped,
}

/// What the load saw.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    not_ok: u64,
    count_breaks: u64,
    /// Requests of a session pinned to a node that had left DNS but still ran, answered there.
    pinned_to_leaving: u64,
    /// Such requests answered elsewhere (must be none).
    left_early: u64,
    /// Sessions whose id was rebound to another node.
    moves: u64,
    errors: Vec<String>,
}

type Phases = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Phase>>>;

/// One load task: `sessions` sessions, one request each per round, `per_round` apart, until
/// `stop`; every answer checked as it comes.
async fn session_load(
    addr: SocketAddr,
    sessions: usize,
    per_round: Duration,
    phases: Phases,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Tally {
    let mut t = Tally::default();
    let mut s: Vec<(Session, u64)> = (0..sessions).map(|_| (Session::new(), 0)).collect();
    let phase = |route: &str| phases.lock().unwrap().get(route).copied();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let round = tokio::time::Instant::now();
        for (session, count) in s.iter_mut() {
            let pin = session.pin().to_string();
            let before = phase(&pin);
            let r = tokio::time::timeout(WAIT, session.get(addr, "/count")).await;
            t.requests += 1;
            let Ok(r) = r else {
                t.not_ok += 1;
                t.errors.push(format!("no answer for a session on {pin}"));
                continue;
            };
            if r.status != 200 {
                t.not_ok += 1;
                t.errors.push(format!(
                    "{} from a session on {pin}: {}",
                    r.status,
                    r.text()
                ));
                continue;
            }
            let got = r.json()["count"].as_u64().unwrap_or(0);
            if got != *count + 1 {
                t.count_breaks += 1;
                t.errors
                    .push(format!("count {got} after {count} (session on {pin})"));
            }
            *count = got;
            if !pin.is_empty() && session.pin() != pin {
                t.moves += 1;
            }
            if before == Some(Phase::Left) && phase(&pin) == Some(Phase::Left) {
                if r.node() == pin {
                    t.pinned_to_leaving += 1;
                } else {
                    t.left_early += 1;
                    t.errors.push(format!(
                        "a session on leaving {pin} answered by {}",
                        r.node()
                    ));
                }
            }
        }
        tokio::time::sleep(per_round.saturating_sub(round.elapsed())).await;
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_under_load_loses_no_request_and_no_session() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let store = SessionStore::memory();
    let mut running: Vec<(String, RunningNode)> = Vec::new();
    for i in 0..3 {
        let r = format!("tomcat-{i}");
        running.push((r.clone(), node(&r, &store).await));
    }
    let zone = |nodes: &[(String, RunningNode)]| {
        let list: Vec<(&str, SocketAddr)> =
            nodes.iter().map(|(r, n)| (r.as_str(), n.addr)).collect();
        srv_zone(&list, 1)
    };
    dns.set_records(&zone(&running)).await;
    let lb = balancer(&discovery_yaml(&dns, "      drain_timeout: 3s\n", "")).await;
    let addr = lb.listen_addrs[0];
    for (r, _) in &running {
        wait_node(&lb, r, "active", false).await;
    }
    let phases: Phases = Default::default();
    for (r, _) in &running {
        phases.lock().unwrap().insert(r.clone(), Phase::Named);
    }
    // 200 sessions, 20 tasks of 10, one request per session every 2 s: 100 requests/s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(session_load(
                addr,
                10,
                Duration::from_secs(2),
                phases.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Replace each node: the new one joins the zone, the old one leaves it, runs on for a
    // grace period (its sessions still reach it), then stops (they fail over, rebound).
    for i in 0..3 {
        let new = format!("tomcat-{}", i + 3);
        running.push((new.clone(), node(&new, &store).await));
        phases.lock().unwrap().insert(new.clone(), Phase::Named);
        dns.set_records(&zone(&running)).await;
        wait_node(&lb, &new, "active", false).await;
        let (old, old_node) = running.remove(0);
        dns.set_records(&zone(&running)).await;
        wait_node(&lb, &old, "draining", true).await;
        phases.lock().unwrap().insert(old.clone(), Phase::Left);
        tokio::time::sleep(Duration::from_secs(2)).await;
        phases.lock().unwrap().insert(old.clone(), Phase::Stopped);
        old_node.stop().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = Tally::default();
    for task in load {
        let t = task.await.unwrap();
        total.requests += t.requests;
        total.not_ok += t.not_ok;
        total.count_breaks += t.count_breaks;
        total.pinned_to_leaving += t.pinned_to_leaving;
        total.left_early += t.left_early;
        total.moves += t.moves;
        total.errors.extend(t.errors);
    }
    for old in ["tomcat-0", "tomcat-1", "tomcat-2"] {
        wait_gone(&lb, old, WAIT).await;
    }
    let s = status(&lb).await;
    let live: Vec<&str> = pool(&s).nodes.iter().map(|n| n.route.as_str()).collect();
    eprintln!(
        "rolling update: {} requests, {} not 200, {} count breaks, {} answered by a leaving node before it stopped, {} moved early, {} session moves; nodes now {live:?}",
        total.requests, total.not_ok, total.count_breaks, total.pinned_to_leaving, total.left_early, total.moves
    );
    assert!(
        total.errors.is_empty(),
        "{:#?}",
        &total.errors[..total.errors.len().min(20)]
    );
    assert_eq!(live, ["tomcat-3", "tomcat-4", "tomcat-5"]);
    // Every session started on an old node; each moved once per node it outlived.
    assert!(total.moves >= 200, "{} moves", total.moves);
    assert!(total.pinned_to_leaving > 0);
    // At least 8 rounds of the 200 sessions went through the update.
    assert!(total.requests >= 1600, "{} requests", total.requests);
}

#[tokio::test]
async fn an_operator_state_outlasts_leaving_and_coming_back() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let (n0, n1, lb) = two_discovered(&dns, "").await;
    let both = [("tomcat-0", n0.addr), ("tomcat-1", n1.addr)];
    wait_node(&lb, "tomcat-1", "active", false).await;
    let ctl = admin_client(&lb, None);
    ctl.set_state(
        "tomcat-1",
        stickyroute::core::node_state::NodeState::Standby,
        None,
    )
    .await
    .unwrap();
    // Leaving does not drain a standby node, and coming back does not activate it.
    dns.set_records(&srv_zone(&both[..1], 1)).await;
    wait_node(&lb, "tomcat-1", "standby", true).await;
    dns.set_records(&srv_zone(&both, 1)).await;
    wait_node(&lb, "tomcat-1", "standby", false).await;
    // An active node drains when it leaves; one an operator disabled while it was away stays
    // disabled when it comes back.
    ctl.set_state(
        "tomcat-1",
        stickyroute::core::node_state::NodeState::Active,
        None,
    )
    .await
    .unwrap();
    dns.set_records(&srv_zone(&both[..1], 1)).await;
    wait_node(&lb, "tomcat-1", "draining", true).await;
    ctl.set_state(
        "tomcat-1",
        stickyroute::core::node_state::NodeState::Disabled,
        None,
    )
    .await
    .unwrap();
    dns.set_records(&srv_zone(&both, 1)).await;
    wait_node(&lb, "tomcat-1", "disabled", false).await;
}
