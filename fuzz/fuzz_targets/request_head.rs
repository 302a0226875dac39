//! Request heads: any input either is refused, is partial, or parses; a parsed head written
//! for a node parses again and agrees with the original on everything the writer keeps.
//! Responses get the same treatment from the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stickyroute_fuzz::h1::*;

/// Fields that the request writer does not copy as they came.
fn kept(kind: HeaderKind) -> bool {
    !kind.is_hop_by_hop()
        && !matches!(
            kind,
            HeaderKind::ContentLength | HeaderKind::TransferEncoding | HeaderKind::Host
        )
}

/// Field lines in a head written by the codec (start line and blank line excluded).
fn field_lines(head: &[u8]) -> usize {
    head.windows(2).filter(|w| w == b"\r\n").count() - 2
}

fn check_request(data: &[u8]) {
    let mut head = RequestHead::new();
    let n = match parse_request(data, &mut head) {
        Ok(Parsed::Complete(n)) => n,
        Ok(Parsed::Partial) | Err(_) => return,
    };
    assert!(n <= data.len() && n == head.head_len());
    for h in head.headers() {
        assert!(h.name.end as usize <= n && h.value.end as usize <= n);
    }

    let mut out = Vec::new();
    let edits = RequestEdits {
        default_host: b"node.internal:8080",
        ..RequestEdits::default()
    };
    write_request_head(data, &head, &edits, &mut out);

    let mut again = RequestHead::new();
    let m = match parse_request(&out, &mut again) {
        Ok(Parsed::Complete(m)) => m,
        Err(Error::TooManyHeaders) if field_lines(&out) > MAX_HEADERS => {
            // The writer adds its own fields (Host for an HTTP/1.0 request without one,
            // framing, Connection) and does not cap the total: a head at the parse limit
            // can come out over it. Pinned by a unit test in src/h1/write.rs.
            return;
        }
        other => panic!(
            "rewritten head refused: {other:?}\n{:?}\n{:?}",
            String::from_utf8_lossy(&data[..n]),
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(m, out.len(), "the writer's head has trailing bytes");
    assert_eq!(again.method(), head.method());
    assert_eq!(again.method_bytes(&out), head.method_bytes(data));
    let (prefix, rest) = head.origin_form(data);
    assert_eq!(again.target(&out), [prefix, rest].concat().as_slice());
    assert_eq!(again.path(&out), head.path(data));
    assert_eq!(again.query(&out), head.query(data));
    assert_eq!(
        again.host(&out),
        Some(head.host(data).unwrap_or(b"node.internal:8080"))
    );
    assert_eq!(again.body(), head.body());
    assert_eq!(again.version(), Version::Http11);
    assert!(again.keep_alive() && !again.upgrade());
    assert!(again.connection_tokens().is_empty());
    let want = head
        .headers()
        .iter()
        .filter(|h| kept(h.kind) && !head.connection_names(data, h.name.get(data)))
        .map(|h| (h.name.get(data), h.value.get(data)));
    let got = again
        .headers()
        .iter()
        .filter(|h| kept(h.kind))
        .map(|h| (h.name.get(&out), h.value.get(&out)));
    assert!(want.eq(got), "fields differ after a round trip");
}

fn check_response(data: &[u8], head_req: bool) {
    let mut res = ResponseHead::new();
    let n = match parse_response(data, head_req, &mut res) {
        Ok(Parsed::Complete(n)) => n,
        Ok(Parsed::Partial) | Err(_) => return,
    };
    assert!(n <= data.len());
    for client_version in [Version::Http10, Version::Http11] {
        let mut out = Vec::new();
        let edits = ResponseEdits {
            client_version,
            ..ResponseEdits::default()
        };
        let r = write_response_head(data, &res, &edits, &mut out);
        let mut again = ResponseHead::new();
        match parse_response(&out, head_req, &mut again) {
            Ok(Parsed::Complete(m)) => assert_eq!(m, out.len()),
            Err(Error::TooManyHeaders) if field_lines(&out) > MAX_HEADERS => continue,
            other => panic!(
                "rewritten response refused: {other:?}\n{:?}",
                String::from_utf8_lossy(&out)
            ),
        }
        assert_eq!(again.status(), res.status());
        let framing_matches = match r.body {
            BodyOut::None => again.body() == BodyFraming::Empty,
            BodyOut::Length(n) => again.body() == BodyFraming::Length(n),
            BodyOut::Chunked => again.body() == BodyFraming::Chunked,
            BodyOut::UntilClose => again.body() == BodyFraming::CloseDelimited,
        };
        assert!(framing_matches, "{:?} vs {:?}", r.body, again.body());
    }
}

fuzz_target!(|data: &[u8]| {
    check_request(data);
    check_response(data, false);
    check_response(data, true);
});
