//! A long response body moved from the node's socket to a cleartext client's socket through a
//! pipe with `splice(2)`: the kernel passes the node's pages on to the client's socket and the
//! body never crosses into user space, which saves a copy in and a copy out of every byte (what
//! HAProxy's `option splice-auto` does). Only where the bytes pass unchanged: a plain TCP
//! client, a `Content-Length` body, nothing to re-frame. Everything else is copied through a
//! buffer by the relay.
//!
//! Each worker thread keeps a few pipes for reuse. A pipe is reused only when empty: after a
//! failure that left bytes in it, it is closed.
//!
//! The system calls are rustix's safe wrappers; the loop is ours because it must wait on
//! tokio's readiness of the two sockets (`TcpStream::try_io`) with the relay's idle limits.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::{tcp, TcpStream};

use crate::proxy::client_io::{ClientIo, ClientWrite};
use crate::proxy::deadline;

/// The most a pipe holds by default (16 pages): the most one splice from the node moves.
const PIPE_BYTES: usize = 64 * 1024;
/// Pipes a thread keeps for reuse.
const POOLED_PIPES: usize = 32;

/// How a body's relay ended early, and whose fault it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFault {
    /// The client stopped taking the response (closed, reset, or no write for `body_idle`).
    Client,
    /// The node stalled for `body_idle`, closed early or sent a body that does not parse.
    Node(&'static str),
}

/// The TCP socket under a stream whose bytes reach the socket unchanged: `None` for TLS.
pub(super) trait PlainSocket {
    fn plain_socket(&self) -> Option<&TcpStream>;
}

impl PlainSocket for TcpStream {
    fn plain_socket(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl PlainSocket for tcp::ReadHalf<'_> {
    fn plain_socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl PlainSocket for ClientIo {
    fn plain_socket(&self) -> Option<&TcpStream> {
        match self {
            ClientIo::Plain(s) => Some(s),
            ClientIo::Tls(_) => None,
        }
    }
}

impl PlainSocket for ClientWrite<'_> {
    fn plain_socket(&self) -> Option<&TcpStream> {
        match self {
            ClientWrite::Plain(w) => Some(w.as_ref()),
            ClientWrite::Tls(_) => None,
        }
    }
}

/// A pipe: its read end and its write end, both non-blocking.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

thread_local! {
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

impl Pipe {
    /// A pipe from this thread's pool, or a new one; `None` when none can be made (out of
    /// descriptors): the caller copies instead.
    fn take() -> Option<Pipe> {
        if let Some(p) = PIPES.with(|p| p.borrow_mut().pop()) {
            return Some(p);
        }
        let flags = rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC;
        let (read, write) = rustix::pipe::pipe_with(flags).ok()?;
        Some(Pipe { read, write })
    }

    /// Back to the pool; only an empty pipe may be given back.
    fn give_back(self) {
        PIPES.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOLED_PIPES {
                p.push(self);
            }
        });
    }
}

/// One non-blocking `splice(2)` of up to `len` bytes from `from` to `to`.
fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    let flags = rustix::pipe::SpliceFlags::MOVE | rustix::pipe::SpliceFlags::NONBLOCK;
    Ok(rustix::pipe::splice(from, None, to, None, len, flags)?)
}

/// Whether splicing from this socket can work at all: the errors of a kernel or socket that
/// does not support it, before any byte moved.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == rustix::io::Errno::INVAL.raw_os_error()
            || c == rustix::io::Errno::NOSYS.raw_os_error()
            || c == rustix::io::Errno::OPNOTSUPP.raw_os_error()
    )
}

/// What [`relay_length`] did.
pub(super) enum Spliced {
    /// All `left` bytes reached the client.
    Done,
    /// Splicing is not possible here (no pipe, or the kernel refused the first splice before
    /// any byte moved): copy instead.
    Unsupported,
}

/// Moves the `left` bytes of a `Content-Length` body still to come from `node` to `client`
/// through a pipe, each wait for the node or the client within `idle` of the last progress,
/// as the copying relay does. The bytes of the node's socket past the body stay there.
pub(super) async fn relay_length(
    node: &TcpStream,
    client: &TcpStream,
    mut left: u64,
    idle: Duration,
) -> Result<Spliced, BodyFault> {
    let Some(pipe) = Pipe::take() else {
        return Ok(Spliced::Unsupported);
    };
    let pipe_in = pipe.write.as_fd();
    let (node_fd, client_fd) = (node.as_fd(), client.as_fd());
    let mut moved_any = false;
    while left > 0 {
        // The pipe is empty here, so a splice that would block waits for the node's socket,
        // never for room in the pipe: its readiness may be cleared.
        let want = left.min(PIPE_BYTES as u64) as usize;
        let held = match node.try_io(Interest::READABLE, || splice(node_fd, pipe_in, want)) {
            Ok(0) => return Err(BodyFault::Node("closed mid-body")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match deadline::timeout_pending(idle, node.readable()).await {
                    Err(_) => return Err(BodyFault::Node("stalled mid-body (timeouts.body_idle)")),
                    Ok(Err(_)) => return Err(BodyFault::Node("failed mid-body")),
                    Ok(Ok(())) => continue,
                }
            }
            Err(e) if !moved_any && unsupported(&e) => {
                pipe.give_back();
                return Ok(Spliced::Unsupported);
            }
            Err(_) => return Err(BodyFault::Node("failed mid-body")),
        };
        moved_any = true;
        left -= held as u64;
        drain(&pipe, client, client_fd, held, idle).await?;
    }
    pipe.give_back();
    Ok(Spliced::Done)
}

/// Writes the `held` bytes in the pipe to the client. The pipe is not empty while this waits,
/// so a splice that would block waits for room in the client's socket.
async fn drain(
    pipe: &Pipe,
    client: &TcpStream,
    client_fd: BorrowedFd<'_>,
    mut held: usize,
    idle: Duration,
) -> Result<(), BodyFault> {
    let pipe_out = pipe.read.as_fd();
    while held > 0 {
        match client.try_io(Interest::WRITABLE, || splice(pipe_out, client_fd, held)) {
            Ok(0) => return Err(BodyFault::Client),
            Ok(n) => held -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match deadline::timeout_pending(idle, client.writable()).await {
                    Ok(Ok(())) => {}
                    Err(_) | Ok(Err(_)) => return Err(BodyFault::Client),
                }
            }
            Err(_) => return Err(BodyFault::Client),
        }
    }
    Ok(())
}
