//! The native path's keep-alive connections to the nodes ([`RawPools`]): plain sockets kept
//! per node slot, HTTP/1.1 and AJP apart, checked out by the next request to that node.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Idle connections kept per node.
const MAX_IDLE_PER_NODE: usize = 512;

/// An idle keep-alive connection to a node.
struct IdleConn {
    stream: TcpStream,
    since: Instant,
    epoch: u64,
}

/// Keep-alive connections of the native path, per node slot: HTTP/1.1 connections, and
/// apart from them AJP connections (a node that changes protocol on reload never gets a
/// connection of the other kind).
#[derive(Default)]
pub struct RawPools {
    by_slot: Mutex<Vec<Vec<IdleConn>>>,
    ajp_by_slot: Mutex<Vec<Vec<IdleConn>>>,
}

impl std::fmt::Debug for RawPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPools").finish_non_exhaustive()
    }
}

impl RawPools {
    /// The most recent idle connection of the node that is open, current and young enough.
    pub(super) fn checkout(
        &self,
        slot: u32,
        epoch: u64,
        idle_timeout: Duration,
    ) -> Option<TcpStream> {
        checkout_from(&self.by_slot, slot, epoch, idle_timeout).map(|(s, _)| s)
    }

    pub(super) fn checkin(&self, slot: u32, epoch: u64, stream: TcpStream) {
        checkin_to(&self.by_slot, slot, epoch, stream);
    }

    /// An idle AJP connection of the node, and how long it sat idle (for `ajp.ping_after`).
    pub(super) fn checkout_ajp(
        &self,
        slot: u32,
        epoch: u64,
        idle_timeout: Duration,
    ) -> Option<(TcpStream, Duration)> {
        checkout_from(&self.ajp_by_slot, slot, epoch, idle_timeout)
    }

    pub(super) fn checkin_ajp(&self, slot: u32, epoch: u64, stream: TcpStream) {
        checkin_to(&self.ajp_by_slot, slot, epoch, stream);
    }
}

/// The most recent idle connection of `slot` in `pool` that is open, current and young
/// enough, and its idle time.
fn checkout_from(
    pool: &Mutex<Vec<Vec<IdleConn>>>,
    slot: u32,
    epoch: u64,
    idle_timeout: Duration,
) -> Option<(TcpStream, Duration)> {
    loop {
        let conn = {
            let mut all = pool.lock().unwrap_or_else(|e| e.into_inner());
            all.get_mut(slot as usize)?.pop()?
        };
        let idle = conn.since.elapsed();
        if conn.epoch != epoch || idle > idle_timeout {
            continue;
        }
        // An idle connection has nothing to read: data or EOF means it is unusable.
        let mut probe = [0u8; 1];
        match conn.stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Some((conn.stream, idle))
            }
            _ => continue,
        }
    }
}

fn checkin_to(pool: &Mutex<Vec<Vec<IdleConn>>>, slot: u32, epoch: u64, stream: TcpStream) {
    let mut all = pool.lock().unwrap_or_else(|e| e.into_inner());
    let i = slot as usize;
    if all.len() <= i {
        all.resize_with(i + 1, Vec::new);
    }
    if all[i].len() < MAX_IDLE_PER_NODE {
        all[i].push(IdleConn {
            stream,
            since: Instant::now(),
            epoch,
        });
    }
}
