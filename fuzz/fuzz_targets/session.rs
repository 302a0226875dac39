//! Session extraction from `Cookie` lines and the request path: never panics, and whatever
//! it finds is where it says it is. Also the route helpers on the id found, and the cookie
//! rewriting that forwards a new id: exactly one cookie of the name remains, carrying it.
//!
//! Input layout: the first byte picks the separator (one of `SEPARATORS`) and whether the
//! path parameter is on; the rest, split at `\n`, is the path, then `Cookie` lines (a line
//! that is not UTF-8 is passed as `None`, as the request path does).

#![no_main]

use libfuzzer_sys::fuzz_target;
use stickyroute_fuzz::config::SEPARATORS;
use stickyroute_fuzz::core::session::{
    self, find_session, pin_route, rewrite_cookie_lines, strip_last_route, IdLocation,
    SessionSettings,
};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let seps: Vec<char> = SEPARATORS.chars().collect();
    let sep = seps[usize::from(flags & 7) % seps.len()];
    let settings = SessionSettings {
        cookies: vec!["JSESSIONID".into(), "SESSION".into()],
        path_param: (flags & 8 == 0).then(|| "jsessionid".into()),
        separator: sep,
    };
    let mut parts = rest.split(|b| *b == b'\n');
    let Some(path) = parts.next().and_then(|p| std::str::from_utf8(p).ok()) else {
        return;
    };
    let lines: Vec<Option<&str>> = parts.take(8).map(|l| std::str::from_utf8(l).ok()).collect();
    // Liveness from the data, so both branches of the duplicate-cookie choice are taken.
    let live = |route: &str| route.len() % 2 == usize::from(flags >> 7);
    let Some(found) = find_session(&settings, &lines, path, live) else {
        return;
    };
    assert!(session::is_valid_id(found.id), "{found:?}");
    match &found.location {
        IdLocation::Cookie {
            name,
            header,
            start,
            end,
        } => {
            assert!(*name < settings.cookies.len());
            let line = lines[*header].expect("found in a line that is not UTF-8");
            let raw = &line[*start..*end];
            assert_eq!(raw.trim_matches('"'), found.id, "{line:?}");
            let rewritten =
                rewrite_cookie_lines(&lines, &settings.cookies[*name], &found.location, "NEW.r1");
            if let Some(new_lines) = rewritten {
                let refs: Vec<Option<&str>> = new_lines.iter().map(|l| Some(l.as_str())).collect();
                let only = SessionSettings {
                    cookies: vec![settings.cookies[*name].clone()],
                    path_param: None,
                    separator: sep,
                };
                let again = find_session(&only, &refs, "/", |_| true).expect("the new id is found");
                assert_eq!(again.id, "NEW.r1", "{new_lines:?}");
            }
        }
        IdLocation::PathParam { start, end } => {
            assert_eq!(&path[*start..*end], found.id);
        }
    }
    if let Some(route) = pin_route(found.id, sep) {
        assert!(found.id.ends_with(route));
        assert!(!route.contains(sep));
    }
    if let Some(base) = strip_last_route(found.id, sep) {
        assert!(found.id.starts_with(base) && base.len() < found.id.len());
    }
});
