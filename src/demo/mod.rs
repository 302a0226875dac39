//! The demo: a Tomcat-like demo application server and the `stickyroute demo` command.
pub mod command;
pub mod node;
pub mod own_route;
