//! Request rewriting that does not depend on the node: hop-by-hop headers out, the
//! `X-Forwarded-For/-Proto/-Host` and `Forwarded` headers in, origin-form targets, and the
//! listener's limits (trusted proxies, body size). Pure functions over `http` types, shared by
//! every protocol.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};

pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

pub fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers (and those named by `Connection`). An upgrade keeps `Upgrade`
/// and gets `Connection: upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(&name);
        }
    }
    for name in &HOP_BY_HOP {
        if keep_upgrade && *name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// An address block of `listeners[].trusted_proxies`: `10.0.0.0/8`, `2001:db8::/32`, or one
/// address (`192.0.2.7`, a `/32` or `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ip` or `ip/prefix`. Bits set past the prefix (`10.0.0.1/8`) are refused: such a
    /// block is almost always a typo for the address or for the network.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| {
            format!("{text:?} is not an IP address or CIDR block (such as 10.0.0.0/8)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network() != bits(addr) {
            return Err(format!(
                "{text:?} has bits set past the /{prefix} prefix (the block is {})",
                Cidr {
                    addr: from_bits(cidr.network(), addr.is_ipv4()),
                    prefix
                }
            ));
        }
        Ok(cidr)
    }

    fn mask(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == 0 {
            0
        } else {
            (u128::MAX << (width - u32::from(self.prefix))) & width_mask(width)
        }
    }

    fn network(&self) -> u128 {
        bits(self.addr) & self.mask()
    }

    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, how a
    /// dual-stack socket shows an IPv4 peer) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && bits(ip) & self.mask() == self.network()
    }
}

fn width_mask(width: u32) -> u128 {
    if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(b: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(b as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(b))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `listeners[].trusted_proxies`: the peers whose `X-Forwarded-For` and `Forwarded` are
/// believed. Cheap to clone (shared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[Cidr]>);

impl TrustedProxies {
    pub fn new(blocks: Vec<Cidr>) -> Self {
        TrustedProxies(blocks.into())
    }

    /// No peer is trusted (the default).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn blocks(&self) -> &[Cidr] {
        &self.0
    }

    /// The decision: whether the forwarding headers a request from `peer` carries are
    /// *extended* (`peer` is a trusted proxy: what it says about the client before it is kept,
    /// and the balancer appends `peer`), or *replaced* by what the balancer saw (anyone else:
    /// a client may write any `X-Forwarded-For` it likes, and a node that reads the first
    /// address of the chain as the client's would believe it).
    pub fn extends(&self, peer: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(peer))
    }
}

/// The chain to append to: the request's values of a forwarding header (every line, in
/// order, joined by `, `), when `extend` ([`TrustedProxies::extends`]); `None` when the
/// header is replaced or the request has none.
pub fn prior_chain<'a>(extend: bool, values: impl Iterator<Item = &'a [u8]>) -> Option<String> {
    if !extend {
        return None;
    }
    let mut chain = String::new();
    for v in values {
        let Ok(v) = std::str::from_utf8(v) else {
            continue;
        };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(v);
    }
    (!chain.is_empty()).then_some(chain)
}

/// `listeners[].max_body_bytes` against what the request declares: `true` when its
/// `Content-Length` alone is over the limit (answer `413` before reading anything). A body
/// without a length (chunked, HTTP/2 data frames) is counted while it streams instead.
pub fn declared_body_too_large(limit: Option<u64>, content_length: Option<u64>) -> bool {
    matches!((limit, content_length), (Some(max), Some(len)) if len > max)
}

/// A request body counted against `listeners[].max_body_bytes` while it streams (for bodies
/// without a length, and as a guard for those with one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyBudget {
    left: Option<u64>,
}

impl BodyBudget {
    /// `limit`: `None` is unlimited.
    pub fn new(limit: Option<u64>) -> Self {
        BodyBudget { left: limit }
    }

    /// Counts `n` more body bytes; `false` once the body is over the limit (answer `413`).
    pub fn spend(&mut self, n: usize) -> bool {
        match &mut self.left {
            None => true,
            Some(left) => match left.checked_sub(n as u64) {
                Some(rest) => {
                    *left = rest;
                    true
                }
                None => {
                    *left = 0;
                    false
                }
            },
        }
    }
}

/// Node-independent rewriting of an HTTP/2 request's fields for an AJP node (the AJP writer
/// forwards the fields it is given; HTTP/1.1 nodes get theirs from `proxy::node_head`, which
/// applies the same rules while it writes): HTTP/1.1 origin-form, hop-by-hop headers,
/// forwarding headers, and no client-supplied failover header. `extend_forwarded`: keep the
/// request's
/// `X-Forwarded-For` and `Forwarded` chains and append to them ([`TrustedProxies::extends`]);
/// otherwise they are replaced by what the balancer saw.
pub fn prepare_request(
    parts: &mut http::request::Parts,
    host: Option<&str>,
    client: SocketAddr,
    tls: bool,
    failover_header: &HeaderName,
    extend_forwarded: bool,
) {
    let upgrade = is_upgrade(&parts.headers);
    strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(failover_header);
    if parts.version != Version::HTTP_11 && parts.version != Version::HTTP_10 {
        parts.version = Version::HTTP_11;
    }
    if parts.uri.authority().is_some() || parts.uri.scheme().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        if let Ok(uri) = pq.parse::<Uri>() {
            parts.uri = uri;
        }
    }
    // The request's host as decided (an absolute-form target's authority replaces the
    // client's Host field).
    if let Some(h) = host {
        if let Ok(v) = HeaderValue::from_str(h) {
            parts.headers.insert(header::HOST, v);
        }
    }
    let ip = client.ip().to_canonical().to_string();
    let prior = |headers: &HeaderMap, name: &str| {
        prior_chain(
            extend_forwarded,
            headers.get_all(name).iter().map(HeaderValue::as_bytes),
        )
    };
    let xff = match prior(&parts.headers, "x-forwarded-for") {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    let proto = if tls { "https" } else { "http" };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert("x-forwarded-for", v);
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Some(h) = host {
        if let Ok(v) = HeaderValue::from_str(h) {
            parts.headers.insert("x-forwarded-host", v);
        }
    }
    let prev = prior(&parts.headers, "forwarded");
    let mut forwarded = Vec::with_capacity(64);
    let v6 = client.ip().to_canonical().is_ipv6();
    push_forwarded(
        &mut forwarded,
        prev.as_deref().map(str::as_bytes),
        |out| out.extend_from_slice(ip.as_bytes()),
        v6,
        tls,
        host.unwrap_or(""),
    );
    if let Ok(v) = HeaderValue::from_bytes(&forwarded) {
        parts.headers.insert(header::FORWARDED, v);
    }
}

/// Appends the `Forwarded` value (RFC 7239) the node receives: the chain kept from a trusted
/// proxy (`prev`), then `for=IP;proto=http|https;host="HOST"` for this hop. `push_ip` writes
/// the client's address as text (a path that has it written already copies it); `v6` quotes
/// and brackets it. A host that cannot be a quoted
/// string is left out. The one writer of the value for both request paths.
#[inline]
pub fn push_forwarded(
    out: &mut Vec<u8>,
    prev: Option<&[u8]>,
    push_ip: impl FnOnce(&mut Vec<u8>),
    v6: bool,
    tls: bool,
    host: &str,
) {
    if let Some(p) = prev.filter(|p| !p.is_empty()) {
        out.extend_from_slice(p);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"for=");
    if v6 {
        out.extend_from_slice(b"\"[");
    }
    push_ip(out);
    if v6 {
        out.extend_from_slice(b"]\"");
    }
    out.extend_from_slice(if tls { b";proto=https" } else { b";proto=http" });
    // By bytes: `"` and `\\` are ASCII, and a char pattern decodes every character.
    if !host.is_empty() && !host.bytes().any(|b| b == b'"' || b == b'\\') {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(host.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_parse_and_contain() {
        // (block, inside, outside)
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", "11.0.0.1"),
            ("192.168.1.7", "192.168.1.7", "192.168.1.8"),
            ("192.168.1.7/32", "192.168.1.7", "192.168.1.6"),
            ("0.0.0.0/0", "203.0.113.9", "::1"),
            ("2001:db8::/32", "2001:db8:ffff::1", "2001:db9::1"),
            ("::1", "::1", "::2"),
            ("::/0", "fe80::1", "127.0.0.1"),
            ("172.16.0.0/12", "172.31.255.255", "172.32.0.0"),
        ];
        for (block, inside, outside) in cases {
            let c = Cidr::parse(block).unwrap_or_else(|e| panic!("{block}: {e}"));
            assert!(c.contains(ip(inside)), "{block} should contain {inside}");
            assert!(
                !c.contains(ip(outside)),
                "{block} should not contain {outside}"
            );
        }
        // A dual-stack socket's IPv4 peer.
        assert!(Cidr::parse("10.0.0.0/8")
            .unwrap()
            .contains(ip("::ffff:10.1.2.3")));
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
    }

    #[test]
    fn bad_cidr_blocks_say_why() {
        let cases = [
            (
                "10.0.0.1/8",
                "bits set past the /8 prefix (the block is 10.0.0.0/8)",
            ),
            ("10.0.0.0/33", "0 to 32"),
            ("::/129", "0 to 128"),
            ("10.0.0.0/", "0 to 32"),
            ("10.0.0.0/+8", "0 to 32"),
            ("10.0.0.0/x", "0 to 32"),
            ("localhost", "not an IP address"),
            ("10.0.0/8", "not an IP address"),
            ("", "not an IP address"),
        ];
        for (text, fragment) in cases {
            let e = Cidr::parse(text).unwrap_err();
            assert!(e.contains(fragment), "{text}: {e}");
        }
    }

    #[test]
    fn trusted_peers_extend_others_are_replaced() {
        let t = TrustedProxies::new(vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("::1").unwrap(),
        ]);
        assert!(t.extends(ip("10.1.2.3")));
        assert!(t.extends(ip("::1")));
        assert!(!t.extends(ip("127.0.0.1")));
        assert!(!t.extends(ip("203.0.113.5")));
        assert!(
            !TrustedProxies::default().extends(ip("10.1.2.3")),
            "none by default"
        );
        let lines: [&[u8]; 3] = [b"198.51.100.1", b" ", b"10.0.0.9, 10.0.0.10"];
        assert_eq!(
            prior_chain(true, lines.into_iter()).as_deref(),
            Some("198.51.100.1, 10.0.0.9, 10.0.0.10")
        );
        assert_eq!(prior_chain(false, lines.into_iter()), None);
        assert_eq!(prior_chain(true, std::iter::empty()), None);
    }

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn prepare_request_extends_or_replaces_the_chains() {
        let client: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let fo = HeaderName::from_static("x-session-failover-from");
        let claimed = [
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "10.0.0.4"),
            ("forwarded", "for=198.51.100.1"),
        ];
        let mut p = parts(&claimed);
        prepare_request(&mut p, Some("app.test"), client, false, &fo, true);
        assert_eq!(
            p.headers["x-forwarded-for"],
            "198.51.100.1, 10.0.0.4, 10.0.0.5"
        );
        assert_eq!(
            p.headers["forwarded"],
            "for=198.51.100.1, for=10.0.0.5;proto=http;host=\"app.test\""
        );
        let mut p = parts(&claimed);
        prepare_request(&mut p, Some("app.test"), client, false, &fo, false);
        assert_eq!(p.headers["x-forwarded-for"], "10.0.0.5");
        assert_eq!(p.headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(
            p.headers["forwarded"],
            "for=10.0.0.5;proto=http;host=\"app.test\""
        );
    }

    #[test]
    fn declared_body_limits() {
        assert!(!declared_body_too_large(None, Some(u64::MAX)));
        assert!(!declared_body_too_large(Some(10), Some(10)));
        assert!(declared_body_too_large(Some(10), Some(11)));
        assert!(
            !declared_body_too_large(Some(10), None),
            "counted while streaming"
        );
    }

    #[test]
    fn body_budget_counts_to_the_limit() {
        let mut b = BodyBudget::new(Some(10));
        assert!(b.spend(4) && b.spend(6), "exactly the limit passes");
        assert!(b.spend(0));
        assert!(!b.spend(1), "one byte more does not");
        let mut b = BodyBudget::new(Some(10));
        assert!(!b.spend(11));
        let mut unlimited = BodyBudget::new(None);
        assert!(unlimited.spend(usize::MAX) && unlimited.spend(usize::MAX));
    }
}
