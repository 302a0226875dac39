//! `balancer.yaml`: parsing and validation.
//!
//! Two layers: raw serde structs (`deny_unknown_fields`, defaults) read the YAML, then
//! [`Config::from_yaml`] validates them into typed values (`SocketAddr`, `Duration`, enums).
//! Every error names the file, the line and the key: serde errors carry a location and, through
//! `serde_path_to_error`, the key path; validation errors find their key's line with
//! [`KeyLocator`], which walks the YAML events once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cookie::SameSite;
use http::HeaderName;
use serde::Deserialize;

use crate::core::binder::BinderKind;
use crate::core::cookie::CookieDefaults;
use crate::core::forwarding::{Cidr, TrustedProxies};
use crate::core::node_state::NodeState;
pub use crate::core::select::BalanceKind;
use crate::core::session::SessionSettings;
pub mod store;

use self::store::{JdbcTable, OnStoreError, StoreConfig, StoreKind};

/// A configuration error: where, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path such as `pools[0].nodes[1].weight`; empty for the document itself.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages and reload).
    pub source: String,
    pub listeners: Vec<ListenerConfig>,
    pub admin: Option<AdminConfig>,
    pub session: SessionConfig,
    pub registry: RegistryConfig,
    pub pools: Vec<PoolConfig>,
    /// `cluster:`: share operator states and session counts with other instances.
    pub cluster: Option<ClusterConfig>,
}

/// Environment variable that provides (or overrides) `admin.token`.
pub const ADMIN_TOKEN_ENV: &str = "STICKYROUTE_ADMIN_TOKEN";

/// Environment variable that provides (or overrides) `cluster.redis`.
pub const CLUSTER_REDIS_ENV: &str = "STICKYROUTE_CLUSTER_REDIS";

/// The `cluster:` section: instances with the same `name` on one Redis form a group that shares
/// operator states (drain, disable, activate, standby) and live-session counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port/db`; `None` when only [`CLUSTER_REDIS_ENV`] may give
    /// it (see [`ClusterConfig::redis_url`]).
    pub redis: Option<String>,
    /// The group's name; also the prefix of its Redis keys (`stickyroute:{name}:…`).
    pub name: String,
    /// This instance's id in the group; `None`: `hostname-pid`, chosen at start.
    pub instance: Option<String>,
    /// How often this instance publishes its counts and re-reads the group's states; an
    /// instance unheard of for 3 heartbeats is no longer alive.
    pub heartbeat: Duration,
    /// Deadline for one Redis operation (connect included).
    pub timeout: Duration,
    /// Where the section is written (for errors found after parsing).
    pub file: String,
    pub line: Option<usize>,
}

impl ClusterConfig {
    /// The Redis URL, or the error naming the key when neither the file nor
    /// [`CLUSTER_REDIS_ENV`] gave one.
    pub fn redis_url(&self) -> Result<&str, ConfigError> {
        self.redis.as_deref().ok_or_else(|| ConfigError {
            file: self.file.clone(),
            line: self.line,
            key: "cluster.redis".into(),
            message: format!("no Redis URL: set cluster.redis or {CLUSTER_REDIS_ENV}"),
        })
    }

    /// Whether `other` describes the same group membership (what a reload may not change).
    pub fn same_settings(&self, other: &ClusterConfig) -> bool {
        (
            &self.redis,
            &self.name,
            &self.instance,
            self.heartbeat,
            self.timeout,
        ) == (
            &other.redis,
            &other.name,
            &other.instance,
            other.heartbeat,
            other.timeout,
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub bind: SocketAddr,
    pub tls: Option<TlsConfig>,
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Once the first byte of a request head arrived, the rest of the head must arrive within
    /// this time (slow-client guard). The wait for that first byte is `keepalive_timeout`.
    pub header_read_timeout: Duration,
    /// An idle keep-alive client connection (HTTP/1.1 between requests, HTTP/2 with no open
    /// stream) is closed after this long (HAProxy's `timeout http-keep-alive`).
    pub keepalive_timeout: Duration,
    /// Largest request head accepted; larger ones get `431`.
    pub max_header_bytes: usize,
    /// Peers whose `X-Forwarded-For` / `Forwarded` are extended; from anyone else they are
    /// replaced by what the balancer saw. Empty (the default): nobody is trusted.
    pub trusted_proxies: TrustedProxies,
    /// Largest request body accepted, in bytes; larger ones get `413`. `None`: unlimited.
    pub max_body_bytes: Option<u64>,
    /// An upgraded connection (WebSocket) with no byte in either direction for this long is
    /// closed.
    pub tunnel_idle_timeout: Duration,
    /// HTTP/2 limits (h2 by ALPN on TLS, h2c by prior knowledge).
    pub h2: H2Limits,
}

/// `listeners[].h2`: what one HTTP/2 client connection may ask of the balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Limits {
    /// Streams (requests) open at once on one connection, advertised in `SETTINGS`; a client
    /// that opens more has them refused.
    pub max_concurrent_streams: u32,
    /// Largest header list of a request (`SETTINGS_MAX_HEADER_LIST_SIZE`: names, values and
    /// 32 bytes per field, decoded), in bytes; a larger one gets `431`.
    pub max_header_list_size: u32,
    /// Streams a client may reset before their response began, beyond those it let finish
    /// (rapid reset, CVE-2023-44487): one more and the connection is closed with `GOAWAY`.
    pub max_reset_streams: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    /// Bearer token required for changes (and, off loopback, for reads); `None`: the API is
    /// open, which [`Config::check_admin_exposure`] allows on loopback only.
    pub token: Option<String>,
    /// Line of the `admin:` section, for errors found after parsing (the token may come from
    /// the environment).
    pub line: Option<usize>,
}

impl AdminConfig {
    /// Whether the listener is bound to a loopback address (`127.0.0.0/8`, `::1`, or an
    /// IPv4-mapped loopback): only local processes reach it. `0.0.0.0` and `::` are not.
    pub fn on_loopback(&self) -> bool {
        self.bind.ip().to_canonical().is_loopback()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub settings: SessionSettings,
    /// A session unseen for this long is forgotten by the registry (Tomcat default: 30 min).
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    pub max_sessions: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverConfig {
    /// Allow failover into another domain when the session's domain has no node up.
    pub cross_domain: bool,
    /// Nodes tried for one request (connect failures move to the next candidate).
    pub max_attempts: usize,
    /// A node marked down by a passive failure is retried after this long.
    pub recover_after: Duration,
    /// Retry idempotent requests without a body on another node after a failure past sending.
    pub retry_idempotent: bool,
    /// Request header naming the original id and route on a failed-over request.
    pub header: HeaderName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// From the end of the request body until the response head arrives.
    pub response: Duration,
    /// The longest gap between two reads of a body (the node's response, the client's
    /// upload) or two writes of one (to a client that does not read, to a node that does not
    /// take the upload).
    pub body_idle: Duration,
    /// An idle pooled upstream connection is closed after this long.
    pub idle: Duration,
    /// How long a request waits for a node at its `max_connections` before a `503`.
    pub queue: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Accepted statuses; empty means any 2xx.
    pub expect_status: Vec<u16>,
}

/// Where a node listens: a literal socket address, or `host:port` looked up each time a new
/// connection is opened (so a container that comes back with a new IP is found without a
/// reload, and a config naming compose services validates on any machine).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeAddr {
    Socket(SocketAddr),
    Host { host: String, port: u16 },
}

impl NodeAddr {
    /// Parses `ip:port`, `[v6]:port` or `host:port` (no lookup).
    pub fn parse(text: &str) -> Result<NodeAddr, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(NodeAddr::Socket(addr));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("address {text:?} needs a port (host:port)"));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid address {text:?}: bad port {port:?}"))?;
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !host_ok {
            return Err(format!("invalid address {text:?}: bad host name {host:?}"));
        }
        Ok(NodeAddr::Host {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeAddr::Socket(a) => write!(f, "{a}"),
            NodeAddr::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub route: String,
    /// As written (host:port).
    pub address: String,
    pub addr: NodeAddr,
    pub weight: u32,
    /// Replication domain; nodes without one share the default domain `""`.
    pub domain: String,
    pub redirect: Option<String>,
    pub state: NodeState,
    /// Requests the balancer has open on this node at once (each holds one connection to
    /// it; idle pooled connections are not counted); more wait in the node's queue. `None`:
    /// unlimited.
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    /// Lower-case host names without port; empty matches every host.
    pub hosts: Vec<String>,
    pub path_prefix: String,
    pub binder: BinderKind,
    pub balance: BalanceKind,
    pub failover: FailoverConfig,
    pub timeouts: Timeouts,
    pub cookie: CookieDefaults,
    pub store: Option<StoreConfig>,
    pub health: Option<HealthConfig>,
    /// Response statuses that count as a passive failure of the node.
    pub fail_on_status: Vec<u16>,
    /// Requests that may wait for one node at its `max_connections`; more get `503` at once.
    pub max_queue_per_node: u32,
    pub nodes: Vec<NodeConfig>,
}

// ---------------------------------------------------------------------------------------------
// Raw layer

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listeners: Vec<RawListener>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    registry: RawRegistry,
    #[serde(default)]
    pools: Vec<RawPool>,
    #[serde(default)]
    cluster: Option<RawCluster>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default)]
    redis: Option<String>,
    name: String,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default = "default_cluster_heartbeat", with = "duration")]
    heartbeat: Duration,
    #[serde(default = "default_cluster_timeout", with = "duration")]
    timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    bind: String,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_header_read_timeout", with = "duration")]
    header_read_timeout: Duration,
    #[serde(default = "default_keepalive_timeout", with = "duration")]
    keepalive_timeout: Duration,
    #[serde(default = "default_max_header_bytes")]
    max_header_bytes: usize,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    max_body_bytes: Option<u64>,
    #[serde(default = "default_tunnel_idle_timeout", with = "duration")]
    tunnel_idle_timeout: Duration,
    #[serde(default)]
    h2: RawH2,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawH2 {
    max_concurrent_streams: Option<u32>,
    /// `None`: the listener's `max_header_bytes`.
    max_header_list_size: Option<u32>,
    max_reset_streams: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default = "default_admin_bind")]
    bind: String,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSession {
    cookies: Vec<String>,
    path_param: Option<String>,
    separator: String,
    #[serde(with = "duration")]
    idle_timeout: Duration,
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
struct RawRegistry {
    max_sessions: usize,
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
struct RawPool {
    name: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default = "default_path_prefix")]
    path_prefix: String,
    #[serde(default)]
    binder: RawBinder,
    #[serde(default)]
    balance: RawBalance,
    #[serde(default)]
    failover: RawFailover,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    cookie: RawCookie,
    #[serde(default)]
    store: Option<RawStore>,
    #[serde(default)]
    health: Option<RawHealth>,
    #[serde(default)]
    fail_on_status: Vec<u16>,
    /// The default of `nodes[].max_connections`.
    #[serde(default)]
    max_connections_per_node: Option<u32>,
    #[serde(default = "default_max_queue_per_node")]
    max_queue_per_node: u32,
    #[serde(default)]
    nodes: Vec<RawNode>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawBinder {
    #[default]
    Translate,
    Rename,
    Backend,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawBalance {
    #[default]
    P2c,
    RoundRobin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFailover {
    cross_domain: bool,
    max_attempts: usize,
    #[serde(with = "duration")]
    recover_after: Duration,
    retry_idempotent: bool,
    header: String,
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
struct RawTimeouts {
    #[serde(with = "duration")]
    connect: Duration,
    #[serde(with = "duration")]
    response: Duration,
    #[serde(with = "duration")]
    body_idle: Duration,
    #[serde(with = "duration")]
    idle: Duration,
    #[serde(with = "duration")]
    queue: Duration,
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
struct RawCookie {
    /// Until the nodes' own cookie is seen; `None`: `/`.
    path: Option<String>,
    http_only: bool,
    same_site: Option<RawSameSite>,
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
enum RawSameSite {
    Strict,
    Lax,
    None,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawStoreKind {
    Memory,
    Redis,
    Postgres,
    Mysql,
    Http,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
enum RawOnStoreError {
    #[default]
    ForwardOldId,
    Fail,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: RawStoreKind,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default, rename = "sessionTable")]
    session_table: Option<String>,
    #[serde(default, rename = "sessionIdCol")]
    session_id_col: Option<String>,
    #[serde(default, rename = "sessionAppCol")]
    session_app_col: Option<String>,
    #[serde(default, rename = "sessionDataCol")]
    session_data_col: Option<String>,
    #[serde(default, rename = "sessionValidCol")]
    session_valid_col: Option<String>,
    #[serde(default, rename = "sessionMaxInactiveCol")]
    session_max_inactive_col: Option<String>,
    #[serde(default, rename = "sessionLastAccessedCol")]
    session_last_accessed_col: Option<String>,
    #[serde(default)]
    app_name: Option<String>,
    #[serde(default = "default_store_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default = "default_store_pool_size")]
    pool_size: u32,
    #[serde(default)]
    on_store_error: RawOnStoreError,
    #[serde(default = "default_negative_ttl", with = "duration")]
    negative_ttl: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: String,
    #[serde(default = "default_health_interval", with = "duration")]
    interval: Duration,
    #[serde(default = "default_health_timeout", with = "duration")]
    timeout: Duration,
    #[serde(default = "default_rise")]
    rise: u32,
    #[serde(default = "default_fall")]
    fall: u32,
    #[serde(default)]
    expect_status: Vec<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    route: String,
    address: String,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    redirect: Option<String>,
    #[serde(default)]
    state: RawNodeState,
    #[serde(default)]
    max_connections: Option<u32>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawNodeState {
    #[default]
    Active,
    Draining,
    Disabled,
    Standby,
}

fn default_admin_bind() -> String {
    "127.0.0.1:9901".into()
}
/// Characters that may separate the id from its route: none of them can end a cookie value or a
/// path parameter early.
pub const SEPARATORS: &str = ".-_!~:";

fn default_max_connections() -> usize {
    10_000
}
fn default_max_queue_per_node() -> u32 {
    1000
}
/// `listeners[].h2.max_concurrent_streams` by default: what HAProxy and most servers
/// advertise.
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// `listeners[].h2.max_reset_streams` by default.
pub const DEFAULT_H2_MAX_RESET_STREAMS: u32 = 100;
/// Bounds of the connection and queue limits: more is a typo, not a setting.
const MAX_LIMIT: u32 = 1_000_000;
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
fn default_cluster_heartbeat() -> Duration {
    Duration::from_secs(1)
}
fn default_cluster_timeout() -> Duration {
    Duration::from_secs(1)
}

/// The longest duration any key accepts: one year (`1y`, 365.25 days, as humantime counts it).
///
/// Every duration goes through [`duration::parse`], so no key can carry a value that overflows
/// an `Instant` addition in hyper, tokio or our own deadlines (`1000000000y` parses as a
/// `Duration` but panics there); a year is far beyond any sensible timeout or interval.
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600);

/// Durations written as `250ms`, `10s`, `30m`, `1h 30m`, at most [`MAX_DURATION`].
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Parses one duration; the error says what is wrong and how to write one.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let d = humantime::parse_duration(text.trim())
            .map_err(|e| format!("invalid duration {text:?} ({e}); write e.g. 250ms, 10s, 30m"))?;
        if d > super::MAX_DURATION {
            return Err(format!(
                "duration {text:?} is too long: at most 1y (365d 6h)"
            ));
        }
        Ok(d)
    }
}

// ---------------------------------------------------------------------------------------------
// Locating keys

/// Maps key paths (`pools[0].nodes[1].route`) to the 1-based line where they are written.
pub struct KeyLocator {
    lines: HashMap<String, usize>,
}

impl KeyLocator {
    /// Walks the YAML events of `text` once. A text that does not parse yields an empty map.
    pub fn new(text: &str) -> Self {
        use saphyr_parser::{Event, Parser};
        enum Frame {
            Map { key: Option<String> },
            Seq { index: usize },
        }
        fn path_of(stack: &[(Frame, String)]) -> String {
            stack.last().map(|(_, p)| p.clone()).unwrap_or_default()
        }
        fn child(parent: &str, frame: &Frame) -> Option<String> {
            match frame {
                Frame::Map { key: Some(k) } if parent.is_empty() => Some(k.clone()),
                Frame::Map { key: Some(k) } => Some(format!("{parent}.{k}")),
                Frame::Map { key: None } => None,
                Frame::Seq { index } => Some(format!("{parent}[{index}]")),
            }
        }
        let mut lines = HashMap::new();
        // Each frame carries the path of the container it opens.
        let mut stack: Vec<(Frame, String)> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = span.start.line();
            match event {
                Event::Scalar(value, ..) => {
                    let parent = path_of(&stack);
                    match stack.last_mut() {
                        Some((Frame::Map { key }, _)) if key.is_none() => {
                            let k = value.to_string();
                            let path = if parent.is_empty() {
                                k.clone()
                            } else {
                                format!("{parent}.{k}")
                            };
                            lines.entry(path).or_insert(line);
                            *key = Some(k);
                        }
                        Some((frame, _)) => {
                            if let Some(p) = child(&parent, frame) {
                                lines.entry(p).or_insert(line);
                            }
                            advance(frame);
                        }
                        None => {}
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let parent = path_of(&stack);
                    let path = match stack.last() {
                        Some((frame, _)) => child(&parent, frame).unwrap_or_default(),
                        None => String::new(),
                    };
                    lines.entry(path.clone()).or_insert(line);
                    let frame = if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { key: None }
                    } else {
                        Frame::Seq { index: 0 }
                    };
                    stack.push((frame, path));
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    if let Some((frame, _)) = stack.last_mut() {
                        advance(frame);
                    }
                }
                _ => {}
            }
        }
        fn advance(frame: &mut Frame) {
            match frame {
                Frame::Map { key } => *key = None,
                Frame::Seq { index } => *index += 1,
            }
        }
        KeyLocator { lines }
    }

    /// Line of `key` when it is written in the document.
    pub fn exact_line(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    /// Line of `key`, or of its nearest written ancestor (a defaulted key is not written).
    pub fn line(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(l) = self.lines.get(k) {
                return Some(*l);
            }
            let Some(cut) = k.rfind(['.', '[']) else {
                return self.lines.get("").copied(); // the document itself
            };
            k = &k[..cut];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

struct Ctx<'a> {
    file: &'a str,
    locator: KeyLocator,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let key = key.into();
        ConfigError {
            file: self.file.to_string(),
            line: self.locator.line(&key),
            key,
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Config::from_yaml(&text, &file)
    }

    /// Parses and validates YAML text; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let de = serde_norway::Deserializer::from_str(text);
        let locator = KeyLocator::new(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            // serde_norway places an error in a value (a bad duration, a wrong type) at the
            // start of the mapping holding it, never past the key itself; the locator knows
            // the key's own line, so the later of the two is the precise one.
            let line = match (inner.location().map(|l| l.line()), locator.exact_line(&key)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            // serde_norway appends " at line L column C"; the line is already shown.
            let mut message = inner.to_string();
            if let Some(cut) = message.find(" at line ") {
                message.truncate(cut);
            }
            // ... and prefixes the path, which the key already shows.
            if let Some((prefix, rest)) = message.split_once(": ") {
                if !prefix.contains(' ') {
                    message = rest.to_string();
                }
            }
            ConfigError {
                file: file.to_string(),
                line,
                key: if key == "." { String::new() } else { key },
                message,
            }
        })?;
        let ctx = Ctx { file, locator };
        validate(raw, &ctx, file)
    }

    /// Replaces the admin token with `token` when it is `Some` and not empty (the
    /// `STICKYROUTE_ADMIN_TOKEN` environment variable, applied by the caller at load time so
    /// that parsing stays pure), then checks the admin listener is not exposed without one
    /// ([`Config::check_admin_exposure`]). Without an `admin` section there is nothing to
    /// protect and the token is ignored.
    pub fn with_admin_token_override(
        mut self,
        token: Option<String>,
    ) -> Result<Config, ConfigError> {
        if let (Some(admin), Some(t)) = (self.admin.as_mut(), token) {
            let t = t.trim().to_string();
            if !t.is_empty() {
                if !valid_admin_token(&t) {
                    return Err(ConfigError {
                        file: self.source.clone(),
                        line: admin.line,
                        key: "admin.token".into(),
                        message: format!(
                            "{}: must be printable ASCII without spaces (it travels in an Authorization header)",
                            ADMIN_TOKEN_ENV
                        ),
                    });
                }
                admin.token = Some(t);
            }
        }
        self.check_admin_exposure()?;
        Ok(self)
    }

    /// An admin listener off loopback needs a token: without one, anyone who reaches the
    /// address could drain or disable nodes and read the pool's layout. `check` and `serve`
    /// refuse such a config (after the environment had its say), naming `admin.token`.
    pub fn check_admin_exposure(&self) -> Result<(), ConfigError> {
        match &self.admin {
            Some(a) if a.token.is_none() && !a.on_loopback() => Err(ConfigError {
                file: self.source.clone(),
                line: a.line,
                key: "admin.token".into(),
                message: format!(
                    "the admin listener {} is not on loopback, so it needs a token: set \
                     admin.token or {}, or bind it to 127.0.0.1",
                    a.bind, ADMIN_TOKEN_ENV
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Replaces `cluster.redis` with `url` when it is `Some` and not empty (the
    /// [`CLUSTER_REDIS_ENV`] environment variable, read by the caller so that parsing stays
    /// pure), then checks the section has a usable URL. Without a `cluster` section the URL is
    /// ignored: a group needs a name.
    pub fn with_cluster_redis_override(
        mut self,
        url: Option<String>,
    ) -> Result<Config, ConfigError> {
        if let Some(c) = self.cluster.as_mut() {
            if let Some(u) = url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()) {
                if let Err(m) = check_redis_url(&u) {
                    return Err(ConfigError {
                        file: c.file.clone(),
                        line: c.line,
                        key: "cluster.redis".into(),
                        message: format!("{CLUSTER_REDIS_ENV}: {m}"),
                    });
                }
                c.redis = Some(u);
            }
            c.redis_url()?;
        }
        Ok(self)
    }

    /// The pool with this name.
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// One-line summary for `stickyroute check`.
    pub fn summary(&self) -> String {
        let pools: Vec<String> = self
            .pools
            .iter()
            .map(|p| {
                let routes: Vec<&str> = p.nodes.iter().map(|n| n.route.as_str()).collect();
                format!("{} ({}: {})", p.name, p.binder.as_str(), routes.join(", "))
            })
            .collect();
        let group = self
            .cluster
            .as_ref()
            .map_or(String::new(), |c| format!("; cluster {:?}", c.name));
        format!(
            "{}: ok, {} listener(s), {} pool(s): {}{group}",
            self.source,
            self.listeners.len(),
            self.pools.len(),
            pools.join("; ")
        )
    }
}

/// A listening address: an IP literal with a port, or `localhost:PORT` (127.0.0.1). No name
/// lookup happens here: the config layer does no I/O, and a listener bound to whatever a name
/// resolves to at start is a surprise for an operator anyway.
fn parse_addr(ctx: &Ctx, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(ctx.err(key, format!("address {text:?} needs a port (host:port)")));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| ctx.err(key, format!("invalid address {text:?}: bad port {port:?}")))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(ctx.err(
        key,
        format!("invalid address {text:?}: use an IP address (such as 0.0.0.0 or 127.0.0.1) or localhost"),
    ))
}

/// An admin token must fit in `Authorization: Bearer <token>`.
pub fn valid_admin_token(t: &str) -> bool {
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic())
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn validate(raw: RawConfig, ctx: &Ctx, file: &str) -> Result<Config, ConfigError> {
    if raw.listeners.is_empty() {
        return Err(ctx.err("listeners", "at least one listener is required"));
    }
    let mut listeners = Vec::new();
    let mut binds = HashSet::new();
    for (i, l) in raw.listeners.into_iter().enumerate() {
        let key = format!("listeners[{i}]");
        let bind = parse_addr(ctx, &format!("{key}.bind"), &l.bind)?;
        // Port 0 (any free port, for tests) may appear several times.
        if !binds.insert(bind) && bind.port() != 0 {
            return Err(ctx.err(format!("{key}.bind"), format!("{bind} is bound twice")));
        }
        if l.max_connections == 0 {
            return Err(ctx.err(format!("{key}.max_connections"), "must be at least 1"));
        }
        if l.max_header_bytes < 8192 {
            return Err(ctx.err(
                format!("{key}.max_header_bytes"),
                "must be at least 8192 (the HTTP/1 parser's minimum buffer)",
            ));
        }
        if l.max_body_bytes == Some(0) {
            return Err(ctx.err(
                format!("{key}.max_body_bytes"),
                "0 would refuse every request body; omit the key for no limit",
            ));
        }
        if l.header_read_timeout.is_zero() {
            return Err(ctx.err(format!("{key}.header_read_timeout"), "must not be zero"));
        }
        if l.keepalive_timeout.is_zero() {
            return Err(ctx.err(format!("{key}.keepalive_timeout"), "must not be zero"));
        }
        if l.tunnel_idle_timeout.is_zero() {
            return Err(ctx.err(format!("{key}.tunnel_idle_timeout"), "must not be zero"));
        }
        let mut blocks = Vec::new();
        for (j, text) in l.trusted_proxies.iter().enumerate() {
            blocks.push(
                Cidr::parse(text).map_err(|m| ctx.err(format!("{key}.trusted_proxies[{j}]"), m))?,
            );
        }
        listeners.push(ListenerConfig {
            bind,
            tls: l.tls.map(|t| TlsConfig {
                cert: t.cert,
                key: t.key,
            }),
            max_connections: l.max_connections,
            header_read_timeout: l.header_read_timeout,
            keepalive_timeout: l.keepalive_timeout,
            max_header_bytes: l.max_header_bytes,
            trusted_proxies: TrustedProxies::new(blocks),
            max_body_bytes: l.max_body_bytes,
            h2: validate_h2(&l.h2, l.max_header_bytes, &key, ctx)?,
            tunnel_idle_timeout: l.tunnel_idle_timeout,
        });
    }

    let admin = match raw.admin {
        None => None,
        Some(a) => {
            let bind = parse_addr(ctx, "admin.bind", &a.bind)?;
            if binds.contains(&bind) && bind.port() != 0 {
                return Err(ctx.err(
                    "admin.bind",
                    format!("{bind} is also a proxy listener; the admin listener must be apart"),
                ));
            }
            if a.token.as_deref() == Some("") {
                return Err(ctx.err("admin.token", "must not be empty (omit it instead)"));
            }
            if let Some(t) = &a.token {
                if !valid_admin_token(t) {
                    return Err(ctx.err(
                        "admin.token",
                        "must be printable ASCII without spaces (it travels in an Authorization header)",
                    ));
                }
            }
            Some(AdminConfig {
                bind,
                token: a.token,
                line: ctx.locator.line("admin"),
            })
        }
    };

    let s = raw.session;
    let mut sep_chars = s.separator.chars();
    let separator = match (sep_chars.next(), sep_chars.next()) {
        (Some(c), None) if SEPARATORS.contains(c) => c,
        _ => {
            return Err(ctx.err(
                "session.separator",
                format!("must be one of {SEPARATORS:?}, got {:?}", s.separator),
            ))
        }
    };
    if s.cookies.is_empty() && s.path_param.is_none() {
        return Err(ctx.err(
            "session.cookies",
            "no cookie names and no path_param: sessions could never be found",
        ));
    }
    for (i, name) in s.cookies.iter().enumerate() {
        if !is_token(name) {
            return Err(ctx.err(
                format!("session.cookies[{i}]"),
                format!("{name:?} is not a valid cookie name"),
            ));
        }
    }
    if let Some(p) = &s.path_param {
        if !is_token(p) || p.contains('=') {
            return Err(ctx.err("session.path_param", format!("{p:?} is not a valid name")));
        }
    }
    if s.idle_timeout.is_zero() {
        return Err(ctx.err("session.idle_timeout", "must not be zero"));
    }
    let session = SessionConfig {
        settings: SessionSettings {
            cookies: s.cookies,
            path_param: s.path_param,
            separator,
        },
        idle_timeout: s.idle_timeout,
    };
    if raw.registry.max_sessions == 0 {
        return Err(ctx.err("registry.max_sessions", "must be at least 1"));
    }

    if raw.pools.is_empty() {
        return Err(ctx.err("pools", "at least one pool is required"));
    }
    let mut pools = Vec::new();
    let mut pool_names = HashSet::new();
    for (pi, p) in raw.pools.into_iter().enumerate() {
        let key = format!("pools[{pi}]");
        if p.name.is_empty() {
            return Err(ctx.err(format!("{key}.name"), "must not be empty"));
        }
        if !pool_names.insert(p.name.clone()) {
            return Err(ctx.err(
                format!("{key}.name"),
                format!("pool name {:?} is used twice", p.name),
            ));
        }
        pools.push(validate_pool(p, &key, separator, ctx)?);
    }
    Ok(Config {
        source: file.to_string(),
        listeners,
        admin,
        session,
        registry: RegistryConfig {
            max_sessions: raw.registry.max_sessions,
        },
        pools,
        cluster: match raw.cluster {
            None => None,
            Some(c) => Some(validate_cluster(c, ctx, file)?),
        },
    })
}

/// A Redis URL the cluster can use: `redis://` (TLS is not built in), with a host.
fn check_redis_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("redis://") else {
        return Err(format!("{url:?} must start with redis://"));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok(())
}

/// A group name or instance id: it becomes part of Redis keys and channel names.
fn is_cluster_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn validate_cluster(c: RawCluster, ctx: &Ctx, file: &str) -> Result<ClusterConfig, ConfigError> {
    if !cfg!(feature = "redis-store") {
        return Err(ctx.err(
            "cluster",
            "a cluster needs the cargo feature \"redis-store\", which this build of stickyroute \
             was compiled without",
        ));
    }
    if let Some(url) = &c.redis {
        check_redis_url(url).map_err(|m| ctx.err("cluster.redis", m))?;
    }
    if !is_cluster_name(&c.name) {
        return Err(ctx.err(
            "cluster.name",
            format!(
                "group name {:?} may only use letters, digits and - _ . (1 to 64)",
                c.name
            ),
        ));
    }
    if let Some(id) = &c.instance {
        if !is_cluster_name(id) {
            return Err(ctx.err(
                "cluster.instance",
                format!("instance id {id:?} may only use letters, digits and - _ . (1 to 64)"),
            ));
        }
    }
    if c.heartbeat < Duration::from_millis(50) {
        return Err(ctx.err("cluster.heartbeat", "must be at least 50ms"));
    }
    if c.timeout.is_zero() {
        return Err(ctx.err("cluster.timeout", "must not be zero"));
    }
    Ok(ClusterConfig {
        redis: c.redis,
        name: c.name,
        instance: c.instance,
        heartbeat: c.heartbeat,
        timeout: c.timeout,
        file: file.to_string(),
        line: ctx.locator.line("cluster"),
    })
}

fn validate_pool(p: RawPool, key: &str, sep: char, ctx: &Ctx) -> Result<PoolConfig, ConfigError> {
    if !p.path_prefix.starts_with('/') {
        return Err(ctx.err(format!("{key}.path_prefix"), "must start with /"));
    }
    let mut hosts = Vec::new();
    for (i, h) in p.hosts.iter().enumerate() {
        let host = h.trim().to_ascii_lowercase();
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(ctx.err(format!("{key}.hosts[{i}]"), format!("invalid host {h:?}")));
        }
        hosts.push(host);
    }
    if p.nodes.is_empty() {
        return Err(ctx.err(format!("{key}.nodes"), "a pool needs at least one node"));
    }
    let per_node = match p.max_connections_per_node {
        Some(v) => Some(check_limit(
            v,
            format!("{key}.max_connections_per_node"),
            ctx,
        )?),
        None => None,
    };
    check_limit(
        p.max_queue_per_node,
        format!("{key}.max_queue_per_node"),
        ctx,
    )?;
    let mut nodes = Vec::new();
    let mut routes = HashSet::new();
    for (ni, n) in p.nodes.iter().enumerate() {
        let nkey = format!("{key}.nodes[{ni}]");
        if n.route.is_empty() {
            return Err(ctx.err(format!("{nkey}.route"), "must not be empty"));
        }
        if n.route.contains(sep) {
            return Err(ctx.err(
                format!("{nkey}.route"),
                format!("route {:?} contains the separator {sep:?}", n.route),
            ));
        }
        if !crate::core::session::is_valid_route(&n.route, sep) {
            return Err(ctx.err(
                format!("{nkey}.route"),
                format!(
                    "route {:?} may only use letters, digits and - _ ~ ! . : (at most 64)",
                    n.route
                ),
            ));
        }
        if !routes.insert(n.route.clone()) {
            return Err(ctx.err(
                format!("{nkey}.route"),
                format!("duplicate route {:?}", n.route),
            ));
        }
        if n.weight == 0 {
            return Err(ctx.err(format!("{nkey}.weight"), "must be at least 1"));
        }
        let addr =
            NodeAddr::parse(&n.address).map_err(|m| ctx.err(format!("{nkey}.address"), m))?;
        let max_connections = match n.max_connections {
            Some(v) => Some(check_limit(v, format!("{nkey}.max_connections"), ctx)?),
            None => per_node,
        };
        nodes.push(NodeConfig {
            route: n.route.clone(),
            address: n.address.clone(),
            addr,
            weight: n.weight,
            domain: n.domain.clone().unwrap_or_default(),
            redirect: n.redirect.clone(),
            state: match n.state {
                RawNodeState::Active => NodeState::Active,
                RawNodeState::Draining => NodeState::Draining,
                RawNodeState::Disabled => NodeState::Disabled,
                RawNodeState::Standby => NodeState::Standby,
            },
            max_connections,
        });
    }
    for (ni, n) in nodes.iter().enumerate() {
        if let Some(target) = &n.redirect {
            if !routes.contains(target) {
                return Err(ctx.err(
                    format!("{key}.nodes[{ni}].redirect"),
                    format!("redirect {target:?} names no node of pool {:?}", p.name),
                ));
            }
            if target == &n.route {
                return Err(ctx.err(
                    format!("{key}.nodes[{ni}].redirect"),
                    "a node cannot redirect to itself",
                ));
            }
        }
    }

    let f = &p.failover;
    if f.max_attempts == 0 {
        return Err(ctx.err(format!("{key}.failover.max_attempts"), "must be at least 1"));
    }
    let header = HeaderName::from_bytes(f.header.as_bytes()).map_err(|_| {
        ctx.err(
            format!("{key}.failover.header"),
            format!("{:?} is not a valid header name", f.header),
        )
    })?;
    let t = &p.timeouts;
    for (name, d) in [
        ("connect", t.connect),
        ("response", t.response),
        ("body_idle", t.body_idle),
        ("idle", t.idle),
        ("queue", t.queue),
    ] {
        if d.is_zero() {
            return Err(ctx.err(format!("{key}.timeouts.{name}"), "must not be zero"));
        }
    }
    if p.cookie
        .path
        .as_deref()
        .is_some_and(|path| !path.starts_with('/') || path.contains([';', ' ']))
    {
        return Err(ctx.err(
            format!("{key}.cookie.path"),
            "must be a path starting with /",
        ));
    }
    let binder = match p.binder {
        RawBinder::Translate => BinderKind::Translate,
        RawBinder::Rename => BinderKind::Rename,
        RawBinder::Backend => BinderKind::Backend,
    };
    let store = match &p.store {
        None if binder == BinderKind::Rename => {
            return Err(ctx.err(
                format!("{key}.store"),
                "binder `rename` needs a session store (store: { kind: redis, url: … })",
            ))
        }
        None => None,
        Some(s) => Some(validate_store(s, &format!("{key}.store"), ctx)?),
    };
    let health = match &p.health {
        None => None,
        Some(h) => {
            let hkey = format!("{key}.health");
            if !h.path.starts_with('/') || h.path.contains(['\r', '\n', ' ']) {
                return Err(ctx.err(format!("{hkey}.path"), "must be a path starting with /"));
            }
            if h.interval.is_zero() {
                return Err(ctx.err(format!("{hkey}.interval"), "must not be zero"));
            }
            if h.timeout.is_zero() {
                return Err(ctx.err(format!("{hkey}.timeout"), "must not be zero"));
            }
            if h.rise == 0 {
                return Err(ctx.err(format!("{hkey}.rise"), "must be at least 1"));
            }
            if h.fall == 0 {
                return Err(ctx.err(format!("{hkey}.fall"), "must be at least 1"));
            }
            for (i, s) in h.expect_status.iter().enumerate() {
                if !(100..=599).contains(s) {
                    return Err(ctx.err(format!("{hkey}.expect_status[{i}]"), "not a status"));
                }
            }
            Some(HealthConfig {
                path: h.path.clone(),
                interval: h.interval,
                timeout: h.timeout,
                rise: h.rise,
                fall: h.fall,
                expect_status: h.expect_status.clone(),
            })
        }
    };
    for (i, s) in p.fail_on_status.iter().enumerate() {
        if !(100..=599).contains(s) {
            return Err(ctx.err(format!("{key}.fail_on_status[{i}]"), "not a status"));
        }
    }
    Ok(PoolConfig {
        name: p.name,
        hosts,
        path_prefix: p.path_prefix,
        binder,
        balance: match p.balance {
            RawBalance::P2c => BalanceKind::P2c,
            RawBalance::RoundRobin => BalanceKind::RoundRobin,
        },
        failover: FailoverConfig {
            cross_domain: f.cross_domain,
            max_attempts: f.max_attempts,
            recover_after: f.recover_after,
            retry_idempotent: f.retry_idempotent,
            header,
        },
        timeouts: Timeouts {
            connect: t.connect,
            response: t.response,
            body_idle: t.body_idle,
            idle: t.idle,
            queue: t.queue,
        },
        cookie: CookieDefaults {
            path: p.cookie.path.clone(),
            http_only: p.cookie.http_only,
            same_site: p.cookie.same_site.map(|s| match s {
                RawSameSite::Strict => SameSite::Strict,
                RawSameSite::Lax => SameSite::Lax,
                RawSameSite::None => SameSite::None,
            }),
        },
        store,
        health,
        fail_on_status: p.fail_on_status,
        max_queue_per_node: p.max_queue_per_node,
        nodes,
    })
}

/// A connection or queue limit: at least 1, at most [`MAX_LIMIT`].
fn check_limit(value: u32, key: String, ctx: &Ctx) -> Result<u32, ConfigError> {
    if value == 0 {
        return Err(ctx.err(key, "must be at least 1 (omit the key for no limit)"));
    }
    if value > MAX_LIMIT {
        return Err(ctx.err(key, format!("must be at most {MAX_LIMIT}")));
    }
    Ok(value)
}

/// `listeners[].h2`, with its defaults: the header list size follows `max_header_bytes`.
fn validate_h2(
    h: &RawH2,
    max_header_bytes: usize,
    key: &str,
    ctx: &Ctx,
) -> Result<H2Limits, ConfigError> {
    let streams = h
        .max_concurrent_streams
        .unwrap_or(DEFAULT_H2_MAX_CONCURRENT_STREAMS);
    if streams == 0 || streams > 10_000 {
        return Err(ctx.err(
            format!("{key}.h2.max_concurrent_streams"),
            "must be between 1 and 10000",
        ));
    }
    let list = h
        .max_header_list_size
        .unwrap_or_else(|| u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
    if !(1024..=16 * 1024 * 1024).contains(&list) {
        return Err(ctx.err(
            format!("{key}.h2.max_header_list_size"),
            "must be between 1024 and 16777216 bytes",
        ));
    }
    let resets = h.max_reset_streams.unwrap_or(DEFAULT_H2_MAX_RESET_STREAMS);
    if resets == 0 || resets > MAX_LIMIT {
        return Err(ctx.err(
            format!("{key}.h2.max_reset_streams"),
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(H2Limits {
        max_concurrent_streams: streams,
        max_header_list_size: list,
        max_reset_streams: resets,
    })
}

fn validate_store(s: &RawStore, key: &str, ctx: &Ctx) -> Result<StoreConfig, ConfigError> {
    let url = |schemes: &[&str]| -> Result<String, ConfigError> {
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
    };
    let table = || JdbcTable {
        table: s
            .session_table
            .clone()
            .unwrap_or_else(|| "tomcat_sessions".into()),
        id_col: s
            .session_id_col
            .clone()
            .unwrap_or_else(|| "session_id".into()),
        app_col: s
            .session_app_col
            .clone()
            .unwrap_or_else(|| "app_name".into()),
        data_col: s
            .session_data_col
            .clone()
            .unwrap_or_else(|| "session_data".into()),
        valid_col: s
            .session_valid_col
            .clone()
            .unwrap_or_else(|| "valid_session".into()),
        max_inactive_col: s
            .session_max_inactive_col
            .clone()
            .unwrap_or_else(|| "max_inactive".into()),
        last_access_col: s
            .session_last_accessed_col
            .clone()
            .unwrap_or_else(|| "last_access".into()),
        app_name: s.app_name.clone(),
    };
    let compiled_out = |kind: &str, feature: &str| {
        ctx.err(
            format!("{key}.kind"),
            format!(
                "store kind {kind} needs the cargo feature {feature:?}, which this build of \
                 stickyroute was compiled without"
            ),
        )
    };
    match s.kind {
        RawStoreKind::Redis if !cfg!(feature = "redis-store") => {
            return Err(compiled_out("redis", "redis-store"))
        }
        RawStoreKind::Postgres if !cfg!(feature = "sql-store") => {
            return Err(compiled_out("postgres", "sql-store"))
        }
        RawStoreKind::Mysql if !cfg!(feature = "sql-store") => {
            return Err(compiled_out("mysql", "sql-store"))
        }
        _ => {}
    }
    let kind = match s.kind {
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
            table: table(),
        },
        RawStoreKind::Mysql => StoreKind::Mysql {
            url: url(&["mysql", "mariadb"])?,
            table: table(),
        },
        RawStoreKind::Http => StoreKind::Http {
            url: url(&["http"])?,
            app: s.app_name.clone(),
        },
    };
    if let StoreKind::Postgres { table, .. } | StoreKind::Mysql { table, .. } = &kind {
        let cols = [
            ("sessionTable", &table.table),
            ("sessionIdCol", &table.id_col),
            ("sessionAppCol", &table.app_col),
            ("sessionDataCol", &table.data_col),
            ("sessionValidCol", &table.valid_col),
            ("sessionMaxInactiveCol", &table.max_inactive_col),
            ("sessionLastAccessedCol", &table.last_access_col),
        ];
        for (name, value) in cols {
            let ok = store::is_sql_identifier(value);
            if !ok {
                return Err(ctx.err(
                    format!("{key}.{name}"),
                    format!("{value:?} is not a plain SQL identifier"),
                ));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listeners:
  - bind: "127.0.0.1:8080"
pools:
  - name: app
    nodes:
      - { route: jvm1, address: "127.0.0.1:18081", domain: a, redirect: jvm2 }
      - { route: jvm2, address: "127.0.0.1:18082", domain: a }
"#;

    #[cfg(feature = "redis-store")]
    #[test]
    fn cluster_section_parses_and_names_its_errors() {
        let with = |section: &str| format!("{GOOD}cluster:\n{section}");
        let c = Config::from_yaml(
            &with("  redis: \"redis://127.0.0.1:6379/\"\n  name: prod\n"),
            "t.yaml",
        )
        .unwrap();
        let cl = c.cluster.as_ref().unwrap();
        assert_eq!(cl.redis.as_deref(), Some("redis://127.0.0.1:6379/"));
        assert_eq!((cl.name.as_str(), cl.instance.as_deref()), ("prod", None));
        assert_eq!(cl.heartbeat, Duration::from_secs(1));
        assert_eq!(cl.line, Some(9));
        assert!(Config::from_yaml(GOOD, "t.yaml").unwrap().cluster.is_none());

        let cases = [
            (
                "  redis: \"http://x:1/\"\n  name: prod\n",
                "cluster.redis",
                10,
                "redis://",
            ),
            (
                "  redis: \"redis:///0\"\n  name: prod\n",
                "cluster.redis",
                10,
                "no host",
            ),
            ("  name: \"a b\"\n", "cluster.name", 10, "letters"),
            ("  name: \"a:b\"\n", "cluster.name", 10, "letters"),
            (
                "  name: p\n  instance: \"x{y}\"\n",
                "cluster.instance",
                11,
                "letters",
            ),
            (
                "  name: p\n  heartbeat: 10ms\n",
                "cluster.heartbeat",
                11,
                "50ms",
            ),
            ("  name: p\n  timeout: 0s\n", "cluster.timeout", 11, "zero"),
            (
                "  name: p\n  peers: 3\n",
                "cluster.peers",
                11,
                "unknown field",
            ),
            ("  redis: \"redis://h:1/\"\n", "cluster", 10, "name"),
        ];
        for (section, key, line, msg) in cases {
            let err = Config::from_yaml(&with(section), "t.yaml").unwrap_err();
            assert_eq!(err.key, key, "{section}: {err}");
            assert_eq!(err.line, Some(line), "{section}: {err}");
            assert!(err.message.contains(msg), "{section}: {err}");
            assert_eq!(err.file, "t.yaml");
        }
    }

    #[cfg(feature = "redis-store")]
    #[test]
    fn cluster_redis_may_come_from_the_environment() {
        let yaml = format!("{GOOD}cluster:\n  name: prod\n");
        let c = Config::from_yaml(&yaml, "t.yaml").unwrap();
        let err = c.clone().with_cluster_redis_override(None).unwrap_err();
        assert_eq!((err.key.as_str(), err.line), ("cluster.redis", Some(9)));
        assert!(err.message.contains(CLUSTER_REDIS_ENV), "{err}");
        let c2 = c
            .clone()
            .with_cluster_redis_override(Some("redis://10.0.0.1:6379/2".into()))
            .unwrap();
        assert_eq!(
            c2.cluster.unwrap().redis.as_deref(),
            Some("redis://10.0.0.1:6379/2")
        );
        let err = c
            .with_cluster_redis_override(Some("tcp://x".into()))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("t.yaml:9: key `cluster.redis`: STICKYROUTE_CLUSTER_REDIS"),
            "{err}"
        );
        // Without a cluster section the variable changes nothing.
        let plain = Config::from_yaml(GOOD, "t.yaml").unwrap();
        assert!(plain
            .with_cluster_redis_override(Some("redis://h:1/".into()))
            .unwrap()
            .cluster
            .is_none());
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
        let p = &c.pools[0];
        assert_eq!(p.binder, BinderKind::Translate);
        assert_eq!(p.failover.max_attempts, 3);
        assert_eq!(p.nodes[0].redirect.as_deref(), Some("jvm2"));
        assert_eq!(c.session.settings.separator, '.');
        assert_eq!(c.session.idle_timeout, Duration::from_secs(1800));
    }

    /// Each store kind validates when its feature is compiled in, and is refused with file,
    /// line and key when it is not (run with `--no-default-features` for the second half).
    #[test]
    fn store_kinds_need_their_cargo_feature() {
        let cases = [
            (
                "redis",
                "redis://127.0.0.1:6379/",
                "redis-store",
                cfg!(feature = "redis-store"),
            ),
            (
                "postgres",
                "postgres://u@h/db",
                "sql-store",
                cfg!(feature = "sql-store"),
            ),
            (
                "mysql",
                "mysql://u@h/db",
                "sql-store",
                cfg!(feature = "sql-store"),
            ),
            ("http", "http://127.0.0.1:1/rename", "", true),
        ];
        for (kind, url, feature, compiled_in) in cases {
            let yaml = format!(
                "listeners:\n  - bind: \"127.0.0.1:8080\"\npools:\n  - name: app\n    binder: rename\n    store:\n      kind: {kind}\n      url: \"{url}\"\n    nodes:\n      - {{ route: jvm1, address: \"127.0.0.1:18081\" }}\n"
            );
            let result = Config::from_yaml(&yaml, "stores.yaml");
            if compiled_in {
                let c = result.unwrap_or_else(|e| panic!("{kind}: {e}"));
                assert!(c.pools[0].store.is_some(), "{kind}");
            } else {
                let e = result.expect_err(kind);
                assert_eq!(e.file, "stores.yaml", "{kind}");
                assert_eq!(e.key, "pools[0].store.kind", "{kind}");
                assert_eq!(e.line, Some(7), "{kind}");
                assert!(e.message.contains(feature), "{kind}: {e}");
                assert!(e.to_string().contains("stores.yaml"), "{kind}: {e}");
            }
        }
    }

    #[test]
    fn example_balancer_yaml_is_valid() {
        let text = include_str!("../../balancer.yaml");
        Config::from_yaml(text, "balancer.yaml").unwrap();
    }

    /// Each invalid config: (yaml, expected line, expected key, message fragment).
    #[test]
    fn invalid_configs_name_file_line_and_key() {
        let node = |extra: &str| {
            format!(
                "listeners:\n  - bind: \"127.0.0.1:8080\"\npools:\n  - name: app\n    nodes:\n      - route: jvm1\n        address: \"127.0.0.1:1\"\n{extra}"
            )
        };
        let cases: Vec<(String, usize, &str, &str)> = vec![
            (
                node("      - route: jvm1\n        address: \"127.0.0.1:2\"\n"),
                8,
                "pools[0].nodes[1].route",
                "duplicate route",
            ),
            (
                node("      - route: jvm.2\n        address: \"127.0.0.1:2\"\n"),
                8,
                "pools[0].nodes[1].route",
                "separator",
            ),
            (
                node("      - route: jvm2\n        address: \"127.0.0.1:2\"\n        redirect: jvm9\n"),
                10,
                "pools[0].nodes[1].redirect",
                "names no node",
            ),
            (
                node("      - route: jvm2\n        address: \"127.0.0.1:2\"\n        weight: 0\n"),
                10,
                "pools[0].nodes[1].weight",
                "at least 1",
            ),
            (
                node("      - route: jvm2\n        address: \"not an address\"\n"),
                9,
                "pools[0].nodes[1].address",
                "needs a port",
            ),
            (
                node("      - route: jvm2\n        address: \"127.0.0.1:2\"\n        colour: red\n"),
                10,
                "pools[0].nodes[1].colour",
                "unknown field `colour`",
            ),
            (
                "listeners:\n  - bind: \"127.0.0.1:8080\"\npools: []\n".to_string(),
                3,
                "pools",
                "at least one pool",
            ),
            (
                "listeners:\n  - bind: \"127.0.0.1:8080\"\n".to_string(),
                1,
                "pools",
                "at least one pool",
            ),
            (
                node("    failover:\n      recover_after: soon\n"),
                9,
                "pools[0].failover.recover_after",
                "invalid duration",
            ),
            (
                node("    binder: rename\n"),
                4,
                "pools[0].store",
                "needs a session store",
            ),
            (
                node("    binder: rename\n    store:\n      kind: memory\n      negative_ttl: 2m\n"),
                11,
                "pools[0].store.negative_ttl",
                "at most 1m",
            ),
        ];
        for (yaml, line, key, fragment) in cases {
            let err = Config::from_yaml(&yaml, "bad.yaml").unwrap_err();
            assert_eq!(err.file, "bad.yaml");
            assert_eq!(err.key, key, "{yaml}\n{err}");
            assert!(err.message.contains(fragment), "{err}");
            assert_eq!(err.line, Some(line), "{yaml}\n{err}");
            let shown = err.to_string();
            assert!(shown.starts_with("bad.yaml:"), "{shown}");
        }
    }

    /// Every duration key, written once with a value that overflows an `Instant` addition
    /// (`1000000000y` parses as a `Duration`) and once at the bound: the first is an error
    /// naming file, line and key, the second is accepted.
    #[test]
    fn every_duration_key_is_bounded() {
        // (key path, line of its value in the document below)
        let keys = [
            ("listeners[0].header_read_timeout", 3),
            ("session.idle_timeout", 5),
            ("pools[0].failover.recover_after", 9),
            ("pools[0].timeouts.connect", 11),
            ("pools[0].timeouts.response", 12),
            ("pools[0].timeouts.idle", 13),
            ("pools[0].store.timeout", 17),
            ("pools[0].health.interval", 20),
            ("pools[0].health.timeout", 21),
            ("cluster.heartbeat", 26),
            ("cluster.timeout", 27),
        ];
        let doc = |long: &str, value: &str| {
            let v = |key: &str| if key == long { value } else { "1s" };
            format!(
                "listeners:\n  - bind: \"127.0.0.1:8080\"\n    header_read_timeout: {}\nsession:\n  idle_timeout: {}\npools:\n  - name: app\n    failover:\n      recover_after: {}\n    timeouts:\n      connect: {}\n      response: {}\n      idle: {}\n    binder: rename\n    store:\n      kind: memory\n      timeout: {}\n    health:\n      path: /health\n      interval: {}\n      timeout: {}\n    nodes:\n      - {{ route: jvm1, address: \"127.0.0.1:1\" }}\ncluster:\n  name: g\n  heartbeat: {}\n  timeout: {}\n",
                v(keys[0].0), v(keys[1].0), v(keys[2].0), v(keys[3].0), v(keys[4].0),
                v(keys[5].0), v(keys[6].0), v(keys[7].0), v(keys[8].0), v(keys[9].0),
                v(keys[10].0),
            )
        };
        let all_fine = doc("", "");
        if cfg!(feature = "redis-store") {
            Config::from_yaml(&all_fine, "d.yaml").unwrap();
        }
        for (key, line) in keys {
            if key.starts_with("cluster") && !cfg!(feature = "redis-store") {
                continue;
            }
            let err = Config::from_yaml(&doc(key, "1000000000y"), "d.yaml").unwrap_err();
            assert_eq!((err.key.as_str(), err.line), (key, Some(line)), "{err}");
            assert!(err.message.contains("at most 1y"), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("d.yaml:{line}: key `{key}`")),
                "{err}"
            );
            // Just too long, and a number humantime itself refuses: errors too.
            for bad in ["1y 1s", "99999999999999999999999s"] {
                let err = Config::from_yaml(&doc(key, bad), "d.yaml").unwrap_err();
                assert_eq!(err.key, key, "{bad}: {err}");
            }
            if cfg!(feature = "redis-store") {
                Config::from_yaml(&doc(key, "1y"), "d.yaml")
                    .unwrap_or_else(|e| panic!("{key}: 1y refused: {e}"));
            }
        }
        assert_eq!(duration::parse("1y").unwrap(), MAX_DURATION);
        assert_eq!(
            duration::parse(" 250ms ").unwrap(),
            Duration::from_millis(250)
        );
    }

    /// `pools[].timeouts.body_idle` and `listeners[].tunnel_idle_timeout`: their defaults, a
    /// value taken, zero refused with file, line and key, and the 1y bound.
    #[test]
    fn body_idle_and_tunnel_idle_timeout_defaults_and_errors() {
        let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
        assert_eq!(c.pools[0].timeouts.body_idle, Duration::from_secs(60));
        assert_eq!(
            c.listeners[0].tunnel_idle_timeout,
            Duration::from_secs(3600)
        );
        let listener = |v: &str| {
            GOOD.replace(
                "  - bind: \"127.0.0.1:8080\"\n",
                &format!("  - bind: \"127.0.0.1:8080\"\n    tunnel_idle_timeout: {v}\n"),
            )
        };
        let pool = |v: &str| {
            GOOD.replace(
                "  - name: app\n",
                &format!("  - name: app\n    timeouts:\n      body_idle: {v}\n"),
            )
        };
        let c = Config::from_yaml(&listener("90s"), "t.yaml").unwrap();
        assert_eq!(c.listeners[0].tunnel_idle_timeout, Duration::from_secs(90));
        let c = Config::from_yaml(&pool("300ms"), "t.yaml").unwrap();
        assert_eq!(c.pools[0].timeouts.body_idle, Duration::from_millis(300));
        type Case<'a> = (String, &'a str, usize, &'a str);
        let cases: [Case; 5] = [
            (
                listener("0s"),
                "listeners[0].tunnel_idle_timeout",
                4,
                "must not be zero",
            ),
            (
                listener("2y"),
                "listeners[0].tunnel_idle_timeout",
                4,
                "at most 1y",
            ),
            (listener("soon"), "listeners[0].tunnel_idle_timeout", 4, ""),
            (
                pool("0ms"),
                "pools[0].timeouts.body_idle",
                7,
                "must not be zero",
            ),
            (
                pool("1000000000y"),
                "pools[0].timeouts.body_idle",
                7,
                "at most 1y",
            ),
        ];
        for (yaml, key, line, fragment) in cases {
            let err = Config::from_yaml(&yaml, "t.yaml").unwrap_err();
            assert_eq!(
                (err.key.as_str(), err.line),
                (key, Some(line)),
                "{yaml}\n{err}"
            );
            assert!(err.message.contains(fragment), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("t.yaml:{line}: key `{key}`")),
                "{err}"
            );
        }
    }

    /// `listeners[].keepalive_timeout`: 75 s by default, a value taken on cleartext and TLS
    /// listeners alike, zero and past 1y refused with file, line and key.
    #[test]
    fn keepalive_timeout_default_value_and_errors() {
        let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
        assert_eq!(c.listeners[0].keepalive_timeout, Duration::from_secs(75));
        let with = |v: &str| {
            GOOD.replace(
                "  - bind: \"127.0.0.1:8080\"\n",
                &format!(
                    "  - bind: \"127.0.0.1:8080\"\n    keepalive_timeout: {v}\n  - bind: \"127.0.0.1:8443\"\n    tls: {{ cert: c.pem, key: k.pem }}\n    keepalive_timeout: {v}\n"
                ),
            )
        };
        let c = Config::from_yaml(&with("5s"), "t.yaml").unwrap();
        assert_eq!(c.listeners[0].keepalive_timeout, Duration::from_secs(5));
        assert!(c.listeners[1].tls.is_some());
        assert_eq!(c.listeners[1].keepalive_timeout, Duration::from_secs(5));
        assert_eq!(
            c.listeners[0].header_read_timeout,
            Duration::from_secs(10),
            "a separate key"
        );
        for (v, fragment) in [("0s", "must not be zero"), ("2y", "at most 1y")] {
            let err = Config::from_yaml(&with(v), "t.yaml").unwrap_err();
            assert_eq!(
                (err.key.as_str(), err.line),
                ("listeners[0].keepalive_timeout", Some(4)),
                "{v}: {err}"
            );
            assert!(err.message.contains(fragment), "{v}: {err}");
            assert!(
                err.to_string()
                    .starts_with("t.yaml:4: key `listeners[0].keepalive_timeout`"),
                "{err}"
            );
        }
        let tls_zero = with("5s").replacen("keepalive_timeout: 5s", "keepalive_timeout: 0s", 2);
        let tls_zero = tls_zero.replacen("keepalive_timeout: 0s", "keepalive_timeout: 5s", 1);
        let err = Config::from_yaml(&tls_zero, "t.yaml").unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.line),
            ("listeners[1].keepalive_timeout", Some(7)),
            "{tls_zero}\n{err}"
        );
    }

    #[test]
    fn max_body_bytes_is_unlimited_by_default_and_never_zero() {
        let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
        assert_eq!(c.listeners[0].max_body_bytes, None);
        let with = |v: &str| {
            GOOD.replace(
                "  - bind: \"127.0.0.1:8080\"\n",
                &format!("  - bind: \"127.0.0.1:8080\"\n    max_body_bytes: {v}\n"),
            )
        };
        let c = Config::from_yaml(&with("10485760"), "t.yaml").unwrap();
        assert_eq!(c.listeners[0].max_body_bytes, Some(10 << 20));
        for (v, fragment) in [
            ("0", "omit the key"),
            ("-1", "invalid"),
            ("10MB", "invalid"),
        ] {
            let err = Config::from_yaml(&with(v), "t.yaml").unwrap_err();
            assert_eq!(err.key, "listeners[0].max_body_bytes", "{v}: {err}");
            assert_eq!(err.line, Some(4), "{v}: {err}");
            assert!(err.message.contains(fragment), "{v}: {err}");
        }
    }

    #[test]
    fn trusted_proxies_parse_and_name_the_bad_entry() {
        let with = |list: &str| {
            GOOD.replace(
                "  - bind: \"127.0.0.1:8080\"\n",
                &format!("  - bind: \"127.0.0.1:8080\"\n    trusted_proxies: {list}\n"),
            )
        };
        let c = Config::from_yaml(GOOD, "t.yaml").unwrap();
        assert!(c.listeners[0].trusted_proxies.is_empty(), "none by default");
        let c = Config::from_yaml(&with("[10.0.0.0/8, \"::1\", 192.0.2.7]"), "t.yaml").unwrap();
        let t = &c.listeners[0].trusted_proxies;
        assert_eq!(t.blocks().len(), 3);
        assert!(t.extends("10.9.9.9".parse().unwrap()) && !t.extends("11.0.0.1".parse().unwrap()));
        for (list, fragment) in [
            ("[10.0.0.0/8, 10.0.0.1/8]", "bits set"),
            ("[10.0.0.0/8, proxy.internal]", "not an IP address"),
            ("[\"::/200\"]", "0 to 128"),
        ] {
            let err = Config::from_yaml(&with(list), "t.yaml").unwrap_err();
            let i = if list.starts_with("[10.0.0.0/8,") {
                1
            } else {
                0
            };
            assert_eq!(
                err.key,
                format!("listeners[0].trusted_proxies[{i}]"),
                "{err}"
            );
            assert_eq!(err.line, Some(4), "{err}");
            assert!(err.message.contains(fragment), "{err}");
        }
    }

    #[test]
    fn separators_and_routes_that_would_break_ids_are_refused() {
        for sep in [";", ",", "\"", "=", "/", "?", "#", "ab"] {
            let yaml = GOOD.replace(
                "listeners:",
                &format!("session: {{ separator: '{sep}' }}\nlisteners:"),
            );
            let err = Config::from_yaml(&yaml, "t.yaml").unwrap_err();
            assert_eq!(err.key, "session.separator", "{sep}: {err}");
        }
        for route in ["a/b", "a?b", "a=b", "a#b"] {
            let yaml = GOOD.replace("route: jvm2", &format!("route: \"{route}\""));
            let err = Config::from_yaml(&yaml, "t.yaml").unwrap_err();
            assert_eq!(err.key, "pools[0].nodes[1].route", "{route}: {err}");
        }
    }

    #[test]
    fn node_addresses() {
        let ok = [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("[::1]:80", "[::1]:80"),
            ("node1:8080", "node1:8080"),
            ("app-1.example.com:9", "app-1.example.com:9"),
        ];
        for (text, shown) in ok {
            assert_eq!(NodeAddr::parse(text).unwrap().to_string(), shown);
        }
        assert!(matches!(
            NodeAddr::parse("node1:8080"),
            Ok(NodeAddr::Host { .. })
        ));
        for bad in [
            "node1",
            "node1:",
            "node1:99999",
            ":80",
            "no de:80",
            "a/b:80",
        ] {
            assert!(NodeAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locator_finds_nested_keys() {
        let text = "a:\n  b:\n    - x: 1\n      y: 2\n    - { x: 3, y: 4 }\nc: 5\n";
        let loc = KeyLocator::new(text);
        assert_eq!(loc.line("a"), Some(1));
        assert_eq!(loc.line("a.b"), Some(2));
        assert_eq!(loc.line("a.b[0].y"), Some(4));
        assert_eq!(loc.line("a.b[1].x"), Some(5));
        assert_eq!(loc.line("c"), Some(6));
        assert_eq!(loc.line("a.b[1].missing"), Some(5));
    }

    #[test]
    fn admin_section_defaults_and_token_override() {
        let with_admin = format!("{GOOD}admin: {{}}\n");
        let c = Config::from_yaml(&with_admin, "t.yaml").unwrap();
        let admin = c.admin.clone().unwrap();
        assert_eq!(admin.bind, "127.0.0.1:9901".parse().unwrap());
        assert_eq!(admin.token, None);
        let c = c.with_admin_token_override(Some("s3cret".into())).unwrap();
        assert_eq!(c.admin.unwrap().token.as_deref(), Some("s3cret"));
        // Empty override: the file's token (none here) stays; no admin section: nothing to set.
        let c = Config::from_yaml(&with_admin, "t.yaml")
            .unwrap()
            .with_admin_token_override(Some(" ".into()))
            .unwrap();
        assert_eq!(c.admin.unwrap().token, None);
        let c = Config::from_yaml(GOOD, "t.yaml")
            .unwrap()
            .with_admin_token_override(Some("x".into()))
            .unwrap();
        assert!(c.admin.is_none());
        let err = Config::from_yaml(&with_admin, "t.yaml")
            .unwrap()
            .with_admin_token_override(Some("two words".into()))
            .unwrap_err();
        assert_eq!(err.key, "admin.token", "{err}");
    }

    /// Off loopback (any address but 127/8, ::1 and their IPv4-mapped forms) the admin
    /// listener needs a token, from the file or the environment; the error names
    /// `admin.token` at the `admin:` section's line.
    #[test]
    fn admin_off_loopback_needs_a_token() {
        let with = |admin: &str| format!("{GOOD}admin:\n{admin}");
        for bind in [
            "0.0.0.0:9901",
            "10.1.2.3:9901",
            "[::]:9901",
            "[::ffff:10.0.0.1]:1",
        ] {
            let c = Config::from_yaml(&with(&format!("  bind: \"{bind}\"\n")), "t.yaml").unwrap();
            let err = c.clone().with_admin_token_override(None).unwrap_err();
            assert_eq!(
                (err.key.as_str(), err.line),
                ("admin.token", Some(9)),
                "{bind}: {err}"
            );
            assert!(err.message.contains("not on loopback"), "{err}");
            assert!(
                err.to_string().starts_with("t.yaml:9: key `admin.token`"),
                "{err}"
            );
            assert!(c.check_admin_exposure().is_err(), "{bind}");
            // A token from the environment is enough.
            let ok = c.with_admin_token_override(Some("s3cret".into())).unwrap();
            assert_eq!(ok.admin.unwrap().token.as_deref(), Some("s3cret"));
            // So is one in the file.
            let yaml = with(&format!("  bind: \"{bind}\"\n  token: t0k\n"));
            Config::from_yaml(&yaml, "t.yaml")
                .unwrap()
                .with_admin_token_override(None)
                .unwrap();
        }
        for bind in [
            "127.0.0.1:9901",
            "127.9.9.9:1",
            "[::1]:9901",
            "[::ffff:127.0.0.1]:1",
            "localhost:9",
        ] {
            let c = Config::from_yaml(&with(&format!("  bind: \"{bind}\"\n")), "t.yaml").unwrap();
            c.with_admin_token_override(None)
                .unwrap_or_else(|e| panic!("{bind}: {e}"));
        }
    }

    #[test]
    fn admin_token_must_fit_a_header_and_port_zero_may_repeat() {
        let bad = format!("{GOOD}admin: {{ token: \"two words\" }}\n");
        let err = Config::from_yaml(&bad, "t.yaml").unwrap_err();
        assert_eq!(err.key, "admin.token", "{err}");
        let zeros = "listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\nadmin: { bind: \"127.0.0.1:0\" }\npools:\n  - name: app\n    nodes: [{ route: a, address: \"127.0.0.1:1\" }]\n";
        Config::from_yaml(zeros, "t.yaml").unwrap();
    }

    /// A config with `listener` and `pool` lines (indented as given) and two nodes, the second
    /// with `node` keys: for the limit keys' tests.
    fn limits_yaml(listener: &str, pool: &str, node: &str) -> String {
        format!(
            "listeners:\n  - bind: \"127.0.0.1:8080\"\n{listener}pools:\n  - name: app\n{pool}    nodes:\n      - route: jvm1\n        address: \"127.0.0.1:1\"\n      - route: jvm2\n        address: \"127.0.0.1:2\"\n{node}"
        )
    }

    #[test]
    fn connection_limits_default_to_none_and_nodes_inherit_the_pool_default() {
        let c = Config::from_yaml(&limits_yaml("", "", ""), "t.yaml").unwrap();
        let p = &c.pools[0];
        assert_eq!(p.nodes[0].max_connections, None);
        assert_eq!(p.nodes[1].max_connections, None);
        assert_eq!(p.max_queue_per_node, 1000);
        assert_eq!(p.timeouts.queue, Duration::from_secs(1));

        let y = limits_yaml(
            "",
            "    max_connections_per_node: 50\n    max_queue_per_node: 7\n    timeouts:\n      queue: 250ms\n",
            "        max_connections: 3\n",
        );
        let c = Config::from_yaml(&y, "t.yaml").unwrap();
        let p = &c.pools[0];
        assert_eq!(p.nodes[0].max_connections, Some(50), "inherited");
        assert_eq!(p.nodes[1].max_connections, Some(3), "the node's own wins");
        assert_eq!(p.max_queue_per_node, 7);
        assert_eq!(p.timeouts.queue, Duration::from_millis(250));
    }

    #[test]
    fn h2_limits_default_and_follow_max_header_bytes() {
        let c = Config::from_yaml(&limits_yaml("", "", ""), "t.yaml").unwrap();
        let h2 = c.listeners[0].h2;
        assert_eq!(h2.max_concurrent_streams, 100);
        assert_eq!(h2.max_header_list_size, 16 * 1024);
        assert_eq!(h2.max_reset_streams, 100);

        let y = limits_yaml("    max_header_bytes: 32768\n", "", "");
        let c = Config::from_yaml(&y, "t.yaml").unwrap();
        assert_eq!(c.listeners[0].h2.max_header_list_size, 32768);

        let y = limits_yaml(
            "    h2:\n      max_concurrent_streams: 7\n      max_header_list_size: 4096\n      max_reset_streams: 9\n",
            "",
            "",
        );
        let h2 = Config::from_yaml(&y, "t.yaml").unwrap().listeners[0].h2;
        assert_eq!(
            (
                h2.max_concurrent_streams,
                h2.max_header_list_size,
                h2.max_reset_streams
            ),
            (7, 4096, 9)
        );
    }

    #[test]
    fn zero_and_absurd_limits_name_file_line_and_key() {
        let node_key = |v: &str| format!("        max_connections: {v}\n");
        // (yaml, key, line, message fragment)
        let cases: Vec<(String, &str, usize, &str)> = vec![
            (
                limits_yaml("", "", &node_key("0")),
                "pools[0].nodes[1].max_connections",
                10,
                "at least 1",
            ),
            (
                limits_yaml("", "", &node_key("2000000")),
                "pools[0].nodes[1].max_connections",
                10,
                "at most 1000000",
            ),
            (
                limits_yaml("", "    max_connections_per_node: 0\n", ""),
                "pools[0].max_connections_per_node",
                5,
                "at least 1",
            ),
            (
                limits_yaml("", "    max_queue_per_node: 0\n", ""),
                "pools[0].max_queue_per_node",
                5,
                "at least 1",
            ),
            (
                limits_yaml("", "    timeouts:\n      queue: 0s\n", ""),
                "pools[0].timeouts.queue",
                6,
                "must not be zero",
            ),
            (
                limits_yaml("", "    timeouts:\n      queue: 2y\n", ""),
                "pools[0].timeouts.queue",
                6,
                "at most",
            ),
            (
                limits_yaml("    h2:\n      max_concurrent_streams: 0\n", "", ""),
                "listeners[0].h2.max_concurrent_streams",
                4,
                "between 1 and 10000",
            ),
            (
                limits_yaml("    h2:\n      max_header_list_size: 0\n", "", ""),
                "listeners[0].h2.max_header_list_size",
                4,
                "between 1024",
            ),
            (
                limits_yaml("    h2:\n      max_reset_streams: 0\n", "", ""),
                "listeners[0].h2.max_reset_streams",
                4,
                "between 1 and",
            ),
            (
                limits_yaml("    h2:\n      max_streams: 5\n", "", ""),
                "listeners[0].h2.max_streams",
                4,
                "unknown field",
            ),
        ];
        for (yaml, key, line, fragment) in cases {
            let err = Config::from_yaml(&yaml, "bad.yaml").unwrap_err();
            assert_eq!(err.file, "bad.yaml");
            assert_eq!(err.key, key, "{yaml}\n{err}");
            assert!(err.message.contains(fragment), "{err}");
            assert_eq!(err.line, Some(line), "{yaml}\n{err}");
        }
    }
}
