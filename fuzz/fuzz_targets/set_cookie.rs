//! `Set-Cookie` and `Location` rewriting by each binder: never panics; cookies of other
//! names pass byte-exact; at most one cookie is added, and only when the client's id changed
//! (or is re-issued); a translated `Location` carries the new id where the old one was.
//!
//! Input layout: the first byte picks the binder and the plan's flags; the rest, split at
//! `\n`: the forwarded id, the client id, the new route, a `Location`, then `Set-Cookie`
//! values.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stickyroute_fuzz::core::binder::{
    backend_facing, rebind, rewrite_path_param, rewrite_set_cookies, BinderKind, ResponsePlan,
};
use stickyroute_fuzz::core::cookie::{CookieAttrs, WriteAttrs};
use stickyroute_fuzz::core::session::{find_path_param, is_valid_route};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let binder = [
        BinderKind::Translate,
        BinderKind::Rename,
        BinderKind::Backend,
    ][usize::from(flags & 3) % 3];
    let mut parts = text.split('\n');
    let (Some(forward), Some(client), Some(route), Some(location)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let sep = '.';
    // Routes come from the configuration, which accepts only these.
    if !is_valid_route(route, sep) {
        return;
    }
    // The binder's own decisions on these ids.
    let rb = rebind(binder, forward, route, sep);
    let _ = backend_facing(binder, &rb.client_id, sep);
    let _ = backend_facing(binder, client, sep);

    let original: Vec<String> = parts.take(8).map(str::to_string).collect();
    let mut values = original.clone();
    let plan = ResponsePlan {
        binder,
        cookie_name: "JSESSIONID",
        forward_id: (flags & 4 == 0).then_some(forward),
        client_id: (flags & 8 == 0).then_some(client),
        client_changed: flags & 16 != 0,
        reissue: flags & 32 != 0,
        secure: flags & 64 != 0,
    };
    let attrs = || WriteAttrs {
        attrs: CookieAttrs {
            path: "/app".into(),
            domain: None,
            secure: false,
            http_only: true,
            same_site: None,
        },
        path_known: flags & 128 != 0,
    };
    let outcome = rewrite_set_cookies(&mut values, &plan, attrs);
    assert!(values.len() == original.len() || values.len() == original.len() + 1);
    assert_eq!(outcome.added, values.len() == original.len() + 1);
    if outcome.added {
        assert!(plan.client_changed || plan.reissue);
        assert!(values.last().unwrap().starts_with("JSESSIONID="));
    }
    for (before, after) in original.iter().zip(&values) {
        let session =
            cookie::Cookie::parse(before.as_str()).is_ok_and(|c| c.name() == "JSESSIONID");
        if !session {
            assert_eq!(before, after, "another cookie was changed");
        }
    }
    if !outcome.rewritten {
        assert_eq!(&values[..original.len()], &original[..]);
    }

    // `Location: …;jsessionid=<forwarded>` rewritten to the client's id.
    if let Some(new) = rewrite_path_param(location, "jsessionid", forward, &rb.client_id) {
        let (start, end) = find_path_param(&new, "jsessionid").expect("the parameter stays");
        assert_eq!(&new[start..end], rb.client_id, "{location:?} -> {new:?}");
    }
});
