//! The shipped Tomcat files of `deploy/tomcat/`, checked without Tomcat:
//!
//! - the compose profile `tomcat` mounts exactly the files the interop tests install
//!   (`tests/common/tomcat_layout.rs`), gives every `${…}` placeholder in them a value, and agrees
//!   with the balancer config it mounts and with its database service;
//! - the Tomcat 9 (`JDBCStore`) and Tomcat 10+ (`DataSourceStore`) contexts name the same table
//!   and columns, and the SQL files create those columns;
//! - with `TEST_POSTGRES_URL` / `TEST_MYSQL_URL`, the PostgreSQL and MySQL SQL run and create them.

mod common;
#[path = "common/tomcat_layout.rs"]
mod tomcat_layout;

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;
use tomcat_layout::*;

const COMPOSE_FILE: &str = "docker-compose.yml";
/// Where the official image keeps Tomcat (`CATALINA_HOME` = `CATALINA_BASE`).
const IMAGE_CATALINA_BASE: &str = "/usr/local/tomcat";

use common::{read_repo_file as read, repo_root as root};

fn yaml(rel: &str) -> Value {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name").to_owned(), v.clone()))
        .collect()
}

fn in_profile(svc: &Value, profile: &str) -> bool {
    strings(&svc["profiles"]).iter().any(|p| p == profile)
}

/// The text without `<!-- … -->` and `<%-- … --%>` comments (Tomcat replaces no placeholder
/// there).
fn without_comments(text: &str) -> String {
    let mut out = text.to_string();
    for (open, close) in [("<!--", "-->"), ("<%--", "--%>")] {
        while let Some(i) = out.find(open) {
            let end = out[i..]
                .find(close)
                .map_or(out.len(), |j| i + j + close.len());
            out.replace_range(i..end, "");
        }
    }
    out
}

/// `${name}` placeholders of a text, outside comments.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let text = without_comments(text);
    let mut rest = text.as_str();
    while let Some(i) = rest.find("${") {
        let Some(j) = rest[i..].find('}') else { break };
        out.insert(rest[i + 2..i + j].to_string());
        rest = &rest[i + j..];
    }
    out
}

/// `-Dname=value` words of a `CATALINA_OPTS`.
fn system_properties(opts: &str) -> BTreeMap<String, String> {
    opts.split_whitespace()
        .filter_map(|w| w.strip_prefix("-D"))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// `name=value` lines of a properties file (comments and blank lines skipped).
fn properties_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("name=value");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// Every text file under a repository path (a file or a directory).
fn texts_under(rel: &str) -> Vec<(String, String)> {
    let path = root().join(rel);
    if path.is_file() {
        return vec![(rel.to_string(), read(rel))];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(&path).unwrap() {
        let e = e.unwrap();
        let child = format!("{rel}/{}", e.file_name().to_string_lossy());
        out.extend(texts_under(&child));
    }
    out
}

#[test]
fn tomcat_profile_mounts_exactly_the_files_the_interop_tests_run() {
    let compose = yaml(COMPOSE_FILE);
    let svcs = services(&compose);
    // The default `docker compose up`: the demo nodes, the store, the balancer and the scalable
    // `node` service its discovery pool follows; the Tomcat services are all in the profile.
    let default: BTreeSet<&str> = svcs
        .iter()
        .filter(|(_, s)| s["profiles"].is_null())
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        default,
        BTreeSet::from(["balancer", "node", "node1", "node2", "node3", "store"])
    );

    let tomcats: BTreeMap<&str, &Value> = svcs
        .iter()
        .filter(|(_, s)| in_profile(s, "tomcat") && s["image"].as_str() == Some("tomcat:10.1"))
        .map(|(n, s)| (n.as_str(), s))
        .collect();
    assert_eq!(tomcats.len(), 3, "three official tomcat:10.1 nodes");

    // The mounts: exactly PERSISTENT_FILES, read-only, at the image's CATALINA_BASE.
    let want: BTreeSet<(String, String)> = PERSISTENT_FILES
        .iter()
        .map(|(from, to)| (format!("./{from}"), format!("{IMAGE_CATALINA_BASE}/{to}")))
        .collect();
    let placeholders_used: BTreeSet<String> = PERSISTENT_FILES
        .iter()
        .flat_map(|(from, _)| texts_under(from))
        .flat_map(|(_, text)| placeholders(&text))
        .collect();
    assert!(
        placeholders_used.contains("jvm.route") && placeholders_used.contains("sessions.db.url"),
        "{placeholders_used:?}"
    );
    let catalina_properties = properties_file(&read(CATALINA_PROPERTIES));
    assert!(!catalina_properties.is_empty());

    let db = &svcs["tomcat-db"];
    assert!(in_profile(db, "tomcat"));
    assert!(db["image"].as_str().unwrap().starts_with("postgres:"));
    let db_env = &db["environment"];
    let mut routes = BTreeMap::new();
    for (name, svc) in &tomcats {
        let volumes = strings(&svc["volumes"]);
        let mut mounted = BTreeSet::new();
        for v in volumes.iter().filter(|v| v.starts_with("./")) {
            let parts: Vec<&str> = v.split(':').collect();
            assert_eq!(parts.len(), 3, "{name}: {v}: host:container:ro");
            assert_eq!(parts[2], "ro", "{name}: {v} read-only");
            mounted.insert((parts[0].to_string(), parts[1].to_string()));
        }
        assert_eq!(
            mounted, want,
            "{name} must mount exactly the files the interop tests install"
        );

        // Every placeholder has a value; the catalina.properties lines are set.
        let props = system_properties(svc["environment"]["CATALINA_OPTS"].as_str().unwrap());
        for p in &placeholders_used {
            assert!(props.contains_key(p), "{name}: no -D{p} for ${{{p}}}");
        }
        for (k, v) in &catalina_properties {
            assert_eq!(props.get(k), Some(v), "{name}: {CATALINA_PROPERTIES} {k}");
        }
        assert_eq!(props["http.address"], "0.0.0.0", "{name}");
        routes.insert(
            props["jvm.route"].clone(),
            (name.to_string(), props["http.port"].clone()),
        );

        // The database is the profile's own, with its credentials.
        assert_eq!(
            props["sessions.db.url"],
            format!(
                "jdbc:postgresql://tomcat-db:5432/{}",
                db_env["POSTGRES_DB"].as_str().unwrap()
            )
        );
        assert_eq!(props["sessions.db.driver"], "org.postgresql.Driver");
        assert_eq!(
            props["sessions.db.user"],
            db_env["POSTGRES_USER"].as_str().unwrap()
        );
        assert_eq!(
            props["sessions.db.password"],
            db_env["POSTGRES_PASSWORD"].as_str().unwrap()
        );
        assert_eq!(
            svc["depends_on"]["tomcat-db"]["condition"].as_str(),
            Some("service_healthy"),
            "{name}"
        );

        // The JDBC driver: fetched by tomcat-jdbc into a volume the node copies from.
        let cmd = strings(&svc["command"]).join(" ");
        assert!(
            cmd.contains("cp /opt/jdbc/postgresql.jar /usr/local/tomcat/lib/"),
            "{cmd}"
        );
        assert!(cmd.contains("exec catalina.sh run"), "{cmd}");
        assert!(
            volumes.contains(&"tomcat-jdbc:/opt/jdbc:ro".to_string()),
            "{name}"
        );
        assert_eq!(
            svc["depends_on"]["tomcat-jdbc"]["condition"].as_str(),
            Some("service_completed_successfully")
        );
    }
    let jdbc = &svcs["tomcat-jdbc"];
    assert!(strings(&jdbc["volumes"]).contains(&"tomcat-jdbc:/jdbc".to_string()));
    assert!(strings(&jdbc["command"]).contains(&"/jdbc/postgresql.jar".to_string()));

    // The session table: the same SQL the persistent mode runs.
    assert!(
        strings(&db["volumes"])
            .iter()
            .any(|v| v.starts_with(&format!(
                "./{SESSIONS_SQL_POSTGRES}:/docker-entrypoint-initdb.d/"
            )) && v.ends_with(".sql:ro")),
        "{:?}",
        db["volumes"]
    );

    // The balancer: the config the interop tests run, naming these nodes by route and port.
    let lb = &svcs["tomcat-balancer"];
    assert!(in_profile(lb, "tomcat"));
    assert_eq!(lb["build"].as_str(), Some("."));
    let cmd = strings(&lb["command"]);
    let at = cmd.iter().position(|a| a == "--config").expect("--config");
    assert!(
        strings(&lb["volumes"]).contains(&format!("./{BALANCER_CONFIG}:{}:ro", cmd[at + 1])),
        "{BALANCER_CONFIG} mounted at {}",
        cmd[at + 1]
    );
    let cfg = yaml(BALANCER_CONFIG);
    let nodes = cfg["pools"][0]["nodes"].as_sequence().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        let route = n["route"].as_str().unwrap();
        let (svc, port) = &routes[route];
        assert_eq!(n["address"].as_str().unwrap(), format!("{svc}:{port}"));
        assert_eq!(
            lb["depends_on"][svc.as_str()]["condition"].as_str(),
            Some("service_started")
        );
    }
    assert!(
        cfg["pools"][0]["cookie"].is_null(),
        "default cookie settings, as the interop tests run them"
    );
    // Published on other host ports than the demo's balancer.
    let host_ports = |svc: &Value| -> BTreeSet<String> {
        strings(&svc["ports"])
            .iter()
            .map(|p| p.rsplit_once(':').unwrap().0.to_string())
            .collect()
    };
    assert!(host_ports(lb).is_disjoint(&host_ports(&svcs["balancer"])));
}

/// `attr="value"` pairs of the element named `tag` (first occurrence) in an XML text.
fn attributes(xml: &str, tag: &str) -> BTreeMap<String, String> {
    let start = xml
        .find(&format!("<{tag} "))
        .unwrap_or_else(|| panic!("no <{tag}>"));
    let end = start + xml[start..].find('>').unwrap();
    let mut out = BTreeMap::new();
    let mut rest = &xml[start + tag.len() + 1..end];
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].split_whitespace().last().unwrap().to_string();
        let close = rest[eq + 2..].find('"').unwrap();
        out.insert(name, rest[eq + 2..eq + 2 + close].to_string());
        rest = &rest[eq + 2 + close + 1..];
    }
    out
}

const SESSION_ATTRS: [&str; 7] = [
    "sessionTable",
    "sessionIdCol",
    "sessionAppCol",
    "sessionDataCol",
    "sessionValidCol",
    "sessionMaxInactiveCol",
    "sessionLastAccessedCol",
];

#[test]
fn tomcat9_and_tomcat10_contexts_name_the_same_table_and_the_sql_creates_it() {
    let t10 = read(PERSISTENT_FILES[1].0);
    let t9 = read(CONTEXT_TOMCAT9);
    let s10 = attributes(&t10, "Store");
    let s9 = attributes(&t9, "Store");
    assert_eq!(
        s10["className"],
        "org.apache.catalina.session.DataSourceStore"
    );
    assert_eq!(s9["className"], "org.apache.catalina.session.JDBCStore");
    // Tomcat 10+ reaches the database through the JNDI resource the context declares.
    assert_eq!(attributes(&t10, "Resource")["name"], s10["dataSourceName"]);
    for a in SESSION_ATTRS {
        assert_eq!(s9.get(a), s10.get(a), "{a}");
    }
    // Both managers write within the 1-2 s window the README promises.
    for (name, text) in [("tomcat 10", &t10), ("tomcat 9", &t9)] {
        let m = attributes(text, "Manager");
        assert_eq!(
            m["className"],
            "org.apache.catalina.session.PersistentManager"
        );
        assert_eq!(m["maxIdleBackup"], "1", "{name}");
        assert_eq!(m["processExpiresFrequency"], "1", "{name}");
        assert_eq!(attributes(text, "Context")["backgroundProcessorDelay"], "1");
    }
    // The SQL files create the table and every column the stores name.
    for sql in [
        SESSIONS_SQL_POSTGRES,
        SESSIONS_SQL_MYSQL,
        SESSIONS_SQL_MSSQL,
    ] {
        let text = read(sql).to_lowercase();
        assert!(
            text.contains(&format!("create table {}", s10["sessionTable"]))
                || text.contains(&format!(
                    "create table if not exists {}",
                    s10["sessionTable"]
                )),
            "{sql}"
        );
        for a in &SESSION_ATTRS[1..] {
            assert!(
                text.contains(&format!("{} ", s10[*a].to_lowercase())),
                "{sql}: no column {}",
                s10[*a]
            );
        }
    }
    // The demo's init script (deploy/postgres-init.sql) has the same columns.
    let demo = read("deploy/postgres-init.sql").to_lowercase();
    for a in &SESSION_ATTRS[1..] {
        assert!(demo.contains(&s10[*a].to_lowercase()), "{a}");
    }
}

/// The column names of `tomcat_sessions` in a fresh schema after running the shipped SQL.
#[tokio::test]
async fn shipped_sql_runs_on_postgres_and_mysql() {
    let want: BTreeSet<String> = [
        "session_id",
        "valid_session",
        "max_inactive",
        "last_access",
        "app_name",
        "session_data",
    ]
    .map(String::from)
    .into();
    let test = "shipped_sql_runs_on_postgres_and_mysql";
    if let Some(url) = common::service_url("TEST_POSTGRES_URL", test) {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let schema = format!("sr_sql_{}", std::process::id());
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path TO {schema};"
        ))
        .execute(&mut c)
        .await
        .unwrap();
        // Twice: the script is safe to run again.
        for _ in 0..2 {
            sqlx::raw_sql(&read(SESSIONS_SQL_POSTGRES))
                .execute(&mut c)
                .await
                .unwrap();
        }
        let cols: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'tomcat_sessions'",
        )
        .bind(&schema)
        .fetch_all(&mut c)
        .await
        .unwrap();
        sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(cols.into_iter().collect::<BTreeSet<_>>(), want);
    }
    if let Some(url) = common::service_url("TEST_MYSQL_URL", test) {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        let db = format!("sr_sql_{}", std::process::id());
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; USE {db};"
        ))
        .execute(&mut c)
        .await
        .unwrap();
        for _ in 0..2 {
            sqlx::raw_sql(&read(SESSIONS_SQL_MYSQL))
                .execute(&mut c)
                .await
                .unwrap();
        }
        let cols: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(column_name AS CHAR) FROM information_schema.columns WHERE table_schema = ? AND table_name = 'tomcat_sessions'",
        )
        .bind(&db)
        .fetch_all(&mut c)
        .await
        .unwrap();
        sqlx::raw_sql(&format!("DROP DATABASE {db}"))
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(cols.into_iter().collect::<BTreeSet<_>>(), want);
    }
}
