//! Request rewriting that does not depend on the node: hop-by-hop headers out, the
//! `X-Forwarded-For/-Proto/-Host` and `Forwarded` headers in, origin-form targets. Pure
//! functions over `http` types, shared by every protocol.

use std::net::SocketAddr;

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

/// Node-independent rewriting: HTTP/1.1 origin-form, hop-by-hop headers, forwarding headers,
/// and no client-supplied failover header.
pub fn prepare_request(
    parts: &mut http::request::Parts,
    host: Option<&str>,
    client: SocketAddr,
    tls: bool,
    failover_header: &HeaderName,
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
    if let Some(h) = host {
        if !parts.headers.contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(h) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    let ip = client.ip().to_string();
    let xff = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
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
    let for_value = if client.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip
    };
    let mut forwarded = format!("for={for_value};proto={proto}");
    if let Some(h) = host {
        if let Ok(v) = HeaderValue::from_str(h) {
            parts.headers.insert("x-forwarded-host", v);
        }
        if !h.contains(['"', '\\']) {
            forwarded.push_str(&format!(";host=\"{h}\""));
        }
    }
    let forwarded = match parts
        .headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {forwarded}"),
        None => forwarded,
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        parts.headers.insert(header::FORWARDED, v);
    }
}
