//! Per-node connection limits with their queue, on both HTTP paths (native HTTP/1.1 and
//! hyper's h2c), and the HTTP/2 limits: advertised settings, header-list size, rapid reset.
//! Nodes are demo nodes (`GET /slow?ms=N` holds a slot for N ms); the HTTP/2 client is the
//! `h2` crate, driven frame by frame.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stickyroute::control::Running;
use stickyroute::store::SessionStore;
use tokio::net::TcpStream;

/// Which of the balancer's request paths a client takes.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// HTTP/1.1: the native path.
    Native,
    /// HTTP/2 with prior knowledge: hyper's path.
    H2c,
}

/// A GET with the session cookie `cookie`, on a fresh connection of `path`'s protocol.
async fn request(path: Path, addr: SocketAddr, target: &str, cookie: Option<&str>) -> Resp {
    match path {
        Path::Native => get(addr, target, cookie).await,
        Path::H2c => {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let mut req = Request::get(format!("http://app.test{target}"));
            if let Some(c) = cookie {
                req = req.header("cookie", format!("JSESSIONID={c}"));
            }
            let fut = async {
                let resp = sender
                    .send_request(req.body(Full::new(Bytes::new())).unwrap())
                    .await
                    .expect("h2 request failed");
                let (parts, body) = resp.into_parts();
                Resp {
                    status: parts.status,
                    headers: parts.headers,
                    body: body.collect().await.expect("body").to_bytes(),
                }
            };
            tokio::time::timeout(DEADLINE, fut)
                .await
                .expect("request timed out")
        }
    }
}

/// [`request`] in a task of its own.
fn spawn_request(
    path: Path,
    addr: SocketAddr,
    target: &'static str,
    cookie: &'static str,
) -> tokio::task::JoinHandle<Resp> {
    tokio::spawn(async move { request(path, addr, target, Some(cookie)).await })
}

/// A gauge or counter of `node` in `/metrics` (0 when absent).
async fn node_metric(lb: &Running, name: &str, node: &str, extra: &[(&str, &str)]) -> f64 {
    let mut labels = vec![("pool", "app"), ("node", node)];
    labels.extend_from_slice(extra);
    sample(&scrape(lb).await, name, &labels).unwrap_or(0.0)
}

/// Waits until `node`'s in-flight gauge reads `n`.
async fn until_in_flight(lb: &Running, node: &str, n: f64) {
    eventually(
        &format!("{n} in flight on {node}"),
        DEADLINE,
        || async move { node_metric(lb, "stickyroute_node_in_flight", node, &[]).await == n },
    )
    .await;
}

/// Waits until `node`'s queue gauge reads `n`.
async fn until_queued(lb: &Running, node: &str, n: f64) {
    eventually(&format!("{n} queued for {node}"), DEADLINE, || async move {
        node_metric(lb, "stickyroute_node_queue_length", node, &[]).await == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_limit_waits_and_is_served_when_the_slot_frees() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lines = vec![node_line("jvm1", n1.addr, "max_connections: 1")];
    let lb = balancer(&with_admin(&yaml("timeouts: { queue: 10s }", &lines), None)).await;
    for path in [Path::Native, Path::H2c] {
        let first = spawn_request(path, lb.addr(), "/slow?ms=1000", "A.jvm1");
        until_in_flight(&lb, "jvm1", 1.0).await;
        let second = spawn_request(path, lb.addr(), "/whoami", "B.jvm1");
        // The queue is visible while the second request waits.
        until_queued(&lb, "jvm1", 1.0).await;
        assert!(
            !second.is_finished(),
            "{path:?}: the second request did not wait"
        );
        let r1 = first.await.unwrap();
        let r2 = second.await.unwrap();
        assert_eq!((r1.status.as_u16(), r1.node()), (200, "jvm1"), "{path:?}");
        assert_eq!(r2.status, 200, "{path:?}: {}", r2.text());
        assert_eq!(r2.node(), "jvm1");
        until_queued(&lb, "jvm1", 0.0).await;
        until_in_flight(&lb, "jvm1", 0.0).await;
    }
    assert_eq!(
        node_metric(&lb, "stickyroute_node_max_connections", "jvm1", &[]).await,
        1.0
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_queue_timeout_a_pinned_session_gets_503_and_is_not_moved() {
    let store = SessionStore::memory();
    let (n1, n2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let lines = vec![
        node_line("jvm1", n1.addr, "max_connections: 1"),
        node_line("jvm2", n2.addr, ""),
    ];
    let lb = balancer(&with_admin(
        &yaml("timeouts: { queue: 200ms }", &lines),
        None,
    ))
    .await;
    for (round, path) in [Path::Native, Path::H2c].into_iter().enumerate() {
        let first = spawn_request(path, lb.addr(), "/slow?ms=1500", "A.jvm1");
        until_in_flight(&lb, "jvm1", 1.0).await;
        let r = request(path, lb.addr(), "/whoami", Some("B.jvm1")).await;
        assert_eq!(r.status, 503, "{path:?}: {}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"), "{path:?}");
        assert!(
            r.text().contains("node jvm1 is at its connection limit"),
            "{path:?}: {}",
            r.text()
        );
        // Not moved to jvm2 (which had room), no cookie rewritten.
        assert_eq!(r.header("x-node"), None, "{path:?}");
        assert!(r.session_cookies().is_empty(), "{path:?}");
        let r1 = first.await.unwrap();
        assert_eq!(r1.status, 200, "{path:?}");
        // A busy node is not a failed one: still up, and the session is served there next.
        assert_eq!(
            node_metric(&lb, "stickyroute_node_up", "jvm1", &[]).await,
            1.0
        );
        let r = request(path, lb.addr(), "/whoami", Some("B.jvm1")).await;
        assert_eq!((r.status.as_u16(), r.node()), (200, "jvm1"), "{path:?}");
        let refused = node_metric(
            &lb,
            "stickyroute_node_limit_refused_total",
            "jvm1",
            &[("reason", "queue_timeout")],
        )
        .await;
        assert_eq!(refused, (round + 1) as f64, "{path:?}");
    }
    let failovers = node_metric(
        &lb,
        "stickyroute_failovers_total",
        "jvm2",
        &[("direction", "in")],
    )
    .await;
    assert_eq!(failovers, 0.0);
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lines = vec![node_line("jvm1", n1.addr, "max_connections: 1")];
    let extra = "max_queue_per_node: 1\ntimeouts: { queue: 10s }";
    let lb = balancer(&with_admin(&yaml(extra, &lines), None)).await;
    for (round, path) in [Path::Native, Path::H2c].into_iter().enumerate() {
        let first = spawn_request(path, lb.addr(), "/slow?ms=1500", "A.jvm1");
        until_in_flight(&lb, "jvm1", 1.0).await;
        let second = spawn_request(path, lb.addr(), "/whoami", "B.jvm1");
        until_queued(&lb, "jvm1", 1.0).await;
        // The queue holds one: the third is refused without waiting for a slot.
        let r = request(path, lb.addr(), "/whoami", Some("C.jvm1")).await;
        assert_eq!(r.status, 503, "{path:?}: {}", r.text());
        assert!(r.text().contains("node jvm1 is at its connection limit"));
        assert!(r.header("retry-after").is_some());
        assert!(
            !second.is_finished(),
            "{path:?}: refused only after the queue moved"
        );
        assert_eq!(first.await.unwrap().status, 200);
        assert_eq!(second.await.unwrap().status, 200);
        let refused = node_metric(
            &lb,
            "stickyroute_node_limit_refused_total",
            "jvm1",
            &[("reason", "queue_full")],
        )
        .await;
        assert_eq!(refused, (round + 1) as f64, "{path:?}");
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_go_to_the_node_with_room() {
    let store = SessionStore::memory();
    let (n1, n2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let lines = vec![
        node_line("jvm1", n1.addr, "max_connections: 1"),
        node_line("jvm2", n2.addr, "max_connections: 10"),
    ];
    let lb = balancer(&with_admin(&yaml("", &lines), None)).await;
    // jvm1 is full with one request; jvm2 has two in flight, more than jvm1, so power of two
    // choices on in-flight counts alone would prefer jvm1.
    let held = [
        spawn_request(Path::Native, lb.addr(), "/slow?ms=1500", "A.jvm1"),
        spawn_request(Path::Native, lb.addr(), "/slow?ms=1500", "B.jvm2"),
        spawn_request(Path::Native, lb.addr(), "/slow?ms=1500", "C.jvm2"),
    ];
    until_in_flight(&lb, "jvm1", 1.0).await;
    until_in_flight(&lb, "jvm2", 2.0).await;
    for _ in 0..10 {
        let r = get(lb.addr(), "/whoami", None).await;
        assert_eq!((r.status.as_u16(), r.node()), (200, "jvm2"));
    }
    assert_eq!(
        node_metric(&lb, "stickyroute_node_queue_length", "jvm1", &[]).await,
        0.0
    );
    for h in held {
        assert_eq!(h.await.unwrap().status, 200);
    }
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_holds_its_slot_until_it_closes() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lines = vec![node_line("jvm1", n1.addr, "max_connections: 1")];
    let lb = balancer(&with_admin(
        &yaml("timeouts: { queue: 200ms }", &lines),
        None,
    ))
    .await;
    let stream = TcpStream::connect(lb.addr()).await.unwrap();
    let mut req = format!("ws://{}/ws", lb.addr())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("cookie", "JSESSIONID=WS.jvm1".parse().unwrap());
    let (ws, resp) = tokio::time::timeout(DEADLINE, tokio_tungstenite::client_async(req, stream))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 101);
    until_in_flight(&lb, "jvm1", 1.0).await;
    let r = get(lb.addr(), "/whoami", Some("B.jvm1")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    drop(ws);
    until_in_flight(&lb, "jvm1", 0.0).await;
    let r = get(lb.addr(), "/whoami", Some("B.jvm1")).await;
    assert_eq!((r.status.as_u16(), r.node()), (200, "jvm1"));
    lb.stop().await;
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 limits

/// An `h2` client connection to `addr` (h2c, prior knowledge) and the task driving it.
async fn h2_client(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    h2::client::Connection<TcpStream, Bytes>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    h2::client::handshake(tcp).await.expect("h2 handshake")
}

fn h2_get(target: &str) -> http::Request<()> {
    http::Request::get(format!("http://app.test{target}"))
        .body(())
        .unwrap()
}

/// One request on `send` while driving `conn`; the status, or the stream's error.
async fn h2_status(
    send: &mut h2::client::SendRequest<Bytes>,
    conn: &mut h2::client::Connection<TcpStream, Bytes>,
    req: http::Request<()>,
) -> Result<u16, String> {
    let exchange = async {
        let mut ready = send.clone().ready().await?;
        let (resp, _) = ready.send_request(req, true)?;
        Ok::<_, h2::Error>(resp.await?.status().as_u16())
    };
    let fut = async {
        tokio::select! {
            r = exchange => r,
            r = &mut *conn => panic!("the connection ended first: {r:?}"),
        }
    };
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("h2 request timed out")
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_settings_advertise_the_stream_limit_and_a_large_header_list_is_refused() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let mut y = yaml("", &[node_line("jvm1", n1.addr, "")]);
    y = y.replacen(
        "bind: \"127.0.0.1:0\"\n",
        "bind: \"127.0.0.1:0\"\n    h2: { max_concurrent_streams: 7, max_header_list_size: 4096 }\n",
        1,
    );
    let lb = balancer(&y).await;
    let (mut send, mut conn) = h2_client(lb.addr()).await;
    assert_eq!(
        h2_status(&mut send, &mut conn, h2_get("/whoami")).await,
        Ok(200)
    );
    // The server's SETTINGS arrived with the first exchange.
    assert_eq!(conn.max_concurrent_send_streams(), 7);

    let mut big = h2_get("/whoami");
    big.headers_mut()
        .insert("x-big", "a".repeat(6000).parse().unwrap());
    let refused = h2_status(&mut send, &mut conn, big).await;
    assert_eq!(refused, Ok(431), "{refused:?}");
    // The connection survives a refused header list.
    assert_eq!(
        h2_status(&mut send, &mut conn, h2_get("/whoami")).await,
        Ok(200)
    );
    // Closed here: the balancer's drain would wait for a connection nobody drives.
    drop((send, conn));
    lb.stop().await;
}

/// Opens streams and resets each before its answer, at most 10,000 of them or for 10 s, with
/// `pause` between a stream's `HEADERS` and its `RST_STREAM`. Returns how many streams were
/// opened before the server closed the connection, `None` if it never did.
async fn reset_loop(addr: SocketAddr, pause: Option<Duration>) -> Option<usize> {
    let (send, conn) = h2_client(addr).await;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let started = Instant::now();
    let mut send = send;
    for i in 0..10_000 {
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
        let Ok(ready) = send.clone().ready().await else {
            return Some(i);
        };
        send = ready;
        let Ok((resp, mut stream)) = send.send_request(h2_get("/slow?ms=3000"), true) else {
            return Some(i);
        };
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
        stream.send_reset(h2::Reason::CANCEL);
        drop(resp);
        if driver.is_finished() {
            return Some(i + 1);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_is_cut_off_and_other_clients_are_served() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let mut y = yaml("", &[node_line("jvm1", n1.addr, "")]);
    y = y.replacen(
        "bind: \"127.0.0.1:0\"\n",
        "bind: \"127.0.0.1:0\"\n    h2: { max_reset_streams: 20 }\n",
        1,
    );
    let lb = balancer(&y).await;
    // Paced: every stream reaches the service before its reset (our budget); in a burst, the
    // resets catch streams h2 has not handed over yet (h2's pending-accept limit).
    for pause in [Some(Duration::from_millis(3)), None] {
        let opened = reset_loop(lb.addr(), pause).await;
        let Some(opened) = opened else {
            panic!("{pause:?}: the server never closed a connection that reset 10,000 streams")
        };
        println!("{pause:?} between HEADERS and RST_STREAM: cut off after {opened} streams");
        assert!(
            opened < 5000,
            "{pause:?}: cut off only after {opened} streams"
        );
        // A well-behaved client on a new connection is served.
        let (mut send, mut conn) = h2_client(lb.addr()).await;
        assert_eq!(
            h2_status(&mut send, &mut conn, h2_get("/whoami")).await,
            Ok(200)
        );
    }
    lb.stop().await;
}

/// The connection driver that enforces the reset budget also does the listener's graceful
/// shutdown: a stream in flight when the balancer stops is finished, and the connection, still
/// open on the client's side, is closed with `GOAWAY` instead of holding the drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_in_flight_finish_when_the_balancer_stops() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lines = vec![node_line("jvm1", n1.addr, "")];
    let lb = balancer(&with_admin(&yaml("", &lines), None)).await;
    let (send, conn) = h2_client(lb.addr()).await;
    let driver = tokio::spawn(conn);
    let (resp, _) = send
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(h2_get("/slow?ms=800"), true)
        .unwrap();
    until_in_flight(&lb, "jvm1", 1.0).await;
    tokio::time::timeout(DEADLINE, lb.stop())
        .await
        .expect("the balancer did not stop");
    let status = tokio::time::timeout(DEADLINE, resp)
        .await
        .unwrap()
        .unwrap()
        .status();
    assert_eq!(status, 200);
    // `send` is still held: the server ended the connection.
    let ended = tokio::time::timeout(DEADLINE, driver).await;
    assert!(ended.is_ok(), "the connection outlived the balancer");
    drop(send);
}

/// Every stream of a connection is served in the connection's task: a slow stream does not
/// hold up the others, and CONNECT (which this proxy does not tunnel) gets `405` as it does
/// on HTTP/1.1, the connection serving on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_of_one_connection_do_not_wait_for_each_other() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lb = balancer(&yaml("", &[node_line("jvm1", n1.addr, "")])).await;
    let (send, conn) = h2_client(lb.addr()).await;
    let driver = tokio::spawn(conn);
    let mut ready = send.clone().ready().await.unwrap();
    let (mut slow, _) = ready.send_request(h2_get("/slow?ms=2000"), true).unwrap();
    let mut fast = Vec::new();
    for _ in 0..5 {
        let mut ready = send.clone().ready().await.unwrap();
        fast.push(ready.send_request(h2_get("/whoami"), true).unwrap().0);
    }
    for resp in fast {
        let resp = tokio::time::timeout(DEADLINE, resp).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Polled once: the slow stream is still waiting for its node.
    let polled = tokio::time::timeout(Duration::ZERO, &mut slow).await;
    assert!(polled.is_err(), "the fast streams waited for the slow one");
    let slow = tokio::time::timeout(DEADLINE, slow).await.unwrap().unwrap();
    assert_eq!(slow.status(), 200);

    let connect = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri("app.test:443")
        .body(())
        .unwrap();
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, _) = ready.send_request(connect, true).unwrap();
    let resp = tokio::time::timeout(DEADLINE, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 405);
    let mut ready = send.clone().ready().await.unwrap();
    let (resp, _) = ready.send_request(h2_get("/whoami"), true).unwrap();
    let resp = tokio::time::timeout(DEADLINE, resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    drop((send, ready));
    driver.abort();
    lb.stop().await;
}
