//! How long a message body is: `Content-Length` and `Transfer-Encoding` (RFC 9112 §6).
//!
//! This is where request smuggling is decided, so the rules are the strict ones, shared by
//! requests and responses:
//!
//! - `Content-Length` is one or more ASCII digits, nothing else (no sign, no inner
//!   whitespace, no list); leading zeros are accepted as hyper does (`007` is 7). Several
//!   `Content-Length` lines must all parse and agree (hyper accepts identical duplicates too);
//!   values above [`MAX_CONTENT_LENGTH`] are refused with 413.
//! - `Transfer-Encoding`, over all its lines, must be exactly one coding, `chunked` (any
//!   case). A list that does not end in `chunked`, a non-token element (`chunked;x`), an
//!   empty value or `chunked` twice is a 400; a well-formed list ending in `chunked` with
//!   other codings first (`gzip, chunked`) is a 501: we neither decode those codings nor
//!   forward them. hyper accepts every list whose last element is `chunked`.
//! - Both fields in one message is refused (400), see [`Framing::finish`].

use crate::h1::header::{is_token, list_items};
use crate::h1::Error;

/// The largest `Content-Length` accepted: `i64::MAX`, the largest length a Java node
/// (Tomcat reads it into a `long`) can represent. hyper's limit is `u64::MAX - 2`.
pub const MAX_CONTENT_LENGTH: u64 = i64::MAX as u64;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFraming {
    /// No body: no `Content-Length` nor `Transfer-Encoding` on a request; a response to
    /// HEAD, a 1xx, 204 or 304.
    #[default]
    Empty,
    /// Exactly this many bytes (`Content-Length`; `Length(0)` when the message said 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes: a response with neither field. Never on a request.
    CloseDelimited,
}

/// Parses one `Content-Length` value.
pub fn parse_content_length(v: &[u8]) -> Result<u64, Error> {
    if v.is_empty() {
        return Err(Error::ContentLength);
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(Error::ContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(Error::ContentLength)?;
    }
    if n > MAX_CONTENT_LENGTH {
        return Err(Error::ContentLengthTooLarge);
    }
    Ok(n)
}

/// What the framing fields of one head said, accumulated line by line.
#[derive(Debug, Default)]
pub(crate) struct Framing {
    content_length: Option<u64>,
    content_length_error: Option<Error>,
    te_seen: bool,
    te_malformed: bool,
    te_codings: u32,
    te_chunked: u32,
    te_last_chunked: bool,
}

impl Framing {
    /// One `Content-Length` line.
    pub(crate) fn content_length(&mut self, value: &[u8]) {
        if self.content_length_error.is_some() {
            return;
        }
        match parse_content_length(value) {
            Ok(n) => match self.content_length {
                Some(prev) if prev != n => {
                    self.content_length_error = Some(Error::ContentLengthConflict);
                }
                _ => self.content_length = Some(n),
            },
            Err(e) => self.content_length_error = Some(e),
        }
    }

    /// One `Transfer-Encoding` line.
    pub(crate) fn transfer_encoding(&mut self, value: &[u8]) {
        self.te_seen = true;
        let mut any = false;
        for item in list_items(value, 0) {
            any = true;
            let coding = item.get(value);
            if !is_token(coding) {
                self.te_malformed = true;
            }
            self.te_codings += 1;
            self.te_last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if self.te_last_chunked {
                self.te_chunked += 1;
            }
        }
        if !any {
            self.te_malformed = true;
        }
    }

    /// Whether a `Content-Length` line was seen (valid or not).
    pub(crate) fn has_content_length(&self) -> bool {
        self.content_length.is_some() || self.content_length_error.is_some()
    }

    /// The agreed `Content-Length`: `None` if there was none, an error if one was bad or
    /// two disagreed.
    pub(crate) fn content_length_value(&self) -> Result<Option<u64>, Error> {
        match self.content_length_error {
            Some(e) => Err(e),
            None => Ok(self.content_length),
        }
    }

    /// Decides the framing of a message that may have a body. `http10` refuses any
    /// `Transfer-Encoding` (RFC 9112 §6.1: HTTP/1.0 has no chunked coding).
    ///
    /// Both `Transfer-Encoding` and `Content-Length` is an error. RFC 9112 §6.3 lets a
    /// server let Transfer-Encoding win and close the connection afterwards (hyper does
    /// that); we refuse instead, because such a message is almost always a smuggling attempt
    /// and a node behind us might pick the other field.
    pub(crate) fn finish(&self, http10: bool, none: BodyFraming) -> Result<BodyFraming, Error> {
        if self.te_seen {
            if http10 {
                return Err(Error::TransferEncodingHttp10);
            }
            if self.has_content_length() {
                return Err(Error::ContentLengthWithTransferEncoding);
            }
            if self.te_malformed || !self.te_last_chunked || self.te_chunked > 1 {
                return Err(Error::TransferEncoding);
            }
            if self.te_codings > 1 {
                return Err(Error::TransferCodingUnsupported);
            }
            return Ok(BodyFraming::Chunked);
        }
        if let Some(e) = self.content_length_error {
            return Err(e);
        }
        Ok(match self.content_length {
            Some(n) => BodyFraming::Length(n),
            None => none,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_values() {
        let cases: &[(&[u8], Result<u64, Error>)] = &[
            (b"0", Ok(0)),
            (b"5", Ok(5)),
            (b"007", Ok(7)), // leading zeros: hyper accepts them, so do we
            (b"9223372036854775807", Ok(i64::MAX as u64)),
            (b"9223372036854775808", Err(Error::ContentLengthTooLarge)),
            (b"18446744073709551615", Err(Error::ContentLengthTooLarge)),
            (b"18446744073709551616", Err(Error::ContentLength)), // u64 overflow
            (b"99999999999999999999999", Err(Error::ContentLength)),
            (b"", Err(Error::ContentLength)),
            (b"+5", Err(Error::ContentLength)),
            (b"-5", Err(Error::ContentLength)),
            (b"5 5", Err(Error::ContentLength)),
            (b"5\t", Err(Error::ContentLength)),
            (b"5,5", Err(Error::ContentLength)),
            (b"5, 5", Err(Error::ContentLength)),
            (b"0x5", Err(Error::ContentLength)),
            (b"5e2", Err(Error::ContentLength)),
            (b"\xd9\xa5", Err(Error::ContentLength)), // Arabic-Indic digit five
        ];
        for (v, want) in cases {
            assert_eq!(
                parse_content_length(v),
                *want,
                "{}",
                String::from_utf8_lossy(v)
            );
        }
    }

    fn framing(cl: &[&[u8]], te: &[&[u8]], http10: bool) -> Result<BodyFraming, Error> {
        let mut f = Framing::default();
        for v in cl {
            f.content_length(v);
        }
        for v in te {
            f.transfer_encoding(v);
        }
        f.finish(http10, BodyFraming::Empty)
    }

    #[test]
    fn framing_table() {
        use BodyFraming::*;
        type Case<'a> = (
            &'a [&'a [u8]],
            &'a [&'a [u8]],
            bool,
            Result<BodyFraming, Error>,
        );
        let cases: &[Case] = &[
            (&[], &[], false, Ok(Empty)),
            (&[b"10"], &[], false, Ok(Length(10))),
            (&[b"0"], &[], false, Ok(Length(0))),
            (&[b"10", b"10"], &[], false, Ok(Length(10))),
            (&[b"10", b"010"], &[], false, Ok(Length(10))),
            (
                &[b"10", b"11"],
                &[],
                false,
                Err(Error::ContentLengthConflict),
            ),
            (&[b"10", b"x"], &[], false, Err(Error::ContentLength)),
            (&[b"x", b"10"], &[], false, Err(Error::ContentLength)),
            (&[], &[b"chunked"], false, Ok(Chunked)),
            (&[], &[b"CHUNKED"], false, Ok(Chunked)),
            (&[], &[b"Chunked"], false, Ok(Chunked)),
            (&[], &[b"chunked"], true, Err(Error::TransferEncodingHttp10)),
            (
                &[b"5"],
                &[b"chunked"],
                false,
                Err(Error::ContentLengthWithTransferEncoding),
            ),
            (
                &[b"x"],
                &[b"chunked"],
                false,
                Err(Error::ContentLengthWithTransferEncoding),
            ),
            (&[], &[b"xchunked"], false, Err(Error::TransferEncoding)),
            (&[], &[b"chunkedx"], false, Err(Error::TransferEncoding)),
            (
                &[],
                &[b"chunked, identity"],
                false,
                Err(Error::TransferEncoding),
            ),
            (&[], &[b"identity"], false, Err(Error::TransferEncoding)),
            (&[], &[b"gzip"], false, Err(Error::TransferEncoding)),
            (&[], &[b""], false, Err(Error::TransferEncoding)),
            (&[], &[b" , "], false, Err(Error::TransferEncoding)),
            (
                &[],
                &[b"chunked, chunked"],
                false,
                Err(Error::TransferEncoding),
            ),
            (
                &[],
                &[b"chunked", b"chunked"],
                false,
                Err(Error::TransferEncoding),
            ),
            (
                &[],
                &[b"chunked", b"gzip"],
                false,
                Err(Error::TransferEncoding),
            ),
            (&[], &[b"chunked;q=1"], false, Err(Error::TransferEncoding)),
            (&[], &[b"\"chunked\""], false, Err(Error::TransferEncoding)),
            (&[], &[b"chu nked"], false, Err(Error::TransferEncoding)),
            (
                &[],
                &[b"gzip, chunked"],
                false,
                Err(Error::TransferCodingUnsupported),
            ),
            (
                &[],
                &[b"gzip", b"chunked"],
                false,
                Err(Error::TransferCodingUnsupported),
            ),
            (
                &[],
                &[b"gzip;x, chunked"],
                false,
                Err(Error::TransferEncoding),
            ),
        ];
        for (cl, te, http10, want) in cases {
            assert_eq!(
                framing(cl, te, *http10),
                *want,
                "cl={cl:?} te={te:?} http10={http10}"
            );
        }
    }

    #[test]
    fn response_without_fields_uses_given_default() {
        let f = Framing::default();
        assert_eq!(
            f.finish(false, BodyFraming::CloseDelimited),
            Ok(BodyFraming::CloseDelimited)
        );
    }
}
