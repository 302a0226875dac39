//! [`Request`]: one parsed request as every attempt to forward it sees it, built once by
//! the exchange and read by the relay.

use super::node_pool::RawPools;
use crate::h1::RequestHead;
use crate::proxy::pipeline::Matched;
use crate::state::Balancer;

/// What every attempt of one request shares.
pub(super) struct Request<'a> {
    pub(super) head: &'a RequestHead,
    pub(super) src: &'a [u8],
    pub(super) m: Matched<'a>,
    pub(super) lines: &'a [Option<&'a str>],
    pub(super) sep: char,
    pub(super) path_param: Option<&'a str>,
    pub(super) started_ms: u64,
    pub(super) host: &'a str,
    pub(super) balancer: &'a Balancer,
    pub(super) pools: &'a RawPools,
    pub(super) tls: bool,
}
