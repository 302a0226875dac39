//! The `http` store: a rename hook served by the pool (or by anything else).
//!
//! Owns the hook protocol: `POST <url>` with `Content-Type: application/json` and the body
//! `{"old": "X.jvm1", "new": "X.jvm2", "app": <app or null>}`. The answer's status decides:
//! `2xx` renamed, `409 Conflict` already renamed, `404 Not Found` no such session; any other
//! status is a backend error naming it. The hook must be idempotent and atomic itself. This
//! store only renames: `load`, `save` and `remove` are unsupported.
//!
//! Plain `http://` only (the client has no TLS connector); connections are pooled and kept alive.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{error_chain, RenameOutcome, StoreError};

/// Most of a hook's answer body that is read (and quoted in errors).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Most of a hook's answer body quoted in an error message.
const MAX_QUOTED_CHARS: usize = 200;

/// Handle on a rename hook; clones share the connection pool.
#[derive(Clone)]
pub struct HttpStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    app: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpStore")
            .field("uri", &self.inner.uri)
            .field("app", &self.inner.app)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// Parses a hook URL: absolute, `http`, with a host.
pub(crate) fn parse_hook_url(url: &str) -> Result<Uri, StoreError> {
    let invalid = |why: &str| StoreError::InvalidConfig(format!("http store url {url:?}: {why}"));
    let uri: Uri = url.parse().map_err(|e| invalid(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(invalid("https is not supported, use http")),
        Some(_) => return Err(invalid("the scheme must be http")),
        None => return Err(invalid("must be absolute (http://host:port/path)")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    Ok(uri)
}

/// The JSON body of a rename request.
pub(crate) fn hook_body(old: &str, new: &str, app: Option<&str>) -> Vec<u8> {
    serde_json::json!({ "old": old, "new": new, "app": app })
        .to_string()
        .into_bytes()
}

/// What a hook's status means; `Err` carries the message of a backend error.
pub(crate) fn outcome_of(status: StatusCode) -> Result<RenameOutcome, String> {
    if status.is_success() {
        Ok(RenameOutcome::Renamed)
    } else if status == StatusCode::CONFLICT {
        Ok(RenameOutcome::AlreadyRenamed)
    } else if status == StatusCode::NOT_FOUND {
        Ok(RenameOutcome::NotFound)
    } else {
        Err(format!("rename hook answered {status}"))
    }
}

impl HttpStore {
    /// Validates `url`; does not connect.
    pub(crate) fn open(
        url: &str,
        app: Option<String>,
        timeout: Duration,
        pool_size: u32,
    ) -> Result<Self, StoreError> {
        let uri = parse_hook_url(url)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool_size.max(1) as usize)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(HttpStore {
            inner: Arc::new(Inner {
                client,
                uri,
                app,
                timeout,
            }),
        })
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub(crate) async fn rename(&self, old: &str, new: &str) -> Result<RenameOutcome, StoreError> {
        let inner = &*self.inner;
        let body = hook_body(old, new, inner.app.as_deref());
        let request = Request::builder()
            .method(Method::POST)
            .uri(inner.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| StoreError::InvalidConfig(format!("rename hook request: {e}")))?;
        let response = inner.client.request(request).await.map_err(|e| {
            let text = format!("rename hook {}: {}", inner.uri, error_chain(&e));
            if e.is_connect() {
                StoreError::Unavailable(text)
            } else {
                StoreError::Backend(text)
            }
        })?;
        let status = response.status();
        // Read the answer so the connection goes back to the pool (and to quote it on error).
        let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        outcome_of(status).map_err(|message| {
            let quoted: String = String::from_utf8_lossy(&answer)
                .chars()
                .take(MAX_QUOTED_CHARS)
                .collect();
            let quoted = quoted.trim();
            if quoted.is_empty() {
                StoreError::Backend(format!("{message} ({})", inner.uri))
            } else {
                StoreError::Backend(format!("{message} ({}): {quoted}", inner.uri))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_urls() {
        let cases = [
            ("http://127.0.0.1:8080/rename", true),
            ("http://hooks.internal/session/rename?x=1", true),
            ("https://hooks.internal/rename", false),
            ("ftp://hooks.internal/rename", false),
            ("/rename", false),
            ("hooks.internal/rename", false),
            ("", false),
            ("http://", false),
        ];
        for (url, ok) in cases {
            let result = parse_hook_url(url);
            assert_eq!(result.is_ok(), ok, "{url:?}: {result:?}");
            if let Err(e) = result {
                assert!(matches!(e, StoreError::InvalidConfig(_)), "{url:?}");
            }
        }
    }

    #[test]
    fn hook_bodies() {
        let cases = [
            (
                ("X.jvm1", "X.jvm2", Some("/app")),
                serde_json::json!({"old": "X.jvm1", "new": "X.jvm2", "app": "/app"}),
            ),
            (
                ("a\"b", "c", None),
                serde_json::json!({"old": "a\"b", "new": "c", "app": null}),
            ),
        ];
        for ((old, new, app), want) in cases {
            let got: serde_json::Value = serde_json::from_slice(&hook_body(old, new, app)).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn statuses() {
        let cases = [
            (200, Ok(RenameOutcome::Renamed)),
            (204, Ok(RenameOutcome::Renamed)),
            (409, Ok(RenameOutcome::AlreadyRenamed)),
            (404, Ok(RenameOutcome::NotFound)),
            (
                500,
                Err("rename hook answered 500 Internal Server Error".to_owned()),
            ),
            (302, Err("rename hook answered 302 Found".to_owned())),
            (400, Err("rename hook answered 400 Bad Request".to_owned())),
        ];
        for (code, want) in cases {
            assert_eq!(
                outcome_of(StatusCode::from_u16(code).unwrap()),
                want,
                "{code}"
            );
        }
    }

    #[test]
    fn open_needs_no_runtime() {
        assert!(HttpStore::open("http://127.0.0.1:1/", None, Duration::from_secs(1), 4).is_ok());
    }
}
