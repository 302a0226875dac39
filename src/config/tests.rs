//! The configuration's unit tests: parsing, defaults, and every error's file, line and key.

use super::*;
use std::time::Duration;

use crate::core::binder::BinderKind;

const GOOD: &str = r#"
listeners:
  - bind: "127.0.0.1:8080"
pools:
  - name: app
    nodes:
      - { route: jvm1, address: "127.0.0.1:18081", domain: a, redirect: jvm2 }
      - { route: jvm2, address: "127.0.0.1:18082", domain: a }
"#;

#[cfg(feature = "redis-store")]
#[test]
fn cluster_section_parses_and_names_its_errors() {
    let with = |section: &str| format!("{GOOD}cluster:\n{section}");
    let c = Config::from_yaml(
        &with("  redis: \"redis://127.0.0.1:6379/\"\n  name: prod\n"),
        "t.yaml",
    )
    .unwrap();
    let cl = c.cluster.as_ref().unwrap();
    assert_eq!(cl.redis.as_deref(), Some("redis://127.0.0.1:6379/"));
    assert_eq!((cl.name.as_str(), cl.instance.as_deref()), ("prod", None));
    assert_eq!(cl.heartbeat, Duration::from_secs(1));
    assert_eq!(cl.line, Some(9));
    assert!(Config::from_yaml(GOOD, "t.yaml").unwrap().cluster.is_none());

    let cases = [
        (
            "  redis: \"http://x:1/\"\n  name: prod\n",
            "cluster.redis",
            10,
            "redis://",
        ),
        (
            "  redis: \"redis:///0\"\n  name: prod\n",
            "cluster.redis",
            10,
            "no host",
        ),
        ("  name: \"a b\"\n", "cluster.name", 10, "letters"),
        ("  name: \"a:b\"\n", "cluster.name", 10, "letters"),
        (
            "  name: p\n  instance: \"x{y}\"\n",
            "cluster.instance",
            11,
            "letters",
        ),
        (
            "  name: p\n  heartbeat: 10ms\n",
            "cluster.heartbeat",
            11,
            "50ms",
        ),
        ("  name: p\n  timeout: 0s\n", "cluster.timeout", 11, "zero"),
        (
            "  name: p\n  peers: 3\n",
            "cluster.peers",
            11,
            "unknown field",
        ),
        ("  redis: \"redis://h:1/\"\n", "cluster", 10, "name"),
    ];
    for (section, key, line, msg) in cases {
        let err = Config::from_yaml(&with(section), "t.yaml").unwrap_err();
        assert_eq!(err.key, key, "{section}: {err}");
        assert_eq!(err.line, Some(line), "{section}: {err}");
        assert!(err.message.contains(msg), "{section}: {err}");
        assert_eq!(err.file, "t.yaml");
    }
}

#[cfg(feature = "redis-store")]
#[test]
fn cluster_redis_may_come_from_the_environment() {
    let yaml = format!("{GOOD}cluster:\n  name: prod\n");
    let c = Config::from_yaml(&yaml, "t.yaml").unwrap();
    let err = c.clone().with_cluster_redis_override(None).unwrap_err();
    assert_eq!((err.key.as_str(), err.line), ("cluster.redis", Some(9)));
    assert!(err.message.contains(CLUSTER_REDIS_ENV), "{err}");
    let c2 = c
        .clone()
        .with_cluster_redis_override(Some("redis://10.0.0.1:6379/2".into()))
        .unwrap();
    assert_eq!(
        c2.cluster.unwrap().redis.as_deref(),
        Some("redis://10.0.0.1:6379/2")
    );
    let err = c
        .with_cluster_redis_override(Some("tcp://x".into()))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("t.yaml:9: key `cluster.redis`: STICKYROUTE_CLUSTER_REDIS"),
        "{err}"
    );
    // Without a cluster section the variable changes nothing.
    let plain = Config::from_yaml(GOOD, "t.yaml").unwrap();
    assert!(plain
        .with_cluster_redis_override(Some("redis://h:1/".into()))
        .unwrap()
        .cluster
        .is_none());
}

#[test]
fn good_config_parses_with_defaults() {
    let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
    let p = &c.pools[0];
    assert_eq!(p.binder, BinderKind::Translate);
    assert_eq!(p.failover.max_attempts, 3);
    assert_eq!(p.nodes[0].redirect.as_deref(), Some("jvm2"));
    assert_eq!(c.session.settings.separator, '.');
    assert_eq!(c.session.idle_timeout, Duration::from_secs(1800));
}

/// Each store kind validates when its feature is compiled in, and is refused with file,
/// line and key when it is not (run with `--no-default-features` for the second half).
#[test]
fn store_kinds_need_their_cargo_feature() {
    let cases = [
        (
            "redis",
            "redis://127.0.0.1:6379/",
            "redis-store",
            cfg!(feature = "redis-store"),
        ),
        (
            "postgres",
            "postgres://u@h/db",
            "sql-store",
            cfg!(feature = "sql-store"),
        ),
        (
            "mysql",
            "mysql://u@h/db",
            "sql-store",
            cfg!(feature = "sql-store"),
        ),
        ("http", "http://127.0.0.1:1/rename", "", true),
    ];
    for (kind, url, feature, compiled_in) in cases {
        let yaml = format!(
                "listeners:\n  - bind: \"127.0.0.1:8080\"\npools:\n  - name: app\n    binder: rename\n    store:\n      kind: {kind}\n      url: \"{url}\"\n    nodes:\n      - {{ route: jvm1, address: \"127.0.0.1:18081\" }}\n"
            );
        let result = Config::from_yaml(&yaml, "stores.yaml");
        if compiled_in {
            let c = result.unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert!(c.pools[0].store.is_some(), "{kind}");
        } else {
            let e = result.expect_err(kind);
            assert_eq!(e.file, "stores.yaml", "{kind}");
            assert_eq!(e.key, "pools[0].store.kind", "{kind}");
            assert_eq!(e.line, Some(7), "{kind}");
            assert!(e.message.contains(feature), "{kind}: {e}");
            assert!(e.to_string().contains("stores.yaml"), "{kind}: {e}");
        }
    }
}

#[test]
fn example_balancer_yaml_is_valid() {
    let text = include_str!("../../balancer.yaml");
    Config::from_yaml(text, "balancer.yaml").unwrap();
}

/// Each invalid config: (yaml, expected line, expected key, message fragment).
#[test]
fn invalid_configs_name_file_line_and_key() {
    let node = |extra: &str| {
        format!(
                "listeners:\n  - bind: \"127.0.0.1:8080\"\npools:\n  - name: app\n    nodes:\n      - route: jvm1\n        address: \"127.0.0.1:1\"\n{extra}"
            )
    };
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (
            node("      - route: jvm1\n        address: \"127.0.0.1:2\"\n"),
            8,
            "pools[0].nodes[1].route",
            "duplicate route",
        ),
        (
            node("      - route: jvm.2\n        address: \"127.0.0.1:2\"\n"),
            8,
            "pools[0].nodes[1].route",
            "separator",
        ),
        (
            node("      - route: jvm2\n        address: \"127.0.0.1:2\"\n        redirect: jvm9\n"),
            10,
            "pools[0].nodes[1].redirect",
            "names no node",
        ),
        (
            node("      - route: jvm2\n        address: \"127.0.0.1:2\"\n        weight: 0\n"),
            10,
            "pools[0].nodes[1].weight",
            "at least 1",
        ),
        (
            node("      - route: jvm2\n        address: \"not an address\"\n"),
            9,
            "pools[0].nodes[1].address",
            "needs a port",
        ),
        (
            node("      - route: jvm2\n        address: \"127.0.0.1:2\"\n        colour: red\n"),
            10,
            "pools[0].nodes[1].colour",
            "unknown field `colour`",
        ),
        (
            "listeners:\n  - bind: \"127.0.0.1:8080\"\npools: []\n".to_string(),
            3,
            "pools",
            "at least one pool",
        ),
        (
            "listeners:\n  - bind: \"127.0.0.1:8080\"\n".to_string(),
            1,
            "pools",
            "at least one pool",
        ),
        (
            node("    failover:\n      recover_after: soon\n"),
            9,
            "pools[0].failover.recover_after",
            "invalid duration",
        ),
        (
            node("    binder: rename\n"),
            4,
            "pools[0].store",
            "needs a session store",
        ),
        (
            node("    binder: rename\n    store:\n      kind: memory\n      negative_ttl: 2m\n"),
            11,
            "pools[0].store.negative_ttl",
            "at most 1m",
        ),
    ];
    for (yaml, line, key, fragment) in cases {
        let err = Config::from_yaml(&yaml, "bad.yaml").unwrap_err();
        assert_eq!(err.file, "bad.yaml");
        assert_eq!(err.key, key, "{yaml}\n{err}");
        assert!(err.message.contains(fragment), "{err}");
        assert_eq!(err.line, Some(line), "{yaml}\n{err}");
        let shown = err.to_string();
        assert!(shown.starts_with("bad.yaml:"), "{shown}");
    }
}

/// Every duration key, written once with a value that overflows an `Instant` addition
/// (`1000000000y` parses as a `Duration`) and once at the bound: the first is an error
/// naming file, line and key, the second is accepted.
#[test]
fn every_duration_key_is_bounded() {
    // (key path, line of its value in the document below)
    let keys = [
        ("listeners[0].header_read_timeout", 3),
        ("session.idle_timeout", 5),
        ("pools[0].failover.recover_after", 9),
        ("pools[0].timeouts.connect", 11),
        ("pools[0].timeouts.response", 12),
        ("pools[0].timeouts.idle", 13),
        ("pools[0].store.timeout", 17),
        ("pools[0].health.interval", 20),
        ("pools[0].health.timeout", 21),
        ("cluster.heartbeat", 26),
        ("cluster.timeout", 27),
    ];
    let doc = |long: &str, value: &str| {
        let v = |key: &str| if key == long { value } else { "1s" };
        format!(
                "listeners:\n  - bind: \"127.0.0.1:8080\"\n    header_read_timeout: {}\nsession:\n  idle_timeout: {}\npools:\n  - name: app\n    failover:\n      recover_after: {}\n    timeouts:\n      connect: {}\n      response: {}\n      idle: {}\n    binder: rename\n    store:\n      kind: memory\n      timeout: {}\n    health:\n      path: /health\n      interval: {}\n      timeout: {}\n    nodes:\n      - {{ route: jvm1, address: \"127.0.0.1:1\" }}\ncluster:\n  name: g\n  heartbeat: {}\n  timeout: {}\n",
                v(keys[0].0), v(keys[1].0), v(keys[2].0), v(keys[3].0), v(keys[4].0),
                v(keys[5].0), v(keys[6].0), v(keys[7].0), v(keys[8].0), v(keys[9].0),
                v(keys[10].0),
            )
    };
    let all_fine = doc("", "");
    if cfg!(feature = "redis-store") {
        Config::from_yaml(&all_fine, "d.yaml").unwrap();
    }
    for (key, line) in keys {
        if key.starts_with("cluster") && !cfg!(feature = "redis-store") {
            continue;
        }
        let err = Config::from_yaml(&doc(key, "1000000000y"), "d.yaml").unwrap_err();
        assert_eq!((err.key.as_str(), err.line), (key, Some(line)), "{err}");
        assert!(err.message.contains("at most 1y"), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("d.yaml:{line}: key `{key}`")),
            "{err}"
        );
        // Just too long, and a number humantime itself refuses: errors too.
        for bad in ["1y 1s", "99999999999999999999999s"] {
            let err = Config::from_yaml(&doc(key, bad), "d.yaml").unwrap_err();
            assert_eq!(err.key, key, "{bad}: {err}");
        }
        if cfg!(feature = "redis-store") {
            Config::from_yaml(&doc(key, "1y"), "d.yaml")
                .unwrap_or_else(|e| panic!("{key}: 1y refused: {e}"));
        }
    }
    assert_eq!(duration::parse("1y").unwrap(), MAX_DURATION);
    assert_eq!(
        duration::parse(" 250ms ").unwrap(),
        Duration::from_millis(250)
    );
}

/// `pools[].timeouts.body_idle` and `listeners[].tunnel_idle_timeout`: their defaults, a
/// value taken, zero refused with file, line and key, and the 1y bound.
#[test]
fn body_idle_and_tunnel_idle_timeout_defaults_and_errors() {
    let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
    assert_eq!(c.pools[0].timeouts.body_idle, Duration::from_secs(60));
    assert_eq!(
        c.listeners[0].tunnel_idle_timeout,
        Duration::from_secs(3600)
    );
    let listener = |v: &str| {
        GOOD.replace(
            "  - bind: \"127.0.0.1:8080\"\n",
            &format!("  - bind: \"127.0.0.1:8080\"\n    tunnel_idle_timeout: {v}\n"),
        )
    };
    let pool = |v: &str| {
        GOOD.replace(
            "  - name: app\n",
            &format!("  - name: app\n    timeouts:\n      body_idle: {v}\n"),
        )
    };
    let c = Config::from_yaml(&listener("90s"), "t.yaml").unwrap();
    assert_eq!(c.listeners[0].tunnel_idle_timeout, Duration::from_secs(90));
    let c = Config::from_yaml(&pool("300ms"), "t.yaml").unwrap();
    assert_eq!(c.pools[0].timeouts.body_idle, Duration::from_millis(300));
    type Case<'a> = (String, &'a str, usize, &'a str);
    let cases: [Case; 5] = [
        (
            listener("0s"),
            "listeners[0].tunnel_idle_timeout",
            4,
            "must not be zero",
        ),
        (
            listener("2y"),
            "listeners[0].tunnel_idle_timeout",
            4,
            "at most 1y",
        ),
        (listener("soon"), "listeners[0].tunnel_idle_timeout", 4, ""),
        (
            pool("0ms"),
            "pools[0].timeouts.body_idle",
            7,
            "must not be zero",
        ),
        (
            pool("1000000000y"),
            "pools[0].timeouts.body_idle",
            7,
            "at most 1y",
        ),
    ];
    for (yaml, key, line, fragment) in cases {
        let err = Config::from_yaml(&yaml, "t.yaml").unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            (key, Some(line)),
            "{yaml}\n{err}"
        );
        assert!(err.message.contains(fragment), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("t.yaml:{line}: key `{key}`")),
            "{err}"
        );
    }
}

/// `listeners[].keepalive_timeout`: 75 s by default, a value taken on cleartext and TLS
/// listeners alike, zero and past 1y refused with file, line and key.
#[test]
fn keepalive_timeout_default_value_and_errors() {
    let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
    assert_eq!(c.listeners[0].keepalive_timeout, Duration::from_secs(75));
    let with = |v: &str| {
        GOOD.replace(
                "  - bind: \"127.0.0.1:8080\"\n",
                &format!(
                    "  - bind: \"127.0.0.1:8080\"\n    keepalive_timeout: {v}\n  - bind: \"127.0.0.1:8443\"\n    tls: {{ cert: c.pem, key: k.pem }}\n    keepalive_timeout: {v}\n"
                ),
            )
    };
    let c = Config::from_yaml(&with("5s"), "t.yaml").unwrap();
    assert_eq!(c.listeners[0].keepalive_timeout, Duration::from_secs(5));
    assert!(c.listeners[1].tls.is_some());
    assert_eq!(c.listeners[1].keepalive_timeout, Duration::from_secs(5));
    assert_eq!(
        c.listeners[0].header_read_timeout,
        Duration::from_secs(10),
        "a separate key"
    );
    for (v, fragment) in [("0s", "must not be zero"), ("2y", "at most 1y")] {
        let err = Config::from_yaml(&with(v), "t.yaml").unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("listeners[0].keepalive_timeout", Some(4)),
            "{v}: {err}"
        );
        assert!(err.message.contains(fragment), "{v}: {err}");
        assert!(
            err.to_string()
                .starts_with("t.yaml:4: key `listeners[0].keepalive_timeout`"),
            "{err}"
        );
    }
    let tls_zero = with("5s").replacen("keepalive_timeout: 5s", "keepalive_timeout: 0s", 2);
    let tls_zero = tls_zero.replacen("keepalive_timeout: 0s", "keepalive_timeout: 5s", 1);
    let err = Config::from_yaml(&tls_zero, "t.yaml").unwrap_err();
    assert_eq!(
        (err.key.as_str(), err.line),
        ("listeners[1].keepalive_timeout", Some(7)),
        "{tls_zero}\n{err}"
    );
}

#[test]
fn max_body_bytes_is_unlimited_by_default_and_never_zero() {
    let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
    assert_eq!(c.listeners[0].max_body_bytes, None);
    let with = |v: &str| {
        GOOD.replace(
            "  - bind: \"127.0.0.1:8080\"\n",
            &format!("  - bind: \"127.0.0.1:8080\"\n    max_body_bytes: {v}\n"),
        )
    };
    let c = Config::from_yaml(&with("10485760"), "t.yaml").unwrap();
    assert_eq!(c.listeners[0].max_body_bytes, Some(10 << 20));
    for (v, fragment) in [
        ("0", "omit the key"),
        ("-1", "invalid"),
        ("10MB", "invalid"),
    ] {
        let err = Config::from_yaml(&with(v), "t.yaml").unwrap_err();
        assert_eq!(err.key, "listeners[0].max_body_bytes", "{v}: {err}");
        assert_eq!(err.line, Some(4), "{v}: {err}");
        assert!(err.message.contains(fragment), "{v}: {err}");
    }
}

#[test]
fn trusted_proxies_parse_and_name_the_bad_entry() {
    let with = |list: &str| {
        GOOD.replace(
            "  - bind: \"127.0.0.1:8080\"\n",
            &format!("  - bind: \"127.0.0.1:8080\"\n    trusted_proxies: {list}\n"),
        )
    };
    let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
    assert!(c.listeners[0].trusted_proxies.is_empty(), "none by default");
    let c = Config::from_yaml(&with("[10.0.0.0/8, \"::1\", 192.0.2.7]"), "t.yaml").unwrap();
    let t = &c.listeners[0].trusted_proxies;
    assert_eq!(t.blocks().len(), 3);
    assert!(t.extends("10.9.9.9".parse().unwrap()) && !t.extends("11.0.0.1".parse().unwrap()));
    for (list, fragment) in [
        ("[10.0.0.0/8, 10.0.0.1/8]", "bits set"),
        ("[10.0.0.0/8, proxy.internal]", "not an IP address"),
        ("[\"::/200\"]", "0 to 128"),
    ] {
        let err = Config::from_yaml(&with(list), "t.yaml").unwrap_err();
        let i = if list.starts_with("[10.0.0.0/8,") {
            1
        } else {
            0
        };
        assert_eq!(
            err.key,
            format!("listeners[0].trusted_proxies[{i}]"),
            "{err}"
        );
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains(fragment), "{err}");
    }
}

#[test]
fn separators_and_routes_that_would_break_ids_are_refused() {
    for sep in [";", ",", "\"", "=", "/", "?", "#", "ab"] {
        let yaml = GOOD.replace(
            "listeners:",
            &format!("session: {{ separator: '{sep}' }}\nlisteners:"),
        );
        let err = Config::from_yaml(&yaml, "t.yaml").unwrap_err();
        assert_eq!(err.key, "session.separator", "{sep}: {err}");
    }
    for route in ["a/b", "a?b", "a=b", "a#b"] {
        let yaml = GOOD.replace("route: jvm2", &format!("route: \"{route}\""));
        let err = Config::from_yaml(&yaml, "t.yaml").unwrap_err();
        assert_eq!(err.key, "pools[0].nodes[1].route", "{route}: {err}");
    }
}

#[test]
fn node_addresses() {
    let ok = [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("[::1]:80", "[::1]:80"),
        ("node1:8080", "node1:8080"),
        ("app-1.example.com:9", "app-1.example.com:9"),
    ];
    for (text, shown) in ok {
        assert_eq!(NodeAddr::parse(text).unwrap().to_string(), shown);
    }
    assert!(matches!(
        NodeAddr::parse("node1:8080"),
        Ok(NodeAddr::Host { .. })
    ));
    for bad in [
        "node1",
        "node1:",
        "node1:99999",
        ":80",
        "no de:80",
        "a/b:80",
    ] {
        assert!(NodeAddr::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn locator_finds_nested_keys() {
    let text = "a:\n  b:\n    - x: 1\n      y: 2\n    - { x: 3, y: 4 }\nc: 5\n";
    let loc = KeyLocator::new(text);
    assert_eq!(loc.line("a"), Some(1));
    assert_eq!(loc.line("a.b"), Some(2));
    assert_eq!(loc.line("a.b[0].y"), Some(4));
    assert_eq!(loc.line("a.b[1].x"), Some(5));
    assert_eq!(loc.line("c"), Some(6));
    assert_eq!(loc.line("a.b[1].missing"), Some(5));
}

#[test]
fn admin_section_defaults_and_token_override() {
    let with_admin = format!("{GOOD}admin: {{}}\n");
    let c = Config::from_yaml(&with_admin, "t.yaml").unwrap();
    let admin = c.admin.clone().unwrap();
    assert_eq!(admin.bind, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(admin.token, None);
    let c = c.with_admin_token_override(Some("s3cret".into())).unwrap();
    assert_eq!(c.admin.unwrap().token.as_deref(), Some("s3cret"));
    // Empty override: the file's token (none here) stays; no admin section: nothing to set.
    let c = Config::from_yaml(&with_admin, "t.yaml")
        .unwrap()
        .with_admin_token_override(Some(" ".into()))
        .unwrap();
    assert_eq!(c.admin.unwrap().token, None);
    let c = Config::from_yaml(GOOD, "t.yaml")
        .unwrap()
        .with_admin_token_override(Some("x".into()))
        .unwrap();
    assert!(c.admin.is_none());
    let err = Config::from_yaml(&with_admin, "t.yaml")
        .unwrap()
        .with_admin_token_override(Some("two words".into()))
        .unwrap_err();
    assert_eq!(err.key, "admin.token", "{err}");
}

/// Off loopback (any address but 127/8, ::1 and their IPv4-mapped forms) the admin
/// listener needs a token, from the file or the environment; the error names
/// `admin.token` at the `admin:` section's line.
#[test]
fn admin_off_loopback_needs_a_token() {
    let with = |admin: &str| format!("{GOOD}admin:\n{admin}");
    for bind in [
        "0.0.0.0:9901",
        "10.1.2.3:9901",
        "[::]:9901",
        "[::ffff:10.0.0.1]:1",
    ] {
        let c = Config::from_yaml(&with(&format!("  bind: \"{bind}\"\n")), "t.yaml").unwrap();
        let err = c.clone().with_admin_token_override(None).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("admin.token", Some(9)),
            "{bind}: {err}"
        );
        assert!(err.message.contains("not on loopback"), "{err}");
        assert!(
            err.to_string().starts_with("t.yaml:9: key `admin.token`"),
            "{err}"
        );
        assert!(c.check_admin_exposure().is_err(), "{bind}");
        // A token from the environment is enough.
        let ok = c.with_admin_token_override(Some("s3cret".into())).unwrap();
        assert_eq!(ok.admin.unwrap().token.as_deref(), Some("s3cret"));
        // So is one in the file.
        let yaml = with(&format!("  bind: \"{bind}\"\n  token: t0k\n"));
        Config::from_yaml(&yaml, "t.yaml")
            .unwrap()
            .with_admin_token_override(None)
            .unwrap();
    }
    for bind in [
        "127.0.0.1:9901",
        "127.9.9.9:1",
        "[::1]:9901",
        "[::ffff:127.0.0.1]:1",
        "localhost:9",
    ] {
        let c = Config::from_yaml(&with(&format!("  bind: \"{bind}\"\n")), "t.yaml").unwrap();
        c.with_admin_token_override(None)
            .unwrap_or_else(|e| panic!("{bind}: {e}"));
    }
}

#[test]
fn admin_token_must_fit_a_header_and_port_zero_may_repeat() {
    let bad = format!("{GOOD}admin: {{ token: \"two words\" }}\n");
    let err = Config::from_yaml(&bad, "t.yaml").unwrap_err();
    assert_eq!(err.key, "admin.token", "{err}");
    let zeros = "listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\nadmin: { bind: \"127.0.0.1:0\" }\npools:\n  - name: app\n    nodes: [{ route: a, address: \"127.0.0.1:1\" }]\n";
    Config::from_yaml(zeros, "t.yaml").unwrap();
}

/// A config with `listener` and `pool` lines (indented as given) and two nodes, the second
/// with `node` keys: for the limit keys' tests.
fn limits_yaml(listener: &str, pool: &str, node: &str) -> String {
    format!(
            "listeners:\n  - bind: \"127.0.0.1:8080\"\n{listener}pools:\n  - name: app\n{pool}    nodes:\n      - route: jvm1\n        address: \"127.0.0.1:1\"\n      - route: jvm2\n        address: \"127.0.0.1:2\"\n{node}"
        )
}

#[test]
fn connection_limits_default_to_none_and_nodes_inherit_the_pool_default() {
    let c = Config::from_yaml(&limits_yaml("", "", ""), "t.yaml").unwrap();
    let p = &c.pools[0];
    assert_eq!(p.nodes[0].max_connections, None);
    assert_eq!(p.nodes[1].max_connections, None);
    assert_eq!(p.max_queue_per_node, 1000);
    assert_eq!(p.timeouts.queue, Duration::from_secs(1));

    let y = limits_yaml(
            "",
            "    max_connections_per_node: 50\n    max_queue_per_node: 7\n    timeouts:\n      queue: 250ms\n",
            "        max_connections: 3\n",
        );
    let c = Config::from_yaml(&y, "t.yaml").unwrap();
    let p = &c.pools[0];
    assert_eq!(p.nodes[0].max_connections, Some(50), "inherited");
    assert_eq!(p.nodes[1].max_connections, Some(3), "the node's own wins");
    assert_eq!(p.max_queue_per_node, 7);
    assert_eq!(p.timeouts.queue, Duration::from_millis(250));
}

#[test]
fn h2_limits_default_and_follow_max_header_bytes() {
    let c = Config::from_yaml(&limits_yaml("", "", ""), "t.yaml").unwrap();
    let h2 = c.listeners[0].h2;
    assert_eq!(h2.max_concurrent_streams, 100);
    assert_eq!(h2.max_header_list_size, 16 * 1024);
    assert_eq!(h2.max_reset_streams, 100);

    let y = limits_yaml("    max_header_bytes: 32768\n", "", "");
    let c = Config::from_yaml(&y, "t.yaml").unwrap();
    assert_eq!(c.listeners[0].h2.max_header_list_size, 32768);

    let y = limits_yaml(
            "    h2:\n      max_concurrent_streams: 7\n      max_header_list_size: 4096\n      max_reset_streams: 9\n",
            "",
            "",
        );
    let h2 = Config::from_yaml(&y, "t.yaml").unwrap().listeners[0].h2;
    assert_eq!(
        (
            h2.max_concurrent_streams,
            h2.max_header_list_size,
            h2.max_reset_streams
        ),
        (7, 4096, 9)
    );
}

#[test]
fn zero_and_absurd_limits_name_file_line_and_key() {
    let node_key = |v: &str| format!("        max_connections: {v}\n");
    // (yaml, key, line, message fragment)
    let cases: Vec<(String, &str, usize, &str)> = vec![
        (
            limits_yaml("", "", &node_key("0")),
            "pools[0].nodes[1].max_connections",
            10,
            "at least 1",
        ),
        (
            limits_yaml("", "", &node_key("2000000")),
            "pools[0].nodes[1].max_connections",
            10,
            "at most 1000000",
        ),
        (
            limits_yaml("", "    max_connections_per_node: 0\n", ""),
            "pools[0].max_connections_per_node",
            5,
            "at least 1",
        ),
        (
            limits_yaml("", "    max_queue_per_node: 0\n", ""),
            "pools[0].max_queue_per_node",
            5,
            "at least 1",
        ),
        (
            limits_yaml("", "    timeouts:\n      queue: 0s\n", ""),
            "pools[0].timeouts.queue",
            6,
            "must not be zero",
        ),
        (
            limits_yaml("", "    timeouts:\n      queue: 2y\n", ""),
            "pools[0].timeouts.queue",
            6,
            "at most",
        ),
        (
            limits_yaml("    h2:\n      max_concurrent_streams: 0\n", "", ""),
            "listeners[0].h2.max_concurrent_streams",
            4,
            "between 1 and 10000",
        ),
        (
            limits_yaml("    h2:\n      max_header_list_size: 0\n", "", ""),
            "listeners[0].h2.max_header_list_size",
            4,
            "between 1024",
        ),
        (
            limits_yaml("    h2:\n      max_reset_streams: 0\n", "", ""),
            "listeners[0].h2.max_reset_streams",
            4,
            "between 1 and",
        ),
        (
            limits_yaml("    h2:\n      max_streams: 5\n", "", ""),
            "listeners[0].h2.max_streams",
            4,
            "unknown field",
        ),
    ];
    for (yaml, key, line, fragment) in cases {
        let err = Config::from_yaml(&yaml, "bad.yaml").unwrap_err();
        assert_eq!(err.file, "bad.yaml");
        assert_eq!(err.key, key, "{yaml}\n{err}");
        assert!(err.message.contains(fragment), "{err}");
        assert_eq!(err.line, Some(line), "{yaml}\n{err}");
    }
}

const AJP_POOL: &str = r#"
listeners:
  - bind: "127.0.0.1:8080"
pools:
  - name: app
    protocol: ajp
    ajp:
      secret: "s3cret"
      packet_size: 16384
      ping_after: 5s
    health:
      interval: 2s
    nodes:
      - route: jvm1
        address: 127.0.0.1:8009
      - route: jvm2
        address: 127.0.0.1:8010
        ajp: { secret_env: NODE2_SECRET, packet_size: 65536 }
      - route: web
        address: 127.0.0.1:8080
        protocol: http
"#;

#[test]
fn ajp_pools_merge_node_blocks_over_the_pool() {
    use crate::config::{HealthKind, NodeProtocol};
    let c = Config::from_yaml(AJP_POOL, "t.yaml")
        .unwrap_err_or_health_path()
        .with_ajp_secrets(|var| (var == "NODE2_SECRET").then(|| "from-env".to_string()))
        .unwrap();
    let nodes = &c.pools[0].nodes;
    let a1 = nodes[0].ajp.as_ref().unwrap();
    assert_eq!(nodes[0].protocol, NodeProtocol::Ajp);
    assert_eq!(
        (a1.secret.as_deref(), a1.packet_size),
        (Some("s3cret"), 16384)
    );
    assert_eq!(a1.ping_after, Duration::from_secs(5));
    let a2 = nodes[1].ajp.as_ref().unwrap();
    assert_eq!(
        (a2.secret.as_deref(), a2.packet_size),
        (Some("from-env"), 65536)
    );
    assert_eq!(
        a2.ping_after,
        Duration::from_secs(5),
        "inherited from the pool"
    );
    assert_eq!(
        (nodes[2].protocol, nodes[2].ajp.is_none()),
        (NodeProtocol::Http, true)
    );
    let h = c.pools[0].health.as_ref().unwrap();
    assert_eq!(h.kind, None);
    assert_eq!(h.kind_for(NodeProtocol::Ajp), HealthKind::Cping);
    assert_eq!(h.kind_for(NodeProtocol::Http), HealthKind::Http);
}

/// The AJP pool above needs a health path for its http node; this adds it.
trait WithHealthPath {
    fn unwrap_err_or_health_path(self) -> Config;
}

impl WithHealthPath for Result<Config, ConfigError> {
    fn unwrap_err_or_health_path(self) -> Config {
        let err = self.unwrap_err();
        assert_eq!(err.key, "pools[0].health.path", "{err}");
        assert_eq!(err.line, Some(11), "{err}");
        Config::from_yaml(
            &AJP_POOL.replace("      interval: 2s", "      interval: 2s\n      path: /ok"),
            "t.yaml",
        )
        .unwrap()
    }
}

#[test]
fn ajp_defaults_and_plain_http_pools() {
    let only_ajp = "listeners:\n  - bind: \"127.0.0.1:8080\"\npools:\n  - name: app\n    protocol: ajp\n    ajp: { secret_required: false }\n    health: {}\n    nodes:\n      - { route: jvm1, address: \"127.0.0.1:8009\" }\n";
    let c = Config::from_yaml(only_ajp, "t.yaml").unwrap();
    let a = c.pools[0].nodes[0].ajp.as_ref().unwrap();
    assert_eq!(a.secret, None);
    assert_eq!(a.packet_size, crate::config::DEFAULT_AJP_PACKET_SIZE);
    assert_eq!(a.ping_after, crate::config::DEFAULT_AJP_PING_AFTER);
    assert_eq!(
        c.pools[0].health.as_ref().unwrap().path,
        "/",
        "cping needs no path"
    );
    let plain = Config::from_yaml(GOOD, "t.yaml").unwrap();
    assert!(plain.pools[0].nodes.iter().all(|n| n.ajp.is_none()));
}

#[test]
fn ajp_errors_name_file_line_and_key() {
    let pool = |pool_keys: &str, node_keys: &str| {
        format!(
            "listeners:\n  - bind: \"127.0.0.1:8080\"\npools:\n  - name: app\n{pool_keys}    nodes:\n      - route: jvm1\n        address: 127.0.0.1:8009\n{node_keys}"
        )
    };
    let cases = [
        (
            "    protocol: ajp\n",
            "",
            "pools[0].ajp.secret",
            4,
            "CVE-2020-1938",
        ),
        (
            "",
            "        protocol: ajp\n",
            "pools[0].nodes[0].ajp.secret",
            6,
            "secret_required: false",
        ),
        (
            "    protocol: ajp\n    ajp:\n      secret: a\n      secret_env: B\n",
            "",
            "pools[0].ajp.secret_env",
            8,
            "not both",
        ),
        (
            "    protocol: ajp\n    ajp:\n      secret: \"\"\n",
            "",
            "pools[0].ajp.secret",
            7,
            "1 to 1024",
        ),
        (
            "    protocol: ajp\n    ajp:\n      secret_env: \"1BAD\"\n",
            "",
            "pools[0].ajp.secret_env",
            7,
            "environment variable name",
        ),
        (
            "    protocol: ajp\n    ajp:\n      secret: a\n      packet_size: 4096\n",
            "",
            "pools[0].ajp.packet_size",
            8,
            "packetSize",
        ),
        (
            "    protocol: ajp\n    ajp:\n      secret: a\n",
            "        ajp: { packet_size: 70000 }\n",
            "pools[0].nodes[0].ajp.packet_size",
            11,
            "65536",
        ),
        (
            "    protocol: ajp\n    ajp:\n      secret: a\n      ping_after: 0s\n",
            "",
            "pools[0].ajp.ping_after",
            8,
            "zero",
        ),
        (
            "    protocol: ajp\n    ajp:\n      secret: a\n      ping_after: soon\n",
            "",
            "pools[0].ajp.ping_after",
            8,
            "invalid duration",
        ),
        (
            "    protocol: ajp\n    ajp:\n      secret: a\n      pingafter: 1s\n",
            "",
            "pools[0].ajp.pingafter",
            8,
            "unknown field",
        ),
        (
            "    protocol: spdy\n",
            "",
            "pools[0].protocol",
            5,
            "unknown variant",
        ),
        ("    ajp: { secret: a }\n", "", "pools[0].ajp", 5, "no node"),
        (
            "",
            "        ajp: { secret: a }\n",
            "pools[0].nodes[0].ajp",
            8,
            "speaks http",
        ),
        (
            "    health: { kind: cping }\n",
            "",
            "pools[0].health.kind",
            5,
            "AJP nodes only",
        ),
        (
            "    health: { kind: http }\n    protocol: ajp\n    ajp: { secret: a }\n",
            "",
            "pools[0].health.path",
            5,
            "required",
        ),
        (
            "    health: { interval: 1s }\n",
            "",
            "pools[0].health.path",
            5,
            "required",
        ),
    ];
    for (pool_keys, node_keys, key, line, msg) in cases {
        let text = pool(pool_keys, node_keys);
        let err = Config::from_yaml(&text, "t.yaml").unwrap_err();
        assert_eq!(err.key, key, "{text}\n{err}");
        assert_eq!(err.line, Some(line), "{text}\n{err}");
        assert!(err.message.contains(msg), "{text}\n{err}");
        assert_eq!(err.file, "t.yaml");
    }
}

#[test]
fn ajp_secret_env_must_be_set() {
    let text = "listeners:\n  - bind: \"127.0.0.1:8080\"\npools:\n  - name: app\n    protocol: ajp\n    ajp:\n      secret_env: AJP_SECRET\n    nodes:\n      - { route: jvm1, address: \"127.0.0.1:8009\" }\n";
    let c = Config::from_yaml(text, "t.yaml").unwrap();
    for unset in [None, Some(String::new())] {
        let err = c.clone().with_ajp_secrets(|_| unset.clone()).unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("pools[0].ajp.secret_env", Some(7)),
            "{err}"
        );
        assert!(err.message.contains("AJP_SECRET is not set"), "{err}");
    }
    let ok = c
        .with_ajp_secrets(|v| (v == "AJP_SECRET").then(|| "x".into()))
        .unwrap();
    assert_eq!(
        ok.pools[0].nodes[0].ajp.as_ref().unwrap().secret.as_deref(),
        Some("x")
    );
}

#[test]
fn listener_client_certificates() {
    let tls = |keys: &str| {
        format!("listeners:\n  - bind: \"127.0.0.1:8443\"\n    tls:\n      cert: c.pem\n      key: k.pem\n{keys}pools:\n  - name: app\n    nodes:\n      - {{ route: jvm1, address: \"127.0.0.1:1\" }}\n")
    };
    let auth = |keys: &str| {
        Config::from_yaml(&tls(keys), "t.yaml").unwrap().listeners[0]
            .tls
            .clone()
            .unwrap()
            .client_auth
    };
    assert_eq!(auth(""), None);
    let required = auth("      client_ca: ca.pem\n").unwrap();
    assert_eq!(
        (required.ca.to_str(), required.required),
        (Some("ca.pem"), true)
    );
    assert!(
        !auth("      client_ca: ca.pem\n      client_auth: optional\n")
            .unwrap()
            .required
    );
    assert!(
        auth("      client_ca: ca.pem\n      client_auth: required\n")
            .unwrap()
            .required
    );
    let err = Config::from_yaml(&tls("      client_auth: required\n"), "t.yaml").unwrap_err();
    assert_eq!(
        (err.key.as_str(), err.line),
        ("listeners[0].tls.client_auth", Some(6)),
        "{err}"
    );
    let err = Config::from_yaml(
        &tls("      client_ca: ca.pem\n      client_auth: maybe\n"),
        "t.yaml",
    )
    .unwrap_err();
    assert_eq!(err.key, "listeners[0].tls.client_auth", "{err}");
}

#[test]
fn discovery_defaults() {
    let pool = |block: &str| {
        format!("listeners: [{{ bind: \"127.0.0.1:1\" }}]\npools:\n  - name: app\n    discovery:\n{block}")
    };
    let c = Config::from_yaml(
        &pool("      srv: _http._tcp.tomcat.shop.svc.cluster.local\n"),
        "t.yaml",
    )
    .unwrap();
    let d = c.pools[0].discovery.as_ref().unwrap();
    assert!(c.pools[0].nodes.is_empty());
    assert_eq!(
        d.source,
        crate::config::DiscoverySource::Srv("_http._tcp.tomcat.shop.svc.cluster.local".into())
    );
    assert_eq!((d.resolver, d.route.as_str()), (None, "first_label"));
    assert_eq!(
        (
            d.min_interval,
            d.max_interval,
            d.drain_timeout,
            d.empty_grace
        ),
        (
            Duration::from_secs(1),
            Duration::from_secs(30),
            Duration::from_secs(600),
            Duration::from_secs(30)
        )
    );
    assert_eq!((d.weight, d.domain.as_str()), (1, ""));
    let c = Config::from_yaml(
        &pool("      host: node\n      port: 8080\n      resolver: 127.0.0.11\n      route: '^(web-\\d+)\\.'\n"),
        "t.yaml",
    )
    .unwrap();
    let d = c.pools[0].discovery.as_ref().unwrap();
    assert_eq!(
        d.source,
        crate::config::DiscoverySource::Host {
            name: "node".into(),
            port: 8080
        }
    );
    assert_eq!(d.resolver, Some("127.0.0.11:53".parse().unwrap()));
}

#[test]
fn discovery_errors_name_file_line_and_key() {
    let pool = |block: &str| {
        format!("listeners: [{{ bind: \"127.0.0.1:1\" }}]\npools:\n  - name: app\n    discovery:\n{block}")
    };
    // (block, key, line, part of the message)
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "      srv: a.b\n      host: c\n      port: 1\n",
            "pools[0].discovery.host",
            6,
            "not both",
        ),
        (
            "      srv: a.b\n      port: 80\n",
            "pools[0].discovery.port",
            6,
            "goes with host",
        ),
        (
            "      host: a.b\n",
            "pools[0].discovery.port",
            4,
            "host needs a port",
        ),
        (
            "      host: a.b\n      port: 0\n",
            "pools[0].discovery.port",
            6,
            "1 to 65535",
        ),
        ("      weight: 2\n", "pools[0].discovery", 4, "needs srv"),
        (
            "      srv: \"a..b\"\n",
            "pools[0].discovery.srv",
            5,
            "not a DNS name",
        ),
        (
            "      srv: a.b\n      resolver: dns\n",
            "pools[0].discovery.resolver",
            6,
            "not ip:port",
        ),
        (
            "      srv: a.b\n      route: '^\\w+$'\n",
            "pools[0].discovery.route",
            6,
            "one capture group",
        ),
        (
            "      srv: a.b\n      min_interval: 10s\n      max_interval: 5s\n",
            "pools[0].discovery.max_interval",
            7,
            "at least min_interval",
        ),
        (
            "      srv: a.b\n      drain_timeout: 0s\n",
            "pools[0].discovery.drain_timeout",
            6,
            "more than 0",
        ),
        (
            "      srv: a.b\n      weight: 0\n",
            "pools[0].discovery.weight",
            6,
            "at least 1",
        ),
        (
            "      srv: a.b\n      ttl: 5\n",
            "pools[0].discovery.ttl",
            6,
            "unknown field",
        ),
    ];
    for (block, key, line, part) in cases {
        let e = Config::from_yaml(&pool(block), "t.yaml").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.key.as_str(), e.line),
            ("t.yaml", *key, Some(*line)),
            "{block}: {e}"
        );
        assert!(e.message.contains(part), "{block}: {e}");
    }
    // Neither nodes nor discovery.
    let e = Config::from_yaml(
        "listeners: [{ bind: \"127.0.0.1:1\" }]\npools:\n  - name: app\n",
        "t.yaml",
    )
    .unwrap_err();
    assert!(e.message.contains("or a discovery block"), "{e}");
}

/// `listeners[].protocols`: both by default; `[h2]` or `[http1]` alone, in their ALPN offer;
/// an empty list, a repeat and an unknown protocol refused with file, line and key.
#[test]
fn listener_protocols_default_values_and_errors() {
    let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
    let both = crate::config::Protocols {
        http1: true,
        h2: true,
    };
    assert_eq!(c.listeners[0].protocols, both);
    assert_eq!(both.alpn(), vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    let listener = |v: &str| {
        GOOD.replace(
            "  - bind: \"127.0.0.1:8080\"\n",
            &format!("  - bind: \"127.0.0.1:8080\"\n    protocols: {v}\n"),
        )
    };
    // (value, http1, h2, ALPN offer)
    let good: [(&str, bool, bool, Vec<&[u8]>); 4] = [
        ("[h2]", false, true, vec![b"h2"]),
        ("[http1]", true, false, vec![b"http/1.1"]),
        ("[http1, h2]", true, true, vec![b"h2", b"http/1.1"]),
        ("[h2, http1]", true, true, vec![b"h2", b"http/1.1"]),
    ];
    for (v, http1, h2, alpn) in good {
        let c = Config::from_yaml(&listener(v), "t.yaml").unwrap();
        let p = c.listeners[0].protocols;
        assert_eq!((p.http1, p.h2), (http1, h2), "{v}");
        let want: Vec<Vec<u8>> = alpn.iter().map(|a| a.to_vec()).collect();
        assert_eq!(p.alpn(), want, "{v}");
    }
    let bad = [
        ("[]", "needs http1, h2 or both"),
        ("[h2, h2]", "h2 is listed twice"),
        ("[http1, http1]", "http1 is listed twice"),
        ("[http3]", "unknown variant `http3`"),
        ("h2", ""),
    ];
    for (v, fragment) in bad {
        let err = Config::from_yaml(&listener(v), "t.yaml").unwrap_err();
        assert!(err.key.starts_with("listeners[0].protocols"), "{v}: {err}");
        assert_eq!(err.line, Some(4), "{v}: {err}");
        assert!(err.message.contains(fragment), "{v}: {err}");
        assert!(
            err.to_string()
                .starts_with("t.yaml:4: key `listeners[0].protocols"),
            "{err}"
        );
    }
}
