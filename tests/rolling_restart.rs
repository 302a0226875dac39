//! A rolling restart, end to end: drain, disable, restart,
//! activate one node of three while 30 sessions keep counting, driven through `ctl`'s client.

mod common;

use std::collections::HashMap;

use common::*;
use stickyroute::core::node_state::NodeState;
use stickyroute::demo::node::DemoNodeConfig;
use stickyroute::store::SessionStore;

/// GET /count for a session; returns (node, count) and checks the count continues.
async fn count(s: &mut Session, addr: std::net::SocketAddr, expected: i64) -> String {
    let r = s.get(addr, "/count").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(
        body["count"],
        expected,
        "session {:?}: {}",
        s.cookie,
        r.text()
    );
    r.node().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_disable_restart_activate_keeps_every_session() {
    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let n2 = node("jvm2", &store).await;
    let n3 = node("jvm3", &store).await;
    let jvm1_addr = n1.addr;
    let lines = vec![
        node_line("jvm1", n1.addr, ""),
        node_line("jvm2", n2.addr, ""),
        node_line("jvm3", n3.addr, ""),
    ];
    let lb = balancer(&with_admin(
        &yaml("binder: translate", &lines),
        Some("t0ken"),
    ))
    .await;
    let ctl = admin_client(&lb, Some("t0ken"));
    let addr = lb.addr();

    // 30 sessions spread over three nodes, each with data.
    let mut sessions: Vec<Session> = Vec::new();
    let mut home: Vec<String> = Vec::new();
    for _ in 0..30 {
        let mut s = Session::new();
        let node = count(&mut s, addr, 1).await;
        assert_eq!(s.pin(), node);
        sessions.push(s);
        home.push(node);
    }
    let on_jvm1: Vec<usize> = (0..30).filter(|i| home[*i] == "jvm1").collect();
    assert!(
        !on_jvm1.is_empty() && on_jvm1.len() < 30,
        "new sessions spread: {home:?}"
    );

    // Drain jvm1: pinned sessions stay, new ones go elsewhere.
    let change = ctl
        .set_state("jvm1", NodeState::Draining, None)
        .await
        .unwrap();
    assert_eq!(change.nodes[0].previous, "active");
    for i in &on_jvm1 {
        assert_eq!(count(&mut sessions[*i], addr, 2).await, "jvm1");
    }
    for _ in 0..30 {
        let mut s = Session::new();
        let node = count(&mut s, addr, 1).await;
        assert_ne!(node, "jvm1", "a new session landed on the draining node");
    }
    let status = ctl.status().await.unwrap();
    let j1 = node_report(&status, "jvm1");
    assert_eq!(j1.state, "draining");
    assert_eq!(j1.live_sessions, on_jvm1.len() as u64, "{j1:?}");
    assert!(!j1.drained);

    // Disable jvm1: each of its sessions moves on its next request, rebound, with its data.
    ctl.set_state("jvm1", NodeState::Disabled, None)
        .await
        .unwrap();
    let mut moved_to: HashMap<usize, String> = HashMap::new();
    for i in &on_jvm1 {
        let s = &mut sessions[*i];
        let old = s.cookie.clone().unwrap();
        let node = count(s, addr, 3).await;
        assert_ne!(node, "jvm1");
        let new = s.cookie.clone().unwrap();
        assert_eq!(
            new,
            format!("{old}.{node}"),
            "translate rebinds X.jvm1 to X.jvm1.{node}"
        );
        moved_to.insert(*i, node);
    }
    let status = ctl.status().await.unwrap();
    let j1 = node_report(&status, "jvm1");
    assert_eq!(j1.live_sessions, 0, "{j1:?}");
    assert!(j1.drained, "{j1:?}");
    assert_eq!(j1.failovers_out, on_jvm1.len() as u64);
    let table = stickyroute::cli::ctl::status_table(&status);
    assert!(
        table
            .lines()
            .any(|l| l.contains("jvm1") && l.contains("disabled") && l.contains("yes")),
        "{table}"
    );

    // Restart jvm1 on the same port, then activate it.
    n1.stop().await;
    let n1 = node_at(jvm1_addr, DemoNodeConfig::new("jvm1", store.clone())).await;
    ctl.set_state("jvm1", NodeState::Active, None)
        .await
        .unwrap();
    let mut new_on_jvm1 = 0;
    for _ in 0..30 {
        let mut s = Session::new();
        if count(&mut s, addr, 1).await == "jvm1" {
            new_on_jvm1 += 1;
        }
    }
    assert!(new_on_jvm1 > 0, "the restarted node receives new sessions");
    // Moved sessions stay where they went; the others never moved.
    for (i, s) in sessions.iter_mut().enumerate() {
        let expected = if moved_to.contains_key(&i) { 4 } else { 2 };
        let node = count(s, addr, expected).await;
        let want = moved_to.get(&i).unwrap_or(&home[i]);
        assert_eq!(&node, want, "session {i} moved back");
    }
    let status = ctl.status().await.unwrap();
    assert!(!node_report(&status, "jvm1").drained);

    lb.stop().await;
    drop((n1, n2, n3));
}
