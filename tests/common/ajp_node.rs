//! A raw AJP/1.3 node for the tests, on 127.0.0.1:0: it reads Forward Requests with the
//! crate's codec, reads a request body the way Tomcat does (the first chunk unsolicited with a
//! Content-Length, then Get Body Chunk; without one, Get Body Chunk until the empty chunk),
//! checks the secret (403 on a mismatch, as Tomcat), answers CPing, and replies either
//! correctly (with a session cookie like a servlet container) or with one kind of broken
//! framing ([`Misbehave`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use stickyroute::ajp::{self, ReceivedRequest, ToContainer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How the node answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehave {
    /// A correct response.
    No,
    /// A packet that starts with `XB` instead of `AB`.
    WrongMagic,
    /// A packet header whose length is past the packet size.
    LengthPastPacket,
    /// Send Body Chunk before Send Headers.
    BodyBeforeHeaders,
    /// `Content-Length: 100`, ten bytes, then End Response.
    EndBeforeLength,
}

/// What the node saw.
#[derive(Default)]
pub struct Seen {
    pub requests: Mutex<Vec<ReceivedRequest>>,
    /// Request bodies, in request order.
    pub bodies: Mutex<Vec<Vec<u8>>>,
    pub connections: AtomicUsize,
    pub cpings: AtomicUsize,
    /// The largest body chunk received.
    pub max_chunk: AtomicUsize,
    pub get_body_chunks: AtomicUsize,
    sessions: AtomicUsize,
}

impl Seen {
    pub fn last(&self) -> ReceivedRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request seen")
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// A running AJP node; dropping it (or [`AjpNode::stop`]) closes its listener and every
/// connection.
pub struct AjpNode {
    pub addr: SocketAddr,
    pub route: String,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Settings {
    route: String,
    secret: Option<String>,
    packet_size: usize,
    mode: Misbehave,
}

impl AjpNode {
    pub async fn start(
        route: &str,
        secret: Option<&str>,
        packet_size: usize,
        mode: Misbehave,
    ) -> AjpNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let settings = Settings {
            route: route.to_string(),
            secret: secret.map(str::to_string),
            packet_size,
            mode,
        };
        let task = tokio::spawn(accept_loop(listener, settings, seen.clone()));
        AjpNode {
            addr,
            route: route.to_string(),
            seen,
            task,
        }
    }

    /// Closes the listener and every open connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for AjpNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, settings: Settings, seen: Arc<Seen>) {
    // Connections live in this set: aborting the loop closes them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((s, _)) = accepted else { return };
                seen.connections.fetch_add(1, Ordering::SeqCst);
                conns.spawn(serve(s, settings.clone(), seen.clone()));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Reads one packet for the container; `None` when the proxy closed.
async fn read_packet(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    ps: usize,
    body: bool,
) -> Option<Packet> {
    loop {
        match ajp::parse_to_container(buf, ps, body) {
            Ok(Some((p, used))) => {
                let owned = match p {
                    ToContainer::ForwardRequest(r) => Packet::Request(r),
                    ToContainer::CPing => Packet::CPing,
                    ToContainer::Body(b) => Packet::Body(b.to_vec()),
                };
                buf.drain(..used);
                return Some(owned);
            }
            Ok(None) => {}
            Err(e) => panic!("the balancer sent a malformed AJP packet: {e}"),
        }
        if s.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

enum Packet {
    Request(Box<ReceivedRequest>),
    CPing,
    Body(Vec<u8>),
}

async fn serve(mut s: TcpStream, st: Settings, seen: Arc<Seen>) {
    let ps = st.packet_size;
    let mut buf = Vec::new();
    while let Some(packet) = read_packet(&mut s, &mut buf, ps, false).await {
        let req = match packet {
            Packet::CPing => {
                seen.cpings.fetch_add(1, Ordering::SeqCst);
                if s.write_all(&ajp::CPONG_PACKET).await.is_err() {
                    return;
                }
                continue;
            }
            Packet::Body(_) => panic!("a body packet where a request was expected"),
            Packet::Request(r) => r,
        };
        let Some(body) = read_body(&mut s, &mut buf, &req, ps, &seen).await else {
            return;
        };
        seen.requests.lock().unwrap().push((*req).clone());
        seen.bodies.lock().unwrap().push(body.clone());
        let mut out = Vec::new();
        let reuse = respond(&req, &body, &st, &seen, &mut out);
        if s.write_all(&out).await.is_err() || !reuse {
            return;
        }
    }
}

/// The body as Tomcat reads it.
async fn read_body(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    req: &ReceivedRequest,
    ps: usize,
    seen: &Seen,
) -> Option<Vec<u8>> {
    let cl: Option<usize> = req
        .header("content-length")
        .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap());
    let mut body = Vec::new();
    let mut first = cl.is_some_and(|n| n > 0);
    if cl == Some(0) {
        return Some(body);
    }
    loop {
        if let Some(n) = cl {
            if body.len() >= n {
                return Some(body);
            }
        }
        if !first {
            let mut ask = Vec::new();
            ajp::write_get_body_chunk((ps - 6) as u16, &mut ask);
            s.write_all(&ask).await.ok()?;
            seen.get_body_chunks.fetch_add(1, Ordering::SeqCst);
        }
        first = false;
        let Packet::Body(chunk) = read_packet(s, buf, ps, true).await? else {
            panic!("expected a body chunk");
        };
        assert!(chunk.len() <= ps - 6, "a chunk past packet_size - 6");
        seen.max_chunk.fetch_max(chunk.len(), Ordering::SeqCst);
        if chunk.is_empty() {
            return Some(body);
        }
        body.extend_from_slice(&chunk);
    }
}

/// FNV-1a of the body, to compare uploads without echoing them.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Writes the answer into `out`; false when the connection must close after it.
fn respond(
    req: &ReceivedRequest,
    body: &[u8],
    st: &Settings,
    seen: &Seen,
    out: &mut Vec<u8>,
) -> bool {
    let ps = st.packet_size;
    let secret_ok =
        st.secret.is_none() || req.secret.as_deref() == st.secret.as_deref().map(str::as_bytes);
    if !secret_ok {
        ajp::write_send_headers(403, b"403", &[(b"Content-Length", b"0")], ps, out).unwrap();
        ajp::write_end_response(false, out);
        return false;
    }
    match st.mode {
        Misbehave::No => {}
        Misbehave::WrongMagic => {
            out.extend_from_slice(b"XB\x00\x01\x09");
            return false;
        }
        Misbehave::LengthPastPacket => {
            let len = (ps - 3) as u16;
            out.extend_from_slice(b"AB");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&[4, 0, 200]);
            return false;
        }
        Misbehave::BodyBeforeHeaders => {
            ajp::write_send_body_chunk(b"oops", ps, out).unwrap();
            ajp::write_end_response(true, out);
            return true;
        }
        Misbehave::EndBeforeLength => {
            ajp::write_send_headers(200, b"200", &[(b"Content-Length", b"100")], ps, out).unwrap();
            ajp::write_send_body_chunk(b"0123456789", ps, out).unwrap();
            ajp::write_end_response(true, out);
            return true;
        }
    }
    let cookie = req
        .header("cookie")
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| {
            c.split(';')
                .find_map(|p| p.trim().strip_prefix("JSESSIONID="))
        })
        .unwrap_or("")
        .to_string();
    let text = format!(
        "route={} len={} sum={:x} uri={} query={}",
        st.route,
        body.len(),
        checksum(body),
        String::from_utf8_lossy(&req.uri),
        String::from_utf8_lossy(req.query.as_deref().unwrap_or_default()),
    );
    let length = text.len().to_string();
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b"Content-Type", b"text/plain"),
        (b"X-Node", st.route.as_bytes()),
        (b"X-Session-Seen", cookie.as_bytes()),
    ];
    let new_cookie;
    if cookie.is_empty() {
        let n = seen.sessions.fetch_add(1, Ordering::SeqCst) as u128 + 1;
        new_cookie = format!(
            "JSESSIONID={:032X}.{}; Path=/; HttpOnly",
            n * 0x9E37_79B9_7F4A_7C15,
            st.route
        );
        headers.push((b"Set-Cookie", new_cookie.as_bytes()));
    }
    // `/stream` answers without a length, in three chunks.
    let streamed = req.uri == b"/stream";
    if !streamed {
        headers.push((b"Content-Length", length.as_bytes()));
    }
    ajp::write_send_headers(200, b"200", &headers, ps, out).unwrap();
    if req.method != "HEAD" {
        let (a, b) = text.as_bytes().split_at(text.len() / 2);
        ajp::write_send_body_chunk(a, ps, out).unwrap();
        if streamed {
            ajp::write_send_body_chunk(b"", ps, out).unwrap();
        }
        ajp::write_send_body_chunk(b, ps, out).unwrap();
    }
    ajp::write_end_response(true, out);
    true
}
