//! Header fields as byte ranges into the read buffer, the names the codec knows, and comma
//! list helpers.
//!
//! A parsed head keeps no string of its own: every name and value is a [`Span`] into the
//! buffer the head was parsed from, and each field carries the [`HeaderKind`] found once at
//! parse time, so that the writer strips hop-by-hop fields and the caller finds `Cookie` or
//! `Set-Cookie` without comparing names again.

use std::ops::Range;

/// A byte range `start..end` into the buffer a head was parsed from.
///
/// `u32` offsets: a head is at most [`crate::h1::MAX_HEAD_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The empty span at 0.
    pub const EMPTY: Span = Span { start: 0, end: 0 };

    /// The span of `part`, a subslice of `buf`.
    ///
    /// # Panics
    /// If `part` does not lie inside `buf` (a bug in the caller, never input-dependent).
    pub(crate) fn of(buf: &[u8], part: &[u8]) -> Span {
        let base = buf.as_ptr() as usize;
        let start = (part.as_ptr() as usize).wrapping_sub(base);
        assert!(
            start <= buf.len() && part.len() <= buf.len() - start,
            "span outside its buffer"
        );
        Span::new(start, start + part.len())
    }

    /// `start..end` as a span.
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end);
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    /// The bytes of this span in `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than the buffer the span was taken from.
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.range()]
    }

    /// As a `usize` range.
    #[inline]
    pub fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The header names the codec treats specially; everything else is [`HeaderKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// Any other field, copied through as it came.
    Other,
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// `Keep-Alive`.
    KeepAlive,
    /// `Proxy-Connection` (non-standard, sent by old clients).
    ProxyConnection,
    /// `TE`.
    Te,
    /// `Trailer`.
    Trailer,
    /// `Upgrade`.
    Upgrade,
    /// `Proxy-Authorization`.
    ProxyAuthorization,
    /// `Proxy-Authenticate`.
    ProxyAuthenticate,
    /// `Expect`.
    Expect,
    /// `Cookie`.
    Cookie,
    /// `Set-Cookie`.
    SetCookie,
    /// `Location`.
    Location,
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `X-Forwarded-Proto`.
    XForwardedProto,
    /// `X-Forwarded-Host`.
    XForwardedHost,
    /// `Forwarded`.
    Forwarded,
}

/// Whether `name` equals `lower`, a name of lowercase letters and `-` of the same length,
/// ignoring ASCII case. Every request and response head classifies each of its names
/// ([`HeaderKind::of`]), so this compares eight bytes at a time instead of byte by byte: a
/// byte of `name` ORed with `0x20` where `lower` has a letter (bit `0x40` set; `-` has it
/// clear) equals that letter only for the letter in either case, and where `lower` has `-`
/// the byte must be `-` itself. Exact for any `name` bytes.
#[inline]
fn eq_ignore_case_lower(name: &[u8], lower: &[u8]) -> bool {
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    let folds_to = |w: u64, k: u64| (w | ((k & 0x4040_4040_4040_4040) >> 1)) == k;
    let word = |b: &[u8], at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let half = |b: &[u8], at: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[at..at + 4]);
        u64::from(u32::from_le_bytes(a))
    };
    if n >= 8 {
        // Whole words, the last one overlapping the one before when `n` is not a multiple.
        let mut at = 0;
        while at + 8 < n {
            if !folds_to(word(name, at), word(lower, at)) {
                return false;
            }
            at += 8;
        }
        folds_to(word(name, n - 8), word(lower, n - 8))
    } else if n >= 4 {
        folds_to(half(name, 0), half(lower, 0)) && folds_to(half(name, n - 4), half(lower, n - 4))
    } else {
        name.eq_ignore_ascii_case(lower)
    }
}

impl HeaderKind {
    /// Classifies a header name, case-insensitively.
    pub fn of(name: &[u8]) -> HeaderKind {
        // Dispatch on the length first: one comparison for most names.
        let candidates: &[(&[u8], HeaderKind)] = match name.len() {
            2 => &[(b"te", HeaderKind::Te)],
            4 => &[(b"host", HeaderKind::Host)],
            6 => &[
                (b"cookie", HeaderKind::Cookie),
                (b"expect", HeaderKind::Expect),
            ],
            7 => &[
                (b"trailer", HeaderKind::Trailer),
                (b"upgrade", HeaderKind::Upgrade),
            ],
            8 => &[(b"location", HeaderKind::Location)],
            9 => &[(b"forwarded", HeaderKind::Forwarded)],
            10 => &[
                (b"connection", HeaderKind::Connection),
                (b"keep-alive", HeaderKind::KeepAlive),
                (b"set-cookie", HeaderKind::SetCookie),
            ],
            14 => &[(b"content-length", HeaderKind::ContentLength)],
            15 => &[(b"x-forwarded-for", HeaderKind::XForwardedFor)],
            16 => &[
                (b"proxy-connection", HeaderKind::ProxyConnection),
                (b"x-forwarded-host", HeaderKind::XForwardedHost),
            ],
            17 => &[
                (b"transfer-encoding", HeaderKind::TransferEncoding),
                (b"x-forwarded-proto", HeaderKind::XForwardedProto),
            ],
            18 => &[(b"proxy-authenticate", HeaderKind::ProxyAuthenticate)],
            19 => &[(b"proxy-authorization", HeaderKind::ProxyAuthorization)],
            _ => &[],
        };
        for &(known, kind) in candidates {
            if eq_ignore_case_lower(name, known) {
                return kind;
            }
        }
        HeaderKind::Other
    }

    /// Hop-by-hop fields (RFC 9110 §7.6.1 plus the old `Proxy-Connection` and the proxy
    /// authentication fields): they describe one connection and are never forwarded as they
    /// came. The writers add their own `Connection`, framing and `Upgrade` fields.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            HeaderKind::Connection
                | HeaderKind::KeepAlive
                | HeaderKind::ProxyConnection
                | HeaderKind::Te
                | HeaderKind::Trailer
                | HeaderKind::TransferEncoding
                | HeaderKind::Upgrade
                | HeaderKind::ProxyAuthorization
                | HeaderKind::ProxyAuthenticate
        )
    }
}

/// At most this many header lines in a head (hyper's default too); more is a 431.
pub const MAX_HEADERS: usize = 100;

/// One header field line: where its name and value are, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The name, as sent (case kept).
    pub name: Span,
    /// The value without the surrounding whitespace.
    pub value: Span,
    /// What the name is.
    pub kind: HeaderKind,
}

/// Iterates the elements of a comma-separated list value (RFC 9110 §5.6.1), trimmed of
/// optional whitespace, skipping empty elements. Yields spans relative to `value_start`.
pub(crate) fn list_items(value: &[u8], value_start: u32) -> impl Iterator<Item = Span> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        while pos <= value.len() {
            let rest = &value[pos..];
            let len = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
            let item = &rest[..len];
            let item_start = pos;
            pos += len + 1;
            let lead = item
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(item.len());
            let trail = item[lead..]
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t')
                .map_or(lead, |p| lead + p + 1);
            if trail > lead {
                let s = value_start as usize + item_start;
                return Some(Span::new(s + lead, s + trail));
            }
        }
        None
    })
}

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2). By table: every name byte of every head
/// passes here.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(b as u8,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
            | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
            | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        b += 1;
    }
    t
};

/// Whether `s` is a non-empty token.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Finds the first header named `name` (case-insensitive) in `headers`.
pub(crate) fn find(headers: &[Header], buf: &[u8], name: &[u8]) -> Option<usize> {
    headers
        .iter()
        .position(|h| h.name.get(buf).eq_ignore_ascii_case(name))
}

/// Every header named `name` (case-insensitive), by index.
pub(crate) fn find_all<'a>(
    headers: &'a [Header],
    buf: &'a [u8],
    name: &'a [u8],
) -> impl Iterator<Item = usize> + 'a {
    headers
        .iter()
        .enumerate()
        .filter(move |(_, h)| h.name.get(buf).eq_ignore_ascii_case(name))
        .map(|(i, _)| i)
}

/// Connection options seen in the `Connection` fields of a head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ConnectionTokens {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
}

/// Reads one `Connection` value: records `close`, `keep-alive`, `upgrade` and pushes every
/// token's span onto `tokens` (so the writer can strip the fields it names), except
/// `keep-alive`: the only field it names, `Keep-Alive`, is hop-by-hop and stripped anyway,
/// and a list without it spares the writer a look at every field of nearly every response.
/// A list element that is not a token is a bad value.
pub(crate) fn read_connection(
    value: &[u8],
    value_start: u32,
    flags: &mut ConnectionTokens,
    tokens: &mut Vec<Span>,
) -> Result<(), crate::h1::Error> {
    // Nearly every `Connection` field is one of these alone (the value comes trimmed): what
    // the loop below would find, without splitting the list.
    if eq_ignore_case_lower(value, b"keep-alive") {
        flags.keep_alive = true;
        return Ok(());
    }
    if eq_ignore_case_lower(value, b"close") {
        flags.close = true;
        tokens.push(Span::new(
            value_start as usize,
            value_start as usize + value.len(),
        ));
        return Ok(());
    }
    for item in list_items(value, value_start) {
        let rel = (item.start - value_start) as usize..(item.end - value_start) as usize;
        let t = &value[rel];
        if !is_token(t) {
            return Err(crate::h1::Error::HeaderValue);
        }
        if t.eq_ignore_ascii_case(b"close") {
            flags.close = true;
        } else if t.eq_ignore_ascii_case(b"keep-alive") {
            flags.keep_alive = true;
            continue;
        } else if t.eq_ignore_ascii_case(b"upgrade") {
            flags.upgrade = true;
        }
        tokens.push(item);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-wise comparison against the byte-wise one, for every known name, every
    /// single-byte change of it at every position, and every byte value there.
    #[test]
    fn word_compare_matches_byte_compare() {
        let known: &[&[u8]] = &[
            b"te",
            b"host",
            b"cookie",
            b"expect",
            b"trailer",
            b"upgrade",
            b"location",
            b"forwarded",
            b"connection",
            b"keep-alive",
            b"set-cookie",
            b"content-length",
            b"x-forwarded-for",
            b"proxy-connection",
            b"x-forwarded-host",
            b"transfer-encoding",
            b"x-forwarded-proto",
            b"proxy-authenticate",
            b"proxy-authorization",
        ];
        for &k in known {
            assert!(eq_ignore_case_lower(k, k));
            assert!(eq_ignore_case_lower(&k.to_ascii_uppercase(), k));
            for at in 0..k.len() {
                for b in 0..=255u8 {
                    let mut name = k.to_vec();
                    name[at] = b;
                    assert_eq!(
                        eq_ignore_case_lower(&name, k),
                        name.eq_ignore_ascii_case(k),
                        "{:?} vs {:?}",
                        String::from_utf8_lossy(&name),
                        String::from_utf8_lossy(k)
                    );
                }
            }
        }
        assert!(!eq_ignore_case_lower(b"hos", b"host"));
    }

    #[test]
    fn classify_known_names_any_case() {
        let cases: &[(&[u8], HeaderKind)] = &[
            (b"Host", HeaderKind::Host),
            (b"HOST", HeaderKind::Host),
            (b"content-length", HeaderKind::ContentLength),
            (b"Transfer-Encoding", HeaderKind::TransferEncoding),
            (b"TRANSFER-ENCODING", HeaderKind::TransferEncoding),
            (b"Connection", HeaderKind::Connection),
            (b"Keep-Alive", HeaderKind::KeepAlive),
            (b"Proxy-Connection", HeaderKind::ProxyConnection),
            (b"TE", HeaderKind::Te),
            (b"Trailer", HeaderKind::Trailer),
            (b"Upgrade", HeaderKind::Upgrade),
            (b"Proxy-Authorization", HeaderKind::ProxyAuthorization),
            (b"Proxy-Authenticate", HeaderKind::ProxyAuthenticate),
            (b"Expect", HeaderKind::Expect),
            (b"Cookie", HeaderKind::Cookie),
            (b"Set-Cookie", HeaderKind::SetCookie),
            (b"Location", HeaderKind::Location),
            (b"X-Forwarded-For", HeaderKind::XForwardedFor),
            (b"X-Forwarded-Proto", HeaderKind::XForwardedProto),
            (b"X-Forwarded-Host", HeaderKind::XForwardedHost),
            (b"Forwarded", HeaderKind::Forwarded),
            (b"Accept", HeaderKind::Other),
            (b"Hosts", HeaderKind::Other),
            (b"Transfer-Encodings", HeaderKind::Other),
            (b"Content-Lengt", HeaderKind::Other),
            (b"", HeaderKind::Other),
            (b"xe", HeaderKind::Other),
        ];
        for &(name, kind) in cases {
            assert_eq!(
                HeaderKind::of(name),
                kind,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    /// Every one-byte change of every known name (all 256 values at each position, the
    /// first letter included) is classified as the known name it then equals in any case,
    /// else as another field.
    #[test]
    fn one_byte_changes_of_known_names() {
        let known: &[(&[u8], HeaderKind)] = &[
            (b"te", HeaderKind::Te),
            (b"host", HeaderKind::Host),
            (b"cookie", HeaderKind::Cookie),
            (b"expect", HeaderKind::Expect),
            (b"trailer", HeaderKind::Trailer),
            (b"upgrade", HeaderKind::Upgrade),
            (b"location", HeaderKind::Location),
            (b"forwarded", HeaderKind::Forwarded),
            (b"connection", HeaderKind::Connection),
            (b"keep-alive", HeaderKind::KeepAlive),
            (b"set-cookie", HeaderKind::SetCookie),
            (b"content-length", HeaderKind::ContentLength),
            (b"x-forwarded-for", HeaderKind::XForwardedFor),
            (b"proxy-connection", HeaderKind::ProxyConnection),
            (b"x-forwarded-host", HeaderKind::XForwardedHost),
            (b"transfer-encoding", HeaderKind::TransferEncoding),
            (b"x-forwarded-proto", HeaderKind::XForwardedProto),
            (b"proxy-authenticate", HeaderKind::ProxyAuthenticate),
            (b"proxy-authorization", HeaderKind::ProxyAuthorization),
        ];
        for &(name, _) in known {
            for at in 0..name.len() {
                for v in 0..=255u8 {
                    let mut n = name.to_vec();
                    n[at] = v;
                    let want = known
                        .iter()
                        .find(|(k, _)| n.eq_ignore_ascii_case(k))
                        .map_or(HeaderKind::Other, |&(_, kind)| kind);
                    assert_eq!(HeaderKind::of(&n), want, "{n:?}");
                }
            }
        }
    }

    #[test]
    fn hop_by_hop_set() {
        let hop = [
            HeaderKind::Connection,
            HeaderKind::KeepAlive,
            HeaderKind::ProxyConnection,
            HeaderKind::Te,
            HeaderKind::Trailer,
            HeaderKind::TransferEncoding,
            HeaderKind::Upgrade,
            HeaderKind::ProxyAuthorization,
            HeaderKind::ProxyAuthenticate,
        ];
        for k in hop {
            assert!(k.is_hop_by_hop(), "{k:?}");
        }
        for k in [
            HeaderKind::Other,
            HeaderKind::Host,
            HeaderKind::ContentLength,
            HeaderKind::Cookie,
            HeaderKind::SetCookie,
            HeaderKind::Expect,
            HeaderKind::Forwarded,
        ] {
            assert!(!k.is_hop_by_hop(), "{k:?}");
        }
    }

    fn items(v: &[u8]) -> Vec<String> {
        // Offset 10 checks the spans are shifted by value_start.
        let mut buf = vec![b'#'; 10];
        buf.extend_from_slice(v);
        list_items(v, 10)
            .map(|s| String::from_utf8_lossy(s.get(&buf)).into_owned())
            .collect()
    }

    #[test]
    fn list_items_trim_and_skip_empty() {
        assert_eq!(items(b"close"), ["close"]);
        assert_eq!(items(b" a ,\tb\t, c"), ["a", "b", "c"]);
        assert_eq!(items(b"a,,b,"), ["a", "b"]);
        assert!(items(b"").is_empty());
        assert!(items(b" , ,").is_empty());
        assert_eq!(items(b"a b"), ["a b"]);
    }

    #[test]
    fn connection_tokens() {
        let mut flags = ConnectionTokens::default();
        let mut tokens = Vec::new();
        let v = b"Keep-Alive, Upgrade, X-Foo";
        read_connection(v, 0, &mut flags, &mut tokens).unwrap();
        assert!(flags.keep_alive && flags.upgrade && !flags.close);
        let names: Vec<&[u8]> = tokens.iter().map(|s| s.get(v)).collect();
        assert_eq!(names, vec![&b"Upgrade"[..], b"X-Foo"]);

        let mut flags = ConnectionTokens::default();
        read_connection(b"CLOSE", 0, &mut flags, &mut tokens).unwrap();
        assert!(flags.close);
        // A lone option, as the list would give it.
        for (v, close, keep) in [
            (&b"keep-alive"[..], false, true),
            (b"Keep-Alive", false, true),
            (b"close", true, false),
            (b"keep-alive,close", true, true),
            (b"KEEP-ALIVE", false, true),
            (b"keep_alive", false, false),
            (b"clos", false, false),
        ] {
            let mut flags = ConnectionTokens::default();
            let mut tokens = Vec::new();
            read_connection(v, 7, &mut flags, &mut tokens).unwrap();
            assert_eq!((flags.close, flags.keep_alive), (close, keep), "{v:?}");
            let padded = [&[0u8; 7][..], v].concat();
            let listed: Vec<Span> = list_items(v, 7)
                .filter(|t| !t.get(&padded).eq_ignore_ascii_case(b"keep-alive"))
                .collect();
            assert_eq!(tokens, listed, "{v:?}");
        }
        assert_eq!(
            read_connection(b"close, a b", 0, &mut flags, &mut tokens),
            Err(crate::h1::Error::HeaderValue)
        );
        assert_eq!(
            read_connection(b"\"close\"", 0, &mut flags, &mut tokens),
            Err(crate::h1::Error::HeaderValue)
        );
    }

    #[test]
    fn find_is_case_insensitive() {
        let buf = b"X-A: 1\r\nx-a: 2\r\nB: 3";
        let hs = [
            Header {
                name: Span::new(0, 3),
                value: Span::new(5, 6),
                kind: HeaderKind::Other,
            },
            Header {
                name: Span::new(8, 11),
                value: Span::new(13, 14),
                kind: HeaderKind::Other,
            },
            Header {
                name: Span::new(16, 17),
                value: Span::new(19, 20),
                kind: HeaderKind::Other,
            },
        ];
        assert_eq!(find(&hs, buf, b"X-a"), Some(0));
        assert_eq!(find(&hs, buf, b"b"), Some(2));
        assert_eq!(find(&hs, buf, b"c"), None);
        assert_eq!(find_all(&hs, buf, b"x-A").collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn span_of_subslice() {
        let buf = b"hello world";
        let s = Span::of(buf, &buf[6..]);
        assert_eq!(s, Span::new(6, 11));
        assert_eq!(s.get(buf), b"world");
        assert_eq!(s.len(), 5);
        assert!(!s.is_empty());
        assert!(Span::EMPTY.is_empty());
    }

    #[test]
    #[should_panic(expected = "span outside its buffer")]
    fn span_of_foreign_slice_panics() {
        let buf = b"hello";
        let other = b"world".to_vec();
        let _ = Span::of(buf, &other);
    }
}
