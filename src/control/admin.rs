//! The admin listener: JSON API, Prometheus `/metrics` and an HTML status page (DESIGN.md
//! "Operating it"). It runs on its own address (`admin.bind`, loopback by default), never on a
//! proxy listener.
//!
//! | method and path                   | what                                                  |
//! |-----------------------------------|-------------------------------------------------------|
//! | `GET /`                           | live status page (`status_page.js`): charts, drain progress, buttons |
//! | `GET /api/v1/status`              | [`StatusReport`] as JSON                              |
//! | `POST /api/v1/nodes/{route}/state`| body `{"state":"draining"}`; `?pool=NAME` to pick one pool |
//! | `POST /api/v1/reload`             | re-read the config file ([`crate::control::api::ReloadReport`] or `422`)   |
//! | `GET /metrics`                    | Prometheus text; OpenMetrics when the `Accept` header asks |
//! | `GET /live`                       | `ok`, always open (container health checks)           |
//!
//! Changes (`POST`) need `Authorization: Bearer <token>` when `admin.token` (or
//! `STICKYROUTE_ADMIN_TOKEN`) is set; reads are open on loopback. Off loopback the config must
//! have a token (`Config::check_admin_exposure`) and reads need it too, as a bearer token or
//! as an HTTP Basic password (see [`authorize_read`]). Without a token, a `POST` carrying an
//! `Origin` header must come from the admin page itself, so a web page elsewhere cannot drive
//! the API through the operator's browser. Errors are JSON: `{"error": "…"}`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::control::api::{
    ChangedNode, ClusterReport, InstanceNodeReport, InstanceReport, NodeReport, PoolReport,
    RegistryReport, StateChange, StatusReport,
};
use crate::control::{Control, ReloadError};
use crate::core::node_state::NodeState;
use crate::state::node::now_ms;
use crate::state::operator::OperatorError;
use crate::state::Balancer;

/// Largest request body the admin API reads.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Admin connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the status report from the current snapshot.
pub fn status(balancer: &Balancer) -> StatusReport {
    let snap = balancer.snapshot();
    let now = now_ms();
    let reg = balancer.registry.stats();
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        config: snap.config.source.clone(),
        registry: RegistryReport {
            sessions: reg.sessions,
            max_sessions: reg.max_sessions,
            rejected: reg.rejected,
        },
        pools: snap
            .pools
            .iter()
            .map(|p| PoolReport {
                name: p.cfg.name.clone(),
                binder: p.cfg.binder.as_str().to_string(),
                health_checks: p.cfg.health.is_some(),
                nodes: p
                    .nodes
                    .iter()
                    .map(|n| {
                        let rt = &n.rt;
                        let view = balancer.operator.view(&balancer.registry, &p.cfg.name, n);
                        let ld = |a: &std::sync::atomic::AtomicU64| {
                            a.load(std::sync::atomic::Ordering::Relaxed)
                        };
                        NodeReport {
                            route: n.route.clone(),
                            address: n.address.clone(),
                            domain: n.domain.clone(),
                            weight: n.weight,
                            state: n.state().as_str().to_string(),
                            config_state: n.config_state.as_str().to_string(),
                            health: if n.is_up(now) { "up" } else { "down" }.to_string(),
                            in_flight: view.in_flight,
                            requests: ld(&rt.stats.requests),
                            failovers_in: ld(&rt.stats.failovers_in),
                            failovers_out: ld(&rt.stats.failovers_out),
                            connect_errors: ld(&rt.stats.connect_errors),
                            upstream_errors: ld(&rt.stats.upstream_errors),
                            live_sessions: view.live_sessions,
                            drained: view.drained,
                            last_error: rt.health.last_error(),
                        }
                    })
                    .collect(),
            })
            .collect(),
        cluster: balancer
            .operator
            .cluster()
            .map(|c| cluster_report(balancer, &snap, c)),
    }
}

/// The group as this instance knows it: itself first (its counts now), then the others.
fn cluster_report(
    balancer: &Balancer,
    snap: &crate::state::snapshot::Snapshot,
    c: &crate::state::cluster::ClusterState,
) -> ClusterReport {
    let now = crate::state::cluster::unix_ms();
    let own = InstanceReport {
        id: c.instance.clone(),
        alive: true,
        local: true,
        admin: None,
        last_seen_ms: 0,
        nodes: snap
            .pools
            .iter()
            .flat_map(|p| {
                p.nodes.iter().map(|n| InstanceNodeReport {
                    pool: p.cfg.name.clone(),
                    route: n.route.clone(),
                    live_sessions: balancer.registry.live_sessions(n.slot),
                    in_flight: n.inflight(),
                })
            })
            .collect(),
    };
    let others = c.members().into_iter().map(|m| InstanceReport {
        id: m.id,
        alive: m.alive,
        local: false,
        admin: m.admin,
        last_seen_ms: now.saturating_sub(m.seen_ms),
        nodes: m
            .nodes
            .into_iter()
            .map(|n| InstanceNodeReport {
                pool: n.pool,
                route: n.route,
                live_sessions: n.live_sessions,
                in_flight: n.in_flight,
            })
            .collect(),
    });
    ClusterReport {
        name: c.name.clone(),
        connected: c.connected(),
        instance: c.instance.clone(),
        error: if c.connected() { None } else { c.last_error() },
        errors: c.errors.load(std::sync::atomic::Ordering::Relaxed),
        instances: std::iter::once(own).chain(others).collect(),
    }
}

/// An admin API failure: status and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: String,
}

/// Sets the runtime state of the node `route` in `pool` (or in every pool that has it).
pub async fn set_state(
    balancer: &Balancer,
    route: &str,
    pool: Option<&str>,
    body: &[u8],
) -> Result<StateChange, ApiError> {
    let parsed: StateBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("body must be JSON like {{\"state\": \"draining\"}}: {e}"),
        )
    })?;
    let state = NodeState::parse(&parsed.state).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown state {:?}: expected active, draining, disabled or standby",
                parsed.state
            ),
        )
    })?;
    let snap = balancer.snapshot();
    let changed = balancer
        .operator
        .set(&snap, route, pool, state)
        .await
        .map_err(|e| {
            let status = match e {
                OperatorError::UnknownPool(_) | OperatorError::UnknownNode { .. } => {
                    StatusCode::NOT_FOUND
                }
                // The group cannot take the change now; nothing changed, try again later.
                OperatorError::Cluster(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError::new(status, e.to_string())
        })?;
    Ok(StateChange {
        route: route.to_string(),
        state: state.as_str().to_string(),
        nodes: changed
            .into_iter()
            .map(|c| ChangedNode {
                pool: c.pool,
                previous: c.previous.as_str().to_string(),
            })
            .collect(),
    })
}

type AdminResponse = Response<Full<Bytes>>;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> AdminResponse {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> AdminResponse {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    respond(status, "application/json", body)
}

fn error(e: ApiError) -> AdminResponse {
    json(e.status, &serde_json::json!({ "error": e.message }))
}

fn method_not_allowed(allow: &'static str) -> AdminResponse {
    let mut r = error(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("use {allow}"),
    ));
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Whether `given` is the token, in constant time (`subtle`), so response time does not
/// reveal a prefix of it. (A length mismatch returns at once: the length is not the secret.)
fn token_matches(given: &[u8], token: &str) -> bool {
    bool::from(given.ct_eq(token.as_bytes()))
}

/// The password of an `Authorization: Basic` value (the user name is ignored), decoded.
fn basic_password(value: &str) -> Option<Vec<u8>> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = decode_base64(rest.trim())?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

/// Standard base64 (RFC 4648, `=` padding optional); `None` on any other byte.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

/// May this request read the status, the metrics or the page? On loopback, anyone may; off
/// loopback (where [`crate::config::Config::check_admin_exposure`] guarantees a token) the
/// token is needed, as a bearer token (scrapers, `ctl`) or as the password of HTTP Basic
/// authentication, so that a browser can open the status page: it asks for the credentials
/// itself and sends them again with the page's polls. Basic is accepted for reads only: a
/// browser attaches cached Basic credentials to cross-site requests too, so a change needs the
/// bearer header that only a script of the page's own origin can set.
fn authorize_read(
    headers: &http::HeaderMap,
    admin: &crate::config::AdminConfig,
) -> Result<(), ApiError> {
    let Some(token) = admin.token.as_deref().filter(|_| !admin.on_loopback()) else {
        return Ok(());
    };
    let values = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let mut given = false;
    for v in values {
        given = true;
        let ok = match bearer(v) {
            Some(b) => token_matches(b.as_bytes(), token),
            None => basic_password(v).is_some_and(|p| token_matches(&p, token)),
        };
        if ok {
            return Ok(());
        }
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        if given {
            "invalid admin token"
        } else {
            "this admin listener is not on loopback: reads need the admin token too (Authorization: Bearer <token>)"
        },
    ))
}

/// The token of an `Authorization: Bearer` value.
fn bearer(v: &str) -> Option<&str> {
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

/// May this request change anything? `token`: the configured admin token.
fn authorize(headers: &http::HeaderMap, token: Option<&str>) -> Result<(), ApiError> {
    match token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer);
            match given {
                Some(g) if token_matches(g.as_bytes(), token) => Ok(()),
                Some(_) => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid admin token",
                )),
                None => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "admin token required: send Authorization: Bearer <token>",
                )),
            }
        }
        None => {
            // No token: refuse browser requests from other origins (and DNS rebinding, where
            // the Host is a name that only resolves to us).
            let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
                return Ok(());
            };
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let host_name = host
                .rsplit_once(':')
                .map_or(host, |(h, _)| h)
                .trim_matches(['[', ']']);
            let local_name = host_name.parse::<std::net::IpAddr>().is_ok()
                || host_name.eq_ignore_ascii_case("localhost");
            if local_name && origin.strip_prefix("http://") == Some(host) {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "cross-origin change refused (set admin.token to use the API from other origins)",
                ))
            }
        }
    }
}

/// Whether every `%` in `s` starts an escape of two hex digits. The decoders of
/// `percent-encoding` and `form_urlencoded` keep a malformed escape as text; the API refuses it.
fn escapes_well_formed(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .filter(|(_, c)| **c == b'%')
        .all(|(i, _)| {
            b.get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        })
}

/// Whether `s` percent-decodes to UTF-8 with well-formed escapes (`+` is the same byte either
/// way, so this holds for path segments and query values alike).
fn decodes_cleanly(s: &str) -> bool {
    escapes_well_formed(s) && percent_decode_str(s).decode_utf8().is_ok()
}

/// A path segment, percent-decoded (`+` stays `+`); `None` when an escape is malformed or the
/// bytes are not UTF-8.
fn decode_path_segment(s: &str) -> Option<String> {
    if !escapes_well_formed(s) {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|d| d.into_owned())
}

/// The value of the query parameter `name`, decoded as `application/x-www-form-urlencoded`
/// (`+` is a space). `None`: not in the query; `Some(None)`: there, but a malformed escape or
/// not UTF-8.
fn query_param(query: Option<&str>, name: &str) -> Option<Option<String>> {
    query?.split('&').find_map(|pair| {
        let (key, value) = form_urlencoded::parse(pair.as_bytes()).next()?;
        (key == name).then(|| {
            let raw = pair.split_once('=').map_or("", |(_, v)| v);
            decodes_cleanly(raw).then(|| value.into_owned())
        })
    })
}

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )),
    }
}

/// Routes one admin request.
pub async fn handle(control: &Arc<Control>, req: Request<Incoming>) -> AdminResponse {
    let balancer = &control.balancer;
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let snap = balancer.snapshot();
    let Some(admin_cfg) = snap.config.admin.as_ref() else {
        // The section went away in a reload that has not stopped this listener yet.
        return error(ApiError::new(
            StatusCode::NOT_FOUND,
            "the admin listener is being removed",
        ));
    };
    let token = admin_cfg.token.clone();
    // Liveness for container health checks: says nothing about the pools, so it is open.
    if path == "/live" {
        return match method {
            Method::GET | Method::HEAD => {
                respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
            }
            _ => method_not_allowed("GET, HEAD"),
        };
    }
    let is_read = matches!(path.as_str(), "/" | "/api/v1/status" | "/metrics")
        && matches!(method, Method::GET | Method::HEAD);
    if is_read {
        if let Err(e) = authorize_read(req.headers(), admin_cfg) {
            return read_unauthorized(e);
        }
    }
    drop(snap);
    let state_route = path
        .strip_prefix("/api/v1/nodes/")
        .and_then(|r| r.strip_suffix("/state"))
        .filter(|r| !r.is_empty() && !r.contains('/'));
    match (path.as_str(), state_route) {
        ("/", _) => match method {
            Method::GET | Method::HEAD => {
                let mut r = respond(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    status_page(&status(balancer), token.is_some()),
                );
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(PAGE_CSP),
                );
                r
            }
            _ => method_not_allowed("GET, HEAD"),
        },
        ("/api/v1/status", _) => match method {
            Method::GET | Method::HEAD => json(StatusCode::OK, &status(balancer)),
            _ => method_not_allowed("GET, HEAD"),
        },
        ("/metrics", _) => match method {
            Method::GET | Method::HEAD => {
                let text = super::exposition::render(balancer);
                let openmetrics = req
                    .headers()
                    .get_all(header::ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| v.contains("application/openmetrics-text"));
                if openmetrics {
                    respond(StatusCode::OK, super::exposition::CONTENT_TYPE, text)
                } else {
                    respond(
                        StatusCode::OK,
                        super::exposition::CONTENT_TYPE_TEXT,
                        super::exposition::to_prometheus_text(&text),
                    )
                }
            }
            _ => method_not_allowed("GET, HEAD"),
        },
        ("/api/v1/reload", _) => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if let Err(e) = authorize(req.headers(), token.as_deref()) {
                return unauthorized(e);
            }
            match control.reload_from_file().await {
                Ok(report) => json(StatusCode::OK, &report),
                Err(ReloadError::ShuttingDown) => error(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting down",
                )),
                Err(e) => error(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    e.to_string(),
                )),
            }
        }
        (_, Some(raw_route)) => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if let Err(e) = authorize(req.headers(), token.as_deref()) {
                return unauthorized(e);
            }
            let Some(route) = decode_path_segment(raw_route) else {
                return error(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed route in the path",
                ));
            };
            let pool = match query_param(req.uri().query(), "pool") {
                None => None,
                Some(Some(p)) => Some(p),
                Some(None) => {
                    return error(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed pool parameter",
                    ))
                }
            };
            let body = match read_body(req.into_body()).await {
                Ok(b) => b,
                Err(e) => return error(e),
            };
            match set_state(balancer, &route, pool.as_deref(), &body).await {
                Ok(change) => json(StatusCode::OK, &change),
                Err(e) => error(e),
            }
        }
        _ => error(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {path}"),
        )),
    }
}

fn unauthorized(e: ApiError) -> AdminResponse {
    let status = e.status;
    let mut r = error(e);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"stickyroute\""),
        );
    }
    r
}

/// A refused read: both challenges, so a browser offers its login dialog (Basic) and an API
/// client learns it needs a bearer token.
fn read_unauthorized(e: ApiError) -> AdminResponse {
    let mut r = error(e);
    let h = r.headers_mut();
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"stickyroute\""),
    );
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"stickyroute admin\", charset=\"UTF-8\""),
    );
    r
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The status page's style sheet and script, embedded (the page loads nothing else).
const PAGE_STYLE: &str = include_str!("status_page.css");
const PAGE_SCRIPT: &str = include_str!("status_page.js");

/// What the status page may load: nothing from elsewhere; its own inline style and script,
/// and the JSON API of its own origin.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
     connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// JSON for a `<script type="application/json">` element: `<`, `>` and `&` as `\u` escapes, so
/// no text from the config or the nodes can close the element.
fn script_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The live status page: a shell with the current report embedded as JSON; its script renders
/// it and then polls `GET /api/v1/status` every second (`status_page.js`). Per node: state,
/// health, in flight, live sessions as bars, drain progress, requests/s and failovers/s over
/// the last five minutes as inline SVG charts, and the state buttons (a `disable` asks for
/// confirmation; with `token_required` the page asks for the token).
pub fn status_page(s: &StatusReport, token_required: bool) -> String {
    let mut h = String::with_capacity(24 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>stickyroute</title>\
         <style>{PAGE_STYLE}</style></head><body data-token-required=\"{token_required}\">\
         <h1>stickyroute <span id=\"version\">{}</span></h1>\
         <p><small>config <span id=\"config\">{}</span> · registry <span id=\"registry\"></span> · \
         <a href=\"/metrics\">metrics</a> · <a href=\"/api/v1/status\">status JSON</a> · \
         <span id=\"updated\"></span></small></p>\
         <p id=\"cluster\" hidden></p><p id=\"msg\" role=\"status\"></p><div id=\"pools\"></div>\
         <noscript><p class=\"bad\">This page needs JavaScript; the same data is at \
         <a href=\"/api/v1/status\">/api/v1/status</a>.</p></noscript>\
         <script type=\"application/json\" id=\"initial\">{}</script>",
        escape_html(&s.version),
        escape_html(&s.config),
        script_json(s),
    );
    let _ = writeln!(h, "<script>{PAGE_SCRIPT}</script></body></html>");
    h
}

/// Serves the admin API on `listener` until `stop`, then gives open requests `grace`.
pub async fn serve(
    listener: TcpListener,
    control: Arc<Control>,
    stop: CancellationToken,
    grace: Duration,
) {
    let local = listener
        .local_addr()
        .map_or_else(|e| format!("? ({e})"), |a| a.to_string());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    tracing::info!(%local, "admin listening");
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, client): (_, SocketAddr) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let control = control.clone();
        let service = hyper::service::service_fn(move |req| {
            let control = control.clone();
            async move { Ok::<_, Infallible>(handle(&control, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = watched.await {
                tracing::debug!(client.addr = %client, error = %e, "admin connection ended with error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("admin connections still open after the grace period");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn base64_and_basic_credentials() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Zm8").unwrap(), b"fo");
        assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        for bad in ["Z", "Zm9v!", "Zg===", "Zm 9v", "Zm9v\u{e9}"] {
            assert!(decode_base64(bad).is_none(), "{bad}");
        }
        // `admin:s3cret`, `:s3cret`, `u:a:b` (the password may hold colons).
        assert_eq!(basic_password("Basic YWRtaW46czNjcmV0").unwrap(), b"s3cret");
        assert_eq!(basic_password("basic OnMzY3JldA==").unwrap(), b"s3cret");
        assert_eq!(basic_password("Basic dTphOmI=").unwrap(), b"a:b");
        assert!(basic_password("Basic czNjcmV0").is_none(), "no colon");
        assert!(basic_password("Bearer YWRtaW46czNjcmV0").is_none());
        assert!(basic_password("Basic").is_none());
    }

    #[test]
    fn reads_need_the_token_off_loopback_only() {
        let admin = |bind: &str, token: Option<&str>| crate::config::AdminConfig {
            bind: bind.parse().unwrap(),
            token: token.map(str::to_string),
            line: None,
        };
        let none = headers(&[]);
        let bearer = headers(&[("authorization", "Bearer s3cret")]);
        let basic = headers(&[("authorization", "Basic YWRtaW46czNjcmV0")]);
        let wrong = headers(&[("authorization", "Basic YWRtaW46bm9wZQ==")]);
        // On loopback reads are open, token or not.
        for a in [admin("127.0.0.1:1", None), admin("[::1]:1", Some("s3cret"))] {
            authorize_read(&none, &a).unwrap();
        }
        let off = admin("0.0.0.0:1", Some("s3cret"));
        assert_eq!(authorize_read(&none, &off).unwrap_err().status, 401);
        assert!(authorize_read(&none, &off)
            .unwrap_err()
            .message
            .contains("not on loopback"));
        assert_eq!(authorize_read(&wrong, &off).unwrap_err().status, 401);
        authorize_read(&bearer, &off).unwrap();
        authorize_read(&basic, &off).unwrap();
        // Basic never authorizes a change (a browser sends it cross-site on its own).
        assert_eq!(authorize(&basic, Some("s3cret")).unwrap_err().status, 401);
    }

    #[test]
    fn token_rules() {
        let t = Some("s3cret");
        assert_eq!(authorize(&headers(&[]), t).unwrap_err().status, 401);
        assert_eq!(
            authorize(&headers(&[("authorization", "Bearer nope")]), t)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            authorize(&headers(&[("authorization", "Basic s3cret")]), t)
                .unwrap_err()
                .status,
            401
        );
        for wrong in ["Bearer s3creT", "Bearer s3cre", "Bearer s3crets", "Bearer "] {
            assert_eq!(
                authorize(&headers(&[("authorization", wrong)]), t)
                    .unwrap_err()
                    .status,
                401,
                "{wrong}"
            );
        }
        assert!(authorize(&headers(&[("authorization", "Bearer s3cret")]), t).is_ok());
        assert!(authorize(&headers(&[("authorization", "bearer s3cret ")]), t).is_ok());
        // With a token, the Origin does not matter.
        assert!(authorize(
            &headers(&[
                ("authorization", "Bearer s3cret"),
                ("origin", "http://evil.example")
            ]),
            t
        )
        .is_ok());
    }

    #[test]
    fn without_token_only_same_origin_browser_requests_change() {
        assert!(
            authorize(&headers(&[]), None).is_ok(),
            "curl / ctl send no Origin"
        );
        let same = headers(&[
            ("host", "127.0.0.1:9901"),
            ("origin", "http://127.0.0.1:9901"),
        ]);
        assert!(authorize(&same, None).is_ok());
        let evil = headers(&[
            ("host", "127.0.0.1:9901"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(authorize(&evil, None).unwrap_err().status, 403);
        let rebinding = headers(&[
            ("host", "evil.example:9901"),
            ("origin", "http://evil.example:9901"),
        ]);
        assert_eq!(authorize(&rebinding, None).unwrap_err().status, 403);
    }

    #[test]
    fn escaping_and_decoding() {
        assert_eq!(
            escape_html("<b a=\"x\">&'</b>"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;&lt;/b&gt;"
        );
        // Query values: form encoding, `+` is a space.
        let q = |query: &str| query_param(Some(query), "pool");
        assert_eq!(q("pool=a%20b+c"), Some(Some("a b c".into())));
        assert_eq!(q("pool=a%2Bb"), Some(Some("a+b".into())));
        assert_eq!(q("x=1&pool=my%20pool"), Some(Some("my pool".into())));
        assert_eq!(
            q("x=%zz&pool=p"),
            Some(Some("p".into())),
            "only the value asked for counts"
        );
        assert_eq!(q("pool"), Some(Some(String::new())));
        assert_eq!(q("pool=%C3%A9"), Some(Some("é".into())));
        for bad in ["pool=%zz", "pool=%4", "pool=a%", "pool=%ff", "pool=%C3"] {
            assert_eq!(q(bad), Some(None), "{bad}");
        }
        assert_eq!(q("x=1"), None);
        assert_eq!(q("x=1&&"), None);
        assert_eq!(query_param(None, "pool"), None);
        // Path segments: percent-decoding only, `+` is itself.
        assert_eq!(decode_path_segment("a%20b+c").as_deref(), Some("a b+c"));
        assert_eq!(decode_path_segment("jvm1").as_deref(), Some("jvm1"));
        assert_eq!(decode_path_segment("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(decode_path_segment("%C3%A9").as_deref(), Some("é"));
        for bad in ["%zz", "%4", "a%", "%ff", "%C3"] {
            assert_eq!(decode_path_segment(bad), None, "{bad}");
        }
    }

    #[test]
    fn status_page_escapes_everything() {
        let report = StatusReport {
            version: "0".into(),
            config: "<cfg>".into(),
            registry: RegistryReport {
                sessions: 1,
                max_sessions: 2,
                rejected: 0,
            },
            pools: vec![PoolReport {
                name: "p\"<script>".into(),
                binder: "translate".into(),
                health_checks: false,
                nodes: vec![NodeReport {
                    route: "jvm1".into(),
                    address: "127.0.0.1:1".into(),
                    domain: String::new(),
                    weight: 1,
                    state: "active".into(),
                    config_state: "active".into(),
                    health: "down".into(),
                    in_flight: 0,
                    requests: 0,
                    failovers_in: 0,
                    failovers_out: 0,
                    connect_errors: 0,
                    upstream_errors: 0,
                    live_sessions: 0,
                    drained: false,
                    last_error: Some("<img src=x onerror=alert(1)>".into()),
                }],
            }],
            cluster: None,
        };
        let page = status_page(&report, true);
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<cfg>"));
        assert!(
            page.contains("&lt;cfg&gt;"),
            "the config name in the header"
        );
        // The embedded report: no `<` of the data survives to close the script element.
        let start = page.find("id=\"initial\">").unwrap();
        let end = start + page[start..].find("</script>").unwrap();
        let json = &page[start + "id=\"initial\">".len()..end];
        assert!(!json.contains('<') && !json.contains('>'), "{json}");
        let back: StatusReport = serde_json::from_str(json).unwrap();
        assert_eq!(back, report, "the script reads the same report back");
        assert!(page.contains("data-token-required=\"true\""));
        assert!(status_page(&report, false).contains("data-token-required=\"false\""));
    }
}
