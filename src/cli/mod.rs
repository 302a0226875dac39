//! The binary's subcommands, as library entry points `main` calls: `serve` (run the
//! balancer), `check` (validate a config file) and `ctl` (a client of the admin API, which
//! needs only `control::api`'s types), with `ctl turnover` in `turnover`.
//!
//! From the leaves up: `turnover::remaining` (what a status report says of a node being turned
//! over), `client` (the admin API over HTTP), `turnover`, `node_changes` (`ctl add-node`,
//! `ctl remove-node`), `ctl`; `check` and `serve` stand
//! apart.

pub mod check;
pub mod client;
pub mod ctl;
pub mod import;
pub mod node_changes;
pub mod serve;
pub mod turnover;
