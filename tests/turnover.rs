//! `stickyroute ctl turnover`, the built binary against a running balancer: it disables (or
//! drains) the node, prints plain progress lines when stdout is not a terminal, and exits 0 with
//! "… can be restarted now" once the API reports no live session and no request in flight, or 3
//! at the timeout with what is left. (The one-line terminal display is unit-tested in
//! `cli::turnover`.)

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use stickyroute::control::Running;
use stickyroute::core::node_state::NodeState;
use stickyroute::store::SessionStore;
use tokio::io::AsyncReadExt;

const TOKEN: &str = "turn0ver";

/// Three demo nodes behind a balancer with an admin listener and a token; `session_yaml` is
/// top-level YAML (e.g. a short idle timeout).
async fn setup(session_yaml: &str) -> (Running, Vec<stickyroute::demo::node::RunningNode>) {
    let store = SessionStore::memory();
    let mut nodes = Vec::new();
    let mut lines = Vec::new();
    for route in ["jvm1", "jvm2", "jvm3"] {
        let n = node(route, &store).await;
        lines.push(node_line(route, n.addr, ""));
        nodes.push(n);
    }
    let y = format!(
        "{session_yaml}{}",
        with_admin(&yaml("binder: translate", &lines), Some(TOKEN))
    );
    (balancer(&y).await, nodes)
}

/// New sessions until `want` of them are pinned to jvm2; returns those.
async fn sessions_on_jvm2(addr: SocketAddr, want: usize) -> Vec<Session> {
    let mut on = Vec::new();
    for _ in 0..200 {
        let mut s = Session::new();
        assert_eq!(s.get(addr, "/count").await.status, 200);
        if s.pin() == "jvm2" {
            on.push(s);
            if on.len() == want {
                return on;
            }
        }
    }
    panic!("no sessions landed on jvm2");
}

fn turnover(lb: &Running, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_stickyroute"));
    c.args([
        "ctl",
        "--admin",
        &format!("http://{}", lb.admin_addr.unwrap()),
        "turnover",
    ])
    .args(args)
    .env("STICKYROUTE_ADMIN_TOKEN", TOKEN)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// What a child process writes to one of its pipes, collected as it comes.
struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Captured {
    fn start(mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Captured {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = bytes.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Captured { bytes, reader }
    }

    /// What arrived so far.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// Everything, once the pipe is closed (the process has exited).
    async fn finish(self) -> String {
        let Captured { bytes, reader } = self;
        tokio::time::timeout(DEADLINE, reader)
            .await
            .expect("the pipe stayed open after the process exited")
            .unwrap();
        let bytes = bytes.lock().unwrap();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

async fn state_is(lb: &Running, route: &str, state: NodeState) {
    let ctl = admin_client(lb, Some(TOKEN));
    eventually(&format!("{route} {state:?}"), DEADLINE, || async {
        node_report(&ctl.status().await.unwrap(), route).state == state.as_str()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_waits_until_the_sessions_moved() {
    let (lb, _nodes) = setup("").await;
    let addr = lb.addr();
    let mut on2 = sessions_on_jvm2(addr, 2).await;
    let mut child = turnover(&lb, &["jvm2", "--timeout", "60s"])
        .spawn()
        .unwrap();
    let stdout = Captured::start(child.stdout.take().unwrap());
    let stderr = Captured::start(child.stderr.take().unwrap());
    state_is(&lb, "jvm2", NodeState::Disabled).await;
    // Still two sessions pinned there: the command reports them and waits.
    wait::until("turnover to report jvm2's two live sessions", || async {
        stdout
            .text()
            .lines()
            .any(|l| l.starts_with("jvm2 disabled: 2 live sessions, 0 in flight, "))
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "turnover exited with two sessions left: {}",
        stdout.text()
    );
    let ctl = admin_client(&lb, Some(TOKEN));
    assert_eq!(
        node_report(&ctl.status().await.unwrap(), "jvm2").live_sessions,
        2
    );
    // Each session moves on its next request.
    for s in &mut on2 {
        let r = s.get(addr, "/count").await;
        assert_eq!(r.status, 200);
        assert_ne!(r.node(), "jvm2");
    }
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("turnover did not finish after the sessions moved")
        .unwrap();
    let (stdout, stderr) = (stdout.finish().await, stderr.finish().await);
    assert!(status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "jvm2: active -> disabled (pool app)", "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("jvm2 disabled: 2 live sessions, 0 in flight, ")),
        "a plain progress line with what is left: {stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("jvm2 disabled: 0 live sessions")),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\r'),
        "no terminal control without a terminal"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("jvm2 can be restarted now"),
        "{stdout}"
    );
    // Unchanged lines are not repeated every poll.
    let repeated = lines.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(repeated, 0, "{stdout}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_in_flight_requests_and_expired_sessions() {
    // Sessions end on their own after 2 s of idleness.
    let (lb, _nodes) = setup("session: { idle_timeout: 2s }\n").await;
    let addr = lb.addr();
    let mut s = sessions_on_jvm2(addr, 1).await.remove(0);
    let ctl = admin_client(&lb, Some(TOKEN));
    // A slow request of that session is in flight on jvm2 when the drain starts.
    let slow = tokio::spawn(async move {
        let r = s.get(addr, "/slow?ms=3000").await;
        (r.status, r.node().to_string())
    });
    eventually("the slow request in flight", DEADLINE, || async {
        node_report(&ctl.status().await.unwrap(), "jvm2").in_flight == 1
    })
    .await;
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        turnover(
            &lb,
            &["jvm2", "--drain", "--pool", "app", "--timeout", "25s"],
        )
        .output(),
    )
    .await
    .expect("turnover hung")
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        slow.await.unwrap(),
        (http::StatusCode::OK, "jvm2".to_string()),
        "draining keeps the pinned request on its node"
    );
    assert!(
        stdout.contains("jvm2 draining: 1 live session, 1 in flight"),
        "{stdout}"
    );
    assert!(stdout.contains("jvm2 can be restarted now"), "{stdout}");
    // Not before the request ended (3 s) and its session expired (2 s later).
    assert!(started.elapsed() >= Duration::from_secs(2), "{stdout}");
    assert_eq!(
        node_report(&ctl.status().await.unwrap(), "jvm2").state,
        "draining"
    );
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_exits_3_with_what_is_left_and_errors_are_clear() {
    let (lb, _nodes) = setup("").await;
    let _on2 = sessions_on_jvm2(lb.addr(), 1).await;
    let out = turnover(&lb, &["jvm2", "--drain", "--timeout", "2s"])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "timed out after 2s: jvm2 still has 1 live session, 0 in flight; it stays draining"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("stickyroute ctl activate jvm2"), "{stderr}");
    state_is(&lb, "jvm2", NodeState::Draining).await;

    // A route the balancer does not have: the server's reason, exit 1.
    let out = turnover(&lb, &["jvm9"]).output().await.unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("jvm9"), "{stderr}");
    // A pool it does not have.
    let out = turnover(&lb, &["jvm1", "--pool", "nope"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("nope"), "{}", text(&out).1);
    // Bad timeouts are usage errors naming the flag.
    for bad in ["soon", "0s"] {
        let out = turnover(&lb, &["jvm1", "--timeout", bad])
            .output()
            .await
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--timeout"), "{bad}: {stderr}");
    }
    // A wrong token.
    let out = turnover(&lb, &["jvm1"])
        .env("STICKYROUTE_ADMIN_TOKEN", "wrong")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("invalid admin token"),
        "{}",
        text(&out).1
    );
    // Nothing listening.
    let dead = dead_addr().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args([
            "ctl",
            "--admin",
            &format!("http://{dead}"),
            "turnover",
            "jvm1",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("cannot reach the admin listener"),
        "{}",
        text(&out).1
    );
    lb.stop().await;
}

/// `ctl::run` (the library entry programs use) collects the progress lines and the verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_entry_collects_progress_and_verdict() {
    use stickyroute::cli::ctl::{run, CtlArgs, CtlCommand, CtlError};
    use stickyroute::cli::turnover::{TurnoverArgs, TurnoverError};
    let (lb, _nodes) = setup("").await;
    let args = |route: &str, drain: bool, timeout: Duration| CtlArgs {
        admin: format!("http://{}", lb.admin_addr.unwrap()),
        token: Some(TOKEN.to_string()),
        json: false,
        command: CtlCommand::Turnover(TurnoverArgs {
            route: route.to_string(),
            pool: None,
            drain,
            timeout,
        }),
    };
    // No session anywhere: done at the first poll.
    let text = run(&args("jvm1", false, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>()[..2],
        [
            "jvm1: active -> disabled (pool app)",
            "jvm1 disabled: 0 live sessions, 0 in flight, 0s elapsed"
        ],
        "{text}"
    );
    assert!(
        text.ends_with(
            "jvm1 can be restarted now (after 0s); then: stickyroute ctl activate jvm1\n"
        ),
        "{text}"
    );
    // A session held on a draining node: the timeout as a typed error.
    let _on2 = sessions_on_jvm2(lb.addr(), 1).await;
    match run(&args("jvm2", true, Duration::from_millis(1500))).await {
        Err(CtlError::Turnover(e)) => match *e {
            TurnoverError::TimedOut { left, state, .. } => {
                assert_eq!(
                    (left.live_sessions, left.in_flight, left.drained),
                    (1, 0, false)
                );
                assert_eq!(state, NodeState::Draining);
            }
            other => panic!("{other}"),
        },
        other => panic!("{other:?}"),
    }
    lb.stop().await;
}
