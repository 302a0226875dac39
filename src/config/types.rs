//! The validated configuration: what the rest of the balancer reads. Every value here has
//! passed `validate` (addresses parsed, durations non-zero, routes unique), so readers need no
//! checks of their own. The session store's settings are in `store`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

use super::locator::ConfigError;
use super::store::StoreConfig;
use crate::core::binder::BinderKind;
use crate::core::cookie::CookieDefaults;
use crate::core::discovery::RouteRule;
use crate::core::forwarding::TrustedProxies;
use crate::core::node_state::NodeState;
use crate::core::select::BalanceKind;
use crate::core::session::SessionSettings;

/// Environment variable that provides (or overrides) `cluster.redis`: the validated
/// [`ClusterConfig`] names it in its error when neither gives a URL.
pub const CLUSTER_REDIS_ENV: &str = "STICKYROUTE_CLUSTER_REDIS";

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

impl Config {
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
    /// The protocols the listener speaks to clients.
    pub protocols: Protocols,
}

/// `listeners[].protocols`: HTTP/1.1, HTTP/2, or both (the default). On TLS they are the ALPN
/// offer; on cleartext HTTP/2 is by prior knowledge (h2c), and a listener with HTTP/2 alone
/// reads every connection as HTTP/2 from its first byte, so a wrong preface is answered as
/// HTTP/2 requires (`GOAWAY`) rather than as an HTTP/1.1 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    pub http1: bool,
    pub h2: bool,
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols {
            http1: true,
            h2: true,
        }
    }
}

impl Protocols {
    /// The ALPN protocol ids a TLS listener offers, HTTP/2 first.
    pub fn alpn(self) -> Vec<Vec<u8>> {
        let mut ids = Vec::new();
        if self.h2 {
            ids.push(b"h2".to_vec());
        }
        if self.http1 {
            ids.push(b"http/1.1".to_vec());
        }
        ids
    }
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
    /// `client_ca` and `client_auth`: client certificates are asked for and verified.
    pub client_auth: Option<ClientAuth>,
}

/// `listeners[].tls.client_ca` / `client_auth`: client certificates verified against the CA
/// certificates in `ca` (PEM); `required`: a client without one is refused in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub ca: PathBuf,
    pub required: bool,
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

/// How a node is checked: `GET health.path` (over AJP on an AJP node), or CPing/CPong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    Http,
    Cping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// `None`: CPing for AJP nodes, HTTP for the others ([`HealthConfig::kind_for`]).
    pub kind: Option<HealthKind>,
    /// The path of `http` checks (`/` when every node is checked with CPing).
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Accepted statuses; empty means any 2xx.
    pub expect_status: Vec<u16>,
}

impl HealthConfig {
    /// The check a node speaking `protocol` gets.
    pub fn kind_for(&self, protocol: NodeProtocol) -> HealthKind {
        match (self.kind, protocol) {
            (Some(k), _) => k,
            (None, NodeProtocol::Ajp) => HealthKind::Cping,
            (None, NodeProtocol::Http) => HealthKind::Http,
        }
    }
}

/// What a node speaks: HTTP/1.1 (the default) or AJP/1.3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum NodeProtocol {
    #[default]
    Http,
    Ajp,
}

/// `ajp:` of an AJP node, its pool's keys merged with its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AjpConfig {
    /// The `secret` attribute sent with every request. Filled from `secret_env` by
    /// [`Config::with_ajp_secrets`] when the file names a variable.
    pub secret: Option<String>,
    /// The environment variable that holds the secret.
    pub secret_env: Option<String>,
    /// Must equal the connector's `packetSize` (8192..=65536).
    pub packet_size: usize,
    /// A pooled connection idle longer than this is CPinged before it carries a request.
    pub ping_after: Duration,
    /// Where `secret_env` is written, for its error once the environment is read.
    pub secret_env_key: String,
    pub file: String,
    pub line: Option<usize>,
}

/// `ajp.packet_size` by default (Tomcat's `packetSize` default).
pub const DEFAULT_AJP_PACKET_SIZE: usize = 8192;
/// `ajp.ping_after` by default.
pub const DEFAULT_AJP_PING_AFTER: Duration = Duration::from_secs(10);

/// Where a node listens: a literal socket address, or `host:port` looked up each time a new
/// connection is opened (so a container that comes back with a new IP is found without a
/// reload, and a config naming compose services validates on any machine).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeAddr {
    Socket(SocketAddr),
    Host {
        host: String,
        port: u16,
    },
    /// The addresses a discovery lookup gave, tried in order; never looked up again.
    Resolved(std::sync::Arc<[SocketAddr]>),
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
            NodeAddr::Resolved(list) => {
                for (i, a) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{a}")?;
                }
                Ok(())
            }
        }
    }
}

/// Where a node comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeSource {
    /// `pools[].nodes` of the config file.
    File,
    /// `pools[].discovery`: named by the pool's DNS records.
    Discovery,
    /// Added at runtime through the admin API (`POST /api/v1/nodes`); lost on restart.
    Api,
}

impl NodeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeSource::File => "file",
            NodeSource::Discovery => "discovery",
            NodeSource::Api => "api",
        }
    }
}

/// `pools[].discovery`: the pool's nodes (some or all of them) come from DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub source: DiscoverySource,
    /// The DNS server to ask; `None`: the system's (`/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
    /// How a node's route comes from its DNS name (the SRV target, or each address's PTR name).
    pub route: RouteRule,
    /// Lookups happen at the records' TTL, bounded by these.
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// A node that left the answer is removed when drained, at the latest after this.
    pub drain_timeout: Duration,
    /// Empty answers drain the discovered nodes only once they have lasted this long.
    pub empty_grace: Duration,
    /// Of every discovered node.
    pub weight: u32,
    pub domain: String,
    /// The pool's `max_connections_per_node`, for discovered nodes.
    pub max_connections: Option<u32>,
}

/// What `discovery` looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverySource {
    /// `discovery.srv`: SRV records (targets and ports), then the targets' addresses.
    Srv(String),
    /// `discovery.host` + `discovery.port`: A/AAAA records, one node per address.
    Host { name: String, port: u16 },
}

impl DiscoverySource {
    /// The name looked up.
    pub fn name(&self) -> &str {
        match self {
            DiscoverySource::Srv(n) | DiscoverySource::Host { name: n, .. } => n,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            DiscoverySource::Srv(_) => "srv",
            DiscoverySource::Host { .. } => "host",
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
    pub source: NodeSource,
    pub protocol: NodeProtocol,
    /// `Some` exactly when `protocol` is AJP.
    pub ajp: Option<AjpConfig>,
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
    /// The default of `nodes[].max_connections`, also for nodes added at runtime.
    pub max_connections_per_node: Option<u32>,
    /// The file's nodes, then (in a running balancer's snapshot) the discovered and API ones.
    pub nodes: Vec<NodeConfig>,
    pub discovery: Option<DiscoveryConfig>,
}
