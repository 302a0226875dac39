//! The data plane: listeners and TLS, the request pipeline, and connections to the nodes.
//!
//! - [`access_log`]: one line per request, buffered per thread and written by a writer thread;
//! - [`listener`]: bind, accept, TLS handshake, hand each connection to a protocol, drain;
//! - [`tls`]: rustls server configs from the listener's files;
//! - [`pipeline`]: one request's phases, match → extract → select → rebind → forward →
//!   respond, shared by every protocol;
//! - [`h1`]: the native HTTP/1.1 path on the `crate::h1` codec, on cleartext and TLS
//!   listeners;
//! - [`service`]: the hyper `Service` for HTTP/2 (h2c by prior knowledge on cleartext, `h2` by
//!   ALPN on TLS) that drives them;
//! - [`upstream`]: keep-alive connection pools to the nodes;
//! - [`tunnel`]: byte tunnels for upgraded connections, with their idle limit and keepalive.

pub mod access_log;
pub mod attempt;
pub mod client_io;
pub mod deadline;
pub mod h1;
pub mod listener;
pub mod open_streams;
pub mod pipeline;
pub mod service;
pub mod tls;
pub mod tls_session;
pub mod tunnel;
pub mod upstream;
pub mod workers;
pub mod write_stall;
