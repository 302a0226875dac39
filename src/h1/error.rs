//! The one error type of the HTTP/1 codec and its mapping to a status code.
//!
//! Every way a head or a body can be refused is a variant here, so that the driver answers a
//! client with [`Error::status`] and [`Error::reason`] (both static: the input is never
//! echoed) and closes the connection. The mapping is one `match`, pinned by a table-driven
//! test below.
//!
//! The status is the one to send to a **client** whose request failed. When the same error
//! comes from parsing a node's response, the driver answers its client `502 Bad Gateway`
//! instead (see [`Error::status`]).

/// Why a message head or body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The method is not a token.
    #[error("invalid method")]
    Method,
    /// The request target has bytes or a form we do not accept.
    #[error("invalid request target")]
    Target,
    /// The request target is longer than [`crate::h1::MAX_TARGET_LEN`].
    #[error("request target too long")]
    TargetTooLong,
    /// The version is not `HTTP/<digit>.<digit>`.
    #[error("invalid HTTP version")]
    Version,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    #[error("HTTP version not supported")]
    VersionNotSupported,
    /// The HTTP/2 connection preface on an HTTP/1 connection.
    #[error("HTTP/2 preface on an HTTP/1 connection")]
    Http2Preface,
    /// A header name with a byte that is not a token character; also whitespace before the
    /// colon, a missing colon and obs-fold (a line starting with whitespace).
    #[error("invalid header name")]
    HeaderName,
    /// A header value with NUL or another control byte.
    #[error("invalid header value")]
    HeaderValue,
    /// A line not ended by CRLF (bare LF or bare CR).
    #[error("invalid line ending")]
    NewLine,
    /// A response status line that is not `HTTP/1.x NNN`.
    #[error("invalid status line")]
    Status,
    /// More header lines than [`crate::h1::MAX_HEADERS`].
    #[error("too many header fields")]
    TooManyHeaders,
    /// The head is longer than [`crate::h1::MAX_HEAD_LEN`].
    #[error("message head too large")]
    HeadTooLarge,
    /// No Host on HTTP/1.1, more than one Host, or a Host value that is not `host[:port]`.
    #[error("invalid or missing Host")]
    Host,
    /// A Content-Length that is not a plain decimal number.
    #[error("invalid Content-Length")]
    ContentLength,
    /// Two Content-Length lines with different values.
    #[error("conflicting Content-Length")]
    ContentLengthConflict,
    /// A Content-Length above [`crate::h1::MAX_CONTENT_LENGTH`].
    #[error("Content-Length too large")]
    ContentLengthTooLarge,
    /// Transfer-Encoding and Content-Length in one message.
    #[error("Content-Length with Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// A Transfer-Encoding that is not the single coding `chunked`, or is malformed.
    #[error("invalid Transfer-Encoding")]
    TransferEncoding,
    /// A well-formed list of codings ending in `chunked` with other codings before it
    /// (`gzip, chunked`): we do not decode or forward transfer codings other than chunked.
    #[error("unsupported transfer coding")]
    TransferCodingUnsupported,
    /// Transfer-Encoding in an HTTP/1.0 message.
    #[error("Transfer-Encoding in HTTP/1.0")]
    TransferEncodingHttp10,
    /// CONNECT (and the authority-form target it uses): this proxy does not tunnel.
    #[error("CONNECT not supported")]
    ConnectUnsupported,
    /// A chunk-size line that is not 1 to 16 hex digits.
    #[error("invalid chunk size")]
    ChunkSize,
    /// A chunk extension with a control byte, or more than
    /// [`crate::h1::MAX_CHUNK_EXTENSIONS`] bytes of extensions in one body.
    #[error("invalid chunk extension")]
    ChunkExtension,
    /// Chunk data not followed by CRLF, or a bare LF/CR in the chunk framing.
    #[error("invalid chunk framing")]
    ChunkFraming,
    /// A trailer line that is not a valid field line, or a trailer section over its limits.
    #[error("invalid trailer section")]
    Trailer,
    /// The connection ended before the body did.
    #[error("incomplete body")]
    IncompleteBody,
}

impl Error {
    /// The status to answer a client with when its request fails this way.
    ///
    /// For an error found in a node's response the driver answers `502 Bad Gateway` to its
    /// client instead, whatever this returns.
    pub const fn status(self) -> u16 {
        match self {
            Error::Method
            | Error::Target
            | Error::Version
            | Error::HeaderName
            | Error::HeaderValue
            | Error::NewLine
            | Error::Status
            | Error::Host
            | Error::ContentLength
            | Error::ContentLengthConflict
            | Error::ContentLengthWithTransferEncoding
            | Error::TransferEncoding
            | Error::TransferEncodingHttp10
            | Error::ChunkSize
            | Error::ChunkExtension
            | Error::ChunkFraming
            | Error::Trailer
            | Error::IncompleteBody => 400,
            Error::ConnectUnsupported => 405,
            Error::ContentLengthTooLarge => 413,
            Error::TargetTooLong => 414,
            Error::TooManyHeaders | Error::HeadTooLarge => 431,
            Error::TransferCodingUnsupported => 501,
            Error::VersionNotSupported | Error::Http2Preface => 505,
        }
    }

    /// A short reason fit to show a client (static; never contains input).
    pub const fn reason(self) -> &'static str {
        match self {
            Error::Method => "invalid method",
            Error::Target => "invalid request target",
            Error::TargetTooLong => "request target too long",
            Error::Version => "invalid HTTP version",
            Error::VersionNotSupported => "HTTP version not supported",
            Error::Http2Preface => "HTTP/2 preface on an HTTP/1 connection",
            Error::HeaderName => "invalid header name",
            Error::HeaderValue => "invalid header value",
            Error::NewLine => "invalid line ending",
            Error::Status => "invalid status line",
            Error::TooManyHeaders => "too many header fields",
            Error::HeadTooLarge => "message head too large",
            Error::Host => "invalid or missing Host",
            Error::ContentLength => "invalid Content-Length",
            Error::ContentLengthConflict => "conflicting Content-Length",
            Error::ContentLengthTooLarge => "Content-Length too large",
            Error::ContentLengthWithTransferEncoding => "Content-Length with Transfer-Encoding",
            Error::TransferEncoding => "invalid Transfer-Encoding",
            Error::TransferCodingUnsupported => "unsupported transfer coding",
            Error::TransferEncodingHttp10 => "Transfer-Encoding in HTTP/1.0",
            Error::ConnectUnsupported => "CONNECT not supported",
            Error::ChunkSize => "invalid chunk size",
            Error::ChunkExtension => "invalid chunk extension",
            Error::ChunkFraming => "invalid chunk framing",
            Error::Trailer => "invalid trailer section",
            Error::IncompleteBody => "incomplete body",
        }
    }

    /// The `Allow` value to send with the `405` of [`Error::ConnectUnsupported`]
    /// (RFC 9110 §15.5.6 requires one).
    pub const ALLOW: &'static str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE";

    /// Maps an `httparse` error on a head to ours.
    pub(crate) fn from_httparse(e: httparse::Error) -> Error {
        match e {
            httparse::Error::HeaderName => Error::HeaderName,
            httparse::Error::HeaderValue => Error::HeaderValue,
            httparse::Error::NewLine => Error::NewLine,
            httparse::Error::Status => Error::Status,
            // httparse says Token for an invalid method or target; the request parser
            // decides which (it knows how far httparse got).
            httparse::Error::Token => Error::Target,
            httparse::Error::TooManyHeaders => Error::TooManyHeaders,
            httparse::Error::Version => Error::Version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, its status and its reason: adding a variant without a row fails
    /// `every_variant_has_a_row` (the count), changing a status fails the table.
    const TABLE: &[(Error, u16, &str)] = &[
        (Error::Method, 400, "invalid method"),
        (Error::Target, 400, "invalid request target"),
        (Error::TargetTooLong, 414, "request target too long"),
        (Error::Version, 400, "invalid HTTP version"),
        (
            Error::VersionNotSupported,
            505,
            "HTTP version not supported",
        ),
        (
            Error::Http2Preface,
            505,
            "HTTP/2 preface on an HTTP/1 connection",
        ),
        (Error::HeaderName, 400, "invalid header name"),
        (Error::HeaderValue, 400, "invalid header value"),
        (Error::NewLine, 400, "invalid line ending"),
        (Error::Status, 400, "invalid status line"),
        (Error::TooManyHeaders, 431, "too many header fields"),
        (Error::HeadTooLarge, 431, "message head too large"),
        (Error::Host, 400, "invalid or missing Host"),
        (Error::ContentLength, 400, "invalid Content-Length"),
        (
            Error::ContentLengthConflict,
            400,
            "conflicting Content-Length",
        ),
        (
            Error::ContentLengthTooLarge,
            413,
            "Content-Length too large",
        ),
        (
            Error::ContentLengthWithTransferEncoding,
            400,
            "Content-Length with Transfer-Encoding",
        ),
        (Error::TransferEncoding, 400, "invalid Transfer-Encoding"),
        (
            Error::TransferCodingUnsupported,
            501,
            "unsupported transfer coding",
        ),
        (
            Error::TransferEncodingHttp10,
            400,
            "Transfer-Encoding in HTTP/1.0",
        ),
        (Error::ConnectUnsupported, 405, "CONNECT not supported"),
        (Error::ChunkSize, 400, "invalid chunk size"),
        (Error::ChunkExtension, 400, "invalid chunk extension"),
        (Error::ChunkFraming, 400, "invalid chunk framing"),
        (Error::Trailer, 400, "invalid trailer section"),
        (Error::IncompleteBody, 400, "incomplete body"),
    ];

    #[test]
    fn status_and_reason_table() {
        for &(err, status, reason) in TABLE {
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(err.reason(), reason, "{err:?}");
            // Display is the same short text, so a log line never shows input either.
            assert_eq!(err.to_string(), reason, "{err:?}");
        }
    }

    #[test]
    fn every_variant_has_a_row() {
        // A new variant must be added to the table: the match below fails to compile
        // without it, and the count ties the match to the table.
        fn index(e: Error) -> usize {
            match e {
                Error::Method => 0,
                Error::Target => 1,
                Error::TargetTooLong => 2,
                Error::Version => 3,
                Error::VersionNotSupported => 4,
                Error::Http2Preface => 5,
                Error::HeaderName => 6,
                Error::HeaderValue => 7,
                Error::NewLine => 8,
                Error::Status => 9,
                Error::TooManyHeaders => 10,
                Error::HeadTooLarge => 11,
                Error::Host => 12,
                Error::ContentLength => 13,
                Error::ContentLengthConflict => 14,
                Error::ContentLengthTooLarge => 15,
                Error::ContentLengthWithTransferEncoding => 16,
                Error::TransferEncoding => 17,
                Error::TransferCodingUnsupported => 18,
                Error::TransferEncodingHttp10 => 19,
                Error::ConnectUnsupported => 20,
                Error::ChunkSize => 21,
                Error::ChunkExtension => 22,
                Error::ChunkFraming => 23,
                Error::Trailer => 24,
                Error::IncompleteBody => 25,
            }
        }
        for (i, &(err, _, _)) in TABLE.iter().enumerate() {
            assert_eq!(index(err), i, "table row {i} out of order");
        }
        assert_eq!(TABLE.len(), 26);
    }

    #[test]
    fn httparse_errors_map() {
        let cases = [
            (httparse::Error::HeaderName, Error::HeaderName),
            (httparse::Error::HeaderValue, Error::HeaderValue),
            (httparse::Error::NewLine, Error::NewLine),
            (httparse::Error::Status, Error::Status),
            (httparse::Error::Token, Error::Target),
            (httparse::Error::TooManyHeaders, Error::TooManyHeaders),
            (httparse::Error::Version, Error::Version),
        ];
        for (h, ours) in cases {
            assert_eq!(Error::from_httparse(h), ours);
        }
    }
}
