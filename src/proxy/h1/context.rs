//! What the native path's code borrows from its listener: [`Context`], owned and shared by
//! every connection of one accept loop, and [`Conn`], one client connection's view of it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    /// Set when the accept loop stops accepting, before idle connections are woken to look:
    /// each connection checks it between requests. A load, where the shutdown token's own
    /// check takes a lock.
    pub stopping: AtomicBool,
    /// The listener terminates TLS.
    pub tls: bool,
}

impl Context {
    /// The listener is draining: finish the request in hand, then close.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Marks the listener as draining (see [`Context::stopping`]).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}
