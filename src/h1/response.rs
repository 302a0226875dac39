//! Parsing a node's response head into a reusable [`ResponseHead`] of offsets.
//!
//! Framing follows RFC 9112 §6.3 with the strict field rules of [`crate::h1::framing`]:
//! - no body for a response to HEAD, any 1xx, 204 and 304 (their `Content-Length`, if valid,
//!   is kept for the writer to pass through; it describes the representation, not this
//!   message);
//! - `Transfer-Encoding` must be exactly `chunked`. hyper reads any other coding as
//!   close-delimited; we refuse it (the driver answers 502), because we would have to strip
//!   the field and hand the client a body still encoded with a coding nobody declares;
//! - `Transfer-Encoding` with `Content-Length` is refused (hyper lets TE win);
//! - neither field: the body runs until the node closes ([`BodyFraming::CloseDelimited`]),
//!   and the node connection is not reused.
//!
//! Every error here means the node is broken or hostile: the driver answers its client 502
//! and closes the node connection.

use std::mem::MaybeUninit;

use crate::h1::framing::{BodyFraming, Framing};
use crate::h1::header::{self, ConnectionTokens, Header, HeaderKind, Span, MAX_HEADERS};
use crate::h1::request::{
    check_bare_lf, check_line_ends, line_end_fault_first, version_error, Parsed, Version,
    MAX_HEAD_LEN,
};
use crate::h1::strict_head;
use crate::h1::Error;

/// A parsed response head. Reuse one per node connection, as [`crate::h1::RequestHead`].
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    version: Version,
    status: u16,
    reason: Span,
    headers: Vec<Header>,
    connection_tokens: Vec<Span>,
    body: BodyFraming,
    content_length: Option<u64>,
    keep_alive: bool,
    head_len: usize,
}

impl ResponseHead {
    /// An empty head.
    pub fn new() -> ResponseHead {
        ResponseHead::default()
    }

    /// Forgets the last response, keeping the capacity of the vectors.
    pub fn clear(&mut self) {
        let mut headers = std::mem::take(&mut self.headers);
        let mut tokens = std::mem::take(&mut self.connection_tokens);
        headers.clear();
        tokens.clear();
        *self = ResponseHead {
            headers,
            connection_tokens: tokens,
            ..ResponseHead::default()
        };
    }

    /// The version the node spoke.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The status code (100 to 999).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase; empty if the node sent none, or one with obs-text (httparse
    /// drops those and so do we).
    pub fn reason<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.reason.get(buf)
    }

    /// All header lines, in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The name of header `i` as sent.
    pub fn header_name<'a>(&self, i: usize, buf: &'a [u8]) -> &'a [u8] {
        self.headers[i].name.get(buf)
    }

    /// The value of header `i`.
    pub fn header_value<'a>(&self, i: usize, buf: &'a [u8]) -> &'a [u8] {
        self.headers[i].value.get(buf)
    }

    /// The first header named `name` (case-insensitive), by index.
    pub fn find(&self, buf: &[u8], name: &[u8]) -> Option<usize> {
        header::find(&self.headers, buf, name)
    }

    /// Every header of one known kind, by index: the `Set-Cookie` lines, `Location`.
    pub fn indices(&self, kind: HeaderKind) -> impl Iterator<Item = usize> + '_ {
        self.headers
            .iter()
            .enumerate()
            .filter(move |(_, h)| h.kind == kind)
            .map(|(i, _)| i)
    }

    /// The first `Location` line, by index.
    pub fn location(&self) -> Option<usize> {
        self.indices(HeaderKind::Location).next()
    }

    /// How the body is framed.
    pub fn body(&self) -> BodyFraming {
        self.body
    }

    /// The `Content-Length` the node sent, if any (also on bodiless responses, where it
    /// describes the representation).
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether the node connection may carry another request after this response's body.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// A 1xx other than 101: forward it (or drop it) and parse the next head from the
    /// bytes after it.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// `101 Switching Protocols`: after this head the connection is a tunnel.
    pub fn is_upgrade(&self) -> bool {
        self.status == 101
    }

    /// The tokens of the `Connection` fields but `keep-alive`, which names only a hop-by-hop
    /// field.
    pub fn connection_tokens(&self) -> &[Span] {
        &self.connection_tokens
    }

    /// Whether `name` is listed in `Connection` (case-insensitive).
    pub fn connection_names(&self, buf: &[u8], name: &[u8]) -> bool {
        self.connection_tokens
            .iter()
            .any(|t| t.get(buf).eq_ignore_ascii_case(name))
    }

    /// The head's length in bytes.
    pub fn head_len(&self) -> usize {
        self.head_len
    }
}

/// Parses a response head at the start of `buf` into `out`. `req_method_is_head` says the
/// request was HEAD (its response has no body whatever the fields say).
pub fn parse_response(
    buf: &[u8],
    req_method_is_head: bool,
    out: &mut ResponseHead,
) -> Result<Parsed, Error> {
    out.clear();
    if let Some(r) = strict_head::response(buf, &mut out.headers) {
        // The strict form (no bare LF possible in it), read as httparse would read it.
        if r.len > MAX_HEAD_LEN {
            return Err(Error::HeadTooLarge);
        }
        let reason = Span::of(buf, r.reason);
        return read_response(buf, r.version, r.code, reason, req_method_is_head, out)
            .map(|()| finish(out, r.len));
    }
    out.headers.clear();
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut raw)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD_LEN {
                return Err(Error::HeadTooLarge);
            }
            check_line_ends(buf)?;
            return Ok(Parsed::Partial);
        }
        Err(e) => return Err(response_syntax_error(buf, e)),
    };
    if len > MAX_HEAD_LEN {
        return Err(Error::HeadTooLarge);
    }
    check_bare_lf(&buf[..len])?;
    let (Some(version), Some(code), Some(reason)) = (res.version, res.code, res.reason) else {
        return Err(Error::Status);
    };
    let reason = if reason.is_empty() {
        Span::default()
    } else {
        Span::of(buf, reason.as_bytes())
    };
    for h in res.headers.iter() {
        let name = Span::of(buf, h.name.as_bytes());
        let value = if h.value.is_empty() {
            Span {
                start: name.end,
                end: name.end,
            }
        } else {
            Span::of(buf, h.value)
        };
        let kind = HeaderKind::of(h.name.as_bytes());
        out.headers.push(Header { name, value, kind });
    }
    read_response(buf, version, code, reason, req_method_is_head, out).map(|()| finish(out, len))
}

fn finish(out: &mut ResponseHead, len: usize) -> Parsed {
    out.head_len = len;
    Parsed::Complete(len)
}

/// The status line's parts, as either parser read them, into `out`, and what the fields
/// (listed in `out` by that parser) say.
fn read_response(
    buf: &[u8],
    version: u8,
    code: u16,
    reason: Span,
    req_method_is_head: bool,
    out: &mut ResponseHead,
) -> Result<(), Error> {
    if code < 100 {
        return Err(Error::Status);
    }
    out.status = code;
    out.version = if version == 1 {
        Version::Http11
    } else {
        Version::Http10
    };
    out.reason = reason;
    let http10 = out.version == Version::Http10;

    let mut framing = Framing::default();
    let mut conn = ConnectionTokens::default();
    for i in 0..out.headers.len() {
        let h = out.headers[i];
        let value = h.value.get(buf);
        match h.kind {
            HeaderKind::ContentLength => framing.content_length(value),
            HeaderKind::TransferEncoding => framing.transfer_encoding(value),
            HeaderKind::Connection => header::read_connection(
                value,
                h.value.start,
                &mut conn,
                &mut out.connection_tokens,
            )?,
            _ => {}
        }
    }

    let bodiless = req_method_is_head || code < 200 || code == 204 || code == 304;
    out.body = if bodiless {
        // The fields do not frame this message (a Transfer-Encoding is simply stripped),
        // but a Content-Length we pass on must still be a sound one.
        out.content_length = framing.content_length_value()?;
        BodyFraming::Empty
    } else {
        let f = framing.finish(http10, BodyFraming::CloseDelimited)?;
        if let BodyFraming::Length(n) = f {
            out.content_length = Some(n);
        }
        f
    };
    out.keep_alive = !conn.close
        && (!http10 || conn.keep_alive)
        && out.body != BodyFraming::CloseDelimited
        && code != 101;
    Ok(())
}

/// The error for a response head httparse refused.
#[cold]
fn response_syntax_error(buf: &[u8], e: httparse::Error) -> Error {
    let error = match e {
        httparse::Error::Version => version_error(buf, false),
        e => Error::from_httparse(e),
    };
    line_end_fault_first(buf, error, |prefix| {
        let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
            [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, prefix, &mut raw)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], head: bool) -> Result<ResponseHead, Error> {
        let mut r = ResponseHead::new();
        match parse_response(raw, head, &mut r)? {
            Parsed::Complete(n) => {
                assert_eq!(n, r.head_len());
                Ok(r)
            }
            Parsed::Partial => panic!("partial: {}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn simple_ok() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: JSESSIONID=X.jvm1; Path=/app\r\nLocation: /next\r\n\r\nhello";
        let r = parse(raw, false).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.reason(raw), b"OK");
        assert_eq!(r.version(), Version::Http11);
        assert_eq!(r.body(), BodyFraming::Length(5));
        assert_eq!(r.content_length(), Some(5));
        assert!(r.keep_alive());
        assert_eq!(
            r.indices(HeaderKind::SetCookie).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(r.location(), Some(3));
        assert_eq!(r.header_value(3, raw), b"/next");
        assert_eq!(r.find(raw, b"set-cookie"), Some(1));
        assert_eq!(r.head_len(), raw.len() - 5);
        assert!(!r.is_informational() && !r.is_upgrade());
    }

    #[test]
    fn response_table() {
        use BodyFraming::*;
        // (raw, request was HEAD, framing, keep-alive)
        type Case = (&'static [u8], bool, Result<(BodyFraming, bool), Error>);
        let cases: &[Case] = &[
            (b"HTTP/1.1 200 OK\r\n\r\n", false, Ok((CloseDelimited, false))),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, Ok((Length(0), true))),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, Ok((Chunked, true))),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", false, Ok((Chunked, true))),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, Err(Error::TransferEncoding)),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, Err(Error::TransferCodingUnsupported)),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false, Err(Error::ContentLengthWithTransferEncoding)),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false, Err(Error::ContentLengthConflict)),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, Ok((Length(5), true))),
            (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, Err(Error::ContentLength)),
            (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, Err(Error::TransferEncodingHttp10)),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false, Ok((Length(5), false))),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n", false, Ok((Length(5), true))),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", false, Ok((Length(5), false))),
            // Bodiless by status or method, whatever the fields say.
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, Ok((Empty, true))),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, Ok((Empty, true))),
            (b"HTTP/1.1 200 OK\r\n\r\n", true, Ok((Empty, true))),
            (b"HTTP/1.1 204 No Content\r\n\r\n", false, Ok((Empty, true))),
            (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", false, Ok((Empty, true))),
            (b"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n", false, Err(Error::ContentLength)),
            (b"HTTP/1.1 100 Continue\r\n\r\n", false, Ok((Empty, true))),
            (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n", false, Ok((Empty, true))),
            (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", false, Ok((Empty, false))),
            // Syntax.
            (b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", false, Err(Error::NewLine)),
            (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false, Err(Error::HeaderName)),
            (b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n", false, Err(Error::HeaderName)),
            (b"HTTP/1.1 2000 OK\r\n\r\n", false, Err(Error::Status)),
            (b"HTTP/1.1 20 OK\r\n\r\n", false, Err(Error::Status)),
            (b"HTTP/1.1 099 Low\r\n\r\n", false, Err(Error::Status)),
            (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, Ok((Length(0), true))),
            (b"HTTP/2.0 200 OK\r\n\r\n", false, Err(Error::VersionNotSupported)),
            (b"HTPT/1.1 200 OK\r\n\r\n", false, Err(Error::Version)),
        ];
        for (raw, head, want) in cases {
            let got = parse(raw, *head).map(|r| (r.body(), r.keep_alive()));
            assert_eq!(
                got,
                *want,
                "{}",
                String::from_utf8_lossy(raw).escape_debug()
            );
        }
    }

    #[test]
    fn informational_and_upgrade_flags() {
        let r = parse(b"HTTP/1.1 100 Continue\r\n\r\n", false).unwrap();
        assert!(r.is_informational());
        let r = parse(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false).unwrap();
        assert!(r.is_upgrade() && !r.is_informational());
        let raw = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n";
        assert_eq!(parse(raw, false).unwrap().content_length(), Some(100));
    }

    #[test]
    fn one_xx_then_final_in_one_buffer() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let mut r = ResponseHead::new();
        let Parsed::Complete(n) = parse_response(raw, false, &mut r).unwrap() else {
            panic!()
        };
        assert!(r.is_informational());
        let rest = &raw[n..];
        let Parsed::Complete(m) = parse_response(rest, false, &mut r).unwrap() else {
            panic!()
        };
        assert_eq!(r.status(), 200);
        assert_eq!(&rest[m..], b"ok");
    }

    #[test]
    fn partial_response() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut r = ResponseHead::new();
        for cut in 0..raw.len() {
            assert_eq!(
                parse_response(&raw[..cut], false, &mut r),
                Ok(Parsed::Partial)
            );
        }
        assert_eq!(
            parse_response(raw, false, &mut r),
            Ok(Parsed::Complete(raw.len()))
        );
    }

    #[test]
    fn obs_text_reason_is_dropped() {
        let raw = b"HTTP/1.1 200 \xe9t\xe9\r\nContent-Length: 0\r\n\r\n";
        let r = parse(raw, false).unwrap();
        assert_eq!(r.reason(raw), b"");
    }
    /// A bare CR in a node's head is refused as soon as the byte after it arrives (the
    /// driver parses on every read and answers its client 502); a CR that is the last
    /// byte so far waits for its LF.
    #[test]
    #[rustfmt::skip]
    fn bare_cr_table() {
        use Parsed::*;
        type Case = (&'static str, &'static [u8], Result<Parsed, Error>);
        let cases: &[Case] = &[
            ("CRLF throughout", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Ok(Complete(38))),
            ("in the version", b"HTTP/1\r.1 200 OK\r\n", Err(Error::NewLine)),
            ("in the status code", b"HTTP/1.1 2\r00 OK\r\n", Err(Error::NewLine)),
            ("in the reason", b"HTTP/1.1 200 O\rK\r\n", Err(Error::NewLine)),
            ("after the status line", b"HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n", Err(Error::NewLine)),
            ("in a header name", b"HTTP/1.1 200 OK\r\nCont\rent-Length: 0\r\n", Err(Error::NewLine)),
            ("in a header value", b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", Err(Error::NewLine)),
            ("in the blank line", b"HTTP/1.1 200 OK\r\nX-A: a\r\n\rx", Err(Error::NewLine)),
            ("obs-fold after a bare CR", b"HTTP/1.1 200 OK\r\nX-A: a\r b\r\n\r\n", Err(Error::NewLine)),
            ("last byte, after the status line", b"HTTP/1.1 200 OK\r", Ok(Partial)),
            ("last byte, after a value", b"HTTP/1.1 200 OK\r\nX-A: a\r", Ok(Partial)),
            ("last byte, of the blank line", b"HTTP/1.1 200 OK\r\nX-A: a\r\n\r", Ok(Partial)),
        ];
        for (name, raw, want) in cases {
            let mut r = ResponseHead::new();
            assert_eq!(parse_response(raw, false, &mut r), *want, "{name}");
        }
    }

    #[test]
    fn bare_cr_anywhere_is_refused_on_the_next_byte() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\n\r\n";
        for p in 0..head.len() {
            for next in [b'x', b' ', b'\r', 0] {
                let mut raw = head[..p].to_vec();
                raw.extend_from_slice(&[b'\r', next]);
                let mut r = ResponseHead::new();
                assert_eq!(
                    parse_response(&raw, false, &mut r),
                    Err(Error::NewLine),
                    "{raw:?}"
                );
            }
        }
    }
}
