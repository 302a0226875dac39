//! A long body moved from one socket to the other through a pipe with `splice(2)`: a response
//! from the node to a cleartext client, an upload from the client to the node. The kernel
//! passes the sender's pages on to the receiving socket and the body never crosses into user
//! space, which saves a copy in and a copy out of every byte (what HAProxy's `option
//! splice-auto` does). Only where the bytes pass unchanged: a plain TCP client, a
//! `Content-Length` body, nothing to re-frame. Everything else is copied through a buffer by
//! the relay.
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

use crate::proxy::buffers::{give_back, take_from};
use crate::proxy::client_io::{ClientIo, ClientRead, ClientWrite};
use crate::proxy::deadline;

/// The most a pipe holds by default (16 pages): the most one splice from the node moves.
const PIPE_BYTES: usize = 64 * 1024;
/// Pipes a thread keeps for reuse.
const POOLED_PIPES: usize = 32;

/// How a spliced body ended early: which side, and how. The relay says whose fault that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SpliceFault {
    /// The sending socket had no byte for `idle`.
    SourceStalled,
    /// The sender closed before the body's end.
    SourceClosed,
    /// Reading from the sender failed (a reset).
    SourceFailed,
    /// The receiving socket took no byte for `idle`.
    SinkStalled,
    /// Writing to the receiver failed (closed, reset).
    SinkFailed,
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

impl PlainSocket for tcp::WriteHalf<'_> {
    fn plain_socket(&self) -> Option<&TcpStream> {
        Some(self.as_ref())
    }
}

impl PlainSocket for ClientRead<'_> {
    fn plain_socket(&self) -> Option<&TcpStream> {
        match self {
            ClientRead::Plain(r) => Some(r.as_ref()),
            ClientRead::Tls(_) => None,
        }
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
        if let Some(p) = take_from(&PIPES) {
            return Some(p);
        }
        let flags = rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC;
        let (read, write) = rustix::pipe::pipe_with(flags).ok()?;
        Some(Pipe { read, write })
    }

    /// Back to the pool; only an empty pipe may be given back.
    fn give_back(self) {
        give_back(&PIPES, self, POOLED_PIPES);
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

/// What [`move_length`] did.
pub(super) enum Spliced {
    /// All `left` bytes reached the client.
    Done,
    /// Splicing is not possible here (no pipe, or the kernel refused the first splice before
    /// any byte moved): copy instead.
    Unsupported,
}

/// Moves the `left` bytes of a `Content-Length` body still to come from `from` to `to`
/// through a pipe, each wait for either socket within `idle` of the last progress, as the
/// copying relay does. Bytes of `from` past the body stay in its socket.
pub(super) async fn move_length(
    from: &TcpStream,
    to: &TcpStream,
    mut left: u64,
    idle: Duration,
) -> Result<Spliced, SpliceFault> {
    let Some(pipe) = Pipe::take() else {
        return Ok(Spliced::Unsupported);
    };
    let pipe_in = pipe.write.as_fd();
    let (from_fd, to_fd) = (from.as_fd(), to.as_fd());
    let mut moved_any = false;
    while left > 0 {
        // The pipe is empty here, so a splice that would block waits for the sender's socket,
        // never for room in the pipe: its readiness may be cleared.
        let want = left.min(PIPE_BYTES as u64) as usize;
        let held = match from.try_io(Interest::READABLE, || splice(from_fd, pipe_in, want)) {
            Ok(0) => return Err(SpliceFault::SourceClosed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match deadline::timeout_pending(idle, from.readable()).await {
                    Err(_) => return Err(SpliceFault::SourceStalled),
                    Ok(Err(_)) => return Err(SpliceFault::SourceFailed),
                    Ok(Ok(())) => continue,
                }
            }
            Err(e) if !moved_any && unsupported(&e) => {
                pipe.give_back();
                return Ok(Spliced::Unsupported);
            }
            Err(_) => return Err(SpliceFault::SourceFailed),
        };
        moved_any = true;
        left -= held as u64;
        drain(&pipe, to, to_fd, held, idle).await?;
    }
    pipe.give_back();
    Ok(Spliced::Done)
}

/// Clears tokio's readiness of a socket a body was spliced from when the body took all its
/// bytes. tokio takes a read shorter than asked for as the end of a socket's bytes and clears
/// it; a splice does not, and a client connection left marked readable would leave its
/// keep-alive wait at once for a request head that is not there. A peek that would block
/// clears it the way tokio does; bytes already there (a pipelined request) keep it. (A node's
/// socket needs none: the pool reads it before reuse.)
pub(super) fn settle_readiness(from: &TcpStream) {
    let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    let _ = from.try_io(Interest::READABLE, || {
        socket2::SockRef::from(from).peek(&mut probe)
    });
}

/// Writes the `held` bytes in the pipe to `to`. The pipe is not empty while this waits, so a
/// splice that would block waits for room in the receiving socket.
async fn drain(
    pipe: &Pipe,
    to: &TcpStream,
    to_fd: BorrowedFd<'_>,
    mut held: usize,
    idle: Duration,
) -> Result<(), SpliceFault> {
    let pipe_out = pipe.read.as_fd();
    while held > 0 {
        match to.try_io(Interest::WRITABLE, || splice(pipe_out, to_fd, held)) {
            Ok(0) => return Err(SpliceFault::SinkFailed),
            Ok(n) => held -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match deadline::timeout_pending(idle, to.writable()).await {
                    Ok(Ok(())) => {}
                    Err(_) => return Err(SpliceFault::SinkStalled),
                    Ok(Err(_)) => return Err(SpliceFault::SinkFailed),
                }
            }
            Err(_) => return Err(SpliceFault::SinkFailed),
        }
    }
    Ok(())
}
