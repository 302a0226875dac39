//! The status report ([`StatusReport`]) built from the current snapshot: what
//! `GET /api/v1/status` answers and the status page shows.

use crate::control::api::{
    ClusterReport, DiscoveryReport, InstanceNodeReport, InstanceReport, NodeReport, PoolReport,
    RegistryReport, StatusReport,
};
use crate::state::node::now_ms;
use crate::state::Balancer;

/// Builds the status report from the current snapshot.
pub fn status(balancer: &Balancer) -> StatusReport {
    let snap = balancer.snapshot();
    let runtime = balancer.sources().nodes.clone();
    let now = now_ms();
    let reg = balancer.registry.stats();
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        config: snap.config.source.clone(),
        registry: RegistryReport {
            sessions: reg.sessions,
            max_sessions: reg.max_sessions,
            rejected: reg.rejected,
        },
        pools: snap
            .pools
            .iter()
            .map(|p| PoolReport {
                name: p.cfg.name.clone(),
                binder: p.cfg.binder.as_str().to_string(),
                health_checks: p.cfg.health.is_some(),
                discovery: p.cfg.discovery.as_ref().map(|_| {
                    let s = balancer.discovery.source(&p.cfg.name).unwrap_or_default();
                    DiscoveryReport {
                        kind: s.kind.to_string(),
                        name: s.name,
                        last_lookup_ms: s.last_lookup_ms,
                        next_lookup_ms: s.next_lookup_ms,
                        records: s.records,
                        error: s.error,
                        stale: s.stale,
                    }
                }),
                nodes: p
                    .nodes
                    .iter()
                    .map(|n| {
                        let rt = &n.rt;
                        let view = balancer.operator.view(&balancer.registry, &p.cfg.name, n);
                        let ld = |a: &std::sync::atomic::AtomicU64| {
                            a.load(std::sync::atomic::Ordering::Relaxed)
                        };
                        NodeReport {
                            route: n.route.clone(),
                            address: n.address.clone(),
                            domain: n.domain.clone(),
                            weight: n.weight,
                            state: n.state().as_str().to_string(),
                            config_state: n.config_state.as_str().to_string(),
                            health: if n.is_up(now) { "up" } else { "down" }.to_string(),
                            in_flight: view.in_flight,
                            requests: ld(&rt.stats.requests),
                            failovers_in: ld(&rt.stats.failovers_in),
                            failovers_out: ld(&rt.stats.failovers_out),
                            connect_errors: ld(&rt.stats.connect_errors),
                            upstream_errors: ld(&rt.stats.upstream_errors),
                            live_sessions: view.live_sessions,
                            drained: view.drained,
                            last_error: rt.health.last_error(),
                            source: n.source.as_str().to_string(),
                            leaving: runtime
                                .get(&p.cfg.name, &n.route)
                                .is_some_and(|r| r.leaving.is_some()),
                        }
                    })
                    .collect(),
            })
            .collect(),
        cluster: balancer
            .operator
            .cluster()
            .map(|c| cluster_report(balancer, &snap, c)),
    }
}

/// The group as this instance knows it: itself first (its counts now), then the others.
fn cluster_report(
    balancer: &Balancer,
    snap: &crate::state::snapshot::Snapshot,
    c: &crate::state::cluster::ClusterState,
) -> ClusterReport {
    let now = crate::state::cluster::unix_ms();
    let own = InstanceReport {
        id: c.instance.clone(),
        alive: true,
        local: true,
        admin: None,
        last_seen_ms: 0,
        nodes: snap
            .pools
            .iter()
            .flat_map(|p| {
                p.nodes.iter().map(|n| InstanceNodeReport {
                    pool: p.cfg.name.clone(),
                    route: n.route.clone(),
                    live_sessions: balancer.registry.live_sessions(n.slot),
                    in_flight: n.inflight(),
                })
            })
            .collect(),
    };
    let others = c.members().into_iter().map(|m| InstanceReport {
        id: m.id,
        alive: m.alive,
        local: false,
        admin: m.admin,
        last_seen_ms: now.saturating_sub(m.seen_ms),
        nodes: m
            .nodes
            .into_iter()
            .map(|n| InstanceNodeReport {
                pool: n.pool,
                route: n.route,
                live_sessions: n.live_sessions,
                in_flight: n.in_flight,
            })
            .collect(),
    });
    ClusterReport {
        name: c.name.clone(),
        connected: c.connected(),
        instance: c.instance.clone(),
        error: if c.connected() { None } else { c.last_error() },
        errors: c.errors.load(std::sync::atomic::Ordering::Relaxed),
        instances: std::iter::once(own).chain(others).collect(),
    }
}
