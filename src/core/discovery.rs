//! Decisions of DNS discovery, apart from the lookups themselves: the route a discovered node
//! gets from its DNS name, when the next lookup is due, what a lookup's outcome does to the
//! pool's set of discovered nodes (a failure keeps the last good set; an empty answer empties
//! it only once it has lasted the grace period), and how that set differs from the nodes
//! the pool has.
//!
//! The name a route comes from is the SRV record's target for `discovery.srv`, and each
//! address's PTR name for `discovery.host` (A/AAAA records name no node, and a route must not
//! change when the set does). The same rule gives a node's own route in `demo-node
//! --route-from-ptr`, so a replica started by `compose --scale` agrees with the balancer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use regex::Regex;

/// How a discovered node's route comes from its DNS name.
#[derive(Debug, Clone)]
pub enum RouteRule {
    /// The first label: `tomcat-0.tomcat.shop.svc.cluster.local.` → `tomcat-0`, the
    /// StatefulSet pod name.
    FirstLabel,
    /// The one capture group of a regex over the whole name (without the final dot).
    Pattern(Regex),
}

impl PartialEq for RouteRule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (RouteRule::FirstLabel, RouteRule::FirstLabel) => true,
            (RouteRule::Pattern(a), RouteRule::Pattern(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for RouteRule {}

impl RouteRule {
    /// Parses `discovery.route`: `first_label`, or a regex with exactly one capture group.
    pub fn parse(text: &str) -> Result<RouteRule, String> {
        if text == "first_label" {
            return Ok(RouteRule::FirstLabel);
        }
        let re = Regex::new(text).map_err(|e| {
            format!(
                "neither first_label nor a valid regex: {}",
                one_line(&e.to_string())
            )
        })?;
        match re.captures_len() {
            2 => Ok(RouteRule::Pattern(re)),
            n => Err(format!(
                "the regex {text:?} must have exactly one capture group (it has {})",
                n - 1
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RouteRule::FirstLabel => "first_label",
            RouteRule::Pattern(re) => re.as_str(),
        }
    }

    /// The route for DNS name `name`, valid as a route with separator `sep`.
    pub fn route(&self, name: &str, sep: char) -> Result<String, String> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let route = match self {
            RouteRule::FirstLabel => name.split('.').next().unwrap_or(""),
            RouteRule::Pattern(re) => re
                .captures(name)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str())
                .ok_or_else(|| format!("name {name:?} does not match {:?}", re.as_str()))?,
        };
        if crate::core::session::is_valid_route(route, sep) {
            Ok(route.to_string())
        } else {
            Err(format!(
                "name {name:?} gives route {route:?}, which is not a valid route \
                 (letters, digits and - _ ~ ! . : without the separator {sep:?}, at most 64)"
            ))
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// When the next lookup is due: at the answer's smallest TTL, bounded by `min` and `max`. An
/// answer without records (or a failed lookup) has no TTL: `min`, to notice recovery soon.
pub fn next_lookup_in(ttl: Option<u32>, min: Duration, max: Duration) -> Duration {
    match ttl {
        Some(secs) => Duration::from_secs(u64::from(secs)).clamp(min, max.max(min)),
        None => min,
    }
}

/// One node a lookup named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub route: String,
    /// The DNS name the route came from (SRV target or PTR name), for the status.
    pub name: String,
    /// Where to connect, in the answer's order; never empty.
    pub addrs: Vec<SocketAddr>,
}

/// What one lookup gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Records naming these nodes (never empty; see [`Lookup::Empty`]).
    Answer(Vec<Found>),
    /// NXDOMAIN, or NOERROR without records.
    Empty,
    /// SERVFAIL, timeout, refused connection, malformed answer: says nothing about the set.
    Failed(String),
}

/// What the pool's discovered set becomes after a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The set becomes exactly these nodes.
    Set(Vec<Found>),
    /// The set stays as it is.
    Keep,
}

/// The memory of one discovery source between lookups: since when its answers have been
/// empty. Times are milliseconds on any monotonic clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmptyWatch {
    empty_since_ms: Option<u64>,
}

impl EmptyWatch {
    /// The verdict on `lookup` at `now_ms`: an answer sets the set; a failure keeps it; an
    /// empty answer keeps it until empty answers have lasted `grace`, then empties it.
    pub fn judge(&mut self, lookup: &Lookup, now_ms: u64, grace: Duration) -> Verdict {
        match lookup {
            Lookup::Answer(found) => {
                self.empty_since_ms = None;
                Verdict::Set(found.clone())
            }
            Lookup::Failed(_) => Verdict::Keep,
            Lookup::Empty => {
                let since = *self.empty_since_ms.get_or_insert(now_ms);
                let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
                if now_ms.saturating_sub(since) >= grace_ms {
                    Verdict::Set(Vec::new())
                } else {
                    Verdict::Keep
                }
            }
        }
    }

    /// Since when answers have been empty (None: the last answer had records).
    pub fn empty_since_ms(&self) -> Option<u64> {
        self.empty_since_ms
    }
}

/// Records that gave the same route: the first wins, the others are reported. A StatefulSet
/// never gives two, but a hand-written zone or a pattern can.
pub fn dedup_routes(found: Vec<Found>) -> (Vec<Found>, Vec<Found>) {
    let mut seen = std::collections::HashSet::new();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for f in found {
        if seen.insert(f.route.clone()) {
            kept.push(f);
        } else {
            dropped.push(f);
        }
    }
    (kept, dropped)
}

/// One change to a pool's discovered nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A route the pool does not have.
    Join(Found),
    /// A route the pool has (present or leaving) at other addresses: a new process.
    Moved(Found),
    /// A leaving route named again: it stays, at the same addresses.
    Back(String),
    /// A present route no longer named: it drains, then goes.
    Leave(String),
}

/// What the pool has of one discovered route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub addrs: Vec<SocketAddr>,
    /// Left the answer and draining.
    pub leaving: bool,
}

/// The changes that take the pool's discovered `members` to `wanted`, in route order.
pub fn diff(members: &BTreeMap<String, Member>, wanted: &[Found]) -> Vec<Change> {
    let mut changes = Vec::new();
    let named: BTreeMap<&str, &Found> = wanted.iter().map(|f| (f.route.as_str(), f)).collect();
    for (route, f) in &named {
        match members.get(*route) {
            None => changes.push(Change::Join((*f).clone())),
            Some(m) if m.addrs != f.addrs => changes.push(Change::Moved((*f).clone())),
            Some(m) if m.leaving => changes.push(Change::Back(route.to_string())),
            Some(_) => {}
        }
    }
    for (route, m) in members {
        if !m.leaving && !named.contains_key(route.as_str()) {
            changes.push(Change::Leave(route.clone()));
        }
    }
    changes.sort_by(|a, b| change_route(a).cmp(change_route(b)));
    changes
}

fn change_route(c: &Change) -> &str {
    match c {
        Change::Join(f) | Change::Moved(f) => &f.route,
        Change::Back(r) | Change::Leave(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 8080))
    }

    fn found(route: &str, last: u8) -> Found {
        Found {
            route: route.into(),
            name: format!("{route}.pool.test."),
            addrs: vec![addr(last)],
        }
    }

    #[test]
    fn routes_from_names() {
        let pattern = RouteRule::parse(r"^app-(\d+)\.").unwrap();
        let cases: &[(&RouteRule, &str, Result<&str, &str>)] = &[
            (
                &RouteRule::FirstLabel,
                "tomcat-0.tomcat.shop.svc.cluster.local.",
                Ok("tomcat-0"),
            ),
            (
                &RouteRule::FirstLabel,
                "tomcat-1.tomcat.shop.svc.cluster.local",
                Ok("tomcat-1"),
            ),
            (&RouteRule::FirstLabel, "single.", Ok("single")),
            (
                &RouteRule::FirstLabel,
                "shop-node-2.shop_default",
                Ok("shop-node-2"),
            ),
            (&RouteRule::FirstLabel, ".", Err("not a valid route")),
            (
                &RouteRule::FirstLabel,
                "a*b.pool.test.",
                Err("not a valid route"),
            ),
            (&pattern, "app-7.pool.test.", Ok("7")),
            (&pattern, "web-7.pool.test.", Err("does not match")),
        ];
        for (rule, name, want) in cases {
            let got = rule.route(name, '.');
            match want {
                Ok(r) => assert_eq!(got.as_deref(), Ok(*r), "{name}"),
                Err(part) => assert!(got.unwrap_err().contains(part), "{name}"),
            }
        }
    }

    #[test]
    fn route_rule_parse() {
        assert_eq!(
            RouteRule::parse("first_label").unwrap(),
            RouteRule::FirstLabel
        );
        assert_eq!(RouteRule::parse(r"^(\w+)-x").unwrap().as_str(), r"^(\w+)-x");
        let cases = [
            (r"^\w+$", "exactly one capture group (it has 0)"),
            (r"^(\w+)-(\d+)", "exactly one capture group (it has 2)"),
            ("(", "neither first_label nor a valid regex"),
        ];
        for (text, part) in cases {
            let e = RouteRule::parse(text).unwrap_err();
            assert!(e.contains(part), "{text}: {e}");
        }
    }

    #[test]
    fn lookup_interval_follows_ttl_within_bounds() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(30));
        let cases = [(Some(5), 5), (Some(0), 1), (Some(300), 30), (None, 1)];
        for (ttl, want) in cases {
            assert_eq!(
                next_lookup_in(ttl, min, max),
                Duration::from_secs(want),
                "{ttl:?}"
            );
        }
    }

    #[test]
    fn empty_answers_empty_the_set_only_after_grace() {
        let grace = Duration::from_secs(30);
        let mut w = EmptyWatch::default();
        let a = Lookup::Answer(vec![found("n1", 1)]);
        let steps: &[(&Lookup, u64, Verdict)] = &[
            (&a, 0, Verdict::Set(vec![found("n1", 1)])),
            (&Lookup::Empty, 1_000, Verdict::Keep),
            (&Lookup::Failed("SERVFAIL".into()), 5_000, Verdict::Keep),
            (&Lookup::Empty, 30_999, Verdict::Keep),
            (&Lookup::Empty, 31_000, Verdict::Set(vec![])),
            (&a, 32_000, Verdict::Set(vec![found("n1", 1)])),
            // An answer in between restarts the grace period.
            (&Lookup::Empty, 40_000, Verdict::Keep),
            (&Lookup::Empty, 69_999, Verdict::Keep),
            (&Lookup::Failed("timeout".into()), 80_000, Verdict::Keep),
        ];
        for (i, (lookup, now, want)) in steps.iter().enumerate() {
            assert_eq!(&w.judge(lookup, *now, grace), want, "step {i}");
        }
    }

    #[test]
    fn duplicate_routes_keep_the_first() {
        let (kept, dropped) = dedup_routes(vec![found("a", 1), found("b", 2), found("a", 3)]);
        assert_eq!(kept, vec![found("a", 1), found("b", 2)]);
        assert_eq!(dropped, vec![found("a", 3)]);
    }

    #[test]
    fn diff_cases() {
        let member = |last: u8, leaving: bool| Member {
            addrs: vec![addr(last)],
            leaving,
        };
        let members: BTreeMap<String, Member> = [
            ("a".to_string(), member(1, false)),
            ("b".to_string(), member(2, false)),
            ("c".to_string(), member(3, true)),
            ("d".to_string(), member(4, true)),
        ]
        .into_iter()
        .collect();
        let wanted = vec![found("a", 1), found("c", 3), found("d", 9), found("e", 5)];
        assert_eq!(
            diff(&members, &wanted),
            vec![
                Change::Leave("b".into()),
                Change::Back("c".into()),
                Change::Moved(found("d", 9)),
                Change::Join(found("e", 5)),
            ]
        );
        assert_eq!(diff(&members, &[found("a", 1), found("b", 2)]), vec![]);
        assert_eq!(
            diff(&members, &[]),
            vec![Change::Leave("a".into()), Change::Leave("b".into())]
        );
    }
}
