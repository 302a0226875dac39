//! The sticky proxy core through real TCP: pinning by cookie and path parameter, spreading new
//! sessions, deterministic failover inside a domain, 503 when a domain is down, connect-refused
//! retry, streaming, WebSocket, and bad input.
//!
//! Every case runs over HTTP/1.1 (the balancer's native path) and over h2c (its hyper path),
//! as `NAME::http1` and `NAME::h2c`, except the few that are about HTTP/1.1 itself.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use stickyroute::store::SessionStore;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Checks every 10 ms for `time` that `check` still holds; panics naming `what` if it does not.
async fn holds_for<F: FnMut() -> bool>(what: &str, time: Duration, mut check: F) {
    let end = tokio::time::Instant::now() + time;
    while tokio::time::Instant::now() < end {
        assert!(check(), "no longer true: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// In-flight requests of the first pool's node `route`.
fn in_flight(lb: &stickyroute::control::Running, route: &str) -> u64 {
    lb.balancer.snapshot().pools[0]
        .node(route)
        .unwrap_or_else(|| panic!("no node {route}"))
        .inflight()
}

on_both_paths!(cookie_and_path_parameter_pin_to_the_named_node);
async fn cookie_and_path_parameter_pin_to_the_named_node(proto: Proto) {
    let store = SessionStore::memory();
    let (n1, n2, n3) = (
        node("jvm1", &store).await,
        node("jvm2", &store).await,
        node("jvm3", &store).await,
    );
    let lb = balancer(&yaml(
        "binder: backend",
        &[
            node_line("jvm1", n1.addr, ""),
            node_line("jvm2", n2.addr, ""),
            node_line("jvm3", n3.addr, ""),
        ],
    ))
    .await;
    let mut c = proto.open(lb.addr()).await;
    for _ in 0..100 {
        let r = c.get("/whoami", Some("ABC.jvm2")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.node(), "jvm2");
        assert_eq!(r.seen(), "ABC.jvm2");
    }
    for _ in 0..100 {
        let r = c.get("/whoami;jsessionid=ABC.jvm3", None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.node(), "jvm3");
        assert_eq!(r.seen(), "ABC.jvm3");
    }
    lb.stop().await;
}

on_both_paths!(new_sessions_spread_by_weight_and_skip_non_active_nodes);
async fn new_sessions_spread_by_weight_and_skip_non_active_nodes(proto: Proto) {
    let store = SessionStore::memory();
    let mut nodes = Vec::new();
    for r in ["jvm1", "jvm2", "jvm3", "drain", "off", "spare"] {
        nodes.push(node(r, &store).await);
    }
    let lines = vec![
        node_line("jvm1", nodes[0].addr, "weight: 1"),
        node_line("jvm2", nodes[1].addr, "weight: 1"),
        node_line("jvm3", nodes[2].addr, "weight: 2"),
        node_line("drain", nodes[3].addr, "state: draining"),
        node_line("off", nodes[4].addr, "state: disabled"),
        node_line("spare", nodes[5].addr, "state: standby"),
    ];
    let lb = balancer(&yaml("", &lines)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut c = proto.open(lb.addr()).await;
    for _ in 0..300 {
        let r = c.get("/whoami", None).await;
        assert_eq!(r.status, 200);
        *counts.entry(r.node().to_string()).or_default() += 1;
    }
    // Expected 75 / 75 / 150. Binomial sd is about 7.5 for 75 and 8.7 for 150: allow ±40%.
    for (route, want) in [("jvm1", 75.0), ("jvm2", 75.0), ("jvm3", 150.0)] {
        let got = *counts.get(route).unwrap_or(&0) as f64;
        assert!(
            (got - want).abs() <= want * 0.4,
            "{route}: {got} of 300, counts {counts:?}"
        );
    }
    for route in ["drain", "off", "spare"] {
        assert!(
            !counts.contains_key(route),
            "{route} got new sessions: {counts:?}"
        );
    }
    // ... while a session pinned to the draining node stays there.
    assert_eq!(c.get("/whoami", Some("S.drain")).await.node(), "drain");
    lb.stop().await;
}

on_both_paths!(failover_stays_in_domain_and_two_balancers_agree);
async fn failover_stays_in_domain_and_two_balancers_agree(proto: Proto) {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n2 = node("jvm2", &store).await;
    let n3 = node("jvm3", &store).await;
    let n4 = node("jvm4", &store).await;
    let lines = vec![
        node_line("jvm1", n1.addr, "domain: a"),
        node_line("jvm2", n2.addr, "domain: a"),
        node_line("jvm3", n3.addr, "domain: a"),
        node_line("jvm4", n4.addr, "domain: b"),
    ];
    let config = yaml("binder: backend", &lines);
    let lb_a = balancer(&config).await;
    let lb_b = balancer(&config).await;
    let n2_addr = n2.addr;
    n2.stop().await;
    let mut chosen: HashMap<String, String> = HashMap::new();
    for i in 0..20 {
        let id = format!("{i:032X}.jvm2");
        let mut seen_nodes = Vec::new();
        for lb in [&lb_a, &lb_b, &lb_a, &lb_b] {
            let r = proto.get(lb.addr(), "/whoami", Some(&id)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            seen_nodes.push(r.node().to_string());
            assert_eq!(r.seen(), id, "backend binder forwards the id unchanged");
        }
        assert!(
            seen_nodes.iter().all(|n| n == &seen_nodes[0]),
            "{id}: {seen_nodes:?}"
        );
        assert!(
            ["jvm1", "jvm3"].contains(&seen_nodes[0].as_str()),
            "left the domain: {seen_nodes:?}"
        );
        chosen.insert(id, seen_nodes[0].clone());
    }
    let on_jvm1 = chosen.values().filter(|n| *n == "jvm1").count();
    assert!(
        on_jvm1 > 0 && on_jvm1 < 20,
        "rendezvous spreads failed-over sessions: {chosen:?}"
    );
    // Concurrent requests of one session choose one node.
    let id = "CONCURRENT.jvm2".to_string();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (addr, id) = (lb_a.addr(), id.clone());
        tasks.push(tokio::spawn(async move {
            proto
                .get(addr, "/whoami", Some(&id))
                .await
                .node()
                .to_string()
        }));
    }
    let mut nodes = Vec::new();
    for t in tasks {
        nodes.push(t.await.unwrap());
    }
    assert!(nodes.iter().all(|n| n == &nodes[0]), "{nodes:?}");
    lb_a.stop().await;
    lb_b.stop().await;

    // With a redirect, the target is preferred while it is up.
    let lines = vec![
        node_line("jvm1", n1.addr, "domain: a"),
        node_line("jvm2", n2_addr, "domain: a, redirect: jvm3"),
        node_line("jvm3", n3.addr, "domain: a"),
        node_line("jvm4", n4.addr, "domain: b"),
    ];
    let lb = balancer(&yaml("binder: backend", &lines)).await;
    for i in 0..10 {
        let r = proto
            .get(lb.addr(), "/whoami", Some(&format!("R{i}.jvm2")))
            .await;
        assert_eq!(r.node(), "jvm3");
    }
    lb.stop().await;
}

on_both_paths!(domain_down_answers_503_unless_cross_domain);
async fn domain_down_answers_503_unless_cross_domain(proto: Proto) {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n4 = node("jvm4", &store).await;
    let lines = vec![
        node_line("jvm1", n1.addr, "domain: a"),
        node_line("jvm4", n4.addr, "domain: b"),
    ];
    n4.stop().await;
    let lb = balancer(&yaml("", &lines)).await;
    let r = proto.get(lb.addr(), "/whoami", Some("X.jvm4")).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some(), "503 without Retry-After");
    assert!(r.text().contains("domain"), "{}", r.text());
    lb.stop().await;

    let lb = balancer(&yaml("failover: { cross_domain: true }", &lines)).await;
    let r = proto.get(lb.addr(), "/whoami", Some("X.jvm4")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.node(), "jvm1");
    lb.stop().await;
}

on_both_paths!(refused_connection_is_retried_on_another_node_first_try);
async fn refused_connection_is_retried_on_another_node_first_try(proto: Proto) {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let dead = dead_addr().await;
    let lb = balancer(&yaml(
        "binder: backend",
        &[node_line("jvm1", n1.addr, ""), node_line("jvm9", dead, "")],
    ))
    .await;
    let r = proto.get(lb.addr(), "/whoami", Some("X.jvm9")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.node(), "jvm1");
    // New sessions never fail either, whichever node p2c draws first.
    for _ in 0..30 {
        assert_eq!(proto.get(lb.addr(), "/whoami", None).await.status, 200);
    }
    // A POST with a body is retried too: nothing was sent to the dead node.
    let mut c = proto.open(lb.addr()).await;
    let r = c
        .request(
            Method::POST,
            "/echo",
            &[("cookie", "JSESSIONID=Y.jvm9")],
            Bytes::from_static(b"payload"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"payload");
    lb.stop().await;
}

/// Two demo nodes and a balancer over them.
async fn two_node_pool(
    store: &SessionStore,
) -> (
    Vec<stickyroute::demo::node::RunningNode>,
    stickyroute::control::Running,
) {
    let nodes = vec![node("jvm1", store).await, node("jvm2", store).await];
    let lb = balancer(&yaml(
        "",
        &[
            node_line("jvm1", nodes[0].addr, ""),
            node_line("jvm2", nodes[1].addr, ""),
        ],
    ))
    .await;
    (nodes, lb)
}

on_both_paths!(large_body_streams_and_the_node_speaks_http1);
async fn large_body_streams_and_the_node_speaks_http1(proto: Proto) {
    let store = SessionStore::memory();
    let (_nodes, lb) = two_node_pool(&store).await;

    // 10 MiB streams through unchanged.
    let body: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut c = proto.open(lb.addr()).await;
    let r = c
        .request(
            Method::POST,
            "/echo",
            &[("content-type", "application/octet-stream")],
            Bytes::from(body.clone()),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body[..] == body[..], "echoed body differs");

    // Whatever the client speaks, the node is spoken to in HTTP/1.1.
    let r = proto.get(lb.addr(), "/whoami", Some("H2.jvm1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.node(), "jvm1");
    let who = r.json();
    assert_eq!(who["version"], "HTTP/1.1", "{who}");
    lb.stop().await;
}

/// HTTP/1.1 only: the `Upgrade` handshake is HTTP/1.1's (an HTTP/2 client would use an
/// extended CONNECT).
#[tokio::test]
async fn websocket_is_pinned_and_echoes() {
    let store = SessionStore::memory();
    let (_nodes, lb) = two_node_pool(&store).await;

    // WebSocket echo, pinned to jvm2.
    let stream = TcpStream::connect(lb.addr()).await.unwrap();
    let mut req = format!("ws://{}/ws", lb.addr())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("cookie", "JSESSIONID=WS.jvm2".parse().unwrap());
    let (mut ws, resp) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(req, stream))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(resp.status(), 101);
    let first = ws.next().await.unwrap().unwrap();
    assert_eq!(first, Message::text("node:jvm2"));
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back, Message::text(format!("hello {i}")));
    }
    ws.close(None).await.unwrap();
    // Closed as a browser does after the close handshake: a socket held open would hold the
    // tunnel until the shutdown grace deadline.
    drop(ws);
    lb.stop().await;
}

on_both_paths!(forwarded_headers_and_hop_by_hop);
async fn forwarded_headers_and_hop_by_hop(proto: Proto) {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    // The test client is a trusted proxy, so its X-Forwarded-For is extended (from anyone
    // else it is replaced: tests/hardening.rs).
    let config = yaml("", &[node_line("jvm1", n1.addr, "")]).replacen(
        "  - bind: \"127.0.0.1:0\"\n",
        "  - bind: \"127.0.0.1:0\"\n    trusted_proxies: [127.0.0.1]\n",
        1,
    );
    let lb = balancer(&config).await;
    let mut headers = vec![
        ("x-forwarded-for", "10.9.8.7"),
        ("x-session-failover-from", "forged"),
        ("cookie", "theme=dark; JSESSIONID=K.jvm1; lang=\"en\""),
    ];
    // Connection-specific fields are HTTP/1.1's; HTTP/2 has none (RFC 9113 §8.2.2).
    if proto == Proto::Http1 {
        headers.extend([("connection", "x-secret"), ("x-secret", "drop me")]);
    }
    let r = proto
        .send(lb.addr(), Method::GET, "/whoami", &headers, Bytes::new())
        .await;
    let who = r.json();
    let h = &who["headers"];
    assert_eq!(h["x-forwarded-for"], "10.9.8.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.test");
    assert_eq!(h["host"], "app.test");
    assert!(h["forwarded"]
        .as_str()
        .unwrap()
        .contains("for=127.0.0.1;proto=http;host=\"app.test\""));
    assert!(
        h.get("x-secret").is_none(),
        "header named by Connection was forwarded: {who}"
    );
    assert!(
        h.get("x-session-failover-from").is_none(),
        "client-supplied failover header passed"
    );
    assert_eq!(
        h["cookie"], "theme=dark; JSESSIONID=K.jvm1; lang=\"en\"",
        "cookies not byte-exact"
    );
    lb.stop().await;
}

/// HTTP/1.1 only: an oversized head and request-smuggling shapes are HTTP/1.1 framing.
#[tokio::test]
async fn malformed_http1_requests_get_clear_errors() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lb = balancer(&yaml("", &[node_line("jvm1", n1.addr, "")])).await;
    let addr = lb.addr();

    // Oversized header -> 431.
    let big = "a".repeat(20 * 1024);
    let out = raw(
        addr,
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");

    // Request smuggling shapes stay rejected.
    let smuggle =
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd";
    assert!(raw(addr, smuggle.as_bytes())
        .await
        .starts_with("HTTP/1.1 400"));
    let smuggle =
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n";
    let out = raw(addr, smuggle.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 400") || out.is_empty(), "{out}");
    lb.stop().await;
}

on_both_paths!(bad_cookies_and_unknown_paths_get_clear_answers);
async fn bad_cookies_and_unknown_paths_get_clear_answers(proto: Proto) {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lb = balancer(&yaml("", &[node_line("jvm1", n1.addr, "")])).await;
    let addr = lb.addr();

    // Garbage cookies: a new session, served.
    for cookie in [
        "JSESSIONID",
        ";;;===",
        "JSESSIONID=\"",
        "JSESSIONID=a b c",
        "JSESSIONID=...",
    ] {
        let r = proto
            .send(
                addr,
                Method::GET,
                "/whoami",
                &[("cookie", cookie)],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, 200, "cookie {cookie:?}: {}", r.text());
    }
    // A cookie header that is not UTF-8.
    let mut req = proto.request(Method::GET, "/whoami", &[], Bytes::new());
    req.headers_mut().insert(
        "cookie",
        hyper::header::HeaderValue::from_bytes(b"JSESSIONID=\xff\xfe.jvm1").unwrap(),
    );
    let r = proto.open(addr).await.send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // No pool for the path: 404 with a reason. (Every path matches "/" here, so use a balancer
    // with a prefix.)
    lb.stop().await;
    let lb = balancer(&yaml(
        "path_prefix: /app",
        &[node_line("jvm1", n1.addr, "")],
    ))
    .await;
    let r = proto.get(lb.addr(), "/other", None).await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no pool"), "{}", r.text());
    lb.stop().await;
}

on_both_paths!(graceful_shutdown_finishes_in_flight_requests);
async fn graceful_shutdown_finishes_in_flight_requests(proto: Proto) {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lb = balancer(&yaml("", &[node_line("jvm1", n1.addr, "")])).await;
    let addr = lb.addr();
    let slow = tokio::spawn(async move { proto.get(addr, "/slow?ms=500", None).await });
    eventually("the slow request in flight to jvm1", DEADLINE, || async {
        in_flight(&lb, "jvm1") == 1
    })
    .await;
    lb.stop().await;
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "in-flight request was cut: {}", r.text());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// A balancer with one listener (its settings `listener`) and one pool of `node`.
async fn one_listener(listener: &str, node: std::net::SocketAddr) -> stickyroute::control::Running {
    balancer(&format!(
        "listeners:\n  - {{ bind: \"127.0.0.1:0\", {listener} }}\npools:\n  - name: app\n    nodes:\n      - {{ route: jvm1, address: \"{node}\" }}\n",
    ))
    .await
}

/// HTTP/1.1 only: the request head a client never finishes is HTTP/1.1's.
#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    // A client that never finishes its request head is cut off after header_read_timeout.
    let lb = one_listener("header_read_timeout: 300ms", n1.addr).await;
    let mut slow = TcpStream::connect(lb.addr()).await.unwrap();
    slow.write_all(b"GET /whoami HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(DEADLINE, slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "slow client was never cut off");
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    lb.stop().await;
}

on_both_paths!(max_connections_holds_a_third_connection_back);
async fn max_connections_holds_a_third_connection_back(proto: Proto) {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    // max_connections: the third connection waits until one of two open ones closes.
    let lb = one_listener("max_connections: 2", n1.addr).await;
    let mut a = proto.open(lb.addr()).await;
    let mut b = proto.open(lb.addr()).await;
    assert_eq!(a.get("/whoami", None).await.status, 200);
    assert_eq!(b.get("/whoami", None).await.status, 200);
    let addr = lb.addr();
    let third = tokio::spawn(async move { proto.get(addr, "/whoami", None).await.status });
    holds_for(
        "a third connection is not served beyond max_connections",
        Duration::from_millis(300),
        || !third.is_finished(),
    )
    .await;
    drop(a);
    let status = tokio::time::timeout(DEADLINE, third)
        .await
        .expect("third never served")
        .unwrap();
    assert_eq!(status, 200);
    drop(b);
    lb.stop().await;
}

on_both_paths!(node_killed_under_load_fails_no_idempotent_request);
async fn node_killed_under_load_fails_no_idempotent_request(proto: Proto) {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n2 = node("jvm2", &store).await;
    let n3 = node("jvm3", &store).await;
    let lb = balancer(&yaml(
        "",
        &[
            node_line("jvm1", n1.addr, ""),
            node_line("jvm2", n2.addr, ""),
            node_line("jvm3", n3.addr, ""),
        ],
    ))
    .await;
    // Set some time after the kill: the load stops.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let addr = lb.addr();
        let (stop, served) = (stop.clone(), served.clone());
        workers.push(tokio::spawn(async move {
            // Half the workers are pinned to the node that will die, half are new sessions.
            let cookie = (w % 2 == 0).then(|| format!("W{w}.jvm1"));
            let mut conn = proto.open(addr).await;
            let (mut ok, mut failed) = (0u32, Vec::new());
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = conn.get("/slow?ms=2", cookie.as_deref()).await;
                if r.status == 200 {
                    ok += 1;
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.push(format!("{} {}", r.status, r.text()));
                }
            }
            (ok, failed)
        }));
    }
    eventually("the load under way (100 responses)", DEADLINE, || async {
        served.load(Ordering::Relaxed) >= 100
    })
    .await;
    n1.stop().await; // closes its listener and every connection, in-flight requests included
                     // The load goes on for a while after the kill.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "too little load to mean anything: {ok}");
    lb.stop().await;
}

on_both_paths!(node_named_by_host_name_is_looked_up_when_connecting);
async fn node_named_by_host_name_is_looked_up_when_connecting(proto: Proto) {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let line = format!(
        "- {{ route: jvm1, address: \"localhost:{}\" }}",
        n1.addr.port()
    );
    let lb = balancer(&yaml("", &[line])).await;
    let r = proto.get(lb.addr(), "/whoami", Some("H.jvm1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.node(), "jvm1");
    // A name that does not resolve is a connect failure of that node, not a config error.
    let lb2 = balancer(&yaml(
        "",
        &[
            "- { route: gone, address: \"no-such-host.invalid:8080\" }".to_string(),
            node_line("jvm1", n1.addr, ""),
        ],
    ))
    .await;
    let r = proto.get(lb2.addr(), "/whoami", Some("G.gone")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.node(), "jvm1");
    lb.stop().await;
    lb2.stop().await;
}

/// An upload under way: the client's connection, which it drops mid-body.
enum Upload {
    Http1(TcpStream),
    H2c {
        connection: tokio::task::JoinHandle<()>,
        _stream: (h2::client::ResponseFuture, h2::SendStream<Bytes>),
    },
}

impl Upload {
    /// Starts `POST /form` pinned to `cookie`, declaring `Content-Length: 100000`, and sends
    /// its first ten bytes.
    async fn start(proto: Proto, addr: std::net::SocketAddr, cookie: &str) -> Upload {
        use tokio::io::AsyncWriteExt;
        let mut s = TcpStream::connect(addr).await.unwrap();
        match proto {
            Proto::Http1 => {
                let head = format!("POST /form HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID={cookie}\r\nContent-Length: 100000\r\n\r\n0123456789");
                s.write_all(head.as_bytes()).await.unwrap();
                Upload::Http1(s)
            }
            Proto::H2c => {
                let (sender, conn) = h2::client::handshake(s).await.unwrap();
                let connection = tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut sender = sender.ready().await.unwrap();
                let req = hyper::Request::post(format!("http://{TEST_HOST}/form"))
                    .header("cookie", format!("JSESSIONID={cookie}"))
                    .header("content-length", "100000")
                    .body(())
                    .unwrap();
                let (response, mut body) = sender.send_request(req, false).unwrap();
                body.send_data(Bytes::from_static(b"0123456789"), false)
                    .unwrap();
                Upload::H2c {
                    connection,
                    _stream: (response, body),
                }
            }
        }
    }

    /// The client gives up: its connection closes mid-body.
    fn abort(self) {
        match self {
            Upload::Http1(s) => drop(s),
            Upload::H2c { connection, .. } => connection.abort(),
        }
    }
}

on_both_paths!(an_aborted_upload_does_not_mark_the_node_down);
async fn an_aborted_upload_does_not_mark_the_node_down(proto: Proto) {
    use tokio::io::AsyncReadExt;
    // A backend that reads the whole request body before it would answer (like a servlet
    // reading a form): the client's abort reaches the balancer while it forwards the body.
    let reader = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reader_addr = reader.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = reader.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    let store = SessionStore::memory();
    let n2 = node("jvm2", &store).await;
    let lb = balancer(&yaml(
        "",
        &[
            node_line("jvm1", reader_addr, ""),
            node_line("jvm2", n2.addr, ""),
        ],
    ))
    .await;
    let pool_in_flight = || in_flight(&lb, "jvm1") + in_flight(&lb, "jvm2");
    for _ in 0..3 {
        let upload = Upload::start(proto, lb.addr(), "U.jvm1").await;
        eventually("the upload forwarded to a node", DEADLINE, || async {
            pool_in_flight() == 1
        })
        .await;
        upload.abort(); // the client gives up mid-body
        eventually(
            "the balancer done with the aborted upload",
            DEADLINE,
            || async { pool_in_flight() == 0 },
        )
        .await;
    }
    let snap = lb.balancer.snapshot();
    let jvm1 = snap.pools[0].node("jvm1").unwrap();
    assert!(
        jvm1.is_up(stickyroute::state::node::now_ms()),
        "a client's aborted upload took its node down: {:?}",
        jvm1.rt.health.last_error()
    );
    lb.stop().await;
}

on_both_paths!(an_id_without_route_sticks_to_one_node);
async fn an_id_without_route_sticks_to_one_node(proto: Proto) {
    let store = SessionStore::memory();
    let nodes = [
        node("jvm1", &store).await,
        node("jvm2", &store).await,
        node("jvm3", &store).await,
    ];
    let lines: Vec<String> = nodes
        .iter()
        .zip(["jvm1", "jvm2", "jvm3"])
        .map(|(n, r)| node_line(r, n.addr, ""))
        .collect();
    let lb = balancer(&yaml("", &lines)).await;
    let first = proto.get(lb.addr(), "/whoami", Some("NOROUTE")).await;
    let node = first.node().to_string();
    assert_eq!(first.seen(), "NOROUTE");
    // An empty route segment marks the translation of an id without a route.
    let client_id = format!("NOROUTE..{node}");
    assert_eq!(
        first.session_cookies(),
        vec![client_id.clone()],
        "translate rebinds it"
    );
    for _ in 0..10 {
        assert_eq!(
            proto
                .get(lb.addr(), "/whoami", Some("NOROUTE"))
                .await
                .node(),
            node
        );
        // The id the client was handed: pinned, and the node gets its own id back.
        let r = proto.get(lb.addr(), "/whoami", Some(&client_id)).await;
        assert_eq!((r.node(), r.seen()), (node.as_str(), "NOROUTE"));
        assert!(r.session_cookies().is_empty(), "{:?}", r.headers);
    }
    lb.stop().await;
}
