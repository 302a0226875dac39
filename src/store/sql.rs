//! The `postgres` and `mysql` stores: the session table of Tomcat's JDBCStore / DataSourceStore.
//!
//! Owns the SQL: the statements are built once, in `open`, from the configured
//! table and column names (each checked to be a plain SQL identifier, so configuration cannot
//! inject SQL; values always travel as bind parameters). PostgreSQL and MySQL / MariaDB share
//! everything but the placeholders (`$1` / `?`), the upsert (`ON CONFLICT` / `ON DUPLICATE
//! KEY`) and the data column type (`BYTEA` / `MEDIUMBLOB`).
//!
//! Rename is one `UPDATE … SET id = new WHERE id = old [AND app = …]`: the row lock makes
//! concurrent renames of one session wait for each other, and all but the first update no row.
//! The data column holds the JSON of [`SessionRecord::data`]; a real Tomcat writes serialized
//! Java objects there, which `load` reports as a backend error (rename never reads the data).
//!
//! Note: with MySQL's default case-insensitive collations, ids that differ only in case are the
//! same row (as for Tomcat itself); Tomcat's ids are upper-case hex, so this does not arise.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use super::{error_chain, is_sql_identifier, JdbcTable, RenameOutcome, SessionRecord, StoreError};

/// The SQL flavour of a [`SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Mysql,
}

impl Dialect {
    /// `"postgres"` or `"mysql"`, as in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
        }
    }

    /// The `n`-th bind placeholder (1-based).
    fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::Mysql => "?".to_owned(),
        }
    }

    /// URL schemes the driver accepts.
    fn schemes(self) -> &'static [&'static str] {
        match self {
            Dialect::Postgres => &["postgres", "postgresql"],
            Dialect::Mysql => &["mysql", "mariadb"],
        }
    }

    fn data_type(self) -> &'static str {
        match self {
            Dialect::Postgres => "BYTEA",
            Dialect::Mysql => "MEDIUMBLOB",
        }
    }
}

/// The statements of one store, built from validated names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statements {
    /// Binds: id [, app]. Columns: data, valid, max_inactive, last_access.
    pub(crate) load: String,
    /// Binds: id [, app].
    pub(crate) exists: String,
    /// Binds: id, valid, max_inactive, last_access, app (nullable), data.
    pub(crate) upsert: String,
    /// Binds: id [, app].
    pub(crate) delete: String,
    /// Binds: new, old [, app].
    pub(crate) rename: String,
    /// No binds.
    pub(crate) create_table: String,
}

impl Statements {
    /// Validates every name of `t` and builds the statements; `t.app_name` set means reads,
    /// renames and deletes only touch rows of that application.
    pub(crate) fn build(dialect: Dialect, t: &JdbcTable) -> Result<Self, StoreError> {
        let names = [
            ("table", &t.table),
            ("id_col", &t.id_col),
            ("app_col", &t.app_col),
            ("data_col", &t.data_col),
            ("valid_col", &t.valid_col),
            ("max_inactive_col", &t.max_inactive_col),
            ("last_access_col", &t.last_access_col),
        ];
        for (what, name) in names {
            if !is_sql_identifier(name) {
                return Err(StoreError::InvalidConfig(format!(
                    "{what} {name:?} is not an SQL identifier ([A-Za-z_][A-Za-z0-9_.]*)"
                )));
            }
        }
        let p = |n| dialect.placeholder(n);
        let (table, id, app) = (&t.table, &t.id_col, &t.app_col);
        let (data, valid) = (&t.data_col, &t.valid_col);
        let (max_inactive, last_access) = (&t.max_inactive_col, &t.last_access_col);
        // `WHERE id = <p(first)> [AND app = <p(first + 1)>]`
        let key = |first: usize| match t.app_name {
            Some(_) => format!("{id} = {} AND {app} = {}", p(first), p(first + 1)),
            None => format!("{id} = {}", p(first)),
        };
        let columns = [id, valid, max_inactive, last_access, app, data];
        let values: Vec<String> = (1..=columns.len()).map(p).collect();
        let updates: Vec<String> = columns[1..]
            .iter()
            .map(|c| match dialect {
                Dialect::Postgres => format!("{c} = EXCLUDED.{c}"),
                Dialect::Mysql => format!("{c} = VALUES({c})"),
            })
            .collect();
        let conflict = match dialect {
            Dialect::Postgres => format!("ON CONFLICT ({id}) DO UPDATE SET"),
            Dialect::Mysql => "ON DUPLICATE KEY UPDATE".to_owned(),
        };
        Ok(Statements {
            load: format!(
                "SELECT {data}, {valid}, {max_inactive}, {last_access} FROM {table} WHERE {}",
                key(1)
            ),
            exists: format!("SELECT 1 FROM {table} WHERE {}", key(1)),
            upsert: format!(
                "INSERT INTO {table} ({}) VALUES ({}) {conflict} {}",
                columns.map(String::as_str).join(", "),
                values.join(", "),
                updates.join(", ")
            ),
            delete: format!("DELETE FROM {table} WHERE {}", key(1)),
            rename: format!("UPDATE {table} SET {id} = {} WHERE {}", p(1), key(2)),
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {table} (\
                 {id} VARCHAR(100) NOT NULL PRIMARY KEY, \
                 {valid} CHAR(1) NOT NULL, \
                 {max_inactive} INT NOT NULL, \
                 {last_access} BIGINT NOT NULL, \
                 {app} VARCHAR(255), \
                 {data} {})",
                dialect.data_type()
            ),
        })
    }
}

/// Handle on a PostgreSQL or MySQL session table; clones share the connection pool.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    dialect: Dialect,
    connect: Connect,
    pool_size: u32,
    /// Made on first use: sqlx's lazy pool still spawns maintenance tasks, which needs a tokio
    /// runtime, and `open` may run outside one (e.g. when checking a configuration).
    pool: OnceLock<Pool>,
    sql: Statements,
    table: String,
    app_name: Option<String>,
    timeout: Duration,
}

enum Connect {
    Postgres(PgConnectOptions),
    Mysql(MySqlConnectOptions),
}

enum Pool {
    Postgres(PgPool),
    Mysql(MySqlPool),
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &self.inner.dialect)
            .field("table", &self.inner.table)
            .field("app_name", &self.inner.app_name)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// Runs `$body` with `$pool` bound to the typed pool (the body compiles once per database).
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store.pool() {
            Pool::Postgres($pool) => $body,
            Pool::Mysql($pool) => $body,
        }
    };
}

/// Appends the app-name bind when renames are scoped to an application.
macro_rules! bind_app {
    ($query:expr, $app:expr) => {
        match $app {
            Some(app) => $query.bind(app.as_str()),
            None => $query,
        }
    };
}

impl SqlStore {
    /// Validates `url` and the table naming; the pool connects on first use.
    pub(crate) fn open(
        dialect: Dialect,
        url: &str,
        table: &JdbcTable,
        timeout: Duration,
        pool_size: u32,
    ) -> Result<Self, StoreError> {
        let sql = Statements::build(dialect, table)?;
        let invalid_url =
            |e: sqlx::Error| StoreError::InvalidConfig(format!("{} url: {e}", dialect.name()));
        // The drivers ignore the scheme: catch a MySQL URL configured for PostgreSQL here.
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        if !scheme.is_some_and(|s| dialect.schemes().contains(&s)) {
            return Err(StoreError::InvalidConfig(format!(
                "{} url must start with {}://",
                dialect.name(),
                dialect.schemes().join(":// or ")
            )));
        }
        let connect = match dialect {
            Dialect::Postgres => {
                Connect::Postgres(PgConnectOptions::from_str(url).map_err(invalid_url)?)
            }
            Dialect::Mysql => {
                Connect::Mysql(MySqlConnectOptions::from_str(url).map_err(invalid_url)?)
            }
        };
        Ok(SqlStore {
            inner: Arc::new(Inner {
                dialect,
                connect,
                pool_size: pool_size.max(1),
                pool: OnceLock::new(),
                sql,
                table: table.table.clone(),
                app_name: table.app_name.clone(),
                timeout,
            }),
        })
    }

    /// PostgreSQL or MySQL.
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The pool, made (without connecting) on first use.
    fn pool(&self) -> &Pool {
        let inner = &*self.inner;
        inner.pool.get_or_init(|| match &inner.connect {
            Connect::Postgres(options) => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(inner.pool_size)
                    .acquire_timeout(inner.timeout)
                    .connect_lazy_with(options.clone()),
            ),
            Connect::Mysql(options) => Pool::Mysql(
                MySqlPoolOptions::new()
                    .max_connections(inner.pool_size)
                    .acquire_timeout(inner.timeout)
                    .connect_lazy_with(options.clone()),
            ),
        })
    }

    fn error(&self, op: &'static str, error: sqlx::Error) -> StoreError {
        map_error(self.inner.dialect, op, self.inner.timeout, error)
    }

    pub(crate) async fn rename(&self, old: &str, new: &str) -> Result<RenameOutcome, StoreError> {
        let (sql, app) = (&self.inner.sql, &self.inner.app_name);
        let updated = with_pool!(self, |pool| {
            bind_app!(sqlx::query(&sql.rename).bind(new).bind(old), app)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        });
        match updated {
            Ok(0) => {}
            Ok(_) => return Ok(RenameOutcome::Renamed),
            // `new` exists already (both ids were present): treated as renamed.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
            Err(e) => return Err(self.error("rename", e)),
        }
        Ok(if self.exists(new).await? {
            RenameOutcome::AlreadyRenamed
        } else {
            RenameOutcome::NotFound
        })
    }

    async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        let (sql, app) = (&self.inner.sql, &self.inner.app_name);
        let found = with_pool!(self, |pool| {
            bind_app!(sqlx::query(&sql.exists).bind(id), app)
                .fetch_optional(pool)
                .await
                .map(|row| row.is_some())
        });
        found.map_err(|e| self.error("rename", e))
    }

    /// The stored record, expired or not (the caller filters).
    pub(crate) async fn load(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let (sql, app) = (&self.inner.sql, &self.inner.app_name);
        let row = with_pool!(self, |pool| {
            match bind_app!(sqlx::query(&sql.load).bind(id), app)
                .fetch_optional(pool)
                .await
            {
                Ok(Some(row)) => (|| {
                    Ok::<_, sqlx::Error>(Some(StoredRow {
                        data: row.try_get(0)?,
                        valid: row.try_get(1)?,
                        max_inactive: row.try_get(2)?,
                        last_access: row.try_get(3)?,
                    }))
                })(),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let Some(row) = row.map_err(|e| self.error("load", e))? else {
            return Ok(None);
        };
        let data = match row.data.as_deref() {
            None | Some([]) => serde_json::Value::Object(Default::default()),
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| {
                StoreError::Backend(format!(
                    "session {id:?} in {}: data is not JSON ({e})",
                    self.inner.table
                ))
            })?,
        };
        Ok(Some(SessionRecord {
            data,
            last_access_ms: row.last_access,
            max_inactive_secs: row.max_inactive,
            valid: row.valid.trim() == "1",
        }))
    }

    pub(crate) async fn save(&self, id: &str, record: &SessionRecord) -> Result<(), StoreError> {
        let data = serde_json::to_vec(&record.data)
            .map_err(|e| StoreError::Backend(format!("cannot encode session: {e}")))?;
        let valid = if record.valid { "1" } else { "0" };
        let (sql, app) = (&self.inner.sql, &self.inner.app_name);
        let done = with_pool!(self, |pool| {
            sqlx::query(&sql.upsert)
                .bind(id)
                .bind(valid)
                .bind(record.max_inactive_secs)
                .bind(record.last_access_ms)
                .bind(app.as_deref())
                .bind(data.as_slice())
                .execute(pool)
                .await
                .map(drop)
        });
        done.map_err(|e| self.error("save", e))
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), StoreError> {
        let (sql, app) = (&self.inner.sql, &self.inner.app_name);
        let done = with_pool!(self, |pool| {
            bind_app!(sqlx::query(&sql.delete).bind(id), app)
                .execute(pool)
                .await
                .map(drop)
        });
        done.map_err(|e| self.error("remove", e))
    }

    pub(crate) async fn ensure_schema(&self) -> Result<(), StoreError> {
        let sql = &self.inner.sql;
        let done = with_pool!(self, |pool| {
            sqlx::query(&sql.create_table).execute(pool).await.map(drop)
        });
        match done {
            Ok(()) => Ok(()),
            // PostgreSQL: two concurrent `CREATE TABLE IF NOT EXISTS` can collide on the
            // catalog's unique index; the table exists either way.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(()),
            Err(e) => Err(self.error("ensure_schema", e)),
        }
    }
}

/// The columns of one session row as the database holds them.
struct StoredRow {
    data: Option<Vec<u8>>,
    valid: String,
    max_inactive: i32,
    last_access: i64,
}

fn map_error(
    dialect: Dialect,
    op: &'static str,
    after: Duration,
    error: sqlx::Error,
) -> StoreError {
    let text = format!("{} {op}: {}", dialect.name(), error_chain(&error));
    match error {
        sqlx::Error::PoolTimedOut => StoreError::Timeout { op, after },
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(text),
        sqlx::Error::Configuration(_) => StoreError::InvalidConfig(text),
        _ => StoreError::Backend(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_identifiers() {
        let cases = [
            ("tomcat_sessions", true),
            ("_t", true),
            ("public.tomcat_sessions", true),
            ("T1", true),
            ("", false),
            ("1t", false),
            (".t", false),
            ("t-s", false),
            ("t s", false),
            ("t;DROP TABLE x", false),
            ("\"t\"", false),
            ("t`", false),
            ("sessión", false),
        ];
        for (name, ok) in cases {
            assert_eq!(is_sql_identifier(name), ok, "{name:?}");
        }
    }

    #[test]
    fn build_rejects_each_bad_name() {
        let setters: [fn(&mut JdbcTable) -> &mut String; 7] = [
            |t| &mut t.table,
            |t| &mut t.id_col,
            |t| &mut t.app_col,
            |t| &mut t.data_col,
            |t| &mut t.valid_col,
            |t| &mut t.max_inactive_col,
            |t| &mut t.last_access_col,
        ];
        for (i, field) in setters.into_iter().enumerate() {
            let mut t = JdbcTable::default();
            *field(&mut t) = "x; DROP TABLE y".into();
            let err = Statements::build(Dialect::Postgres, &t).unwrap_err();
            assert!(matches!(err, StoreError::InvalidConfig(_)), "field {i}");
        }
    }

    #[test]
    fn app_name_is_not_an_identifier() {
        // The app name is a bound value, so any text is fine.
        let t = JdbcTable {
            app_name: Some("/Catalina/localhost/app's".into()),
            ..JdbcTable::default()
        };
        assert!(Statements::build(Dialect::Mysql, &t).is_ok());
    }

    #[test]
    fn postgres_statements() {
        let s = Statements::build(Dialect::Postgres, &JdbcTable::default()).unwrap();
        let cases = [
            (
                s.load.as_str(),
                "SELECT session_data, valid_session, max_inactive, last_access FROM tomcat_sessions WHERE session_id = $1",
            ),
            (s.exists.as_str(), "SELECT 1 FROM tomcat_sessions WHERE session_id = $1"),
            (
                s.upsert.as_str(),
                "INSERT INTO tomcat_sessions (session_id, valid_session, max_inactive, last_access, app_name, session_data) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id) DO UPDATE SET \
                 valid_session = EXCLUDED.valid_session, max_inactive = EXCLUDED.max_inactive, \
                 last_access = EXCLUDED.last_access, app_name = EXCLUDED.app_name, \
                 session_data = EXCLUDED.session_data",
            ),
            (s.delete.as_str(), "DELETE FROM tomcat_sessions WHERE session_id = $1"),
            (
                s.rename.as_str(),
                "UPDATE tomcat_sessions SET session_id = $1 WHERE session_id = $2",
            ),
            (
                s.create_table.as_str(),
                "CREATE TABLE IF NOT EXISTS tomcat_sessions (session_id VARCHAR(100) NOT NULL PRIMARY KEY, \
                 valid_session CHAR(1) NOT NULL, max_inactive INT NOT NULL, last_access BIGINT NOT NULL, \
                 app_name VARCHAR(255), session_data BYTEA)",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn mysql_statements_with_app_scope_and_custom_names() {
        let t = JdbcTable {
            table: "db.sess".into(),
            id_col: "sid".into(),
            app_col: "app".into(),
            data_col: "blob_".into(),
            valid_col: "ok".into(),
            max_inactive_col: "maxi".into(),
            last_access_col: "seen".into(),
            app_name: Some("/Catalina/localhost/app".into()),
        };
        let s = Statements::build(Dialect::Mysql, &t).unwrap();
        let cases = [
            (
                s.load.as_str(),
                "SELECT blob_, ok, maxi, seen FROM db.sess WHERE sid = ? AND app = ?",
            ),
            (s.exists.as_str(), "SELECT 1 FROM db.sess WHERE sid = ? AND app = ?"),
            (
                s.upsert.as_str(),
                "INSERT INTO db.sess (sid, ok, maxi, seen, app, blob_) VALUES (?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE ok = VALUES(ok), maxi = VALUES(maxi), seen = VALUES(seen), \
                 app = VALUES(app), blob_ = VALUES(blob_)",
            ),
            (s.delete.as_str(), "DELETE FROM db.sess WHERE sid = ? AND app = ?"),
            (s.rename.as_str(), "UPDATE db.sess SET sid = ? WHERE sid = ? AND app = ?"),
            (
                s.create_table.as_str(),
                "CREATE TABLE IF NOT EXISTS db.sess (sid VARCHAR(100) NOT NULL PRIMARY KEY, \
                 ok CHAR(1) NOT NULL, maxi INT NOT NULL, seen BIGINT NOT NULL, \
                 app VARCHAR(255), blob_ MEDIUMBLOB)",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn postgres_rename_with_app_scope_numbers_placeholders_in_bind_order() {
        let t = JdbcTable {
            app_name: Some("a".into()),
            ..JdbcTable::default()
        };
        let s = Statements::build(Dialect::Postgres, &t).unwrap();
        assert_eq!(
            s.rename,
            "UPDATE tomcat_sessions SET session_id = $1 WHERE session_id = $2 AND app_name = $3"
        );
        assert_eq!(
            s.delete,
            "DELETE FROM tomcat_sessions WHERE session_id = $1 AND app_name = $2"
        );
    }

    #[test]
    fn open_validates_without_connecting() {
        let t = Duration::from_secs(1);
        let table = JdbcTable::default();
        let cases = [
            (
                Dialect::Postgres,
                "postgres://postgres@127.0.0.1:1/test",
                true,
            ),
            (Dialect::Mysql, "mysql://root@127.0.0.1:1/test", true),
            (Dialect::Postgres, "mysql://root@127.0.0.1:1/test", false),
            (Dialect::Postgres, "postgresql://u@db/test", true),
            (Dialect::Mysql, "mariadb://u@db/test", true),
            (Dialect::Mysql, "not a url", false),
            (
                Dialect::Mysql,
                "mysql://root@127.0.0.1:notaport/test",
                false,
            ),
        ];
        for (dialect, url, ok) in cases {
            // Outside a tokio runtime, on purpose: `open` must not need one.
            let result = SqlStore::open(dialect, url, &table, t, 4);
            assert_eq!(result.is_ok(), ok, "{dialect:?} {url}");
            if !ok {
                assert!(matches!(result, Err(StoreError::InvalidConfig(_))));
            }
        }
    }
}
