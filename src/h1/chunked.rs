//! The chunked transfer coding (RFC 9112 §7.1): an incremental decoder that never copies
//! the payload, and the pieces to write chunked framing.
//!
//! [`ChunkedDecoder::decode`] takes whatever bytes the driver has read and says what the
//! first of them are: payload to forward (`input[start..end]`, the bytes before `start`
//! being framing it has consumed), trailer bytes, "all framing, read more", or "done after
//! `consumed` bytes" (the rest of the input is the next message). It keeps only a few
//! words of state between calls, so input may be split anywhere.
//!
//! Strict where a lenient decoder is a smuggling vector, and at least as strict as hyper:
//! - chunk-size is 1 to 16 hex digits (hyper allows any number of leading zeros);
//! - after the size only `;` extensions, optionally preceded by spaces or tabs; hyper also
//!   accepts spaces alone before the CRLF (`5 \r\n`), we do not;
//! - extensions are skipped, but may hold no control byte (hyper only refuses LF) and total
//!   at most [`MAX_CHUNK_EXTENSIONS`] bytes per body (hyper: 16 KiB);
//! - every line ends in CRLF: a bare LF or CR anywhere in the framing is an error, as in
//!   hyper, and also in the trailer section, where hyper accepts a bare LF inside a line;
//! - chunk data must be followed by CRLF;
//! - trailer lines must be `token ":" value` field lines (no obs-fold), at most
//!   [`MAX_TRAILERS`] of them (hyper's limit) in at most [`MAX_TRAILER_BYTES`] bytes
//!   (hyper: just under 16 KiB, final CRLF included).

use crate::h1::header::is_tchar;
use crate::h1::Error;

/// Most bytes of chunk extensions accepted in one body (summed over all chunks).
pub const MAX_CHUNK_EXTENSIONS: usize = 4 * 1024;
/// Most trailer field lines accepted.
pub const MAX_TRAILERS: usize = 100;
/// Most bytes of trailer section accepted (field lines with their CRLFs).
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;
/// Most hex digits in a chunk size (16 digits fill a `u64`, so no overflow is possible).
pub const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// What the first bytes of the input given to a body decoder are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `input[start..end]` is payload; `input[..start]` was framing, consumed. Forward the
    /// payload and call again with `input[end..]`. Never empty.
    Data {
        /// First payload byte.
        start: usize,
        /// One past the last payload byte.
        end: usize,
    },
    /// `input[start..end]` is part of the trailer section (whole or partial field lines
    /// with their CRLFs, already checked); `input[..start]` was framing. Forward them
    /// after `0\r\n` if trailers are passed on, or drop them; call again with `input[end..]`.
    Trailer {
        /// First trailer byte.
        start: usize,
        /// One past the last trailer byte.
        end: usize,
    },
    /// All of the input was framing and is consumed: read more.
    NeedMore,
    /// The body is complete; its last `consumed` bytes of framing were at the start of the
    /// input. Whatever follows is the next message.
    Done {
        /// Bytes of the input that belonged to this body.
        consumed: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading chunk-size hex digits; `digits` read so far.
    Size { digits: u8 },
    /// Spaces or tabs after the size: only more of them or `;` may follow.
    SizeWs,
    /// Inside chunk extensions, up to CR.
    Ext,
    /// After the CR of a size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data, expecting CR.
    DataCr,
    /// After chunk data and CR, expecting LF.
    DataLf,
    /// At the start of a trailer line or of the final CRLF.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// After the CR of a trailer line.
    TrailerLf,
    /// After the CR of the final CRLF.
    EndLf,
    /// The body is complete.
    Done,
}

/// Incremental, zero-copy chunked body decoder. One per body; [`ChunkedDecoder::new`] is
/// free (no allocation) and the struct is a few words.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    ext_bytes: usize,
    trailers: usize,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub const fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            ext_bytes: 0,
            trailers: 0,
            trailer_bytes: 0,
        }
    }

    /// Whether the whole body, final CRLF included, has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input`; see [`Step`]. After [`Step::Done`] every call
    /// returns `Done { consumed: 0 }`.
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, Error> {
        let mut i = 0;
        // Start of trailer bytes consumed in this call, if any.
        let mut trailer_from: Option<usize> = None;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size { .. } | State::SizeWs | State::Ext | State::SizeLf => {
                    self.size_line(b)?;
                }
                State::Data => return Ok(self.data(input, i)),
                State::DataCr | State::DataLf => self.data_end(b)?,
                State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::EndLf => {
                    if let Some(step) = self.trailer_section(b, i, &mut trailer_from)? {
                        return Ok(step);
                    }
                }
                State::Done => return Ok(Step::Done { consumed: 0 }),
            }
            i += 1;
        }
        if self.state == State::Done {
            return Ok(Step::Done { consumed: 0 });
        }
        Ok(match trailer_from {
            Some(from) => Step::Trailer {
                start: from,
                end: input.len(),
            },
            None => Step::NeedMore,
        })
    }

    /// One byte of a chunk-size line: the hex size, whitespace, extensions, its CRLF.
    #[inline]
    fn size_line(&mut self, b: u8) -> Result<(), Error> {
        match self.state {
            State::Size { digits } => {
                if let Some(d) = hex(b) {
                    if digits == MAX_CHUNK_SIZE_DIGITS {
                        return Err(Error::ChunkSize);
                    }
                    self.size = (self.size << 4) | u64::from(d);
                    self.state = State::Size { digits: digits + 1 };
                } else if digits == 0 {
                    return Err(Error::ChunkSize);
                } else {
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b';' => self.state = State::Ext,
                        b' ' | b'\t' => self.state = State::SizeWs,
                        b'\n' => return Err(Error::ChunkFraming),
                        _ => return Err(Error::ChunkSize),
                    }
                }
            }
            State::SizeWs => match b {
                b' ' | b'\t' => {}
                b';' => self.state = State::Ext,
                _ => return Err(Error::ChunkSize),
            },
            State::Ext => {
                if b == b'\r' {
                    self.state = State::SizeLf;
                } else if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 {
                    self.ext_bytes += 1;
                    if self.ext_bytes > MAX_CHUNK_EXTENSIONS {
                        return Err(Error::ChunkExtension);
                    }
                } else if b == b'\n' {
                    return Err(Error::ChunkFraming);
                } else {
                    return Err(Error::ChunkExtension);
                }
            }
            _ => {
                // SizeLf, the one size-line state left: `decode` sends only those here.
                if b != b'\n' {
                    return Err(Error::ChunkFraming);
                }
                self.state = if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                };
            }
        }
        Ok(())
    }

    /// Chunk data from `input[i..]`: as much of the chunk as the input holds.
    #[inline]
    fn data(&mut self, input: &[u8], i: usize) -> Step {
        let avail = (input.len() - i) as u64;
        let n = avail.min(self.size);
        self.size -= n;
        if self.size == 0 {
            self.state = State::DataCr;
        }
        // n > 0: the size is non-zero in this state and there is input left.
        Step::Data {
            start: i,
            end: i + n as usize,
        }
    }

    /// One byte of the CRLF after chunk data.
    #[inline]
    fn data_end(&mut self, b: u8) -> Result<(), Error> {
        match (self.state, b) {
            (State::DataCr, b'\r') => self.state = State::DataLf,
            (State::DataLf, b'\n') => self.state = State::Size { digits: 0 },
            _ => return Err(Error::ChunkFraming),
        }
        Ok(())
    }

    /// One byte (at `i`) of the trailer section or of the final CRLF. `trailer_from` is
    /// where this call's trailer bytes started. Returns the step to hand out when the
    /// trailer lines end (they go out before the final CRLF is consumed) or when the body
    /// does.
    #[inline]
    fn trailer_section(
        &mut self,
        b: u8,
        i: usize,
        trailer_from: &mut Option<usize>,
    ) -> Result<Option<Step>, Error> {
        match self.state {
            State::TrailerStart => {
                if b == b'\r' {
                    if let Some(from) = *trailer_from {
                        // Hand out the trailer lines first; the final CRLF is consumed
                        // on the next call.
                        return Ok(Some(Step::Trailer {
                            start: from,
                            end: i,
                        }));
                    }
                    self.state = State::EndLf;
                } else if is_tchar(b) {
                    if self.trailers == MAX_TRAILERS {
                        return Err(Error::Trailer);
                    }
                    self.trailers += 1;
                    trailer_from.get_or_insert(i);
                    self.count_trailer_byte()?;
                    self.state = State::TrailerName;
                } else {
                    // Whitespace (obs-fold), a bare LF, anything else.
                    return Err(Error::Trailer);
                }
            }
            State::TrailerName => {
                trailer_from.get_or_insert(i);
                self.count_trailer_byte()?;
                if b == b':' {
                    self.state = State::TrailerValue;
                } else if !is_tchar(b) {
                    return Err(Error::Trailer);
                }
            }
            State::TrailerValue => {
                trailer_from.get_or_insert(i);
                self.count_trailer_byte()?;
                if b == b'\r' {
                    self.state = State::TrailerLf;
                } else if !(b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80) {
                    return Err(Error::Trailer);
                }
            }
            State::TrailerLf => {
                trailer_from.get_or_insert(i);
                self.count_trailer_byte()?;
                if b != b'\n' {
                    return Err(Error::Trailer);
                }
                self.state = State::TrailerStart;
            }
            _ => {
                // EndLf, the one state left: `decode` sends only trailer-section states here.
                if b != b'\n' {
                    return Err(Error::ChunkFraming);
                }
                self.state = State::Done;
                return Ok(Some(Step::Done { consumed: i + 1 }));
            }
        }
        Ok(None)
    }

    fn count_trailer_byte(&mut self) -> Result<(), Error> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(Error::Trailer);
        }
        Ok(())
    }
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A chunk-size line (`<hex>\r\n`) on the stack, for writing without a buffer copy (e.g.
/// as the first slice of a vectored write).
#[derive(Debug, Clone, Copy)]
pub struct ChunkHeader {
    buf: [u8; 18],
    len: u8,
}

impl ChunkHeader {
    /// The size line for a chunk of `len` bytes. `len` must not be 0 for a data chunk
    /// (`0\r\n` is the last-chunk line).
    pub fn new(len: u64) -> ChunkHeader {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 18];
        let digits = if len == 0 {
            1
        } else {
            (64 - len.leading_zeros() as usize).div_ceil(4)
        };
        for (k, slot) in buf[..digits].iter_mut().enumerate() {
            let shift = 4 * (digits - 1 - k);
            *slot = HEX[((len >> shift) & 0xf) as usize];
        }
        buf[digits] = b'\r';
        buf[digits + 1] = b'\n';
        ChunkHeader {
            buf,
            len: (digits + 2) as u8,
        }
    }

    /// The bytes of the line, CRLF included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Appends the size line of a `len`-byte chunk to `out`.
pub fn write_chunk_header(len: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(ChunkHeader::new(len).as_bytes());
}

/// What follows the data of every chunk.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk and the end of a body without trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// The last-chunk line alone: write it, then the trailer bytes, then [`CHUNK_END`].
pub const LAST_CHUNK_LINE: &[u8] = b"0\r\n";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes `input` given in pieces; returns the payload, the trailer bytes and the number
    /// of input bytes the body took.
    pub(crate) fn decode_pieces(pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>, usize), Error> {
        let mut d = ChunkedDecoder::new();
        let mut data = Vec::new();
        let mut trailers = Vec::new();
        let mut used = 0;
        for piece in pieces {
            let mut rest: &[u8] = piece;
            loop {
                match d.decode(rest)? {
                    Step::Data { start, end } => {
                        assert!(start < end, "empty data step");
                        assert!(end <= rest.len(), "data past the input");
                        data.extend_from_slice(&rest[start..end]);
                        used += end;
                        rest = &rest[end..];
                    }
                    Step::Trailer { start, end } => {
                        assert!(start < end && end <= rest.len());
                        trailers.extend_from_slice(&rest[start..end]);
                        used += end;
                        rest = &rest[end..];
                    }
                    Step::NeedMore => {
                        used += rest.len();
                        break;
                    }
                    Step::Done { consumed } => {
                        used += consumed;
                        assert!(d.is_done());
                        return Ok((data, trailers, used));
                    }
                }
                if rest.is_empty() {
                    break;
                }
            }
        }
        Err(Error::IncompleteBody)
    }

    fn decode(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>, usize), Error> {
        decode_pieces(&[input])
    }

    /// Chunk-encodes `data` with the given chunk sizes (cycled), as a sender would.
    pub(crate) fn encode(data: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut k = 0;
        while pos < data.len() {
            let n = sizes[k % sizes.len()].max(1).min(data.len() - pos);
            k += 1;
            write_chunk_header(n as u64, &mut out);
            out.extend_from_slice(&data[pos..pos + n]);
            out.extend_from_slice(CHUNK_END);
            pos += n;
        }
        out.extend_from_slice(LAST_CHUNK);
        out
    }

    #[test]
    fn chunked_table() {
        type Case = (
            &'static [u8],
            Result<(&'static [u8], &'static [u8], usize), Error>,
        );
        let cases: &[Case] = &[
            (b"0\r\n\r\n", Ok((b"", b"", 5))),
            (b"1\r\na\r\n0\r\n\r\n", Ok((b"a", b"", 11))),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
                Ok((b"hello world", b"", 26)),
            ),
            (
                b"A\r\n0123456789\r\n0\r\n\r\n",
                Ok((b"0123456789", b"", 20)),
            ),
            (
                b"a\r\n0123456789\r\n0\r\n\r\n",
                Ok((b"0123456789", b"", 20)),
            ),
            (
                b"000000000000000a\r\n0123456789\r\n0\r\n\r\n",
                Ok((b"0123456789", b"", 35)),
            ),
            // Extensions are skipped.
            (
                b"5;name=value\r\nhello\r\n0\r\n\r\n",
                Ok((b"hello", b"", 26)),
            ),
            (
                b"5;a;b=\"q s\"\r\nhello\r\n0;last\r\n\r\n",
                Ok((b"hello", b"", 30)),
            ),
            (b"5 ;a\r\nhello\r\n0\r\n\r\n", Ok((b"hello", b"", 18))),
            (b"5\t;a\r\nhello\r\n0\r\n\r\n", Ok((b"hello", b"", 18))),
            // Trailers are handed out.
            (b"0\r\nX-Sum: 1\r\n\r\n", Ok((b"", b"X-Sum: 1\r\n", 15))),
            (
                b"2\r\nhi\r\n0\r\nA: 1\r\nB:2\r\n\r\n",
                Ok((b"hi", b"A: 1\r\nB:2\r\n", 23)),
            ),
            // Size errors.
            (b"\r\n", Err(Error::ChunkSize)),
            (b"x\r\n", Err(Error::ChunkSize)),
            (b"-1\r\n", Err(Error::ChunkSize)),
            (b"+1\r\n", Err(Error::ChunkSize)),
            (b"0x5\r\nhello\r\n0\r\n\r\n", Err(Error::ChunkSize)),
            (b" 5\r\nhello\r\n0\r\n\r\n", Err(Error::ChunkSize)),
            (b"5 \r\nhello\r\n0\r\n\r\n", Err(Error::ChunkSize)),
            (b"5 5\r\nhello\r\n0\r\n\r\n", Err(Error::ChunkSize)),
            (b"0000000000000000a\r\n", Err(Error::ChunkSize)),
            (b"10000000000000000\r\n", Err(Error::ChunkSize)),
            (b"ffffffffffffffffff\r\n", Err(Error::ChunkSize)),
            // Bare LF / CR in framing.
            (b"5\nhello\r\n0\r\n\r\n", Err(Error::ChunkFraming)),
            (b"5\r\nhello\n0\r\n\r\n", Err(Error::ChunkFraming)),
            (b"5\r\nhello\r\n0\n\r\n", Err(Error::ChunkFraming)),
            (b"5\r\nhello\r\n0\r\n\n", Err(Error::Trailer)),
            (b"5\r\nhello\r\n0\r\n\rX", Err(Error::ChunkFraming)),
            (b"5\rxhello\r\n0\r\n\r\n", Err(Error::ChunkFraming)),
            (b"5;a\nhello\r\n0\r\n\r\n", Err(Error::ChunkFraming)),
            // Data not followed by CRLF (a length lie).
            (b"5\r\nhello!\r\n0\r\n\r\n", Err(Error::ChunkFraming)),
            (b"5\r\nhell\r\n0\r\n\r\n", Err(Error::ChunkFraming)),
            // Extension bytes.
            (b"5;a\0\r\nhello\r\n0\r\n\r\n", Err(Error::ChunkExtension)),
            (b"5;a\x7f\r\nhello\r\n0\r\n\r\n", Err(Error::ChunkExtension)),
            (b"5;\x01\r\nhello\r\n0\r\n\r\n", Err(Error::ChunkExtension)),
            // Trailer syntax.
            (b"0\r\n X: 1\r\n\r\n", Err(Error::Trailer)),
            (b"0\r\nX : 1\r\n\r\n", Err(Error::Trailer)),
            (b"0\r\nNoColon\r\n\r\n", Err(Error::Trailer)),
            (b"0\r\nX: 1\nY: 2\r\n\r\n", Err(Error::Trailer)),
            (b"0\r\nX: 1\r\n folded\r\n\r\n", Err(Error::Trailer)),
            (b"0\r\nX: a\0b\r\n\r\n", Err(Error::Trailer)),
            (b"0\r\nX: 1\rY\r\n\r\n", Err(Error::Trailer)),
            // Incomplete.
            (b"5\r\nhel", Err(Error::IncompleteBody)),
            (b"5\r\nhello\r\n", Err(Error::IncompleteBody)),
            (b"0\r\n", Err(Error::IncompleteBody)),
            (b"0\r\n\r", Err(Error::IncompleteBody)),
            (b"0\r\nX: 1\r\n", Err(Error::IncompleteBody)),
        ];
        for (input, want) in cases {
            let got = decode(input);
            let want = want.map(|(d, t, n)| (d.to_vec(), t.to_vec(), n));
            assert_eq!(
                got,
                want,
                "{}",
                String::from_utf8_lossy(input).escape_debug()
            );
        }
    }

    #[test]
    fn extension_limit_is_per_body() {
        let mut body = Vec::new();
        // 4 chunks with 1 KiB of extension bytes each (after the `;`): exactly the limit.
        for _ in 0..4 {
            body.extend_from_slice(b"1;");
            body.extend(std::iter::repeat_n(b'e', 1024));
            body.extend_from_slice(b"\r\nx\r\n");
        }
        let mut ok = body.clone();
        ok.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(decode(&ok).unwrap().0, b"xxxx");
        body.extend_from_slice(b"0;e\r\n\r\n");
        assert_eq!(decode(&body), Err(Error::ChunkExtension));
    }

    #[test]
    fn trailer_limits() {
        let mut many = b"0\r\n".to_vec();
        for i in 0..MAX_TRAILERS {
            many.extend_from_slice(format!("T{i}: v\r\n").as_bytes());
        }
        let mut ok = many.clone();
        ok.extend_from_slice(b"\r\n");
        assert!(decode(&ok).is_ok());
        many.extend_from_slice(b"One-More: v\r\n\r\n");
        assert_eq!(decode(&many), Err(Error::Trailer));

        let mut big = b"0\r\nBig: ".to_vec();
        big.extend(std::iter::repeat_n(b'v', MAX_TRAILER_BYTES));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(decode(&big), Err(Error::Trailer));
    }

    #[test]
    fn done_is_sticky_and_stops_at_the_end() {
        let input = b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let mut d = ChunkedDecoder::new();
        assert_eq!(d.decode(input), Ok(Step::Data { start: 3, end: 4 }));
        assert_eq!(d.decode(&input[4..]), Ok(Step::Done { consumed: 7 }));
        assert!(d.is_done());
        assert_eq!(d.decode(b"more"), Ok(Step::Done { consumed: 0 }));
        assert_eq!(d.decode(b""), Ok(Step::Done { consumed: 0 }));
    }

    #[test]
    fn data_is_handed_out_in_place() {
        let input = b"4\r\nabcd\r\n0\r\n\r\n";
        let mut d = ChunkedDecoder::new();
        // Split inside the data: two data steps, each a range of its own piece.
        assert_eq!(d.decode(&input[..5]), Ok(Step::Data { start: 3, end: 5 }));
        assert_eq!(d.decode(&input[5..7]), Ok(Step::Data { start: 0, end: 2 }));
        assert_eq!(d.decode(&input[7..9]), Ok(Step::NeedMore));
        assert_eq!(d.decode(&input[9..]), Ok(Step::Done { consumed: 5 }));
    }

    #[test]
    fn chunk_headers() {
        let cases: &[(u64, &[u8])] = &[
            (0, b"0\r\n"),
            (1, b"1\r\n"),
            (15, b"f\r\n"),
            (16, b"10\r\n"),
            (255, b"ff\r\n"),
            (4096, b"1000\r\n"),
            (65536, b"10000\r\n"),
            (u64::MAX, b"ffffffffffffffff\r\n"),
        ];
        for &(n, want) in cases {
            assert_eq!(ChunkHeader::new(n).as_bytes(), want, "{n}");
            let mut out = b"x".to_vec();
            write_chunk_header(n, &mut out);
            assert_eq!(&out[1..], want);
        }
    }

    #[test]
    fn ten_mib_at_every_boundary_of_the_framing() {
        // 10 MiB in 64 KiB chunks, fed in pieces cut at each framing byte of the first
        // chunks and at odd sizes after that.
        let data: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let encoded = encode(&data, &[65536]);
        for cut in 0..12 {
            let (a, b) = encoded.split_at(cut);
            let (d, _, used) = decode_pieces(&[a, b]).unwrap();
            assert_eq!(used, encoded.len());
            assert!(d == data, "cut {cut}");
        }
        let pieces: Vec<&[u8]> = encoded.chunks(4093).collect();
        let (d, _, used) = decode_pieces(&pieces).unwrap();
        assert_eq!(used, encoded.len());
        assert!(d == data);
    }

    #[test]
    fn every_split_point_of_a_small_body() {
        let input: &[u8] = b"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
        let want = decode(input).unwrap();
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let got = decode_pieces(&[&input[..i], &input[i..j], &input[j..]]).unwrap();
                assert_eq!(got, want, "split at {i}, {j}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any chunking of the body and any cutting of the encoded stream decode to the same
        /// bytes, consuming exactly the body.
        #[test]
        fn random_chunking_and_splitting(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            sizes in proptest::collection::vec(1usize..5000, 1..8),
            cuts in proptest::collection::vec(0usize..25_000, 0..16),
            trailer in proptest::option::of("[A-Za-z-]{1,10}: [ -~]{0,20}"),
        ) {
            let mut encoded = encode(&data, &sizes);
            let mut want_trailer = Vec::new();
            if let Some(t) = &trailer {
                // Replace the final CRLF by "trailer CRLF CRLF".
                encoded.truncate(encoded.len() - 2);
                want_trailer.extend_from_slice(t.as_bytes());
                want_trailer.extend_from_slice(b"\r\n");
                encoded.extend_from_slice(&want_trailer);
                encoded.extend_from_slice(b"\r\n");
            }
            encoded.extend_from_slice(b"NEXT REQUEST");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (encoded.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut prev = 0;
            for c in cuts {
                pieces.push(&encoded[prev..c]);
                prev = c;
            }
            pieces.push(&encoded[prev..]);
            let (got, got_trailer, used) = decode_pieces(&pieces).unwrap();
            prop_assert_eq!(got, data);
            prop_assert_eq!(got_trailer, want_trailer);
            prop_assert_eq!(used, encoded.len() - b"NEXT REQUEST".len());
        }

        /// Arbitrary bytes never panic, and data steps stay inside the input.
        #[test]
        fn garbage_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&input);
        }
    }
}
