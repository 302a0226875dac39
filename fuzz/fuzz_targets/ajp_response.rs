//! The AJP response parser: any bytes from a container, at any packet size, never panic;
//! input split at arbitrary points parses into exactly the packets (or the error) of the
//! whole; every packet accepted is written again by the container-side writers into the
//! same bytes it was read from (headers and body chunks) or parses back equal.
//!
//! Input layout: the first byte chooses the packet size (8192 + 228 × byte, up to 65536),
//! the second the read size the stream is cut into (1..=256), the rest is the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stickyroute_fuzz::ajp::{self, Error, Packet};

#[derive(Debug, PartialEq)]
enum Seen {
    Headers(u16, Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>),
    Body(Vec<u8>),
    GetBody(u16),
    End(bool),
    CPong,
}

fn seen(p: &Packet<'_>) -> Seen {
    match p {
        Packet::SendHeaders(h) => Seen::Headers(
            h.status,
            h.message.to_vec(),
            h.headers.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
        ),
        Packet::SendBodyChunk(d) => Seen::Body(d.to_vec()),
        Packet::GetBodyChunk(n) => Seen::GetBody(*n),
        Packet::EndResponse { reuse } => Seen::End(*reuse),
        Packet::CPong => Seen::CPong,
    }
}

/// Parses the whole stream at once.
fn whole(stream: &[u8], ps: usize) -> (Vec<Seen>, Option<Error>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        match ajp::parse_packet(&stream[pos..], ps) {
            Ok(Some((p, used))) => {
                assert!(used >= 5 && used <= ps && pos + used <= stream.len());
                check_rewrite(&p, &stream[pos..pos + used], ps);
                out.push(seen(&p));
                pos += used;
            }
            Ok(None) => return (out, None, pos),
            Err(e) => return (out, Some(e), pos),
        }
    }
}

/// Feeds the stream `step` bytes at a time into a growing buffer, as a driver does.
fn pieces(stream: &[u8], ps: usize, step: usize) -> (Vec<Seen>, Option<Error>, usize) {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut consumed = 0;
    while fed < stream.len() {
        let next = (fed + step).min(stream.len());
        buf.extend_from_slice(&stream[fed..next]);
        fed = next;
        loop {
            match ajp::parse_packet(&buf, ps) {
                Ok(Some((p, used))) => {
                    out.push(seen(&p));
                    buf.drain(..used);
                    consumed += used;
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e), consumed),
            }
        }
    }
    (out, None, consumed)
}

/// A packet written again by the container-side writers parses back equal.
fn check_rewrite(p: &Packet<'_>, _raw: &[u8], ps: usize) {
    let mut again = Vec::new();
    match p {
        Packet::SendHeaders(h) => {
            // Coded names may have been sent as strings; the writer codes them, so the bytes
            // can differ but the parse must not.
            if ajp::write_send_headers(h.status, h.message, &h.headers, ps, &mut again).is_err() {
                return;
            }
        }
        Packet::SendBodyChunk(d) => {
            if ajp::write_send_body_chunk(d, ps, &mut again).is_err() {
                return;
            }
        }
        Packet::GetBodyChunk(n) => ajp::write_get_body_chunk(*n, &mut again),
        Packet::EndResponse { reuse } => ajp::write_end_response(*reuse, &mut again),
        Packet::CPong => again.extend_from_slice(&ajp::CPONG_PACKET),
    }
    match ajp::parse_packet(&again, ps) {
        Ok(Some((q, used))) => {
            assert_eq!(used, again.len());
            assert_eq!(seen(&q), seen(p), "rewritten packet parses differently");
        }
        other => panic!("rewritten packet refused: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let [size, step, stream @ ..] = data else {
        return;
    };
    let ps = (8192 + 228 * usize::from(*size)).min(65536);
    let step = usize::from(*step) + 1;
    let a = whole(stream, ps);
    let b = pieces(stream, ps, step);
    assert_eq!(a, b, "splitting the stream changed the result");
});
