//! Session stores: where a pool's session *data* lives, seen from the balancer.
//!
//! The balancer never reads session data. It needs a store for one thing only: the `rename`
//! binder asks the store to rename a session (`X.jvm1` -> `X.jvm2`) before it forwards a
//! failed-over request. The demo node (`stickyroute demo-node`) also keeps its sessions in these
//! stores, so `load` / `save` / `remove` exist for it.
//!
//! Kinds: `memory` (embedded), `redis`, `postgres` and `mysql` (Tomcat JDBCStore's
//! `tomcat_sessions` table), `http` (a rename hook on the pool). Dispatch is an `enum`, not a
//! trait object: the set is closed and `async fn` stays simple.
//!
//! # Layout
//!
//! - `mod.rs` (this file): configuration types, [`SessionRecord`], [`StoreError`], and the
//!   [`SessionStore`] handle, which dispatches to one kind and bounds every operation by
//!   [`StoreConfig::timeout`].
//! - [`memory`]: the embedded map.
//! - [`redis`]: one key per session, renamed with `RENAMENX`.
//! - [`sql`]: PostgreSQL and MySQL / MariaDB, the JDBCStore table.
//!
//! `redis` needs the cargo feature `redis-store`, `postgres` and `mysql` need `sql-store` (both
//! on by default). Config validation refuses a kind that was compiled out, naming the key.
//! - [`http`]: the rename hook (`POST`), rename only.
//!
//! Every store opens lazily: [`SessionStore::open`] validates the configuration and never
//! contacts the service, so a balancer starts while its store is down; the first operation
//! connects, and a broken connection is replaced on a later operation.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub mod http;
pub mod memory;
#[cfg(feature = "redis-store")]
pub mod redis;
#[cfg(feature = "sql-store")]
pub mod sql;

pub use self::http::HttpStore;
pub use self::memory::MemoryStore;
#[cfg(feature = "redis-store")]
pub use self::redis::RedisStore;
#[cfg(feature = "sql-store")]
pub use self::sql::SqlStore;
pub use crate::config::store::{
    is_sql_identifier, JdbcTable, OnStoreError, StoreConfig, StoreKind,
};

/// Deadline of one operation on a store made by [`SessionStore::memory`] (it never waits anyway).
pub const MEMORY_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// A session as stored: attributes as a JSON object, plus Tomcat's bookkeeping.
///
/// The Redis store keeps it as this JSON object; the SQL stores map the fields onto the
/// JDBCStore columns (`data` as JSON bytes in the data column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session attributes (a JSON object by convention).
    pub data: serde_json::Value,
    /// Last access, milliseconds since the Unix epoch.
    pub last_access_ms: i64,
    /// Idle time after which the session expires, in seconds; `<= 0`: never.
    pub max_inactive_secs: i32,
    /// Tomcat's `valid_session` flag.
    pub valid: bool,
}

impl SessionRecord {
    /// Whether the session can be used at `now_ms` (milliseconds since the epoch): valid, and
    /// not idle for longer than `max_inactive_secs` (`last_access_ms + max_inactive_secs * 1000 <
    /// now_ms` means expired; a non-positive `max_inactive_secs` never expires).
    pub fn is_live_at(&self, now_ms: i64) -> bool {
        if !self.valid {
            return false;
        }
        if self.max_inactive_secs <= 0 {
            return true;
        }
        let ttl_ms = i64::from(self.max_inactive_secs) * 1000;
        self.last_access_ms.saturating_add(ttl_ms) >= now_ms
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What [`SessionStore::rename`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameOutcome {
    /// The session was stored under the old id and now is under the new one.
    Renamed,
    /// The old id is missing and the new one present: someone renamed it already.
    AlreadyRenamed,
    /// Neither id exists.
    NotFound,
}

/// A store operation that failed. The `rename` binder applies `on_store_error` to any of these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The operation (connect included) did not finish within [`StoreConfig::timeout`].
    #[error("session store {op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The service cannot be reached (connect refused, connection lost, no pooled connection).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A command was sent and its answer did not come in time (the client's own response
    /// timeout): the store may still carry it out.
    #[error("session store did not answer: {0}")]
    Unanswered(String),
    /// The service answered with an error, or stored data could not be decoded.
    #[error("session store error: {0}")]
    Backend(String),
    /// This kind of store cannot do this operation (e.g. `load` on the `http` hook).
    #[error("{kind} session store does not support {op}")]
    Unsupported {
        kind: &'static str,
        op: &'static str,
    },
    /// The configuration cannot work (bad URL, key pattern or SQL identifier).
    #[error("invalid session store configuration: {0}")]
    InvalidConfig(String),
}

impl StoreError {
    /// Whether the store may have carried the operation out all the same: a command sent
    /// before the deadline can still run after it (a stalled Redis runs what it had queued; a
    /// database commits a statement whose answer is late). Errors the store answered with, a
    /// refused connect and a bad configuration are sure failures.
    pub fn may_have_applied(&self) -> bool {
        matches!(self, StoreError::Timeout { .. } | StoreError::Unanswered(_))
    }
}

/// Runs `fut` under the deadline `after`; an elapsed deadline becomes [`StoreError::Timeout`].
async fn bounded<T>(
    op: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(after, fut).await {
        Ok(result) => result,
        Err(_elapsed) => Err(StoreError::Timeout { op, after }),
    }
}

/// `error` and its chain of sources, joined by `": "` (error messages of clients are often
/// only their outermost layer, e.g. "client error (Connect)").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A session store of any kind: a cheap, clonable handle (clones share the same map, client or
/// connection pool).
#[derive(Clone, Debug)]
pub enum SessionStore {
    Memory(MemoryStore),
    #[cfg(feature = "redis-store")]
    Redis(RedisStore),
    /// PostgreSQL or MySQL; [`SessionStore::kind_name`] tells which.
    #[cfg(feature = "sql-store")]
    Sql(SqlStore),
    Http(HttpStore),
}

impl SessionStore {
    /// Builds the store without contacting the service (connections are made on first use and
    /// re-made after a failure). Fails only on an invalid URL, key pattern or table naming, or
    /// a kind whose cargo feature (`redis-store`, `sql-store`) this build was compiled without.
    ///
    /// `StoreKind::Memory` makes a new, empty map each time; clone the result to share it.
    pub fn open(cfg: &StoreConfig) -> Result<Self, StoreError> {
        if cfg.timeout.is_zero() {
            return Err(StoreError::InvalidConfig(
                "timeout must be greater than 0".into(),
            ));
        }
        Ok(match &cfg.kind {
            StoreKind::Memory => SessionStore::Memory(MemoryStore::with_timeout(cfg.timeout)),
            #[cfg(feature = "redis-store")]
            StoreKind::Redis { url, key } => {
                SessionStore::Redis(RedisStore::open(url, key, cfg.timeout)?)
            }
            #[cfg(not(feature = "redis-store"))]
            StoreKind::Redis { .. } => return Err(compiled_out("redis", "redis-store")),
            #[cfg(feature = "sql-store")]
            StoreKind::Postgres { url, table } => SessionStore::Sql(SqlStore::open(
                sql::Dialect::Postgres,
                url,
                table,
                cfg.timeout,
                cfg.pool_size,
            )?),
            #[cfg(feature = "sql-store")]
            StoreKind::Mysql { url, table } => SessionStore::Sql(SqlStore::open(
                sql::Dialect::Mysql,
                url,
                table,
                cfg.timeout,
                cfg.pool_size,
            )?),
            #[cfg(not(feature = "sql-store"))]
            StoreKind::Postgres { .. } => return Err(compiled_out("postgres", "sql-store")),
            #[cfg(not(feature = "sql-store"))]
            StoreKind::Mysql { .. } => return Err(compiled_out("mysql", "sql-store")),
            StoreKind::Http { url, app } => SessionStore::Http(HttpStore::open(
                url,
                app.clone(),
                cfg.timeout,
                cfg.pool_size,
            )?),
        })
    }

    /// A new, empty embedded map, with [`MEMORY_STORE_TIMEOUT`].
    pub fn memory() -> Self {
        SessionStore::Memory(MemoryStore::new())
    }

    /// `"memory"`, `"redis"`, `"postgres"`, `"mysql"` or `"http"`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            SessionStore::Memory(_) => "memory",
            #[cfg(feature = "redis-store")]
            SessionStore::Redis(_) => "redis",
            #[cfg(feature = "sql-store")]
            SessionStore::Sql(s) => s.dialect().name(),
            SessionStore::Http(_) => "http",
        }
    }

    fn timeout(&self) -> Duration {
        match self {
            SessionStore::Memory(s) => s.timeout(),
            #[cfg(feature = "redis-store")]
            SessionStore::Redis(s) => s.timeout(),
            #[cfg(feature = "sql-store")]
            SessionStore::Sql(s) => s.timeout(),
            SessionStore::Http(s) => s.timeout(),
        }
    }

    /// Renames the session `old` to `new`, atomically. Idempotent: `old` missing and `new`
    /// present is [`RenameOutcome::AlreadyRenamed`]. Concurrent renames of one session (from
    /// tasks or processes) end with exactly one session under `new`. Bounded by the configured
    /// timeout, connect included.
    pub async fn rename(&self, old: &str, new: &str) -> Result<RenameOutcome, StoreError> {
        let outcome = bounded("rename", self.timeout(), async {
            match self {
                SessionStore::Memory(s) => Ok(s.rename(old, new)),
                #[cfg(feature = "redis-store")]
                SessionStore::Redis(s) => s.rename(old, new).await,
                #[cfg(feature = "sql-store")]
                SessionStore::Sql(s) => s.rename(old, new).await,
                SessionStore::Http(s) => s.rename(old, new).await,
            }
        })
        .await;
        self.note(&outcome);
        outcome
    }

    /// The session stored under `id`; `None` when missing, invalid or expired
    /// ([`SessionRecord::is_live_at`]). The `http` store answers [`StoreError::Unsupported`].
    pub async fn load(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let now = now_ms();
        let record = bounded("load", self.timeout(), async {
            match self {
                SessionStore::Memory(s) => Ok(s.load(id)),
                #[cfg(feature = "redis-store")]
                SessionStore::Redis(s) => s.load(id).await,
                #[cfg(feature = "sql-store")]
                SessionStore::Sql(s) => s.load(id).await,
                SessionStore::Http(_) => Err(StoreError::Unsupported {
                    kind: "http",
                    op: "load",
                }),
            }
        })
        .await;
        self.note(&record);
        Ok(record?.filter(|r| r.is_live_at(now)))
    }

    /// Stores `rec` under `id`, replacing what was there.
    pub async fn save(&self, id: &str, rec: &SessionRecord) -> Result<(), StoreError> {
        let result = bounded("save", self.timeout(), async {
            match self {
                SessionStore::Memory(s) => {
                    s.save(id, rec);
                    Ok(())
                }
                #[cfg(feature = "redis-store")]
                SessionStore::Redis(s) => s.save(id, rec).await,
                #[cfg(feature = "sql-store")]
                SessionStore::Sql(s) => s.save(id, rec).await,
                SessionStore::Http(_) => Err(StoreError::Unsupported {
                    kind: "http",
                    op: "save",
                }),
            }
        })
        .await;
        self.note(&result);
        result
    }

    /// Deletes the session `id` (nothing happens if it does not exist).
    pub async fn remove(&self, id: &str) -> Result<(), StoreError> {
        let result = bounded("remove", self.timeout(), async {
            match self {
                SessionStore::Memory(s) => {
                    s.remove(id);
                    Ok(())
                }
                #[cfg(feature = "redis-store")]
                SessionStore::Redis(s) => s.remove(id).await,
                #[cfg(feature = "sql-store")]
                SessionStore::Sql(s) => s.remove(id).await,
                SessionStore::Http(_) => Err(StoreError::Unsupported {
                    kind: "http",
                    op: "remove",
                }),
            }
        })
        .await;
        self.note(&result);
        result
    }

    /// Creates the session table if it is missing (SQL kinds; a no-op for the others).
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        #[cfg(feature = "sql-store")]
        if let SessionStore::Sql(s) = self {
            return bounded("ensure_schema", s.timeout(), s.ensure_schema()).await;
        }
        Ok(())
    }

    /// Lets a store drop a connection that failed (Redis re-connects on the next operation).
    fn note<T>(&self, result: &Result<T, StoreError>) {
        #[cfg(feature = "redis-store")]
        if let (SessionStore::Redis(s), Err(error)) = (self, result) {
            s.on_error(error);
        }
        #[cfg(not(feature = "redis-store"))]
        let _ = result;
    }
}

/// The error of [`SessionStore::open`] for a kind whose feature this build was compiled without.
#[cfg(not(all(feature = "redis-store", feature = "sql-store")))]
fn compiled_out(kind: &str, feature: &str) -> StoreError {
    StoreError::InvalidConfig(format!(
        "store kind {kind} needs the cargo feature {feature:?}, which this build of stickyroute was compiled without"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(last_access_ms: i64, max_inactive_secs: i32, valid: bool) -> SessionRecord {
        SessionRecord {
            data: serde_json::json!({}),
            last_access_ms,
            max_inactive_secs,
            valid,
        }
    }

    #[test]
    fn is_live_at_cases() {
        let now = 1_000_000;
        let cases = [
            ("fresh", record(now, 60, true), true),
            ("invalid", record(now, 60, false), false),
            (
                "exactly at the deadline",
                record(now - 60_000, 60, true),
                true,
            ),
            (
                "one ms past the deadline",
                record(now - 60_001, 60, true),
                false,
            ),
            ("zero max inactive never expires", record(0, 0, true), true),
            (
                "negative max inactive never expires",
                record(0, -1, true),
                true,
            ),
            ("last access far future", record(i64::MAX, 60, true), true),
        ];
        for (name, rec, live) in cases {
            assert_eq!(rec.is_live_at(now), live, "{name}");
        }
    }

    #[test]
    fn record_json_roundtrip() {
        let rec = SessionRecord {
            data: serde_json::json!({"user": "ann", "count": 3}),
            last_access_ms: 1_700_000_000_000,
            max_inactive_secs: 1800,
            valid: true,
        };
        let text = serde_json::to_string(&rec).unwrap();
        assert_eq!(serde_json::from_str::<SessionRecord>(&text).unwrap(), rec);
    }

    #[test]
    fn open_rejects_zero_timeout() {
        let cfg = StoreConfig {
            kind: StoreKind::Memory,
            timeout: Duration::ZERO,
            pool_size: 1,
            on_error: OnStoreError::ForwardOldId,
            negative_ttl: crate::config::store::DEFAULT_NEGATIVE_TTL,
        };
        assert!(matches!(
            SessionStore::open(&cfg),
            Err(StoreError::InvalidConfig(_))
        ));
    }

    #[tokio::test]
    async fn memory_clones_share_the_map() {
        let a = SessionStore::memory();
        let b = a.clone();
        a.save("X.jvm1", &record(now_ms(), 60, true)).await.unwrap();
        assert_eq!(
            b.rename("X.jvm1", "X.jvm2").await.unwrap(),
            RenameOutcome::Renamed
        );
        assert!(a.load("X.jvm2").await.unwrap().is_some());
        assert_eq!(a.kind_name(), "memory");
    }

    #[tokio::test]
    async fn http_store_data_operations_are_unsupported() {
        let cfg = StoreConfig {
            kind: StoreKind::Http {
                url: "http://127.0.0.1:1/rename".into(),
                app: None,
            },
            timeout: Duration::from_secs(1),
            pool_size: 1,
            on_error: OnStoreError::Fail,
            negative_ttl: crate::config::store::DEFAULT_NEGATIVE_TTL,
        };
        let store = SessionStore::open(&cfg).unwrap();
        assert_eq!(store.kind_name(), "http");
        assert!(matches!(
            store.load("X").await,
            Err(StoreError::Unsupported {
                kind: "http",
                op: "load"
            })
        ));
        assert!(matches!(
            store.remove("X").await,
            Err(StoreError::Unsupported {
                kind: "http",
                op: "remove"
            })
        ));
        store.ensure_schema().await.unwrap();
    }
}
