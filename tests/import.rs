//! `stickyroute import`: real-world-shaped mod_jk and mod_proxy_balancer configurations,
//! written for the test, through the binary; the YAML it prints is read back and checked key
//! by key, then given to `stickyroute check`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

/// A two-domain Tomcat cluster behind mod_jk, members sharing a template, plus a legacy pool
/// whose connector has no secret.
const WORKERS: &str = r#"# mod_jk workers for the shop cluster
worker.list=loadbalancer,legacy
worker.list=reports,status
worker.maintain=60
tomcat.net=10.0.0

# shared by every member
worker.template.type=ajp13
worker.template.port=8009
worker.template.secret=s3cret
worker.template.ping_mode=A
worker.template.ping_timeout=10000
worker.template.connection_pool_timeout=600
worker.template.socket_connect_timeout=5000
worker.template.reply_timeout=30000
worker.template.max_packet_size=16384
worker.template.retries=2
worker.template.fail_on_status=503,-404

worker.node1.reference=worker.template
worker.node1.host=$(tomcat.net).1
worker.node1.route=jvm1
worker.node1.domain=d1
worker.node1.redirect=node2
worker.node1.lbfactor=2
worker.node1.activation=A

worker.node2.reference=worker.template
worker.node2.host=$(tomcat.net).2
worker.node2.route=jvm2
worker.node2.domain=d1
worker.node2.activation=D

worker.node3.reference=worker.template
worker.node3.host=$(tomcat.net).3
worker.node3.port=8010
worker.node3.domain=d2
worker.node3.activation=S

worker.loadbalancer.type=lb
worker.loadbalancer.balance_workers=node1,node2
worker.loadbalancer.balance_workers=node3
worker.loadbalancer.sticky_session=true
worker.loadbalancer.sticky_session_force=true
worker.loadbalancer.retries=3
worker.loadbalancer.recover_time=90
worker.loadbalancer.method=B
worker.loadbalancer.session_cookie=JSESSIONID
worker.loadbalancer.session_path=;jsessionid

worker.old1.type=ajp13
worker.old1.host=127.0.0.1
worker.old1.port=8019
worker.old1.lbfactor=1

worker.legacy.type=lb
worker.legacy.balance_workers=old1
worker.legacy.sticky_session=0

# the secret comes from the environment of httpd
worker.rep1.host=10.0.3.1
worker.rep1.secret=$(STICKYROUTE_TEST_AJP_SECRET)
worker.reports.type=lb
worker.reports.balance_workers=rep1
worker.reports.mount=/reports/*

worker.status.type=status
"#;

const URI_MAP: &str = "# mounts\n/app|/*=loadbalancer\n!/app/static/*=loadbalancer\n/legacy/*=legacy\n/jkstatus=status\n";

/// A shop on HTTP nodes in a virtual host (health checks, hot standby, drain, lbsets).
const HTTPD_SHOP: &str = r#"ServerRoot "/etc/httpd"
Listen 80
LoadModule proxy_module modules/mod_proxy.so
LoadModule proxy_balancer_module modules/mod_proxy_balancer.so

<VirtualHost *:80>
    ServerName shop.example.com
    ServerAlias www.shop.example.com *.shop.example.com
    <Proxy "balancer://shop">
        BalancerMember "http://10.0.1.1:8080" route=s1 loadfactor=3 retry=30 timeout=45 \
            connectiontimeout=3 ttl=120 hcmethod=GET hcuri=/health hcinterval=10 hcpasses=2 hcfails=4
        BalancerMember "http://10.0.1.2:8080" route=s2 status=+H redirect=s1 retry=30 timeout=45 connectiontimeout=3 ttl=120 hcmethod=GET hcuri=/health hcinterval=10 hcpasses=2 hcfails=4
        BalancerMember "http://10.0.1.3:8080" route=s3 status=+N retry=30 timeout=45 connectiontimeout=3 ttl=120 hcmethod=GET hcuri=/health hcinterval=10 hcpasses=2 hcfails=4
        BalancerMember "http://10.0.1.4:8080" route=s4 lbset=1 retry=30 timeout=45 connectiontimeout=3 ttl=120 hcmethod=GET hcuri=/health hcinterval=10 hcpasses=2 hcfails=4
        BalancerMember "http://10.0.1.5:8080" route=s5 status=+D retry=30 timeout=45 connectiontimeout=3 ttl=120 hcmethod=GET hcuri=/health hcinterval=10 hcpasses=2 hcfails=4 max=50
        ProxySet stickysession=JSESSIONID|jsessionid lbmethod=bybusyness maxattempts=2 failonstatus=502,503
    </Proxy>
    ProxyPass "/shop" "balancer://shop/shop" nofailover=On
    ProxyPassReverse "/shop" "balancer://shop/shop"
</VirtualHost>
"#;

/// An application on AJP members with one HTTP member, mounted with `<Location>`.
const HTTPD_APP: &str = r#"
Listen 8443 https
ProxyIOBufferSize 16384
<Proxy balancer://app>
    BalancerMember ajp://10.0.2.1:8009 route=jvm1 secret=s3cret ping=5
    BalancerMember ajp://10.0.2.2:8009 route=jvm2 secret=s3cret ping=5 loadfactor=2
    BalancerMember http://10.0.2.3:8080 route=jvm3 status=+H
    ProxySet stickysession=JSESSIONID|jsessionid lbmethod=byrequests
</Proxy>
<Location "/app">
    ProxyPass "balancer://app/app"
</Location>
<Proxy balancer://reports>
    BalancerMember ajp://10.0.3.1:8009 route=r1 hcmethod=CPING hcinterval=5
    BalancerMember ajp://10.0.3.2:8009 route=r2 hcmethod=CPING hcinterval=5
</Proxy>
ProxyPass /reports balancer://reports/reports
"#;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stickyroute"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary; (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run stickyroute");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `stickyroute import ARGS…`: its YAML text and that text read back.
fn import(args: &[&Path], sub: &str, flag: Option<&str>) -> (String, Value) {
    let mut cmd = bin();
    // The mod_jk file's secret is `$(STICKYROUTE_TEST_AJP_SECRET)`: it stays a reference
    // whether or not the variable is set.
    cmd.env("STICKYROUTE_TEST_AJP_SECRET", "set-while-importing");
    cmd.args(["import", sub]).arg(args[0]);
    if let (Some(flag), Some(extra)) = (flag, args.get(1)) {
        cmd.arg(flag).arg(extra);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    let value: Value = serde_norway::from_str(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    (stdout, value)
}

/// `stickyroute check` on `yaml`, written to `dir`, with the secret a `secret_env` names.
fn check(dir: &Path, yaml: &str) -> (i32, String) {
    let path = write(dir, "balancer.yaml", yaml);
    let (code, stdout, stderr) = run(bin()
        .env("STICKYROUTE_TEST_AJP_SECRET", "from-the-environment")
        .args(["check", "-c"])
        .arg(&path));
    (code, format!("{stdout}{stderr}"))
}

/// The value at a path of keys and list indexes: `at(&v, "pools.0.nodes.1.route")`.
fn at<'v>(v: &'v Value, path: &str) -> &'v Value {
    let mut cur = v;
    for part in path.split('.') {
        cur = match part.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(part),
        }
        .unwrap_or_else(|| panic!("no {path} (at {part}) in {v:?}"));
    }
    cur
}

fn missing(v: &Value, path: &str) -> bool {
    let (parent, last) = path.rsplit_once('.').unwrap();
    at(v, parent).get(last).is_none()
}

/// Compares each (path, expected scalar as YAML text) of `cases`.
fn expect(v: &Value, cases: &[(&str, &str)]) {
    for (path, want) in cases {
        let want: Value = serde_norway::from_str(want).unwrap();
        assert_eq!(at(v, path), &want, "{path}");
    }
}

/// The comment lines of `yaml` mentioning `needle` (a comment says what was not carried over).
fn commented(yaml: &str, needle: &str) -> bool {
    yaml.lines()
        .filter_map(|l| l.split_once('#').map(|(_, c)| c))
        .any(|c| c.contains(needle))
}

fn mod_jk_files(dir: &Path) -> (String, Value) {
    let workers = write(dir, "workers.properties", WORKERS);
    let map = write(dir, "uriworkermap.properties", URI_MAP);
    import(&[&workers, &map], "mod-jk", Some("--uri-map"))
}

#[test]
fn mod_jk_maps_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, v) = mod_jk_files(dir.path());
    expect(
        &v,
        &[
            ("session.cookies", "[JSESSIONID]"),
            ("session.path_param", "jsessionid"),
            ("pools.0.name", "loadbalancer"),
            ("pools.0.path_prefix", "/app"),
            ("pools.0.protocol", "ajp"),
            ("pools.0.ajp.secret", "s3cret"),
            ("pools.0.ajp.packet_size", "16384"),
            ("pools.0.ajp.ping_after", "1s"),
            ("pools.0.balance", "p2c"),
            ("pools.0.failover.max_attempts", "3"),
            ("pools.0.failover.recover_after", "90s"),
            ("pools.0.timeouts.connect", "5s"),
            ("pools.0.timeouts.response", "30s"),
            ("pools.0.timeouts.idle", "10m"),
            ("pools.0.fail_on_status", "[503]"),
            ("pools.0.nodes.0.route", "jvm1"),
            ("pools.0.nodes.0.address", "10.0.0.1:8009"),
            ("pools.0.nodes.0.weight", "2"),
            ("pools.0.nodes.0.domain", "d1"),
            ("pools.0.nodes.0.redirect", "jvm2"),
            ("pools.0.nodes.0.state", "active"),
            ("pools.0.nodes.1.route", "jvm2"),
            ("pools.0.nodes.1.address", "10.0.0.2:8009"),
            ("pools.0.nodes.1.state", "draining"),
            ("pools.0.nodes.2.route", "node3"),
            ("pools.0.nodes.2.address", "10.0.0.3:8010"),
            ("pools.0.nodes.2.domain", "d2"),
            ("pools.0.nodes.2.state", "disabled"),
            ("pools.1.name", "legacy"),
            ("pools.1.path_prefix", "/legacy"),
            ("pools.1.protocol", "ajp"),
            ("pools.1.ajp.secret_required", "false"),
            ("pools.1.failover.max_attempts", "1"),
            ("pools.1.nodes.0.route", "old1"),
            ("pools.1.nodes.0.address", "127.0.0.1:8019"),
            ("pools.1.nodes.0.weight", "1"),
            ("pools.2.name", "reports"),
            ("pools.2.path_prefix", "/reports"),
            ("pools.2.ajp.secret_env", "STICKYROUTE_TEST_AJP_SECRET"),
            ("pools.2.nodes.0.address", "10.0.3.1:8009"),
        ],
    );
    assert_eq!(at(&v, "pools").as_sequence().unwrap().len(), 3);
    assert!(missing(&v, "pools.2.ajp.secret"));
    assert!(
        missing(&v, "pools.0.nodes.0.protocol"),
        "the pool's protocol is not repeated"
    );
    assert!(
        missing(&v, "pools.0.nodes.0.ajp"),
        "the shared secret is on the pool"
    );
    assert!(missing(&v, "pools.1.ajp.secret"));
    for note in [
        "Tomcat 9.0.31+",
        "sticky_session_force=true",
        "sticky_session=false",
        "retries=3",
        "retries=2 (stickyroute resends",
        "ping_timeout=10000",
        "fail_on_status -404",
        "the exclusion !/app/static/*",
        "status worker status not imported",
        "/jkstatus=status not imported",
        "activation=D: mod_jk's disabled still takes its sticky sessions",
        "activation=S",
        "httpd's Listen and VirtualHost are not in workers.properties",
    ] {
        assert!(commented(&yaml, note), "no comment on {note:?}:\n{yaml}");
    }
}

/// Passes once `protocol: ajp` and the `ajp:` keys exist in the config (branch `ajp`).
#[test]
fn mod_jk_output_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, _) = mod_jk_files(dir.path());
    let (code, out) = check(dir.path(), &yaml);
    assert_eq!(code, 0, "{out}\n{yaml}");
}

#[test]
fn mod_proxy_maps_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "httpd.conf",
        &format!("{HTTPD_SHOP}{HTTPD_APP}"),
    );
    let (yaml, v) = import(&[&conf], "mod-proxy", None);
    expect(
        &v,
        &[
            ("listeners.0.bind", "\"0.0.0.0:80\""),
            ("listeners.1.bind", "\"0.0.0.0:8443\""),
            ("session.cookies", "[JSESSIONID]"),
            ("session.path_param", "jsessionid"),
            ("pools.0.name", "shop"),
            ("pools.0.hosts", "[shop.example.com, www.shop.example.com]"),
            ("pools.0.path_prefix", "/shop"),
            ("pools.0.balance", "p2c"),
            ("pools.0.failover.max_attempts", "3"),
            ("pools.0.failover.recover_after", "30s"),
            ("pools.0.timeouts.connect", "3s"),
            ("pools.0.timeouts.response", "45s"),
            ("pools.0.timeouts.idle", "2m"),
            ("pools.0.fail_on_status", "[502, 503]"),
            ("pools.0.health.path", "/health"),
            ("pools.0.health.interval", "10s"),
            ("pools.0.health.rise", "2"),
            ("pools.0.health.fall", "4"),
            ("pools.0.nodes.0.route", "s1"),
            ("pools.0.nodes.0.address", "10.0.1.1:8080"),
            ("pools.0.nodes.0.weight", "3"),
            ("pools.0.nodes.1.state", "standby"),
            ("pools.0.nodes.1.redirect", "s1"),
            ("pools.0.nodes.2.state", "draining"),
            ("pools.0.nodes.3.state", "standby"),
            ("pools.0.nodes.4.state", "disabled"),
            ("pools.1.name", "app"),
            ("pools.1.path_prefix", "/app"),
            ("pools.1.protocol", "ajp"),
            ("pools.1.balance", "round_robin"),
            ("pools.1.ajp.secret", "s3cret"),
            ("pools.1.ajp.packet_size", "16384"),
            ("pools.1.ajp.ping_after", "1s"),
            ("pools.1.nodes.0.address", "10.0.2.1:8009"),
            ("pools.1.nodes.1.weight", "2"),
            ("pools.1.nodes.2.route", "jvm3"),
            ("pools.1.nodes.2.address", "10.0.2.3:8080"),
            ("pools.1.nodes.2.protocol", "http"),
            ("pools.1.nodes.2.state", "standby"),
            ("pools.2.name", "reports"),
            ("pools.2.path_prefix", "/reports"),
            ("pools.2.protocol", "ajp"),
            ("pools.2.ajp.secret_required", "false"),
            ("pools.2.health.kind", "cping"),
            ("pools.2.health.interval", "5s"),
            ("pools.2.nodes.1.route", "r2"),
        ],
    );
    assert!(missing(&v, "pools.0.protocol"), "HTTP is the default");
    assert!(missing(&v, "pools.0.nodes.0.state"));
    assert!(missing(&v, "pools.1.hosts"), "outside a virtual host");
    assert!(missing(&v, "pools.1.nodes.0.protocol"));
    for note in [
        "nofailover=On",
        "max=50",
        "status=+H: hot standby",
        "status=+N: drain",
        "status=+D: disabled",
        "lbset=1 (lowest 0)",
        "maxattempts=2",
        "TLS: add tls.cert and tls.key",
        "the CPong wait of ping=5",
        "query string",
        "no stickysession",
        "Tomcat 9.0.31+",
    ] {
        assert!(commented(&yaml, note), "no comment on {note:?}:\n{yaml}");
    }
}

#[test]
fn mod_proxy_http_output_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(dir.path(), "httpd.conf", HTTPD_SHOP);
    let (yaml, v) = import(&[&conf], "mod-proxy", None);
    assert_eq!(at(&v, "pools").as_sequence().unwrap().len(), 1);
    let (code, out) = check(dir.path(), &yaml);
    assert_eq!(code, 0, "{out}\n{yaml}");
    assert!(out.contains("shop"), "{out}");
}

/// Passes once `protocol: ajp` and the `ajp:` keys exist in the config (branch `ajp`).
#[test]
fn mod_proxy_mixed_output_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write(
        dir.path(),
        "httpd.conf",
        &format!("{HTTPD_SHOP}{HTTPD_APP}"),
    );
    let (yaml, _) = import(&[&conf], "mod-proxy", None);
    let (code, out) = check(dir.path(), &yaml);
    assert_eq!(code, 0, "{out}\n{yaml}");
}

#[test]
fn unparseable_files_are_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "mod-jk",
            "workers.properties",
            "worker.list=lb\nworker.lb.type=lb\nthis line has no equals sign\n",
            ":3: expected name=value",
        ),
        (
            "mod-jk",
            "workers.properties",
            "worker.list=lb\nworker.lb.type=lb\n",
            ":2: lb worker lb has no balance_workers",
        ),
        (
            "mod-jk",
            "workers.properties",
            "worker.n.activation=X\nworker.lb.type=lb\nworker.lb.balance_workers=n\n",
            ":1: worker.n.activation: expected A, D or S",
        ),
        (
            "mod-proxy",
            "httpd.conf",
            "Listen 80\n<Proxy balancer://c>\n  BalancerMember http://h:1 route=a\n",
            ":2: <Proxy> is never closed",
        ),
        (
            "mod-proxy",
            "httpd.conf",
            "<Proxy balancer://c>\n  BalancerMember http://h:1 status=+Q\n</Proxy>\n",
            ":2: status=+Q: unknown flag 'Q'",
        ),
        (
            "mod-proxy",
            "httpd.conf",
            "Listen 80\n",
            ": no balancer to import",
        ),
    ];
    for (sub, name, text, fragment) in cases {
        let path = write(dir.path(), name, text);
        let (code, stdout, stderr) = run(bin().args(["import", sub]).arg(&path));
        assert_eq!(code, 1, "{text:?}: {stdout}");
        let expected = format!("{}{fragment}", path.display());
        assert!(
            stderr.contains(&expected),
            "{text:?}: {stderr:?} lacks {expected:?}"
        );
    }
    let (code, _, stderr) = run(bin()
        .args(["import", "mod-jk"])
        .arg(dir.path().join("absent.properties")));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("absent.properties: cannot read"),
        "{stderr}"
    );
}
