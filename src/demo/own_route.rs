//! The route a demo node takes from DNS (`stickyroute demo-node --route-from-ptr`): the first
//! label of the PTR name of its own address.
//!
//! Replicas started by `docker compose up --scale node=3` all run one command, so none can be
//! told its route; each computes it instead, by the rule the balancer applies to a pool's
//! `discovery.host` (the first label of each address's PTR name, see
//! [`crate::core::discovery::RouteRule`]), so node and balancer agree without a list. Docker's
//! DNS names a container's address `<project>-<service>-<N>.<network>.`: the replica
//! `stickyroute-demo-node-2` has the route `stickyroute-demo-node-2`.
//!
//! Its own address: the one given (`--ptr-address`), else the first address its host name
//! resolves to (`/etc/hosts` first, as the system resolves it) that is not loopback,
//! unspecified or IPv6 link-local. In a container that is the address on its network. The PTR
//! lookup asks the servers of `/etc/resolv.conf`, or the one given (`--resolver`), through
//! hickory's name-server layer: its `Resolver` answers a PTR query for 127.0.0.0/8 or `::1`
//! itself with `localhost.` (RFC 6761), and a given loopback address must reach the server.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverOpts};
use hickory_resolver::name_server::{NameServerPool, TokioConnectionProvider};
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::proto::xfer::{DnsHandle, DnsRequestOptions, FirstAnswer};
use hickory_resolver::proto::ProtoError;

use crate::core::discovery::RouteRule;

/// The separator of the demo node's session ids (`<id>.<route>`): a route never contains it.
const SESSION_SEPARATOR: char = '.';
/// The PTR lookup gives up after this (the resolver's own tries and timeouts included).
const LOOKUP_DEADLINE: Duration = Duration::from_secs(10);
/// Where the host name is read (the UTS namespace's, what `hostname` prints), in order.
const HOSTNAME_FILES: [&str; 2] = ["/proc/sys/kernel/hostname", "/etc/hostname"];

/// Where the PTR lookup of `--route-from-ptr` starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PtrLookup {
    /// The address whose PTR name gives the route; `None`: the host name's first usable one.
    pub address: Option<IpAddr>,
    /// The DNS server to ask; `None`: those of `/etc/resolv.conf`.
    pub resolver: Option<SocketAddr>,
}

/// What `--route-from-ptr` found: the address, its PTR name and the route from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtrRoute {
    pub address: IpAddr,
    pub name: String,
    pub route: String,
}

/// Looks up the route of this node: its address (given or found), that address's PTR name,
/// the name's first label. The error says which step failed and why.
pub async fn route_from_ptr(lookup: &PtrLookup) -> Result<PtrRoute, String> {
    let address = match lookup.address {
        Some(a) => a,
        None => own_address().await?,
    };
    let (servers, opts) = name_servers(lookup.resolver)?;
    let asked = lookup.resolver.map_or_else(
        || "the resolvers of /etc/resolv.conf".to_owned(),
        |r| r.to_string(),
    );
    let pool = NameServerPool::from_config(servers, opts, TokioConnectionProvider::default());
    let query = Query::query(Name::from(address), RecordType::PTR);
    let answer = pool
        .lookup(query, DnsRequestOptions::default())
        .first_answer();
    let names: Vec<String> = tokio::time::timeout(LOOKUP_DEADLINE, answer)
        .await
        .map_err(|_| {
            format!("PTR lookup of {address} (asked {asked}): no answer within {LOOKUP_DEADLINE:?}")
        })?
        .map_err(|e| ptr_error(address, &asked, &e))?
        .answers()
        .iter()
        .filter_map(|r| r.data().as_ptr().map(|p| p.0.to_ascii()))
        .collect();
    let name = names
        .into_iter()
        .next()
        .ok_or_else(|| format!("no PTR record for {address} (asked {asked})"))?;
    let route = first_label_route(&name).map_err(|e| format!("{address}: {e}"))?;
    Ok(PtrRoute {
        address,
        name,
        route,
    })
}

/// The route from PTR name `name` (in ASCII presentation form, as the balancer reads it): its
/// first label, checked as the balancer checks a route
/// (the demo node's own, narrower, check is `node::validate_route`).
pub fn first_label_route(name: &str) -> Result<String, String> {
    RouteRule::FirstLabel.route(name, SESSION_SEPARATOR)
}

fn ptr_error(address: IpAddr, asked: &str, e: &ProtoError) -> String {
    if e.is_no_records_found() || e.is_nx_domain() {
        format!("no PTR record for {address} (asked {asked})")
    } else {
        format!("PTR lookup of {address} (asked {asked}) failed: {e}")
    }
}

/// The servers to ask (UDP, then TCP for a truncated answer) and the options of the lookup.
fn name_servers(
    server: Option<SocketAddr>,
) -> Result<(NameServerConfigGroup, ResolverOpts), String> {
    match server {
        Some(addr) => Ok((
            NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
            ResolverOpts::default(),
        )),
        None => {
            let (config, opts) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?;
            Ok((config.name_servers().to_vec().into(), opts))
        }
    }
}

/// The first usable address the host name resolves to.
async fn own_address() -> Result<IpAddr, String> {
    let host = host_name()?;
    let found: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map_err(|e| format!("cannot resolve the host name {host:?}: {e} (give --ptr-address)"))?
        .map(|a| a.ip())
        .collect();
    first_usable(&found).ok_or_else(|| {
        format!(
            "the host name {host:?} resolves to no address but loopback or link-local \
             ({found:?}); give --ptr-address"
        )
    })
}

fn host_name() -> Result<String, String> {
    HOSTNAME_FILES
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .ok_or_else(|| {
            format!(
                "cannot read the host name from {}; give --ptr-address",
                HOSTNAME_FILES.join(" or ")
            )
        })
}

/// The first address that another host can reach this one at: not loopback, not unspecified,
/// not IPv6 link-local (which needs an interface to mean anything).
fn first_usable(addrs: &[IpAddr]) -> Option<IpAddr> {
    addrs.iter().copied().find(|a| match a {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified() && !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && !v6.is_unicast_link_local(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_address_is_the_first_reachable_one() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: [(&[&str], Option<&str>); 6] = [
            (&["127.0.1.1", "172.18.0.3"], Some("172.18.0.3")),
            (&["172.18.0.3", "10.0.0.7"], Some("172.18.0.3")),
            (&["::1", "fe80::1", "fd00::5"], Some("fd00::5")),
            (
                &["0.0.0.0", "169.254.1.2", "192.168.1.9"],
                Some("192.168.1.9"),
            ),
            (&["127.0.0.1", "::1"], None),
            (&[], None),
        ];
        for (given, want) in cases {
            let addrs: Vec<IpAddr> = given.iter().map(|s| ip(s)).collect();
            assert_eq!(first_usable(&addrs), want.map(ip), "{given:?}");
        }
    }

    #[test]
    fn route_is_the_first_label_of_the_ptr_name() {
        let cases: [(&str, Result<&str, &str>); 5] = [
            (
                "stickyroute-demo-node-2.stickyroute-demo_default.",
                Ok("stickyroute-demo-node-2"),
            ),
            ("tomcat-0.tomcat.shop.svc.cluster.local", Ok("tomcat-0")),
            ("node_1.", Ok("node_1")),
            // A route for the balancer; `demo-node` refuses it (node::validate_route).
            ("jvm~1.example.", Ok("jvm~1")),
            (".example.", Err("not a valid route")),
        ];
        for (name, want) in cases {
            match (first_label_route(name), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{name}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{name}: {e}"),
                (got, want) => panic!("{name}: {got:?}, expected {want:?}"),
            }
        }
    }
}
