//! The docker-compose demo, checked without Docker (CI machines have no engine):
//!
//! - `docker-compose.yml`, the balancer config it mounts and the init script agree (node service
//!   names, routes and ports, the store URL and its service, published ports and binds);
//! - the `Dockerfile` is multi-stage, runs as a non-root user, has a health check, and agrees
//!   with both;
//! - `scripts/failover-demo.sh` is sound, and it runs for real against `stickyroute demo` and —
//!   with `TEST_POSTGRES_URL` — against the compose topology run as local processes (the node
//!   commands of the compose file, the init script, the mounted balancer config), with a
//!   stand-in for `docker compose` that stops a node process;
//! - the scalable service's replicas, run as local processes on their own loopback addresses
//!   with a real DNS server (Knot, `common/dns.rs`) in the place of Docker's, take the routes
//!   the balancer's pool `scaled` discovers for them.
//!
//! Nothing here needs Docker. The failover runs need `curl` (the script's client), the compose
//! topology run needs PostgreSQL and the scaled run `knotd`: without them they print `SKIPPED`
//! and pass, and under `STICKYROUTE_REQUIRE_SERVICES=1` (CI) they fail, as every service test
//! does.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_norway::Value;
use stickyroute::config::Config;
use stickyroute::demo::command::{start_demo, DemoOptions};

const COMPOSE_FILE: &str = "docker-compose.yml";
const BALANCER_CONFIG: &str = "deploy/balancer.compose.yaml";
const INIT_SQL: &str = "deploy/postgres-init.sql";
const FAILOVER_SCRIPT: &str = "scripts/failover-demo.sh";

use common::{read_repo_file as read, repo_root as root};

fn yaml(rel: &str) -> Value {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

/// The compose services by name.
fn services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (str_of(k, "service name").to_owned(), v.clone()))
        .collect()
}

/// A service's `command`, which must be written as a list (no shell word splitting).
fn command(name: &str, svc: &Value) -> Vec<String> {
    svc["command"]
        .as_sequence()
        .unwrap_or_else(|| panic!("service {name}: command must be a list"))
        .iter()
        .map(|a| str_of(a, "command argument").to_owned())
        .collect()
}

/// The value after `--flag` in an argument list.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn host_port(s: &str) -> (&str, u16) {
    let (h, p) = s.rsplit_once(':').unwrap_or_else(|| panic!("{s}: no port"));
    (h, p.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Container ports a service publishes (`"127.0.0.1:8080:8080"`, `"8080:8080"`, `"8080"`).
fn published_container_ports(svc: &Value) -> BTreeSet<u16> {
    strings(&svc["ports"])
        .iter()
        .map(|p| {
            p.rsplit(':')
                .next()
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// `postgres://user:password@host:port/db?params` → its parts.
struct DbUrl {
    scheme: String,
    user: String,
    password: String,
    host: String,
    port: u16,
    db: String,
}

fn parse_db_url(url: &str) -> DbUrl {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (auth, rest) = rest.split_once('@').expect("user@");
    let (user, password) = auth.split_once(':').expect("user:password");
    let (hostport, rest) = rest.split_once('/').expect("/db");
    let (host, port) = host_port(hostport);
    DbUrl {
        scheme: scheme.to_owned(),
        user: user.to_owned(),
        password: password.to_owned(),
        host: host.to_owned(),
        port,
        db: rest.split('?').next().unwrap().to_owned(),
    }
}

/// The demo-node services: name → (route, listen port, store URL). The route is `None` for a
/// service that takes it from DNS (`--route-from-ptr`: the scalable one).
fn node_services(compose: &Value) -> BTreeMap<String, (Option<String>, u16, String)> {
    services(compose)
        .iter()
        .filter(|(_, svc)| !svc["command"].is_null())
        .filter_map(|(name, svc)| {
            let cmd = command(name, svc);
            (cmd.first().map(String::as_str) == Some("demo-node")).then(|| {
                let from_ptr = cmd.iter().any(|a| a == "--route-from-ptr");
                let route = flag(&cmd, "--route").map(str::to_owned);
                assert!(
                    route.is_some() != from_ptr,
                    "service {name}: --route or --route-from-ptr, one of them: {cmd:?}"
                );
                let (host, port) = host_port(flag(&cmd, "--listen").expect("--listen"));
                assert_eq!(
                    host, "0.0.0.0",
                    "service {name}: listen on every interface of its container"
                );
                let store = flag(&cmd, "--store").expect("--store").to_owned();
                (name.clone(), (route, port, store))
            })
        })
        .collect()
}

#[test]
fn compose_file_and_balancer_config_agree() {
    let compose = yaml(COMPOSE_FILE);
    let svcs = services(&compose);
    let nodes = node_services(&compose);
    assert_eq!(
        nodes.len(),
        4,
        "three demo nodes and a scalable one: {nodes:?}"
    );
    let fixed: BTreeMap<&String, (&str, u16)> = nodes
        .iter()
        .filter_map(|(name, (route, port, _))| route.as_deref().map(|r| (name, (r, *port))))
        .collect();
    assert_eq!(fixed.len(), 3, "three demo nodes with a route: {nodes:?}");
    let bal = yaml(BALANCER_CONFIG);

    // Every node of the balancer config is a demo-node service with that route and port, and
    // every demo-node service is a node of the balancer.
    let cfg_nodes = bal["pools"][0]["nodes"]
        .as_sequence()
        .expect("pools[0].nodes");
    let mut seen = BTreeSet::new();
    for n in cfg_nodes {
        let route = str_of(&n["route"], "route");
        let (host, port) = host_port(str_of(&n["address"], "address"));
        let (svc_route, svc_port) = fixed.get(&host.to_owned()).unwrap_or_else(|| {
            panic!("node {route}: {host} is not a demo-node service of {COMPOSE_FILE}")
        });
        assert_eq!((*svc_route, *svc_port), (route, port), "service {host}");
        // The node's own health check probes the port it listens on.
        let hc = strings(&svcs[host]["healthcheck"]["test"]).join(" ");
        assert!(
            hc.contains(&format!("http://127.0.0.1:{port}/health")),
            "{host}: {hc}"
        );
        seen.insert(host.to_owned());
    }
    assert_eq!(
        seen,
        fixed.keys().map(|k| k.to_string()).collect(),
        "demo-node services missing from {BALANCER_CONFIG}"
    );
    scalable_service_is_discovered(&svcs, &nodes, &bal);

    // One store URL; it names the store service, its credentials and database.
    let urls: BTreeSet<&str> = nodes.values().map(|(_, _, s)| s.as_str()).collect();
    assert_eq!(urls.len(), 1, "every node uses the same store: {urls:?}");
    let url = parse_db_url(urls.first().unwrap());
    assert_eq!(url.scheme, "postgres");
    assert_eq!(url.port, 5432);
    let store = svcs
        .get(&url.host)
        .unwrap_or_else(|| panic!("store host {} is not a service", url.host));
    assert!(str_of(&store["image"], "image").starts_with("postgres:16"));
    let env = &store["environment"];
    assert_eq!(str_of(&env["POSTGRES_USER"], "POSTGRES_USER"), url.user);
    assert_eq!(
        str_of(&env["POSTGRES_PASSWORD"], "POSTGRES_PASSWORD"),
        url.password
    );
    assert_eq!(str_of(&env["POSTGRES_DB"], "POSTGRES_DB"), url.db);
    let init_mount = strings(&store["volumes"])
        .into_iter()
        .find(|v| v.starts_with(&format!("./{INIT_SQL}:")))
        .expect("the init script is mounted into the store");
    assert!(
        init_mount.contains(":/docker-entrypoint-initdb.d/") && init_mount.ends_with(".sql:ro"),
        "{init_mount}"
    );
    for node in nodes.keys() {
        assert_eq!(
            str_of(
                &svcs[node.as_str()]["depends_on"][url.host.as_str()]["condition"],
                "condition"
            ),
            "service_healthy",
            "{node} waits for the database"
        );
    }

    // The balancer: mounts this config where its command reads it, publishes the listener and
    // admin ports, which the config binds on every interface; starts after the nodes.
    let balancer = &svcs["balancer"];
    let cmd = command("balancer", balancer);
    assert_eq!(cmd[0], "serve");
    let config_path = flag(&cmd, "--config").expect("--config");
    assert!(
        strings(&balancer["volumes"]).contains(&format!("./{BALANCER_CONFIG}:{config_path}:ro")),
        "{BALANCER_CONFIG} is mounted at {config_path}"
    );
    let listen = str_of(&bal["listeners"][0]["bind"], "listeners[0].bind");
    let admin = str_of(&bal["admin"]["bind"], "admin.bind");
    assert_eq!(host_port(listen), ("0.0.0.0", 8080));
    assert_eq!(host_port(admin), ("0.0.0.0", 9901));
    assert!(
        !str_of(&bal["admin"]["token"], "admin.token").is_empty(),
        "a published admin listener needs a token"
    );
    assert_eq!(
        published_container_ports(balancer),
        BTreeSet::from([8080, 9901])
    );
    for node in nodes.keys() {
        assert_eq!(
            str_of(
                &balancer["depends_on"][node.as_str()]["condition"],
                "condition"
            ),
            "service_started",
            "the balancer should start after {node}"
        );
    }
    // Every stickyroute service runs the image of this repository's Dockerfile.
    for name in nodes.keys().chain(std::iter::once(&"balancer".to_owned())) {
        assert_eq!(svcs[name.as_str()]["build"].as_str(), Some("."), "{name}");
    }

    // The config is valid as the balancer will read it, with the service names resolved.
    let mut text = read(BALANCER_CONFIG);
    for (name, (_, port, _)) in &nodes {
        text = text.replace(
            &format!("\"{name}:{port}\""),
            &format!("\"127.0.0.1:{port}\""),
        );
    }
    let cfg = Config::from_yaml(&text, BALANCER_CONFIG).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.pools[0].binder.as_str(),
        "translate",
        "the nodes find sessions by their original id"
    );
}

/// The scalable demo-node service: every replica computes its route from the PTR name of its
/// address, and the balancer's pool `scaled` discovers the service by name with the same rule.
/// Nothing stops `--scale`: no container name, no published port.
fn scalable_service_is_discovered(
    svcs: &BTreeMap<String, Value>,
    nodes: &BTreeMap<String, (Option<String>, u16, String)>,
    bal: &Value,
) {
    let (name, port) = nodes
        .iter()
        .find_map(|(n, (route, port, _))| route.is_none().then_some((n.as_str(), *port)))
        .expect("a demo-node service with --route-from-ptr");
    let svc = &svcs[name];
    assert!(
        svc["container_name"].is_null(),
        "{name}: container_name stops --scale"
    );
    assert!(
        svc["ports"].is_null(),
        "{name}: a published port stops --scale"
    );
    assert_eq!(svc["restart"].as_str(), Some("on-failure"), "{name}");
    let hc = strings(&svc["healthcheck"]["test"]).join(" ");
    assert!(
        hc.contains(&format!("http://127.0.0.1:{port}/health")),
        "{name}: {hc}"
    );
    let cmd = command(name, svc);
    for test_only in ["--ptr-address", "--resolver"] {
        assert!(
            flag(&cmd, test_only).is_none(),
            "{name}: {test_only} in {cmd:?}"
        );
    }

    let pools = bal["pools"].as_sequence().expect("pools");
    let discovered: Vec<&Value> = pools.iter().filter(|p| !p["discovery"].is_null()).collect();
    assert_eq!(
        discovered.len(),
        1,
        "one pool discovers the scalable service"
    );
    let pool = discovered[0];
    assert!(pool["nodes"].is_null(), "the scalable pool lists no node");
    let d = &pool["discovery"];
    assert_eq!(str_of(&d["host"], "discovery.host"), name);
    assert_eq!(d["port"].as_u64(), Some(u64::from(port)));
    assert!(d["srv"].is_null(), "Docker's DNS has no SRV records");
    assert_eq!(
        d["route"].as_str().unwrap_or("first_label"),
        "first_label",
        "the rule of demo-node --route-from-ptr"
    );
    // A pool naming its host: the fixed nodes' pool keeps every other request.
    let hosts = strings(&pool["hosts"]);
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert!(
        hosts[0].ends_with(".localhost"),
        "{hosts:?}: resolves to loopback"
    );
    assert_eq!(pool["binder"].as_str(), Some("translate"));
    assert_eq!(
        pool["health"]["path"].as_str(),
        Some("/health"),
        "the demo node's health page"
    );
}

#[test]
fn init_script_creates_the_tomcat_sessions_table() {
    let sql = read(INIT_SQL).to_lowercase();
    let squeezed: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        squeezed.contains("create table if not exists tomcat_sessions ("),
        "{squeezed}"
    );
    for column in [
        "session_id varchar(100) not null primary key",
        "valid_session char(1) not null",
        "max_inactive int not null",
        "last_access bigint not null",
        "app_name varchar(255)",
        "session_data bytea",
    ] {
        assert!(squeezed.contains(column), "{column} missing: {squeezed}");
    }
}

/// Dockerfile instructions, continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        cur.push_str(t.trim_end_matches('\\').trim());
        cur.push(' ');
        if !t.ends_with('\\') {
            let (op, args) = cur.trim().split_once(' ').unwrap_or((cur.trim(), ""));
            out.push((op.to_uppercase(), args.trim().to_owned()));
            cur.clear();
        }
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_healthcheck_and_agrees_with_compose() {
    let ins = dockerfile();
    let all = |op: &str| -> Vec<String> {
        ins.iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.clone())
            .collect()
    };
    let one = |op: &str| -> String {
        let v = all(op);
        assert_eq!(v.len(), 1, "exactly one {op}: {v:?}");
        v[0].clone()
    };

    let froms = all("FROM");
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert_eq!(froms[0], "rust:1-slim-bookworm AS build");
    assert_eq!(froms[1], "debian:bookworm-slim");
    let runs = all("RUN");
    assert!(
        runs.iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "{runs:?}"
    );
    let copies = all("COPY");
    assert!(
        copies.iter().any(|c| c.starts_with("--from=build ")),
        "{copies:?}"
    );
    for c in &copies {
        if c.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = c.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                root().join(src).exists(),
                "COPY {src}: missing from the build context"
            );
        }
    }

    let user = one("USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "USER {user}"
    );
    assert!(runs
        .iter()
        .any(|r| r.contains("useradd") && r.contains(user.split(':').next().unwrap())));

    let exposed: BTreeSet<u16> = one("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(exposed, BTreeSet::from([8080, 9901]));
    let compose = yaml(COMPOSE_FILE);
    assert_eq!(
        published_container_ports(&services(&compose)["balancer"]),
        exposed
    );

    // The health check asks the admin listener, whose port is the one the config binds, with a
    // tool the runtime stage installs, within bounded time.
    let hc = one("HEALTHCHECK");
    assert!(hc.contains("CMD"), "{hc}");
    assert!(
        hc.contains("--timeout=") && hc.contains("--max-time"),
        "{hc}"
    );
    let bal = yaml(BALANCER_CONFIG);
    let (_, admin_port) = host_port(str_of(&bal["admin"]["bind"], "admin.bind"));
    assert!(hc.contains(&format!("127.0.0.1:{admin_port}/")), "{hc}");
    assert!(hc.contains("\"curl\""), "{hc}");
    let runtime_runs: Vec<&String> = {
        let start = ins.iter().rposition(|(o, _)| o == "FROM").unwrap();
        ins[start..]
            .iter()
            .filter(|(o, _)| o == "RUN")
            .map(|(_, a)| a)
            .collect()
    };
    assert!(
        runtime_runs
            .iter()
            .any(|r| r.contains("apt-get install") && r.contains(" curl")),
        "{runtime_runs:?}"
    );

    let entry = one("ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(&entry).expect("ENTRYPOINT in exec form");
    assert_eq!(entry, ["/usr/local/bin/stickyroute"]);
    assert!(
        runs.iter()
            .any(|r| r.contains("/usr/local/bin/stickyroute")),
        "the build stage installs it there"
    );
    let cmd: Vec<String> = serde_json::from_str(&one("CMD")).expect("CMD in exec form");
    assert_eq!(cmd[0], "serve");

    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(ignored.contains(&"target/"), "{ignored:?}");
    for needed in ["src", "benches", "Cargo.toml", "Cargo.lock"] {
        assert!(
            !ignored.iter().any(|i| i.trim_end_matches('/') == needed),
            "{needed} is ignored"
        );
    }
}

#[test]
fn failover_script_is_sound_and_names_existing_services() {
    let path = root().join(FAILOVER_SCRIPT);
    let script = read(FAILOVER_SCRIPT);
    let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(script.starts_with("#!/usr/bin/env bash\n"));
    assert!(script.contains("\nset -euo pipefail\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o111 != 0,
            "executable"
        );
    }
    for line in script
        .lines()
        .filter(|l| l.trim_start().starts_with("curl "))
    {
        assert!(line.contains("--max-time"), "unbounded curl: {line}");
    }
    assert!(script.contains("stop \"$service\""));
    // The script maps route jvmN to service nodeN.
    assert!(script.contains("service=\"node${route#jvm}\""));
    for (name, (route, _, _)) in node_services(&yaml(COMPOSE_FILE)) {
        // The scalable service's replicas are in another pool (`scaled`), which the script
        // does not count through.
        let Some(route) = route else { continue };
        assert_eq!(
            name.strip_prefix("node"),
            route.strip_prefix("jvm"),
            "service {name} runs route {route}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Running the failover script
// ---------------------------------------------------------------------------------------------

/// Whether `tool` runs. Without it `test` skips loudly (a `SKIPPED:` line on the process's
/// stderr), or fails under `STICKYROUTE_REQUIRE_SERVICES=1` (CI), as a missing service does
/// (`common/services.rs`).
fn have(tool: &str, test: &str) -> bool {
    let runs = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        if common::services::services_required() {
            panic!("{test} needs {tool} (STICKYROUTE_REQUIRE_SERVICES=1)");
        }
        let _ = writeln!(std::io::stderr(), "SKIPPED: {test} needs {tool}");
    }
    runs
}

/// Writes an executable stand-in for `docker compose`: `config --services` lists the compose
/// file's services; `stop <service>` runs `stop_body` with `$2` the service.
fn fake_compose(dir: &Path, stop_body: &str) -> PathBuf {
    let names: Vec<String> = services(&yaml(COMPOSE_FILE)).into_keys().collect();
    let script = format!(
        "#!/bin/sh\n# stand-in for `docker compose` in tests\ncase \"$1\" in\n  config) printf '%s\\n' {} ;;\n  stop)\n{stop_body}\n    ;;\n  *) echo \"unexpected: $*\" >&2; exit 2 ;;\nesac\n",
        names.join(" ")
    );
    let path = dir.join("compose");
    std::fs::write(&path, script).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

/// Runs the failover script (bounded) and returns its stdout; panics with its output on failure.
async fn run_failover_script(balancer: SocketAddr, compose: &Path) -> String {
    let child = tokio::process::Command::new(root().join(FAILOVER_SCRIPT))
        .env("BALANCER_URL", format!("http://{balancer}"))
        .env("COMPOSE", compose)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("failover-demo.sh did not finish within 60 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failover-demo.sh failed ({:?})\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_script_runs_against_the_demo() {
    if !have("curl", "failover_script_runs_against_the_demo") {
        return;
    }
    let demo = start_demo(DemoOptions::ephemeral()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let compose = fake_compose(
        dir.path(),
        &format!(
            "    curl -fsS --max-time 5 -o /dev/null -X POST \"http://{}/nodes/jvm${{2#node}}/stop\"",
            demo.control_addr
        ),
    );
    let out = run_failover_script(demo.balancer_addr, &compose).await;
    assert!(out.contains("OK: the count went on (3 -> 4)"), "{out}");
    let stopped: Vec<String> = demo
        .nodes()
        .await
        .into_iter()
        .filter(|n| !n.running)
        .map(|n| n.route)
        .collect();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert!(
        out.contains(&format!("(pinned to {}, count 3)", stopped[0])),
        "{out}"
    );
    demo.stop().await;
}

/// Child processes killed on drop.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns the binary with `args` and waits (bounded) for a stdout line containing `marker`.
fn spawn_until(args: &[String], marker: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(marker) => return (child, line),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!("{args:?}: no {marker:?} within 10 s");
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_topology_fails_over_with_postgres() {
    let Some(pg_url) = common::service_url(
        "TEST_POSTGRES_URL",
        "compose_topology_fails_over_with_postgres",
    ) else {
        return;
    };
    if !have("curl", "compose_topology_fails_over_with_postgres") {
        return;
    }
    // The init script, as the postgres image would run it.
    let pool = sqlx::PgPool::connect(&pg_url).await.unwrap();
    sqlx::raw_sql(&read(INIT_SQL)).execute(&pool).await.unwrap();

    // The node commands of the compose file, on local ports and the test database.
    let compose = yaml(COMPOSE_FILE);
    let svcs = services(&compose);
    let dir = tempfile::tempdir().unwrap();
    let mut procs = Procs(Vec::new());
    let mut text = read(BALANCER_CONFIG);
    for (name, (route, port, _)) in node_services(&compose) {
        // The scalable service serves the pool `scaled`, which the script does not use (run
        // with its DNS: scaled_replicas_and_the_balancer_agree_on_their_routes).
        if route.is_none() {
            continue;
        }
        let mut args = command(&name, &svcs[name.as_str()]);
        for (flag_name, value) in [
            ("--listen", "127.0.0.1:0".to_owned()),
            ("--store", pg_url.clone()),
        ] {
            let i = args.iter().position(|a| a == flag_name).unwrap();
            args[i + 1] = value;
        }
        let (child, line) = spawn_until(&args, "listening on http://");
        let addr = line
            .split("http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        std::fs::write(
            dir.path().join(format!("{name}.pid")),
            child.id().to_string(),
        )
        .unwrap();
        procs.0.push(child);
        text = text.replace(&format!("\"{name}:{port}\""), &format!("\"{addr}\""));
    }
    // The mounted balancer config, listening on local ports.
    let (listen, admin) = (free_port(), free_port());
    text = text
        .replace("\"0.0.0.0:8080\"", &format!("\"127.0.0.1:{listen}\""))
        .replace("\"0.0.0.0:9901\"", &format!("\"127.0.0.1:{admin}\""));
    let config = dir.path().join("balancer.yaml");
    std::fs::write(&config, &text).unwrap();
    let args: Vec<String> = [
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--grace",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    let balancer = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(balancer);
    let lb: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();

    // `docker compose stop nodeN`: SIGTERM to the node process, wait for it to exit.
    let compose_cmd = fake_compose(
        dir.path(),
        &format!(
            "    pid=$(cat \"{dir}/$2.pid\")\n    kill -TERM \"$pid\"\n    for _ in $(seq 1 100); do\n      # gone, or a zombie waiting for the test to reap it\n      grep -qs '^State:[[:space:]]*[ZX]' /proc/$pid/status || [ ! -e /proc/$pid ] && exit 0\n      sleep 0.1\n    done\n    exit 1",
            dir = dir.path().display()
        ),
    );
    let out = run_failover_script(lb, &compose_cmd).await;
    assert!(out.contains("OK: the count went on (3 -> 4)"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// The scalable service, run as local processes against a real DNS server
// ---------------------------------------------------------------------------------------------

/// The scalable service as `--scale node=2` runs it, on local processes, with a real DNS server
/// (Knot, `common::dns`) standing in for Docker's: two replicas run the compose file's command,
/// each taking its route from the PTR name of its own address, and the pool `scaled` of the
/// mounted config discovers them by name with `route: first_label`. Both sides agree on every
/// route: the balancer lists exactly the replicas' routes, and a session stays on the replica
/// that created it, whose route its cookie carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaled_replicas_and_the_balancer_agree_on_their_routes() {
    use std::net::Ipv4Addr;
    let Some(dns) = common::dns::DnsServer::start("compose.test.").await else {
        return;
    };
    let compose = yaml(COMPOSE_FILE);
    let svcs = services(&compose);
    let (name, port) = node_services(&compose)
        .into_iter()
        .find_map(|(n, (route, port, _))| route.is_none().then_some((n, port)))
        .expect("the scalable service");
    // Docker names each replica's address after its container, on the project's network.
    let replicas = [
        (Ipv4Addr::new(127, 0, 0, 21), "stickyroute-demo-node-1"),
        (Ipv4Addr::new(127, 0, 0, 22), "stickyroute-demo-node-2"),
    ];
    let mut records = Vec::new();
    for (ip, container) in replicas {
        records.push(common::dns::Record::a(&name, 5, ip));
        let ptr = format!("{container}.stickyroute-demo_default.");
        records.push(common::dns::Record::ptr(ip, 5, &ptr));
    }
    dns.set_records(&records).await;

    // Every replica runs the same command, on one port of its own address (as in its
    // container), with the address and the DNS server given, and a memory store.
    let local_port = free_port();
    let mut procs = Procs(Vec::new());
    for (ip, container) in replicas {
        let mut args = command(&name, &svcs[name.as_str()]);
        for (flag_name, value) in [
            ("--listen", format!("{ip}:{local_port}")),
            ("--store", "memory".to_owned()),
        ] {
            let i = args.iter().position(|a| a == flag_name).unwrap();
            args[i + 1] = value;
        }
        args.extend(["--ptr-address".into(), ip.to_string()]);
        args.extend(["--resolver".into(), dns.addr().to_string()]);
        let (child, line) = spawn_until(&args, "listening on http://");
        procs.0.push(child);
        assert!(
            line.starts_with(&format!("demo-node {container} listening on http://{ip}:")),
            "{line}"
        );
    }

    // The mounted config, with local listeners and the test's DNS server for the pool `scaled`.
    let mut bal = yaml(BALANCER_CONFIG);
    bal["listeners"][0]["bind"] = Value::from("127.0.0.1:0");
    bal["admin"]["bind"] = Value::from("127.0.0.1:0");
    let token = str_of(&bal["admin"]["token"], "admin.token").to_owned();
    let pools = bal["pools"].as_sequence_mut().unwrap();
    let scaled = pools
        .iter_mut()
        .find(|p| !p["discovery"].is_null())
        .expect("the pool of the scalable service");
    let pool_name = str_of(&scaled["name"], "pool name").to_owned();
    let host = str_of(&scaled["hosts"][0], "hosts[0]").to_owned();
    let d = scaled["discovery"].as_mapping_mut().unwrap();
    assert_eq!(d.get("port").and_then(Value::as_u64), Some(u64::from(port)));
    d.insert("host".into(), format!("{name}.compose.test.").into());
    d.insert("port".into(), u64::from(local_port).into());
    d.insert("resolver".into(), dns.addr().to_string().into());
    d.insert("min_interval".into(), "100ms".into());
    let text = serde_norway::to_string(&bal).unwrap();
    let cfg = Config::from_yaml(&text, BALANCER_CONFIG).unwrap_or_else(|e| panic!("{e}"));
    let lb = stickyroute::control::Running::start(cfg).await.unwrap();
    let admin = common::admin_client(&lb, Some(&token));

    let want: BTreeSet<String> = replicas.iter().map(|(_, c)| c.to_string()).collect();
    common::eventually(
        "the balancer lists both replicas by their routes, up",
        Duration::from_secs(15),
        || async {
            let s = admin.status().await.unwrap();
            let p = s.pools.iter().find(|p| p.name == pool_name).unwrap();
            let up: BTreeSet<String> = p
                .nodes
                .iter()
                .filter(|n| n.health == "up" && n.source == "discovery")
                .map(|n| n.route.clone())
                .collect();
            up == want
        },
    )
    .await;

    // New sessions spread over both replicas; each stays where it began.
    let mut served = BTreeSet::new();
    for _ in 0..20 {
        let (node, cookie, count) = scaled_count(lb.addr(), &host, None).await;
        assert_eq!(count, 1);
        assert!(
            cookie.ends_with(&format!(".{node}")),
            "{cookie} from {node}"
        );
        let (again, _, count) = scaled_count(lb.addr(), &host, Some(&cookie)).await;
        assert_eq!((again.as_str(), count), (node.as_str(), 2), "{cookie}");
        served.insert(node);
        if served == want {
            break;
        }
    }
    assert_eq!(served, want, "both replicas took sessions");
    lb.stop().await;
    drop(procs);
}

/// `GET /count` through the balancer for `host`: (the node that answered, the session cookie
/// it holds now, the count).
async fn scaled_count(lb: SocketAddr, host: &str, cookie: Option<&str>) -> (String, String, i64) {
    let mut conn = common::Conn::open(lb).await;
    let cookie_header = cookie.map(|c| format!("JSESSIONID={c}"));
    let headers: Vec<(&str, &str)> = cookie_header
        .as_deref()
        .map(|c| vec![("cookie", c)])
        .unwrap_or_default();
    let mut req =
        common::Proto::Http1.request(hyper::Method::GET, "/count", &headers, bytes::Bytes::new());
    req.headers_mut()
        .insert("host", hyper::header::HeaderValue::from_str(host).unwrap());
    let r = conn.send(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let node = r.node().to_owned();
    let json = r.json();
    let cookie = r
        .session_cookies()
        .into_iter()
        .last()
        .or_else(|| cookie.map(str::to_owned))
        .expect("a session cookie");
    (node, cookie, json["count"].as_i64().unwrap())
}
