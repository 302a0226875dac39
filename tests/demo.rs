//! `stickyroute demo`: the in-process entry point (count, stop the serving node through the
//! control listener, count on), the control listener's API, port conflicts, and the built binary
//! started the way the README starts it (guide printed, `/count` served, clean SIGTERM exit).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use hyper::Method;
use stickyroute::demo::command::{start_demo, DemoError, DemoOptions, RunningDemo};

/// Counts once through the balancer like a browser: sends the cookie it holds, keeps the one
/// it is given. Returns (count, node, response).
async fn count(addr: SocketAddr, jar: &mut Option<String>) -> (i64, String, Resp) {
    let r = get(addr, "/count", jar.as_deref()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    if let Some(c) = r.session_cookies().last() {
        *jar = Some(c.clone());
    }
    let body = r.json();
    let n = body["count"]
        .as_i64()
        .unwrap_or_else(|| panic!("no count: {body}"));
    (n, r.node().to_string(), r)
}

/// The route the client is pinned to: the text after the last `.` of its cookie.
fn pin_route(cookie: &str) -> &str {
    cookie.rsplit('.').next().unwrap_or("")
}

async fn control(demo: &RunningDemo, method: Method, path: &str) -> Resp {
    Conn::open(demo.control_addr)
        .await
        .request(method, path, &[], Bytes::new())
        .await
}

#[tokio::test]
async fn demo_session_survives_stopping_its_node_and_is_rebound() {
    let demo = start_demo(DemoOptions::ephemeral()).await.unwrap();
    let lb = demo.balancer_addr;
    let mut jar = None;
    let mut serving = String::new();
    for want in 1..=5 {
        let (n, node, _) = count(lb, &mut jar).await;
        assert_eq!(n, want);
        if want > 1 {
            assert_eq!(node, serving, "sticky: one node serves the session");
        }
        serving = node;
    }
    let cookie = jar.clone().unwrap();
    assert_eq!(
        pin_route(&cookie),
        serving,
        "a new session is pinned to its node: {cookie}"
    );

    // Stop the serving node the way the guide says: POST /nodes/<route>/stop.
    let r = control(&demo, Method::POST, &format!("/nodes/{serving}/stop")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["running"], false);
    assert_eq!(r.json()["changed"], true);

    let (n, node, resp) = count(lb, &mut jar).await;
    assert_eq!(n, 6, "the count goes on on another node");
    assert_ne!(node, serving);
    // translate: the backend still sees the original id, the client is handed <id>.<new route>.
    assert_eq!(resp.seen(), cookie);
    let rebound = jar.clone().unwrap();
    assert_eq!(
        rebound,
        format!("{cookie}.{node}"),
        "the client cookie is rebound"
    );
    let running: Vec<String> = demo
        .nodes()
        .await
        .into_iter()
        .filter(|n| n.running)
        .map(|n| n.route)
        .collect();
    assert!(
        running.contains(&pin_route(&rebound).to_string()),
        "{rebound} names a live node: {running:?}"
    );

    // The session stays on its new node, also after the old one comes back.
    let r = control(&demo, Method::POST, &format!("/nodes/{serving}/start")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["running"], true);
    for want in 7..=9 {
        let (n, again, resp) = count(lb, &mut jar).await;
        assert_eq!((n, again.as_str()), (want, node.as_str()));
        assert!(
            resp.session_cookies().is_empty(),
            "no new cookie on a sticky hit"
        );
    }
    demo.stop().await;
}

#[tokio::test]
async fn control_listener_lists_and_rejects_clearly() {
    let demo = start_demo(DemoOptions::ephemeral()).await.unwrap();
    let r = control(&demo, Method::GET, "/").await;
    assert_eq!(r.status, 200);
    let table = r.text();
    for route in ["jvm1", "jvm2", "jvm3"] {
        assert!(table.contains(route), "{table}");
    }
    assert!(table.contains("running  up, active"), "{table}");

    // The admin listener the guide names is the balancer's.
    let r = get(demo.admin_addr, "/api/v1/status", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("jvm3"), "{}", r.text());
    assert_eq!(get(demo.admin_addr, "/metrics", None).await.status, 200);

    let r = control(&demo, Method::GET, "/nodes").await;
    let nodes = r.json();
    assert_eq!(nodes.as_array().map(Vec::len), Some(3), "{nodes}");
    let addr: SocketAddr = nodes[0]["address"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        get(addr, "/health", None).await.status,
        200,
        "the listed address is the node"
    );

    let r = control(&demo, Method::POST, "/nodes/jvm9/stop").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("no demo node \"jvm9\""), "{}", r.text());
    assert_eq!(
        control(&demo, Method::GET, "/nodes/jvm1/stop").await.status,
        405
    );
    assert_eq!(control(&demo, Method::DELETE, "/").await.status, 405);
    assert_eq!(control(&demo, Method::GET, "/elsewhere").await.status, 404);

    // Stopping twice and starting twice are harmless and say so.
    let first = control(&demo, Method::POST, "/nodes/jvm1/stop")
        .await
        .json();
    let second = control(&demo, Method::POST, "/nodes/jvm1/stop")
        .await
        .json();
    assert_eq!(
        (first["changed"].clone(), second["changed"].clone()),
        (true.into(), false.into())
    );
    let first = control(&demo, Method::POST, "/nodes/jvm1/start")
        .await
        .json();
    let second = control(&demo, Method::POST, "/nodes/jvm1/start")
        .await
        .json();
    assert_eq!(
        (first["changed"].clone(), second["changed"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(get(addr, "/health", None).await.status, 200);
    demo.stop().await;
}

/// The demo page carries the control listener's address, and the control listener lets the
/// balancer's own pages (and only those) read its answers. (The page driven in a browser:
/// tests/browser.rs.)
#[tokio::test]
async fn demo_page_has_node_buttons_and_the_control_listener_allows_its_origin() {
    let demo = start_demo(DemoOptions::ephemeral()).await.unwrap();
    let r = get(demo.balancer_addr, "/", None).await;
    assert_eq!(r.status, 200);
    let page = r.text();
    let control = format!("http://{}", demo.control_addr);
    assert!(
        page.contains(&format!("data-control=\"{control}\"")),
        "{page}"
    );
    assert!(page.contains("id=\"nodes\"") && page.contains("id=\"history\""));
    assert!(
        page.contains("nodeAction(n.route, 'stop')"),
        "the stop/start script"
    );
    // The cookie is readable by the page's script in the demo.
    let set_cookie = r.header("set-cookie").unwrap().to_string();
    assert!(set_cookie.starts_with("JSESSIONID="), "{set_cookie}");
    assert!(
        !set_cookie.to_ascii_lowercase().contains("httponly"),
        "{set_cookie}"
    );

    let port = demo.balancer_addr.port();
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ] {
        let r = Conn::open(demo.control_addr)
            .await
            .request(Method::GET, "/nodes", &[("origin", &origin)], Bytes::new())
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some(origin.as_str())
        );
        assert_eq!(r.header("vary"), Some("Origin"));
    }
    for foreign in [
        "http://evil.example".to_string(),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1.evil.example:{port}"),
    ] {
        let r = Conn::open(demo.control_addr)
            .await
            .request(
                Method::POST,
                "/nodes/jvm1/stop",
                &[("origin", &foreign)],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.header("access-control-allow-origin"), None, "{foreign}");
        // The answer is not readable there; the action itself is as open as with curl.
        assert_eq!(r.status, 200);
        demo.start_node("jvm1").await.unwrap();
    }
    demo.stop().await;
}

#[tokio::test]
async fn port_conflicts_name_the_flag() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    type SetAddr = fn(&mut DemoOptions, SocketAddr);
    let cases: [(&str, SetAddr); 4] = [
        ("--listen", |o, a| o.listen = a),
        ("--admin", |o, a| o.admin = a),
        ("--control", |o, a| o.control = a),
        ("--node-port", |o, a| o.node_port = a.port()),
    ];
    for (flag, set) in cases {
        let mut opts = DemoOptions::ephemeral();
        set(&mut opts, addr);
        let err = match start_demo(opts).await {
            Ok(demo) => {
                demo.stop().await;
                panic!("{flag} on a taken port started");
            }
            Err(e) => e,
        };
        assert!(
            matches!(err, DemoError::Bind { flag: f, .. } if f == flag),
            "{flag}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("{flag} 127.0.0.1:")), "{msg}");
        assert!(
            msg.contains(&format!("choose another address with {flag}")),
            "{msg}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The built binary
// ---------------------------------------------------------------------------------------------

/// Kills the child on drop, so a failing test leaves no demo running.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) for the child to exit.
fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn binary_prints_the_guide_serves_count_and_stops_on_sigterm() {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--control", "127.0.0.1:0", "--node-port", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // The guide, within a few seconds.
    let mut guide = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !guide
        .iter()
        .any(|l: &String| l.contains("Ctrl-C stops everything"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => guide.push(line),
            Err(_) => panic!("no complete guide within 10 s; got:\n{}", guide.join("\n")),
        }
    }
    let text = guide.join("\n");
    let url_after = |label: &str| -> SocketAddr {
        let line = guide
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line:\n{text}"));
        let rest = line
            .split("http://")
            .nth(1)
            .unwrap_or_else(|| panic!("{line}"));
        rest.split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let lb = url_after("balancer");
    let control = url_after("control");
    let admin = url_after("admin");
    assert_eq!(
        get(admin, "/metrics", None).await.status,
        200,
        "the admin URL of the guide answers"
    );
    for must in [
        "stickyroute demo is running",
        &format!("curl -b cookies.txt -c cookies.txt http://{lb}/count"),
        &format!("Open http://{lb}/"),
        &format!("demo stop jvm2 --control {control}"),
        &format!("curl -X POST http://{control}/nodes/jvm2/stop"),
        "grep JSESSIONID cookies.txt",
    ] {
        assert!(text.contains(must), "guide lacks {must:?}:\n{text}");
    }

    // It serves /count through the balancer, and its control CLI works.
    let mut jar = None;
    let (n, node, _) = count(lb, &mut jar).await;
    assert_eq!(n, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(["demo", "stop", &node, "--control", &control.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"running\":false"));
    let (n, moved, _) = count(lb, &mut jar).await;
    assert_eq!(n, 2);
    assert_ne!(moved, node);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );

    // SIGTERM: a clean exit.
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut child.0, Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("stopping the demo")),
        "{rest:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(lb).await.is_err(),
        "the balancer port is closed"
    );
}

#[test]
fn demo_control_cli_explains_an_unreachable_demo() {
    // Port 1 (tcpmux) has no listener: a released ephemeral port could be taken meanwhile by a
    // parallel test's listener.
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(["demo", "stop", "jvm1", "--control", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach the demo control listener at {addr}")),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(["demo", "stop", "../x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
