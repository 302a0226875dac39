//! The live status page served at `GET /`: an HTML shell with the current report embedded as
//! JSON, its style sheet (`status_page.css`) and script (`status_page.js`) inline, and a
//! Content-Security-Policy that lets it load nothing else.

use std::fmt::Write as _;

use http::header::{self, HeaderValue};
use http::StatusCode;
use serde::Serialize;

use super::{respond, AdminResponse};
use crate::control::api::StatusReport;
use crate::control::html::escape_html;

/// The status page's style sheet and script, embedded (the page loads nothing else).
const PAGE_STYLE: &str = include_str!("status_page.css");
const PAGE_SCRIPT: &str = include_str!("status_page.js");

/// What the status page may load: nothing from elsewhere; its own inline style and script,
/// and the JSON API of its own origin.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
     connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// JSON for a `<script type="application/json">` element: `<`, `>` and `&` as `\u` escapes, so
/// no text from the config or the nodes can close the element.
fn script_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The live status page: a shell with the current report embedded as JSON; its script renders
/// it and then polls `GET /api/v1/status` every second (`status_page.js`). Per node: state,
/// health, in flight, live sessions as bars, drain progress, requests/s and failovers/s over
/// the last five minutes as inline SVG charts, and the state buttons (a `disable` asks for
/// confirmation; with `token_required` the page asks for the token).
pub fn status_page(s: &StatusReport, token_required: bool) -> String {
    let mut h = String::with_capacity(24 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>stickyroute</title>\
         <style>{PAGE_STYLE}</style></head><body data-token-required=\"{token_required}\">\
         <h1>stickyroute <span id=\"version\">{}</span></h1>\
         <p><small>config <span id=\"config\">{}</span> · registry <span id=\"registry\"></span> · \
         <a href=\"/metrics\">metrics</a> · <a href=\"/api/v1/status\">status JSON</a> · \
         <span id=\"updated\"></span></small></p>\
         <p id=\"cluster\" hidden></p><p id=\"msg\" role=\"status\"></p><div id=\"pools\"></div>\
         <noscript><p class=\"bad\">This page needs JavaScript; the same data is at \
         <a href=\"/api/v1/status\">/api/v1/status</a>.</p></noscript>\
         <script type=\"application/json\" id=\"initial\">{}</script>",
        escape_html(&s.version),
        escape_html(&s.config),
        script_json(s),
    );
    let _ = writeln!(h, "<script>{PAGE_SCRIPT}</script></body></html>");
    h
}

/// The page as a response, with its Content-Security-Policy.
pub(super) fn page_response(report: &StatusReport, token_required: bool) -> AdminResponse {
    let mut r = respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        status_page(report, token_required),
    );
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{NodeReport, PoolReport, RegistryReport};

    #[test]
    fn status_page_escapes_everything() {
        let report = StatusReport {
            version: "0".into(),
            config: "<cfg>".into(),
            registry: RegistryReport {
                sessions: 1,
                max_sessions: 2,
                rejected: 0,
            },
            pools: vec![PoolReport {
                name: "p\"<script>".into(),
                binder: "translate".into(),
                health_checks: false,
                discovery: None,
                nodes: vec![NodeReport {
                    route: "jvm1".into(),
                    address: "127.0.0.1:1".into(),
                    domain: String::new(),
                    weight: 1,
                    state: "active".into(),
                    config_state: "active".into(),
                    health: "down".into(),
                    in_flight: 0,
                    requests: 0,
                    failovers_in: 0,
                    failovers_out: 0,
                    connect_errors: 0,
                    upstream_errors: 0,
                    live_sessions: 0,
                    drained: false,
                    last_error: Some("<img src=x onerror=alert(1)>".into()),
                    source: "file".into(),
                    leaving: false,
                }],
            }],
            cluster: None,
        };
        let page = status_page(&report, true);
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<cfg>"));
        assert!(
            page.contains("&lt;cfg&gt;"),
            "the config name in the header"
        );
        // The embedded report: no `<` of the data survives to close the script element.
        let start = page.find("id=\"initial\">").unwrap();
        let end = start + page[start..].find("</script>").unwrap();
        let json = &page[start + "id=\"initial\">".len()..end];
        assert!(!json.contains('<') && !json.contains('>'), "{json}");
        let back: StatusReport = serde_json::from_str(json).unwrap();
        assert_eq!(back, report, "the script reads the same report back");
        assert!(page.contains("data-token-required=\"true\""));
        assert!(status_page(&report, false).contains("data-token-required=\"false\""));
    }
}
