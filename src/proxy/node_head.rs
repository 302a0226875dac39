//! The head of a request as a node receives it, for both request paths: the forwarding fields
//! of this hop (`X-Forwarded-For/-Proto/-Host`, `Forwarded`), the client's fields they, the
//! failover header and a rewritten session cookie replace, and `Expect` (the balancer answers
//! it, not the node). The bytes come from the one set of hop-by-hop and framing rules in
//! `crate::h1`'s writers: [`write_native_head`] for a parsed HTTP/1.1 head (the native path),
//! [`write_parts_head`] for an HTTP/2 request's `http::request::Parts` (the HTTP/2 path).

use std::net::IpAddr;

use crate::core::forwarding::{prior_chain, push_forwarded};
use crate::h1::{self, BodyFraming, FieldsRequest, RequestEdits, RequestHead};

/// This hop as the forwarding fields describe it.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The client's address as the balancer saw it.
    pub client: IpAddr,
    /// The client connection is TLS.
    pub tls: bool,
    /// Keep and extend the request's forwarding chains (the peer is a trusted proxy), rather
    /// than replace them ([`crate::core::forwarding::TrustedProxies::extends`]).
    pub extend: bool,
    /// The request's host as decided; empty when it has none.
    pub host: &'a str,
}

/// What the node-dependent rewriting adds: the failover header (its name, and its value on
/// a failover) and the session's cookie lines when the id the node sees changed them.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    pub failover_name: &'a [u8],
    pub failover: Option<&'a str>,
    pub cookie_lines: Option<&'a [String]>,
}

/// Cookie lines at most forwarded after a rewrite (to an HTTP or an AJP node).
pub(crate) const MAX_COOKIE_LINES: usize = 16;

/// The skip list and extra fields of a forwarded head, borrowed from the values buffer.
/// The session's cookie lines are a slice of their own: a list sized for them would be
/// filled with blanks on every request, and most requests carry none.
struct NodeFields<'a> {
    skip: [&'a [u8]; 7],
    extra: [(&'a [u8], &'a [u8]); 5],
    n: usize,
    cookies: &'a [String],
}

impl<'a> NodeFields<'a> {
    /// Writes this hop's `X-Forwarded-For` then `Forwarded` value into `vals` (the chains of
    /// the client's fields `xff` and `fwd` kept when `hop.extend`) and lists the fields.
    fn new<'v>(
        vals: &'a mut Vec<u8>,
        hop: &Hop<'a>,
        session: &Session<'a>,
        xff: impl Iterator<Item = &'v [u8]>,
        fwd: impl Iterator<Item = &'v [u8]>,
    ) -> NodeFields<'a> {
        let xff_prev = prior_chain(hop.extend, xff);
        let fwd_prev = prior_chain(hop.extend, fwd);
        let ip_start =
            h1::push_forwarded_for(vals, xff_prev.as_deref().map(str::as_bytes), hop.client);
        let xff_end = vals.len();
        // The client's address as X-Forwarded-For just wrote it (it ends the value), copied
        // within the buffer: formatted once for both fields.
        let ip = ip_start..xff_end;
        let push_ip = |out: &mut Vec<u8>| out.extend_from_within(ip);
        let v6 = hop.client.to_canonical().is_ipv6();
        let prev = fwd_prev.as_deref().map(str::as_bytes);
        push_forwarded(vals, prev, push_ip, v6, hop.tls, hop.host);
        let vals: &'a [u8] = vals;
        let skip: [&[u8]; 7] = [
            b"x-forwarded-for",
            b"x-forwarded-proto",
            b"x-forwarded-host",
            b"forwarded",
            b"expect",
            session.failover_name,
            if session.cookie_lines.is_some() {
                b"cookie"
            } else {
                b""
            },
        ];
        let mut f = NodeFields {
            skip,
            extra: [(b"", b""); 5],
            n: 0,
            cookies: session
                .cookie_lines
                .map_or(&[], |l| &l[..l.len().min(MAX_COOKIE_LINES)]),
        };
        f.add(b"X-Forwarded-For", &vals[..xff_end]);
        f.add(
            b"X-Forwarded-Proto",
            if hop.tls { b"https" } else { b"http" },
        );
        if !hop.host.is_empty() {
            f.add(b"X-Forwarded-Host", hop.host.as_bytes());
        }
        f.add(b"Forwarded", &vals[xff_end..]);
        if let Some(v) = session.failover {
            f.add(session.failover_name, v.as_bytes());
        }
        f
    }

    fn add(&mut self, name: &'a [u8], value: &'a [u8]) {
        self.extra[self.n] = (name, value);
        self.n += 1;
    }

    fn edits(&self) -> RequestEdits<'_> {
        RequestEdits {
            skip: &self.skip,
            extra: &self.extra[..self.n],
            cookies: self.cookies,
            ..RequestEdits::default()
        }
    }
}

/// The head for the node of a request parsed by the native path (`src` is its buffer):
/// `target` replaces the client's (a rewritten `;jsessionid=`); an upgrade is forwarded.
/// `vals` is scratch space for the forwarding values.
pub fn write_native_head(
    src: &[u8],
    head: &RequestHead,
    hop: &Hop<'_>,
    session: &Session<'_>,
    target: Option<&[u8]>,
    vals: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    let value = |i| head.header_value(i, src);
    let xff = head.find_all(src, b"x-forwarded-for").map(value);
    let fwd = head.find_all(src, b"forwarded").map(value);
    let fields = NodeFields::new(vals, hop, session, xff, fwd);
    let edits = RequestEdits {
        upgrade: head.upgrade(),
        target,
        default_host: hop.host.as_bytes(),
        ..fields.edits()
    };
    h1::write_request_head(src, head, &edits, out);
}

/// `X-Forwarded-For`, for lookups in a `HeaderMap` without parsing the name.
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The head for the node of an HTTP/2 request (the HTTP/2 path): its method, origin-form
/// target and fields, framed as `body` (`Length` when the body's size is known, else
/// `Chunked`; `Empty` for none). Upgrades do not reach this path (HTTP/2 carries none).
/// `vals` is scratch space for the forwarding values.
pub fn write_parts_head(
    parts: &http::request::Parts,
    hop: &Hop<'_>,
    session: &Session<'_>,
    body: BodyFraming,
    vals: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    let h = &parts.headers;
    // Looked up only when the chains are kept: a lookup hashes the name.
    let values = |name: http::HeaderName| {
        hop.extend
            .then(|| h.get_all(name))
            .into_iter()
            .flatten()
            .map(http::HeaderValue::as_bytes)
    };
    let xff = values(X_FORWARDED_FOR);
    let fwd = values(http::header::FORWARDED);
    let fields = NodeFields::new(vals, hop, session, xff, fwd);
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let req = FieldsRequest {
        method: parts.method.as_str().as_bytes(),
        target: target.as_bytes(),
        host: hop.host.as_bytes(),
        fields: || h.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
    };
    let edits = RequestEdits {
        body: Some(body),
        ..fields.edits()
    };
    h1::write_request_fields(req, &edits, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(req: http::Request<()>, hop: &Hop<'_>, session: &Session<'_>) -> String {
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        write_parts_head(
            &parts,
            hop,
            session,
            BodyFraming::Empty,
            &mut Vec::new(),
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    /// An HTTP/2 request's head for the node: the forwarding fields replaced or extended, the
    /// failover header the client sent dropped and ours added, `Expect` dropped.
    #[test]
    fn parts_head_table() {
        let plain = Session {
            failover_name: b"x-session-failover",
            failover: None,
            cookie_lines: None,
        };
        let failover = Session {
            failover: Some("jvm1"),
            ..plain
        };
        let hop = |extend, tls, client: &str| Hop {
            client: client.parse().unwrap(),
            tls,
            extend,
            host: "app.test",
        };
        let claimed = || {
            http::Request::builder()
                .uri("https://app.test/a/b?c=1")
                .header("x-forwarded-for", "198.51.100.1")
                .header("forwarded", "for=198.51.100.1")
                .header("x-forwarded-proto", "gopher")
                .header("x-session-failover", "forged")
                .header("expect", "100-continue")
                .header("accept", "*/*")
                .body(())
                .unwrap()
        };
        type Case<'a> = (&'a str, Hop<'a>, &'a Session<'a>, &'a str);
        let cases: &[Case] = &[
            (
                "an untrusted peer's chains are replaced",
                hop(false, true, "192.0.2.7"),
                &plain,
                "GET /a/b?c=1 HTTP/1.1\r\nHost: app.test\r\naccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: app.test\r\nForwarded: for=192.0.2.7;proto=https;host=\"app.test\"\r\n\r\n",
            ),
            (
                "a trusted peer's chains are extended; IPv6 quoted in Forwarded",
                hop(true, false, "2001:db8::1"),
                &plain,
                "GET /a/b?c=1 HTTP/1.1\r\nHost: app.test\r\naccept: */*\r\nX-Forwarded-For: 198.51.100.1, 2001:db8::1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: app.test\r\nForwarded: for=198.51.100.1, for=\"[2001:db8::1]\";proto=http;host=\"app.test\"\r\n\r\n",
            ),
            (
                "a failover adds our failover header",
                hop(false, true, "::ffff:10.0.0.5"),
                &failover,
                "GET /a/b?c=1 HTTP/1.1\r\nHost: app.test\r\naccept: */*\r\nX-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: app.test\r\nForwarded: for=10.0.0.5;proto=https;host=\"app.test\"\r\nx-session-failover: jvm1\r\n\r\n",
            ),
        ];
        for (what, hop, session, want) in cases {
            assert_eq!(written(claimed(), hop, session), *want, "{what}");
        }
    }

    #[test]
    fn parts_head_framing_and_rewritten_cookies() {
        let lines = vec!["JSESSIONID=A.jvm1".to_string(), "o=1".to_string()];
        let session = Session {
            failover_name: b"x-session-failover",
            failover: None,
            cookie_lines: Some(&lines),
        };
        let hop = Hop {
            client: "192.0.2.7".parse().unwrap(),
            tls: false,
            extend: false,
            host: "",
        };
        let req = http::Request::builder()
            .method("POST")
            .uri("/up")
            .header("cookie", "JSESSIONID=A.jvm1.jvm2; o=1")
            .header("content-length", "3")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        for (body, framing) in [
            (BodyFraming::Length(3), "Content-Length: 3\r\n"),
            (BodyFraming::Chunked, "Transfer-Encoding: chunked\r\n"),
        ] {
            let mut out = Vec::new();
            write_parts_head(&parts, &hop, &session, body, &mut Vec::new(), &mut out);
            let want = format!("POST /up HTTP/1.1\r\nHost: \r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nForwarded: for=192.0.2.7;proto=http\r\nCookie: JSESSIONID=A.jvm1\r\nCookie: o=1\r\n{framing}\r\n");
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
