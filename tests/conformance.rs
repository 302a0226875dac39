//! Differential conformance of the balancer's HTTP/1.1 serving against hyper, over real TCP.
//!
//! Every case of the table [`cases`] runs once per [`Transport`], as the test
//! `<transport>::<case>` (`cargo test --test conformance -- tls::two_host_headers`): its raw
//! client bytes go to the balancer's listener on that transport (cleartext, or TLS with a
//! self-signed certificate and ALPN `http/1.1`), and the same bytes to the reference: hyper
//! serving the library's `proxy::service` on a socket of the test, told the client came over
//! that transport (it writes the `X-Forwarded-Proto` / `Forwarded` scheme accordingly). Behind
//! each is a raw-TCP fake node that records the exact bytes of every request it receives and
//! answers scripted bytes. Each balancer and node is fresh for one run, so passive health or
//! pooled connections of one run cannot leak into another.
//!
//! For every case the runner checks:
//! 1. the balancer's own expectation ([`Want`]): the status it answers, how many requests
//!    reach the node, whatever else the case pins — so a case fails even when the balancer and
//!    hyper are wrong in the same way;
//! 2. with [`Diff::Same`], that the reference behaves alike: the same status classes, the same
//!    interim responses, the same response bodies, the same connection close, and the same
//!    requests at the node after the normalizations below. Where the balancer is required to
//!    be stricter than hyper (Host), or where hyper is looser than the RFC and the balancer
//!    follows the RFC, the case says [`Diff::Stricter`] with the reason; a divergence that is no
//!    bug of the balancer but not required either says [`Diff::Known`]. Both describe what
//!    hyper does, and both assert that hyper still differs: a case whose divergence went away
//!    must become [`Diff::Same`] rather than keep a stale reason.
//!
//! Why the reference is served by the test: the listener serves cleartext HTTP/1.1 on the
//! native path (`proxy::h1`) and there is no switch to send it through hyper. `ProxyService`
//! is public, so the test serves it with hyper as the listener does for the connections it
//! hands to hyper, on a reference that does not depend on which path the listener takes.
//! `ProxyService` reaches the nodes on the native codec too (`proxy::node_http`, with the
//! head `proxy::node_head` writes): what the reference differs in is hyper's serving of the
//! client; what the node receives comes from the same rules on both sides.
//!
//! `CONFORMANCE_SHOW=1` prints what each side did for every case.
//!
//! Normalizations of what the node received (each one a legitimate difference, nothing else):
//! - **N1 header-name case**: hyper writes names in lower case; the native path keeps the
//!   client's spelling. Names are compared lower-cased.
//! - **N2 order across names**: hyper's `HeaderMap` groups the values of one name together in
//!   the order of first appearance; the native path keeps the client's line order and appends
//!   the headers it adds. Lines are compared sorted by name, with the order of the values of one
//!   name kept.
//! - **N3 chunk boundaries**: both paths re-frame a chunked body and cut chunks where their
//!   reads end; chunked bodies are compared decoded (framing kind, payload, trailer fields).
//! - **N4 forwarded version**: the native path sends its own `HTTP/1.1` on the request line, as
//!   RFC 9110 §6.2 requires of an intermediary; hyper's client repeats the client's version.
//!   The version is not compared; the HTTP/1.0 cases assert the native path's `HTTP/1.1`.
//!
//! The scheme is not normalized: the reference is told the transport, so over TLS both must
//! forward `X-Forwarded-Proto: https` and `Forwarded: …;proto=https`, over cleartext `http`.
//!
//! And of what the client received:
//! - response bodies are compared decoded (N3); response headers are not compared (hop-by-hop
//!   and framing headers legitimately differ), statuses, interim responses, bodies and the
//!   connection's close are;
//! - **N5 error bodies**: a 4xx the balancer makes itself has an empty body from hyper and a
//!   line saying what was wrong from the native path; bodies of 4xx responses are not
//!   compared (no case has the node answer a 4xx).

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

const HOST: &str = "app.test";
/// Why the Host 400s differ from hyper's only in the close.
const HOST_400_CLOSE: &str = "both answer 400; the native path refuses the head in its codec and \
                              closes the connection, the hyper path answers the 400 from the \
                              service and keeps it open";
/// Bound of one run (one case on one side): a hang fails the case instead of the binary.
const RUN_DEADLINE: Duration = Duration::from_secs(12);
/// After the last expected response, how long the client waits to see whether the balancer
/// closes the connection.
const CLOSE_PROBE: Duration = Duration::from_millis(500);
/// Cases run at once (each with its own balancers and nodes), unless `--test-threads` says.
const PARALLEL: usize = 8;
/// After a run, how long a request that must not reach the node gets to show up there.
const ABSENCE_WINDOW: Duration = Duration::from_millis(20);

const KIB64: usize = 64 * 1024;
const MIB10: usize = 10 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The case table.

/// What the client does, in order.
#[derive(Clone)]
enum Step {
    Send(Vec<u8>),
    /// Waits (up to 1 s) until a response head, interim or final, arrived: the client side of
    /// `Expect: 100-continue`.
    AwaitResponse,
}

/// One scripted answer of the node: bytes, then close the connection or keep it.
#[derive(Clone)]
struct Reply {
    bytes: Vec<u8>,
    close: bool,
}

/// The balancer's own expectation.
#[derive(Clone, Copy)]
enum Want {
    /// Every final response is 2xx and the node received this many complete requests.
    Ok { forwarded: usize },
    /// The balancer answers this status and the node receives nothing.
    Reject(u16),
    /// A check of its own.
    Check(fn(&Run) -> Result<(), String>),
}

#[derive(Clone, Copy)]
enum Diff {
    /// The reference must behave the same (after the normalizations).
    Same,
    /// The balancer is required (by the RFC, or by its own rules such as Host) to be stricter
    /// than hyper, or to differ from it, here; the text says why and what hyper does.
    Stricter(&'static str),
    /// An observed divergence that is not a bug of the balancer; the text says what differs.
    /// Only the balancer's expectation is asserted.
    Known(&'static str),
}

#[derive(Clone)]
struct Case {
    name: &'static str,
    steps: Vec<Step>,
    /// The node answers its n-th request with `replies[n]` (the last one repeats).
    replies: Vec<Reply>,
    /// Final responses the client waits for.
    responses: usize,
    /// The first `head` requests are HEAD: their responses have no body.
    head: usize,
    want: Want,
    diff: Diff,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        steps: vec![Step::Send(bytes.into())],
        replies: vec![reply(ok_response(b"ok"))],
        responses: 1,
        head: 0,
        want: Want::Ok { forwarded: 1 },
        diff: Diff::Same,
    }
}

impl Case {
    fn want(mut self, w: Want) -> Case {
        self.want = w;
        self
    }
    fn reject(self, status: u16) -> Case {
        self.want(Want::Reject(status))
    }
    fn stricter(mut self, why: &'static str) -> Case {
        self.diff = Diff::Stricter(why);
        self
    }
    fn replies(mut self, r: Vec<Reply>) -> Case {
        self.replies = r;
        self
    }
    fn reply(self, bytes: impl Into<Vec<u8>>) -> Case {
        self.replies(vec![reply(bytes)])
    }
    fn responses(mut self, n: usize) -> Case {
        self.responses = n;
        self
    }
    fn head(mut self, n: usize) -> Case {
        self.head = n;
        self
    }
    fn known(mut self, what: &'static str) -> Case {
        self.diff = Diff::Known(what);
        self
    }
    fn steps(mut self, s: Vec<Step>) -> Case {
        self.steps = s;
        self
    }
}

fn reply(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        bytes: bytes.into(),
        close: false,
    }
}

fn reply_close(bytes: impl Into<Vec<u8>>) -> Reply {
    Reply {
        bytes: bytes.into(),
        close: true,
    }
}

fn ok_response(body: &[u8]) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

/// `POST /` with the given header lines (each ending in CRLF) and raw body bytes.
fn post(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("POST /up HTTP/1.1\r\nHost: {HOST}\r\n{headers}\r\n").into_bytes();
    r.extend_from_slice(body);
    r
}

fn get(headers: &str) -> Vec<u8> {
    format!("GET /x?q=1 HTTP/1.1\r\nHost: {HOST}\r\n{headers}\r\n").into_bytes()
}

/// A deterministic body of `n` bytes (not all one byte, so a shifted copy is caught).
fn payload(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"0123456789abcdefghijklmnopqrstuv"[(i * 7 + i / 31) % 32])
        .collect()
}

fn with_length(n: usize) -> Vec<u8> {
    post(&format!("Content-Length: {n}\r\n"), &payload(n))
}

/// A chunked upload of `n` bytes in chunks of `size`, with a last chunk and no trailers.
fn chunked_upload(n: usize, size: usize) -> Vec<u8> {
    let body = payload(n);
    let mut b = Vec::new();
    for c in body.chunks(size) {
        b.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        b.extend_from_slice(c);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"0\r\n\r\n");
    post("Transfer-Encoding: chunked\r\n", &b)
}

fn chunked_response(n: usize) -> Vec<u8> {
    let body = payload(n);
    let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for c in body.chunks(4000) {
        r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        r.extend_from_slice(c);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

/// The node received exactly one request with this decoded body.
fn forwarded_body(run: &Run, n: usize) -> Result<(), String> {
    ok_statuses(run)?;
    match run.forwarded.as_slice() {
        [r] if r.complete && r.body == payload(n) => Ok(()),
        [r] => Err(format!(
            "node got a body of {} bytes (complete: {}), want {n}",
            r.body.len(),
            r.complete
        )),
        rs => Err(format!("node got {} requests, want 1", rs.len())),
    }
}

fn ok_statuses(run: &Run) -> Result<(), String> {
    if run.responses.is_empty() || run.responses.iter().any(|r| r.status / 100 != 2) {
        return Err(format!("statuses {:?}, want 2xx", run.statuses()));
    }
    Ok(())
}

fn header<'a>(r: &'a Received, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn cases() -> Vec<Case> {
    const TE_CL: &str = "RFC 9112 §6.1: Transfer-Encoding with Content-Length in a request is \
        a smuggling shape; the native path refuses it where hyper drops the Content-Length";
    vec![
        // --- smuggling shapes -----------------------------------------------------------------
        case(
            "CL.TE: Content-Length then Transfer-Encoding: chunked",
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
            ),
        )
        .reject(400)
        .stricter(TE_CL),
        case(
            "TE.CL: Transfer-Encoding: chunked then Content-Length",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                &te_cl_body(),
            ),
        )
        .reject(400)
        .stricter(TE_CL),
        case(
            "Transfer-Encoding: xchunked",
            post("Transfer-Encoding: xchunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
        )
        .reject(400),
        case(
            "Transfer-Encoding: chunked, identity",
            post("Transfer-Encoding: chunked, identity\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
        )
        .reject(400),
        case(
            "Transfer-Encoding with a leading space value",
            post("Transfer-Encoding:  chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
        )
        .want(Want::Check(chunked_abc)),
        case(
            "Transfer-Encoding with a tab before the value",
            post("Transfer-Encoding:\tchunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
        )
        .want(Want::Check(chunked_abc)),
        case(
            "Transfer-Encoding line starting with a space (obs-fold of the previous line)",
            post("X-A: 1\r\n Transfer-Encoding: chunked\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
        )
        .reject(400),
        case(
            "Transfer-Encoding line starting with a tab, first after the request line",
            b"POST /up HTTP/1.1\r\n\tTransfer-Encoding: chunked\r\nHost: app.test\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
        )
        .reject(400),
        case(
            "Transfer-Encoding: CHUNKED (upper case)",
            post("Transfer-Encoding: CHUNKED\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
        )
        .want(Want::Check(chunked_abc)),
        case(
            "two Transfer-Encoding lines, chunked twice",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                b"3\r\nabc\r\n0\r\n\r\n",
            ),
        )
        .reject(400)
        .stricter(
            "RFC 9112 §7: chunked is applied once; a repeated chunked is refused. hyper accepts \
             it and forwards one chunked body",
        ),
        case(
            "duplicate equal Content-Length lines",
            post("Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
        )
        .want(Want::Check(|r| {
            ok_statuses(r)?;
            expect_one(r, |f| f.body == b"abc")
        })),
        case(
            "differing Content-Length lines",
            post("Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"),
        )
        .reject(400),
        case(
            "Content-Length list 3, 3 in one line",
            post("Content-Length: 3, 3\r\n", b"abc"),
        )
        .reject(400),
        case("Content-Length: +3", post("Content-Length: +3\r\n", b"abc")).reject(400),
        case("Content-Length: -3", post("Content-Length: -3\r\n", b"abc")).reject(400),
        case(
            "Content-Length with leading zeros",
            post("Content-Length: 003\r\n", b"abc"),
        )
        .want(Want::Check(|r| {
            ok_statuses(r)?;
            expect_one(r, |f| f.body == b"abc" && header(f, "content-length") == ["3"])
        })),
        case(
            "Content-Length with whitespace around the value",
            post("Content-Length:   3  \r\n", b"abc"),
        )
        .want(Want::Check(|r| {
            ok_statuses(r)?;
            expect_one(r, |f| f.body == b"abc")
        })),
        case(
            "Content-Length with a space inside the number",
            post("Content-Length: 1 2\r\n", b"abcdefghijkl"),
        )
        .reject(400),
        case(
            "chunk size overflowing 64 bits",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"10000000000000003\r\nabc\r\n0\r\n\r\n",
            ),
        )
        .want(Want::Check(body_refused)),
        case(
            "chunk extensions",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"3;name=value;flag\r\nabc\r\n0;last\r\n\r\n",
            ),
        )
        .want(Want::Check(chunked_abc)),
        case(
            "chunked body with trailers",
            post(
                "Transfer-Encoding: chunked\r\n",
                b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n",
            ),
        )
        .want(Want::Check(chunked_abc)),
        case(
            "bare LF line endings",
            format!("GET / HTTP/1.1\nHost: {HOST}\n\n"),
        )
        .reject(400)
        .stricter(
            "RFC 9112 §2.2 allows a recipient to accept a bare LF; the native path refuses \
             every bare LF, hyper (httparse) accepts them in the head",
        ),
        case("obs-fold in a header value", get("X-A: one\r\n two\r\n")).reject(400),
        case("whitespace before the colon", get("X-A : 1\r\n")).reject(400),
        case("header line without a colon", get("X-A\r\n")).reject(400),
        case("NUL in a header value", get("X-A: a\0b\r\n")).reject(400),
        case("bare CR in a header value", get("X-A: a\rb\r\n")).reject(400),
        // RFC 9112 §2.2: refused as soon as the byte after the CR shows it, not at the end of
        // the head (that never comes) or at `header_read_timeout`.
        case(
            "bare CR in a head that never ends",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-A: a\rb"),
        )
        .reject(400)
        .stricter(
            "hyper parses a head only once it looks complete, so it waits for the line feeds \
             that never come; the native path refuses the bare CR as soon as it is read",
        ),
        case(
            "bare LF inside a header value",
            get("X-A: a\nX-B: b\r\n"),
        )
        .reject(400)
        .stricter(
            "a bare LF ends a line for httparse, so hyper reads two header lines here; the \
             native path refuses bare LF (RFC 9112 §2.2)",
        ),
        // --- Host ----------------------------------------------------------------------------
        // Both paths answer 400 (RFC 9112 §3.2).
        case(
            "two Host headers",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nHost: evil.test\r\n\r\n"),
        )
        .reject(400)
        .known(HOST_400_CLOSE),
        case("missing Host on HTTP/1.1", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")
            .reject(400)
            .known(HOST_400_CLOSE),
        case(
            "absolute-form target replaces Host",
            "GET http://other.test/abs?x=1 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        )
        .want(Want::Check(|r| {
            ok_statuses(r)?;
            expect_one(r, |f| {
                f.target == "/abs?x=1" && header(f, "host") == ["other.test"]
            })
        })),
        case("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n").want(Want::Check(|r| {
            ok_statuses(r)?;
            if !r.closed {
                return Err("an HTTP/1.0 request without keep-alive left the connection open".into());
            }
            expect_one(r, |f| f.version == 1 && header(f, "host") == [""])
        })),
        // --- message shapes ------------------------------------------------------------------
        case("Expect: 100-continue", Vec::new())
            .steps(vec![
                Step::Send(
                    format!(
                        "POST /up HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
                    )
                    .into_bytes(),
                ),
                Step::AwaitResponse,
                Step::Send(b"abc".to_vec()),
            ])
            .want(Want::Check(|r| {
                if r.interim != [100] {
                    return Err(format!("interim responses {:?}, want [100]", r.interim));
                }
                ok_statuses(r)?;
                expect_one(r, |f| f.body == b"abc" && header(f, "expect").is_empty())
            })),
        case("HEAD: the response has no body", format!("HEAD / HTTP/1.1\r\nHost: {HOST}\r\n\r\n"))
            .head(1)
            .reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec()),
        case("HEAD then GET on one connection", {
            let mut b = format!("HEAD / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").into_bytes();
            b.extend_from_slice(&get(""));
            b
        })
        .head(1)
        .replies(vec![
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()),
            reply(ok_response(b"after")),
        ])
        .responses(2)
        .want(Want::Check(|r| {
            ok_statuses(r)?;
            if r.responses.len() != 2 || r.responses[1].body != b"after" {
                return Err(format!("responses {:?}", r.statuses()));
            }
            Ok(())
        })),
        case("204 response has no body", get(""))
            .reply(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
        case("304 response has no body", get("If-None-Match: \"a\"\r\n"))
            .reply(b"HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n".to_vec())
            .want(Want::Check(|r| {
                if r.statuses() != [304] || !r.responses[0].body.is_empty() {
                    return Err(format!("statuses {:?}", r.statuses()));
                }
                expect_one(r, |_| true)
            })),
        case("1xx: 103 Early Hints before the response", get(""))
            .reply({
                let mut b = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n".to_vec();
                b.extend_from_slice(&ok_response(b"final"));
                b
            })
            .want(Want::Check(|r| {
                ok_statuses(r)?;
                if r.interim != [103] || r.responses[0].body != b"final" {
                    return Err(format!("interim {:?}, or the final body did not arrive", r.interim));
                }
                expect_one(r, |_| true)
            }))
            .stricter("RFC 9110 §15.2: a proxy MUST forward 1xx responses; hyper drops the node's 103"),
        case("node closes mid-body", get(""))
            .replies(vec![reply_close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..".to_vec())])
            .want(Want::Check(|r| {
                match r.responses.as_slice() {
                    [resp] if !resp.complete && r.closed => Ok(()),
                    _ => Err(format!(
                        "want a truncated response and a closed connection, got {:?} closed {}",
                        r.statuses(),
                        r.closed
                    )),
                }
            })),
        case("node closes mid-chunked-body", get(""))
            .replies(vec![reply_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec())])
            .want(Want::Check(|r| {
                match r.responses.as_slice() {
                    [resp] if !resp.complete && r.closed => Ok(()),
                    _ => Err(format!(
                        "want a truncated response and a closed connection, got {:?} closed {}",
                        r.statuses(),
                        r.closed
                    )),
                }
            })),
        case("pipelined requests", {
            let mut b = get("X-N: 1\r\n");
            b.extend_from_slice(&with_length(5));
            b.extend_from_slice(&get("X-N: 3\r\n"));
            b
        })
        .replies(vec![reply(ok_response(b"one")), reply(ok_response(b"two")), reply(ok_response(b"three"))])
        .responses(3)
        .want(Want::Check(|r| {
            ok_statuses(r)?;
            let bodies: Vec<&[u8]> = r.responses.iter().map(|x| x.body.as_slice()).collect();
            if bodies != [&b"one"[..], b"two", b"three"] || r.forwarded.len() != 3 {
                return Err(format!("bodies {bodies:?}, forwarded {}", r.forwarded.len()));
            }
            Ok(())
        })),
        case("client sends Connection: close", get("Connection: close\r\n")).want(Want::Check(
            |r| {
                ok_statuses(r)?;
                if !r.closed {
                    return Err("the connection stayed open after Connection: close".into());
                }
                expect_one(r, |f| header(f, "connection").is_empty())
            },
        )),
        case("node sends Connection: close", {
            let mut b = get("");
            b.extend_from_slice(&get("X-N: 2\r\n"));
            b
        })
        .replies(vec![reply_close(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        )])
        .responses(2)
        .want(Want::Ok { forwarded: 2 }),
        case("HTTP/1.0 keep-alive", {
            let mut b = format!("GET /a HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n")
                .into_bytes();
            b.extend_from_slice(
                format!("GET /b HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n")
                    .as_bytes(),
            );
            b
        })
        .responses(2)
        .want(Want::Check(|r| {
            ok_statuses(r)?;
            if r.forwarded.iter().any(|f| f.version != 1) {
                return Err("the node was not sent HTTP/1.1".into());
            }
            if r.responses.len() != 2 || r.closed {
                return Err(format!(
                    "want two responses on an open connection, got {:?} closed {}",
                    r.statuses(),
                    r.closed
                ));
            }
            Ok(())
        })),
        case(
            "HTTP/1.0 keep-alive, node answers close-delimited",
            format!("GET / HTTP/1.0\r\nHost: {HOST}\r\nConnection: keep-alive\r\n\r\n"),
        )
        .replies(vec![reply_close(b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec())])
        .want(Want::Check(|r| {
            ok_statuses(r)?;
            if r.responses[0].body != b"until close" || !r.closed {
                return Err(format!("body {:?} closed {}", r.responses[0].body, r.closed));
            }
            Ok(())
        })),
        // --- bodies --------------------------------------------------------------------------
        case("request body 0 B", with_length(0)).want(Want::Check(|r| forwarded_body(r, 0))),
        case("request body 1 B", with_length(1)).want(Want::Check(|r| forwarded_body(r, 1))),
        case("request body 64 KiB", with_length(KIB64))
            .want(Want::Check(|r| forwarded_body(r, KIB64))),
        case("request body 10 MiB", with_length(MIB10))
            .want(Want::Check(|r| forwarded_body(r, MIB10))),
        case("chunked upload 1 B", chunked_upload(1, 1)).want(Want::Check(|r| forwarded_body(r, 1))),
        case("chunked upload 64 KiB in 1000 B chunks", chunked_upload(KIB64, 1000))
            .want(Want::Check(|r| forwarded_body(r, KIB64))),
        case("chunked upload 10 MiB in 64 KiB chunks", chunked_upload(MIB10, KIB64))
            .want(Want::Check(|r| forwarded_body(r, MIB10))),
        case("chunked upload of nothing", post("Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"))
            .want(Want::Check(|r| forwarded_body(r, 0))),
        case("response body 0 B", get("")).reply(ok_response(b"")),
        case("response body 1 B", get("")).reply(ok_response(b"x")),
        case("response body 64 KiB", get("")).reply(ok_response(&payload(KIB64))).want(
            Want::Check(|r| response_body(r, KIB64)),
        ),
        case("response body 10 MiB", get("")).reply(ok_response(&payload(MIB10))).want(
            Want::Check(|r| response_body(r, MIB10)),
        ),
        case("chunked response body 64 KiB", get("")).reply(chunked_response(KIB64)).want(
            Want::Check(|r| response_body(r, KIB64)),
        ),
        // Longer than one read: every piece after the first is re-chunked too.
        case("close-delimited response body of 1 MiB", get(""))
            .replies(vec![reply_close(
                [b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), payload(1 << 20)].concat(),
            )])
            .want(Want::Check(|r| response_body(r, 1 << 20))),
        case("close-delimited response body", get(""))
            .replies(vec![reply_close(b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec())])
            .want(Want::Check(|r| {
                ok_statuses(r)?;
                if r.responses[0].body != b"until close" {
                    return Err(format!("body {:?}", String::from_utf8_lossy(&r.responses[0].body)));
                }
                Ok(())
            })),
    ]
}

/// A TE.CL body: one chunk that holds a whole second request (what a front end that reads
/// `Content-Length: 4` would see as the next request), then the last chunk.
fn te_cl_body() -> Vec<u8> {
    let inner = b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n";
    let mut b = format!("{:x}\r\n", inner.len()).into_bytes();
    b.extend_from_slice(inner);
    b.extend_from_slice(b"\r\n0\r\n\r\n");
    b
}

fn expect_one(run: &Run, f: impl Fn(&Received) -> bool) -> Result<(), String> {
    match run.forwarded.as_slice() {
        [r] if r.complete && f(r) => Ok(()),
        [r] => Err(format!(
            "the node received an unexpected request: {}",
            r.describe()
        )),
        rs => Err(format!("the node received {} requests, want 1", rs.len())),
    }
}

/// A 2xx, and the node got `abc` as a chunked body.
fn chunked_abc(run: &Run) -> Result<(), String> {
    ok_statuses(run)?;
    expect_one(run, |f| f.framing == Framing::Chunked && f.body == b"abc")
}

/// The body was refused: no 2xx reached the client and the node got no complete request.
fn body_refused(run: &Run) -> Result<(), String> {
    if run.responses.iter().any(|r| r.status / 100 == 2) {
        return Err(format!("statuses {:?}, want no 2xx", run.statuses()));
    }
    if run.forwarded.iter().any(|f| f.complete) {
        return Err("the node received a complete request".into());
    }
    Ok(())
}

fn response_body(run: &Run, n: usize) -> Result<(), String> {
    ok_statuses(run)?;
    let got = &run.responses[0];
    if !got.complete || got.body != payload(n) {
        return Err(format!(
            "response body of {} bytes (complete {}), want {n}",
            got.body.len(),
            got.complete
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The fake node.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// One request as the node received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    target: String,
    version: u8,
    /// Header lines as received (name spelling kept).
    headers: Vec<(String, String)>,
    framing: Framing,
    /// Decoded body.
    body: Vec<u8>,
    /// Trailer fields of a chunked body, as received.
    trailers: Vec<u8>,
    /// The whole request arrived (head and body).
    complete: bool,
}

impl Received {
    fn describe(&self) -> String {
        format!(
            "{} {} HTTP/1.{} {:?} {:?} body {} B{}",
            self.method,
            self.target,
            self.version,
            self.headers,
            self.framing,
            self.body.len(),
            if self.complete { "" } else { " (incomplete)" }
        )
    }
}

/// What the node received, shared by its connections.
#[derive(Default)]
struct NodeLog {
    received: Mutex<Vec<Received>>,
    /// Connections holding bytes of a request that is not in `received` yet.
    mid_request: AtomicUsize,
}

type Log = Arc<NodeLog>;

impl NodeLog {
    fn push(&self, r: Received) -> usize {
        let mut l = self.received.lock().unwrap();
        l.push(r);
        l.len() - 1
    }
}

/// One connection's share of [`NodeLog::mid_request`]: set while it holds part of a request,
/// cleared once that request is logged or the connection ends (after what it logged).
struct MidRequest {
    log: Log,
    on: bool,
}

impl MidRequest {
    fn set(&mut self, on: bool) {
        if on != self.on {
            if on {
                self.log.mid_request.fetch_add(1, Ordering::SeqCst);
            } else {
                self.log.mid_request.fetch_sub(1, Ordering::SeqCst);
            }
            self.on = on;
        }
    }
}

impl Drop for MidRequest {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// Starts a node on 127.0.0.1:0 that answers `replies` in order; returns its address and log.
async fn start_node(replies: Vec<Reply>) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let (log2, replies) = (log.clone(), Arc::new(replies));
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(node_conn(s, log2.clone(), replies.clone()));
        }
    });
    (addr, log)
}

async fn node_conn(mut s: TcpStream, log: Log, replies: Arc<Vec<Reply>>) {
    let mut buf = Vec::new();
    let mut mid = MidRequest {
        log: log.clone(),
        on: false,
    };
    loop {
        // The head.
        let (mut rec, head_len) = loop {
            if let Some(parsed) = parse_request_head(&buf) {
                break parsed;
            }
            if read_more(&mut s, &mut buf).await == 0 {
                if !buf.is_empty() {
                    log.push(partial_head(&buf));
                }
                return;
            }
            mid.set(true);
        };
        buf.drain(..head_len);
        // The body.
        loop {
            match decode_body(&buf, rec.framing, false) {
                Ok(Some((used, body, trailers))) => {
                    rec.body = body;
                    rec.trailers = trailers;
                    rec.complete = true;
                    buf.drain(..used);
                    break;
                }
                Ok(None) => {}
                Err(_) => {
                    log.push(rec);
                    return;
                }
            }
            if read_more(&mut s, &mut buf).await == 0 {
                if let Ok(Some((_, body, _))) = decode_body(&buf, rec.framing, true) {
                    rec.body = body;
                }
                log.push(rec);
                return;
            }
        }
        let n = log.push(rec);
        mid.set(!buf.is_empty());
        let r = &replies[n.min(replies.len() - 1)];
        if s.write_all(&r.bytes).await.is_err() {
            return;
        }
        if r.close {
            let _ = s.shutdown().await;
            return;
        }
    }
}

async fn read_more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> usize {
    buf.reserve(64 * 1024);
    s.read_buf(buf).await.unwrap_or(0)
}

fn partial_head(buf: &[u8]) -> Received {
    Received {
        method: String::new(),
        target: String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned(),
        version: 1,
        headers: Vec::new(),
        framing: Framing::None,
        body: Vec::new(),
        trailers: Vec::new(),
        complete: false,
    }
}

/// A complete request head in `buf`: the request and the head's length.
fn parse_request_head(buf: &[u8]) -> Option<(Received, usize)> {
    let mut hs = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut hs);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        // Unparsable bytes from a proxy: record them, framing unknown.
        Err(_) => return Some((partial_head(buf), buf.len())),
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let framing = framing_of(&headers);
    Some((
        Received {
            method: req.method.unwrap_or("").to_string(),
            target: req.path.unwrap_or("").to_string(),
            version: req.version.unwrap_or(1),
            headers,
            framing,
            body: Vec::new(),
            trailers: Vec::new(),
            complete: false,
        },
        n,
    ))
}

fn framing_of(headers: &[(String, String)]) -> Framing {
    let te = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if te {
        return Framing::Chunked;
    }
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .map_or(Framing::None, Framing::Length)
}

/// Decodes a body from the start of `buf`: `Some((used, payload, trailers))` once complete
/// (with `eof`, whatever arrived of a length or close-delimited body).
#[allow(clippy::type_complexity)]
fn decode_body(
    buf: &[u8],
    framing: Framing,
    eof: bool,
) -> Result<Option<(usize, Vec<u8>, Vec<u8>)>, String> {
    match framing {
        Framing::None => Ok(Some((0, Vec::new(), Vec::new()))),
        Framing::Length(n) => {
            let n = n as usize;
            if buf.len() >= n {
                Ok(Some((n, buf[..n].to_vec(), Vec::new())))
            } else if eof {
                Ok(Some((buf.len(), buf.to_vec(), Vec::new())))
            } else {
                Ok(None)
            }
        }
        Framing::Chunked => decode_chunked(buf),
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

#[allow(clippy::type_complexity)]
fn decode_chunked(buf: &[u8]) -> Result<Option<(usize, Vec<u8>, Vec<u8>)>, String> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let Some(eol) = find_crlf(buf, pos) else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..eol]).map_err(|e| e.to_string())?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|e| format!("{line:?}: {e}"))?;
        pos = eol + 2;
        if size == 0 {
            let start = pos;
            loop {
                let Some(eol) = find_crlf(buf, pos) else {
                    return Ok(None);
                };
                if eol == pos {
                    return Ok(Some((eol + 2, body, buf[start..pos].to_vec())));
                }
                pos = eol + 2;
            }
        }
        let end = pos + size as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..end]);
        if &buf[end..end + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos = end + 2;
    }
}

// ---------------------------------------------------------------------------------------------
// The client and the runner.

/// What one side did with one case.
#[derive(Debug, Default)]
struct Run {
    /// Interim (1xx) statuses the client saw.
    interim: Vec<u16>,
    responses: Vec<Response>,
    /// The balancer closed the connection.
    closed: bool,
    /// The run did not finish in time.
    timed_out: bool,
    forwarded: Vec<Received>,
}

impl Run {
    /// One line per run, for `CONFORMANCE_SHOW=1`.
    fn summary(&self) -> String {
        let fwd: Vec<String> = self
            .forwarded
            .iter()
            .map(|f| normalize(f).to_string())
            .collect();
        format!(
            "interim {:?} statuses {:?} closed {} timed out {} forwarded [{}]",
            self.interim,
            self.statuses(),
            self.closed,
            self.timed_out,
            fwd.join(" || ")
        )
    }

    fn statuses(&self) -> Vec<u16> {
        self.responses.iter().map(|r| r.status).collect()
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    body: Vec<u8>,
    complete: bool,
}

// ---------------------------------------------------------------------------------------------
// The transport, the reference, and one run.

/// How the client reaches the balancer's listener: the fixture parameter of every case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Cleartext,
    /// A TLS listener with a self-signed certificate, ALPN `http/1.1`.
    Tls,
}

impl Transport {
    const ALL: [Transport; 2] = [Transport::Cleartext, Transport::Tls];

    /// The prefix of the case's test name.
    fn name(self) -> &'static str {
        match self {
            Transport::Cleartext => "cleartext",
            Transport::Tls => "tls",
        }
    }

    fn is_tls(self) -> bool {
        self == Transport::Tls
    }

    /// The `tls:` line of a listener on this transport (nothing for cleartext).
    fn listener_yaml(self) -> String {
        match self {
            Transport::Cleartext => String::new(),
            Transport::Tls => {
                let d = &tls().dir;
                format!(
                    "\n    tls: {{ cert: \"{}\", key: \"{}\" }}",
                    d.join("cert.pem").display(),
                    d.join("key.pem").display()
                )
            }
        }
    }

    /// A client connection to a listener on this transport.
    async fn connect(self, addr: SocketAddr) -> Box<dyn Io> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        match self {
            Transport::Cleartext => Box::new(tcp),
            Transport::Tls => {
                let name = ServerName::try_from("localhost").unwrap();
                Box::new(tls().connector.connect(name, tcp).await.unwrap())
            }
        }
    }
}

/// Who serves the client in one run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    /// The balancer's own listener on the transport.
    Listener(Transport),
    /// The reference: hyper serving the library's `ProxyService` on a cleartext socket, the
    /// service told the client came over the transport.
    Hyper(Transport),
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

struct Tls {
    /// Where the certificate and key files are: a directory of this process under cargo's
    /// scratch directory, removed by `main` when the cases are done (a static is never
    /// dropped, so a `TempDir` here would be left behind).
    dir: std::path::PathBuf,
    connector: TlsConnector,
}

static TLS: OnceLock<Tls> = OnceLock::new();

fn tls() -> &'static Tls {
    TLS.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("conformance-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
        Tls {
            dir,
            connector: common::tls_connector(&cert, b"http/1.1"),
        }
    })
}

fn config(transport: Transport, node: SocketAddr) -> String {
    format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"{}\npools:\n  - name: app\n    nodes:\n      - {{ route: jvm1, address: \"{node}\" }}\n",
        transport.listener_yaml()
    )
}

/// hyper serving `ProxyService` of `lb`'s balancer on 127.0.0.1:0, configured as the
/// listener serves TLS connections (HTTP/1.1 header read timeout and buffer, the listener's
/// settings), with keep-alive pools of its own. Stops when the returned task is aborted.
async fn start_reference(
    lb: &stickyroute::control::Running,
    yaml: &str,
    tls: bool,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use stickyroute::proxy::client_body::ClientBody;
    use stickyroute::proxy::service::ProxyService;
    use stickyroute::proxy::upstream::UpstreamPools;

    let cfg = stickyroute::config::Config::from_yaml(yaml, "test.yaml").unwrap();
    let listener_cfg = cfg.listeners[0].clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(listener_cfg.header_read_timeout)
        .max_buf_size(listener_cfg.max_header_bytes);
    let builder = Arc::new(builder);
    let (balancer, conns) = (lb.balancer.clone(), Arc::new(UpstreamPools::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conn_tasks = tokio::task::JoinSet::new();
        while let Ok((stream, client)) = listener.accept().await {
            let service = ProxyService::new(balancer.clone(), conns.clone(), client, tls)
                .with_listener(&listener_cfg);
            let builder = builder.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let service = service.clone();
                async move {
                    let (mut parts, body) = req.map(ClientBody::other).into_parts();
                    Ok::<_, std::convert::Infallible>(service.call(&mut parts, body).await)
                }
            });
            conn_tasks.spawn(async move {
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// Runs case `c` against `server`, with a node and a balancer of its own.
async fn run_case(c: &Case, server: Server) -> Run {
    let (node, log) = start_node(c.replies.clone()).await;
    let (listen, transport) = match server {
        Server::Listener(t) => (t, t),
        // The reference's balancer state only: its listener is not used.
        Server::Hyper(t) => (Transport::Cleartext, t),
    };
    let yaml = config(listen, node);
    let lb = common::balancer(&yaml).await;
    let reference = match server {
        Server::Listener(_) => None,
        Server::Hyper(t) => Some(start_reference(&lb, &yaml, t.is_tls()).await),
    };
    let stream = match &reference {
        None => transport.connect(lb.addr()).await,
        Some((addr, _)) => Box::new(TcpStream::connect(addr).await.unwrap()),
    };
    let mut run = match tokio::time::timeout(RUN_DEADLINE, drive(c, stream)).await {
        Ok(run) => run,
        Err(_) => Run {
            timed_out: true,
            ..Run::default()
        },
    };
    // A request that must not reach the node cannot be awaited: it gets this window to
    // arrive. What did arrive is awaited until the node has logged it.
    tokio::time::sleep(ABSENCE_WINDOW).await;
    if !run.timed_out {
        common::wait::until("the node to log every request it has bytes of", || {
            let log = log.clone();
            async move { log.mid_request.load(Ordering::SeqCst) == 0 }
        })
        .await;
    }
    run.forwarded = log.received.lock().unwrap().clone();
    if let Some((_, task)) = reference {
        task.abort();
    }
    lb.stop().await;
    run
}

async fn drive(c: &Case, stream: Box<dyn Io>) -> Run {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (seen_tx, mut seen_rx) = watch::channel(0usize);
    let steps = c.steps.clone();
    let writer = tokio::spawn(async move {
        for s in steps {
            match s {
                Step::Send(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Step::AwaitResponse => {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), seen_rx.wait_for(|n| *n > 0))
                            .await;
                }
            }
        }
        let _ = wr.flush().await;
        wr // kept open: no half-close
    });
    let mut run = Run::default();
    let mut buf = Vec::new();
    let mut eof = false;
    loop {
        loop {
            let head = run.responses.len() < c.head;
            match take_response(&buf, head, eof) {
                Parse::Need => break,
                Parse::Interim(status, n) => {
                    run.interim.push(status);
                    buf.drain(..n);
                    seen_tx.send_modify(|x| *x += 1);
                }
                Parse::Final(resp, n) => {
                    run.responses.push(resp);
                    buf.drain(..n);
                    seen_tx.send_modify(|x| *x += 1);
                }
                Parse::Garbage => {
                    run.responses.push(Response {
                        status: 0,
                        body: std::mem::take(&mut buf),
                        complete: false,
                    });
                    break;
                }
            }
        }
        if eof {
            run.closed = true;
            break;
        }
        if run.responses.len() >= c.responses {
            // Does the balancer close the connection after the last response?
            let mut probe = [0u8; 1];
            run.closed = matches!(
                tokio::time::timeout(CLOSE_PROBE, rd.read(&mut probe)).await,
                Ok(Ok(0)) | Ok(Err(_))
            );
            break;
        }
        if read_more(&mut rd, &mut buf).await == 0 {
            eof = true;
        }
    }
    drop(writer.await);
    run
}

enum Parse {
    Need,
    Interim(u16, usize),
    Final(Response, usize),
    Garbage,
}

/// The next response at the start of `buf`.
fn take_response(buf: &[u8], head_request: bool, eof: bool) -> Parse {
    if buf.is_empty() {
        return Parse::Need;
    }
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hs);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if eof => return Parse::Garbage,
        Ok(httparse::Status::Partial) => return Parse::Need,
        Err(_) => return Parse::Garbage,
    };
    let status = resp.code.unwrap_or(0);
    if (100..200).contains(&status) && status != 101 {
        return Parse::Interim(status, n);
    }
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let no_body = head_request || status == 204 || status == 304;
    let framing = if no_body {
        Framing::None
    } else {
        match framing_of(&headers) {
            Framing::None
                if !headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-length")) =>
            {
                // Close-delimited.
                if !eof {
                    return Parse::Need;
                }
                return Parse::Final(
                    Response {
                        status,
                        body: buf[n..].to_vec(),
                        complete: true,
                    },
                    buf.len(),
                );
            }
            f => f,
        }
    };
    match decode_body(&buf[n..], framing, false) {
        Ok(Some((used, body, _))) => Parse::Final(
            Response {
                status,
                body,
                complete: true,
            },
            n + used,
        ),
        Ok(None) if eof => {
            let body = match decode_body(&buf[n..], framing, true) {
                Ok(Some((_, b, _))) => b,
                _ => buf[n..].to_vec(),
            };
            Parse::Final(
                Response {
                    status,
                    body,
                    complete: false,
                },
                buf.len(),
            )
        }
        Ok(None) => Parse::Need,
        Err(_) => Parse::Garbage,
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison.

/// A request at the node after the normalizations N1–N4 (see the module docs).
#[derive(Debug, PartialEq, Eq)]
struct Normalized {
    line: String,
    headers: Vec<(String, String)>,
    framing: Framing,
    body: (usize, u64),
    trailers: Vec<String>,
    complete: bool,
}

impl std::fmt::Display for Normalized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} |", self.line)?;
        for (n, v) in &self.headers {
            write!(f, " {n}: {v:?};")?;
        }
        write!(
            f,
            " | {:?}, body {} B #{:x}, trailers {:?}{}",
            self.framing,
            self.body.0,
            self.body.1 & 0xffff,
            self.trailers,
            if self.complete { "" } else { ", INCOMPLETE" }
        )
    }
}

fn digest(b: &[u8]) -> (usize, u64) {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    (b.len(), h.finish())
}

fn normalize(r: &Received) -> Normalized {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone())) // N1
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0)); // N2 (stable: values of one name keep their order)
    let trailers = String::from_utf8_lossy(&r.trailers)
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.to_ascii_lowercase())
        .collect();
    Normalized {
        line: format!("{} {}", r.method, r.target), // N4: without the version
        headers,
        framing: r.framing, // N3: compared as a kind, the payload decoded
        body: digest(&r.body),
        trailers,
        complete: r.complete,
    }
}

fn compare(listener: &Run, hyper: &Run) -> Result<(), String> {
    let mut errs = Vec::new();
    let class = |r: &Run| -> Vec<u16> { r.responses.iter().map(|x| x.status / 100).collect() };
    if class(listener) != class(hyper) {
        errs.push(format!(
            "status: listener {:?}, hyper {:?}",
            listener.statuses(),
            hyper.statuses()
        ));
    }
    if listener.interim != hyper.interim {
        errs.push(format!(
            "interim: listener {:?}, hyper {:?}",
            listener.interim, hyper.interim
        ));
    }
    let bodies = |r: &Run| -> Vec<((usize, u64), bool)> {
        r.responses
            .iter()
            // N5: the balancer's own 4xx bodies differ.
            .map(|x| {
                (
                    digest(if x.status / 100 == 4 { b"" } else { &x.body }),
                    x.complete,
                )
            })
            .collect()
    };
    if bodies(listener) != bodies(hyper) {
        errs.push(format!(
            "response bodies (len, hash, complete): listener {:?}, hyper {:?}",
            bodies(listener),
            bodies(hyper)
        ));
    }
    if listener.closed != hyper.closed {
        errs.push(format!(
            "connection closed: listener {}, hyper {}",
            listener.closed, hyper.closed
        ));
    }
    let (n, h): (Vec<_>, Vec<_>) = (
        listener.forwarded.iter().map(normalize).collect(),
        hyper.forwarded.iter().map(normalize).collect(),
    );
    if n != h {
        let show = |v: &[Normalized]| -> String {
            v.iter().map(|r| format!("\n    {r}")).collect::<String>()
        };
        errs.push(format!(
            "forwarded to the node:\n  listener:{}\n  hyper:{}",
            show(&n),
            show(&h)
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

fn check_want(c: &Case, run: &Run) -> Result<(), String> {
    if run.timed_out {
        return Err("timed out".into());
    }
    match c.want {
        Want::Ok { forwarded } => {
            ok_statuses(run)?;
            if run.responses.len() != c.responses {
                return Err(format!(
                    "{} responses, want {}",
                    run.responses.len(),
                    c.responses
                ));
            }
            let complete = run.forwarded.iter().filter(|f| f.complete).count();
            if complete != forwarded || complete != run.forwarded.len() {
                return Err(format!(
                    "the node received {} requests ({complete} complete), want {forwarded}",
                    run.forwarded.len()
                ));
            }
            Ok(())
        }
        Want::Reject(status) => {
            if run.statuses() != [status] {
                return Err(format!("statuses {:?}, want [{status}]", run.statuses()));
            }
            if !run.forwarded.is_empty() {
                return Err(format!(
                    "the node received {}",
                    run.forwarded
                        .iter()
                        .map(Received::describe)
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            Ok(())
        }
        Want::Check(f) => f(run),
    }
}

/// Runs case `c` on `transport`: against the balancer's listener and against the reference
/// at once; the failures found, if any.
async fn check_case(c: &Case, transport: Transport) -> Result<(), String> {
    let (listener, hyper) = tokio::join!(
        run_case(c, Server::Listener(transport)),
        run_case(c, Server::Hyper(transport))
    );
    if std::env::var_os("CONFORMANCE_SHOW").is_some() {
        eprintln!(
            "--- {} over {}\n  listener: {}\n  hyper:    {}",
            c.name,
            transport.name(),
            listener.summary(),
            hyper.summary()
        );
    }
    let mut errs = Vec::new();
    if let Err(e) = check_want(c, &listener) {
        errs.push(format!("the balancer: {e}"));
    }
    match c.diff {
        Diff::Same => {
            if let Err(e) = compare(&listener, &hyper) {
                errs.push(format!("differs from hyper: {e}"));
            }
        }
        // The reason is only true while hyper still differs: when it agrees, the case is Same.
        Diff::Stricter(why) | Diff::Known(why) => {
            if compare(&listener, &hyper).is_ok() {
                errs.push(format!(
                    "marked as differing from hyper ({why}), but hyper behaves the same: make \
                     it Diff::Same"
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{}", c.name, errs.join("\n")))
    }
}

/// The test name of a case: its description in lower case, words joined by `_` (`+` and a
/// leading `-` spelled out, so that `+3` and `-3` stay apart).
fn test_name(description: &str) -> String {
    let mut name = String::new();
    let mut prev = ' ';
    for ch in description.chars() {
        let word = match ch {
            '+' => Some("plus"),
            '-' if !prev.is_ascii_alphanumeric() => Some("minus"),
            _ => None,
        };
        if let Some(w) = word {
            if !name.is_empty() && !name.ends_with('_') {
                name.push('_');
            }
            name.push_str(w);
            name.push('_');
        } else if ch.is_ascii_alphanumeric() {
            name.push(ch.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('_') {
            name.push('_');
        }
        prev = ch;
    }
    name.trim_end_matches('_').to_string()
}

/// The runtime every case runs on: the test threads block on it, its two workers run the
/// balancers, nodes and clients.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Every case of the table once per transport, as `<transport>::<case>`.
fn trials() -> Vec<Trial> {
    let all: Vec<Arc<Case>> = cases().into_iter().map(Arc::new).collect();
    let mut names = std::collections::HashSet::new();
    for c in &all {
        assert!(
            names.insert(test_name(c.name)),
            "two cases are named {}",
            test_name(c.name)
        );
    }
    Transport::ALL
        .iter()
        .flat_map(|&t| {
            all.iter().map(move |c| {
                let c = c.clone();
                let name = format!("{}::{}", t.name(), test_name(c.name));
                Trial::test(name, move || {
                    runtime().block_on(check_case(&c, t)).map_err(Failed::from)
                })
            })
        })
        .collect()
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // The cases mostly wait on sockets: more at once than there are cores.
    if args.test_threads.is_none() {
        args.test_threads = Some(PARALLEL);
    }
    let conclusion = libtest_mimic::run(&args, trials());
    if let Some(t) = TLS.get() {
        let _ = std::fs::remove_dir_all(&t.dir);
    }
    conclusion.exit_code()
}
