//! Packets from the container to the proxy: Send Headers, Send Body Chunk, Get Body Chunk,
//! End Response and CPong.
//!
//! [`parse_packet`] is incremental: given the bytes read so far it answers "need more"
//! (`Ok(None)`) or one packet and the bytes it used. Anything malformed — a wrong magic, a
//! length of zero or past the packet size, an unknown type, a field past the packet's end, a
//! header that could split an HTTP/1 response — is an [`Error`], never a panic.
//!
//! The `write_*` functions build the same packets on the container's side, for the test
//! fixtures' AJP node and the round-trip tests.

use super::codes::{self, MAGIC_FROM_CONTAINER};
use super::error::Error;
use super::wire::{
    finish_packet, is_token, put_int, put_string, split_packet, start_packet, Reader,
};

/// The response head of a Send Headers packet. Names and values borrow the read buffer (a
/// coded name is its static spelling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendHeaders<'a> {
    pub status: u16,
    /// The reason phrase (Tomcat sends the status digits); empty for a null string.
    pub message: &'a [u8],
    pub headers: Vec<(&'a [u8], &'a [u8])>,
}

impl SendHeaders<'_> {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, v)| v)
    }
}

/// One packet from the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    SendHeaders(SendHeaders<'a>),
    /// Response body bytes (Tomcat's flush is an empty chunk).
    SendBodyChunk(&'a [u8]),
    /// The container asks for at most this many more request body bytes.
    GetBodyChunk(u16),
    /// The response is complete; `reuse`: the connection may carry another request.
    EndResponse {
        reuse: bool,
    },
    CPong,
}

/// Reads one packet from the front of `buf`: `Ok(None)` until a whole packet is there, then
/// the packet and the number of bytes it used. `packet_size` is the connector's: a length
/// past it is an error as soon as the four header bytes are in.
pub fn parse_packet(buf: &[u8], packet_size: usize) -> Result<Option<(Packet<'_>, usize)>, Error> {
    let Some((payload, used)) = split_packet(buf, MAGIC_FROM_CONTAINER, packet_size, false)? else {
        return Ok(None);
    };
    let mut r = Reader::new(payload);
    let packet = match r.byte()? {
        codes::SEND_HEADERS => Packet::SendHeaders(parse_send_headers(&mut r)?),
        codes::SEND_BODY_CHUNK => {
            let n = r.int()?;
            let data = r.bytes(usize::from(n))?;
            // Tomcat ends the chunk with a NUL; other containers may not.
            if r.rest().len() > 1 {
                return Err(Error::Length);
            }
            Packet::SendBodyChunk(data)
        }
        codes::GET_BODY_CHUNK => Packet::GetBodyChunk(r.int()?),
        codes::END_RESPONSE => Packet::EndResponse {
            reuse: r.byte()? == 1,
        },
        codes::CPONG => Packet::CPong,
        _ => return Err(Error::UnknownType),
    };
    Ok(Some((packet, used)))
}

fn parse_send_headers<'a>(r: &mut Reader<'a>) -> Result<SendHeaders<'a>, Error> {
    let status = r.int()?;
    if !(100..=999).contains(&status) {
        return Err(Error::Status);
    }
    let message = r.string()?.unwrap_or_default();
    if !is_field_value(message) {
        return Err(Error::HeaderValue);
    }
    let count = r.int()?;
    // Each header takes at least four bytes, so a count past that is a lie: refuse it
    // before reserving for it.
    if usize::from(count) > r.rest().len() / 4 {
        return Err(Error::Truncated);
    }
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name: &'a [u8] = if r.peek_int()? >> 8 == u16::from(codes::CODED_HEADER) {
            let code = r.int()?;
            codes::response_header_name(code)
                .ok_or(Error::HeaderName)?
                .as_bytes()
        } else {
            let n = r.string()?.ok_or(Error::HeaderName)?;
            if !is_token(n) {
                return Err(Error::HeaderName);
            }
            n
        };
        let value = r.string()?.unwrap_or_default();
        if !is_field_value(value) {
            return Err(Error::HeaderValue);
        }
        headers.push((name, value));
    }
    Ok(SendHeaders {
        status,
        message,
        headers,
    })
}

/// A header value or reason phrase that can go into an HTTP/1 head as it is: no control
/// bytes other than HTAB.
fn is_field_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7F))
}

/// Appends a Send Headers packet (container side). Coded names are sent as codes.
pub fn write_send_headers(
    status: u16,
    message: &[u8],
    headers: &[(&[u8], &[u8])],
    packet_size: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let start = start_packet(out, MAGIC_FROM_CONTAINER);
    let res = (|| {
        out.push(codes::SEND_HEADERS);
        put_int(out, status);
        put_string(out, message)?;
        put_int(
            out,
            u16::try_from(headers.len()).map_err(|_| Error::TooLarge)?,
        );
        for &(name, value) in headers {
            match codes::response_header_code(name) {
                Some(code) => put_int(out, code),
                None => put_string(out, name)?,
            }
            put_string(out, value)?;
        }
        Ok(())
    })();
    match res {
        Ok(()) => finish_packet(out, start, packet_size),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Appends a Send Body Chunk packet with Tomcat's trailing NUL (container side).
pub fn write_send_body_chunk(
    data: &[u8],
    packet_size: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let n = u16::try_from(data.len()).map_err(|_| Error::TooLarge)?;
    let start = start_packet(out, MAGIC_FROM_CONTAINER);
    out.push(codes::SEND_BODY_CHUNK);
    put_int(out, n);
    out.extend_from_slice(data);
    out.push(0);
    finish_packet(out, start, packet_size)
}

/// Appends a Get Body Chunk packet asking for `len` bytes (container side).
pub fn write_get_body_chunk(len: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC_FROM_CONTAINER);
    out.extend_from_slice(&[0x00, 0x03, codes::GET_BODY_CHUNK]);
    put_int(out, len);
}

/// Appends an End Response packet (container side).
pub fn write_end_response(reuse: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC_FROM_CONTAINER);
    out.extend_from_slice(&[0x00, 0x02, codes::END_RESPONSE, u8::from(reuse)]);
}

/// The CPong packet.
pub const CPONG_PACKET: [u8; 5] = [b'A', b'B', 0x00, 0x01, codes::CPONG];
