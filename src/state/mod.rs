//! The running balancer's state: what the request path reads and bumps, and what outlives a
//! reload. No sockets here; the proxy and control layers drive it, and `control::exposition`
//! renders its counters for `/metrics`.
//!
//! From the leaves up (a module imports only modules above it in this list):
//!
//! - [`metrics`]: metric names, and the counters and histograms of nodes and pools;
//! - [`cookies`]: the session cookie's attributes the nodes were seen to set, per context;
//! - [`unknown_ids`]: the `rename` binder's negative cache of ids the store does not know;
//! - [`registry`]: sessions seen recently, live sessions per node slot, drain completion;
//! - [`node`]: per-node runtime that survives reloads (operator state, health, counters);
//! - [`snapshot`]: the immutable routing table (pools, nodes), swapped whole on reload;
//! - [`runtime_nodes`]: nodes from DNS discovery and the admin API, merged into each snapshot;
//! - [`discovery`]: each pool's discovery status and counters;
//! - [`cluster`]: the group's states and counts as this instance knows them (`cluster:`);
//! - [`operator`]: operator state changes (drain, disable, ...) behind one interface;
//! - [`balancer`]: the one handle that holds them all, with the balancer's own counters and
//!   the work that reads several of them (counting a request, reporting drain completion);
//! - [`membership`]: nodes joining and leaving at runtime (discovery answers, the API), the
//!   drain of a leaving node and its removal.

pub mod balancer;
pub mod cluster;
pub mod cookies;
pub mod discovery;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod operator;
pub mod registry;
pub mod runtime_nodes;
pub mod snapshot;
pub mod unknown_ids;

pub use balancer::Balancer;
