//! Differential tests: the codec against hyper 1.x, the reference.
//!
//! Each case is a raw byte stream a client might send. hyper's HTTP/1 server
//! (`hyper::server::conn::http1` over an in-memory `tokio::io::duplex`) serves it with a
//! service that records every request it sees and reads its body to the end; a tiny driver
//! over our codec does the same. Both give a list of outcomes, one per message: accepted
//! (method, path, query, body bytes) or refused. The table says, per case, whether the two
//! must agree ([`Expect::Same`]) or whether we are deliberately stricter
//! ([`Expect::Stricter`]: hyper accepts, we refuse the last message, the messages before it
//! agree). A stricter row whose hyper side starts refusing, or a same row that diverges,
//! fails: the table is also how we learn what hyper does.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::h1::{
    may_be_complete, parse_request, parse_response, BodyReader, Parsed, RequestHead, ResponseHead,
    Step,
};

/// One message as seen by a server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Accepted and its body read to the end.
    Ok {
        method: Vec<u8>,
        path: Vec<u8>,
        query: Option<Vec<u8>>,
        body: Vec<u8>,
    },
    /// Refused (head or body).
    Refused,
}

/// What the table expects of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Same outcomes from hyper and from us.
    Same,
    /// hyper accepts every message, we refuse the last one; the reason is for the reader.
    Stricter(&'static str),
}

/// Runs `raw` through hyper's HTTP/1 server.
async fn hyper_outcomes(raw: Vec<u8>) -> Vec<Outcome> {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let method = req.method().as_str().as_bytes().to_vec();
            let path = req.uri().path().as_bytes().to_vec();
            let query = req.uri().query().map(|q| q.as_bytes().to_vec());
            let outcome = match req.into_body().collect().await {
                Ok(b) => Outcome::Ok {
                    method,
                    path,
                    query,
                    body: b.to_bytes().to_vec(),
                },
                Err(_) => Outcome::Refused,
            };
            let _ = tx.send(outcome);
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
        }
    });
    let conn = tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(server), svc),
    );
    let (mut rd, mut wr) = tokio::io::split(client);
    let writer = tokio::spawn(async move {
        // The server may close early (after an error); that is part of the outcome.
        let _ = wr.write_all(&raw).await;
        let _ = wr.shutdown().await;
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut answer)).await;
    let conn_result = tokio::time::timeout(Duration::from_secs(5), conn).await;
    let conn_failed = !matches!(conn_result, Ok(Ok(Ok(()))));
    let _ = writer.await;

    let mut outcomes = Vec::new();
    while let Ok(o) = rx.try_recv() {
        outcomes.push(o);
    }
    // hyper answers a head it refuses with a 4xx/5xx of its own (our service only says 200).
    let mut res = ResponseHead::new();
    let mut rest: &[u8] = &answer;
    let mut refused_by_status = false;
    while let Ok(Parsed::Complete(n)) = parse_response(rest, false, &mut res) {
        if res.status() >= 400 {
            refused_by_status = true;
        }
        let mut body = BodyReader::new(res.body());
        rest = &rest[n..];
        loop {
            match body.decode(rest) {
                Ok(Step::Data { end, .. }) | Ok(Step::Trailer { end, .. }) => rest = &rest[end..],
                Ok(Step::Done { consumed }) => {
                    rest = &rest[consumed..];
                    break;
                }
                Ok(Step::NeedMore) | Err(_) => {
                    rest = &[];
                    break;
                }
            }
        }
    }
    if (refused_by_status || conn_failed) && outcomes.last() != Some(&Outcome::Refused) {
        outcomes.push(Outcome::Refused);
    }
    outcomes
}

/// Runs `raw` through a minimal driver over our codec: parse a head, read its body, go on
/// with the next message while the connection is kept alive.
fn our_outcomes(raw: &[u8]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    let mut head = RequestHead::new();
    let mut rest = raw;
    loop {
        if rest.is_empty() {
            return outcomes;
        }
        let n = match parse_request(rest, &mut head) {
            Ok(Parsed::Complete(n)) => n,
            // EOF inside a head: the connection ends on an incomplete message.
            Ok(Parsed::Partial) | Err(_) => {
                outcomes.push(Outcome::Refused);
                return outcomes;
            }
        };
        let msg = rest;
        rest = &rest[n..];
        let mut body = BodyReader::new(head.body());
        let mut data = Vec::new();
        loop {
            match body.decode(rest) {
                Ok(Step::Data { start, end }) => {
                    data.extend_from_slice(&rest[start..end]);
                    rest = &rest[end..];
                }
                Ok(Step::Trailer { end, .. }) => rest = &rest[end..],
                Ok(Step::Done { consumed }) => {
                    rest = &rest[consumed..];
                    break;
                }
                Ok(Step::NeedMore) => {
                    // All input given: EOF mid-body.
                    outcomes.push(Outcome::Refused);
                    return outcomes;
                }
                Err(_) => {
                    outcomes.push(Outcome::Refused);
                    return outcomes;
                }
            }
        }
        outcomes.push(Outcome::Ok {
            method: head.method_bytes(msg).to_vec(),
            path: head.path(msg).to_vec(),
            query: head.query(msg).map(<[u8]>::to_vec),
            body: data,
        });
        if !head.keep_alive() {
            return outcomes;
        }
    }
}

fn check(name: &str, raw: &[u8], expect: Expect, rt: &tokio::runtime::Runtime) -> String {
    let theirs = rt.block_on(hyper_outcomes(raw.to_vec()));
    let ours = our_outcomes(raw);
    let short = |o: &[Outcome]| -> String {
        o.iter()
            .map(|o| match o {
                Outcome::Ok { body, .. } => format!("ok({}B)", body.len()),
                Outcome::Refused => "refused".to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    match expect {
        Expect::Same => assert_eq!(
            ours,
            theirs,
            "case {name}: we and hyper differ\n{}",
            String::from_utf8_lossy(&raw[..raw.len().min(300)]).escape_debug()
        ),
        Expect::Stricter(why) => {
            assert!(
                !theirs.is_empty() && !theirs.contains(&Outcome::Refused),
                "case {name}: hyper no longer accepts it ({}); make the row Same",
                short(&theirs)
            );
            assert_eq!(
                ours.last(),
                Some(&Outcome::Refused),
                "case {name}: we should refuse ({why})"
            );
            assert_eq!(
                &ours[..ours.len() - 1],
                &theirs[..ours.len() - 1],
                "case {name}: messages before the refused one differ"
            );
        }
    }
    format!(
        "{name:<40} hyper={:<24} ours={}",
        short(&theirs),
        short(&ours)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const H: &str = "Host: a.example\r\n";

/// One row of the table: name, bytes, what to expect.
type Case = (&'static str, Vec<u8>, Expect);

fn s(x: &str) -> Vec<u8> {
    x.as_bytes().to_vec()
}

/// A POST to `/p` with `fields` (each ending in CRLF) and `body`.
fn post(fields: &str, body: &str) -> Vec<u8> {
    format!("POST /p HTTP/1.1\r\n{H}{fields}\r\n{body}").into_bytes()
}

fn cases() -> Vec<Case> {
    let mut all = message_cases();
    all.extend(transfer_coding_cases());
    all.extend(head_syntax_cases());
    all
}

// The tables below keep one row per line.

/// Plain messages and Content-Length.
#[rustfmt::skip]
fn message_cases() -> Vec<Case> {
    use Expect::*;
    vec![
        // Plain messages.
        ("get", s(&format!("GET /a?b=1 HTTP/1.1\r\n{H}\r\n")), Same),
        ("get lower-case method", s(&format!("get /a HTTP/1.1\r\n{H}\r\n")), Same),
        ("leading CRLF", s(&format!("\r\nGET / HTTP/1.1\r\n{H}\r\n")), Same),
        ("http/1.0 no host", s("GET / HTTP/1.0\r\n\r\n"), Same),
        ("absolute-form", s(&format!("GET http://b.example/x?y HTTP/1.1\r\n{H}\r\n")), Same),
        ("options *", s(&format!("OPTIONS * HTTP/1.1\r\n{H}\r\n")), Same),
        ("expect 100-continue", post("Expect: 100-continue\r\nContent-Length: 3\r\n", "abc"), Same),
        ("upgrade request", s(&format!("GET /ws HTTP/1.1\r\n{H}Upgrade: websocket\r\nConnection: upgrade\r\n\r\n")), Same),
        ("pipelined", s(&format!("GET /1 HTTP/1.1\r\n{H}\r\nPOST /2 HTTP/1.1\r\n{H}Content-Length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\n{H}\r\n")), Same),
        ("connection close stops", s(&format!("GET /1 HTTP/1.1\r\n{H}Connection: close\r\n\r\nGET /2 HTTP/1.1\r\n{H}\r\n")), Same),
        ("1.0 keep-alive pipelined", s("GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\nGET /3 HTTP/1.0\r\n\r\n"), Same),
        ("incomplete head at eof", s(&format!("GET / HTTP/1.1\r\n{H}")), Same),
        // Content-Length.
        ("cl 0", post("Content-Length: 0\r\n", ""), Same),
        ("cl 1", post("Content-Length: 1\r\n", "x"), Same),
        ("cl leading zeros", post("Content-Length: 005\r\n", "hello"), Same),
        ("cl duplicate same", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), Same),
        ("cl duplicate differ", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), Same),
        ("cl list", post("Content-Length: 5, 5\r\n", "hello"), Same),
        ("cl plus", post("Content-Length: +5\r\n", "hello"), Same),
        ("cl minus", post("Content-Length: -5\r\n", "hello"), Same),
        ("cl inner space", post("Content-Length: 5 0\r\n", "hello"), Same),
        ("cl hex", post("Content-Length: 0x5\r\n", "hello"), Same),
        ("cl overflow", post("Content-Length: 99999999999999999999\r\n", ""), Same),
        ("cl short body", post("Content-Length: 10\r\n", "hello"), Same),
    ]
}

/// Transfer-Encoding, both framing fields, chunked bodies.
#[rustfmt::skip]
fn transfer_coding_cases() -> Vec<Case> {
    use Expect::*;
    vec![
        // Transfer-Encoding.
        ("te chunked", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), Same),
        ("te CHUNKED", post("Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n"), Same),
        ("te xchunked", post("Transfer-Encoding: xchunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), Same),
        ("te chunked, identity", post("Transfer-Encoding: chunked, identity\r\n", "5\r\nhello\r\n0\r\n\r\n"), Same),
        ("te identity", post("Transfer-Encoding: identity\r\n", "hello"), Same),
        ("te leading space name", s(&format!("POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\n{H}\r\n0\r\n\r\n")), Same),
        ("te leading space 2nd line", s(&format!("POST / HTTP/1.1\r\n{H} Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")), Same),
        ("te leading tab", s(&format!("POST / HTTP/1.1\r\n{H}\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")), Same),
        ("te space before colon", post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"), Same),
        ("te vertical tab", post("Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n"), Same),
        ("te on http/1.0", s("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), Same),
        ("te gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Stricter("we do not forward transfer codings other than chunked (501)")),
        ("te chunked twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            Stricter("chunked applied twice is invalid (RFC 9112 §6.1)")),
        // CL.TE and TE.CL.
        ("CL.TE", post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nX"),
            Stricter("both framing fields: hyper lets TE win and closes, we refuse")),
        ("TE.CL", post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "8\r\nSMUGGLED\r\n0\r\n\r\n"),
            Stricter("both framing fields: hyper lets TE win and closes, we refuse")),
        // Chunked bodies.
        ("chunk ext", post("Transfer-Encoding: chunked\r\n", "5;a=b;c=\"d\"\r\nhello\r\n0\r\n\r\n"), Same),
        ("chunk trailers", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n"), Same),
        ("chunk size overflow", post("Transfer-Encoding: chunked\r\n", "ffffffffffffffffff\r\nx\r\n0\r\n\r\n"), Same),
        ("chunk size 17 digits", post("Transfer-Encoding: chunked\r\n", "00000000000000005\r\nhello\r\n0\r\n\r\n"),
            Stricter("at most 16 hex digits")),
        ("chunk size not hex", post("Transfer-Encoding: chunked\r\n", "5g\r\nhello\r\n0\r\n\r\n"), Same),
        ("chunk size space only", post("Transfer-Encoding: chunked\r\n", "5 \r\nhello\r\n0\r\n\r\n"),
            Stricter("whitespace after the size only before an extension")),
        ("chunk bare LF size", post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n"), Same),
        ("chunk bare LF data", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\n0\r\n\r\n"), Same),
        ("chunk bare LF end", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\n"), Same),
        ("chunk data too long", post("Transfer-Encoding: chunked\r\n", "5\r\nhello!!\r\n0\r\n\r\n"), Same),
        ("chunk ext NUL", post("Transfer-Encoding: chunked\r\n", "5;a\0\r\nhello\r\n0\r\n\r\n"),
            Stricter("no control bytes in chunk extensions")),
        ("chunk ext 8 KiB", post("Transfer-Encoding: chunked\r\n", &format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(8192))),
            Stricter("chunk extensions capped at 4 KiB per body (hyper: 16 KiB)")),
        ("chunk ext 4 KiB", post("Transfer-Encoding: chunked\r\n", &format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(4095))), Same),
        ("trailer 12 KiB", post("Transfer-Encoding: chunked\r\n", &format!("5\r\nhello\r\n0\r\nX-Big: {}\r\n\r\n", "v".repeat(12 * 1024))),
            Stricter("trailer section capped at 8 KiB (hyper: 16 KiB)")),
        ("trailer bare LF", post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nX: 1\nY: 2\r\n\r\n"), Same),
        ("chunked eof mid-body", post("Transfer-Encoding: chunked\r\n", "5\r\nhel"), Same),
    ]
}

/// Header syntax, line endings, the request line and Host.
#[rustfmt::skip]
fn head_syntax_cases() -> Vec<Case> {
    use Expect::*;
    vec![
        // Header syntax.
        ("obs-fold", s(&format!("GET / HTTP/1.1\r\n{H}X-A: 1\r\n  2\r\n\r\n")), Same),
        ("space before colon", s(&format!("GET / HTTP/1.1\r\n{H}X-A : 1\r\n\r\n")), Same),
        ("no colon", s(&format!("GET / HTTP/1.1\r\n{H}X-A\r\n\r\n")), Same),
        ("NUL in value", s(&format!("GET / HTTP/1.1\r\n{H}X-A: a\0b\r\n\r\n")), Same),
        ("CR in value", s(&format!("GET / HTTP/1.1\r\n{H}X-A: a\rb\r\n\r\n")), Same),
        ("DEL in value", s(&format!("GET / HTTP/1.1\r\n{H}X-A: a\x7fb\r\n\r\n")), Same),
        ("bare LF in head", s("GET / HTTP/1.1\nHost: a.example\n\n"),
            Stricter("CRLF only: a bare LF line end is a smuggling vector")),
        ("bare LF one line", s(&format!("GET / HTTP/1.1\r\n{H}X-A: 1\n\r\n")),
            Stricter("CRLF only")),
        ("bare CR", s(&format!("GET / HTTP/1.1\r{H}\r\n")), Same),
        ("bare CR in the target", s(&format!("GET /a\rb HTTP/1.1\r\n{H}\r\n")), Same),
        ("bare CR in a header name", s(&format!("GET / HTTP/1.1\r\n{H}X-\rA: 1\r\n\r\n")), Same),
        ("bare CR before a value", s(&format!("GET / HTTP/1.1\r\n{H}X-A:\r 1\r\n\r\n")), Same),
        ("bare CR in the blank line", s(&format!("GET / HTTP/1.1\r\n{H}\r\r\n")), Same),
        ("too many headers", s(&format!("GET / HTTP/1.1\r\n{H}{}\r\n", "X-A: 1\r\n".repeat(100))), Same),
        // Request line.
        ("double space", s(&format!("GET  / HTTP/1.1\r\n{H}\r\n")), Same),
        ("version 1.2", s(&format!("GET / HTTP/1.2\r\n{H}\r\n")), Same),
        ("version 2.0", s(&format!("GET / HTTP/2.0\r\n{H}\r\n")), Same),
        ("control byte in target", s(&format!("GET /\x01 HTTP/1.1\r\n{H}\r\n")), Same),
        ("fragment in target", s(&format!("GET /a#b HTTP/1.1\r\n{H}\r\n")),
            Stricter("no fragment in a request target (hyper drops it)")),
        ("utf-8 in target", s(&format!("GET /caf\u{e9} HTTP/1.1\r\n{H}\r\n")),
            Stricter("raw non-ASCII in the target")),
        ("bad pct in path", s(&format!("GET /a%zz HTTP/1.1\r\n{H}\r\n")),
            Stricter("% must start a valid escape in the path")),
        ("asterisk with GET", s(&format!("GET * HTTP/1.1\r\n{H}\r\n")),
            Stricter("asterisk-form only with OPTIONS")),
        ("authority-form GET", s(&format!("GET a.example:443 HTTP/1.1\r\n{H}\r\n")),
            Stricter("authority-form is for CONNECT, which we do not tunnel")),
        ("userinfo in absolute-form", s(&format!("GET http://u@b.example/ HTTP/1.1\r\n{H}\r\n")),
            Stricter("no userinfo in the authority")),
        // Host.
        ("no host on 1.1", s("GET / HTTP/1.1\r\n\r\n"), Stricter("RFC 9112 §3.2: Host required")),
        ("two hosts", s(&format!("GET / HTTP/1.1\r\n{H}{H}\r\n")), Stricter("RFC 9112 §3.2: one Host")),
        ("two different hosts", s(&format!("GET / HTTP/1.1\r\n{H}Host: b.example\r\n\r\n")), Stricter("RFC 9112 §3.2: one Host")),
        ("host with space", s("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), Stricter("Host must be host[:port]")),
        ("host with comma", s("GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n"), Stricter("Host must be host[:port]")),
        ("empty host", s("GET / HTTP/1.1\r\nHost:\r\n\r\n"), Stricter("Host must be host[:port]")),
        ("absolute-form without host", s("GET http://b.example/ HTTP/1.1\r\n\r\n"), Stricter("RFC 9112 §3.2: Host required")),
    ]
}

#[test]
fn differential_table_against_hyper() {
    let rt = runtime();
    let mut report = Vec::new();
    for (name, raw, expect) in cases() {
        report.push(check(name, &raw, expect, &rt));
    }
    // `cargo test -- --nocapture differential` prints the table.
    println!("{}", report.join("\n"));
}

#[test]
fn differential_bodies_against_hyper() {
    let rt = runtime();
    for size in [0usize, 1, 64 * 1024, 10 * 1024 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let mut raw =
            format!("POST /len HTTP/1.1\r\n{H}Content-Length: {size}\r\n\r\n").into_bytes();
        raw.extend_from_slice(&body);
        check(&format!("length {size}"), &raw, Expect::Same, &rt);

        let mut raw =
            format!("POST /chunked HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
        raw.extend_from_slice(&crate::h1::chunked::tests::encode(&body, &[8192, 1, 3000]));
        raw.extend_from_slice(format!("GET /after HTTP/1.1\r\n{H}\r\n").as_bytes());
        check(
            &format!("chunked {size} + pipelined"),
            &raw,
            Expect::Same,
            &rt,
        );
    }
}

/// The status hyper answers `raw` with while the client keeps the connection open (no EOF),
/// or `None` if it does not answer within two seconds.
async fn hyper_answer_before_eof(raw: Vec<u8>) -> Option<u16> {
    let (client, server) = tokio::io::duplex(1 << 16);
    let svc = service_fn(|_req: hyper::Request<Incoming>| async {
        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
    });
    let conn = tokio::spawn(
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), svc),
    );
    let (mut rd, mut wr) = tokio::io::split(client);
    wr.write_all(&raw).await.ok()?;
    let mut answer = Vec::new();
    let mut res = ResponseHead::new();
    let status = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Ok(Parsed::Complete(_)) = parse_response(&answer, false, &mut res) {
                return Some(res.status());
            }
            if rd.read_buf(&mut answer).await.ok()? == 0 {
                return None;
            }
        }
    })
    .await
    .ok()
    .flatten();
    conn.abort();
    drop(wr);
    status
}

/// What a driver over our codec answers `raw` with before any more bytes come: it parses
/// only when [`may_be_complete`] says the head may be complete or faulty.
fn our_answer_before_eof(raw: &[u8]) -> Option<u16> {
    let mut head = RequestHead::new();
    if !may_be_complete(raw, 0) {
        return None;
    }
    parse_request(raw, &mut head).err().map(|e| e.status())
}

/// A bare CR is answered 400 as soon as the byte after it arrives, without waiting for
/// the blank line that ends the head, as hyper does; a CR that is the last byte sent so far
/// is answered by neither.
#[test]
fn bare_cr_answered_before_the_head_ends_as_hyper_does() {
    let rt = runtime();
    let cases: &[(&str, &[u8], Option<u16>)] = &[
        ("in the method", b"GE\rT / HTTP/1.1\r\n", Some(400)),
        ("in the target", b"GET /a\rb HTTP/1.1\r\n", Some(400)),
        (
            "after the version",
            b"GET / HTTP/1.1\rHost: a.example\r\n",
            Some(400),
        ),
        (
            "in a header name",
            b"GET / HTTP/1.1\r\nHost: a.example\r\nX-\rA: 1\r\n",
            Some(400),
        ),
        (
            "in a header value",
            b"GET / HTTP/1.1\r\nHost: a.example\r\nX-A: a\rb\r\n",
            Some(400),
        ),
        (
            "at the start of a line",
            b"GET / HTTP/1.1\r\nHost: a.example\r\n\rX",
            Some(400),
        ),
        ("last byte", b"GET / HTTP/1.1\r\nHost: a.example\r", None),
        (
            "no CR at all",
            b"GET / HTTP/1.1\r\nHost: a.example\r\n",
            None,
        ),
    ];
    for (name, raw, want) in cases {
        let theirs = rt.block_on(hyper_answer_before_eof(raw.to_vec()));
        assert_eq!(theirs, *want, "hyper, bare CR {name}");
        assert_eq!(our_answer_before_eof(raw), *want, "ours, bare CR {name}");
    }
}
