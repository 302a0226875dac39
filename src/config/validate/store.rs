//! `pools[].store`: which session store the `rename` binder uses, where it is, and Tomcat's
//! JDBCStore table and column names for the SQL ones.

use crate::config::locator::ConfigError;
use crate::config::raw::{RawOnStoreError, RawStore, RawStoreKind};
use crate::config::store::{self, JdbcTable, OnStoreError, StoreConfig, StoreKind};

use super::Ctx;

/// One pool's `store:`; `key` is `pools[i].store`.
pub(super) fn validate_store(
    s: &RawStore,
    key: &str,
    ctx: &Ctx,
) -> Result<StoreConfig, ConfigError> {
    check_compiled_in(s.kind, key, ctx)?;
    let kind = store_kind(s, key, ctx)?;
    if let StoreKind::Postgres { table, .. } | StoreKind::Mysql { table, .. } = &kind {
        check_sql_identifiers(table, key, ctx)?;
    }
    if s.timeout.is_zero() {
        return Err(ctx.err(format!("{key}.timeout"), "must not be zero"));
    }
    if s.pool_size == 0 {
        return Err(ctx.err(format!("{key}.pool_size"), "must be at least 1"));
    }
    if s.negative_ttl > store::MAX_NEGATIVE_TTL {
        return Err(ctx.err(
            format!("{key}.negative_ttl"),
            "must be at most 1m (0s turns the cache off)",
        ));
    }
    Ok(StoreConfig {
        kind,
        timeout: s.timeout,
        pool_size: s.pool_size,
        on_error: match s.on_store_error {
            RawOnStoreError::ForwardOldId => OnStoreError::ForwardOldId,
            RawOnStoreError::Fail => OnStoreError::Fail,
        },
        negative_ttl: s.negative_ttl,
    })
}

/// A store kind whose cargo feature this build lacks is an error naming `kind`.
fn check_compiled_in(kind: RawStoreKind, key: &str, ctx: &Ctx) -> Result<(), ConfigError> {
    let missing = match kind {
        RawStoreKind::Redis if !cfg!(feature = "redis-store") => Some(("redis", "redis-store")),
        RawStoreKind::Postgres if !cfg!(feature = "sql-store") => Some(("postgres", "sql-store")),
        RawStoreKind::Mysql if !cfg!(feature = "sql-store") => Some(("mysql", "sql-store")),
        _ => None,
    };
    match missing {
        None => Ok(()),
        Some((kind, feature)) => Err(ctx.err(
            format!("{key}.kind"),
            format!(
                "store kind {kind} needs the cargo feature {feature:?}, which this build of \
                 stickyroute was compiled without"
            ),
        )),
    }
}

/// The kind with its address: the URL (of a scheme that fits the kind), the Redis key pattern,
/// the SQL table.
fn store_kind(s: &RawStore, key: &str, ctx: &Ctx) -> Result<StoreKind, ConfigError> {
    let url = |schemes: &[&str]| store_url(s, schemes, key, ctx);
    Ok(match s.kind {
        RawStoreKind::Memory => StoreKind::Memory,
        RawStoreKind::Redis => {
            let key_pattern = s.key.clone().unwrap_or_else(|| "session:{id}".into());
            if !key_pattern.contains("{id}") {
                return Err(ctx.err(format!("{key}.key"), "key pattern must contain {id}"));
            }
            StoreKind::Redis {
                url: url(&["redis", "rediss"])?,
                key: key_pattern,
            }
        }
        RawStoreKind::Postgres => StoreKind::Postgres {
            url: url(&["postgres", "postgresql"])?,
            table: jdbc_table(s),
        },
        RawStoreKind::Mysql => StoreKind::Mysql {
            url: url(&["mysql", "mariadb"])?,
            table: jdbc_table(s),
        },
        RawStoreKind::Http => StoreKind::Http {
            url: url(&["http"])?,
            app: s.app_name.clone(),
        },
    })
}

/// `store.url`, required, starting with one of `schemes` and `://`.
fn store_url(s: &RawStore, schemes: &[&str], key: &str, ctx: &Ctx) -> Result<String, ConfigError> {
    let url = s
        .url
        .clone()
        .ok_or_else(|| ctx.err(format!("{key}.url"), "this store kind needs a url"))?;
    if !schemes
        .iter()
        .any(|sc| url.starts_with(&format!("{sc}://")))
    {
        return Err(ctx.err(
            format!("{key}.url"),
            format!("url must start with {}://", schemes.join(":// or ")),
        ));
    }
    Ok(url)
}

/// The table and column names, Tomcat's defaults ([`JdbcTable::default`]) where the file gives
/// none.
fn jdbc_table(s: &RawStore) -> JdbcTable {
    let d = JdbcTable::default();
    let or = |v: &Option<String>, default: String| v.clone().unwrap_or(default);
    JdbcTable {
        table: or(&s.session_table, d.table),
        id_col: or(&s.session_id_col, d.id_col),
        app_col: or(&s.session_app_col, d.app_col),
        data_col: or(&s.session_data_col, d.data_col),
        valid_col: or(&s.session_valid_col, d.valid_col),
        max_inactive_col: or(&s.session_max_inactive_col, d.max_inactive_col),
        last_access_col: or(&s.session_last_accessed_col, d.last_access_col),
        app_name: s.app_name.clone(),
    }
}

/// Every table and column name is a plain SQL identifier: they are written into queries.
fn check_sql_identifiers(table: &JdbcTable, key: &str, ctx: &Ctx) -> Result<(), ConfigError> {
    let names = [
        ("sessionTable", &table.table),
        ("sessionIdCol", &table.id_col),
        ("sessionAppCol", &table.app_col),
        ("sessionDataCol", &table.data_col),
        ("sessionValidCol", &table.valid_col),
        ("sessionMaxInactiveCol", &table.max_inactive_col),
        ("sessionLastAccessedCol", &table.last_access_col),
    ];
    for (name, value) in names {
        if !store::is_sql_identifier(value) {
            return Err(ctx.err(
                format!("{key}.{name}"),
                format!("{value:?} is not a plain SQL identifier"),
            ));
        }
    }
    Ok(())
}
