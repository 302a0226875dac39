//! The validated configuration of a pool's session store (the `store:` key of a pool), as the
//! `rename` binder and the session stores (the `store` module) read it. Names here follow Tomcat's
//! JDBCStore attributes.

use std::time::Duration;

/// How a store failure is handled by the `rename` binder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Serve the request with the old id, no rebind; log and count the error.
    ForwardOldId,
    /// Answer `503`.
    Fail,
}

/// Table and column names of Tomcat's JDBCStore / DataSourceStore (same attribute names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JdbcTable {
    /// `sessionTable`, default `tomcat_sessions`.
    pub table: String,
    /// `sessionIdCol`, default `session_id`.
    pub id_col: String,
    /// `sessionAppCol`, default `app_name`.
    pub app_col: String,
    /// `sessionDataCol`, default `session_data`.
    pub data_col: String,
    /// `sessionValidCol`, default `valid_session`.
    pub valid_col: String,
    /// `sessionMaxInactiveCol`, default `max_inactive`.
    pub max_inactive_col: String,
    /// `sessionLastAccessedCol`, default `last_access`.
    pub last_access_col: String,
    /// Value of the app column that scopes renames (Tomcat writes e.g. `/Catalina/localhost/app`).
    /// `None`: rename regardless of the app column.
    pub app_name: Option<String>,
}

impl Default for JdbcTable {
    fn default() -> Self {
        JdbcTable {
            table: "tomcat_sessions".into(),
            id_col: "session_id".into(),
            app_col: "app_name".into(),
            data_col: "session_data".into(),
            valid_col: "valid_session".into(),
            max_inactive_col: "max_inactive".into(),
            last_access_col: "last_access".into(),
            app_name: None,
        }
    }
}

/// Which store, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded map; shared only inside one process.
    Memory,
    /// Redis; `key` is a pattern containing `{id}`, e.g. `session:{id}`.
    Redis { url: String, key: String },
    /// PostgreSQL `tomcat_sessions` table.
    Postgres { url: String, table: JdbcTable },
    /// MySQL / MariaDB `tomcat_sessions` table.
    Mysql { url: String, table: JdbcTable },
    /// `POST url` with `{"old","new","app"}`; success on 2xx.
    Http { url: String, app: Option<String> },
}

/// A validated store configuration (built by `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Deadline for one store operation (connect included).
    pub timeout: Duration,
    /// Maximum connections in the store's pool.
    pub pool_size: u32,
    pub on_error: OnStoreError,
    /// How long the `rename` binder remembers an id the store does not know, without asking
    /// again (`state::unknown_ids`); zero: never remembered.
    pub negative_ttl: Duration,
}

/// Default of [`StoreConfig::negative_ttl`].
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Largest [`StoreConfig::negative_ttl`]: an id the store learns (a node writing a session
/// late) must not stay unknown to the binder for long.
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// Whether `name` is `[A-Za-z_][A-Za-z0-9_.]*` (a `schema.table` is allowed).
pub fn is_sql_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}
