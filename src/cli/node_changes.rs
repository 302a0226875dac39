//! `stickyroute ctl add-node` and `ctl remove-node`: nodes added and removed at runtime through
//! the admin API (`POST /api/v1/nodes`, `DELETE /api/v1/nodes/{route}`). `add-node` returns
//! once the node is in the pool; `remove-node` waits, as `ctl turnover` does, until the node
//! has drained and is gone, and exits [`EXIT_TIMEOUT`] at `--timeout`.

use std::time::Duration;

use tokio::time::Instant;

use crate::cli::client::{Client, CtlError};
use crate::cli::turnover::{parse_timeout, DEFAULT_TIMEOUT, EXIT_TIMEOUT, POLL_INTERVAL};
use crate::control::api::{NewNode, StatusReport};

/// `ctl add-node` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AddNodeArgs {
    /// The node's route (its jvmRoute).
    pub route: String,
    /// Where it listens: `ip:port` or `host:port`.
    pub address: String,
    /// The pool to add it to.
    #[arg(long)]
    pub pool: String,
    #[arg(long)]
    pub weight: Option<u32>,
    /// Its replication domain.
    #[arg(long)]
    pub domain: Option<String>,
}

/// `ctl remove-node` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoveNodeArgs {
    /// The route of a node added through the API.
    pub route: String,
    #[arg(long)]
    pub pool: String,
    /// Give up waiting after this long (e.g. `90s`, `10m`); the removal goes on in the server.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// Adds the node; the text to print.
pub async fn add(client: &Client, args: &AddNodeArgs) -> Result<String, CtlError> {
    let node = NewNode {
        route: args.route.clone(),
        address: args.address.clone(),
        weight: args.weight,
        domain: args.domain.clone(),
    };
    client.add_node(&args.pool, &node).await?;
    Ok(format!(
        "{}: added to pool {} at {} (not written to the config file)\n",
        args.route, args.pool, args.address
    ))
}

/// Starts the removal and waits until the node is gone; the lines printed on the way.
pub async fn remove(client: &Client, args: &RemoveNodeArgs) -> Result<String, CtlError> {
    client.remove_node(&args.pool, &args.route).await?;
    let mut out = format!("{}: draining, removed once drained\n", args.route);
    let started = Instant::now();
    let deadline = started + args.timeout;
    loop {
        let status = client.status().await?;
        let Some((live, in_flight)) = still_there(&status, &args.pool, &args.route) else {
            out.push_str(&format!(
                "{}: removed from pool {} after {:.1}s\n",
                args.route,
                args.pool,
                started.elapsed().as_secs_f64()
            ));
            return Ok(out);
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(CtlError::Timeout(format!(
                "{} is still in pool {} after {:?}: {live} live session(s), {in_flight} in flight; the removal goes on in the server",
                args.route, args.pool, args.timeout
            )));
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

/// The node's live sessions and in-flight requests while it is still in the pool.
fn still_there(s: &StatusReport, pool: &str, route: &str) -> Option<(u64, u64)> {
    s.pools
        .iter()
        .find(|p| p.name == pool)?
        .nodes
        .iter()
        .find(|n| n.route == route)
        .map(|n| (n.live_sessions, n.in_flight))
}

/// The exit code of a failed `remove-node`: [`EXIT_TIMEOUT`] when it timed out.
pub fn exit_code(e: &CtlError) -> u8 {
    match e {
        CtlError::Timeout(_) => EXIT_TIMEOUT,
        _ => 1,
    }
}
