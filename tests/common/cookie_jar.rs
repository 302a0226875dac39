//! A cookie jar that behaves like a browser's for one host (RFC 6265, sections 5.1.4, 5.2, 5.3
//! and 5.4), for tests that must see what a browser would send after a sequence of responses:
//!
//! - cookies are stored by (name, path); a `Set-Cookie` with the same name and path replaces the
//!   stored one (keeping its creation time, so its place in the send order);
//! - a missing or relative `Path` takes the default path of the request URI (its directory);
//! - `Max-Age` (which wins over `Expires`) of zero or less, or an `Expires` in the past, deletes;
//! - a request carries the cookies whose path path-matches its own, longest path first, then the
//!   oldest first; `Secure` cookies only on a secure channel.
//!
//! `Domain` is ignored (every test talks to one host), as are `HttpOnly` and `SameSite`, which do
//! not change what a same-site request carries.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// One stored cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCookie {
    pub name: String,
    pub value: String,
    pub path: String,
    pub secure: bool,
    pub http_only: bool,
    /// Order of creation (smaller is older); kept when a cookie is replaced.
    pub created: u64,
}

impl std::fmt::Display for StoredCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={} (Path={})", self.name, self.value, self.path)
    }
}

/// A browser's cookie store for one host.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    cookies: Vec<StoredCookie>,
    next: u64,
    /// Requests go over TLS: `Secure` cookies are sent.
    pub secure_channel: bool,
}

impl CookieJar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores one `Set-Cookie` value received in the response to a request for `request_path`.
    /// Returns whether the cookie was stored (a deletion or an ignored header returns false).
    pub fn store(&mut self, request_path: &str, set_cookie: &str) -> bool {
        self.store_at(request_path, set_cookie, now_secs())
    }

    /// Every `Set-Cookie` value of one response, in order.
    pub fn store_all<'a>(&mut self, request_path: &str, values: impl IntoIterator<Item = &'a str>) {
        for v in values {
            self.store(request_path, v);
        }
    }

    fn store_at(&mut self, request_path: &str, set_cookie: &str, now: i64) -> bool {
        let Some(parsed) = parse_set_cookie(set_cookie, now) else {
            return false;
        };
        let path = match parsed.path {
            Some(p) if p.starts_with('/') => p,
            _ => default_path(uri_path(request_path)),
        };
        let existing = self
            .cookies
            .iter()
            .position(|c| c.name == parsed.name && c.path == path);
        let created = match existing {
            Some(i) => self.cookies.remove(i).created,
            None => {
                self.next += 1;
                self.next
            }
        };
        if parsed.expired {
            return false;
        }
        self.cookies.push(StoredCookie {
            name: parsed.name,
            value: parsed.value,
            path,
            secure: parsed.secure,
            http_only: parsed.http_only,
            created,
        });
        true
    }

    /// The cookies a request for `request_path` carries, in the order a browser sends them.
    pub fn matching(&self, request_path: &str) -> Vec<&StoredCookie> {
        let path = uri_path(request_path);
        let mut out: Vec<&StoredCookie> = self
            .cookies
            .iter()
            .filter(|c| path_matches(path, &c.path) && (self.secure_channel || !c.secure))
            .collect();
        out.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(a.created.cmp(&b.created))
        });
        out
    }

    /// The `Cookie` header of a request for `request_path`, or `None` when it carries none.
    pub fn cookie_header(&self, request_path: &str) -> Option<String> {
        let m = self.matching(request_path);
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|c| format!("{}={}", c.name, c.value))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Every stored cookie named `name`, whatever its path, oldest first.
    pub fn named(&self, name: &str) -> Vec<&StoredCookie> {
        let mut out: Vec<&StoredCookie> = self.cookies.iter().filter(|c| c.name == name).collect();
        out.sort_by_key(|c| c.created);
        out
    }

    /// Values of the cookies named `name` that a request for `request_path` carries, in order.
    pub fn values_sent(&self, name: &str, request_path: &str) -> Vec<String> {
        self.matching(request_path)
            .into_iter()
            .filter(|c| c.name == name)
            .map(|c| c.value.clone())
            .collect()
    }

    pub fn clear(&mut self) {
        self.cookies.clear();
    }
}

struct Parsed {
    name: String,
    value: String,
    path: Option<String>,
    secure: bool,
    http_only: bool,
    expired: bool,
}

/// RFC 6265 5.2: `name=value` up to the first `;`, then attributes. A header without `=` in its
/// first part or with an empty name is ignored (`None`).
fn parse_set_cookie(header: &str, now: i64) -> Option<Parsed> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut value = value.trim();
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        value = &value[1..value.len() - 1];
    }
    let mut p = Parsed {
        name: name.to_string(),
        value: value.to_string(),
        path: None,
        secure: false,
        http_only: false,
        expired: false,
    };
    let mut max_age: Option<i64> = None;
    let mut expires: Option<i64> = None;
    for attr in parts {
        let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
        let (k, v) = (k.trim(), v.trim());
        match k.to_ascii_lowercase().as_str() {
            "path" => p.path = Some(v.to_string()),
            "secure" => p.secure = true,
            "httponly" => p.http_only = true,
            "max-age" => {
                // RFC 6265 5.2.2: a leading digit or '-', then digits; otherwise ignored.
                let digits = v.strip_prefix('-').unwrap_or(v);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    max_age = Some(v.parse().unwrap_or(if v.starts_with('-') {
                        i64::MIN
                    } else {
                        i64::MAX
                    }));
                }
            }
            "expires" => expires = parse_http_date(v).or(expires),
            _ => {}
        }
    }
    p.expired = match (max_age, expires) {
        (Some(a), _) => a <= 0,
        (None, Some(t)) => t <= now,
        (None, None) => false,
    };
    Some(p)
}

/// The path of a request target, without query or fragment.
fn uri_path(target: &str) -> &str {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    &target[..end]
}

/// RFC 6265 5.1.4: the directory of the request path.
pub fn default_path(uri_path: &str) -> String {
    if !uri_path.starts_with('/') {
        return "/".to_string();
    }
    match uri_path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => uri_path[..i].to_string(),
    }
}

/// RFC 6265 5.1.4: does `request_path` path-match `cookie_path`?
pub fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    if request_path == cookie_path {
        return true;
    }
    request_path.starts_with(cookie_path)
        && (cookie_path.ends_with('/') || request_path.as_bytes()[cookie_path.len()] == b'/')
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate; also with `-` between the date parts, as
/// Tomcat's legacy cookie format writes `Thu, 01-Jan-1970 00:00:10 GMT`) → Unix seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.split_once(',').map_or(s, |(_, rest)| rest).trim();
    let s = s.replace('-', " ");
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() < 4 {
        return None;
    }
    let day: i64 = f[0].parse().ok()?;
    let month = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| f[1].to_ascii_lowercase().starts_with(m))? as i64
        + 1;
    let mut year: i64 = f[2].parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let hms: Vec<i64> = f[3].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn path_match_table() {
        // (request path, cookie path, matches)
        let cases = [
            ("/app", "/app", true),
            ("/app/", "/app", true),
            ("/app/x/y", "/app", true),
            ("/application", "/app", false),
            ("/ap", "/app", false),
            ("/app/x", "/app/", true),
            ("/app", "/app/", false),
            ("/anything", "/", true),
            ("/", "/", true),
            ("/APP/", "/app", false),
        ];
        for (req, cookie, want) in cases {
            assert_eq!(path_matches(req, cookie), want, "{req} vs {cookie}");
        }
    }

    #[test]
    fn default_path_table() {
        let cases = [
            ("", "/"),
            ("x", "/"),
            ("/", "/"),
            ("/app", "/"),
            ("/app/", "/app"),
            ("/app/index.jsp", "/app"),
            ("/a/b/c", "/a/b"),
        ];
        for (uri, want) in cases {
            assert_eq!(default_path(uri), want, "{uri}");
        }
    }

    #[test]
    fn most_specific_path_first_then_oldest() {
        let mut jar = CookieJar::new();
        jar.store_at("/", "JSESSIONID=root; Path=/", NOW);
        jar.store_at("/app/", "JSESSIONID=app; Path=/app; HttpOnly", NOW);
        jar.store_at("/", "other=1; Path=/", NOW);
        jar.store_at("/app/x/", "deep=1; Path=/app/x", NOW);
        assert_eq!(
            jar.cookie_header("/app/x/page?q=1").unwrap(),
            "deep=1; JSESSIONID=app; JSESSIONID=root; other=1"
        );
        assert_eq!(
            jar.cookie_header("/app/").unwrap(),
            "JSESSIONID=app; JSESSIONID=root; other=1"
        );
        assert_eq!(
            jar.cookie_header("/other").unwrap(),
            "JSESSIONID=root; other=1"
        );
        assert_eq!(jar.values_sent("JSESSIONID", "/app/"), ["app", "root"]);
    }

    #[test]
    fn same_name_and_path_replaces_and_keeps_its_place() {
        let mut jar = CookieJar::new();
        jar.store_at("/", "a=1; Path=/", NOW);
        jar.store_at("/", "b=1; Path=/", NOW);
        jar.store_at("/", "a=2; Path=/", NOW);
        assert_eq!(jar.cookie_header("/").unwrap(), "a=2; b=1");
        assert_eq!(jar.named("a").len(), 1);
        // Another path is another cookie.
        jar.store_at("/app/", "a=3; Path=/app", NOW);
        assert_eq!(jar.named("a").len(), 2);
        assert_eq!(jar.cookie_header("/").unwrap(), "a=2; b=1");
    }

    #[test]
    fn missing_or_relative_path_takes_the_request_directory() {
        let mut jar = CookieJar::new();
        jar.store_at("/app/index.jsp", "s=1", NOW);
        jar.store_at("/app/index.jsp", "t=1; Path=relative", NOW);
        assert_eq!(jar.named("s")[0].path, "/app");
        assert_eq!(jar.named("t")[0].path, "/app");
        assert_eq!(jar.cookie_header("/"), None);
        assert_eq!(jar.cookie_header("/app").unwrap(), "s=1; t=1");
    }

    #[test]
    fn deletion_by_max_age_or_past_expires() {
        let mut jar = CookieJar::new();
        for c in ["a=1; Path=/", "b=1; Path=/", "c=1; Path=/", "d=1; Path=/"] {
            jar.store_at("/", c, NOW);
        }
        assert!(!jar.store_at("/", "a=; Path=/; Max-Age=0", NOW));
        assert!(!jar.store_at(
            "/",
            "b=x; Path=/; Expires=Thu, 01-Jan-1970 00:00:10 GMT",
            NOW
        ));
        // Max-Age wins over Expires.
        assert!(jar.store_at(
            "/",
            "c=2; Path=/; Expires=Thu, 01 Jan 1970 00:00:10 GMT; Max-Age=60",
            NOW
        ));
        // A deletion with another path deletes nothing.
        assert!(!jar.store_at("/", "d=; Path=/app; Max-Age=0", NOW));
        assert_eq!(jar.cookie_header("/").unwrap(), "c=2; d=1");
        // An Expires in the future keeps it.
        assert!(jar.store_at(
            "/",
            "e=1; Path=/; Expires=Wed, 01 Jan 2031 00:00:00 GMT",
            NOW
        ));
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01-Jan-1970 00:00:10 GMT"), Some(10));
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn ignored_headers_and_quoted_values() {
        let mut jar = CookieJar::new();
        assert!(!jar.store_at("/", "novalue", NOW));
        assert!(!jar.store_at("/", "=x; Path=/", NOW));
        assert!(jar.store_at("/", "q=\"quoted\"; Path=/", NOW));
        assert_eq!(jar.cookie_header("/").unwrap(), "q=quoted");
    }

    #[test]
    fn secure_cookies_only_on_secure_channels() {
        let mut jar = CookieJar::new();
        jar.store_at("/", "s=1; Path=/; Secure", NOW);
        jar.store_at("/", "p=1; Path=/", NOW);
        assert_eq!(jar.cookie_header("/").unwrap(), "p=1");
        jar.secure_channel = true;
        assert_eq!(jar.cookie_header("/").unwrap(), "s=1; p=1");
    }

    /// The shape of the bounce-back defect: the application's `Path=/app` cookie and a balancer
    /// cookie with `Path=/` are two cookies, and the application's goes first.
    #[test]
    fn two_session_cookies_with_different_paths() {
        let mut jar = CookieJar::new();
        jar.store_at("/app/", "JSESSIONID=X.jvm2; Path=/app; HttpOnly", NOW);
        jar.store_at("/app/", "JSESSIONID=X.jvm2.jvm3; Path=/; HttpOnly", NOW);
        assert_eq!(
            jar.cookie_header("/app/").unwrap(),
            "JSESSIONID=X.jvm2; JSESSIONID=X.jvm2.jvm3"
        );
        // Written with the application's path, the rebound cookie replaces it.
        let mut jar = CookieJar::new();
        jar.store_at("/app/", "JSESSIONID=X.jvm2; Path=/app; HttpOnly", NOW);
        jar.store_at("/app/", "JSESSIONID=X.jvm2.jvm3; Path=/app; HttpOnly", NOW);
        assert_eq!(
            jar.cookie_header("/app/").unwrap(),
            "JSESSIONID=X.jvm2.jvm3"
        );
    }
}
