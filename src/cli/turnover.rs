//! `stickyroute ctl turnover ROUTE`: the first half of a rolling restart in one command.
//!
//! It sets the node `disabled` (each pinned session moves on its next request) or, with
//! `--drain`, `draining` (pinned sessions stay until they end on their own), then polls
//! `GET /api/v1/status` until every node of that route (in `--pool`, or in every pool that has
//! it) reports no request in flight and no live session, and says so: "jvm2 can be restarted
//! now". The numbers come from the admin API and nothing else, so the same command works when
//! they are counted across several balancers.
//!
//! While it waits it shows one line — live sessions left, in flight, elapsed — rewritten in
//! place on a terminal and printed as plain lines (one per change, and one every
//! [`PLAIN_REPEAT`]) otherwise. At `--timeout` it exits [`EXIT_TIMEOUT`] with what is left;
//! the node stays in its state (`ctl activate ROUTE` puts it back).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::ctl::{Client, CtlError};
use crate::control::api::StatusReport;
use crate::core::node_state::NodeState;

/// Exit code when the node still has sessions or requests at the timeout (1: an error, 2: a
/// usage error, as for every command).
pub const EXIT_TIMEOUT: u8 = 3;
/// Default `--timeout`.
pub const DEFAULT_TIMEOUT: &str = "10m";
/// Time between two status polls.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Without a terminal, a line is printed when the numbers change, and at least this often.
pub const PLAIN_REPEAT: Duration = Duration::from_secs(30);

/// `stickyroute ctl turnover` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TurnoverArgs {
    /// The node's route (jvmRoute).
    pub route: String,
    /// Only in this pool (default: every pool with this route).
    #[arg(long)]
    pub pool: Option<String>,
    /// Set the node `draining` instead of `disabled`: sessions are not moved, they end on
    /// their own (within `session.idle_timeout`).
    #[arg(long)]
    pub drain: bool,
    /// Give up after this long (e.g. `90s`, `10m`, `1h`).
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    // The config's parser: the same units, and the same upper bound (`1y`).
    let d = crate::config::duration::parse(s)
        .map_err(|e| format!("{e} (expected a duration like 90s, 10m or 1h)"))?;
    if d.is_zero() {
        return Err("must be more than 0 (expected a duration like 90s, 10m or 1h)".into());
    }
    Ok(d)
}

/// What is left on the node, summed over the pools that have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    pub live_sessions: u64,
    pub in_flight: u64,
    /// Every node of the route reports `drained` (draining or disabled, no live session).
    pub drained: bool,
}

impl Left {
    /// Nothing left: the node can be restarted.
    pub fn done(&self) -> bool {
        self.drained && self.live_sessions == 0 && self.in_flight == 0
    }
}

/// Why a turnover did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TurnoverError {
    /// The timeout came first; what was left at the last poll.
    #[error(
        "timed out after {}: {route} still has {}, {} in flight; it stays {} \
         (stickyroute ctl activate {route} puts it back)",
        elapsed_text(*.elapsed),
        plural(.left.live_sessions, "live session", "live sessions"),
        .left.in_flight,
        .state.as_str()
    )]
    TimedOut {
        route: String,
        state: NodeState,
        left: Left,
        elapsed: Duration,
    },
    #[error(transparent)]
    Ctl(#[from] CtlError),
    #[error("no node {route:?}{} in the balancer's status", in_pool(.pool))]
    NoSuchNode { route: String, pool: Option<String> },
    /// Someone else changed the node's state while we waited.
    #[error(
        "{route} is now {state} in pool {pool} (changed by someone else?): turnover stopped; \
         the node was not activated"
    )]
    StateChanged {
        route: String,
        pool: String,
        state: String,
    },
}

fn in_pool(pool: &Option<String>) -> String {
    pool.as_ref()
        .map_or_else(String::new, |p| format!(" in pool {p:?}"))
}

/// Reads what is left on `route` from a status report. `want`: the state turnover set.
pub fn left(
    s: &StatusReport,
    route: &str,
    pool: Option<&str>,
    want: NodeState,
) -> Result<Left, TurnoverError> {
    let mut found = false;
    let mut out = Left {
        live_sessions: 0,
        in_flight: 0,
        drained: true,
    };
    for p in s.pools.iter().filter(|p| pool.is_none_or(|w| w == p.name)) {
        for n in p.nodes.iter().filter(|n| n.route == route) {
            found = true;
            if n.state != want.as_str() {
                return Err(TurnoverError::StateChanged {
                    route: route.to_string(),
                    pool: p.name.clone(),
                    state: n.state.clone(),
                });
            }
            out.live_sessions += n.live_sessions;
            out.in_flight += n.in_flight;
            out.drained &= n.drained;
        }
    }
    if !found {
        return Err(TurnoverError::NoSuchNode {
            route: route.to_string(),
            pool: pool.map(str::to_string),
        });
    }
    Ok(out)
}

/// `1m05s`-style elapsed time, to the second.
pub fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The progress line: `jvm2 disabled: 3 live sessions, 1 in flight, 12s elapsed`.
pub fn progress_line(route: &str, state: NodeState, l: &Left, elapsed: Duration) -> String {
    format!(
        "{route} {}: {}, {} in flight, {} elapsed",
        state.as_str(),
        plural(l.live_sessions, "live session", "live sessions"),
        l.in_flight,
        elapsed_text(elapsed)
    )
}

/// The closing line of a turnover that finished.
pub fn done_text(route: &str, elapsed: Duration) -> String {
    format!(
        "{route} can be restarted now (after {}); then: stickyroute ctl activate {route}\n",
        elapsed_text(elapsed)
    )
}

/// Where progress goes: one rewritten line on a terminal, plain lines otherwise.
struct Progress<W: Write> {
    out: W,
    tty: bool,
    last: Option<(Left, Instant)>,
}

impl<W: Write> Progress<W> {
    fn show(&mut self, line: &str, l: Left, now: Instant) {
        if self.tty {
            // Carriage return + erase line: one line that updates in place.
            let _ = write!(self.out, "\r\x1b[K{line}");
        } else {
            let repeat = self
                .last
                .is_none_or(|(prev, at)| prev != l || now.duration_since(at) >= PLAIN_REPEAT);
            if !repeat {
                return;
            }
            let _ = writeln!(self.out, "{line}");
        }
        self.last = Some((l, now));
        let _ = self.out.flush();
    }

    fn finish(&mut self) {
        if self.tty && self.last.is_some() {
            let _ = writeln!(self.out);
        }
    }
}

/// Runs a turnover: sets the state, then waits; returns the time it took. Progress goes to
/// `out` (`tty`: rewrite one line in place).
pub async fn run<W: Write>(
    client: &Client,
    args: &TurnoverArgs,
    out: W,
    tty: bool,
) -> Result<Duration, TurnoverError> {
    let state = if args.drain {
        NodeState::Draining
    } else {
        NodeState::Disabled
    };
    let change = client
        .set_state(&args.route, state, args.pool.as_deref())
        .await?;
    let mut progress = Progress {
        out,
        tty,
        last: None,
    };
    for n in &change.nodes {
        let line = format!(
            "{}: {} -> {} (pool {})",
            args.route, n.previous, change.state, n.pool
        );
        let _ = writeln!(progress.out, "{line}");
    }
    let started = Instant::now();
    let deadline = started + args.timeout;
    loop {
        let now = Instant::now();
        let l = left(
            &client.status().await?,
            &args.route,
            args.pool.as_deref(),
            state,
        )?;
        progress.show(
            &progress_line(&args.route, state, &l, now - started),
            l,
            now,
        );
        if l.done() {
            progress.finish();
            return Ok(now - started);
        }
        if now >= deadline {
            progress.finish();
            return Err(TurnoverError::TimedOut {
                route: args.route.clone(),
                state,
                left: l,
                elapsed: now - started,
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

/// `stickyroute ctl turnover`: 0 when the node can be restarted, [`EXIT_TIMEOUT`] at the
/// timeout (what is left on stderr), 1 on any other error.
pub async fn run_cli(client: Client, args: &TurnoverArgs) -> std::process::ExitCode {
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    match run(&client, args, stdout.lock(), tty).await {
        Ok(elapsed) => {
            print!("{}", done_text(&args.route, elapsed));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(match e {
                TurnoverError::TimedOut { .. } => EXIT_TIMEOUT,
                _ => 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{NodeReport, PoolReport, RegistryReport};

    fn node(route: &str, state: &str, live: u64, in_flight: u64) -> NodeReport {
        NodeReport {
            route: route.into(),
            address: "127.0.0.1:1".into(),
            domain: String::new(),
            weight: 1,
            state: state.into(),
            config_state: "active".into(),
            health: "up".into(),
            in_flight,
            requests: 0,
            failovers_in: 0,
            failovers_out: 0,
            connect_errors: 0,
            upstream_errors: 0,
            live_sessions: live,
            drained: state != "active" && state != "standby" && live == 0,
            last_error: None,
        }
    }

    fn report(pools: Vec<(&str, Vec<NodeReport>)>) -> StatusReport {
        serde_json::from_value(serde_json::json!({
            "version": "0",
            "config": "x",
            "registry": RegistryReport { sessions: 0, max_sessions: 1, rejected: 0 },
            "pools": pools.into_iter().map(|(name, nodes)| PoolReport {
                name: name.into(),
                binder: "translate".into(),
                health_checks: false,
                nodes,
            }).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn left_sums_over_pools_and_honours_pool() {
        let s = report(vec![
            (
                "a",
                vec![node("jvm1", "disabled", 2, 1), node("jvm2", "active", 9, 9)],
            ),
            ("b", vec![node("jvm1", "disabled", 3, 0)]),
        ]);
        let d = NodeState::Disabled;
        let all = left(&s, "jvm1", None, d).unwrap();
        assert_eq!(
            (all.live_sessions, all.in_flight, all.drained),
            (5, 1, false)
        );
        assert!(!all.done());
        let b = left(&s, "jvm1", Some("b"), d).unwrap();
        assert_eq!((b.live_sessions, b.in_flight), (3, 0));
        assert!(matches!(
            left(&s, "jvm9", None, d),
            Err(TurnoverError::NoSuchNode { .. })
        ));
        assert!(matches!(
            left(&s, "jvm2", Some("b"), d),
            Err(TurnoverError::NoSuchNode { .. })
        ));
        // Someone activated it meanwhile.
        let e = left(&s, "jvm2", None, d).unwrap_err();
        assert!(
            e.to_string().contains("jvm2 is now active in pool a"),
            "{e}"
        );
    }

    #[test]
    fn done_needs_no_session_no_request_and_drained() {
        let s = report(vec![("a", vec![node("jvm1", "draining", 0, 1)])]);
        let l = left(&s, "jvm1", None, NodeState::Draining).unwrap();
        assert!(l.drained && !l.done(), "a request in flight holds it");
        let s = report(vec![("a", vec![node("jvm1", "draining", 0, 0)])]);
        assert!(left(&s, "jvm1", None, NodeState::Draining).unwrap().done());
        // `drained` is what the API says, even when the counts are 0 (another balancer of a
        // cluster may still see sessions).
        let mut n = node("jvm1", "draining", 0, 0);
        n.drained = false;
        let s = report(vec![("a", vec![n])]);
        assert!(!left(&s, "jvm1", None, NodeState::Draining).unwrap().done());
    }

    #[test]
    fn lines_and_times() {
        assert_eq!(elapsed_text(Duration::from_millis(999)), "0s");
        assert_eq!(elapsed_text(Duration::from_secs(65)), "1m05s");
        assert_eq!(elapsed_text(Duration::from_secs(3725)), "1h02m05s");
        let l = Left {
            live_sessions: 1,
            in_flight: 0,
            drained: false,
        };
        assert_eq!(
            progress_line("jvm2", NodeState::Disabled, &l, Duration::from_secs(12)),
            "jvm2 disabled: 1 live session, 0 in flight, 12s elapsed"
        );
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("ten minutes").unwrap_err().contains("90s"));
        assert_eq!(parse_timeout("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_timeout("1000000000y")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn terminal_rewrites_one_line_plain_prints_changes() {
        let l = |n| Left {
            live_sessions: n,
            in_flight: 0,
            drained: false,
        };
        let t0 = Instant::now();
        let mut tty = Progress {
            out: Vec::new(),
            tty: true,
            last: None,
        };
        tty.show("a", l(2), t0);
        tty.show("b", l(2), t0);
        tty.finish();
        assert_eq!(String::from_utf8(tty.out).unwrap(), "\r\x1b[Ka\r\x1b[Kb\n");
        let mut plain = Progress {
            out: Vec::new(),
            tty: false,
            last: None,
        };
        plain.show("a", l(2), t0);
        plain.show("same", l(2), t0 + Duration::from_secs(1));
        plain.show("c", l(1), t0 + Duration::from_secs(2));
        plain.show("again", l(1), t0 + Duration::from_secs(2) + PLAIN_REPEAT);
        plain.finish();
        assert_eq!(String::from_utf8(plain.out).unwrap(), "a\nc\nagain\n");
    }
}
