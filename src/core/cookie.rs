//! The session cookie's attributes: what the pool's nodes set on theirs, and what a `Set-Cookie`
//! the balancer writes carries, so that it *replaces* the application's cookie in the browser
//! instead of standing next to it.
//!
//! A browser keys cookies by name, domain and path (RFC 6265 5.3). Tomcat's session cookie has
//! `Path=/<context>`; a balancer cookie with another path is a second cookie, sent after the
//! application's (the more specific path goes first), and the stale one pulls the session back
//! to its old node when that node returns. So the balancer learns the attributes from the nodes'
//! own `Set-Cookie`, per application context (the first segment of the request path), and
//! writes its cookies with them; `cookie.path` of the pool is used until something was learned.
//!
//! Pure: the bounded store of what was learned is `state::cookies`.

use cookie::{Cookie, SameSite};

/// Attributes of a `Set-Cookie` the balancer writes when the backend sent none to copy from,
/// and nothing was learned for the context yet (the pool's `cookie:` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieDefaults {
    /// `Path` before the nodes' own is known; `None`: `/`. Set it to the application's context
    /// path for the time before the first cookie is seen.
    pub path: Option<String>,
    pub http_only: bool,
    pub same_site: Option<SameSite>,
}

impl Default for CookieDefaults {
    fn default() -> Self {
        CookieDefaults {
            path: None,
            http_only: true,
            same_site: None,
        }
    }
}

/// The attributes a session cookie is set with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttrs {
    pub path: String,
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: Option<SameSite>,
}

/// The attributes for a cookie the balancer writes, and whether its `Path` is known (learned
/// from a node, or configured) rather than the `/` of last resort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteAttrs {
    pub attrs: CookieAttrs,
    pub path_known: bool,
}

/// The application context of a request path: its first segment without path parameters
/// (`/app/x` → `app`, `/app;jsessionid=…` → `app`, `/` → ``).
pub fn context_of(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    // By bytes (the delimiters are ASCII): a `char` pattern search cost several times more on
    // the short paths every new session passes here with.
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b';' | b'?' | b'#'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// RFC 6265 5.1.4: the path a cookie without a `Path` attribute gets (the directory of the
/// request path).
pub fn default_path(request_path: &str) -> &str {
    // By bytes, as in `context_of`.
    let b = request_path.as_bytes();
    let end = b
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .unwrap_or(b.len());
    if b.first() != Some(&b'/') {
        return "/";
    }
    match b[..end].iter().rposition(|&c| c == b'/') {
        Some(0) | None => "/",
        Some(i) => &request_path[..i],
    }
}

/// RFC 6265 5.1.4: does a request for `request_path` carry a cookie of `cookie_path`?
pub fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path[cookie_path.len()..].starts_with('/')))
}

/// The name and value of a `Set-Cookie` value (`name=value; attrs`), trimmed, as the
/// `cookie` crate reads them; `None` without `=` or with an empty name.
///
/// Hand-written for cost: every response that sets a cookie passes here, and the crate's
/// full parse (every attribute, `Expires` dates) costs an eighth of a new session's
/// instructions. Checked against the crate in the tests below.
pub fn name_value(set_cookie: &str) -> Option<(&str, &str)> {
    // Byte scans: `;` and `=` are ASCII, so the cuts fall on character boundaries.
    // `memchr` and ASCII trims (cookie whitespace is SP and HTAB): a few instructions where
    // a byte loop and the Unicode `trim` cost hundreds per value.
    let b = set_cookie.as_bytes();
    let end = memchr::memchr(b';', b).unwrap_or(b.len());
    let eq = memchr::memchr(b'=', &b[..end])?;
    let name = set_cookie[..eq].trim_ascii();
    (!name.is_empty()).then_some((name, set_cookie[eq + 1..end].trim_ascii()))
}

/// The value of a `Set-Cookie` of cookie `name`, as [`name_value`] reads it; `None` when it
/// sets another cookie (or is not a cookie). A value that starts with `name=` (how servers
/// write it) is cut without looking for the `=` or trimming the name.
pub fn value_if_named<'a>(set_cookie: &'a str, name: &str) -> Option<&'a str> {
    let b = set_cookie.as_bytes();
    if !name.is_empty()
        && b.len() > name.len()
        && b[name.len()] == b'='
        && b.starts_with(name.as_bytes())
    {
        let rest = &b[name.len() + 1..];
        let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
        let at = name.len() + 1;
        return Some(set_cookie[at..at + end].trim_ascii());
    }
    name_value(set_cookie).and_then(|(n, v)| (n == name).then_some(v))
}

/// The attributes of a `Set-Cookie` value: everything from its first `;` on (empty when it
/// has none).
pub fn attributes(set_cookie: &str) -> &str {
    memchr::memchr(b';', set_cookie.as_bytes()).map_or("", |i| &set_cookie[i..])
}

/// What one backend `Set-Cookie` teaches about the session cookie `name`, received for a
/// request of `request_path`: its attributes, when it sets the cookie (a non-empty value, not
/// a deletion by `Max-Age` ≤ 0).
pub fn learn(set_cookie: &str, name: &str, request_path: &str) -> Option<CookieAttrs> {
    let c = Cookie::parse(set_cookie).ok()?;
    if c.name() != name || c.value().is_empty() {
        return None;
    }
    if c.max_age().is_some_and(|a| a.is_negative() || a.is_zero()) {
        return None;
    }
    let path = match c.path() {
        Some(p) if p.starts_with('/') => p.to_string(),
        _ => default_path(request_path).to_string(),
    };
    Some(CookieAttrs {
        path,
        domain: c.domain().map(str::to_string),
        secure: c.secure().unwrap_or(false),
        http_only: c.http_only().unwrap_or(false),
        same_site: c.same_site(),
    })
}

/// Among learned `(context, attributes)` entries, the ones for a cookie written in the response
/// to `request_path`: those learned in its context, else those whose `Path` the request
/// path-matches, the longest path first (an application at `/` sets `Path=/` on a request of
/// any first segment).
pub fn best_learned<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a CookieAttrs)>,
    request_path: &str,
) -> Option<&'a CookieAttrs> {
    let ctx = context_of(request_path);
    let mut best: Option<&'a CookieAttrs> = None;
    for (c, attrs) in entries {
        if c == ctx {
            return Some(attrs);
        }
        if path_matches(request_path, &attrs.path)
            && best.is_none_or(|b| attrs.path.len() > b.path.len())
        {
            best = Some(attrs);
        }
    }
    best
}

/// The attributes of a cookie the balancer writes: the learned ones (stricter `HttpOnly` and
/// `SameSite` of the config added), else the configured defaults. (`Secure` on TLS listeners is
/// added by the writer, `binder::rewrite_set_cookies`.)
pub fn attrs_to_write(learned: Option<&CookieAttrs>, defaults: &CookieDefaults) -> WriteAttrs {
    match learned {
        Some(l) => WriteAttrs {
            attrs: CookieAttrs {
                path: l.path.clone(),
                domain: l.domain.clone(),
                secure: l.secure,
                http_only: l.http_only || defaults.http_only,
                same_site: l.same_site.or(defaults.same_site),
            },
            path_known: true,
        },
        None => WriteAttrs {
            attrs: CookieAttrs {
                path: defaults.path.clone().unwrap_or_else(|| "/".to_string()),
                domain: None,
                secure: false,
                http_only: defaults.http_only,
                same_site: defaults.same_site,
            },
            path_known: defaults.path.is_some(),
        },
    }
}

/// `name=value` with `attrs`, as a `Set-Cookie` value.
pub fn set_cookie(name: &str, value: &str, attrs: &CookieAttrs) -> String {
    let mut c = Cookie::new(name.to_string(), value.to_string());
    c.set_path(attrs.path.clone());
    if let Some(d) = &attrs.domain {
        c.set_domain(d.clone());
    }
    if attrs.secure {
        c.set_secure(true);
    }
    if attrs.http_only {
        c.set_http_only(true);
    }
    if let Some(s) = attrs.same_site {
        c.set_same_site(s);
    }
    c.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_value_reads_like_the_cookie_crate() {
        let cases = [
            "JSESSIONID=ABC.jvm2; Path=/; HttpOnly",
            "JSESSIONID=ABC.jvm2",
            " JSESSIONID = ABC.jvm2 ;Path=/app",
            "JSESSIONID=",
            "JSESSIONID=; Max-Age=0",
            "JSESSIONID=\"quoted\"; Secure",
            "a=b=c; Path=/",
            "=novalue",
            "noequals",
            "noequals; Path=/",
            "",
            ";",
            "x=y; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
            "x=y; Expires=garbage",
            "name\t=\tv\t",
        ];
        for c in cases {
            let ours = name_value(c);
            let theirs = Cookie::parse(c).ok();
            let theirs = theirs.as_ref().map(|k| (k.name(), k.value()));
            assert_eq!(ours, theirs, "{c:?}");
        }
    }

    /// The cut for a value that starts with the name agrees with the general reading, for
    /// the name asked and for others (a prefix of it, another case, another name).
    #[test]
    fn value_if_named_reads_like_name_value() {
        let cases = [
            "JSESSIONID=ABC.jvm2; Path=/; HttpOnly",
            "JSESSIONID=ABC.jvm2",
            " JSESSIONID = ABC.jvm2 ;Path=/app",
            "JSESSIONID= ABC ; Path=/",
            "JSESSIONID=",
            "JSESSIONID=; Max-Age=0",
            "JSESSIONID=a=b; Path=/",
            "JSESSIONIDX=ABC",
            "JSESSIONID",
            "JSESSIONID;=x",
            "jsessionid=ABC",
            "a=b=c; Path=/",
            "=novalue",
            "",
            "name\t=\tv\t",
        ];
        for c in cases {
            for name in ["JSESSIONID", "JSESSION", "a", "jsessionid", "x"] {
                let want = name_value(c).and_then(|(n, v)| (n == name).then_some(v));
                assert_eq!(value_if_named(c, name), want, "{c:?} {name:?}");
            }
        }
    }

    #[test]
    fn attributes_are_what_follows_the_pair() {
        assert_eq!(attributes("a=b; Path=/; HttpOnly"), "; Path=/; HttpOnly");
        assert_eq!(attributes("a=b"), "");
    }

    use super::*;

    fn attrs(path: &str) -> CookieAttrs {
        CookieAttrs {
            path: path.into(),
            domain: None,
            secure: false,
            http_only: true,
            same_site: None,
        }
    }

    #[test]
    fn context_table() {
        let cases = [
            ("/", ""),
            ("", ""),
            ("/app", "app"),
            ("/app/", "app"),
            ("/app/x/y.jsp", "app"),
            ("/app;jsessionid=X.jvm1", "app"),
            ("/app?q=1", "app"),
            ("/app#f", "app"),
            ("/ü/x", "ü"),
            ("/index.jsp", "index.jsp"),
        ];
        for (path, want) in cases {
            assert_eq!(context_of(path), want, "{path}");
        }
    }

    #[test]
    fn default_path_and_path_match_tables() {
        for (uri, want) in [
            ("/", "/"),
            ("/app", "/"),
            ("/app/", "/app"),
            ("/app/x.jsp?q=/a/b", "/app"),
            ("/app/b/c#frag/x", "/app/b"),
            ("/a?", "/"),
            ("?x/y", "/"),
            ("/ü/é/x", "/ü/é"),
            ("x", "/"),
        ] {
            assert_eq!(default_path(uri), want, "{uri}");
        }
        for (req, cookie, want) in [
            ("/app", "/app", true),
            ("/app/x", "/app", true),
            ("/application", "/app", false),
            ("/app/x", "/app/", true),
            ("/app", "/app/", false),
            ("/x", "/", true),
        ] {
            assert_eq!(path_matches(req, cookie), want, "{req} {cookie}");
        }
    }

    #[test]
    fn learn_table() {
        // (Set-Cookie, request path, learned)
        let tomcat = CookieAttrs {
            path: "/app".into(),
            domain: None,
            secure: false,
            http_only: true,
            same_site: None,
        };
        let full = CookieAttrs {
            path: "/shop".into(),
            domain: Some("example.com".into()),
            secure: true,
            http_only: false,
            same_site: Some(SameSite::Lax),
        };
        let cases: Vec<(&str, &str, Option<CookieAttrs>)> = vec![
            (
                "JSESSIONID=X.jvm1; Path=/app; HttpOnly",
                "/app/",
                Some(tomcat.clone()),
            ),
            (
                "JSESSIONID=X.jvm1; Path=/shop; Domain=example.com; Secure; SameSite=Lax",
                "/shop/cart",
                Some(full),
            ),
            // No Path: the directory of the request.
            (
                "JSESSIONID=X.jvm1; HttpOnly",
                "/app/index.jsp",
                Some(tomcat.clone()),
            ),
            // Another cookie, a deletion, an empty value, garbage: nothing learned.
            ("OTHER=1; Path=/", "/app/", None),
            ("JSESSIONID=X.jvm1; Path=/app; Max-Age=0", "/app/", None),
            ("JSESSIONID=; Path=/app", "/app/", None),
            ("not a cookie", "/app/", None),
        ];
        for (header, path, want) in cases {
            assert_eq!(learn(header, "JSESSIONID", path), want, "{header}");
        }
    }

    #[test]
    fn best_learned_prefers_the_context_then_the_longest_matching_path() {
        let app = attrs("/app");
        let root = attrs("/");
        let deep = attrs("/app/admin");
        let entries = [("app", &app), ("login", &root), ("other", &deep)];
        let pick = |path: &str| best_learned(entries.iter().map(|(c, a)| (*c, *a)), path);
        assert_eq!(pick("/app/x"), Some(&app));
        // No entry for "cart": the learned Path=/ covers it.
        assert_eq!(pick("/cart/view"), Some(&root));
        assert_eq!(pick("/"), Some(&root));
        let only_app = [("app", &app)];
        assert_eq!(
            best_learned(only_app.iter().map(|(c, a)| (*c, *a)), "/shop/"),
            None
        );
        // Without a context entry, the most specific matching path wins.
        let no_ctx = [("a", &root), ("b", &deep)];
        assert_eq!(
            best_learned(no_ctx.iter().map(|(c, a)| (*c, *a)), "/app/admin/x"),
            Some(&deep)
        );
    }

    #[test]
    fn attrs_to_write_table() {
        let cfg = CookieDefaults::default();
        let cfg_path = CookieDefaults {
            path: Some("/app".into()),
            http_only: false,
            same_site: Some(SameSite::Strict),
        };
        let learned = CookieAttrs {
            path: "/shop".into(),
            domain: Some("example.com".into()),
            secure: false,
            http_only: false,
            same_site: None,
        };
        // Nothing learned, nothing configured: `/`, and the path is not known.
        let w = attrs_to_write(None, &cfg);
        assert_eq!((w.attrs.path.as_str(), w.path_known), ("/", false));
        assert!(w.attrs.http_only && !w.attrs.secure);
        // Configured path: an override until something is learned.
        let w = attrs_to_write(None, &cfg_path);
        assert_eq!((w.attrs.path.as_str(), w.path_known), ("/app", true));
        assert!(!w.attrs.secure && !w.attrs.http_only);
        assert_eq!(w.attrs.same_site, Some(SameSite::Strict));
        // Learned: its path and domain win over the configured path; the stricter flags add up.
        let w = attrs_to_write(Some(&learned), &cfg_path);
        assert_eq!(w.attrs.path, "/shop");
        assert_eq!(w.attrs.domain.as_deref(), Some("example.com"));
        assert!(w.path_known && !w.attrs.http_only && !w.attrs.secure);
        assert_eq!(w.attrs.same_site, Some(SameSite::Strict));
        let w = attrs_to_write(Some(&learned), &cfg);
        assert!(w.attrs.http_only && !w.attrs.secure);
        let secure = CookieAttrs {
            secure: true,
            ..learned.clone()
        };
        assert!(attrs_to_write(Some(&secure), &cfg).attrs.secure);
    }

    #[test]
    fn set_cookie_round_trips_through_learn() {
        let a = CookieAttrs {
            path: "/app".into(),
            domain: Some("example.com".into()),
            secure: true,
            http_only: true,
            same_site: Some(SameSite::None),
        };
        let v = set_cookie("JSESSIONID", "X.jvm1.jvm2", &a);
        assert!(v.starts_with("JSESSIONID=X.jvm1.jvm2;"), "{v}");
        assert_eq!(learn(&v, "JSESSIONID", "/elsewhere/"), Some(a));
    }
}
