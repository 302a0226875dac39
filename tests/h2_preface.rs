//! The HTTP/2 client connection preface, checked by the listener before hyper serves the
//! connection: over h2c (prior knowledge on a cleartext listener) and over TLS with `h2`
//! chosen by ALPN, a wrong preface gets an empty `SETTINGS` and a `GOAWAY` with
//! `PROTOCOL_ERROR` before the connection closes; a right one, sent whole or in pieces, is
//! served. `listeners[].protocols` narrows what a listener speaks: HTTP/2 alone (every
//! cleartext connection is HTTP/2 from its first byte; TLS offers `h2` alone) or HTTP/1.1
//! alone. Clients are raw byte streams read frame by frame, and the `h2` crate.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rustls::pki_types::ServerName;
use stickyroute::control::Running;
use stickyroute::demo::node::RunningNode;
use stickyroute::store::SessionStore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An empty client `SETTINGS` frame.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];

const FRAME_SETTINGS: u8 = 0x4;
const FRAME_GOAWAY: u8 = 0x7;

/// One HTTP/2 frame as received.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The whole frames at the start of `bytes`, and the number of bytes they take.
fn frames(bytes: &[u8]) -> (Vec<Frame>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 9 {
        let h = &bytes[at..at + 9];
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        if bytes.len() - at - 9 < len {
            break;
        }
        out.push(Frame {
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            payload: bytes[at + 9..at + 9 + len].to_vec(),
        });
        at += 9 + len;
    }
    (out, at)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How the client reaches the balancer.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// A cleartext listener, HTTP/2 by prior knowledge.
    H2c,
    /// A TLS listener, `h2` chosen by ALPN.
    TlsH2,
}

/// A balancer with one cleartext and one TLS listener in front of one demo node.
struct Setup {
    lb: Running,
    cert: rcgen::CertifiedKey,
    _dir: tempfile::TempDir,
    _node: RunningNode,
}

impl Setup {
    async fn start() -> Setup {
        Setup::speaking("").await
    }

    /// Both listeners with `listeners[].protocols: protocols` (empty: the default).
    async fn speaking(protocols: &str) -> Setup {
        let (cert, dir) = test_cert();
        let store = SessionStore::memory();
        let node = node("jvm1", &store).await;
        let protocols = if protocols.is_empty() {
            String::new()
        } else {
            format!("\n    protocols: {protocols}")
        };
        let config = format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"{protocols}\n  - bind: \"127.0.0.1:0\"{protocols}\n    tls: {{ cert: \"{}\", key: \"{}\" }}\npools:\n  - name: app\n    nodes:\n      - {{ route: jvm1, address: \"{}\" }}\n",
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display(),
            node.addr
        );
        Setup {
            lb: balancer(&config).await,
            cert,
            _dir: dir,
            _node: node,
        }
    }

    fn addr(&self, t: Transport) -> SocketAddr {
        let i = match t {
            Transport::H2c => 0,
            Transport::TlsH2 => 1,
        };
        self.lb.listen_addrs[i]
    }

    /// A connection of transport `t`, its TLS handshake done.
    async fn connect(&self, t: Transport) -> Box<dyn Io> {
        let tcp = TcpStream::connect(self.addr(t)).await.unwrap();
        match t {
            Transport::H2c => Box::new(tcp),
            Transport::TlsH2 => {
                let name = ServerName::try_from("localhost").unwrap();
                let tls = tls_connector(&self.cert, b"h2")
                    .connect(name, tcp)
                    .await
                    .unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                Box::new(tls)
            }
        }
    }
}

/// Everything the balancer sends until it closes the connection (a reset or a TLS error
/// ends the bytes too).
async fn read_until_closed(io: &mut dyn Io) -> Vec<u8> {
    let mut got = Vec::new();
    let fut = async {
        let mut buf = [0u8; 4096];
        while got.len() < 1 << 20 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("the balancer did not close the connection");
    got
}

/// Sends `bytes` as the start of a connection of transport `t`; asserts the answer is an empty
/// `SETTINGS` then a `GOAWAY` for last stream 0 with `PROTOCOL_ERROR`, and nothing else.
async fn assert_refused(s: &Setup, t: Transport, bytes: &[u8]) {
    let mut io = s.connect(t).await;
    io.write_all(bytes).await.unwrap();
    io.flush().await.unwrap();
    let got = read_until_closed(&mut *io).await;
    let (frames, used) = frames(&got);
    let what = format!(
        "{t:?}, sent {:?}: got {got:?}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(used, got.len(), "whole frames only; {what}");
    assert_eq!(frames.len(), 2, "{what}");
    let (settings, goaway) = (&frames[0], &frames[1]);
    assert_eq!(
        (
            settings.kind,
            settings.flags,
            settings.stream,
            settings.payload.len()
        ),
        (FRAME_SETTINGS, 0, 0, 0),
        "an empty SETTINGS first; {what}"
    );
    assert_eq!((goaway.kind, goaway.stream), (FRAME_GOAWAY, 0), "{what}");
    assert!(goaway.payload.len() >= 8, "{what}");
    assert_eq!(&goaway.payload[..4], &[0, 0, 0, 0], "last stream 0; {what}");
    assert_eq!(
        &goaway.payload[4..8],
        &[0, 0, 0, 1],
        "PROTOCOL_ERROR; {what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_preface_gets_goaway_protocol_error_over_h2c_and_tls() {
    let s = Setup::start().await;
    // h2c is recognised by the preface's first line; a wrong rest is an HTTP/2 error.
    for bytes in [
        &b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    ] {
        assert_refused(&s, Transport::H2c, bytes).await;
        assert_refused(&s, Transport::TlsH2, bytes).await;
    }
    // After ALPN `h2` the client owes the preface: anything else is refused, HTTP/1.1 too.
    for bytes in [
        &b"INVALID CONNECTION PREFACE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_refused(&s, Transport::TlsH2, bytes).await;
    }
    s.lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_on_the_cleartext_listener_still_gets_http1_answers() {
    let s = Setup::start().await;
    // Not the preface's first line: an HTTP/1.1 request with a bad version, answered as one.
    let mut io = s.connect(Transport::H2c).await;
    io.write_all(b"INVALID CONNECTION PREFACE\r\n\r\n")
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut *io).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    let r = get(s.addr(Transport::H2c), "/whoami", None).await;
    assert_eq!(r.status, 200);
    s.lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preface_sent_in_pieces_is_served_over_h2c_and_tls() {
    let s = Setup::start().await;
    for t in [Transport::H2c, Transport::TlsH2] {
        let mut io = s.connect(t).await;
        for piece in [
            &PREFACE[..1],
            &PREFACE[1..16],
            &PREFACE[16..],
            EMPTY_SETTINGS,
        ] {
            io.write_all(piece).await.unwrap();
            io.flush().await.unwrap();
            // So that the pieces mostly arrive apart (served either way).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The server's preface: a SETTINGS frame that is not an acknowledgement.
        let mut got = Vec::new();
        let first = async {
            let mut buf = [0u8; 4096];
            loop {
                let (frames, _) = frames(&got);
                if let Some(f) = frames.first() {
                    return (f.kind, f.flags & 0x1);
                }
                let n = io.read(&mut buf).await.unwrap();
                assert!(n > 0, "{t:?}: closed after {got:?}");
                got.extend_from_slice(&buf[..n]);
            }
        };
        let first = tokio::time::timeout(DEADLINE, first).await.unwrap();
        assert_eq!(first, (FRAME_SETTINGS, 0), "{t:?}");
    }
    s.lb.stop().await;
}

/// Two requests on one HTTP/2 connection over `io` (the `h2` crate as the client): each is
/// answered `200` by `jvm1` with a body.
async fn two_h2_requests(io: Box<dyn Io>, what: &str) {
    let (send, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(conn);
    // Two streams on the connection: the replayed preface left hyper in step.
    for _ in 0..2 {
        let req = http::Request::get("https://localhost/whoami")
            .body(())
            .unwrap();
        let exchange = async {
            let mut ready = send.clone().ready().await?;
            let (resp, _) = ready.send_request(req, true)?;
            let resp = resp.await?;
            let status = resp.status().as_u16();
            let node = resp.headers()["x-node"].to_str().unwrap().to_string();
            let mut body = resp.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk: Bytes = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, h2::Error>((status, node, bytes))
        };
        let (status, node, body) = tokio::time::timeout(DEADLINE, exchange)
            .await
            .expect("h2 request timed out")
            .expect("h2 request failed");
        assert_eq!((status, node.as_str()), (200, "jvm1"), "{what}");
        assert!(!body.is_empty(), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_clients_are_served_over_h2c_and_tls() {
    let s = Setup::start().await;
    for t in [Transport::H2c, Transport::TlsH2] {
        two_h2_requests(s.connect(t).await, &format!("{t:?}")).await;
    }
    s.lb.stop().await;
}

/// A TLS connection to the listener with these ALPN offers (none: no ALPN extension); the
/// protocol chosen, or the handshake's error.
async fn tls_offering(
    s: &Setup,
    offers: &[&[u8]],
) -> Result<(Box<dyn Io>, Option<Vec<u8>>), std::io::Error> {
    let tcp = TcpStream::connect(s.addr(Transport::TlsH2)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tls_connector_offering(&s.cert, offers)
        .connect(name, tcp)
        .await?;
    let chosen = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    Ok((Box::new(tls), chosen))
}

/// `listeners[].protocols: [h2]`: a cleartext connection is HTTP/2 from its first byte, so a
/// wrong preface, an HTTP/1.1 request included, gets `GOAWAY` with `PROTOCOL_ERROR`; TLS
/// offers `h2` alone by ALPN, refuses a client that offers only `http/1.1`, and reads a client
/// that offers nothing as HTTP/2 by prior knowledge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_for_http2_alone_reads_every_connection_as_http2() {
    let s = Setup::speaking("[h2]").await;
    for bytes in [
        &b"INVALID CONNECTION PREFACE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert_refused(&s, Transport::H2c, bytes).await;
    }
    two_h2_requests(s.connect(Transport::H2c).await, "h2c").await;
    let (io, chosen) = tls_offering(&s, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some(&b"h2"[..]));
    two_h2_requests(io, "TLS, ALPN h2").await;
    assert!(
        tls_offering(&s, &[b"http/1.1"]).await.is_err(),
        "a client that offers only http/1.1 is refused in the handshake"
    );
    let (io, chosen) = tls_offering(&s, &[]).await.unwrap();
    assert_eq!(chosen, None);
    two_h2_requests(io, "TLS without ALPN").await;
    s.lb.stop().await;
}

/// `listeners[].protocols: [http1]`: the HTTP/2 preface on cleartext is an HTTP/1.1 request
/// answered `505`; TLS chooses `http/1.1` for a client that offers both, and refuses one that
/// offers only `h2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_for_http1_alone_does_not_speak_http2() {
    let s = Setup::speaking("[http1]").await;
    let mut io = s.connect(Transport::H2c).await;
    io.write_all(PREFACE).await.unwrap();
    io.write_all(EMPTY_SETTINGS).await.unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut *io).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 505 "), "{got}");
    assert_eq!(
        get(s.addr(Transport::H2c), "/whoami", None).await.status,
        200
    );
    let (mut io, chosen) = tls_offering(&s, &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some(&b"http/1.1"[..]));
    io.write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut *io).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 200 "), "{got}");
    assert!(
        tls_offering(&s, &[b"h2"]).await.is_err(),
        "a client that offers only h2 is refused in the handshake"
    );
    s.lb.stop().await;
}
