//! stickyroute: a sticky-session HTTP load balancer for pools of Java-style application servers.
//!
//! # Layers
//!
//! Imports point one way, from the outer layers in; nothing imports a layer above it.
//!
//! ```text
//!  cli, demo            check / ctl (admin API client), the demo node and `stickyroute demo`
//!     │
//!  control              admin API + status page, health checker, sweeper, cluster task, reload
//!     │
//!  proxy                listeners + TLS, request pipeline, hyper service, upstream pools
//!     │
//!  state   store        snapshot, node runtime, registry, metrics, operator/group states │ stores
//!     │      │
//!  config               YAML → validated Config with file/line/key errors (no I/O)
//!     │
//!  core    h1           pure: session id, binders, selection, retry policy, header rewriting
//!                       │ the HTTP/1.1 codec (parse, validate, frame, write heads; no I/O)
//! ```
//!
//! One request (DESIGN.md "One request, end to end"): `proxy::listener` accepts,
//! `proxy::service` hands the request to `proxy::pipeline`, which matches the pool, extracts
//! the id (`core::session`), selects the node (`core::select`), rebinds a moved session
//! (`core::binder`, the store for `rename`), forwards over `proxy::upstream`, and rewrites the
//! response on its way back.

pub mod cli;
pub mod config;
pub mod control;
pub mod core;
pub mod demo;
pub mod h1;
pub mod proxy;
pub mod state;
pub mod store;
