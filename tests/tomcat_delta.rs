//! Real Tomcat 10.1, delta mode: three nodes in a `DeltaManager` cluster with static membership
//! and `JvmRouteBinderValve` (`deploy/tomcat/cluster-delta.xml` inside
//! `deploy/tomcat/server.xml`), the balancer in front with `translate` and with `backend`,
//! default cookie settings. Harness and scenarios: `tests/common/tomcat.rs`.
//!
//! Needs Debian's `tomcat10`; without it the tests print `SKIPPED` and pass, unless
//! `STICKYROUTE_REQUIRE_SERVICES=1`.

mod common;
#[path = "common/tomcat.rs"]
mod tomcat;

use tomcat::{Cluster, Mode};

#[test]
fn delta_translate_failover_no_bounce_back() {
    let Some(c) = Cluster::shared(Mode::Delta, "delta_translate_failover_no_bounce_back") else {
        return;
    };
    tomcat::failover_scenario(c, "translate");
}

#[test]
fn delta_backend_failover_no_bounce_back() {
    let Some(c) = Cluster::shared(Mode::Delta, "delta_backend_failover_no_bounce_back") else {
        return;
    };
    tomcat::failover_scenario(c, "backend");
}

#[test]
fn delta_translate_turnover() {
    let Some(c) = Cluster::shared(Mode::Delta, "delta_translate_turnover") else {
        return;
    };
    tomcat::turnover_scenario(c, "translate");
}

#[test]
fn delta_backend_turnover() {
    let Some(c) = Cluster::shared(Mode::Delta, "delta_backend_turnover") else {
        return;
    };
    tomcat::turnover_scenario(c, "backend");
}
