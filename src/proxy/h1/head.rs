//! A request's head off the client connection ([`read_head`]), within
//! `header_read_timeout` of its first bytes.

use std::time::Instant;

use tokio::io::AsyncReadExt;

use crate::config::ListenerConfig;
use crate::h1::{self, Parsed, RequestHead};
use crate::proxy::buffers::BUF_SIZE;
use crate::proxy::client_io::ClientIo;
use crate::proxy::deadline;

/// How reading a request head ended.
pub(super) enum HeadRead {
    Complete,
    Closed,
    Http2,
    Bad(u16, &'static str),
}

/// Reads until `buf` holds a complete request head, within `header_read_timeout` of the
/// first moment a read of this head had to wait (a head that arrives whole, the common case,
/// reads no clock).
pub(super) async fn read_head(
    client: &mut ClientIo,
    buf: &mut Vec<u8>,
    head: &mut RequestHead,
    cfg: &ListenerConfig,
) -> HeadRead {
    let mut deadline: Option<Instant> = None;
    // `None` until a parse found the head partial: a head that arrives whole (the common
    // case) is parsed at once; one that arrives in pieces is parsed again only when the new
    // bytes may complete it.
    let mut scanned: Option<usize> = None;
    loop {
        if !buf.is_empty() && scanned.is_none_or(|s| h1::may_be_complete(buf, s)) {
            match h1::parse_request(buf, head) {
                Ok(Parsed::Complete(n)) if n > cfg.max_header_bytes => {
                    return HeadRead::Bad(431, "request header fields too large")
                }
                Ok(Parsed::Complete(_)) => return HeadRead::Complete,
                Ok(Parsed::Partial) => {}
                Err(h1::Error::Http2Preface) if cfg.protocols.h2 => return HeadRead::Http2,
                Err(e) => return HeadRead::Bad(e.status(), e.reason()),
            }
        }
        if buf.len() >= cfg.max_header_bytes {
            return HeadRead::Bad(431, "request header fields too large");
        }
        if !buf.is_empty() {
            scanned = Some(buf.len());
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(BUF_SIZE);
        }
        let limit = cfg.header_read_timeout;
        match deadline::timeout_pending_from(&mut deadline, limit, client.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return HeadRead::Closed,
            Ok(Ok(_)) => {}
            Err(_) if buf.is_empty() => return HeadRead::Closed,
            Err(_) => return HeadRead::Bad(408, "request head not received in time"),
        }
    }
}
