//! Several balancers, one pool (README "Running several balancers"): real `stickyroute serve`
//! processes of one group on a real Redis share drain / activate, live-session counts and the
//! "drained" verdict; a Redis restart is survived; two groups on one Redis stay apart.
//!
//! Needs `TEST_REDIS_URL` (skipped loudly without it, a failure with
//! `STICKYROUTE_REQUIRE_SERVICES=1`); the restart test also runs a private `redis-server` on a
//! free port (the shared one is never stopped). Every test uses a group name of its own and
//! deletes the group's keys at the end.

mod common;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use stickyroute::cli::ctl::{Client, CtlError};
use stickyroute::control::api::StatusReport;
use stickyroute::core::node_state::NodeState;
use stickyroute::store::SessionStore;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// How long a change may take to reach the other instances (the bound the README states).
const PROPAGATION: Duration = Duration::from_secs(2);
/// Heartbeat of the test instances: counts and liveness move within a few of these.
const HEARTBEAT: &str = "200ms";

async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// A group name no other test run uses.
fn group_name(test: &str) -> String {
    format!("t-{test}-{}-{:08x}", std::process::id(), rand_u32())
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(16)
}

/// One `stickyroute serve` process of a group.
struct Instance {
    id: String,
    config: PathBuf,
    log: PathBuf,
    proxy: SocketAddr,
    child: Option<Child>,
    ctl: Client,
}

impl Instance {
    /// Writes the instance's config (file states: every node active) and starts it.
    async fn start(
        dir: &Path,
        id: &str,
        redis: &str,
        group: &str,
        nodes: &[(&str, SocketAddr)],
    ) -> Instance {
        let proxy = SocketAddr::from(([127, 0, 0, 1], free_port().await));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port().await));
        let mut yaml = format!(
            "listeners:\n  - bind: \"{proxy}\"\nadmin:\n  bind: \"{admin}\"\nsession:\n  idle_timeout: 2s\n\
             cluster:\n  redis: \"{redis}\"\n  name: \"{group}\"\n  instance: \"{id}\"\n  heartbeat: {HEARTBEAT}\n\
             pools:\n  - name: app\n    nodes:\n"
        );
        for (route, addr) in nodes {
            yaml.push_str(&format!(
                "      - {{ route: {route}, address: \"{addr}\" }}\n"
            ));
        }
        let config = dir.join(format!("{id}.yaml"));
        std::fs::write(&config, yaml).unwrap();
        let ctl = Client::new(&format!("http://{admin}"), None).unwrap();
        let mut inst = Instance {
            id: id.to_string(),
            log: dir.join(format!("{id}.log")),
            config,
            proxy,
            child: None,
            ctl,
        };
        inst.spawn().await;
        inst
    }

    /// Starts (or restarts) the process and waits for its admin listener.
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
            .args(["serve", "--threads", "1", "-c"])
            .arg(&self.config)
            .env("RUST_LOG", "info,stickyroute::proxy=warn")
            .env_remove("STICKYROUTE_ADMIN_TOKEN")
            .env_remove("STICKYROUTE_CLUSTER_REDIS")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let ctl = self.ctl.clone();
        eventually(
            &format!("instance {} answers on its admin port", self.id),
            Duration::from_secs(10),
            || {
                let ctl = ctl.clone();
                async move { ctl.status().await.is_ok() }
            },
        )
        .await;
    }

    /// Kills the process (no goodbye to the group) and waits for it to exit.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    async fn status(&self) -> StatusReport {
        self.ctl.status().await.expect("status")
    }

    async fn state(&self, route: &str) -> String {
        node_report(&self.status().await, route).state.clone()
    }

    /// Live instances of the group this instance sees, itself included.
    async fn alive(&self) -> usize {
        match self.ctl.status().await {
            Ok(s) => s
                .cluster
                .map_or(0, |c| c.instances.iter().filter(|i| i.alive).count()),
            Err(_) => 0,
        }
    }

    async fn connected(&self) -> bool {
        self.ctl
            .status()
            .await
            .ok()
            .and_then(|s| s.cluster)
            .is_some_and(|c| c.connected)
    }
}

impl Drop for Instance {
    /// A failed test shows what the instance logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("--- instance {} log (last lines) ---", self.id);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Waits until `route` has `state` on every instance; returns how long it took.
async fn until_state(
    instances: &[&Instance],
    route: &str,
    state: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    for inst in instances {
        let what = format!("instance {} shows {route} {state}", inst.id);
        let ctl = inst.ctl.clone();
        eventually(&what, within.saturating_sub(start.elapsed()), || {
            let ctl = ctl.clone();
            async move {
                ctl.status()
                    .await
                    .is_ok_and(|s| node_report(&s, route).state == state)
            }
        })
        .await;
    }
    start.elapsed()
}

/// Deletes every key of `group` (test cleanup).
async fn delete_group(redis_url: &str, group: &str) {
    let Ok(client) = redis::Client::open(redis_url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("stickyroute:{group}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
    }
}

async fn hget(redis_url: &str, key: &str, field: &str) -> Option<String> {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(&mut conn)
        .await
        .ok()?
}

/// The score of `member` in the sorted set `key` (`None` when either is missing).
async fn zscore(redis_url: &str, key: &str, member: &str) -> Option<u64> {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(key)
        .arg(member)
        .query_async(&mut conn)
        .await
        .ok()?;
    score.map(|s| s as u64)
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A new session through `proxy`, retried until it lands on `route` (p2c over two nodes).
async fn session_on(proxy: SocketAddr, route: &str) -> Session {
    for _ in 0..40 {
        let mut s = Session::new();
        let r = s.get(proxy, "/count").await;
        assert_eq!(r.status, 200, "{}", r.text());
        if r.node() == route {
            return s;
        }
    }
    panic!("no new session landed on {route} in 40 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_drain_counts_and_activate() {
    let Some(redis) = service_url(
        "TEST_REDIS_URL",
        "three_instances_share_drain_counts_and_activate",
    ) else {
        return;
    };
    let group = group_name("three");
    let store = SessionStore::memory();
    let (jvm1, jvm2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let dir = tempfile::tempdir().unwrap();
    let mut i = Vec::new();
    for id in ["i0", "i1", "i2"] {
        let nodes = [("jvm1", jvm1.addr), ("jvm2", jvm2.addr)];
        i.push(Instance::start(dir.path(), id, &redis, &group, &nodes).await);
    }
    for inst in &i {
        eventually(
            &format!("instance {} sees the three instances alive", inst.id),
            Duration::from_secs(5),
            || async { inst.alive().await == 3 },
        )
        .await;
    }

    // A session on jvm1 known only to instance 2; instance 0 counts it through the group.
    let mut pinned = session_on(i[2].proxy, "jvm1").await;
    eventually(
        "instance 0 counts instance 2's session on jvm1",
        Duration::from_secs(3),
        || async { node_report(&i[0].status().await, "jvm1").live_sessions >= 1 },
    )
    .await;
    let s0 = i[0].status().await;
    let own = &s0.cluster.as_ref().unwrap().instances[0];
    assert!(own.local && own.id == "i0");
    assert_eq!(
        own.nodes
            .iter()
            .find(|n| n.route == "jvm1")
            .unwrap()
            .live_sessions,
        0,
        "instance 0 itself saw no session"
    );

    // Drain said to instance 0 reaches 1 and 2 within 2 s.
    let change = i[0]
        .ctl
        .set_state("jvm1", NodeState::Draining, None)
        .await
        .unwrap();
    assert_eq!(change.nodes[0].previous, "active");
    let took = until_state(&[&i[1], &i[2]], "jvm1", "draining", PROPAGATION).await;
    eprintln!("drain reached instances 1 and 2 in {took:?}");

    // The pinned session stays (through its own instance, which keeps it live there).
    let r = pinned.get(i[2].proxy, "/count").await;
    assert_eq!((r.status.as_u16(), r.node()), (200, "jvm1"));
    // Instance 0 has no session on jvm1, instance 2 has one: not drained.
    let n = node_report(&i[0].status().await, "jvm1").clone();
    assert_eq!(n.state, "draining");
    assert!(n.live_sessions >= 1, "{n:?}");
    assert!(!n.drained, "instance 0 must not report jvm1 drained: {n:?}");
    let table = stickyroute::cli::ctl::status_table(&i[0].status().await);
    assert!(
        table.contains(&format!("cluster {group}: connected, 3 of 3")),
        "{table}"
    );

    // Instances 1 and 2 send no new session to jvm1.
    for inst in [&i[1], &i[2]] {
        for _ in 0..8 {
            let r = get(inst.proxy, "/count", None).await;
            assert_eq!(
                (r.status.as_u16(), r.node()),
                (200, "jvm2"),
                "via {}",
                inst.id
            );
        }
    }

    // A restarted instance comes back with the group's state, not its file's (active).
    i[1].kill().await;
    i[1].spawn().await;
    assert_eq!(i[1].state("jvm1").await, "draining", "restarted instance 1");
    for _ in 0..5 {
        assert_eq!(get(i[1].proxy, "/count", None).await.node(), "jvm2");
    }
    // A reload keeps the group's state too (the file says active).
    i[0].ctl.reload().await.unwrap();
    assert_eq!(i[0].state("jvm1").await, "draining", "after reload");

    // Once instance 2's session expires (idle_timeout 2s), the group reports jvm1 drained.
    eventually(
        "instance 0 reports jvm1 drained once no instance has a live session on it",
        Duration::from_secs(8),
        || async { node_report(&i[0].status().await, "jvm1").drained },
    )
    .await;

    // Activate said to instance 2 reaches all.
    i[2].ctl
        .set_state("jvm1", NodeState::Active, None)
        .await
        .unwrap();
    until_state(&[&i[0], &i[1]], "jvm1", "active", PROPAGATION).await;
    let stored = hget(&redis, &format!("stickyroute:{group}:states:app"), "jvm1")
        .await
        .unwrap();
    assert!(
        stored.contains("\"state\":\"active\"") && stored.contains("\"by\":\"i2\""),
        "{stored}"
    );

    for inst in &mut i {
        inst.kill().await;
    }
    delete_group(&redis, &group).await;
}

/// A private `redis-server` on `port` (never the shared one), without persistence: a restart
/// loses every key, as an operator's cache-only Redis would.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// `None` (skip) when `redis-server` is not installed, unless services are required.
    async fn start(port: u16) -> Option<PrivateRedis> {
        let available = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            if common::services::services_required() {
                panic!("redis-server is not installed (STICKYROUTE_REQUIRE_SERVICES=1)");
            }
            // Straight to the process's stderr, past the harness's capture (as `service_url`).
            let _ = writeln!(std::io::stderr(), "SKIPPED: needs redis-server on PATH");
            return None;
        }
        let mut r = PrivateRedis { port, child: None };
        r.spawn().await;
        Some(r)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let url = self.url();
        eventually(
            "the private redis-server answers",
            Duration::from_secs(5),
            || {
                let url = url.clone();
                async move {
                    let Ok(c) = redis::Client::open(url) else {
                        return false;
                    };
                    match c.get_multiplexed_async_connection().await {
                        Ok(mut conn) => redis::cmd("PING")
                            .query_async::<String>(&mut conn)
                            .await
                            .is_ok(),
                        Err(_) => false,
                    }
                }
            },
        )
        .await;
    }

    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_keeps_serving_refuses_changes_and_resyncs() {
    // The gate is the same as for every Redis test; the Redis used is a private one.
    if service_url(
        "TEST_REDIS_URL",
        "redis_restart_keeps_serving_refuses_changes_and_resyncs",
    )
    .is_none()
    {
        return;
    }
    let Some(mut redis) = PrivateRedis::start(free_port().await).await else {
        return;
    };
    let url = redis.url();
    let group = group_name("restart");
    let store = SessionStore::memory();
    let (jvm1, jvm2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let nodes = [("jvm1", jvm1.addr), ("jvm2", jvm2.addr)];
    let dir = tempfile::tempdir().unwrap();
    let mut i0 = Instance::start(dir.path(), "i0", &url, &group, &nodes).await;
    let mut i1 = Instance::start(dir.path(), "i1", &url, &group, &nodes).await;
    for inst in [&i0, &i1] {
        eventually("both instances alive", Duration::from_secs(5), || async {
            inst.alive().await == 2
        })
        .await;
    }
    let mut pinned = session_on(i1.proxy, "jvm1").await;
    i0.ctl
        .set_state("jvm1", NodeState::Draining, None)
        .await
        .unwrap();
    until_state(&[&i1], "jvm1", "draining", PROPAGATION).await;

    // Redis goes away: both say disconnected, and keep serving with the last known states.
    redis.kill().await;
    for inst in [&i0, &i1] {
        eventually(
            &format!("instance {} reports the cluster disconnected", inst.id),
            Duration::from_secs(3),
            || async { !inst.connected().await },
        )
        .await;
    }
    let s = i1.status().await;
    let c = s.cluster.as_ref().unwrap();
    assert!(!c.connected && c.error.is_some(), "{c:?}");
    assert!(
        !node_report(&s, "jvm1").drained,
        "no drain verdict without the group"
    );
    let r = pinned.get(i1.proxy, "/count").await;
    assert_eq!(
        (r.status.as_u16(), r.node()),
        (200, "jvm1"),
        "pinned session stays"
    );
    for _ in 0..6 {
        let r = get(i1.proxy, "/count", None).await;
        assert_eq!(
            (r.status.as_u16(), r.node()),
            (200, "jvm2"),
            "still draining jvm1"
        );
    }
    assert!(stickyroute::cli::ctl::status_table(&s).contains("DISCONNECTED"));

    // A change said while disconnected is refused with a clear error, and nothing changes
    // locally.
    let err = i0
        .ctl
        .set_state("jvm1", NodeState::Active, None)
        .await
        .unwrap_err();
    match &err {
        CtlError::Server { status, message } => {
            assert_eq!(status.as_u16(), 503, "{err}");
            assert!(
                message.contains("disconnected") && message.contains(&group),
                "{err}"
            );
        }
        other => panic!("expected a 503, got {other}"),
    }
    assert_eq!(i0.state("jvm1").await, "draining");
    let metrics = i0.ctl.metrics().await.unwrap();
    let line = format!("stickyroute_cluster_connected{{group=\"{group}\"}} 0");
    assert!(metrics.contains(&line), "{metrics}");

    // Redis is back, empty: the instances reconnect, write the state they know back, and
    // changes flow again.
    redis.spawn().await;
    for inst in [&i0, &i1] {
        eventually(
            &format!("instance {} reconnects", inst.id),
            Duration::from_secs(5),
            || async { inst.connected().await },
        )
        .await;
    }
    let stored = hget(&url, &format!("stickyroute:{group}:states:app"), "jvm1").await;
    assert!(
        stored
            .as_deref()
            .is_some_and(|v| v.contains("\"state\":\"draining\"")),
        "the group's state is written back: {stored:?}"
    );
    let metrics = i0.ctl.metrics().await.unwrap();
    let line = format!("stickyroute_cluster_disconnects_total{{group=\"{group}\"}} 1");
    assert!(metrics.contains(&line), "{metrics}");
    i1.ctl
        .set_state("jvm1", NodeState::Active, None)
        .await
        .unwrap();
    until_state(&[&i0], "jvm1", "active", PROPAGATION).await;

    i0.kill().await;
    i1.kill().await;
    redis.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_on_one_redis_do_not_see_each_other() {
    let Some(redis) = service_url(
        "TEST_REDIS_URL",
        "two_groups_on_one_redis_do_not_see_each_other",
    ) else {
        return;
    };
    let (ga, gb) = (group_name("a"), group_name("b"));
    let store = SessionStore::memory();
    let (jvm1, jvm2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let nodes = [("jvm1", jvm1.addr), ("jvm2", jvm2.addr)];
    let dir = tempfile::tempdir().unwrap();
    let mut a = Instance::start(dir.path(), "one", &redis, &ga, &nodes).await;
    let mut b = Instance::start(dir.path(), "two", &redis, &gb, &nodes).await;
    // Both have the same pool and routes; each changes one node.
    a.ctl
        .set_state("jvm1", NodeState::Draining, None)
        .await
        .unwrap();
    b.ctl
        .set_state("jvm2", NodeState::Disabled, None)
        .await
        .unwrap();
    // A third instance of group A picks up A's state at start (so A's keys are there) ...
    let mut a2 = Instance::start(dir.path(), "three", &redis, &ga, &nodes).await;
    assert_eq!(a2.state("jvm1").await, "draining");
    assert_eq!(
        a2.state("jvm2").await,
        "active",
        "group B's change stays in group B"
    );
    // ... and after several heartbeats, each group still sees only its own members and states.
    eventually(
        "group A sees its two instances",
        Duration::from_secs(3),
        || async { a.alive().await == 2 },
    )
    .await;
    // Group B's instance publishes its heartbeat time and reads its group's members in one
    // step, one heartbeat after the other: once two heartbeats have started since A's third
    // instance was seen, the first of them has read B's members with it there to be seen.
    let (seen_a2, first) = (epoch_ms(), std::sync::Mutex::new(None));
    let (key, url, first) = (&format!("stickyroute:{gb}:instances"), &redis, &first);
    wait::until("two heartbeats of group B's instance", || async move {
        let Some(t) = zscore(url, key, "two").await.filter(|&t| t > seen_a2) else {
            return false;
        };
        let mut first = first.lock().unwrap();
        t > *first.get_or_insert(t)
    })
    .await;
    let (sa, sb) = (a.status().await, b.status().await);
    let ids = |s: &StatusReport| {
        let mut v: Vec<String> = s
            .cluster
            .as_ref()
            .unwrap()
            .instances
            .iter()
            .map(|i| i.id.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&sa), ["one", "three"]);
    assert_eq!(ids(&sb), ["two"]);
    assert_eq!(
        (
            node_report(&sa, "jvm1").state.as_str(),
            node_report(&sa, "jvm2").state.as_str()
        ),
        ("draining", "active")
    );
    assert_eq!(
        (
            node_report(&sb, "jvm1").state.as_str(),
            node_report(&sb, "jvm2").state.as_str()
        ),
        ("active", "disabled")
    );
    for inst in [&mut a, &mut a2, &mut b] {
        inst.kill().await;
    }
    delete_group(&redis, &ga).await;
    delete_group(&redis, &gb).await;
}

/// The propagation delay over 100 changes (the figure in the README), by
/// hand: `cargo test --test cluster -- --ignored --nocapture`. Three instances; instance 0 is
/// told drain / activate in turn; the delay is from the admin call's start until both others
/// show the new state (their status polled back to back, so the figure includes up to one
/// status round trip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn propagation_delay_over_100_changes() {
    let Some(redis) = service_url("TEST_REDIS_URL", "propagation_delay_over_100_changes") else {
        return;
    };
    let group = group_name("delay");
    let store = SessionStore::memory();
    let (jvm1, jvm2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let nodes = [("jvm1", jvm1.addr), ("jvm2", jvm2.addr)];
    let dir = tempfile::tempdir().unwrap();
    let mut i = Vec::new();
    for id in ["i0", "i1", "i2"] {
        i.push(Instance::start(dir.path(), id, &redis, &group, &nodes).await);
    }
    let mut delays = Vec::new();
    for k in 0..100 {
        let (state, name) = if k % 2 == 0 {
            (NodeState::Draining, "draining")
        } else {
            (NodeState::Active, "active")
        };
        let start = Instant::now();
        i[0].ctl.set_state("jvm1", state, None).await.unwrap();
        let mut pending = vec![&i[1], &i[2]];
        while !pending.is_empty() {
            assert!(
                start.elapsed() < PROPAGATION,
                "change {k} took over {PROPAGATION:?}"
            );
            let mut next = Vec::new();
            for inst in pending {
                if inst.state("jvm1").await != name {
                    next.push(inst);
                }
            }
            pending = next;
        }
        delays.push(start.elapsed());
    }
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "propagation over {} changes: p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms, min {:.2} ms",
        delays.len(),
        ms(delays[delays.len() / 2]),
        ms(delays[delays.len() * 9 / 10]),
        ms(delays[delays.len() - 1]),
        ms(delays[0]),
    );
    for inst in &mut i {
        inst.kill().await;
    }
    delete_group(&redis, &group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_through_one_instance_is_served_by_all() {
    let Some(redis) = service_url(
        "TEST_REDIS_URL",
        "a_node_added_through_one_instance_is_served_by_all",
    ) else {
        return;
    };
    let group = group_name("nodes");
    let store = SessionStore::memory();
    let (jvm1, jvm2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let dir = tempfile::tempdir().unwrap();
    let mut a = Instance::start(dir.path(), "one", &redis, &group, &[("jvm1", jvm1.addr)]).await;
    let mut b = Instance::start(dir.path(), "two", &redis, &group, &[("jvm1", jvm1.addr)]).await;
    let add = stickyroute::cli::node_changes::AddNodeArgs {
        route: "jvm2".into(),
        address: jvm2.addr.to_string(),
        pool: "app".into(),
        weight: None,
        domain: None,
    };
    stickyroute::cli::node_changes::add(&a.ctl, &add)
        .await
        .unwrap();
    // The group has it: instance two serves it within a heartbeat or two.
    for inst in [&a, &b] {
        let ctl = inst.ctl.clone();
        eventually("jvm2 on every instance", PROPAGATION, || {
            let ctl = ctl.clone();
            async move {
                ctl.status().await.is_ok_and(|s| {
                    s.pools[0]
                        .nodes
                        .iter()
                        .any(|n| n.route == "jvm2" && n.state == "active")
                })
            }
        })
        .await;
    }
    assert_eq!(node_report(&b.status().await, "jvm2").source, "api");
    let on_jvm2 = session_on(b.proxy, "jvm2").await;
    drop(on_jvm2);
    // The same route again, through the other instance: the group refuses it.
    match stickyroute::cli::node_changes::add(&b.ctl, &add).await {
        Err(CtlError::Server { status, .. }) => assert_eq!(status, 409),
        other => panic!("expected 409, got {other:?}"),
    }
    // Removal through instance two: both drain it, then drop it.
    b.ctl
        .send(hyper::Method::DELETE, "/api/v1/nodes/jvm2?pool=app", None)
        .await
        .unwrap();
    for inst in [&a, &b] {
        let ctl = inst.ctl.clone();
        eventually(
            "jvm2 leaves every instance",
            Duration::from_secs(10),
            || {
                let ctl = ctl.clone();
                async move {
                    ctl.status().await.is_ok_and(|s| {
                        s.pools[0]
                            .nodes
                            .iter()
                            .find(|n| n.route == "jvm2")
                            .is_none_or(|n| n.leaving && n.state == "draining")
                    })
                }
            },
        )
        .await;
    }
    assert_eq!(
        hget(&redis, &format!("stickyroute:{group}:nodes:app"), "jvm2").await,
        None
    );
    for inst in [&mut a, &mut b] {
        inst.kill().await;
    }
    delete_group(&redis, &group).await;
}
