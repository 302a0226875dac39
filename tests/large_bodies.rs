//! Long response bodies over real TCP on 127.0.0.1: on a cleartext HTTP/1.1 connection a
//! `Content-Length` body longer than one buffer moves from the node's socket to the client's
//! through a pipe (`splice(2)`), never through user space, and so does a long upload from the
//! client to the node. These tests hold that path to the copying one's contract: every byte
//! exact and in order, the node's connection reused after a complete body, a client that
//! leaves mid-body costing only the node's connection (not blamed on the node), a node that
//! closes mid-body seen as a truncated response and counted against it, a stalled upload
//! answered `408`, a node that closes during an upload answered `502`. The same exchanges run
//! over h2c, which copies, as the reference.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Byte `i` of every body the node sends: a pattern that a lost, repeated or reordered
/// piece breaks.
fn pattern_byte(i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 12)) as u8
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(pattern_byte).collect()
}

/// A raw HTTP/1.1 node: `GET /len/N` answers `N` pattern bytes with a `Content-Length`,
/// keeping the connection open (a `HEAD` gets the head alone); `GET /cut/N` sends the head of
/// an `N`-byte body and the first `N / 4` bytes, then closes; `POST /check` reads its
/// `Content-Length` body and answers `ok N` when it is the pattern, else where it differs;
/// `POST /hangup` closes once the head is read. Counts the connections it accepted.
struct RawNode {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
}

async fn raw_node() -> RawNode {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s));
        }
    });
    RawNode { addr, conns }
}

async fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let is_head = head.starts_with("HEAD ");
        let target = head.split(' ').nth(1).unwrap_or("/").to_string();
        if target == "/hangup" {
            return;
        }
        if target == "/check" {
            let Some(answer) = check_upload(&mut s, &mut buf, &head).await else {
                return;
            };
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let (kind, n) = target[1..].split_once('/').unwrap_or(("len", "0"));
        let len: usize = n.parse().unwrap_or(0);
        let mut resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").into_bytes();
        let body = pattern(len);
        if kind == "cut" {
            resp.extend_from_slice(&body[..len / 4]);
            let _ = s.write_all(&resp).await;
            return;
        }
        if !is_head {
            resp.extend_from_slice(&body);
        }
        if s.write_all(&resp).await.is_err() {
            return;
        }
    }
}

/// Reads the `Content-Length` body of `head` (what `buf` holds of it first): `ok N` when it
/// is the pattern, else the first offset that differs; `None` when the peer closed early.
async fn check_upload(s: &mut TcpStream, buf: &mut Vec<u8>, head: &str) -> Option<String> {
    let len: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut seen = 0;
    let mut bad = None;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let take = buf.len().min(len - seen);
        for (k, &b) in buf[..take].iter().enumerate() {
            if bad.is_none() && b != pattern_byte(seen + k) {
                bad = Some(seen + k);
            }
        }
        seen += take;
        buf.drain(..take);
        if seen == len {
            return Some(match bad {
                None => format!("ok {len}"),
                Some(at) => format!("differs at {at}"),
            });
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `req` on a new connection and reads until the balancer closes it; `what` says which
/// exchange never closed.
async fn until_closed(lb: &stickyroute::control::Running, req: &[u8], what: &str) -> Vec<u8> {
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    c.write_all(req).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, c.read_to_end(&mut got))
        .await
        .unwrap_or_else(|_| panic!("{what}"))
        .unwrap();
    got
}

async fn lb(node: &RawNode) -> stickyroute::control::Running {
    let pool = "timeouts: { body_idle: 2s, response: 5s }";
    balancer(&yaml(pool, &[node_line("jvm1", node.addr, "")])).await
}

fn upstream_errors(lb: &stickyroute::control::Running) -> (u64, u64) {
    let s = stickyroute::control::admin::status(&lb.balancer);
    let n = node_report(&s, "jvm1");
    (n.in_flight, n.upstream_errors)
}

const SIZES: [usize; 5] = [
    16 * 1024 + 1,
    64 * 1024,
    64 * 1024 + 7,
    (1 << 20) + 3,
    5 << 20,
];

on_both_paths!(long_bodies_arrive_exact_and_the_node_connection_is_reused);
/// Bodies around and far past one buffer, one after another on one client connection: each
/// arrives byte for byte, and the node's connection serves them all (it went back to the pool
/// after every complete body).
async fn long_bodies_arrive_exact_and_the_node_connection_is_reused(proto: Proto) {
    let node = raw_node().await;
    let lb = lb(&node).await;
    let mut c = proto.open(lb.addr()).await;
    for len in SIZES {
        let r = c.get(&format!("/len/{len}"), None).await;
        assert_eq!(r.status, 200, "{len}");
        assert_eq!(r.body.len(), len, "{proto}: length of a {len}-byte body");
        assert!(
            r.body[..] == pattern(len)[..],
            "{proto}: bytes of a {len}-byte body"
        );
    }
    assert_eq!(
        node.conns.load(Ordering::SeqCst),
        1,
        "{proto}: one node connection"
    );
    assert_eq!(upstream_errors(&lb), (0, 0));
    lb.stop().await;
}

/// A client that reads 100 KiB of an 8 MiB body and leaves: the node's connection is closed
/// (never reused with the rest of the body in it), the node is not blamed, nothing stays in
/// flight, and the next request gets its whole body on a new node connection.
#[tokio::test]
async fn a_client_leaving_mid_long_body_costs_only_the_node_connection() {
    let node = raw_node().await;
    let lb = lb(&node).await;
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    c.write_all(b"GET /len/8388608 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = 0;
    let mut chunk = vec![0u8; 16 * 1024];
    while got < 100 * 1024 {
        let n = c.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
    }
    drop(c);
    eventually("in flight back to 0", DEADLINE, || async {
        upstream_errors(&lb).0 == 0
    })
    .await;
    let r = get(lb.addr(), "/len/1048576", None).await;
    assert_eq!(r.status, 200);
    assert!(r.body[..] == pattern(1 << 20)[..]);
    assert_eq!(
        node.conns.load(Ordering::SeqCst),
        2,
        "a new node connection"
    );
    assert_eq!(
        upstream_errors(&lb),
        (0, 0),
        "the client's leaving is not the node's fault"
    );
    lb.stop().await;
}

/// A node that closes a quarter of the way through a 1 MiB body: the client gets the head
/// and exactly the bytes the node sent, then its connection closes (HTTP/1.1's only way to say
/// the body was cut); the node has one upstream error and the balancer serves on.
#[tokio::test]
async fn a_node_closing_mid_long_body_truncates_and_closes() {
    let node = raw_node().await;
    let lb = lb(&node).await;
    let req = b"GET /cut/1048576 HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let got = until_closed(&lb, req, "the client connection was never closed").await;
    let (head, body) = split_head(&got);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 1048576"), "{head}");
    assert!(
        body == &pattern(1 << 20)[..(1 << 20) / 4],
        "the bytes the node sent"
    );
    eventually("in flight back to 0", DEADLINE, || async {
        upstream_errors(&lb).0 == 0
    })
    .await;
    assert_eq!(upstream_errors(&lb).1, 1, "the cut counts against the node");
    let r = get(lb.addr(), "/len/70000", None).await;
    assert!(r.body[..] == pattern(70000)[..]);
    lb.stop().await;
}

/// A `HEAD` of a long body: the head with its `Content-Length`, no body bytes, and the
/// connection still usable for a `GET` of it.
#[tokio::test]
async fn head_of_a_long_body_sends_no_body() {
    let node = raw_node().await;
    let lb = lb(&node).await;
    let req = b"HEAD /len/1048576 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /len/20000 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let got = until_closed(&lb, req, "never closed").await;
    let (first, rest) = split_head(&got);
    assert!(first.contains("content-length: 1048576"), "{first}");
    assert!(
        rest.starts_with(b"HTTP/1.1 200"),
        "the GET's head right after the HEAD's"
    );
    let (_, body) = split_head(rest);
    assert!(body == &pattern(20000)[..]);
    lb.stop().await;
}

on_both_paths!(long_uploads_arrive_exact);
/// Uploads around and far past one buffer, one after another on one client connection: the
/// node receives each byte for byte.
async fn long_uploads_arrive_exact(proto: Proto) {
    let node = raw_node().await;
    let lb = lb(&node).await;
    let mut c = proto.open(lb.addr()).await;
    for len in SIZES {
        let body = bytes::Bytes::from(pattern(len));
        let r = c.request(http::Method::POST, "/check", &[], body).await;
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (200, format!("ok {len}")),
            "{proto}"
        );
    }
    assert_eq!(upstream_errors(&lb), (0, 0));
    lb.stop().await;
}

/// A client that sends 100 KiB of a 4 MiB upload and stops: `408` after `body_idle`, the node
/// not blamed, nothing left in flight.
#[tokio::test]
async fn a_client_stalling_mid_long_upload_gets_408() {
    let node = raw_node().await;
    let pool = "timeouts: { body_idle: 300ms, response: 5s }";
    let lb = balancer(&yaml(pool, &[node_line("jvm1", node.addr, "")])).await;
    let mut req =
        b"POST /check HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4194304\r\n\r\n".to_vec();
    req.extend_from_slice(&pattern(100 * 1024));
    let got = until_closed(&lb, &req, "never answered").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    eventually("in flight back to 0", DEADLINE, || async {
        upstream_errors(&lb).0 == 0
    })
    .await;
    assert_eq!(
        upstream_errors(&lb).1,
        0,
        "a stalled client is not the node's fault"
    );
    lb.stop().await;
}

/// A node that closes while a 4 MiB upload streams to it: `502`, the node marked down as for
/// any node that fails a request (the pool's only node: the next request gets the pool's
/// `503`), nothing left in flight.
#[tokio::test]
async fn a_node_closing_during_a_long_upload_gets_502() {
    let node = raw_node().await;
    let lb = lb(&node).await;
    let mut c = TcpStream::connect(lb.addr()).await.unwrap();
    let head = b"POST /hangup HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4194304\r\n\r\n";
    c.write_all(head).await.unwrap();
    // The upload may be cut off by the balancer's answer: a failed write is expected.
    let body = pattern(4 << 20);
    let (mut rd, mut wr) = c.split();
    let (_, got) = tokio::join!(wr.write_all(&body), async {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, rd.read_to_end(&mut got)).await;
        got
    });
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    eventually("in flight back to 0", DEADLINE, || async {
        upstream_errors(&lb).0 == 0
    })
    .await;
    let s = stickyroute::control::admin::status(&lb.balancer);
    assert_eq!(node_report(&s, "jvm1").health, "down");
    let r = get(lb.addr(), "/len/70000", None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    lb.stop().await;
}

/// After a spliced upload and a spliced response, the client's connection is idle like any
/// other: `keepalive_timeout` closes it (not the much longer `header_read_timeout` of a head
/// that never comes), and shutdown finds it idle.
#[tokio::test]
async fn a_connection_is_idle_after_spliced_bodies() {
    let node = raw_node().await;
    let pool = "timeouts: { body_idle: 2s, response: 5s }";
    let y = yaml(pool, &[node_line("jvm1", node.addr, "")]).replacen(
        "  - bind: \"127.0.0.1:0\"\n",
        "  - bind: \"127.0.0.1:0\"\n    keepalive_timeout: 300ms\n    header_read_timeout: 30s\n",
        1,
    );
    let lb = balancer(&y).await;
    for (what, req) in [
        ("upload", {
            let mut r =
                b"POST /check HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1048576\r\n\r\n"
                    .to_vec();
            r.extend_from_slice(&pattern(1 << 20));
            r
        }),
        (
            "response",
            b"GET /len/1048576 HTTP/1.1\r\nHost: app.test\r\n\r\n".to_vec(),
        ),
    ] {
        let sent = std::time::Instant::now();
        let never = format!("{what}: the idle connection was never closed");
        let got = until_closed(&lb, &req, &never).await;
        assert!(got.starts_with(b"HTTP/1.1 200 "), "{what}");
        let took = sent.elapsed();
        assert!(
            took < std::time::Duration::from_secs(10),
            "{what}: closed after {took:?}, not by keepalive_timeout"
        );
    }
    lb.stop().await;
}
