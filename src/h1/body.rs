//! One body reader for every framing, so the driver forwards bodies with one loop.
//!
//! [`BodyReader::decode`] answers with the same [`Step`]s as the chunked decoder: for a
//! `Content-Length` body it counts down and hands out `input[0..n]`; for a close-delimited
//! response it hands out everything until [`BodyReader::finish_eof`]; for no body it is done
//! at once.

use crate::h1::chunked::{ChunkedDecoder, Step};
use crate::h1::framing::BodyFraming;
use crate::h1::Error;

/// Reads one message body from the bytes that follow its head.
#[derive(Debug, Clone)]
pub enum BodyReader {
    /// No body.
    Empty,
    /// This many bytes still to come.
    Length(u64),
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// Everything until the peer closes.
    CloseDelimited,
}

impl BodyReader {
    /// The reader for a body framed as `framing`.
    pub fn new(framing: BodyFraming) -> BodyReader {
        match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => BodyReader::Empty,
            BodyFraming::Length(n) => BodyReader::Length(n),
            BodyFraming::Chunked => BodyReader::Chunked(ChunkedDecoder::new()),
            BodyFraming::CloseDelimited => BodyReader::CloseDelimited,
        }
    }

    /// Decodes from the start of `input`; see [`Step`]. An empty `input` is allowed (a
    /// done body answers `Done`, others `NeedMore`).
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, Error> {
        match self {
            BodyReader::Empty => Ok(Step::Done { consumed: 0 }),
            BodyReader::Length(remaining) => {
                if *remaining == 0 {
                    return Ok(Step::Done { consumed: 0 });
                }
                if input.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = (input.len() as u64).min(*remaining);
                *remaining -= n;
                Ok(Step::Data {
                    start: 0,
                    end: n as usize,
                })
            }
            BodyReader::Chunked(d) => d.decode(input),
            BodyReader::CloseDelimited => {
                if input.is_empty() {
                    Ok(Step::NeedMore)
                } else {
                    Ok(Step::Data {
                        start: 0,
                        end: input.len(),
                    })
                }
            }
        }
    }

    /// Whether the body is complete (a close-delimited body never is before EOF).
    pub fn is_done(&self) -> bool {
        match self {
            BodyReader::Empty => true,
            BodyReader::Length(n) => *n == 0,
            BodyReader::Chunked(d) => d.is_done(),
            BodyReader::CloseDelimited => false,
        }
    }

    /// Bytes still expected, when known: a `Content-Length` body's remainder.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            BodyReader::Empty => Some(0),
            BodyReader::Length(n) => Some(*n),
            BodyReader::Chunked(_) | BodyReader::CloseDelimited => None,
        }
    }

    /// The peer closed the connection: fine for a close-delimited or complete body,
    /// [`Error::IncompleteBody`] otherwise (a node that dies mid-body must not look like a
    /// short, successful response).
    pub fn finish_eof(&self) -> Result<(), Error> {
        if matches!(self, BodyReader::CloseDelimited) || self.is_done() {
            Ok(())
        } else {
            Err(Error::IncompleteBody)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a reader over pieces; returns (payload, bytes used, done).
    fn run(r: &mut BodyReader, pieces: &[&[u8]]) -> Result<(Vec<u8>, usize, bool), Error> {
        let mut data = Vec::new();
        let mut used = 0;
        for piece in pieces {
            let mut rest: &[u8] = piece;
            loop {
                match r.decode(rest)? {
                    Step::Data { start, end } | Step::Trailer { start, end } => {
                        data.extend_from_slice(&rest[start..end]);
                        used += end;
                        rest = &rest[end..];
                        if rest.is_empty() {
                            break;
                        }
                    }
                    Step::NeedMore => {
                        used += rest.len();
                        break;
                    }
                    Step::Done { consumed } => return Ok((data, used + consumed, true)),
                }
            }
        }
        Ok((data, used, r.is_done()))
    }

    #[test]
    fn empty_and_zero_length() {
        for f in [BodyFraming::Empty, BodyFraming::Length(0)] {
            let mut r = BodyReader::new(f);
            assert!(r.is_done());
            assert_eq!(r.decode(b"GET /"), Ok(Step::Done { consumed: 0 }));
            assert_eq!(r.finish_eof(), Ok(()));
            assert_eq!(r.remaining(), Some(0));
        }
    }

    #[test]
    fn length_bodies_of_1_byte_64k_and_10m() {
        for size in [1usize, 64 * 1024, 10 * 1024 * 1024] {
            let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            let mut stream = body.clone();
            stream.extend_from_slice(b"GET /next HTTP/1.1\r\n");
            for piece in [1usize, 7, 4096, 1 << 20] {
                let pieces: Vec<&[u8]> = stream.chunks(piece.min(stream.len())).collect();
                let mut r = BodyReader::new(BodyFraming::Length(size as u64));
                let (data, used, done) = run(&mut r, &pieces).unwrap();
                assert!(done);
                assert_eq!(used, size);
                assert!(data == body, "size {size} piece {piece}");
            }
        }
    }

    #[test]
    fn length_body_cut_short_is_incomplete() {
        let mut r = BodyReader::new(BodyFraming::Length(10));
        let (data, _, done) = run(&mut r, &[b"12345"]).unwrap();
        assert_eq!(data, b"12345");
        assert!(!done);
        assert_eq!(r.remaining(), Some(5));
        assert_eq!(r.decode(b""), Ok(Step::NeedMore));
        assert_eq!(r.finish_eof(), Err(Error::IncompleteBody));
    }

    #[test]
    fn chunked_through_the_reader() {
        let mut r = BodyReader::new(BodyFraming::Chunked);
        assert_eq!(r.remaining(), None);
        let (data, used, done) = run(&mut r, &[b"3\r\nab", b"c\r\n0\r\n\r\nrest"]).unwrap();
        assert_eq!((data.as_slice(), used, done), (&b"abc"[..], 13, true));
        let mut r = BodyReader::new(BodyFraming::Chunked);
        run(&mut r, &[b"3\r\nab"]).unwrap();
        assert_eq!(r.finish_eof(), Err(Error::IncompleteBody));
    }

    #[test]
    fn close_delimited_until_eof() {
        let mut r = BodyReader::new(BodyFraming::CloseDelimited);
        let (data, used, done) = run(&mut r, &[b"abc", b"", b"def"]).unwrap();
        assert_eq!((data.as_slice(), used, done), (&b"abcdef"[..], 6, false));
        assert_eq!(r.finish_eof(), Ok(()));
        assert_eq!(r.remaining(), None);
    }
}
