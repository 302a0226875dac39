//! The native HTTP/1.1 path: HTTP/1.1 clients to HTTP/1.1 nodes on the [`crate::h1`] codec,
//! on cleartext listeners and on TLS listeners alike: the client's bytes come through
//! [`crate::proxy::client_io::ClientIo`], a socket or a TLS session over one. HTTP/2 goes to
//! hyper ([`crate::proxy::service`]): on cleartext by prior knowledge, handed over with the
//! bytes already read ([`Outcome::Http2`]); on TLS by ALPN, before this path sees the
//! connection.
//!
//! Hand-written rather than hyper, for cost: hyper keeps an 8 KiB read and an 8 KiB write
//! buffer per connection for its whole life, and runs each connection to a node as a task of
//! its own, with a channel send and a wake-up per request. Here the node's connection is
//! driven in the client's task, and buffers come from a per-thread pool only while bytes move:
//! an idle keep-alive connection holds its socket and a few words of state.
//!
//! Only the byte handling is here. The phases are [`crate::proxy::pipeline`]'s, the retry
//! decisions `core::retry`'s (through [`crate::proxy::attempt::Attempts`]), cookie and
//! `Set-Cookie` rewriting `core::session`'s and `core::binder`'s, the same calls the hyper
//! path makes. An upgrade (WebSocket) becomes a byte tunnel after the node's `101`
//! ([`crate::proxy::tunnel`]).
//!
//! Timeouts, all on the coarse [`crate::proxy::deadline`] table: the request head within
//! `header_read_timeout`; every read and write of a body within `timeouts.body_idle` of the
//! one before (armed only when the socket makes it wait, so a response that arrives with its
//! head costs no clock read); the response head within `timeouts.response` of the end of the
//! request body.
//!
//! The files, each importing only those below it:
//! - `connection`: one client connection's loop ([`serve`]): the idle wait;
//! - `executor`: the pooled executors a connection borrows per request ([`ExchangePool`]):
//!   the request head, then the exchange;
//! - `head`: reading a request head within `header_read_timeout`;
//! - `exchange`: one request's exchange: routing, the attempts, the head the node receives;
//! - `ajp`: the exchange with an AJP/1.3 node (Forward Request, Get Body Chunk, the
//!   container's packets to the client's response) and CPing;
//! - `relay`: a streamed request body and the response's bytes, node to client;
//! - `splice`: a long response body passed from the node's socket to a cleartext client's
//!   without crossing user space (`splice(2)`);
//! - `request`: the parsed request every attempt shares;
//! - `context`: what a connection borrows from its listener ([`Context`], `Conn`).
//!
//! Buffers and heads come from [`crate::proxy::buffers`], shared with the hyper path.

mod ajp;
mod connection;
mod context;
mod exchange;
mod executor;
mod head;
mod relay;
mod request;
mod splice;

pub use connection::{serve, Outcome};
pub use context::Context;
pub use exchange::Tunnel;
pub use executor::{exchange_pool, ExchangePool};
