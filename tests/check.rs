//! `stickyroute check`: accepts the example `balancer.yaml`, rejects each invalid config with
//! file, line and key in the message and exit code 1.

use std::process::Command;

fn check(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run stickyroute check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn accepts_the_example_config() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("balancer.yaml");
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("ok") && stdout.contains("app") && stdout.contains("jvm1"),
        "{stdout}"
    );
}

const HEAD: &str = "listeners:\n  - bind: \"127.0.0.1:8080\"\npools:\n  - name: app\n    nodes:\n      - route: jvm1\n        address: \"127.0.0.1:18081\"\n";

#[test]
fn rejects_invalid_configs_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    // (file body, line, key, message fragment)
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (
            format!("{HEAD}      - route: jvm1\n        address: \"127.0.0.1:2\"\n"),
            8,
            "pools[0].nodes[1].route",
            "duplicate route",
        ),
        (
            format!("{HEAD}      - route: a.b\n        address: \"127.0.0.1:2\"\n"),
            8,
            "pools[0].nodes[1].route",
            "separator",
        ),
        (
            format!("{HEAD}        redirect: nowhere\n"),
            8,
            "pools[0].nodes[0].redirect",
            "names no node",
        ),
        (
            format!("{HEAD}        weight: 0\n"),
            8,
            "pools[0].nodes[0].weight",
            "at least 1",
        ),
        (
            HEAD.replace("127.0.0.1:18081", "127.0.0.1:notaport"),
            7,
            "pools[0].nodes[0].address",
            "invalid address",
        ),
        (
            "listeners:\n  - bind: \"127.0.0.1:8080\"\npools: []\n".to_string(),
            3,
            "pools",
            "at least one pool",
        ),
        (
            // Parses as a `Duration` but overflows any `Instant` it is added to.
            HEAD.replace(
                "127.0.0.1:8080\"\n",
                "127.0.0.1:8080\"\n    header_read_timeout: 1000000000y\n",
            ),
            3,
            "listeners[0].header_read_timeout",
            "at most 1y",
        ),
        (
            format!("{HEAD}    timeouts: {{ response: 2y }}\n"),
            8,
            "pools[0].timeouts.response",
            "too long",
        ),
        (
            format!("{HEAD}        colour: red\n"),
            8,
            "pools[0].nodes[0].colour",
            "unknown field",
        ),
    ];
    for (i, (body, line, key, fragment)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&path, body).unwrap();
        let (code, _, stderr) = check(&path);
        assert_eq!(code, 1, "case {i} accepted:\n{body}");
        let want = format!("{}:{line}: key `{key}`", path.display());
        assert!(
            stderr.contains(&want),
            "case {i}: wanted {want:?} in {stderr:?}"
        );
        assert!(
            stderr.contains(fragment),
            "case {i}: wanted {fragment:?} in {stderr:?}"
        );
    }
    let (code, _, stderr) = check(&dir.path().join("missing.yaml"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("missing.yaml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn accepts_the_compose_config_whose_nodes_are_service_names() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/balancer.compose.yaml");
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("jvm1"), "{stdout}");
}

/// `serve` refuses an overlong duration before it binds anything (exit 64, the key named),
/// instead of starting and overflowing a deadline on the first connection.
#[test]
fn serve_refuses_an_overlong_duration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.yaml");
    let body = HEAD.replace("127.0.0.1:8080", "127.0.0.1:0").replace(
        "127.0.0.1:0\"\n",
        "127.0.0.1:0\"\n    header_read_timeout: 1000000000y\n",
    );
    std::fs::write(&path, body).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stickyroute"))
        .args(["serve", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve started with header_read_timeout: 1000000000y");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(":3: key `listeners[0].header_read_timeout`")
            && stderr.contains("at most 1y"),
        "{stderr}"
    );
}

/// An admin listener off loopback without a token is refused, naming `admin.token`; a token
/// from `STICKYROUTE_ADMIN_TOKEN` is enough, as for `serve`.
#[test]
fn refuses_an_admin_listener_off_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.yaml");
    std::fs::write(&path, format!("{HEAD}admin:\n  bind: \"0.0.0.0:9901\"\n")).unwrap();
    let run = |token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stickyroute"));
        cmd.args(["check", "-c"]).arg(&path);
        cmd.env_remove("STICKYROUTE_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("STICKYROUTE_ADMIN_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:8: key `admin.token`", path.display()))
            && stderr.contains("not on loopback"),
        "{stderr}"
    );
    let (code, stderr) = run(Some("s3cret"));
    assert_eq!(code, Some(0), "{stderr}");
    // On loopback no token is needed.
    std::fs::write(&path, format!("{HEAD}admin:\n  bind: \"127.0.0.1:9901\"\n")).unwrap();
    assert_eq!(run(None).0, Some(0));
}
