//! The HTTP/2 client connection preface (RFC 9113 §3.4): read and checked by the listener
//! before a connection goes to `h2`, on h2c (prior knowledge) and on TLS connections that
//! chose `h2` by ALPN, and the answer to a wrong one: the server's preface (an empty
//! `SETTINGS` frame) and a `GOAWAY` with `PROTOCOL_ERROR`, then the connection closes.
//!
//! `h2`'s own check would close without a word. Once per connection, before the first frame:
//! nothing of it runs per request.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The client connection preface every HTTP/2 connection starts with.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The debug data of the `GOAWAY` sent for a wrong preface.
const REFUSAL_REASON: &[u8] = b"invalid connection preface";

/// How long the refusal may take to go out, and how long the client's remaining bytes are
/// read and dropped after it (so that closing with unread bytes does not reset the connection
/// before the client read the `GOAWAY`).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Most bytes read and dropped after the refusal.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;

/// What the bytes read so far say about the preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The whole preface is there.
    Complete,
    /// A correct beginning: more bytes are needed.
    Partial,
    /// Not the preface.
    Invalid,
}

/// Checks the first bytes of a connection (any bytes after the preface are frames, not
/// looked at).
pub fn check(read: &[u8]) -> Check {
    let n = read.len().min(PREFACE.len());
    if read[..n] != PREFACE[..n] {
        Check::Invalid
    } else if n == PREFACE.len() {
        Check::Complete
    } else {
        Check::Partial
    }
}

/// How reading the preface ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The preface is there: serve the connection, first replaying the bytes read.
    Valid,
    /// Not the preface: it was answered with [`refusal`] and the connection is done.
    Refused,
    /// The client closed, failed or stayed silent past the limit before a whole preface.
    Gone,
}

/// Reads from `io` until `read` (the bytes of the connection read so far, kept for replay)
/// holds the whole preface or shows it wrong, for at most `limit`. A wrong preface is
/// answered with [`refusal`]. Reads stop at the preface's end: whatever follows stays in `io`.
pub async fn read<S>(io: &mut S, read: &mut Vec<u8>, limit: Duration) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reading = async {
        loop {
            match check(read) {
                Check::Complete => return Some(true),
                Check::Invalid => return Some(false),
                Check::Partial => {}
            }
            let mut more = [0u8; PREFACE.len()];
            match io.read(&mut more[..PREFACE.len() - read.len()]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => read.extend_from_slice(&more[..n]),
            }
        }
    };
    match tokio::time::timeout(limit, reading).await {
        Ok(Some(true)) => Outcome::Valid,
        Ok(Some(false)) => {
            tracing::debug!("invalid HTTP/2 connection preface");
            refuse(io).await;
            Outcome::Refused
        }
        Ok(None) | Err(_) => Outcome::Gone,
    }
}

/// The server's answer to a wrong preface: an empty `SETTINGS` frame (the server preface) and
/// a `GOAWAY` for last stream 0 with `PROTOCOL_ERROR` and [`REFUSAL_REASON`].
pub fn refusal() -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + 9 + 8 + REFUSAL_REASON.len());
    frame_header(&mut out, 0, FRAME_SETTINGS);
    frame_header(&mut out, 8 + REFUSAL_REASON.len(), FRAME_GOAWAY);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&PROTOCOL_ERROR.to_be_bytes());
    out.extend_from_slice(REFUSAL_REASON);
    out
}

const FRAME_SETTINGS: u8 = 0x4;
const FRAME_GOAWAY: u8 = 0x7;
const PROTOCOL_ERROR: u32 = 0x1;

/// A frame header on stream 0 without flags: 24-bit length, type, flags, stream id.
fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, 0]);
    out.extend_from_slice(&0u32.to_be_bytes());
}

/// Writes the refusal, ends the sending side (a TLS session says `close_notify`), then reads
/// and drops what the client still sends until it closes, all within [`REFUSAL_LINGER`] each.
async fn refuse<S>(io: &mut S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let send = async {
        io.write_all(&refusal()).await?;
        io.flush().await?;
        io.shutdown().await
    };
    if !matches!(tokio::time::timeout(REFUSAL_LINGER, send).await, Ok(Ok(()))) {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut dropped = 0;
        while dropped < REFUSAL_DRAIN_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_bytes_read_so_far() {
        let cases: &[(&[u8], Check)] = &[
            (b"", Check::Partial),
            (b"P", Check::Partial),
            (b"PRI * HTTP/2.0\r\n\r\n", Check::Partial),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r", Check::Partial),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Check::Complete),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04",
                Check::Complete,
            ),
            (b"G", Check::Invalid),
            (b"GET / HTTP/1.1\r\n\r\n", Check::Invalid),
            (b"INVALID CONNECTION PREFACE\r\n\r\n", Check::Invalid),
            (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", Check::Invalid),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r", Check::Invalid),
            (b"pri * HTTP/2.0\r\n\r\nSM\r\n\r\n", Check::Invalid),
        ];
        for (read, want) in cases {
            assert_eq!(check(read), *want, "{:?}", String::from_utf8_lossy(read));
        }
    }

    #[test]
    fn the_refusal_is_an_empty_settings_then_a_protocol_error_goaway() {
        let r = refusal();
        assert_eq!(&r[..9], &[0, 0, 0, 0x4, 0, 0, 0, 0, 0], "SETTINGS, empty");
        let goaway = &r[9..];
        let len = 8 + REFUSAL_REASON.len();
        assert_eq!(&goaway[..3], &(len as u32).to_be_bytes()[1..]);
        assert_eq!(&goaway[3..9], &[0x7, 0, 0, 0, 0, 0], "GOAWAY on stream 0");
        assert_eq!(&goaway[9..13], &[0, 0, 0, 0], "last stream 0");
        assert_eq!(&goaway[13..17], &[0, 0, 0, 1], "PROTOCOL_ERROR");
        assert_eq!(&goaway[17..], REFUSAL_REASON);
        assert_eq!(goaway.len(), 9 + len);
    }

    /// Runs [`read`] on a duplex pipe whose client side sent `sent` and then `closed` or not;
    /// the outcome, the bytes kept and what the client received.
    async fn run(sent: &[u8], closed: bool) -> (Outcome, Vec<u8>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(sent).await.unwrap();
        if closed {
            client.shutdown().await.unwrap();
        }
        let mut kept = Vec::new();
        let outcome = read(&mut server, &mut kept, Duration::from_secs(5)).await;
        drop(server);
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got)).await;
        (outcome, kept, got)
    }

    #[tokio::test]
    async fn reads_exactly_the_preface_and_refuses_anything_else() {
        let mut good = PREFACE.to_vec();
        good.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let (outcome, kept, got) = run(&good, false).await;
        assert_eq!(outcome, Outcome::Valid);
        assert_eq!(kept, PREFACE, "reads stop at the preface's end");
        assert!(got.is_empty());

        let (outcome, kept, got) = run(b"INVALID CONNECTION PREFACE\r\n\r\n", true).await;
        assert_eq!(outcome, Outcome::Refused);
        assert!(kept.len() <= PREFACE.len());
        assert_eq!(got, refusal());

        let (outcome, _, got) = run(b"PRI * HTTP/2.0\r\n\r\n", true).await;
        assert_eq!(outcome, Outcome::Gone, "closed before a whole preface");
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn a_silent_client_is_given_up_after_the_limit() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let mut kept = b"PRI * ".to_vec();
        let outcome = read(&mut server, &mut kept, Duration::from_millis(50)).await;
        assert_eq!(outcome, Outcome::Gone);
    }
}
