//! [`Request`]: one parsed request as every attempt to forward it sees it, built once by
//! the exchange and read by the relay.

use std::time::Instant;

use crate::core::session::IdLocation;
use crate::h1::RequestHead;
use crate::proxy::pipeline::{self, Matched, SessionEdit};
use crate::proxy::upstream::UpstreamPools;
use crate::state::Balancer;

/// What every attempt of one request shares.
pub(super) struct Request<'a> {
    pub(super) head: &'a RequestHead,
    pub(super) src: &'a [u8],
    pub(super) m: Matched<'a>,
    pub(super) lines: &'a [Option<&'a str>],
    pub(super) sep: char,
    pub(super) path_param: Option<&'a str>,
    /// When the exchange started, and the same in [`crate::state::node::now_ms`]'s scale.
    pub(super) start: Instant,
    pub(super) started_ms: u64,
    pub(super) host: &'a str,
    pub(super) balancer: &'a Balancer,
    pub(super) pools: &'a UpstreamPools,
    pub(super) tls: bool,
}

impl Request<'_> {
    /// The session id the node must see: rewritten cookie lines or a rewritten target, each
    /// only when it changes (a sticky hit allocates nothing).
    pub(super) fn session_edit(
        &self,
        forward_id: Option<&str>,
    ) -> (Option<Vec<String>>, Option<String>) {
        let (Some(found), Some(fwd)) = (self.m.found.as_ref(), forward_id) else {
            return (None, None);
        };
        let loc = &found.location;
        // The target matters only to an id in a path parameter: a cookie's edit skips its UTF-8
        // check.
        let (path, query) = match loc {
            IdLocation::PathParam { .. } => (
                std::str::from_utf8(self.head.path(self.src)).unwrap_or("/"),
                self.head
                    .query(self.src)
                    .map(|q| std::str::from_utf8(q).unwrap_or("")),
            ),
            IdLocation::Cookie { .. } => ("", None),
        };
        match pipeline::session_edit(loc, self.lines, self.m.cookie_name, path, query, fwd) {
            SessionEdit::Unchanged => (None, None),
            SessionEdit::CookieLines(l) => (Some(l), None),
            SessionEdit::Target(t) => (None, Some(t)),
        }
    }
}
