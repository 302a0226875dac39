//! The demo: a Tomcat-like demo application server and the `stickyroute demo` command.
