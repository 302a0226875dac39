//! The admin listener: JSON API, Prometheus `/metrics` and an HTML status page (DESIGN.md
//! "Operating it"). It runs on its own address (`admin.bind`, loopback by default), never on a
//! proxy listener.
//!
//! | method and path                   | what                                                  |
//! |-----------------------------------|-------------------------------------------------------|
//! | `GET /`                           | live status page (`status_page.js`): charts, drain progress, buttons |
//! | `GET /api/v1/status`              | [`crate::control::api::StatusReport`] as JSON                              |
//! | `POST /api/v1/nodes/{route}/state`| body `{"state":"draining"}`; `?pool=NAME` to pick one pool |
//! | `POST /api/v1/nodes?pool=NAME`   | add a node at runtime: `{"route","address","weight"?,"domain"?}` (`201`, `409` exists) |
//! | `DELETE /api/v1/nodes/{route}?pool=NAME` | drain, then remove, a node added through the API (`202`) |
//! | `POST /api/v1/reload`             | re-read the config file ([`crate::control::api::ReloadReport`] or `422`)   |
//! | `GET /metrics`                    | Prometheus text; OpenMetrics when the `Accept` header asks |
//! | `GET /live`                       | `ok`, always open (container health checks)           |
//! | `GET /ready`                      | `ready`; `503` from the start of a shutdown; always open |
//!
//! Changes (`POST`) need `Authorization: Bearer <token>` when `admin.token` (or
//! `STICKYROUTE_ADMIN_TOKEN`) is set; reads are open on loopback. Off loopback the config must
//! have a token (`Config::check_admin_exposure`) and reads need it too, as a bearer token or
//! as an HTTP Basic password (see `auth`). Without a token, a `POST` carrying an
//! `Origin` header must come from the admin page itself, so a web page elsewhere cannot drive
//! the API through the operator's browser. Errors are JSON: `{"error": "…"}`.
//!
//! This file routes and answers; the access rules are in `auth`, the status page in `page`,
//! the status report in `report`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::control::api::{ChangedNode, StateChange};
use crate::control::{Control, ReloadError};
use crate::core::node_state::NodeState;
use crate::state::operator::OperatorError;
use crate::state::Balancer;

mod auth;
mod nodes;
mod page;
mod report;

pub use page::status_page;
pub use report::status;

/// Largest request body the admin API reads.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Admin connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

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
        return read_only(&method, || {
            respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
        });
    }
    // Readiness (a Kubernetes readiness probe, a load balancer in front): whether this instance
    // takes new connections. Open like `/live`; it says nothing about the pools either.
    if path == "/ready" {
        return read_only(&method, || readiness(control));
    }
    let is_read = matches!(path.as_str(), "/" | "/api/v1/status" | "/metrics")
        && matches!(method, Method::GET | Method::HEAD);
    if is_read {
        if let Err(e) = auth::authorize_read(req.headers(), admin_cfg) {
            return auth::read_unauthorized(e);
        }
    }
    drop(snap);
    let state_route = path
        .strip_prefix("/api/v1/nodes/")
        .and_then(|r| r.strip_suffix("/state"))
        .filter(|r| !r.is_empty() && !r.contains('/'));
    match (path.as_str(), state_route) {
        ("/", _) => read_only(&method, || {
            page::page_response(&status(balancer), token.is_some())
        }),
        ("/api/v1/status", _) => read_only(&method, || json(StatusCode::OK, &status(balancer))),
        ("/metrics", _) => read_only(&method, || metrics(balancer, req.headers())),
        ("/api/v1/reload", _) => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if let Err(e) = auth::authorize(req.headers(), token.as_deref()) {
                return auth::unauthorized(e);
            }
            reload(control).await
        }
        ("/api/v1/nodes", _) => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if let Err(e) = auth::authorize(req.headers(), token.as_deref()) {
                return auth::unauthorized(e);
            }
            post_node(balancer, control, req).await
        }
        (p, None) if p.starts_with("/api/v1/nodes/") && method == Method::DELETE => {
            if let Err(e) = auth::authorize(req.headers(), token.as_deref()) {
                return auth::unauthorized(e);
            }
            delete_node(balancer, &p["/api/v1/nodes/".len()..], &req).await
        }
        (_, Some(raw_route)) => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if let Err(e) = auth::authorize(req.headers(), token.as_deref()) {
                return auth::unauthorized(e);
            }
            post_state(balancer, raw_route, req).await
        }
        _ => error(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such admin endpoint: {path}"),
        )),
    }
}

/// `GET /ready`: `200` while serving; `503` from the moment a shutdown begins, while the proxy
/// listeners drain (the admin listener serves until they are done), so that whatever routes
/// clients here stops before the listeners close.
fn readiness(control: &Control) -> AdminResponse {
    if control.is_shutting_down() {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "shutting down\n",
        )
    } else {
        respond(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
    }
}

/// `answer()` for `GET` and `HEAD`, `405` for any other method.
fn read_only(method: &Method, answer: impl FnOnce() -> AdminResponse) -> AdminResponse {
    match *method {
        Method::GET | Method::HEAD => answer(),
        _ => method_not_allowed("GET, HEAD"),
    }
}

/// `GET /metrics`: Prometheus text, or OpenMetrics when the `Accept` header asks for it.
fn metrics(balancer: &Arc<Balancer>, headers: &HeaderMap) -> AdminResponse {
    let text = crate::control::exposition::render(balancer);
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        respond(
            StatusCode::OK,
            crate::control::exposition::CONTENT_TYPE,
            text,
        )
    } else {
        respond(
            StatusCode::OK,
            crate::control::exposition::CONTENT_TYPE_TEXT,
            crate::control::exposition::to_prometheus_text(&text),
        )
    }
}

/// `POST /api/v1/reload` (authorized): the report, or `422` with the reason.
async fn reload(control: &Arc<Control>) -> AdminResponse {
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

/// `POST /api/v1/nodes/{raw_route}/state` (authorized): decodes the route and the `pool`
/// parameter, reads the body, sets the state.
async fn post_state(balancer: &Balancer, raw_route: &str, req: Request<Incoming>) -> AdminResponse {
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
/// The `pool` query parameter: `Err` when present but malformed.
fn pool_param(req: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    match query_param(req.uri().query(), "pool") {
        None => Ok(None),
        Some(Some(p)) => Ok(Some(p)),
        Some(None) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed pool parameter",
        )),
    }
}

/// `POST /api/v1/nodes?pool=NAME` (authorized): `201` with the node, and its health checks
/// started.
async fn post_node(
    balancer: &Balancer,
    control: &Arc<Control>,
    req: Request<Incoming>,
) -> AdminResponse {
    let pool = match pool_param(&req) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    match nodes::add(balancer, pool.as_deref(), &body).await {
        Ok(node) => {
            control.reconcile_health().await;
            json(StatusCode::CREATED, &node)
        }
        Err((status, reason)) => error(ApiError::new(status, reason)),
    }
}

/// `DELETE /api/v1/nodes/{route}?pool=NAME` (authorized): `202`, the node drains, then goes.
async fn delete_node(
    balancer: &Balancer,
    raw_route: &str,
    req: &Request<Incoming>,
) -> AdminResponse {
    let Some(route) = decode_path_segment(raw_route).filter(|r| !r.is_empty() && !r.contains('/'))
    else {
        return error(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed route in the path",
        ));
    };
    let pool = match pool_param(req) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    match nodes::remove(balancer, pool.as_deref(), &route).await {
        Ok(()) => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({"route": route, "removal": "draining"}),
        ),
        Err((status, reason)) => error(ApiError::new(status, reason)),
    }
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

    #[test]
    fn decoding_paths_and_queries() {
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
}
