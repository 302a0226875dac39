//! Binders: how a session id is rebound when its session moves to another node.
//!
//! Three kinds (see DESIGN.md, "Binders"):
//! - `translate`: the backend keeps its id (`X.jvm1`), the client holds `X.jvm1.jvm2`;
//! - `rename`: the store renames `X.jvm1` to `X.jvm2` and everybody uses the new id;
//! - `backend`: the balancer only reroutes; the application server renames and says so in its
//!   `Set-Cookie`.
//!
//! Everything here is pure: which id to forward, which id the client must hold, and how to
//! rewrite the response's `Set-Cookie` and `Location` headers. The store call of `rename` lives
//! in `proxy`, the store itself in `store`.

use crate::core::cookie::{set_cookie, WriteAttrs};
use crate::core::session::{find_path_param, pin_route, replace_range, strip_last_route};

/// The pool's binder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinderKind {
    Translate,
    Rename,
    Backend,
}

impl BinderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BinderKind::Translate => "translate",
            BinderKind::Rename => "rename",
            BinderKind::Backend => "backend",
        }
    }
}

/// Result of one rebind, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebindResult {
    /// The client received a new id (translate, or a successful store rename).
    Rebound = 0,
    /// The store had already renamed it (a concurrent request or another balancer).
    AlreadyRenamed = 1,
    /// The store did not know the session; the new id was used anyway.
    NotFound = 2,
    /// The store failed; `on_store_error` decided.
    StoreError = 3,
}

impl RebindResult {
    pub const ALL: [RebindResult; 4] = [
        RebindResult::Rebound,
        RebindResult::AlreadyRenamed,
        RebindResult::NotFound,
        RebindResult::StoreError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RebindResult::Rebound => "rebound",
            RebindResult::AlreadyRenamed => "already_renamed",
            RebindResult::NotFound => "not_found",
            RebindResult::StoreError => "store_error",
        }
    }
}

/// The backend-facing id of a client-facing id. Only `translate` differs: an id with two or
/// more separators carries a translation suffix, which is stripped (`X.jvm1.jvm2` -> `X.jvm1`).
/// An id the node issued without a route was translated with an empty route segment in
/// between, which goes too (`X..jvm2` -> `X`): the node gets its id back exactly as it issued it.
pub fn backend_facing(kind: BinderKind, client_id: &str, sep: char) -> &str {
    if kind == BinderKind::Translate && crate::core::session::has_two_seps(client_id, sep) {
        let base = strip_last_route(client_id, sep).unwrap_or(client_id);
        base.strip_suffix(sep).unwrap_or(base)
    } else {
        client_id
    }
}

/// The ids of a request after failover to `new_route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebind {
    /// The id forwarded to the new node.
    pub forward_id: String,
    /// The id the client must hold from now on.
    pub client_id: String,
    /// `Some((old, new))`: the store must rename the session before forwarding.
    pub rename: Option<(String, String)>,
}

/// Decides the ids of a failed-over session. `backend_id` is the backend-facing id.
///
/// An id that would grow past [`MAX_SESSION_ID_BYTES`](crate::core::session::MAX_SESSION_ID_BYTES)
/// with the new route is kept as it is (no translation, no rename): a longer one would not be
/// read back as a session on the client's next request, and the session would be lost. Kept,
/// it fails over again on each request, to the same node (the choice is a hash of the id).
pub fn rebind(kind: BinderKind, backend_id: &str, new_route: &str, sep: char) -> Rebind {
    let r = rebind_unchecked(kind, backend_id, new_route, sep);
    if crate::core::session::is_valid_id(&r.client_id)
        || !crate::core::session::is_valid_id(backend_id)
    {
        return r;
    }
    Rebind {
        forward_id: backend_id.to_string(),
        client_id: backend_id.to_string(),
        rename: None,
    }
}

fn rebind_unchecked(kind: BinderKind, backend_id: &str, new_route: &str, sep: char) -> Rebind {
    match kind {
        BinderKind::Translate => {
            let client_id = match pin_route(backend_id, sep) {
                Some(home) if home == new_route => backend_id.to_string(),
                Some(_) => format!("{backend_id}{sep}{new_route}"),
                // No route of its own (a node without jvmRoute): `X..jvm2`, so that the
                // translation stays recognisable (two separators) and strips back to `X`.
                None => format!("{backend_id}{sep}{sep}{new_route}"),
            };
            Rebind {
                forward_id: backend_id.to_string(),
                client_id,
                rename: None,
            }
        }
        BinderKind::Rename => {
            let base = strip_last_route(backend_id, sep).unwrap_or(backend_id);
            let new_id = format!("{base}{sep}{new_route}");
            let rename = (new_id != backend_id).then(|| (backend_id.to_string(), new_id.clone()));
            Rebind {
                forward_id: new_id.clone(),
                client_id: new_id,
                rename,
            }
        }
        BinderKind::Backend => Rebind {
            forward_id: backend_id.to_string(),
            client_id: backend_id.to_string(),
            rename: None,
        },
    }
}

/// What the response must tell the client about its session id.
#[derive(Debug, Clone, Copy)]
pub struct ResponsePlan<'a> {
    pub binder: BinderKind,
    /// The session cookie name the client used (or the first configured name).
    pub cookie_name: &'a str,
    /// The id forwarded to the backend (`None`: no session in the request).
    pub forward_id: Option<&'a str>,
    /// The id the client must hold after this response.
    pub client_id: Option<&'a str>,
    /// The client's id changed in this request (failover): it must receive a `Set-Cookie`.
    pub client_changed: bool,
    /// The request also carried an older form of the client's id (`X.jvm2` next to
    /// `X.jvm2.jvm3`: a stale cookie under another path): the id is written again, where its
    /// path is known, so that it overwrites the stale one.
    pub reissue: bool,
    /// The client connection is TLS: cookies the balancer writes get `Secure`.
    pub secure: bool,
}

/// What happened to the response's session cookies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetCookieOutcome {
    /// Session ids the backend issued or re-issued, as the client will hold them.
    pub issued: Vec<String>,
    /// The balancer appended a `Set-Cookie` of its own.
    pub added: bool,
    /// A backend `Set-Cookie` was rewritten to the client-facing id.
    pub rewritten: bool,
}

impl SetCookieOutcome {
    /// Whether the `Set-Cookie` values changed: only then is the response's set replaced.
    pub fn changed(&self) -> bool {
        self.rewritten || self.added
    }
}

/// Rewrites the response's `Set-Cookie` values (`values`: every `Set-Cookie` header, in order)
/// and returns what happened. Rules (DESIGN.md "Binders"):
/// - a backend cookie re-issuing the forwarded id is rewritten to the client-facing id (keeping
///   its attributes) under `translate`;
/// - any other session cookie from the backend (a new id, a valve rename) passes untouched and
///   wins: the balancer adds none of its own;
/// - otherwise, when the client's id changed, one `Set-Cookie` is appended with `attrs` (the
///   attributes the nodes set on the session cookie, else the pool's defaults; asked for only
///   then); on a `reissue`, only when its path is known.
pub fn rewrite_set_cookies(
    values: &mut Vec<String>,
    plan: &ResponsePlan<'_>,
    attrs: impl FnOnce() -> WriteAttrs,
) -> SetCookieOutcome {
    let mut outcome = SetCookieOutcome::default();
    let mut backend_set_session = false;
    for value in values.iter_mut() {
        let Some(backend_value) = crate::core::cookie::value_if_named(value, plan.cookie_name)
        else {
            continue;
        };
        backend_set_session = true;
        if backend_value.is_empty() {
            continue; // the application deletes its session cookie: pass through
        }
        let reissues_forwarded = plan.forward_id == Some(backend_value);
        if plan.binder == BinderKind::Translate && reissues_forwarded {
            if let Some(client_id) = plan.client_id.filter(|c| *c != backend_value) {
                // Splice the new value into the backend's own text: attributes the cookie crate
                // does not know (Priority, Partitioned) and their order are kept.
                *value = splice_cookie_value(value, client_id);
                outcome.rewritten = true;
                outcome.issued.push(client_id.to_string());
                continue;
            }
        }
        outcome.issued.push(backend_value.to_string());
    }
    if !(plan.client_changed || plan.reissue) || backend_set_session {
        return outcome;
    }
    if let Some(client_id) = plan.client_id {
        let WriteAttrs {
            mut attrs,
            path_known,
        } = attrs();
        if plan.client_changed || path_known {
            attrs.secure |= plan.secure;
            values.push(set_cookie(plan.cookie_name, client_id, &attrs));
            outcome.added = true;
            outcome.issued.push(client_id.to_string());
        }
    }
    outcome
}

/// Replaces the value of a `Set-Cookie` (`name=value; attrs`), keeping everything else as is.
fn splice_cookie_value(set_cookie: &str, new_value: &str) -> String {
    let Some(eq) = set_cookie.find('=') else {
        return set_cookie.to_string();
    };
    let end = set_cookie[eq..]
        .find(';')
        .map_or(set_cookie.len(), |i| eq + i);
    format!(
        "{}={new_value}{}",
        set_cookie[..eq].trim_end(),
        &set_cookie[end..]
    )
}

/// Rewrites `;param=<from>` to `;param=<to>` in a URL or path (a `Location` header, a request
/// path). Returns `None` when the parameter is absent or carries another id.
pub fn rewrite_path_param(url: &str, param: &str, from: &str, to: &str) -> Option<String> {
    let (start, end) = find_path_param(url, param)?;
    (&url[start..end] == from).then(|| replace_range(url, start, end, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::cookie::{attrs_to_write, CookieAttrs, CookieDefaults};
    use cookie::SameSite;
    use proptest::prelude::*;
    use BinderKind::*;

    #[test]
    fn backend_facing_table() {
        let cases = [
            (Translate, "X.jvm1", "X.jvm1"),
            (Translate, "X.jvm1.jvm2", "X.jvm1"),
            (Translate, "X", "X"),
            (Translate, "X.", "X."),
            (Translate, "X.a.b.c", "X.a.b"),
            (Translate, "X..jvm2", "X"),
            (Translate, "X...jvm2", "X."),
            (Translate, "X..", "X"),
            (Rename, "X.jvm1.jvm2", "X.jvm1.jvm2"),
            (Backend, "X.jvm1.jvm2", "X.jvm1.jvm2"),
        ];
        for (kind, client, want) in cases {
            assert_eq!(backend_facing(kind, client, '.'), want, "{kind:?} {client}");
        }
    }

    #[test]
    fn rebind_table() {
        // (binder, backend id, new route, forward, client, rename)
        type Case<'a> = (
            BinderKind,
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            Option<(&'a str, &'a str)>,
        );
        let cases: &[Case] = &[
            (Translate, "X.jvm1", "jvm2", "X.jvm1", "X.jvm1.jvm2", None),
            (Translate, "X.jvm1", "jvm1", "X.jvm1", "X.jvm1", None),
            // An id without a route: an empty route segment marks the translation.
            (Translate, "X", "jvm2", "X", "X..jvm2", None),
            (Translate, "X.", "jvm2", "X.", "X...jvm2", None),
            (
                Rename,
                "X.jvm1",
                "jvm2",
                "X.jvm2",
                "X.jvm2",
                Some(("X.jvm1", "X.jvm2")),
            ),
            (Rename, "X.jvm2", "jvm2", "X.jvm2", "X.jvm2", None),
            (
                Rename,
                "X",
                "jvm2",
                "X.jvm2",
                "X.jvm2",
                Some(("X", "X.jvm2")),
            ),
            (Backend, "X.jvm1", "jvm2", "X.jvm1", "X.jvm1", None),
        ];
        for (kind, backend, route, forward, client, rename) in cases {
            let got = rebind(*kind, backend, route, '.');
            assert_eq!(got.forward_id, *forward, "{kind:?} {backend} -> {route}");
            assert_eq!(got.client_id, *client, "{kind:?} {backend} -> {route}");
            let want_rename = rename.map(|(a, b)| (a.to_string(), b.to_string()));
            assert_eq!(got.rename, want_rename, "{kind:?} {backend} -> {route}");
        }
    }

    #[test]
    fn an_id_too_long_for_another_route_is_kept() {
        // Found by the set_cookie fuzz target's Location check: a translated id past the
        // length limit is not read back as a session, so the session would be lost.
        use crate::core::session::{is_valid_id, MAX_SESSION_ID_BYTES};
        let long = format!("{}.jvm1", "A".repeat(MAX_SESSION_ID_BYTES - 5));
        assert!(is_valid_id(&long));
        // translate appends the route; rename swaps it, and a longer route does not fit.
        for (kind, route) in [(Translate, "jvm2"), (Rename, "jvm22"), (Backend, "jvm2")] {
            let got = rebind(kind, &long, route, '.');
            assert_eq!(got.client_id, long, "{kind:?}");
            assert_eq!(got.forward_id, long, "{kind:?}");
            assert_eq!(got.rename, None, "{kind:?}");
        }
        let swapped = rebind(Rename, &long, "jvm2", '.');
        assert_eq!(swapped.client_id.len(), long.len());
        assert!(swapped.rename.is_some());
        // One byte shorter still has room: translated as usual.
        let fits = format!("{}.jvm1", "A".repeat(MAX_SESSION_ID_BYTES - 10));
        let got = rebind(Translate, &fits, "jvm2", '.');
        assert_eq!(got.client_id, format!("{fits}.jvm2"));
        assert!(is_valid_id(&got.client_id));
    }

    #[test]
    fn translate_second_failover_and_collapse() {
        // X.jvm1 -> failover to jvm2 -> client X.jvm1.jvm2; jvm2 dies: failover from X.jvm1 again.
        let first = rebind(Translate, "X.jvm1", "jvm2", '.');
        assert_eq!(first.client_id, "X.jvm1.jvm2");
        let backend = backend_facing(Translate, &first.client_id, '.');
        assert_eq!(
            rebind(Translate, backend, "jvm3", '.').client_id,
            "X.jvm1.jvm3"
        );
        assert_eq!(rebind(Translate, backend, "jvm1", '.').client_id, "X.jvm1");
    }

    fn defaults() -> CookieDefaults {
        CookieDefaults {
            path: Some("/app".into()),
            http_only: true,
            same_site: Some(SameSite::Lax),
        }
    }

    /// The attributes a cookie is written with when nothing was learned.
    fn configured() -> WriteAttrs {
        attrs_to_write(None, &defaults())
    }

    fn plan<'a>(
        binder: BinderKind,
        forward: &'a str,
        client: &'a str,
        changed: bool,
    ) -> ResponsePlan<'a> {
        ResponsePlan {
            binder,
            cookie_name: "JSESSIONID",
            forward_id: Some(forward),
            client_id: Some(client),
            client_changed: changed,
            reissue: false,
            secure: false,
        }
    }

    #[test]
    fn set_cookie_table() {
        // (plan, backend Set-Cookies, resulting Set-Cookies, added, rewritten)
        type Case<'a> = (ResponsePlan<'a>, Vec<&'a str>, Vec<&'a str>, bool, bool);
        let cases: Vec<Case> = vec![
            // failover, backend silent: one cookie added with defaults
            (
                plan(Translate, "X.jvm1", "X.jvm1.jvm2", true),
                vec![],
                vec!["JSESSIONID=X.jvm1.jvm2; HttpOnly; SameSite=Lax; Path=/app"],
                true,
                false,
            ),
            // failover, backend re-issues the forwarded id: rewritten, attributes kept
            (
                plan(Translate, "X.jvm1", "X.jvm1.jvm2", true),
                vec!["JSESSIONID=X.jvm1; Path=/shop; Priority=High; HttpOnly"],
                vec!["JSESSIONID=X.jvm1.jvm2; Path=/shop; Priority=High; HttpOnly"],
                false,
                true,
            ),
            // sticky hit on translated id, backend re-issues: rewritten, nothing added
            (
                plan(Translate, "X.jvm1", "X.jvm1.jvm2", false),
                vec!["JSESSIONID=X.jvm1; Path=/"],
                vec!["JSESSIONID=X.jvm1.jvm2; Path=/"],
                false,
                true,
            ),
            // new login id from the answering node passes untouched and wins
            (
                plan(Translate, "X.jvm1", "X.jvm1.jvm2", true),
                vec!["JSESSIONID=NEW.jvm2; Path=/app; HttpOnly"],
                vec!["JSESSIONID=NEW.jvm2; Path=/app; HttpOnly"],
                false,
                false,
            ),
            // other cookies are never touched
            (
                plan(Translate, "X.jvm1", "X.jvm1", false),
                vec!["theme=dark; Path=/"],
                vec!["theme=dark; Path=/"],
                false,
                false,
            ),
            // rename: add the new id when the backend is silent
            (
                plan(Rename, "X.jvm2", "X.jvm2", true),
                vec![],
                vec!["JSESSIONID=X.jvm2; HttpOnly; SameSite=Lax; Path=/app"],
                true,
                false,
            ),
            // backend binder: valve answered with its own cookie; nothing of ours
            (
                plan(Backend, "X.jvm1", "X.jvm1", false),
                vec!["JSESSIONID=X.jvm2; Path=/app; HttpOnly"],
                vec!["JSESSIONID=X.jvm2; Path=/app; HttpOnly"],
                false,
                false,
            ),
            // a deleting cookie passes through
            (
                plan(Translate, "X.jvm1", "X.jvm1.jvm2", true),
                vec!["JSESSIONID=; Max-Age=0; Path=/app"],
                vec!["JSESSIONID=; Max-Age=0; Path=/app"],
                false,
                false,
            ),
        ];
        for (plan, input, want, added, rewritten) in cases {
            let mut values: Vec<String> = input.iter().map(|s| s.to_string()).collect();
            let out = rewrite_set_cookies(&mut values, &plan, configured);
            assert_eq!(values, want, "{input:?}");
            assert_eq!(out.added, added, "{input:?}");
            assert_eq!(out.rewritten, rewritten, "{input:?}");
        }
    }

    #[test]
    fn secure_on_tls() {
        let mut p = plan(Translate, "X.jvm1", "X.jvm1.jvm2", true);
        p.secure = true;
        let mut values = vec![];
        rewrite_set_cookies(&mut values, &p, configured);
        assert!(values[0].contains("Secure"), "{values:?}");
    }

    #[test]
    fn learned_attributes_replace_the_applications_cookie() {
        // Tomcat's cookie was `Path=/app`; nothing configured: the balancer's cookie takes the
        // learned path (and domain), so it replaces the application's in the browser.
        let learned = CookieAttrs {
            path: "/app".into(),
            domain: Some("example.com".into()),
            secure: false,
            http_only: true,
            same_site: None,
        };
        let p = plan(Translate, "X.jvm2", "X.jvm2.jvm3", true);
        let mut values = vec![];
        rewrite_set_cookies(&mut values, &p, || {
            attrs_to_write(Some(&learned), &CookieDefaults::default())
        });
        assert_eq!(
            values,
            ["JSESSIONID=X.jvm2.jvm3; HttpOnly; Path=/app; Domain=example.com"]
        );
        // Nothing learned and nothing configured: `/`, the last resort.
        let mut values = vec![];
        rewrite_set_cookies(&mut values, &p, || {
            attrs_to_write(None, &CookieDefaults::default())
        });
        assert_eq!(values, ["JSESSIONID=X.jvm2.jvm3; HttpOnly; Path=/"]);
    }

    #[test]
    fn reissue_table() {
        // A request that carried an older form next to the client's id: written again only
        // where the path is known, and never next to a cookie of the backend's.
        let known = || {
            attrs_to_write(
                Some(&CookieAttrs {
                    path: "/app".into(),
                    domain: None,
                    secure: false,
                    http_only: true,
                    same_site: None,
                }),
                &CookieDefaults::default(),
            )
        };
        let unknown = || attrs_to_write(None, &CookieDefaults::default());
        let mut p = plan(Translate, "X.jvm2", "X.jvm2.jvm3", false);
        p.reissue = true;
        let mut values = vec![];
        let out = rewrite_set_cookies(&mut values, &p, known);
        assert!(out.added);
        assert_eq!(values, ["JSESSIONID=X.jvm2.jvm3; HttpOnly; Path=/app"]);
        let mut values = vec![];
        assert!(!rewrite_set_cookies(&mut values, &p, unknown).added);
        assert!(values.is_empty());
        let mut values = vec!["JSESSIONID=NEW.jvm3; Path=/app".to_string()];
        assert!(!rewrite_set_cookies(&mut values, &p, known).added);
        assert_eq!(values.len(), 1);
        // Neither changed nor reissued: the attributes are not even looked up.
        p.reissue = false;
        let mut values = vec![];
        rewrite_set_cookies(&mut values, &p, || panic!("looked up for nothing"));
    }

    #[test]
    fn location_rewrite() {
        let cases = [
            (
                "/app/next;jsessionid=X.jvm1?a=1",
                Some("/app/next;jsessionid=X.jvm1.jvm2?a=1"),
            ),
            (
                "http://h/app;jsessionid=X.jvm1",
                Some("http://h/app;jsessionid=X.jvm1.jvm2"),
            ),
            ("/app/next;jsessionid=Y.jvm1", None),
            ("/app/next", None),
        ];
        for (loc, want) in cases {
            let got = rewrite_path_param(loc, "jsessionid", "X.jvm1", "X.jvm1.jvm2");
            assert_eq!(got.as_deref(), want, "{loc}");
        }
    }

    proptest! {
        /// Whatever chain of failovers a session goes through, `translate` always recovers the
        /// backend-facing id exactly from the id the client holds, route or no route.
        #[test]
        fn translate_recovers_backend_id(
            base in "[A-F0-9]{1,32}",
            home in proptest::option::of("[a-z][a-z0-9_-]{0,8}"),
            hops in proptest::collection::vec("[a-z][a-z0-9_-]{0,8}", 0..6),
        ) {
            // With a route (`X.jvm1`) or without one (a node without jvmRoute: `X`).
            let backend_id = match &home {
                Some(home) => format!("{base}.{home}"),
                None => base.clone(),
            };
            let mut client = backend_id.clone();
            for hop in &hops {
                let current_backend = backend_facing(Translate, &client, '.').to_string();
                prop_assert_eq!(&current_backend, &backend_id);
                let r = rebind(Translate, &current_backend, hop, '.');
                prop_assert_eq!(&r.forward_id, &backend_id);
                client = r.client_id;
                prop_assert_eq!(pin_route(&client, '.'), Some(hop.as_str()));
            }
            prop_assert_eq!(backend_facing(Translate, &client, '.'), backend_id.as_str());
        }
    }
}
