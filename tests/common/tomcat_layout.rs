//! Which shipped files of `deploy/tomcat/` the Tomcat interop tests install where, shared by the
//! harness (`tests/common/tomcat.rs`, which installs exactly these) and by the compose check
//! (`tests/compose.rs`, which asserts that the `tomcat` profile mounts exactly these).
#![allow(dead_code)]

/// The balancer config in front of the Tomcat nodes (compose service `tomcat-balancer`).
pub const BALANCER_CONFIG: &str = "deploy/tomcat/balancer.yaml";
/// The session table, run into the database of the persistent mode.
pub const SESSIONS_SQL_POSTGRES: &str = "deploy/tomcat/sessions-postgres.sql";
pub const SESSIONS_SQL_MYSQL: &str = "deploy/tomcat/sessions-mysql.sql";
pub const SESSIONS_SQL_MSSQL: &str = "deploy/tomcat/sessions-mssql.sql";
/// Lines appended to each node's `conf/catalina.properties`.
pub const CATALINA_PROPERTIES: &str = "deploy/tomcat/catalina.properties";
/// The `<Cluster>` fragment the delta mode puts into `server.xml` at [`CLUSTER_MARKER`].
pub const CLUSTER_FRAGMENT: &str = "deploy/tomcat/cluster-delta.xml";
pub const CLUSTER_MARKER: &str = "<!-- CLUSTER: delta mode inserts cluster-delta.xml here -->";
/// The Tomcat 9 form of the persistent context; not run here (Debian ships Tomcat 10), checked
/// against the Tomcat 10 form instead.
pub const CONTEXT_TOMCAT9: &str = "deploy/tomcat/context-jdbcstore.xml";

/// (file or directory in the repository, path under `CATALINA_BASE`) installed on every node of
/// the persistent mode. The compose profile `tomcat` mounts exactly these.
pub const PERSISTENT_FILES: &[(&str, &str)] = &[
    ("deploy/tomcat/server.xml", "conf/server.xml"),
    (
        "deploy/tomcat/context-datasourcestore.xml",
        "conf/Catalina/localhost/app.xml",
    ),
    ("deploy/tomcat/app", "webapps/app"),
];

/// The same for the delta mode: `server.xml` gets [`CLUSTER_FRAGMENT`]; no context file (the
/// cluster's DeltaManager serves the distributable application).
pub const DELTA_FILES: &[(&str, &str)] = &[
    ("deploy/tomcat/server.xml", "conf/server.xml"),
    ("deploy/tomcat/app", "webapps/app"),
];

/// The application's context path and its pages.
pub const APP: &str = "/app/";
pub const HEALTH: &str = "/app/health.jsp";
