//! The `redis` store: one Redis key per session.
//!
//! Owns the key pattern (`session:{id}` → `session:X.jvm1`), the value format (the JSON of a
//! [`SessionRecord`], with a TTL of `max_inactive_secs`), and the Redis connection: one
//! multiplexed connection, made on first use under the store's timeouts and dropped after a
//! connection error or timeout so that the next operation makes a new one.
//!
//! Rename is `RENAMENX old new`: atomic on the server, keeps the TTL, and never overwrites a
//! session already under `new`, so concurrent renames from any number of balancers end with
//! one key.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::Mutex;

use super::{error_chain, RenameOutcome, SessionRecord, StoreError};

/// The placeholder a key pattern must contain.
pub const ID_PLACEHOLDER: &str = "{id}";

/// Handle on a Redis store; clones share the client and connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    key: KeyPattern,
    timeout: Duration,
    /// The current connection; `None` before first use and after a failure. A tokio mutex:
    /// it is held across the connect so that concurrent first operations share one connect.
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = &self.inner.client.get_connection_info().addr;
        f.debug_struct("RedisStore")
            .field("addr", &addr.to_string())
            .field("key", &self.inner.key.pattern)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// A validated key pattern such as `session:{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPattern {
    pattern: String,
}

impl KeyPattern {
    pub(crate) fn parse(pattern: &str) -> Result<Self, StoreError> {
        if !pattern.contains(ID_PLACEHOLDER) {
            return Err(StoreError::InvalidConfig(format!(
                "redis key pattern {pattern:?} must contain {ID_PLACEHOLDER}"
            )));
        }
        Ok(KeyPattern {
            pattern: pattern.to_owned(),
        })
    }

    /// The key of session `id`: every `{id}` replaced by `id`.
    pub(crate) fn key(&self, id: &str) -> String {
        self.pattern.replace(ID_PLACEHOLDER, id)
    }
}

impl RedisStore {
    /// Validates `url` and `key`; does not connect.
    pub(crate) fn open(url: &str, key: &str, timeout: Duration) -> Result<Self, StoreError> {
        let key = KeyPattern::parse(key)?;
        let client = Client::open(url)
            .map_err(|e| StoreError::InvalidConfig(format!("redis url: {}", error_chain(&e))))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                key,
                timeout,
                conn: Mutex::new(None),
            }),
        })
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The current connection, made if there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut slot = self.inner.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.inner.timeout)
            .set_response_timeout(self.inner.timeout);
        let conn = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| StoreError::Unavailable(format!("redis: {}", error_chain(&e))))?;
        tracing::debug!("redis session store connected");
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Called with every failed operation: after a connection problem (or a timeout, which may
    /// hide one) the connection is dropped and the next operation connects again.
    pub(crate) fn on_error(&self, error: &StoreError) {
        if matches!(
            error,
            StoreError::Unavailable(_) | StoreError::Timeout { .. }
        ) {
            if let Ok(mut slot) = self.inner.conn.try_lock() {
                if slot.take().is_some() {
                    tracing::debug!(%error, "redis session store connection dropped");
                }
            }
            // A locked slot means an operation is connecting right now: nothing to drop.
        }
    }

    pub(crate) async fn rename(&self, old: &str, new: &str) -> Result<RenameOutcome, StoreError> {
        let (old_key, new_key) = (self.inner.key.key(old), self.inner.key.key(new));
        let mut conn = self.connection().await?;
        let renamed: Result<i64, RedisError> = redis::cmd("RENAMENX")
            .arg(&old_key)
            .arg(&new_key)
            .query_async(&mut conn)
            .await;
        match renamed {
            Ok(1) => Ok(RenameOutcome::Renamed),
            // `new` exists: renamed already (RENAMENX never overwrites it).
            Ok(_) => Ok(RenameOutcome::AlreadyRenamed),
            Err(e) if is_no_such_key(&e) => {
                let exists: bool = redis::cmd("EXISTS")
                    .arg(&new_key)
                    .query_async(&mut conn)
                    .await
                    .map_err(map_error)?;
                Ok(if exists {
                    RenameOutcome::AlreadyRenamed
                } else {
                    RenameOutcome::NotFound
                })
            }
            Err(e) => Err(map_error(e)),
        }
    }

    /// The stored record, expired or not (the caller filters; Redis usually expired it already).
    pub(crate) async fn load(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.inner.key.key(id);
        let mut conn = self.connection().await?;
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(map_error)?;
        value
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| {
                    StoreError::Backend(format!("redis key {key:?} is not a session record: {e}"))
                })
            })
            .transpose()
    }

    pub(crate) async fn save(&self, id: &str, record: &SessionRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record)
            .map_err(|e| StoreError::Backend(format!("cannot encode session: {e}")))?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.inner.key.key(id)).arg(value);
        if let Some(ttl_ms) = ttl_ms(record.max_inactive_secs) {
            cmd.arg("PX").arg(ttl_ms);
        }
        let mut conn = self.connection().await?;
        cmd.query_async::<()>(&mut conn).await.map_err(map_error)
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        redis::cmd("DEL")
            .arg(self.inner.key.key(id))
            .query_async::<()>(&mut conn)
            .await
            .map_err(map_error)
    }
}

/// The key's time to live for a session that may idle `max_inactive_secs`; `None`: no expiry.
pub(crate) fn ttl_ms(max_inactive_secs: i32) -> Option<i64> {
    (max_inactive_secs > 0).then(|| i64::from(max_inactive_secs) * 1000)
}

/// `RENAME`/`RENAMENX` of a missing key answers `ERR no such key`.
fn is_no_such_key(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::ResponseError
        && error
            .to_string()
            .to_ascii_lowercase()
            .contains("no such key")
}

fn map_error(error: RedisError) -> StoreError {
    let text = format!("redis: {}", error_chain(&error));
    if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
    {
        StoreError::Unavailable(text)
    } else {
        StoreError::Backend(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pattern_expansion() {
        let cases = [
            ("session:{id}", "X.jvm1", "session:X.jvm1"),
            ("{id}", "X.jvm1", "X.jvm1"),
            ("app:{id}:data", "ABC", "app:ABC:data"),
            ("{id}/{id}", "a", "a/a"),
            ("s:{id}", "", "s:"),
            ("s:{id}", "{id}", "s:{id}"),
        ];
        for (pattern, id, key) in cases {
            assert_eq!(
                KeyPattern::parse(pattern).unwrap().key(id),
                key,
                "{pattern} {id}"
            );
        }
    }

    #[test]
    fn key_pattern_without_placeholder_is_rejected() {
        for pattern in ["", "session:", "session:{ID}", "session:{id", "session:id}"] {
            assert!(
                matches!(
                    KeyPattern::parse(pattern),
                    Err(StoreError::InvalidConfig(_))
                ),
                "{pattern:?}"
            );
        }
    }

    #[test]
    fn ttl_cases() {
        let cases = [
            (1800, Some(1_800_000)),
            (1, Some(1000)),
            (0, None),
            (-1, None),
        ];
        for (secs, ttl) in cases {
            assert_eq!(ttl_ms(secs), ttl, "{secs}");
        }
    }

    #[test]
    fn open_validates_without_connecting() {
        let t = Duration::from_secs(1);
        assert!(RedisStore::open("redis://127.0.0.1:1/", "s:{id}", t).is_ok());
        assert!(matches!(
            RedisStore::open("not a url", "s:{id}", t),
            Err(StoreError::InvalidConfig(_))
        ));
        assert!(matches!(
            RedisStore::open("redis://127.0.0.1:1/", "s:", t),
            Err(StoreError::InvalidConfig(_))
        ));
    }
}
