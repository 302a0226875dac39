//! mod_proxy_balancer's configuration in `httpd.conf` → pools: each `<Proxy balancer://NAME>`
//! (or `BalancerMember balancer://NAME …` outside one) becomes a pool, each `BalancerMember` a
//! node (`ajp://` members with `protocol: ajp`), `ProxySet` and the balancer parameters of
//! `ProxyPass` the pool's settings, the `ProxyPass` path its `path_prefix`, the
//! `ServerName`/`ServerAlias` of the virtual host holding that `ProxyPass` its `hosts`, and
//! `Listen` the listeners. Other httpd directives are not read.

use std::collections::HashSet;
use std::time::Duration;

use super::httpd::{self, Directive};
use super::model::{
    hoist_notes, hoist_protocol, note_overlaps, shared_duration, Ajp, Balance, Balancer, Health,
    Listener, Node, NodeState, Noted, Pool, Protocol, Session, PREPOST_PING_AFTER,
};
use super::{ImportError, Input};
use crate::core::session::is_valid_route;

/// `key=value` (a bare word has an empty value), with the line it was written on.
#[derive(Debug, Clone)]
struct Param {
    key: String,
    value: String,
    line: usize,
}

fn params(words: &[String], line: usize) -> Vec<Param> {
    words
        .iter()
        .map(|w| {
            let (k, v) = w.split_once('=').unwrap_or((w, ""));
            Param {
                key: k.to_ascii_lowercase(),
                value: v.to_string(),
                line,
            }
        })
        .collect()
}

#[derive(Debug)]
struct MemberDef {
    url: String,
    params: Vec<Param>,
    line: usize,
}

#[derive(Debug)]
struct BalancerDef {
    name: String,
    line: usize,
    members: Vec<MemberDef>,
    params: Vec<Param>,
}

/// A `ProxyPass` to a balancer.
#[derive(Debug)]
struct Pass {
    path: String,
    balancer: String,
    /// The path after the balancer's name in the target URL.
    target_path: String,
    /// The virtual host's names; `None` outside a virtual host.
    hosts: Option<Vec<String>>,
    line: usize,
}

/// What the walk over the file collects.
#[derive(Default)]
struct Collected {
    file: String,
    balancers: Vec<BalancerDef>,
    passes: Vec<Pass>,
    listens: Vec<(Vec<String>, usize)>,
    io_buffer: Option<Param>,
    header: Vec<String>,
}

impl Collected {
    fn balancer(&mut self, name: &str, line: usize) -> &mut BalancerDef {
        let i = match self.balancers.iter().position(|b| b.name == name) {
            Some(i) => i,
            None => {
                self.balancers.push(BalancerDef {
                    name: name.to_string(),
                    line,
                    members: Vec::new(),
                    params: Vec::new(),
                });
                self.balancers.len() - 1
            }
        };
        &mut self.balancers[i]
    }
}

/// `balancer://NAME[/path]` → (`NAME`, `/path`).
fn balancer_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("balancer://")?;
    let (name, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    (!name.is_empty()).then(|| (name.to_string(), path.to_string()))
}

/// The whole import.
pub(super) fn import(input: Input) -> Result<Balancer, ImportError> {
    let file = input.name;
    let tree = httpd::parse(input.text, file)?;
    let mut c = Collected {
        file: file.to_string(),
        ..Collected::default()
    };
    walk(&tree, None, None, file, &mut c)?;
    if c.balancers.is_empty() {
        return Err(ImportError::whole(
            file,
            "no balancer to import: no <Proxy balancer://…> section and no BalancerMember",
        ));
    }
    let mut b = Balancer::default();
    b.header.push(format!(
        "Imported by `stickyroute import mod-proxy` from {file}."
    ));
    b.header.push("Every comment names a setting that was not carried over or changed meaning: read them before use.".into());
    b.header.push("Only the balancer directives (Proxy balancer://, BalancerMember, ProxySet, ProxyPass, Listen, ProxyIOBufferSize, VirtualHost names) were read.".into());
    b.header.append(&mut c.header);
    let mut sticky = Vec::new();
    for def in &c.balancers {
        let (pool, s) = pool(def, &c, file)?;
        sticky.push(s);
        b.pools.push(pool);
    }
    b.session = session(&sticky);
    note_overlaps(&mut b.pools);
    b.listeners = listeners(&c.listens, file)?;
    for p in b.pools.iter_mut() {
        hoist_protocol(p);
        hoist_notes(p);
        let has_http =
            p.protocol.is_none() || p.nodes.iter().any(|n| n.protocol == Some(Protocol::Http));
        if p.health.as_ref().is_some_and(|h| h.path.is_none()) && has_http {
            p.health = None;
            p.notes.push("not carried over: hcmethod=CPING: a CPing cannot check this pool's HTTP nodes; set health.path to check them all over HTTP".into());
        }
        if p.protocol == Some(Protocol::Ajp) {
            if let Some(h) = p.health.as_mut() {
                h.http_kind = h.path.is_some();
            }
        }
    }
    Ok(b)
}

/// Collects the balancer directives of `dirs`; `hosts` are the names of the virtual host
/// they are in, `location` the path of the `<Location>` they are in.
fn walk(
    dirs: &[Directive],
    hosts: Option<&Vec<String>>,
    location: Option<&str>,
    file: &str,
    c: &mut Collected,
) -> Result<(), ImportError> {
    for d in dirs {
        let err = |m: String| ImportError::at(file, d.line, m);
        match (&d.children, d.name.to_ascii_lowercase().as_str()) {
            (Some(children), "virtualhost") => {
                let names = vhost_names(children);
                walk(children, Some(&names), None, file, c)?;
            }
            (Some(children), "proxy") => {
                let Some((name, _)) = d.args.first().and_then(|a| balancer_url(a)) else {
                    continue; // a <Proxy> of plain URLs: access control, nothing to balance
                };
                c.balancer(&name, d.line);
                for inner in children {
                    if inner.is("BalancerMember") {
                        let url = inner.args.first().ok_or_else(|| ImportError::at(file, inner.line, "BalancerMember without a URL"))?;
                        let m = MemberDef { url: url.clone(), params: params(&inner.args[1..], inner.line), line: inner.line };
                        c.balancer(&name, d.line).members.push(m);
                    } else if inner.is("ProxySet") {
                        let p = params(&inner.args, inner.line);
                        c.balancer(&name, d.line).params.extend(p);
                    }
                }
            }
            (Some(children), "location") => {
                let path = d.args.first().ok_or_else(|| err("<Location> without a path".into()))?;
                walk(children, hosts, Some(path), file, c)?;
            }
            (Some(_), "locationmatch") => c.header.push(format!("{file}:{}: <LocationMatch> not read: a regular expression is not a path_prefix", d.line)),
            (Some(children), _) => walk(children, hosts, location, file, c)?,
            (None, "balancermember") => {
                let (Some((name, _)), Some(url)) = (d.args.first().and_then(|a| balancer_url(a)), d.args.get(1)) else {
                    return Err(err("BalancerMember outside <Proxy balancer://…> needs the balancer's URL, then the member's".into()));
                };
                let m = MemberDef { url: url.clone(), params: params(&d.args[2..], d.line), line: d.line };
                c.balancer(&name, d.line).members.push(m);
            }
            (None, "proxyset") => {
                if let Some((name, _)) = d.args.first().and_then(|a| balancer_url(a)) {
                    let p = params(&d.args[1..], d.line);
                    c.balancer(&name, d.line).params.extend(p);
                }
            }
            (None, "proxypass") => proxy_pass(d, hosts, location, file, c)?,
            (None, "proxypassmatch") => c.header.push(format!("{file}:{}: ProxyPassMatch not carried over: a regular expression is not a path_prefix", d.line)),
            (None, "listen") => c.listens.push((d.args.clone(), d.line)),
            (None, "proxyiobuffersize") => {
                c.io_buffer = d.args.first().map(|v| Param { key: "proxyiobuffersize".into(), value: v.clone(), line: d.line });
            }
            (None, "include" | "includeoptional") => c.header.push(format!("{file}:{}: {} {} not followed: import that file on its own, or paste it in", d.line, d.name, d.args.join(" "))),
            _ => {}
        }
    }
    Ok(())
}

/// `ServerName` and `ServerAlias` of a virtual host (ports dropped, wildcards left out).
fn vhost_names(children: &[Directive]) -> Vec<String> {
    let mut names = Vec::new();
    for d in children
        .iter()
        .filter(|d| d.is("ServerName") || d.is("ServerAlias"))
    {
        for a in &d.args {
            let host = a.split("://").last().unwrap_or(a);
            let host = host.rsplit_once(':').map_or(host, |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    host
                }
            });
            if !host.contains(['*', '?'])
                && !names.iter().any(|n: &String| n.eq_ignore_ascii_case(host))
            {
                names.push(host.to_ascii_lowercase());
            }
        }
    }
    names
}

/// `ProxyPass PATH URL [params]`, or `ProxyPass URL [params]` inside `<Location PATH>`.
fn proxy_pass(
    d: &Directive,
    hosts: Option<&Vec<String>>,
    location: Option<&str>,
    file: &str,
    c: &mut Collected,
) -> Result<(), ImportError> {
    let (path, rest) = match location {
        Some(loc) => (loc.to_string(), &d.args[..]),
        None => match d.args.split_first() {
            Some((p, rest)) => (p.clone(), rest),
            None => return Err(ImportError::at(file, d.line, "ProxyPass without a path")),
        },
    };
    let Some((url, extra)) = rest.split_first() else {
        return Err(ImportError::at(
            file,
            d.line,
            format!("ProxyPass {path} without a URL"),
        ));
    };
    if url == "!" {
        c.header.push(format!("{file}:{}: ProxyPass {path} ! not carried over: stickyroute forwards every path under a pool's prefix", d.line));
        return Ok(());
    }
    let Some((name, target_path)) = balancer_url(url) else {
        c.header.push(format!(
            "{file}:{}: ProxyPass {path} {url} not imported: not a balancer",
            d.line
        ));
        return Ok(());
    };
    let p = params(extra, d.line);
    c.balancer(&name, d.line).params.extend(p);
    c.passes.push(Pass {
        path,
        balancer: name,
        target_path,
        hosts: hosts.cloned(),
        line: d.line,
    });
    Ok(())
}

/// A balancer's session names: `stickysession` as (cookie, path parameter), and
/// `stickysessionsep`.
#[derive(Default)]
struct Sticky {
    names: Option<(String, String)>,
    separator: Option<String>,
}

/// One balancer as a pool, and its session names.
fn pool(def: &BalancerDef, c: &Collected, file: &str) -> Result<(Pool, Sticky), ImportError> {
    let mut pool = Pool::new(&def.name);
    pool.notes
        .push(format!("balancer://{} ({file}:{})", def.name, def.line));
    if def.members.is_empty() {
        return Err(ImportError::at(
            file,
            def.line,
            format!("balancer://{} has no BalancerMember", def.name),
        ));
    }
    let mut members = Vec::new();
    for (i, m) in def.members.iter().enumerate() {
        if let Some(built) = member(m, i, def, c, file, &mut pool.notes)? {
            if let Some(other) = members
                .iter()
                .find(|o: &&Member| o.node.route == built.node.route)
            {
                return Err(ImportError::at(
                    file,
                    m.line,
                    format!(
                        "two members of balancer://{} have the route {:?} (the other at line {})",
                        def.name, built.node.route, other.line
                    ),
                ));
            }
            members.push(built);
        }
    }
    if members.is_empty() {
        return Err(ImportError::at(
            file,
            def.line,
            format!(
                "balancer://{} has no member stickyroute can forward to (http:// or ajp://)",
                def.name
            ),
        ));
    }
    member_tiers(&mut members);
    member_redirects(&mut members);
    member_pool_settings(&mut pool, &members);
    let sticky = balancer_params(&mut pool, def, members.len(), file)?;
    passes(&mut pool, def, c);
    pool.nodes = members.into_iter().map(|m| m.node).collect();
    Ok((pool, sticky))
}

/// The pool's `path_prefix` and `hosts` from the `ProxyPass` lines naming its balancer.
fn passes(pool: &mut Pool, def: &BalancerDef, c: &Collected) {
    let mine: Vec<&Pass> = c.passes.iter().filter(|p| p.balancer == def.name).collect();
    let Some(first) = mine.first() else {
        pool.notes
            .push("no ProxyPass uses this balancer: path_prefix / (every path)".into());
        return;
    };
    let prefix = first.path.trim_end_matches('/');
    let prefix = if prefix.is_empty() { "/" } else { prefix };
    pool.path_prefix = Some(Noted::new(
        prefix.to_string(),
        format!("{}:{}: ProxyPass {}", c.file, first.line, first.path),
    ));
    for p in &mine {
        let target = p.target_path.trim_end_matches('/');
        if target != p.path.trim_end_matches('/') && !(target.is_empty() && p.path == "/") {
            pool.notes.push(format!("not carried over: ProxyPass {} balancer://{}{} ({}:{}) maps the path to another; stickyroute forwards the path unchanged", p.path, p.balancer, p.target_path, c.file, p.line));
        }
        if p.path.trim_end_matches('/') != first.path.trim_end_matches('/') {
            pool.notes.push(format!("also at {} ({}:{}): a pool has one path_prefix; copy the pool under another name for this path", p.path, c.file, p.line));
        }
    }
    if mine.iter().all(|p| p.hosts.is_some()) {
        for p in &mine {
            for h in p.hosts.iter().flatten() {
                if !pool.hosts.contains(h) {
                    pool.hosts.push(h.clone());
                }
            }
        }
    }
}

/// A member as a node, with what httpd sets per member and stickyroute per pool.
struct Member {
    node: Node,
    line: usize,
    lbset: i64,
    redirect: Option<String>,
    connect: Option<(Duration, String)>,
    response: Option<(Duration, String)>,
    idle: Option<(Duration, String)>,
    recover: Option<(Duration, String)>,
    health: Option<Health>,
}

/// Member parameters the node or pool carries; the rest become notes.
const MEMBER_MAPPED: &[&str] = &[
    "route",
    "loadfactor",
    "status",
    "redirect",
    "lbset",
    "retry",
    "timeout",
    "connectiontimeout",
    "ttl",
    "ping",
    "secret",
    "iobuffersize",
    "hcmethod",
    "hcuri",
    "hcinterval",
    "hcpasses",
    "hcfails",
];

/// One `BalancerMember` (the `i`th); `None` for a scheme stickyroute cannot speak.
fn member(
    m: &MemberDef,
    i: usize,
    def: &BalancerDef,
    c: &Collected,
    file: &str,
    pool_notes: &mut Vec<String>,
) -> Result<Option<Member>, ImportError> {
    let err = |msg: String| ImportError::at(file, m.line, msg);
    let Some((scheme, rest)) = m.url.split_once("://") else {
        return Err(err(format!("BalancerMember {:?} is not a URL", m.url)));
    };
    let (protocol, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "ajp" => (Protocol::Ajp, 8009),
        "http" | "ws" => (Protocol::Http, 80),
        other => {
            pool_notes.push(format!("member {} ({file}:{}) not imported: stickyroute reaches nodes over http:// or ajp://, not {other}://", m.url, m.line));
            return Ok(None);
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let address = host_port(authority, default_port)
        .ok_or_else(|| err(format!("BalancerMember {:?}: bad host or port", m.url)))?;
    let get = |k: &str| m.params.iter().rev().find(|p| p.key == k);
    let route = match get("route") {
        Some(p) if is_valid_route(&p.value, '.') => p.value.clone(),
        Some(p) => return Err(err(format!("route {:?} may only use letters, digits and - _ ~ ! : (at most 64), not the separator .", p.value))),
        None => generated_route(i, def),
    };
    let mut node = Node::new(&route, &address);
    node.notes
        .push(format!("BalancerMember {} ({file}:{})", m.url, m.line));
    if get("route").is_none() {
        node.notes.push(format!("no route= in httpd: sessions were not pinned to this member; set jvmRoute=\"{route}\" on the node"));
    }
    if !path.is_empty() && path != "/" {
        node.notes.push(format!("not carried over: the member's path {path}: stickyroute forwards the client's path unchanged"));
    }
    node.protocol = Some(protocol);
    if let Some(p) = get("loadfactor") {
        node.weight = Some(load_factor(p, file)?);
    }
    if let Some(p) = get("status") {
        node.state = status(p, file, &mut node.notes)?;
    }
    let lbset = get("lbset").map(|p| int(p, file)).transpose()?.unwrap_or(0);
    if protocol == Protocol::Ajp {
        node.ajp = Some(member_ajp(m, c, file, &mut node.notes)?);
    } else if let Some(p) = get("ping") {
        node.notes.push(format!(
            "not carried over: ping={} (a 100-continue probe of HTTP members)",
            p.value
        ));
    }
    let health = member_health(m, protocol, file, &mut node.notes)?;
    let seconds = |k: &str| -> Result<Option<(Duration, String)>, ImportError> {
        get(k)
            .map(|p| time(p, file).map(|d| (d, format!("{k}={}", p.value))))
            .transpose()
    };
    let connect = seconds("connectiontimeout")?;
    let response = seconds("timeout")?;
    let idle = seconds("ttl")?;
    let recover = seconds("retry")?.filter(|(d, _)| !d.is_zero());
    let mut seen = HashSet::new();
    for p in m
        .params
        .iter()
        .filter(|p| !MEMBER_MAPPED.contains(&p.key.as_str()) && seen.insert(p.key.clone()))
    {
        node.notes.push(format!(
            "not carried over: {}={} ({})",
            p.key,
            p.value,
            reason(&p.key)
        ));
    }
    Ok(Some(Member {
        redirect: get("redirect").map(|p| p.value.clone()),
        node,
        line: m.line,
        lbset,
        connect,
        response,
        idle,
        recover,
        health,
    }))
}

/// `route` for a member without one: `node<N>`, unused by the balancer's other members.
fn generated_route(i: usize, def: &BalancerDef) -> String {
    let taken: Vec<&str> = def
        .members
        .iter()
        .flat_map(|m| m.params.iter())
        .filter(|p| p.key == "route")
        .map(|p| p.value.as_str())
        .collect();
    let mut n = i + 1;
    loop {
        let candidate = format!("node{n}");
        if !taken.contains(&candidate.as_str()) {
            return candidate;
        }
        n += def.members.len();
    }
}

/// `host[:port]` (IPv6 in brackets) as `host:port`.
fn host_port(authority: &str, default_port: u16) -> Option<String> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (h, after) = rest.split_once(']')?;
            (format!("[{h}]"), after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        },
    };
    let port: u16 = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    let empty = host.is_empty() || host == "[]";
    (!empty).then(|| format!("{host}:{port}"))
}

fn load_factor(p: &Param, file: &str) -> Result<Noted<u32>, ImportError> {
    let f: f64 = p
        .value
        .parse()
        .ok()
        .filter(|f: &f64| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| {
            ImportError::at(
                file,
                p.line,
                format!("loadfactor: expected a number, found {:?}", p.value),
            )
        })?;
    let w = f.round().max(1.0) as u32;
    Ok(if f64::from(w) == f {
        Noted::new(w, format!("loadfactor={}", p.value))
    } else {
        Noted::new(
            w,
            format!("loadfactor={}: weights are whole numbers", p.value),
        )
    })
}

/// `status=+H-D…` as a node state: D and S disabled, N draining, H and R standby.
fn status(
    p: &Param,
    file: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Noted<NodeState>>, ImportError> {
    let mut set = HashSet::new();
    let mut on = true;
    for ch in p.value.chars() {
        match ch.to_ascii_uppercase() {
            '+' => on = true,
            '-' => on = false,
            f @ ('D' | 'S' | 'N' | 'H' | 'R' | 'I' | 'E' | 'C') => {
                if on {
                    set.insert(f);
                } else {
                    set.remove(&f);
                }
            }
            other => {
                return Err(ImportError::at(
                    file,
                    p.line,
                    format!("status={}: unknown flag {other:?}", p.value),
                ))
            }
        }
    }
    if set.contains(&'I') {
        notes.push("not carried over: status +I (ignore errors): a node that fails is marked down for failover.recover_after".into());
    }
    if set.contains(&'E') || set.contains(&'C') {
        notes.push("not carried over: status +E/+C (starts in error): the node starts up and is marked down by its first failure or health check".into());
    }
    let note = |t: &str| format!("status={}: {t}", p.value);
    Ok(if set.contains(&'D') {
        Some(Noted::new(
            NodeState::Disabled,
            note("disabled, takes no requests"),
        ))
    } else if set.contains(&'S') {
        Some(Noted::new(
            NodeState::Disabled,
            note("stopped, takes no requests"),
        ))
    } else if set.contains(&'N') {
        Some(Noted::new(
            NodeState::Draining,
            note("drain: keeps its sticky sessions, takes no new ones"),
        ))
    } else if set.contains(&'H') {
        Some(Noted::new(
            NodeState::Standby,
            note("hot standby: used when no active node is up"),
        ))
    } else if set.contains(&'R') {
        Some(Noted::new(NodeState::Standby, note("hot spare: stickyroute's standby serves while no active node of the domain is up, not one for one")))
    } else {
        None
    })
}

/// An AJP member's `ajp:`: `secret=`, `iobuffersize=` (or `ProxyIOBufferSize`), `ping=`.
fn member_ajp(
    m: &MemberDef,
    c: &Collected,
    file: &str,
    notes: &mut Vec<String>,
) -> Result<Ajp, ImportError> {
    let get = |k: &str| m.params.iter().rev().find(|p| p.key == k);
    let mut ajp = Ajp {
        secret: get("secret").map(|p| p.value.clone()),
        ..Ajp::default()
    };
    if let Some(p) = get("iobuffersize").or(c.io_buffer.as_ref()) {
        let size = int(p, file)?;
        let what = if p.key == "proxyiobuffersize" {
            "ProxyIOBufferSize"
        } else {
            "iobuffersize"
        };
        ajp.packet_size = match size {
            ..=8192 => None,
            65537.. => Some(Noted::new(
                65536,
                format!("{what} {size}: 65536 is the largest AJP packet"),
            )),
            _ => Some(Noted::new(
                size as u32,
                format!("{what} {size}; must equal the connector's packetSize"),
            )),
        };
    }
    if let Some(p) = get("ping") {
        time(p, file)?;
        ajp.ping_after = Some(Noted::new(PREPOST_PING_AFTER, format!("ping={} (a CPing before every request): here before reusing a connection idle longer than this", p.value)));
        notes.push(format!(
            "not carried over: the CPong wait of ping={}",
            p.value
        ));
    }
    Ok(ajp)
}

/// mod_proxy_hcheck's `hcmethod` and friends as the pool's health check.
fn member_health(
    m: &MemberDef,
    protocol: Protocol,
    file: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Health>, ImportError> {
    let get = |k: &str| m.params.iter().rev().find(|p| p.key == k);
    let Some(method) = get("hcmethod") else {
        return Ok(None);
    };
    let path = match method.value.to_ascii_uppercase().as_str() {
        "CPING" if protocol == Protocol::Ajp => None,
        "GET" | "HEAD" | "OPTIONS" | "GET11" | "HEAD11" | "OPTIONS11" => {
            Some(get("hcuri").map_or("/".to_string(), |p| p.value.clone()))
        }
        other => {
            notes.push(format!("not carried over: hcmethod={other}: stickyroute checks nodes with an HTTP GET or a CPing"));
            return Ok(None);
        }
    };
    let count = |k: &str| {
        get(k)
            .map(|p| int(p, file).map(|v| v.clamp(1, u32::MAX.into()) as u32))
            .transpose()
    };
    Ok(Some(Health {
        path,
        http_kind: false,
        interval: get("hcinterval").map(|p| time(p, file)).transpose()?,
        rise: count("hcpasses")?,
        fall: count("hcfails")?,
        note: Some(format!("hcmethod={} ({file}:{})", method.value, m.line)),
    }))
}

/// Members of a higher `lbset` than the lowest serve only when those are unavailable: standby.
fn member_tiers(members: &mut [Member]) {
    let Some(lowest) = members.iter().map(|m| m.lbset).min() else {
        return;
    };
    let tiers: HashSet<i64> = members.iter().map(|m| m.lbset).collect();
    for m in members.iter_mut().filter(|m| m.lbset > lowest) {
        if m.node
            .state
            .as_ref()
            .is_none_or(|s| s.value == NodeState::Active)
        {
            let mut note = format!(
                "lbset={} (lowest {lowest}): used when no active node of its domain is up",
                m.lbset
            );
            if tiers.len() > 2 {
                note.push_str("; stickyroute has two tiers, so every higher lbset is one");
            }
            m.node.state = Some(Noted::new(NodeState::Standby, note));
        }
    }
}

/// `redirect=` names another member's route.
fn member_redirects(members: &mut [Member]) {
    let routes: Vec<String> = members.iter().map(|m| m.node.route.clone()).collect();
    for m in members.iter_mut() {
        let Some(target) = m.redirect.clone() else {
            continue;
        };
        if target == m.node.route {
            m.node.notes.push(format!(
                "not carried over: redirect={target} (a node cannot redirect to itself)"
            ));
        } else if routes.contains(&target) {
            m.node.redirect = Some(target);
        } else {
            m.node.notes.push(format!(
                "not carried over: redirect={target} names no member's route"
            ));
        }
    }
}

/// Settings httpd has per member and stickyroute per pool.
fn member_pool_settings(pool: &mut Pool, members: &[Member]) {
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
            format!("{t} (httpd: every wait for the node; here: the wait for the response head)")
        });
        n
    });
    pool.timeouts.idle = pick(|m| &m.idle);
    pool.recover_after = pick(|m| &m.recover);
    let checks: Vec<&Health> = members.iter().filter_map(|m| m.health.as_ref()).collect();
    if let Some(first) = checks.first() {
        let mut h = (*first).clone();
        if checks
            .iter()
            .any(|c| c.path != h.path || c.interval != h.interval)
            || checks.len() < members.len()
        {
            h.note = Some(format!(
                "{}; the members' checks differ, this one is for every node of the pool",
                h.note.unwrap_or_default()
            ));
        }
        pool.health = Some(h);
    }
}

/// Balancer parameters the pool carries; the rest become notes.
const BALANCER_MAPPED: &[&str] = &[
    "stickysession",
    "stickysessionsep",
    "lbmethod",
    "maxattempts",
    "failonstatus",
];

/// `ProxySet` and `ProxyPass` balancer parameters; returns the session names.
fn balancer_params(
    pool: &mut Pool,
    def: &BalancerDef,
    members: usize,
    file: &str,
) -> Result<Sticky, ImportError> {
    let get = |k: &str| def.params.iter().rev().find(|p| p.key == k);
    let sticky = get("stickysession").map(|p| match p.value.split_once('|') {
        Some((cookie, path)) => (cookie.to_string(), path.to_string()),
        None => (p.value.clone(), p.value.clone()),
    });
    if sticky.is_none() {
        pool.notes.push("no stickysession: httpd did not keep sessions on a node; stickyroute does, by session.cookies".into());
    }
    if let Some(p) = get("lbmethod") {
        pool.balance = Some(lbmethod(p, file)?);
    }
    pool.max_attempts = Some(match get("maxattempts") {
        Some(p) => {
            let n = int(p, file)?.max(0) as usize;
            Noted::new(
                n + 1,
                format!("maxattempts={n}: the first attempt and {n} failovers"),
            )
        }
        None => Noted::new(members, "httpd's default maxattempts: every member once"),
    });
    if let Some(p) = get("failonstatus") {
        for code in p.value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            let c: u16 = code
                .parse()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| {
                    ImportError::at(
                        file,
                        p.line,
                        format!("failonstatus: {code:?} is not a status code"),
                    )
                })?;
            if !pool.fail_on_status.contains(&c) {
                pool.fail_on_status.push(c);
            }
        }
    }
    let mut seen = HashSet::new();
    for p in def
        .params
        .iter()
        .filter(|p| !BALANCER_MAPPED.contains(&p.key.as_str()) && seen.insert(p.key.clone()))
    {
        let shown = if p.value.is_empty() {
            p.key.clone()
        } else {
            format!("{}={}", p.key, p.value)
        };
        pool.notes.push(format!(
            "not carried over: {shown} ({file}:{}; {})",
            p.line,
            reason(&p.key)
        ));
    }
    Ok(Sticky {
        names: sticky,
        separator: get("stickysessionsep").map(|p| p.value.clone()),
    })
}

/// `lbmethod=` as the way new sessions are spread.
fn lbmethod(p: &Param, file: &str) -> Result<Noted<Balance>, ImportError> {
    let (balance, note) = match p.value.to_ascii_lowercase().as_str() {
        "byrequests" => (
            Balance::RoundRobin,
            "lbmethod=byrequests: weighted by loadfactor",
        ),
        "bybusyness" => (
            Balance::P2c,
            "lbmethod=bybusyness: the node with fewer requests in flight",
        ),
        "bytraffic" => (
            Balance::P2c,
            "lbmethod=bytraffic: no traffic-based balancing; requests in flight instead",
        ),
        "heartbeat" => (
            Balance::P2c,
            "lbmethod=heartbeat: no heartbeat from the nodes; requests in flight instead",
        ),
        _ => {
            return Err(ImportError::at(
                file,
                p.line,
                format!(
                    "lbmethod={}: expected byrequests, bybusyness, bytraffic or heartbeat",
                    p.value
                ),
            ))
        }
    };
    Ok(Noted::new(balance, note))
}

/// The session section from every balancer's `stickysession` and `stickysessionsep`.
fn session(sticky: &[Sticky]) -> Session {
    let mut s = Session::default();
    if let Some(sep) = sticky.iter().find_map(|t| t.separator.as_ref()) {
        if sep.chars().count() == 1 && crate::config::SEPARATORS.contains(sep.as_str()) {
            s.separator = Some(Noted::new(sep.clone(), "stickysessionsep"));
        } else {
            s.notes.push(format!(
                "not carried over: stickysessionsep={sep:?}: the separator is one of {:?}",
                crate::config::SEPARATORS
            ));
        }
        if sticky
            .iter()
            .filter_map(|t| t.separator.as_ref())
            .any(|o| o != sep)
        {
            s.notes.push("the balancers' stickysessionsep differ: stickyroute has one separator for all pools, the first is used".into());
        }
    }
    let set: Vec<&(String, String)> = sticky.iter().filter_map(|t| t.names.as_ref()).collect();
    let Some((_, first_path)) = set.first() else {
        return s;
    };
    let mut cookies: Vec<String> = Vec::new();
    for (c, _) in &set {
        if !cookies.contains(c) {
            cookies.push(c.clone());
        }
    }
    s.cookies = Some(Noted::new(
        cookies,
        "stickysession (for every pool: the names are tried in order)",
    ));
    s.path_param = Some(Noted::new(first_path.clone(), "stickysession; httpd also reads it from the query string, stickyroute only as ;name= in the path"));
    if set.iter().any(|(_, p)| !p.eq_ignore_ascii_case(first_path)) {
        s.notes.push("the balancers' stickysession path parameters differ: stickyroute has one for all pools, the first is used".into());
    }
    s
}

/// `Listen [addr:]port [protocol]` lines as listeners.
fn listeners(listens: &[(Vec<String>, usize)], file: &str) -> Result<Vec<Listener>, ImportError> {
    let mut out: Vec<Listener> = Vec::new();
    for (args, line) in listens {
        let Some(addr) = args.first() else {
            return Err(ImportError::at(file, *line, "Listen without an address"));
        };
        let bind = if addr.bytes().all(|b| b.is_ascii_digit()) {
            format!("0.0.0.0:{addr}")
        } else {
            addr.clone()
        };
        let ip_ok = bind.parse::<std::net::SocketAddr>().is_ok() || bind.starts_with("localhost:");
        if !ip_ok {
            return Err(ImportError::at(
                file,
                *line,
                format!("Listen {addr}: expected a port, ip:port or [ipv6]:port"),
            ));
        }
        let mut notes = vec![format!("Listen {} ({file}:{line})", args.join(" "))];
        if args.get(1).is_some_and(|p| p.eq_ignore_ascii_case("https")) || bind.ends_with(":443") {
            notes.push("TLS: add tls.cert and tls.key (httpd's SSLCertificateFile and SSLCertificateKeyFile, PEM)".into());
        }
        if !out.iter().any(|l| l.bind == bind) {
            out.push(Listener { bind, notes });
        }
    }
    if out.is_empty() {
        out.push(Listener {
            bind: "0.0.0.0:8080".into(),
            notes: vec!["no Listen in the file: set the address clients connect to".into()],
        });
    }
    Ok(out)
}

/// Why a parameter has no place in stickyroute.
fn reason(key: &str) -> &'static str {
    match key {
        "nofailover" => "a session whose node is down fails over to another node of its domain",
        "timeout" => "the wait for a usable member; the closest is timeouts.queue",
        "failontimeout" => "a response timeout answers 504 and does not mark the node down",
        "scolonpathdelim" => "the session is read from ;name= path parameters already",
        "forcerecovery" => "down nodes are retried after failover.recover_after",
        "max" | "smax" | "min" | "hardmax" => {
            "a per-httpd-process pool; nodes[].max_connections caps requests in flight"
        }
        "keepalive" | "disablereuse" | "enablereuse" => {
            "connections to nodes are pooled and reused"
        }
        "flushpackets" | "flushwait" => "responses are streamed as they arrive",
        "acquire" => "the closest is timeouts.queue",
        _ => "no equivalent in stickyroute",
    }
}

/// An integer parameter.
fn int(p: &Param, file: &str) -> Result<i64, ImportError> {
    p.value.trim().parse().map_err(|_| {
        ImportError::at(
            file,
            p.line,
            format!("{}: expected a whole number, found {:?}", p.key, p.value),
        )
    })
}

/// An httpd time parameter: a number of seconds, or with the unit `ms`, `s`, `mi` or `h`.
fn time(p: &Param, file: &str) -> Result<Duration, ImportError> {
    let v = p.value.trim().to_ascii_lowercase();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        ImportError::at(
            file,
            p.line,
            format!("{}: expected a time, found {:?}", p.key, p.value),
        )
    })?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "mi" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(ImportError::at(
                file,
                p.line,
                format!(
                    "{}: unknown time unit in {:?} (ms, s, mi, h)",
                    p.key, p.value
                ),
            ))
        }
    };
    Ok(d.min(crate::config::MAX_DURATION))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(members: &[&str], set: &str) -> String {
        let mut text = String::from("<Proxy balancer://c>\n");
        for m in members {
            text.push_str(&format!("  BalancerMember {m}\n"));
        }
        text.push_str(&format!(
            "  ProxySet {set}\n</Proxy>\nProxyPass /app balancer://c/app\n"
        ));
        text
    }

    fn run(members: &[&str], set: &str) -> Result<Balancer, ImportError> {
        import(Input {
            name: "h.conf",
            text: &conf(members, set),
        })
    }

    #[test]
    fn member_table() {
        // member → "route address protocol-override weight state", `-` for none; the
        // pool's other two members speak HTTP and are in lbset 1.
        let cases = [
            ("http://10.0.0.1:8080 route=a", "a 10.0.0.1:8080 - - -"),
            ("http://h route=a loadfactor=5", "a h:80 - 5 -"),
            ("http://h:1 route=a loadfactor=2.5", "a h:1 - 3 -"),
            ("ajp://h route=a", "a h:8009 ajp - -"),
            ("http://[::1]:8080 route=a", "a [::1]:8080 - - -"),
            ("http://h:1 route=a status=+H", "a h:1 - - standby"),
            ("http://h:1 route=a status=+R", "a h:1 - - standby"),
            ("http://h:1 route=a status=+N", "a h:1 - - draining"),
            ("http://h:1 route=a status=+D", "a h:1 - - disabled"),
            ("http://h:1 route=a status=S", "a h:1 - - disabled"),
            ("http://h:1 route=a status=+D-D", "a h:1 - - -"),
            ("http://h:1 route=a status=+I", "a h:1 - - -"),
            ("http://h:1 route=a lbset=2", "a h:1 - - standby"),
            ("ws://h:1", "node3 h:1 - - -"),
        ];
        for (member, expected) in cases {
            let base = ["http://b:1 route=b1 lbset=1", "http://b:2 route=b2 lbset=1"];
            let b = run(&[base[0], base[1], member], "").unwrap();
            let n = &b.pools[0].nodes[2];
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            let got = format!(
                "{} {} {} {} {}",
                n.route,
                n.address,
                or_dash(n.protocol.map(|p| p.as_str().to_string())),
                or_dash(n.weight.as_ref().map(|w| w.value.to_string())),
                or_dash(n.state.as_ref().map(|s| s.value.as_str().to_string())),
            );
            assert_eq!(got, expected, "{member}");
        }
    }

    #[test]
    fn balancer_table() {
        let b = run(
            &["http://h:1 route=a", "http://h:2 route=b"],
            "stickysession=SID|sid lbmethod=byrequests maxattempts=0 failonstatus=500,503 growth=5",
        )
        .unwrap();
        let p = &b.pools[0];
        assert_eq!(p.balance.as_ref().unwrap().value, Balance::RoundRobin);
        assert_eq!(p.max_attempts.as_ref().unwrap().value, 1);
        assert_eq!(p.fail_on_status, [500, 503]);
        assert_eq!(p.path_prefix.as_ref().unwrap().value, "/app");
        assert!(p.notes.iter().any(|n| n.contains("growth=5")));
        assert_eq!(b.session.cookies.as_ref().unwrap().value, ["SID"]);
        assert_eq!(b.session.path_param.as_ref().unwrap().value, "sid");
        let b = run(
            &["http://h:1 route=a"],
            "stickysession=JSESSIONID stickysessionsep=_",
        )
        .unwrap();
        assert_eq!(b.session.path_param.as_ref().unwrap().value, "JSESSIONID");
        assert_eq!(b.session.separator.as_ref().unwrap().value, "_");
        let b = run(&["http://h:1 route=a", "https://h:2 route=b"], "").unwrap();
        assert_eq!(b.pools[0].nodes.len(), 1);
        assert!(b.pools[0].notes.iter().any(|n| n.contains("not https://")));
        assert!(b.pools[0]
            .notes
            .iter()
            .any(|n| n.contains("no stickysession")));
    }

    #[test]
    fn time_table() {
        for (v, expected) in [
            ("5", Some(5_000)),
            ("5s", Some(5_000)),
            ("250ms", Some(250)),
            ("2mi", Some(120_000)),
            ("1h", Some(3_600_000)),
            ("5x", None),
            ("", None),
        ] {
            let p = Param {
                key: "timeout".into(),
                value: v.into(),
                line: 1,
            };
            assert_eq!(
                time(&p, "h").ok().map(|d| d.as_millis() as u64),
                expected,
                "{v}"
            );
        }
    }

    #[test]
    fn listeners_table() {
        for (listen, expected) in [
            ("Listen 80", Ok("0.0.0.0:80")),
            ("Listen 192.0.2.1:8080", Ok("192.0.2.1:8080")),
            ("Listen [::]:80", Ok("[::]:80")),
            ("Listen localhost:81", Ok("localhost:81")),
            (
                "Listen www.example.com:80",
                Err("h.conf:1: Listen www.example.com:80: expected a port, ip:port or [ipv6]:port"),
            ),
        ] {
            let text = format!("{listen}\n{}", conf(&["http://h:1 route=a"], ""));
            let got = import(Input {
                name: "h.conf",
                text: &text,
            })
            .map(|b| b.listeners[0].bind.clone());
            assert_eq!(
                got.map_err(|e| e.to_string()),
                expected.map(String::from).map_err(String::from),
                "{listen}"
            );
        }
    }

    #[test]
    fn passes_and_hosts() {
        let text = "<VirtualHost *:80>\n ServerName A.example:80\n ServerAlias b.example *.example\n ProxyPass / balancer://c/\n</VirtualHost>\n\
            BalancerMember balancer://c http://h:1 route=a\nProxySet balancer://c lbmethod=bybusyness\n\
            ProxyPass /x balancer://c/y\nProxyPass /static !\nProxyPassMatch ^/(.*)$ balancer://c/$1\n";
        let b = import(Input {
            name: "h.conf",
            text,
        })
        .unwrap();
        let p = &b.pools[0];
        assert_eq!(p.path_prefix.as_ref().unwrap().value, "/");
        assert!(
            p.hosts.is_empty(),
            "a ProxyPass outside the virtual host serves any host"
        );
        assert_eq!(p.balance.as_ref().unwrap().value, Balance::P2c);
        assert!(p.notes.iter().any(|n| n.contains("also at /x")));
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("ProxyPass /x balancer://c/y")));
        assert!(b.header.iter().any(|h| h.contains("ProxyPass /static !")));
        assert!(b.header.iter().any(|h| h.contains("ProxyPassMatch")));
        let only_vhost = &text[..text.find("ProxyPass /x").unwrap()];
        let b = import(Input {
            name: "h.conf",
            text: only_vhost,
        })
        .unwrap();
        assert_eq!(b.pools[0].hosts, ["a.example", "b.example"]);
    }

    #[test]
    fn errors_table() {
        for (text, expected) in [
            ("<Proxy balancer://c>\n</Proxy>\n", "h.conf:1: balancer://c has no BalancerMember"),
            ("<Proxy balancer://c>\nBalancerMember fcgi://h:1\n</Proxy>\n", "h.conf:1: balancer://c has no member stickyroute can forward to (http:// or ajp://)"),
            ("<Proxy balancer://c>\nBalancerMember h:1\n</Proxy>\n", "h.conf:2: BalancerMember \"h:1\" is not a URL"),
            ("<Proxy balancer://c>\nBalancerMember http://h:x\n</Proxy>\n", "h.conf:2: BalancerMember \"http://h:x\": bad host or port"),
            ("<Proxy balancer://c>\nBalancerMember http://h:1 route=a\nBalancerMember http://h:2 route=a\n</Proxy>\n", "h.conf:3: two members of balancer://c have the route \"a\" (the other at line 2)"),
            ("<Proxy balancer://c>\nBalancerMember http://h:1 route=a.b\n</Proxy>\n", "h.conf:2: route \"a.b\" may only use letters, digits and - _ ~ ! : (at most 64), not the separator ."),
            ("<Proxy balancer://c>\nBalancerMember http://h:1 loadfactor=x\n</Proxy>\n", "h.conf:2: loadfactor: expected a number, found \"x\""),
            ("<Proxy balancer://c>\nBalancerMember http://h:1\nProxySet lbmethod=random\n</Proxy>\n", "h.conf:3: lbmethod=random: expected byrequests, bybusyness, bytraffic or heartbeat"),
            ("BalancerMember http://h:1\n", "h.conf:1: BalancerMember outside <Proxy balancer://…> needs the balancer's URL, then the member's"),
            ("<Location /a>\n</Location>\n", "h.conf: no balancer to import: no <Proxy balancer://…> section and no BalancerMember"),
        ] {
            let e = import(Input { name: "h.conf", text }).unwrap_err();
            assert_eq!(e.to_string(), expected, "{text:?}");
        }
    }
}
