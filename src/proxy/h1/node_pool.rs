//! The native path's keep-alive connections to the nodes ([`RawPools`]): HTTP/1.1 sockets per
//! node slot, checked out by the next request to that node. AJP connections are kept apart,
//! shared with the hyper path ([`crate::proxy::upstream::UpstreamPools::ajp`]).

use std::time::Duration;

use tokio::net::TcpStream;

use crate::proxy::idle_conns::IdleConns;

/// Keep-alive HTTP/1.1 connections of the native path, per node slot.
#[derive(Default, Debug)]
pub struct RawPools {
    http: IdleConns,
}

impl RawPools {
    /// The most recent idle connection of the node that is open, current and young enough.
    pub(super) fn checkout(
        &self,
        slot: u32,
        epoch: u64,
        idle_timeout: Duration,
    ) -> Option<TcpStream> {
        self.http
            .checkout(slot, epoch, idle_timeout)
            .map(|(s, _)| s)
    }

    pub(super) fn checkin(&self, slot: u32, epoch: u64, stream: TcpStream) {
        self.http.checkin(slot, epoch, stream);
    }
}
