//! The request target (RFC 9112 §3.2) and the syntax of `Host`.
//!
//! Accepted forms:
//! - origin-form `/path?query`, the normal case;
//! - absolute-form `http://host[:port]/path?query` (also `https`): its authority replaces the
//!   `Host` field for routing and for the forwarded request, as RFC 9112 §3.2.2 requires;
//! - asterisk-form `*`, only with `OPTIONS`.
//!
//! Refused: authority-form (`host:port`, only meaningful for CONNECT, which we do not
//! tunnel), any other scheme, userinfo in the authority (RFC 9110 §4.2.4 deprecates it and
//! it is a phishing and confusion vector), a fragment (`#` never belongs in a request line).
//!
//! The byte rules are a subset of hyper's (`http::Uri`), so we are never more lenient:
//! - in the path, hyper's ASCII set (which tolerates `"`, `{`, `}`, `|` for clients that
//!   send JSON unencoded), with `%` required to start a valid `%XX` escape;
//! - in the query, hyper's set as is (sloppy `%` is common in queries and harmless to us);
//! - no raw bytes above 0x7F (hyper lets valid UTF-8 through), no `#`.
//!
//! `Host` (and the absolute-form authority) must be `host[:port]` where host is a DNS-like
//! name (ALPHA / DIGIT / `-` / `.` / `_` / `~`), an IPv4 address, or a bracketed IPv6
//! address, and port is 1 to 5 digits up to 65535. hyper does not check Host at all; we do,
//! because the balancer routes on it.

use crate::h1::header::Span;
use crate::h1::Error;

/// Which form the request target had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetForm {
    /// `/path?query`.
    #[default]
    Origin,
    /// `http://authority/path?query`: the authority replaced `Host`.
    Absolute,
    /// `*` (OPTIONS only).
    Asterisk,
}

/// Where the parts of a request target are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) form: TargetForm,
    /// The origin-form part: path and query. For absolute-form it may be empty or start
    /// with `?`, in which case the origin-form is `/` followed by it.
    pub(crate) path: Span,
    /// The authority of an absolute-form target.
    pub(crate) authority: Option<Span>,
}

#[inline]
fn path_byte(b: u8) -> bool {
    matches!(b,
        0x21 | 0x22 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7B..=0x7E)
}

#[inline]
fn query_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E)
}

/// Validates `/path?query` (or the path-abempty + query of an absolute URI).
fn valid_path_and_query(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'?' {
            return s[i + 1..].iter().all(|&b| query_byte(b));
        }
        if b == b'%' {
            if i + 2 >= s.len() {
                return false;
            }
            if !(s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
            continue;
        }
        if !path_byte(b) {
            return false;
        }
        i += 1;
    }
    true
}

/// The bytes of a registered name: letters, digits, `-`, `.`, `_`, `~`. A table, because every
/// request's `Host` passes here byte by byte.
const HOST_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        b += 1;
    }
    t
};

/// Whether `v` is `host[:port]` by the rules in the module docs.
pub fn is_valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let inner = &v[1..close];
        let ok = std::str::from_utf8(inner)
            .ok()
            .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
            .is_some();
        if !ok {
            return false;
        }
        match &v[close + 1..] {
            [] => (&v[..=close], None),
            [b':', port @ ..] => (&v[..=close], Some(port)),
            _ => return false,
        }
    } else {
        // The name's bytes checked and the `:` found in one pass.
        let mut c = 0;
        while c < v.len() && v[c] != b':' {
            if !HOST_BYTE[usize::from(v[c])] {
                return false;
            }
            c += 1;
        }
        if c == v.len() {
            (v, None)
        } else {
            (&v[..c], Some(&v[c + 1..]))
        }
    };
    if host.is_empty() {
        return false;
    }
    match port {
        None => true,
        Some(p) => is_port(p),
    }
}

/// 1 to 5 digits, at most 65535.
fn is_port(p: &[u8]) -> bool {
    if p.is_empty() || p.len() > 5 {
        return false;
    }
    let mut n = 0u32;
    for &d in p {
        if !d.is_ascii_digit() {
            return false;
        }
        n = n * 10 + u32::from(d - b'0');
    }
    n <= 65535
}

/// Parses the request target `t`, which starts at offset `start` of the head buffer.
/// `options` says whether the method is OPTIONS (the only one allowed `*`).
pub(crate) fn parse_target(t: &[u8], start: usize, options: bool) -> Result<Target, Error> {
    if t.first() == Some(&b'/') {
        if !valid_path_and_query(t) {
            return Err(Error::Target);
        }
        return Ok(Target {
            form: TargetForm::Origin,
            path: Span::new(start, start + t.len()),
            authority: None,
        });
    }
    if t == b"*" {
        if !options {
            return Err(Error::Target);
        }
        return Ok(Target {
            form: TargetForm::Asterisk,
            path: Span::new(start, start + 1),
            authority: None,
        });
    }
    let scheme_len = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return Err(Error::Target);
    };
    let rest = &t[scheme_len..];
    let auth_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..auth_len];
    if authority.contains(&b'@') || !is_valid_host(authority) {
        return Err(Error::Target);
    }
    let path = &rest[auth_len..];
    if !valid_path_and_query(path) {
        return Err(Error::Target);
    }
    let a_start = start + scheme_len;
    let p_start = a_start + auth_len;
    Ok(Target {
        form: TargetForm::Absolute,
        path: Span::new(p_start, p_start + path.len()),
        authority: Some(Span::new(a_start, p_start)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let good: &[&[u8]] = &[
            b"a.example",
            b"a.example:8080",
            b"localhost",
            b"127.0.0.1",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:443",
            b"[2001:db8::1]:65535",
            b"node_1.internal",
            b"A-B.EXAMPLE",
            b"h:0",
        ];
        let bad: &[&[u8]] = &[
            b"",
            b":80",
            b"a.example:",
            b"a.example:65536",
            b"a.example:123456",
            b"a.example:8o",
            b"a.example:80:80",
            b"a b",
            b"a,b",
            b"a.example/",
            b"user@a.example",
            b"a.example\0",
            b"[::1",
            b"[::1]x",
            b"[::1]:",
            b"[a.example]",
            b"[]",
            b"[fe80::1%25eth0]",
            b"a%2eexample",
            b"\xc3\xa9.example",
            b"a;b",
            b"a\"b",
        ];
        for h in good {
            assert!(
                is_valid_host(h),
                "should accept {}",
                String::from_utf8_lossy(h)
            );
        }
        for h in bad {
            assert!(
                !is_valid_host(h),
                "should refuse {}",
                String::from_utf8_lossy(h)
            );
        }
    }

    type Parts = (TargetForm, Vec<u8>, Option<Vec<u8>>);

    fn parse(t: &[u8], options: bool) -> Result<Parts, Error> {
        // Offset 4, as after "GET ", to check the spans are shifted.
        let mut buf = b"GET ".to_vec();
        buf.extend_from_slice(t);
        let r = parse_target(t, 4, options)?;
        Ok((
            r.form,
            r.path.get(&buf).to_vec(),
            r.authority.map(|a| a.get(&buf).to_vec()),
        ))
    }

    #[test]
    fn target_forms() {
        use TargetForm::*;
        type Case<'a> = (
            &'a [u8],
            bool,
            Result<(TargetForm, &'a [u8], Option<&'a [u8]>), Error>,
        );
        let cases: &[Case] = &[
            (b"/", false, Ok((Origin, b"/", None))),
            (b"/a/b?c=d&e", false, Ok((Origin, b"/a/b?c=d&e", None))),
            (b"/a%20b", false, Ok((Origin, b"/a%20b", None))),
            (b"/x?q=100%", false, Ok((Origin, b"/x?q=100%", None))),
            (b"/x?a=/b?c", false, Ok((Origin, b"/x?a=/b?c", None))),
            (
                b"/json/{\"a\":1}",
                false,
                Ok((Origin, b"/json/{\"a\":1}", None)),
            ),
            (b"/a|b", false, Ok((Origin, b"/a|b", None))),
            (
                b"/a;jsessionid=X.jvm1",
                false,
                Ok((Origin, b"/a;jsessionid=X.jvm1", None)),
            ),
            (b"/a%2", false, Err(Error::Target)),
            (b"/a%", false, Err(Error::Target)),
            (b"/a%zz", false, Err(Error::Target)),
            (b"/a#frag", false, Err(Error::Target)),
            (b"/a?b#frag", false, Err(Error::Target)),
            (b"/a<b", false, Err(Error::Target)),
            (b"/a`b", false, Err(Error::Target)),
            (b"/a\\b", false, Ok((Origin, b"/a\\b", None))),
            (b"/x?\"", false, Err(Error::Target)),
            (b"/\xc3\xa9", false, Err(Error::Target)),
            (b"/a\x7f", false, Err(Error::Target)),
            (b"*", true, Ok((Asterisk, b"*", None))),
            (b"*", false, Err(Error::Target)),
            (
                b"http://a.example/x?y",
                false,
                Ok((Absolute, b"/x?y", Some(b"a.example"))),
            ),
            (
                b"HTTP://a.example:81/",
                false,
                Ok((Absolute, b"/", Some(b"a.example:81"))),
            ),
            (
                b"https://a.example",
                false,
                Ok((Absolute, b"", Some(b"a.example"))),
            ),
            (
                b"http://a.example?q",
                false,
                Ok((Absolute, b"?q", Some(b"a.example"))),
            ),
            (
                b"http://[::1]:8080/p",
                false,
                Ok((Absolute, b"/p", Some(b"[::1]:8080"))),
            ),
            (b"http://u:p@a.example/", false, Err(Error::Target)),
            (b"http:///x", false, Err(Error::Target)),
            (b"http://", false, Err(Error::Target)),
            (b"http://a.example/x#f", false, Err(Error::Target)),
            (b"ftp://a.example/", false, Err(Error::Target)),
            (b"a.example:443", false, Err(Error::Target)),
            (b"a.example", false, Err(Error::Target)),
            (b"x", false, Err(Error::Target)),
            (b"?x", false, Err(Error::Target)),
        ];
        for (t, options, want) in cases {
            let got = parse(t, *options);
            let want = want.map(|(f, p, a)| (f, p.to_vec(), a.map(<[u8]>::to_vec)));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(t));
        }
    }
}
