//! The DNS test fixture (`tests/common/dns.rs`) against a real resolver: hickory-resolver, the
//! crate discovery uses, without a cache, asks the fixture's knotd over UDP (and TCP) and sees
//! every change the fixture makes: records, PTR names, SERVFAIL, a stop and a restart.
//!
//! Without knotd every test prints a `SKIPPED` line and passes, unless
//! `STICKYROUTE_REQUIRE_SERVICES=1`.

#[path = "common/dns.rs"]
mod dns;
#[path = "common/wrapped.rs"]
mod wrapped;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use dns::{DnsServer, Record};
use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::{NameServerPool, TokioConnectionProvider};
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::proto::xfer::{DnsHandle, DnsRequestOptions, FirstAnswer, Protocol};
use hickory_resolver::proto::{ProtoError, ProtoErrorKind};
use hickory_resolver::{ResolveError, TokioResolver};

const ORIGIN: &str = "pool.test.";
const SRV: &str = "_http._tcp.tomcat.pool.test.";

/// A resolver that asks only `server` over `protocols`, caches nothing and gives up on a query
/// after 500 ms.
fn resolver(server: SocketAddr, protocols: &[Protocol]) -> TokioResolver {
    let mut group = NameServerConfigGroup::new();
    for p in protocols {
        let mut ns = NameServerConfig::new(server, *p);
        ns.trust_negative_responses = true;
        group.push(ns);
    }
    let config = ResolverConfig::from_parts(None, vec![], group);
    TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(udp_opts())
        .build()
}

/// No cache, no hosts file, one attempt of 500 ms per query.
fn udp_opts() -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.positive_max_ttl = Some(Duration::ZERO);
    opts.negative_max_ttl = Some(Duration::ZERO);
    opts.timeout = Duration::from_millis(500);
    opts.attempts = 1;
    opts.use_hosts_file = ResolveHosts::Never;
    opts
}

fn udp(dns: &DnsServer) -> TokioResolver {
    resolver(dns.addr(), &[Protocol::Udp])
}

/// The SRV answer as sorted `(priority, weight, port, target)`, or the error.
async fn srv(r: &TokioResolver) -> Result<Vec<(u16, u16, u16, String)>, ResolveError> {
    let lookup = r.srv_lookup(SRV).await?;
    let mut v: Vec<_> = lookup
        .iter()
        .map(|s| (s.priority(), s.weight(), s.port(), s.target().to_ascii()))
        .collect();
    v.sort();
    Ok(v)
}

async fn ipv4(r: &TokioResolver, name: &str) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = r
        .ipv4_lookup(name)
        .await
        .unwrap_or_else(|e| panic!("A {name}: {e}"))
        .iter()
        .map(|a| a.0)
        .collect();
    v.sort();
    v
}

fn srv_entry(port: u16, target: &str) -> (u16, u16, u16, String) {
    (0, 10, port, target.to_string())
}

/// The response code of a lookup error that carries one.
fn response_code(e: &ResolveError) -> Option<ResponseCode> {
    match e.proto()?.kind() {
        ProtoErrorKind::NoRecordsFound { response_code, .. } => Some(*response_code),
        _ => None,
    }
}

#[tokio::test]
async fn srv_a_and_aaaa_records_appear_and_change() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    assert_eq!(dns.origin(), ORIGIN);
    assert!(dns.addr().ip().is_loopback() && dns.addr().port() != 0);
    let r = udp(&dns);

    // Empty but for SOA/NS: the name does not exist.
    let e = srv(&r).await.expect_err("no SRV records yet");
    assert_eq!(response_code(&e), Some(ResponseCode::NXDomain), "{e}");

    dns.set_records(&[
        Record::srv("_http._tcp.tomcat", 1, 0, 10, 8080, "tomcat-0.pool.test."),
        Record::srv("_http._tcp.tomcat", 1, 0, 10, 8081, "tomcat-1"),
        Record::a("tomcat-0", 1, Ipv4Addr::new(127, 0, 0, 10)),
        Record::a("tomcat-1.pool.test.", 1, Ipv4Addr::new(127, 0, 0, 11)),
        Record::aaaa("tomcat-1", 1, Ipv6Addr::LOCALHOST),
    ])
    .await;
    assert_eq!(
        srv(&r).await.unwrap(),
        vec![
            srv_entry(8080, "tomcat-0.pool.test."),
            srv_entry(8081, "tomcat-1.pool.test.")
        ]
    );
    assert_eq!(
        ipv4(&r, "tomcat-0.pool.test.").await,
        [Ipv4Addr::new(127, 0, 0, 10)]
    );
    assert_eq!(
        ipv4(&r, "tomcat-1.pool.test.").await,
        [Ipv4Addr::new(127, 0, 0, 11)]
    );
    let v6: Vec<Ipv6Addr> = r
        .ipv6_lookup("tomcat-1.pool.test.")
        .await
        .unwrap()
        .iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(v6, [Ipv6Addr::LOCALHOST]);

    // A node leaves, another joins, an address moves: the next lookup sees the new zone.
    dns.set_records(&[
        Record::srv("_http._tcp.tomcat", 1, 0, 10, 8081, "tomcat-1"),
        Record::srv("_http._tcp.tomcat", 1, 0, 10, 8082, "tomcat-2"),
        Record::a("tomcat-1", 1, Ipv4Addr::new(127, 0, 0, 21)),
        Record::a("tomcat-2", 1, Ipv4Addr::new(127, 0, 0, 12)),
    ])
    .await;
    assert_eq!(
        srv(&r).await.unwrap(),
        vec![
            srv_entry(8081, "tomcat-1.pool.test."),
            srv_entry(8082, "tomcat-2.pool.test.")
        ]
    );
    assert_eq!(
        ipv4(&r, "tomcat-1.pool.test.").await,
        [Ipv4Addr::new(127, 0, 0, 21)]
    );
    let e = r
        .ipv4_lookup("tomcat-0.pool.test.")
        .await
        .expect_err("tomcat-0 left the zone");
    assert_eq!(response_code(&e), Some(ResponseCode::NXDomain), "{e}");

    // Emptied: NOERROR without records for the name that only had SRV records is gone too.
    dns.set_records(&[]).await;
    let e = srv(&r).await.expect_err("the SRV records were removed");
    assert!(e.is_no_records_found(), "{e}");
}

#[tokio::test]
async fn answers_over_tcp_too() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    dns.set_records(&[Record::srv(
        "_http._tcp.tomcat",
        30,
        1,
        5,
        9000,
        "tomcat-9.pool.test.",
    )])
    .await;
    let r = resolver(dns.addr(), &[Protocol::Tcp]);
    assert_eq!(
        srv(&r).await.unwrap(),
        vec![(1, 5, 9000, "tomcat-9.pool.test.".to_string())]
    );
    let lookup = r.srv_lookup(SRV).await.unwrap();
    let ttl = lookup.as_lookup().records()[0].ttl();
    assert_eq!(ttl, 30, "the record's own TTL reaches the resolver");
}

/// PTR names of `ip` asked through hickory's name-server layer: its `Resolver` answers every
/// 127.0.0.0/8 PTR query itself with `localhost.` (RFC 6761) and never asks the server.
async fn ptr(server: SocketAddr, ip: Ipv4Addr) -> Result<Vec<String>, ProtoError> {
    let opts = udp_opts();
    let group = NameServerConfigGroup::from(vec![NameServerConfig::new(server, Protocol::Udp)]);
    let pool = NameServerPool::from_config(group, opts, TokioConnectionProvider::default());
    let query = Query::query(Name::from(ip), RecordType::PTR);
    let answer = pool
        .lookup(query, DnsRequestOptions::default())
        .first_answer()
        .await?;
    Ok(answer
        .answers()
        .iter()
        .filter_map(|r| r.data().as_ptr().map(|p| p.0.to_ascii()))
        .collect())
}

#[tokio::test]
async fn ptr_names_of_loopback_addresses() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let ip = Ipv4Addr::new(127, 0, 0, 7);
    let other = Ipv4Addr::new(127, 1, 2, 3);
    dns.set_records(&[
        Record::ptr(ip, 1, "tomcat-7.pool.test."),
        Record::ptr(other, 1, "other.pool.test."),
        Record::a("tomcat-7", 1, ip),
    ])
    .await;
    assert_eq!(ptr(dns.addr(), ip).await.unwrap(), ["tomcat-7.pool.test."]);
    assert_eq!(ptr(dns.addr(), other).await.unwrap(), ["other.pool.test."]);

    // The PTR record moves with the next set.
    dns.set_records(&[Record::ptr(ip, 1, "tomcat-8.pool.test.")])
        .await;
    assert_eq!(ptr(dns.addr(), ip).await.unwrap(), ["tomcat-8.pool.test."]);
    let e = ptr(dns.addr(), other).await.expect_err("removed PTR");
    assert!(e.is_nx_domain(), "{e}");

    // What hickory's Resolver does with a loopback PTR query, whatever the server says.
    let names: Vec<String> = udp(&dns)
        .reverse_lookup(IpAddr::V4(ip))
        .await
        .unwrap()
        .iter()
        .map(|n| n.to_ascii())
        .collect();
    assert_eq!(names, ["localhost."]);
}

#[tokio::test]
async fn servfail_on_and_off() {
    let Some(dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let r = udp(&dns);
    let ip = Ipv4Addr::new(127, 0, 0, 5);
    dns.set_records(&[
        Record::srv("_http._tcp.tomcat", 1, 0, 10, 8080, "tomcat-0"),
        Record::ptr(ip, 1, "tomcat-0.pool.test."),
    ])
    .await;
    assert_eq!(
        srv(&r).await.unwrap(),
        [srv_entry(8080, "tomcat-0.pool.test.")]
    );

    dns.set_servfail(true).await;
    let e = srv(&r).await.expect_err("SERVFAIL");
    assert_eq!(response_code(&e), Some(ResponseCode::ServFail), "{e}");
    // The reverse zone still answers.
    assert_eq!(
        r.reverse_lookup(IpAddr::V4(ip))
            .await
            .unwrap()
            .iter()
            .count(),
        1
    );

    // Records set meanwhile are served once SERVFAIL is off.
    dns.set_records(&[Record::srv("_http._tcp.tomcat", 1, 0, 10, 8081, "tomcat-1")])
        .await;
    let e = srv(&r).await.expect_err("still SERVFAIL");
    assert_eq!(response_code(&e), Some(ResponseCode::ServFail), "{e}");

    dns.set_servfail(false).await;
    assert_eq!(
        srv(&r).await.unwrap(),
        [srv_entry(8081, "tomcat-1.pool.test.")]
    );
}

#[tokio::test]
async fn stop_then_start_again_on_the_same_port() {
    let Some(mut dns) = DnsServer::start(ORIGIN).await else {
        return;
    };
    let addr = dns.addr();
    let r = udp(&dns);
    dns.set_records(&[Record::srv("_http._tcp.tomcat", 1, 0, 10, 8080, "tomcat-0")])
        .await;
    assert_eq!(
        srv(&r).await.unwrap(),
        [srv_entry(8080, "tomcat-0.pool.test.")]
    );

    dns.stop().await;
    let e = srv(&r).await.expect_err("the server is stopped");
    assert_eq!(
        response_code(&e),
        None,
        "no DNS answer, only a failure: {e}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "TCP refused while stopped"
    );

    // Records set while stopped are served after the restart.
    dns.set_records(&[Record::srv("_http._tcp.tomcat", 1, 0, 10, 8082, "tomcat-2")])
        .await;
    dns.start_again().await;
    assert_eq!(dns.addr(), addr);
    assert_eq!(
        srv(&r).await.unwrap(),
        [srv_entry(8082, "tomcat-2.pool.test.")]
    );

    // SERVFAIL survives a restart too.
    dns.set_servfail(true).await;
    dns.stop().await;
    dns.start_again().await;
    let e = srv(&r).await.expect_err("SERVFAIL after the restart");
    assert_eq!(response_code(&e), Some(ResponseCode::ServFail), "{e}");
    dns.set_servfail(false).await;
    assert_eq!(
        srv(&r).await.unwrap(),
        [srv_entry(8082, "tomcat-2.pool.test.")]
    );
}
