//! The timeouts, over real TCP on 127.0.0.1: `pools[].timeouts.body_idle`
//! (a node stalling mid-body, a client stalling its upload, a client that does not read),
//! `timeouts.response` counted from the end of the request body, and the tunnels' bounds
//! (`listeners[].tunnel_idle_timeout`, `max_connections`, the shutdown grace). The body cases
//! run on the native HTTP/1 path (cleartext) and, where hyper applies, over h2c with prior
//! knowledge (`proxy::service`); tunnels over cleartext and over TLS.
//!
//! The nodes are raw TCP listeners that misbehave on purpose, and report when the balancer
//! closed their connection. Timeouts are short (hundreds of ms) so that the binary runs fast;
//! the bounds asserted on durations are loose (what the feature must do, not how fast).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How a raw node behaves after reading a request head.
#[derive(Clone, Copy, Debug)]
enum Behavior {
    /// Reads the `Content-Length` body, answers `200` with `got N`.
    Echo,
    /// Reads the body and never answers.
    Silent,
    /// Answers a head with `Content-Length: 1000` and 100 bytes of it, then stalls.
    StallMidBody,
    /// Answers a head with `Content-Length: 1 MiB` and the first 100 KiB of it (a body the
    /// balancer splices from socket to socket on cleartext), then stalls.
    StallMidLongBody,
    /// Answers a 50 MiB body as fast as the connection takes it.
    Huge,
    /// Answers `101 Switching Protocols` and echoes every byte back.
    Upgrade,
}

/// A node on 127.0.0.1:0. The receiver gets, for each connection, how long after the request
/// head the connection ended (EOF or an error: the balancer closed it).
async fn raw_node(behavior: Behavior) -> (SocketAddr, mpsc::UnboundedReceiver<Duration>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(took) = node_conn(s, behavior).await {
                    let _ = tx.send(took);
                }
            });
        }
    });
    (addr, rx)
}

/// One connection of [`raw_node`]; `None` when no request head came.
async fn node_conn(mut s: TcpStream, behavior: Behavior) -> Option<Duration> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let start = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut got = buf.len() - head_end;
    let mut chunk = vec![0u8; 64 * 1024];
    match behavior {
        Behavior::Echo | Behavior::Silent => {
            while got < length {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Some(start.elapsed()),
                    Ok(n) => got += n,
                }
            }
            if let Behavior::Echo = behavior {
                let body = format!("got {got}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        }
        Behavior::StallMidBody => {
            let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
            resp.extend_from_slice(&[b'a'; 100]);
            let _ = s.write_all(&resp).await;
        }
        Behavior::StallMidLongBody => {
            let mut resp =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 1 << 20).into_bytes();
            resp.extend_from_slice(&[b'b'; LONG_PART]);
            let _ = s.write_all(&resp).await;
        }
        Behavior::Huge => {
            let total = 50usize << 20;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
            if s.write_all(head.as_bytes()).await.is_err() {
                return Some(start.elapsed());
            }
            let mut sent = 0;
            while sent < total {
                if s.write_all(&chunk).await.is_err() {
                    return Some(start.elapsed());
                }
                sent += chunk.len();
            }
        }
        Behavior::Upgrade => {
            let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
            if s.write_all(resp.as_bytes()).await.is_err() {
                return Some(start.elapsed());
            }
            loop {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Some(start.elapsed()),
                    Ok(n) => {
                        if s.write_all(&chunk[..n]).await.is_err() {
                            return Some(start.elapsed());
                        }
                    }
                }
            }
        }
    }
    // Wait for the balancer to close the connection.
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return Some(start.elapsed()),
            Ok(_) => {}
        }
    }
}

/// A balancer with one pool of one node `jvm1` at `node`; `pool` and `listener` are extra
/// YAML for the pool and the listener (flow style, one line each, or empty).
async fn lb_with(node: SocketAddr, pool: &str, listener: &str) -> stickyroute::control::Running {
    balancer(&config(node, pool, listener)).await
}

fn config(node: SocketAddr, pool: &str, listener: &str) -> String {
    let y = yaml(pool, &[node_line("jvm1", node, "")]);
    if listener.is_empty() {
        return y;
    }
    y.replacen(
        "  - bind: \"127.0.0.1:0\"\n",
        &format!("  - bind: \"127.0.0.1:0\"\n    {listener}\n"),
        1,
    )
}

/// `jvm1`'s (in flight, health, upstream errors) from the status report.
fn node_state(lb: &stickyroute::control::Running) -> (u64, String, u64) {
    let s = stickyroute::control::admin::status(&lb.balancer);
    let n = node_report(&s, "jvm1");
    (n.in_flight, n.health.clone(), n.upstream_errors)
}

/// Waits until `jvm1` has nothing in flight; returns its (health, upstream errors).
async fn settled(lb: &stickyroute::control::Running, what: &str) -> (String, u64) {
    eventually(
        &format!("{what}: in-flight back to 0"),
        Duration::from_secs(5),
        || async { node_state(lb).0 == 0 },
    )
    .await;
    let (_, health, errors) = node_state(lb);
    (health, errors)
}

/// The node's report that the balancer closed its connection, within `DEADLINE`.
async fn node_closed(rx: &mut mpsc::UnboundedReceiver<Duration>, what: &str) -> Duration {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: the node's connection was never closed"))
        .expect("node task")
}

/// After a cut-off: the balancer closed the node's connection, nothing is in flight, the
/// node is still up (never marked down for a body timeout) with `errors` upstream errors
/// (1 for a node's stall, 0 for a client's fault); then the balancer stops.
async fn released(
    lb: stickyroute::control::Running,
    closed: &mut mpsc::UnboundedReceiver<Duration>,
    what: &str,
    errors: u64,
) {
    node_closed(closed, what).await;
    let (health, seen) = settled(&lb, what).await;
    assert_eq!((health.as_str(), seen), ("up", errors), "{what}");
    lb.stop().await;
}

/// Reads from `s` until EOF (or a reset); what came and when it ended, `None` past `limit`.
async fn read_to_close<S: AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<(Vec<u8>, Instant)> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    r.ok().map(|()| (out, Instant::now()))
}

const POOL: &str = "timeouts: { body_idle: 300ms, response: 5s }";

/// A node sends a head and part of a `Content-Length` body, then stalls: the client's
/// connection closes after about `body_idle`, the node's too, the in-flight count returns to
/// 0, the node stays up and the stall is one upstream error.
#[tokio::test]
async fn a_node_stalling_mid_body_is_cut_off_after_body_idle() {
    stall_is_cut_off(Behavior::StallMidBody, 100, b'a', "stalled node").await;
}

/// How much of its 1 MiB body [`Behavior::StallMidLongBody`] sends.
const LONG_PART: usize = 100 * 1024;

/// The same with a long body, which moves from socket to socket without a copy through user
/// space: the client gets exactly the part the node sent, then the close after `body_idle`.
#[tokio::test]
async fn a_node_stalling_mid_long_body_is_cut_off_after_body_idle() {
    let what = "stalled node, long body";
    stall_is_cut_off(Behavior::StallMidLongBody, LONG_PART, b'b', what).await;
}

/// A GET to a node that stalls mid-body (`behavior`, after `part` bytes of `byte`): the client
/// gets the `200` head and exactly those bytes, then the close after about `body_idle`; the
/// node's connection is released and the stall counts once against it.
async fn stall_is_cut_off(behavior: Behavior, part: usize, byte: u8, what: &str) {
    let (node, mut closed) = raw_node(behavior).await;
    let lb = lb_with(node, POOL, "").await;
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    let sent = Instant::now();
    c.write_all(b"GET /big HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let (got, at) = read_to_close(&mut c, DEADLINE)
        .await
        .expect("the client connection was never closed");
    let (head, body) = split_head(&got);
    assert!(head.starts_with("http/1.1 200"), "{what}: {head}");
    assert_eq!(body.len(), part, "{what}: only what the node sent");
    assert!(body.iter().all(|&b| b == byte), "{what}");
    let took = at - sent;
    assert!(
        took >= Duration::from_millis(250),
        "{what}: closed at {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{what}: closed at {took:?}");
    released(lb, &mut closed, what, 1).await;
}

/// The same over h2c (hyper): the body fails for the client after about `body_idle`.
#[tokio::test]
async fn a_node_stalling_mid_body_is_cut_off_over_h2c() {
    let (node, mut closed) = raw_node(Behavior::StallMidBody).await;
    let lb = lb_with(node, POOL, "").await;
    let mut sender = h2c(lb.addr()).await;
    let req = Request::get("http://app.test/big")
        .body(ChanBody::none())
        .unwrap();
    let sent = Instant::now();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(DEADLINE, resp.into_body().collect()).await;
    let body = body.expect("the body never ended");
    assert!(
        body.is_err(),
        "a cut-off body is an error, not a short success"
    );
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(250), "cut at {took:?}");
    released(lb, &mut closed, "stalled node (h2c)", 1).await;
}

/// A client uploads part of a body and stalls: `408` after about `body_idle`, both
/// connections closed, in-flight 0, the node neither down nor blamed.
#[tokio::test]
async fn a_client_stalling_its_upload_is_cut_off_after_body_idle() {
    let (node, mut closed) = raw_node(Behavior::Echo).await;
    let lb = lb_with(node, POOL, "").await;
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    let mut req = b"POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'u'; 100]);
    let sent = Instant::now();
    c.write_all(&req).await.unwrap();
    let (got, at) = read_to_close(&mut c, DEADLINE)
        .await
        .expect("the client connection was never closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("stalled"), "{text}");
    assert!(at - sent >= Duration::from_millis(250), "{:?}", at - sent);
    released(lb, &mut closed, "stalled upload", 0).await;
}

/// The same over h2c: the stream is answered `408`, the node's connection closed.
#[tokio::test]
async fn a_client_stalling_its_upload_is_cut_off_over_h2c() {
    let (node, mut closed) = raw_node(Behavior::Echo).await;
    let lb = lb_with(node, POOL, "").await;
    let mut sender = h2c(lb.addr()).await;
    let (tx, body) = ChanBody::channel();
    let req = Request::post("http://app.test/up")
        .header("content-length", "1000")
        .body(body)
        .unwrap();
    tx.send(Bytes::from(vec![b'u'; 100])).await.unwrap();
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("no answer to a stalled upload")
        .unwrap();
    assert_eq!(resp.status(), 408);
    released(lb, &mut closed, "stalled upload (h2c)", 0).await;
}

/// A client that never reads a 50 MiB response: once the socket buffers are full, the
/// balancer gives up after `body_idle`, closes both connections and frees the in-flight slot.
#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off_after_body_idle() {
    let (node, mut closed) = raw_node(Behavior::Huge).await;
    let lb = lb_with(node, POOL, "").await;
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    c.write_all(b"GET /huge HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    // Not reading: the node's writes stop once the buffers on the way are full.
    released(lb, &mut closed, "unread response", 0).await;
}

/// The same over TLS, where hyper serves the client: the write-stall guard around the client
/// stream cuts it after `body_idle` (`proxy::write_stall`).
#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off_over_tls() {
    let (node, mut closed) = raw_node(Behavior::Huge).await;
    let (cert, dir) = test_cert();
    let tls = format!(
        "tls: {{ cert: \"{}\", key: \"{}\" }}",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let lb = lb_with(node, POOL, &tls).await;
    let mut c = connect(lb.addr(), Some(&cert)).await;
    c.write_all(b"GET /huge HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    // Not reading, the connection kept open.
    released(lb, &mut closed, "unread response over TLS", 0).await;
    drop(c);
}

const SLOW: &str = "timeouts: { body_idle: 300ms, response: 500ms }";

/// Sends `head` then 15 pieces of 100 bytes, 100 ms apart (1.5 s, three times
/// `timeouts.response`, each gap a third of `body_idle`); returns when the last went out.
async fn slow_upload<S: AsyncWrite + Unpin>(s: &mut S, head: &[u8]) -> Instant {
    s.write_all(head).await.unwrap();
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&[b's'; 100]).await.unwrap();
    }
    Instant::now()
}

const UPLOAD_HEAD: &[u8] = b"POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1500\r\n\r\n";

/// A slow but steady upload longer than `timeouts.response` gets the node's `200`; a node
/// that never answers after the body gets `504` about `timeouts.response` after its end.
#[tokio::test]
async fn the_response_timeout_counts_from_the_end_of_the_body() {
    let (echo, _) = raw_node(Behavior::Echo).await;
    let lb = lb_with(echo, SLOW, "").await;
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    slow_upload(&mut c, UPLOAD_HEAD).await;
    let r = read_head_and_body(&mut c).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("got 1500"), "{r}");
    lb.stop().await;

    let (silent, _) = raw_node(Behavior::Silent).await;
    let lb = lb_with(silent, SLOW, "").await;
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    let body_end = slow_upload(&mut c, UPLOAD_HEAD).await;
    let r = read_head_and_body(&mut c).await;
    let after = body_end.elapsed();
    assert!(r.starts_with("HTTP/1.1 504"), "{r}");
    assert!(
        after >= Duration::from_millis(400),
        "504 {after:?} after the body"
    );
    assert!(
        after < Duration::from_secs(2),
        "504 {after:?} after the body"
    );
    lb.stop().await;
}

/// The same over h2c (hyper).
#[tokio::test]
async fn the_response_timeout_counts_from_the_end_of_the_body_over_h2c() {
    for (behavior, want) in [(Behavior::Echo, 200), (Behavior::Silent, 504)] {
        let (node, _) = raw_node(behavior).await;
        let lb = lb_with(node, SLOW, "").await;
        let mut sender = h2c(lb.addr()).await;
        let (tx, body) = ChanBody::channel();
        let req = Request::post("http://app.test/up")
            .header("content-length", "1500")
            .body(body)
            .unwrap();
        let upload = tokio::spawn(async move {
            for _ in 0..15 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tx.send(Bytes::from(vec![b's'; 100])).await.unwrap();
            }
            Instant::now()
        });
        let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .expect("no answer")
            .unwrap();
        let answered = Instant::now();
        let body_end = upload.await.unwrap();
        assert_eq!(resp.status(), want, "{behavior:?}");
        if want == 504 {
            let after = answered - body_end;
            assert!(
                after >= Duration::from_millis(400),
                "504 {after:?} after the body"
            );
            assert!(
                after < Duration::from_secs(2),
                "504 {after:?} after the body"
            );
        } else {
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"got 1500");
        }
        lb.stop().await;
    }
}

/// Reads one response with a `Content-Length` body (or until close) as text.
async fn read_head_and_body<S: AsyncRead + Unpin + ?Sized>(c: &mut S) -> String {
    let mut out = Vec::new();
    let fut = async {
        let mut chunk = [0u8; 4096];
        loop {
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
            let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(usize::MAX);
                if out.len() >= end + 4 + len {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("no complete response");
    String::from_utf8_lossy(&out).into_owned()
}

const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

/// Opens a tunnel through the balancer at `addr`: the `101` read, the stream ready for bytes.
async fn open_tunnel<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(UPGRADE).await.unwrap();
    let mut head = Vec::new();
    let fut = async {
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).await.unwrap(), 1, "closed before the 101");
            head.push(b[0]);
        }
    };
    tokio::time::timeout(DEADLINE, fut).await.expect("no 101");
    let text = String::from_utf8_lossy(&head);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
}

/// Sends a byte every 100 ms for `busy` and reads each one back (the node echoes).
async fn keep_busy<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, busy: Duration) {
    let start = Instant::now();
    while start.elapsed() < busy {
        s.write_all(b"p").await.unwrap();
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut b)).await;
        assert_eq!(
            n.expect("no echo").unwrap(),
            1,
            "the tunnel closed while busy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tunnel with bytes every 100 ms stays open past `tunnel_idle_timeout`; once quiet it is
/// closed about `tunnel_idle_timeout` later, and the node's side with it.
async fn tunnel_idles_out<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    closed: &mut mpsc::UnboundedReceiver<Duration>,
) {
    open_tunnel(s).await;
    keep_busy(s, Duration::from_millis(1500)).await;
    let quiet = Instant::now();
    let (_, at) = read_to_close(s, DEADLINE)
        .await
        .expect("an idle tunnel was never closed");
    let idle = at - quiet;
    assert!(idle >= Duration::from_millis(400), "closed after {idle:?}");
    assert!(idle < Duration::from_secs(3), "closed after {idle:?}");
    node_closed(closed, "idle tunnel").await;
}

const TUNNEL_IDLE: &str = "tunnel_idle_timeout: 500ms";

#[tokio::test]
async fn an_idle_tunnel_is_closed_and_a_busy_one_is_not() {
    let (node, mut closed) = raw_node(Behavior::Upgrade).await;
    let lb = lb_with(node, "", TUNNEL_IDLE).await;
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    tunnel_idles_out(&mut c, &mut closed).await;
    lb.stop().await;
}

/// The same on a TLS listener (hyper's upgrade path).
#[tokio::test]
async fn an_idle_tunnel_is_closed_over_tls() {
    let (node, mut closed) = raw_node(Behavior::Upgrade).await;
    let (cert, dir) = test_cert();
    let tls = format!(
        "{TUNNEL_IDLE}\n    tls: {{ cert: \"{}\", key: \"{}\" }}",
        dir.path().join("cert.pem").display(),
        dir.path().join("key.pem").display()
    );
    let lb = lb_with(node, "", &tls).await;
    let tcp = TcpStream::connect(lb.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = tls_connector(&cert, b"http/1.1")
        .connect(name, tcp)
        .await
        .unwrap();
    tunnel_idles_out(&mut c, &mut closed).await;
    lb.stop().await;
}

/// A tunnel keeps its client connection's permit: with `max_connections: 1` a second client
/// is not served while the tunnel is open, and is once it closes. On a cleartext listener
/// (the native path) and a TLS one (hyper runs the tunnel apart from the connection).
#[tokio::test]
async fn a_tunnel_holds_its_place_in_max_connections() {
    let (cert, dir) = test_cert();
    let cert = std::sync::Arc::new(cert);
    for tls in [false, true] {
        let (node, _) = raw_node(Behavior::Upgrade).await;
        let (echo, _) = raw_node(Behavior::Echo).await;
        let mut listener = "max_connections: 1\n    tunnel_idle_timeout: 10s".to_string();
        if tls {
            listener.push_str(&format!(
                "\n    tls: {{ cert: \"{}\", key: \"{}\" }}",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display()
            ));
        }
        let y = format!(
            "{}      {}\n",
            config(node, "", &listener),
            node_line("jvm2", echo, "")
        );
        let lb = balancer(&y).await;
        let tls_cert = tls.then(|| cert.clone());
        let mut tunnel = connect(lb.addr(), tls_cert.as_deref()).await;
        // Pinned to the upgrade node.
        tunnel
            .write_all(b"GET /ws HTTP/1.1\r\nHost: app.test\r\nCookie: JSESSIONID=T.jvm1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        let mut b = [0u8; 512];
        let n = tokio::time::timeout(DEADLINE, tunnel.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(b[..n].starts_with(b"HTTP/1.1 101"), "tls {tls}");
        let addr = lb.addr();
        let mut other = tokio::spawn(async move {
            let mut s = connect(addr, tls_cert.as_deref()).await;
            s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nCookie: JSESSIONID=O.jvm2\r\n\r\n")
                .await
                .unwrap();
            read_head_and_body(&mut s).await
        });
        let early = tokio::time::timeout(Duration::from_millis(500), &mut other).await;
        assert!(
            early.is_err(),
            "tls {tls}: served while the tunnel holds the only permit"
        );
        drop(tunnel);
        let r = other.await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "tls {tls}: {r}");
        lb.stop().await;
    }
}

/// A client stream, cleartext or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects to `addr`, with TLS (ALPN `http/1.1`) when given the listener's certificate.
async fn connect(addr: SocketAddr, tls: Option<&rcgen::CertifiedKey>) -> Box<dyn Io> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let Some(cert) = tls else {
        return Box::new(tcp);
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    Box::new(
        tls_connector(cert, b"http/1.1")
            .connect(name, tcp)
            .await
            .unwrap(),
    )
}

/// Graceful shutdown waits for an open tunnel until the grace deadline, then closes it.
#[tokio::test]
async fn shutdown_closes_a_tunnel_at_the_grace_deadline() {
    let (node, mut closed) = raw_node(Behavior::Upgrade).await;
    let cfg = config(node, "", "tunnel_idle_timeout: 1h");
    let cfg = stickyroute::config::Config::from_yaml(&cfg, "t.yaml").unwrap();
    let grace = Duration::from_millis(800);
    let lb = stickyroute::control::Running::start_with_grace(cfg, grace)
        .await
        .unwrap();
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    open_tunnel(&mut c).await;
    let stopping = Instant::now();
    let stop = tokio::spawn(lb.stop());
    // Still open inside the grace period.
    keep_busy(&mut c, Duration::from_millis(400)).await;
    let (_, at) = read_to_close(&mut c, DEADLINE)
        .await
        .expect("the tunnel outlived the shutdown");
    let took = at - stopping;
    assert!(
        took >= Duration::from_millis(700),
        "closed {took:?} into the grace"
    );
    assert!(
        took < Duration::from_secs(3),
        "closed {took:?} after shutdown began"
    );
    node_closed(&mut closed, "tunnel at shutdown").await;
    tokio::time::timeout(DEADLINE, stop)
        .await
        .expect("stop returns")
        .unwrap();
}

// --- clients -------------------------------------------------------------------------------

/// An h2c (prior knowledge) connection to the balancer: the hyper path.
async fn h2c(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<ChanBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// A request body fed through a channel: sent as the test pushes pieces, ended when the
/// sender is dropped.
struct ChanBody(Option<mpsc::Receiver<Bytes>>);

impl ChanBody {
    fn channel() -> (mpsc::Sender<Bytes>, ChanBody) {
        let (tx, rx) = mpsc::channel(16);
        (tx, ChanBody(Some(rx)))
    }

    fn none() -> ChanBody {
        ChanBody(None)
    }
}

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            None => Poll::Ready(None),
            Some(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

/// `listeners[].keepalive_timeout` for the tests below, and the listener lines that set it
/// (with TLS when given a certificate directory).
fn keepalive_listener(tls: Option<&tempfile::TempDir>) -> String {
    let mut l = "keepalive_timeout: 1s".to_string();
    if let Some(dir) = tls {
        l.push_str(&format!(
            "\n    tls: {{ cert: \"{}\", key: \"{}\" }}",
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display()
        ));
    }
    l
}

/// One HTTP/1.1 request on `c` and its whole response (`Content-Length` framed).
async fn h1_exchange<S: AsyncRead + AsyncWrite + Unpin>(c: &mut S, what: &str) {
    c.write_all(b"GET /count HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Content-Length");
            if got.len() >= end + 4 + length {
                break;
            }
        }
        let n = tokio::time::timeout(DEADLINE, c.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("{what}: no response in time: {got:?}"))
            .unwrap();
        assert!(n > 0, "{what}: closed before the response: {got:?}");
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{what}: {got:?}");
}

/// An idle HTTP/1.1 keep-alive connection: kept while idle for less than
/// `keepalive_timeout` (a second request goes through), closed once idle for it.
async fn h1_idle_connection_closes_after_keepalive_timeout(tls: bool) {
    let store = stickyroute::store::SessionStore::memory();
    let node = node("jvm1", &store).await;
    let (cert, dir) = test_cert();
    let listener = keepalive_listener(tls.then_some(&dir));
    let lb = lb_with(node.addr, "", &listener).await;
    let mut c = connect(lb.addr(), tls.then_some(&cert)).await;
    h1_exchange(&mut c, "first request").await;
    // Idle for half the limit: still open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    h1_exchange(&mut c, "after 500 ms idle").await;
    let idle_from = Instant::now();
    let mut byte = [0u8; 1];
    let end = tokio::time::timeout(DEADLINE, c.read(&mut byte))
        .await
        .expect("the idle connection was never closed");
    let idle = idle_from.elapsed();
    // A clean end: nothing sent before the close, and over TLS a `close_notify` (without it
    // the TLS client reads an unexpected EOF, an error).
    assert!(
        matches!(end, Ok(0)),
        "the idle connection did not end cleanly: {end:?}"
    );
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(4),
        "closed after {idle:?} idle (keepalive_timeout 1s)"
    );
    lb.stop().await;
}

#[tokio::test]
async fn an_idle_http1_connection_closes_after_keepalive_timeout() {
    h1_idle_connection_closes_after_keepalive_timeout(false).await;
}

#[tokio::test]
async fn an_idle_http1_connection_closes_after_keepalive_timeout_over_tls() {
    h1_idle_connection_closes_after_keepalive_timeout(true).await;
}

/// An HTTP/2 connection: kept while a stream is open (a node that does not answer), closed
/// once it has had no open stream for `keepalive_timeout`.
async fn h2_idle_connection_closes_after_keepalive_timeout(tls: bool) {
    let (echo, _closed) = raw_node(Behavior::Echo).await;
    let (cert, dir) = test_cert();
    let listener = keepalive_listener(tls.then_some(&dir));
    let yaml = format!(
        "{}  - name: slow\n    path_prefix: /slow\n    nodes:\n      - {{ route: jvm9, address: \"{}\" }}\n",
        config(echo, "", &listener),
        raw_node(Behavior::Silent).await.0
    );
    let lb = balancer(&yaml).await;
    let tcp = TcpStream::connect(lb.addr()).await.unwrap();
    let io: Box<dyn Io> = if tls {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        Box::new(
            tls_connector(&cert, b"h2")
                .connect(name, tcp)
                .await
                .unwrap(),
        )
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    let (ended_tx, mut ended) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = conn.await;
        let _ = ended_tx.send(Instant::now());
    });
    let get = |path: &str| {
        Request::get(format!("http://app.test{path}"))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap()
    };
    // A stream held open by a node that never answers, for twice the keep-alive timeout.
    let held = sender.send_request(get("/slow/x"));
    let held = tokio::spawn(held);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        ended.try_recv().is_err(),
        "the connection closed with a stream open"
    );
    held.abort();
    // A request that completes; then the connection has no open stream.
    sender.ready().await.unwrap();
    let resp = sender.send_request(get("/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"got 0");
    let idle_from = Instant::now();
    let closed_at = tokio::time::timeout(DEADLINE, &mut ended)
        .await
        .expect("the idle HTTP/2 connection was never closed")
        .unwrap();
    let idle = closed_at - idle_from;
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(4),
        "closed after {idle:?} with no open stream (keepalive_timeout 1s)"
    );
    lb.stop().await;
}

#[tokio::test]
async fn an_http2_connection_with_no_open_stream_closes_after_keepalive_timeout() {
    h2_idle_connection_closes_after_keepalive_timeout(false).await;
}

#[tokio::test]
async fn an_http2_connection_with_no_open_stream_closes_after_keepalive_timeout_over_tls() {
    h2_idle_connection_closes_after_keepalive_timeout(true).await;
}
