//! Hardening, through real TCP on 127.0.0.1: error bodies that say what happened
//! in our words and never an internal error's text, the `rename` binder's negative cache,
//! `listeners[].trusted_proxies` and `listeners[].max_body_bytes`. Each runs over the native
//! HTTP/1 path (cleartext) and over hyper (h2c with prior knowledge), since both build the
//! client's answer from `proxy::pipeline`.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request over h2c with prior knowledge (the hyper path): status, headers, body.
async fn h2(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Resp {
    let fut = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://app.test{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = sender
            .send_request(req.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    };
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("h2c request timed out")
}

/// A "node" that reads a request head and answers bytes no HTTP parser accepts.
async fn garbage_node() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 2x0 \x01garbage\r\n\r\n").await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Internal texts that must never reach a client.
fn assert_ours(what: &str, body: &str, leaks: &[&str]) {
    for leak in leaks {
        assert!(
            !body
                .to_ascii_lowercase()
                .contains(&leak.to_ascii_lowercase()),
            "{what}: the body leaks {leak:?}: {body:?}"
        );
    }
}

/// A refused connect (the OS's "Connection refused (os error 111)"), a node answering
/// garbage (the parser's message), a store that cannot be reached: the client reads the
/// status and our short reason; the status API's `last_error` keeps the OS text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_name_the_status_and_our_reason_only() {
    let dead = dead_addr().await;
    let port = dead.port().to_string();
    let leaks = ["refused", "os error", &port, "127.0.0.1", "connect"];
    let want = "502 Bad Gateway: no node could be reached\n";
    // One attempt: the refused connect is the last failure (with more attempts and no other
    // node the answer is the 503 "no node of the session's domain is up").
    let pool = yaml(
        "failover: { max_attempts: 1 }",
        &[
            node_line("jvm1", dead, ""),
            node_line("jvm2", dead_addr().await, ""),
        ],
    );
    for h2c in [false, true] {
        let lb = balancer(&pool).await;
        let r = if h2c {
            let cookie = [("cookie", "JSESSIONID=X.jvm1")];
            h2(lb.addr(), Method::GET, "/whoami", &cookie, Bytes::new()).await
        } else {
            get(lb.addr(), "/whoami", Some("X.jvm1")).await
        };
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (502, want),
            "h2c {h2c}"
        );
        assert_ours(&format!("refused, h2c {h2c}"), &r.text(), &leaks);
        // The operator still sees why.
        let status = stickyroute::control::admin::status(&lb.balancer);
        let last = status.pools[0].nodes[0]
            .last_error
            .clone()
            .unwrap_or_default();
        assert!(
            last.to_ascii_lowercase().contains("refused"),
            "last_error: {last:?}"
        );
        lb.stop().await;
    }

    // After sending: the node answers garbage (no retry, so the request fails on it).
    let pool = yaml(
        "failover: { retry_idempotent: false }",
        &[node_line("jvm1", garbage_node().await, "")],
    );
    let want = "502 Bad Gateway: the node failed to answer\n";
    let leaks = ["invalid", "parse", "status", "garbage", "hyper", "error"];
    for h2c in [false, true] {
        let lb = balancer(&pool).await;
        let r = if h2c {
            h2(lb.addr(), Method::GET, "/whoami", &[], Bytes::new()).await
        } else {
            get(lb.addr(), "/whoami", None).await
        };
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (502, want),
            "h2c {h2c}"
        );
        assert_ours(&format!("garbage, h2c {h2c}"), &r.text()[4..], &leaks);
        lb.stop().await;
    }

    // A `rename` failover whose store is unreachable, with `on_store_error: fail`.
    let store_port = dead_addr().await.port().to_string();
    let n1 = node("jvm1", &stickyroute::store::SessionStore::memory()).await;
    let lb = balancer(&yaml(
        &format!(
            "binder: rename\nstore: {{ kind: http, url: \"http://127.0.0.1:{store_port}/rename\", on_store_error: fail }}"
        ),
        &[node_line("jvm1", n1.addr, "")],
    ))
    .await;
    let want = "503 Service Unavailable: the session store is unavailable\n";
    let leaks = ["refused", "os error", &store_port, "127.0.0.1", "http://"];
    // `X.jvm9` names no node: a failover, so the session is renamed first.
    let r = get(lb.addr(), "/whoami", Some("X.jvm9")).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (503, want),
        "HTTP/1"
    );
    assert!(r.header("retry-after").is_some());
    assert_ours("HTTP/1 store", &r.text(), &leaks);
    let r = h2(
        lb.addr(),
        Method::GET,
        "/whoami",
        &[("cookie", "JSESSIONID=X.jvm9")],
        Bytes::new(),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (503, want), "h2c");
    assert_ours("h2c store", &r.text(), &leaks);
    lb.stop().await;
}

/// A rename hook (`kind: http`) that counts its calls and knows no session (`404`).
async fn counting_hook() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let counter = calls.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        counter.fetch_add(1, Ordering::SeqCst);
                        let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, calls)
}

fn metric(lb: &stickyroute::control::Running, name: &str) -> f64 {
    let text = stickyroute::control::exposition::to_prometheus_text(
        &stickyroute::control::exposition::render(&lb.balancer),
    );
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// A flood of failovers of ids the store does not know, on a route that is down: each id
/// costs one store round-trip per `negative_ttl`, not one per request; `0s` turns the cache
/// off; after the TTL the store is asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_negative_cache_spares_the_store() {
    use std::sync::atomic::Ordering;
    let n1 = node("jvm1", &stickyroute::store::SessionStore::memory()).await;
    let dead = dead_addr().await;
    let nodes = [node_line("jvm1", n1.addr, ""), node_line("jvm2", dead, "")];
    let ids: Vec<String> = (0..10)
        .map(|i| format!("RANDOM{i:04}X{}.jvm2", rand_word()))
        .collect();
    for (ttl, expected_calls) in [("5s", ids.len()), ("0s", ids.len() * 20)] {
        let (hook, calls) = counting_hook().await;
        let lb = balancer(&yaml(
            &format!(
                "binder: rename\nstore: {{ kind: http, url: \"http://{hook}/rename\", negative_ttl: {ttl} }}"
            ),
            &nodes,
        ))
        .await;
        for round in 0..20 {
            for id in &ids {
                let r = if round % 4 == 3 {
                    let cookie = format!("JSESSIONID={id}");
                    h2(
                        lb.addr(),
                        Method::GET,
                        "/whoami",
                        &[("cookie", &cookie)],
                        Bytes::new(),
                    )
                    .await
                } else {
                    get(lb.addr(), "/whoami", Some(id)).await
                };
                assert_eq!(r.status, 200, "{}", r.text());
                assert_eq!(r.node(), "jvm1");
                // Not found: forwarded under the new id all the same.
                assert_eq!(r.seen(), id.replace(".jvm2", ".jvm1"), "ttl {ttl}");
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), expected_calls, "ttl {ttl}");
        let cached = (ids.len() * 20 - expected_calls) as f64;
        assert_eq!(
            metric(&lb, "stickyroute_rename_unknown_cached_total"),
            cached,
            "ttl {ttl}"
        );
        lb.stop().await;
    }

    // After the TTL the store is asked again.
    let (hook, calls) = counting_hook().await;
    let lb = balancer(&yaml(
        &format!("binder: rename\nstore: {{ kind: http, url: \"http://{hook}/rename\", negative_ttl: 300ms }}"),
        &nodes,
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(get(lb.addr(), "/whoami", Some(&ids[0])).await.status, 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let snapshot = lb.balancer.snapshot();
    let unknown = snapshot.pools[0].unknown_ids.as_ref().unwrap();
    assert!(unknown.contains(&ids[0], stickyroute::state::node::now_ms()));
    wait::until(
        "the negative cache to forget the id after its TTL",
        || async { !unknown.contains(&ids[0], stickyroute::state::node::now_ms()) },
    )
    .await;
    assert_eq!(get(lb.addr(), "/whoami", Some(&ids[0])).await.status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "asked again after the TTL");
    lb.stop().await;
}

/// A random word, so that runs do not share ids (or Redis keys).
fn rand_word() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

/// The same against real Redis: a relay in front of it counts the `RENAMENX` commands the
/// balancer's store sends. Unknown ids: one `RENAMENX` each; a session Redis knows is renamed
/// as before (the cache holds only ids Redis does not know).
#[cfg(feature = "redis-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_negative_cache_against_redis() {
    let Some(url) = service_url("TEST_REDIS_URL", "rename_negative_cache_against_redis") else {
        return;
    };
    let redis_addr = {
        let rest = url.strip_prefix("redis://").unwrap();
        let authority = rest.split('/').next().unwrap();
        let host_port = authority.rsplit('@').next().unwrap();
        tokio::net::lookup_host(host_port)
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    // The relay: every byte the store sends is kept to be counted.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = relay.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let server = TcpStream::connect(redis_addr).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = [0u8; 8192];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        kept.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    let renamenx = || {
        let bytes = seen.lock().unwrap();
        bytes
            .windows(8)
            .filter(|w| w.eq_ignore_ascii_case(b"RENAMENX"))
            .count()
    };
    let prefix = format!("negcache-{}", rand_word());
    let relay_url = url.replacen(
        url.strip_prefix("redis://")
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .rsplit('@')
            .next()
            .unwrap(),
        &relay_addr.to_string(),
        1,
    );
    let n1 = node("jvm1", &stickyroute::store::SessionStore::memory()).await;
    let dead = dead_addr().await;
    let lb = balancer(&yaml(
        &format!(
            "binder: rename\nstore: {{ kind: redis, url: \"{relay_url}\", key: \"{prefix}:{{id}}\" }}"
        ),
        &[node_line("jvm1", n1.addr, ""), node_line("jvm2", dead, "")],
    ))
    .await;
    let ids: Vec<String> = (0..8).map(|i| format!("UNKNOWN{i}.jvm2")).collect();
    for _ in 0..15 {
        for id in &ids {
            let r = get(lb.addr(), "/whoami", Some(id)).await;
            assert_eq!((r.status.as_u16(), r.node()), (200, "jvm1"));
        }
    }
    assert_eq!(renamenx(), ids.len(), "one RENAMENX per unknown id");
    assert_eq!(
        metric(&lb, "stickyroute_rename_unknown_cached_total"),
        (ids.len() * 14) as f64
    );

    // A session Redis knows is renamed, each time the client still shows the old id.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let known = "KNOWN1.jvm2";
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:{known}"))
        .arg("{}")
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = renamenx();
    for _ in 0..3 {
        let r = get(lb.addr(), "/whoami", Some(known)).await;
        assert_eq!((r.status.as_u16(), r.seen()), (200, "KNOWN1.jvm1"));
    }
    assert_eq!(
        renamenx() - before,
        3,
        "a known id is never answered from the cache"
    );
    let moved: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}:KNOWN1.jvm1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(moved);
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:KNOWN1.jvm1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    lb.stop().await;
}

/// Serves `ProxyService` (the HTTP/2 path's request rules) with hyper's server, HTTP/1.1 and
/// h2c, on a socket of its own, with the settings of the balancer's first listener.
async fn hyper_path(lb: &stickyroute::control::Running) -> std::net::SocketAddr {
    use stickyroute::proxy::client_body::ClientBody;
    use stickyroute::proxy::service::ProxyService;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let balancer = lb.balancer.clone();
    let cfg = balancer.snapshot().config.listeners[0].clone();
    let conns = std::sync::Arc::new(stickyroute::proxy::upstream::UpstreamPools::default());
    tokio::spawn(async move {
        while let Ok((s, peer)) = l.accept().await {
            let svc =
                ProxyService::new(balancer.clone(), conns.clone(), peer, false).with_listener(&cfg);
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let svc = svc.clone();
                async move {
                    let (mut parts, body) = req.map(ClientBody::other).into_parts();
                    Ok::<_, std::convert::Infallible>(svc.call(&mut parts, body).await)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// The listener line of [`yaml`] with extra listener keys.
fn listener_with(config: &str, extra: &str) -> String {
    config.replacen(
        "  - bind: \"127.0.0.1:0\"\n",
        &format!("  - bind: \"127.0.0.1:0\"\n{extra}"),
        1,
    )
}

/// What the node received as `X-Forwarded-For` and `Forwarded` for a request claiming a
/// client of its own.
async fn forwarded_seen(resp: Resp) -> (String, String) {
    assert_eq!(resp.status, 200, "{}", resp.text());
    let who = resp.json();
    let h = &who["headers"];
    (
        h["x-forwarded-for"].as_str().unwrap_or("").to_string(),
        h["forwarded"].as_str().unwrap_or("").to_string(),
    )
}

const CLAIMED: [(&str, &str); 3] = [
    ("x-forwarded-for", "198.51.100.1"),
    ("x-forwarded-for", "203.0.113.2"),
    ("forwarded", "for=198.51.100.1"),
];

/// `trusted_proxies` on the hyper path: a peer in the list has its chains extended (every
/// line, in order); any other peer (and every peer by default) has them replaced by the
/// address the balancer saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_extend_others_are_replaced_on_the_hyper_path() {
    let n1 = node("jvm1", &stickyroute::store::SessionStore::memory()).await;
    let pool = yaml("", &[node_line("jvm1", n1.addr, "")]);
    let cases = [
        // (listener keys, X-Forwarded-For seen, Forwarded seen)
        (
            "",
            "127.0.0.1",
            "for=127.0.0.1;proto=http;host=\"app.test\"",
        ),
        (
            "    trusted_proxies: [10.0.0.0/8, \"::1\"]\n",
            "127.0.0.1",
            "for=127.0.0.1;proto=http;host=\"app.test\"",
        ),
        (
            "    trusted_proxies: [10.0.0.0/8, 127.0.0.0/8]\n",
            "198.51.100.1, 203.0.113.2, 127.0.0.1",
            "for=198.51.100.1, for=127.0.0.1;proto=http;host=\"app.test\"",
        ),
    ];
    for (extra, xff, fwd) in cases {
        let lb = balancer(&listener_with(&pool, extra)).await;
        let addr = hyper_path(&lb).await;
        for h2c in [false, true] {
            let r = if h2c {
                h2(addr, Method::GET, "/whoami", &CLAIMED, Bytes::new()).await
            } else {
                Conn::open(addr)
                    .await
                    .request(Method::GET, "/whoami", &CLAIMED, Bytes::new())
                    .await
            };
            let (seen_xff, seen_fwd) = forwarded_seen(r).await;
            assert_eq!(
                (seen_xff.as_str(), seen_fwd.as_str()),
                (xff, fwd),
                "{extra:?} h2c {h2c}"
            );
        }
        lb.stop().await;
    }
}

/// The same through the balancer's own listener, on the native HTTP/1 path and on h2c: the
/// listener passes its settings to `ProxyService::with_listener` (h2c), and
/// `proxy::h1::write_head` asks `TrustedProxies::extends` (native path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_through_the_listener_on_both_paths() {
    let n1 = node("jvm1", &stickyroute::store::SessionStore::memory()).await;
    let pool = yaml("", &[node_line("jvm1", n1.addr, "")]);
    for (extra, xff) in [
        ("    trusted_proxies: [10.0.0.0/8]\n", "127.0.0.1"),
        (
            "    trusted_proxies: [127.0.0.1]\n",
            "198.51.100.1, 203.0.113.2, 127.0.0.1",
        ),
    ] {
        let lb = balancer(&listener_with(&pool, extra)).await;
        for h2c in [false, true] {
            let r = if h2c {
                h2(lb.addr(), Method::GET, "/whoami", &CLAIMED, Bytes::new()).await
            } else {
                Conn::open(lb.addr())
                    .await
                    .request(Method::GET, "/whoami", &CLAIMED, Bytes::new())
                    .await
            };
            let (seen_xff, seen_fwd) = forwarded_seen(r).await;
            assert_eq!(seen_xff, xff, "{extra:?} h2c {h2c}");
            assert_eq!(
                seen_fwd.starts_with("for=198.51.100.1"),
                xff.starts_with("198"),
                "{extra:?} h2c {h2c}: {seen_fwd}"
            );
        }
        lb.stop().await;
    }
}

/// A request with a body streamed in `chunks` pieces of `size` bytes and no length, over h2c.
async fn h2_streamed(addr: std::net::SocketAddr, chunks: usize, size: usize) -> Resp {
    use http_body_util::StreamBody;
    let fut = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let frames = (0..chunks).map(move |_| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![
                b'x';
                size
            ])))
        });
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let req = Request::builder()
            .method(Method::POST)
            .uri("http://app.test/echo")
            .body(body)
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default(),
        }
    };
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("h2c upload timed out")
}

fn requests_of(lb: &stickyroute::control::Running, route: &str) -> u64 {
    let status = stickyroute::control::admin::status(&lb.balancer);
    status.pools[0]
        .nodes
        .iter()
        .find(|n| n.route == route)
        .map(|n| n.requests)
        .unwrap()
}

/// A node that reads the whole request body before it answers (as an application reading a
/// form or an upload does), with the body's length: an upload cut at the limit gets the
/// balancer's `413`, never a response the node had already begun.
async fn buffering_node() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let (status, body) = match req.into_body().collect().await {
                            Ok(b) => (hyper::StatusCode::OK, b.to_bytes().len().to_string()),
                            Err(_) => (hyper::StatusCode::BAD_REQUEST, "cut".to_string()),
                        };
                        let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(r)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

const TOO_LARGE: &str =
    "413 Payload Too Large: the request body is larger than this listener accepts\n";

/// `max_body_bytes` on the hyper path: a body declared over the limit is answered `413`
/// before the node sees anything; one without a length (HTTP/1 chunked, HTTP/2 data frames)
/// is counted as it streams and cut with `413`; the node is not marked down; at the limit,
/// and without the key, bodies pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_bytes_answers_413_on_the_hyper_path() {
    let pool = yaml("", &[node_line("jvm1", buffering_node().await, "")]);
    let lb = balancer(&listener_with(&pool, "    max_body_bytes: 1024\n")).await;
    let addr = hyper_path(&lb).await;
    let post = |len: usize| async move {
        Conn::open(addr)
            .await
            .request(Method::POST, "/echo", &[], Bytes::from(vec![b'x'; len]))
            .await
    };
    let r = post(1024).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "1024"),
        "at the limit"
    );
    let before = requests_of(&lb, "jvm1");
    let r = post(1025).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (413, TOO_LARGE));
    assert_eq!(requests_of(&lb, "jvm1"), before, "the node saw nothing");
    // HTTP/1 chunked: 3 × 500 bytes, no length.
    let mut chunked = b"POST /echo HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"1f4\r\n");
        chunked.extend_from_slice(&[b'y'; 500]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(addr, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.ends_with(TOO_LARGE), "{answer}");
    // HTTP/2 data frames: 2 × 512 pass, 3 × 512 do not.
    let r = h2_streamed(addr, 2, 512).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "1024"));
    let r = h2_streamed(addr, 3, 512).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (413, TOO_LARGE));
    // Not the node's fault.
    let status = stickyroute::control::admin::status(&lb.balancer);
    assert_eq!(status.pools[0].nodes[0].health, "up");
    assert_eq!(post(10).await.status, 200);
    lb.stop().await;

    // Without the key there is no limit.
    let lb = balancer(&pool).await;
    let addr = hyper_path(&lb).await;
    let r = Conn::open(addr)
        .await
        .request(Method::POST, "/echo", &[], Bytes::from(vec![b'z'; 1 << 20]))
        .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "1048576"));
    lb.stop().await;
}

/// The same through the balancer's own listener, on the native HTTP/1 path and on h2c: the
/// listener passes its settings to `ProxyService::with_listener` (h2c), and the native path
/// checks `max_body_bytes` itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_bytes_through_the_listener_on_both_paths() {
    let pool = yaml("", &[node_line("jvm1", buffering_node().await, "")]);
    let lb = balancer(&listener_with(&pool, "    max_body_bytes: 1024\n")).await;
    let mut c = Conn::open(lb.addr()).await;
    let r = c
        .request(Method::POST, "/echo", &[], Bytes::from(vec![b'x'; 1024]))
        .await;
    assert_eq!(r.status, 200);
    let r = Conn::open(lb.addr())
        .await
        .request(Method::POST, "/echo", &[], Bytes::from(vec![b'x'; 1025]))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (413, TOO_LARGE),
        "native, declared"
    );
    let mut chunked = b"POST /echo HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"1f4\r\n");
        chunked.extend_from_slice(&[b'y'; 500]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(lb.addr(), &chunked).await;
    assert!(
        answer.starts_with("HTTP/1.1 413 "),
        "native, chunked: {answer}"
    );
    let r = h2_streamed(lb.addr(), 3, 512).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (413, TOO_LARGE),
        "h2c"
    );
    lb.stop().await;
}
