//! What a pool's nodes were seen to set on the session cookie, per cookie name and application
//! context (the first segment of the request path), bounded: the memory behind
//! `core::cookie`'s decisions. Written when a node's response sets the session cookie (new
//! sessions), read when the balancer writes one (failover, a stale cookie). Part of the pool's
//! runtime, so it survives reloads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::core::cookie::{self, CookieAttrs};

/// At most this many (cookie name, context) entries per pool; later ones are not learned (what
/// was learned stays, and a context without an entry still finds a learned cookie whose path
/// covers it).
pub const MAX_CONTEXTS: usize = 256;

#[derive(Debug, Default)]
pub struct LearnedCookies {
    map: RwLock<HashMap<(String, String), CookieAttrs>>,
    /// The fingerprint ([`fingerprint`]) of the last `Set-Cookie` attributes learned from and
    /// of the request they answered, 0 for none: the same text again (every new session of a
    /// pool repeats it) needs no parse. An atomic rather than a lock: every new session reads
    /// it, from every worker thread, and a read that writes nothing shares the cache line.
    recent: AtomicU64,
}

/// A 64-bit hash of everything `core::cookie::learn`'s result and its storage depend on: the
/// cookie name, the request's context and directory, the attribute text. Two different inputs
/// share one with a chance of 2^-64, and the cost of that is one `Set-Cookie` not learned from.
fn fingerprint(name: &str, request_path: &str, attrs: &str) -> u64 {
    let parts = [
        name,
        cookie::context_of(request_path),
        cookie::default_path(request_path),
        attrs,
    ];
    // One hash over the parts joined by 0xff (never a byte of UTF-8 text, so the joining is
    // unambiguous) in a stack buffer: each call has a set-up cost that outweighs hashing the
    // few dozen bytes. Longer inputs are hashed part by part.
    let mut joined = [0u8; 256];
    let mut len = 0;
    for p in parts {
        let end = len + p.len() + 1;
        if end > joined.len() {
            let h = parts
                .iter()
                .fold(0x5eed, |h, p| xxh3_64_with_seed(p.as_bytes(), h));
            return h.max(1);
        }
        joined[len..end - 1].copy_from_slice(p.as_bytes());
        joined[end - 1] = 0xff;
        len = end;
    }
    xxh3_64_with_seed(&joined[..len], 0x5eed).max(1)
}

type Map = HashMap<(String, String), CookieAttrs>;

fn lookup<'m>(map: &'m Map, name: &str, request_path: &str) -> Option<&'m CookieAttrs> {
    cookie::best_learned(
        map.iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, ctx), a)| (ctx.as_str(), a)),
        request_path,
    )
}

impl LearnedCookies {
    /// Whether a `Set-Cookie` for `name` with these attributes (`core::cookie::attributes`)
    /// was the last one learned from, in the response to a request path like this one.
    pub fn seen(&self, name: &str, request_path: &str, attrs: &str) -> bool {
        self.recent.load(Ordering::Relaxed) == fingerprint(name, request_path, attrs)
    }

    /// Remembers the `Set-Cookie` attributes just learned from (see [`LearnedCookies::seen`]).
    pub fn remember(&self, name: &str, request_path: &str, attrs: &str) {
        self.recent
            .store(fingerprint(name, request_path, attrs), Ordering::Relaxed);
    }

    /// Records that a node set cookie `name` with `attrs` in the response to `request_path`.
    /// Nothing is stored when a lookup for that path already gives the same attributes (the
    /// common case: every new session repeats them), so requests to arbitrary paths of an
    /// application at `/` do not fill the table. Returns whether something was stored.
    pub fn learn(&self, name: &str, request_path: &str, attrs: CookieAttrs) -> bool {
        {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            if lookup(&map, name, request_path) == Some(&attrs) {
                return false;
            }
        }
        let key = (
            name.to_string(),
            cookie::context_of(request_path).to_string(),
        );
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CONTEXTS && !map.contains_key(&key) {
            return false;
        }
        map.insert(key, attrs);
        true
    }

    /// The attributes for a cookie `name` written in the response to `request_path`.
    pub fn lookup(&self, name: &str, request_path: &str) -> Option<CookieAttrs> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        lookup(&map, name, request_path).cloned()
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
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
    fn seen_is_the_last_remembered_for_the_same_request_shape() {
        let l = LearnedCookies::default();
        assert!(!l.seen("JSESSIONID", "/app/a", "; Path=/app"));
        l.remember("JSESSIONID", "/app/a", "; Path=/app");
        assert!(l.seen("JSESSIONID", "/app/a", "; Path=/app"));
        assert!(
            l.seen("JSESSIONID", "/app/b", "; Path=/app"),
            "same context and directory"
        );
        let others = [
            ("JSESSIONID", "/app/a", "; Path=/app; Secure"),
            ("OTHER", "/app/a", "; Path=/app"),
            ("JSESSIONID", "/shop/a", "; Path=/app"),
            ("JSESSIONID", "/app/x/a", "; Path=/app"),
        ];
        for (name, path, attrs) in others {
            assert!(!l.seen(name, path, attrs), "{name} {path} {attrs}");
        }
        l.remember("JSESSIONID", "/shop/a", "");
        assert!(
            !l.seen("JSESSIONID", "/app/a", "; Path=/app"),
            "only the last one"
        );
        // Long attributes are told apart by their last byte.
        let long = format!("; Path=/app; Domain={}", "d".repeat(300));
        let longer = format!("{long}x");
        l.remember("JSESSIONID", "/app/a", &long);
        assert!(l.seen("JSESSIONID", "/app/a", &long));
        assert!(!l.seen("JSESSIONID", "/app/a", &longer));
        // The same bytes split otherwise between name and attributes are another cookie.
        l.remember("JSESSIONID", "/", "x");
        assert!(!l.seen("JSESSIONIDx", "/", ""));
    }

    #[test]
    fn learns_per_context_and_name() {
        let l = LearnedCookies::default();
        assert_eq!(l.lookup("JSESSIONID", "/app/x"), None);
        assert!(l.learn("JSESSIONID", "/app/", attrs("/app")));
        assert!(l.learn("JSESSIONID", "/shop/", attrs("/shop")));
        assert_eq!(l.lookup("JSESSIONID", "/app/x"), Some(attrs("/app")));
        assert_eq!(l.lookup("JSESSIONID", "/shop"), Some(attrs("/shop")));
        assert_eq!(l.lookup("OTHER", "/app/x"), None);
        assert_eq!(l.lookup("JSESSIONID", "/blog/"), None);
        // A redeployed application with another path: the last one seen wins.
        assert!(l.learn("JSESSIONID", "/app/", attrs("/app/v2")));
        assert_eq!(l.lookup("JSESSIONID", "/app/x"), Some(attrs("/app/v2")));
        // Seen again, unchanged: nothing written.
        assert!(!l.learn("JSESSIONID", "/app/y", attrs("/app/v2")));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn an_application_at_the_root_takes_one_entry_whatever_the_paths() {
        let l = LearnedCookies::default();
        assert!(l.learn("JSESSIONID", "/login", attrs("/")));
        for i in 0..1000 {
            assert!(!l.learn("JSESSIONID", &format!("/page{i}/x"), attrs("/")));
        }
        assert_eq!(l.len(), 1);
        assert_eq!(l.lookup("JSESSIONID", "/anything"), Some(attrs("/")));
    }

    #[test]
    fn bounded() {
        let l = LearnedCookies::default();
        for i in 0..MAX_CONTEXTS + 50 {
            l.learn("JSESSIONID", &format!("/c{i}/"), attrs(&format!("/c{i}")));
        }
        assert_eq!(l.len(), MAX_CONTEXTS);
        // Known contexts are still updated when full.
        assert!(l.learn("JSESSIONID", "/c0/", attrs("/c0/new")));
        assert_eq!(l.lookup("JSESSIONID", "/c0/"), Some(attrs("/c0/new")));
        assert_eq!(
            l.lookup("JSESSIONID", &format!("/c{}/", MAX_CONTEXTS + 10)),
            None
        );
    }
}
