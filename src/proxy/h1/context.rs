//! What the native path's code borrows from its listener: [`Context`], owned and shared by
//! every connection of one accept loop, and [`Conn`], one client connection's view of it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::node_pool::RawPools;
use crate::config::ListenerConfig;
use crate::proxy::idle_conns::IdleConns;
use crate::proxy::upstream::UpstreamPools;
use crate::state::Balancer;

/// What one client connection's request code borrows.
pub(super) struct Conn<'a> {
    pub(super) balancer: &'a Arc<Balancer>,
    pub(super) pools: &'a RawPools,
    /// Idle AJP connections (shared with the hyper path).
    pub(super) ajp: &'a IdleConns,
    pub(super) client: SocketAddr,
    pub(super) cfg: &'a ListenerConfig,
    /// The client connection is TLS: `X-Forwarded-Proto: https`, `Secure` cookies.
    pub(super) tls: bool,
}

/// What every connection of one accept loop shares, owned.
pub struct Context {
    pub balancer: Arc<Balancer>,
    pub pools: Arc<RawPools>,
    /// The listener's upstream pools, for their AJP connections.
    pub upstream: Arc<UpstreamPools>,
    pub cfg: ListenerConfig,
    pub shutdown: CancellationToken,
    /// The listener terminates TLS.
    pub tls: bool,
}
