//! The client protocol a test speaks to the balancer's cleartext listener, so one test body
//! runs over both of the balancer's request paths: HTTP/1.1 (served by the native path) and
//! HTTP/2 with prior knowledge, h2c (served by the hyper path). [`HttpSender`] is one
//! connection of either; [`on_both_paths!`] makes a test of each protocol from one body.
#![allow(dead_code)]

use std::fmt;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// The protocol of a test client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1: the balancer's native path.
    Http1,
    /// HTTP/2 with prior knowledge on the cleartext listener: the balancer's hyper path.
    H2c,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Http1 => "HTTP/1.1",
            Proto::H2c => "h2c",
        })
    }
}

/// The `Host` (HTTP/1.1) or `:authority` (HTTP/2) of every test request.
pub const TEST_HOST: &str = "app.test";

impl Proto {
    /// A request for `path` with `headers`: on HTTP/1.1 with `Host: app.test`, on HTTP/2 with
    /// the absolute URI `http://app.test{path}` (the `:scheme` and `:authority` HTTP/2 asks for).
    pub fn request(
        self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut req = match self {
            Proto::Http1 => Request::builder()
                .method(method)
                .uri(path)
                .header("host", TEST_HOST),
            Proto::H2c => Request::builder()
                .method(method)
                .uri(format!("http://{TEST_HOST}{path}")),
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(Full::new(body)).expect("a valid test request")
    }

    /// The client side of a connection on `stream`; its connection task is spawned.
    pub async fn handshake(self, stream: TcpStream) -> Result<HttpSender, hyper::Error> {
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        Ok(match self {
            Proto::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(async move {
                    let _ = conn.with_upgrades().await;
                });
                HttpSender::Http1(sender)
            }
            Proto::H2c => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                HttpSender::H2c(sender)
            }
        })
    }
}

/// One client connection of either protocol.
pub enum HttpSender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2c(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl HttpSender {
    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            HttpSender::Http1(s) => s.ready().await,
            HttpSender::H2c(s) => s.ready().await,
        }
    }

    pub async fn send_request(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match self {
            HttpSender::Http1(s) => s.send_request(req).await,
            HttpSender::H2c(s) => s.send_request(req).await,
        }
    }

    /// Whether the peer closed the connection.
    pub fn is_closed(&self) -> bool {
        match self {
            HttpSender::Http1(s) => s.is_closed(),
            HttpSender::H2c(s) => s.is_closed(),
        }
    }
}

/// Makes two tests of the async function `$name(proto: Proto)`: `$name::http1` and
/// `$name::h2c`. Attributes before the name (a `cfg`) apply to both; the test attribute is
/// `#[tokio::test]` unless given after the name (`$name, tokio::test(…)`).
#[allow(unused_macros)]
macro_rules! on_both_paths {
    ($(#[$attr:meta])* $name:ident) => {
        on_both_paths!($(#[$attr])* $name, tokio::test);
    };
    ($(#[$attr:meta])* $name:ident, $test:meta) => {
        $(#[$attr])*
        mod $name {
            #[$test]
            async fn http1() {
                super::$name(crate::common::Proto::Http1).await
            }

            #[$test]
            async fn h2c() {
                super::$name(crate::common::Proto::H2c).await
            }
        }
    };
}
