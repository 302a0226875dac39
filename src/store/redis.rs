//! The `redis` store: one Redis key per session.
//!
//! Owns the key pattern (`session:{id}` → `session:X.jvm1`), the value format (the JSON of a
//! [`SessionRecord`], with a TTL of `max_inactive_secs`), and the Redis connection: one
//! `redis::aio::ConnectionManager` (a multiplexed connection that reconnects by itself after a
//! connection error), made on first use under the store's timeouts, so that a balancer starts
//! while Redis is down.
//!
//! On an outage each operation still tries the server once more, as it did with one connection
//! per failure: the manager makes one connection attempt per failure (no backoff: the store's
//! timeout bounds the operation anyway), and a command that failed on a lost connection is
//! sent once more on the manager's new one, so the first operation after the server is back
//! succeeds. The manager does not recover from a timeout (a dead peer that sends no reset looks
//! like a slow one) nor from a reconnect that failed without an I/O error (e.g. `AUTH`
//! refused): after those the manager is dropped and the next operation makes a new one.
//!
//! Rename is `RENAMENX old new`: atomic on the server, keeps the TTL, and never overwrites a
//! session already under `new`, so concurrent renames from any number of balancers end with
//! one key.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisError};
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
    /// The connection manager; `None` before first use and after a timeout. A tokio mutex: it
    /// is held across the first connect so that concurrent first operations share it.
    conn: Mutex<Option<ConnectionManager>>,
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

    /// The connection manager, made (and connected) if there is none.
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut slot = self.inner.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.inner.timeout)
            .set_response_timeout(self.inner.timeout)
            // One attempt per reconnect: a failed one fails the operations waiting for it, and
            // the next operation starts another (see the module docs).
            .set_number_of_retries(0);
        let conn = ConnectionManager::new_with_config(self.inner.client.clone(), config)
            .await
            .map_err(|e| StoreError::Unavailable(format!("redis: {}", error_chain(&e))))?;
        tracing::debug!("redis session store connected");
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Sends `cmd` on `conn`. A command that failed because the connection was lost (the
    /// manager is reconnecting by now) is sent once more, on the new connection. Each command
    /// of this store may run twice: `GET`, `SET`, `DEL` and `EXISTS` are idempotent, and a
    /// repeated `RENAMENX` finds the rename done (`AlreadyRenamed`).
    async fn query<T: FromRedisValue>(
        &self,
        conn: &mut ConnectionManager,
        cmd: &Cmd,
    ) -> Result<T, RedisError> {
        let result = match cmd.query_async(conn).await {
            Err(e) if is_connection_lost(&e) => {
                tracing::debug!(error = %e, "redis session store connection lost; sending again");
                cmd.query_async(conn).await
            }
            result => result,
        };
        if let Err(e) = &result {
            if needs_new_manager(e) {
                self.drop_connection(e);
            }
        }
        result
    }

    /// Called with every failed operation: after a timeout (the deadline of the whole
    /// operation, which may hide a dead connection) the manager is dropped and the next
    /// operation makes a new one. Lost connections are the manager's to replace.
    pub(crate) fn on_error(&self, error: &StoreError) {
        if matches!(error, StoreError::Timeout { .. }) {
            self.drop_connection(error);
        }
    }

    fn drop_connection(&self, error: &dyn std::fmt::Display) {
        if let Ok(mut slot) = self.inner.conn.try_lock() {
            if slot.take().is_some() {
                tracing::debug!(%error, "redis session store connection dropped");
            }
        }
        // A locked slot means an operation is connecting right now: nothing to drop.
    }

    pub(crate) async fn rename(&self, old: &str, new: &str) -> Result<RenameOutcome, StoreError> {
        let (old_key, new_key) = (self.inner.key.key(old), self.inner.key.key(new));
        let mut conn = self.connection().await?;
        let renamed: Result<i64, RedisError> = self
            .query(
                &mut conn,
                redis::cmd("RENAMENX").arg(&old_key).arg(&new_key),
            )
            .await;
        match renamed {
            Ok(1) => Ok(RenameOutcome::Renamed),
            // `new` exists: renamed already (RENAMENX never overwrites it).
            Ok(_) => Ok(RenameOutcome::AlreadyRenamed),
            Err(e) if is_no_such_key(&e) => {
                let exists: bool = self
                    .query(&mut conn, redis::cmd("EXISTS").arg(&new_key))
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
        let value: Option<Vec<u8>> = self
            .query(&mut conn, redis::cmd("GET").arg(&key))
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
        self.query::<()>(&mut conn, &cmd).await.map_err(map_error)
    }

    pub(crate) async fn remove(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        self.query::<()>(&mut conn, redis::cmd("DEL").arg(self.inner.key.key(id)))
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

/// Whether `error` means the connection is gone (refused, reset, closed), so that the manager
/// makes a new one: what it reconnects on, minus timeouts (see the module docs).
fn is_connection_lost(error: &RedisError) -> bool {
    !error.is_timeout()
        && (error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error())
}

/// Whether the manager cannot recover from `error` by itself: a timeout, or a failed reconnect
/// that was not an I/O error (e.g. `AUTH` refused), which it would keep answering with.
fn needs_new_manager(error: &RedisError) -> bool {
    error.is_timeout() || (error.is_unrecoverable_error() && !error.is_io_error())
}

fn map_error(error: RedisError) -> StoreError {
    let text = format!("redis: {}", error_chain(&error));
    if error.is_timeout() {
        // The response timeout: the command was sent and may still run.
        StoreError::Unanswered(text)
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
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

    /// A TCP proxy to `upstream` whose open connections can be cut and whose new connections
    /// are closed at once while `up` is false.
    async fn cuttable_proxy(
        upstream: String,
    ) -> (
        std::net::SocketAddr,
        Arc<std::sync::atomic::AtomicBool>,
        Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    ) {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (up2, open2) = (up.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                open2.lock().unwrap().push(task.abort_handle());
            }
        });
        (addr, up, open)
    }

    /// An outage longer than one reconnect attempt: every operation during it fails fast, and
    /// the first one after it succeeds (the manager's failed reconnect is not what it answers).
    #[tokio::test]
    async fn first_operation_after_a_long_outage_succeeds() {
        use std::sync::atomic::Ordering;
        // `TEST_REDIS_URL`, else the standard local address when something answers there (as
        // the integration tests' `tests/common/services.rs` does).
        let url = match std::env::var("TEST_REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ if std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], 6379)),
                Duration::from_millis(500),
            )
            .is_ok() =>
            {
                "redis://127.0.0.1:6379/".to_string()
            }
            _ => {
                if std::env::var("STICKYROUTE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                    panic!("first_operation_after_a_long_outage_succeeds needs TEST_REDIS_URL (unset, and nothing answers at redis://127.0.0.1:6379/)");
                }
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: first_operation_after_a_long_outage_succeeds needs TEST_REDIS_URL \
                     (unset, and nothing answers at redis://127.0.0.1:6379/)"
                );
                return;
            }
        };
        let upstream = url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .rsplit('@')
            .next()
            .unwrap()
            .to_string();
        let (addr, up, open) = cuttable_proxy(upstream).await;
        let timeout = Duration::from_secs(2);
        let key = format!("stickyroute-unit:{:016x}:{{id}}", rand::random::<u64>());
        let store = RedisStore::open(&format!("redis://{addr}/"), &key, timeout).unwrap();
        let record = SessionRecord {
            data: serde_json::json!({"n": 1}),
            last_access_ms: 0,
            max_inactive_secs: 60,
            valid: true,
        };
        store.save("X.jvm1", &record).await.unwrap();

        up.store(false, Ordering::SeqCst);
        for task in open.lock().unwrap().drain(..) {
            task.abort();
        }
        for attempt in 0..3 {
            let started = std::time::Instant::now();
            let error = store.rename("X.jvm1", "X.jvm2").await.unwrap_err();
            assert!(
                matches!(error, StoreError::Unavailable(_)),
                "attempt {attempt}: {error:?}"
            );
            assert!(started.elapsed() < timeout, "attempt {attempt} waited");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        up.store(true, Ordering::SeqCst);
        assert_eq!(
            store.rename("X.jvm1", "X.jvm2").await.unwrap(),
            RenameOutcome::Renamed
        );
        assert_eq!(store.load("X.jvm2").await.unwrap(), Some(record));
        store.remove("X.jvm2").await.unwrap();
    }
}
