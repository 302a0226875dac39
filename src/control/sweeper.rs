//! The registry's background work: expiring idle sessions, logging drain completion, and
//! ticking the one-second clock the request path reads.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::state::balancer::Balancer;

/// How often drain completion is checked.
pub const DRAIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Expires idle sessions (every `idle_timeout / 4`, between 1 s and 60 s) and logs drain
/// completion (every [`DRAIN_CHECK_INTERVAL`]) until `shutdown`.
pub async fn run_sweeper(balancer: Arc<Balancer>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(DRAIN_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_sweep = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snap = balancer.snapshot();
        let registry = &balancer.registry;
        registry.tick();
        let every = (snap.config.session.idle_timeout / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        if last_sweep.elapsed() >= every {
            last_sweep = Instant::now();
            let removed = registry.sweep_at(registry.now());
            if removed > 0 {
                tracing::debug!(removed, "expired idle sessions from the registry");
            }
        }
        balancer.report_drained();
    }
}
