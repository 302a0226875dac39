//! The sticky proxy core through real TCP: pinning by cookie and path parameter, spreading new
//! sessions, deterministic failover inside a domain, 503 when a domain is down, connect-refused
//! retry, streaming, WebSocket, h2c, and bad input.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use stickyroute::store::SessionStore;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn cookie_and_path_parameter_pin_to_the_named_node() {
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
    let mut c = Conn::open(lb.addr()).await;
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

#[tokio::test]
async fn new_sessions_spread_by_weight_and_skip_non_active_nodes() {
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
    let mut c = Conn::open(lb.addr()).await;
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

#[tokio::test]
async fn failover_stays_in_domain_and_two_balancers_agree() {
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
            let r = get(lb.addr(), "/whoami", Some(&id)).await;
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
            get(addr, "/whoami", Some(&id)).await.node().to_string()
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
        let r = get(lb.addr(), "/whoami", Some(&format!("R{i}.jvm2"))).await;
        assert_eq!(r.node(), "jvm3");
    }
    lb.stop().await;
}

#[tokio::test]
async fn domain_down_answers_503_unless_cross_domain() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n4 = node("jvm4", &store).await;
    let lines = vec![
        node_line("jvm1", n1.addr, "domain: a"),
        node_line("jvm4", n4.addr, "domain: b"),
    ];
    n4.stop().await;
    let lb = balancer(&yaml("", &lines)).await;
    let r = get(lb.addr(), "/whoami", Some("X.jvm4")).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some(), "503 without Retry-After");
    assert!(r.text().contains("domain"), "{}", r.text());
    lb.stop().await;

    let lb = balancer(&yaml("failover: { cross_domain: true }", &lines)).await;
    let r = get(lb.addr(), "/whoami", Some("X.jvm4")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.node(), "jvm1");
    lb.stop().await;
}

#[tokio::test]
async fn refused_connection_is_retried_on_another_node_first_try() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let dead = dead_addr().await;
    let lb = balancer(&yaml(
        "binder: backend",
        &[node_line("jvm1", n1.addr, ""), node_line("jvm9", dead, "")],
    ))
    .await;
    let r = get(lb.addr(), "/whoami", Some("X.jvm9")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.node(), "jvm1");
    // New sessions never fail either, whichever node p2c draws first.
    for _ in 0..30 {
        assert_eq!(get(lb.addr(), "/whoami", None).await.status, 200);
    }
    // A POST with a body is retried too: nothing was sent to the dead node.
    let mut c = Conn::open(lb.addr()).await;
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

#[tokio::test]
async fn large_body_websocket_and_h2c() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n2 = node("jvm2", &store).await;
    let lb = balancer(&yaml(
        "",
        &[
            node_line("jvm1", n1.addr, ""),
            node_line("jvm2", n2.addr, ""),
        ],
    ))
    .await;

    // 10 MiB streams through unchanged.
    let body: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut c = Conn::open(lb.addr()).await;
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

    // h2c with prior knowledge.
    let stream = TcpStream::connect(lb.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://{}/whoami", lb.addr()))
        .header("cookie", "JSESSIONID=H2.jvm1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-node"], "jvm1");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let who: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(who["version"], "HTTP/1.1", "{who}");
    lb.stop().await;
}

#[tokio::test]
async fn forwarded_headers_and_hop_by_hop() {
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
    let mut c = Conn::open(lb.addr()).await;
    let r = c
        .request(
            Method::GET,
            "/whoami",
            &[
                ("x-forwarded-for", "10.9.8.7"),
                ("connection", "x-secret"),
                ("x-secret", "drop me"),
                ("x-session-failover-from", "forged"),
                ("cookie", "theme=dark; JSESSIONID=K.jvm1; lang=\"en\""),
            ],
            Bytes::new(),
        )
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

#[tokio::test]
async fn bad_input_gets_clear_errors() {
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

    // Garbage cookies: a new session, served.
    for cookie in [
        "JSESSIONID",
        ";;;===",
        "JSESSIONID=\"",
        "JSESSIONID=a b c",
        "JSESSIONID=...",
    ] {
        let out = raw(
            addr,
            format!(
                "GET /whoami HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "cookie {cookie:?}: {out}");
    }
    // A cookie header that is not UTF-8.
    let mut bytes = b"GET /whoami HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=\xff\xfe.jvm1\r\nConnection: close\r\n\r\n".to_vec();
    bytes.extend_from_slice(b"");
    let out = raw(addr, &bytes).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

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

    // No pool for the path: 404 with a reason. (Every path matches "/" here, so use a balancer
    // with a prefix.)
    lb.stop().await;
    let lb = balancer(&yaml(
        "path_prefix: /app",
        &[node_line("jvm1", n1.addr, "")],
    ))
    .await;
    let r = get(lb.addr(), "/other", None).await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no pool"), "{}", r.text());
    lb.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lb = balancer(&yaml("", &[node_line("jvm1", n1.addr, "")])).await;
    let addr = lb.addr();
    let slow = tokio::spawn(async move { get(addr, "/slow?ms=500", None).await });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    lb.stop().await;
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "in-flight request was cut: {}", r.text());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn slow_clients_time_out_and_connections_are_limited() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let config = |listener: &str| {
        format!(
            "listeners:\n  - {{ bind: \"127.0.0.1:0\", {listener} }}\npools:\n  - name: app\n    nodes:\n      - {{ route: jvm1, address: \"{}\" }}\n",
            n1.addr
        )
    };
    // A client that never finishes its request head is cut off after header_read_timeout.
    let lb = balancer(&config("header_read_timeout: 300ms")).await;
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

    // max_connections: the third connection waits until one of two open ones closes.
    let lb = balancer(&config("max_connections: 2")).await;
    let mut a = Conn::open(lb.addr()).await;
    let mut b = Conn::open(lb.addr()).await;
    assert_eq!(a.get("/whoami", None).await.status, 200);
    assert_eq!(b.get("/whoami", None).await.status, 200);
    let addr = lb.addr();
    let third = tokio::spawn(async move { get(addr, "/whoami", None).await.status });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beyond max_connections"
    );
    drop(a);
    let status = tokio::time::timeout(DEADLINE, third)
        .await
        .expect("third never served")
        .unwrap();
    assert_eq!(status, 200);
    drop(b);
    lb.stop().await;
}

#[tokio::test]
async fn node_killed_under_load_fails_no_idempotent_request() {
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
    let stop_at = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut workers = Vec::new();
    for w in 0..8 {
        let addr = lb.addr();
        workers.push(tokio::spawn(async move {
            // Half the workers are pinned to the node that will die, half are new sessions.
            let cookie = (w % 2 == 0).then(|| format!("W{w}.jvm1"));
            let mut conn = Conn::open(addr).await;
            let (mut ok, mut failed) = (0u32, Vec::new());
            for _ in 0..2000 {
                if std::time::Instant::now() > stop_at {
                    break;
                }
                let r = conn.get("/slow?ms=2", cookie.as_deref()).await;
                if r.status == 200 {
                    ok += 1;
                } else {
                    failed.push(format!("{} {}", r.status, r.text()));
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    n1.stop().await; // closes its listener and every connection, in-flight requests included
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

#[tokio::test]
async fn node_named_by_host_name_is_looked_up_when_connecting() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let line = format!(
        "- {{ route: jvm1, address: \"localhost:{}\" }}",
        n1.addr.port()
    );
    let lb = balancer(&yaml("", &[line])).await;
    let r = get(lb.addr(), "/whoami", Some("H.jvm1")).await;
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
    let r = get(lb2.addr(), "/whoami", Some("G.gone")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.node(), "jvm1");
    lb.stop().await;
    lb2.stop().await;
}

#[tokio::test]
async fn an_aborted_upload_does_not_mark_the_node_down() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    for _ in 0..3 {
        let mut s = TcpStream::connect(lb.addr()).await.unwrap();
        s.write_all(b"POST /form HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=U.jvm1\r\nContent-Length: 100000\r\n\r\n0123456789")
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(s); // the client gives up mid-body
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let snap = lb.balancer.snapshot();
    let jvm1 = snap.pools[0].node("jvm1").unwrap();
    assert!(
        jvm1.is_up(stickyroute::state::node::now_ms()),
        "a client's aborted upload took its node down: {:?}",
        jvm1.rt.health.last_error()
    );
    lb.stop().await;
}

#[tokio::test]
async fn an_id_without_route_sticks_to_one_node() {
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
    let first = get(lb.addr(), "/whoami", Some("NOROUTE")).await;
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
            get(lb.addr(), "/whoami", Some("NOROUTE")).await.node(),
            node
        );
        // The id the client was handed: pinned, and the node gets its own id back.
        let r = get(lb.addr(), "/whoami", Some(&client_id)).await;
        assert_eq!((r.node(), r.seen()), (node.as_str(), "NOROUTE"));
        assert!(r.session_cookies().is_empty(), "{:?}", r.headers);
    }
    lb.stop().await;
}
