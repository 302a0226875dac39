//! The numbers of AJP/1.3: packet magics and types, method codes, the coded request and
//! response header names and the request attribute codes, as the protocol reference
//! (`ajpv13a`) and Tomcat's connector define them.

/// The magic of a packet from the proxy to the container.
pub const MAGIC_TO_CONTAINER: [u8; 2] = [0x12, 0x34];
/// The magic of a packet from the container to the proxy (`'A' 'B'`).
pub const MAGIC_FROM_CONTAINER: [u8; 2] = *b"AB";
/// Magic and length: the bytes before every packet's payload.
pub const HEADER_LEN: usize = 4;

/// The smallest and default packet size (Tomcat's `packetSize` default, mod_jk's
/// `max_packet_size` default).
pub const DEFAULT_PACKET_SIZE: usize = 8192;
/// The largest packet size Tomcat and mod_jk accept.
pub const MAX_PACKET_SIZE: usize = 65536;

/// Packet types from the proxy to the container.
pub const FORWARD_REQUEST: u8 = 2;
pub const CPING: u8 = 10;

/// Packet types from the container to the proxy.
pub const SEND_BODY_CHUNK: u8 = 3;
pub const SEND_HEADERS: u8 = 4;
pub const END_RESPONSE: u8 = 5;
pub const GET_BODY_CHUNK: u8 = 6;
pub const CPONG: u8 = 9;

/// The method code that says "the method is in the `stored_method` attribute".
pub const METHOD_STORED: u8 = 0xFF;

/// The methods with a code, in code order starting at 1.
pub const METHODS: [&str; 27] = [
    "OPTIONS",
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "TRACE",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "ACL",
    "REPORT",
    "VERSION-CONTROL",
    "CHECKIN",
    "CHECKOUT",
    "UNCHECKOUT",
    "SEARCH",
    "MKWORKSPACE",
    "UPDATE",
    "LABEL",
    "MERGE",
    "BASELINE-CONTROL",
    "MKACTIVITY",
];

/// The request header names with a code (`0xA001` on), lower case, in code order.
pub const REQUEST_HEADERS: [&str; 14] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "authorization",
    "connection",
    "content-type",
    "content-length",
    "cookie",
    "cookie2",
    "host",
    "pragma",
    "referer",
    "user-agent",
];

/// The response header names with a code (`0xA001` on), in code order.
pub const RESPONSE_HEADERS: [&str; 11] = [
    "Content-Type",
    "Content-Language",
    "Content-Length",
    "Date",
    "Last-Modified",
    "Location",
    "Set-Cookie",
    "Set-Cookie2",
    "Servlet-Engine",
    "Status",
    "WWW-Authenticate",
];

/// The high byte that marks a coded header name (a string name starts with its length).
pub const CODED_HEADER: u8 = 0xA0;

/// Request attribute codes.
pub const ATTR_REMOTE_USER: u8 = 0x03;
pub const ATTR_AUTH_TYPE: u8 = 0x04;
pub const ATTR_QUERY_STRING: u8 = 0x05;
pub const ATTR_JVM_ROUTE: u8 = 0x06;
pub const ATTR_SSL_CERT: u8 = 0x07;
pub const ATTR_SSL_CIPHER: u8 = 0x08;
pub const ATTR_SSL_SESSION: u8 = 0x09;
/// A named attribute: name and value strings follow.
pub const ATTR_REQ_ATTRIBUTE: u8 = 0x0A;
/// The key size is an integer, not a string.
pub const ATTR_SSL_KEY_SIZE: u8 = 0x0B;
pub const ATTR_SECRET: u8 = 0x0C;
pub const ATTR_STORED_METHOD: u8 = 0x0D;
pub const ATTR_ARE_DONE: u8 = 0xFF;

/// The `req_attribute` names Tomcat reads as the client's port and the TLS protocol.
pub const REQ_ATTR_REMOTE_PORT: &str = "AJP_REMOTE_PORT";
pub const REQ_ATTR_SSL_PROTOCOL: &str = "AJP_SSL_PROTOCOL";

/// The code of a method (1-based), if it has one.
pub fn method_code(method: &[u8]) -> Option<u8> {
    METHODS
        .iter()
        .position(|m| m.as_bytes() == method)
        .and_then(|i| u8::try_from(i + 1).ok())
}

/// The method a code stands for.
pub fn method_name(code: u8) -> Option<&'static str> {
    METHODS.get(usize::from(code).checked_sub(1)?).copied()
}

/// The two-byte code of a request header name (case-insensitive), if it has one.
pub fn request_header_code(name: &[u8]) -> Option<u16> {
    REQUEST_HEADERS
        .iter()
        .position(|h| h.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 0xA001 + i as u16)
}

/// The request header name a code stands for.
pub fn request_header_name(code: u16) -> Option<&'static str> {
    coded_index(code).and_then(|i| REQUEST_HEADERS.get(i).copied())
}

/// The two-byte code of a response header name (case-insensitive), if it has one.
pub fn response_header_code(name: &[u8]) -> Option<u16> {
    RESPONSE_HEADERS
        .iter()
        .position(|h| h.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 0xA001 + i as u16)
}

/// The response header name a code stands for.
pub fn response_header_name(code: u16) -> Option<&'static str> {
    coded_index(code).and_then(|i| RESPONSE_HEADERS.get(i).copied())
}

fn coded_index(code: u16) -> Option<usize> {
    if code >> 8 != u16::from(CODED_HEADER) {
        return None;
    }
    usize::from(code & 0xFF).checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_codes() {
        let table: &[(&[u8], Option<u8>)] = &[
            (b"OPTIONS", Some(1)),
            (b"GET", Some(2)),
            (b"HEAD", Some(3)),
            (b"POST", Some(4)),
            (b"PUT", Some(5)),
            (b"DELETE", Some(6)),
            (b"TRACE", Some(7)),
            (b"PROPFIND", Some(8)),
            (b"SEARCH", Some(21)),
            (b"BASELINE-CONTROL", Some(26)),
            (b"MKACTIVITY", Some(27)),
            (b"PATCH", None),
            (b"get", None),
            (b"", None),
        ];
        for &(m, code) in table {
            assert_eq!(method_code(m), code, "{}", String::from_utf8_lossy(m));
            if let Some(c) = code {
                assert_eq!(method_name(c).map(str::as_bytes), Some(m));
            }
        }
        assert_eq!(method_name(0), None);
        assert_eq!(method_name(28), None);
        assert_eq!(method_name(METHOD_STORED), None);
    }

    #[test]
    fn header_codes() {
        let request: &[(&[u8], Option<u16>)] = &[
            (b"Accept", Some(0xA001)),
            (b"content-type", Some(0xA007)),
            (b"Content-Length", Some(0xA008)),
            (b"COOKIE", Some(0xA009)),
            (b"Host", Some(0xA00B)),
            (b"User-Agent", Some(0xA00E)),
            (b"X-Forwarded-For", None),
            (b"Set-Cookie", None),
        ];
        for &(name, code) in request {
            assert_eq!(request_header_code(name), code);
        }
        let response: &[(u16, Option<&str>)] = &[
            (0xA001, Some("Content-Type")),
            (0xA003, Some("Content-Length")),
            (0xA006, Some("Location")),
            (0xA007, Some("Set-Cookie")),
            (0xA00B, Some("WWW-Authenticate")),
            (0xA00C, None),
            (0xA000, None),
            (0xB001, None),
        ];
        for &(code, name) in response {
            assert_eq!(response_header_name(code), name, "{code:#x}");
            if let Some(n) = name {
                assert_eq!(response_header_code(n.as_bytes()), Some(code));
            }
        }
        assert_eq!(request_header_name(0xA00E), Some("user-agent"));
        assert_eq!(request_header_name(0xA00F), None);
    }
}
