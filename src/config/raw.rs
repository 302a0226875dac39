//! The YAML as serde reads it: one struct per section, unknown keys refused
//! (`deny_unknown_fields`), defaults filled in. Nothing here is checked beyond its type;
//! `validate` turns these into the types of `types`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use super::store;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) listeners: Vec<RawListener>,
    #[serde(default)]
    pub(super) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(super) session: RawSession,
    #[serde(default)]
    pub(super) registry: RawRegistry,
    #[serde(default)]
    pub(super) pools: Vec<RawPool>,
    #[serde(default)]
    pub(super) cluster: Option<RawCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    #[serde(default)]
    pub(super) redis: Option<String>,
    pub(super) name: String,
    #[serde(default)]
    pub(super) instance: Option<String>,
    #[serde(default = "default_cluster_heartbeat", with = "duration")]
    pub(super) heartbeat: Duration,
    #[serde(default = "default_cluster_timeout", with = "duration")]
    pub(super) timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) bind: String,
    #[serde(default)]
    pub(super) tls: Option<RawTls>,
    #[serde(default = "default_max_connections")]
    pub(super) max_connections: usize,
    #[serde(default = "default_header_read_timeout", with = "duration")]
    pub(super) header_read_timeout: Duration,
    #[serde(default = "default_keepalive_timeout", with = "duration")]
    pub(super) keepalive_timeout: Duration,
    #[serde(default = "default_max_header_bytes")]
    pub(super) max_header_bytes: usize,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
    #[serde(default)]
    pub(super) max_body_bytes: Option<u64>,
    #[serde(default = "default_tunnel_idle_timeout", with = "duration")]
    pub(super) tunnel_idle_timeout: Duration,
    #[serde(default)]
    pub(super) h2: RawH2,
    #[serde(default)]
    pub(super) protocols: Option<Vec<RawListenerProtocol>>,
}

/// One entry of `listeners[].protocols`.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawListenerProtocol {
    #[serde(rename = "http1")]
    Http1,
    #[serde(rename = "h2")]
    H2,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawH2 {
    pub(super) max_concurrent_streams: Option<u32>,
    /// `None`: the listener's `max_header_bytes`.
    pub(super) max_header_list_size: Option<u32>,
    pub(super) max_reset_streams: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    #[serde(default)]
    pub(super) client_ca: Option<PathBuf>,
    #[serde(default)]
    pub(super) client_auth: Option<RawClientAuth>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawClientAuth {
    Optional,
    Required,
}

/// `http` (the default) or `ajp`, for a pool's nodes or one node.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawProtocol {
    #[default]
    Http,
    Ajp,
}

/// `pools[].ajp` and `nodes[].ajp`: every key optional, so a node's block can be merged over
/// its pool's key by key.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAjp {
    pub(super) secret: Option<String>,
    pub(super) secret_env: Option<String>,
    pub(super) secret_required: Option<bool>,
    pub(super) packet_size: Option<u32>,
    /// A duration, read in validation so that its error names the key.
    pub(super) ping_after: Option<String>,
}

impl RawAjp {
    /// `self`'s keys over `base`'s. A node giving either secret key replaces both of the
    /// pool's.
    pub(super) fn merged_over(&self, base: &RawAjp) -> RawAjp {
        let own_secret = self.secret.is_some() || self.secret_env.is_some();
        RawAjp {
            secret: if own_secret {
                self.secret.clone()
            } else {
                base.secret.clone()
            },
            secret_env: if own_secret {
                self.secret_env.clone()
            } else {
                base.secret_env.clone()
            },
            secret_required: self.secret_required.or(base.secret_required),
            packet_size: self.packet_size.or(base.packet_size),
            ping_after: self.ping_after.clone().or_else(|| base.ping_after.clone()),
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawHealthKind {
    Http,
    Cping,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    #[serde(default = "default_admin_bind")]
    pub(super) bind: String,
    #[serde(default)]
    pub(super) token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSession {
    pub(super) cookies: Vec<String>,
    pub(super) path_param: Option<String>,
    pub(super) separator: String,
    #[serde(with = "duration")]
    pub(super) idle_timeout: Duration,
}

impl Default for RawSession {
    fn default() -> Self {
        RawSession {
            cookies: vec!["JSESSIONID".into()],
            path_param: Some("jsessionid".into()),
            separator: ".".into(),
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRegistry {
    pub(super) max_sessions: usize,
}

impl Default for RawRegistry {
    fn default() -> Self {
        RawRegistry {
            max_sessions: 1_000_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) name: String,
    #[serde(default)]
    pub(super) hosts: Vec<String>,
    #[serde(default = "default_path_prefix")]
    pub(super) path_prefix: String,
    #[serde(default)]
    pub(super) binder: RawBinder,
    #[serde(default)]
    pub(super) balance: RawBalance,
    #[serde(default)]
    pub(super) failover: RawFailover,
    #[serde(default)]
    pub(super) timeouts: RawTimeouts,
    #[serde(default)]
    pub(super) cookie: RawCookie,
    #[serde(default)]
    pub(super) store: Option<RawStore>,
    #[serde(default)]
    pub(super) health: Option<RawHealth>,
    #[serde(default)]
    pub(super) fail_on_status: Vec<u16>,
    /// The default of `nodes[].max_connections`.
    #[serde(default)]
    pub(super) max_connections_per_node: Option<u32>,
    #[serde(default = "default_max_queue_per_node")]
    pub(super) max_queue_per_node: u32,
    #[serde(default)]
    pub(super) protocol: RawProtocol,
    #[serde(default)]
    pub(super) ajp: Option<RawAjp>,
    #[serde(default)]
    pub(super) nodes: Vec<RawNode>,
    #[serde(default)]
    pub(super) discovery: Option<RawDiscovery>,
}

/// `pools[].discovery`: nodes from DNS, besides (or instead of) `nodes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    #[serde(default)]
    pub(super) srv: Option<String>,
    #[serde(default)]
    pub(super) host: Option<String>,
    #[serde(default)]
    pub(super) port: Option<u16>,
    #[serde(default)]
    pub(super) resolver: Option<String>,
    #[serde(default = "default_discovery_route")]
    pub(super) route: String,
    #[serde(default = "default_discovery_min_interval", with = "duration")]
    pub(super) min_interval: Duration,
    #[serde(default = "default_discovery_max_interval", with = "duration")]
    pub(super) max_interval: Duration,
    #[serde(default = "default_discovery_drain_timeout", with = "duration")]
    pub(super) drain_timeout: Duration,
    #[serde(default = "default_discovery_empty_grace", with = "duration")]
    pub(super) empty_grace: Duration,
    #[serde(default = "default_weight")]
    pub(super) weight: u32,
    #[serde(default)]
    pub(super) domain: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawBinder {
    #[default]
    Translate,
    Rename,
    Backend,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawBalance {
    #[default]
    P2c,
    RoundRobin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFailover {
    pub(super) cross_domain: bool,
    pub(super) max_attempts: usize,
    #[serde(with = "duration")]
    pub(super) recover_after: Duration,
    pub(super) retry_idempotent: bool,
    pub(super) header: String,
}

impl Default for RawFailover {
    fn default() -> Self {
        RawFailover {
            cross_domain: false,
            max_attempts: 3,
            recover_after: Duration::from_secs(10),
            retry_idempotent: true,
            header: "X-Session-Failover-From".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawTimeouts {
    #[serde(with = "duration")]
    pub(super) connect: Duration,
    #[serde(with = "duration")]
    pub(super) response: Duration,
    #[serde(with = "duration")]
    pub(super) body_idle: Duration,
    #[serde(with = "duration")]
    pub(super) idle: Duration,
    #[serde(with = "duration")]
    pub(super) queue: Duration,
}

impl Default for RawTimeouts {
    fn default() -> Self {
        RawTimeouts {
            connect: Duration::from_secs(2),
            response: Duration::from_secs(60),
            body_idle: Duration::from_secs(60),
            // Below Tomcat's default keepAliveTimeout (20 s), so the balancer closes an idle
            // connection before the node does (the keep-alive race).
            idle: Duration::from_secs(15),
            // HAProxy's `timeout queue` is often a few seconds; a second keeps a busy node's
            // clients from piling up while it lets a short burst through.
            queue: Duration::from_secs(1),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawCookie {
    /// Until the nodes' own cookie is seen; `None`: `/`.
    pub(super) path: Option<String>,
    pub(super) http_only: bool,
    pub(super) same_site: Option<RawSameSite>,
}

impl Default for RawCookie {
    fn default() -> Self {
        RawCookie {
            path: None,
            http_only: true,
            same_site: None,
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawSameSite {
    Strict,
    Lax,
    None,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawStoreKind {
    Memory,
    Redis,
    Postgres,
    Mysql,
    Http,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawOnStoreError {
    #[default]
    ForwardOldId,
    Fail,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) kind: RawStoreKind,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) key: Option<String>,
    #[serde(default, rename = "sessionTable")]
    pub(super) session_table: Option<String>,
    #[serde(default, rename = "sessionIdCol")]
    pub(super) session_id_col: Option<String>,
    #[serde(default, rename = "sessionAppCol")]
    pub(super) session_app_col: Option<String>,
    #[serde(default, rename = "sessionDataCol")]
    pub(super) session_data_col: Option<String>,
    #[serde(default, rename = "sessionValidCol")]
    pub(super) session_valid_col: Option<String>,
    #[serde(default, rename = "sessionMaxInactiveCol")]
    pub(super) session_max_inactive_col: Option<String>,
    #[serde(default, rename = "sessionLastAccessedCol")]
    pub(super) session_last_accessed_col: Option<String>,
    #[serde(default)]
    pub(super) app_name: Option<String>,
    #[serde(default = "default_store_timeout", with = "duration")]
    pub(super) timeout: Duration,
    #[serde(default = "default_store_pool_size")]
    pub(super) pool_size: u32,
    #[serde(default)]
    pub(super) on_store_error: RawOnStoreError,
    #[serde(default = "default_negative_ttl", with = "duration")]
    pub(super) negative_ttl: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    /// Default: `cping` for AJP nodes, `http` for the others.
    #[serde(default)]
    pub(super) kind: Option<RawHealthKind>,
    /// Required when some node is checked over `http`.
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default = "default_health_interval", with = "duration")]
    pub(super) interval: Duration,
    #[serde(default = "default_health_timeout", with = "duration")]
    pub(super) timeout: Duration,
    #[serde(default = "default_rise")]
    pub(super) rise: u32,
    #[serde(default = "default_fall")]
    pub(super) fall: u32,
    #[serde(default)]
    pub(super) expect_status: Vec<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) route: String,
    pub(super) address: String,
    #[serde(default = "default_weight")]
    pub(super) weight: u32,
    #[serde(default)]
    pub(super) domain: Option<String>,
    #[serde(default)]
    pub(super) redirect: Option<String>,
    #[serde(default)]
    pub(super) state: RawNodeState,
    #[serde(default)]
    pub(super) max_connections: Option<u32>,
    /// Overrides the pool's `protocol`.
    #[serde(default)]
    pub(super) protocol: Option<RawProtocol>,
    /// Merged over the pool's `ajp`, key by key.
    #[serde(default)]
    pub(super) ajp: Option<RawAjp>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawNodeState {
    #[default]
    Active,
    Draining,
    Disabled,
    Standby,
}

fn default_admin_bind() -> String {
    "127.0.0.1:9901".into()
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_queue_per_node() -> u32 {
    1000
}
fn default_tunnel_idle_timeout() -> Duration {
    Duration::from_secs(60 * 60)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
/// `listeners[].keepalive_timeout` by default, as nginx's `keepalive_timeout`.
fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(75)
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_path_prefix() -> String {
    "/".into()
}
fn default_store_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_store_pool_size() -> u32 {
    8
}
fn default_negative_ttl() -> Duration {
    store::DEFAULT_NEGATIVE_TTL
}
fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}
fn default_weight() -> u32 {
    1
}
fn default_discovery_route() -> String {
    "first_label".into()
}
fn default_discovery_min_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_discovery_max_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_discovery_drain_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_discovery_empty_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_cluster_heartbeat() -> Duration {
    Duration::from_secs(1)
}
fn default_cluster_timeout() -> Duration {
    Duration::from_secs(1)
}
