//! stickyroute: a sticky-session HTTP load balancer for pools of Java-style application servers.
//!
//! # Layers
//!
//! Imports point one way, from the outer layers in; nothing imports a layer above it.
//!
//! ```text
//!  cli, demo            check / import / ctl (admin API client), the demo node and `demo`
//!     │
//!  control              admin API + status page, health checker, sweeper, cluster task, reload,
//!     │                 DNS discovery's lookup tasks
//!     │
//!  proxy                listeners + TLS, request pipeline, hyper service, upstream pools
//!     │
//!  state   store        snapshot, node runtime, registry, metrics, operator/group states,
//!     │      │          runtime nodes (DNS, admin API) and their joining and leaving │ stores
//!     │      │
//!  config   import      YAML → validated Config with file/line/key errors (no I/O) │
//!     │                 mod_jk / mod_proxy_balancer configuration → balancer.yaml text (no I/O)
//!     │
//!  core    h1   ajp      pure: session id, binders, selection, retry policy, header rewriting
//!                       │ the HTTP/1.1 codec (parse, validate, frame, write heads; no I/O)
//!                       │ the AJP/1.3 codec (Forward Request, body chunks, container packets)
//! ```
//!
//! One request (DESIGN.md "One request, end to end"): `proxy::listener` accepts, terminates
//! TLS, and hands the connection to a path by protocol: HTTP/1.1, on cleartext and TLS
//! listeners, to the native path `proxy::h1`; HTTP/2 (by prior knowledge on cleartext, by ALPN
//! on TLS) to hyper through `proxy::service`. Both run the one attempt loop
//! (`proxy::attempt::Attempts`) over `proxy::pipeline`'s phases: match the pool, extract the id
//! (`core::session`), select the node (`core::select`), rebind a moved session
//! (`core::binder`, the store for `rename`), forward (both paths on the `h1` codec and one set
//! of keep-alive node connections, `proxy::upstream`; HTTP/2 requests through
//! `proxy::node_http`), and rewrite the response on its way back. AJP/1.3
//! nodes (`protocol: ajp`) are reached from both paths on the `ajp` codec (`proxy::h1::ajp`,
//! `proxy::ajp_exchange`).

pub mod ajp;
pub mod cli;
pub mod config;
pub mod control;
pub mod core;
pub mod demo;
pub mod h1;
pub mod import;
pub mod proxy;
pub mod state;
pub mod store;
