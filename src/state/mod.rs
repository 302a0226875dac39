//! The running balancer's state: what the request path reads and bumps, and what outlives a
//! reload. No sockets here; the proxy and control layers drive it.
//!
//! - [`snapshot`]: the immutable routing table (pools, nodes), swapped whole on reload;
//! - [`node`]: per-node runtime that survives reloads (operator state, health, counters);
//! - [`registry`]: sessions seen recently, live sessions per node, drain completion;
//! - [`cookies`]: the session cookie's attributes the nodes were seen to set, per context;
//! - [`unknown_ids`]: the `rename` binder's negative cache of ids the store does not know;
//! - [`metrics`]: counters, histograms and the Prometheus rendering;
//! - [`operator`]: operator state changes (drain, disable, ...) behind one interface;
//! - [`cluster`]: the group's states and counts as this instance knows them (`cluster:`);
//! - [`balancer`]: the one handle that holds them all.

pub mod balancer;
pub mod cluster;
pub mod cookies;
pub mod metrics;
pub mod node;
pub mod operator;
pub mod registry;
pub mod snapshot;
pub mod unknown_ids;

pub use balancer::Balancer;
