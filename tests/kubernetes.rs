//! The Kubernetes manifests of `deploy/kubernetes/`, checked without a cluster:
//!
//! - every manifest validates against the Kubernetes API schemas, offline, with
//!   `kubernetes-validate` from PyPI (`.ci/run` installs it; it bundles the schemas), in strict
//!   mode (an unknown field is an error), and a manifest with a misspelt field fails it;
//! - the balancer's `balancer.yaml`, embedded in its ConfigMap, passes the validation of
//!   `stickyroute check` with the admin token of its Secret, as the pod runs it;
//! - the manifests agree with each other: the SRV name the balancer looks up is the headless
//!   Service's, the Service publishes ready pods only, the probes hit the admin listener's
//!   `/live` and `/ready`, the drain settings fit the pods' grace periods, and the copies of
//!   `deploy/tomcat/` in the ConfigMaps equal their files.
//!
//! Without `kubernetes-validate` the schema test prints `SKIPPED` and passes; under
//! `STICKYROUTE_REQUIRE_SERVICES=1` (CI) it fails, as a missing service does.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_norway::Value;
use stickyroute::config::Config;

const DIR: &str = "deploy/kubernetes";
const VALIDATOR: &str = "kubernetes-validate";
/// The Kubernetes version the manifests are validated against: the oldest they are meant for
/// (PodDisruptionBudget `policy/v1`, StatefulSet rolling updates as used here).
const KUBERNETES_VERSION: &str = "1.30.0";
const BALANCER_FILE: &str = "40-stickyroute.yaml";
const TOMCAT_FILE: &str = "30-tomcat.yaml";

use common::{read_repo_file as read, repo_root as root};

/// The manifest files, in the order `kubectl apply -f deploy/kubernetes/` takes them.
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(DIR))
        .unwrap_or_else(|e| panic!("{DIR}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Every document of a multi-document YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every resource of every manifest.
fn all_resources() -> Vec<Value> {
    manifest_files().iter().flat_map(|p| documents(p)).collect()
}

/// The resource of `kind` named `name`.
fn resource<'a>(all: &'a [Value], kind: &str, name: &str) -> &'a Value {
    all.iter()
        .find(|r| r["kind"].as_str() == Some(kind) && r["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {DIR}"))
}

fn text<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

fn int(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what}: expected a number, got {v:?}"))
}

/// The first container of a workload's pod template.
fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// The seconds of a container's `preStop: exec: ["sleep", N]`.
fn pre_stop_sleep(c: &Value, what: &str) -> u64 {
    let cmd: Vec<&str> = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{what}: no preStop exec command"))
        .iter()
        .map(|a| text(a, "preStop argument"))
        .collect();
    match cmd.as_slice() {
        ["sleep", secs] => secs
            .parse()
            .unwrap_or_else(|e| panic!("{what}: preStop sleep {secs:?}: {e}")),
        other => panic!("{what}: preStop should be a sleep, is {other:?}"),
    }
}

fn seconds(s: &str) -> u64 {
    stickyroute::config::duration::parse(s)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .as_secs()
}

/// Whether the validator runs. Without it the test skips loudly, or fails under
/// `STICKYROUTE_REQUIRE_SERVICES=1` (CI).
fn have_validator(test: &str) -> bool {
    let runs = Command::new(VALIDATOR)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        if common::services::services_required() {
            panic!("{test} needs {VALIDATOR} (pip install {VALIDATOR}; STICKYROUTE_REQUIRE_SERVICES=1)");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test} needs {VALIDATOR} (pip install {VALIDATOR})"
        );
    }
    runs
}

/// Runs the validator on `files`: (success, its output).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(VALIDATOR)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{VALIDATOR}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let test = "manifests_validate_against_the_kubernetes_schemas";
    if !have_validator(test) {
        return;
    }
    let files = manifest_files();
    let (ok, out) = validate(&files);
    assert!(ok, "{VALIDATOR} refused a manifest:\n{out}");
    // One `passed` line per resource: no document went unchecked.
    let resources = all_resources().len();
    let passed = out.lines().filter(|l| l.contains(" passed ")).count();
    assert_eq!(passed, resources, "{out}");
    assert!(resources >= 17, "{resources} resources");

    // The same validation refuses a misspelt field: the check above can fail.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let service = read(&format!("{DIR}/{TOMCAT_FILE}"))
        .replace("publishNotReadyAddresses:", "publishNotReadyAdresses:");
    std::fs::write(&bad, service).unwrap();
    let (ok, out) = validate(&[bad]);
    assert!(!ok, "a misspelt field passed:\n{out}");
    assert!(out.contains("publishNotReadyAdresses"), "{out}");
}

/// The balancer's config as its pod runs it: the ConfigMap's `balancer.yaml` with the token of
/// the Secret as `STICKYROUTE_ADMIN_TOKEN`, through `stickyroute check`'s validation.
#[test]
fn embedded_balancer_config_passes_check() {
    let all = all_resources();
    let cm = resource(&all, "ConfigMap", "stickyroute-config");
    let yaml = text(&cm["data"]["balancer.yaml"], "ConfigMap balancer.yaml");
    let secret = resource(&all, "Secret", "stickyroute-admin");
    let token = text(&secret["stringData"]["token"], "Secret token");
    let name = format!("{DIR}/{BALANCER_FILE} (ConfigMap stickyroute-config, balancer.yaml)");
    let cfg = Config::from_yaml(yaml, &name)
        .and_then(|c| c.with_admin_token_override(Some(token.to_owned())))
        .and_then(|c| c.with_cluster_redis_override(None))
        .unwrap_or_else(|e| panic!("{e}"));
    let summary = cfg.summary();
    assert!(summary.contains("shop"), "{summary}");
    // The token comes from the Secret only: without it the file is refused, naming the key.
    let refused = Config::from_yaml(yaml, &name)
        .and_then(|c| c.with_admin_token_override(None))
        .and_then(|c| c.with_cluster_redis_override(None));
    let err = match refused {
        Ok(_) => panic!("an admin listener on 0.0.0.0 without a token was accepted"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("admin.token"), "{err}");
}

/// The SRV name the balancer looks up is the headless Service's, which publishes ready pods
/// only; the Tomcat pods take their pod name as jvmRoute; the cluster's Redis is the Service.
#[test]
fn balancer_discovers_the_tomcat_service() {
    let all = all_resources();
    let cm = resource(&all, "ConfigMap", "stickyroute-config");
    let balancer: Value =
        serde_norway::from_str(text(&cm["data"]["balancer.yaml"], "balancer.yaml")).unwrap();
    let pool = &balancer["pools"][0];
    assert!(pool["nodes"].is_null(), "the pool lists nodes: {pool:?}");
    let discovery = &pool["discovery"];
    let srv = text(&discovery["srv"], "discovery.srv");

    let svc = resource(&all, "Service", "tomcat");
    let ns = text(&svc["metadata"]["namespace"], "Service namespace");
    assert_eq!(svc["spec"]["clusterIP"].as_str(), Some("None"), "headless");
    assert_eq!(
        svc["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(false)
    );
    let port = &svc["spec"]["ports"][0];
    let port_name = text(&port["name"], "Service port name");
    let proto = port["protocol"]
        .as_str()
        .unwrap_or("TCP")
        .to_ascii_lowercase();
    assert_eq!(
        srv,
        format!("_{port_name}._{proto}.tomcat.{ns}.svc.cluster.local"),
        "discovery.srv must be the headless Service's SRV name"
    );

    let sts = resource(&all, "StatefulSet", "tomcat");
    assert_eq!(sts["spec"]["serviceName"].as_str(), Some("tomcat"));
    let tomcat = container(sts);
    let env = tomcat["env"].as_sequence().expect("Tomcat env");
    let pod_name = env
        .iter()
        .find(|e| e["name"].as_str() == Some("POD_NAME"))
        .expect("POD_NAME in the Tomcat env");
    assert_eq!(
        pod_name["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.name")
    );
    let opts = env
        .iter()
        .find(|e| e["name"].as_str() == Some("CATALINA_OPTS"))
        .expect("CATALINA_OPTS");
    assert!(
        text(&opts["value"], "CATALINA_OPTS").contains("-Djvm.route=$(POD_NAME)"),
        "{opts:?}"
    );
    // The first label of tomcat-N.tomcat.<ns>.svc.cluster.local is the pod name, the jvmRoute.
    assert_eq!(
        discovery["route"].as_str().unwrap_or("first_label"),
        "first_label"
    );
    let conf = resource(&all, "ConfigMap", "tomcat-conf");
    assert!(text(&conf["data"]["server.xml"], "server.xml").contains("jvmRoute=\"${jvm.route}\""));
    // Health checks and readiness look at the same page.
    let ready_path = text(
        &tomcat["readinessProbe"]["httpGet"]["path"],
        "Tomcat readiness path",
    );
    assert_eq!(pool["health"]["path"].as_str(), Some(ready_path));

    let redis = text(&balancer["cluster"]["redis"], "cluster.redis");
    let redis_svc = resource(&all, "Service", "redis");
    let redis_port = int(&redis_svc["spec"]["ports"][0]["port"], "Redis port");
    assert_eq!(redis, format!("redis://redis:{redis_port}/"));
}

/// Probes on the admin listener, ports that match the config, and drain settings that fit the
/// grace periods.
#[test]
fn probes_and_grace_periods_fit_the_drain() {
    let all = all_resources();
    let cm = resource(&all, "ConfigMap", "stickyroute-config");
    let balancer: Value =
        serde_norway::from_str(text(&cm["data"]["balancer.yaml"], "balancer.yaml")).unwrap();
    let deploy = resource(&all, "Deployment", "stickyroute");
    assert_eq!(int(&deploy["spec"]["replicas"], "replicas"), 2);
    let lb = container(deploy);
    let port_of = |name: &str| {
        lb["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .map(|p| int(&p["containerPort"], name))
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    let bind_port = |v: &Value| -> u64 {
        let bind: std::net::SocketAddr = text(v, "bind").parse().unwrap();
        u64::from(bind.port())
    };
    assert_eq!(bind_port(&balancer["admin"]["bind"]), port_of("admin"));
    assert_eq!(
        bind_port(&balancer["listeners"][0]["bind"]),
        port_of("http")
    );
    for (probe, path) in [("livenessProbe", "/live"), ("readinessProbe", "/ready")] {
        assert_eq!(lb[probe]["httpGet"]["path"].as_str(), Some(path), "{probe}");
        assert_eq!(
            lb[probe]["httpGet"]["port"].as_str(),
            Some("admin"),
            "{probe}"
        );
    }
    // The mounted config is the one `serve` reads.
    let args: Vec<&str> = lb["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| text(a, "arg"))
        .collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| *a == name)
            .and_then(|i| args.get(i + 1))
            .copied()
            .unwrap_or_else(|| panic!("no {name} in {args:?}"))
    };
    let mount = text(&lb["volumeMounts"][0]["mountPath"], "config mount");
    assert_eq!(flag("--config"), format!("{mount}/balancer.yaml"));
    // preStop, then --grace for in-flight requests: both within the pod's grace period.
    let lb_pod = &deploy["spec"]["template"]["spec"];
    let lb_grace = int(&lb_pod["terminationGracePeriodSeconds"], "balancer grace");
    let lb_sleep = pre_stop_sleep(lb, "balancer");
    assert!(
        lb_sleep + seconds(flag("--grace")) < lb_grace,
        "balancer: preStop {lb_sleep}s + --grace {} must end before terminationGracePeriodSeconds {lb_grace}",
        flag("--grace")
    );

    // Tomcat: the preStop sleep is the drain window, within the grace period, and the
    // balancer's drain_timeout does not remove a node that still serves its sessions.
    let sts = resource(&all, "StatefulSet", "tomcat");
    let tomcat = container(sts);
    let grace = int(
        &sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        "Tomcat grace",
    );
    let sleep = pre_stop_sleep(tomcat, "tomcat");
    assert!(sleep < grace, "Tomcat: preStop {sleep}s, grace {grace}s");
    let drain = seconds(text(
        &balancer["pools"][0]["discovery"]["drain_timeout"],
        "drain_timeout",
    ));
    assert!(
        drain >= sleep,
        "drain_timeout {drain}s ends the drain before the pod stops serving ({sleep}s)"
    );
    for name in ["tomcat", "stickyroute"] {
        let pdb = resource(&all, "PodDisruptionBudget", name);
        let target = match name {
            "tomcat" => sts,
            _ => deploy,
        };
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"], target["spec"]["selector"]["matchLabels"],
            "PodDisruptionBudget {name}"
        );
    }
}

/// The ConfigMaps carry the project's own Tomcat files: each copy equals its file.
#[test]
fn configmap_copies_equal_the_deploy_files() {
    let all = all_resources();
    let copies = [
        ("tomcat-conf", "server.xml", "deploy/tomcat/server.xml"),
        (
            "tomcat-conf",
            "app.xml",
            "deploy/tomcat/context-datasourcestore.xml",
        ),
        ("tomcat-app", "index.jsp", "deploy/tomcat/app/index.jsp"),
        ("tomcat-app", "health.jsp", "deploy/tomcat/app/health.jsp"),
        ("tomcat-app", "web.xml", "deploy/tomcat/app/WEB-INF/web.xml"),
        (
            "sessions-db-init",
            "sessions-postgres.sql",
            "deploy/tomcat/sessions-postgres.sql",
        ),
    ];
    for (map, key, file) in copies {
        let copy = text(&resource(&all, "ConfigMap", map)["data"][key], key);
        assert!(
            copy == read(file),
            "ConfigMap {map} key {key} differs from {file}: copy the file into it again"
        );
    }
}
