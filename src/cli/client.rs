//! A client of the admin API (`control::api`'s types over HTTP/1.1): what `ctl` runs on, and
//! the same API for programs and tests.

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use crate::cli::turnover::remaining::TurnoverError;
use crate::control::api::{NewNode, ReloadReport, StateChange, StatusReport};
use crate::core::node_state::NodeState;

/// Bound on one admin request (a reload may bind listeners).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a `ctl` command failed: the admin API could not be reached or refused (every
/// [`Client`] call), or a turnover did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("invalid admin URL {0:?}: expected http://host:port")]
    Url(String),
    #[error("cannot reach the admin listener at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("admin request failed: {0}")]
    Http(String),
    /// The server answered with an error; `message` is its reason.
    #[error("{message} (HTTP {status})")]
    Server { status: StatusCode, message: String },
    #[error("unexpected answer from the admin listener: {0}")]
    Decode(String),
    #[error(transparent)]
    Turnover(Box<TurnoverError>),
    /// A wait (`ctl remove-node`) ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl From<TurnoverError> for CtlError {
    fn from(e: TurnoverError) -> CtlError {
        CtlError::Turnover(Box::new(e))
    }
}

/// A client of the admin API.
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    /// `host:port` to connect to.
    authority: String,
    /// Path prefix (an admin API behind a reverse proxy), without a trailing `/`.
    prefix: String,
    token: Option<String>,
}

impl Client {
    /// `admin`: `http://host:port` (a path prefix is kept) or `host:port`.
    pub fn new(admin: &str, token: Option<String>) -> Result<Client, CtlError> {
        let rest = match admin.split_once("://") {
            Some(("http", rest)) => rest,
            Some(_) => return Err(CtlError::Url(admin.to_string())),
            None => admin,
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || !authority.contains(':') || authority.contains('@') {
            return Err(CtlError::Url(admin.to_string()));
        }
        Ok(Client {
            url: format!("http://{authority}{prefix}"),
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// `GET /api/v1/status`.
    pub async fn status(&self) -> Result<StatusReport, CtlError> {
        self.call(Method::GET, "/api/v1/status", None).await
    }

    /// `POST /api/v1/nodes/{route}/state`; `pool` limits the change to one pool.
    pub async fn set_state(
        &self,
        route: &str,
        state: NodeState,
        pool: Option<&str>,
    ) -> Result<StateChange, CtlError> {
        let mut path = format!("/api/v1/nodes/{}/state", encode(route));
        if let Some(p) = pool {
            path.push_str("?pool=");
            path.push_str(&encode(p));
        }
        let body = serde_json::json!({ "state": state.as_str() }).to_string();
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `POST /api/v1/nodes?pool=POOL`: adds a node at runtime.
    pub async fn add_node(&self, pool: &str, node: &NewNode) -> Result<NewNode, CtlError> {
        let body = serde_json::to_string(node).map_err(|e| CtlError::Decode(e.to_string()))?;
        let path = format!("/api/v1/nodes?pool={}", encode(pool));
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `DELETE /api/v1/nodes/{route}?pool=POOL`: starts the removal of a runtime node.
    pub async fn remove_node(&self, pool: &str, route: &str) -> Result<(), CtlError> {
        let path = format!("/api/v1/nodes/{}?pool={}", encode(route), encode(pool));
        self.send(Method::DELETE, &path, None).await.map(|_| ())
    }

    /// `POST /api/v1/reload`.
    pub async fn reload(&self) -> Result<ReloadReport, CtlError> {
        self.call(Method::POST, "/api/v1/reload", Some(String::new()))
            .await
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> Result<String, CtlError> {
        let (_, body) = self.send(Method::GET, "/metrics", None).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<T, CtlError> {
        let (_, body) = self.send(method, path, body).await?;
        serde_json::from_slice(&body).map_err(|e| CtlError::Decode(e.to_string()))
    }

    /// Sends one request; a non-2xx answer becomes [`CtlError::Server`] with its reason.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), CtlError> {
        let fut = async {
            let stream =
                TcpStream::connect(&self.authority)
                    .await
                    .map_err(|e| CtlError::Connect {
                        url: self.url.clone(),
                        message: e.to_string(),
                    })?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| CtlError::Http(e.to_string()))?;
            tokio::spawn(conn);
            let mut req = Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.prefix))
                .header(header::HOST, &self.authority)
                .header(
                    header::USER_AGENT,
                    concat!("stickyroute-ctl/", env!("CARGO_PKG_VERSION")),
                );
            if body.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/json");
            }
            if let Some(t) = &self.token {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let req = req
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| CtlError::Http(e.to_string()))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| CtlError::Http(e.to_string()))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| CtlError::Http(e.to_string()))?
                .to_bytes();
            Ok::<_, CtlError>((status, bytes))
        };
        let (status, bytes) =
            tokio::time::timeout(REQUEST_TIMEOUT, fut)
                .await
                .map_err(|_| {
                    CtlError::Http(format!(
                        "no answer from {} within {REQUEST_TIMEOUT:?}",
                        self.url
                    ))
                })??;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(CtlError::Server { status, message });
        }
        Ok((status, bytes))
    }
}

/// What [`encode`] escapes: everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters (a path segment or a query value).
fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls() {
        let c = Client::new("http://127.0.0.1:9901", None).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            ("127.0.0.1:9901", "")
        );
        let c = Client::new("127.0.0.1:9901/", Some(String::new())).unwrap();
        assert_eq!(c.prefix, "");
        assert!(c.token.is_none());
        let c = Client::new("http://lb.internal:80/admin/", None).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.prefix.as_str()),
            ("lb.internal:80", "/admin")
        );
        for bad in [
            "https://x:1",
            "http://",
            "http://noport",
            "ftp://x:1",
            "http://u@x:1",
        ] {
            assert!(Client::new(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn route_encoding() {
        assert_eq!(encode("jvm1"), "jvm1");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        assert_eq!(encode("a+b&c=d?%"), "a%2Bb%26c%3Dd%3F%25");
        assert_eq!(encode("-._~"), "-._~");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
