//! Real Tomcat 10.1 behind `protocol: ajp`: two nodes with an `AJP/1.3` connector that has a
//! `secret`, on loopback, sharing a `PersistentManager` + `FileStore` session store, and a JSP
//! that shows what the application sees. Checks: stickiness, the client's address and `https`
//! scheme seen by the application without any valve, a 1 MiB POST (Get Body Chunk round
//! trips), a wrong secret (Tomcat's 403 passed on, the node not marked down), CPing health, and
//! a Tomcat killed mid-way: connect failure, then `translate` failover to the other Tomcat,
//! which finds the session in the shared store under its original id.
//!
//! Needs Debian's `tomcat10` (or `STICKYROUTE_CATALINA_HOME`) and `java`; without them the test
//! prints `SKIPPED` and passes, unless `STICKYROUTE_REQUIRE_SERVICES=1`.

mod common;
#[path = "common/tomcat.rs"]
mod tomcat;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use hyper::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tomcat::{free_port, Wrapped};

const SECRET: &str = "tomcat-ajp-secret";

/// The page: who answered, what the request looked like to the application, the session's
/// request count, and how many body bytes it read.
const INDEX_JSP: &str = r#"<%@ page contentType="text/plain" %><%
  Integer n = (Integer) session.getAttribute("n");
  n = (n == null) ? 1 : n + 1;
  session.setAttribute("n", n);
  long len = 0;
  java.io.InputStream in = request.getInputStream();
  byte[] buf = new byte[8192];
  int r;
  while ((r = in.read(buf)) > 0) { len += r; }
%>route=<%= System.getProperty("jvm.route") %> remote=<%= request.getRemoteAddr() %> secure=<%= request.isSecure() %> scheme=<%= request.getScheme() %> len=<%= len %> count=<%= n %>
"#;

struct Found {
    home: PathBuf,
    conf: PathBuf,
    java: PathBuf,
}

fn find() -> Result<Found, String> {
    let home = PathBuf::from(
        std::env::var("STICKYROUTE_CATALINA_HOME").unwrap_or_else(|_| "/usr/share/tomcat10".into()),
    );
    if !home.join("bin/bootstrap.jar").is_file() {
        return Err(format!(
            "Tomcat 10.1 ({}/bin/bootstrap.jar)",
            home.display()
        ));
    }
    let conf = ["etc", "conf"]
        .iter()
        .map(|d| home.join(d))
        .find(|d| d.join("web.xml").is_file())
        .ok_or("Tomcat's default web.xml")?;
    let java = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("java"))
                .find(|j| j.is_file())
        })
        .ok_or("a Java runtime (java)")?;
    Ok(Found { home, conf, java })
}

/// One Tomcat with only an AJP connector.
struct Node {
    route: String,
    ajp: u16,
    proc: Option<Wrapped>,
}

/// The application's context: sessions written to the store shared by both nodes about a
/// second after their last request (see deploy/tomcat/context-datasourcestore.xml).
fn context_xml(store: &Path) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Context backgroundProcessorDelay="1">
  <Manager className="org.apache.catalina.session.PersistentManager" maxIdleBackup="1"
           processExpiresFrequency="1" sessionActivityCheck="true">
    <Store className="org.apache.catalina.session.FileStore" directory="{}"/>
  </Manager>
</Context>
"#,
        store.display()
    )
}

fn start_node(found: &Found, root: &Path, route: &str) -> Node {
    let base = root.join(route);
    for d in ["conf", "logs", "temp", "work", "webapps/app/META-INF"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    for f in ["web.xml", "logging.properties"] {
        std::fs::copy(found.conf.join(f), base.join("conf").join(f)).unwrap();
    }
    let ajp = free_port();
    let server = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="AJP/1.3" address="127.0.0.1" port="{ajp}" secret="{SECRET}"
               secretRequired="true" packetSize="8192"/>
    <Engine name="Catalina" defaultHost="localhost" jvmRoute="{route}">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"#
    );
    std::fs::write(base.join("conf/server.xml"), server).unwrap();
    std::fs::write(base.join("webapps/app/index.jsp"), INDEX_JSP).unwrap();
    let store = root.join("sessions");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        base.join("webapps/app/META-INF/context.xml"),
        context_xml(&store),
    )
    .unwrap();
    let home = &found.home;
    let args: Vec<String> = vec![
        "-Xmx128m".into(),
        "-XX:TieredStopAtLevel=1".into(),
        "-XX:+UseSerialGC".into(),
        "--add-opens=java.base/java.lang=ALL-UNNAMED".into(),
        "--add-opens=java.base/java.io=ALL-UNNAMED".into(),
        "--add-opens=java.base/java.util=ALL-UNNAMED".into(),
        "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED".into(),
        format!("-Dcatalina.home={}", home.display()),
        format!("-Dcatalina.base={}", base.display()),
        format!("-Djava.io.tmpdir={}", base.join("temp").display()),
        format!("-Djvm.route={route}"),
        "-cp".into(),
        format!(
            "{}:{}",
            home.join("bin/bootstrap.jar").display(),
            home.join("bin/tomcat-juli.jar").display()
        ),
        "org.apache.catalina.startup.Bootstrap".into(),
        "start".into(),
    ];
    let proc = Wrapped::spawn(&found.java, &args, &base.join("logs/console.log"));
    Node {
        route: route.into(),
        ajp,
        proc: Some(proc),
    }
}

/// Waits until the node answers CPing on its AJP port.
async fn wait_cping(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let addr = format!("127.0.0.1:{}", node.ajp);
        if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
            let mut pong = [0u8; 5];
            let ok = tokio::time::timeout(Duration::from_secs(5), async {
                s.write_all(&stickyroute::ajp::CPING_PACKET).await?;
                s.read_exact(&mut pong).await
            })
            .await;
            if matches!(ok, Ok(Ok(_))) && pong == stickyroute::ajp::CPONG_PACKET {
                return;
            }
        }
        let w = node.proc.as_ref().unwrap();
        assert!(
            w.alive() && Instant::now() < deadline,
            "{} did not answer CPing on {addr}:\n{}",
            node.route,
            w.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tomcat_over_ajp() {
    let found = match find() {
        Ok(f) => f,
        Err(what) => {
            if std::env::var("STICKYROUTE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("tomcat_over_ajp needs {what} (STICKYROUTE_REQUIRE_SERVICES=1)");
            }
            eprintln!("SKIPPED: tomcat_over_ajp needs {what} (apt-get install tomcat10)");
            return;
        }
    };
    let root = tempfile::tempdir().unwrap();
    let mut nodes = vec![
        start_node(&found, root.path(), "jvm1"),
        start_node(&found, root.path(), "jvm2"),
    ];
    for n in &nodes {
        wait_cping(n).await;
    }
    let (cert, dir) = test_cert();
    let p = dir.path().display();
    let node_lines: String = nodes
        .iter()
        .map(|n| {
            format!(
                "      - {{ route: {}, address: \"127.0.0.1:{}\" }}\n",
                n.route, n.ajp
            )
        })
        .collect();
    let yaml = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\n    tls: {{ cert: {p}/cert.pem, key: {p}/key.pem }}\npools:\n  - name: wrong\n    path_prefix: /wrong\n    protocol: ajp\n    ajp: {{ secret: not-the-secret }}\n    nodes:\n      - {{ route: jvm1, address: \"127.0.0.1:{}\" }}\n  - name: app\n    protocol: ajp\n    ajp: {{ secret_env: TOMCAT_AJP_TEST_SECRET }}\n    health: {{ kind: cping, interval: 1s }}\n    nodes:\n{node_lines}",
        nodes[0].ajp
    );
    let cfg = stickyroute::config::Config::from_yaml(&yaml, "tomcat-ajp.yaml")
        .unwrap()
        .with_ajp_secrets(|v| (v == "TOMCAT_AJP_TEST_SECRET").then(|| SECRET.to_string()))
        .unwrap();
    let lb = stickyroute::control::Running::start(cfg).await.unwrap();
    let addrs = lb.current_listen_addrs();
    let (plain, tls_addr) = (addrs[0], addrs[1]);

    // Stickiness, and the client as the application sees it.
    let mut c = Conn::open(plain).await;
    let first = c.get("/app/", None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let id = first
        .session_cookies()
        .pop()
        .expect("Tomcat's session cookie");
    let route = field(&first.text(), "route").to_string();
    assert!(id.ends_with(&format!(".{route}")), "{id}");
    assert_eq!(field(&first.text(), "remote"), "127.0.0.1");
    assert_eq!(field(&first.text(), "secure"), "false");
    for i in 2..=4 {
        let r = c.get("/app/", Some(&id)).await;
        assert_eq!(field(&r.text(), "route"), route, "sticky");
        assert_eq!(field(&r.text(), "count"), i.to_string(), "the same session");
    }

    // 1 MiB through Get Body Chunk.
    let body = Bytes::from(vec![b'x'; 1024 * 1024]);
    let cookie = format!("JSESSIONID={id}");
    let r = c
        .request(
            Method::POST,
            "/app/",
            &[
                ("cookie", cookie.as_str()),
                ("content-type", "application/octet-stream"),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(field(&r.text(), "len"), "1048576");
    assert_eq!(field(&r.text(), "count"), "5");
    let last_request = std::time::SystemTime::now();

    // Over TLS the application sees https, without any valve.
    let connector = tls_connector(&cert, b"http/1.1");
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let exchange = async {
        let req = format!("GET /app/ HTTP/1.1\r\nHost: {TEST_HOST}\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let answer = tokio::time::timeout(DEADLINE, exchange).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("secure=true scheme=https"), "{answer}");
    assert!(answer.contains("remote=127.0.0.1"), "{answer}");

    // A wrong secret: Tomcat's 403, passed on, and the node stays up.
    for _ in 0..3 {
        let r = get(plain, "/wrong/app/", None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    assert!(lb.balancer.snapshot().pools[0].nodes[0].is_up(stickyroute::state::node::now_ms()));

    // CPing health of a live Tomcat.
    {
        use stickyroute::control::health::{probe_node, Target};
        let snap = lb.balancer.snapshot();
        let pool = &snap.pools[1];
        let n = &pool.nodes[0];
        let target = Target {
            pool: "app".into(),
            route: n.route.clone(),
            address: n.address.clone(),
            addr: n.addr.clone(),
            ajp: n.ajp.clone(),
        };
        let r = probe_node(&target, pool.cfg.health.as_ref().unwrap()).await;
        assert!(r.is_ok(), "{r:?}");
    }

    // The session's Tomcat is killed once the store has its last request (count 5): connect
    // failure, then `translate` failover; the other Tomcat finds the session under its
    // original id and counts on.
    wait_stored(root.path(), &id, last_request).await;
    let i = nodes.iter().position(|n| n.route == route).unwrap();
    nodes[i]
        .proc
        .take()
        .unwrap()
        .stop("-KILL", Duration::from_secs(10));
    let other = &nodes[1 - i];
    let r = get(plain, "/app/", Some(&id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(field(&r.text(), "route"), other.route, "failed over");
    assert_eq!(
        field(&r.text(), "count"),
        "6",
        "the session came from the shared store"
    );
    let moved = format!("{id}.{}", other.route);
    assert_eq!(r.session_cookies(), vec![moved.clone()]);
    let r = get(plain, "/app/", Some(&moved)).await;
    let text = r.text();
    assert_eq!(
        (field(&text, "route"), field(&text, "count")),
        (other.route.as_str(), "7")
    );
}

/// Waits (bounded) until the shared store holds the session as written after `since`.
async fn wait_stored(root: &Path, id: &str, since: std::time::SystemTime) {
    let file = root.join("sessions").join(format!("{id}.session"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written = std::fs::metadata(&file).and_then(|m| m.modified());
        if written.is_ok_and(|t| t > since) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never reached the store",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
