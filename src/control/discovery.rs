//! DNS discovery at runtime: one task per pool with `discovery`, which looks its name up
//! (hickory-resolver), judges the outcome (`core::discovery`) and hands the pool's new set to
//! the balancer ([`Balancer::discovered`]); and the sweep that removes leaving nodes once
//! drained. Lookups run here only, never on the request path.
//!
//! A lookup of SRV records resolves each target's addresses too; a lookup of A/AAAA records
//! asks each address's PTR name, which gives the route. Any failure on the way (SERVFAIL, a
//! timeout, a refused connection, a malformed answer) fails the whole lookup, which keeps the
//! last good set: a half answer must not drain nodes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::{NameServerPool, TokioConnectionProvider};
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::proto::xfer::{DnsHandle, DnsRequestOptions, FirstAnswer};
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{ResolveError, Resolver, TokioResolver};
use tokio_util::sync::CancellationToken;

use crate::config::{DiscoveryConfig, DiscoverySource};
use crate::core::discovery::{dedup_routes, next_lookup_in, EmptyWatch, Found, Lookup, Verdict};
use crate::state::cluster::unix_ms;
use crate::state::discovery::LookupResult;
use crate::state::node::now_ms;
use crate::state::Balancer;

use super::Control;

/// How long one lookup (all its queries) may take.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);
/// How often leaving nodes are checked for removal.
const REMOVAL_CHECK: Duration = Duration::from_secs(1);

/// The running discovery tasks, one per pool with `discovery`.
#[derive(Default)]
pub struct DiscoveryTasks {
    tasks: HashMap<String, (DiscoveryConfig, CancellationToken)>,
}

impl DiscoveryTasks {
    /// Starts, keeps or restarts tasks so that they match the balancer's file config.
    pub fn reconcile(&mut self, control: &Arc<Control>, parent: &CancellationToken) {
        let file = control.balancer.file_config();
        let sep = file.session.settings.separator;
        let mut wanted = Vec::new();
        for pool in &file.pools {
            let Some(d) = &pool.discovery else { continue };
            wanted.push(pool.name.clone());
            if self.tasks.get(&pool.name).is_some_and(|(c, _)| c == d) {
                continue;
            }
            if let Some((_, old)) = self.tasks.remove(&pool.name) {
                old.cancel();
            }
            let stop = parent.child_token();
            let task = SourceTask {
                control: Arc::downgrade(control),
                pool: pool.name.clone(),
                cfg: d.clone(),
                sep,
            };
            tokio::spawn(task.run(stop.clone()));
            self.tasks.insert(pool.name.clone(), (d.clone(), stop));
        }
        self.tasks.retain(|pool, (_, stop)| {
            let keep = wanted.contains(pool);
            if !keep {
                stop.cancel();
                control.balancer.discovery.forget_source(pool);
            }
            keep
        });
    }

    pub fn stop(&mut self) {
        for (_, stop) in self.tasks.values() {
            stop.cancel();
        }
        self.tasks.clear();
    }
}

/// The lookup loop of one pool.
struct SourceTask {
    control: Weak<Control>,
    pool: String,
    cfg: DiscoveryConfig,
    sep: char,
}

impl SourceTask {
    async fn run(self, stop: CancellationToken) {
        let resolver = match build_resolver(self.cfg.resolver) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(pool = %self.pool, error = %e, "discovery: no resolver (system configuration unreadable); the pool keeps its file nodes");
                if let Some(c) = self.control.upgrade() {
                    c.balancer.discovery.update(&self.pool, |s| {
                        s.kind = self.cfg.source.kind();
                        s.name = self.cfg.source.name().to_string();
                        s.error = Some(format!("no resolver: {e}"));
                    });
                }
                return;
            }
        };
        let mut watch = EmptyWatch::default();
        let mut last_error: Option<String> = None;
        loop {
            let (lookup, ttl) = tokio::select! {
                _ = stop.cancelled() => return,
                r = tokio::time::timeout(LOOKUP_DEADLINE, lookup(&resolver, &self.cfg, self.sep)) => {
                    r.unwrap_or_else(|_| (Lookup::Failed(format!("no answer within {LOOKUP_DEADLINE:?}")), None))
                }
            };
            let Some(control) = self.control.upgrade() else {
                return;
            };
            let wait = next_lookup_in(ttl, self.cfg.min_interval, self.cfg.max_interval);
            self.record(&control.balancer, &lookup, wait, &mut last_error);
            if let Verdict::Set(found) = watch.judge(&lookup, now_ms(), self.cfg.empty_grace) {
                match control.balancer.discovered(&self.pool, &found) {
                    Ok(()) => control.reconcile_health().await,
                    Err(e) => {
                        tracing::warn!(pool = %self.pool, error = %e, "discovery: set not applied")
                    }
                }
                control
                    .balancer
                    .discovery
                    .update(&self.pool, |s| s.stale = false);
            }
            drop(control);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Counts the lookup, logs a new error once, and updates the pool's status.
    fn record(
        &self,
        balancer: &Balancer,
        lookup: &Lookup,
        wait: Duration,
        last_error: &mut Option<String>,
    ) {
        let (result, error) = match lookup {
            Lookup::Answer(_) => (LookupResult::Ok, None),
            Lookup::Empty => (LookupResult::Empty, None),
            Lookup::Failed(e) => (LookupResult::Error, Some(e.clone())),
        };
        balancer.discovery.count_lookup(&self.pool, result);
        match (&error, last_error.as_ref()) {
            (Some(e), Some(prev)) if e == prev => {}
            (Some(e), _) => {
                tracing::warn!(pool = %self.pool, name = %self.cfg.source.name(), error = %e, "discovery: lookup failed; the last good set stays")
            }
            (None, Some(_)) => {
                tracing::info!(pool = %self.pool, name = %self.cfg.source.name(), "discovery: lookups answer again")
            }
            (None, None) => {}
        }
        *last_error = error.clone();
        let now = unix_ms();
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        balancer.discovery.update(&self.pool, |s| {
            s.kind = self.cfg.source.kind();
            s.name = self.cfg.source.name().to_string();
            s.last_lookup_ms = now;
            s.next_lookup_ms = now.saturating_add(wait_ms);
            match lookup {
                Lookup::Answer(found) => {
                    s.records = found.len();
                    s.answered = true;
                }
                Lookup::Empty => {
                    s.answered = true;
                    s.stale = true;
                }
                Lookup::Failed(_) => s.stale = true,
            }
            s.error = error;
        });
    }
}

/// The resolver of one discovery source: hickory's for names, and a pool of the same name
/// servers for PTR queries, which hickory's resolver answers itself for loopback and other
/// special-use addresses (RFC 6761) without asking the server.
struct Dns {
    resolver: TokioResolver,
    servers: NameServerPool<TokioConnectionProvider>,
}

fn build_resolver(server: Option<SocketAddr>) -> Result<Dns, ResolveError> {
    let (config, mut opts) = match server {
        Some(addr) => (
            ResolverConfig::from_parts(
                None,
                Vec::new(),
                NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
            ),
            ResolverOpts::default(),
        ),
        None => hickory_resolver::system_conf::read_system_conf()?,
    };
    // Every lookup asks the server: the lookup interval follows the records' TTLs itself.
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    let servers = NameServerPool::from_config(
        NameServerConfigGroup::from(config.name_servers().to_vec()),
        opts.clone(),
        TokioConnectionProvider::default(),
    );
    let resolver = Resolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build();
    Ok(Dns { resolver, servers })
}

impl Dns {
    /// The PTR names of `ip`, asked of the servers themselves.
    async fn ptr(&self, ip: IpAddr) -> Result<(Vec<String>, Option<u32>), ResolveError> {
        let query = Query::query(Name::from(ip), RecordType::PTR);
        let answer = self
            .servers
            .lookup(query, DnsRequestOptions::default())
            .first_answer()
            .await?;
        let mut ttl = None;
        let mut names = Vec::new();
        for r in answer.answers() {
            if let Some(p) = r.data().as_ptr() {
                names.push(p.0.to_ascii());
                ttl = min_ttl(ttl, r.ttl());
            }
        }
        Ok((names, ttl))
    }
}

/// One lookup of `cfg`'s name: the nodes it names and the smallest TTL seen.
async fn lookup(resolver: &Dns, cfg: &DiscoveryConfig, sep: char) -> (Lookup, Option<u32>) {
    let result = match &cfg.source {
        DiscoverySource::Srv(name) => lookup_srv(resolver, name, cfg, sep).await,
        DiscoverySource::Host { name, port } => lookup_host(resolver, name, *port, cfg, sep).await,
    };
    match result {
        Ok((found, ttl)) if found.is_empty() => (Lookup::Empty, ttl),
        Ok((found, ttl)) => {
            let (kept, dropped) = dedup_routes(found);
            for f in dropped {
                tracing::debug!(name = %f.name, route = %f.route, "discovery: a second record gives the same route; the first stays");
            }
            (Lookup::Answer(kept), ttl)
        }
        Err(Outcome::Empty) => (Lookup::Empty, None),
        Err(Outcome::Failed(e)) => (Lookup::Failed(e), None),
    }
}

enum Outcome {
    Empty,
    Failed(String),
}

/// NXDOMAIN and NOERROR-without-records are an empty answer; anything else a failure.
fn classify(e: &ResolveError) -> Outcome {
    if let Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) = e.proto().map(|p| p.kind())
    {
        if matches!(
            *response_code,
            ResponseCode::NXDomain | ResponseCode::NoError
        ) {
            return Outcome::Empty;
        }
        let code = match *response_code {
            ResponseCode::ServFail => "SERVFAIL".to_string(),
            ResponseCode::Refused => "REFUSED".to_string(),
            other => other.to_string(),
        };
        return Outcome::Failed(format!("the server answered {code}"));
    }
    Outcome::Failed(e.to_string())
}

fn min_ttl(a: Option<u32>, b: u32) -> Option<u32> {
    Some(a.map_or(b, |a| a.min(b)))
}

async fn lookup_srv(
    dns: &Dns,
    name: &str,
    cfg: &DiscoveryConfig,
    sep: char,
) -> Result<(Vec<Found>, Option<u32>), Outcome> {
    let resolver = &dns.resolver;
    let srv = resolver.srv_lookup(name).await.map_err(|e| classify(&e))?;
    let mut ttl = None;
    for r in srv.as_lookup().records() {
        ttl = min_ttl(ttl, r.ttl());
    }
    let mut records: Vec<_> = srv
        .iter()
        .map(|s| (s.priority(), s.target().clone(), s.port()))
        .collect();
    records.sort_by_key(|(priority, _, _)| *priority);
    let mut found = Vec::new();
    for (_, target, port) in records {
        let target_name = target.to_ascii();
        let route = match cfg.route.route(&target_name, sep) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(record = %target_name, error = %e, "discovery: record skipped");
                continue;
            }
        };
        let ips = match resolver.lookup_ip(target.clone()).await {
            Ok(ips) => ips,
            // A target without addresses (a pod not ready) is no node, not a failure.
            Err(e) => match classify(&e) {
                Outcome::Empty => continue,
                f => return Err(f),
            },
        };
        for r in ips.as_lookup().records() {
            ttl = min_ttl(ttl, r.ttl());
        }
        let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if !addrs.is_empty() {
            found.push(Found {
                route,
                name: target_name,
                addrs,
            });
        }
    }
    Ok((found, ttl))
}

async fn lookup_host(
    dns: &Dns,
    name: &str,
    port: u16,
    cfg: &DiscoveryConfig,
    sep: char,
) -> Result<(Vec<Found>, Option<u32>), Outcome> {
    let ips = dns
        .resolver
        .lookup_ip(name)
        .await
        .map_err(|e| classify(&e))?;
    let mut ttl = None;
    for r in ips.as_lookup().records() {
        ttl = min_ttl(ttl, r.ttl());
    }
    let addrs: Vec<IpAddr> = ips.iter().collect();
    let mut found = Vec::new();
    for ip in addrs {
        let (names, ptr_ttl) = match dns.ptr(ip).await {
            Ok(p) => p,
            Err(e) => match classify(&e) {
                Outcome::Empty => {
                    tracing::debug!(%ip, "discovery: address without a PTR name skipped (its route comes from it)");
                    continue;
                }
                f => return Err(f),
            },
        };
        if let Some(t) = ptr_ttl {
            ttl = min_ttl(ttl, t);
        }
        let Some(ptr_name) = names.into_iter().next() else {
            continue;
        };
        match cfg.route.route(&ptr_name, sep) {
            Ok(route) => found.push(Found {
                route,
                name: ptr_name,
                addrs: vec![SocketAddr::new(ip, port)],
            }),
            Err(e) => tracing::debug!(%ip, error = %e, "discovery: address skipped"),
        }
    }
    Ok((found, ttl))
}

/// Removes leaving nodes once drained (or past their deadline), every second until `stop`.
pub async fn run_removals(control: Weak<Control>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(REMOVAL_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(control) = control.upgrade() else {
            return;
        };
        match control.balancer.remove_drained() {
            Ok(0) => {}
            Ok(_) => control.reconcile_health().await,
            Err(e) => tracing::warn!(error = %e, "removing drained nodes failed"),
        }
    }
}
