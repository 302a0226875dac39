//! Packets from the proxy to the container: Forward Request, request body chunks and CPing.
//!
//! [`write_forward_request`] encodes a request head with AJP's coded method and header
//! names, and the attributes Tomcat reads: query string, secret, the client's port
//! (`AJP_REMOTE_PORT`) and the TLS attributes (cipher, session id, key size,
//! `AJP_SSL_PROTOCOL`, the client certificate). [`write_body_chunk`] frames at most
//! [`max_body_chunk`] bytes of request body; an empty chunk ends a body.
//!
//! [`parse_forward_request`] and [`parse_body_chunk`] read the same packets on the
//! container's side; the test fixtures' AJP node and the round-trip tests use them.

use super::codes::{self, HEADER_LEN, MAGIC_TO_CONTAINER};
use super::error::Error;
use super::wire::{
    finish_packet, is_token, put_int, put_string, split_packet, start_packet, Reader,
};

/// The TLS attributes of a client that came over TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsAttributes<'a> {
    /// The cipher suite's name.
    pub cipher: Option<&'a [u8]>,
    /// The session id, hex.
    pub session_id: Option<&'a [u8]>,
    /// The cipher's key size in bits.
    pub key_size: Option<u16>,
    /// The protocol version (`TLSv1.3`).
    pub protocol: Option<&'a [u8]>,
    /// The client's certificate chain, PEM.
    pub client_cert: Option<&'a [u8]>,
}

/// One request head, borrowed from the driver's buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardRequest<'a> {
    pub method: &'a [u8],
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: &'a [u8],
    /// The path, without the query.
    pub uri: &'a [u8],
    /// The query, without `?`.
    pub query: Option<&'a [u8]>,
    pub remote_addr: &'a [u8],
    pub remote_host: &'a [u8],
    pub remote_port: Option<u16>,
    pub server_name: &'a [u8],
    pub server_port: u16,
    pub is_ssl: bool,
    /// Header lines in order; names the protocol codes are sent as codes.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    pub secret: Option<&'a [u8]>,
    pub tls: Option<TlsAttributes<'a>>,
}

/// The most request body bytes one chunk may carry with this packet size.
pub fn max_body_chunk(packet_size: usize) -> usize {
    packet_size - HEADER_LEN - 2
}

/// Appends the Forward Request packet for `req`. [`Error::TooLarge`] when it does not fit
/// in `packet_size` bytes (nothing is appended then); [`Error::Method`] for a method that
/// is not a token.
pub fn write_forward_request(
    req: &ForwardRequest<'_>,
    packet_size: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if !is_token(req.method) {
        return Err(Error::Method);
    }
    let start = start_packet(out, MAGIC_TO_CONTAINER);
    let body = encode_forward_request(req, out);
    match body {
        Ok(()) => finish_packet(out, start, packet_size),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn encode_forward_request(req: &ForwardRequest<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
    out.push(codes::FORWARD_REQUEST);
    let method = codes::method_code(req.method);
    out.push(method.unwrap_or(codes::METHOD_STORED));
    put_string(out, req.protocol)?;
    put_string(out, req.uri)?;
    put_string(out, req.remote_addr)?;
    put_string(out, req.remote_host)?;
    put_string(out, req.server_name)?;
    put_int(out, req.server_port);
    out.push(u8::from(req.is_ssl));
    put_int(
        out,
        u16::try_from(req.headers.len()).map_err(|_| Error::TooLarge)?,
    );
    for &(name, value) in req.headers {
        match codes::request_header_code(name) {
            Some(code) => put_int(out, code),
            None => put_string(out, name)?,
        }
        put_string(out, value)?;
    }
    if let Some(q) = req.query {
        out.push(codes::ATTR_QUERY_STRING);
        put_string(out, q)?;
    }
    if let Some(tls) = &req.tls {
        encode_tls(tls, out)?;
    }
    if let Some(port) = req.remote_port {
        let mut digits = itoa::Buffer::new();
        put_req_attribute(
            out,
            codes::REQ_ATTR_REMOTE_PORT,
            digits.format(port).as_bytes(),
        )?;
    }
    if let Some(secret) = req.secret {
        out.push(codes::ATTR_SECRET);
        put_string(out, secret)?;
    }
    if method.is_none() {
        out.push(codes::ATTR_STORED_METHOD);
        put_string(out, req.method)?;
    }
    out.push(codes::ATTR_ARE_DONE);
    Ok(())
}

fn encode_tls(tls: &TlsAttributes<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
    let strings = [
        (codes::ATTR_SSL_CERT, tls.client_cert),
        (codes::ATTR_SSL_CIPHER, tls.cipher),
        (codes::ATTR_SSL_SESSION, tls.session_id),
    ];
    for (code, value) in strings {
        if let Some(v) = value {
            out.push(code);
            put_string(out, v)?;
        }
    }
    if let Some(bits) = tls.key_size {
        out.push(codes::ATTR_SSL_KEY_SIZE);
        put_int(out, bits);
    }
    if let Some(p) = tls.protocol {
        put_req_attribute(out, codes::REQ_ATTR_SSL_PROTOCOL, p)?;
    }
    Ok(())
}

fn put_req_attribute(out: &mut Vec<u8>, name: &str, value: &[u8]) -> Result<(), Error> {
    out.push(codes::ATTR_REQ_ATTRIBUTE);
    put_string(out, name.as_bytes())?;
    put_string(out, value)
}

/// Appends a request body packet carrying `data`; empty `data` is the empty packet that
/// ends a body (`12 34 00 00`). [`Error::TooLarge`] past [`max_body_chunk`].
pub fn write_body_chunk(data: &[u8], packet_size: usize, out: &mut Vec<u8>) -> Result<(), Error> {
    if data.len() > max_body_chunk(packet_size) {
        return Err(Error::TooLarge);
    }
    let start = start_packet(out, MAGIC_TO_CONTAINER);
    if !data.is_empty() {
        put_int(out, data.len() as u16);
        out.extend_from_slice(data);
    }
    finish_packet(out, start, packet_size)
}

/// The CPing packet.
pub const CPING_PACKET: [u8; 5] = [0x12, 0x34, 0x00, 0x01, codes::CPING];

/// A request as the container reads it: owned, for fixtures and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedRequest {
    pub method: String,
    pub protocol: Vec<u8>,
    pub uri: Vec<u8>,
    pub remote_addr: Vec<u8>,
    pub remote_host: Vec<u8>,
    pub server_name: Vec<u8>,
    pub server_port: u16,
    pub is_ssl: bool,
    /// Header names as sent (a coded name in its lower-case spelling).
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub query: Option<Vec<u8>>,
    pub secret: Option<Vec<u8>>,
    pub ssl_cert: Option<Vec<u8>>,
    pub ssl_cipher: Option<Vec<u8>>,
    pub ssl_session: Option<Vec<u8>>,
    pub ssl_key_size: Option<u16>,
    /// `req_attribute` pairs (`AJP_REMOTE_PORT`, `AJP_SSL_PROTOCOL`, …).
    pub attributes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ReceivedRequest {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }

    /// A `req_attribute`'s value.
    pub fn attribute(&self, name: &str) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
}

/// A packet the container reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToContainer<'a> {
    ForwardRequest(Box<ReceivedRequest>),
    CPing,
    /// A body chunk (empty: the end of the body, or "no more" after a Get Body Chunk).
    Body(&'a [u8]),
}

/// Reads one packet from the proxy: `Ok(None)` when `buf` does not hold a whole packet yet,
/// else the packet and the bytes it used. A packet whose payload starts with a body length
/// is a body chunk, so call with `expect_body` while a body is being read (the protocol does
/// not tag body packets).
pub fn parse_to_container(
    buf: &[u8],
    packet_size: usize,
    expect_body: bool,
) -> Result<Option<(ToContainer<'_>, usize)>, Error> {
    let Some((payload, used)) = split_packet(buf, MAGIC_TO_CONTAINER, packet_size, true)? else {
        return Ok(None);
    };
    if expect_body {
        return Ok(Some((ToContainer::Body(parse_body_chunk(payload)?), used)));
    }
    let mut r = Reader::new(payload);
    let packet = match r.byte()? {
        codes::FORWARD_REQUEST => {
            ToContainer::ForwardRequest(Box::new(parse_forward_request(&mut r)?))
        }
        codes::CPING => ToContainer::CPing,
        _ => return Err(Error::UnknownType),
    };
    Ok(Some((packet, used)))
}

/// The data of a body packet's payload (empty payload: the empty chunk).
pub fn parse_body_chunk(payload: &[u8]) -> Result<&[u8], Error> {
    if payload.is_empty() {
        return Ok(&[]);
    }
    let mut r = Reader::new(payload);
    let n = r.int()?;
    r.bytes(usize::from(n))
}

fn parse_forward_request(r: &mut Reader<'_>) -> Result<ReceivedRequest, Error> {
    let code = r.byte()?;
    let mut req = ReceivedRequest {
        method: match code {
            codes::METHOD_STORED => String::new(),
            c => codes::method_name(c).ok_or(Error::Method)?.to_string(),
        },
        protocol: owned(r.string()?),
        uri: owned(r.string()?),
        remote_addr: owned(r.string()?),
        remote_host: owned(r.string()?),
        server_name: owned(r.string()?),
        server_port: r.int()?,
        is_ssl: r.boolean()?,
        ..ReceivedRequest::default()
    };
    let count = r.int()?;
    for _ in 0..count {
        let name = if r.peek_int()? >> 8 == u16::from(codes::CODED_HEADER) {
            let code = r.int()?;
            codes::request_header_name(code)
                .ok_or(Error::HeaderName)?
                .as_bytes()
                .to_vec()
        } else {
            owned(r.string()?)
        };
        req.headers.push((name, owned(r.string()?)));
    }
    parse_attributes(r, &mut req)?;
    if code == codes::METHOD_STORED && req.method.is_empty() {
        return Err(Error::Method);
    }
    Ok(req)
}

fn parse_attributes(r: &mut Reader<'_>, req: &mut ReceivedRequest) -> Result<(), Error> {
    loop {
        let attr = r.byte()?;
        match attr {
            codes::ATTR_ARE_DONE => return Ok(()),
            codes::ATTR_QUERY_STRING => req.query = r.string()?.map(<[u8]>::to_vec),
            codes::ATTR_SECRET => req.secret = r.string()?.map(<[u8]>::to_vec),
            codes::ATTR_SSL_CERT => req.ssl_cert = r.string()?.map(<[u8]>::to_vec),
            codes::ATTR_SSL_CIPHER => req.ssl_cipher = r.string()?.map(<[u8]>::to_vec),
            codes::ATTR_SSL_SESSION => req.ssl_session = r.string()?.map(<[u8]>::to_vec),
            codes::ATTR_SSL_KEY_SIZE => req.ssl_key_size = Some(r.int()?),
            codes::ATTR_STORED_METHOD => {
                let m = r.string()?.ok_or(Error::Method)?;
                req.method = String::from_utf8(m.to_vec()).map_err(|_| Error::Method)?;
            }
            codes::ATTR_REQ_ATTRIBUTE => {
                let name = owned(r.string()?);
                let value = owned(r.string()?);
                req.attributes.push((name, value));
            }
            codes::ATTR_REMOTE_USER | codes::ATTR_AUTH_TYPE | codes::ATTR_JVM_ROUTE | 1 | 2 => {
                r.string()?;
            }
            _ => return Err(Error::UnknownType),
        }
    }
}

fn owned(s: Option<&[u8]>) -> Vec<u8> {
    s.unwrap_or_default().to_vec()
}
