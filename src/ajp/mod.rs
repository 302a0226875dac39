//! The AJP/1.3 codec ("The Apache Tomcat Connector – AJP Protocol Reference", `ajpv13a`),
//! with no I/O: an async driver writes the packets built here to a container's AJP
//! connector and hands the bytes it reads to [`parse_packet`].
//!
//! Like [`crate::h1`] it imports nothing from the rest of the crate (only `itoa` and
//! `thiserror`), so it is fuzzed on its own (`fuzz/`, target `ajp_response`).
//!
//! # Files
//!
//! - [`codes`]: magics, packet types, method codes, coded header names, attribute codes;
//! - [`wire`]: the four data types (byte, boolean, integer, string) and packet framing;
//! - [`request`]: Forward Request, body chunks and CPing ([`write_forward_request`],
//!   [`write_body_chunk`], [`CPING_PACKET`]), and their reading on the container's side;
//! - [`response`]: [`parse_packet`] for Send Headers, Send Body Chunk, Get Body Chunk,
//!   End Response and CPong, and their writing on the container's side;
//! - [`error`]: the one [`Error`] enum.
//!
//! # One exchange
//!
//! ```
//! use stickyroute::ajp::*;
//!
//! let headers: [(&[u8], &[u8]); 2] = [(b"Host", b"shop.example"), (b"Content-Length", b"5")];
//! let req = ForwardRequest {
//!     method: b"POST", protocol: b"HTTP/1.1", uri: b"/cart", query: Some(b"id=7"),
//!     remote_addr: b"192.0.2.7", remote_host: b"192.0.2.7", remote_port: Some(50123),
//!     server_name: b"shop.example", server_port: 443, is_ssl: true, headers: &headers,
//!     secret: Some(b"s3cret"), tls: None,
//! };
//! let mut to_node = Vec::new();
//! write_forward_request(&req, DEFAULT_PACKET_SIZE, &mut to_node).unwrap();
//! // A body with a Content-Length: its first chunk goes out unsolicited.
//! write_body_chunk(b"hello", DEFAULT_PACKET_SIZE, &mut to_node).unwrap();
//!
//! // The container's answer, read as it arrives.
//! let mut from_node = Vec::new();
//! write_send_headers(200, b"200", &[(b"Content-Length", b"2")], DEFAULT_PACKET_SIZE, &mut from_node).unwrap();
//! write_send_body_chunk(b"ok", DEFAULT_PACKET_SIZE, &mut from_node).unwrap();
//! write_end_response(true, &mut from_node);
//! let mut input = &from_node[..];
//! let mut seen = Vec::new();
//! while let Some((packet, used)) = parse_packet(input, DEFAULT_PACKET_SIZE).unwrap() {
//!     seen.push(format!("{packet:?}"));
//!     input = &input[used..];
//! }
//! assert_eq!(seen.len(), 3);
//! assert!(input.is_empty());
//! ```

pub mod codes;
pub mod error;
pub mod request;
pub mod response;
pub mod wire;

#[cfg(test)]
mod tests;

pub use codes::{DEFAULT_PACKET_SIZE, MAX_PACKET_SIZE};
pub use error::Error;
pub use request::{
    max_body_chunk, parse_body_chunk, parse_to_container, write_body_chunk, write_forward_request,
    ForwardRequest, ReceivedRequest, TlsAttributes, ToContainer, CPING_PACKET,
};
pub use response::{
    parse_packet, write_end_response, write_get_body_chunk, write_send_body_chunk,
    write_send_headers, Packet, SendHeaders, CPONG_PACKET,
};
