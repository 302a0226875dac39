//! Real Tomcat 10.1 nodes behind the real `stickyroute` binary, for the interop tests
//! (`tests/tomcat_persistent.rs`, `tests/tomcat_delta.rs`).
//!
//! - [`Cluster`]: three Tomcat instances (Debian's `tomcat10`: `CATALINA_HOME=/usr/share/tomcat10`,
//!   or `STICKYROUTE_CATALINA_HOME`), each with its own `CATALINA_BASE` under the test target's
//!   temp dir, its own `jvmRoute` jvm1..jvm3 and free ports on 127.0.0.1, built from the shipped
//!   files of `deploy/tomcat/` ([`layout`]). Started once per test binary ([`Cluster::shared`]);
//!   scenarios take turns through [`Cluster::exclusive`], which also restarts whatever a failed
//!   scenario left stopped.
//! - Every JVM (and every balancer) runs under a small `sh` wrapper that kills it with `kill -9`
//!   as soon as its stdin reaches end of file: the test process holds the other end of that pipe,
//!   so whether the tests pass, panic or the process is killed, the kernel closes it and no JVM
//!   outlives `cargo test`.
//! - [`Balancer`]: the binary (`stickyroute serve -c`) with `deploy/tomcat/balancer.yaml`, its
//!   addresses replaced by local ports and its binder by the scenario's.
//! - [`Browser`]: a blocking HTTP/1.1 client with a browser-like [`CookieJar`].
//! - [`failover_scenario`] and [`turnover_scenario`]: the Tomcat scenarios, each check printed
//!   as a `RESULT` line as it is made, all failures reported together at the end.
//!
//! Without Tomcat (or, in the persistent mode, without `TEST_POSTGRES_URL`) the tests print a
//! `SKIPPED` line and pass, unless `STICKYROUTE_REQUIRE_SERVICES=1`, which makes it a failure.
#![allow(dead_code)]

#[path = "cookie_jar.rs"]
pub mod cookie_jar;
#[path = "tomcat_layout.rs"]
pub mod layout;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::common::wrapped::Wrapped;
use cookie_jar::CookieJar;
use layout::*;

/// Routes of the three nodes.
pub const ROUTES: [&str; 3] = ["jvm1", "jvm2", "jvm3"];
/// The PostgreSQL schema the persistent mode keeps its `tomcat_sessions` table in, away from the
/// other tests' tables in the same database.
pub const PG_SCHEMA: &str = "stickyroute_tomcat";
/// Bound for a Tomcat start (JVM, deployment, first JSP compilation) on a busy 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// Bound for one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read_repo(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Writes a line to stderr past libtest's capture, so that it shows in CI logs.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn require_services() -> bool {
    std::env::var("STICKYROUTE_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// A missing prerequisite: skip loudly, or fail under `STICKYROUTE_REQUIRE_SERVICES=1`.
fn missing(test: &str, what: &str) {
    if require_services() {
        panic!("{test} needs {what} (STICKYROUTE_REQUIRE_SERVICES=1)");
    }
    say(&format!(
        "SKIPPED: {test} needs {what} (apt-get install tomcat10 libpostgresql-jdbc-java; .ci/run does)"
    ));
}

// ---------------------------------------------------------------------------------------------
// The installation

/// Where Tomcat, its default configuration, Java and the JDBC driver are.
#[derive(Debug, Clone)]
pub struct Install {
    /// `CATALINA_HOME` (with `bin/bootstrap.jar`, `lib/`).
    pub home: PathBuf,
    /// Tomcat's default `web.xml`, `logging.properties`, `catalina.properties`, `context.xml`:
    /// `$CATALINA_HOME/etc` on Debian, `$CATALINA_HOME/conf` in an upstream tarball.
    pub conf: PathBuf,
    pub java: PathBuf,
    pub jdbc_postgres: PathBuf,
}

impl Install {
    pub fn find() -> Result<Install, String> {
        let home = PathBuf::from(
            std::env::var("STICKYROUTE_CATALINA_HOME")
                .unwrap_or_else(|_| "/usr/share/tomcat10".to_string()),
        );
        if !home.join("bin/bootstrap.jar").is_file() {
            return Err(format!(
                "Tomcat 10.1 ({} not found)",
                home.join("bin/bootstrap.jar").display()
            ));
        }
        let conf = ["etc", "conf"]
            .iter()
            .map(|d| home.join(d))
            .find(|d| d.join("web.xml").is_file())
            .ok_or_else(|| format!("Tomcat's default web.xml under {}", home.display()))?;
        let java = std::env::var_os("JAVA_HOME")
            .map(|h| PathBuf::from(h).join("bin/java"))
            .filter(|j| j.is_file())
            .or_else(|| {
                std::env::var_os("PATH").and_then(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("java"))
                        .find(|j| j.is_file())
                })
            })
            .ok_or("a Java runtime (java)")?;
        let jdbc_postgres = PathBuf::from("/usr/share/java/postgresql.jar");
        if !jdbc_postgres.is_file() {
            return Err("the PostgreSQL JDBC driver (/usr/share/java/postgresql.jar)".into());
        }
        Ok(Install {
            home,
            conf,
            java,
            jdbc_postgres,
        })
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// A blocking HTTP/1.1 client

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// The `Set-Cookie` values for `JSESSIONID`.
    pub fn session_set_cookies(&self) -> Vec<&str> {
        self.all("set-cookie")
            .into_iter()
            .filter(|v| v.trim_start().starts_with("JSESSIONID="))
            .collect()
    }

    fn field(&self, name: &str) -> Option<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(self.body.trim())
            .ok()
            .and_then(|v| v.get(name).cloned())
    }

    /// The node that answered (the counter page's `node`), or "" when this is not that page.
    pub fn node(&self) -> String {
        self.field("node")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The session id as the node knows it.
    pub fn session(&self) -> String {
        self.field("session")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn count(&self) -> i64 {
        self.field("count").and_then(|v| v.as_i64()).unwrap_or(-1)
    }

    pub fn is_new(&self) -> bool {
        self.field("new").and_then(|v| v.as_bool()).unwrap_or(false)
    }

    /// One line for failure messages.
    pub fn summary(&self) -> String {
        format!(
            "{} {} set-cookie={:?}",
            self.status,
            self.body.trim(),
            self.session_set_cookies()
        )
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Page> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.take(16 << 20).read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::other(format!("bad response: {:?}", String::from_utf8_lossy(&raw)))
    })
}

fn parse_response(raw: &[u8]) -> Option<Page> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Page {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..nl]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// GET until it answers `want` or `timeout` passes.
fn wait_status(addr: SocketAddr, path: &str, want: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http(addr, "GET", path, &[], "") {
            Ok(p) if p.status == want => return Ok(()),
            Ok(p) => last = format!("{} {}", p.status, p.body.trim()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "GET {path} on {addr}: no {want} within {timeout:?} (last: {last})"
    ))
}

// ---------------------------------------------------------------------------------------------
// A browser

/// A client with a browser's cookie jar, talking to one address.
pub struct Browser {
    pub jar: CookieJar,
    pub addr: SocketAddr,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Browser {
        Browser {
            jar: CookieJar::new(),
            addr,
        }
    }

    /// GET `path` with the cookies a browser would send; stores what the response sets.
    pub fn get(&mut self, path: &str) -> Page {
        let cookie = self.jar.cookie_header(path);
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        let page = http(self.addr, "GET", path, &headers, "")
            .unwrap_or_else(|e| panic!("GET {path} via {}: {e}", self.addr));
        self.jar.store_all(path, page.all("set-cookie"));
        page
    }

    /// Every `JSESSIONID` the jar holds, whatever its path.
    pub fn session_cookies(&self) -> Vec<String> {
        self.jar
            .named("JSESSIONID")
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    /// The `JSESSIONID` values a request for the application carries, in order.
    pub fn sent_ids(&self) -> Vec<String> {
        self.jar.values_sent("JSESSIONID", APP)
    }
}

/// The pin route of a client-facing id: the text after its last `.`.
pub fn pin(id: &str) -> &str {
    id.rsplit_once('.').map_or("", |(_, r)| r)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL of the persistent mode

/// `TEST_POSTGRES_URL`, and the JDBC form the nodes get.
#[derive(Debug, Clone)]
pub struct Db {
    pub url: String,
    pub jdbc_url: String,
    pub user: String,
    pub password: String,
}

impl Db {
    pub fn from_url(url: &str) -> Db {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .unwrap_or_else(|| panic!("TEST_POSTGRES_URL: not a postgres:// URL: {url}"));
        let (auth, rest) = rest.rsplit_once('@').unwrap_or(("postgres", rest));
        let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let db = db.split('?').next().unwrap_or("postgres");
        let hostport = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:5432")
        };
        Db {
            url: url.to_string(),
            jdbc_url: format!("jdbc:postgresql://{hostport}/{db}?currentSchema={PG_SCHEMA}"),
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Creates the schema and runs the shipped SQL in it; empties the table.
    pub fn prepare(&self) {
        let sql = read_repo(SESSIONS_SQL_POSTGRES);
        self.run(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&self.url)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", self.url));
            sqlx::raw_sql(&format!(
                "CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}; SET search_path TO {PG_SCHEMA};"
            ))
            .execute(&mut c)
            .await
            .unwrap();
            sqlx::raw_sql(&sql)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{SESSIONS_SQL_POSTGRES}: {e}"));
            sqlx::raw_sql("DELETE FROM tomcat_sessions")
                .execute(&mut c)
                .await
                .unwrap();
        });
    }

    /// `last_access` of a stored session (milliseconds), `None` when it is not in the store.
    pub fn last_access(&self, session_id: &str) -> Option<i64> {
        self.run(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&self.url).await.ok()?;
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT last_access FROM {PG_SCHEMA}.tomcat_sessions WHERE session_id = $1"
            ))
            .bind(session_id)
            .fetch_optional(&mut c)
            .await
            .ok()
            .flatten()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// PersistentManager + DataSourceStore on PostgreSQL.
    Persistent,
    /// DeltaManager cluster with static membership and JvmRouteBinderValve.
    Delta,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Persistent => "persistent",
            Mode::Delta => "delta",
        }
    }
}

/// One node's fixed parts.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub route: &'static str,
    pub http: SocketAddr,
    pub cluster_port: u16,
    pub base: PathBuf,
}

pub struct Cluster {
    pub mode: Mode,
    pub install: Install,
    pub root: PathBuf,
    pub nodes: Vec<NodeSpec>,
    pub db: Option<Db>,
    procs: Mutex<Vec<Option<Wrapped>>>,
    turn: Mutex<()>,
    pub started_in: Duration,
}

/// The one cluster of this test binary.
static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

impl Cluster {
    /// The cluster of this test binary, started on first use; `None` (after a `SKIPPED` line)
    /// when Tomcat or the mode's database is missing.
    pub fn shared(mode: Mode, test: &str) -> Option<&'static Cluster> {
        let install = match Install::find() {
            Ok(i) => i,
            Err(what) => {
                missing(test, &what);
                return None;
            }
        };
        let db = match mode {
            Mode::Persistent => {
                let url = crate::common::service_url("TEST_POSTGRES_URL", test)?;
                Some(Db::from_url(&url))
            }
            Mode::Delta => None,
        };
        let shared = SHARED.get_or_init(|| {
            std::panic::catch_unwind(|| Cluster::start(mode, install, db)).map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            })
        });
        match shared {
            Ok(c) => {
                assert_eq!(c.mode, mode, "one mode per test binary");
                Some(c)
            }
            Err(e) => panic!("the Tomcat cluster did not start: {e}"),
        }
    }

    fn start(mode: Mode, install: Install, db: Option<Db>) -> Cluster {
        let t0 = Instant::now();
        let root =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tomcat-{}", mode.name()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        if let Some(db) = &db {
            db.prepare();
        }
        let nodes: Vec<NodeSpec> = ROUTES
            .iter()
            .map(|route| NodeSpec {
                route,
                http: SocketAddr::from(([127, 0, 0, 1], free_port())),
                cluster_port: free_port(),
                base: root.join(route),
            })
            .collect();
        let cluster = Cluster {
            mode,
            install,
            root,
            nodes,
            db,
            procs: Mutex::new((0..ROUTES.len()).map(|_| None).collect()),
            turn: Mutex::new(()),
            started_in: Duration::ZERO,
        };
        for i in 0..cluster.nodes.len() {
            cluster.install_base(i);
        }
        match mode {
            // Independent nodes: all three at once, then wait for each.
            Mode::Persistent => {
                for i in 0..cluster.nodes.len() {
                    cluster.spawn(i);
                }
                for i in 0..cluster.nodes.len() {
                    cluster.wait_ready(i);
                }
            }
            // One after the other: a DeltaManager that asks a peer for the session state while
            // that peer is itself still asking gets no answer and waits `stateTransferTimeout`.
            Mode::Delta => {
                for i in 0..cluster.nodes.len() {
                    cluster.spawn(i);
                    cluster.wait_ready(i);
                }
            }
        }
        if mode == Mode::Delta {
            cluster.wait_replication();
        }
        let started_in = t0.elapsed();
        say(&format!(
            "TOMCAT {}: three nodes up in {:.1} s ({}; bases in {})",
            mode.name(),
            started_in.as_secs_f64(),
            cluster
                .nodes
                .iter()
                .map(|n| format!("{}={}", n.route, n.http))
                .collect::<Vec<_>>()
                .join(", "),
            cluster.root.display()
        ));
        Cluster {
            started_in,
            ..cluster
        }
    }

    pub fn index(&self, route: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.route == route)
            .unwrap_or_else(|| panic!("no node {route:?}"))
    }

    pub fn files(&self) -> &'static [(&'static str, &'static str)] {
        match self.mode {
            Mode::Persistent => PERSISTENT_FILES,
            Mode::Delta => DELTA_FILES,
        }
    }

    /// Builds one `CATALINA_BASE` from Tomcat's defaults and the shipped files.
    fn install_base(&self, i: usize) {
        let base = &self.nodes[i].base;
        for d in ["conf", "lib", "logs", "temp", "work", "webapps"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        for f in ["web.xml", "logging.properties", "context.xml"] {
            std::fs::copy(self.install.conf.join(f), base.join("conf").join(f))
                .unwrap_or_else(|e| panic!("{f}: {e}"));
        }
        // Tomcat's catalina.properties with the shipped lines appended.
        let mut props = std::fs::read_to_string(self.install.conf.join("catalina.properties"))
            .unwrap_or_default();
        props.push('\n');
        props.push_str(&read_repo(CATALINA_PROPERTIES));
        std::fs::write(base.join("conf/catalina.properties"), props).unwrap();
        for (from, to) in self.files() {
            let dest = base.join(to);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            let src = repo().join(from);
            if src.is_dir() {
                copy_dir(&src, &dest);
            } else if *to == "conf/server.xml" && self.mode == Mode::Delta {
                let server = read_repo(from);
                assert!(server.contains(CLUSTER_MARKER), "{from}: no cluster marker");
                let server = server.replace(CLUSTER_MARKER, &read_repo(CLUSTER_FRAGMENT));
                std::fs::write(&dest, server).unwrap();
            } else {
                std::fs::copy(&src, &dest).unwrap_or_else(|e| panic!("{from}: {e}"));
            }
        }
        if self.mode == Mode::Persistent {
            std::fs::copy(&self.install.jdbc_postgres, base.join("lib/postgresql.jar")).unwrap();
        }
    }

    /// The system properties the shipped files' `${…}` placeholders name.
    pub fn properties(&self, i: usize) -> Vec<(String, String)> {
        let n = &self.nodes[i];
        let mut p: Vec<(String, String)> = vec![
            ("jvm.route".into(), n.route.into()),
            ("http.address".into(), "127.0.0.1".into()),
            ("http.port".into(), n.http.port().to_string()),
        ];
        if let Some(db) = &self.db {
            p.extend([
                ("sessions.db.driver".into(), "org.postgresql.Driver".into()),
                ("sessions.db.url".into(), db.jdbc_url.clone()),
                ("sessions.db.user".into(), db.user.clone()),
                ("sessions.db.password".into(), db.password.clone()),
            ]);
        }
        if self.mode == Mode::Delta {
            let id = |j: usize| format!("{{0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,{}}}", j + 1);
            p.extend([
                ("cluster.address".into(), "127.0.0.1".into()),
                ("cluster.port".into(), n.cluster_port.to_string()),
                ("cluster.local.id".into(), id(i)),
            ]);
            let peers = (0..self.nodes.len()).filter(|&j| j != i);
            for (k, j) in peers.enumerate() {
                let pfx = format!("cluster.peer{}", k + 1);
                p.extend([
                    (format!("{pfx}.host"), "127.0.0.1".into()),
                    (
                        format!("{pfx}.port"),
                        self.nodes[j].cluster_port.to_string(),
                    ),
                    (format!("{pfx}.id"), id(j)),
                ]);
            }
        }
        p
    }

    fn jvm_args(&self, i: usize) -> Vec<String> {
        let base = &self.nodes[i].base;
        let home = &self.install.home;
        let mut a: Vec<String> = [
            "-Xmx128m",
            "-Xss512k",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Xshare:auto",
            "-XX:-UsePerfData",
            // What catalina.sh passes on Java 9+.
            "--add-opens=java.base/java.lang=ALL-UNNAMED",
            "--add-opens=java.base/java.io=ALL-UNNAMED",
            "--add-opens=java.base/java.util=ALL-UNNAMED",
            "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
            "--add-opens=java.rmi/sun.rmi.transport=ALL-UNNAMED",
        ]
        .map(String::from)
        .to_vec();
        a.push(format!("-Dcatalina.home={}", home.display()));
        a.push(format!("-Dcatalina.base={}", base.display()));
        a.push(format!("-Djava.io.tmpdir={}", base.join("temp").display()));
        a.push("-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager".into());
        a.push(format!(
            "-Djava.util.logging.config.file={}",
            base.join("conf/logging.properties").display()
        ));
        for (k, v) in self.properties(i) {
            a.push(format!("-D{k}={v}"));
        }
        a.push("-cp".into());
        a.push(format!(
            "{}:{}",
            home.join("bin/bootstrap.jar").display(),
            home.join("bin/tomcat-juli.jar").display()
        ));
        a.push("org.apache.catalina.startup.Bootstrap".into());
        a.push("start".into());
        a
    }

    fn spawn(&self, i: usize) {
        let log = self.nodes[i].base.join("logs/console.log");
        let w = Wrapped::spawn(&self.install.java, &self.jvm_args(i), &log);
        self.procs.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(w);
    }

    fn wait_ready(&self, i: usize) {
        let n = &self.nodes[i];
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(p) = http(n.http, "GET", HEALTH, &[], "") {
                if p.status == 200 {
                    return;
                }
            }
            let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
            let w = procs[i].as_ref().expect("node not started");
            if !w.alive() || Instant::now() > deadline {
                panic!(
                    "{} did not come up on {} within {START_DEADLINE:?} (alive: {}); log {}:\n{}",
                    n.route,
                    n.http,
                    w.alive(),
                    w.log.display(),
                    w.log_tail()
                );
            }
            drop(procs);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Delta mode: waits until a session replicates around the whole cluster, node to node
    /// ([`Cluster::replicates_around`]), each node seeing the count of the one before, on two
    /// checks a second apart. One pass is not enough after a restart: the restarted node's
    /// static membership may still flap (a peer "disappears" and comes back within the
    /// membership's expiration time), and a replication sent meanwhile never reaches it.
    fn wait_replication(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        let mut last = String::new();
        let mut passes = 0;
        while Instant::now() < deadline {
            match self.replicates_around() {
                Ok(()) if passes == 1 => return,
                Ok(()) => passes = 1,
                Err(e) => {
                    passes = 0;
                    last = e;
                }
            }
            std::thread::sleep(Duration::from_millis(if passes == 1 { 1000 } else { 500 }));
        }
        panic!("the delta cluster does not replicate within {START_DEADLINE:?}: {last}");
    }

    /// Both ways round the ring (jvm1 → jvm2 → jvm3 → jvm1, then jvm1 → jvm3 → jvm2 → jvm1):
    /// every node sends to every other one. One direction alone missed a node whose peers'
    /// senders still pointed at its killed process: it received from one peer, not the other.
    fn replicates_around(&self) -> Result<(), String> {
        self.replicates_along([0, 1, 2, 0])?;
        self.replicates_along([0, 2, 1, 0])
    }

    fn replicates_along(&self, ring: [usize; 4]) -> Result<(), String> {
        let mut b = Browser::new(self.nodes[0].http);
        for (k, j) in ring.into_iter().enumerate() {
            b.addr = self.nodes[j].http;
            let p = b.get(APP);
            if p.status != 200 || p.count() != k as i64 + 1 {
                return Err(format!(
                    "step {k} on {}: {}",
                    self.nodes[j].route,
                    p.summary()
                ));
            }
        }
        Ok(())
    }

    pub fn running(&self, route: &str) -> bool {
        let i = self.index(route);
        self.procs.lock().unwrap_or_else(|e| e.into_inner())[i]
            .as_ref()
            .is_some_and(Wrapped::alive)
    }

    /// `kill -9` of a node; returns once its port refuses connections.
    pub fn kill9(&self, route: &str) {
        self.stop_with(route, "-KILL");
    }

    /// A graceful stop (SIGTERM: Tomcat's shutdown hook stops the server).
    pub fn stop(&self, route: &str) {
        self.stop_with(route, "-TERM");
    }

    fn stop_with(&self, route: &str, sig: &str) {
        let i = self.index(route);
        let w = self.procs.lock().unwrap_or_else(|e| e.into_inner())[i].take();
        if let Some(mut w) = w {
            w.stop(sig, Duration::from_secs(30));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.nodes[i].http, Duration::from_millis(200)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "{route} still accepts after {sig}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a stopped node on its ports and waits until its health page answers.
    pub fn start_node(&self, route: &str) -> Duration {
        let t0 = Instant::now();
        let i = self.index(route);
        assert!(!self.running(route), "{route} is running");
        self.spawn(i);
        self.wait_ready(i);
        t0.elapsed()
    }

    /// One scenario at a time; the nodes a failed scenario left stopped are started again.
    pub fn exclusive(&self) -> MutexGuard<'_, ()> {
        let guard = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let stopped: Vec<&str> = self
            .nodes
            .iter()
            .map(|n| n.route)
            .filter(|r| !self.running(r))
            .collect();
        for r in &stopped {
            let i = self.index(r);
            self.procs.lock().unwrap_or_else(|e| e.into_inner())[i] = None;
            self.spawn(i);
            self.wait_ready(i);
        }
        if self.mode == Mode::Delta {
            self.wait_replication();
        }
        guard
    }

    /// Persistent mode: waits until the store holds the session as of a request that started at
    /// `since_ms` (its `last_access` is at least that), and returns how long that took after the
    /// call. Delta mode replicates synchronously: `Ok(ZERO)`.
    pub fn wait_persisted(&self, session_id: &str, since_ms: i64) -> Result<Duration, String> {
        let Some(db) = &self.db else {
            return Ok(Duration::ZERO);
        };
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(15);
        let mut last = None;
        while Instant::now() < deadline {
            last = db.last_access(session_id);
            if last.is_some_and(|t| t >= since_ms) {
                return Ok(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "{session_id} not stored as of {since_ms} within 15 s (last_access {last:?})"
        ))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The balancer

/// The `stickyroute` binary in front of the cluster.
pub struct Balancer {
    proc: Wrapped,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub token: String,
    pub config: PathBuf,
}

static BALANCERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Balancer {
    /// `deploy/tomcat/balancer.yaml` with local addresses and `binder`.
    pub fn start(cluster: &Cluster, binder: &str) -> Balancer {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let shipped = read_repo(BALANCER_CONFIG);
        let parsed: serde_norway::Value = serde_norway::from_str(&shipped).unwrap();
        let token = parsed["admin"]["token"].as_str().unwrap_or("").to_string();
        let mut text = shipped.clone();
        let mut replace = |from: &str, to: &str| {
            assert!(text.contains(from), "{BALANCER_CONFIG}: no {from:?}");
            text = text.replace(from, to);
        };
        replace("\"0.0.0.0:8080\"", &format!("\"{addr}\""));
        replace("\"0.0.0.0:9901\"", &format!("\"{admin}\""));
        replace("binder: translate", &format!("binder: {binder}"));
        for (k, n) in cluster.nodes.iter().enumerate() {
            replace(
                &format!("\"tomcat{}:8080\"", k + 1),
                &format!("\"{}\"", n.http),
            );
        }
        let k = BALANCERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let config = cluster.root.join(format!("balancer-{k}-{binder}.yaml"));
        std::fs::write(&config, &text).unwrap();
        let log = cluster.root.join(format!("balancer-{k}-{binder}.log"));
        let args: Vec<String> = ["serve", "-c", config.to_str().unwrap(), "--grace", "1s"]
            .map(String::from)
            .to_vec();
        let proc = Wrapped::spawn(Path::new(env!("CARGO_BIN_EXE_stickyroute")), &args, &log);
        let lb = Balancer {
            proc,
            addr,
            admin,
            token,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while http(lb.admin, "GET", "/api/v1/status", &[], "").is_err() {
            assert!(
                lb.proc.alive() && Instant::now() < deadline,
                "the balancer did not start:\n{}",
                lb.proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        lb
    }

    pub fn status(&self) -> serde_json::Value {
        let p = http(self.admin, "GET", "/api/v1/status", &[], "").expect("admin status");
        serde_json::from_str(&p.body).unwrap_or_else(|e| panic!("status: {e}: {}", p.body))
    }

    fn node_field(&self, route: &str, field: &str) -> String {
        let s = self.status();
        s["pools"][0]["nodes"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["route"] == route))
            .and_then(|n| n[field].as_str())
            .unwrap_or("")
            .to_string()
    }

    pub fn health(&self, route: &str) -> String {
        self.node_field(route, "health")
    }

    /// Waits until the balancer's health of `route` is `want` (`up` / `down`).
    pub fn wait_health(
        &self,
        route: &str,
        want: &str,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if self.health(route) == want {
                return Ok(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "{route} not {want} within {timeout:?} (now {})",
            self.health(route)
        ))
    }

    /// `POST /api/v1/nodes/{route}/state` through the admin API, as `stickyroute ctl` does.
    pub fn set_state(&self, route: &str, state: &str) {
        let auth = format!("Bearer {}", self.token);
        let body = format!("{{\"state\":\"{state}\"}}");
        let p = http(
            self.admin,
            "POST",
            &format!("/api/v1/nodes/{route}/state"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .expect("admin API");
        assert!(
            p.status / 100 == 2,
            "set {route} {state}: {} {}",
            p.status,
            p.body
        );
        assert_eq!(self.node_field(route, "state"), state);
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// The checks of one scenario: each printed as it is made (`RESULT scenario | check | PASS`),
/// all failures reported together by [`Report::finish`].
pub struct Report {
    pub name: String,
    rows: Vec<(String, bool, String)>,
    t0: Instant,
}

impl Report {
    pub fn new(name: &str) -> Report {
        say(&format!("SCENARIO {name}: start"));
        Report {
            name: name.to_string(),
            rows: Vec::new(),
            t0: Instant::now(),
        }
    }

    pub fn check(&mut self, what: &str, ok: bool, detail: impl Into<String>) -> bool {
        let detail = detail.into();
        say(&format!(
            "RESULT {} | {what} | {} | {detail}",
            self.name,
            if ok { "PASS" } else { "FAIL" }
        ));
        self.rows.push((what.to_string(), ok, detail));
        ok
    }

    pub fn finish(self) {
        let failed: Vec<String> = self
            .rows
            .iter()
            .filter(|(_, ok, _)| !ok)
            .map(|(w, _, d)| format!("  {w}: {d}"))
            .collect();
        say(&format!(
            "SCENARIO {}: {} of {} checks passed in {:.1} s",
            self.name,
            self.rows.len() - failed.len(),
            self.rows.len(),
            self.t0.elapsed().as_secs_f64()
        ));
        assert!(
            failed.is_empty(),
            "{}: {} check(s) failed:\n{}",
            self.name,
            failed.len(),
            failed.join("\n")
        );
    }
}

/// `n` more requests of one session: all answered 200 by `node` with the count going on from
/// `count`. Returns the last page and, on failure, what went wrong.
fn more_requests(
    b: &mut Browser,
    n: usize,
    node: &str,
    count: &mut i64,
) -> (Option<Page>, Result<(), String>) {
    let mut last = None;
    for k in 0..n {
        let p = b.get(APP);
        let ok = p.status == 200 && p.node() == node && p.count() == *count + 1;
        if !ok {
            let err = format!(
                "request {} of {n}: want {node} count {}, got {}",
                k + 1,
                *count + 1,
                p.summary()
            );
            *count = p.count();
            return (Some(p), Err(err));
        }
        *count = p.count();
        last = Some(p);
    }
    (last, Ok(()))
}

fn one_session_cookie(r: &mut Report, b: &Browser, when: &str) {
    let held = b.session_cookies();
    r.check(
        &format!("one JSESSIONID {when}"),
        held.len() == 1,
        format!("jar holds {held:?}; a request carries {:?}", b.sent_ids()),
    );
}

/// The pin route of the first `JSESSIONID` a request carries (what the balancer routes by
/// unless a later cookie names a live node).
fn first_pin(b: &Browser) -> String {
    b.sent_ids()
        .first()
        .map(|id| pin(id).to_string())
        .unwrap_or_default()
}

/// 20 sticky requests; `kill -9` of the serving node; failover with the count continued and the
/// client re-pinned in the same response to one cookie; stays there; the killed node returns and
/// is healthy: no bounce-back; new sessions spread over all three nodes.
pub fn failover_scenario(cluster: &Cluster, binder: &str) {
    let _turn = cluster.exclusive();
    let mut r = Report::new(&format!("{}/{binder} failover", cluster.mode.name()));
    let lb = Balancer::start(cluster, binder);
    for n in ROUTES {
        lb.wait_health(n, "up", Duration::from_secs(20)).unwrap();
    }
    let mut b = Browser::new(lb.addr);

    // 20 sticky requests.
    let first = b.get(APP);
    assert_eq!(first.status, 200, "{}", first.summary());
    assert_eq!(
        (first.count(), first.is_new()),
        (1, true),
        "{}",
        first.summary()
    );
    let home = first.node();
    let mut count = 1;
    let t_last = now_ms();
    let (last, sticky) = more_requests(&mut b, 19, &home, &mut count);
    r.check(
        "20 sticky requests",
        sticky.is_ok(),
        sticky
            .err()
            .unwrap_or(format!("all on {home}, count 1..20")),
    );
    let session = last.map(|p| p.session()).unwrap_or_default();
    let persisted = cluster.wait_persisted(&session, t_last);
    if cluster.mode == Mode::Persistent {
        r.check(
            "stored before the kill (persistence window)",
            persisted.is_ok(),
            match &persisted {
                Ok(d) => format!(
                    "in the store {:.1} s after the last request",
                    d.as_secs_f64()
                ),
                Err(e) => e.clone(),
            },
        );
    }

    // kill -9 of the serving node; the next request.
    cluster.kill9(&home);
    let p = b.get(APP);
    let new_node = p.node();
    r.check(
        "next request answered 200 by another node",
        p.status == 200 && !new_node.is_empty() && new_node != home,
        format!("{home} killed; {}", p.summary()),
    );
    r.check(
        "count continued after the kill",
        p.count() == count + 1,
        format!("want {}, got {}", count + 1, p.count()),
    );
    count = p.count();
    let set = p.session_set_cookies();
    r.check(
        "re-pinned in that same response",
        !set.is_empty() && first_pin(&b) == new_node,
        format!(
            "Set-Cookie {set:?}; a request now carries {:?}",
            b.sent_ids()
        ),
    );
    one_session_cookie(&mut r, &b, "after the failover");

    // It stays on the new node.
    let (_, stays) = more_requests(&mut b, 5, &new_node, &mut count);
    r.check(
        "stays on the new node",
        stays.is_ok(),
        stays.err().unwrap_or(format!("5 more on {new_node}")),
    );

    // The killed node returns.
    let took = cluster.start_node(&home);
    let healthy = lb.wait_health(&home, "up", Duration::from_secs(30));
    r.check(
        "killed node restarted and healthy",
        healthy.is_ok(),
        format!(
            "started in {:.1} s; balancer: {healthy:?}",
            took.as_secs_f64()
        ),
    );
    let (_, back) = more_requests(&mut b, 5, &new_node, &mut count);
    r.check(
        "no bounce-back after the killed node returned",
        back.is_ok(),
        back.err()
            .unwrap_or(format!("5 more on {new_node}, none on {home}")),
    );
    one_session_cookie(&mut r, &b, "at the end");

    // New sessions spread over all live nodes again.
    let mut seen = BTreeSet::new();
    let mut tries = 0;
    while seen.len() < ROUTES.len() && tries < 40 {
        tries += 1;
        let p = Browser::new(lb.addr).get(APP);
        if p.status == 200 && p.is_new() {
            seen.insert(p.node());
        }
    }
    r.check(
        "new sessions spread over all three nodes",
        seen.len() == ROUTES.len(),
        format!("{seen:?} after {tries} new sessions"),
    );
    r.finish();
}

/// A turnover through the admin API: two sessions on one node; `disable` it; each session moves
/// with its data (after the persistence window) to another node, re-pinned to one cookie; the
/// node restarts; `activate`; no bounce-back.
pub fn turnover_scenario(cluster: &Cluster, binder: &str) {
    let _turn = cluster.exclusive();
    let mut r = Report::new(&format!("{}/{binder} turnover", cluster.mode.name()));
    let lb = Balancer::start(cluster, binder);
    for n in ROUTES {
        lb.wait_health(n, "up", Duration::from_secs(20)).unwrap();
    }

    // Two sessions on the same node, three requests each.
    let mut browsers: Vec<(Browser, i64)> = Vec::new();
    let mut home = String::new();
    for _ in 0..40 {
        let mut b = Browser::new(lb.addr);
        let p = b.get(APP);
        assert_eq!(p.status, 200, "{}", p.summary());
        if home.is_empty() {
            home = p.node();
        }
        if p.node() == home {
            browsers.push((b, 1));
        }
        if browsers.len() == 2 {
            break;
        }
    }
    assert_eq!(browsers.len(), 2, "no second session on {home}");
    let t_last = now_ms();
    let mut sessions = Vec::new();
    for (b, count) in &mut browsers {
        let (last, ok) = more_requests(b, 2, &home, count);
        ok.unwrap();
        sessions.push(last.unwrap().session());
    }
    let t0 = Instant::now();
    let stored: Result<Vec<Duration>, String> = sessions
        .iter()
        .map(|s| cluster.wait_persisted(s, t_last))
        .collect();
    if cluster.mode == Mode::Persistent {
        r.check(
            "sessions stored before disable (persistence window)",
            stored.is_ok(),
            match &stored {
                Ok(_) => format!(
                    "both in the store {:.1} s after their last request",
                    t0.elapsed().as_secs_f64()
                ),
                Err(e) => e.clone(),
            },
        );
    }

    // disable: each session moves with its data.
    lb.set_state(&home, "disabled");
    let mut moved_to = Vec::new();
    for (k, (b, count)) in browsers.iter_mut().enumerate() {
        let p = b.get(APP);
        let node = p.node();
        r.check(
            &format!("session {}: moved off the disabled node", k + 1),
            p.status == 200 && !node.is_empty() && node != home,
            format!("{home} disabled; {}", p.summary()),
        );
        r.check(
            &format!("session {}: data moved with it", k + 1),
            p.count() == *count + 1,
            format!("want count {}, got {}", *count + 1, p.count()),
        );
        *count = p.count();
        r.check(
            &format!("session {}: re-pinned in that response", k + 1),
            first_pin(b) == node,
            format!(
                "Set-Cookie {:?}; a request now carries {:?}",
                p.session_set_cookies(),
                b.sent_ids()
            ),
        );
        one_session_cookie(&mut r, b, &format!("(session {}) after the move", k + 1));
        moved_to.push(node);
    }

    // Restart the node, activate it.
    cluster.stop(&home);
    let took = cluster.start_node(&home);
    let healthy = lb.wait_health(&home, "up", Duration::from_secs(30));
    r.check(
        "node restarted and healthy",
        healthy.is_ok(),
        format!(
            "restarted in {:.1} s; balancer: {healthy:?}",
            took.as_secs_f64()
        ),
    );
    lb.set_state(&home, "active");

    for (k, ((b, count), node)) in browsers.iter_mut().zip(&moved_to).enumerate() {
        let (_, back) = more_requests(b, 3, node, count);
        r.check(
            &format!("session {}: no bounce-back after activate", k + 1),
            back.is_ok(),
            back.err()
                .unwrap_or(format!("3 more on {node}, none on {home}")),
        );
        one_session_cookie(&mut r, b, &format!("(session {}) at the end", k + 1));
    }
    // The activated node takes new sessions again.
    let mut on_home = false;
    for _ in 0..40 {
        if Browser::new(lb.addr).get(APP).node() == home {
            on_home = true;
            break;
        }
    }
    r.check(
        "activated node takes new sessions",
        on_home,
        format!("{home} within 40 new sessions"),
    );
    r.finish();
}
