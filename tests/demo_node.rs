//! The demo node over real TCP on 127.0.0.1:0: Tomcat-like session ids and cookies, counters
//! shared through a store (memory, and Redis / PostgreSQL / MariaDB: `TEST_*_URL` or the standard
//! local addresses, see `common/services.rs`),
//! expiry, the binder valve, `/login`, `/echo`, `/ws`, and `stop` closing everything; and
//! `demo-node --route-from-ptr` against a real DNS server (`common/dns.rs`, Knot DNS).

#[path = "common/dns.rs"]
mod dns;
#[cfg(any(feature = "redis-store", feature = "sql-store"))]
#[path = "common/services.rs"]
mod services;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/wrapped.rs"]
mod wrapped;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
#[cfg(any(feature = "redis-store", feature = "sql-store"))]
use stickyroute::demo::node::parse_store_arg;
use stickyroute::demo::node::{DemoNodeConfig, RunningNode};
use stickyroute::store::SessionStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const DEADLINE: Duration = Duration::from_secs(10);

async fn start(cfg: DemoNodeConfig) -> RunningNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    RunningNode::start(listener, cfg).await
}

async fn start_node(route: &str, store: &SessionStore) -> RunningNode {
    start(DemoNodeConfig::new(route, store.clone())).await
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    /// The JSESSIONID value of the response's `Set-Cookie`, if any; checks its attributes.
    fn new_cookie(&self) -> Option<String> {
        let set_cookies: Vec<&HeaderValue> = self.headers.get_all("set-cookie").iter().collect();
        assert!(
            set_cookies.len() <= 1,
            "several Set-Cookie: {set_cookies:?}"
        );
        let sc = set_cookies.first()?.to_str().unwrap();
        let (pair, attrs) = sc.split_once("; ").unwrap();
        assert_eq!(attrs, "Path=/; HttpOnly", "attributes of {sc}");
        Some(pair.strip_prefix("JSESSIONID=").unwrap().to_owned())
    }
}

/// One request on a new HTTP/1.1 connection.
async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    body: Bytes,
) -> Resp {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(id) = cookie {
        req = req.header("cookie", format!("theme=dark; JSESSIONID={id}"));
    }
    let req = req.body(Full::new(body)).unwrap();
    let resp = timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("response in time")
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Resp {
    request(addr, Method::GET, path, cookie, Bytes::new()).await
}

/// `GET /count`; asserts 200 and returns (session, count, Set-Cookie id).
async fn count(addr: SocketAddr, cookie: Option<&str>) -> (String, i64, Option<String>) {
    let resp = get(addr, "/count", cookie).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.header("x-session-seen"), cookie.unwrap_or(""));
    let json = resp.json();
    assert_eq!(json["node"].as_str().unwrap(), resp.header("x-node"));
    (
        json["session"].as_str().unwrap().to_owned(),
        json["count"].as_i64().unwrap(),
        resp.new_cookie(),
    )
}

fn assert_tomcat_id(id: &str, route: &str) {
    let (base, r) = id.split_once('.').unwrap();
    assert_eq!(r, route, "route of {id}");
    assert_eq!(base.len(), 32, "base of {id}");
    assert!(
        base.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "base of {id} must be upper-case hex"
    );
}

#[tokio::test]
async fn new_session_gets_tomcat_id_and_counter_increments() {
    let node = start_node("jvm1", &SessionStore::memory()).await;

    let (id, n, cookie) = count(node.addr, None).await;
    assert_tomcat_id(&id, "jvm1");
    assert_eq!(n, 1);
    assert_eq!(cookie.as_deref(), Some(id.as_str()));

    for expected in [2, 3] {
        let (same, n, cookie) = count(node.addr, Some(&id)).await;
        assert_eq!(same, id);
        assert_eq!(n, expected);
        assert_eq!(cookie, None, "a known session gets no new cookie");
    }

    // The `;jsessionid=` path parameter, any case of the name.
    let resp = get(node.addr, &format!("/count;JSessionID={id}?x=1"), None).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("x-session-seen"), id);
    assert_eq!(resp.json()["count"], 4);
    assert_eq!(resp.new_cookie(), None);

    // An unknown id gets a new session of this node.
    let (fresh, n, cookie) = count(node.addr, Some("DEADBEEF.jvm9")).await;
    assert_tomcat_id(&fresh, "jvm1");
    assert_eq!(n, 1);
    assert_eq!(cookie.as_deref(), Some(fresh.as_str()));
    node.stop().await;
}

#[tokio::test]
async fn page_health_whoami_and_unknown_paths() {
    let node = start_node("jvm1", &SessionStore::memory()).await;

    let page = get(node.addr, "/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let id = page.new_cookie().expect("the page starts a session");
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    assert!(html.contains("jvm1") && html.contains(&id), "{html}");
    assert!(
        !html.contains("data-control") && !html.contains("<script"),
        "no demo control buttons without a control listener: {html}"
    );
    let again = get(node.addr, "/?inc=1", Some(&id)).await;
    assert!(String::from_utf8_lossy(&again.body).contains("<b id=\"count\">1</b>"));
    assert_eq!(count(node.addr, Some(&id)).await.1, 2);

    let health = get(node.addr, "/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(&health.body[..], b"ok\n");
    assert_eq!(health.new_cookie(), None);
    assert_eq!(health.header("x-node"), "jvm1");
    assert_eq!(health.header("x-session-seen"), "");

    let who = get(node.addr, "/whoami?a=b", Some("ABC.jvm2")).await;
    let json = who.json();
    assert_eq!(json["node"], "jvm1");
    assert_eq!(json["session_seen"], "ABC.jvm2");
    assert_eq!(json["method"], "GET");
    assert_eq!(json["path"], "/whoami");
    assert_eq!(json["headers"]["cookie"], "theme=dark; JSESSIONID=ABC.jvm2");
    assert_eq!(json["headers"]["host"], node.addr.to_string());

    let missing = get(node.addr, "/nope", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("x-node"), "jvm1");

    let wrong = request(node.addr, Method::POST, "/count", None, Bytes::new()).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);

    let slow = get(node.addr, "/slow?ms=20", None).await;
    assert_eq!(slow.json()["slept_ms"], 20);
    node.stop().await;
}

/// Count on jvm1, then continue on jvm2 with the same cookie: jvm2 finds `X.jvm1` in the
/// shared store under that exact id.
async fn check_continuity(store: &SessionStore) {
    let jvm1 = start_node("jvm1", store).await;
    let jvm2 = start_node("jvm2", store).await;

    let (id, n, _) = count(jvm1.addr, None).await;
    assert_eq!(n, 1);
    assert_eq!(count(jvm1.addr, Some(&id)).await.1, 2);
    let (same, n, cookie) = count(jvm2.addr, Some(&id)).await;
    assert_eq!((same.as_str(), n, cookie), (id.as_str(), 3, None));
    assert_eq!(count(jvm1.addr, Some(&id)).await.1, 4);

    jvm1.stop().await;
    jvm2.stop().await;
}

/// jvm2 with the binder valve renames `X.jvm1` to `X.jvm2` in the store.
async fn check_binder_valve(store: &SessionStore) {
    let jvm1 = start_node("jvm1", store).await;
    let mut cfg = DemoNodeConfig::new("jvm2", store.clone());
    cfg.binder_valve = true;
    let jvm2 = start(cfg).await;

    let (id, _, _) = count(jvm1.addr, None).await;
    assert_eq!(count(jvm1.addr, Some(&id)).await.1, 2);
    let base = id.split_once('.').unwrap().0;
    let renamed = format!("{base}.jvm2");

    let (now, n, cookie) = count(jvm2.addr, Some(&id)).await;
    assert_eq!(now, renamed);
    assert_eq!(n, 3, "count continues after the rename");
    assert_eq!(cookie.as_deref(), Some(renamed.as_str()));
    assert!(store.load(&renamed).await.unwrap().is_some());
    assert!(store.load(&id).await.unwrap().is_none());

    // The renamed id is jvm2's own: no new cookie, count goes on.
    assert_eq!(
        count(jvm2.addr, Some(&renamed)).await,
        (renamed.clone(), 4, None)
    );
    // A late request with the old id on the renaming node still reaches the session.
    let (late, n, cookie) = count(jvm2.addr, Some(&id)).await;
    assert_eq!((late.as_str(), n), (renamed.as_str(), 5));
    assert_eq!(cookie.as_deref(), Some(renamed.as_str()));

    jvm1.stop().await;
    jvm2.stop().await;
}

#[tokio::test]
async fn two_nodes_share_a_memory_store() {
    check_continuity(&SessionStore::memory()).await;
}

#[tokio::test]
async fn binder_valve_renames_in_memory_store() {
    check_binder_valve(&SessionStore::memory()).await;
}

/// The store named by `var`, schema created; `None` (after a loud note) when `var` is unset.
#[cfg(any(feature = "redis-store", feature = "sql-store"))]
async fn service_store(var: &str, test: &str) -> Option<SessionStore> {
    let url = services::service_url(var, test)?;
    let store = parse_store_arg(&url, Duration::from_secs(5)).unwrap();
    store.ensure_schema().await.unwrap();
    Some(store)
}

#[cfg(feature = "redis-store")]
#[tokio::test]
async fn two_nodes_share_a_redis_store() {
    if let Some(store) = service_store("TEST_REDIS_URL", "two_nodes_share_a_redis_store").await {
        check_continuity(&store).await;
        check_binder_valve(&store).await;
    }
}

#[cfg(feature = "sql-store")]
#[tokio::test]
async fn two_nodes_share_a_postgres_store() {
    let test = "two_nodes_share_a_postgres_store";
    if let Some(store) = service_store("TEST_POSTGRES_URL", test).await {
        check_continuity(&store).await;
        check_binder_valve(&store).await;
    }
}

#[cfg(feature = "sql-store")]
#[tokio::test]
async fn two_nodes_share_a_mysql_store() {
    if let Some(store) = service_store("TEST_MYSQL_URL", "two_nodes_share_a_mysql_store").await {
        check_continuity(&store).await;
        check_binder_valve(&store).await;
    }
}

#[cfg(feature = "redis-store")]
#[tokio::test]
async fn unreachable_store_answers_503() {
    // Nothing listens on port 1: every store operation fails fast.
    let store = parse_store_arg("redis://127.0.0.1:1/", Duration::from_millis(500)).unwrap();
    let node = start_node("jvm1", &store).await;
    let resp = get(node.addr, "/count", Some("ABC.jvm1")).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.header("x-session-seen"), "ABC.jvm1");
    assert!(!resp.body.is_empty());
    // Endpoints without a session still work.
    assert_eq!(get(node.addr, "/health", None).await.status, StatusCode::OK);
    node.stop().await;
}

#[tokio::test]
async fn expired_session_is_replaced() {
    let store = SessionStore::memory();
    let mut cfg = DemoNodeConfig::new("jvm1", store.clone());
    cfg.session_timeout = Duration::from_secs(1);
    let node = start(cfg).await;

    let (id, _, _) = count(node.addr, None).await;
    assert_eq!(count(node.addr, Some(&id)).await.1, 2);
    assert!(store.load(&id).await.unwrap().is_some(), "{id} is stored");
    // Left idle, the session expires after 1 s: the store stops answering it.
    wait::until("the session to expire in the store", || async {
        store.load(&id).await.unwrap().is_none()
    })
    .await;
    let (fresh, n, cookie) = count(node.addr, Some(&id)).await;
    assert_ne!(fresh, id);
    assert_tomcat_id(&fresh, "jvm1");
    assert_eq!(n, 1);
    assert_eq!(cookie.as_deref(), Some(fresh.as_str()));
    node.stop().await;
}

#[tokio::test]
async fn login_changes_the_id_and_keeps_the_data() {
    let store = SessionStore::memory();
    let node = start_node("jvm1", &store).await;
    let (id, _, _) = count(node.addr, None).await;
    assert_eq!(count(node.addr, Some(&id)).await.1, 2);

    let resp = request(node.addr, Method::POST, "/login", Some(&id), Bytes::new()).await;
    assert_eq!(resp.status, StatusCode::OK);
    let json = resp.json();
    let new_id = json["session"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_tomcat_id(&new_id, "jvm1");
    assert_eq!(json["count"], 2, "login does not count");
    assert_eq!(resp.new_cookie().as_deref(), Some(new_id.as_str()));

    assert_eq!(count(node.addr, Some(&new_id)).await.1, 3);
    assert!(store.load(&id).await.unwrap().is_none(), "old id removed");
    node.stop().await;
}

#[tokio::test]
async fn echo_streams_a_large_body_back() {
    let node = start_node("jvm1", &SessionStore::memory()).await;
    let body: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let stream = TcpStream::connect(node.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/echo")
        .header("host", "demo")
        .header("content-type", "application/x-test")
        .body(Full::new(Bytes::from(body.clone())))
        .unwrap();
    let resp = timeout(DEADLINE, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-test");
    assert_eq!(resp.headers()["x-node"], "jvm1");
    let echoed = timeout(DEADLINE, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed[..] == body[..], "echoed bytes differ");
    node.stop().await;
}

#[tokio::test]
async fn websocket_echo_names_the_node_first() {
    let node = start_node("jvm3", &SessionStore::memory()).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", node.addr))
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-node"], "jvm3");

    let first = timeout(DEADLINE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, Message::text("node:jvm3"));
    ws.send(Message::text("hello")).await.unwrap();
    let echoed = timeout(DEADLINE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echoed = timeout(DEADLINE, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));

    // A plain GET is not an upgrade.
    assert_eq!(
        get(node.addr, "/ws", None).await.status,
        StatusCode::BAD_REQUEST
    );

    // Stop drops the WebSocket too.
    timeout(DEADLINE, node.stop()).await.expect("stop in time");
    let after = timeout(DEADLINE, ws.next()).await.expect("socket closed");
    assert!(
        !matches!(after, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{after:?}"
    );
}

#[tokio::test]
async fn stop_closes_idle_keep_alive_connections_and_the_listener() {
    let node = start_node("jvm1", &SessionStore::memory()).await;
    let addr = node.addr;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn_task = tokio::spawn(conn);

    // Two requests on one connection: it is kept alive.
    for _ in 0..2 {
        let req = Request::get("/health")
            .header("host", "demo")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
    }
    assert!(!conn_task.is_finished());

    timeout(DEADLINE, node.stop()).await.expect("stop in time");

    // The idle connection is closed by the node: the client's connection task ends.
    timeout(DEADLINE, conn_task)
        .await
        .expect("client sees the connection closed")
        .unwrap()
        .ok();
    assert!(sender.is_closed() || sender.ready().await.is_err());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "new connects are refused"
    );
}

/// `--route-from-ptr` against a real DNS server: the route is the first label of the PTR name
/// of the given address (the rule of a balancer's `discovery.host`); an address without a PTR
/// record, or whose name gives no valid route, is refused with the reason. Then the binary:
/// it serves under the route it found.
#[tokio::test]
async fn route_from_ptr_is_the_first_label_of_the_address_ptr_name() {
    use std::net::{IpAddr, Ipv4Addr};
    use stickyroute::demo::own_route::{route_from_ptr, PtrLookup};

    let Some(dns) = dns::DnsServer::start("pool.test.").await else {
        return;
    };
    let (named, bad, none) = (
        Ipv4Addr::new(127, 0, 0, 9),
        Ipv4Addr::new(127, 0, 0, 10),
        Ipv4Addr::new(127, 0, 0, 11),
    );
    dns.set_records(&[
        dns::Record::ptr(named, 5, "web-3.pool.test."),
        // `\126` is `~` in zone file syntax.
        dns::Record::ptr(bad, 5, "web\\1263.pool.test."),
        dns::Record::a("web-3", 5, named),
    ])
    .await;
    let lookup = |ip: Ipv4Addr| PtrLookup {
        address: Some(IpAddr::V4(ip)),
        resolver: Some(dns.addr()),
    };

    let found = timeout(DEADLINE, route_from_ptr(&lookup(named)))
        .await
        .expect("PTR lookup in time")
        .unwrap();
    assert_eq!(found.route, "web-3");
    assert_eq!(found.name, "web-3.pool.test.");
    assert_eq!(found.address, IpAddr::V4(named));

    // A first label that gives no route (`web~3`, presented escaped as `web\~3`) is refused,
    // naming the address.
    let e = timeout(DEADLINE, route_from_ptr(&lookup(bad)))
        .await
        .expect("PTR lookup in time")
        .unwrap_err();
    assert!(
        e.starts_with("127.0.0.10: name \"web\\\\~3.pool.test\"")
            && e.contains("not a valid route"),
        "{e}"
    );
    let e = timeout(DEADLINE, route_from_ptr(&lookup(none)))
        .await
        .expect("PTR lookup in time")
        .unwrap_err();
    assert_eq!(
        e,
        format!("no PTR record for {none} (asked {})", dns.addr())
    );

    // The binary: it looks its route up, then serves under it.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args([
            "demo-node",
            "--route-from-ptr",
            "--ptr-address",
            "127.0.0.9",
        ])
        .args([
            "--resolver",
            &dns.addr().to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let line = timeout(DEADLINE, lines.next_line())
        .await
        .expect("the demo node's first line in time")
        .unwrap()
        .expect("the demo node exited before listening");
    assert!(
        line.starts_with("demo-node web-3 listening on http://"),
        "{line}"
    );
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let (session, n, cookie) = count(addr, None).await;
    assert_eq!(n, 1);
    assert_tomcat_id(&session, "web-3");
    assert_eq!(cookie.as_deref(), Some(session.as_str()));
    child.kill().await.unwrap();

    // The binary with an address that has no PTR record: exit 1 with the reason.
    let out = timeout(
        DEADLINE,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_stickyroute"))
            .args([
                "demo-node",
                "--route-from-ptr",
                "--ptr-address",
                "127.0.0.11",
            ])
            .args([
                "--resolver",
                &dns.addr().to_string(),
                "--listen",
                "127.0.0.1:0",
            ])
            .output(),
    )
    .await
    .expect("the demo node gave up in time")
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: --route-from-ptr: no PTR record for 127.0.0.11"),
        "{err}"
    );
}
