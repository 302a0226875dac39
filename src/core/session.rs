//! Session ids in requests: finding the id (cookies, then the `;jsessionid=` path parameter),
//! splitting off its pin route, and rewriting it in the forwarded request.
//!
//! This is the first decision on every request, so the `Cookie` header is parsed by hand here:
//! the `cookie` crate allocates a `Cookie` per pair and percent-decodes values, which costs more
//! than the whole proxy decision; here we only borrow slices of the header. `Set-Cookie` (rarer,
//! and with attributes that matter) goes through the `cookie` crate in `binder`.
//!
//! Nothing here fails: a malformed header means "no session", never an error.

/// Where the balancer looks for session ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Cookie names, tried in order (case-sensitive, as RFC 6265 and Tomcat treat them).
    pub cookies: Vec<String>,
    /// Name of the `;name=` path parameter (matched case-insensitively); `None` disables it.
    pub path_param: Option<String>,
    /// The character before the route (`.` by default).
    pub separator: char,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            cookies: vec!["JSESSIONID".to_string()],
            path_param: Some("jsessionid".to_string()),
            separator: '.',
        }
    }
}

/// Longest session id accepted; longer values are ignored (treated as no session).
pub const MAX_SESSION_ID_BYTES: usize = 256;

/// Where in the request a session id was found: enough to rewrite it in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdLocation {
    /// In `Cookie` header line `header` (index among the request's `Cookie` lines), value at
    /// bytes `start..end` of that line; `name` is the index into [`SessionSettings::cookies`].
    /// `sole`: no other cookie of that name is in the request, so a rewrite has nothing to
    /// drop (`false` when unknown).
    Cookie {
        name: usize,
        header: usize,
        start: usize,
        end: usize,
        sole: bool,
    },
    /// In the request path, value at bytes `start..end` of the path.
    PathParam { start: usize, end: usize },
}

/// A session id found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundId<'a> {
    /// The client-facing id as the client sent it (quotes removed).
    pub id: &'a str,
    pub location: IdLocation,
    /// The request also carried an older form of this id (`X.jvm2` next to `X.jvm2.jvm3`): a
    /// cookie of the same session the client keeps under another path.
    pub older_forms: bool,
}

/// Is `newer` a rebound form of `older` (`X.jvm2.jvm3` of `X.jvm2`, `X..jvm2` of `X`)?
pub fn is_rebound_form(newer: &str, older: &str, sep: char) -> bool {
    newer.len() > older.len() && newer.starts_with(older) && newer[older.len()..].starts_with(sep)
}

/// Which of several values of one session cookie (in the order the client sent them) to use,
/// and whether it has older forms among them. A value of which another is a rebound form is a
/// stale form of that session and loses, whatever the order; among the rest, the first whose
/// pin route satisfies `is_live`, else the first.
pub fn choose_cookie_value(
    values: &[&str],
    sep: char,
    is_live: impl Fn(&str) -> bool,
) -> (usize, bool) {
    let newest = |i: &usize| !values.iter().any(|v| is_rebound_form(v, values[*i], sep));
    let pick = (0..values.len())
        .filter(newest)
        .find(|&i| pin_route(values[i], sep).is_some_and(&is_live))
        .or_else(|| (0..values.len()).find(newest))
        .unwrap_or(0);
    let older = values.iter().any(|v| is_rebound_form(values[pick], v, sep));
    (pick, older)
}

/// The pin route: the text after the **last** separator, or `None` when the id has no separator
/// or the route is empty.
#[inline]
pub fn pin_route(id: &str, sep: char) -> Option<&str> {
    let at = last_sep(id, sep)?;
    let route = &id[at + sep.len_utf8()..];
    (!route.is_empty()).then_some(route)
}

/// The id without its last `sep`-segment (`X.jvm1.jvm2` -> `X.jvm1`); `None` without separator.
#[inline]
pub fn strip_last_route(id: &str, sep: char) -> Option<&str> {
    last_sep(id, sep).map(|at| &id[..at])
}

/// Where the last `sep` of `id` starts. Every request looks up its id's route: an ASCII
/// separator (all the configurable ones are) is found by a plain loop over the bytes from
/// the end (a route is a few bytes from it; `memrchr`'s setup and the generic `char`
/// pattern searcher both cost more on ids this short).
#[inline]
fn last_sep(id: &str, sep: char) -> Option<usize> {
    if sep.is_ascii() {
        id.bytes().rposition(|b| b == sep as u8)
    } else {
        id.rfind(sep)
    }
}

/// Whether `id` holds `sep` at least twice: a separator before its last one.
#[inline]
pub fn has_two_seps(id: &str, sep: char) -> bool {
    last_sep(id, sep).is_some_and(|at| {
        let before = &id[..at];
        if sep.is_ascii() {
            contains_byte(before.as_bytes(), sep as u8)
        } else {
            before.contains(sep)
        }
    })
}

/// Whether `s` holds byte `c`, eight bytes per step: every request's id is scanned whole
/// here (the part before its route, where no separator is the common answer), and a byte
/// loop cost four instructions a byte.
fn contains_byte(s: &[u8], c: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(c);
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        // A byte of `x` is zero where `w` holds `c`; the expression is non-zero exactly
        // when some byte of `x` is.
        let x = u64::from_ne_bytes(word) ^ pattern;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return true;
        }
    }
    words.remainder().contains(&c)
}

/// Is `value` acceptable as a session id? Printable ASCII without the characters that would
/// break a cookie or a path (`;`, `,`, `"`, `\`, space), not empty, bounded in size.
pub fn is_valid_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_SESSION_ID_BYTES
        && value.bytes().all(|b| ID_BYTE[usize::from(b)])
}

/// The bytes of a session id (see [`is_valid_id`]); a table, as every request's id passes here
/// byte by byte.
const ID_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c >= 0x21 && c < 0x7f && !matches!(c, b';' | b',' | b'"' | b'\\');
        b += 1;
    }
    t
};

/// Longest route (`jvmRoute`) a node may have.
pub const MAX_ROUTE_BYTES: usize = 64;

/// Whether `route` is a route the configuration accepts: 1 to [`MAX_ROUTE_BYTES`] letters,
/// digits and `- _ ~ ! . :`, without the separator `sep`. Such a route is always valid inside a
/// session id.
pub fn is_valid_route(route: &str, sep: char) -> bool {
    !route.is_empty()
        && route.len() <= MAX_ROUTE_BYTES
        && !route.contains(sep)
        && route
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_~!.:".contains(&b))
}

/// Iterates the `name=value` pairs of one `Cookie` header line as `(name, value, value_start,
/// value_end)` byte offsets into `line`. Pairs without `=` are skipped; a value in double quotes
/// is returned without them.
///
/// By bytes with plain loops, for cost: every request's cookies pass here, pairs are a few
/// dozen bytes (where `memchr`'s setup costs more than the search), and `split`,
/// `split_once` and `trim_matches` with `char` patterns cost several times as much. `;`, `=`,
/// space, tab and `"` are ASCII, so every cut falls on a character boundary.
pub fn cookie_pairs(line: &str) -> impl Iterator<Item = (&str, &str, usize, usize)> {
    let b = line.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at <= b.len() {
            let start = at;
            let end = b[start..]
                .iter()
                .position(|&c| c == b';')
                .map_or(b.len(), |i| start + i);
            at = end + 1;
            let Some(eq) = b[start..end]
                .iter()
                .position(|&c| c == b'=')
                .map(|i| start + i)
            else {
                continue;
            };
            let (ns, ne) = trim_ows(b, start, eq);
            let (mut vs, mut ve) = trim_ows(b, eq + 1, end);
            if ve - vs >= 2 && b[vs] == b'"' && b[ve - 1] == b'"' {
                vs += 1;
                ve -= 1;
            }
            return Some((&line[ns..ne], &line[vs..ve], vs, ve));
        }
        None
    })
}

/// `start..end` of `b` without the spaces and tabs at either end.
#[inline]
fn trim_ows(b: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && matches!(b[start], b' ' | b'\t') {
        start += 1;
    }
    while end > start && matches!(b[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    (start, end)
}

/// Finds the session id of a request.
///
/// Cookie names are tried in configured order; among several cookies of one name (a browser
/// sends one per matching `Path`), [`choose_cookie_value`] decides: a rebound form of the
/// session beats its older forms, then the first whose pin route satisfies `is_live` wins, else
/// the first. Then the path parameter. `cookie_lines` are the request's `Cookie` header values
/// (lines that are not UTF-8 are passed as `None` and ignored).
pub fn find_session<'a>(
    settings: &SessionSettings,
    cookie_lines: &[Option<&'a str>],
    path: &'a str,
    is_live: impl Fn(&str) -> bool,
) -> Option<FoundId<'a>> {
    for (name_idx, wanted) in settings.cookies.iter().enumerate() {
        // The common case, one cookie of the name, takes one pass and allocates nothing.
        let (first, valid, named) = first_session_cookie(cookie_lines, name_idx, wanted);
        let Some(mut first) = first else { continue };
        if valid == 1 {
            if let IdLocation::Cookie { sole, .. } = &mut first.location {
                *sole = named == 1;
            }
            return Some(first);
        }
        let all: Vec<FoundId<'a>> = session_cookies(cookie_lines, name_idx, wanted).collect();
        let values: Vec<&str> = all.iter().map(|f| f.id).collect();
        let (pick, older_forms) = choose_cookie_value(&values, settings.separator, &is_live);
        let mut chosen = all.into_iter().nth(pick)?;
        chosen.older_forms = older_forms;
        return Some(chosen);
    }
    let param = settings.path_param.as_deref()?;
    find_path_param(path, param).map(|(start, end)| FoundId {
        id: &path[start..end],
        location: IdLocation::PathParam { start, end },
        older_forms: false,
    })
}

/// The first valid value of cookie `wanted` (index `name_idx` of the configured names), how
/// many of its values are valid and how many cookies have the name at all, in one pass.
fn first_session_cookie<'a>(
    cookie_lines: &[Option<&'a str>],
    name_idx: usize,
    wanted: &str,
) -> (Option<FoundId<'a>>, usize, usize) {
    let (mut first, mut valid, mut named) = (None, 0, 0);
    for (line_idx, line) in cookie_lines.iter().enumerate() {
        let Some(line) = line else { continue };
        for (name, value, start, end) in cookie_pairs(line) {
            if name != wanted {
                continue;
            }
            named += 1;
            if !is_valid_id(value) {
                continue;
            }
            valid += 1;
            if first.is_none() {
                first = Some(cookie_found(value, name_idx, line_idx, start, end));
            }
        }
    }
    (first, valid, named)
}

fn cookie_found(id: &str, name: usize, header: usize, start: usize, end: usize) -> FoundId<'_> {
    FoundId {
        id,
        location: IdLocation::Cookie {
            name,
            header,
            start,
            end,
            sole: false,
        },
        older_forms: false,
    }
}

/// The valid values of cookie `wanted` (index `name_idx` of the configured names), in order.
fn session_cookies<'a, 'l>(
    cookie_lines: &'l [Option<&'a str>],
    name_idx: usize,
    wanted: &'l str,
) -> impl Iterator<Item = FoundId<'a>> + 'l {
    cookie_lines
        .iter()
        .enumerate()
        .filter_map(|(line_idx, line)| line.map(|l| (line_idx, l)))
        .flat_map(move |(line_idx, line)| {
            cookie_pairs(line)
                .filter(move |&(name, value, _, _)| name == wanted && is_valid_id(value))
                .map(move |(_, value, start, end)| {
                    cookie_found(value, name_idx, line_idx, start, end)
                })
        })
}

/// Finds `;param=value` in a path (name case-insensitive; value ends at `;`, `?`, `/` or `#`)
/// and returns the byte range of a valid value.
pub fn find_path_param(path: &str, param: &str) -> Option<(usize, usize)> {
    let bytes = path.as_bytes();
    let mut from = 0;
    while let Some(pos) = path[from..].find(';') {
        let name_start = from + pos + 1;
        let rest = &path[name_start..];
        if rest.len() > param.len()
            && rest.as_bytes()[param.len()] == b'='
            && rest.as_bytes()[..param.len()].eq_ignore_ascii_case(param.as_bytes())
        {
            let start = name_start + param.len() + 1;
            let end = bytes[start..]
                .iter()
                .position(|b| matches!(b, b';' | b'?' | b'/' | b'#'))
                .map_or(bytes.len(), |p| start + p);
            if is_valid_id(&path[start..end]) {
                return Some((start, end));
            }
        }
        from = name_start;
    }
    None
}

/// Rewrites `Cookie` header lines so that the session cookie found at `loc` carries `new_id`
/// and no other cookie of that name is forwarded (the backend must see exactly one id).
/// Every other cookie is kept byte-exact. Returns `None` when nothing needs to change.
pub fn rewrite_cookie_lines(
    lines: &[Option<&str>],
    cookie_name: &str,
    loc: &IdLocation,
    new_id: &str,
) -> Option<Vec<String>> {
    let IdLocation::Cookie {
        header,
        start,
        end,
        sole,
        ..
    } = *loc
    else {
        return None;
    };
    let duplicates = !sole
        && lines.iter().enumerate().any(|(i, line)| {
            line.is_some_and(|l| {
                cookie_pairs(l).any(|(n, _, s, _)| n == cookie_name && (i != header || s != start))
            })
        });
    let unchanged = lines[header].is_some_and(|l| &l[start..end] == new_id);
    if unchanged && !duplicates {
        return None;
    }
    let out = lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = (*line)?;
            let mut kept: Vec<String> = Vec::new();
            for pair in line.split(';') {
                let Some((name, _)) = pair.split_once('=') else {
                    kept.push(pair.trim_matches([' ', '\t']).to_string());
                    continue;
                };
                let pair_start = pair.as_ptr() as usize - line.as_ptr() as usize;
                let pair_end = pair_start + pair.len();
                if name.trim_matches([' ', '\t']) != cookie_name {
                    kept.push(pair.trim_matches([' ', '\t']).to_string());
                } else if i == header && pair_start <= start && end <= pair_end {
                    kept.push(format!("{cookie_name}={new_id}"));
                }
            }
            kept.retain(|p| !p.is_empty());
            (!kept.is_empty()).then(|| kept.join("; "))
        })
        .collect();
    Some(out)
}

/// Replaces the byte range `start..end` of `s` with `with`.
pub fn replace_range(s: &str, start: usize, end: usize, with: &str) -> String {
    let mut out = String::with_capacity(s.len() + with.len());
    out.push_str(&s[..start]);
    out.push_str(with);
    out.push_str(&s[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte scan gives what `split`/`split_once`/`trim_matches` would.
    #[test]
    fn cookie_pairs_match_a_split_reference() {
        fn reference(line: &str) -> Vec<(&str, &str, usize, usize)> {
            let base = line.as_ptr() as usize;
            line.split(';')
                .filter_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    let name = name.trim_matches([' ', '\t']);
                    let mut value = value.trim_matches([' ', '\t']);
                    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
                        value = &value[1..value.len() - 1];
                    }
                    let start = value.as_ptr() as usize - base;
                    Some((name, value, start, start + value.len()))
                })
                .collect()
        }
        for line in [
            "",
            ";",
            ";;",
            "a=1",
            " a = \"x\" ; b=2;",
            "=v",
            "a=",
            "a==b",
            "  ;c=3",
            "\ta=1\t;\tb = 2 ",
            "x=\"\"",
            "x=\"",
            "ä=ö; JSESSIONID=0123.jvm2; theme=dark",
            "noequals; JSESSIONID=A.jvm1",
        ] {
            let got: Vec<_> = cookie_pairs(line).collect();
            assert_eq!(got, reference(line), "{line:?}");
        }
    }

    fn settings() -> SessionSettings {
        SessionSettings::default()
    }

    #[test]
    fn is_valid_route_cases() {
        let cases = [
            ("jvm2", true),
            ("node-1_a~b!c:d", true),
            ("", false),
            ("jvm.2", false),
            ("jvm 2", false),
            ("r\0m", false),
            ("jvm2;", false),
        ];
        for (route, want) in cases {
            assert_eq!(is_valid_route(route, '.'), want, "{route:?}");
        }
        assert!(is_valid_route(&"a".repeat(MAX_ROUTE_BYTES), '.'));
        assert!(!is_valid_route(&"a".repeat(MAX_ROUTE_BYTES + 1), '.'));
        assert!(is_valid_route("jvm.2", '~'));
    }

    #[test]
    fn pin_route_cases() {
        let cases = [
            ("ABC.jvm1", Some("jvm1")),
            ("ABC.jvm1.jvm2", Some("jvm2")),
            ("ABC", None),
            ("ABC.", None),
            (".jvm1", Some("jvm1")),
            ("", None),
        ];
        for (id, want) in cases {
            assert_eq!(pin_route(id, '.'), want, "{id}");
        }
        assert_eq!(pin_route("ABC-n1", '-'), Some("n1"));
    }

    #[test]
    fn strip_last_route_cases() {
        assert_eq!(strip_last_route("X.jvm1.jvm2", '.'), Some("X.jvm1"));
        assert_eq!(strip_last_route("X.jvm1", '.'), Some("X"));
        assert_eq!(strip_last_route("X", '.'), None);
    }

    #[test]
    fn find_session_table() {
        let live = |r: &str| r != "dead";
        // (cookie lines, path, expected id)
        let cases: &[(&[&str], &str, Option<&str>)] = &[
            (&[], "/", None),
            (&["JSESSIONID=ABC.jvm2"], "/", Some("ABC.jvm2")),
            (&["a=1; JSESSIONID=ABC.jvm2; b=2"], "/", Some("ABC.jvm2")),
            (&["a=1", "JSESSIONID=ABC.jvm3"], "/", Some("ABC.jvm3")),
            (&["JSESSIONID=\"ABC.jvm2\""], "/", Some("ABC.jvm2")),
            (&["jsessionid=ABC.jvm2"], "/", None), // cookie names are case-sensitive
            (
                &["JSESSIONID=X.dead; JSESSIONID=Y.jvm1"],
                "/",
                Some("Y.jvm1"),
            ),
            (
                &["JSESSIONID=X.dead; JSESSIONID=Y.dead"],
                "/",
                Some("X.dead"),
            ),
            // Forms of one session: the most rebound one wins whatever the order, even when
            // the older form names a live node and the rebound one a dead node.
            (
                &["JSESSIONID=X.jvm2; JSESSIONID=X.jvm2.jvm3"],
                "/",
                Some("X.jvm2.jvm3"),
            ),
            (
                &["JSESSIONID=X.jvm2.jvm3", "JSESSIONID=X.jvm2"],
                "/",
                Some("X.jvm2.jvm3"),
            ),
            (
                &["JSESSIONID=X.jvm2; JSESSIONID=X.jvm2.dead"],
                "/",
                Some("X.jvm2.dead"),
            ),
            (&["JSESSIONID=X; JSESSIONID=X..jvm2"], "/", Some("X..jvm2")),
            // Not forms of one session: the first naming a live node, as before.
            (
                &["JSESSIONID=X.dead; JSESSIONID=Y.jvm1.jvm3"],
                "/",
                Some("Y.jvm1.jvm3"),
            ),
            (
                &["JSESSIONID=X.jvm22; JSESSIONID=X.jvm2"],
                "/",
                Some("X.jvm22"),
            ),
            (&["JSESSIONID=ABC"], "/", Some("ABC")),
            (&["JSESSIONID="], "/", None),
            (&["garbage;;;==;"], "/", None),
            (&["JSESSIONID=a b"], "/", None),
            (&["JSESSIONID=\u{e9}t\u{e9}"], "/", None),
            (&[], "/app/x;jsessionid=ABC.jvm3", Some("ABC.jvm3")),
            (&[], "/app/x;JSESSIONID=ABC.jvm3?q=1", Some("ABC.jvm3")),
            (&[], "/app/x;jsessionid=ABC.jvm3/more", Some("ABC.jvm3")),
            (&[], "/app/x;jsessionid=ABC.jvm3;other=1", Some("ABC.jvm3")),
            (&[], "/app/x;jsessionid=ABC.jvm3#frag", Some("ABC.jvm3")),
            (&[], "/app/x;jsessionid=", None),
            (&[], "/app/x;jsessionidx=ABC.jvm3", None),
            (
                &["JSESSIONID=C.jvm1"],
                "/x;jsessionid=P.jvm2",
                Some("C.jvm1"),
            ),
        ];
        for (lines, path, want) in cases {
            let lines: Vec<Option<&str>> = lines.iter().map(|l| Some(*l)).collect();
            let got = find_session(&settings(), &lines, path, live).map(|f| f.id);
            assert_eq!(got, *want, "cookies {lines:?} path {path}");
        }
    }

    #[test]
    fn choose_cookie_value_table() {
        let live = |r: &str| r != "dead";
        // (values in the order sent, chosen index, older forms present)
        let cases: &[(&[&str], usize, bool)] = &[
            (&["A.jvm1"], 0, false),
            (&["X.jvm2", "X.jvm2.jvm3"], 1, true),
            (&["X.jvm2.jvm3", "X.jvm2"], 0, true),
            (&["X.jvm2.jvm3", "X.jvm2.jvm3"], 0, false),
            (&["Y.dead", "X.jvm2", "X.jvm2.jvm3"], 2, true),
            (&["X.dead", "Y.jvm1"], 1, false),
            (&["X.dead", "Y.dead"], 0, false),
            (&["X", "X..jvm1"], 1, true),
            (&["X.jvm1.jvm2", "Z.jvm3", "X.jvm1"], 0, true),
        ];
        for (values, pick, older) in cases {
            assert_eq!(
                choose_cookie_value(values, '.', live),
                (*pick, *older),
                "{values:?}"
            );
        }
        assert!(is_rebound_form("X.jvm2.jvm3", "X.jvm2", '.'));
        assert!(!is_rebound_form("X.jvm2", "X.jvm2", '.'));
        assert!(!is_rebound_form("X.jvm22", "X.jvm2", '.'));
        assert!(is_rebound_form("X-a-b", "X-a", '-'));
    }

    #[test]
    fn older_forms_are_reported_with_the_chosen_cookie() {
        let lines = [
            Some("JSESSIONID=X.jvm2"),
            Some("a=1; JSESSIONID=X.jvm2.jvm3"),
        ];
        let found = find_session(&settings(), &lines, "/", |_| true).unwrap();
        assert_eq!(found.id, "X.jvm2.jvm3");
        assert!(found.older_forms);
        assert!(matches!(
            found.location,
            IdLocation::Cookie { header: 1, .. }
        ));
        let lines = [Some("JSESSIONID=X.jvm2.jvm3")];
        assert!(
            !find_session(&settings(), &lines, "/", |_| true)
                .unwrap()
                .older_forms
        );
    }

    #[test]
    fn sole_says_whether_other_cookies_share_the_name() {
        let cases: &[(&[&str], bool)] = &[
            (&["JSESSIONID=X.jvm1"], true),
            (&["a=1; JSESSIONID=X.jvm1", "b=2"], true),
            (&["JSESSIONID=X.jvm1; JSESSIONID="], false),
            (&["JSESSIONID=X.jvm1", "JSESSIONID=bad,id"], false),
            (&["JSESSIONID=X.jvm1", "JSESSIONID=X.jvm1"], false),
            (&["JSESSIONIDX=1; JSESSIONID=X.jvm1"], true),
        ];
        for (lines, want) in cases {
            let lines: Vec<Option<&str>> = lines.iter().map(|l| Some(*l)).collect();
            let found = find_session(&settings(), &lines, "/", |_| true).unwrap();
            let IdLocation::Cookie { sole, .. } = found.location else {
                panic!("{lines:?}: not a cookie");
            };
            assert_eq!(sole, *want, "{lines:?}");
        }
    }

    #[test]
    fn cookie_names_tried_in_order() {
        let s = SessionSettings {
            cookies: vec!["SESSION".into(), "JSESSIONID".into()],
            ..settings()
        };
        let lines = [Some("JSESSIONID=A.jvm1; SESSION=B.jvm2")];
        let found = find_session(&s, &lines, "/", |_| true).unwrap();
        assert_eq!(found.id, "B.jvm2");
        assert!(matches!(found.location, IdLocation::Cookie { name: 0, .. }));
    }

    #[test]
    fn path_param_disabled() {
        let s = SessionSettings {
            path_param: None,
            ..settings()
        };
        assert_eq!(find_session(&s, &[], "/x;jsessionid=A.b", |_| true), None);
    }

    #[test]
    fn non_utf8_cookie_line_is_ignored() {
        let lines = [None, Some("JSESSIONID=A.jvm1")];
        let found = find_session(&settings(), &lines, "/", |_| true).unwrap();
        assert_eq!(found.id, "A.jvm1");
        assert!(matches!(
            found.location,
            IdLocation::Cookie { header: 1, .. }
        ));
    }

    fn rewrite(lines: &[&str], new_id: &str) -> Option<Vec<String>> {
        let lines: Vec<Option<&str>> = lines.iter().map(|l| Some(*l)).collect();
        let found = find_session(&settings(), &lines, "/", |r| r != "dead")?;
        rewrite_cookie_lines(&lines, "JSESSIONID", &found.location, new_id)
    }

    #[test]
    fn rewrite_cookie_table() {
        type Case<'a> = (&'a [&'a str], &'a str, Option<&'a [&'a str]>);
        let cases: &[Case] = &[
            (&["JSESSIONID=X.jvm1"], "X.jvm1", None),
            (
                &["JSESSIONID=X.jvm1.jvm2"],
                "X.jvm1",
                Some(&["JSESSIONID=X.jvm1"]),
            ),
            (
                &["a=1;JSESSIONID=X.jvm1.jvm2; b=\"q v\""],
                "X.jvm1",
                Some(&["a=1; JSESSIONID=X.jvm1; b=\"q v\""]),
            ),
            (
                &["JSESSIONID=X.dead; JSESSIONID=Y.jvm1"],
                "Y.jvm1",
                Some(&["JSESSIONID=Y.jvm1"]),
            ),
            (
                &["JSESSIONID=Y.jvm1", "other=1; JSESSIONID=Z.dead"],
                "Y.jvm1",
                Some(&["JSESSIONID=Y.jvm1", "other=1"]),
            ),
            (
                &["JSESSIONID=\"X.jvm1\""],
                "X.jvm2",
                Some(&["JSESSIONID=X.jvm2"]),
            ),
            // The one valid id unchanged, but other cookies of its name (not valid ids) are
            // still dropped: the node must see exactly one.
            (
                &["JSESSIONID=X.jvm1; JSESSIONID="],
                "X.jvm1",
                Some(&["JSESSIONID=X.jvm1"]),
            ),
            (
                &["JSESSIONID=bad,id", "JSESSIONID=X.jvm1"],
                "X.jvm1",
                Some(&["JSESSIONID=X.jvm1"]),
            ),
            (&["a=1; JSESSIONID=X.jvm1; b=2"], "X.jvm1", None),
        ];
        for (lines, new_id, want) in cases {
            let got = rewrite(lines, new_id);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{lines:?} -> {new_id}");
        }
    }

    #[test]
    fn replace_range_in_path() {
        let path = "/app/x;jsessionid=X.jvm1.jvm2?q=1";
        let (s, e) = find_path_param(path, "jsessionid").unwrap();
        assert_eq!(
            replace_range(path, s, e, "X.jvm1"),
            "/app/x;jsessionid=X.jvm1?q=1"
        );
    }

    #[test]
    fn two_separators() {
        let cases = [
            ("X.jvm1.jvm2", '.', true),
            ("X..jvm2", '.', true),
            ("..", '.', true),
            ("X.jvm1", '.', false),
            (".", '.', false),
            ("X", '.', false),
            ("", '.', false),
            ("X-a-b", '-', true),
            ("X.a-b", '-', false),
            ("X§a§b", '§', true),
            ("X§a", '§', false),
        ];
        for (id, sep, want) in cases {
            assert_eq!(has_two_seps(id, sep), want, "{id:?} {sep:?}");
        }
    }

    /// The eight-byte search against a byte loop: every byte value at every position of
    /// lengths 0 to 40 (whole words and remainders), for bytes sought at both ends of the
    /// range and in it.
    #[test]
    fn contains_byte_finds_what_a_loop_finds() {
        for len in 0..40 {
            for at in 0..len {
                for v in 0..=255u8 {
                    let mut s = vec![b'A'; len];
                    s[at] = v;
                    for c in [b'.', b'A', 0, 0x80, 0xff] {
                        assert_eq!(contains_byte(&s, c), s.contains(&c), "{s:?} {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn valid_ids() {
        assert!(is_valid_id("4F1CA9D2E6B7.jvm2"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"A".repeat(MAX_SESSION_ID_BYTES + 1)));
        assert!(!is_valid_id("a,b"));
        assert!(!is_valid_id("a\"b"));
        for b in 0..=255u8 {
            let want = (0x21..0x7f).contains(&b) && !matches!(b, b';' | b',' | b'"' | b'\\');
            let id = [b'A', b];
            let got = std::str::from_utf8(&id).is_ok_and(is_valid_id);
            assert_eq!(got, want, "byte {b:#x}");
        }
    }
}
