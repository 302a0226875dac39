//! Session rebinding on failover, through the real balancer and real stores: `translate`
//! (shared memory map standing in for replication), `rename` against Redis, PostgreSQL and
//! MariaDB, concurrent failover, an unreachable store, two balancers agreeing, and `backend`
//! with a JvmRouteBinderValve-like node.
//!
//! Every case runs over HTTP/1.1 (the balancer's native path) and over h2c (its hyper path), as
//! `NAME::http1` and `NAME::h2c`.

#[macro_use]
mod common;
#[path = "common/cookie_jar.rs"]
mod cookie_jar;

use std::net::SocketAddr;
#[cfg(feature = "redis-store")]
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::*;
use cookie_jar::CookieJar;
use hyper::Method;
use stickyroute::control::Running;
use stickyroute::demo::node::{DemoNodeConfig, RunningNode};
use stickyroute::store::SessionStore;
#[cfg(any(feature = "redis-store", feature = "sql-store"))]
use {std::time::Duration, stickyroute::demo::node::parse_store_arg};

fn count_of(r: &Resp) -> i64 {
    r.json()["count"]
        .as_i64()
        .unwrap_or_else(|| panic!("no count: {}", r.text()))
}

/// Three demo nodes on one store.
async fn three_nodes(store: &SessionStore, valve: bool) -> Vec<RunningNode> {
    let mut nodes = Vec::new();
    for route in ["jvm1", "jvm2", "jvm3"] {
        let mut cfg = DemoNodeConfig::new(route, store.clone());
        cfg.binder_valve = valve;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        nodes.push(RunningNode::start(listener, cfg).await);
    }
    nodes
}

fn lines(nodes: &[RunningNode]) -> Vec<String> {
    ["jvm1", "jvm2", "jvm3"]
        .iter()
        .zip(nodes)
        .map(|(r, n)| node_line(r, n.addr, "domain: a"))
        .collect()
}

/// Three demo nodes keeping sessions in Redis, and a `rename` pool over them using that Redis.
#[cfg(feature = "redis-store")]
async fn redis_rename_pool(url: &str) -> (SessionStore, Vec<RunningNode>, String) {
    let store = parse_store_arg(url, Duration::from_secs(5)).unwrap();
    let nodes = three_nodes(&store, false).await;
    let store_yaml = format!("{{ kind: redis, url: \"{url}\", key: \"session:{{id}}\" }}");
    let config = yaml(
        &format!("binder: rename\nstore: {store_yaml}"),
        &lines(&nodes),
    );
    (store, nodes, config)
}

/// Creates a session directly on `node` (as if it had been created there) and returns its id.
async fn session_on(node: SocketAddr) -> String {
    let r = get(node, "/count", None).await;
    assert_eq!(count_of(&r), 1);
    let ids = r.session_cookies();
    assert_eq!(ids.len(), 1, "{:?}", r.headers);
    ids[0].clone()
}

on_both_paths!(translate_moves_the_session_and_never_bounces_back);
async fn translate_moves_the_session_and_never_bounces_back(proto: Proto) {
    let store = SessionStore::memory();
    let mut nodes = three_nodes(&store, false).await;
    let lb = balancer(&yaml("binder: translate", &lines(&nodes))).await;
    let id = session_on(nodes[0].addr).await;
    assert!(id.ends_with(".jvm1"));

    let mut c = proto.open(lb.addr()).await;
    let r = c.get("/count", Some(&id)).await;
    assert_eq!((r.node(), count_of(&r)), ("jvm1", 2));
    assert!(
        r.session_cookies().is_empty(),
        "a sticky hit needs no cookie"
    );

    // jvm1 dies: the very next request continues the count on another node and rebinds.
    let jvm1_addr = nodes[0].addr;
    nodes.remove(0).stop().await;
    let r = c.get("/count", Some(&id)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(count_of(&r), 3, "session data lost on failover");
    let new_node = r.node().to_string();
    assert_ne!(new_node, "jvm1");
    assert_eq!(r.seen(), id, "translate must forward the original id");
    let cookies = r.session_cookies();
    let client_id = format!("{id}.{new_node}");
    assert_eq!(cookies, vec![client_id.clone()], "{:?}", r.headers);
    let set_cookie = r.header("set-cookie").unwrap();
    assert!(
        set_cookie.contains("Path=/") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );

    // 20 further requests stay on the new node; the backend sees X.jvm1 every time.
    for i in 0..20 {
        let r = c.get("/count", Some(&client_id)).await;
        assert_eq!(r.node(), new_node);
        assert_eq!(r.seen(), id);
        assert_eq!(count_of(&r), 4 + i);
        for cookie in r.session_cookies() {
            assert_eq!(
                cookie, client_id,
                "backend re-issue must be rewritten to the client id"
            );
        }
    }

    // jvm1 comes back: moved sessions stay where they went.
    let jvm1 = node_at(jvm1_addr, DemoNodeConfig::new("jvm1", store.clone())).await;
    for _ in 0..20 {
        let r = c.get("/count", Some(&client_id)).await;
        assert_eq!(r.node(), new_node, "bounced back to the restarted node");
    }

    // A new id issued by the answering node (login) passes through untouched.
    let cookie = format!("JSESSIONID={client_id}");
    let r = c
        .request(Method::POST, "/login", &[("cookie", &cookie)], Bytes::new())
        .await;
    assert_eq!(r.node(), new_node);
    let issued = r.session_cookies();
    assert_eq!(issued.len(), 1, "{:?}", r.headers);
    assert!(
        issued[0].ends_with(&format!(".{new_node}")) && !issued[0].starts_with(&id),
        "{issued:?}"
    );
    assert_eq!(
        issued[0].matches('.').count(),
        1,
        "login id was translated: {issued:?}"
    );

    // The failover header names the original id and route; path parameters are translated too.
    let lb2_nodes = vec![
        node_line("jvm1", dead_addr().await, "domain: a"),
        node_line("jvm2", nodes[0].addr, "domain: a"),
    ];
    let lb2 = balancer(&yaml("", &lb2_nodes)).await;
    let who = proto
        .get(lb2.addr(), "/whoami", Some("P.jvm1"))
        .await
        .json();
    assert_eq!(
        who["headers"]["x-session-failover-from"], "P.jvm1; route=jvm1",
        "{who}"
    );
    let who = proto
        .get(lb2.addr(), "/whoami;jsessionid=P.jvm1.jvm2?q=1", None)
        .await
        .json();
    assert_eq!(who["path"], "/whoami;jsessionid=P.jvm1", "{who}");
    assert_eq!(who["session_seen"], "P.jvm1", "{who}");
    lb2.stop().await;

    jvm1.stop().await;
    lb.stop().await;
}

/// The rename flow against one real store kind.
#[cfg(any(feature = "redis-store", feature = "sql-store"))]
async fn rename_flow(proto: Proto, url: &str, store_yaml: &str) {
    let store = parse_store_arg(url, Duration::from_secs(5)).unwrap();
    store.ensure_schema().await.unwrap();
    let mut nodes = three_nodes(&store, false).await;
    let lb = balancer(&yaml(
        &format!("binder: rename\nstore: {store_yaml}"),
        &lines(&nodes),
    ))
    .await;
    let id = session_on(nodes[0].addr).await;
    let base = id.strip_suffix(".jvm1").unwrap().to_string();
    let r = proto.get(lb.addr(), "/count", Some(&id)).await;
    assert_eq!((r.node(), count_of(&r)), ("jvm1", 2));

    nodes.remove(0).stop().await;
    let r = proto.get(lb.addr(), "/count", Some(&id)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let new_node = r.node().to_string();
    let new_id = format!("{base}.{new_node}");
    assert_eq!(count_of(&r), 3, "count lost in rename");
    assert_eq!(r.seen(), new_id, "rename must forward the new id");
    assert_eq!(r.session_cookies(), vec![new_id.clone()]);
    assert!(
        store.load(&new_id).await.unwrap().is_some(),
        "store lacks {new_id}"
    );
    assert!(
        store.load(&id).await.unwrap().is_none(),
        "store still holds {id}"
    );

    let r = proto.get(lb.addr(), "/count", Some(&new_id)).await;
    assert_eq!((r.node(), count_of(&r)), (new_node.as_str(), 4));
    assert!(r.session_cookies().is_empty());
    let stats = &lb.balancer.snapshot().pools[0].rt.stats;
    assert_eq!(
        stats.rebinds[0].load(Ordering::Relaxed),
        1,
        "one successful rebind counted"
    );
    store.remove(&new_id).await.unwrap();
    lb.stop().await;
}

on_both_paths!(
    #[cfg(feature = "redis-store")]
    rename_against_redis
);
#[cfg(feature = "redis-store")]
async fn rename_against_redis(proto: Proto) {
    let Some(url) = service_url("TEST_REDIS_URL", "rename_against_redis") else {
        return;
    };
    rename_flow(
        proto,
        &url,
        &format!("{{ kind: redis, url: \"{url}\", key: \"session:{{id}}\" }}"),
    )
    .await;
}

/// A listener that accepts connections and closes each at once, reading nothing: a node whose
/// every exchange fails before an answer. Counts the connections it accepted.
#[cfg(feature = "redis-store")]
async fn closing_listener() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            drop(s);
        }
    });
    (addr, accepted)
}

/// Whether Redis holds `key`.
#[cfg(feature = "redis-store")]
async fn redis_has(url: &str, key: &str) -> bool {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<bool>(&mut c)
        .await
        .unwrap()
}

on_both_paths!(
    #[cfg(feature = "redis-store")]
    rename_moves_on_from_a_failover_target_that_closes_without_reading
);
/// Under `rename`, the session `X.jvm1` of the down jvm1 fails over to jvm2 (its `redirect`),
/// which accepts and closes without reading: the session was renamed to `X.jvm2` for it. The
/// request goes on to jvm3, and the rename to `X.jvm3` starts from the id the store holds
/// now, `X.jvm2`: jvm3 gets `X.jvm3` with the session's data, the store holds it under
/// `X.jvm3` only, and the client gets that id in one `Set-Cookie`.
#[cfg(feature = "redis-store")]
async fn rename_moves_on_from_a_failover_target_that_closes_without_reading(proto: Proto) {
    let Some(url) = service_url(
        "TEST_REDIS_URL",
        "rename_moves_on_from_a_failover_target_that_closes_without_reading",
    ) else {
        return;
    };
    let store = parse_store_arg(&url, Duration::from_secs(5)).unwrap();
    let jvm3 = node("jvm3", &store).await;
    let (closer, closer_accepted) = closing_listener().await;
    let store_yaml = format!("{{ kind: redis, url: \"{url}\", key: \"session:{{id}}\" }}");
    let lb = balancer(&yaml(
        &format!("binder: rename\nstore: {store_yaml}"),
        &[
            node_line("jvm1", dead_addr().await, "redirect: jvm2"),
            node_line("jvm2", closer, ""),
            node_line("jvm3", jvm3.addr, ""),
        ],
    ))
    .await;
    let base = format!("{:032X}", rand::random::<u128>());
    let id = |route: &str| format!("{base}.{route}");
    let record = stickyroute::store::SessionRecord {
        data: serde_json::json!({ "count": 5 }),
        last_access_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        max_inactive_secs: 600,
        valid: true,
    };
    store.save(&id("jvm1"), &record).await.unwrap();

    let r = proto.get(lb.addr(), "/count", Some(&id("jvm1"))).await;
    let set_cookies: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let mut held = Vec::new();
    for route in ["jvm1", "jvm2", "jvm3"] {
        if redis_has(&url, &format!("session:{}", id(route))).await {
            held.push(id(route));
        }
    }
    let stored_count = match store.load(&id("jvm3")).await {
        Ok(Some(rec)) => rec.data["count"].as_i64(),
        _ => None,
    };
    // The test's keys go, whatever the outcome.
    for route in ["jvm1", "jvm2", "jvm3"] {
        let _ = store.remove(&id(route)).await;
    }
    for cookie in r.session_cookies() {
        let _ = store.remove(&cookie).await;
    }
    lb.stop().await;
    eprintln!(
        "{proto}: {} from {} which saw {:?}, count {:?}; Redis holds {held:?} (count under \
         {}: {stored_count:?}); Set-Cookie {set_cookies:?}",
        r.status,
        r.header("x-node").unwrap_or("-"),
        r.seen(),
        r.json()["count"].as_i64(),
        id("jvm3"),
    );

    assert!(
        closer_accepted.load(Ordering::Relaxed) > 0,
        "jvm2 was never tried: the case needs the failover to try it first"
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.node(), "jvm3");
    assert_eq!(r.seen(), id("jvm3"), "the id jvm3 received");
    assert_eq!(count_of(&r), 6, "the session's data did not follow it");
    assert_eq!(held, [id("jvm3")], "the ids Redis holds the session under");
    assert_eq!(
        stored_count,
        Some(6),
        "the count stored under {}",
        id("jvm3")
    );
    assert_eq!(
        set_cookies.len(),
        1,
        "one Set-Cookie for the client: {set_cookies:?}"
    );
    assert_eq!(r.session_cookies(), [id("jvm3")], "{set_cookies:?}");
}

on_both_paths!(
    #[cfg(feature = "sql-store")]
    rename_against_postgres
);
#[cfg(feature = "sql-store")]
async fn rename_against_postgres(proto: Proto) {
    let Some(url) = service_url("TEST_POSTGRES_URL", "rename_against_postgres") else {
        return;
    };
    rename_flow(
        proto,
        &url,
        &format!("{{ kind: postgres, url: \"{url}\" }}"),
    )
    .await;
}

on_both_paths!(
    #[cfg(feature = "sql-store")]
    rename_against_mariadb
);
#[cfg(feature = "sql-store")]
async fn rename_against_mariadb(proto: Proto) {
    let Some(url) = service_url("TEST_MYSQL_URL", "rename_against_mariadb") else {
        return;
    };
    rename_flow(proto, &url, &format!("{{ kind: mysql, url: \"{url}\" }}")).await;
}

on_both_paths!(
    #[cfg(feature = "redis-store")]
    concurrent_failover_of_one_session_does_not_fork_it
);
#[cfg(feature = "redis-store")]
async fn concurrent_failover_of_one_session_does_not_fork_it(proto: Proto) {
    let Some(url) = service_url(
        "TEST_REDIS_URL",
        "concurrent_failover_of_one_session_does_not_fork_it",
    ) else {
        return;
    };
    let (store, mut nodes, config) = redis_rename_pool(&url).await;
    let lb = balancer(&config).await;
    let id = session_on(nodes[0].addr).await;
    let base = id.strip_suffix(".jvm1").unwrap().to_string();
    nodes.remove(0).stop().await;

    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (addr, id) = (lb.addr(), id.clone());
        tasks.push(tokio::spawn(async move {
            let r = proto.get(addr, "/count", Some(&id)).await;
            (
                r.status.as_u16(),
                r.node().to_string(),
                r.seen().to_string(),
            )
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert!(results.iter().all(|(s, _, _)| *s == 200), "{results:?}");
    let node = &results[0].1;
    assert!(
        results.iter().all(|(_, n, _)| n == node),
        "answered by several nodes: {results:?}"
    );
    let new_id = format!("{base}.{node}");
    assert!(
        results.iter().all(|(_, _, seen)| *seen == new_id),
        "{results:?}"
    );
    let mut live = Vec::new();
    for candidate in ["jvm1", "jvm2", "jvm3"] {
        let cid = format!("{base}.{candidate}");
        if store.load(&cid).await.unwrap().is_some() {
            live.push(cid);
        }
    }
    assert_eq!(live, vec![new_id.clone()], "the session forked or vanished");
    store.remove(&new_id).await.unwrap();
    lb.stop().await;
}

on_both_paths!(
    #[cfg(feature = "redis-store")]
    unreachable_store_follows_on_store_error
);
#[cfg(feature = "redis-store")]
async fn unreachable_store_follows_on_store_error(proto: Proto) {
    let shared = SessionStore::memory();
    let nodes = three_nodes(&shared, false).await;
    let dead = dead_addr().await;
    let store_yaml = |policy: &str| {
        format!(
            "{{ kind: redis, url: \"redis://{dead}/\", timeout: 300ms, on_store_error: {policy} }}"
        )
    };
    let node_lines = vec![
        node_line("jvm1", dead_addr().await, "domain: a"),
        node_line("jvm2", nodes[1].addr, "domain: a"),
    ];
    let id = session_on(nodes[1].addr).await.replace(".jvm2", ".jvm1");
    // (the memory map holds the session under ...jvm2; store it under ...jvm1 as well)
    let rec = shared
        .load(&id.replace(".jvm1", ".jvm2"))
        .await
        .unwrap()
        .unwrap();
    shared.save(&id, &rec).await.unwrap();

    let lb = balancer(&yaml(
        &format!("binder: rename\nstore: {}", store_yaml("forward_old_id")),
        &node_lines,
    ))
    .await;
    let r = proto.get(lb.addr(), "/count", Some(&id)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.node(), "jvm2");
    assert_eq!(r.seen(), id, "forward_old_id must forward the old id");
    assert!(
        r.session_cookies().is_empty(),
        "no rebind without the store"
    );
    assert_eq!(count_of(&r), 2);
    let stats = &lb.balancer.snapshot().pools[0].rt.stats;
    assert_eq!(stats.store_errors.load(Ordering::Relaxed), 1);
    lb.stop().await;

    let lb = balancer(&yaml(
        &format!("binder: rename\nstore: {}", store_yaml("fail")),
        &node_lines,
    ))
    .await;
    let r = proto.get(lb.addr(), "/count", Some(&id)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("store"), "{}", r.text());
    assert!(r.header("retry-after").is_some());
    lb.stop().await;
}

on_both_paths!(two_balancers_produce_the_same_client_id);
async fn two_balancers_produce_the_same_client_id(proto: Proto) {
    let store = SessionStore::memory();
    let mut nodes = three_nodes(&store, false).await;
    let config = yaml("binder: translate", &lines(&nodes));
    let (a, b): (Running, Running) = (balancer(&config).await, balancer(&config).await);
    let id = session_on(nodes[0].addr).await;
    assert_eq!(
        proto.get(a.addr(), "/count", Some(&id)).await.node(),
        "jvm1"
    );
    assert_eq!(
        proto.get(b.addr(), "/count", Some(&id)).await.node(),
        "jvm1"
    );
    nodes.remove(0).stop().await;
    // Both balancers see the old cookie (e.g. concurrent tabs) and must rebind it alike.
    let ra = proto.get(a.addr(), "/count", Some(&id)).await;
    let rb = proto.get(b.addr(), "/count", Some(&id)).await;
    assert_eq!(ra.session_cookies(), rb.session_cookies());
    assert_eq!(ra.node(), rb.node());
    let client_id = ra.session_cookies()[0].clone();
    for lb in [&a, &b, &a, &b] {
        let r = proto.get(lb.addr(), "/count", Some(&client_id)).await;
        assert_eq!(r.node(), ra.node());
    }
    assert_eq!(
        count_of(&proto.get(a.addr(), "/count", Some(&client_id)).await),
        10
    ); // 1 direct + 2 + 2 + 4 + 1
    a.stop().await;
    b.stop().await;
}

on_both_paths!(
    #[cfg(feature = "redis-store")]
    two_balancers_agree_on_rename_through_redis
);
#[cfg(feature = "redis-store")]
async fn two_balancers_agree_on_rename_through_redis(proto: Proto) {
    let Some(url) = service_url(
        "TEST_REDIS_URL",
        "two_balancers_agree_on_rename_through_redis",
    ) else {
        return;
    };
    let (store, mut nodes, config) = redis_rename_pool(&url).await;
    let (a, b) = (balancer(&config).await, balancer(&config).await);
    let id = session_on(nodes[0].addr).await;
    nodes.remove(0).stop().await;
    let ra = proto.get(a.addr(), "/count", Some(&id)).await;
    let rb = proto.get(b.addr(), "/count", Some(&id)).await;
    assert_eq!(ra.status, 200);
    assert_eq!(rb.status, 200);
    assert_eq!(
        ra.session_cookies(),
        rb.session_cookies(),
        "balancers disagree"
    );
    assert_eq!((count_of(&ra), count_of(&rb)), (2, 3));
    let b_stats = &b.balancer.snapshot().pools[0].rt.stats;
    assert_eq!(
        b_stats.rebinds[1].load(Ordering::Relaxed),
        1,
        "second balancer saw AlreadyRenamed"
    );
    store.remove(&ra.session_cookies()[0]).await.unwrap();
    a.stop().await;
    b.stop().await;
}

on_both_paths!(backend_binder_leaves_the_rename_to_the_valve);
async fn backend_binder_leaves_the_rename_to_the_valve(proto: Proto) {
    let store = SessionStore::memory();
    let mut nodes = three_nodes(&store, true).await;
    let lb = balancer(&yaml("binder: backend", &lines(&nodes))).await;
    let id = session_on(nodes[0].addr).await;
    let base = id.strip_suffix(".jvm1").unwrap().to_string();
    nodes.remove(0).stop().await;
    let r = proto.get(lb.addr(), "/count", Some(&id)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen(), id, "backend binder forwards the id unchanged");
    let new_node = r.node().to_string();
    let new_id = format!("{base}.{new_node}");
    let set_cookies: Vec<&str> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        set_cookies.len(),
        1,
        "the balancer added a cookie of its own: {set_cookies:?}"
    );
    assert_eq!(r.session_cookies(), vec![new_id.clone()]);
    assert_eq!(count_of(&r), 2);
    let r = proto.get(lb.addr(), "/count", Some(&new_id)).await;
    assert_eq!(
        r.node(),
        new_node,
        "not a sticky hit after the valve's rename"
    );
    assert!(r.session_cookies().is_empty());
    assert_eq!(count_of(&r), 3);
    lb.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The application's cookie path, several forms of one session, ids without a route.

/// Three demo nodes on one store, each like a Tomcat application: under `context` (its cookie
/// `Path=<context>`), with or without the route in its ids.
async fn app_nodes(store: &SessionStore, context: &str, route_in_ids: bool) -> Vec<RunningNode> {
    let mut nodes = Vec::new();
    for route in ["jvm1", "jvm2", "jvm3"] {
        nodes.push(
            node_at(
                dead_addr().await,
                app_node_cfg(route, store, context, route_in_ids),
            )
            .await,
        );
    }
    nodes
}

fn app_node_cfg(
    route: &str,
    store: &SessionStore,
    context: &str,
    route_in_ids: bool,
) -> DemoNodeConfig {
    let mut cfg = DemoNodeConfig::new(route, store.clone());
    cfg.context_path = context.to_string();
    cfg.route_in_ids = route_in_ids;
    cfg
}

/// A GET with the cookies a browser holding `jar` sends for `path`; stores what comes back.
async fn browse(proto: Proto, jar: &mut CookieJar, addr: SocketAddr, path: &str) -> Resp {
    let cookie = jar.cookie_header(path);
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    let r = proto
        .open(addr)
        .await
        .request(Method::GET, path, &headers, Bytes::new())
        .await;
    jar.store_all(
        path,
        r.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    r
}

fn held(jar: &CookieJar) -> Vec<String> {
    jar.named("JSESSIONID")
        .iter()
        .map(|c| c.to_string())
        .collect()
}

on_both_paths!(translate_rebinds_with_the_applications_cookie_path_and_never_bounces_back);
/// The seeds' Tomcat setup in miniature: nodes whose session cookie has `Path=/app`, a pool at
/// `/` with default cookie settings. After failover the balancer's cookie takes the path the
/// nodes set, so it replaces the application's: the browser holds one `JSESSIONID`, and the
/// session does not go back when its old node returns (it would, with a second cookie).
async fn translate_rebinds_with_the_applications_cookie_path_and_never_bounces_back(proto: Proto) {
    let store = SessionStore::memory();
    let mut nodes = app_nodes(&store, "/app", true).await;
    let config = yaml(
        "binder: translate\npath_prefix: /\nfailover: { recover_after: 200ms }",
        &lines(&nodes),
    );
    let lb = balancer(&config).await;
    let mut jar = CookieJar::new();

    let r = browse(proto, &mut jar, lb.addr(), "/app/count").await;
    assert_eq!((r.status.as_u16(), count_of(&r)), (200, 1), "{}", r.text());
    let home = r.node().to_string();
    let id = r.json()["session"].as_str().unwrap().to_string();
    assert_eq!(held(&jar), [format!("JSESSIONID={id} (Path=/app)")]);
    for n in 2..=5 {
        let r = browse(proto, &mut jar, lb.addr(), "/app/count").await;
        assert_eq!((r.node(), count_of(&r)), (home.as_str(), n));
    }

    // The serving node dies: the next request continues elsewhere and re-pins the client,
    // with the application's path.
    let home_ix = ["jvm1", "jvm2", "jvm3"]
        .iter()
        .position(|r| *r == home)
        .unwrap();
    let home_addr = nodes[home_ix].addr;
    nodes.remove(home_ix).stop().await;
    let r = browse(proto, &mut jar, lb.addr(), "/app/count").await;
    assert_eq!((r.status.as_u16(), count_of(&r)), (200, 6), "{}", r.text());
    let new_node = r.node().to_string();
    assert_ne!(new_node, home);
    assert_eq!(r.seen(), id);
    let client_id = format!("{id}.{new_node}");
    let set_cookie = r.header("set-cookie").unwrap();
    assert!(
        set_cookie.starts_with(&format!("JSESSIONID={client_id};"))
            && set_cookie.contains("Path=/app")
            && !set_cookie.contains("Path=/;"),
        "{set_cookie}"
    );
    assert_eq!(
        held(&jar),
        [format!("JSESSIONID={client_id} (Path=/app)")],
        "the balancer's cookie must replace the application's"
    );

    // The old node returns and is routable again (the stale id alone would go there) ...
    let cfg = app_node_cfg(&home, &store, "/app", true);
    let back = node_at(home_addr, cfg).await;
    eventually(
        "the restarted node takes its ids again",
        DEADLINE,
        || async {
            let r = proto
                .get(lb.addr(), "/app/whoami", Some(&format!("PROBE.{home}")))
                .await;
            r.status == 200 && r.node() == home
        },
    )
    .await;
    // ... but the browser stays where its session went.
    for n in 7..=16 {
        let r = browse(proto, &mut jar, lb.addr(), "/app/count").await;
        assert_eq!(
            (r.node(), count_of(&r)),
            (new_node.as_str(), n),
            "bounced back; the browser holds {:?}",
            held(&jar)
        );
        assert_eq!(r.seen(), id);
    }
    assert_eq!(held(&jar).len(), 1, "{:?}", held(&jar));
    back.stop().await;
    lb.stop().await;
}

on_both_paths!(the_most_rebound_form_of_a_session_wins_and_overwrites_the_stale_one);
/// A client that still carries both forms of one session (`X.jvm1` under the application's
/// path, `X.jvm1.jvm2` under another, as written before the path was known): the rebound form
/// wins in either order, although `X.jvm1` names a live node, and it is written again with the
/// application's path, which overwrites the stale one. A balancer that learned nothing yet
/// routes the same way but cannot overwrite, so it writes nothing.
async fn the_most_rebound_form_of_a_session_wins_and_overwrites_the_stale_one(proto: Proto) {
    let store = SessionStore::memory();
    let nodes = app_nodes(&store, "/app", true).await;
    let config = yaml("binder: translate\npath_prefix: /", &lines(&nodes));
    let lb = balancer(&config).await;
    // A new session through the balancer: it learns the nodes' `Path=/app`.
    let r = proto.get(lb.addr(), "/app/count", None).await;
    let home = r.node().to_string();
    let id = r.json()["session"].as_str().unwrap().to_string();
    let other = ["jvm1", "jvm2", "jvm3"]
        .into_iter()
        .find(|n| *n != home)
        .unwrap();
    let rebound = format!("{id}.{other}");
    let fresh = balancer(&config).await; // has seen no cookie of the nodes

    let mut count = 1;
    for (lb_addr, learned) in [(lb.addr(), true), (fresh.addr(), false)] {
        for cookie in [
            format!("JSESSIONID={id}; JSESSIONID={rebound}"),
            format!("JSESSIONID={rebound}; JSESSIONID={id}"),
        ] {
            let r = proto
                .open(lb_addr)
                .await
                .request(
                    Method::GET,
                    "/app/count",
                    &[("cookie", &cookie)],
                    Bytes::new(),
                )
                .await;
            count += 1;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!((r.node(), count_of(&r)), (other, count), "{cookie}");
            assert_eq!(r.seen(), id, "translate forwards the original id");
            let set: Vec<&str> = r
                .headers
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            if learned {
                assert_eq!(set, [format!("JSESSIONID={rebound}; HttpOnly; Path=/app")]);
            } else {
                assert!(
                    set.is_empty(),
                    "wrote a cookie with an unknown path: {set:?}"
                );
            }
        }
    }
    // The rebound form alone needs no cookie.
    let r = proto.get(lb.addr(), "/app/count", Some(&rebound)).await;
    assert_eq!(r.node(), other);
    assert!(r.header("set-cookie").is_none(), "{:?}", r.headers);
    fresh.stop().await;
    lb.stop().await;
}

on_both_paths!(translate_keeps_an_id_without_route_as_the_node_issued_it);
/// Nodes without `jvmRoute` issue ids without a route (`NOROUTEID123`). Under `translate` the
/// client is pinned with `NOROUTEID123..jvm2`, and the node receives `NOROUTEID123`, exactly as
/// it issued it, on every request after, through a second failover too.
async fn translate_keeps_an_id_without_route_as_the_node_issued_it(proto: Proto) {
    let store = SessionStore::memory();
    let mut nodes = app_nodes(&store, "", false).await;
    let lb = balancer(&yaml("binder: translate", &lines(&nodes))).await;
    let mut c = proto.open(lb.addr()).await;
    let r = c.get("/count", None).await;
    let ids = r.session_cookies();
    assert_eq!(ids.len(), 1, "{:?}", r.headers);
    let id = ids[0].clone();
    assert!(!id.contains('.'), "a node without a route issued {id}");

    // The id names no node: the balancer picks one and pins the client to it.
    let r = c.get("/count", Some(&id)).await;
    assert_eq!((r.seen(), count_of(&r)), (id.as_str(), 2));
    let pinned = r.node().to_string();
    let client_id = format!("{id}..{pinned}");
    assert_eq!(r.session_cookies(), std::slice::from_ref(&client_id));
    let mut count = 2;
    for _ in 0..10 {
        let r = c.get("/count", Some(&client_id)).await;
        count += 1;
        assert_eq!(
            (r.node(), r.seen(), count_of(&r)),
            (pinned.as_str(), id.as_str(), count),
            "the node must get its own id back"
        );
        assert!(r.session_cookies().is_empty());
    }

    // The pinned node dies: the session moves on, still under the node's id.
    let ix = ["jvm1", "jvm2", "jvm3"]
        .iter()
        .position(|r| *r == pinned)
        .unwrap();
    nodes.remove(ix).stop().await;
    let r = c.get("/count", Some(&client_id)).await;
    count += 1;
    assert_eq!(
        (r.seen(), count_of(&r)),
        (id.as_str(), count),
        "{}",
        r.text()
    );
    let moved = r.node().to_string();
    assert_ne!(moved, pinned);
    let client_id = format!("{id}..{moved}");
    assert_eq!(r.session_cookies(), std::slice::from_ref(&client_id));
    let r = c.get("/count", Some(&client_id)).await;
    assert_eq!(
        (r.node(), r.seen(), count_of(&r)),
        (moved.as_str(), id.as_str(), count + 1)
    );
    lb.stop().await;
}
