//! Hot reload: `SIGHUP` to the real binary changes a weight
//! and adds a node while slow requests are in flight, none fails; an invalid file is refused
//! with its reason and the old config keeps serving. In process, through the API: listeners
//! added and removed, runtime state of unchanged nodes kept, a removed node's in-flight request
//! finishes.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use stickyroute::cli::ctl::CtlError;
use stickyroute::core::node_state::NodeState;
use stickyroute::store::SessionStore;
use tokio::net::TcpListener;

/// A port that was free a moment ago (bound on :0, then released).
async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

fn config(listeners: &[String], admin: &str, nodes: &[String]) -> String {
    let mut y = String::from("listeners:\n");
    for l in listeners {
        y.push_str(&format!("  - bind: \"{l}\"\n"));
    }
    y.push_str(&format!(
        "admin:\n  bind: \"{admin}\"\npools:\n  - name: app\n    nodes:\n"
    ));
    for n in nodes {
        y.push_str(&format!("      {n}\n"));
    }
    y
}

fn write(path: &Path, text: &str) {
    // Write then rename, as editors and config management do: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn signal(pid: u32, sig: &str) {
    // The shell's built-in `kill`: no dependency on procps.
    let ok = std::process::Command::new("sh")
        .args(["-c", &format!("kill {sig} {pid}")])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Slow requests in flight; each returns its status and node.
fn slow_requests(
    addr: SocketAddr,
    cookies: &[Option<String>],
    ms: u64,
) -> Vec<tokio::task::JoinHandle<(u16, String)>> {
    cookies
        .iter()
        .cloned()
        .map(|c| {
            tokio::spawn(async move {
                let r = get(addr, &format!("/slow?ms={ms}"), c.as_deref()).await;
                (
                    r.status.as_u16(),
                    r.header("x-node").unwrap_or("").to_string(),
                )
            })
        })
        .collect()
}

async fn in_flight(ctl: &stickyroute::cli::ctl::Client) -> u64 {
    ctl.status()
        .await
        .map(|s| {
            s.pools
                .iter()
                .flat_map(|p| &p.nodes)
                .map(|n| n.in_flight)
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_weight_and_node_without_failing_in_flight_requests() {
    let store = SessionStore::memory();
    let mut nodes = Vec::new();
    for r in ["jvm1", "jvm2", "jvm3", "jvm4"] {
        nodes.push(node(r, &store).await);
    }
    let line = |i: usize, extra: &str| node_line(&format!("jvm{}", i + 1), nodes[i].addr, extra);
    let (proxy, admin) = (
        SocketAddr::from(([127, 0, 0, 1], free_port().await)),
        SocketAddr::from(([127, 0, 0, 1], free_port().await)),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("balancer.yaml");
    let three = [line(0, ""), line(1, ""), line(2, "")];
    write(
        &path,
        &config(&[proxy.to_string()], &admin.to_string(), &three),
    );

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(["serve", "-c"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .env_remove("STICKYROUTE_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let ctl = stickyroute::cli::ctl::Client::new(&format!("http://{admin}"), None).unwrap();
    eventually(
        "the balancer answers on its admin port",
        Duration::from_secs(10),
        || async { ctl.status().await.is_ok() },
    )
    .await;

    // Sessions on each of the first three nodes, then slow requests in flight for each.
    let cookies: Vec<Option<String>> = ["jvm1", "jvm2", "jvm3"]
        .iter()
        .flat_map(|r| [Some(format!("A.{r}")), Some(format!("B.{r}"))])
        .chain([None, None])
        .collect();
    let slow = slow_requests(proxy, &cookies, 1500);
    eventually(
        "slow requests in flight",
        Duration::from_secs(5),
        || async { in_flight(&ctl).await >= cookies.len() as u64 },
    )
    .await;

    // New weight for jvm2, a fourth node; SIGHUP.
    let four = [line(0, ""), line(1, "weight: 3"), line(2, ""), line(3, "")];
    write(
        &path,
        &config(&[proxy.to_string()], &admin.to_string(), &four),
    );
    signal(pid, "-HUP");
    eventually(
        "the reload shows in the status",
        Duration::from_secs(5),
        || async {
            let s = ctl.status().await.unwrap();
            s.pools[0].nodes.len() == 4 && node_report(&s, "jvm2").weight == 3
        },
    )
    .await;
    assert!(
        in_flight(&ctl).await > 0,
        "the reload happened while requests were in flight"
    );
    let s = ctl.status().await.unwrap();
    assert!(
        node_report(&s, "jvm1").requests >= 2,
        "unchanged nodes keep their counters"
    );

    // The next requests see the change.
    let mut on_jvm4 = 0;
    for _ in 0..60 {
        if get(proxy, "/whoami", None).await.node() == "jvm4" {
            on_jvm4 += 1;
        }
    }
    assert!(on_jvm4 > 0, "the new node receives new sessions");
    // No in-flight request failed, and each finished on its node.
    for (i, h) in slow.into_iter().enumerate() {
        let (status, node) = tokio::time::timeout(DEADLINE, h).await.unwrap().unwrap();
        assert_eq!(status, 200, "slow request {i}");
        if let Some(c) = &cookies[i] {
            assert!(c.ends_with(&node), "{c} answered by {node}");
        }
    }

    // An invalid file: refused, the reason in the API answer, the old config keeps serving.
    let bad = [line(0, ""), line(1, "weight: 0"), line(2, ""), line(3, "")];
    write(
        &path,
        &config(&[proxy.to_string()], &admin.to_string(), &bad),
    );
    signal(pid, "-HUP");
    eventually(
        "the refused SIGHUP reload is counted",
        Duration::from_secs(5),
        || async {
            let m = ctl.metrics().await.unwrap_or_default();
            m.contains("stickyroute_config_reloads_total{result=\"error\"} 1")
        },
    )
    .await;
    let err = ctl.reload().await.unwrap_err();
    match &err {
        CtlError::Server { status, message } => {
            assert_eq!(status.as_u16(), 422);
            assert!(message.contains("balancer.yaml:"), "{message}");
            assert!(message.contains("pools[0].nodes[1].weight"), "{message}");
            assert!(message.contains("must be at least 1"), "{message}");
        }
        other => panic!("{other}"),
    }
    let s = ctl.status().await.unwrap();
    assert_eq!(
        node_report(&s, "jvm2").weight,
        3,
        "the running config stays"
    );
    assert_eq!(get(proxy, "/whoami", Some("C.jvm4")).await.node(), "jvm4");
    let m = ctl.metrics().await.unwrap();
    assert!(
        m.contains("stickyroute_config_reloads_total{result=\"ok\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("stickyroute_config_reloads_total{result=\"error\"} 2"),
        "{m}"
    );

    signal(pid, "-TERM");
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_reload_adds_and_removes_listeners_and_keeps_runtime_state() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n2 = node("jvm2", &store).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("balancer.yaml");
    let both = [
        node_line("jvm1", n1.addr, ""),
        node_line("jvm2", n2.addr, ""),
    ];
    let any = "127.0.0.1:0".to_string();
    write(&path, &config(std::slice::from_ref(&any), &any, &both));
    let cfg = stickyroute::control::load_config(&path).unwrap();
    let lb = stickyroute::control::Running::start(cfg).await.unwrap();
    let ctl = admin_client(&lb, None);
    let first = lb.addr();

    // Runtime state and counters before the reload.
    ctl.set_state("jvm1", NodeState::Draining, None)
        .await
        .unwrap();
    assert_eq!(get(first, "/whoami", Some("S.jvm1")).await.node(), "jvm1");
    // A slow request on jvm2, which the reload removes.
    let slow = slow_requests(first, &[Some("Q.jvm2".into())], 800);
    eventually(
        "the slow request is in flight",
        Duration::from_secs(5),
        || async { in_flight(&ctl).await == 1 },
    )
    .await;

    // Add a listener, remove jvm2.
    let only_jvm1 = [node_line("jvm1", n1.addr, "")];
    let fixed = format!("127.0.0.1:{}", free_port().await);
    write(
        &path,
        &config(&[any.clone(), fixed.clone()], &any, &only_jvm1),
    );
    let report = ctl.reload().await.unwrap();
    assert_eq!(report.listeners_added.len(), 1, "{report:?}");
    assert!(report.listeners_removed.is_empty(), "{report:?}");
    assert_eq!(report.nodes, 1);
    let second = report.listeners_added[0];
    assert_eq!(second.to_string(), fixed);
    assert_eq!(lb.current_listen_addrs(), vec![first, second]);
    assert_eq!(get(second, "/whoami", Some("S.jvm1")).await.node(), "jvm1");
    let s = ctl.status().await.unwrap();
    let j1 = node_report(&s, "jvm1");
    assert_eq!(j1.state, "draining", "runtime state survives the reload");
    assert_eq!(j1.requests, 2, "counters survive the reload");
    let (status, node) = tokio::time::timeout(DEADLINE, slow.into_iter().next().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (status, node.as_str()),
        (200, "jvm2"),
        "the removed node finished its request"
    );

    // Remove the first listener.
    write(
        &path,
        &config(std::slice::from_ref(&fixed), &any, &only_jvm1),
    );
    let report = ctl.reload().await.unwrap();
    assert_eq!(report.listeners_removed, vec![first], "{report:?}");
    assert_eq!(lb.current_listen_addrs(), vec![second]);
    eventually(
        "the removed listener refuses connections",
        Duration::from_secs(5),
        || async { tokio::net::TcpStream::connect(first).await.is_err() },
    )
    .await;
    assert_eq!(get(second, "/whoami", Some("S.jvm1")).await.node(), "jvm1");

    // An unreadable or invalid file is refused; the running config stays.
    write(&path, "listeners: [oops\n");
    let err = ctl.reload().await.unwrap_err();
    assert!(
        matches!(&err, CtlError::Server { status, .. } if status.as_u16() == 422),
        "{err}"
    );
    assert!(err.to_string().contains("balancer.yaml"), "{err}");
    assert_eq!(get(second, "/whoami", Some("S.jvm1")).await.node(), "jvm1");
    lb.stop().await;
}
