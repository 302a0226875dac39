//! Issue 10 "Hardening", through real TCP on 127.0.0.1: error bodies that say what happened
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
