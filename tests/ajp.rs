//! AJP/1.3 nodes (`protocol: ajp`) against the raw AJP node of `common::ajp_node`, on real
//! TCP on 127.0.0.1: what the node receives (address, port, secret, TLS attributes, client
//! certificate), stickiness and failover, a 1 MiB upload through Get Body Chunk with a length
//! and chunked, malformed framing (502, or an early close once the head went out) with the
//! balancer still serving, WebSocket (501), CPing before reusing an idle connection, and the
//! CPing health check.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::ajp_node::{checksum, AjpNode, Misbehave};
use common::*;
use hyper::{Method, StatusCode};
use stickyroute::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "s3cret";

/// A pool of AJP nodes; `ajp` is the pool's `ajp:` block (the secret by default).
fn ajp_yaml(ajp: &str, nodes: &[&AjpNode]) -> String {
    let lines: Vec<String> = nodes
        .iter()
        .map(|n| node_line(&n.route, n.addr, ""))
        .collect();
    let ajp = if ajp.is_empty() {
        format!("{{ secret: {SECRET} }}")
    } else {
        ajp.to_string()
    };
    yaml(&format!("protocol: ajp\najp: {ajp}\n"), &lines)
}

async fn two_nodes() -> (AjpNode, AjpNode) {
    (
        AjpNode::start("jvm1", Some(SECRET), 8192, Misbehave::No).await,
        AjpNode::start("jvm2", Some(SECRET), 8192, Misbehave::No).await,
    )
}

#[tokio::test]
async fn forward_request_carries_the_client_and_the_secret() {
    let (n1, n2) = two_nodes().await;
    let lb = balancer(&ajp_yaml("", &[&n1, &n2])).await;
    let mut c = Conn::open(lb.addr()).await;
    let r = c
        .request(
            Method::GET,
            "/app/page?x=1&y=2",
            &[("x-forwarded-for", "6.6.6.6")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let node = if r.node() == "jvm1" { &n1 } else { &n2 };
    let seen = node.seen.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.uri, b"/app/page");
    assert_eq!(seen.query.as_deref(), Some(&b"x=1&y=2"[..]));
    assert_eq!(seen.remote_addr, b"127.0.0.1");
    assert_eq!(seen.secret.as_deref(), Some(SECRET.as_bytes()));
    assert!(!seen.is_ssl);
    assert!(seen
        .attribute("AJP_REMOTE_PORT")
        .is_some_and(|p| !p.is_empty()));
    assert_eq!(seen.header("host"), Some(TEST_HOST.as_bytes()));
    assert_eq!(
        seen.header("x-forwarded-for"),
        None,
        "a forged forwarding header is dropped"
    );
    assert!(
        r.text().contains("uri=/app/page query=x=1&y=2"),
        "{}",
        r.text()
    );
    // Keep-alive: the next requests reuse the AJP connection.
    for _ in 0..3 {
        let again = c
            .get("/", r.session_cookies().first().map(String::as_str))
            .await;
        assert_eq!(again.status, StatusCode::OK);
    }
    assert_eq!(
        node.seen
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn sticky_sessions_and_translate_failover() {
    let (n1, n2) = two_nodes().await;
    let lb = balancer(&ajp_yaml("", &[&n1, &n2])).await;
    let mut c = Conn::open(lb.addr()).await;
    let first = c.get("/", None).await;
    let route = first.node().to_string();
    let id = first.session_cookies().pop().expect("a session cookie");
    assert!(id.ends_with(&format!(".{route}")), "{id}");
    for _ in 0..5 {
        let r = c.get("/", Some(&id)).await;
        assert_eq!(r.node(), route, "sticky");
        assert_eq!(r.seen(), id);
    }
    // The session's node stops: the next request fails over, and `translate` gives the
    // client the id with the new route.
    let (down, other) = if route == "jvm1" {
        (&n1, &n2)
    } else {
        (&n2, &n1)
    };
    down.stop();
    let r = get(lb.addr(), "/", Some(&id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.node(), other.route);
    assert_eq!(r.seen(), id, "the node sees the original id");
    assert_eq!(r.session_cookies(), vec![format!("{id}.{}", other.route)]);
    // Pinned to the new node from now on, which still receives the original id.
    let moved = format!("{id}.{}", other.route);
    let r = get(lb.addr(), "/", Some(&moved)).await;
    assert_eq!((r.node(), r.seen()), (other.route.as_str(), id.as_str()));
}

#[tokio::test]
async fn one_mib_uploads_go_through_get_body_chunk() {
    let n = AjpNode::start("jvm1", Some(SECRET), 8192, Misbehave::No).await;
    let lb = balancer(&ajp_yaml("", &[&n])).await;
    let body: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let want = format!("len={} sum={:x}", body.len(), checksum(&body));
    let mut c = Conn::open(lb.addr()).await;
    let r = c
        .request(Method::POST, "/upload", &[], Bytes::from(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains(&want), "{} / {want}", r.text());
    assert_eq!(
        n.seen.max_chunk.load(std::sync::atomic::Ordering::SeqCst),
        8186
    );
    assert!(
        n.seen
            .get_body_chunks
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1024 * 1024 / 8186
    );

    // Chunked, in pieces of odd sizes: the node reads until the empty chunk.
    let mut s = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
    let mut req = format!("POST /upload HTTP/1.1\r\nHost: {TEST_HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
    for piece in body.chunks(10_007) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let read = async {
        s.write_all(&req).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let text = tokio::time::timeout(DEADLINE, read)
        .await
        .expect("chunked upload timed out");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(&want), "{text}");
    assert_eq!(
        n.seen.bodies.lock().unwrap().last().unwrap().len(),
        body.len()
    );
}

#[tokio::test]
async fn responses_without_a_length_are_chunked_for_the_client() {
    let n = AjpNode::start("jvm1", Some(SECRET), 8192, Misbehave::No).await;
    let lb = balancer(&ajp_yaml("", &[&n])).await;
    let text = raw(
        lb.addr(),
        format!("GET /stream HTTP/1.1\r\nHost: {TEST_HOST}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(text.contains("Transfer-Encoding: chunked"), "{text}");
    assert!(text.ends_with("0\r\n\r\n"), "{text}");
    let mut c = Conn::open(lb.addr()).await;
    let r = c.get("/stream", None).await;
    assert!(r.text().starts_with("route=jvm1 len=0"), "{}", r.text());
    // HEAD: the length without a body, and the connection carries on.
    let r = c.request(Method::HEAD, "/", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-length").is_some_and(|l| l != "0"));
    assert!(r.body.is_empty());
    assert_eq!(c.get("/", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_framing_is_an_upstream_error_and_the_balancer_keeps_serving() {
    let good = AjpNode::start("good", Some(SECRET), 8192, Misbehave::No).await;
    for mode in [
        Misbehave::WrongMagic,
        Misbehave::LengthPastPacket,
        Misbehave::BodyBeforeHeaders,
        Misbehave::EndBeforeLength,
    ] {
        let bad = AjpNode::start("bad", Some(SECRET), 8192, mode).await;
        let text = format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\npools:\n  - name: bad\n    path_prefix: /bad\n    protocol: ajp\n    ajp: {{ secret: {SECRET} }}\n    failover: {{ max_attempts: 1 }}\n    nodes:\n      {}\n  - name: good\n    protocol: ajp\n    ajp: {{ secret: {SECRET} }}\n    nodes:\n      {}\n",
            node_line("bad", bad.addr, ""),
            node_line("good", good.addr, ""),
        );
        let lb = balancer(&text).await;
        let answer = raw(
            lb.addr(),
            format!("GET /bad HTTP/1.1\r\nHost: {TEST_HOST}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        if mode == Misbehave::EndBeforeLength {
            // The head went out: the client sees it and a connection closed early.
            assert!(answer.starts_with("HTTP/1.1 200"), "{mode:?}: {answer}");
            assert!(answer.contains("Content-Length: 100"), "{mode:?}: {answer}");
            assert!(answer.ends_with("0123456789"), "{mode:?}: {answer}");
        } else {
            assert!(answer.starts_with("HTTP/1.1 502"), "{mode:?}: {answer}");
        }
        let errors = upstream_errors(&lb, "bad");
        assert!(errors >= 1, "{mode:?}: the node's error counter");
        let r = get(lb.addr(), "/", None).await;
        assert_eq!((r.status, r.node()), (StatusCode::OK, "good"), "{mode:?}");
        // Again: the same answer, or 503 once passive health marked the node down.
        let again = raw(
            lb.addr(),
            format!("GET /bad HTTP/1.1\r\nHost: {TEST_HOST}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        let status = &answer[..12];
        assert!(
            again.starts_with(status) || again.starts_with("HTTP/1.1 503"),
            "{mode:?}: {again}"
        );
    }
}

/// The node's upstream error counter.
fn upstream_errors(lb: &stickyroute::control::Running, route: &str) -> u64 {
    let snap = lb.balancer.snapshot();
    let node = snap
        .pools
        .iter()
        .flat_map(|p| p.nodes.iter())
        .find(|n| n.route == route)
        .expect("node");
    node.rt
        .stats
        .upstream_errors
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn wrong_secret_is_the_nodes_403() {
    let n = AjpNode::start("jvm1", Some("other"), 8192, Misbehave::No).await;
    let lb = balancer(&ajp_yaml("", &[&n])).await;
    let r = get(lb.addr(), "/", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(lb.addr(), "/", None).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "passed on, the node is not marked down"
    );
}

#[tokio::test]
async fn websocket_upgrades_to_ajp_are_501() {
    let n = AjpNode::start("jvm1", Some(SECRET), 8192, Misbehave::No).await;
    let lb = balancer(&ajp_yaml("", &[&n])).await;
    let answer = raw(
        lb.addr(),
        format!("GET /ws HTTP/1.1\r\nHost: {TEST_HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(answer.contains("AJP"), "{answer}");
    assert_eq!(n.seen.count(), 0);
}

#[tokio::test]
async fn idle_connections_are_cpinged_before_reuse() {
    let n = AjpNode::start("jvm1", Some(SECRET), 8192, Misbehave::No).await;
    let lb = balancer(&ajp_yaml("{ secret: s3cret, ping_after: 20ms }", &[&n])).await;
    let mut c = Conn::open(lb.addr()).await;
    assert_eq!(c.get("/", None).await.status, StatusCode::OK);
    assert_eq!(n.seen.cpings.load(std::sync::atomic::Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.get("/", None).await.status, StatusCode::OK);
    assert_eq!(n.seen.cpings.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        n.seen.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn cping_and_http_health_probes() {
    use stickyroute::control::health::{probe_node, Target};
    let n = AjpNode::start("jvm1", Some(SECRET), 8192, Misbehave::No).await;
    let bad = AjpNode::start("bad", Some(SECRET), 8192, Misbehave::WrongMagic).await;
    let dead = dead_addr().await;
    let cfg_for = |kind: &str, addr| {
        let text = format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\npools:\n  - name: app\n    protocol: ajp\n    ajp: {{ secret: {SECRET} }}\n    health: {{ kind: {kind}, path: /health, timeout: 2s }}\n    nodes:\n      - {{ route: a, address: \"{addr}\" }}\n"
        );
        Config::from_yaml(&text, "t.yaml").unwrap().pools.remove(0)
    };
    for kind in ["cping", "http"] {
        for (addr, ok) in [(n.addr, true), (dead, false)] {
            let pool = cfg_for(kind, addr);
            let node = &pool.nodes[0];
            let target = Target {
                pool: "app".into(),
                route: "a".into(),
                address: node.address.clone(),
                addr: node.addr.clone(),
                ajp: node.ajp.clone(),
            };
            let r = probe_node(&target, pool.health.as_ref().unwrap()).await;
            assert_eq!(r.is_ok(), ok, "{kind} {addr}: {r:?}");
        }
    }
    // `http` over AJP sends health.path as a request.
    assert!(n
        .seen
        .requests
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.uri == b"/health"));
    assert_eq!(n.seen.cpings.load(std::sync::atomic::Ordering::SeqCst), 1);
    let pool = cfg_for("http", bad.addr);
    let node = &pool.nodes[0];
    let target = Target {
        pool: "app".into(),
        route: "a".into(),
        address: node.address.clone(),
        addr: node.addr.clone(),
        ajp: node.ajp.clone(),
    };
    assert!(
        probe_node(&target, pool.health.as_ref().unwrap())
            .await
            .is_err(),
        "wrong magic"
    );
}

#[tokio::test]
async fn tls_clients_send_their_tls_attributes_and_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let (server_cert, dir) = test_cert();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client.test".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();

    let n = AjpNode::start("jvm1", Some(SECRET), 8192, Misbehave::No).await;
    let p = dir.path().display();
    let text = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n    tls: {{ cert: {p}/cert.pem, key: {p}/key.pem, client_ca: {p}/ca.pem, client_auth: optional }}\npools:\n  - name: app\n    protocol: ajp\n    ajp: {{ secret: {SECRET} }}\n    nodes:\n      {}\n",
        node_line("jvm1", n.addr, "")
    );
    let lb = balancer(&text).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(client_key.serialize_der().into());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client.der().clone()], key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let exchange = async {
        tls.write_all(
            format!("GET / HTTP/1.1\r\nHost: {TEST_HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let answer = tokio::time::timeout(DEADLINE, exchange).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = n.seen.last();
    assert!(seen.is_ssl);
    assert_eq!(seen.attribute("AJP_SSL_PROTOCOL"), Some(&b"TLSv1.3"[..]));
    let cipher = String::from_utf8(seen.ssl_cipher.clone().unwrap()).unwrap();
    assert!(cipher.starts_with("TLS_"), "{cipher}");
    assert!(
        matches!(seen.ssl_key_size, Some(128 | 256)),
        "{:?}",
        seen.ssl_key_size
    );
    let pem = String::from_utf8(seen.ssl_cert.clone().expect("the client certificate")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(der.as_ref(), client.der().as_ref());
}

#[tokio::test]
async fn h2c_clients_reach_ajp_nodes() {
    let (n1, n2) = two_nodes().await;
    let lb = balancer(&ajp_yaml("", &[&n1, &n2])).await;
    let mut c = Proto::H2c.open(lb.addr()).await;
    let first = c.get("/app/page?x=1", None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let id = first.session_cookies().pop().expect("a session cookie");
    let route = first.node().to_string();
    for _ in 0..3 {
        let r = c.get("/", Some(&id)).await;
        assert_eq!(
            (r.node(), r.seen()),
            (route.as_str(), id.as_str()),
            "sticky over h2c"
        );
    }
    let node = if route == "jvm1" { &n1 } else { &n2 };
    let seen = node.seen.last();
    assert_eq!(
        seen.protocol, b"HTTP/1.1",
        "the version an HTTP node would get"
    );
    assert_eq!(seen.remote_addr, b"127.0.0.1");
    assert_eq!(seen.secret.as_deref(), Some(SECRET.as_bytes()));
    assert_eq!(seen.header("host"), Some(TEST_HOST.as_bytes()));
    assert_eq!(
        node.seen
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "pooled"
    );

    // 1 MiB over HTTP/2 frames, through Get Body Chunk.
    let body: Vec<u8> = (0..1024 * 1024).map(|i| (i * 13 % 251) as u8).collect();
    let want = format!("len={} sum={:x}", body.len(), checksum(&body));
    let r = c
        .request(Method::POST, "/upload", &[], Bytes::from(body))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains(&want), "{} / {want}", r.text());

    // Unframed responses come through; HEAD has no body.
    let r = c.get("/stream", None).await;
    assert!(r.text().starts_with("route="), "{}", r.text());
    let r = c.request(Method::HEAD, "/", &[], Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());

    // The session's node stops: failover over h2c too.
    node.stop();
    let r = Proto::H2c.open(lb.addr()).await.get("/", Some(&id)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.node(), route);
}

#[tokio::test]
async fn h2c_malformed_framing_is_502() {
    let good = AjpNode::start("good", Some(SECRET), 8192, Misbehave::No).await;
    for mode in [
        Misbehave::WrongMagic,
        Misbehave::LengthPastPacket,
        Misbehave::BodyBeforeHeaders,
    ] {
        let bad = AjpNode::start("bad", Some(SECRET), 8192, mode).await;
        let text = format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\npools:\n  - name: bad\n    path_prefix: /bad\n    protocol: ajp\n    ajp: {{ secret: {SECRET} }}\n    failover: {{ max_attempts: 1 }}\n    nodes:\n      {}\n  - name: good\n    protocol: ajp\n    ajp: {{ secret: {SECRET} }}\n    nodes:\n      {}\n",
            node_line("bad", bad.addr, ""),
            node_line("good", good.addr, ""),
        );
        let lb = balancer(&text).await;
        let mut c = Proto::H2c.open(lb.addr()).await;
        let r = c.get("/bad", None).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{mode:?}");
        assert!(upstream_errors(&lb, "bad") >= 1, "{mode:?}");
        let r = c.get("/", None).await;
        assert_eq!((r.status, r.node()), (StatusCode::OK, "good"), "{mode:?}");
    }
}

#[tokio::test]
async fn expect_continue_and_body_limits() {
    let n = AjpNode::start("jvm1", Some(SECRET), 8192, Misbehave::No).await;
    let lb = balancer(&ajp_yaml("", &[&n])).await;
    // The client waits for `100 Continue` before its body.
    let mut s = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
    let exchange = async {
        let head = format!("POST /up HTTP/1.1\r\nHost: {TEST_HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut interim = [0u8; 25];
        s.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(b"hello").await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let answer = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("100-continue");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("len=5"), "{answer}");
    assert_eq!(n.seen.last().header("expect"), None);

    // A chunked upload past max_body_bytes is the client's 413, not the node's fault.
    let limited = ajp_yaml("", &[&n]).replace(
        "  - bind: \"127.0.0.1:0\"\n",
        "  - bind: \"127.0.0.1:0\"\n    max_body_bytes: 1000\n",
    );
    let lb = balancer(&limited).await;
    let mut req = format!("POST /up HTTP/1.1\r\nHost: {TEST_HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
    for _ in 0..5 {
        req.extend_from_slice(b"3e8\r\n");
        req.extend_from_slice(&[b'z'; 1000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(lb.addr(), &req).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(upstream_errors(&lb, "jvm1"), 0);
}
