//! Where the service tests find PostgreSQL, MariaDB and Redis.
//!
//! `TEST_POSTGRES_URL`, `TEST_MYSQL_URL` and `TEST_REDIS_URL` win when set. When one is unset,
//! the service's standard local address is used if something accepts a TCP connection there, so
//! `cargo test` on a machine that runs the services tests them without any variable. Only when
//! nothing answers does the test skip, loudly (a `SKIPPED:` line on the process's stderr), or
//! fail under `STICKYROUTE_REQUIRE_SERVICES=1` (CI).
//!
//! Included by `tests/common/mod.rs` and, through `#[path]`, by the test binaries that do not
//! use the rest of `common` (`stores`, `demo_node`).
#![allow(dead_code)]

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the probe of a standard address waits for a TCP connect.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The standard local URL of the service named by `var`, and the address to probe.
pub fn default_url(var: &str) -> Option<(&'static str, SocketAddr)> {
    let (url, port) = match var {
        "TEST_POSTGRES_URL" => ("postgres://postgres@127.0.0.1:5432/test", 5432),
        "TEST_MYSQL_URL" => ("mysql://root@127.0.0.1:3306/test", 3306),
        "TEST_REDIS_URL" => ("redis://127.0.0.1:6379/", 6379),
        _ => return None,
    };
    Some((url, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// Whether `STICKYROUTE_REQUIRE_SERVICES=1` makes a missing service a failure.
pub fn services_required() -> bool {
    std::env::var("STICKYROUTE_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// The URL of the service for `test`: `var` when set, else the standard local address when
/// something answers there. `None` after a loud skip notice; a panic when services are required.
pub fn service_url(var: &str, test: &str) -> Option<String> {
    if let Ok(v) = std::env::var(var) {
        if !v.trim().is_empty() {
            return Some(v);
        }
    }
    let default = default_url(var);
    if let Some((url, addr)) = default {
        if TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok() {
            return Some(url.to_string());
        }
    }
    let tried = default.map_or_else(String::new, |(url, _)| {
        format!(" (unset, and nothing answers at {url})")
    });
    if services_required() {
        panic!("{test} needs {var}{tried} (STICKYROUTE_REQUIRE_SERVICES=1)");
    }
    // Straight to the process's stderr: `eprintln!` would be captured by the harness and the
    // skip would go unnoticed.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test} needs {var}{tried}");
    None
}
