//! The pure core: parsing and decisions, no I/O, no tokio, no hyper. Everything here is a
//! function of its arguments (plus atomics read through [`select::PoolView`]) and has
//! table-driven tests beside it.
//!
//! - [`session`]: finding the session id in a request (cookies, `;jsessionid=`), its pin route;
//! - [`binder`]: translate / rename / backend: which id to forward, which id the client holds,
//!   `Set-Cookie` and `Location` rewriting;
//! - [`cookie`]: the session cookie's attributes as the nodes set them (`Path`, `Domain`, …),
//!   which every `Set-Cookie` the balancer writes copies;
//! - [`select`]: sticky hit, new session, failover over a [`select::PoolView`];
//! - [`retry`]: what to do after a failed attempt (next node, replay, give up);
//! - [`discovery`]: a discovered node's route from its DNS name, when to look up again, what
//!   a lookup does to the pool's discovered set;
//! - [`forwarding`]: hop-by-hop headers and the `X-Forwarded-*` / `Forwarded` values;
//! - [`node_state`], [`health`]: the operator-state vocabulary and the rise/fall counter.

pub mod binder;
pub mod cookie;
pub mod discovery;
pub mod forwarding;
pub mod health;
pub mod node_state;
pub mod retry;
pub mod select;
pub mod session;
