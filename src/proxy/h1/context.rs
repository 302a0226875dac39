//! What the native path's code borrows from its listener: [`Context`], owned and shared by
//! every connection of one accept loop, and [`Conn`], one client connection's view of it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::ListenerConfig;
use crate::proxy::upstream::UpstreamPools;
use crate::state::Balancer;

/// What one client connection's request code borrows.
pub(super) struct Conn<'a> {
    pub(super) balancer: &'a Arc<Balancer>,
    /// Keep-alive connections to the nodes, HTTP/1.1 and AJP (shared with the hyper path).
    pub(super) pools: &'a UpstreamPools,
    pub(super) client: SocketAddr,
    pub(super) cfg: &'a ListenerConfig,
    /// The client connection is TLS: `X-Forwarded-Proto: https`, `Secure` cookies.
    pub(super) tls: bool,
}

/// What every connection of one accept loop shares, owned.
pub struct Context {
    pub balancer: Arc<Balancer>,
    /// The worker's keep-alive connections to the nodes.
    pub pools: Arc<UpstreamPools>,
    pub cfg: ListenerConfig,
    pub shutdown: CancellationToken,
    /// The listener terminates TLS.
    pub tls: bool,
}
