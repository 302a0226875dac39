//! Heads in their strict form, read without httparse: the common case of every request and
//! response on the native path.
//!
//! Why by hand: httparse handles every form the grammar and its leniencies allow, one byte at
//! a time for names and with setup per field for values; a head of a few short fields cost
//! about 190 instructions per field there, a tenth of a proxied request's own instructions.
//! Here a field is a table lookup per name byte and eight value bytes per step.
//!
//! The strict form is a subset of what httparse accepts: a request line `METHOD SP target SP
//! HTTP/1.x CRLF` or a status line `HTTP/1.x SP 3DIGIT SP reason CRLF` (reason non-empty,
//! visible ASCII and spaces); fields `name ":" *SP value CRLF` with a token name and a
//! non-empty value of visible ASCII and inner spaces; an empty line; at most
//! [`MAX_HEADERS`] fields. Anything else (a tab, a byte above 0x7e, an empty value, a bare
//! LF, a head not yet complete) returns `None` and the caller parses with httparse, which
//! decides: accept, refuse or wait. What is read here is what httparse would read from the
//! same bytes (the tests compare the two), so which parser ran changes nothing downstream.

/// A request line in the strict form; its fields are in the caller's list.
pub(crate) struct StrictRequest<'b> {
    pub(crate) method: &'b [u8],
    pub(crate) target: &'b [u8],
    /// 1 for HTTP/1.1, 0 for HTTP/1.0 (httparse's minor version).
    pub(crate) version: u8,
    /// The head's length, the empty line included.
    pub(crate) len: usize,
}

/// A status line in the strict form; its fields are in the caller's list.
pub(crate) struct StrictResponse<'b> {
    pub(crate) version: u8,
    pub(crate) code: u16,
    pub(crate) reason: &'b [u8],
    pub(crate) len: usize,
}

use crate::h1::header::{is_tchar, Header, HeaderKind, Span, MAX_HEADERS};

/// Reads `METHOD SP target SP HTTP/1.x CRLF` and the fields of a request at the start of
/// `buf`, the fields appended to `headers` (partly, when it returns `None`).
pub(crate) fn request<'b>(buf: &'b [u8], headers: &mut Vec<Header>) -> Option<StrictRequest<'b>> {
    let method_end = token_end(buf, 0);
    if method_end == 0 || buf.get(method_end) != Some(&b' ') {
        return None;
    }
    let target_start = method_end + 1;
    let target_end = visible_end(buf, target_start);
    if target_end == target_start || buf.get(target_end) != Some(&b' ') {
        return None;
    }
    let version = version(buf, target_end + 1)?;
    let at = crlf(buf, target_end + 9)?;
    let len = fields(buf, at, headers)?;
    Some(StrictRequest {
        method: &buf[..method_end],
        target: &buf[target_start..target_end],
        version,
        len,
    })
}

/// Reads `HTTP/1.x SP 3DIGIT SP reason CRLF` and the fields of a response at the start of
/// `buf`, the fields appended to `headers` (partly, when it returns `None`).
pub(crate) fn response<'b>(buf: &'b [u8], headers: &mut Vec<Header>) -> Option<StrictResponse<'b>> {
    let version = version(buf, 0)?;
    let line = buf.get(8..13)?;
    if line[0] != b' ' || line[4] != b' ' || !line[1..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = line[1..4]
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    let reason_end = text_end(buf, 13);
    if reason_end == 13 {
        return None;
    }
    let at = crlf(buf, reason_end)?;
    let len = fields(buf, at, headers)?;
    Some(StrictResponse {
        version,
        code,
        reason: &buf[13..reason_end],
        len,
    })
}

/// `HTTP/1.1` (1) or `HTTP/1.0` (0) at `at`.
fn version(buf: &[u8], at: usize) -> Option<u8> {
    match buf.get(at..at + 8)? {
        b"HTTP/1.1" => Some(1),
        b"HTTP/1.0" => Some(0),
        _ => None,
    }
}

/// The position after a CRLF at `at`.
#[inline]
fn crlf(buf: &[u8], at: usize) -> Option<usize> {
    (buf.get(at..at + 2)? == b"\r\n").then_some(at + 2)
}

/// The fields from `at` to the empty line, appended to `headers`; the head's length.
fn fields(buf: &[u8], mut at: usize, headers: &mut Vec<Header>) -> Option<usize> {
    // Spans are u32: a buffer longer than that is not read here.
    u32::try_from(buf.len()).ok()?;
    let n = buf.len();
    // A span of a buffer that fits in u32 (checked above).
    let span = |start: usize, end: usize| Span {
        start: start as u32,
        end: end as u32,
    };
    loop {
        if at < n && buf[at] == b'\r' {
            return crlf(buf, at);
        }
        let name_start = at;
        at = token_end(buf, at);
        if at == name_start || at >= n || buf[at] != b':' || headers.len() == MAX_HEADERS {
            return None;
        }
        let name_end = at;
        at += 1;
        while at < n && buf[at] == b' ' {
            at += 1;
        }
        let value_start = at;
        let text_end = text_end(buf, value_start);
        if text_end == value_start {
            return None;
        }
        let next = crlf(buf, text_end)?;
        // Trailing spaces are not part of the value (httparse trims them too); the value
        // starts with a visible byte, so one is left.
        let mut value_end = text_end;
        while buf[value_end - 1] == b' ' {
            value_end -= 1;
        }
        headers.push(Header {
            name: span(name_start, name_end),
            value: span(value_start, value_end),
            kind: HeaderKind::of(&buf[name_start..name_end]),
        });
        at = next;
    }
}

/// The end of the run of token bytes from `at`. Byte by byte: names are short (a word-wide
/// check measured slower on the few bytes of `Host` or `Date`).
#[inline]
fn token_end(buf: &[u8], mut at: usize) -> usize {
    while at < buf.len() && is_tchar(buf[at]) {
        at += 1;
    }
    at.min(buf.len())
}

/// The end of the run of visible ASCII (0x21..=0x7e) from `at`.
#[inline]
fn visible_end(buf: &[u8], at: usize) -> usize {
    buf[at.min(buf.len())..]
        .iter()
        .position(|&b| !(0x21..=0x7e).contains(&b))
        .map_or(buf.len(), |p| at + p)
}

/// The end of the run of text (visible ASCII and spaces, 0x20..=0x7e) from `at`, or `at`
/// itself when the run would start with a space. Eight bytes at a time: a value is most
/// of a field's bytes.
#[inline]
fn text_end(buf: &[u8], at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    if buf.get(at) == Some(&b' ') {
        return at;
    }
    let mut i = at;
    while i + 8 <= buf.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[i..i + 8]);
        let x = u64::from_le_bytes(w);
        // 0x80 in each byte below 0x20 (the lowest flagged byte is exact: a borrow only
        // reaches the bytes above a flagged one), and in each byte of 0x7f or above (exact).
        let low = x.wrapping_sub(ONES * 0x20) & !x & HI;
        let high = ((x & LO7).wrapping_add(ONES) | x) & HI;
        let stop = low | high;
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    buf[i..]
        .iter()
        .position(|&b| !(0x20..=0x7e).contains(&b))
        .map_or(buf.len(), |p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    /// httparse's reading of a complete request head: method, target, version, fields, length.
    type Reading = (Vec<u8>, Vec<u8>, u8, Vec<(Vec<u8>, Vec<u8>)>, usize);

    /// httparse's fields as owned `(name, value)` pairs.
    fn owned(headers: &[httparse::Header<'_>]) -> Vec<(Vec<u8>, Vec<u8>)> {
        headers
            .iter()
            .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
            .collect()
    }

    fn httparse_request(buf: &[u8]) -> Option<Reading> {
        let mut raw = [const { MaybeUninit::uninit() }; 64];
        let mut req = httparse::Request::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, buf, &mut raw)
        {
            Ok(httparse::Status::Complete(len)) => len,
            _ => return None,
        };
        let fields = owned(req.headers);
        Some((
            req.method?.as_bytes().to_vec(),
            req.path?.as_bytes().to_vec(),
            req.version?,
            fields,
            len,
        ))
    }

    fn listed(buf: &[u8], headers: &[Header]) -> Vec<(Vec<u8>, Vec<u8>)> {
        headers
            .iter()
            .map(|h| (h.name.get(buf).to_vec(), h.value.get(buf).to_vec()))
            .collect()
    }

    fn strict_request(buf: &[u8]) -> Option<Reading> {
        let mut headers = Vec::new();
        let r = request(buf, &mut headers)?;
        let fields = listed(buf, &headers);
        Some((
            r.method.to_vec(),
            r.target.to_vec(),
            r.version,
            fields,
            r.len,
        ))
    }

    /// Every input read here is read the same by httparse.
    fn agrees(buf: &[u8]) -> bool {
        match strict_request(buf) {
            None => true,
            Some(mine) => httparse_request(buf) == Some(mine),
        }
    }

    #[test]
    fn strict_requests_are_read_as_httparse_reads_them() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:19090\r\nuser-agent: h2load nghttp2/1.52.0\r\ncookie: JSESSIONID=0123456789ABCDEF.jvm2\r\n\r\n",
            b"POST /a?b=c HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nX-A:b\r\nX-B:   c d  \r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        ];
        for c in cases {
            let mine = strict_request(c);
            assert!(mine.is_some(), "{:?}", String::from_utf8_lossy(c));
            assert_eq!(
                mine,
                httparse_request(c),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let b = b"GET / HTTP/1.1\r\nX-B:   c d  \r\nHost: h\r\n\r\n";
        let mut headers = Vec::new();
        request(b, &mut headers).unwrap();
        assert_eq!(headers[0].value.get(b), b"c d");
        assert_eq!(headers[0].kind, HeaderKind::Other);
        assert_eq!(headers[1].kind, HeaderKind::Host);
    }

    #[test]
    fn forms_outside_the_strict_one_go_to_httparse() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \t\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\tb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",
            b"GET / HTTP/1.1\r\nX : a\r\n\r\n",
            b"GET / HTTP/1.1\r\n X: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        ];
        for c in cases {
            assert!(
                request(c, &mut Vec::new()).is_none(),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let many: Vec<u8> = [
            &b"GET / HTTP/1.1\r\n"[..],
            &b"X: 1\r\n".repeat(MAX_HEADERS + 1),
            b"\r\n",
        ]
        .concat();
        assert!(request(&many, &mut Vec::new()).is_none());
    }

    #[test]
    fn every_prefix_and_every_one_byte_change_agrees_with_httparse() {
        let base: &[u8] = b"GET /p?q HTTP/1.1\r\nHost: h:1\r\nCookie: a=b; JSESSIONID=X.jvm1 \r\nX-Long-Header-Name-17: 0123456789abcdefghij klm\r\n\r\n";
        for end in 0..=base.len() {
            assert!(agrees(&base[..end]), "prefix {end}");
        }
        let bytes: Vec<u8> = (0..=255).collect();
        for at in 0..base.len() {
            for &b in &bytes {
                let mut c = base.to_vec();
                c[at] = b;
                assert!(agrees(&c), "{:?}", String::from_utf8_lossy(&c));
            }
        }
    }

    #[test]
    fn text_end_stops_at_the_first_byte_outside_text() {
        for len in 0..24 {
            for bad in [0u8, b'\t', b'\r', b'\n', 0x1f, 0x7f, 0x80, 0xff] {
                let mut v = vec![b'a'; 24];
                v[len] = bad;
                assert_eq!(text_end(&v, 0), len, "{len} {bad}");
            }
        }
        assert_eq!(text_end(b"a b c", 0), 5);
        assert_eq!(text_end(b" a", 0), 0);
    }

    /// httparse's reading of a complete response head: version, code, reason, fields, length.
    type ResponseReading = (u8, u16, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>, usize);

    fn httparse_response(buf: &[u8]) -> Option<ResponseReading> {
        let mut raw = [const { MaybeUninit::uninit() }; 64];
        let mut res = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, buf, &mut raw)
        {
            Ok(httparse::Status::Complete(len)) => len,
            _ => return None,
        };
        let fields = owned(res.headers);
        Some((
            res.version?,
            res.code?,
            res.reason?.as_bytes().to_vec(),
            fields,
            len,
        ))
    }

    #[test]
    fn responses_agree_with_httparse() {
        let base: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 100\r\nSet-Cookie: JSESSIONID=65eaca7f.jvm2; Path=/; HttpOnly\r\n\r\n";
        let read = |c: &[u8]| {
            let mut headers = Vec::new();
            response(c, &mut headers).map(|r| {
                (
                    r.version,
                    r.code,
                    r.reason.to_vec(),
                    listed(c, &headers),
                    r.len,
                )
            })
        };
        assert!(read(base).is_some());
        for end in 0..=base.len() {
            if let Some(mine) = read(&base[..end]) {
                assert_eq!(Some(mine), httparse_response(&base[..end]), "prefix {end}");
            }
        }
        for at in 0..base.len() {
            for b in 0..=255u8 {
                let mut c = base.to_vec();
                c[at] = b;
                if let Some(mine) = read(&c) {
                    assert_eq!(
                        Some(mine),
                        httparse_response(&c),
                        "{:?}",
                        String::from_utf8_lossy(&c)
                    );
                }
            }
        }
        for c in [
            &b"HTTP/1.1 200 \r\n\r\n"[..],
            b"HTTP/1.1 200\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 caf\xc3\xa9\r\n\r\n",
        ] {
            assert!(read(c).is_none(), "{:?}", String::from_utf8_lossy(c));
        }
    }
}
