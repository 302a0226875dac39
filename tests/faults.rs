//! Faults under load, through real TCP on 127.0.0.1:
//! - a demo node process `SIGKILL`ed during a fixed-rate load of many sessions, with the
//!   sessions in Redis and in PostgreSQL: no failed GET, and every session's count seen exactly
//!   1, 2, 3, … (counted per session, every response);
//! - the `rename` binder's store stalled (Redis `CLIENT PAUSE`) or its connections terminated
//!   (PostgreSQL `pg_terminate_backend`) during load: `on_store_error` followed, every affected
//!   request counted in `stickyroute_store_errors_total`, and renames succeed again afterwards;
//! - misbehaving nodes under 200 concurrent requests (silent, garbage, closing mid-body,
//!   `Connection: close` on every response), while another pool keeps serving;
//! - 2,000 idle keep-alive client connections that all still work after load
//!   (`scripts/idle-conns.sh` does 10,000 against the release binary and reports RSS).
//!
//! The node-kill load is `STICKYROUTE_FAULTS_SECS` (default 30) seconds at
//! `STICKYROUTE_FAULTS_RATE` (default 1000) requests/s over `STICKYROUTE_FAULTS_SESSIONS`
//! (default 200) sessions. The tests that load the machine take one lock, so they run one after
//! the other and do not distort each other's timing; the Redis pause also stays out of the way
//! of the Redis node-kill test that way.
//!
//! Every case runs with HTTP/1.1 clients (the balancer's native path) and with h2c clients (its
//! hyper path), as `NAME::http1` and `NAME::h2c`.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::load::*;
use common::*;
use futures_util::future::join_all;
use stickyroute::store::{
    JdbcTable, OnStoreError, SessionRecord, SessionStore, StoreConfig, StoreKind,
};
use tokio::time::{Instant, MissedTickBehavior};

/// One load test at a time (see the module docs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Longest wait for one response of a load client: far above any latency of these tests, so
/// a response that does not arrive is a hang, reported as a failure.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// A node SIGKILLed under load
// ---------------------------------------------------------------------------------------------

/// The load of the node-kill tests.
struct Plan {
    secs: f64,
    rate: f64,
    sessions: usize,
}

fn env_number(var: &str, default: f64) -> f64 {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a number")),
        Err(_) => default,
    }
}

impl Plan {
    fn from_env() -> Plan {
        let plan = Plan {
            secs: env_number("STICKYROUTE_FAULTS_SECS", 30.0),
            rate: env_number("STICKYROUTE_FAULTS_RATE", 1000.0),
            sessions: env_number("STICKYROUTE_FAULTS_SESSIONS", 200.0) as usize,
        };
        assert!(
            (3.0..=600.0).contains(&plan.secs),
            "STICKYROUTE_FAULTS_SECS must be 3..600"
        );
        assert!(
            (10.0..=20_000.0).contains(&plan.rate),
            "STICKYROUTE_FAULTS_RATE must be 10..20000"
        );
        assert!(
            (3..=5_000).contains(&plan.sessions),
            "STICKYROUTE_FAULTS_SESSIONS must be 3..5000"
        );
        plan
    }

    /// Time between two requests of one session.
    fn period(&self) -> Duration {
        Duration::from_secs_f64(self.sessions as f64 / self.rate)
    }

    /// Most requests one session sends (the count bound of the loop; time bounds it too).
    fn per_session(&self) -> usize {
        (self.secs * self.rate / self.sessions as f64).ceil() as usize
    }
}

/// One request of a session: when it was sent and answered (ms from the start of the load),
/// what came back.
struct Sample {
    sent_ms: u64,
    done_ms: u64,
    status: u16,
    count: i64,
    node: String,
    error: Option<String>,
}

/// What one session did: its samples and the backend-facing id it ended with.
struct SessionRun {
    samples: Vec<Sample>,
    backend_id: Option<String>,
}

/// One client session at a fixed rate: `GET /count` with the cookie it was given, on one
/// keep-alive connection (a new one only if the balancer closed it or a request failed).
async fn drive_session(
    proto: Proto,
    addr: std::net::SocketAddr,
    plan: Arc<Plan>,
    start: Instant,
    index: usize,
) -> SessionRun {
    let period = plan.period();
    let first = start + period.mul_f64(index as f64 / plan.sessions as f64);
    let end = start + Duration::from_secs_f64(plan.secs);
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ms = |t: Instant| t.saturating_duration_since(start).as_millis() as u64;
    let mut conn: Option<LoadConn> = None;
    let mut cookie: Option<String> = None;
    let mut run = SessionRun {
        samples: Vec::with_capacity(plan.per_session()),
        backend_id: None,
    };
    for _ in 0..plan.per_session() {
        let at = tick.tick().await;
        if at >= end {
            break;
        }
        let sent = Instant::now();
        if !conn.as_ref().is_some_and(LoadConn::is_open) {
            conn = LoadConn::open(proto, addr).await.ok();
        }
        let result = match conn.as_mut() {
            Some(c) => c.get("/count", cookie.as_deref(), REQUEST_LIMIT).await,
            None => Err("cannot connect to the balancer".to_string()),
        };
        let mut sample = Sample {
            sent_ms: ms(sent),
            done_ms: ms(Instant::now()),
            status: 0,
            count: 0,
            node: String::new(),
            error: None,
        };
        match result {
            Ok(r) => {
                sample.status = r.status.as_u16();
                sample.node = r.header("x-node").unwrap_or("").to_string();
                if let Some(c) = r.session_cookies().pop() {
                    cookie = Some(c);
                }
                if r.status == 200 {
                    let body: serde_json::Value =
                        serde_json::from_slice(&r.body).unwrap_or_default();
                    sample.count = body["count"].as_i64().unwrap_or(0);
                    run.backend_id = body["session"].as_str().map(str::to_string);
                } else {
                    sample.error = Some(r.text());
                }
            }
            Err(e) => {
                sample.error = Some(e);
                conn = None;
            }
        }
        run.samples.push(sample);
    }
    run
}

/// The per-session check of the counts: every response `200`, counts 1, 2, 3, … in order.
#[derive(Default)]
struct CountReport {
    requests: usize,
    failed: Vec<String>,
    /// A count that did not go up: an increment lost (or a response from a stale session).
    lost: Vec<String>,
    /// A count that skipped exactly one, on the first request of a session pinned to the
    /// killed node that was in flight when it was killed: the dead node had applied the
    /// increment and died before answering, and the balancer replayed the GET elsewhere.
    replayed: Vec<String>,
    /// Any other skip.
    gaps: Vec<String>,
    /// Sessions the killed node served last before the kill.
    pinned_to_killed: usize,
    /// Sessions with a request sent after the kill.
    sessions_after_kill: usize,
    /// Responses completed in each second of the load.
    per_second: Vec<u32>,
}

fn check_counts(runs: &[SessionRun], killed: &str, kill_ms: (u64, u64)) -> CountReport {
    let mut r = CountReport::default();
    for (s, run) in runs.iter().enumerate() {
        let (mut prev, mut prev_node) = (0i64, "");
        let mut was_pinned = false;
        for x in &run.samples {
            r.requests += 1;
            let second = (x.done_ms / 1000) as usize;
            if r.per_second.len() <= second {
                r.per_second.resize(second + 1, 0);
            }
            r.per_second[second] += 1;
            if x.status != 200 {
                r.failed.push(format!(
                    "session {s} at {} ms: {} {}",
                    x.sent_ms,
                    x.status,
                    x.error.as_deref().unwrap_or("").trim()
                ));
                continue;
            }
            if x.sent_ms <= kill_ms.0 && x.node == killed {
                was_pinned = true;
            }
            let what = format!(
                "session {s}: count {} after {prev} ({prev_node} then {}, sent {} ms, answered {} ms)",
                x.count, x.node, x.sent_ms, x.done_ms
            );
            if x.count <= prev {
                r.lost.push(what);
            } else if x.count > prev + 1 {
                let in_flight_at_kill = x.sent_ms <= kill_ms.1 && x.done_ms >= kill_ms.0;
                if x.count == prev + 2
                    && prev_node == killed
                    && x.node != killed
                    && in_flight_at_kill
                {
                    r.replayed.push(what);
                } else {
                    r.gaps.push(what);
                }
            }
            prev = x.count;
            prev_node = &x.node;
        }
        r.pinned_to_killed += usize::from(was_pinned);
        r.sessions_after_kill += usize::from(run.samples.iter().any(|x| x.sent_ms > kill_ms.1));
    }
    r
}

/// Has each node count from its store before the load starts (a SQL schema may still be in
/// the making); the ids of the sessions this makes, to be removed at the end with the others.
async fn warm_up(nodes: &[NodeProcess]) -> Vec<String> {
    let mut ids = Vec::new();
    for n in nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = match LoadConn::open(Proto::Http1, n.addr).await {
                Ok(mut c) => c.get("/count", None, Duration::from_secs(2)).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(r) if r.status == 200 => {
                    ids.extend(r.json()["session"].as_str().map(str::to_string));
                    break;
                }
                other => assert!(
                    Instant::now() < deadline,
                    "{} does not answer /count: {:?}",
                    n.route,
                    other.map(|r| r.text())
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    ids
}

/// Prints what a node-kill load did (`what`: the load and the kill), for reading.
fn print_report(what: &str, report: &CountReport, kill_ms: u64) {
    let kill_second = (kill_ms / 1000) as usize;
    let around: Vec<String> = report
        .per_second
        .iter()
        .enumerate()
        .skip(kill_second.saturating_sub(3))
        .take(8)
        .map(|(s, n)| format!("{s}s:{n}"))
        .collect();
    eprintln!(
        "{what}, {} sessions were on it; failed {}, lost increments {}, replayed increments {}, \
         other gaps {}; responses per second around the kill: {}; all seconds: {:?}",
        report.pinned_to_killed,
        report.failed.len(),
        report.lost.len(),
        report.replayed.len(),
        report.gaps.len(),
        around.join(" "),
        report.per_second,
    );
    for r in &report.replayed {
        eprintln!(
            "REPLAYED INCREMENT (the killed node applied it, then died before answering): {r}"
        );
    }
}

/// Three demo node processes on one shared store, the balancer (default `translate` binder)
/// in front, `plan` load over many sessions, one node SIGKILLed at a third of the run.
async fn node_killed_under_load(proto: Proto, store_url: &str, cleanup: StoreKind) {
    let _serial = SERIAL.lock().await;
    let plan = Arc::new(Plan::from_env());
    let mut nodes: Vec<NodeProcess> = (1..=3)
        .map(|i| NodeProcess::start(&format!("jvm{i}"), store_url))
        .collect();
    let warm_up_ids = warm_up(&nodes).await;
    let lines: Vec<String> = nodes
        .iter()
        .map(|n| node_line(&n.route, n.addr, ""))
        .collect();
    let lb = balancer(&yaml("", &lines)).await;

    let start = Instant::now() + Duration::from_millis(200);
    let tasks: Vec<_> = (0..plan.sessions)
        .map(|i| tokio::spawn(drive_session(proto, lb.addr(), plan.clone(), start, i)))
        .collect();
    tokio::time::sleep_until(start + Duration::from_secs_f64(plan.secs / 3.0)).await;
    let killed = nodes[0].route.clone();
    let kill_before = start.elapsed().as_millis() as u64;
    nodes[0].kill();
    let kill_after = start.elapsed().as_millis() as u64;
    let runs: Vec<SessionRun> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("a session task panicked"))
        .collect();
    let report = check_counts(&runs, &killed, (kill_before, kill_after));
    let what = format!(
        "node kill under load ({proto}, {store_url}): {} requests over {} sessions in {:.0} s \
         (target {} req/s), {killed} SIGKILLed at {kill_before}–{kill_after} ms",
        report.requests, plan.sessions, plan.secs, plan.rate,
    );
    print_report(&what, &report, kill_before);

    // Every session is cleaned from the shared store, whatever the outcome.
    let store = SessionStore::open(&StoreConfig {
        kind: cleanup,
        timeout: Duration::from_secs(5),
        pool_size: 4,
        on_error: OnStoreError::Fail,
        negative_ttl: Duration::ZERO,
    })
    .unwrap();
    let ids = runs.iter().filter_map(|r| r.backend_id.as_deref());
    for id in ids.chain(warm_up_ids.iter().map(String::as_str)) {
        let _ = store.remove(id).await;
    }
    lb.stop().await;
    drop(nodes);

    // Not a throughput assertion (the figures above are for reading): the load went on past
    // the kill for every session.
    assert_eq!(
        report.sessions_after_kill, plan.sessions,
        "sessions with requests after the kill"
    );
    assert!(
        report.pinned_to_killed > 0,
        "no session was on the killed node"
    );
    assert!(
        report.failed.is_empty(),
        "{} of {} GETs failed: {:#?}",
        report.failed.len(),
        report.requests,
        &report.failed[..report.failed.len().min(10)]
    );
    assert!(
        report.lost.is_empty(),
        "lost increments: {:#?}",
        &report.lost[..report.lost.len().min(10)]
    );
    assert!(
        report.gaps.is_empty(),
        "counts skipped: {:#?}",
        &report.gaps[..report.gaps.len().min(10)]
    );
    // A replay can only be the one request per session that was on the node when it died.
    assert!(report.replayed.len() <= report.pinned_to_killed);
}

on_both_paths!(
    node_sigkilled_under_load_with_sessions_in_redis,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
async fn node_sigkilled_under_load_with_sessions_in_redis(proto: Proto) {
    let Some(url) = service_url(
        "TEST_REDIS_URL",
        "node_sigkilled_under_load_with_sessions_in_redis",
    ) else {
        return;
    };
    let cleanup = StoreKind::Redis {
        url: url.clone(),
        key: "session:{id}".into(),
    };
    node_killed_under_load(proto, &url, cleanup).await;
}

on_both_paths!(
    node_sigkilled_under_load_with_sessions_in_postgres,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
async fn node_sigkilled_under_load_with_sessions_in_postgres(proto: Proto) {
    let Some(url) = service_url(
        "TEST_POSTGRES_URL",
        "node_sigkilled_under_load_with_sessions_in_postgres",
    ) else {
        return;
    };
    let cleanup = StoreKind::Postgres {
        url: url.clone(),
        table: JdbcTable::default(),
    };
    node_killed_under_load(proto, &url, cleanup).await;
}

// ---------------------------------------------------------------------------------------------
// The rename binder's store stalled or cut during load
// ---------------------------------------------------------------------------------------------

/// How the store is made to fail for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StoreFault {
    /// `CLIENT PAUSE <ms> ALL` on Redis: every client's commands wait (what `DEBUG SLEEP`
    /// does, which Redis 7 refuses by default).
    RedisPause,
    /// The balancer's Redis behind a [`StallProxy`] that freezes: what `DEBUG SLEEP` does to
    /// a client, including that commands sent before the client gave up still run after the
    /// stall.
    RedisStall,
    /// The same proxy withholding only Redis's answers: every rename is done, and the
    /// balancer times out waiting to hear so.
    RedisRepliesLost,
    /// `pg_terminate_backend` of the balancer's store connections, again and again.
    PostgresTerminate,
}

/// When the fault starts and how long it lasts, from the start of the load; the load goes on
/// until `LOAD` to show the recovery.
const FAULT_AT: Duration = Duration::from_millis(1500);
const FAULT_FOR: Duration = Duration::from_millis(2000);
const STORE_LOAD: Duration = Duration::from_millis(6000);
/// Load clients and their total rate: each client sends its next request when the previous
/// one is answered, at most `STORE_RATE / STORE_CLIENTS` per second.
const STORE_CLIENTS: usize = 20;
const STORE_RATE: f64 = 150.0;
/// The balancer's store deadline, far below the fault.
const STORE_TIMEOUT: &str = "1s";
/// The count every prepared session holds.
const PREPARED_COUNT: i64 = 5;
/// The application name of the balancer's PostgreSQL connections: the ones the test
/// terminates (the nodes' connections, and other tests', are left alone).
const PG_APP: &str = "stickyroute-faults-lb";

/// One failed-over request of a prepared session.
struct RenameSample {
    old_id: String,
    sent_ms: u64,
    status: u16,
    /// The id the node received (`X-Session-Seen`).
    seen: String,
    /// The `JSESSIONID` the client was given, if any.
    cookie: Option<String>,
    count: i64,
    body: String,
    retry_after: bool,
}

fn random_base() -> String {
    format!("{:032X}", rand::random::<u128>())
}

/// Drives `ids` (sessions pinned to the disabled `jvm1`, one request each) through the balancer
/// from `STORE_CLIENTS` clients until `STORE_LOAD` or the ids run out.
async fn rename_load(
    proto: Proto,
    addr: std::net::SocketAddr,
    ids: Arc<Vec<String>>,
    start: Instant,
) -> Vec<RenameSample> {
    let next = Arc::new(AtomicUsize::new(0));
    let period = Duration::from_secs_f64(STORE_CLIENTS as f64 / STORE_RATE);
    let tasks: Vec<_> = (0..STORE_CLIENTS)
        .map(|_| {
            let (ids, next) = (ids.clone(), next.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(start, period);
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut conn: Option<LoadConn> = None;
                let mut out = Vec::new();
                loop {
                    let at = tick.tick().await;
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if at >= start + STORE_LOAD || i >= ids.len() {
                        return out;
                    }
                    if !conn.as_ref().is_some_and(LoadConn::is_open) {
                        conn = Some(
                            LoadConn::open(proto, addr)
                                .await
                                .expect("connect to the balancer"),
                        );
                    }
                    let sent_ms = start.elapsed().as_millis() as u64;
                    let c = conn.as_mut().unwrap();
                    let r = c
                        .get("/count", Some(&ids[i]), REQUEST_LIMIT)
                        .await
                        .unwrap_or_else(|e| panic!("request {i} at {sent_ms} ms: {e}"));
                    let body: serde_json::Value =
                        serde_json::from_slice(&r.body).unwrap_or_default();
                    out.push(RenameSample {
                        old_id: ids[i].clone(),
                        sent_ms,
                        status: r.status.as_u16(),
                        seen: r.seen().to_string(),
                        cookie: r.session_cookies().pop(),
                        count: body["count"].as_i64().unwrap_or(0),
                        body: r.text(),
                        retry_after: r.header("retry-after").is_some(),
                    });
                }
            })
        })
        .collect();
    join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.expect("a load client panicked"))
        .collect()
}

/// Runs the fault at `FAULT_AT` for `FAULT_FOR`; returns how many backends were terminated.
async fn inject(
    fault: StoreFault,
    url: String,
    proxy: Option<Arc<StallProxy>>,
    start: Instant,
) -> u64 {
    tokio::time::sleep_until(start + FAULT_AT).await;
    match fault {
        StoreFault::RedisStall | StoreFault::RedisRepliesLost => {
            let proxy = proxy.expect("a stall needs the proxy");
            if fault == StoreFault::RedisStall {
                proxy.stall();
            } else {
                proxy.stall_replies();
            }
            tokio::time::sleep(FAULT_FOR).await;
            proxy.resume();
            0
        }
        StoreFault::RedisPause => {
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            let _: () = redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(FAULT_FOR.as_millis() as u64)
                .arg("ALL")
                .query_async(&mut c)
                .await
                .unwrap();
            // The pause ends by itself; UNPAUSE after it is a no-op that makes sure.
            tokio::time::sleep(FAULT_FOR + Duration::from_millis(100)).await;
            let _: () = redis::cmd("CLIENT")
                .arg("UNPAUSE")
                .query_async(&mut c)
                .await
                .unwrap();
            0
        }
        StoreFault::PostgresTerminate => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let mut terminated = 0u64;
            let until = Instant::now() + FAULT_FOR;
            while Instant::now() < until {
                let rows: Vec<(bool,)> = sqlx::query_as(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name = $1 \
                     AND pid <> pg_backend_pid()",
                )
                .bind(PG_APP)
                .fetch_all(&pool)
                .await
                .unwrap();
                terminated += rows.iter().filter(|(ok,)| *ok).count() as u64;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            eprintln!("terminations ended at {} ms", start.elapsed().as_millis());
            pool.close().await;
            terminated
        }
    }
}

/// The stores of a store-fault test: the nodes' (straight to the service), the balancer's as
/// the start of its YAML mapping (through a [`StallProxy`] for a stall, under [`PG_APP`] on
/// PostgreSQL), and the proxy.
struct FaultStores {
    nodes: StoreKind,
    balancer_yaml: String,
    proxy: Option<Arc<StallProxy>>,
}

async fn fault_stores(fault: StoreFault, url: &str) -> FaultStores {
    let redis = || StoreKind::Redis {
        url: url.to_string(),
        key: "session:{id}".into(),
    };
    match fault {
        StoreFault::RedisPause => FaultStores {
            nodes: redis(),
            balancer_yaml: format!("{{ kind: redis, url: \"{url}\", key: \"session:{{id}}\""),
            proxy: None,
        },
        StoreFault::RedisStall | StoreFault::RedisRepliesLost => {
            // redis://[user@]host:port/db → the same through the proxy.
            let (scheme, rest) = url.split_once("://").unwrap();
            let (auth_host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let (auth, host) = match auth_host.rsplit_once('@') {
                Some((a, h)) => (format!("{a}@"), h),
                None => (String::new(), auth_host),
            };
            let upstream = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
            let p = Arc::new(StallProxy::start(upstream).await);
            let via = format!("{scheme}://{auth}{}/{path}", p.addr);
            FaultStores {
                nodes: redis(),
                balancer_yaml: format!("{{ kind: redis, url: \"{via}\", key: \"session:{{id}}\""),
                proxy: Some(p),
            }
        }
        StoreFault::PostgresTerminate => {
            let sep = if url.contains('?') { '&' } else { '?' };
            FaultStores {
                nodes: StoreKind::Postgres {
                    url: url.to_string(),
                    table: JdbcTable::default(),
                },
                balancer_yaml: format!(
                    "{{ kind: postgres, url: \"{url}{sep}application_name={PG_APP}\""
                ),
                proxy: None,
            }
        }
    }
}

/// The balancer of a store-fault test: `rename` with the store `lb_store` (the start of its
/// YAML mapping) and `policy`, over a disabled jvm1, `jvm2` and `jvm3`.
async fn rename_balancer(
    lb_store: &str,
    policy: OnStoreError,
    jvm2: std::net::SocketAddr,
    jvm3: std::net::SocketAddr,
) -> stickyroute::control::Running {
    let policy_name = match policy {
        OnStoreError::ForwardOldId => "forward_old_id",
        OnStoreError::Fail => "fail",
    };
    balancer(&yaml(
        &format!(
            "binder: rename\nstore: {lb_store}, timeout: {STORE_TIMEOUT}, on_store_error: {policy_name}, negative_ttl: 0s }}"
        ),
        &[
            node_line("jvm1", dead_addr().await, "state: disabled"),
            node_line("jvm2", jvm2, ""),
            node_line("jvm3", jvm3, ""),
        ],
    ))
    .await
}

/// More sessions than the load can use, each in `store` under `<base>.jvm1` with the count
/// `PREPARED_COUNT`; their ids.
async fn prepare_sessions(store: &SessionStore) -> Vec<String> {
    let n = (STORE_RATE * STORE_LOAD.as_secs_f64()) as usize + STORE_CLIENTS;
    let ids: Vec<String> = (0..n).map(|_| format!("{}.jvm1", random_base())).collect();
    let rec = SessionRecord {
        data: serde_json::json!({ "count": PREPARED_COUNT }),
        last_access_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        max_inactive_secs: 600,
        valid: true,
    };
    for chunk in ids.chunks(32) {
        for r in join_all(chunk.iter().map(|id| store.save(id, &rec))).await {
            r.unwrap();
        }
    }
    ids
}

/// The session id without its last route (`<base>` of `<base>.jvm1`).
fn base_of(id: &str) -> &str {
    id.rsplit_once('.').map_or(id, |(b, _)| b)
}

/// How the failed-over requests of a store-fault load went.
#[derive(Default)]
struct RenameTally {
    renamed: usize,
    kept_old: usize,
    refused: usize,
    /// Responses that follow neither the rename nor `on_store_error`.
    wrong: Vec<String>,
    /// Requests sent a second after the fault ended, and those of them renamed.
    after: usize,
    after_renamed: usize,
    not_renamed_after: Vec<String>,
}

/// Every response is either the renamed session (the node saw `<base>.jvm2|3` and the client
/// was given that id) or the policy's answer to a store error.
fn tally_renames(samples: &[RenameSample], policy: OnStoreError) -> RenameTally {
    let mut t = RenameTally::default();
    for s in samples {
        let moved = s.seen != s.old_id
            && base_of(&s.seen) == base_of(&s.old_id)
            && s.cookie.as_deref() == Some(s.seen.as_str());
        let outcome = match (s.status, policy) {
            (200, _) if moved && s.count == PREPARED_COUNT + 1 => &mut t.renamed,
            (200, OnStoreError::ForwardOldId)
                if s.seen == s.old_id && s.cookie.is_none() && s.count == PREPARED_COUNT + 1 =>
            {
                &mut t.kept_old
            }
            // `fail` always; `forward_old_id` when the rename may have been applied (a
            // timeout), since the old id may be gone.
            (503, _)
                if s.retry_after
                    && s.body == "503 Service Unavailable: the session store is unavailable\n" =>
            {
                &mut t.refused
            }
            _ => {
                t.wrong.push(format!(
                    "{} at {} ms: {} seen {:?} cookie {:?} count {} {:?}",
                    s.old_id, s.sent_ms, s.status, s.seen, s.cookie, s.count, s.body
                ));
                continue;
            }
        };
        *outcome += 1;
    }
    let fault_end_ms = (FAULT_AT + FAULT_FOR).as_millis() as u64;
    for s in samples.iter().filter(|s| s.sent_ms > fault_end_ms + 1000) {
        t.after += 1;
        if s.status == 200 && s.seen != s.old_id {
            t.after_renamed += 1;
        } else {
            t.not_renamed_after.push(format!(
                "{} at {} ms: {} {:?}",
                s.old_id, s.sent_ms, s.status, s.body
            ));
        }
    }
    t
}

/// The sessions the fault touched are all still there: a second request of each (the client
/// kept the old id) is renamed now and continues its count: 6 after a refusal, 7 after a
/// request served with the old id (whose rename the store may have applied late, which the
/// binder then finds done). What did not.
async fn ask_again(
    proto: Proto,
    addr: std::net::SocketAddr,
    samples: &[RenameSample],
) -> Vec<String> {
    let mut lost = Vec::new();
    for s in samples
        .iter()
        .filter(|s| s.status == 503 || s.seen == s.old_id)
    {
        let want = PREPARED_COUNT + if s.status == 503 { 1 } else { 2 };
        let r = proto.get(addr, "/count", Some(&s.old_id)).await;
        let count = if r.status == 200 {
            r.json()["count"].as_i64().unwrap_or(0)
        } else {
            0
        };
        if count != want || r.seen() == s.old_id {
            lost.push(format!(
                "{}: {} count {count} (want {want}), seen {}",
                s.old_id,
                r.status,
                r.seen()
            ));
        }
    }
    lost
}

/// Sessions of the disabled `jvm1` (count `PREPARED_COUNT`) in the store, failed over under
/// load by the `rename` binder while the store fails: the policy is followed, every store
/// error is counted, nothing is lost and renames work again after the fault.
async fn rename_under_store_fault(proto: Proto, fault: StoreFault, policy: OnStoreError) {
    let var = match fault {
        StoreFault::RedisPause | StoreFault::RedisStall | StoreFault::RedisRepliesLost => {
            "TEST_REDIS_URL"
        }
        StoreFault::PostgresTerminate => "TEST_POSTGRES_URL",
    };
    let test = format!("rename_under_store_fault({proto}, {fault:?}, {policy:?})");
    let Some(url) = service_url(var, &test) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let stores = fault_stores(fault, &url).await;
    // The nodes' store waits out the fault (its deadline is above the fault's length).
    let store = SessionStore::open(&StoreConfig {
        kind: stores.nodes,
        timeout: Duration::from_secs(10),
        pool_size: 16,
        on_error: OnStoreError::Fail,
        negative_ttl: Duration::ZERO,
    })
    .unwrap();
    store.ensure_schema().await.unwrap();
    let n2 = node("jvm2", &store).await;
    let n3 = node("jvm3", &store).await;
    let lb = rename_balancer(&stores.balancer_yaml, policy, n2.addr, n3.addr).await;
    let ids = Arc::new(prepare_sessions(&store).await);

    let errors_before = metric_sum(&lb, "stickyroute_store_errors_total", &[("pool", "app")]);
    let start = Instant::now() + Duration::from_millis(100);
    let fault_task = tokio::spawn(inject(fault, url.clone(), stores.proxy.clone(), start));
    let samples = rename_load(proto, lb.addr(), ids.clone(), start).await;
    let terminated = fault_task.await.unwrap();
    let errors =
        metric_sum(&lb, "stickyroute_store_errors_total", &[("pool", "app")]) - errors_before;
    let rebind_errors = metric_sum(
        &lb,
        "stickyroute_rebinds_total",
        &[("pool", "app"), ("result", "store_error")],
    );
    let t = tally_renames(&samples, policy);
    eprintln!(
        "{test}: {} requests, {} renamed, {} served with the old id, {} refused (503); store \
         errors counted {errors} (rebinds store_error {rebind_errors}); backends terminated \
         {terminated}; after the fault {} of {} renamed",
        samples.len(),
        t.renamed,
        t.kept_old,
        t.refused,
        t.after_renamed,
        t.after
    );
    let lost_after_fault = ask_again(proto, lb.addr(), &samples).await;
    let still_serving = proto.get(lb.addr(), "/health", None).await.status;

    for id in ids.iter() {
        let _ = store.remove(id).await;
        let _ = store.remove(&format!("{}.jvm2", base_of(id))).await;
        let _ = store.remove(&format!("{}.jvm3", base_of(id))).await;
    }
    lb.stop().await;
    n2.stop().await;
    n3.stop().await;

    assert!(
        t.wrong.is_empty(),
        "{} responses follow neither the rename nor on_store_error: {:#?}",
        t.wrong.len(),
        &t.wrong[..t.wrong.len().min(10)]
    );
    assert_eq!(
        (t.kept_old + t.refused) as f64,
        errors,
        "every store error is counted once in stickyroute_store_errors_total"
    );
    assert_eq!(
        errors, rebind_errors,
        "and in rebinds_total{{result=store_error}}"
    );
    if fault != StoreFault::PostgresTerminate {
        assert!(errors > 0.0, "the fault caused no store error");
    }
    assert!(
        lost_after_fault.is_empty(),
        "sessions touched by the fault, asked again: {lost_after_fault:#?}"
    );
    assert!(
        t.after >= 50,
        "too little load after the fault: {}",
        t.after
    );
    assert_eq!(
        t.after_renamed, t.after,
        "renames work again after the fault: {:#?}",
        t.not_renamed_after
    );
    assert_eq!(still_serving, 200);
}

on_both_paths!(
    redis_paused_during_load_forward_old_id,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
async fn redis_paused_during_load_forward_old_id(proto: Proto) {
    rename_under_store_fault(proto, StoreFault::RedisPause, OnStoreError::ForwardOldId).await;
}

on_both_paths!(
    redis_paused_during_load_fail,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
async fn redis_paused_during_load_fail(proto: Proto) {
    rename_under_store_fault(proto, StoreFault::RedisPause, OnStoreError::Fail).await;
}

on_both_paths!(
    redis_stalled_during_load_forward_old_id,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
/// A stall that begins after a rename reached Redis and before its answer came back: the
/// rename may have been applied, so `forward_old_id` answers `503` too (see below).
async fn redis_stalled_during_load_forward_old_id(proto: Proto) {
    rename_under_store_fault(proto, StoreFault::RedisStall, OnStoreError::ForwardOldId).await;
}

on_both_paths!(
    redis_replies_lost_during_load_forward_old_id,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
/// Renames done by Redis whose answers come too late. Treated as not done, `forward_old_id`
/// would send the node the old id, which no longer exists: the node would start a new, empty
/// session whose cookie the client takes, and the session would be lost. A rename that may
/// have been applied (a timeout) is answered `503` under either policy, and the client's retry
/// finds it renamed.
async fn redis_replies_lost_during_load_forward_old_id(proto: Proto) {
    rename_under_store_fault(
        proto,
        StoreFault::RedisRepliesLost,
        OnStoreError::ForwardOldId,
    )
    .await;
}

on_both_paths!(
    redis_replies_lost_during_load_fail,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
async fn redis_replies_lost_during_load_fail(proto: Proto) {
    rename_under_store_fault(proto, StoreFault::RedisRepliesLost, OnStoreError::Fail).await;
}

on_both_paths!(
    redis_stalled_during_load_fail,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
async fn redis_stalled_during_load_fail(proto: Proto) {
    rename_under_store_fault(proto, StoreFault::RedisStall, OnStoreError::Fail).await;
}

on_both_paths!(
    postgres_backends_terminated_during_load_forward_old_id,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
async fn postgres_backends_terminated_during_load_forward_old_id(proto: Proto) {
    rename_under_store_fault(
        proto,
        StoreFault::PostgresTerminate,
        OnStoreError::ForwardOldId,
    )
    .await;
}

on_both_paths!(
    postgres_backends_terminated_during_load_fail,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
async fn postgres_backends_terminated_during_load_fail(proto: Proto) {
    rename_under_store_fault(proto, StoreFault::PostgresTerminate, OnStoreError::Fail).await;
}

// ---------------------------------------------------------------------------------------------
// Misbehaving nodes under load
// ---------------------------------------------------------------------------------------------

/// Concurrent requests in each misbehaving-node test.
const CONCURRENT: usize = 200;

/// A balancer with a pool `bad` under `/bad` (`bad_extra` pool YAML, `bad_nodes` node lines)
/// and a pool `good` of one demo node for everything else.
async fn bad_and_good(
    bad_extra: &str,
    bad_nodes: &[String],
    good: std::net::SocketAddr,
) -> stickyroute::control::Running {
    let mut y = String::from(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n    max_connections: 4096\npools:\n  - name: bad\n    path_prefix: /bad\n",
    );
    for line in bad_extra.lines().filter(|l| !l.trim().is_empty()) {
        y.push_str(&format!("    {}\n", line.trim_start()));
    }
    y.push_str("    nodes:\n");
    for n in bad_nodes {
        y.push_str(&format!("      {n}\n"));
    }
    y.push_str(&format!(
        "  - name: good\n    nodes:\n      {}\n",
        node_line("ok1", good, "")
    ));
    balancer(&y).await
}

/// `CONCURRENT` GETs of `path` at once, each on its own connection, with `cookie`.
async fn burst(
    proto: Proto,
    addr: std::net::SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> Vec<Result<Resp, String>> {
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let (path, cookie) = (path.to_string(), cookie.map(str::to_string));
            tokio::spawn(async move {
                let mut c = LoadConn::open(proto, addr).await?;
                c.get(&path, cookie.as_deref(), REQUEST_LIMIT).await
            })
        })
        .collect();
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("a client task panicked"))
        .collect()
}

/// Statuses of a burst (`0` for a failed exchange), counted.
fn tally(results: &[Result<Resp, String>]) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for r in results {
        *m.entry(r.as_ref().map_or(0, |r| r.status.as_u16()))
            .or_insert(0) += 1;
    }
    m
}

/// The good pool keeps answering while the bad one misbehaves: a burst to it, all `200`.
async fn good_pool_serves(proto: Proto, addr: std::net::SocketAddr) {
    let results = burst(proto, addr, "/count", None).await;
    assert_eq!(
        tally(&results),
        BTreeMap::from([(200, CONCURRENT)]),
        "the good pool, meanwhile"
    );
}

/// A demo node of the `bad` pool: its application lives under `/bad`.
async fn bad_pool_node(route: &str, store: &SessionStore) -> stickyroute::demo::node::RunningNode {
    let cfg = stickyroute::demo::node::DemoNodeConfig {
        context_path: "/bad".into(),
        ..stickyroute::demo::node::DemoNodeConfig::new(route, store.clone())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    stickyroute::demo::node::RunningNode::start(listener, cfg).await
}

fn health(lb: &stickyroute::control::Running, route: &str) -> (String, u64) {
    let s = stickyroute::control::admin::status(&lb.balancer);
    let n = node_report(&s, route);
    (n.health.clone(), n.in_flight)
}

on_both_paths!(
    silent_node_under_load_times_out_with_504_and_is_marked_down,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
/// A node that accepts and never answers: every request sent to it gets `504` after
/// `timeouts.response` (not replayed: the node may still be working on it), the node is
/// marked down, its sessions then fail over, nothing stays in flight, and the other pool
/// serves throughout.
async fn silent_node_under_load_times_out_with_504_and_is_marked_down(proto: Proto) {
    let _serial = SERIAL.lock().await;
    let silent = raw_node(Misbehaviour::Silent).await;
    let mem = SessionStore::memory();
    let b2 = bad_pool_node("b2", &mem).await;
    let ok1 = node("ok1", &mem).await;
    let lb = bad_and_good(
        "timeouts: { response: 500ms }",
        &[
            node_line("s1", silent.addr, ""),
            node_line("b2", b2.addr, ""),
        ],
        ok1.addr,
    )
    .await;
    let started = Instant::now();
    let (bad, ()) = tokio::join!(
        burst(proto, lb.addr(), "/bad/count", Some("X.s1")),
        good_pool_serves(proto, lb.addr())
    );
    let took = started.elapsed();
    let t = tally(&bad);
    let sent = silent.requests.load(Ordering::Relaxed);
    eprintln!("silent node ({proto}): {t:?} in {took:?}, {sent} requests reached it");
    for r in bad.iter().flatten().filter(|r| r.status == 504) {
        assert_eq!(
            r.text(),
            "504 Gateway Timeout: the node did not answer in time\n"
        );
    }
    // Every request that reached the silent node timed out; any chosen after it was marked
    // down failed over to b2.
    assert_eq!(t.get(&504).copied().unwrap_or(0), sent, "{t:?}");
    assert_eq!(t.values().sum::<usize>(), CONCURRENT);
    assert!(t.keys().all(|s| *s == 504 || *s == 200), "{t:?}");
    assert!(sent > 0);
    assert_eq!(health(&lb, "s1").0, "down");
    let r = proto.get(lb.addr(), "/bad/count", Some("X.s1")).await;
    assert_eq!((r.status.as_u16(), r.node()), (200, "b2"), "{}", r.text());
    eventually(
        "nothing in flight to s1",
        Duration::from_secs(5),
        || async { health(&lb, "s1").1 == 0 },
    )
    .await;
    good_pool_serves(proto, lb.addr()).await;
    lb.stop().await;
}

on_both_paths!(
    garbage_node_under_load_gets_502_or_is_retried,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
/// A node that answers garbage: a replayable GET goes on to the next node (every one of a
/// burst answered `200`), and with `retry_idempotent: false` every request that reached the
/// node is a `502` in our words (the node is marked down, so later ones get the `503` of a
/// pool with no node up).
async fn garbage_node_under_load_gets_502_or_is_retried(proto: Proto) {
    let _serial = SERIAL.lock().await;
    let mem = SessionStore::memory();
    let ok1 = node("ok1", &mem).await;
    let b2 = bad_pool_node("b2", &mem).await;

    let garbage = raw_node(Misbehaviour::Garbage).await;
    let lb = bad_and_good(
        "",
        &[
            node_line("g1", garbage.addr, ""),
            node_line("b2", b2.addr, ""),
        ],
        ok1.addr,
    )
    .await;
    let (bad, ()) = tokio::join!(
        burst(proto, lb.addr(), "/bad/count", Some("X.g1")),
        good_pool_serves(proto, lb.addr())
    );
    let t = tally(&bad);
    eprintln!(
        "garbage node ({proto}), GETs retried: {t:?}, {} reached it",
        garbage.requests.load(Ordering::Relaxed)
    );
    assert_eq!(t, BTreeMap::from([(200, CONCURRENT)]));
    assert!(bad.iter().flatten().all(|r| r.node() == "b2"));
    assert!(garbage.requests.load(Ordering::Relaxed) > 0);
    assert_eq!(health(&lb, "g1").0, "down");
    lb.stop().await;

    let garbage = raw_node(Misbehaviour::Garbage).await;
    let lb = bad_and_good(
        "failover: { retry_idempotent: false }",
        &[node_line("g1", garbage.addr, "")],
        ok1.addr,
    )
    .await;
    let (bad, ()) = tokio::join!(
        burst(proto, lb.addr(), "/bad/count", Some("X.g1")),
        good_pool_serves(proto, lb.addr())
    );
    let t = tally(&bad);
    let reached = garbage.requests.load(Ordering::Relaxed);
    eprintln!("garbage node ({proto}), no retry: {t:?}, {reached} reached it");
    for r in bad.iter().flatten() {
        match r.status.as_u16() {
            502 => assert_eq!(r.text(), "502 Bad Gateway: the node failed to answer\n"),
            503 => assert!(r.header("retry-after").is_some(), "{}", r.text()),
            s => panic!("status {s}: {}", r.text()),
        }
    }
    assert_eq!(t.get(&502).copied().unwrap_or(0), reached, "{t:?}");
    assert_eq!(t.values().sum::<usize>(), CONCURRENT, "{t:?}");
    assert!(reached > 0);
    good_pool_serves(proto, lb.addr()).await;
    lb.stop().await;
}

on_both_paths!(
    node_closing_mid_body_under_load_truncates_and_closes,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
/// A node that closes mid-body: the client sees a `200` whose body ends early, its connection
/// closed (HTTP/1.1) or its stream reset (HTTP/2): never a hang, never a complete-looking
/// response; and the balancer serves on.
async fn node_closing_mid_body_under_load_truncates_and_closes(proto: Proto) {
    let _serial = SERIAL.lock().await;
    let mem = SessionStore::memory();
    let ok1 = node("ok1", &mem).await;
    let cut = raw_node(Misbehaviour::CloseMidBody).await;
    let lb = bad_and_good("", &[node_line("c1", cut.addr, "")], ok1.addr).await;
    let started = Instant::now();
    let (bad, ()) = tokio::join!(
        burst(proto, lb.addr(), "/bad/count", None),
        good_pool_serves(proto, lb.addr())
    );
    let took = started.elapsed();
    let reached = cut.requests.load(Ordering::Relaxed);
    // Over HTTP/2 the balancer resets the stream, and the reset may overtake the response head
    // still queued for it (a reset stream's queued frames are dropped): the client then sees
    // the reset alone, still an error, never a complete-looking response.
    let cut_short = |e: &str| {
        e.starts_with("body after 200 OK")
            || (proto == Proto::H2c && e.starts_with("request: http2 error: stream error received"))
    };
    let truncated = bad
        .iter()
        .filter(|r| matches!(r, Err(e) if cut_short(e)))
        .count();
    let others: Vec<String> = bad
        .iter()
        .filter_map(|r| match r {
            Err(e) if cut_short(e) => None,
            Err(e) => Some(e.clone()),
            Ok(r) => Some(format!("{} {}", r.status, r.text())),
        })
        .collect();
    let reset_alone = bad
        .iter()
        .filter(|r| matches!(r, Err(e) if cut_short(e) && e.starts_with("request:")))
        .count();
    eprintln!("node closing mid-body ({proto}): {truncated} truncated ({reset_alone} reset before the head), {reached} reached it, others {others:?}, in {took:?}");
    // Each request that reached the node was cut short; one that came after the node was
    // marked down (if it is) gets the 503 of a pool with no node up.
    assert_eq!(truncated, reached, "{others:?}");
    assert!(others.iter().all(|o| o.starts_with("503 ")), "{others:?}");
    assert!(reached > 0);
    // A raw look at one exchange: the head, ten bytes of body, then the balancer closes (the
    // connection's end is how HTTP/1.1 marks the body cut; HTTP/2 resets the stream instead).
    if proto == Proto::Http1 && health(&lb, "c1").0 == "up" {
        let mut raw_conn = tokio::net::TcpStream::connect(lb.addr()).await.unwrap();
        let got = raw_get(&mut raw_conn, "/bad/x", None).await;
        assert!(
            matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
            "{got:?}"
        );
    }
    assert_eq!(proto.get(lb.addr(), "/count", None).await.status, 200);
    lb.stop().await;
}

on_both_paths!(
    node_closing_every_connection_under_load_serves_everything,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
/// A node that answers `Connection: close` every time: every request is served (`200`), the
/// balancer opens a new connection to the node for each one, and the client keeps its own
/// keep-alive connection throughout.
async fn node_closing_every_connection_under_load_serves_everything(proto: Proto) {
    let _serial = SERIAL.lock().await;
    const PER_CLIENT: usize = 5;
    let mem = SessionStore::memory();
    let ok1 = node("ok1", &mem).await;
    let closer = raw_node(Misbehaviour::CloseEveryResponse).await;
    let lb = bad_and_good("", &[node_line("k1", closer.addr, "")], ok1.addr).await;
    let addr = lb.addr();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = LoadConn::open(proto, addr).await?;
                let mut bad = Vec::new();
                for i in 0..PER_CLIENT {
                    let r = c.get("/bad/x", None, REQUEST_LIMIT).await?;
                    if r.status != 200
                        || r.body.as_ref() != CLOSE_BODY
                        || r.header("connection").is_some()
                    {
                        bad.push(format!(
                            "{} {:?} {:?}",
                            r.status,
                            r.header("connection"),
                            r.text()
                        ));
                    }
                    if !c.is_open() && i + 1 < PER_CLIENT {
                        return Err(format!(
                            "the balancer closed the client connection after {}",
                            i + 1
                        ));
                    }
                }
                Ok::<_, String>(bad)
            })
        })
        .collect();
    let mut problems = Vec::new();
    for t in join_all(tasks).await {
        match t.expect("a client task panicked") {
            Ok(bad) => problems.extend(bad),
            Err(e) => problems.push(e),
        }
    }
    let (accepted, requests) = (
        closer.accepted.load(Ordering::Relaxed),
        closer.requests.load(Ordering::Relaxed),
    );
    eprintln!(
        "node closing every connection ({proto}): {} requests, {accepted} node connections, problems {}",
        CONCURRENT * PER_CLIENT,
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{:#?}",
        &problems[..problems.len().min(10)]
    );
    assert_eq!(requests, CONCURRENT * PER_CLIENT);
    assert_eq!(accepted, requests, "one node connection per request");
    assert_eq!(health(&lb, "k1").0, "up");
    good_pool_serves(proto, lb.addr()).await;
    lb.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Many idle client connections plus load
// ---------------------------------------------------------------------------------------------

/// Idle keep-alive connections in the test (`scripts/idle-conns.sh` does 10,000).
const IDLE: usize = 2000;

/// One of the idle client connections: raw HTTP/1.1 (light enough for thousands), or an h2c
/// client.
enum IdleConn {
    Http1(tokio::net::TcpStream),
    H2c(LoadConn),
}

impl IdleConn {
    async fn open(proto: Proto, addr: std::net::SocketAddr) -> Result<IdleConn, String> {
        Ok(match proto {
            Proto::Http1 => IdleConn::Http1(
                tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            Proto::H2c => IdleConn::H2c(LoadConn::open(proto, addr).await?),
        })
    }

    /// `GET /count` with the session `id` when given: the status and the body as JSON.
    async fn count(&mut self, id: Option<&str>) -> Result<(u16, serde_json::Value), String> {
        let (status, body) = match self {
            IdleConn::Http1(s) => raw_get(s, "/count", id)
                .await
                .map(|(status, body)| (status, bytes::Bytes::from(body)))
                .map_err(|e| e.to_string())?,
            IdleConn::H2c(c) => {
                let r = c.get("/count", id, REQUEST_LIMIT).await?;
                (r.status.as_u16(), r.body)
            }
        };
        let v = serde_json::from_slice(&body).map_err(|e| format!("{status}: {e}"))?;
        Ok((status, v))
    }
}

on_both_paths!(
    idle_connections_all_still_work_after_load,
    tokio::test(flavor = "multi_thread", worker_threads = 2)
);
/// `IDLE` client connections, each with one request of its own session done, sit idle while
/// other connections load the balancer; then each sends one more request, and every one is
/// answered on its connection with its session's next count.
async fn idle_connections_all_still_work_after_load(proto: Proto) {
    let _serial = SERIAL.lock().await;
    let mem = SessionStore::memory();
    let nodes = [
        node("jvm1", &mem).await,
        node("jvm2", &mem).await,
        node("jvm3", &mem).await,
    ];
    let lines: Vec<String> = nodes
        .iter()
        .zip(["jvm1", "jvm2", "jvm3"])
        .map(|(n, r)| node_line(r, n.addr, ""))
        .collect();
    let lb = balancer(&yaml("", &lines).replace(
        "  - bind: \"127.0.0.1:0\"\n",
        &format!(
            "  - bind: \"127.0.0.1:0\"\n    max_connections: {}\n",
            IDLE + 200
        ),
    ))
    .await;
    let addr = lb.addr();

    // Open them, 64 at a time: each does GET /count and keeps its session id.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let opened = join_all((0..IDLE).map(|_| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.unwrap();
            let mut s = IdleConn::open(proto, addr).await?;
            let (status, v) = s.count(None).await?;
            match (status, v["count"].as_i64(), v["session"].as_str()) {
                (200, Some(1), Some(id)) => Ok((s, id.to_string())),
                _ => Err(format!("{status} {v}")),
            }
        }
    }))
    .await;
    let mut idle = Vec::with_capacity(IDLE);
    for r in opened {
        idle.push(r.unwrap_or_else(|e| panic!("opening an idle connection: {e}")));
    }

    // Load on other connections meanwhile.
    let load = join_all((0..32).map(|_| async move {
        let mut c = LoadConn::open(proto, addr).await.unwrap();
        let mut ok = 0;
        for _ in 0..50 {
            if c.get("/count", None, REQUEST_LIMIT)
                .await
                .is_ok_and(|r| r.status == 200)
            {
                ok += 1;
            }
        }
        ok
    }))
    .await;
    assert_eq!(load.iter().sum::<usize>(), 32 * 50, "the load was served");

    // One more request on every idle connection.
    let again = join_all(idle.into_iter().map(|(mut s, id)| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.unwrap();
            let (status, v) = s.count(Some(&id)).await?;
            if status == 200 && v["count"].as_i64() == Some(2) {
                Ok(())
            } else {
                Err(format!("{status} {v}"))
            }
        }
    }))
    .await;
    let failed: Vec<&String> = again.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {IDLE} idle connections failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    lb.stop().await;
}
