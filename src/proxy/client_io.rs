//! A client connection's bytes on the native HTTP/1.1 path: a TCP socket, or a TLS session
//! over one ([`ClientIo`], the session a [`TlsSession`] that holds no buffer while idle).
//!
//! An enum rather than a type parameter: the native path's exchange futures are pooled per
//! accept loop and named through one function ([`crate::proxy::h1::exchange_pool`]), and a
//! second instance of every function for TLS would double the path's code for a branch per
//! call. The TLS session is boxed so that a cleartext connection's state stays a socket.
//!
//! Writes to a TLS session collect in its outgoing buffer until a record's worth is there: the
//! path flushes once per response and before it waits for more of a node's body
//! ([`tokio::io::AsyncWriteExt::flush`], free on a socket).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp;
use tokio::net::TcpStream;

use crate::proxy::tls_session::TlsSession;

/// A client connection: plain TCP or TLS.
pub enum ClientIo {
    Plain(TcpStream),
    Tls(Box<TlsSession>),
}

impl ClientIo {
    /// The TCP socket under the connection.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientIo::Plain(s) => s,
            ClientIo::Tls(s) => s.tcp(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, ClientIo::Tls(_))
    }

    /// Ready once the connection has bytes to read: on its socket, or already decrypted in
    /// the TLS session (a client that sent two requests in one record).
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ClientIo::Plain(s) => s.poll_read_ready(cx),
            ClientIo::Tls(s) => s.poll_read_ready(cx),
        }
    }

    /// Read and write halves that can be used at once (a body upload while the response
    /// streams back).
    pub fn split(&mut self) -> (ClientRead<'_>, ClientWrite<'_>) {
        match self {
            ClientIo::Plain(s) => {
                let (r, w) = s.split();
                (ClientRead::Plain(r), ClientWrite::Plain(w))
            }
            ClientIo::Tls(s) => {
                let (r, w) = tokio::io::split(&mut **s);
                (ClientRead::Tls(r), ClientWrite::Tls(w))
            }
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Plain(s) => s.is_write_vectored(),
            ClientIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// The read half of [`ClientIo::split`].
pub enum ClientRead<'a> {
    Plain(tcp::ReadHalf<'a>),
    Tls(ReadHalf<&'a mut TlsSession>),
}

/// The write half of [`ClientIo::split`].
pub enum ClientWrite<'a> {
    Plain(tcp::WriteHalf<'a>),
    Tls(WriteHalf<&'a mut TlsSession>),
}

impl AsyncRead for ClientRead<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientRead::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientRead::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientWrite<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientWrite::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientWrite::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientWrite::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientWrite::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientWrite::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientWrite::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
