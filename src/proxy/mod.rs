//! The data plane: listeners and TLS, the request pipeline, and connections to the nodes.
//!
//! - [`access_log`]: one line per request, buffered per thread and written by a writer thread;
//! - [`listener`]: bind, accept, TLS handshake, hand each connection to a protocol, drain;
//! - [`tls`]: rustls server configs from the listener's files;
//! - [`pipeline`]: one request's phases, match → extract → select → rebind → forward →
//!   respond, shared by every protocol;
//! - [`h1`]: the native HTTP/1.1 path (cleartext listeners) on the `crate::h1` codec;
//! - [`service`]: the hyper `Service` (HTTP/2, h2c, TLS listeners, upgrades) that drives them;
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
