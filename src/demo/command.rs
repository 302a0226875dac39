//! `stickyroute demo`: the whole product on one machine, in one command, with no external
//! services.
//!
//! Three demo nodes (`jvm1..jvm3`, see [`super::node`]) share one in-memory session map — the
//! stand-in for Tomcat session replication — behind a balancer started from an embedded
//! configuration ([`DEMO_CONFIG`]: translate binder, a 2 s `recover_after`, an admin listener).
//! A small **control listener** stops and starts demo nodes by route, so a newcomer can kill the
//! node serving their session — from the buttons of the demo page, or from another terminal —
//! and watch the session move and its cookie get rebound. The demo's nodes know the control
//! listener's URL: their counter page (served through the balancer) lists the nodes with *stop*
//! and *start* buttons and shows the session cookie before and after each count, which is why
//! the demo's cookies are not `HttpOnly`. The control listener answers pages of the balancer's
//! port on loopback with `Access-Control-Allow-Origin`, so those pages can read its answers.
//!
//! Why a control listener of its own instead of a verb on the admin API: the admin API changes
//! what the balancer *does* (drain, disable, activate); stopping a demo node simulates a crash
//! that the balancer must *discover* by itself (a refused connect, a failed health probe). Keeping
//! the two apart keeps demo-only verbs out of the operator API, and keeps the demonstration
//! honest: nothing tells the balancer that a node is gone.
//!
//! [`start_demo`] is the library entry point (the tests run it on `127.0.0.1:0` ports and read
//! the bound addresses back); [`run_cli`] is the `stickyroute demo` subcommand around it, and
//! `stickyroute demo stop|start|status` are small clients of the control listener.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::node::{validate_route, DemoNodeConfig, RunningNode};
use crate::config::{AdminConfig, Config, ConfigError};
use crate::control::Running;
use crate::proxy::listener::ServerError;
use crate::state::node::now_ms;
use crate::state::Balancer;
use crate::store::SessionStore;

/// The balancer configuration of the demo, embedded in the binary.
pub const DEMO_CONFIG: &str = include_str!("demo.yaml");
/// The name [`DEMO_CONFIG`] goes by in error messages and `Config::source`.
pub const DEMO_CONFIG_NAME: &str = "<embedded demo config>";
/// Default balancer listener of the demo.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// Default admin listener of the demo.
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
/// Default control listener of the demo (stop/start demo nodes).
pub const DEFAULT_CONTROL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8089);
/// Default port of the first demo node; the others follow (18082, 18083).
pub const DEFAULT_NODE_PORT: u16 = 18081;
/// Demo nodes listen on loopback only: they are reached through the balancer.
pub const NODE_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Time in-flight requests get to finish when the demo stops.
pub const DEMO_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long `start` keeps trying to rebind a stopped node's port.
const REBIND_DEADLINE: Duration = Duration::from_secs(2);
const REBIND_PAUSE: Duration = Duration::from_millis(50);
/// Deadline of one request of `stickyroute demo stop|start|status`.
const CONTROL_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for a control request's head (a slow client cannot hold a connection forever).
const CONTROL_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the demo listens.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The balancer's listener (`--listen`).
    pub listen: SocketAddr,
    /// The balancer's admin listener (`--admin`).
    pub admin: SocketAddr,
    /// The control listener that stops and starts demo nodes (`--control`).
    pub control: SocketAddr,
    /// Port of the first node on 127.0.0.1; node *i* listens on `node_port + i`. `0`: each node
    /// gets a free port of its own (`--node-port`).
    pub node_port: u16,
    /// Time in-flight requests get to finish on shutdown.
    pub grace: Duration,
}

impl Default for DemoOptions {
    /// The ports the README and the guide use: 8080, 9901, 8089, 18081–18083.
    fn default() -> Self {
        DemoOptions {
            listen: DEFAULT_LISTEN,
            admin: DEFAULT_ADMIN,
            control: DEFAULT_CONTROL,
            node_port: DEFAULT_NODE_PORT,
            grace: DEMO_SHUTDOWN_GRACE,
        }
    }
}

impl DemoOptions {
    /// Every listener on a free port of 127.0.0.1 (for tests and parallel demos).
    pub fn ephemeral() -> Self {
        let any = SocketAddr::new(NODE_HOST, 0);
        DemoOptions {
            listen: any,
            admin: any,
            control: any,
            node_port: 0,
            grace: Duration::from_secs(1),
        }
    }
}

/// Why the demo could not start, or a control action failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A listener could not be bound; `flag` is the command-line flag that sets its address.
    #[error("{flag} {addr}: cannot listen: {source}{hint}", hint = bind_hint(source, flag))]
    Bind {
        flag: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    /// Two flags name one address.
    #[error("{second} {addr}: the same address as {first}; give each listener its own port")]
    SameAddress {
        first: &'static str,
        second: &'static str,
        addr: SocketAddr,
    },
    /// `--node-port` leaves no room for every node.
    #[error("--node-port {port}: {nodes} nodes need ports {port}..{last}, past 65535", last = u32::from(*port) + *nodes as u32 - 1)]
    NodePortRange { port: u16, nodes: usize },
    /// The embedded configuration is invalid (a bug of this build).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The balancer could not start.
    #[error("balancer: {0}")]
    Server(ServerError),
    /// The control request names no demo node.
    #[error("no demo node {route:?} (the demo runs {known})")]
    UnknownNode { route: String, known: String },
    /// A stopped node could not get its port back.
    #[error("cannot restart {route} on {addr}: {source}")]
    Restart {
        route: String,
        addr: SocketAddr,
        source: io::Error,
    },
    /// `stickyroute demo stop|start ROUTE` names no possible route.
    #[error("{0}")]
    InvalidRoute(String),
    /// The control listener cannot be reached, or did not answer in time.
    #[error(
        "cannot reach the demo control listener at {control}: {reason} \
         (is `stickyroute demo` running? it listens where --control says)"
    )]
    ControlUnreachable { control: SocketAddr, reason: String },
    /// The request to the control listener failed after connecting.
    #[error("demo control request {method} {path} to {control} failed: {source}")]
    ControlRequest {
        control: SocketAddr,
        method: Method,
        path: String,
        source: ControlRequestError,
    },
    /// The control listener refused the action; `message` is its answer.
    #[error("{message}")]
    ControlRefused { status: StatusCode, message: String },
}

/// What went wrong in a control request once connected.
#[derive(Debug, thiserror::Error)]
pub enum ControlRequestError {
    #[error("cannot build the request: {0}")]
    Build(#[from] http::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

fn bind_hint(e: &io::Error, flag: &str) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            format!(" (is another demo or balancer running? choose another address with {flag})")
        }
        io::ErrorKind::AddrNotAvailable => {
            format!(" (not an address of this machine; choose another with {flag})")
        }
        io::ErrorKind::PermissionDenied => {
            format!(" (ports below 1024 need privileges; choose another with {flag})")
        }
        _ => String::new(),
    }
}

/// One demo node as the control listener reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub route: String,
    pub address: SocketAddr,
    /// Is the demo node serving its port (false after a stop)?
    pub running: bool,
    /// The balancer's view: `up` or `down` (passive marks and health probes).
    pub health: &'static str,
    /// The balancer's operator state: `active`, `draining`, `disabled`, `standby`.
    pub state: &'static str,
    /// Did this control action change anything (false: already stopped / started)?
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
}

struct NodeSlot {
    route: String,
    addr: SocketAddr,
    running: Option<RunningNode>,
}

/// The demo nodes and their shared store; stops and restarts nodes by route.
struct DemoNodes {
    store: SessionStore,
    slots: Mutex<Vec<NodeSlot>>,
    balancer: Arc<Balancer>,
    /// The control listener's URL, for the nodes' pages.
    control_url: String,
    /// The balancer's port: its pages (any loopback name) may call the control listener.
    balancer_port: u16,
}

/// The configuration of demo node `route` in the demo: its page gets the control buttons and a
/// cookie the page's script can show.
fn demo_node_config(route: &str, store: SessionStore, control_url: &str) -> DemoNodeConfig {
    DemoNodeConfig {
        http_only: false,
        control_url: Some(control_url.to_owned()),
        ..DemoNodeConfig::new(route, store)
    }
}

/// The URL a browser on this machine reaches `addr` at (an unspecified address as loopback).
fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Whether `origin` is a page of the balancer's listener opened on this machine
/// (`http://127.0.0.1:8080`, `http://localhost:8080`, `http://[::1]:8080`): those pages may read
/// the control listener's answers (CORS). Stopping a node needs no CORS; reading the answer does.
fn balancer_origin(origin: &str, balancer_port: u16) -> bool {
    let Some(rest) = origin.strip_prefix("http://") else {
        return false;
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().ok() == Some(balancer_port)
        && matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

impl DemoNodes {
    fn status_of(&self, slot: &NodeSlot, changed: Option<bool>) -> NodeStatus {
        let snapshot = self.balancer.snapshot();
        let node = snapshot.pools.iter().find_map(|p| p.node(&slot.route));
        NodeStatus {
            route: slot.route.clone(),
            address: slot.addr,
            running: slot.running.is_some(),
            health: match node {
                Some(n) if n.is_up(now_ms()) => "up",
                Some(_) => "down",
                None => "unknown",
            },
            state: node.map_or("unknown", |n| n.state().as_str()),
            changed,
        }
    }

    async fn list(&self) -> Vec<NodeStatus> {
        let slots = self.slots.lock().await;
        slots.iter().map(|s| self.status_of(s, None)).collect()
    }

    fn unknown(&self, slots: &[NodeSlot], route: &str) -> DemoError {
        let known: Vec<&str> = slots.iter().map(|s| s.route.as_str()).collect();
        DemoError::UnknownNode {
            route: route.to_owned(),
            known: known.join(", "),
        }
    }

    async fn stop(&self, route: &str) -> Result<NodeStatus, DemoError> {
        let mut slots = self.slots.lock().await;
        let Some(i) = slots.iter().position(|s| s.route == route) else {
            return Err(self.unknown(&slots, route));
        };
        let slot = &mut slots[i];
        let changed = match slot.running.take() {
            Some(node) => {
                node.stop().await;
                info!(route, addr = %slot.addr, "demo node stopped");
                true
            }
            None => false,
        };
        Ok(self.status_of(slot, Some(changed)))
    }

    async fn start(&self, route: &str) -> Result<NodeStatus, DemoError> {
        let mut slots = self.slots.lock().await;
        let Some(i) = slots.iter().position(|s| s.route == route) else {
            return Err(self.unknown(&slots, route));
        };
        let slot = &mut slots[i];
        if slot.running.is_some() {
            return Ok(self.status_of(slot, Some(false)));
        }
        let listener = rebind(slot.addr)
            .await
            .map_err(|source| DemoError::Restart {
                route: route.to_owned(),
                addr: slot.addr,
                source,
            })?;
        let cfg = demo_node_config(route, self.store.clone(), &self.control_url);
        slot.running = Some(RunningNode::start(listener, cfg).await);
        info!(route, addr = %slot.addr, "demo node started");
        Ok(self.status_of(slot, Some(true)))
    }

    async fn stop_all(&self) {
        let mut slots = self.slots.lock().await;
        for slot in slots.iter_mut() {
            if let Some(node) = slot.running.take() {
                node.stop().await;
            }
        }
    }
}

/// Binds `addr` again, retrying briefly (the port may still be held for a moment).
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let deadline = tokio::time::Instant::now() + REBIND_DEADLINE;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(REBIND_PAUSE).await,
        }
    }
}

/// Refuses two listeners on one fixed address (port 0 is a fresh port each time).
fn check_distinct(opts: &DemoOptions) -> Result<(), DemoError> {
    let fixed = [
        ("--listen", opts.listen),
        ("--admin", opts.admin),
        ("--control", opts.control),
    ];
    for (i, (first, a)) in fixed.iter().enumerate() {
        for (second, b) in &fixed[i + 1..] {
            if a.port() != 0 && a == b {
                return Err(DemoError::SameAddress {
                    first,
                    second,
                    addr: *a,
                });
            }
        }
    }
    Ok(())
}

async fn bind_flag(flag: &'static str, addr: SocketAddr) -> Result<TcpListener, DemoError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DemoError::Bind { flag, addr, source })
}

/// A running demo: three nodes, the balancer, the control listener.
pub struct RunningDemo {
    /// The balancer's listener.
    pub balancer_addr: SocketAddr,
    /// The balancer's admin listener (status page, JSON API, `/metrics`).
    pub admin_addr: SocketAddr,
    /// The control listener.
    pub control_addr: SocketAddr,
    nodes: Arc<DemoNodes>,
    running: Running,
    control_stop: CancellationToken,
    control_task: JoinHandle<()>,
}

/// Starts three demo nodes sharing one memory store, the balancer in front of them and the
/// control listener; returns once everything listens.
///
/// Ports of `0` are allowed everywhere: the bound addresses are in the returned value. A port
/// that cannot be bound is reported with the flag that sets it.
pub async fn start_demo(opts: DemoOptions) -> Result<RunningDemo, DemoError> {
    let mut config = Config::from_yaml(DEMO_CONFIG, DEMO_CONFIG_NAME)?;
    check_distinct(&opts)?;

    let control_listener = bind_flag("--control", opts.control).await?;
    let control_addr = control_listener.local_addr().unwrap_or(opts.control);
    let control_url = local_url(control_addr);
    if !control_addr.ip().is_loopback() {
        warn!(%control_addr, "the demo control listener has no authentication; anyone who reaches it can stop demo nodes");
    }

    // The nodes first: the balancer's config needs their bound addresses.
    let store = SessionStore::memory();
    let slots = start_nodes(&mut config, &opts, &store, &control_url).await?;
    let running = start_balancer(config, &opts).await?;
    let balancer_addr = running.addr();
    let admin_addr = running.admin_addr.unwrap_or(opts.admin);

    let nodes = Arc::new(DemoNodes {
        store,
        slots: Mutex::new(slots),
        balancer: running.balancer.clone(),
        control_url,
        balancer_port: balancer_addr.port(),
    });
    let control_stop = CancellationToken::new();
    let control_task = tokio::spawn(control_loop(
        control_listener,
        nodes.clone(),
        control_stop.clone(),
    ));
    info!(balancer = %balancer_addr, control = %control_addr, "demo started");
    Ok(RunningDemo {
        balancer_addr,
        admin_addr,
        control_addr,
        nodes,
        running,
        control_stop,
        control_task,
    })
}

/// Starts one demo node per node of the demo pool, on `opts.node_port` and the ports after it
/// (or any free ports), and writes their bound addresses into `config`.
async fn start_nodes(
    config: &mut Config,
    opts: &DemoOptions,
    store: &SessionStore,
    control_url: &str,
) -> Result<Vec<NodeSlot>, DemoError> {
    let mut slots = Vec::new();
    let Some(pool) = config.pools.first_mut() else {
        return Err(DemoError::Config(ConfigError {
            file: DEMO_CONFIG_NAME.to_owned(),
            line: None,
            key: "pools".to_owned(),
            message: "the demo needs one pool".to_owned(),
        }));
    };
    let count = pool.nodes.len();
    if opts.node_port != 0 && usize::from(opts.node_port) + count - 1 > usize::from(u16::MAX) {
        return Err(DemoError::NodePortRange {
            port: opts.node_port,
            nodes: count,
        });
    }
    for (i, node_cfg) in pool.nodes.iter_mut().enumerate() {
        let port = if opts.node_port == 0 {
            0
        } else {
            // In range: checked above.
            opts.node_port + i as u16
        };
        let listener = bind_flag("--node-port", SocketAddr::new(NODE_HOST, port)).await?;
        let node = RunningNode::start(
            listener,
            demo_node_config(&node_cfg.route, store.clone(), control_url),
        )
        .await;
        node_cfg.addr = crate::config::NodeAddr::Socket(node.addr);
        node_cfg.address = node.addr.to_string();
        slots.push(NodeSlot {
            route: node_cfg.route.clone(),
            addr: node.addr,
            running: Some(node),
        });
    }
    Ok(slots)
}

/// Starts the balancer of `config` on the addresses of `opts`.
async fn start_balancer(mut config: Config, opts: &DemoOptions) -> Result<Running, DemoError> {
    // Validated text, then the addresses of this run: the listener and the admin may both be
    // `127.0.0.1:0`, which validation would (rightly) refuse as one address written twice.
    let Some(listener_cfg) = config.listeners.first_mut() else {
        return Err(DemoError::Config(ConfigError {
            file: DEMO_CONFIG_NAME.to_owned(),
            line: None,
            key: "listeners".to_owned(),
            message: "the demo needs one listener".to_owned(),
        }));
    };
    listener_cfg.bind = opts.listen;
    let token = config.admin.as_ref().and_then(|a| a.token.clone());
    config.admin = Some(AdminConfig {
        bind: opts.admin,
        token,
        line: None,
    });

    // `Running::start` reports a bind failure by address; name the flag that sets it.
    Running::start_with_grace(config, opts.grace)
        .await
        .map_err(|e| match e {
            ServerError::Bind { addr, source } => DemoError::Bind {
                flag: if addr == opts.listen {
                    "--listen"
                } else {
                    "--admin"
                },
                addr,
                source,
            },
            other => DemoError::Server(other),
        })
}

impl RunningDemo {
    /// The balancer's shared state (routing snapshot, node health).
    pub fn balancer(&self) -> &Arc<Balancer> {
        &self.running.balancer
    }

    /// Every demo node with its address and the balancer's view of it.
    pub async fn nodes(&self) -> Vec<NodeStatus> {
        self.nodes.list().await
    }

    /// Stops one demo node like a crash (what `POST /nodes/<route>/stop` does).
    pub async fn stop_node(&self, route: &str) -> Result<NodeStatus, DemoError> {
        self.nodes.stop(route).await
    }

    /// Starts a stopped demo node again on its address (`POST /nodes/<route>/start`).
    pub async fn start_node(&self, route: &str) -> Result<NodeStatus, DemoError> {
        self.nodes.start(route).await
    }

    /// What to try, with this run's addresses. `program` is how the user invokes the binary.
    pub fn guide(&self, program: &str) -> String {
        let b = self.balancer_addr;
        let c = self.control_addr;
        let control_flag = if c == DEFAULT_CONTROL {
            String::new()
        } else {
            format!(" --control {c}")
        };
        let nodes = match self.nodes.slots.try_lock() {
            Ok(slots) => slots
                .iter()
                .map(|s| format!("{} {}", s.route, s.addr))
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => "jvm1, jvm2, jvm3".to_owned(),
        };
        format!(
            "\
stickyroute demo is running
  balancer  http://{b}/   (translate binder)
  nodes     {nodes}   (one shared in-memory session store)
  admin     http://{a}/
  control   http://{c}/   (stop and start demo nodes)

Try it:
  1. Open http://{b}/ in a browser and press \"Count again\", or count with curl:
       curl -b cookies.txt -c cookies.txt http://{b}/count
     The answer names the node serving you: {{\"node\":\"jvm2\",\"session\":\"….jvm2\",\"count\":1}}
  2. From another terminal, stop the node serving you (say jvm2), like a crash:
       {program} demo stop jvm2{control_flag}
       curl -X POST http://{c}/nodes/jvm2/stop        (the same)
  3. Count again: another node answers, the count goes on, the cookie is rebound:
       curl -b cookies.txt -c cookies.txt http://{b}/count
       grep JSESSIONID cookies.txt      (now ….jvm2.jvm3: pinned to jvm3, which still sees ….jvm2)
  4. Start it again; it takes new sessions after 2 s, your session stays where it went:
       {program} demo start jvm2{control_flag}
  Nodes and the balancer's view of them: curl http://{c}/   ({program} demo status{control_flag})
Ctrl-C stops everything.
",
            a = self.admin_addr,
        )
    }

    /// Stops the control listener, the balancer (in-flight requests get the grace period) and
    /// every demo node, in that order.
    pub async fn stop(self) {
        self.control_stop.cancel();
        let _ = self.control_task.await;
        self.running.stop().await;
        self.nodes.stop_all().await;
        info!("demo stopped");
    }
}

// ---------------------------------------------------------------------------------------------
// The control listener
// ---------------------------------------------------------------------------------------------

type ControlBody = Full<Bytes>;

async fn control_loop(listener: TcpListener, nodes: Arc<DemoNodes>, stop: CancellationToken) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(CONTROL_HEADER_TIMEOUT);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    warn!(error = %e, "demo control: accept failed");
                    tokio::time::sleep(REBIND_PAUSE).await;
                    continue;
                }
            },
        };
        let nodes = nodes.clone();
        let stop = stop.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let nodes = nodes.clone();
                async move { Ok::<_, Infallible>(control(&nodes, req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                res = conn => if let Err(e) = res {
                    debug!(client.addr = %peer, error = %e, "demo control connection ended with an error");
                },
            }
        });
    }
}

async fn control(nodes: &DemoNodes, req: Request<Incoming>) -> Response<ControlBody> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            o.to_str()
                .is_ok_and(|o| balancer_origin(o, nodes.balancer_port))
        })
        .cloned();
    let mut resp = control_action(nodes, req).await;
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    resp
}

async fn control_action(nodes: &DemoNodes, req: Request<Incoming>) -> Response<ControlBody> {
    let path = req.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET | &Method::HEAD, [""]) => {
            text(StatusCode::OK, render_table(&nodes.list().await))
        }
        (&Method::GET | &Method::HEAD, ["nodes"]) => json(StatusCode::OK, &nodes.list().await),
        (&Method::POST, ["nodes", route, action @ ("stop" | "start")]) => {
            let result = if *action == "stop" {
                nodes.stop(route).await
            } else {
                nodes.start(route).await
            };
            match result {
                Ok(status) => json(StatusCode::OK, &status),
                Err(e @ DemoError::UnknownNode { .. }) => {
                    text(StatusCode::NOT_FOUND, format!("{e}\n"))
                }
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            }
        }
        (_, [""] | ["nodes"]) => method_not_allowed("GET, HEAD"),
        (_, ["nodes", _, "stop" | "start"]) => method_not_allowed("POST"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try GET /, GET /nodes, POST /nodes/<route>/stop, POST /nodes/<route>/start\n",
        ),
    }
}

fn render_table(nodes: &[NodeStatus]) -> String {
    let mut out = format!(
        "{:<8} {:<22} {:<8} {}\n",
        "route", "address", "process", "balancer"
    );
    for n in nodes {
        out.push_str(&format!(
            "{:<8} {:<22} {:<8} {}, {}\n",
            n.route,
            n.address.to_string(),
            if n.running { "running" } else { "stopped" },
            n.health,
            n.state
        ));
    }
    out.push_str(
        "\nPOST /nodes/<route>/stop stops a node like a crash; POST /nodes/<route>/start starts it \
         again; GET /nodes is this list as JSON.\n",
    );
    out
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ControlBody> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<ControlBody> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn method_not_allowed(allow: &'static str) -> Response<ControlBody> {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

/// `stickyroute demo`: arguments (flattened into the binary's command line).
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub action: Option<DemoAction>,
    /// The balancer's listener.
    #[arg(long, default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The balancer's admin listener (status page, JSON API, /metrics).
    #[arg(long, default_value_t = DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// The demo's control listener, which stops and starts demo nodes; `demo stop|start|status`
    /// talk to it.
    #[arg(long, default_value_t = DEFAULT_CONTROL, global = true)]
    pub control: SocketAddr,
    /// Port of the first demo node on 127.0.0.1 (jvm1; jvm2 and jvm3 take the next two);
    /// 0: any free ports.
    #[arg(long, default_value_t = DEFAULT_NODE_PORT)]
    pub node_port: u16,
}

/// `stickyroute demo <action>`: talk to a running demo from another terminal.
#[derive(Debug, clap::Subcommand)]
pub enum DemoAction {
    /// Stop a demo node of the running demo, like a crash.
    Stop {
        /// The node's route: jvm1, jvm2 or jvm3.
        route: String,
    },
    /// Start a stopped demo node again on its address.
    Start {
        /// The node's route: jvm1, jvm2 or jvm3.
        route: String,
    },
    /// List the demo nodes and the balancer's view of them.
    Status,
}

/// Runs `stickyroute demo` (until Ctrl-C or SIGTERM) or one of its client actions.
pub async fn run_cli(args: DemoArgs) -> Result<(), DemoError> {
    let (method, path) = match &args.action {
        None => return run_demo(args).await,
        Some(DemoAction::Status) => (Method::GET, "/".to_owned()),
        Some(DemoAction::Stop { route }) | Some(DemoAction::Start { route }) => {
            validate_route(route).map_err(DemoError::InvalidRoute)?;
            let verb = if matches!(args.action, Some(DemoAction::Stop { .. })) {
                "stop"
            } else {
                "start"
            };
            (Method::POST, format!("/nodes/{route}/{verb}"))
        }
    };
    let (status, body) = control_request(args.control, method, &path).await?;
    if status.is_success() {
        print!("{body}");
        Ok(())
    } else {
        Err(DemoError::ControlRefused {
            status,
            message: body.trim_end().to_owned(),
        })
    }
}

async fn run_demo(args: DemoArgs) -> Result<(), DemoError> {
    let opts = DemoOptions {
        listen: args.listen,
        admin: args.admin,
        control: args.control,
        node_port: args.node_port,
        grace: DEMO_SHUTDOWN_GRACE,
    };
    let demo = start_demo(opts).await?;
    {
        use std::io::Write;
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "\n{}", demo.guide(&program_name()));
        let _ = out.flush();
    }
    crate::proxy::listener::shutdown_signal().await;
    println!("stopping the demo");
    demo.stop().await;
    Ok(())
}

/// How the user ran this binary, for the commands the guide prints: `stickyroute` when it was
/// found on the `PATH`, else the path as given, made relative to the current directory.
fn program_name() -> String {
    let Some(arg0) = std::env::args().next() else {
        return "stickyroute".to_owned();
    };
    if !arg0.contains('/') {
        return arg0;
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Ok(rel) = std::path::Path::new(&arg0).strip_prefix(&cwd) {
            return format!("./{}", rel.display());
        }
    }
    arg0
}

/// Sends one request to a demo control listener and returns the status and body.
pub async fn control_request(
    control: SocketAddr,
    method: Method,
    path: &str,
) -> Result<(StatusCode, String), DemoError> {
    let unreachable = |e: &dyn std::fmt::Display| DemoError::ControlUnreachable {
        control,
        reason: e.to_string(),
    };
    let failed = |source: ControlRequestError| DemoError::ControlRequest {
        control,
        method: method.clone(),
        path: path.to_owned(),
        source,
    };
    let exchange = async {
        let stream = TcpStream::connect(control)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, control.to_string())
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed(e.into()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| failed(e.into()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.into()))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(CONTROL_CLIENT_TIMEOUT, exchange)
        .await
        .map_err(|_| unreachable(&format!("no answer within {CONTROL_CLIENT_TIMEOUT:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn control_errors_name_what_failed() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = control_request(closed, Method::GET, "/").await.unwrap_err();
        assert!(
            matches!(e, DemoError::ControlUnreachable { control, .. } if control == closed),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains(&closed.to_string()), "{text}");
        assert!(text.contains("is `stickyroute demo` running?"), "{text}");
    }

    #[test]
    fn embedded_config_is_valid_and_uses_translate() {
        let cfg = Config::from_yaml(DEMO_CONFIG, DEMO_CONFIG_NAME).unwrap();
        assert_eq!(cfg.listeners[0].bind, DEFAULT_LISTEN);
        assert_eq!(cfg.admin.as_ref().unwrap().bind, DEFAULT_ADMIN);
        let pool = &cfg.pools[0];
        assert_eq!(pool.binder.as_str(), "translate");
        assert_eq!(pool.failover.recover_after, Duration::from_secs(2));
        let routes: Vec<&str> = pool.nodes.iter().map(|n| n.route.as_str()).collect();
        assert_eq!(routes, ["jvm1", "jvm2", "jvm3"]);
        for (i, n) in pool.nodes.iter().enumerate() {
            assert_eq!(
                n.addr,
                crate::config::NodeAddr::Socket(SocketAddr::new(
                    NODE_HOST,
                    DEFAULT_NODE_PORT + i as u16
                ))
            );
        }
    }

    #[test]
    fn bind_errors_name_the_flag() {
        let e = DemoError::Bind {
            flag: "--listen",
            addr: DEFAULT_LISTEN,
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("--listen 127.0.0.1:8080: cannot listen"),
            "{msg}"
        );
        assert!(
            msg.contains("choose another address with --listen"),
            "{msg}"
        );
    }

    #[test]
    fn one_address_for_two_listeners_is_refused() {
        let mut opts = DemoOptions::default();
        assert!(check_distinct(&opts).is_ok());
        opts.control = opts.admin;
        assert_eq!(
            check_distinct(&opts).unwrap_err().to_string(),
            "--control 127.0.0.1:9901: the same address as --admin; give each listener its own port"
        );
        assert!(check_distinct(&DemoOptions::ephemeral()).is_ok());
    }

    #[test]
    fn node_port_range_is_checked() {
        let e = DemoError::NodePortRange {
            port: 65534,
            nodes: 3,
        };
        assert_eq!(
            e.to_string(),
            "--node-port 65534: 3 nodes need ports 65534..65536, past 65535"
        );
    }

    #[test]
    fn table_lists_every_node() {
        let nodes = [NodeStatus {
            route: "jvm1".into(),
            address: "127.0.0.1:18081".parse().unwrap(),
            running: false,
            health: "down",
            state: "active",
            changed: None,
        }];
        let t = render_table(&nodes);
        assert!(
            t.contains("jvm1     127.0.0.1:18081        stopped  down, active"),
            "{t}"
        );
    }
}
