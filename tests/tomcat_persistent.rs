//! Real Tomcat 10.1, persistent mode: three nodes with `PersistentManager` + `DataSourceStore` on
//! PostgreSQL (`deploy/tomcat/context-datasourcestore.xml`, the `tomcat_sessions` table of
//! `deploy/tomcat/sessions-postgres.sql`), the balancer in front with `translate` and default
//! cookie settings. Harness and scenarios: `tests/common/tomcat.rs`.
//!
//! Needs Debian's `tomcat10` and `libpostgresql-jdbc-java` and `TEST_POSTGRES_URL`; without them
//! the tests print `SKIPPED` and pass, unless `STICKYROUTE_REQUIRE_SERVICES=1`.

mod common;
#[path = "common/tomcat.rs"]
mod tomcat;

use tomcat::{Cluster, Mode};

#[test]
fn persistent_translate_failover_no_bounce_back() {
    let Some(c) = Cluster::shared(
        Mode::Persistent,
        "persistent_translate_failover_no_bounce_back",
    ) else {
        return;
    };
    tomcat::failover_scenario(c, "translate");
}

#[test]
fn persistent_translate_turnover() {
    let Some(c) = Cluster::shared(Mode::Persistent, "persistent_translate_turnover") else {
        return;
    };
    tomcat::turnover_scenario(c, "translate");
}
