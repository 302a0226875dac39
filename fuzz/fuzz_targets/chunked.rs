//! The chunked decoder: input split at arbitrary points decodes exactly as in one piece
//! (same payload, same trailer bytes, same length, or the same error), never panics, and
//! never hands out a range outside its input.
//!
//! Input layout: the first byte is a count k (mod 16) of cut points, the next 2k bytes are
//! cut positions (u16, little endian), the rest is the body stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stickyroute_fuzz::h1::{ChunkedDecoder, Error, Step};

#[derive(Debug, PartialEq)]
struct Decoded {
    data: Vec<u8>,
    trailers: Vec<u8>,
    used: usize,
    done: bool,
}

fn decode(pieces: &[&[u8]]) -> Result<Decoded, Error> {
    let mut d = ChunkedDecoder::new();
    let mut out = Decoded {
        data: Vec::new(),
        trailers: Vec::new(),
        used: 0,
        done: false,
    };
    for piece in pieces {
        let mut rest: &[u8] = piece;
        loop {
            match d.decode(rest)? {
                Step::Data { start, end } => {
                    assert!(
                        start < end && end <= rest.len(),
                        "data step outside the input"
                    );
                    out.data.extend_from_slice(&rest[start..end]);
                    out.used += end;
                    rest = &rest[end..];
                }
                Step::Trailer { start, end } => {
                    assert!(
                        start < end && end <= rest.len(),
                        "trailer step outside the input"
                    );
                    out.trailers.extend_from_slice(&rest[start..end]);
                    out.used += end;
                    rest = &rest[end..];
                }
                Step::NeedMore => {
                    out.used += rest.len();
                    break;
                }
                Step::Done { consumed } => {
                    assert!(consumed <= rest.len());
                    assert!(d.is_done());
                    out.used += consumed;
                    out.done = true;
                    return Ok(out);
                }
            }
            if rest.is_empty() {
                break;
            }
        }
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 16);
    if rest.len() < 2 * k {
        return;
    }
    let (cuts_raw, body) = rest.split_at(2 * k);
    let mut cuts: Vec<usize> = cuts_raw
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (body.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut prev = 0;
    for c in cuts {
        pieces.push(&body[prev..c]);
        prev = c;
    }
    pieces.push(&body[prev..]);

    let whole = decode(&[body]);
    let split = decode(&pieces);
    assert_eq!(whole, split, "splitting the input changed the result");
    if let Ok(d) = &whole {
        assert!(d.data.len() + d.trailers.len() <= d.used);
        assert!(d.used <= body.len());
    }
});
