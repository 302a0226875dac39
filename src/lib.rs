//! stickyroute: a sticky-session HTTP load balancer for pools of Java-style application servers.

pub mod demo;
pub mod store;
