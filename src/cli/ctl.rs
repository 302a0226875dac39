//! `stickyroute ctl`: the admin API from the command line.
//!
//! `ctl status | drain ROUTE | disable ROUTE | activate ROUTE | standby ROUTE | reload |
//! turnover ROUTE` ([`crate::cli::turnover`]) `| add-node ROUTE ADDRESS | remove-node ROUTE`
//! ([`crate::cli::node_changes`]), with
//! `--admin URL` (default `http://127.0.0.1:9901`), `--token` (or `STICKYROUTE_ADMIN_TOKEN`) and
//! `--json`. Output is a readable table by default; a failure exits non-zero with the server's
//! reason. It runs on [`Client`] (from [`crate::cli::client`], re-exported here with
//! [`CtlError`] for programs and tests).

use std::fmt::Write as _;

use crate::cli::node_changes::{self, AddNodeArgs, RemoveNodeArgs};
use crate::cli::turnover::{self, TurnoverArgs};
use crate::control::api::{ClusterReport, StatusReport};
use crate::control::api::{ReloadReport, ADMIN_TOKEN_ENV};
use crate::core::node_state::NodeState;

pub use crate::cli::client::{Client, CtlError};

/// The admin address `ctl` talks to unless told otherwise.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:9901";

/// `stickyroute ctl` arguments.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Admin listener URL.
    #[arg(long, default_value = DEFAULT_ADMIN_URL, env = "STICKYROUTE_ADMIN_URL", global = true)]
    pub admin: String,
    /// Admin token (required for changes when the server has one).
    #[arg(long, env = ADMIN_TOKEN_ENV, hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CtlCommand {
    /// Pools and nodes: state, health, in-flight, sessions, drained.
    Status,
    /// Pinned sessions stay, no new ones; `status` shows when the node is drained.
    Drain(RouteArgs),
    /// No traffic: each pinned session moves on its next request.
    Disable(RouteArgs),
    /// Back in rotation for new sessions.
    Activate(RouteArgs),
    /// Used only when no active node of its domain is up.
    Standby(RouteArgs),
    /// Re-read the configuration file.
    Reload,
    /// Disable (or drain) a node and wait until it has no live session and no request in
    /// flight: then it can be restarted. Exit 0 when it can, 3 at the timeout.
    Turnover(TurnoverArgs),
    /// Add a node to a pool at runtime (not written to the file; a restart forgets it).
    AddNode(AddNodeArgs),
    /// Drain a node added with add-node, and wait until it is removed. Exit 0 when it is
    /// gone, 3 at the timeout.
    RemoveNode(RemoveNodeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RouteArgs {
    /// The node's route (jvmRoute).
    pub route: String,
    /// Only in this pool (default: every pool with this route).
    #[arg(long)]
    pub pool: Option<String>,
}

/// Runs one `ctl` command and returns what to print.
pub async fn run(args: &CtlArgs) -> Result<String, CtlError> {
    let client = Client::new(&args.admin, args.token.clone())?;
    let state_cmd = |r: &RouteArgs, s: NodeState| (r.clone(), s);
    let change = match &args.command {
        CtlCommand::Status => {
            let s = client.status().await?;
            return Ok(if args.json {
                pretty(&s)
            } else {
                status_table(&s)
            });
        }
        CtlCommand::Reload => {
            let r = client.reload().await?;
            return Ok(if args.json {
                pretty(&r)
            } else {
                reload_text(&r)
            });
        }
        CtlCommand::Turnover(t) => {
            // Progress as plain lines, collected; `run_cli` streams them instead.
            let mut out = Vec::new();
            let elapsed = turnover::run(&client, t, &mut out, false).await?;
            let mut text = String::from_utf8_lossy(&out).into_owned();
            text.push_str(&turnover::remaining::done_text(&t.route, elapsed));
            return Ok(text);
        }
        CtlCommand::AddNode(a) => return node_changes::add(&client, a).await,
        CtlCommand::RemoveNode(r) => return node_changes::remove(&client, r).await,
        CtlCommand::Drain(r) => state_cmd(r, NodeState::Draining),
        CtlCommand::Disable(r) => state_cmd(r, NodeState::Disabled),
        CtlCommand::Activate(r) => state_cmd(r, NodeState::Active),
        CtlCommand::Standby(r) => state_cmd(r, NodeState::Standby),
    };
    let (r, state) = change;
    let c = client.set_state(&r.route, state, r.pool.as_deref()).await?;
    Ok(if args.json {
        pretty(&c)
    } else {
        c.nodes
            .iter()
            .map(|n| {
                format!(
                    "{}: {} -> {} (pool {})\n",
                    c.route, n.previous, c.state, n.pool
                )
            })
            .collect()
    })
}

/// `stickyroute ctl`: prints the result, or the error to stderr with exit code 1.
pub async fn run_cli(args: CtlArgs) -> std::process::ExitCode {
    if let CtlCommand::Turnover(t) = &args.command {
        return match Client::new(&args.admin, args.token.clone()) {
            Ok(client) => turnover::run_cli(client, t).await,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(1)
            }
        };
    }
    match run(&args).await {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(node_changes::exit_code(&e))
        }
    }
}

fn pretty<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

fn reload_text(r: &ReloadReport) -> String {
    let mut s = format!(
        "reloaded {}: {} pool(s), {} node(s)\n",
        r.file, r.pools, r.nodes
    );
    let list = |v: &[std::net::SocketAddr]| {
        v.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !r.listeners_added.is_empty() {
        let _ = writeln!(s, "listeners added: {}", list(&r.listeners_added));
    }
    if !r.listeners_removed.is_empty() {
        let _ = writeln!(s, "listeners removed: {}", list(&r.listeners_removed));
    }
    if !r.listeners_restarted.is_empty() {
        let _ = writeln!(s, "listeners restarted: {}", list(&r.listeners_restarted));
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

/// Rows as columns padded to their widest cell (the last column is not padded).
fn aligned(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The group: connection, instances, and each node as each instance sees it.
pub fn cluster_text(c: &ClusterReport) -> String {
    let alive = c.instances.iter().filter(|i| i.alive).count();
    let mut out = format!(
        "cluster {}: {}, {} of {} instance(s) alive (this one: {})\n",
        c.name,
        if c.connected {
            "connected".to_string()
        } else {
            format!(
                "DISCONNECTED ({})",
                c.error.as_deref().unwrap_or("no connection")
            )
        },
        alive,
        c.instances.len(),
        c.instance,
    );
    if !c.connected {
        out.push_str(
            "changes are refused until Redis is back; nodes keep their last known states\n",
        );
    }
    let mut rows = vec![["INSTANCE", "ALIVE", "LAST SEEN", "ADMIN"]
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()];
    for i in &c.instances {
        rows.push(vec![
            if i.local {
                format!("{} (this)", i.id)
            } else {
                i.id.clone()
            },
            if i.alive { "yes" } else { "no" }.to_string(),
            if i.local {
                "-".to_string()
            } else {
                format!("{}ms ago", i.last_seen_ms)
            },
            i.admin.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push_str(&aligned(&rows));
    let mut rows = vec![["POOL", "ROUTE", "INSTANCE", "SESSIONS", "IN-FLIGHT"]
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()];
    for i in c.instances.iter().filter(|i| i.alive) {
        for n in &i.nodes {
            rows.push(vec![
                n.pool.clone(),
                n.route.clone(),
                i.id.clone(),
                n.live_sessions.to_string(),
                n.in_flight.to_string(),
            ]);
        }
    }
    rows[1..].sort_by(|a, b| (&a[0], &a[1], &a[2]).cmp(&(&b[0], &b[1], &b[2])));
    out.push_str(&aligned(&rows));
    out
}

/// The status as an aligned table, one row per node; in a cluster, the sessions, in-flight
/// and drained columns are the group's, and the group follows.
pub fn status_table(s: &StatusReport) -> String {
    let head = [
        "POOL",
        "ROUTE",
        "ADDRESS",
        "STATE",
        "SOURCE",
        "HEALTH",
        "IN-FLIGHT",
        "REQUESTS",
        "FAILOVERS IN/OUT",
        "SESSIONS",
        "DRAINED",
        "LAST ERROR",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for p in &s.pools {
        for n in &p.nodes {
            rows.push(vec![
                p.name.clone(),
                n.route.clone(),
                n.address.clone(),
                if n.leaving {
                    format!("{} (leaving)", n.state)
                } else {
                    n.state.clone()
                },
                n.source.clone(),
                n.health.clone(),
                n.in_flight.to_string(),
                n.requests.to_string(),
                format!("{}/{}", n.failovers_in, n.failovers_out),
                n.live_sessions.to_string(),
                if n.drained { "yes" } else { "-" }.to_string(),
                n.last_error.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    let mut out = aligned(&rows);
    for p in &s.pools {
        if let Some(d) = &p.discovery {
            let _ = writeln!(
                out,
                "pool {}: discovery {} {}: {} node(s){}{}",
                p.name,
                d.kind,
                d.name,
                d.records,
                if d.stale { ", stale" } else { "" },
                d.error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" ({e})"))
            );
        }
    }
    let _ = writeln!(
        out,
        "registry: {} of {} sessions tracked{}",
        s.registry.sessions,
        s.registry.max_sessions,
        if s.registry.rejected > 0 {
            format!(", {} not tracked (full)", s.registry.rejected)
        } else {
            String::new()
        }
    );
    if let Some(c) = &s.cluster {
        out.push_str(&cluster_text(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let s = StatusReport {
            version: "0".into(),
            config: "x".into(),
            registry: crate::control::api::RegistryReport {
                sessions: 3,
                max_sessions: 10,
                rejected: 0,
            },
            pools: vec![crate::control::api::PoolReport {
                name: "app".into(),
                binder: "translate".into(),
                health_checks: false,
                discovery: None,
                nodes: ["jvm1", "jvm22"]
                    .iter()
                    .map(|r| crate::control::api::NodeReport {
                        route: r.to_string(),
                        address: "127.0.0.1:1".into(),
                        domain: String::new(),
                        weight: 1,
                        state: "draining".into(),
                        config_state: "active".into(),
                        health: "up".into(),
                        in_flight: 0,
                        requests: 5,
                        failovers_in: 1,
                        failovers_out: 2,
                        live_sessions: 3,
                        drained: false,
                        connect_errors: 0,
                        upstream_errors: 0,
                        last_error: None,
                        source: "file".into(),
                        leaving: false,
                    })
                    .collect(),
            }],
            cluster: None,
        };
        let t = status_table(&s);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("POOL  ROUTE  ADDRESS"), "{t}");
        assert!(lines[1].starts_with("app   jvm1   127.0.0.1:1"), "{t}");
        assert_eq!(lines[1].find("draining"), lines[0].find("STATE"), "{t}");
        assert!(t.contains("registry: 3 of 10"));
        assert!(!t.contains("cluster"), "{t}");
        assert_eq!(lines[1].find("file"), lines[0].find("SOURCE"), "{t}");

        // A discovered, leaving node and the pool's discovery line.
        let mut s = s;
        s.pools[0].nodes[1].source = "discovery".into();
        s.pools[0].nodes[1].leaving = true;
        s.pools[0].discovery = Some(crate::control::api::DiscoveryReport {
            kind: "srv".into(),
            name: "_http._tcp.tomcat".into(),
            last_lookup_ms: 1,
            next_lookup_ms: 2,
            records: 1,
            error: Some("the server answered SERVFAIL".into()),
            stale: true,
        });
        let t = status_table(&s);
        assert!(t.contains("draining (leaving)  discovery"), "{t}");
        assert!(
            t.contains("pool app: discovery srv _http._tcp.tomcat: 1 node(s), stale (the server answered SERVFAIL)"),
            "{t}"
        );
    }

    #[test]
    fn the_group_follows_the_table() {
        use crate::control::api::{InstanceNodeReport, InstanceReport};
        let node = |route: &str, live| InstanceNodeReport {
            pool: "app".into(),
            route: route.into(),
            live_sessions: live,
            in_flight: 0,
        };
        let c = ClusterReport {
            name: "prod".into(),
            connected: false,
            instance: "i0".into(),
            error: Some("connection refused".into()),
            errors: 3,
            instances: vec![
                InstanceReport {
                    id: "i0".into(),
                    alive: true,
                    local: true,
                    admin: None,
                    last_seen_ms: 0,
                    nodes: vec![node("jvm1", 0)],
                },
                InstanceReport {
                    id: "i2".into(),
                    alive: true,
                    local: false,
                    admin: Some("10.0.0.2:9901".into()),
                    last_seen_ms: 400,
                    nodes: vec![node("jvm1", 7)],
                },
                InstanceReport {
                    id: "i9".into(),
                    alive: false,
                    local: false,
                    admin: None,
                    last_seen_ms: 9000,
                    nodes: vec![],
                },
            ],
        };
        let t = cluster_text(&c);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("cluster prod: DISCONNECTED (connection refused)"),
            "{t}"
        );
        assert!(lines[0].contains("2 of 3 instance(s) alive"), "{t}");
        assert!(lines[1].starts_with("changes are refused"), "{t}");
        assert!(lines[3].starts_with("i0 (this)  yes"), "{t}");
        assert!(
            lines[4].contains("400ms ago") && lines[4].ends_with("10.0.0.2:9901"),
            "{t}"
        );
        assert!(lines[5].starts_with("i9         no"), "{t}");
        assert!(t.contains("app   jvm1   i2        7"), "{t}");
    }
}
