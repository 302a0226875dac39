//! The demo node: a small, fast, Tomcat-like application server (`stickyroute demo-node`).
//!
//! It is the backend of the `demo` command, of the docker-compose failover demo and of the
//! project's integration and load tests. It owns nothing of the balancer: it only behaves the
//! way a Tomcat node with `<Engine jvmRoute="…">` and a persistent session manager behaves, so
//! that the balancer can be tested against something realistic.
//!
//! What it imitates:
//! - Session ids are 32 upper-case hex characters, `.`, and the node's route (`4F1C….jvm1`). A new
//!   session is announced with `Set-Cookie: JSESSIONID=<id>; Path=/; HttpOnly`. Options: a
//!   context path (`/app`: pages under it, `Path=/app`, like a Tomcat application at `/app`),
//!   and ids without a route (a Tomcat without `jvmRoute`).
//! - The id is read from the session cookie (every cookie of that name, in order, the first one
//!   whose session exists wins, as in Tomcat) and then from the `;jsessionid=` path parameter.
//! - A node finds a session only under the exact id it was stored with; anything else gets a new
//!   session with a new id of this node's route.
//! - With `binder_valve` it does what Tomcat's `JvmRouteBinderValve` does: a session whose route
//!   (the text after the *first* `.`) is not this node's route is renamed in the store to
//!   `<base>.<own route>` and the client gets the new id in a `Set-Cookie`.
//! - The node never keeps session data itself: every request loads the session from the
//!   [`SessionStore`] and saves it back, so nodes sharing a store continue each other's sessions.
//!
//! Endpoints: `GET /` (HTML counter page; with [`DemoNodeConfig::control_url`], as in
//! `stickyroute demo`, it also counts without reloading and stops and starts demo nodes through
//! the demo's control listener), `GET /count`, `GET /health`, `POST /login`
//! (change session id), `POST /echo` (streams the body back), `GET /slow?ms=N`, `GET /ws`
//! (WebSocket echo), `GET /whoami` (what the node received). Every response carries
//! `X-Node: <route>` and `X-Session-Seen: <id the request carried, or empty>`.
//!
//! [`RunningNode::stop`] closes the listener and drops every connection at once (idle keep-alive
//! and WebSockets included), so a balancer sees the node die like a killed process.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::own_route::{route_from_ptr, PtrLookup};
use crate::control::html::escape_html;
use crate::store::{
    now_ms, JdbcTable, OnStoreError, SessionRecord, SessionStore, StoreConfig, StoreError,
    StoreKind,
};

/// Default session cookie name (Tomcat's).
pub const DEFAULT_COOKIE_NAME: &str = "JSESSIONID";
/// Default session timeout: Tomcat's 30 minutes.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Deadline for one store operation when the store comes from `--store` (CLI).
pub const DEMO_STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// Redis key pattern of the demo node's sessions.
pub const DEMO_REDIS_KEY: &str = "session:{id}";
/// Longest sleep `GET /slow?ms=N` accepts, in milliseconds.
pub const MAX_SLOW_MSEC: u64 = 60_000;
/// Connections in the pool of a store built by [`parse_store_arg`].
const STORE_POOL_SIZE: u32 = 16;
/// Session ids longer than this are never looked up.
const MAX_SESSION_ID_LEN: usize = 256;
/// Name of the `;jsessionid=` path parameter (matched case-insensitively).
const PATH_PARAM: &str = ";jsessionid=";
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Pause between attempts to create the SQL schema at CLI start-up.
const SCHEMA_RETRY_PAUSE: Duration = Duration::from_secs(2);

static X_NODE: HeaderName = HeaderName::from_static("x-node");
static X_SESSION_SEEN: HeaderName = HeaderName::from_static("x-session-seen");

/// Configuration of one demo node.
#[derive(Clone)]
pub struct DemoNodeConfig {
    /// The node's route (Tomcat `jvmRoute`), e.g. `jvm1`; the suffix of every id it creates.
    pub route: String,
    /// Where sessions live. Clones share data, so nodes given clones share sessions.
    pub store: SessionStore,
    /// Inactivity after which a session expires (Tomcat `maxInactiveInterval`); zero: never.
    pub session_timeout: Duration,
    /// Behave like Tomcat's `JvmRouteBinderValve` (rename foreign-route sessions to this route).
    pub binder_valve: bool,
    /// Session cookie name, `JSESSIONID` by default.
    pub cookie_name: String,
    /// The application's context path, like a Tomcat application deployed at `/app`: every
    /// page is served under it and the session cookie has `Path=<context>`. Empty (the
    /// default): at the root, `Path=/`.
    pub context_path: String,
    /// Session ids end in `.<route>` (default); `false` behaves like a Tomcat without
    /// `jvmRoute`, whose ids have no route.
    pub route_in_ids: bool,
    /// The session cookie carries `HttpOnly` (default, like Tomcat's `useHttpOnly`); `false`
    /// lets the page's script show the cookie the browser holds (`stickyroute demo`).
    pub http_only: bool,
    /// The demo's control listener (`http://host:port`): the counter page then gets *stop* and
    /// *start* buttons for every demo node, and counts without reloading, showing which node
    /// answered and the cookie before and after (`stickyroute demo`).
    pub control_url: Option<String>,
}

impl DemoNodeConfig {
    /// A node with Tomcat's defaults: 30 min timeout, no binder valve, `JSESSIONID`.
    pub fn new(route: impl Into<String>, store: SessionStore) -> Self {
        DemoNodeConfig {
            route: route.into(),
            store,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            binder_valve: false,
            cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
            context_path: String::new(),
            route_in_ids: true,
            http_only: true,
            control_url: None,
        }
    }
}

/// Checks that `route` can serve as a node route: 1–64 characters of `A-Z a-z 0-9 _ -`.
///
/// A `.` is refused because the binder valve reads the route after the first `.`.
pub fn validate_route(route: &str) -> Result<(), String> {
    if route.is_empty() || route.len() > 64 {
        return Err(format!("route {route:?} must have 1 to 64 characters"));
    }
    if !route
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "route {route:?} may contain only letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

/// Builds a session store from a `--store` argument.
///
/// `memory`; `redis://…` / `rediss://…` (keys `session:{id}`); `postgres://…` /
/// `postgresql://…`; `mysql://…` / `mariadb://…` (Tomcat's `tomcat_sessions` table). The store
/// connects lazily: a wrong host shows up on the first request, not here.
pub fn parse_store_arg(s: &str, timeout: Duration) -> Result<SessionStore, String> {
    let s = s.trim();
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, ""),
    };
    let kind = match scheme.as_deref() {
        None if s.eq_ignore_ascii_case("memory") => return Ok(SessionStore::memory()),
        Some("redis" | "rediss") => StoreKind::Redis {
            url: s.to_owned(),
            key: DEMO_REDIS_KEY.to_owned(),
        },
        Some("postgres" | "postgresql") => StoreKind::Postgres {
            url: s.to_owned(),
            table: JdbcTable::default(),
        },
        Some("mysql") => StoreKind::Mysql {
            url: s.to_owned(),
            table: JdbcTable::default(),
        },
        Some("mariadb") => StoreKind::Mysql {
            url: format!("mysql://{rest}"),
            table: JdbcTable::default(),
        },
        _ => {
            return Err(format!(
                "unknown session store {s:?}: expected memory, redis://…, postgres://… or mysql://…"
            ))
        }
    };
    let cfg = StoreConfig {
        kind,
        timeout,
        pool_size: STORE_POOL_SIZE,
        on_error: OnStoreError::Fail,
        negative_ttl: crate::config::store::DEFAULT_NEGATIVE_TTL,
    };
    SessionStore::open(&cfg).map_err(|e| format!("session store {}: {e}", redact_url(s)))
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`, for error messages.
fn redact_url(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Cow::Borrowed(url);
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => Cow::Owned(format!("{scheme}://{user}:***@{}", &rest[at + 1..])),
        None => Cow::Borrowed(url),
    }
}

/// A demo node serving on its listener until [`RunningNode::stop`] (or drop) ends it.
pub struct RunningNode {
    /// The address the node listens on.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    accept_task: Option<JoinHandle<()>>,
    /// Yields `None` once every task holding the node's state (accept loop, connections,
    /// WebSockets) has ended.
    all_closed: mpsc::Receiver<()>,
}

impl RunningNode {
    /// Starts serving on `listener` and returns at once.
    pub async fn start(listener: TcpListener, cfg: DemoNodeConfig) -> RunningNode {
        // A listener without a local address cannot be served; report the unspecified address
        // rather than panicking (it cannot happen for a bound TCP listener).
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let shutdown = CancellationToken::new();
        let (closed_tx, all_closed) = mpsc::channel(1);
        let node = Arc::new(Node::new(cfg, shutdown.clone(), closed_tx));
        let accept_task = tokio::spawn(accept_loop(listener, node));
        RunningNode {
            addr,
            shutdown,
            accept_task: Some(accept_task),
            all_closed,
        }
    }

    /// Stops the node like a killed process: closes the listener and every open connection
    /// (in-flight requests, idle keep-alive connections, WebSockets) without a goodbye.
    /// Returns when all of them are closed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.accept_task.take() {
            // The accept loop only ends by cancellation; a join error means it panicked,
            // which leaves nothing more to close.
            let _ = task.await;
        }
        while self.all_closed.recv().await.is_some() {}
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        // A node dropped without `stop` must not keep serving in the background.
        self.shutdown.cancel();
    }
}

/// Why `stickyroute demo-node` could not start; each names the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum DemoNodeError {
    #[error("--route: {0}")]
    Route(String),
    #[error("--route-from-ptr: {0}")]
    RouteFromPtr(String),
    #[error("--store: {0}")]
    Store(String),
    #[error("--listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Where `stickyroute demo-node` gets its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteSource {
    /// `--route NAME`.
    Given(String),
    /// `--route-from-ptr`: the first label of the PTR name of its own address
    /// ([`super::own_route`]).
    FromPtr(PtrLookup),
}

impl RouteSource {
    /// The route, checked; looked up in DNS for [`RouteSource::FromPtr`].
    pub async fn resolve(&self) -> Result<String, DemoNodeError> {
        match self {
            RouteSource::Given(route) => {
                validate_route(route).map_err(DemoNodeError::Route)?;
                Ok(route.clone())
            }
            RouteSource::FromPtr(lookup) => {
                let found = route_from_ptr(lookup)
                    .await
                    .map_err(DemoNodeError::RouteFromPtr)?;
                validate_route(&found.route).map_err(|e| {
                    DemoNodeError::RouteFromPtr(format!(
                        "{} (the PTR name of {}): {e}",
                        found.name, found.address
                    ))
                })?;
                info!(address = %found.address, ptr = %found.name, route = %found.route, "route from the PTR name of the node's address");
                Ok(found.route)
            }
        }
    }
}

/// Runs one demo node until Ctrl-C or SIGTERM: the `stickyroute demo-node` subcommand.
pub async fn run_demo_node_cli(
    route: RouteSource,
    listen: SocketAddr,
    store: String,
    session_timeout: Duration,
    binder_valve: bool,
) -> Result<(), DemoNodeError> {
    let route = route.resolve().await?;
    let store = parse_store_arg(&store, DEMO_STORE_TIMEOUT).map_err(DemoNodeError::Store)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| DemoNodeError::Listen {
            addr: listen,
            source,
        })?;

    // The SQL table may not be creatable yet (the database starts after us in a compose file):
    // keep trying in the background instead of refusing to start.
    let schema_stop = CancellationToken::new();
    let schema_task = tokio::spawn(ensure_schema_until_done(store.clone(), schema_stop.clone()));

    let kind = store.kind_name();
    let cfg = DemoNodeConfig {
        session_timeout,
        binder_valve,
        ..DemoNodeConfig::new(route.clone(), store)
    };
    let node = RunningNode::start(listener, cfg).await;
    info!(route = %route, addr = %node.addr, store = kind, binder_valve, "demo node listening");
    println!(
        "demo-node {route} listening on http://{} (store: {kind}, binder valve: {})",
        node.addr,
        if binder_valve { "on" } else { "off" }
    );

    crate::proxy::listener::shutdown_signal().await;
    info!(route = %route, "demo node stopping");
    schema_stop.cancel();
    let _ = schema_task.await;
    node.stop().await;
    Ok(())
}

async fn ensure_schema_until_done(store: SessionStore, stop: CancellationToken) {
    loop {
        match store.ensure_schema().await {
            Ok(()) => return,
            Err(e) => {
                warn!(store = store.kind_name(), error = %e, "cannot create the session schema yet; retrying")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SCHEMA_RETRY_PAUSE) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

type RespBody = BoxBody<Bytes, hyper::Error>;

/// Shared state of one running node. Every task that can hold a connection open holds an
/// `Arc<Node>`; the `_closed` sender inside tells `stop` when the last one is gone.
struct Node {
    route: String,
    x_node: HeaderValue,
    store: SessionStore,
    max_inactive_secs: i32,
    binder_valve: bool,
    cookie_name: String,
    context_path: String,
    route_in_ids: bool,
    http_only: bool,
    control_url: Option<String>,
    shutdown: CancellationToken,
    _closed: mpsc::Sender<()>,
}

impl Node {
    fn new(cfg: DemoNodeConfig, shutdown: CancellationToken, closed: mpsc::Sender<()>) -> Node {
        let x_node = HeaderValue::from_str(&cfg.route)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid-route"));
        Node {
            x_node,
            max_inactive_secs: max_inactive_secs(cfg.session_timeout),
            route: cfg.route,
            store: cfg.store,
            binder_valve: cfg.binder_valve,
            cookie_name: cfg.cookie_name,
            context_path: cfg.context_path,
            route_in_ids: cfg.route_in_ids,
            http_only: cfg.http_only,
            control_url: cfg.control_url,
            shutdown,
            _closed: closed,
        }
    }
}

/// Tomcat's `maxInactiveInterval` in whole seconds, rounded up; `-1` (never) for zero.
fn max_inactive_secs(timeout: Duration) -> i32 {
    if timeout.is_zero() {
        return -1;
    }
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

async fn accept_loop(listener: TcpListener, node: Arc<Node>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let accepted = tokio::select! {
            _ = node.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                warn!(route = %node.route, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service_node = node.clone();
            let service = hyper::service::service_fn(move |req| {
                let node = service_node.clone();
                async move { Ok::<_, Infallible>(handle(node, req).await) }
            });
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                // Dropping the connection closes the socket at once, like a killed process.
                _ = node.shutdown.cancelled() => {}
                res = conn => {
                    if let Err(e) = res {
                        debug!(client.addr = %peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }
    // The listener is dropped here: new connects are refused from now on.
}

async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Response<RespBody> {
    let candidates = session_candidates(req.headers(), req.uri().path(), &node.cookie_name);
    let seen = candidates
        .first()
        .and_then(|id| HeaderValue::from_str(id).ok())
        .unwrap_or_else(|| HeaderValue::from_static(""));
    let path = strip_path_params(req.uri().path()).into_owned();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let post = *req.method() == Method::POST;

    let Some(path) = path_in_context(&path, &node.context_path) else {
        let mut resp = text(StatusCode::NOT_FOUND, "not found\n");
        resp.headers_mut()
            .insert(X_NODE.clone(), node.x_node.clone());
        return resp;
    };
    let mut resp = match path {
        "/" if get => page(&node, &candidates, req.uri().query()).await,
        "/count" if get => count(&node, &candidates).await,
        "/health" if get => text(StatusCode::OK, "ok\n"),
        "/login" if post => login(&node, &candidates).await,
        "/echo" if post || *req.method() == Method::PUT => echo(req),
        "/slow" if get => slow(&node, req.uri().query()).await,
        "/ws" if *req.method() == Method::GET => websocket(&node, req),
        "/whoami" => whoami(&node, &candidates, &req),
        "/" | "/count" | "/health" | "/slow" | "/ws" => method_not_allowed("GET, HEAD"),
        "/login" => method_not_allowed("POST"),
        "/echo" => method_not_allowed("POST, PUT"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    let headers = resp.headers_mut();
    headers.insert(X_NODE.clone(), node.x_node.clone());
    headers.insert(X_SESSION_SEEN.clone(), seen);
    resp
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// The session a request works with.
struct Session {
    id: String,
    rec: SessionRecord,
    /// The client must be told the id (new session, or renamed by the binder valve).
    set_cookie: bool,
    /// Created by this request; not in the store yet.
    is_new: bool,
}

impl Session {
    fn count(&self) -> i64 {
        self.rec
            .data
            .get("count")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    fn set_count(&mut self, count: i64) {
        if !self.rec.data.is_object() {
            self.rec.data = json!({});
        }
        if let Some(map) = self.rec.data.as_object_mut() {
            map.insert("count".to_owned(), json!(count));
        }
    }
}

impl Node {
    /// Finds the request's session like Tomcat does, or creates a new one (not yet saved).
    async fn resolve_session(&self, candidates: &[String]) -> Result<Session, StoreError> {
        for id in candidates {
            let rebind_to = if self.binder_valve {
                self.valve_target(id)
            } else {
                None
            };
            if let Some(rec) = self.load_live(id).await? {
                let Some(new_id) = rebind_to else {
                    return Ok(Session {
                        id: id.clone(),
                        rec,
                        set_cookie: false,
                        is_new: false,
                    });
                };
                // JvmRouteBinderValve: move the session to this node's route.
                self.store.rename(id, &new_id).await?;
                debug!(route = %self.route, from = route_of(id), "binder valve renamed a session");
                if let Some(rec) = self.load_live(&new_id).await? {
                    return Ok(Session {
                        id: new_id,
                        rec,
                        set_cookie: true,
                        is_new: false,
                    });
                }
            } else if let Some(new_id) = rebind_to {
                // The valve (here, for a concurrent request) already renamed it: the old id
                // keeps working on the node that renamed it.
                if let Some(rec) = self.load_live(&new_id).await? {
                    return Ok(Session {
                        id: new_id,
                        rec,
                        set_cookie: true,
                        is_new: false,
                    });
                }
            }
        }
        Ok(Session {
            id: self.new_id(),
            rec: SessionRecord {
                data: json!({}),
                last_access_ms: now_ms(),
                max_inactive_secs: self.max_inactive_secs,
                valid: true,
            },
            set_cookie: true,
            is_new: true,
        })
    }

    /// A new session id: Tomcat-style with this node's route, or without one.
    fn new_id(&self) -> String {
        let id = new_session_id(&self.route);
        if self.route_in_ids {
            return id;
        }
        id.split_once('.')
            .map_or(id.clone(), |(base, _)| base.to_owned())
    }

    /// `<base>.<own route>` when `id`'s route (after the first `.`) is another node's.
    fn valve_target(&self, id: &str) -> Option<String> {
        let (base, route) = id.split_once('.')?;
        if base.is_empty() || route == self.route {
            return None;
        }
        Some(format!("{base}.{}", self.route))
    }

    /// Loads a session that is valid and not expired.
    async fn load_live(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let Some(rec) = self.store.load(id).await? else {
            return Ok(None);
        };
        if rec.is_live_at(now_ms()) {
            return Ok(Some(rec));
        }
        // Tomcat's background expiry would have removed it; do it now, best effort.
        if let Err(e) = self.store.remove(id).await {
            debug!(error = %e, "could not remove an expired session");
        }
        Ok(None)
    }

    /// Saves the session with a fresh access time.
    async fn save(&self, session: &mut Session) -> Result<(), StoreError> {
        session.rec.last_access_ms = now_ms();
        self.store.save(&session.id, &session.rec).await?;
        session.is_new = false;
        Ok(())
    }

    fn store_error(&self, e: &StoreError) -> Response<RespBody> {
        warn!(route = %self.route, store = self.store.kind_name(), error = %e, "session store error");
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} {e}\n", self.store.kind_name()),
        )
    }

    fn session_json(&self, session: &Session) -> Response<RespBody> {
        let body = json!({
            "node": self.route,
            "session": session.id,
            "count": session.count(),
        });
        let mut resp = json_response(&body);
        self.add_cookie(&mut resp, session);
        resp
    }

    fn add_cookie(&self, resp: &mut Response<RespBody>, session: &Session) {
        if !session.set_cookie {
            return;
        }
        let path = if self.context_path.is_empty() {
            "/"
        } else {
            self.context_path.as_str()
        };
        let http_only = if self.http_only { "; HttpOnly" } else { "" };
        let cookie = format!(
            "{}={}; Path={path}{http_only}",
            self.cookie_name, session.id
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

/// A new Tomcat-style id: 32 upper-case hex characters, `.`, route.
fn new_session_id(route: &str) -> String {
    format!("{:032X}.{route}", rand::random::<u128>())
}

/// The route part of an id for logs (never log whole ids).
fn route_of(id: &str) -> &str {
    id.split_once('.').map_or("", |(_, route)| route)
}

/// Session ids a request carries, in the order Tomcat tries them: every cookie named
/// `cookie_name` (all `Cookie` headers, in order), then the `;jsessionid=` path parameter.
fn session_candidates(headers: &HeaderMap, path: &str, cookie_name: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((name, id)) = pair.split_once('=') else {
                continue;
            };
            if name.trim() != cookie_name {
                continue;
            }
            let id = id.trim();
            let id = id
                .strip_prefix('"')
                .and_then(|id| id.strip_suffix('"'))
                .unwrap_or(id);
            if is_plausible_id(id) && !ids.iter().any(|known| known == id) {
                ids.push(id.to_owned());
            }
        }
    }
    if let Some(id) = path_param_id(path) {
        if is_plausible_id(id) && !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }
    ids
}

fn is_plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SESSION_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\'))
}

/// The value of the `;jsessionid=` path parameter (name case-insensitive; the value ends at
/// `;`, `?`, `/` or `#`).
fn path_param_id(path: &str) -> Option<&str> {
    let start = path.match_indices(';').find_map(|(i, _)| {
        path.get(i..i + PATH_PARAM.len())
            .filter(|p| p.eq_ignore_ascii_case(PATH_PARAM))
            .map(|_| i + PATH_PARAM.len())
    })?;
    let rest = &path[start..];
    let end = rest.find([';', '?', '/', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The path inside the node's context (`/app/count` → `/count` under `/app`); `None` outside it.
fn path_in_context<'p>(path: &'p str, context: &str) -> Option<&'p str> {
    if context.is_empty() {
        return Some(path);
    }
    match path.strip_prefix(context)? {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

/// The path without `;parameters` in any segment (`/count;jsessionid=X` → `/count`).
fn strip_path_params(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let segments: Vec<&str> = path
        .split('/')
        .map(|seg| seg.split_once(';').map_or(seg, |(s, _)| s))
        .collect();
    Cow::Owned(segments.join("/"))
}

fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

/// The counter page's script when the node knows the demo's control listener: "Count again"
/// counts with `GET count` without reloading and logs which node answered with the session
/// cookie before and after; the node table (from the control listener's `GET /nodes`, every
/// second) has *stop* and *start* buttons (`POST /nodes/<route>/stop|start`).
const DEMO_PAGE_SCRIPT: &str = include_str!("demo_page.js");

/// `GET /`: the counter page; `?inc=1` (the page's button) counts first.
async fn page(node: &Node, candidates: &[String], query: Option<&str>) -> Response<RespBody> {
    let mut session = match node.resolve_session(candidates).await {
        Ok(s) => s,
        Err(e) => return node.store_error(&e),
    };
    if query_param(query, "inc").is_some() {
        let next = session.count().saturating_add(1);
        session.set_count(next);
    }
    if let Err(e) = node.save(&mut session).await {
        return node.store_error(&e);
    }
    let route = escape_html(&node.route);
    // With a control listener: the failover story in the page (see `DEMO_PAGE_SCRIPT`).
    let (control_attr, control_html) = match &node.control_url {
        Some(url) => (
            format!(" data-control=\"{}\"", escape_html(url)),
            format!(
                "<h2>What the browser sees</h2>\n<p id=\"answer\"></p>\
                 <table id=\"history\"><thead><tr><th>#</th><th>answered by</th><th>count</th>\
                 <th>cookie before</th><th>cookie after</th></tr></thead><tbody></tbody></table>\n\
                 <h2>Demo nodes</h2>\n<p><small>Stop a node like a crash and count again: \
                 another node answers, the count goes on and the cookie is rebound.</small></p>\
                 <table id=\"nodes\"><thead><tr><th>node</th><th>process</th><th>balancer</th>\
                 <th></th></tr></thead><tbody></tbody></table><p id=\"control-msg\"></p>\n\
                 <script>{DEMO_PAGE_SCRIPT}</script>"
            ),
        ),
        None => (String::new(), String::new()),
    };
    let html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>stickyroute demo: {route}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em 1em;text-align:left}}\
         .stopped,.down{{color:#b00;font-weight:bold}}.changed{{background:#ffd}}</style></head>\n\
         <body{control_attr}><h1>Node <span id=\"node\">{route}</span></h1>\n<table>\
         <tr><td>node</td><td><b id=\"node-cell\">{route}</b></td></tr>\
         <tr><td>session</td><td><code id=\"session\">{id}</code></td></tr>\
         <tr><td>count</td><td><b id=\"count\">{count}</b></td></tr></table>\n\
         <form method=\"get\" id=\"count-form\"><input type=\"hidden\" name=\"inc\" value=\"1\">\
         <button type=\"submit\" id=\"count-again\">Count again</button></form>\n\
         <p><a href=\"count\">count (JSON)</a> &middot; <a href=\"whoami\">whoami</a></p>\n\
         {control_html}</body></html>\n",
        id = escape_html(&session.id),
        count = session.count(),
    );
    let mut resp = full(StatusCode::OK, "text/html; charset=utf-8", html);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    node.add_cookie(&mut resp, &session);
    resp
}

/// `GET /count`: load, increment, save.
async fn count(node: &Node, candidates: &[String]) -> Response<RespBody> {
    let mut session = match node.resolve_session(candidates).await {
        Ok(s) => s,
        Err(e) => return node.store_error(&e),
    };
    let next = session.count().saturating_add(1);
    session.set_count(next);
    if let Err(e) = node.save(&mut session).await {
        return node.store_error(&e);
    }
    node.session_json(&session)
}

/// `POST /login`: Tomcat's `changeSessionId` — same data under a fresh id of this node.
async fn login(node: &Node, candidates: &[String]) -> Response<RespBody> {
    let mut session = match node.resolve_session(candidates).await {
        Ok(s) => s,
        Err(e) => return node.store_error(&e),
    };
    let old_id = if session.is_new {
        None
    } else {
        session.set_cookie = true;
        Some(std::mem::replace(&mut session.id, node.new_id()))
    };
    // Save under the new id before removing the old one: a failure in between leaves a
    // duplicate, never a lost session.
    if let Err(e) = node.save(&mut session).await {
        return node.store_error(&e);
    }
    if let Some(old_id) = old_id {
        if let Err(e) = node.store.remove(&old_id).await {
            return node.store_error(&e);
        }
    }
    node.session_json(&session)
}

/// `POST /echo`: the request body streamed back as it arrives, `Content-Type` kept.
fn echo(req: Request<Incoming>) -> Response<RespBody> {
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let mut resp = Response::new(req.into_body().boxed());
    if let Some(ct) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

/// `GET /slow?ms=N`: answers after N ms (at most [`MAX_SLOW_MSEC`]; no `ms`: 1000).
async fn slow(node: &Node, query: Option<&str>) -> Response<RespBody> {
    let ms = match query_param(query, "ms") {
        None => 1000,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) => ms.min(MAX_SLOW_MSEC),
            Err(_) => return text(StatusCode::BAD_REQUEST, "ms must be a number\n"),
        },
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    json_response(&json!({ "node": node.route, "slept_ms": ms }))
}

/// `GET /whoami`: what the node received, for tests of forwarded headers.
fn whoami(node: &Node, candidates: &[String], req: &Request<Incoming>) -> Response<RespBody> {
    let mut headers = serde_json::Map::new();
    let mut header_list = Vec::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            // Several lines of one header: joined as a proxy would fold them, but `Cookie`
            // lines are joined with "; " (RFC 9113 §8.2.3).
            Some(Value::String(joined)) => {
                joined.push_str(if name == header::COOKIE { "; " } else { ", " });
                joined.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value.clone()));
            }
        }
        header_list.push(json!([name.as_str(), value]));
    }
    json_response(&json!({
        "node": node.route,
        "session_seen": candidates.first().map_or("", String::as_str),
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query().unwrap_or(""),
        "version": format!("{:?}", req.version()),
        "headers": headers,
        "header_list": header_list,
    }))
}

/// `GET /ws`: WebSocket echo of text and binary messages; says `node:<route>` first.
fn websocket(node: &Arc<Node>, mut req: Request<Incoming>) -> Response<RespBody> {
    let headers = req.headers();
    let is_upgrade = header_has_token(headers, &header::CONNECTION, "upgrade")
        && header_has_token(headers, &header::UPGRADE, "websocket");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    };
    if !is_upgrade {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut resp = text(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only\n");
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return resp;
    }
    let accept = derive_accept_key(key.as_bytes());
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return text(StatusCode::BAD_REQUEST, "bad Sec-WebSocket-Key\n");
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_node = node.clone();
    tokio::spawn(async move {
        let node = task_node;
        tokio::select! {
            // Stop drops the socket without a close frame, like a killed process.
            _ = node.shutdown.cancelled() => {}
            res = ws_echo(on_upgrade, &node.route) => {
                if let Err(e) = res {
                    debug!(route = %node.route, error = %e, "websocket ended with an error");
                }
            }
        }
    });

    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    resp
}

async fn ws_echo(
    on_upgrade: hyper::upgrade::OnUpgrade,
    route: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let upgraded = on_upgrade.await?;
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    ws.send(Message::text(format!("node:{route}"))).await?;
    while let Some(msg) = ws.next().await {
        match msg? {
            msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg).await?,
            // Pings are answered and closes acknowledged by tungstenite on the next read.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
        }
    }
    Ok(())
}

fn header_has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

// ---------------------------------------------------------------------------------------------
// Response helpers
// ---------------------------------------------------------------------------------------------

fn empty() -> RespBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<RespBody> {
    let mut resp = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<RespBody> {
    full(status, "text/plain; charset=utf-8", body)
}

fn json_response(value: &Value) -> Response<RespBody> {
    full(StatusCode::OK, "application/json", value.to_string())
}

fn method_not_allowed(allow: &'static str) -> Response<RespBody> {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demo_node_errors_name_the_flag() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let run = |route: &str, store: &str| {
            run_demo_node_cli(
                RouteSource::Given(route.to_owned()),
                addr,
                store.to_owned(),
                Duration::from_secs(60),
                false,
            )
        };
        let e = run("jvm.1", "memory").await.unwrap_err();
        assert!(matches!(e, DemoNodeError::Route(_)), "{e:?}");
        assert!(e.to_string().starts_with("--route: "), "{e}");
        let e = run("jvm1", "ftp://x").await.unwrap_err();
        assert!(matches!(e, DemoNodeError::Store(_)), "{e:?}");
        assert!(
            e.to_string().starts_with("--store: unknown session store"),
            "{e}"
        );
    }

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn candidates_from_cookies_then_path() {
        let h = headers(&["a=1; JSESSIONID=AAA.jvm1", "JSESSIONID=\"BBB.jvm2\"; b=2"]);
        let ids = session_candidates(&h, "/count;JSessionId=CCC.jvm3", "JSESSIONID");
        assert_eq!(ids, ["AAA.jvm1", "BBB.jvm2", "CCC.jvm3"]);
    }

    #[test]
    fn candidates_ignore_other_names_empty_and_duplicates() {
        let h = headers(&["jsessionid=lower; JSESSIONID=; JSESSIONID=X.a; JSESSIONID=X.a; junk"]);
        assert_eq!(session_candidates(&h, "/", "JSESSIONID"), ["X.a"]);
        assert!(session_candidates(&HeaderMap::new(), "/", "JSESSIONID").is_empty());
    }

    #[test]
    fn path_param_value_ends_at_delimiters() {
        assert_eq!(path_param_id("/a;jsessionid=X.jvm1"), Some("X.jvm1"));
        assert_eq!(path_param_id("/a;JSESSIONID=X.jvm1;v=2"), Some("X.jvm1"));
        assert_eq!(path_param_id("/a;jsessionid=X.jvm1/b"), Some("X.jvm1"));
        assert_eq!(path_param_id("/a;other=1;jsessionid=Y"), Some("Y"));
        assert_eq!(path_param_id("/a;jsession=Y"), None);
        assert_eq!(path_param_id("/a;"), None);
        assert_eq!(path_param_id("/é;jsessionid=Z"), Some("Z"));
    }

    #[test]
    fn path_params_are_stripped_for_routing() {
        assert_eq!(strip_path_params("/count;jsessionid=X.jvm1"), "/count");
        assert_eq!(strip_path_params("/;jsessionid=X"), "/");
        assert_eq!(strip_path_params("/a;x=1/b"), "/a/b");
        assert_eq!(strip_path_params("/plain"), "/plain");
    }

    #[test]
    fn path_in_context_table() {
        let cases = [
            ("/count", "", Some("/count")),
            ("/app/count", "/app", Some("/count")),
            ("/app", "/app", Some("/")),
            ("/app/", "/app", Some("/")),
            ("/application/count", "/app", None),
            ("/count", "/app", None),
        ];
        for (path, ctx, want) in cases {
            assert_eq!(path_in_context(path, ctx), want, "{path} in {ctx:?}");
        }
    }

    #[test]
    fn new_ids_look_like_tomcat_ids() {
        let id = new_session_id("jvm1");
        let (base, route) = id.split_once('.').unwrap();
        assert_eq!(route, "jvm1");
        assert_eq!(base.len(), 32);
        assert!(base
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
    }

    #[test]
    fn store_args() {
        let t = Duration::from_secs(1);
        assert_eq!(parse_store_arg("memory", t).unwrap().kind_name(), "memory");
        assert!(parse_store_arg("sqlite://x", t).is_err());
        assert!(parse_store_arg("", t).is_err());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("memory"), "memory");
    }

    #[test]
    fn timeouts_round_up_to_seconds() {
        assert_eq!(max_inactive_secs(Duration::from_millis(1500)), 2);
        assert_eq!(max_inactive_secs(Duration::from_secs(1)), 1);
        assert_eq!(max_inactive_secs(Duration::ZERO), -1);
    }

    #[test]
    fn routes_are_validated() {
        assert!(validate_route("jvm1").is_ok());
        assert!(validate_route("node-2_b").is_ok());
        assert!(validate_route("").is_err());
        assert!(validate_route("a.b").is_err());
        assert!(validate_route("a b").is_err());
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("ms=5&x"), "ms"), Some("5"));
        assert_eq!(query_param(Some("ms=5&inc"), "inc"), Some(""));
        assert_eq!(query_param(None, "ms"), None);
    }
}
