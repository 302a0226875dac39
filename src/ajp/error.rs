//! The one error type of the AJP codec.
//!
//! Every way a packet from a container can be refused, and the one way a request can fail to
//! encode (it does not fit the packet size), is a variant here. The texts are static: a
//! container's bytes are never echoed into logs or responses.

/// Why a packet was refused, or a request could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The packet does not start with the magic of its direction.
    #[error("wrong AJP packet magic")]
    Magic,
    /// The packet length is zero or past the packet size.
    #[error("AJP packet length out of range")]
    Length,
    /// A packet type that does not belong in this direction.
    #[error("unknown AJP packet type")]
    UnknownType,
    /// A field runs past the end of its packet.
    #[error("truncated AJP packet")]
    Truncated,
    /// A string without its NUL terminator.
    #[error("AJP string not terminated")]
    StringTerminator,
    /// A response status outside 100..=999.
    #[error("invalid AJP response status")]
    Status,
    /// A header name that is not a token, or a header code AJP does not define.
    #[error("invalid AJP header name")]
    HeaderName,
    /// A header value or status message with CR, LF, NUL or another control byte.
    #[error("invalid AJP header value")]
    HeaderValue,
    /// A method that is not a token, or an unknown method code.
    #[error("invalid AJP method")]
    Method,
    /// A request head that does not fit in one packet of the configured size.
    #[error("request head too large for the AJP packet size")]
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn texts_are_static_and_distinct() {
        let all = [
            Error::Magic,
            Error::Length,
            Error::UnknownType,
            Error::Truncated,
            Error::StringTerminator,
            Error::Status,
            Error::HeaderName,
            Error::HeaderValue,
            Error::Method,
            Error::TooLarge,
        ];
        let texts: std::collections::HashSet<String> = all.iter().map(|e| e.to_string()).collect();
        assert_eq!(texts.len(), all.len());
        assert!(texts.iter().all(|t| t.contains("AJP")));
    }
}
