//! Shared harness for integration tests: demo nodes as backends on 127.0.0.1:0, a balancer
//! started from inline YAML, and a small HTTP/1.1 and h2c client. Nothing listens on a fixed
//! port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use stickyroute::config::Config;
use stickyroute::control::Running;
use stickyroute::demo::node::{DemoNodeConfig, RunningNode};
use stickyroute::store::SessionStore;
use tokio::net::{TcpListener, TcpStream};

/// The repository's root directory (where `Cargo.toml` is).
pub fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, by its path from the root; panics naming it when it is missing.
pub fn read_repo_file(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Upper bound for any single step of a test; a hang fails instead of blocking CI.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A demo node on a fresh port of 127.0.0.1.
pub async fn node(route: &str, store: &SessionStore) -> RunningNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    RunningNode::start(listener, DemoNodeConfig::new(route, store.clone())).await
}

/// A demo node on a given address (a restart on the same port).
pub async fn node_at(addr: SocketAddr, cfg: DemoNodeConfig) -> RunningNode {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return RunningNode::start(l, cfg).await,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot rebind {addr}: {last:?}");
}

/// An address on which nothing listens (bound, then released).
/// The raw bytes of an HTTP/1.1 message split at the end of its head: the head as lower-case
/// text, and the bytes after it. Panics when there is no whole head.
pub fn split_head(raw: &[u8]) -> (String, &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    (head, &raw[end..])
}

pub async fn dead_addr() -> SocketAddr {
    // On 127.0.0.2, where no test listens: a port released on 127.0.0.1 could be taken by
    // the next listener a test binds on 127.0.0.1:0, and the dead node would answer.
    let l = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// YAML for one listener on :0 and one pool; `pool_extra` is indented pool-level YAML and
/// `nodes` are `- { … }` node lines.
pub fn yaml(pool_extra: &str, nodes: &[String]) -> String {
    let mut y = String::from("listeners:\n  - bind: \"127.0.0.1:0\"\npools:\n  - name: app\n");
    for line in pool_extra.lines().filter(|l| !l.trim().is_empty()) {
        y.push_str("    ");
        y.push_str(line.trim_start());
        y.push('\n');
    }
    y.push_str("    nodes:\n");
    for n in nodes {
        y.push_str("      ");
        y.push_str(n);
        y.push('\n');
    }
    y
}

/// A node line: `{ route: R, address: "A", extra }`.
pub fn node_line(route: &str, addr: SocketAddr, extra: &str) -> String {
    if extra.is_empty() {
        format!("- {{ route: {route}, address: \"{addr}\" }}")
    } else {
        format!("- {{ route: {route}, address: \"{addr}\", {extra} }}")
    }
}

pub async fn balancer(yaml: &str) -> Running {
    let cfg = Config::from_yaml(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Running::start(cfg).await.unwrap()
}

/// A response, fully read.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Route of the node that answered (the demo node's `X-Node`).
    pub fn node(&self) -> &str {
        self.header("x-node")
            .unwrap_or_else(|| panic!("no X-Node: {} {}", self.status, self.text()))
    }

    /// The session id the backend received (the demo node's `X-Session-Seen`).
    pub fn seen(&self) -> &str {
        self.header("x-session-seen").unwrap_or("")
    }

    /// Values of `Set-Cookie: JSESSIONID=…` in this response.
    pub fn session_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("JSESSIONID="))
            .map(|v| v.split(';').next().unwrap_or("").to_string())
            .collect()
    }
}

#[macro_use]
pub mod proto;
#[allow(unused_imports)]
pub use proto::{HttpSender, Proto, TEST_HOST};

/// One keep-alive connection to `addr`, HTTP/1.1 or h2c.
pub struct Conn {
    sender: HttpSender,
    pub addr: SocketAddr,
    pub proto: Proto,
}

impl Conn {
    /// An HTTP/1.1 connection.
    pub async fn open(addr: SocketAddr) -> Conn {
        Conn::open_with(Proto::Http1, addr).await
    }

    pub async fn open_with(proto: Proto, addr: SocketAddr) -> Conn {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let sender = proto.handshake(stream).await.unwrap();
        Conn {
            sender,
            addr,
            proto,
        }
    }

    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        let req = self.proto.request(method, path, headers, body);
        self.send(req).await
    }

    /// Sends a request made by [`Proto::request`] (and changed by the caller).
    pub async fn send(&mut self, req: hyper::Request<http_body_util::Full<Bytes>>) -> Resp {
        let fut = async {
            self.sender.ready().await.expect("connection not ready");
            let resp = self.sender.send_request(req).await.expect("request failed");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            Resp {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        };
        tokio::time::timeout(DEADLINE, fut)
            .await
            .expect("request timed out")
    }

    pub async fn get(&mut self, path: &str, cookie: Option<&str>) -> Resp {
        let cookie_header = cookie.map(|c| format!("JSESSIONID={c}"));
        let headers: Vec<(&str, &str)> = cookie_header
            .as_deref()
            .map(|c| vec![("cookie", c)])
            .unwrap_or_default();
        self.request(Method::GET, path, &headers, Bytes::new())
            .await
    }
}

impl Proto {
    /// A connection of this protocol to `addr`.
    pub async fn open(self, addr: SocketAddr) -> Conn {
        Conn::open_with(self, addr).await
    }

    /// A GET of this protocol on a fresh connection, with `JSESSIONID=cookie` when given.
    pub async fn get(self, addr: SocketAddr, path: &str, cookie: Option<&str>) -> Resp {
        self.open(addr).await.get(path, cookie).await
    }

    /// A request of this protocol on a fresh connection.
    pub async fn send(
        self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        self.open(addr)
            .await
            .request(method, path, headers, body)
            .await
    }
}

/// A GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Resp {
    Conn::open(addr).await.get(path, cookie).await
}

/// Sends raw bytes and reads what comes back until the peer closes or `DEADLINE`.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub mod ajp_node;
pub mod dns;
pub mod load;
pub mod services;
pub mod wait;
pub mod wrapped;
#[allow(unused_imports)]
pub use services::service_url;

// ---------------------------------------------------------------------------------------------
// Operations (admin API, health, reload): tests/admin.rs, health.rs, reload.rs,
// rolling_restart.rs.

/// Adds an admin listener on 127.0.0.1:0 (and a token when given) to a config from [`yaml`].
pub fn with_admin(yaml: &str, token: Option<&str>) -> String {
    match token {
        Some(t) => format!("{yaml}admin:\n  bind: \"127.0.0.1:0\"\n  token: \"{t}\"\n"),
        None => format!("{yaml}admin:\n  bind: \"127.0.0.1:0\"\n"),
    }
}

/// A `ctl` client of the balancer's admin listener.
pub fn admin_client(lb: &Running, token: Option<&str>) -> stickyroute::cli::ctl::Client {
    let addr = lb.admin_addr.expect("the balancer has no admin listener");
    stickyroute::cli::ctl::Client::new(&format!("http://{addr}"), token.map(str::to_string))
        .unwrap()
}

/// Polls `check` every 20 ms until it returns true; panics after `timeout` naming `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status report's entry for `route` (first pool that has it).
pub fn node_report<'a>(
    s: &'a stickyroute::control::api::StatusReport,
    route: &str,
) -> &'a stickyroute::control::api::NodeReport {
    s.pools
        .iter()
        .flat_map(|p| p.nodes.iter())
        .find(|n| n.route == route)
        .unwrap_or_else(|| panic!("no node {route} in status"))
}

/// One client session: keeps its `JSESSIONID` cookie like a browser.
pub struct Session {
    pub cookie: Option<String>,
}

impl Session {
    pub fn new() -> Self {
        Session { cookie: None }
    }

    /// GET `path` on a fresh connection with the session's cookie; stores a new cookie.
    pub async fn get(&mut self, addr: SocketAddr, path: &str) -> Resp {
        let r = get(addr, path, self.cookie.as_deref()).await;
        if let Some(c) = r.session_cookies().into_iter().last() {
            self.cookie = Some(c);
        }
        r
    }

    /// The route the session is pinned to (text after the last `.`).
    pub fn pin(&self) -> &str {
        self.cookie
            .as_deref()
            .and_then(|c| c.rsplit('.').next())
            .unwrap_or("")
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics: `/metrics` of a running balancer, parsed (tests/admin.rs, limits.rs).

/// Value of the sample `name` whose labels include all of `labels`.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    use prometheus_parse::Value;
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name}: unexpected value {other:?}"),
        })
}

/// `/metrics` of the balancer's admin listener, parsed.
pub async fn scrape(lb: &Running) -> prometheus_parse::Scrape {
    let text = admin_client(lb, None).metrics().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

// ---------------------------------------------------------------------------------------------
// TLS listeners (tests/timeouts.rs).

/// A self-signed certificate for `localhost`, written as `cert.pem` and `key.pem` in a
/// temporary directory.
pub fn test_cert() -> (rcgen::CertifiedKey, tempfile::TempDir) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    (cert, dir)
}

/// A TLS client trusting `cert`, offering `alpn`.
pub fn tls_connector(cert: &rcgen::CertifiedKey, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    tls_connector_offering(cert, &[alpn])
}

/// A TLS client trusting `cert` that offers these ALPN protocols (none: no ALPN extension).
pub fn tls_connector_offering(
    cert: &rcgen::CertifiedKey,
    offers: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = offers.iter().map(|o| o.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
}
