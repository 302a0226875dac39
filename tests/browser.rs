//! The status page and the demo page in a real browser: headless Chromium (Debian's `chromium`)
//! driven through chromedriver with `fantoccini` (WebDriver).
//!
//! One browser for the whole binary (it is the slow part): one test runs both pages.
//! - Status page: it renders the nodes from the embedded report and then live from the API;
//!   *drain* asks for the admin token, the state changes in the page and in the API; *disable*
//!   asks for confirmation (cancel changes nothing, OK disables); the cluster line renders the
//!   `cluster` section when a report has one and nothing when it has none. Screenshots:
//!   `<target>/screenshots/status.png` (jvm2 draining) and `status-disabled.png` (jvm2
//!   disabled: drained, its sessions failed over).
//! - Demo page: count, *stop* the node that answered, count again: another node answers, the
//!   count goes on and the page shows the cookie before (`….jvmA`) and after (`….jvmA.jvmB`);
//!   *start* brings the node back. Screenshot: `<target>/screenshots/demo.png`.
//!
//! Without chromium or chromedriver the test prints `SKIPPED` and passes, unless
//! `STICKYROUTE_REQUIRE_SERVICES=1` (CI), which makes it fail. `STICKYROUTE_CHROMIUM` and
//! `STICKYROUTE_CHROMEDRIVER` override `/usr/bin/chromium` and `/usr/bin/chromedriver`.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use stickyroute::core::node_state::NodeState;
use stickyroute::demo::command::{start_demo, DemoOptions};
use stickyroute::store::SessionStore;

/// What a page has to show something within (the status page polls every second).
const PAGE_DEADLINE: Duration = Duration::from_secs(15);
const TOKEN: &str = "br0wser-t0ken";

fn program(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    p.is_file().then_some(p)
}

/// Where screenshots go: `screenshots/` in the target directory.
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver on a free port, killed when dropped, and a WebDriver session on headless
/// Chromium with a fresh profile.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Option<Browser> {
        let chromium = program("STICKYROUTE_CHROMIUM", "/usr/bin/chromium");
        let driver = program("STICKYROUTE_CHROMEDRIVER", "/usr/bin/chromedriver");
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let what =
                "chromium and chromedriver (Debian: apt-get install chromium chromium-driver)";
            if std::env::var("STICKYROUTE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("the browser test needs {what} (STICKYROUTE_REQUIRE_SERVICES=1)");
            }
            let _ = writeln!(std::io::stderr(), "SKIPPED: the browser test needs {what}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", driver.display()));
        let url = format!("http://127.0.0.1:{port}");
        eventually("chromedriver listening", DEADLINE, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        // What headless Chromium needs on a machine without a network or a display, as root.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1500,1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({
            "browserName": "chrome",
            // Prompts and confirmations stay open for the test to answer.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&url),
        )
        .await
        .expect("chromium did not start within 60 s")
        .unwrap_or_else(|e| panic!("WebDriver session on {}: {e}", chromium.display()));
        Some(Browser {
            client,
            _driver: child,
            _profile: profile,
        })
    }

    /// Runs `script` (a function body) in the page and returns its value.
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls the JavaScript expression `expr` until it is `true` (a boolean: any other value
    /// fails the test, so a mistyped expression cannot pass by being truthy).
    async fn until(&self, what: &str, expr: &str) {
        let deadline = tokio::time::Instant::now() + PAGE_DEADLINE;
        let script = format!("return ({expr});");
        loop {
            match self.js(&script).await {
                Value::Bool(true) => return,
                Value::Bool(false) => {}
                other => panic!("{what}: {expr} is not a boolean: {other}"),
            }
            if tokio::time::Instant::now() >= deadline {
                let body = self.js("return document.body.innerText").await;
                panic!(
                    "timed out after {PAGE_DEADLINE:?} waiting for {what} ({expr}); page:\n{body}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Waits for a prompt or confirmation and returns its text.
    async fn alert_text(&self) -> String {
        let deadline = tokio::time::Instant::now() + PAGE_DEADLINE;
        loop {
            match self.client.get_alert_text().await {
                Ok(t) => return t,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    panic!("no prompt appeared: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = screenshot_dir().join(name);
        std::fs::write(&path, png).unwrap();
        let _ = writeln!(std::io::stderr(), "screenshot: {}", path.display());
        path
    }
}

/// The text of the first element matching `css`, as a JavaScript expression.
fn text_of(css: &str) -> String {
    // Parenthesized: `a || '' === 'x'` would compare only the ''.
    format!("((document.querySelector({css:?}) || {{}}).textContent || '')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_and_demo_page_in_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    status_page(&browser).await;
    demo_page(&browser).await;
    browser.client.close().await.unwrap();
}

async fn status_page(b: &Browser) {
    let store = SessionStore::memory();
    let nodes = [
        node("jvm1", &store).await,
        node("jvm2", &store).await,
        node("jvm3", &store).await,
    ];
    let lines: Vec<String> = ["jvm1", "jvm2", "jvm3"]
        .iter()
        .zip(&nodes)
        .map(|(route, n)| node_line(route, n.addr, ""))
        .collect();
    let lb = balancer(&with_admin(&yaml("binder: translate", &lines), Some(TOKEN))).await;
    let ctl = admin_client(&lb, Some(TOKEN));
    let addr = lb.addr();
    // Sessions on every node, and traffic while the page watches, so bars and charts fill.
    // (At least two on jvm2, the node the test drains.)
    let mut sessions = Vec::new();
    while sessions.len() < 12
        || sessions
            .iter()
            .filter(|s: &&Session| s.pin() == "jvm2")
            .count()
            < 2
    {
        assert!(sessions.len() < 200, "no sessions land on jvm2");
        let mut s = Session::new();
        assert_eq!(s.get(addr, "/count").await.status, 200);
        sessions.push(s);
    }
    let count = sessions.len();
    let traffic = tokio::spawn(async move {
        for i in 0.. {
            let s = &mut sessions[i % count];
            let _ = s.get(addr, "/count").await;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });

    let admin = format!("http://{}/", lb.admin_addr.unwrap());
    b.client.goto(&admin).await.unwrap();
    assert_eq!(
        b.js("return document.body.dataset.tokenRequired").await,
        "true"
    );
    // Rendered from the embedded report at once, then live: the poll counter goes up and the
    // request rate of the nodes is above zero.
    b.until(
        "three node rows",
        "document.querySelectorAll('tr[data-route]').length === 3",
    )
    .await;
    b.until("a few polls", "Number(document.body.dataset.polls) >= 3")
        .await;
    b.until(
        "a request rate",
        &format!(
            "parseFloat({}) > 0",
            text_of("tr[data-route=\"jvm2\"] .rate")
        ),
    )
    .await;
    assert_eq!(
        b.js(&format!(
            "return {}",
            text_of("tr[data-route=\"jvm2\"] .state")
        ))
        .await,
        "active"
    );
    assert_eq!(
        b.js("return document.querySelectorAll('svg polyline').length > 0")
            .await,
        true,
        "the charts draw lines"
    );
    assert_eq!(
        b.js("return document.getElementById('cluster').hidden")
            .await,
        true,
        "no cluster line without a cluster section"
    );

    // Drain jvm2: the page asks for the token (none stored yet), then shows the new state.
    b.click("tr[data-route=\"jvm2\"] button[data-state=\"draining\"]")
        .await;
    let prompt = b.alert_text().await;
    assert!(prompt.contains("Admin token"), "{prompt}");
    b.client.send_alert_text(TOKEN).await.unwrap();
    b.client.accept_alert().await.unwrap();
    b.until(
        "jvm2 draining in the page",
        &format!(
            "{} === 'draining'",
            text_of("tr[data-route=\"jvm2\"] .state")
        ),
    )
    .await;
    let s = ctl.status().await.unwrap();
    assert_eq!(node_report(&s, "jvm2").state, "draining", "and in the API");
    assert_eq!(
        lb.balancer.snapshot().pools[0]
            .node("jvm2")
            .unwrap()
            .state(),
        NodeState::Draining
    );
    b.until(
        "drain progress",
        &format!(
            "/^[0-9]+ sessions? left$/.test({})",
            text_of("tr[data-route=\"jvm2\"] .drain-text")
        ),
    )
    .await;
    // The drain button is gone for the draining node; activate is there.
    assert_eq!(
        b.js("return document.querySelector('tr[data-route=\"jvm2\"] button[data-state=\"draining\"]').hidden")
            .await,
        true
    );
    b.until(
        "some history in the charts",
        "Number(document.body.dataset.polls) >= 10",
    )
    .await;
    let shot = b.screenshot("status.png").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // Disable asks for confirmation: cancel changes nothing.
    b.click("tr[data-route=\"jvm2\"] button[data-state=\"disabled\"]")
        .await;
    let confirm = b.alert_text().await;
    assert!(confirm.contains("Disable jvm2"), "{confirm}");
    b.client.dismiss_alert().await.unwrap();
    b.until(
        "the cancel message",
        &format!("{}.includes('cancelled')", text_of("#msg")),
    )
    .await;
    assert_eq!(
        node_report(&ctl.status().await.unwrap(), "jvm2").state,
        "draining"
    );
    // OK disables (the token is remembered: no second prompt).
    b.click("tr[data-route=\"jvm2\"] button[data-state=\"disabled\"]")
        .await;
    b.alert_text().await;
    b.client.accept_alert().await.unwrap();
    b.until(
        "jvm2 disabled in the page",
        &format!(
            "{} === 'disabled'",
            text_of("tr[data-route=\"jvm2\"] .state")
        ),
    )
    .await;
    assert_eq!(
        node_report(&ctl.status().await.unwrap(), "jvm2").state,
        "disabled"
    );
    // Disabled, its sessions move on their next request: the page shows the drain complete
    // and the failovers out of jvm2.
    b.until(
        "jvm2 drained in the page",
        &format!(
            "{} === 'drained'",
            text_of("tr[data-route=\"jvm2\"] .drain-text")
        ),
    )
    .await;
    let st = ctl.status().await.unwrap();
    let n2 = node_report(&st, "jvm2");
    assert!(n2.drained, "the page shows what the API says: {n2:?}");
    b.until(
        "failovers out of jvm2 in the chart",
        "Array.from(document.querySelectorAll('tr[data-route=\"jvm2\"] polyline.fout'))\
           .some(l => l.getAttribute('points').split(' ').some(p => parseFloat(p.split(',')[1]) < 34))",
    )
    .await;
    b.screenshot("status-disabled.png").await;
    // A wrong stored token: the page asks again.
    b.js("sessionStorage.setItem('stickyroute-token', 'wrong')")
        .await;
    b.click("tr[data-route=\"jvm2\"] button[data-state=\"active\"]")
        .await;
    b.alert_text().await;
    b.client.send_alert_text(TOKEN).await.unwrap();
    b.client.accept_alert().await.unwrap();
    b.until(
        "jvm2 active again",
        &format!("{} === 'active'", text_of("tr[data-route=\"jvm2\"] .state")),
    )
    .await;
    assert_eq!(
        node_report(&ctl.status().await.unwrap(), "jvm2").state,
        "active"
    );

    // The cluster section, when a report carries one.
    let cluster = |c: &str| {
        format!(
            "const r = JSON.parse(document.getElementById('initial').textContent); \
             r.cluster = {c}; render(r); const e = document.getElementById('cluster'); \
             return [e.hidden, e.textContent];"
        )
    };
    let connected = b
        .js(&cluster(
            "{name: 'prod', connected: true, instances: [{id: 'a', alive: true}, \
             {id: 'b', alive: true}, {id: 'c', alive: true}]}",
        ))
        .await;
    assert_eq!(
        connected,
        json!([false, "cluster: prod — connected, 3 instances"])
    );
    let down = b
        .js(&cluster("{name: 'prod', connected: false, instances: []}"))
        .await;
    assert_eq!(down, json!([false, "cluster: prod — disconnected"]));
    b.until(
        "the next poll hides it again",
        "document.getElementById('cluster').hidden",
    )
    .await;

    traffic.abort();
    lb.stop().await;
    for n in nodes {
        n.stop().await;
    }
}

async fn demo_page(b: &Browser) {
    let demo = start_demo(DemoOptions::ephemeral()).await.unwrap();
    b.client
        .goto(&format!("http://{}/", demo.balancer_addr))
        .await
        .unwrap();
    b.until(
        "the demo nodes from the control listener",
        "document.querySelectorAll('#nodes tbody tr').length === 3",
    )
    .await;
    // Count once: the node that answered and the cookie it set.
    b.click("#count-again").await;
    b.until(
        "one answer",
        "document.querySelectorAll('#history tbody tr').length === 1",
    )
    .await;
    let first = b
        .js(&format!(
            "return {}",
            text_of("#history tbody tr .answered")
        ))
        .await;
    let first = first.as_str().unwrap().to_string();
    let cookie = b
        .js(&format!("return {}", text_of("#history tbody tr .after")))
        .await;
    let cookie = cookie.as_str().unwrap().to_string();
    assert!(
        cookie.starts_with("JSESSIONID=") && cookie.ends_with(&format!(".{first}")),
        "{cookie}"
    );

    // Stop that node from the page.
    b.click(&format!(
        "#nodes tr[data-route=\"{first}\"] button[data-action=\"stop\"]"
    ))
    .await;
    b.until(
        "the node stopped",
        &format!(
            "{} === 'stopped'",
            text_of(&format!("#nodes tr[data-route=\"{first}\"] .process"))
        ),
    )
    .await;
    assert!(
        demo.nodes()
            .await
            .iter()
            .any(|n| n.route == first && !n.running),
        "stopped in the demo, not only in the page"
    );

    // Count again: another node answers, the count goes on, the cookie is rebound.
    b.click("#count-again").await;
    b.until(
        "a second answer",
        "document.querySelectorAll('#history tbody tr').length === 2",
    )
    .await;
    let row = b
        .js("const r = document.querySelector('#history tbody tr'); \
             return [...r.children].map(td => td.textContent);")
        .await;
    let row: Vec<String> = serde_json::from_value(row).unwrap();
    let (second, count, before, after) = (&row[1], &row[2], &row[3], &row[4]);
    assert_ne!(second, &first, "another node answered: {row:?}");
    assert_eq!(count, "2", "the count went on: {row:?}");
    assert_eq!(before, &cookie, "{row:?}");
    assert_eq!(after, &format!("{cookie}.{second}"), "rebound: {row:?}");
    b.until(
        "the balancer's view of the stopped node",
        &format!(
            "{}.startsWith('down')",
            text_of(&format!("#nodes tr[data-route=\"{first}\"] .balancer"))
        ),
    )
    .await;
    let answer = b.js(&format!("return {}", text_of("#answer"))).await;
    assert!(
        answer.as_str().unwrap().contains("the cookie changed"),
        "{answer}"
    );
    let shot = b.screenshot("demo.png").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 5_000);

    // Start it again from the page.
    b.click(&format!(
        "#nodes tr[data-route=\"{first}\"] button[data-action=\"start\"]"
    ))
    .await;
    b.until(
        "the node running again",
        &format!(
            "{} === 'running'",
            text_of(&format!("#nodes tr[data-route=\"{first}\"] .process"))
        ),
    )
    .await;
    assert!(demo.nodes().await.iter().all(|n| n.running));
    demo.stop().await;
}
