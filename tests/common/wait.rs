//! Bounded waits for a condition: a test that needs something to have happened polls for it
//! instead of sleeping for a guessed time, and fails with what it awaited when it does not come.
//!
//! Included by `tests/common/mod.rs` and, through `#[path]`, by the test binaries that do not
//! use the rest of `common` (`demo_node`).
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

/// How long a condition may take before the test fails: generous, so that a loaded machine
/// does not fail a test whose condition comes a little late.
pub const LIMIT: Duration = Duration::from_secs(10);

/// How often the condition is polled.
pub const POLL: Duration = Duration::from_millis(5);

/// Polls `check` every [`POLL`] until it returns true; panics after [`LIMIT`] naming `what`.
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("waited {LIMIT:?} for: {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}
