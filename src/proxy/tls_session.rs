//! A server-side TLS session over a TCP socket that holds no buffer while it is idle
//! ([`TlsSession`]), driven by rustls's unbuffered API
//! ([`rustls::server::UnbufferedServerConnection`]).
//!
//! Hand-written rather than `tokio_rustls` because the crate's buffered connection
//! (`rustls::ServerConnection`) keeps a deframer buffer of 4 KiB or more and its plaintext and
//! TLS queues for the connection's whole life, so an idle keep-alive connection costs tens of
//! KiB. Here the incoming TLS buffer, the outgoing TLS buffer and the plaintext left over from a
//! record are [`Vec`]s taken from a per-thread pool only while bytes move, and each goes back to
//! the pool as soon as it holds nothing: an idle session holds its rustls state (keys, a few
//! empty queues) and its socket.
//!
//! Reads: TLS bytes from the socket go into the incoming buffer; rustls decrypts a record and
//! hands out its plaintext ([`ConnectionState::ReadTraffic`]), which is copied into the caller's
//! [`ReadBuf`]. What does not fit (a record larger than the caller's buffer, or a record rustls
//! decrypted while the session was writing or handshaking) stays in the plaintext buffer for the
//! next read. Unprocessed TLS bytes (a partial record, further records) move to the front of the
//! incoming buffer after each step, as rustls's `discard` count says.
//!
//! Writes: the caller's plaintext is encrypted in records of at most 16 KiB straight into the
//! outgoing buffer ([`rustls::unbuffered::WriteTraffic::encrypt`]), which is written to the
//! socket when the next record does not fit, on flush, and (without waiting) on reads. A write
//! returns `Pending` when the outgoing buffer is full and the socket takes nothing, so a client
//! that stops reading holds at most one buffer of the session's output. Small writes (a
//! response head, then its body) share the buffer and go out in one socket write at the flush.
//!
//! The pool is per thread so that taking and giving back a buffer is a `Vec` move without a
//! lock; a task that moves between a runtime's worker threads gives its buffers back to the
//! thread it is on, and each thread keeps at most 128 of them (2.3 MiB).
//!
//! Handshake messages rustls sends by itself (session tickets after the handshake, a TLS 1.3
//! `KeyUpdate` answer, alerts) are encoded into the outgoing buffer whenever rustls asks
//! ([`ConnectionState::EncodeTlsData`]) and go out with the next socket write.
//!
//! rustls 0.23 still copies each decrypted record into a `Vec` of its own and encrypts each
//! outgoing record into one before the bytes reach these buffers: one allocation per TLS record
//! each way remains inside rustls.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, ReadTraffic, WriteTraffic};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Size of every pooled buffer: the largest TLS record rustls accepts on the wire (a 5-byte
/// header and 2^14 + 2048 bytes of payload), so that a whole record always fits in the
/// incoming buffer.
pub const BUFFER_SIZE: usize = 5 + 16_384 + 2_048;

/// Largest plaintext encrypted into one record (the TLS maximum fragment).
const MAX_PLAINTEXT_PER_RECORD: usize = 16_384;

/// Most bytes encryption adds to one record with rustls's cipher suites (header, explicit
/// nonce, inner content type, tag), rounded up.
const RECORD_OVERHEAD: usize = 64;

/// Most buffers one thread's pool keeps; more are freed when given back.
const POOL_LIMIT: usize = 128;

thread_local! {
    /// Buffers of [`BUFFER_SIZE`] bytes not held by any session of this thread.
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of [`BUFFER_SIZE`] initialised bytes, from this thread's pool when it has one.
fn take_buffer() -> Vec<u8> {
    POOL.try_with(|pool| pool.try_borrow_mut().ok().and_then(|mut p| p.pop()))
        .ok()
        .flatten()
        .unwrap_or_else(|| vec![0; BUFFER_SIZE])
}

/// Gives `buffer` back to this thread's pool; a buffer that grew past [`BUFFER_SIZE`], or one
/// more than the pool keeps, is freed.
fn give_back(buffer: Vec<u8>) {
    if buffer.len() != BUFFER_SIZE {
        return;
    }
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            if pool.len() < POOL_LIMIT {
                if pool.capacity() == 0 {
                    pool.reserve_exact(POOL_LIMIT);
                }
                pool.push(buffer);
            }
        }
    });
}

/// How many free buffers this thread's pool holds.
pub fn pooled_buffers() -> usize {
    POOL.try_with(|pool| pool.try_borrow().map_or(0, |p| p.len()))
        .unwrap_or(0)
}

/// What the caller of [`TlsSession::step`] wants from rustls.
enum Want<'a, 'b> {
    /// The handshake to complete.
    Handshake,
    /// Plaintext, copied into this buffer.
    Read(&'a mut ReadBuf<'b>),
    /// This plaintext encrypted.
    Write(&'a [u8]),
    /// A close_notify alert queued.
    CloseNotify,
}

/// What one [`TlsSession::step`] did.
enum Step {
    /// rustls moved (handshake bytes encoded, a record processed): step again.
    Again,
    /// Plaintext was copied into the caller's buffer.
    Read,
    /// The peer sent close_notify: no more plaintext will come.
    PeerClosed,
    /// rustls needs more TLS bytes from the socket.
    NeedInput,
    /// Application data may be sent; this many plaintext bytes of a write were encrypted (a
    /// queued close_notify counts 0).
    Writable(usize),
}

/// A server-side TLS session over a TCP socket; see the module doc.
///
/// `poll_write` returns `Ready(Ok(n))` once `n` bytes are encrypted into the outgoing buffer;
/// they reach the socket with a later write or flush, so a caller flushes before it waits for
/// the peer. `Pending` means nothing of that call's bytes was taken: dropping a pending write
/// loses nothing. Reads and writes may go on from two tasks at once through
/// [`tokio::io::split`]: only writes and flushes wait for the socket's write readiness.
pub struct TlsSession {
    conn: UnbufferedServerConnection,
    tcp: TcpStream,
    /// TLS bytes received and not yet processed: `incoming[..incoming_len]`. Empty (no
    /// allocation) while the session holds no such bytes.
    incoming: Vec<u8>,
    /// TLS bytes encoded and not yet written: `outgoing[outgoing_start..outgoing_end]`.
    outgoing: Vec<u8>,
    /// Decrypted bytes not yet read: `plaintext[plaintext_start..plaintext_end]`.
    plaintext: Vec<u8>,
    incoming_len: u32,
    outgoing_start: u32,
    outgoing_end: u32,
    plaintext_start: u32,
    plaintext_end: u32,
    /// The peer's close_notify arrived.
    peer_closed: bool,
    /// The socket reported end of stream.
    socket_eof: bool,
    /// Our close_notify is queued: no more writes.
    close_queued: bool,
    /// rustls reported an error: the session is unusable.
    failed: bool,
}

impl TlsSession {
    /// Runs the server side of the handshake on `tcp` (the caller bounds it with its timeout).
    /// Handshake messages sent after it (session tickets) are written before this returns.
    pub async fn accept(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut session = TlsSession {
            conn,
            tcp,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            plaintext: Vec::new(),
            incoming_len: 0,
            outgoing_start: 0,
            outgoing_end: 0,
            plaintext_start: 0,
            plaintext_end: 0,
            peer_closed: false,
            socket_eof: false,
            close_queued: false,
            failed: false,
        };
        poll_fn(|cx| session.poll_handshake(cx)).await?;
        Ok(session)
    }

    /// The protocol the client and the server agreed on by ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The TCP socket under the session.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The rustls connection state (negotiated version, cipher suite, SNI, handshake kind).
    pub fn connection(&self) -> &UnbufferedServerConnection {
        &self.conn
    }

    /// Puts `bytes` back in front of the plaintext not yet read: the next reads return them
    /// first. For a caller that looked at a connection's first bytes before handing it on
    /// (the HTTP/2 preface), so that the session needs no replay wrapper for its whole life.
    pub fn unread(&mut self, bytes: &[u8]) {
        Leftover {
            buffer: &mut self.plaintext,
            start: &mut self.plaintext_start,
            end: &mut self.plaintext_end,
        }
        .unread(bytes);
    }

    /// Whether the session holds any pooled buffer (it holds none while idle).
    pub fn holds_buffers(&self) -> bool {
        !self.incoming.is_empty() || !self.outgoing.is_empty() || !self.plaintext.is_empty()
    }

    /// Ready once a read would not wait for the socket's next bytes to start: decrypted bytes
    /// are buffered, a whole TLS record is buffered, the session is closed or failed, or the
    /// socket is readable. Also writes, without waiting, encrypted bytes not yet written.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.has_unsent() {
            self.try_send();
            self.release_idle_buffers();
        }
        if self.plaintext_start < self.plaintext_end
            || self.peer_closed
            || self.socket_eof
            || self.failed
            || self.holds_whole_record()
        {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.has_unsent() {
                ready!(self.poll_send(cx))?;
            }
            match self.step(Want::Handshake)? {
                Step::Again | Step::Read => {}
                Step::Writable(_) if !self.conn.is_handshaking() => {
                    if self.has_unsent() {
                        ready!(self.poll_send(cx))?;
                        continue;
                    }
                    self.release_idle_buffers();
                    return Poll::Ready(Ok(()));
                }
                Step::Writable(_) | Step::NeedInput => {
                    if self.socket_eof {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tls handshake eof",
                        )));
                    }
                    ready!(self.poll_receive(cx))?;
                }
                Step::PeerClosed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "tls handshake closed by the peer",
                    )));
                }
            }
        }
    }

    /// Reads TLS bytes from the socket into the incoming buffer; `Ready(Ok)` when some
    /// arrived or the socket reported end of stream (then `socket_eof` is set).
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.incoming.is_empty() {
            self.incoming = take_buffer();
        }
        let filled = self.incoming_len as usize;
        let Some(free) = self.incoming.get_mut(filled..).filter(|f| !f.is_empty()) else {
            // rustls rejects a record larger than the buffer before it is full.
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS record larger than the incoming buffer",
            )));
        };
        let mut read = ReadBuf::new(free);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            self.socket_eof = true;
        }
        self.incoming_len += n as u32;
        Poll::Ready(Ok(()))
    }

    fn has_unsent(&self) -> bool {
        self.outgoing_start < self.outgoing_end
    }

    /// Writes the outgoing buffer to the socket until it is empty.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.outgoing_start < self.outgoing_end {
            let unsent = &self.outgoing[self.outgoing_start as usize..self.outgoing_end as usize];
            match ready!(Pin::new(&mut self.tcp).poll_write(cx, unsent))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.outgoing_start += n as u32,
            }
        }
        self.outgoing_start = 0;
        self.outgoing_end = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes what the socket takes of the outgoing buffer without waiting and without
    /// registering for the socket's write readiness, which belongs to the writer's task when
    /// the session is split: reads push out what rustls answered (tickets, a key update), which
    /// the peer does not wait for; the writer's next write or flush sends the rest. A socket
    /// error drops the unsent bytes (they can never go out) and is left for the writer to
    /// meet, so that a read still returns the plaintext and end of stream the peer sent.
    fn try_send(&mut self) {
        while self.outgoing_start < self.outgoing_end {
            let unsent = &self.outgoing[self.outgoing_start as usize..self.outgoing_end as usize];
            match self.tcp.try_write(unsent) {
                Ok(n) if n > 0 => self.outgoing_start += n as u32,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Ok(_) | Err(_) => break,
            }
        }
        self.outgoing_start = 0;
        self.outgoing_end = 0;
    }

    /// Gives each buffer that holds nothing back to the pool.
    fn release_idle_buffers(&mut self) {
        if self.incoming_len == 0 && !self.incoming.is_empty() {
            give_back(std::mem::take(&mut self.incoming));
        }
        if self.outgoing_start == self.outgoing_end && !self.outgoing.is_empty() {
            self.outgoing_start = 0;
            self.outgoing_end = 0;
            give_back(std::mem::take(&mut self.outgoing));
        }
        if self.plaintext_start == self.plaintext_end && !self.plaintext.is_empty() {
            self.plaintext_start = 0;
            self.plaintext_end = 0;
            give_back(std::mem::take(&mut self.plaintext));
        }
    }

    /// Whether the incoming buffer starts with a whole TLS record (5-byte header, length in
    /// bytes 3 and 4).
    fn holds_whole_record(&self) -> bool {
        let filled = &self.incoming[..self.incoming_len as usize];
        match filled {
            [_, _, _, hi, lo, rest @ ..] => {
                rest.len() >= usize::from(u16::from_be_bytes([*hi, *lo]))
            }
            _ => false,
        }
    }

    /// Copies buffered plaintext into `buf`; false when there is none.
    fn read_buffered_plaintext(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.plaintext_start == self.plaintext_end {
            return false;
        }
        let available = &self.plaintext[self.plaintext_start as usize..self.plaintext_end as usize];
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.plaintext_start += n as u32;
        true
    }

    /// One call to rustls's `process_tls_records` on the incoming bytes, and what the state
    /// it returns asks for, towards `want`.
    fn step(&mut self, mut want: Want<'_, '_>) -> io::Result<Step> {
        if self.failed {
            return Err(io::Error::other("TLS session failed"));
        }
        let Self {
            conn,
            incoming,
            incoming_len,
            outgoing,
            outgoing_end,
            plaintext,
            plaintext_start,
            plaintext_end,
            close_queued,
            ..
        } = self;
        let status = conn.process_tls_records(&mut incoming[..*incoming_len as usize]);
        let mut discard = status.discard;
        let state = match status.state {
            Ok(state) => state,
            Err(e) => {
                self.discard_incoming(discard);
                self.fail();
                return Err(tls_error(e));
            }
        };
        let mut leftover = Leftover {
            buffer: plaintext,
            start: plaintext_start,
            end: plaintext_end,
        };
        let mut output = Output {
            buffer: outgoing,
            end: outgoing_end,
        };
        let result = match state {
            ConnectionState::ReadTraffic(mut traffic) => {
                read_records(&mut traffic, &mut leftover, &mut want, &mut discard)
            }
            ConnectionState::EncodeTlsData(mut encode) => output
                .encode_with(|out| match encode.encode(out) {
                    Ok(n) => Ok(n),
                    Err(EncodeError::InsufficientSize(size)) => Err(size.required_size),
                    Err(EncodeError::AlreadyEncoded) => Ok(0),
                })
                .map(|()| Step::Again),
            ConnectionState::TransmitTlsData(transmit) => {
                // The encoded bytes sit in the outgoing buffer ahead of anything encoded
                // later, and every wait for the peer's bytes writes them first.
                transmit.done();
                Ok(Step::Again)
            }
            ConnectionState::BlockedHandshake => Ok(Step::NeedInput),
            ConnectionState::WriteTraffic(mut traffic) => {
                write_traffic(&mut traffic, &mut output, want, close_queued)
            }
            ConnectionState::PeerClosed | ConnectionState::Closed => Ok(Step::PeerClosed),
            ConnectionState::ReadEarlyData(_) => Err(rustls::Error::General(
                "TLS 1.3 early data is not supported".into(),
            )),
            _ => Err(rustls::Error::General(
                "unexpected TLS connection state".into(),
            )),
        };
        self.discard_incoming(discard);
        result.map_err(|e| {
            self.fail();
            tls_error(e)
        })
    }

    /// Drops the first `n` incoming bytes (processed by rustls) and moves the rest to the
    /// front.
    fn discard_incoming(&mut self, n: usize) {
        let filled = self.incoming_len as usize;
        let n = n.min(filled);
        if n > 0 {
            self.incoming.copy_within(n..filled, 0);
            self.incoming_len = (filled - n) as u32;
        }
    }

    /// Marks the session unusable and writes, best effort and without waiting, what rustls
    /// queued for the peer before and with its alert (a TLS 1.3 ServerHello can precede it).
    /// rustls is called only while it has queued bytes, which it hands out before looking at
    /// the incoming bytes again: processing the bad record a second time would queue a second
    /// fatal alert, which rustls asserts against.
    fn fail(&mut self) {
        self.failed = true;
        let incoming_len = self.incoming_len as usize;
        while self.conn.wants_write() {
            let status = self
                .conn
                .process_tls_records(&mut self.incoming[..incoming_len]);
            let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state else {
                break;
            };
            let mut output = Output {
                buffer: &mut self.outgoing,
                end: &mut self.outgoing_end,
            };
            let encoded = output.encode_with(|out| match encode.encode(out) {
                Ok(n) => Ok(n),
                Err(EncodeError::InsufficientSize(size)) => Err(size.required_size),
                Err(EncodeError::AlreadyEncoded) => Ok(0),
            });
            if encoded.is_err() {
                break;
            }
        }
        self.try_send();
    }
}

impl TlsSession {
    fn poll_read_plaintext(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 || self.read_buffered_plaintext(buf) || self.peer_closed {
            return Poll::Ready(Ok(()));
        }
        let mut read_any = false;
        loop {
            if self.has_unsent() {
                self.try_send();
            }
            match self.step(Want::Read(buf))? {
                // Goes on with the next record when it is already whole in the buffer.
                Step::Read if buf.remaining() > 0 && self.holds_whole_record() => read_any = true,
                Step::Read => return Poll::Ready(Ok(())),
                Step::PeerClosed => {
                    self.peer_closed = true;
                    return Poll::Ready(Ok(()));
                }
                Step::Again => {}
                Step::NeedInput | Step::Writable(_) if read_any => return Poll::Ready(Ok(())),
                Step::NeedInput | Step::Writable(_) => {
                    if self.socket_eof {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed connection without sending TLS close_notify",
                        )));
                    }
                    ready!(self.poll_receive(cx))?;
                }
            }
        }
    }

    fn poll_write_plaintext(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.close_queued {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS session closed for writing",
            )));
        }
        loop {
            ready!(self.poll_make_room(cx, data.len()))?;
            match self.step(Want::Write(data))? {
                Step::Writable(0) if self.has_unsent() => ready!(self.poll_send(cx))?,
                Step::Writable(0) | Step::NeedInput => {
                    return Poll::Ready(Err(io::Error::other(
                        "TLS session cannot send application data",
                    )));
                }
                Step::Writable(n) => return Poll::Ready(Ok(n)),
                Step::Again | Step::Read => {}
                // Reported once when the peer's close_notify arrives, then every step once
                // both sides sent theirs.
                Step::PeerClosed if !self.peer_closed => self.peer_closed = true,
                Step::PeerClosed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    /// Queues close_notify once (a failed session sends none).
    fn poll_queue_close_notify(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.close_queued && !self.failed {
            ready!(self.poll_make_room(cx, 0))?;
            match self.step(Want::CloseNotify)? {
                Step::Writable(_) | Step::NeedInput => break,
                Step::Again | Step::Read => {}
                Step::PeerClosed if !self.peer_closed => self.peer_closed = true,
                Step::PeerClosed => break,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Ready once the outgoing buffer has room for a record of `plaintext` bytes, or, when the
    /// socket takes no more, for a shorter one: written to the socket as far as it takes, the
    /// unsent rest moved to the front. Writing first keeps bulk records at full size.
    fn poll_make_room(&mut self, cx: &mut Context<'_>, plaintext: usize) -> Poll<io::Result<()>> {
        if self.outgoing_free() >= plaintext.min(MAX_PLAINTEXT_PER_RECORD) + RECORD_OVERHEAD {
            return Poll::Ready(Ok(()));
        }
        if ready_or_pending(self.poll_send(cx))?.is_ready() {
            return Poll::Ready(Ok(()));
        }
        let (start, end) = (self.outgoing_start as usize, self.outgoing_end as usize);
        self.outgoing.copy_within(start..end, 0);
        self.outgoing_start = 0;
        self.outgoing_end = (end - start) as u32;
        if self.outgoing_free() > RECORD_OVERHEAD {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn outgoing_free(&self) -> usize {
        if self.outgoing.is_empty() {
            BUFFER_SIZE
        } else {
            self.outgoing.len() - self.outgoing_end as usize
        }
    }
}

/// `Pending` as `Ok(Pending)`, so that `?` passes errors on and the caller can act on either.
fn ready_or_pending(poll: Poll<io::Result<()>>) -> io::Result<Poll<()>> {
    match poll {
        Poll::Ready(Ok(())) => Ok(Poll::Ready(())),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(Poll::Pending),
    }
}

impl AsyncRead for TlsSession {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = this.poll_read_plaintext(cx, buf);
        this.release_idle_buffers();
        result
    }
}

impl AsyncWrite for TlsSession {
    /// Encrypts up to one record of `data` into the outgoing buffer, which goes to the socket
    /// when full or flushed. `Pending` means nothing of `data` was taken.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = this.poll_write_plaintext(cx, data);
        this.release_idle_buffers();
        result
    }

    /// Encrypts the slices one after the other (a record each, at least), until one is not
    /// taken whole; `Pending` only when nothing was taken.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut taken = 0;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            match this.poll_write_plaintext(cx, buf) {
                Poll::Ready(Ok(n)) => {
                    taken += n;
                    if n < buf.len() {
                        break;
                    }
                }
                // The error or the wait comes again with the next call.
                Poll::Ready(Err(_)) | Poll::Pending if taken > 0 => break,
                other => {
                    this.release_idle_buffers();
                    return other;
                }
            }
        }
        this.release_idle_buffers();
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        this.release_idle_buffers();
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    /// Sends close_notify, then shuts the socket's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_queue_close_notify(cx))?;
        ready!(this.poll_send(cx))?;
        this.release_idle_buffers();
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

impl Drop for TlsSession {
    fn drop(&mut self) {
        for buffer in [
            std::mem::take(&mut self.incoming),
            std::mem::take(&mut self.outgoing),
            std::mem::take(&mut self.plaintext),
        ] {
            if !buffer.is_empty() {
                give_back(buffer);
            }
        }
    }
}

/// Takes the decrypted records rustls holds: into the caller's buffer for a read, until it is
/// full (the next records stay with rustls), and what does not fit into the leftover buffer.
/// Adds the records' own discard counts to `discard`.
fn read_records(
    traffic: &mut ReadTraffic<'_, '_, ServerConnectionData>,
    leftover: &mut Leftover<'_>,
    want: &mut Want<'_, '_>,
    discard: &mut usize,
) -> Result<Step, rustls::Error> {
    let mut read_any = false;
    while let Some(record) = traffic.next_record() {
        let record = record?;
        *discard += record.discard;
        read_any |= leftover.deliver(record.payload, want);
        if let Want::Read(buf) = want {
            if buf.remaining() == 0 {
                break;
            }
        }
    }
    Ok(if read_any { Step::Read } else { Step::Again })
}

/// Encrypts a write's plaintext or queues close_notify, once rustls allows application data.
fn write_traffic(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    output: &mut Output<'_>,
    want: Want<'_, '_>,
    close_queued: &mut bool,
) -> Result<Step, rustls::Error> {
    match want {
        Want::Write(data) => output.encrypt_with(data, |plain, out| traffic.encrypt(plain, out)),
        Want::CloseNotify => {
            *close_queued = true;
            output
                .encode_with(|out| match traffic.queue_close_notify(out) {
                    Ok(n) => Ok(n),
                    Err(EncryptError::InsufficientSize(size)) => Err(size.required_size),
                    Err(EncryptError::EncryptExhausted) => Ok(0),
                })
                .map(|()| Step::Writable(0))
        }
        Want::Handshake => Ok(Step::Writable(0)),
        Want::Read(_) => Ok(Step::NeedInput),
    }
}

/// The plaintext buffer of a session, during a step.
struct Leftover<'s> {
    buffer: &'s mut Vec<u8>,
    start: &'s mut u32,
    end: &'s mut u32,
}

impl Leftover<'_> {
    /// Copies `payload` into the caller's buffer when `want` is a read with room left, and
    /// keeps what does not fit (all of it, for any other want). True when some went to the
    /// caller.
    fn deliver(&mut self, payload: &[u8], want: &mut Want<'_, '_>) -> bool {
        match want {
            Want::Read(buf) if buf.remaining() > 0 => {
                let n = payload.len().min(buf.remaining());
                buf.put_slice(&payload[..n]);
                self.keep(&payload[n..]);
                n > 0
            }
            _ => {
                self.keep(payload);
                false
            }
        }
    }

    /// Puts `bytes` in front of the buffered plaintext, taking a buffer from the pool, moving
    /// the unread bytes up or growing the buffer when there is no room before them.
    fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.buffer.is_empty() {
            *self.buffer = take_buffer();
        }
        let (mut start, mut end) = (*self.start as usize, *self.end as usize);
        if start < bytes.len() {
            let shift = bytes.len() - start;
            if self.buffer.len() < end + shift {
                self.buffer.resize(end + shift, 0);
            }
            self.buffer.copy_within(start..end, start + shift);
            start += shift;
            end += shift;
        }
        self.buffer[start - bytes.len()..start].copy_from_slice(bytes);
        *self.start = (start - bytes.len()) as u32;
        *self.end = end as u32;
    }

    /// Appends `bytes` to the buffered plaintext, taking a buffer from the pool, moving the
    /// unread bytes to the front, or growing it when they do not fit.
    fn keep(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.buffer.is_empty() {
            *self.buffer = take_buffer();
        }
        let (start, end) = (*self.start as usize, *self.end as usize);
        if self.buffer.len() - end < bytes.len() {
            self.buffer.copy_within(start..end, 0);
            *self.start = 0;
            *self.end = (end - start) as u32;
        }
        let end = *self.end as usize;
        if self.buffer.len() - end < bytes.len() {
            self.buffer.resize(end + bytes.len(), 0);
        }
        self.buffer[end..end + bytes.len()].copy_from_slice(bytes);
        *self.end += bytes.len() as u32;
    }
}

/// The outgoing buffer of a session, during a step.
struct Output<'s> {
    buffer: &'s mut Vec<u8>,
    end: &'s mut u32,
}

impl Output<'_> {
    /// Runs `encode` on the free end of the buffer; `encode` fails with the size it needs when
    /// the bytes do not fit (rustls keeps them until they are encoded), and the buffer grows
    /// to that size, up to four times [`BUFFER_SIZE`].
    fn encode_with(
        &mut self,
        mut encode: impl FnMut(&mut [u8]) -> Result<usize, usize>,
    ) -> Result<(), rustls::Error> {
        if self.buffer.is_empty() {
            *self.buffer = take_buffer();
        }
        loop {
            let end = *self.end as usize;
            match encode(&mut self.buffer[end..]) {
                Ok(n) => {
                    *self.end += n as u32;
                    return Ok(());
                }
                Err(required)
                    if end + required <= 4 * BUFFER_SIZE && required > self.buffer.len() - end =>
                {
                    self.buffer.resize(end + required, 0);
                }
                Err(_) => {
                    return Err(rustls::Error::General(
                        "TLS handshake bytes larger than the outgoing buffer".into(),
                    ))
                }
            }
        }
    }

    /// Encrypts as much of `data` as fits in one record of the buffer's free space.
    fn encrypt_with(
        &mut self,
        data: &[u8],
        mut encrypt: impl FnMut(&[u8], &mut [u8]) -> Result<usize, EncryptError>,
    ) -> Result<Step, rustls::Error> {
        if self.buffer.is_empty() {
            *self.buffer = take_buffer();
        }
        let end = *self.end as usize;
        let free = self.buffer.len() - end;
        let mut chunk = data
            .len()
            .min(MAX_PLAINTEXT_PER_RECORD)
            .min(free.saturating_sub(RECORD_OVERHEAD));
        while chunk > 0 {
            match encrypt(&data[..chunk], &mut self.buffer[end..]) {
                Ok(n) => {
                    *self.end += n as u32;
                    return Ok(Step::Writable(chunk));
                }
                // Smaller fragments (a configured max_fragment_size) or handshake bytes
                // queued ahead need more room: try less.
                Err(EncryptError::InsufficientSize(_)) => chunk /= 2,
                Err(EncryptError::EncryptExhausted) => {
                    return Err(rustls::Error::EncryptError);
                }
            }
        }
        Ok(Step::Writable(0))
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_only_buffers_of_the_pooled_size() {
        let before = pooled_buffers();
        let buffer = take_buffer();
        assert_eq!(buffer.len(), BUFFER_SIZE);
        give_back(buffer);
        assert_eq!(pooled_buffers(), before.max(1));
        let mut grown = take_buffer();
        grown.resize(BUFFER_SIZE + 1, 0);
        give_back(grown);
        assert_eq!(
            pooled_buffers(),
            before.max(1) - 1,
            "a grown buffer is freed"
        );
        let many: Vec<_> = (0..POOL_LIMIT + 5).map(|_| take_buffer()).collect();
        many.into_iter().for_each(give_back);
        assert_eq!(pooled_buffers(), POOL_LIMIT);
    }

    #[test]
    fn leftover_plaintext_moves_to_the_front_then_grows() {
        let (mut buffer, mut start, mut end) = (Vec::new(), 0u32, 0u32);
        let mut leftover = Leftover {
            buffer: &mut buffer,
            start: &mut start,
            end: &mut end,
        };
        leftover.keep(&[1; 10_000]);
        *leftover.start = 9_000;
        leftover.keep(&[2; 10_000]);
        assert_eq!(
            (*leftover.start, *leftover.end),
            (0, 11_000),
            "moved to the front"
        );
        leftover.keep(&[3; 10_000]);
        assert_eq!(*leftover.end, 21_000);
        assert!(buffer.len() >= 21_000);
        assert!(buffer[..1_000].iter().all(|b| *b == 1));
        assert!(buffer[1_000..11_000].iter().all(|b| *b == 2));
        assert!(buffer[11_000..21_000].iter().all(|b| *b == 3));
    }

    #[test]
    fn unread_bytes_come_before_the_buffered_plaintext() {
        /// Buffered before, its start, bytes put back; what reads return, in order.
        type Case = (&'static [u8], u32, &'static [u8], &'static [u8]);
        let cases: &[Case] = &[
            (b"", 0, b"PRI", b"PRI"),
            (b"frames", 0, b"PRI", b"PRIframes"),
            (b"xxxxxframes", 5, b"PRI", b"PRIframes"),
            (b"xxframes", 2, b"PRI", b"PRIframes"),
            (b"xxxframes", 3, b"PRI", b"PRIframes"),
            (b"frames", 0, b"", b"frames"),
        ];
        for (before, start_at, back, want) in cases {
            let (mut buffer, mut start, mut end) = (Vec::new(), 0u32, 0u32);
            let mut leftover = Leftover {
                buffer: &mut buffer,
                start: &mut start,
                end: &mut end,
            };
            leftover.keep(before);
            *leftover.start = *start_at;
            leftover.unread(back);
            let got = &leftover.buffer[*leftover.start as usize..*leftover.end as usize];
            assert_eq!(got, *want, "{before:?} from {start_at}, {back:?} put back");
        }
        // A buffer with no room after the plaintext grows.
        let (mut buffer, mut start, mut end) = (Vec::new(), 0u32, 0u32);
        let mut leftover = Leftover {
            buffer: &mut buffer,
            start: &mut start,
            end: &mut end,
        };
        leftover.keep(&[1; BUFFER_SIZE]);
        leftover.unread(&[2; 24]);
        assert_eq!(
            (*leftover.start, *leftover.end as usize),
            (0, BUFFER_SIZE + 24)
        );
        assert!(buffer[..24].iter().all(|b| *b == 2));
        assert!(buffer[24..].iter().all(|b| *b == 1));
    }

    #[test]
    fn handshake_bytes_grow_the_outgoing_buffer_within_a_bound() {
        let (mut buffer, mut end) = (Vec::new(), 0u32);
        let mut output = Output {
            buffer: &mut buffer,
            end: &mut end,
        };
        let big = vec![7u8; BUFFER_SIZE + 100];
        output
            .encode_with(|out| {
                if out.len() < big.len() {
                    return Err(big.len());
                }
                out[..big.len()].copy_from_slice(&big);
                Ok(big.len())
            })
            .unwrap();
        assert_eq!(*output.end as usize, big.len());
        let refused = output.encode_with(|_| Err(5 * BUFFER_SIZE));
        assert!(refused.is_err(), "no growth past four buffers");
    }
}
