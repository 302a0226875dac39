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

use crate::cli::client::{Client, CtlError};
use crate::core::node_state::NodeState;

pub mod remaining;

use remaining::{done_text, left, progress_line};
pub use remaining::{Left, TurnoverError};

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

pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    // The config's parser: the same units, and the same upper bound (`1y`).
    let d = crate::config::duration::parse(s)
        .map_err(|e| format!("{e} (expected a duration like 90s, 10m or 1h)"))?;
    if d.is_zero() {
        return Err("must be more than 0 (expected a duration like 90s, 10m or 1h)".into());
    }
    Ok(d)
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
/// `out` (`tty`: rewrite one line in place). A turnover that stops (timeout, node gone, state
/// changed by someone else) is [`CtlError::Turnover`].
pub async fn run<W: Write>(
    client: &Client,
    args: &TurnoverArgs,
    out: W,
    tty: bool,
) -> Result<Duration, CtlError> {
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
            }
            .into());
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
                CtlError::Turnover(t) if matches!(*t, TurnoverError::TimedOut { .. }) => {
                    EXIT_TIMEOUT
                }
                _ => 1,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_like_the_config() {
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
