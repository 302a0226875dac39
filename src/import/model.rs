//! What an import produces before it is written out: the parts of a `balancer.yaml` that an
//! httpd balancer configuration can fill in, each value with an optional note saying where it
//! came from, and the notes on everything that could not be carried over.
//!
//! A field left `None` is not written, so stickyroute's default applies.

use std::time::Duration;

/// A value and the comment written after it on its line (`weight: 3  # lbfactor=3`).
#[derive(Debug, Clone, PartialEq)]
pub struct Noted<T> {
    pub value: T,
    pub note: Option<String>,
}

impl<T> Noted<T> {
    pub fn new(value: T, note: impl Into<String>) -> Noted<T> {
        Noted {
            value,
            note: Some(note.into()),
        }
    }
}

/// The whole output document.
#[derive(Debug, Default)]
pub struct Balancer {
    /// Comment lines at the top of the file: what was read and what was left out as a whole.
    pub header: Vec<String>,
    pub listeners: Vec<Listener>,
    pub session: Session,
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub bind: String,
    pub notes: Vec<String>,
}

/// The top-level `session:` section; `None` fields keep stickyroute's defaults, which are
/// mod_jk's and Tomcat's (`JSESSIONID`, `jsessionid`, `.`).
#[derive(Debug, Default)]
pub struct Session {
    pub cookies: Option<Noted<Vec<String>>>,
    pub path_param: Option<Noted<String>>,
    pub separator: Option<Noted<String>>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Ajp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Ajp => "ajp",
        }
    }
}

/// `ajp:` of a pool or a node. Without `secret` and `secret_env` it is written as
/// `secret_required: false` with the comment that Tomcat 9.0.31+ needs a secret.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ajp {
    pub secret: Option<String>,
    /// The environment variable holding the secret.
    pub secret_env: Option<String>,
    pub packet_size: Option<Noted<u32>>,
    pub ping_after: Option<Noted<Duration>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    P2c,
    RoundRobin,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::P2c => "p2c",
            Balance::RoundRobin => "round_robin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Active,
    Draining,
    Disabled,
    Standby,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Draining => "draining",
            NodeState::Disabled => "disabled",
            NodeState::Standby => "standby",
        }
    }
}

/// `pools[].timeouts`.
#[derive(Debug, Default)]
pub struct Timeouts {
    pub connect: Option<Noted<Duration>>,
    pub response: Option<Noted<Duration>>,
    pub idle: Option<Noted<Duration>>,
}

/// `pools[].health`: CPing, or an HTTP request for `path`.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// `None`: CPing (`kind: cping`).
    pub path: Option<String>,
    /// Written as `kind: http` (needed on AJP pools, where CPing is the default).
    pub http_kind: bool,
    pub interval: Option<Duration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub note: Option<String>,
}

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    /// Comment lines written above the pool: its source and what it could not carry over.
    pub notes: Vec<String>,
    pub hosts: Vec<String>,
    pub path_prefix: Option<Noted<String>>,
    /// `None`: HTTP, the default.
    pub protocol: Option<Protocol>,
    pub ajp: Option<Ajp>,
    pub balance: Option<Noted<Balance>>,
    pub max_attempts: Option<Noted<usize>>,
    pub recover_after: Option<Noted<Duration>>,
    pub timeouts: Timeouts,
    pub fail_on_status: Vec<u16>,
    pub health: Option<Health>,
    pub nodes: Vec<Node>,
}

impl Pool {
    pub fn new(name: &str) -> Pool {
        Pool {
            name: name.to_string(),
            notes: Vec::new(),
            hosts: Vec::new(),
            path_prefix: None,
            protocol: None,
            ajp: None,
            balance: None,
            max_attempts: None,
            recover_after: None,
            timeouts: Timeouts::default(),
            fail_on_status: Vec::new(),
            health: None,
            nodes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub route: String,
    pub address: String,
    /// Comment lines written above the node.
    pub notes: Vec<String>,
    /// Only where it differs from the pool's.
    pub protocol: Option<Protocol>,
    /// Only where it differs from the pool's.
    pub ajp: Option<Ajp>,
    pub weight: Option<Noted<u32>>,
    pub domain: Option<String>,
    pub redirect: Option<String>,
    pub state: Option<Noted<NodeState>>,
}

impl Node {
    pub fn new(route: &str, address: &str) -> Node {
        Node {
            route: route.to_string(),
            address: address.to_string(),
            notes: Vec::new(),
            protocol: None,
            ajp: None,
            weight: None,
            domain: None,
            redirect: None,
            state: None,
        }
    }
}

/// The comment on an AJP pool or node without a secret.
pub const NO_SECRET_NOTE: &str = "no secret in the source: Tomcat 9.0.31+ refuses to start an AJP connector without one (CVE-2020-1938); set `secret` on the connector and `ajp.secret` (or `secret_env`) here, then remove this line";

/// The idle time before a CPing given for "a CPing before every request" (mod_jk's
/// `ping_mode` P, mod_proxy_ajp's `ping=`): the shortest that saves a round trip on a busy
/// connection; connections reused sooner are taken as they are.
pub const PREPOST_PING_AFTER: Duration = Duration::from_secs(1);

/// One pool-wide duration from values set per member (`(route, value, note)`): the value they
/// share, or the shortest with a note naming each.
pub fn shared_duration(values: Vec<(String, &(Duration, String))>) -> Option<Noted<Duration>> {
    let (_, first) = values.first()?;
    if values.iter().all(|(_, v)| v.0 == first.0) {
        return Some(Noted::new(first.0, first.1.clone()));
    }
    let (route, min) = values.iter().min_by_key(|(_, v)| v.0)?;
    let all: Vec<String> = values
        .iter()
        .map(|(r, v)| format!("{r}: {}", v.1))
        .collect();
    Some(Noted::new(
        min.0,
        format!(
            "the members differ ({}); the shortest, {route}'s, for the pool",
            all.join(", ")
        ),
    ))
}

/// Puts the protocol and AJP settings shared by a pool's nodes on the pool, and leaves on each
/// node only what differs: the pool takes the protocol most of its nodes speak (AJP on a tie),
/// and, if it is AJP, the AJP settings all its AJP nodes share. `protocol` and `ajp` of each
/// node hold that node's full settings on entry.
pub fn hoist_protocol(pool: &mut Pool) {
    let ajp_nodes = pool
        .nodes
        .iter()
        .filter(|n| n.protocol == Some(Protocol::Ajp))
        .count();
    let protocol = if ajp_nodes * 2 >= pool.nodes.len() && ajp_nodes > 0 {
        Protocol::Ajp
    } else {
        Protocol::Http
    };
    pool.protocol = (protocol == Protocol::Ajp).then_some(Protocol::Ajp);
    if protocol == Protocol::Ajp {
        let first = pool
            .nodes
            .iter()
            .find(|n| n.protocol == Some(Protocol::Ajp))
            .and_then(|n| n.ajp.clone())
            .unwrap_or_default();
        let shared = pool
            .nodes
            .iter()
            .filter(|n| n.protocol == Some(Protocol::Ajp))
            .all(|n| n.ajp.as_ref().unwrap_or(&Ajp::default()) == &first);
        if shared {
            pool.ajp = Some(first);
            for n in pool.nodes.iter_mut() {
                if n.protocol == Some(Protocol::Ajp) {
                    n.ajp = None;
                }
            }
        }
    }
    for n in pool.nodes.iter_mut() {
        if n.protocol.unwrap_or(Protocol::Http) == protocol {
            n.protocol = None;
        } else {
            n.protocol = Some(n.protocol.unwrap_or(Protocol::Http));
        }
        if n.protocol == Some(Protocol::Http) {
            n.ajp = None;
        }
    }
}

/// Notes pools that serve the same hosts and path prefix: requests can reach only one of them.
pub fn note_overlaps(pools: &mut [Pool]) {
    let keys: Vec<(Vec<String>, String)> = pools
        .iter()
        .map(|p| {
            let mut hosts = p.hosts.clone();
            hosts.sort();
            let prefix = p.path_prefix.as_ref().map_or("/", |n| n.value.as_str());
            (hosts, prefix.to_string())
        })
        .collect();
    for i in 0..pools.len() {
        if let Some(j) = (0..i).find(|j| keys[*j] == keys[i]) {
            let note = format!(
                "pool {} serves the same hosts and path_prefix ({}): give one of them its own path_prefix or hosts",
                pools[j].name, keys[i].1
            );
            pools[i].notes.push(note);
        }
    }
}

/// Moves the notes every node of a pool shares (settings inherited from one template, say) to
/// the pool, written once. A node's first note, the one naming its source, stays.
pub fn hoist_notes(pool: &mut Pool) {
    if pool.nodes.len() < 2 {
        return;
    }
    let shared: Vec<String> = pool.nodes[0]
        .notes
        .iter()
        .skip(1)
        .filter(|n| {
            pool.nodes[1..]
                .iter()
                .all(|o| o.notes.iter().skip(1).any(|x| x == *n))
        })
        .cloned()
        .collect();
    for n in pool.nodes.iter_mut() {
        let source = n.notes.first().cloned();
        let rest: Vec<String> = n
            .notes
            .iter()
            .skip(1)
            .filter(|x| !shared.contains(x))
            .cloned()
            .collect();
        n.notes = source.into_iter().chain(rest).collect();
    }
    for s in shared {
        pool.notes.push(format!("{s} (every node)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(route: &str, protocol: Protocol, secret: Option<&str>) -> Node {
        let mut n = Node::new(route, "127.0.0.1:8009");
        n.protocol = Some(protocol);
        if protocol == Protocol::Ajp {
            n.ajp = Some(Ajp {
                secret: secret.map(str::to_string),
                ..Ajp::default()
            });
        }
        n
    }

    #[test]
    fn hoist_protocol_table() {
        use Protocol::{Ajp as A, Http as H};
        // (nodes, pool protocol, pool secret, per-node protocol overrides, per-node secrets)
        type Case<'a> = (
            Vec<(Protocol, Option<&'a str>)>,
            Option<Protocol>,
            Option<Option<&'a str>>,
            Vec<Option<Protocol>>,
            Vec<Option<Option<&'a str>>>,
        );
        let cases: Vec<Case> = vec![
            (
                vec![(A, Some("s")), (A, Some("s"))],
                Some(A),
                Some(Some("s")),
                vec![None, None],
                vec![None, None],
            ),
            (
                vec![(A, Some("s")), (A, Some("t"))],
                Some(A),
                None,
                vec![None, None],
                vec![Some(Some("s")), Some(Some("t"))],
            ),
            (
                vec![(A, None), (H, None)],
                Some(A),
                Some(None),
                vec![None, Some(H)],
                vec![None, None],
            ),
            (
                vec![(H, None), (H, None), (A, Some("x"))],
                None,
                None,
                vec![None, None, Some(A)],
                vec![None, None, Some(Some("x"))],
            ),
            (vec![(H, None)], None, None, vec![None], vec![None]),
        ];
        for (nodes, protocol, pool_secret, overrides, secrets) in cases {
            let mut pool = Pool::new("p");
            pool.nodes = nodes
                .iter()
                .enumerate()
                .map(|(i, (p, s))| node(&format!("n{i}"), *p, *s))
                .collect();
            hoist_protocol(&mut pool);
            assert_eq!(pool.protocol, protocol, "{nodes:?}");
            assert_eq!(
                pool.ajp.as_ref().map(|a| a.secret.as_deref()),
                pool_secret,
                "{nodes:?}"
            );
            let got: Vec<_> = pool.nodes.iter().map(|n| n.protocol).collect();
            assert_eq!(got, overrides, "{nodes:?}");
            let got: Vec<_> = pool
                .nodes
                .iter()
                .map(|n| n.ajp.as_ref().map(|a| a.secret.as_deref()))
                .collect();
            assert_eq!(got, secrets, "{nodes:?}");
        }
    }

    #[test]
    fn note_overlaps_table() {
        // (hosts and prefix of each pool, which pools get a note)
        type Shape<'a> = Vec<(&'a [&'a str], Option<&'a str>)>;
        let cases: Vec<(Shape, Vec<bool>)> = vec![
            (vec![(&[], None), (&[], None)], vec![false, true]),
            (vec![(&[], None), (&[], Some("/"))], vec![false, true]),
            (
                vec![(&[], Some("/a")), (&[], Some("/b"))],
                vec![false, false],
            ),
            (
                vec![(&["x", "y"], None), (&["y", "x"], None)],
                vec![false, true],
            ),
            (vec![(&["x"], None), (&[], None)], vec![false, false]),
        ];
        for (shape, expected) in cases {
            let mut pools: Vec<Pool> = shape
                .iter()
                .enumerate()
                .map(|(i, (hosts, prefix))| {
                    let mut p = Pool::new(&format!("p{i}"));
                    p.hosts = hosts.iter().map(|h| h.to_string()).collect();
                    p.path_prefix = prefix.map(|v| Noted::new(v.to_string(), "x"));
                    p
                })
                .collect();
            note_overlaps(&mut pools);
            let got: Vec<bool> = pools.iter().map(|p| !p.notes.is_empty()).collect();
            assert_eq!(got, expected, "{shape:?}");
        }
    }

    #[test]
    fn hoist_notes_table() {
        // (notes of each node after its source note, pool notes after, node notes after)
        type Notes<'a> = Vec<Vec<&'a str>>;
        let cases: Vec<(Notes, Vec<&str>, Notes)> = vec![
            (
                vec![vec!["x", "y"], vec!["y", "x"]],
                vec!["x (every node)", "y (every node)"],
                vec![vec![], vec![]],
            ),
            (
                vec![vec!["x", "y"], vec!["x"]],
                vec!["x (every node)"],
                vec![vec!["y"], vec![]],
            ),
            (vec![vec!["x"]], vec![], vec![vec!["x"]]),
            (vec![vec![], vec!["x"]], vec![], vec![vec![], vec!["x"]]),
        ];
        for (notes, pool_after, nodes_after) in cases {
            let mut pool = Pool::new("p");
            for (i, n) in notes.iter().enumerate() {
                let mut node = Node::new(&format!("n{i}"), "h:1");
                node.notes.push(format!("source {i}"));
                node.notes.extend(n.iter().map(|s| s.to_string()));
                pool.nodes.push(node);
            }
            hoist_notes(&mut pool);
            assert_eq!(pool.notes, pool_after, "{notes:?}");
            for (i, want) in nodes_after.iter().enumerate() {
                let mut expected = vec![format!("source {i}")];
                expected.extend(want.iter().map(|s| s.to_string()));
                assert_eq!(pool.nodes[i].notes, expected, "{notes:?}");
            }
        }
    }
}
