//! stickyroute: a sticky-session HTTP load balancer for pools of Java-style application servers.
//!
//! # Layout
//!
//! - [`config`]: `balancer.yaml` -> validated [`config::Config`];
//! - [`session`]: finding the session id in a request, its pin route, rewriting it;
//! - [`binder`]: translate / rename / backend rebinding decisions;
//! - [`backends`]: nodes, pools and the hot-swapped routing [`backends::Snapshot`];
//! - [`balance`]: selecting the node (sticky hit, new session, failover);
//! - [`upstream`]: keep-alive connections to nodes;
//! - [`proxy`]: the request path;
//! - [`h1`]: the HTTP/1.1 codec of the fast path (parse, validate, frame, write heads; no I/O);
//! - [`server`]: listeners, TLS, graceful shutdown;
//! - [`balancer`]: the shared state handle;
//! - [`registry`]: sessions seen recently, live sessions per node, drain completion;
//! - [`health`]: active health checks;
//! - [`metrics`]: Prometheus metric names, counters and `/metrics`;
//! - [`control`]: what runs next to the proxy (admin, health checks, sweeper) and hot reload;
//! - [`admin`]: the admin listener (JSON API, `/metrics`, status page);
//! - [`ctl`]: `stickyroute ctl`, a client of the admin API;
//! - [`store`]: session stores for the `rename` binder;
//! - [`demo`]: the demo node and `stickyroute demo`.

pub mod admin;
pub mod backends;
pub mod balance;
pub mod balancer;
pub mod binder;
pub mod config;
pub mod control;
pub mod ctl;
pub mod demo;
pub mod h1;
pub mod health;
pub mod metrics;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod session;
pub mod store;
pub mod tls;
pub mod upstream;
