//! The admin listener through real TCP: the status API,
//! state changes and their errors, the token, the status page, `/metrics` parsed as Prometheus
//! text with counters matching the requests sent, and no admin API on the proxy listener.

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use common::*;
use hyper::Method;
use prometheus_parse::Value;
use stickyroute::cli::ctl::CtlError;
use stickyroute::core::node_state::NodeState;
use stickyroute::store::SessionStore;

/// A raw admin request; returns (status, body).
async fn admin(
    lb: &stickyroute::control::Running,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut c = Conn::open(lb.admin_addr.unwrap()).await;
    let r = c
        .request(method, path, headers, Bytes::from(body.to_string()))
        .await;
    (r.status.as_u16(), r.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_the_token_and_report_errors() {
    let store = SessionStore::memory();
    let (n1, n2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let lines = vec![
        node_line("jvm1", n1.addr, ""),
        node_line("jvm2", n2.addr, ""),
    ];
    let lb = balancer(&with_admin(&yaml("", &lines), Some("s3cret"))).await;
    let body = r#"{"state":"draining"}"#;
    let path = "/api/v1/nodes/jvm1/state";

    // (path, headers, body, status, fragment of the reason)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (path, vec![], body, 401, "token required"),
        (
            path,
            vec![("authorization", "Bearer wrong")],
            body,
            401,
            "invalid admin token",
        ),
        ("/api/v1/reload", vec![], "", 401, "token required"),
        (
            "/api/v1/nodes/jvm9/state",
            vec![("authorization", "Bearer s3cret")],
            body,
            404,
            "jvm9",
        ),
        (
            "/api/v1/nodes/jvm1/state?pool=nope",
            vec![("authorization", "Bearer s3cret")],
            body,
            404,
            "nope",
        ),
        (
            path,
            vec![("authorization", "Bearer s3cret")],
            r#"{"state":"sleeping"}"#,
            400,
            "unknown state",
        ),
        (
            path,
            vec![("authorization", "Bearer s3cret")],
            "{not json",
            400,
            "JSON",
        ),
        (
            path,
            vec![("authorization", "Bearer s3cret")],
            r#"{"state":"draining","x":1}"#,
            400,
            "unknown field",
        ),
        ("/api/v1/nope", vec![], "", 404, "no such admin endpoint"),
    ];
    for (p, headers, b, want, fragment) in cases {
        let (status, text) = admin(&lb, Method::POST, p, &headers, b).await;
        assert_eq!(status, want, "POST {p} {headers:?} {b}: {text}");
        assert!(text.contains(fragment), "POST {p}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["error"].is_string(), "{text}");
    }
    let (status, _) = admin(&lb, Method::GET, path, &[], "").await;
    assert_eq!(status, 405);
    assert_eq!(
        lb.balancer.snapshot().pools[0].nodes[0].state(),
        NodeState::Active,
        "nothing changed"
    );

    // ctl without the token: non-zero with the server's reason.
    let err = admin_client(&lb, None)
        .set_state("jvm1", NodeState::Disabled, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CtlError::Server { status, message } if status.as_u16() == 401 && message.contains("token")),
        "{err}"
    );

    // With the token.
    let ctl = admin_client(&lb, Some("s3cret"));
    let change = ctl
        .set_state("jvm1", NodeState::Draining, Some("app"))
        .await
        .unwrap();
    assert_eq!(change.state, "draining");
    let status = ctl.status().await.unwrap();
    let j1 = node_report(&status, "jvm1");
    assert_eq!(
        (j1.state.as_str(), j1.config_state.as_str()),
        ("draining", "active")
    );
    assert!(j1.drained, "draining without sessions is drained: {j1:?}");
    assert_eq!(node_report(&status, "jvm2").state, "active");
    // Reads need no token.
    admin_client(&lb, None).status().await.unwrap();
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_not_served_on_the_proxy_listener_and_the_page_renders() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let lb = balancer(&with_admin(
        &yaml("", &[node_line("jvm1", n1.addr, "")]),
        None,
    ))
    .await;
    assert_ne!(lb.admin_addr.unwrap(), lb.addr());

    // On the proxy listener, /api/v1/status is just a path of the application.
    for path in ["/api/v1/status", "/metrics", "/"] {
        let r = get(lb.addr(), path, None).await;
        assert_eq!(r.node(), "jvm1", "{path} is proxied");
        assert!(!r.text().contains("\"pools\""), "{path}: {}", r.text());
        assert!(!r.text().contains("stickyroute_requests"), "{path}");
    }
    let r = Conn::open(lb.addr())
        .await
        .request(
            Method::POST,
            "/api/v1/nodes/jvm1/state",
            &[],
            Bytes::from(r#"{"state":"disabled"}"#),
        )
        .await;
    assert_eq!(r.node(), "jvm1");
    assert_eq!(
        lb.balancer.snapshot().pools[0].nodes[0].state(),
        NodeState::Active
    );

    // The status page on the admin listener.
    let r = get(lb.admin_addr.unwrap(), "/", None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let page = r.text();
    assert!(
        page.contains("\"route\":\"jvm1\""),
        "the report is embedded: {page}"
    );
    assert!(page.contains("setInterval(poll"), "the page polls the API");
    assert!(!page.contains("src=\"http"), "no external script or image");
    assert!(
        page.contains("data-token-required=\"false\""),
        "no token asked for without a token"
    );

    // A cross-origin browser request cannot change anything without a token.
    let (status, text) = admin(
        &lb,
        Method::POST,
        "/api/v1/nodes/jvm1/state",
        &[("origin", "http://evil.example")],
        r#"{"state":"disabled"}"#,
    )
    .await;
    assert_eq!(status, 403, "{text}");
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_match_the_requests_sent() {
    let store = SessionStore::memory();
    let (n1, n2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let lines = vec![
        node_line("jvm1", n1.addr, ""),
        node_line("jvm2", n2.addr, ""),
    ];
    let lb = balancer(&with_admin(&yaml("", &lines), None)).await;
    let ctl = admin_client(&lb, None);

    // What we send, counted by (node, outcome).
    let mut sent: HashMap<(String, &str), u64> = HashMap::new();
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let mut s = Session::new();
        let r = s.get(lb.addr(), "/count").await;
        *sent.entry((r.node().to_string(), "new")).or_default() += 1;
        sessions.push(s);
    }
    for s in sessions.iter_mut() {
        for _ in 0..2 {
            let r = s.get(lb.addr(), "/count").await;
            *sent.entry((r.node().to_string(), "hit")).or_default() += 1;
        }
    }
    // Disable jvm2: its sessions fail over on their next request.
    ctl.set_state("jvm2", NodeState::Disabled, None)
        .await
        .unwrap();
    let mut failovers = 0;
    for s in sessions.iter_mut().filter(|s| s.pin() == "jvm2") {
        let r = s.get(lb.addr(), "/count").await;
        assert_eq!(r.node(), "jvm1");
        *sent.entry(("jvm1".into(), "failover")).or_default() += 1;
        failovers += 1;
    }
    // A 404 from a node is a 4xx.
    let r = get(lb.addr(), "/nope", Some("Z.jvm1")).await;
    assert_eq!(r.status, 404);

    let m = scrape(&lb).await;
    for ((node, outcome), n) in &sent {
        let got = sample(
            &m,
            "stickyroute_requests_total",
            &[
                ("pool", "app"),
                ("node", node),
                ("outcome", outcome),
                ("status_class", "2xx"),
            ],
        );
        assert_eq!(got, Some(*n as f64), "{node} {outcome}");
    }
    let total_2xx: f64 = m
        .samples
        .iter()
        .filter(|s| {
            s.metric == "stickyroute_requests_total" && s.labels.get("status_class") == Some("2xx")
        })
        .map(|s| match s.value {
            Value::Counter(v) => v,
            ref other => panic!("requests_total is a counter: {other:?}"),
        })
        .sum();
    assert_eq!(total_2xx, sent.values().sum::<u64>() as f64);
    let hit_4xx = [
        ("node", "jvm1"),
        ("outcome", "hit"),
        ("status_class", "4xx"),
    ];
    assert_eq!(
        sample(&m, "stickyroute_requests_total", &hit_4xx),
        Some(1.0)
    );
    let all = sent.values().sum::<u64>() + 1;
    assert_eq!(
        sample(
            &m,
            "stickyroute_request_duration_seconds_count",
            &[("pool", "app")]
        ),
        Some(all as f64)
    );
    // The per-node histogram counts what each node answered (the 404 was jvm1's).
    for (node, extra) in [("jvm1", 1), ("jvm2", 0)] {
        let answered: u64 = sent
            .iter()
            .filter(|((n, _), _)| n == node)
            .map(|(_, c)| c)
            .sum::<u64>()
            + extra;
        assert_eq!(
            sample(
                &m,
                "stickyroute_node_request_duration_seconds_count",
                &[("pool", "app"), ("node", node)]
            ),
            Some(answered as f64),
            "{node}"
        );
    }
    let in_ = [("node", "jvm1"), ("direction", "in")];
    assert_eq!(
        sample(&m, "stickyroute_failovers_total", &in_),
        Some(failovers as f64)
    );
    let rebound = [("binder", "translate"), ("result", "rebound")];
    assert_eq!(
        sample(&m, "stickyroute_rebinds_total", &rebound),
        Some(failovers as f64)
    );
    assert_eq!(
        sample(&m, "stickyroute_node_in_flight", &[("node", "jvm1")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "stickyroute_node_live_sessions", &[("node", "jvm1")]),
        Some(7.0),
        "every session is on jvm1 now, Z.jvm1 included"
    );
    assert_eq!(
        sample(&m, "stickyroute_node_live_sessions", &[("node", "jvm2")]),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "stickyroute_node_drained", &[("node", "jvm2")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "stickyroute_node_state",
            &[("node", "jvm2"), ("state", "disabled")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "stickyroute_node_up", &[("node", "jvm2")]),
        Some(1.0)
    );
    // Z.jvm1 from the 404 request is tracked too.
    assert_eq!(sample(&m, "stickyroute_registry_sessions", &[]), Some(7.0));
    assert_eq!(
        sample(&m, "stickyroute_config_reloads_total", &[("result", "ok")]),
        Some(0.0)
    );

    // OpenMetrics when asked for.
    let mut c = Conn::open(lb.admin_addr.unwrap()).await;
    let r = c
        .request(
            Method::GET,
            "/metrics",
            &[("accept", "application/openmetrics-text; version=1.0.0")],
            Bytes::new(),
        )
        .await;
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(r.text().ends_with("# EOF\n"));
    lb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_from_the_environment_of_serve() {
    let port = |l: std::net::TcpListener| l.local_addr().unwrap().port();
    let proxy = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let admin_port = port(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("balancer.yaml");
    let dead = dead_addr().await;
    std::fs::write(
        &path,
        format!(
            "listeners: [{{ bind: \"127.0.0.1:{proxy}\" }}]\nadmin: {{ bind: \"127.0.0.1:{admin_port}\" }}\n\
             pools:\n  - name: app\n    nodes: [{{ route: jvm1, address: \"{dead}\" }}]\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(["serve", "-c"])
        .arg(&path)
        .env("STICKYROUTE_ADMIN_TOKEN", "from-env")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{admin_port}");
    let anonymous = stickyroute::cli::ctl::Client::new(&url, None).unwrap();
    eventually(
        "the balancer answers",
        std::time::Duration::from_secs(10),
        || async { anonymous.status().await.is_ok() },
    )
    .await;
    let err = anonymous
        .set_state("jvm1", NodeState::Draining, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CtlError::Server { status, .. } if status.as_u16() == 401),
        "{err}"
    );
    let with_token = stickyroute::cli::ctl::Client::new(&url, Some("from-env".into())).unwrap();
    with_token
        .set_state("jvm1", NodeState::Draining, None)
        .await
        .unwrap();

    // The `ctl` command line: a table, and the server's reason with a non-zero exit.
    let ctl = |args: &[&str], token: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_stickyroute"));
        c.arg("ctl").arg("--admin").arg(&url).args(args);
        c.env_remove("STICKYROUTE_ADMIN_TOKEN");
        if let Some(t) = token {
            c.env("STICKYROUTE_ADMIN_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = ctl(&["status"], None);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("POOL"), "{table}");
    assert!(table.contains("draining"), "{table}");
    let out = ctl(&["disable", "jvm1"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin token required"), "{stderr}");
    let out = ctl(&["disable", "jvm1", "--json"], Some("from-env"));
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "disabled");
    let out = ctl(&["activate", "jvm9"], Some("from-env"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node with route \"jvm9\""));
    child.kill().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// deploy/grafana/stickyroute.json and deploy/prometheus/alerts.yml against a real /metrics.

/// Metric name → label names, from the sample lines of Prometheus text (histograms as their
/// `_bucket`, `_sum` and `_count` series).
fn served(text: &str) -> HashMap<String, std::collections::BTreeSet<String>> {
    let mut out: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            labels.extend(label_keys(&line[end + 1..]).0);
        }
    }
    out
}

/// The label names of a label set or matcher list that starts right after `{`, and the length
/// up to and including its `}`.
fn label_keys(s: &str) -> (Vec<String>, usize) {
    let b = s.as_bytes();
    let (mut keys, mut i) = (Vec::new(), 0);
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() || b[i] == b'}' {
            return (keys, i + 1);
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        keys.push(s[start..i].to_string());
        // The operator (=, !=, =~, !~), then the quoted value with its escapes.
        while i < b.len() && b[i] != b'"' {
            i += 1;
        }
        i += 1;
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i += 1;
    }
}

/// Every `stickyroute_…` metric an expression names, with the label names its matchers use;
/// and the label names of its `by (…)` clauses.
fn expr_metrics(expr: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut metrics = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("stickyroute_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let (keys, used) = if tail[end..].starts_with('{') {
            label_keys(&tail[end + 1..])
        } else {
            (Vec::new(), 0)
        };
        metrics.push((tail[..end].to_string(), keys));
        rest = &tail[end + used..];
    }
    let mut by = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("by (") {
        let tail = &rest[i + 4..];
        let end = tail.find(')').expect("unclosed by (");
        by.extend(tail[..end].split(',').map(|l| l.trim().to_string()));
        rest = &tail[end..];
    }
    (metrics, by)
}

fn read_deploy(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The expressions of the alert rules; checks each rule's shape on the way.
fn alert_exprs() -> Vec<(String, String)> {
    let y: serde_json::Value = serde_norway::from_str(&read_deploy("deploy/prometheus/alerts.yml"))
        .unwrap_or_else(|e| panic!("deploy/prometheus/alerts.yml: {e}"));
    let mut out = Vec::new();
    for g in y["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            let name = r["alert"]
                .as_str()
                .expect("every rule is an alert")
                .to_string();
            assert!(r["labels"]["severity"].is_string(), "{name}: severity");
            assert!(r["annotations"]["summary"].is_string(), "{name}: summary");
            let expr = r["expr"].as_str().expect("expr").to_string();
            assert!(!expr.contains("$__"), "{name}: Grafana variables in a rule");
            out.push((name, expr));
        }
    }
    out
}

/// The expressions of the dashboard's panels and variables; checks each panel's shape.
fn dashboard_exprs() -> Vec<(String, String)> {
    let d: serde_json::Value =
        serde_json::from_str(&read_deploy("deploy/grafana/stickyroute.json"))
            .unwrap_or_else(|e| panic!("deploy/grafana/stickyroute.json: {e}"));
    assert_eq!(d["uid"], "stickyroute");
    let mut out = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().expect("title").to_string();
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "{title}: id twice"
        );
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            out.push((title.clone(), t["expr"].as_str().expect("expr").to_string()));
        }
    }
    for v in d["templating"]["list"].as_array().expect("variables") {
        let name = format!("variable {}", v["name"]);
        out.push((
            name,
            v["definition"].as_str().expect("definition").to_string(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_files_name_only_served_metrics() {
    let store = SessionStore::memory();
    let (n1, n2) = (node("jvm1", &store).await, node("jvm2", &store).await);
    let lines = vec![
        node_line("jvm1", n1.addr, ""),
        node_line("jvm2", n2.addr, ""),
    ];
    let lb = balancer(&with_admin(&yaml("binder: translate", &lines), None)).await;
    let mut s = Session::new();
    for _ in 0..3 {
        assert_eq!(s.get(lb.addr(), "/count").await.status, 200);
    }
    let text = admin_client(&lb, None).metrics().await.unwrap();
    let served = served(&text);
    // Labels Prometheus adds, and the bucket bound.
    let extra = ["instance", "job", "le"];

    for (file, exprs) in [
        ("deploy/prometheus/alerts.yml", alert_exprs()),
        ("deploy/grafana/stickyroute.json", dashboard_exprs()),
    ] {
        let mut named = std::collections::BTreeSet::new();
        for (what, expr) in &exprs {
            let (metrics, by) = expr_metrics(expr);
            assert!(
                !metrics.is_empty(),
                "{file}: {what}: no stickyroute metric in {expr}"
            );
            for (m, keys) in &metrics {
                let labels = served.get(m).unwrap_or_else(|| {
                    panic!("{file}: {what}: {m} is not served by /metrics:\n{text}")
                });
                for k in keys {
                    assert!(labels.contains(k), "{file}: {what}: {m} has no label {k}");
                }
                named.insert(m.clone());
            }
            for l in &by {
                assert!(
                    extra.contains(&l.as_str())
                        || metrics.iter().any(|(m, _)| served[m].contains(l)),
                    "{file}: {what}: `by ({l})` names no label of {metrics:?}"
                );
            }
        }
        // What the issue asks both files to cover.
        for m in [
            "stickyroute_requests_total",                       // sticky hit ratio
            "stickyroute_failovers_total",                      // failovers/s per pool
            "stickyroute_node_up",                              // nodes down
            "stickyroute_store_errors_total",                   // store errors
            "stickyroute_registry_rejected_total",              // registry full
            "stickyroute_node_request_duration_seconds_bucket", // p99 per node
        ] {
            assert!(named.contains(m), "{file} does not use {m}");
        }
    }
    // The parser finds what it should (so the checks above cannot pass by finding nothing).
    let (m, by) = expr_metrics(
        r#"sum by (pool, node) (rate(stickyroute_x_total{a="1", b=~"x|\"y"}[5m])) / stickyroute_y"#,
    );
    assert_eq!(
        m,
        [
            (
                "stickyroute_x_total".to_string(),
                vec!["a".to_string(), "b".to_string()]
            ),
            ("stickyroute_y".to_string(), vec![])
        ]
    );
    assert_eq!(by, ["pool", "node"]);
    assert!(served["stickyroute_node_request_duration_seconds_bucket"].contains("node"));
    lb.stop().await;
}

/// Off loopback the admin listener needs a token to start at all, and then its read
/// endpoints need it too: as a bearer token or as the Basic password a browser sends.
/// `/live` stays open (a container health check knows no token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_off_loopback_needs_a_token_for_reads_too() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let pool = yaml("", &[node_line("jvm1", n1.addr, "")]);

    // No token: the balancer refuses to start, naming the key.
    let open = format!("{pool}admin:\n  bind: \"0.0.0.0:0\"\n");
    let cfg = stickyroute::config::Config::from_yaml(&open, "test.yaml").unwrap();
    let err = match stickyroute::control::Running::start(cfg).await {
        Ok(_) => panic!("an admin listener on 0.0.0.0 without a token was started"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("key `admin.token`") && err.contains("not on loopback"),
        "{err}"
    );

    let lb = balancer(&format!("{open}  token: s3cret\n")).await;
    let admin_addr = std::net::SocketAddr::from(([127, 0, 0, 1], lb.admin_addr.unwrap().port()));
    let read = |path: &'static str, auth: Option<&'static str>| async move {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        Conn::open(admin_addr)
            .await
            .request(Method::GET, path, &headers, Bytes::new())
            .await
    };
    for path in ["/api/v1/status", "/metrics", "/"] {
        let r = read(path, None).await;
        assert_eq!(r.status, 401, "GET {path} without a token: {}", r.text());
        assert!(r.text().contains("not on loopback"), "{}", r.text());
        assert!(
            !r.text().contains("jvm1"),
            "nothing of the pool leaks: {}",
            r.text()
        );
        let challenges: Vec<&str> = r
            .headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer"))
                && challenges.iter().any(|c| c.starts_with("Basic")),
            "{challenges:?}"
        );
        let r = read(path, Some("Bearer wrong")).await;
        assert_eq!(r.status, 401, "GET {path} with a wrong token");
        assert!(r.text().contains("invalid admin token"), "{}", r.text());
        let r = read(path, Some("Bearer s3cret")).await;
        assert_eq!(r.status, 200, "GET {path} with the token: {}", r.text());
        // `admin:s3cret`, as a browser sends it after its login dialog.
        let r = read(path, Some("Basic YWRtaW46czNjcmV0")).await;
        assert_eq!(r.status, 200, "GET {path} with Basic: {}", r.text());
    }
    assert!(read("/", Some("Bearer s3cret"))
        .await
        .text()
        .contains("\"route\":\"jvm1\""));
    let live = read("/live", None).await;
    assert_eq!((live.status.as_u16(), live.text().as_str()), (200, "ok\n"));
    let ready = read("/ready", None).await;
    assert_eq!(
        (ready.status.as_u16(), ready.text().as_str()),
        (200, "ready\n")
    );
    // ctl sends its token on reads too; without one it hears why.
    let ctl =
        stickyroute::cli::ctl::Client::new(&format!("http://{admin_addr}"), Some("s3cret".into()))
            .unwrap();
    ctl.status().await.unwrap();
    let anon = stickyroute::cli::ctl::Client::new(&format!("http://{admin_addr}"), None).unwrap();
    let err = anon.status().await.unwrap_err();
    assert!(
        matches!(&err, CtlError::Server { status, .. } if status.as_u16() == 401),
        "{err}"
    );
    // Basic never authorizes a change.
    let r = Conn::open(admin_addr)
        .await
        .request(
            Method::POST,
            "/api/v1/nodes/jvm1/state",
            &[("authorization", "Basic YWRtaW46czNjcmV0")],
            Bytes::from(r#"{"state":"disabled"}"#),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        lb.balancer.snapshot().pools[0].nodes[0].state(),
        NodeState::Active
    );
    lb.stop().await;
}

/// `GET /ready` is open like `/live` (no token, even with one configured): `200` while serving,
/// `503` from the start of a graceful shutdown. The admin listener keeps serving while a request
/// still drains on the proxy listener, which has stopped accepting, and closes once it is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_answers_503_from_the_start_of_a_shutdown_through_the_drain() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A node that holds its answer to the first request until the test releases it.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_addr = upstream.local_addr().unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let held_node = tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the balancer closed before sending its request head");
            head.extend_from_slice(&buf[..n]);
        }
        released.await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nheld")
            .await
            .unwrap();
    });
    let lb = balancer(&with_admin(
        &yaml("", &[node_line("jvm1", node_addr, "")]),
        Some("s3cret"),
    ))
    .await;
    let admin_addr = lb.admin_addr.unwrap();
    let proxy_addr = lb.addr();
    let call = |method: Method, path: &'static str| async move {
        let r = Conn::open(admin_addr)
            .await
            .request(method, path, &[], Bytes::new())
            .await;
        (r.status.as_u16(), r.text())
    };

    assert_eq!(call(Method::GET, "/ready").await, (200, "ready\n".into()));
    assert_eq!(call(Method::HEAD, "/ready").await.0, 200);
    assert_eq!(call(Method::POST, "/ready").await.0, 405);

    let client = tokio::spawn(async move { get(proxy_addr, "/held", None).await });
    eventually("the held request in flight to jvm1", DEADLINE, || async {
        lb.balancer.snapshot().pools[0]
            .node("jvm1")
            .unwrap()
            .inflight()
            == 1
    })
    .await;
    lb.shutdown_token().cancel();
    let stopped = tokio::spawn(lb.stop());

    assert_eq!(
        call(Method::GET, "/ready").await,
        (503, "shutting down\n".into())
    );
    assert_eq!(call(Method::GET, "/live").await, (200, "ok\n".into()));
    eventually(
        "the proxy listener refuses connections",
        DEADLINE,
        || async { tokio::net::TcpStream::connect(proxy_addr).await.is_err() },
    )
    .await;
    // Still draining: the admin listener still answers, and still says 503.
    assert!(
        !stopped.is_finished(),
        "the balancer stopped with a request in flight"
    );
    assert_eq!(call(Method::GET, "/ready").await.0, 503);

    release.send(()).unwrap();
    let r = tokio::time::timeout(DEADLINE, client)
        .await
        .expect("the held request never finished")
        .unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "held"));
    held_node.await.unwrap();
    tokio::time::timeout(DEADLINE, stopped)
        .await
        .expect("the balancer did not stop after the drain")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(admin_addr).await.is_err(),
        "the admin listener outlived the drain"
    );
}
