//! The node side of HTTP/2 requests: what an HTTP/1.1 node receives from the hyper path, body
//! framing and bytes, and how a pooled node connection that died is retried (over both
//! paths, which decide alike).

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A node on hyper's own HTTP/1.1 server that answers every request with its body, streamed
/// back as it arrives (the answer starts before the upload ends), saying in `x-framing` how
/// the body came: `chunked`, `length N`, or `none`.
async fn echo_node() -> SocketAddr {
    raw_node(|s| async move {
        let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async {
            let h = req.headers();
            let framing = match (h.get("transfer-encoding"), h.get("content-length")) {
                (Some(te), None) => te.to_str().unwrap_or("?").to_string(),
                (None, Some(cl)) => format!("length {}", cl.to_str().unwrap_or("?")),
                (None, None) => "none".to_string(),
                (Some(_), Some(_)) => "both".to_string(),
            };
            let mut resp = Response::new(req.into_body());
            resp.headers_mut()
                .insert("x-framing", framing.parse().unwrap());
            Ok::<_, hyper::Error>(resp)
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(s), service)
            .await;
    })
    .await
}

/// Test bytes that are not a repeating pattern a framing slip could preserve.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

/// An HTTP/2 response's whole body, its window given back as the bytes come.
async fn body_of(resp: Response<h2::RecvStream>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut body = resp.into_body();
    while let Some(data) = tokio::time::timeout(DEADLINE, body.data()).await.unwrap() {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        got.extend_from_slice(&data);
    }
    got
}

#[tokio::test]
async fn h2_uploads_reach_the_node_byte_exact() {
    let node = echo_node().await;
    let lb = balancer(&yaml("", &[node_line("jvm1", node, "")])).await;

    // A body of known length: forwarded with its Content-Length.
    let body = pattern(1024 * 1024, 7);
    let r = Proto::H2c
        .send(
            lb.addr(),
            Method::POST,
            "/upload",
            &[("content-length", "1048576")],
            Bytes::from(body.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-framing"), Some("length 1048576"));
    assert_eq!(r.body.len(), body.len());
    assert!(r.body[..] == body[..], "the node got other bytes");

    // A body without a length, in DATA frames of several sizes: forwarded chunked.
    let s = TcpStream::connect(lb.addr()).await.unwrap();
    let (sender, conn) = h2::client::handshake(s).await.unwrap();
    let connection = tokio::spawn(conn);
    let mut sender = sender.ready().await.unwrap();
    let req = Request::post(format!("http://{TEST_HOST}/upload"))
        .body(())
        .unwrap();
    let (response, mut stream) = sender.send_request(req, false).unwrap();
    let pieces = [
        pattern(1, 1),
        pattern(70_000, 2),
        pattern(3, 3),
        pattern(5000, 4),
    ];
    for p in &pieces {
        stream.send_data(Bytes::from(p.clone()), false).unwrap();
    }
    stream.send_data(Bytes::new(), true).unwrap();
    let resp = tokio::time::timeout(DEADLINE, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-framing"], "chunked");
    let got = body_of(resp).await;
    assert!(got == pieces.concat(), "the node got other bytes");
    connection.abort();
    lb.stop().await;
}

/// All the streams a client opens at once on one connection, more than the server takes
/// from the connection in one batch (the default 100 concurrent streams), are answered, each
/// with its own body: the node echoes each upload back as it streams, so most answers have
/// their head before their body and are sent while their bodies still come in.
#[tokio::test]
async fn a_hundred_streams_opened_at_once_each_get_their_own_answer() {
    let node = echo_node().await;
    let lb = balancer(&yaml("", &[node_line("jvm1", node, "")])).await;
    let s = TcpStream::connect(lb.addr()).await.unwrap();
    // Windows that hold every answer: the answers are read one after the other, and with
    // h2's default 64 KiB for the connection the later ones would wait for it.
    let (sender, conn) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .handshake::<_, Bytes>(s)
        .await
        .unwrap();
    let connection = tokio::spawn(conn);
    let mut sender = sender.ready().await.unwrap();
    // The server's SETTINGS (100 concurrent streams) are in before the streams are opened.
    let first = Request::get(format!("http://{TEST_HOST}/warm"))
        .body(())
        .unwrap();
    let (warm, _) = sender.send_request(first, true).unwrap();
    let warm = tokio::time::timeout(DEADLINE, warm).await.unwrap().unwrap();
    assert_eq!(warm.status(), 200);
    drop(warm);
    let mut answers = Vec::new();
    for i in 0..100u32 {
        sender = sender.ready().await.unwrap();
        let req = Request::post(format!("http://{TEST_HOST}/echo/{i}"))
            .body(())
            .unwrap();
        let (response, mut stream) = sender.send_request(req, false).unwrap();
        let body = pattern(100 + i as usize * 37, i);
        stream.send_data(Bytes::from(body.clone()), true).unwrap();
        answers.push((response, body));
    }
    for (i, (response, sent)) in answers.into_iter().enumerate() {
        let resp = tokio::time::timeout(DEADLINE, response)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200, "stream {i}");
        let got = body_of(resp).await;
        assert!(
            got == sent,
            "stream {i} got another stream's bytes or lost some"
        );
    }
    connection.abort();
    lb.stop().await;
}

/// What the dying node saw: per connection, the request lines it read.
type Seen = Arc<Mutex<Vec<Vec<String>>>>;

/// A new connection's entry in `all`, numbered in the order the connections were accepted.
fn next_connection(all: &Seen) -> usize {
    let mut v = all.lock().unwrap();
    v.push(Vec::new());
    v.len() - 1
}

/// A node whose first connection answers its first request and then, on the next one, reads
/// it and closes without a byte: a pooled connection that dies as it is reused. Every other
/// connection answers every request.
async fn dying_node() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let all = seen.clone();
    let addr = raw_node(move |mut s| {
        let k = next_connection(&all);
        let all = all.clone();
        async move {
            let mut buf = Vec::new();
            loop {
                let Some(line) = read_head(&mut s, &mut buf).await else {
                    return;
                };
                let n = {
                    let mut v = all.lock().unwrap();
                    v[k].push(line);
                    v[k].len()
                };
                if k == 0 && n == 2 {
                    return; // closes without answering
                }
                let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if s.write_all(ok).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, seen)
}

/// A node on 127.0.0.1:0 that serves each connection it accepts with `serve` (called at the
/// accept, in order; the future it makes runs as a task of its own).
async fn raw_node<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// Reads one request head without a body from `s`; returns its request line.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            assert!(
                head.to_ascii_lowercase().contains("content-length: 0")
                    || !head.to_ascii_lowercase().contains("content-length"),
                "{head}"
            );
            buf.drain(..end + 4);
            return head.lines().next().map(str::to_string);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

on_both_paths!(a_pooled_node_connection_that_dies_after_the_request_went_out);
/// A pooled node connection that takes a request and closes without a byte of the answer:
/// the node may have acted on it, so only an idempotent request goes again (once, on a new
/// connection to the same node); a POST gets `502` and reaches the node once. Both paths
/// decide alike.
async fn a_pooled_node_connection_that_dies_after_the_request_went_out(proto: Proto) {
    for (method, status, again) in [(Method::GET, 200, true), (Method::POST, 502, false)] {
        let (node, seen) = dying_node().await;
        let lb = balancer(&yaml("", &[node_line("jvm1", node, "")])).await;
        let mut c = proto.open(lb.addr()).await;
        let r = c.get("/first", None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let r = c
            .request(method.clone(), "/second", &[], Bytes::new())
            .await;
        assert_eq!(r.status, status, "{proto} {method}: {}", r.text());
        let line = format!("{method} /second HTTP/1.1");
        let mut want = vec![vec!["GET /first HTTP/1.1".to_string(), line.clone()]];
        if again {
            want.push(vec![line]);
        }
        assert_eq!(*seen.lock().unwrap(), want, "{proto} {method}");
        lb.stop().await;
    }
}

/// A node that answers `413` as soon as it has a request head, without reading the body, and
/// closes. The balancer must keep reading the answer while it uploads: the client gets the
/// `413`, not a hang or a `502`.
async fn refusing_node() -> SocketAddr {
    raw_node(|mut s| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let no = b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big\n";
        let _ = s.write_all(no).await;
        // Read on until the balancer closes, so the answer is not lost to a reset.
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
}

on_both_paths!(a_node_that_answers_before_the_upload_ends_is_heard);
async fn a_node_that_answers_before_the_upload_ends_is_heard(proto: Proto) {
    let node = refusing_node().await;
    let lb = balancer(&yaml("", &[node_line("jvm1", node, "")])).await;
    let body = Bytes::from(pattern(8 * 1024 * 1024, 9));
    let r = proto
        .send(
            lb.addr(),
            Method::PUT,
            "/big",
            &[("content-length", "8388608")],
            body,
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.text(), "too big\n");
    lb.stop().await;
}

/// A node that answers with a chunked body written a few bytes at a time (chunk headers and
/// the last chunk split across writes), then keeps the connection.
async fn trickling_node() -> SocketAddr {
    raw_node(|mut s| async move {
        let mut buf = Vec::new();
        while read_head(&mut s, &mut buf).await.is_some() {
            let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
            for piece in resp.chunks(3) {
                if s.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    })
    .await
}

on_both_paths!(a_trickled_chunked_answer_arrives_whole);
async fn a_trickled_chunked_answer_arrives_whole(proto: Proto) {
    let node = trickling_node().await;
    let lb = balancer(&yaml("", &[node_line("jvm1", node, "")])).await;
    let mut c = proto.open(lb.addr()).await;
    for _ in 0..2 {
        let r = c.get("/", None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "hello, world");
    }
    lb.stop().await;
}

/// A node that answers each connection's first request with keep-alive, then closes that
/// connection (as a node whose keep-alive timeout passed) and tells `closed`.
async fn idle_closing_node(closed: Arc<tokio::sync::Notify>) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let all = seen.clone();
    let addr = raw_node(move |mut s| {
        let k = next_connection(&all);
        let (all, closed) = (all.clone(), closed.clone());
        async move {
            let mut buf = Vec::new();
            let Some(line) = read_head(&mut s, &mut buf).await else {
                return;
            };
            all.lock().unwrap()[k].push(line);
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if s.write_all(ok).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            drop(s);
            closed.notify_one();
        }
    })
    .await;
    (addr, seen)
}

on_both_paths!(a_pooled_node_connection_the_node_closed_while_idle_is_not_used);
/// The node closed a pooled connection while it sat idle: the next request, a POST that may
/// not be sent twice, goes on a new connection and is answered, not sent into the closed one.
async fn a_pooled_node_connection_the_node_closed_while_idle_is_not_used(proto: Proto) {
    let closed = Arc::new(tokio::sync::Notify::new());
    let (node, seen) = idle_closing_node(closed.clone()).await;
    let lb = balancer(&yaml("", &[node_line("jvm1", node, "")])).await;
    let mut c = proto.open(lb.addr()).await;
    let r = c.get("/first", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    tokio::time::timeout(DEADLINE, closed.notified())
        .await
        .expect("the node did not close");
    // The close reaches the balancer's socket within a moment on loopback.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c.request(Method::POST, "/second", &[], Bytes::new()).await;
    assert_eq!(r.status, 200, "{proto}: {}", r.text());
    let want = vec![
        vec!["GET /first HTTP/1.1".to_string()],
        vec!["POST /second HTTP/1.1".to_string()],
    ];
    assert_eq!(*seen.lock().unwrap(), want, "{proto}");
    lb.stop().await;
}
