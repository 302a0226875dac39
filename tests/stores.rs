//! Session stores against real services: the same scenarios for every kind, plus what is
//! particular to each (Redis TTLs, SQL app scoping and custom columns, the HTTP hook protocol)
//! and unreachable services.
//!
//! Services come from `TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379/`), `TEST_POSTGRES_URL`
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`) and `TEST_MYSQL_URL` (e.g.
//! `mysql://root@127.0.0.1:3306/test`); unset, the standard local address is used when something
//! answers there. A test with no service prints `SKIPPED: …` and passes, unless `STICKYROUTE_REQUIRE_SERVICES=1`, which makes it fail. Every test uses its own
//! random key prefix or table, so tests run in parallel and again and again.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use stickyroute::store::{
    JdbcTable, OnStoreError, RenameOutcome, SessionRecord, SessionStore, StoreConfig, StoreError,
    StoreKind,
};
use tokio::net::TcpListener;

/// Operation deadline of the stores under test.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);
/// An operation that has not returned after this has hung: the test fails instead of waiting.
const HANG: Duration = Duration::from_secs(10);
/// Renames racing on one session.
const RACERS: usize = 20;

// ---------------------------------------------------------------------------------------------
// Helpers

#[path = "common/services.rs"]
mod services;

/// The service URL for `test` (argument order of this file: test first).
fn service_url(test: &str, var: &str) -> Option<String> {
    services::service_url(var, test)
}

fn unique() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}

fn config(kind: StoreKind) -> StoreConfig {
    StoreConfig {
        kind,
        timeout: STORE_TIMEOUT,
        pool_size: 8,
        on_error: OnStoreError::ForwardOldId,
        negative_ttl: stickyroute::config::store::DEFAULT_NEGATIVE_TTL,
    }
}

fn record(user: &str) -> SessionRecord {
    SessionRecord {
        data: json!({ "user": user, "cart": [1, 2, 3], "ratio": 1.5, "nested": { "ok": true } }),
        last_access_ms: now_ms(),
        max_inactive_secs: 1800,
        valid: true,
    }
}

/// Awaits `fut`, failing the test if it hangs.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {HANG:?}"))
}

/// A store under test, with unique session ids and whatever must be cleaned up afterwards.
struct Fixture {
    cfg: StoreConfig,
    store: SessionStore,
    prefix: String,
    table: Option<SqlTable>,
}

/// A table made for one test and dropped after it.
struct SqlTable {
    url: String,
    name: String,
    mysql: bool,
}

impl Fixture {
    fn id(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Another handle on the same store, as a second balancer process would have (its own
    /// connections); for the memory store, a clone (the map is per process).
    fn another_handle(&self) -> SessionStore {
        match self.cfg.kind {
            StoreKind::Memory => self.store.clone(),
            _ => SessionStore::open(&self.cfg).expect("open a second handle"),
        }
    }

    async fn finish(self) {
        if let Some(table) = self.table {
            let sql = format!("DROP TABLE IF EXISTS {}", table.name);
            if table.mysql {
                let pool = sqlx::MySqlPool::connect(&table.url).await.unwrap();
                sqlx::query(&sql).execute(&pool).await.unwrap();
            } else {
                let pool = sqlx::PgPool::connect(&table.url).await.unwrap();
                sqlx::query(&sql).execute(&pool).await.unwrap();
            }
        }
    }
}

mod fixtures {
    use super::*;

    pub async fn memory(_test: &str) -> Option<Fixture> {
        let cfg = config(StoreKind::Memory);
        Some(Fixture {
            store: SessionStore::open(&cfg).unwrap(),
            cfg,
            prefix: format!("{}.", unique()),
            table: None,
        })
    }

    pub async fn redis(test: &str) -> Option<Fixture> {
        let url = service_url(test, "TEST_REDIS_URL")?;
        let cfg = config(StoreKind::Redis {
            url,
            key: format!("stickyroute-test:{}:{{id}}", unique()),
        });
        Some(Fixture {
            store: SessionStore::open(&cfg).unwrap(),
            cfg,
            prefix: format!("{}.", unique()),
            table: None,
        })
    }

    pub async fn postgres(test: &str) -> Option<Fixture> {
        let url = service_url(test, "TEST_POSTGRES_URL")?;
        sql(url, false, JdbcTable::default()).await
    }

    pub async fn mysql(test: &str) -> Option<Fixture> {
        let url = service_url(test, "TEST_MYSQL_URL")?;
        sql(url, true, JdbcTable::default()).await
    }

    /// A store on a new table named `<table.table>_<random>` (created here).
    pub async fn sql(url: String, mysql: bool, table: JdbcTable) -> Option<Fixture> {
        let name = format!("{}_{}", table.table, unique());
        let table = JdbcTable {
            table: name.clone(),
            ..table
        };
        let kind = if mysql {
            StoreKind::Mysql {
                url: url.clone(),
                table,
            }
        } else {
            StoreKind::Postgres {
                url: url.clone(),
                table,
            }
        };
        let cfg = config(kind);
        let store = SessionStore::open(&cfg).unwrap();
        assert_eq!(store.kind_name(), if mysql { "mysql" } else { "postgres" });
        within("ensure_schema", store.ensure_schema())
            .await
            .unwrap();
        // Twice: it only creates what is missing.
        within("ensure_schema", store.ensure_schema())
            .await
            .unwrap();
        Some(Fixture {
            cfg,
            store,
            prefix: format!("{}.", unique()),
            table: Some(SqlTable { url, name, mysql }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios every store passes

mod scenario {
    use super::*;

    pub async fn save_load_roundtrip(f: &Fixture) {
        let (id, store) = (f.id("A.jvm1"), &f.store);
        assert_eq!(within("load", store.load(&id)).await.unwrap(), None);
        let first = record("ann");
        within("save", store.save(&id, &first)).await.unwrap();
        assert_eq!(within("load", store.load(&id)).await.unwrap(), Some(first));

        let second = SessionRecord {
            data: json!({ "user": "bob" }),
            max_inactive_secs: 60,
            ..record("bob")
        };
        within("save", store.save(&id, &second)).await.unwrap();
        assert_eq!(within("load", store.load(&id)).await.unwrap(), Some(second));

        within("remove", store.remove(&id)).await.unwrap();
        assert_eq!(within("load", store.load(&id)).await.unwrap(), None);
        within("remove", store.remove(&id)).await.unwrap();
    }

    pub async fn rename_moves_the_record(f: &Fixture) {
        let (old, new, store) = (f.id("B.jvm1"), f.id("B.jvm2"), &f.store);
        let rec = record("carl");
        within("save", store.save(&old, &rec)).await.unwrap();

        let outcome = within("rename", store.rename(&old, &new)).await.unwrap();
        assert_eq!(outcome, RenameOutcome::Renamed);
        assert_eq!(within("load", store.load(&old)).await.unwrap(), None);
        assert_eq!(
            within("load", store.load(&new)).await.unwrap(),
            Some(rec.clone())
        );

        let again = within("rename", store.rename(&old, &new)).await.unwrap();
        assert_eq!(again, RenameOutcome::AlreadyRenamed);
        assert_eq!(within("load", store.load(&new)).await.unwrap(), Some(rec));

        let (unknown, other) = (f.id("NOPE.jvm1"), f.id("NOPE.jvm2"));
        let missing = within("rename", store.rename(&unknown, &other))
            .await
            .unwrap();
        assert_eq!(missing, RenameOutcome::NotFound);
        within("remove", store.remove(&new)).await.unwrap();
    }

    pub async fn concurrent_renames_keep_one_session(f: &Fixture) {
        let second = f.another_handle();
        for round in 0..3 {
            let old = f.id(&format!("C{round}.jvm1"));
            let new = f.id(&format!("C{round}.jvm2"));
            let rec = record("dora");
            within("save", f.store.save(&old, &rec)).await.unwrap();

            let tasks: Vec<_> = (0..RACERS)
                .map(|i| {
                    // Half the racers use another handle, like another balancer process.
                    let store = if i % 2 == 0 {
                        f.store.clone()
                    } else {
                        second.clone()
                    };
                    let (old, new) = (old.clone(), new.clone());
                    tokio::spawn(async move { store.rename(&old, &new).await })
                })
                .collect();
            let mut outcomes = Vec::new();
            for task in tasks {
                let outcome = within("rename", task).await.unwrap();
                outcomes
                    .push(outcome.unwrap_or_else(|e| panic!("round {round}: rename failed: {e}")));
            }
            let renamed = outcomes
                .iter()
                .filter(|o| **o == RenameOutcome::Renamed)
                .count();
            assert_eq!(renamed, 1, "round {round}: {outcomes:?}");
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, RenameOutcome::Renamed | RenameOutcome::AlreadyRenamed)),
                "round {round}: {outcomes:?}"
            );
            assert_eq!(within("load", f.store.load(&old)).await.unwrap(), None);
            assert_eq!(within("load", f.store.load(&new)).await.unwrap(), Some(rec));
            within("remove", f.store.remove(&new)).await.unwrap();
        }
    }

    pub async fn expired_or_invalid_sessions_do_not_load(f: &Fixture) {
        let store = &f.store;
        let expired = SessionRecord {
            last_access_ms: now_ms() - 10_000,
            max_inactive_secs: 1,
            ..record("eve")
        };
        let id = f.id("E.jvm1");
        within("save", store.save(&id, &expired)).await.unwrap();
        assert_eq!(within("load", store.load(&id)).await.unwrap(), None);

        let invalid = SessionRecord {
            valid: false,
            ..record("eve")
        };
        let id = f.id("F.jvm1");
        within("save", store.save(&id, &invalid)).await.unwrap();
        assert_eq!(within("load", store.load(&id)).await.unwrap(), None);
        within("remove", store.remove(&id)).await.unwrap();

        let immortal = SessionRecord {
            last_access_ms: 0,
            max_inactive_secs: -1,
            ..record("eve")
        };
        let id = f.id("G.jvm1");
        within("save", store.save(&id, &immortal)).await.unwrap();
        assert_eq!(
            within("load", store.load(&id)).await.unwrap(),
            Some(immortal)
        );
        within("remove", store.remove(&id)).await.unwrap();
    }
}

macro_rules! store_suite {
    ($kind:ident: $($scenario:ident),+ $(,)?) => {
        mod $kind {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let test = concat!(stringify!($kind), "::", stringify!($scenario));
                    let Some(fixture) = fixtures::$kind(test).await else { return };
                    scenario::$scenario(&fixture).await;
                    fixture.finish().await;
                }
            )+
        }
    };
}

store_suite!(memory: save_load_roundtrip, rename_moves_the_record, concurrent_renames_keep_one_session, expired_or_invalid_sessions_do_not_load);
store_suite!(redis: save_load_roundtrip, rename_moves_the_record, concurrent_renames_keep_one_session, expired_or_invalid_sessions_do_not_load);
store_suite!(postgres: save_load_roundtrip, rename_moves_the_record, concurrent_renames_keep_one_session, expired_or_invalid_sessions_do_not_load);
store_suite!(mysql: save_load_roundtrip, rename_moves_the_record, concurrent_renames_keep_one_session, expired_or_invalid_sessions_do_not_load);

// ---------------------------------------------------------------------------------------------
// What is particular to one kind

#[tokio::test]
async fn redis_keys_follow_the_pattern_and_keep_their_ttl_across_rename() {
    let Some(url) = service_url(
        "redis_keys_follow_the_pattern_and_keep_their_ttl_across_rename",
        "TEST_REDIS_URL",
    ) else {
        return;
    };
    let prefix = format!("stickyroute-test:{}:", unique());
    let cfg = config(StoreKind::Redis {
        url: url.clone(),
        key: format!("{prefix}{{id}}:data"),
    });
    let store = SessionStore::open(&cfg).unwrap();
    assert_eq!(store.kind_name(), "redis");
    let rec = SessionRecord {
        max_inactive_secs: 600,
        ..record("fay")
    };
    within("save", store.save("X.jvm1", &rec)).await.unwrap();
    let outcome = within("rename", store.rename("X.jvm1", "X.jvm2"))
        .await
        .unwrap();
    assert_eq!(outcome, RenameOutcome::Renamed);

    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let old_key = format!("{prefix}X.jvm1:data");
    let new_key = format!("{prefix}X.jvm2:data");
    let exists: bool = ::redis::cmd("EXISTS")
        .arg(&old_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
    let ttl_ms: i64 = ::redis::cmd("PTTL")
        .arg(&new_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl_ms > 0 && ttl_ms <= 600_000, "PTTL {ttl_ms}");
    let value: String = ::redis::cmd("GET")
        .arg(&new_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stored: serde_json::Value = serde_json::from_str(&value).unwrap();
    assert_eq!(stored["data"], rec.data);
    assert_eq!(stored["max_inactive_secs"], 600);

    // No expiry for a session that never times out.
    let forever = SessionRecord {
        max_inactive_secs: 0,
        ..record("fay")
    };
    within("save", store.save("X.jvm2", &forever))
        .await
        .unwrap();
    let ttl_ms: i64 = ::redis::cmd("PTTL")
        .arg(&new_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl_ms, -1);
    within("remove", store.remove("X.jvm2")).await.unwrap();
}

/// Renames and reads only touch rows of the configured application; saves write its name.
async fn sql_app_scope(url: String, mysql: bool) {
    let table = JdbcTable {
        app_name: Some("/Catalina/localhost/shop".into()),
        ..JdbcTable::default()
    };
    let shop = fixtures::sql(url, mysql, table).await.unwrap();
    let mut other_cfg = shop.cfg.clone();
    match &mut other_cfg.kind {
        StoreKind::Postgres { table, .. } | StoreKind::Mysql { table, .. } => {
            table.app_name = Some("/Catalina/localhost/blog".into())
        }
        _ => unreachable!(),
    }
    let blog = SessionStore::open(&other_cfg).unwrap();
    let mut unscoped_cfg = shop.cfg.clone();
    match &mut unscoped_cfg.kind {
        StoreKind::Postgres { table, .. } | StoreKind::Mysql { table, .. } => table.app_name = None,
        _ => unreachable!(),
    }
    let any_app = SessionStore::open(&unscoped_cfg).unwrap();

    let (old, new) = (shop.id("S.jvm1"), shop.id("S.jvm2"));
    let rec = record("gus");
    within("save", shop.store.save(&old, &rec)).await.unwrap();
    assert_eq!(within("load", blog.load(&old)).await.unwrap(), None);
    let outcome = within("rename", blog.rename(&old, &new)).await.unwrap();
    assert_eq!(outcome, RenameOutcome::NotFound);
    within("remove", blog.remove(&old)).await.unwrap();
    assert_eq!(
        within("load", shop.store.load(&old)).await.unwrap(),
        Some(rec.clone())
    );

    let outcome = within("rename", shop.store.rename(&old, &new))
        .await
        .unwrap();
    assert_eq!(outcome, RenameOutcome::Renamed);
    // Without an app name, rows of every application are visible.
    assert_eq!(within("load", any_app.load(&new)).await.unwrap(), Some(rec));
    shop.finish().await;
}

#[tokio::test]
async fn postgres_rename_is_scoped_to_the_app() {
    if let Some(url) = service_url("postgres_rename_is_scoped_to_the_app", "TEST_POSTGRES_URL") {
        sql_app_scope(url, false).await;
    }
}

#[tokio::test]
async fn mysql_rename_is_scoped_to_the_app() {
    if let Some(url) = service_url("mysql_rename_is_scoped_to_the_app", "TEST_MYSQL_URL") {
        sql_app_scope(url, true).await;
    }
}

/// A JDBCStore configured with its own table and column names.
async fn sql_custom_columns(url: String, mysql: bool) {
    let table = JdbcTable {
        table: "custom_sessions".into(),
        id_col: "sid".into(),
        app_col: "app".into(),
        data_col: "payload".into(),
        valid_col: "ok".into(),
        max_inactive_col: "idle_max".into(),
        last_access_col: "seen".into(),
        app_name: None,
    };
    let f = fixtures::sql(url, mysql, table).await.unwrap();
    scenario::rename_moves_the_record(&f).await;
    scenario::expired_or_invalid_sessions_do_not_load(&f).await;
    f.finish().await;
}

#[tokio::test]
async fn postgres_custom_table_and_columns() {
    if let Some(url) = service_url("postgres_custom_table_and_columns", "TEST_POSTGRES_URL") {
        sql_custom_columns(url, false).await;
    }
}

#[tokio::test]
async fn mysql_custom_table_and_columns() {
    if let Some(url) = service_url("mysql_custom_table_and_columns", "TEST_MYSQL_URL") {
        sql_custom_columns(url, true).await;
    }
}

/// Both ids present (e.g. a node saved the new id before the rename): the row under `new` is
/// kept, the unique key is not violated, and the answer is `AlreadyRenamed`.
async fn sql_both_ids_present(url: String, mysql: bool) {
    let f = fixtures::sql(url, mysql, JdbcTable::default())
        .await
        .unwrap();
    let (old, new) = (f.id("D.jvm1"), f.id("D.jvm2"));
    within("save", f.store.save(&old, &record("old")))
        .await
        .unwrap();
    let newer = record("new");
    within("save", f.store.save(&new, &newer)).await.unwrap();
    let outcome = within("rename", f.store.rename(&old, &new)).await.unwrap();
    assert_eq!(outcome, RenameOutcome::AlreadyRenamed);
    assert_eq!(
        within("load", f.store.load(&new)).await.unwrap(),
        Some(newer)
    );
    f.finish().await;
}

#[tokio::test]
async fn postgres_rename_onto_an_existing_id() {
    if let Some(url) = service_url("postgres_rename_onto_an_existing_id", "TEST_POSTGRES_URL") {
        sql_both_ids_present(url, false).await;
    }
}

#[tokio::test]
async fn mysql_rename_onto_an_existing_id() {
    if let Some(url) = service_url("mysql_rename_onto_an_existing_id", "TEST_MYSQL_URL") {
        sql_both_ids_present(url, true).await;
    }
}

#[tokio::test]
async fn open_rejects_invalid_configuration() {
    let cases = [
        StoreKind::Redis {
            url: "redis://127.0.0.1:6379/".into(),
            key: "session:".into(),
        },
        StoreKind::Redis {
            url: "nonsense".into(),
            key: "session:{id}".into(),
        },
        StoreKind::Postgres {
            url: "postgres://postgres@127.0.0.1:5432/test".into(),
            table: JdbcTable {
                table: "tomcat_sessions; DROP TABLE x".into(),
                ..JdbcTable::default()
            },
        },
        StoreKind::Mysql {
            url: "postgres://postgres@127.0.0.1:5432/test".into(),
            table: JdbcTable::default(),
        },
        StoreKind::Http {
            url: "https://127.0.0.1/rename".into(),
            app: None,
        },
    ];
    for kind in cases {
        let result = SessionStore::open(&config(kind.clone()));
        assert!(
            matches!(result, Err(StoreError::InvalidConfig(_))),
            "{kind:?}: {result:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Unreachable services: `open` works, operations fail within the deadline

/// `open` succeeds, and `rename` (and for data stores `load`) fails instead of hanging.
async fn assert_fails_fast(kind: StoreKind) {
    let cfg = StoreConfig {
        timeout: Duration::from_secs(1),
        ..config(kind.clone())
    };
    let store = SessionStore::open(&cfg).unwrap_or_else(|e| panic!("{kind:?}: open: {e}"));
    for attempt in 0..2 {
        let result = within("rename", store.rename("U.jvm1", "U.jvm2")).await;
        let error = result.expect_err("rename on an unreachable store");
        assert!(
            matches!(
                error,
                StoreError::Unavailable(_) | StoreError::Timeout { op: "rename", .. }
            ),
            "{kind:?} attempt {attempt}: {error:?}"
        );
    }
    if !matches!(kind, StoreKind::Http { .. }) {
        let error = within("load", store.load("U.jvm1"))
            .await
            .expect_err("load");
        assert!(
            matches!(
                error,
                StoreError::Unavailable(_) | StoreError::Timeout { op: "load", .. }
            ),
            "{kind:?}: {error:?}"
        );
    }
}

/// A TCP listener that accepts connections and never answers.
async fn black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[tokio::test]
async fn refused_connections_fail_each_kind() {
    let kinds = [
        StoreKind::Redis {
            url: "redis://127.0.0.1:1/".into(),
            key: "s:{id}".into(),
        },
        StoreKind::Postgres {
            url: "postgres://postgres@127.0.0.1:1/test".into(),
            table: JdbcTable::default(),
        },
        StoreKind::Mysql {
            url: "mysql://root@127.0.0.1:1/test".into(),
            table: JdbcTable::default(),
        },
        StoreKind::Http {
            url: "http://127.0.0.1:1/rename".into(),
            app: None,
        },
    ];
    futures_util::future::join_all(kinds.into_iter().map(assert_fails_fast)).await;
}

#[tokio::test]
async fn silent_services_time_out_each_kind() {
    let addr = black_hole().await;
    let kinds = [
        StoreKind::Redis {
            url: format!("redis://{addr}/"),
            key: "s:{id}".into(),
        },
        StoreKind::Postgres {
            url: format!("postgres://postgres@{addr}/test"),
            table: JdbcTable::default(),
        },
        StoreKind::Mysql {
            url: format!("mysql://root@{addr}/test"),
            table: JdbcTable::default(),
        },
        StoreKind::Http {
            url: format!("http://{addr}/rename"),
            app: None,
        },
    ];
    futures_util::future::join_all(kinds.into_iter().map(assert_fails_fast)).await;
}

// ---------------------------------------------------------------------------------------------
// The HTTP rename hook

/// What the fake hook received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: Option<String>,
    body: serde_json::Value,
}

/// A rename hook on `127.0.0.1:0` that records each request and answers `status`.
struct FakeHook {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl FakeHook {
    async fn start() -> FakeHook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = FakeHook {
            addr: listener.local_addr().unwrap(),
            status: Arc::new(AtomicU16::new(200)),
            received: Arc::default(),
        };
        let (status, received) = (hook.status.clone(), hook.received.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (status, received) = (status.clone(), received.clone());
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (status, received) = (status.clone(), received.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect().await.unwrap().to_bytes();
                        received.lock().unwrap().push(Received {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_owned(),
                            content_type: parts
                                .headers
                                .get(hyper::header::CONTENT_TYPE)
                                .map(|v| v.to_str().unwrap().to_owned()),
                            body: serde_json::from_slice(&bytes).unwrap_or(json!(null)),
                        });
                        let code = StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
                        let mut response = Response::new(Full::new(Bytes::from("hook says no")));
                        *response.status_mut() = code;
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        hook
    }

    fn store(&self, app: Option<&str>) -> SessionStore {
        SessionStore::open(&config(StoreKind::Http {
            url: format!("http://{}/hooks/rename", self.addr),
            app: app.map(str::to_owned),
        }))
        .unwrap()
    }

    fn answer(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

#[tokio::test]
async fn http_hook_receives_the_rename_as_json() {
    let hook = FakeHook::start().await;
    let store = hook.store(Some("/shop"));
    assert_eq!(store.kind_name(), "http");
    let outcome = within("rename", store.rename("X.jvm1", "X.jvm2"))
        .await
        .unwrap();
    assert_eq!(outcome, RenameOutcome::Renamed);
    let received = hook.take();
    assert_eq!(received.len(), 1, "{received:?}");
    let got = &received[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/hooks/rename");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        got.body,
        json!({ "old": "X.jvm1", "new": "X.jvm2", "app": "/shop" })
    );

    let without_app = hook.store(None);
    within("rename", without_app.rename("Y.jvm1", "Y.jvm3"))
        .await
        .unwrap();
    assert_eq!(
        hook.take()[0].body,
        json!({ "old": "Y.jvm1", "new": "Y.jvm3", "app": null })
    );
}

#[tokio::test]
async fn http_hook_status_decides_the_outcome() {
    let hook = FakeHook::start().await;
    let store = hook.store(None);
    let cases = [
        (200, Ok(RenameOutcome::Renamed)),
        (204, Ok(RenameOutcome::Renamed)),
        (409, Ok(RenameOutcome::AlreadyRenamed)),
        (404, Ok(RenameOutcome::NotFound)),
        (500, Err("500")),
        (503, Err("503")),
    ];
    for (code, want) in cases {
        hook.answer(code);
        let got = within("rename", store.rename("X.jvm1", "X.jvm2")).await;
        match (got, want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{code}"),
            (Err(StoreError::Backend(message)), Err(status)) => {
                assert!(message.contains(status), "{code}: {message}");
                assert!(message.contains("hook says no"), "{code}: {message}");
            }
            (got, want) => panic!("{code}: got {got:?}, want {want:?}"),
        }
    }
    // Exactly one request per rename (no retries).
    assert_eq!(hook.take().len(), cases.len());
}

#[tokio::test]
async fn http_hook_unreachable_is_unavailable() {
    let store = SessionStore::open(&config(StoreKind::Http {
        url: "http://127.0.0.1:1/rename".into(),
        app: None,
    }))
    .unwrap();
    let error = within("rename", store.rename("X.jvm1", "X.jvm2"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

// ---------------------------------------------------------------------------------------------
// Recovery: a store whose service went away and came back works again

/// A TCP proxy on `127.0.0.1:0` to `upstream` that can be cut (open connections dropped, new
/// ones closed at once) and restored, to play a service outage.
struct CuttableProxy {
    addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = CuttableProxy {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            connections: Arc::default(),
        };
        let (up, connections) = (proxy.up.clone(), proxy.connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().unwrap().push(task.abort_handle());
            }
        });
        proxy
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `host:port` of a service URL such as `redis://127.0.0.1:6379/` or `postgres://u@h:5432/db`.
fn host_port(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    let user = authority.strip_suffix(host_port).unwrap_or("");
    (host_port.to_owned(), format!("{scheme}://{user}"))
}

/// Save through the proxy, cut it (operations fail), restore it: the next operation succeeds.
/// `kind` makes the store configuration from the proxied URL.
async fn recovers_after_outage(url: &str, kind: impl Fn(String) -> StoreKind) {
    let (upstream, scheme_user) = host_port(url);
    let path = url
        .split_once("://")
        .unwrap()
        .1
        .split_once('/')
        .map_or("", |(_, p)| p);
    let proxy = CuttableProxy::start(upstream).await;
    let cfg = StoreConfig {
        timeout: Duration::from_secs(2),
        ..config(kind(format!("{scheme_user}{}/{path}", proxy.addr)))
    };
    let store = SessionStore::open(&cfg).unwrap();
    within("ensure_schema", store.ensure_schema())
        .await
        .unwrap();
    let (old, new) = (format!("{}.jvm1", unique()), format!("{}.jvm2", unique()));
    let rec = record("hal");
    within("save", store.save(&old, &rec)).await.unwrap();

    proxy.cut();
    let error = within("rename", store.rename(&old, &new))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Unavailable(_) | StoreError::Timeout { .. }
        ),
        "{error:?}"
    );

    proxy.restore();
    let outcome = within("rename", store.rename(&old, &new)).await;
    assert_eq!(outcome.unwrap(), RenameOutcome::Renamed);
    assert_eq!(within("load", store.load(&new)).await.unwrap(), Some(rec));
    within("remove", store.remove(&new)).await.unwrap();
}

#[tokio::test]
async fn redis_recovers_after_an_outage() {
    let Some(url) = service_url("redis_recovers_after_an_outage", "TEST_REDIS_URL") else {
        return;
    };
    let key = format!("stickyroute-test:{}:{{id}}", unique());
    recovers_after_outage(&url, |url| StoreKind::Redis {
        url,
        key: key.clone(),
    })
    .await;
}

/// The SQL variant: a table of its own, dropped afterwards.
async fn sql_recovers_after_outage(url: String, mysql: bool) {
    let table = JdbcTable {
        table: format!("tomcat_sessions_{}", unique()),
        ..JdbcTable::default()
    };
    let name = table.table.clone();
    recovers_after_outage(&url, |url| {
        let table = table.clone();
        if mysql {
            StoreKind::Mysql { url, table }
        } else {
            StoreKind::Postgres { url, table }
        }
    })
    .await;
    let cleanup = Fixture {
        cfg: config(StoreKind::Memory),
        store: SessionStore::memory(),
        prefix: String::new(),
        table: Some(SqlTable { url, name, mysql }),
    };
    cleanup.finish().await;
}

#[tokio::test]
async fn postgres_recovers_after_an_outage() {
    if let Some(url) = service_url("postgres_recovers_after_an_outage", "TEST_POSTGRES_URL") {
        sql_recovers_after_outage(url, false).await;
    }
}

#[tokio::test]
async fn mysql_recovers_after_an_outage() {
    if let Some(url) = service_url("mysql_recovers_after_an_outage", "TEST_MYSQL_URL") {
        sql_recovers_after_outage(url, true).await;
    }
}
