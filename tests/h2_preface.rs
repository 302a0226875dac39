//! The HTTP/2 client connection preface, checked by the listener before hyper serves the
//! connection: over h2c (prior knowledge on a cleartext listener) and over TLS with `h2`
//! chosen by ALPN, a wrong preface gets an empty `SETTINGS` and a `GOAWAY` with
//! `PROTOCOL_ERROR` before the connection closes; a right one, sent whole or in pieces, is
//! served. Clients are raw byte streams read frame by frame, and the `h2` crate.

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
        let (cert, dir) = test_cert();
        let store = SessionStore::memory();
        let node = node("jvm1", &store).await;
        let config = format!(
            "listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\npools:\n  - name: app\n    nodes:\n      - {{ route: jvm1, address: \"{}\" }}\n",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_clients_are_served_over_h2c_and_tls() {
    let s = Setup::start().await;
    for t in [Transport::H2c, Transport::TlsH2] {
        let io = s.connect(t).await;
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
            assert_eq!((status, node.as_str()), (200, "jvm1"), "{t:?}");
            assert!(!body.is_empty(), "{t:?}");
        }
    }
    s.lb.stop().await;
}
