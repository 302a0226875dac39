//! The data plane: listeners and TLS, the request pipeline, and connections to the nodes.
//!
//! - [`access_log`]: one line per request, buffered per thread and written by a writer thread;
//! - [`listener`]: bind, accept, TLS handshake, hand each connection to a protocol, drain;
//! - [`tls`]: rustls server configs from the listener's files;
//! - [`tls_session`]: a TLS session over a socket (rustls unbuffered) that holds no buffer
//!   while its connection is idle;
//! - [`pipeline`]: one request's phases, match → extract → select → rebind → forward →
//!   respond, shared by every protocol;
//! - [`attempt`]: the attempt loop both protocols run: the node, its slot, the rebind, what a
//!   failed attempt counts and what `core::retry` decides next, the access-log trace;
//! - [`buffers`]: per-thread pools of byte buffers and parsed heads, for both paths;
//! - [`client_io`]: a native-path client connection, plain TCP or a [`tls_session`];
//! - [`h1`]: the native HTTP/1.1 path on the `crate::h1` codec, on cleartext and TLS
//!   listeners;
//! - [`h2_preface`]: the HTTP/2 client preface, checked before a connection goes to `h2`, and
//!   the `GOAWAY` that answers a wrong one;
//! - [`h2_server`]: an HTTP/2 connection (h2c by prior knowledge on cleartext, `h2` by ALPN on
//!   TLS) and its streams in one task, on the `h2` crate; [`client_body`]: a stream's request
//!   body;
//! - [`service`]: the request path of each HTTP/2 stream, on the phases of [`pipeline`];
//! - [`upstream`]: the keep-alive connections to the nodes, shared by both paths;
//!   [`idle_conns`]: idle TCP connections per node (HTTP/1.1, AJP);
//! - [`node_head`]: the head a node receives, for both paths, on the `crate::h1` writers;
//! - [`node_http`]: the HTTP/2 path's HTTP/1.1 exchange with a node on the `crate::h1` codec;
//! - [`ajp_exchange`]: AJP nodes: connecting (CPing past `ping_after`), the hyper path's
//!   exchange, and the client's TLS attributes for them ([`ajp_client`]);
//! - [`tunnel`]: byte tunnels for upgraded connections, with their idle limit and keepalive;
//! - [`deadline`], [`workers`], [`write_stall`]: coarse per-thread deadlines, the worker
//!   threads, and the bound on an HTTP/2 client write that stays pending.

pub mod access_log;
pub mod ajp_client;
pub mod ajp_exchange;
pub mod attempt;
pub mod buffers;
pub mod client_body;
pub mod client_io;
pub mod deadline;
pub mod h1;
pub mod h2_preface;
pub mod h2_server;
pub mod idle_conns;
pub mod listener;
pub mod node_head;
pub mod node_http;
pub mod pipeline;
pub mod service;
pub mod tls;
pub mod tls_session;
pub mod tunnel;
pub mod upstream;
pub mod workers;
pub mod write_stall;
