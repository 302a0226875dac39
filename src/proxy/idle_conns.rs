//! Idle keep-alive TCP connections to the nodes, per node slot ([`IdleConns`]): the native
//! path's HTTP/1.1 connections and both paths' AJP connections are kept here between requests.

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

/// Idle connections per node slot.
#[derive(Default)]
pub struct IdleConns {
    by_slot: Mutex<Vec<Vec<IdleConn>>>,
}

impl std::fmt::Debug for IdleConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleConns").finish_non_exhaustive()
    }
}

impl IdleConns {
    /// The most recent idle connection of the node that is open, of the current `epoch` and
    /// idle no longer than `idle_timeout` at `now` (the request's start: no clock read of its
    /// own), and how long it was idle.
    pub fn checkout(
        &self,
        slot: u32,
        epoch: u64,
        idle_timeout: Duration,
        now: Instant,
    ) -> Option<(TcpStream, Duration)> {
        loop {
            let conn = {
                let mut all = self.by_slot.lock().unwrap_or_else(|e| e.into_inner());
                all.get_mut(slot as usize)?.pop()?
            };
            let idle = now.saturating_duration_since(conn.since);
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

    /// Keeps `stream` for the next request to the node (up to a bound per node).
    pub fn checkin(&self, slot: u32, epoch: u64, stream: TcpStream) {
        let mut all = self.by_slot.lock().unwrap_or_else(|e| e.into_inner());
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
}
