//! Fixtures for faults under load (`tests/faults.rs`): demo nodes as child processes that can be
//! `SIGKILL`ed, a keep-alive client of either protocol whose failures are values (a load test counts them instead
//! of panicking at the first one), raw nodes that misbehave on purpose, and sums of metric
//! families from a running balancer.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{HttpSender, Proto, Resp};

/// `stickyroute demo-node` in a process of its own, on a port of 127.0.0.1 it picked itself;
/// killed (SIGKILL) on drop.
pub struct NodeProcess {
    pub route: String,
    pub addr: SocketAddr,
    child: Child,
}

impl NodeProcess {
    /// Starts the built binary's `demo-node` with `--store store` and waits (bounded) for the
    /// line that gives its address.
    pub fn start(route: &str, store: &str) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
            .args(["demo-node", "--route", route, "--listen", "127.0.0.1:0"])
            .args(["--store", store, "--session-timeout", "10m"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start demo-node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        // "demo-node jvm1 listening on http://127.0.0.1:PORT (store: …)"
        let line = rx
            .recv_timeout(super::DEADLINE)
            .unwrap_or_else(|e| panic!("demo-node {route} printed no address: {e}"));
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("demo-node {route}: no address in {line:?}"));
        NodeProcess {
            route: route.to_owned(),
            addr,
            child,
        }
    }

    /// SIGKILL: the process dies at once, in-flight requests and all; the kernel closes its
    /// sockets.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One keep-alive client connection (HTTP/1.1 or h2c) whose failures are returned, not
/// panicked on.
pub struct LoadConn {
    sender: HttpSender,
    proto: Proto,
}

impl LoadConn {
    pub async fn open(proto: Proto, addr: SocketAddr) -> Result<LoadConn, String> {
        let stream = tokio::time::timeout(super::DEADLINE, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let sender = proto
            .handshake(stream)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok(LoadConn { sender, proto })
    }

    /// Whether the connection can take another request (the peer did not close it).
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// GET `path` with `JSESSIONID=cookie` when given; the whole response, or why not, within
    /// `within`.
    pub async fn get(
        &mut self,
        path: &str,
        cookie: Option<&str>,
        within: Duration,
    ) -> Result<Resp, String> {
        let cookie = cookie.map(|c| format!("JSESSIONID={c}"));
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
        let req = self
            .proto
            .request(Method::GET, path, &headers, Bytes::new());
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("not ready: {}", with_causes(&e)))?;
            let resp = self
                .sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {}", with_causes(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("body after {}: {}", parts.status, with_causes(&e)))?
                .to_bytes();
            Ok(Resp {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(within, exchange)
            .await
            .map_err(|_| format!("no complete response within {within:?}"))?
    }
}

/// An error and its causes, `outer: inner: …` (hyper's own text is only the outermost).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// How a [`raw_node`] misbehaves, after reading a whole request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Accepts, reads the request, never answers (the connection stays open).
    Silent,
    /// Answers bytes no HTTP parser accepts, then closes.
    Garbage,
    /// Answers `200` with `Content-Length: 100`, sends 10 bytes of body, closes.
    CloseMidBody,
    /// Answers every request `200 ok` with `Connection: close`, then closes.
    CloseEveryResponse,
}

/// A raw TCP "node" on 127.0.0.1 that misbehaves as told.
pub struct RawNode {
    pub addr: SocketAddr,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// Request heads read completely.
    pub requests: Arc<AtomicUsize>,
}

/// The body a [`Misbehaviour::CloseEveryResponse`] node answers.
pub const CLOSE_BODY: &[u8] = b"ok";

pub async fn raw_node(how: Misbehaviour) -> RawNode {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (acc, reqs) = (accepted.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            acc.fetch_add(1, Ordering::Relaxed);
            let reqs = reqs.clone();
            tokio::spawn(async move {
                if !read_head(&mut s).await {
                    return;
                }
                reqs.fetch_add(1, Ordering::Relaxed);
                let answer: &[u8] = match how {
                    Misbehaviour::Silent => {
                        // Hold the connection until the peer gives up.
                        let mut sink = [0u8; 1024];
                        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                        return;
                    }
                    Misbehaviour::Garbage => b"HTTP/1.1 2x0 \x01garbage\r\n\r\n",
                    Misbehaviour::CloseMidBody => {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten.."
                    }
                    Misbehaviour::CloseEveryResponse => {
                        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
                    }
                };
                let _ = s.write_all(answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    RawNode {
        addr,
        accepted,
        requests,
    }
}

/// Reads until the end of a request head (`\r\n\r\n`); false if the peer closed first.
async fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return true;
        }
    }
}

/// The sum of a metric family's samples whose labels include every `(name, value)` of
/// `labels`, from a balancer running in this process.
pub fn metric_sum(
    lb: &stickyroute::control::Running,
    family: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let text = stickyroute::control::exposition::to_prometheus_text(
        &stickyroute::control::exposition::render(&lb.balancer),
    );
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue, // another family with this prefix
            },
        };
        if labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            sum += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

/// Raw keep-alive exchange for many connections at once: sends `GET path` (with `cookie`),
/// reads the head and a `Content-Length` body; `(status, body)`.
pub async fn raw_get(
    s: &mut TcpStream,
    path: &str,
    cookie: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: JSESSIONID={c}\r\n"));
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n{cookie}\r\n").as_bytes())
        .await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let head_end = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, head.clone());
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(bad)?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, body))
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` that can freeze: while stalled it moves no
/// byte in either direction, and on `resume` it delivers everything that arrived meanwhile,
/// in order, a client's close included. To a client this is a server that stopped for a while
/// (Redis in `DEBUG SLEEP`, a stalled network); to the server, requests whose client may have
/// given up long ago arrive all at once, followed by the close. `stall_replies` freezes only
/// the server's answers: every command is carried out, and no client hears of it in time (an
/// acknowledgement lost on the way back).
pub struct StallProxy {
    pub addr: SocketAddr,
    requests: Arc<tokio::sync::watch::Sender<bool>>,
    replies: Arc<tokio::sync::watch::Sender<bool>>,
}

impl StallProxy {
    pub async fn start(upstream: SocketAddr) -> StallProxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let requests = Arc::new(tokio::sync::watch::channel(false).0);
        let replies = Arc::new(tokio::sync::watch::channel(false).0);
        let (up, down) = (requests.clone(), replies.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, up.subscribe()));
                tokio::spawn(pump(sr, cw, down.subscribe()));
            }
        });
        StallProxy {
            addr,
            requests,
            replies,
        }
    }

    /// Both directions stop.
    pub fn stall(&self) {
        self.requests.send_replace(true);
        self.replies.send_replace(true);
    }

    /// Only the server's answers stop.
    pub fn stall_replies(&self) {
        self.replies.send_replace(true);
    }

    pub fn resume(&self) {
        self.requests.send_replace(false);
        self.replies.send_replace(false);
    }
}

/// Copies `from` to `to`, holding what it read while its direction is stalled; passes the
/// close on.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = from.read(&mut buf).await.unwrap_or(0);
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            let _ = to.shutdown().await;
            return;
        }
    }
}
