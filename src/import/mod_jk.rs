//! mod_jk's `workers.properties` → pools: each lb worker becomes a pool, each of its
//! `balance_workers` (ajp13 workers) a node with `protocol: ajp`; an ajp13 worker mounted on
//! its own (named in `worker.list`) becomes a pool of one node. `reference` inheritance is
//! followed. What has no equivalent becomes a note on the pool or node it belongs to.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use super::model::{
    hoist_notes, hoist_protocol, note_overlaps, shared_duration, Ajp, Balance, Balancer, Listener,
    Node, NodeState, Noted, Pool, Protocol, Session, PREPOST_PING_AFTER,
};
use super::properties::{self, boolean, Property};
use super::{uri_map, ImportError, Input};
use crate::core::session::is_valid_route;

/// One `worker.NAME.DIRECTIVE=value` line.
#[derive(Debug, Clone)]
struct Setting {
    directive: String,
    value: String,
    line: usize,
    /// `NAME` when the value is written `$(NAME)` and `NAME` is no property of the file.
    env_var: Option<String>,
}

/// Nesting limit of `reference`, as mod_jk's.
const MAX_REFERENCE_DEPTH: usize = 20;

/// A worker with its `reference`s resolved: its own settings, then those it inherits.
#[derive(Debug, Clone)]
struct Worker {
    name: String,
    settings: Vec<Setting>,
    /// The first line of the worker's own settings (not inherited); `None` without any.
    own_line: Option<usize>,
}

impl Worker {
    /// The effective value of a single-valued directive.
    fn get(&self, directive: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.directive == directive)
    }

    /// Every value of a multi-valued directive, comma-separated items split.
    fn list(&self, directive: &str) -> Vec<(String, usize)> {
        let mut lines: Vec<&Setting> = self
            .settings
            .iter()
            .filter(|s| s.directive == directive)
            .collect();
        lines.sort_by_key(|s| s.line);
        lines
            .into_iter()
            .flat_map(|s| {
                s.value
                    .split([',', ' '])
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(move |v| (v.to_string(), s.line))
            })
            .collect()
    }

    fn kind(&self) -> String {
        self.get("type")
            .map(|s| s.value.to_ascii_lowercase())
            .unwrap_or_else(|| "ajp13".into())
    }

    /// The first line of the worker's own settings.
    fn line(&self) -> Option<usize> {
        self.own_line
    }
}

/// The file's workers and `worker.list`.
struct Workers<'a> {
    file: &'a str,
    /// Own settings by worker name, most recent first.
    own: HashMap<String, Vec<Setting>>,
    /// Worker names in order of first appearance.
    order: Vec<String>,
    list: Vec<(String, usize)>,
}

impl<'a> Workers<'a> {
    fn read(file: &'a str, props: &[Property]) -> Result<Workers<'a>, ImportError> {
        let mut own: HashMap<String, Vec<Setting>> = HashMap::new();
        let mut order = Vec::new();
        let mut list = Vec::new();
        for p in props {
            let Some(rest) = p.name.strip_prefix("worker.") else {
                continue; // a variable
            };
            let Some((name, directive)) = rest.split_once('.') else {
                if rest == "list" {
                    p.resolved(file)?;
                    list.extend(
                        p.value
                            .split(',')
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                            .map(|v| (v.to_string(), p.line)),
                    );
                }
                continue;
            };
            if !own.contains_key(name) {
                order.push(name.to_string());
            }
            if directive != "secret" {
                p.resolved(file)?;
            }
            own.entry(name.to_string()).or_default().insert(
                0,
                Setting {
                    directive: directive.to_string(),
                    value: p.value.clone(),
                    line: p.line,
                    env_var: p.env_var.clone(),
                },
            );
        }
        Ok(Workers {
            file,
            own,
            order,
            list,
        })
    }

    /// `name` with its references resolved (a directive set nearer wins, a multi-valued one
    /// included); a worker without settings has mod_jk's defaults.
    fn worker(&self, name: &str) -> Result<Worker, ImportError> {
        let mut settings: Vec<Setting> = Vec::new();
        let mut seen = HashSet::new();
        let mut current = name.to_string();
        for _ in 0..=MAX_REFERENCE_DEPTH {
            if !seen.insert(current.clone()) {
                return Err(self.error(
                    name,
                    format!("worker {name}: reference loop through {current}"),
                ));
            }
            let own = self.own.get(&current).map(Vec::as_slice).unwrap_or(&[]);
            let nearer: HashSet<String> = settings.iter().map(|s| s.directive.clone()).collect();
            settings.extend(
                own.iter()
                    .filter(|s| s.directive != "reference" && !nearer.contains(&s.directive))
                    .cloned(),
            );
            let Some(r) = own.iter().find(|s| s.directive == "reference") else {
                let own_line = self
                    .own
                    .get(name)
                    .and_then(|o| o.iter().map(|s| s.line).min());
                return Ok(Worker {
                    name: name.to_string(),
                    settings,
                    own_line,
                });
            };
            current = match r.value.strip_prefix("worker.") {
                Some(target) => target.to_string(),
                None => {
                    return Err(ImportError::at(
                        self.file,
                        r.line,
                        format!(
                            "worker.{current}.reference must be written worker.NAME, found {:?}",
                            r.value
                        ),
                    ))
                }
            };
        }
        Err(self.error(
            name,
            format!("worker {name}: references nested deeper than {MAX_REFERENCE_DEPTH}"),
        ))
    }

    fn error(&self, worker: &str, message: String) -> ImportError {
        match self.own.get(worker).and_then(|s| s.last()) {
            Some(s) => ImportError::at(self.file, s.line, message),
            None => ImportError::whole(self.file, message),
        }
    }

    /// The workers requests are mapped to: `worker.list`, or every lb worker without one.
    fn entry_points(&self) -> Result<Vec<(String, Option<usize>)>, ImportError> {
        if !self.list.is_empty() {
            return Ok(self
                .list
                .iter()
                .map(|(n, l)| (n.clone(), Some(*l)))
                .collect());
        }
        let mut entries = Vec::new();
        for name in &self.order {
            if self.worker(name)?.kind() == "lb" {
                entries.push((name.clone(), None));
            }
        }
        Ok(entries)
    }
}

/// The session names an lb worker sets.
#[derive(Default)]
struct SessionNames {
    cookie: Option<(String, usize)>,
    path: Option<(String, usize)>,
}

/// The whole import.
pub(super) fn import(
    input: Input,
    uri_input: Option<Input>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Balancer, ImportError> {
    let file = input.name;
    let props = properties::parse(input.text, file, env)?;
    let jk = Workers::read(file, &props)?;
    let mut b = Balancer::default();
    b.header.push(match uri_input {
        Some(u) => format!(
            "Imported by `stickyroute import mod-jk` from {file} and {}.",
            u.name
        ),
        None => format!("Imported by `stickyroute import mod-jk` from {file}."),
    });
    b.header.push("Every comment names a setting that was not carried over or changed meaning: read them before use.".into());
    let mut names = Vec::new();
    let mut mounts = Vec::new();
    for (name, line) in jk.entry_points()? {
        let w = jk.worker(&name)?;
        let pool = match w.kind().as_str() {
            "lb" => lb_pool(&jk, &w, &mut names)?,
            "ajp13" | "ajp14" => {
                names.push(SessionNames::default());
                single_pool(&jk, &w)?
            }
            "status" => {
                b.header.push(format!("status worker {name} not imported: the status page and node states are on stickyroute's admin listener (`admin:`, `stickyroute ctl`)."));
                continue;
            }
            kind => {
                let at = line.map(|l| format!(" ({file}:{l})")).unwrap_or_default();
                b.header.push(format!("worker {name} of type {kind}{at} not imported: stickyroute speaks HTTP and AJP/1.3 only."));
                continue;
            }
        };
        mounts.extend(w.list("mount").into_iter().map(|(p, l)| uri_map::Mount {
            pattern: p,
            worker: name.clone(),
            file: file.to_string(),
            line: l,
        }));
        b.pools.push(pool);
    }
    if b.pools.is_empty() {
        return Err(ImportError::whole(
            file,
            "no lb or ajp13 worker to import (worker.list names none, and no worker.NAME.type=lb is defined)",
        ));
    }
    if let Some(u) = uri_input {
        mounts.extend(uri_map::parse(u, env)?);
    }
    uri_map::apply(&mut b.pools, &mounts, &mut b.header);
    note_overlaps(&mut b.pools);
    b.session = session(names);
    b.listeners.push(Listener {
        bind: "0.0.0.0:8080".into(),
        notes: vec![
            "httpd's Listen and VirtualHost are not in workers.properties: set the address clients connect to.".into(),
        ],
    });
    for p in b.pools.iter_mut() {
        hoist_protocol(p);
        hoist_notes(p);
    }
    Ok(b)
}

/// An lb worker and its members.
fn lb_pool(jk: &Workers, lb: &Worker, names: &mut Vec<SessionNames>) -> Result<Pool, ImportError> {
    let file = jk.file;
    let mut pool = Pool::new(&lb.name);
    pool.notes.push(match lb.line() {
        Some(l) => format!("lb worker {} ({file}:{l})", lb.name),
        None => format!("lb worker {}", lb.name),
    });
    let mut members = lb.list("balance_workers");
    members.extend(lb.list("balanced_workers"));
    if members.is_empty() {
        return Err(jk.error(
            &lb.name,
            format!("lb worker {} has no balance_workers", lb.name),
        ));
    }
    let mut built = Vec::new();
    for (member, line) in &members {
        let w = jk.worker(member)?;
        match w.kind().as_str() {
            "ajp13" | "ajp14" => {}
            kind => {
                pool.notes.push(format!("member {member} of type {kind} not imported: only ajp13 workers can be members"));
                continue;
            }
        }
        let m = member_node(jk, lb, &w, *line)?;
        if let Some(other) = built
            .iter()
            .find(|o: &&Member| o.node.route == m.node.route)
        {
            return Err(ImportError::at(
                file,
                *line,
                format!("members {} and {} of lb worker {} have the same route {:?}; routes must differ", other.worker, member, lb.name, m.node.route),
            ));
        }
        built.push(m);
    }
    if built.is_empty() {
        return Err(jk.error(
            &lb.name,
            format!("lb worker {} has no ajp13 member", lb.name),
        ));
    }
    apply_redirects(&mut built);
    apply_distance(&mut built);
    pool_timeouts(&mut pool, &built);
    lb_settings(&mut pool, lb, built.len(), jk.file)?;
    names.push(SessionNames {
        cookie: lb.get("session_cookie").map(|s| (s.value.clone(), s.line)),
        path: lb.get("session_path").map(|s| (s.value.clone(), s.line)),
    });
    pool.nodes = built.into_iter().map(|m| m.node).collect();
    Ok(pool)
}

/// An ajp13 worker mounted on its own: a pool of one node.
fn single_pool(jk: &Workers, w: &Worker) -> Result<Pool, ImportError> {
    let mut pool = Pool::new(&w.name);
    pool.notes.push(format!(
        "ajp13 worker {} mounted on its own: a pool of one node",
        w.name
    ));
    let m = member_node(
        jk,
        &Worker {
            name: String::new(),
            settings: vec![],
            own_line: None,
        },
        w,
        w.line().unwrap_or(1),
    )?;
    pool_timeouts(&mut pool, std::slice::from_ref(&m));
    pool.nodes.push(m.node);
    Ok(pool)
}

/// A member as a node, with what is set per member in mod_jk and per pool here.
struct Member {
    worker: String,
    node: Node,
    /// `redirect` as written (a worker name or a route).
    redirect: Option<String>,
    distance: i64,
    connect: Option<(Duration, String)>,
    response: Option<(Duration, String)>,
    idle: Option<(Duration, String)>,
    fail_on_status: Vec<u16>,
}

/// Directives a member's node carries; the rest of its settings become notes.
const MEMBER_MAPPED: &[&str] = &[
    "type",
    "host",
    "port",
    "route",
    "jvm_route",
    "lbfactor",
    "domain",
    "redirect",
    "activation",
    "disabled",
    "stopped",
    "secret",
    "max_packet_size",
    "ping_mode",
    "ping_timeout",
    "connect_timeout",
    "prepost_timeout",
    "connection_ping_interval",
    "connection_pool_timeout",
    "socket_connect_timeout",
    "reply_timeout",
    "fail_on_status",
    "distance",
    "mount",
];

/// One ajp13 worker of `lb` (an empty `lb` for a worker on its own); `line` locates it.
fn member_node(jk: &Workers, lb: &Worker, w: &Worker, line: usize) -> Result<Member, ImportError> {
    let file = jk.file;
    let route = w
        .get("route")
        .or(w.get("jvm_route"))
        .map(|s| s.value.clone())
        .unwrap_or_else(|| w.name.clone());
    if !is_valid_route(&route, '.') {
        let at = w.get("route").map_or(line, |s| s.line);
        return Err(ImportError::at(file, at, format!("worker {}: route {route:?} may only use letters, digits and - _ ~ ! : (at most 64), not the separator .", w.name)));
    }
    let mut node = Node::new(&route, &address(w));
    node.notes.push(match w.line() {
        Some(l) => format!("worker {} ({file}:{l})", w.name),
        None => format!(
            "worker {}: no properties of its own, mod_jk's defaults (localhost:8009)",
            w.name
        ),
    });
    node.protocol = Some(Protocol::Ajp);
    if let Some(s) = w.get("lbfactor") {
        let f: u32 = number(file, s)?;
        node.weight = Some(if f == 0 {
            Noted::new(1, "lbfactor=0 is not a weight: 1")
        } else {
            Noted::new(f, format!("lbfactor={f}"))
        });
    }
    node.domain = w.get("domain").map(|s| s.value.clone());
    node.state = activation(file, w)?;
    node.ajp = Some(member_ajp(file, lb, w, &mut node.notes)?);
    let idle = pool_timeout(file, w, &mut node.notes)?;
    let mut fail_on_status = Vec::new();
    if let Some(s) = w.get("fail_on_status") {
        fail_on_status = statuses(file, s, &mut node.notes)?;
    }
    for s in unmapped(w, MEMBER_MAPPED) {
        node.notes.push(format!(
            "not carried over: {}={} ({})",
            s.directive,
            s.value,
            reason(&s.directive)
        ));
    }
    Ok(Member {
        worker: w.name.clone(),
        node,
        redirect: w.get("redirect").map(|s| s.value.clone()),
        distance: w
            .get("distance")
            .map(|s| number(file, s))
            .transpose()?
            .unwrap_or(0),
        connect: millis(file, w, "socket_connect_timeout")?,
        response: millis(file, w, "reply_timeout")?,
        idle,
        fail_on_status,
    })
}

/// `host` (which may carry the port) and `port` as `host:port`.
fn address(w: &Worker) -> String {
    let host = w.get("host").map_or("localhost", |s| s.value.as_str());
    let port = w.get("port").map_or("8009", |s| s.value.as_str());
    if host.starts_with('[') {
        if host.contains("]:") {
            return host.to_string();
        }
        return format!("{host}:{port}");
    }
    match host.matches(':').count() {
        0 => format!("{host}:{port}"),
        1 => host.to_string(),
        _ => format!("[{host}]:{port}"),
    }
}

/// `activation` (or the older `disabled` / `stopped`) as a node state.
fn activation(file: &str, w: &Worker) -> Result<Option<Noted<NodeState>>, ImportError> {
    if let Some(s) = w.get("activation") {
        return match s
            .value
            .trim()
            .chars()
            .next()
            .map(|c| c.to_ascii_uppercase())
        {
            Some('A') => Ok(Some(Noted::new(NodeState::Active, "activation=A"))),
            Some('D') => Ok(Some(Noted::new(
                NodeState::Draining,
                "activation=D: mod_jk's disabled still takes its sticky sessions, as draining does",
            ))),
            Some('S') => Ok(Some(Noted::new(
                NodeState::Disabled,
                "activation=S: mod_jk's stopped takes no requests, as disabled does",
            ))),
            _ => Err(ImportError::at(
                file,
                s.line,
                format!(
                    "worker.{}.activation: expected A, D or S, found {:?}",
                    w.name, s.value
                ),
            )),
        };
    }
    if w.get("stopped")
        .is_some_and(|s| boolean(&s.value) == Some(true))
    {
        return Ok(Some(Noted::new(
            NodeState::Disabled,
            "stopped=true: takes no requests",
        )));
    }
    if w.get("disabled")
        .is_some_and(|s| boolean(&s.value) == Some(true))
    {
        return Ok(Some(Noted::new(
            NodeState::Draining,
            "disabled=true: still takes its sticky sessions",
        )));
    }
    Ok(None)
}

/// The member's `ajp:`: its secret (or the lb's), packet size and CPing.
fn member_ajp(
    file: &str,
    lb: &Worker,
    w: &Worker,
    notes: &mut Vec<String>,
) -> Result<Ajp, ImportError> {
    let mut ajp = Ajp::default();
    match w.get("secret").or(lb.get("secret")) {
        Some(Setting {
            env_var: Some(var), ..
        }) => ajp.secret_env = Some(var.clone()),
        Some(s) => ajp.secret = Some(s.value.clone()),
        None => {}
    }
    if let Some(s) = w.get("max_packet_size") {
        let size: u32 = number(file, s)?;
        let rounded = size.div_ceil(1024) * 1024;
        ajp.packet_size = Some(if rounded < 8192 {
            Noted::new(
                8192,
                format!("max_packet_size={size}: 8192 is the smallest packet size"),
            )
        } else if rounded > 65536 {
            Noted::new(
                65536,
                format!("max_packet_size={size}: 65536 is the largest packet size"),
            )
        } else {
            Noted::new(
                rounded,
                format!("max_packet_size={size}; must equal the connector's packetSize"),
            )
        });
    }
    ajp.ping_after = ping_after(file, w, notes)?;
    Ok(ajp)
}

/// `ping_mode` and its timeouts as `ajp.ping_after`.
fn ping_after(
    file: &str,
    w: &Worker,
    notes: &mut Vec<String>,
) -> Result<Option<Noted<Duration>>, ImportError> {
    let mode = w
        .get("ping_mode")
        .map(|s| s.value.to_ascii_uppercase())
        .unwrap_or_default();
    let all = mode.contains('A');
    let positive = |d: &str| -> Result<bool, ImportError> {
        Ok(w.get(d)
            .map(|s| number::<u64>(file, s))
            .transpose()?
            .unwrap_or(0)
            > 0)
    };
    let connect = all || mode.contains('C') || positive("connect_timeout")?;
    let prepost = all || mode.contains('P') || positive("prepost_timeout")?;
    let interval = all || mode.contains('I') || positive("connection_ping_interval")?;
    if let Some(s) = w.get("ping_timeout") {
        notes.push(format!("not carried over: ping_timeout={} (the wait for the CPong has no key of its own in stickyroute)", s.value));
    }
    if connect {
        notes.push("not carried over: the CPing right after connecting (ping_mode C or connect_timeout): a new connection is used as it is".into());
    }
    if prepost {
        let source = if all {
            "ping_mode A"
        } else if mode.contains('P') {
            "ping_mode P"
        } else {
            "prepost_timeout"
        };
        return Ok(Some(Noted::new(PREPOST_PING_AFTER, format!("{source} (CPing before every request): here before reusing a connection idle longer than this"))));
    }
    if interval {
        let secs = match w.get("connection_ping_interval") {
            Some(s) => number::<u64>(file, s)?,
            None => {
                let timeout = w
                    .get("ping_timeout")
                    .map(|s| number::<u64>(file, s))
                    .transpose()?
                    .unwrap_or(10_000);
                timeout / 1000 * 10
            }
        };
        if secs > 0 {
            return Ok(Some(Noted::new(Duration::from_secs(secs), format!("ping_mode I: CPing on connections idle longer than {secs}s (connection_ping_interval)"))));
        }
    }
    Ok(None)
}

/// `connection_pool_timeout` in seconds; 0 (never) is a note.
fn pool_timeout(
    file: &str,
    w: &Worker,
    notes: &mut Vec<String>,
) -> Result<Option<(Duration, String)>, ImportError> {
    let Some(s) = w.get("connection_pool_timeout") else {
        return Ok(None);
    };
    let secs: u64 = number(file, s)?;
    if secs == 0 {
        notes.push("not carried over: connection_pool_timeout=0 (idle connections kept forever): stickyroute closes them after timeouts.idle".into());
        return Ok(None);
    }
    Ok(Some((
        Duration::from_secs(secs),
        format!("connection_pool_timeout={secs}; keep it below the connector's keepAliveTimeout"),
    )))
}

/// A directive in milliseconds (0: none).
fn millis(
    file: &str,
    w: &Worker,
    directive: &str,
) -> Result<Option<(Duration, String)>, ImportError> {
    let Some(s) = w.get(directive) else {
        return Ok(None);
    };
    let ms: u64 = number(file, s)?;
    Ok((ms > 0).then(|| (Duration::from_millis(ms), format!("{directive}={ms}"))))
}

/// `fail_on_status`: the codes that mark the node down; `-N` is a note.
fn statuses(file: &str, s: &Setting, notes: &mut Vec<String>) -> Result<Vec<u16>, ImportError> {
    let mut codes = Vec::new();
    for item in s
        .value
        .split([',', ' '])
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        let (negative, digits) = match item.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, item),
        };
        let code: u16 = digits
            .parse()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| {
                ImportError::at(
                    file,
                    s.line,
                    format!("fail_on_status: {item:?} is not a status code"),
                )
            })?;
        if negative {
            notes.push(format!("not carried over: fail_on_status -{code} (fail the request but keep the node up): status {code} is passed on"));
        } else {
            codes.push(code);
        }
    }
    Ok(codes)
}

/// `redirect` names a member by worker name or route; a node's redirect is a route.
fn apply_redirects(members: &mut [Member]) {
    let by_name: Vec<(String, String)> = members
        .iter()
        .map(|m| (m.worker.clone(), m.node.route.clone()))
        .collect();
    for m in members.iter_mut() {
        let Some(target) = m.redirect.clone() else {
            continue;
        };
        let route = by_name
            .iter()
            .find(|(name, _)| *name == target)
            .or_else(|| by_name.iter().find(|(_, route)| *route == target))
            .map(|(_, route)| route.clone());
        match route {
            Some(r) if r != m.node.route => m.node.redirect = Some(r),
            Some(_) => m.node.notes.push(format!(
                "not carried over: redirect={target} (a node cannot redirect to itself)"
            )),
            None => m.node.notes.push(format!(
                "not carried over: redirect={target} names no member of this lb worker"
            )),
        }
    }
}

/// Members farther than the nearest `distance` serve only when the nearer are unavailable:
/// `standby`.
fn apply_distance(members: &mut [Member]) {
    let Some(nearest) = members.iter().map(|m| m.distance).min() else {
        return;
    };
    let tiers: HashSet<i64> = members.iter().map(|m| m.distance).collect();
    for m in members.iter_mut().filter(|m| m.distance > nearest) {
        let active = m
            .node
            .state
            .as_ref()
            .is_none_or(|s| s.value == NodeState::Active);
        if active {
            let mut note = format!("distance={} (nearest {nearest}): used only when no active node of its domain is up", m.distance);
            if tiers.len() > 2 {
                note.push_str("; stickyroute has two tiers, so all farther distances are one");
            }
            m.node.state = Some(Noted::new(NodeState::Standby, note));
        }
    }
}

/// Timeouts mod_jk sets per member, on the pool: the shared value, or the shortest with a note.
fn pool_timeouts(pool: &mut Pool, members: &[Member]) {
    let pick = |f: fn(&Member) -> &Option<(Duration, String)>| {
        shared_duration(
            members
                .iter()
                .filter_map(|m| f(m).as_ref().map(|v| (m.node.route.clone(), v)))
                .collect(),
        )
    };
    pool.timeouts.connect = pick(|m| &m.connect);
    pool.timeouts.response = pick(|m| &m.response).map(|mut n| {
        n.note = n.note.map(|t| {
            format!("{t} (mod_jk: every wait for a packet; here: the wait for the response head)")
        });
        n
    });
    pool.timeouts.idle = pick(|m| &m.idle);
    for m in members {
        for c in &m.fail_on_status {
            if !pool.fail_on_status.contains(c) {
                pool.fail_on_status.push(*c);
            }
        }
    }
}

/// Directives of an lb worker the pool carries; the rest become notes.
const LB_MAPPED: &[&str] = &[
    "type",
    "balance_workers",
    "balanced_workers",
    "sticky_session",
    "sticky_session_force",
    "retries",
    "recover_time",
    "method",
    "secret",
    "session_cookie",
    "session_path",
    "mount",
];

/// The lb worker's own settings; `members` is how many nodes the pool has.
fn lb_settings(
    pool: &mut Pool,
    lb: &Worker,
    members: usize,
    file: &str,
) -> Result<(), ImportError> {
    if let Some(s) = lb.get("sticky_session") {
        if boolean(&s.value) == Some(false) {
            pool.notes.push("not carried over: sticky_session=false: stickyroute always keeps a session on its node while the node is up".into());
        }
    }
    if let Some(s) = lb.get("sticky_session_force") {
        if boolean(&s.value) == Some(true) {
            pool.notes.push("not carried over: sticky_session_force=true (a session whose node is down gets an error): stickyroute fails the session over to another node of its domain".into());
        }
    }
    let note = match lb.get("retries") {
        Some(s) => {
            let retries: u32 = number(file, s)?;
            format!("retries={retries}: mod_jk tries each member up to {retries} times; stickyroute tries each node once")
        }
        None => "mod_jk tries every member; stickyroute tries each node once".into(),
    };
    pool.max_attempts = Some(Noted::new(members.max(1), note));
    if let Some(s) = lb.get("recover_time") {
        let secs: u64 = number(file, s)?;
        if secs > 0 {
            pool.recover_after = Some(Noted::new(
                Duration::from_secs(secs),
                format!("recover_time={secs}"),
            ));
        }
    }
    if let Some(s) = lb.get("method") {
        let (balance, note) = match s
            .value
            .trim()
            .chars()
            .next()
            .map(|c| c.to_ascii_uppercase())
        {
            Some('R') => (
                Balance::RoundRobin,
                "method=R: weighted by lbfactor".to_string(),
            ),
            Some('N') => (
                Balance::RoundRobin,
                "method=N: new sessions in turn".to_string(),
            ),
            Some('S') => (
                Balance::RoundRobin,
                "method=S: stickyroute balances new sessions only, in turn".to_string(),
            ),
            Some('B') => (
                Balance::P2c,
                "method=B: the node with fewer requests in flight".to_string(),
            ),
            Some('T') => (
                Balance::P2c,
                "method=T: no traffic-based balancing; requests in flight instead".to_string(),
            ),
            _ => {
                return Err(ImportError::at(
                    file,
                    s.line,
                    format!(
                        "worker.{}.method: expected R, S, N, T or B, found {:?}",
                        lb.name, s.value
                    ),
                ))
            }
        };
        pool.balance = Some(Noted::new(balance, note));
    }
    for s in unmapped(lb, LB_MAPPED) {
        pool.notes.push(format!(
            "not carried over: {}={} ({})",
            s.directive,
            s.value,
            reason(&s.directive)
        ));
    }
    Ok(())
}

/// The session section from every lb worker's `session_cookie` and `session_path`.
fn session(names: Vec<SessionNames>) -> Session {
    let mut s = Session::default();
    let cookies: Vec<(String, usize)> = names.iter().filter_map(|n| n.cookie.clone()).collect();
    if !cookies.is_empty() {
        let mut list: Vec<String> = Vec::new();
        for (c, _) in &cookies {
            if !list.contains(c) {
                list.push(c.clone());
            }
        }
        if !list.iter().any(|c| c == "JSESSIONID") && cookies.len() < names.len() {
            list.push("JSESSIONID".into());
        }
        s.cookies = Some(Noted::new(
            list,
            "session_cookie (for every pool: the names are tried in order)",
        ));
    }
    let paths: Vec<&(String, usize)> = names.iter().filter_map(|n| n.path.as_ref()).collect();
    if let Some((first, _)) = paths.first() {
        let name = first.trim_start_matches(';').to_string();
        s.path_param = Some(Noted::new(name, "session_path"));
        if paths.iter().any(|(p, _)| p != first) {
            s.notes.push("the lb workers' session_path differ: stickyroute has one path parameter for all pools, the first is used".into());
        }
    }
    s
}

/// Settings of `w` not in `mapped`, one per directive, in file order.
fn unmapped<'w>(w: &'w Worker, mapped: &[&str]) -> Vec<&'w Setting> {
    let mut seen = HashSet::new();
    let mut out: Vec<&Setting> = w
        .settings
        .iter()
        .filter(|s| !mapped.contains(&s.directive.as_str()) && seen.insert(s.directive.clone()))
        .collect();
    out.sort_by_key(|s| s.line);
    out
}

/// Why a directive has no place in stickyroute.
fn reason(directive: &str) -> &'static str {
    match directive {
        "retries" => "stickyroute resends to the same node only once, on a fresh connection, a body-less idempotent request whose reused connection closed (failover.retry_idempotent)",
        "retry_interval" => "stickyroute does not pause between attempts",
        "recovery_options" => "which requests are replayed is failover.retry_idempotent",
        "connection_pool_size" | "connection_pool_minsize" => "a per-httpd-process pool; stickyroute has one pool per node, and nodes[].max_connections caps requests in flight",
        "connection_acquire_timeout" => "the closest is timeouts.queue, the wait for a node at its max_connections",
        "socket_timeout" => "stickyroute has timeouts.connect, .response and .body_idle instead of one socket timeout",
        "socket_keepalive" | "socket_buffer" | "source" | "prefer_ipv6" => "no setting of the node's socket in stickyroute",
        "busy_limit" => "the closest is nodes[].max_connections, which queues instead of skipping the node",
        "lock" => "no shared memory between processes to lock",
        "max_reply_timeouts" | "error_escalation_time" => "a node is marked down at its first failure for failover.recover_after",
        "set_session_cookie" | "session_cookie_path" => "stickyroute does not create session cookies of its own",
        _ => "no equivalent in stickyroute",
    }
}

/// A number-valued setting.
fn number<T: FromStr>(file: &str, s: &Setting) -> Result<T, ImportError> {
    s.value.trim().parse().map_err(|_| {
        ImportError::at(
            file,
            s.line,
            format!("{}: expected a number, found {:?}", s.directive, s.value),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// The import of an lb worker `lb` with one member `n` configured by `member` lines
    /// (`host=…`, written as `worker.n.host=…`), and `lb` lines for the lb worker.
    fn one(member: &[&str], lb: &[&str]) -> Result<Balancer, ImportError> {
        let mut text =
            String::from("worker.list=lb\nworker.lb.type=lb\nworker.lb.balance_workers=n\n");
        for l in member {
            text.push_str(&format!("worker.n.{l}\n"));
        }
        for l in lb {
            text.push_str(&format!("worker.lb.{l}\n"));
        }
        import(
            Input {
                name: "w.properties",
                text: &text,
            },
            None,
            &no_env,
        )
    }

    fn node(b: &Balancer) -> &Node {
        &b.pools[0].nodes[0]
    }

    #[test]
    fn address_table() {
        for (lines, expected) in [
            (vec!["host=10.0.0.1"], "10.0.0.1:8009"),
            (vec!["host=tomcat1", "port=8010"], "tomcat1:8010"),
            (vec!["host=tomcat1:8011"], "tomcat1:8011"),
            (vec!["host=::1"], "[::1]:8009"),
            (vec!["host=[::1]:9000"], "[::1]:9000"),
            (vec!["host=[fe80::1]", "port=9001"], "[fe80::1]:9001"),
            (vec!["port=8010"], "localhost:8010"),
        ] {
            let b = one(&lines, &[]).unwrap();
            assert_eq!(node(&b).address, expected, "{lines:?}");
        }
    }

    #[test]
    fn activation_table() {
        for (line, expected) in [
            ("activation=A", Some(NodeState::Active)),
            ("activation=d", Some(NodeState::Draining)),
            ("activation=Stopped", Some(NodeState::Disabled)),
            ("disabled=true", Some(NodeState::Draining)),
            ("stopped=1", Some(NodeState::Disabled)),
            ("stopped=0", None),
            ("host=h", None),
        ] {
            let b = one(&[line], &[]).unwrap();
            assert_eq!(node(&b).state.as_ref().map(|s| s.value), expected, "{line}");
        }
        let e = one(&["activation=X"], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "w.properties:4: worker.n.activation: expected A, D or S, found \"X\""
        );
    }

    #[test]
    fn ping_after_table() {
        for (lines, expected) in [
            (vec![], None),
            (vec!["ping_mode=P"], Some(1)),
            (vec!["ping_mode=A"], Some(1)),
            (vec!["prepost_timeout=1000"], Some(1)),
            (vec!["ping_mode=I"], Some(100)),
            (vec!["ping_mode=I", "ping_timeout=5000"], Some(50)),
            (vec!["ping_mode=I", "connection_ping_interval=30"], Some(30)),
            (vec!["connection_ping_interval=20"], Some(20)),
            (vec!["ping_mode=C"], None),
        ] {
            let b = one(&lines, &[]).unwrap();
            let got = b.pools[0]
                .ajp
                .as_ref()
                .and_then(|a| a.ping_after.as_ref())
                .map(|p| p.value.as_secs());
            assert_eq!(got, expected, "{lines:?}");
        }
        let b = one(&["ping_mode=C"], &[]).unwrap();
        assert!(node(&b)
            .notes
            .iter()
            .any(|n| n.contains("right after connecting")));
    }

    #[test]
    fn packet_size_table() {
        for (size, expected) in [
            ("8192", 8192),
            ("10000", 10240),
            ("4096", 8192),
            ("65536", 65536),
            ("100000", 65536),
        ] {
            let b = one(&[&format!("max_packet_size={size}")], &[]).unwrap();
            let got = b.pools[0]
                .ajp
                .as_ref()
                .unwrap()
                .packet_size
                .as_ref()
                .unwrap()
                .value;
            assert_eq!(got, expected, "{size}");
        }
    }

    #[test]
    fn secret_table() {
        // (member lines, lb lines, the secret, or None for secret_required: false)
        for (member, lb, expected) in [
            (vec!["secret=m"], vec![], Some("m")),
            (vec![], vec!["secret=l"], Some("l")),
            (vec!["secret=m"], vec!["secret=l"], Some("m")),
            (vec![], vec![], None),
        ] {
            let b = one(&member, &lb).unwrap();
            let ajp = b.pools[0].ajp.as_ref().unwrap();
            assert_eq!(ajp.secret.as_deref(), expected, "{member:?} {lb:?}");
            assert_eq!(b.pools[0].protocol, Some(Protocol::Ajp));
        }
    }

    #[test]
    fn secret_env_from_a_variable() {
        let env = |n: &str| (n == "AJP_SECRET").then(|| "set".to_string());
        let text =
            "worker.lb.type=lb\nworker.lb.balance_workers=n\nworker.n.secret=$(AJP_SECRET)\n";
        let b = import(Input { name: "w", text }, None, &env).unwrap();
        let ajp = b.pools[0].ajp.as_ref().unwrap();
        assert_eq!(
            (ajp.secret_env.as_deref(), ajp.secret.as_deref()),
            (Some("AJP_SECRET"), None)
        );
        let text = "s=x\nworker.lb.type=lb\nworker.lb.balance_workers=n\nworker.n.secret=$(s)\n";
        let b = import(Input { name: "w", text }, None, &env).unwrap();
        let ajp = b.pools[0].ajp.as_ref().unwrap();
        assert_eq!(
            (ajp.secret_env.as_deref(), ajp.secret.as_deref()),
            (None, Some("x"))
        );
        let b = one(&["secret=$(AJP_SECRET_NOT_SET)"], &[]).unwrap();
        let ajp = b.pools[0].ajp.as_ref().unwrap();
        assert_eq!(ajp.secret_env.as_deref(), Some("AJP_SECRET_NOT_SET"));
        assert_eq!(ajp.secret, None);
        let e = one(&["host=$(TOMCAT_HOST_NOT_SET)"], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "w.properties:4: $(TOMCAT_HOST_NOT_SET) is neither defined earlier in the file nor set in the environment"
        );
    }

    #[test]
    fn lb_settings_table() {
        let balance = |b: &Balancer| b.pools[0].balance.as_ref().map(|v| v.value);
        for (line, expected) in [
            ("method=R", Some(Balance::RoundRobin)),
            ("method=Busyness", Some(Balance::P2c)),
            ("method=T", Some(Balance::P2c)),
            ("method=N", Some(Balance::RoundRobin)),
            ("method=S", Some(Balance::RoundRobin)),
            ("sticky_session=1", None),
        ] {
            assert_eq!(balance(&one(&[], &[line]).unwrap()), expected, "{line}");
        }
        let b = one(&[], &["recover_time=45", "retries=5"]).unwrap();
        let p = &b.pools[0];
        assert_eq!(
            p.recover_after.as_ref().unwrap().value,
            Duration::from_secs(45)
        );
        assert_eq!(p.max_attempts.as_ref().unwrap().value, 1);
        for (line, note) in [
            ("sticky_session=false", "sticky_session=false"),
            ("sticky_session_force=1", "sticky_session_force=true"),
            ("lock=P", "lock=P (no shared memory"),
            ("error_escalation_time=30", "error_escalation_time=30"),
        ] {
            let b = one(&[], &[line]).unwrap();
            assert!(
                b.pools[0].notes.iter().any(|n| n.contains(note)),
                "{line}: {:?}",
                b.pools[0].notes
            );
        }
        assert!(one(&[], &["method=Q"]).is_err());
        for (lines, note) in [
            (vec![], "mod_jk tries every member; stickyroute tries each node once"),
            (vec!["retries=4"], "retries=4: mod_jk tries each member up to 4 times; stickyroute tries each node once"),
        ] {
            let b = one(&[], &lines).unwrap();
            let attempts = b.pools[0].max_attempts.as_ref().unwrap();
            assert_eq!((attempts.value, attempts.note.as_deref()), (1, Some(note)), "{lines:?}");
        }
    }

    #[test]
    fn members_table() {
        let text = "worker.list=lb\n\
            worker.t.port=8009\nworker.t.secret=s\n\
            worker.a.reference=worker.t\nworker.a.host=h1\nworker.a.redirect=b\n\
            worker.b.reference=worker.t\nworker.b.host=h2\nworker.b.route=jvmB\nworker.b.redirect=jvmC\n\
            worker.c.reference=worker.t\nworker.c.host=h3\nworker.c.route=jvmC\nworker.c.distance=1\nworker.c.redirect=jvmC\n\
            worker.lb.type=lb\nworker.lb.balance_workers=a,b\nworker.lb.balance_workers=c\n";
        let b = import(Input { name: "w", text }, None, &no_env).unwrap();
        let nodes = &b.pools[0].nodes;
        let got: Vec<(&str, &str, Option<&str>, Option<NodeState>)> = nodes
            .iter()
            .map(|n| {
                (
                    n.route.as_str(),
                    n.address.as_str(),
                    n.redirect.as_deref(),
                    n.state.as_ref().map(|s| s.value),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", "h1:8009", Some("jvmB"), None),
                ("jvmB", "h2:8009", Some("jvmC"), None),
                ("jvmC", "h3:8009", None, Some(NodeState::Standby)),
            ]
        );
        assert!(nodes[2]
            .notes
            .iter()
            .any(|n| n.contains("cannot redirect to itself")));
        assert_eq!(
            b.pools[0].ajp.as_ref().unwrap().secret.as_deref(),
            Some("s")
        );
    }

    #[test]
    fn errors_table() {
        for (text, expected) in [
            ("worker.list=lb\nworker.lb.type=lb\n", "w:2: lb worker lb has no balance_workers"),
            ("worker.list=status\nworker.status.type=status\n", "w: no lb or ajp13 worker to import (worker.list names none, and no worker.NAME.type=lb is defined)"),
            ("worker.a.reference=worker.b\nworker.b.reference=worker.a\nworker.lb.type=lb\nworker.lb.balance_workers=a\n", "w:1: worker a: reference loop through a"),
            ("worker.a.reference=b\nworker.lb.type=lb\nworker.lb.balance_workers=a\n", "w:1: worker.a.reference must be written worker.NAME, found \"b\""),
            ("worker.a.lbfactor=much\nworker.lb.type=lb\nworker.lb.balance_workers=a\n", "w:1: lbfactor: expected a number, found \"much\""),
            ("worker.a.route=x.y\nworker.lb.type=lb\nworker.lb.balance_workers=a\n", "w:1: worker a: route \"x.y\" may only use letters, digits and - _ ~ ! : (at most 64), not the separator ."),
            ("worker.a.route=r\nworker.b.route=r\nworker.lb.type=lb\nworker.lb.balance_workers=a,b\n", "w:4: members a and b of lb worker lb have the same route \"r\"; routes must differ"),
            ("worker.a.fail_on_status=5xx\nworker.lb.type=lb\nworker.lb.balance_workers=a\n", "w:1: fail_on_status: \"5xx\" is not a status code"),
            ("worker.lb.type=lb\nworker.lb.balance_workers=s\nworker.s.type=status\n", "w:1: lb worker lb has no ajp13 member"),
        ] {
            let e = import(Input { name: "w", text }, None, &no_env).unwrap_err();
            assert_eq!(e.to_string(), expected, "{text:?}");
        }
    }

    #[test]
    fn entry_points_and_single_workers() {
        // Without worker.list every lb worker is a pool; a mounted ajp13 worker is one too.
        let text = "worker.x.type=lb\nworker.x.balance_workers=a\nworker.a.host=h\n";
        let b = import(Input { name: "w", text }, None, &no_env).unwrap();
        assert_eq!(
            b.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["x"]
        );
        let text = "worker.list=solo,st\nworker.solo.host=h\nworker.solo.port=8019\nworker.st.type=status\n";
        let b = import(Input { name: "w", text }, None, &no_env).unwrap();
        assert_eq!(b.pools.len(), 1);
        assert_eq!(
            (
                b.pools[0].name.as_str(),
                b.pools[0].nodes[0].address.as_str()
            ),
            ("solo", "h:8019")
        );
        assert!(b.header.iter().any(|h| h.contains("status worker st")));
    }
}
