//! The HTTP/1.1 codec of the fast proxy path: parsing, validation, framing and head
//! writing, with no I/O. An async driver reads bytes into its own buffers and calls these
//! functions; nothing here allocates per request once the reusable heads and output buffers
//! have grown to their working size.
//!
//! It imports nothing from the rest of the crate and uses only `httparse`, `memchr`, `itoa`
//! and `thiserror`, so it can be fuzzed on its own (`fuzz/`).
//!
//! # Files
//!
//! - [`error`]: the one [`Error`] enum and its status mapping;
//! - [`header`]: [`Span`]s, [`Header`] lines and the names the codec knows ([`HeaderKind`]);
//! - [`framing`]: Content-Length and Transfer-Encoding rules, [`BodyFraming`];
//! - [`target`]: request-target forms and Host syntax;
//! - [`request`]: [`parse_request`] into a reusable [`RequestHead`];
//! - [`response`]: [`parse_response`] into a reusable [`ResponseHead`];
//! - `strict_head`: both heads in their strict form (the common case) read without httparse;
//! - [`chunked`]: the zero-copy [`ChunkedDecoder`] and chunk framing to write;
//! - [`body`]: [`BodyReader`], one decoder for every framing;
//! - [`write`]: [`write_request_head`], [`write_request_fields`] (a request given as fields),
//!   [`write_response_head`];
//! - [`values`]: `X-Forwarded-For` / `Forwarded` values without allocation.
//!
//! # How a driver uses it
//!
//! ```
//! use stickyroute::h1::*;
//!
//! // Per connection, reused across requests.
//! let mut req = RequestHead::new();
//! let mut res = ResponseHead::new();
//! let mut to_node: Vec<u8> = Vec::with_capacity(4096);
//! let mut to_client: Vec<u8> = Vec::with_capacity(4096);
//!
//! // 1. Bytes read from the client (here all at once).
//! let client_in = b"POST /app/cart HTTP/1.1\r\nHost: shop.example\r\nCookie: JSESSIONID=A.jvm1\r\n\
//!                   Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
//! let head_len = match parse_request(client_in, &mut req) {
//!     Ok(Parsed::Complete(n)) => n,
//!     Ok(Parsed::Partial) => unreachable!("read more, parse again"),
//!     Err(e) => panic!("answer {} {} and close", e.status(), e.reason()),
//! };
//! assert_eq!(req.path(client_in), b"/app/cart");
//! assert_eq!(req.host(client_in), Some(&b"shop.example"[..]));
//!
//! // 2. The request head for the node, with the caller's additions.
//! let extra: [(&[u8], &[u8]); 1] = [(b"X-Forwarded-For", b"192.0.2.7")];
//! let edits = RequestEdits { extra: &extra, skip: &[b"x-forwarded-for"], ..RequestEdits::default() };
//! write_request_head(client_in, &req, &edits, &mut to_node);
//!
//! // 3. The body: re-framed as chunks (a Length body would be copied as it comes).
//! let mut body = BodyReader::new(req.body());
//! let mut input = &client_in[head_len..];
//! loop {
//!     match body.decode(input).expect("400 and close") {
//!         Step::Data { start, end } => {
//!             write_chunk_header((end - start) as u64, &mut to_node);
//!             to_node.extend_from_slice(&input[start..end]);
//!             to_node.extend_from_slice(CHUNK_END);
//!             input = &input[end..];
//!         }
//!         Step::Trailer { end, .. } => input = &input[end..], // dropped: `Trailer` is stripped
//!         Step::NeedMore => break,                             // read more from the client
//!         Step::Done { consumed } => {
//!             to_node.extend_from_slice(LAST_CHUNK);
//!             input = &input[consumed..]; // a pipelined request may follow
//!             break;
//!         }
//!     }
//! }
//! assert!(body.is_done() && input.is_empty());
//! assert!(to_node.ends_with(b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
//!
//! // 4. The node's answer.
//! let node_in = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: JSESSIONID=A.jvm1\r\n\r\nok";
//! let res_len = match parse_response(node_in, req.method() == Method::Head, &mut res) {
//!     Ok(Parsed::Complete(n)) => n,
//!     Ok(Parsed::Partial) => unreachable!("read more"),
//!     Err(_) => panic!("answer 502 and close the node connection"),
//! };
//! let edits = ResponseEdits {
//!     client_version: req.version(),
//!     keep_alive: req.keep_alive(),
//!     ..ResponseEdits::default()
//! };
//! let out = write_response_head(node_in, &res, &edits, &mut to_client);
//! assert_eq!(out.body, BodyOut::Length(2));
//! // ...then copy the body with BodyReader::new(res.body()), framing it as `out.body` says.
//! # let _ = res_len;
//! ```

pub mod body;
pub mod chunked;
pub mod error;
pub mod framing;
pub mod header;
pub mod request;
pub mod response;
mod strict_head;
pub mod target;
pub mod values;
pub mod write;

#[cfg(test)]
mod differential;

pub use body::BodyReader;
pub use chunked::{
    write_chunk_header, ChunkHeader, ChunkedDecoder, Step, CHUNK_END, LAST_CHUNK, LAST_CHUNK_LINE,
    MAX_CHUNK_EXTENSIONS, MAX_CHUNK_SIZE_DIGITS, MAX_TRAILERS, MAX_TRAILER_BYTES,
};
pub use error::Error;
pub use framing::{parse_content_length, BodyFraming, MAX_CONTENT_LENGTH};
pub use header::{Header, HeaderKind, Span, MAX_HEADERS};
pub use request::{
    may_be_complete, parse_request, Method, Parsed, RequestHead, Version, MAX_HEAD_LEN,
    MAX_TARGET_LEN,
};
pub use response::{parse_response, ResponseHead};
pub use target::{is_valid_host, TargetForm};
pub use values::{push_forwarded_for, push_ip};
pub use write::{
    response_field_hop_by_hop, write_request_fields, write_request_head, write_response_head,
    BodyOut, FieldsRequest, RequestEdits, ResponseEdits, ResponseOut,
};
