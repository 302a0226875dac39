//! Parsing a request head into a reusable [`RequestHead`] of offsets.
//!
//! [`parse_request`] runs `httparse` with a stack array of [`MAX_HEADERS`] fields, then
//! checks what `httparse` lets through and what the proxy needs decided before it forwards
//! anything: CRLF line endings, the target form, Host, framing (see [`crate::h1::framing`]),
//! keep-alive, `Expect: 100-continue` and upgrades. Nothing is copied: the head records
//! [`Span`]s into the caller's buffer, and its vectors keep their capacity across
//! [`RequestHead::clear`], so a connection that parses many requests allocates only for its
//! first.

use std::mem::MaybeUninit;

use crate::h1::framing::{BodyFraming, Framing};
use crate::h1::header::{self, ConnectionTokens, Header, HeaderKind, Span, MAX_HEADERS};
use crate::h1::strict_head;
use crate::h1::target::{self, TargetForm};
use crate::h1::Error;

/// At most this many bytes of head (request or status line, fields, blank line); more is a
/// 431. A driver whose buffer holds this much without a complete head answers 431.
pub const MAX_HEAD_LEN: usize = 64 * 1024;

/// At most this many bytes of request target; more is a 414 (hyper allows 65 534; Tomcat's
/// default limit for the whole head is 8 KiB).
pub const MAX_TARGET_LEN: usize = 16 * 1024;

/// The outcome of a head parse that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet: read more bytes and parse again from the start.
    Partial,
    /// The head is complete and `n` bytes long: the body (or the next request) starts at
    /// `buf[n..]`.
    Complete(usize),
}

/// The protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    #[default]
    Http11,
}

/// The request method, with the standard ones named. Method names are case-sensitive:
/// `get` is [`Method::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// GET.
    #[default]
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// OPTIONS.
    Options,
    /// TRACE.
    Trace,
    /// PATCH.
    Patch,
    /// CONNECT (always refused by [`parse_request`]).
    Connect,
    /// Any other token; the bytes are at [`RequestHead::method_bytes`].
    Other,
}

impl Method {
    /// Names a method token.
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// The name of a standard method; `None` for [`Method::Other`], whose bytes are the
    /// head's.
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Connect => "CONNECT",
            Method::Other => return None,
        })
    }

    /// Idempotent per RFC 9110 §9.2.2: safe to replay on another node.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// A parsed request head: offsets into the buffer it was parsed from, plus what the proxy
/// needs decided. Keep one per connection and reuse it: [`RequestHead::clear`] (called by
/// [`parse_request`]) keeps the vectors' capacity.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    method: Method,
    method_span: Span,
    target: Span,
    target_form: TargetForm,
    path: Span,
    version: Version,
    headers: Vec<Header>,
    connection_tokens: Vec<Span>,
    body: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
    host: Option<Span>,
    host_index: Option<u16>,
    head_len: usize,
}

impl RequestHead {
    /// An empty head (no allocation until the first parse).
    pub fn new() -> RequestHead {
        RequestHead::default()
    }

    /// Forgets the last request, keeping the capacity of the vectors.
    pub fn clear(&mut self) {
        let mut headers = std::mem::take(&mut self.headers);
        let mut tokens = std::mem::take(&mut self.connection_tokens);
        headers.clear();
        tokens.clear();
        *self = RequestHead {
            headers,
            connection_tokens: tokens,
            ..RequestHead::default()
        };
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method as sent.
    pub fn method_bytes<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.method_span.get(buf)
    }

    /// The request target exactly as sent.
    pub fn target<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.target.get(buf)
    }

    /// Which form the target had.
    pub fn target_form(&self) -> TargetForm {
        self.target_form
    }

    /// The path of the origin-form (without the query), for routing: `/` when an
    /// absolute-form target had no path, `*` for asterisk-form.
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let pq = self.path.get(buf);
        let p = &pq[..pq.iter().position(|&b| b == b'?').unwrap_or(pq.len())];
        if p.is_empty() {
            b"/"
        } else {
            p
        }
    }

    /// The query (after `?`, without it), if the target had one.
    pub fn query<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        let pq = self.path.get(buf);
        pq.iter().position(|&b| b == b'?').map(|i| &pq[i + 1..])
    }

    /// The origin-form to forward, in up to two pieces: `(prefix, rest)` where `prefix` is
    /// `/` when an absolute-form target had an empty path (`http://a` or `http://a?q`).
    pub fn origin_form<'a>(&self, buf: &'a [u8]) -> (&'static [u8], &'a [u8]) {
        let pq = self.path.get(buf);
        if pq.first().is_some_and(|&b| b == b'/' || b == b'*') {
            (b"", pq)
        } else {
            (b"/", pq)
        }
    }

    /// The version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// All header lines, in order.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The name of header `i` as sent.
    pub fn header_name<'a>(&self, i: usize, buf: &'a [u8]) -> &'a [u8] {
        self.headers[i].name.get(buf)
    }

    /// The value of header `i`, trimmed of surrounding whitespace.
    pub fn header_value<'a>(&self, i: usize, buf: &'a [u8]) -> &'a [u8] {
        self.headers[i].value.get(buf)
    }

    /// The first header named `name` (case-insensitive), by index.
    pub fn find(&self, buf: &[u8], name: &[u8]) -> Option<usize> {
        header::find(&self.headers, buf, name)
    }

    /// Every header named `name` (case-insensitive), by index, in order.
    pub fn find_all<'a>(
        &'a self,
        buf: &'a [u8],
        name: &'a [u8],
    ) -> impl Iterator<Item = usize> + 'a {
        header::find_all(&self.headers, buf, name)
    }

    /// Every header of one known kind, by index, in order: e.g. the `Cookie` lines
    /// (there may be several), `X-Forwarded-For`, `Forwarded`.
    pub fn indices(&self, kind: HeaderKind) -> impl Iterator<Item = usize> + '_ {
        self.headers
            .iter()
            .enumerate()
            .filter(move |(_, h)| h.kind == kind)
            .map(|(i, _)| i)
    }

    /// The authority the request is for: the absolute-form target's authority if it had
    /// one, else the `Host` value; `None` only for HTTP/1.0 without Host.
    pub fn host<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.host.map(|s| s.get(buf))
    }

    /// Whether [`RequestHead::host`] came from an absolute-form target (the writer then
    /// replaces the `Host` line with it).
    pub fn host_from_target(&self) -> bool {
        self.target_form == TargetForm::Absolute
    }

    /// The index of the `Host` line, if there was one.
    pub fn host_index(&self) -> Option<usize> {
        self.host_index.map(usize::from)
    }

    /// How the body is framed.
    pub fn body(&self) -> BodyFraming {
        self.body
    }

    /// Whether the client wants the connection kept open after this exchange.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// `Expect: 100-continue` on HTTP/1.1.
    pub fn expect_continue(&self) -> bool {
        self.expect_continue
    }

    /// An upgrade request: HTTP/1.1 with an `Upgrade` field and `upgrade` in `Connection`.
    pub fn upgrade(&self) -> bool {
        self.upgrade
    }

    /// The tokens of the `Connection` fields but `keep-alive`, which names only a hop-by-hop
    /// field (the writer strips the fields they name).
    pub fn connection_tokens(&self) -> &[Span] {
        &self.connection_tokens
    }

    /// Whether `name` is listed in `Connection` (case-insensitive).
    pub fn connection_names(&self, buf: &[u8], name: &[u8]) -> bool {
        self.connection_tokens
            .iter()
            .any(|t| t.get(buf).eq_ignore_ascii_case(name))
    }

    /// The head's length in bytes (as returned in [`Parsed::Complete`]).
    pub fn head_len(&self) -> usize {
        self.head_len
    }
}

/// A cheap check before [`parse_request`] / [`crate::h1::parse_response`] on a partial
/// read: whether `buf` may hold a complete head, given that the first `scanned` bytes were
/// already known not to. It looks for the blank line (CRLF CRLF) in the new bytes only, so
/// a client trickling a head byte by byte costs linear, not quadratic, parsing time (hyper
/// has the same fast path). A `false` is exact; a `true` still needs the full parse.
///
/// A bare LF (one without its CR) and a bare CR (one followed by a byte other than LF) are a
/// `true` too: [`parse_request`] refuses them at once, and without this a head with one
/// would wait for its blank line, which may never come, so the client would get a 408 after
/// the header-read timeout instead of its 400 at once. A CR that is the last byte of `buf` is
/// not yet bare: its LF may be in the next read.
pub fn may_be_complete(buf: &[u8], scanned: usize) -> bool {
    // The LF of a blank line's `\n\r\n` may sit two bytes before the new ones, and a CR one
    // byte before the first new one (its successor).
    let from = scanned.min(buf.len()).saturating_sub(2);
    let new = &buf[from..];
    memchr::memchr_iter(b'\n', new).any(|i| {
        let i = from + i;
        i == 0 || buf[i - 1] != b'\r' || buf[i + 1..].starts_with(b"\r\n")
    }) || has_bare_cr(new)
}

/// Whether `bytes` hold a CR followed by a byte other than LF. Looked for only when a head
/// does not look complete yet (a head that arrives whole, the common case, never pays it):
/// such a head is refused at once instead of waiting for line feeds that may never come.
fn has_bare_cr(bytes: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', bytes).any(|i| bytes.get(i + 1).is_some_and(|&b| b != b'\n'))
}

/// Refuses any LF in a complete `head` that is not preceded by CR. httparse accepts a bare
/// LF as a line end (RFC 9112 §2.2 allows that only as a leniency, and a bare LF that one hop
/// takes as a line end and the next does not is a classic smuggling vector); a bare CR it
/// refuses itself, so a head it parsed whole needs only this one `memchr` pass.
///
/// Eight bytes at a time (SWAR): a word's LF bytes, less those whose preceding byte (the
/// word one byte earlier) is CR. Heads are short and have a line end every few dozen bytes,
/// where a `memchr` per line costs more in setting up each search than this whole pass.
#[inline]
pub(crate) fn check_bare_lf(head: &[u8]) -> Result<(), Error> {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // 0x80 in each byte of `x` that is zero, nothing elsewhere (exact, no borrow between
    // bytes: the sum of two 7-bit halves never carries out of its byte).
    let zero_bytes = |x: u64| !(((x & LO7).wrapping_add(LO7)) | x | LO7);
    let word = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(a)
    };
    if head.first() == Some(&b'\n') {
        return Err(Error::NewLine);
    }
    let mut at = 1;
    while at + 8 <= head.len() {
        let lf = zero_bytes(word(at) ^ 0x0a0a_0a0a_0a0a_0a0a);
        let cr_before = zero_bytes(word(at - 1) ^ 0x0d0d_0d0d_0d0d_0d0d);
        if lf & !cr_before != 0 {
            return Err(Error::NewLine);
        }
        at += 8;
    }
    for i in at..head.len() {
        if head[i] == b'\n' && head[i - 1] != b'\r' {
            return Err(Error::NewLine);
        }
    }
    Ok(())
}

/// Refuses a bare LF (one not preceded by CR) and a bare CR (one followed by a byte other
/// than LF) anywhere in `head`. A CR that is the last byte of `head` passes: on a partial
/// head its LF may be in the next read, and a complete head ends in LF.
///
/// Hand-written rather than left to httparse: httparse accepts a bare LF as a line end
/// (RFC 9112 §2.2 allows that only as a leniency, and a bare LF that one hop takes as a line
/// end and the next does not is a classic smuggling vector), and it refuses a bare CR only
/// as a fault of whatever part of the head it sits in. It is one `memchr2` pass that steps
/// over each CRLF pair whole, so a normal head costs one search per line: any LF the search
/// finds is one whose CR was not right before it.
#[inline]
pub(crate) fn check_line_ends(head: &[u8]) -> Result<(), Error> {
    match first_bare_line_end(head) {
        Some(_) => Err(Error::NewLine),
        None => Ok(()),
    }
}

/// Where the first bare LF or bare CR in `head` is (see [`check_line_ends`]).
#[inline]
fn first_bare_line_end(head: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(k) = memchr::memchr2(b'\r', b'\n', &head[at..]) {
        let i = at + k;
        if head[i] == b'\n' {
            return Some(i);
        }
        match head.get(i + 1) {
            Some(b'\n') => at = i + 2,
            Some(_) => return Some(i),
            None => return None,
        }
    }
    None
}

/// The error to report when httparse refused `buf` with `parser_error`: [`Error::NewLine`]
/// when the first fault in `buf` is a bare CR or LF, else `parser_error`. httparse stops at
/// the first byte it refuses and names the fault after the part of the head it was in (a
/// bare CR in the target is a bad target, in a value a bad value); this names every bare CR
/// for what it is. `parses` says whether httparse accepts a prefix of `buf` (without error,
/// complete or partial); it runs only on this error path.
pub(crate) fn line_end_fault_first(
    buf: &[u8],
    parser_error: Error,
    parses: impl FnOnce(&[u8]) -> bool,
) -> Error {
    match first_bare_line_end(buf) {
        Some(at) if parses(&buf[..at]) => Error::NewLine,
        _ => parser_error,
    }
}

/// Tells a version error apart: a well-formed `HTTP/x.y` we do not speak (505), the
/// HTTP/2 preface (505, so a driver may hand over to HTTP/2), or garbage (400).
pub(crate) fn version_error(buf: &[u8], request: bool) -> Error {
    if request && buf.starts_with(b"PRI * HTTP/2.0") {
        return Error::Http2Preface;
    }
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let line = &line[..line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len())];
    // A request line is exactly `method SP target SP version`; a status line starts with
    // the version.
    let v = if request {
        let mut parts = line.split(|&b| b == b' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_), Some(_), Some(v), None) => v,
            _ => b"",
        }
    } else {
        line.split(|&b| b == b' ').next().unwrap_or(b"")
    };
    match v {
        [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Error::VersionNotSupported
        }
        _ => Error::Version,
    }
}

/// The span of `part` in `buf`; an empty part gets an empty span at `at`.
fn span_in(buf: &[u8], part: &[u8], at: u32) -> Span {
    if part.is_empty() {
        Span { start: at, end: at }
    } else {
        Span::of(buf, part)
    }
}

/// Parses a request head at the start of `buf` into `out`.
///
/// On [`Parsed::Partial`] read more into the same buffer and call again. On an error,
/// answer [`Error::status`] and close the connection: the head cannot be trusted.
pub fn parse_request(buf: &[u8], out: &mut RequestHead) -> Result<Parsed, Error> {
    out.clear();
    if let Some(r) = strict_head::request(buf, &mut out.headers) {
        // The strict form (no bare LF possible in it), read as httparse would read it.
        if r.len > MAX_HEAD_LEN {
            return Err(Error::HeadTooLarge);
        }
        let authority = read_request_line(buf, r.method, r.target, r.version, out)?;
        let fields = read_request_fields(buf, out)?;
        decide_request(buf, authority, fields, out)?;
        out.head_len = r.len;
        return Ok(Parsed::Complete(r.len));
    }
    out.headers.clear();
    let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
        [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut raw)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return partial_request(buf, req.path),
        Err(e) => return Err(request_syntax_error(buf, e, req.method.is_none())),
    };
    if len > MAX_HEAD_LEN {
        return Err(Error::HeadTooLarge);
    }
    check_bare_lf(&buf[..len])?;
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        // httparse fills all three on Complete.
        return Err(Error::Target);
    };
    let authority = read_request_line(buf, method.as_bytes(), path.as_bytes(), version, out)?;
    for h in req.headers.iter() {
        let name = Span::of(buf, h.name.as_bytes());
        out.headers.push(Header {
            name,
            value: span_in(buf, h.value, name.end),
            kind: HeaderKind::of(h.name.as_bytes()),
        });
    }
    let fields = read_request_fields(buf, out)?;
    decide_request(buf, authority, fields, out)?;
    out.head_len = len;
    Ok(Parsed::Complete(len))
}

/// What to answer when httparse saw no complete head yet: a target or head already over its
/// limit, or a bare CR or LF, is refused at once rather than when the head completes.
#[inline]
fn partial_request(buf: &[u8], path: Option<&str>) -> Result<Parsed, Error> {
    if path.is_some_and(|p| p.len() > MAX_TARGET_LEN) {
        return Err(Error::TargetTooLong);
    }
    if buf.len() >= MAX_HEAD_LEN {
        return Err(Error::HeadTooLarge);
    }
    check_line_ends(buf)?;
    Ok(Parsed::Partial)
}

/// The error for a request head httparse refused; `no_method` says it failed before the end
/// of the method.
#[cold]
fn request_syntax_error(buf: &[u8], e: httparse::Error, no_method: bool) -> Error {
    let error = match e {
        httparse::Error::Token if no_method => Error::Method,
        httparse::Error::Token => Error::Target,
        httparse::Error::Version => version_error(buf, true),
        e => Error::from_httparse(e),
    };
    line_end_fault_first(buf, error, |prefix| {
        let mut raw: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
            [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, prefix, &mut raw)
            .is_ok()
    })
}

/// Records the method, target and version; returns the authority of an absolute-form
/// target, which replaces Host.
#[inline]
fn read_request_line(
    buf: &[u8],
    method: &[u8],
    path: &[u8],
    version: u8,
    out: &mut RequestHead,
) -> Result<Option<Span>, Error> {
    out.method = Method::from_bytes(method);
    out.method_span = Span::of(buf, method);
    if out.method == Method::Connect {
        return Err(Error::ConnectUnsupported);
    }
    if path.len() > MAX_TARGET_LEN {
        return Err(Error::TargetTooLong);
    }
    out.target = Span::of(buf, path);
    let t = target::parse_target(
        path,
        out.target.start as usize,
        out.method == Method::Options,
    )?;
    out.target_form = t.form;
    out.path = t.path;
    out.version = if version == 1 {
        Version::Http11
    } else {
        Version::Http10
    };
    Ok(t.authority)
}

/// What the header fields of a request say, for [`decide_request`].
#[derive(Default)]
struct RequestFields {
    framing: Framing,
    conn: ConnectionTokens,
    host_count: u32,
    expect_continue: bool,
    upgrade_field: bool,
}

/// Reads the fields of `out` (listed by either parser) that the proxy decides on.
#[inline]
fn read_request_fields(buf: &[u8], out: &mut RequestHead) -> Result<RequestFields, Error> {
    let mut f = RequestFields::default();
    for i in 0..out.headers.len() {
        let h = out.headers[i];
        let value = h.value.get(buf);
        match h.kind {
            HeaderKind::Host => {
                f.host_count += 1;
                out.host_index = u16::try_from(i).ok();
            }
            HeaderKind::ContentLength => f.framing.content_length(value),
            HeaderKind::TransferEncoding => f.framing.transfer_encoding(value),
            HeaderKind::Connection => header::read_connection(
                value,
                h.value.start,
                &mut f.conn,
                &mut out.connection_tokens,
            )?,
            HeaderKind::Expect => f.expect_continue = value.eq_ignore_ascii_case(b"100-continue"),
            HeaderKind::Upgrade => f.upgrade_field = true,
            _ => {}
        }
    }
    Ok(f)
}

/// Decides Host, the body's framing, keep-alive, `100-continue` and upgrade from the fields
/// read and the target's `authority`.
#[inline]
fn decide_request(
    buf: &[u8],
    authority: Option<Span>,
    f: RequestFields,
    out: &mut RequestHead,
) -> Result<(), Error> {
    let http10 = out.version == Version::Http10;
    // RFC 9112 §3.2: exactly one Host on HTTP/1.1, never two, always valid. hyper checks
    // none of this; the balancer routes on Host, so a second or a malformed one is refused.
    if f.host_count > 1 || (f.host_count == 0 && !http10) {
        return Err(Error::Host);
    }
    if let Some(i) = out.host_index {
        let v = out.headers[usize::from(i)].value;
        if !target::is_valid_host(v.get(buf)) {
            return Err(Error::Host);
        }
        out.host = Some(v);
    }
    if let Some(a) = authority {
        out.host = Some(a);
    }
    out.body = f.framing.finish(http10, BodyFraming::Empty)?;
    out.keep_alive = !f.conn.close && (!http10 || f.conn.keep_alive);
    out.expect_continue = f.expect_continue && !http10;
    out.upgrade = !http10 && f.upgrade_field && f.conn.upgrade;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<RequestHead, Error> {
        let mut h = RequestHead::new();
        match parse_request(raw, &mut h)? {
            Parsed::Complete(n) => {
                assert_eq!(n, h.head_len());
                Ok(h)
            }
            Parsed::Partial => panic!("partial: {}", String::from_utf8_lossy(raw)),
        }
    }

    fn err(raw: &[u8]) -> Error {
        match parse(raw) {
            Ok(_) => panic!("accepted: {}", String::from_utf8_lossy(raw)),
            Err(e) => e,
        }
    }

    /// The word-wise bare-LF check against a byte-wise one: every placement of an LF, a CR
    /// before it or not, in heads of every length around the word size.
    #[test]
    fn bare_lf_check_matches_byte_check() {
        let reference = |h: &[u8]| {
            h.iter()
                .enumerate()
                .all(|(i, &b)| b != b'\n' || (i > 0 && h[i - 1] == b'\r'))
        };
        for len in 0..40 {
            for lf_at in 0..len {
                for cr in [false, true] {
                    for other_lf in [None, Some(0), Some(len / 2), Some(len - 1)] {
                        let mut h = vec![b'a'; len];
                        if let Some(o) = other_lf {
                            h[o] = b'\n';
                            if o > 0 {
                                h[o - 1] = b'\r';
                            }
                        }
                        h[lf_at] = b'\n';
                        if cr && lf_at > 0 {
                            h[lf_at - 1] = b'\r';
                        }
                        assert_eq!(check_bare_lf(&h).is_ok(), reference(&h), "{h:?}");
                    }
                }
            }
        }
        // Bytes that differ from CR or LF in one bit only.
        for b in [0x0b, 0x08, 0x0e, 0x8a, 0x0c, 0x8d, 0x2d, 0x4a] {
            let mut h = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
            h[4] = b;
            assert!(check_bare_lf(&h).is_ok());
            h[14] = b;
            assert!(check_bare_lf(&h).is_err(), "{b:#x} before an LF");
        }
    }

    #[test]
    fn method_names_round_trip() {
        for name in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT",
        ] {
            assert_eq!(Method::from_bytes(name.as_bytes()).as_str(), Some(name));
        }
        assert_eq!(Method::from_bytes(b"get").as_str(), None);
        assert_eq!(Method::from_bytes(b"PROPFIND").as_str(), None);
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /a/b?c=1 HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n";
        let h = parse(raw).unwrap();
        assert_eq!(h.method(), Method::Get);
        assert_eq!(h.method_bytes(raw), b"GET");
        assert_eq!(h.target(raw), b"/a/b?c=1");
        assert_eq!(h.path(raw), b"/a/b");
        assert_eq!(h.query(raw), Some(&b"c=1"[..]));
        assert_eq!(h.version(), Version::Http11);
        assert_eq!(h.host(raw), Some(&b"a.example"[..]));
        assert_eq!(h.host_index(), Some(0));
        assert!(!h.host_from_target());
        assert_eq!(h.headers().len(), 2);
        assert_eq!(h.header_name(1, raw), b"Accept");
        assert_eq!(h.header_value(1, raw), b"*/*");
        assert_eq!(h.body(), BodyFraming::Empty);
        assert!(h.keep_alive());
        assert!(!h.expect_continue());
        assert!(!h.upgrade());
        assert_eq!(h.head_len(), raw.len());
    }

    #[test]
    fn partial_until_blank_line() {
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        let mut h = RequestHead::new();
        let head_len = raw.len() - 3;
        for cut in 0..head_len {
            assert_eq!(
                parse_request(&raw[..cut], &mut h),
                Ok(Parsed::Partial),
                "cut at {cut}"
            );
        }
        for cut in head_len..=raw.len() {
            assert_eq!(
                parse_request(&raw[..cut], &mut h),
                Ok(Parsed::Complete(head_len))
            );
            assert_eq!(h.body(), BodyFraming::Length(3));
        }
    }

    #[test]
    fn methods() {
        let cases: &[(&[u8], Method, bool)] = &[
            (b"GET", Method::Get, true),
            (b"HEAD", Method::Head, true),
            (b"POST", Method::Post, false),
            (b"PUT", Method::Put, true),
            (b"DELETE", Method::Delete, true),
            (b"OPTIONS", Method::Options, true),
            (b"TRACE", Method::Trace, true),
            (b"PATCH", Method::Patch, false),
            (b"PROPFIND", Method::Other, false),
            (b"get", Method::Other, false),
        ];
        for &(m, want, idem) in cases {
            let mut raw = m.to_vec();
            raw.extend_from_slice(b" / HTTP/1.1\r\nHost: a\r\n\r\n");
            let h = parse(&raw).unwrap();
            assert_eq!(h.method(), want);
            assert_eq!(h.method_bytes(&raw), m);
            assert_eq!(want.is_idempotent(), idem, "{want:?}");
        }
        assert!(!Method::Connect.is_idempotent());
    }

    /// Accept/refuse table for heads. Each row: raw head, expected result.
    #[test]
    fn head_table() {
        use BodyFraming::*;
        type Case = (&'static [u8], Result<BodyFraming, Error>);
        let cases: &[Case] = &[
            // Framing
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", Ok(Length(5))),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", Ok(Length(0))),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", Ok(Length(7))),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:   5  \r\n\r\n", Ok(Length(5))),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", Ok(Length(5))),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Err(Error::ContentLengthConflict)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", Err(Error::ContentLength)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", Err(Error::ContentLength)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", Err(Error::ContentLength)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 0\r\n\r\n", Err(Error::ContentLength)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", Err(Error::ContentLength)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", Err(Error::ContentLength)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", Ok(Chunked)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n", Ok(Chunked)),
            (b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n", Ok(Chunked)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", Err(Error::TransferEncoding)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", Err(Error::TransferEncoding)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", Err(Error::TransferEncoding)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Err(Error::TransferCodingUnsupported)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Err(Error::TransferEncoding)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", Err(Error::HeaderValue)),
            // CL.TE and TE.CL
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", Err(Error::ContentLengthWithTransferEncoding)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", Err(Error::ContentLengthWithTransferEncoding)),
            // TE on 1.0
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Err(Error::TransferEncodingHttp10)),
            // Header syntax: leading whitespace in a name (obs-fold on the first line),
            // whitespace before the colon, no colon, obs-fold, control bytes in values.
            (b"POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n", Err(Error::HeaderName)),
            (b"POST / HTTP/1.1\r\nHost: a\r\n\tTransfer-Encoding: chunked\r\n\r\n", Err(Error::HeaderName)),
            (b"POST / HTTP/1.1\r\n Host: a\r\n\r\n", Err(Error::HeaderName)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", Err(Error::HeaderName)),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", Err(Error::HeaderName)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", Err(Error::HeaderName)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n", Err(Error::HeaderName)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\0b\r\n\r\n", Err(Error::HeaderValue)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", Err(Error::NewLine)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n", Err(Error::HeaderValue)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\n\r\n", Ok(Empty)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", Err(Error::HeaderName)),
            (b"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", Err(Error::HeaderName)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", Ok(Empty)),
            // Line endings: bare LF anywhere, bare CR.
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", Err(Error::NewLine)),
            (b"GET / HTTP/1.1\r\nHost: a\n\r\n", Err(Error::NewLine)),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", Err(Error::NewLine)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\nX-B: 2\r\n\r\n", Err(Error::NewLine)),
            (b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Err(Error::NewLine)),
            (b"GET / HTTP/1.1\rHost: a\r\n\r\n", Err(Error::NewLine)),
            (b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(Empty)),
            // Request line.
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Err(Error::Target)),
            (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Err(Error::NewLine)),
            (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", Err(Error::Method)),
            (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Err(Error::Version)),
            (b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", Err(Error::Target)),
            (b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", Err(Error::Target)),
            (b"GET a HTTP/1.1\r\nHost: a\r\n\r\n", Err(Error::Target)),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Err(Error::VersionNotSupported)),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(Error::VersionNotSupported)),
            (b"GET / HTTP/1.x\r\nHost: a\r\n\r\n", Err(Error::Version)),
            (b"GET / http/1.1\r\nHost: a\r\n\r\n", Err(Error::Version)),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Err(Error::Http2Preface)),
            (b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", Err(Error::ConnectUnsupported)),
            (b"GET a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n", Err(Error::Target)),
            (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Ok(Empty)),
            (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", Err(Error::Target)),
            // Host
            (b"GET / HTTP/1.1\r\n\r\n", Err(Error::Host)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Err(Error::Host)),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Err(Error::Host)),
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", Err(Error::Host)),
            (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Err(Error::Host)),
            (b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", Err(Error::Host)),
            (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Err(Error::Host)),
            (b"GET http://a.example/ HTTP/1.1\r\n\r\n", Err(Error::Host)),
            (b"GET http://a.example/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Err(Error::Host)),
            (b"GET / HTTP/1.0\r\n\r\n", Ok(Empty)),
            (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", Err(Error::Host)),
            // Connection values must be tokens.
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, \"x\"\r\n\r\n", Err(Error::HeaderValue)),
        ];
        for (raw, want) in cases {
            let got = parse(raw).map(|h| h.body());
            assert_eq!(
                got,
                *want,
                "{}",
                String::from_utf8_lossy(raw).escape_debug()
            );
        }
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS - 1 {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = raw.clone();
        ok.extend_from_slice(b"\r\n");
        assert_eq!(parse(&ok).unwrap().headers().len(), MAX_HEADERS);
        raw.extend_from_slice(b"X-Last: v\r\n\r\n");
        let e = err(&raw);
        assert_eq!(e, Error::TooManyHeaders);
        assert_eq!(e.status(), 431);
    }

    #[test]
    fn head_too_large_and_target_too_long() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
        raw.resize(MAX_HEAD_LEN + 10, b'a');
        let mut h = RequestHead::new();
        assert_eq!(parse_request(&raw, &mut h), Err(Error::HeadTooLarge));
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&raw, &mut h), Err(Error::HeadTooLarge));

        let mut raw = b"GET /".to_vec();
        raw.resize(MAX_TARGET_LEN + 10, b'a');
        assert_eq!(parse_request(&raw, &mut h), Ok(Parsed::Partial));
        raw.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(parse_request(&raw, &mut h), Err(Error::TargetTooLong));
        assert_eq!(Error::TargetTooLong.status(), 414);
    }

    #[test]
    fn bare_lf_refused_while_partial() {
        let mut h = RequestHead::new();
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\nHost: a", &mut h),
            Err(Error::NewLine)
        );
    }

    #[test]
    fn keep_alive_rules() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
                true,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n", false),
        ];
        for (raw, want) in cases {
            assert_eq!(
                parse(raw).unwrap().keep_alive(),
                *want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn expect_and_upgrade() {
        let h = parse(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap();
        assert!(h.expect_continue());
        let h =
            parse(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap();
        assert!(!h.expect_continue(), "HTTP/1.0 must ignore 100-continue");
        let h = parse(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n").unwrap();
        assert!(!h.expect_continue());

        let raw =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let h = parse(raw).unwrap();
        assert!(h.upgrade());
        assert!(h.connection_names(raw, b"upgrade"));
        let h = parse(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").unwrap();
        assert!(!h.upgrade(), "Upgrade without Connection: upgrade");
        let h = parse(b"GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n")
            .unwrap();
        assert!(!h.upgrade(), "no upgrades on HTTP/1.0");
    }

    #[test]
    fn absolute_form_replaces_host() {
        let raw = b"GET http://b.example:8080/p?q HTTP/1.1\r\nHost: a.example\r\n\r\n";
        let h = parse(raw).unwrap();
        assert_eq!(h.target_form(), TargetForm::Absolute);
        assert!(h.host_from_target());
        assert_eq!(h.host(raw), Some(&b"b.example:8080"[..]));
        assert_eq!(h.host_index(), Some(0));
        assert_eq!(h.path(raw), b"/p");
        assert_eq!(h.query(raw), Some(&b"q"[..]));
        assert_eq!(h.origin_form(raw), (&b""[..], &b"/p?q"[..]));

        let raw = b"GET http://b.example?q HTTP/1.1\r\nHost: b.example\r\n\r\n";
        let h = parse(raw).unwrap();
        assert_eq!(h.path(raw), b"/");
        assert_eq!(h.origin_form(raw), (&b"/"[..], &b"?q"[..]));
    }

    #[test]
    fn cookie_and_forwarding_indices() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nX-Forwarded-For: 10.0.0.1\r\ncookie: JSESSIONID=X.jvm1\r\nForwarded: for=10.0.0.1\r\n\r\n";
        let h = parse(raw).unwrap();
        assert_eq!(
            h.indices(HeaderKind::Cookie).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(
            h.indices(HeaderKind::XForwardedFor).collect::<Vec<_>>(),
            vec![2]
        );
        assert_eq!(
            h.indices(HeaderKind::Forwarded).collect::<Vec<_>>(),
            vec![4]
        );
        assert_eq!(h.find(raw, b"COOKIE"), Some(1));
        assert_eq!(h.find_all(raw, b"cookie").collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(h.header_value(3, raw), b"JSESSIONID=X.jvm1");
        assert_eq!(h.find(raw, b"x-missing"), None);
    }

    #[test]
    fn pipelined_requests_follow_the_body() {
        let raw = b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut h = RequestHead::new();
        let Parsed::Complete(n) = parse_request(raw, &mut h).unwrap() else {
            panic!()
        };
        assert_eq!(h.body(), BodyFraming::Length(3));
        let next = &raw[n + 3..];
        let Parsed::Complete(m) = parse_request(next, &mut h).unwrap() else {
            panic!()
        };
        assert_eq!(h.target(next), b"/2");
        assert_eq!(m, next.len());
    }

    #[test]
    fn reuse_keeps_capacity_and_allocation() {
        let raw =
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-a\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
        let mut h = RequestHead::new();
        parse_request(raw, &mut h).unwrap();
        let (hp, hc) = (h.headers.as_ptr(), h.headers.capacity());
        let (tp, tc) = (h.connection_tokens.as_ptr(), h.connection_tokens.capacity());
        for _ in 0..1000 {
            assert_eq!(parse_request(raw, &mut h), Ok(Parsed::Complete(raw.len())));
            assert_eq!(h.headers.as_ptr(), hp);
            assert_eq!(h.headers.capacity(), hc);
            assert_eq!(h.connection_tokens.as_ptr(), tp);
            assert_eq!(h.connection_tokens.capacity(), tc);
        }
        h.clear();
        assert!(h.headers().is_empty());
        assert_eq!(h.headers.capacity(), hc);
    }

    #[test]
    fn may_be_complete_scans_only_new_bytes() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..raw.len() {
            assert!(!may_be_complete(&raw[..cut], 0), "cut {cut}");
        }
        // Every way of having scanned a prefix before the last byte arrived.
        for scanned in 0..raw.len() {
            assert!(may_be_complete(raw, scanned), "scanned {scanned}");
        }
        assert!(!may_be_complete(raw, raw.len() + 10));
        assert!(!may_be_complete(b"", 0));
    }

    #[test]
    fn may_be_complete_on_a_bare_lf_so_the_parser_refuses_it() {
        // A head ended by bare LFs never shows a CRLF CRLF: without the `true` the driver
        // would wait for the header-read timeout (408) instead of answering 400 at once.
        for raw in [
            &b"GET / HTTP/1.1\nHost: a\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\n",
            b"GET / HTTP/1.1\r\nX-A: a\nb\r\n",
        ] {
            assert!(may_be_complete(raw, 0), "{raw:?}");
            let mut head = RequestHead::new();
            assert!(parse_request(raw, &mut head).is_err(), "{raw:?}");
        }
        // A CRLF that is not the end of the head is still a `false`.
        assert!(!may_be_complete(b"GET / HTTP/1.1\r\nHost: a\r\n", 0));
    }

    #[test]
    fn line_end_check() {
        let cases: &[(&[u8], Result<(), Error>)] = &[
            (b"", Ok(())),
            (b"a\r\nb\r\n", Ok(())),
            (b"a\r\nb\r", Ok(())),
            (b"\r", Ok(())),
            (b"\n", Err(Error::NewLine)),
            (b"a\r\nb\n", Err(Error::NewLine)),
            (b"a\n\r\n", Err(Error::NewLine)),
            (b"a\rb", Err(Error::NewLine)),
            (b"a\r\r\n", Err(Error::NewLine)),
            (b"\r\n\rx", Err(Error::NewLine)),
        ];
        for (raw, want) in cases {
            assert_eq!(check_line_ends(raw), *want, "{raw:?}");
        }
    }

    /// Feeds `raw` one byte per read the way the driver does (parse only when
    /// [`may_be_complete`] says so) and says after how many bytes the head was refused.
    fn refused_after(raw: &[u8]) -> Option<(usize, Error)> {
        let mut h = RequestHead::new();
        let mut scanned = 0;
        for end in 1..=raw.len() {
            let buf = &raw[..end];
            if may_be_complete(buf, scanned) {
                match parse_request(buf, &mut h) {
                    Err(e) => return Some((end, e)),
                    Ok(Parsed::Complete(_)) => return None,
                    Ok(Parsed::Partial) => {}
                }
            }
            scanned = end;
        }
        None
    }

    /// A bare CR (RFC 9112 §2.2) is refused as soon as the byte after it arrives, wherever
    /// it is and whether or not the blank line has come; a CR that is the last byte so far
    /// waits for its LF.
    #[test]
    #[rustfmt::skip]
    fn bare_cr_table() {
        use Parsed::*;
        type Case = (&'static str, &'static [u8], Result<Parsed, Error>);
        let cases: &[Case] = &[
            ("CRLF throughout", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(Complete(27))),
            ("before the method", b"\rGET / HTTP/1.1\r\n", Err(Error::NewLine)),
            ("in the method", b"GE\rT / HTTP/1.1\r\n", Err(Error::NewLine)),
            ("in the target", b"GET /a\rb HTTP/1.1\r\n", Err(Error::NewLine)),
            ("before the version", b"GET /\r HTTP/1.1\r\n", Err(Error::NewLine)),
            ("after the version", b"GET / HTTP/1.1\rHost: a\r\n", Err(Error::NewLine)),
            ("after the version, head complete", b"GET / HTTP/1.1\rHost: a\r\n\r\n", Err(Error::NewLine)),
            ("in a header name", b"GET / HTTP/1.1\r\nHost: a\r\nX-\rA: 1\r\n", Err(Error::NewLine)),
            ("at the start of a line", b"GET / HTTP/1.1\r\nHost: a\r\n\rX-A: 1\r\n", Err(Error::NewLine)),
            ("before a value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A:\r b\r\n", Err(Error::NewLine)),
            ("in a header value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n", Err(Error::NewLine)),
            ("in a header value, head complete", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", Err(Error::NewLine)),
            ("CR CR LF after a value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\r\n", Err(Error::NewLine)),
            ("in the blank line", b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", Err(Error::NewLine)),
            ("obs-fold after a bare CR", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r 2\r\n", Err(Error::NewLine)),
            ("obs-fold after a CRLF", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", Err(Error::HeaderName)),
            ("last byte, after the version", b"GET / HTTP/1.1\r", Ok(Partial)),
            ("last byte, after a value", b"GET / HTTP/1.1\r\nHost: a\r", Ok(Partial)),
            ("last byte, of the blank line", b"GET / HTTP/1.1\r\nHost: a\r\n\r", Ok(Partial)),
            ("last byte, in the target (no LF may follow there)", b"GET /a\r", Err(Error::Target)),
            ("a bare CR after an earlier fault", b"GET / HTTP/1.2\r\nHost: a\rb", Err(Error::VersionNotSupported)),
        ];
        for (name, raw, want) in cases {
            let mut h = RequestHead::new();
            assert_eq!(parse_request(raw, &mut h), *want, "{name}");
            if *want == Err(Error::NewLine) {
                let at = raw.windows(2).position(|w| w[0] == b'\r' && w[1] != b'\n').unwrap();
                assert_eq!(refused_after(raw), Some((at + 2, Error::NewLine)), "{name}");
            }
        }
        assert_eq!(Error::NewLine.status(), 400);
    }

    /// Every place a bare CR can fall in a head: refused with [`Error::NewLine`] by the
    /// driver's loop as soon as the byte after it is read; a CR as the last byte read is
    /// never called a bad line ending.
    #[test]
    fn bare_cr_anywhere_is_refused_on_the_next_byte() {
        let head = b"POST /a/b?c=d HTTP/1.1\r\nHost: a.example\r\nX-A: 1 2\r\nX-Empty:\r\n\r\n";
        for p in 0..head.len() {
            for next in [b'x', b' ', b'\t', b'\r', b':', 0, 0xff] {
                let mut raw = head[..p].to_vec();
                raw.extend_from_slice(&[b'\r', next]);
                let at = if p > 0 && head[p - 1] == b'\r' {
                    p + 1
                } else {
                    p + 2
                };
                assert_eq!(refused_after(&raw), Some((at, Error::NewLine)), "{raw:?}");
                let mut h = RequestHead::new();
                assert_eq!(parse_request(&raw, &mut h), Err(Error::NewLine), "{raw:?}");
                assert!(may_be_complete(&raw, p), "{raw:?}");
            }
            if p == 0 || head[p - 1] != b'\r' {
                let mut raw = head[..p].to_vec();
                raw.push(b'\r');
                let mut h = RequestHead::new();
                assert_ne!(parse_request(&raw, &mut h), Err(Error::NewLine), "{raw:?}");
                assert!(!may_be_complete(&raw, 0), "{raw:?}");
            }
        }
    }

    #[test]
    fn bare_cr_after_the_http2_preface_keeps_it_a_preface() {
        let raw = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\r\x00";
        let mut h = RequestHead::new();
        assert_eq!(parse_request(raw, &mut h), Err(Error::Http2Preface));
    }
}
