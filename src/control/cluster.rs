//! The cluster task: one background task per balancer with a `cluster:` section, which owns
//! both Redis connections of the group (a multiplexed one for commands, one subscribed to the
//! change channel) and keeps [`ClusterState`] in step with Redis (README "Running several
//! balancers").
//!
//! # Keys (prefix `stickyroute:{name}:`, so groups on one Redis never meet)
//!
//! | key                      | type    | what                                                 |
//! |--------------------------|---------|------------------------------------------------------|
//! | `states:{pool}`          | hash    | route → [`SharedState`] JSON: state, who set it, when |
//! | `nodes:{pool}`           | hash    | route → runtime node JSON (`POST /api/v1/nodes`), see `group_nodes` |
//! | `changes`                | channel | a [`SharedState`] JSON per change                     |
//! | `instance:{id}`          | string  | [`InstanceRecord`] JSON: counts per node, TTL 3 heartbeats |
//! | `instances`              | zset    | instance ids by last heartbeat (ms since the epoch); expires 60 heartbeats after the last |
//!
//! # What the task does
//!
//! - A change from the admin API ([`SetRequest`]) is written to the pool's hash and announced
//!   on the channel in one `MULTI`, applied here, then answered.
//! - An announcement makes the task re-read that field and apply it: what is applied is always
//!   what Redis holds, so two changes said at once to two instances end the same everywhere.
//! - Every heartbeat it publishes this instance's record, reads the others', and re-reads every
//!   pool's hash (a lost announcement costs at most one heartbeat).
//! - On every (re)connect it reads the hashes before saying "connected"; states it knows that
//!   Redis lost (a restarted Redis without persistence) are written back with `HSETNX`.
//! - Any failed operation drops both connections, marks the group disconnected (changes are
//!   refused from then on, the nodes keep their last states) and reconnects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, Client, RedisError};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::ClusterConfig;
use crate::control::{group_nodes, Control};
use crate::core::node_state::NodeState;
use crate::state::cluster::{
    unix_ms, ClusterState, GroupChange, InstanceRecord, Member, NodeCounts, SetRequest, SharedState,
};
use crate::state::Balancer;

/// Members unheard of for this many heartbeats leave the `instances` set (and the status).
const FORGET_AFTER_HEARTBEATS: u32 = 60;

/// The Redis names of one group.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(group: &str) -> Keys {
        Keys {
            prefix: format!("stickyroute:{group}:"),
        }
    }
    pub fn states(&self, pool: &str) -> String {
        format!("{}states:{pool}", self.prefix)
    }
    pub fn nodes(&self, pool: &str) -> String {
        format!("{}nodes:{pool}", self.prefix)
    }
    pub fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }
    pub fn instance(&self, id: &str) -> String {
        format!("{}instance:{id}", self.prefix)
    }
    pub fn instances(&self) -> String {
        format!("{}instances", self.prefix)
    }
}

/// Everything the task needs.
pub struct ClusterTask {
    balancer: Arc<Balancer>,
    state: Arc<ClusterState>,
    client: Client,
    keys: Keys,
    heartbeat: Duration,
    timeout: Duration,
    boot: u64,
    /// For the admin address in this instance's record (it may move on reload).
    control: Weak<Control>,
    /// Another process with our id was seen (logged once per occurrence).
    twin_seen: bool,
}

/// An error of one Redis operation, for logs and the status.
fn describe(e: &RedisError) -> String {
    crate::store::error_chain(e)
}

impl ClusterTask {
    /// Checks the URL (no connection yet). `cfg` must have a Redis URL.
    pub fn new(
        balancer: Arc<Balancer>,
        state: Arc<ClusterState>,
        cfg: &ClusterConfig,
        control: Weak<Control>,
    ) -> Result<ClusterTask, crate::config::ConfigError> {
        let url = cfg.redis_url()?;
        let client = Client::open(url).map_err(|e| crate::config::ConfigError {
            file: cfg.file.clone(),
            line: cfg.line,
            key: "cluster.redis".into(),
            message: format!("invalid Redis URL: {}", describe(&e)),
        })?;
        Ok(ClusterTask {
            balancer,
            state,
            client,
            keys: Keys::new(&cfg.name),
            heartbeat: cfg.heartbeat,
            timeout: cfg.timeout,
            boot: rand::random(),
            control,
            twin_seen: false,
        })
    }

    fn ttl(&self) -> Duration {
        self.heartbeat * 3
    }

    /// Runs until `shutdown`: connects, syncs, serves changes, heartbeats, reconnects.
    /// `ready` is answered after the first attempt to connect and read the group's states, so
    /// that the proxy starts serving with the group's states when Redis is there.
    pub async fn run(mut self, ready: oneshot::Sender<()>, shutdown: CancellationToken) {
        let Some(mut inbox) = self.state.take_inbox() else {
            tracing::error!("cluster task started twice");
            return;
        };
        let mut ready = Some(ready);
        let retry = self
            .heartbeat
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            match self.session(&mut inbox, &mut ready, &shutdown).await {
                Ok(()) => break, // shutdown
                Err(e) => self.lost(e, &mut ready),
            }
            if wait_refusing(&mut inbox, retry, &shutdown, &self.state).await {
                break;
            }
        }
        self.leave().await;
    }

    /// One connection's life: connect, read the group, serve until shutdown (`Ok`) or a
    /// failure (`Err`).
    async fn session(
        &mut self,
        inbox: &mut tokio::sync::mpsc::Receiver<SetRequest>,
        ready: &mut Option<oneshot::Sender<()>>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let (mut conn, mut changes) = self.connect().await?;
        self.resync(&mut conn, true).await?;
        self.sync_nodes(&mut conn).await?;
        self.heartbeat(&mut conn).await?;
        self.state.set_connected();
        tracing::info!(group = %self.state.name, instance = %self.state.instance, "cluster connected");
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        self.serve(&mut conn, &mut changes, inbox, shutdown).await
    }

    /// Records a failure; logs when it loses a working connection (then every retry at debug).
    fn lost(&self, reason: String, ready: &mut Option<oneshot::Sender<()>>) {
        if self.state.set_disconnected(reason.clone()) {
            tracing::warn!(group = %self.state.name, error = %reason, "cluster disconnected: serving with the last known states, refusing changes until Redis is back");
        } else {
            tracing::debug!(group = %self.state.name, error = %reason, "cluster: Redis still unreachable");
        }
        if let Some(r) = ready.take() {
            tracing::warn!(group = %self.state.name, error = %reason, "cluster: Redis unreachable at start; serving with the file's states until it is back");
            let _ = r.send(());
        }
    }

    async fn connect(&self) -> Result<(MultiplexedConnection, PubSubStream), String> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .map_err(|e| format!("connect: {}", describe(&e)))?;
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(self.keys.channel()).await?;
            Ok::<_, RedisError>(pubsub.into_on_message())
        };
        let changes = tokio::time::timeout(self.timeout, subscribe)
            .await
            .map_err(|_| format!("subscribe: no answer within {:?}", self.timeout))?
            .map_err(|e| format!("subscribe: {}", describe(&e)))?;
        Ok((conn, changes))
    }

    /// Serves until shutdown (`Ok`) or a Redis failure (`Err`).
    async fn serve(
        &mut self,
        conn: &mut MultiplexedConnection,
        changes: &mut PubSubStream,
        inbox: &mut tokio::sync::mpsc::Receiver<SetRequest>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.reset();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                Some(req) = inbox.recv() => {
                    let result = self.change(conn, req.change).await;
                    let _ = req.reply.send(result.clone());
                    result?;
                }
                msg = changes.next() => {
                    let Some(msg) = msg else {
                        return Err("the change subscription was closed".into());
                    };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    match serde_json::from_str::<SharedState>(&payload) {
                        Ok(s) => self.reread(conn, &s.pool, &s.route).await?,
                        Err(e) => tracing::warn!(error = %e, "cluster: ignoring a malformed change announcement"),
                    }
                }
                _ = tick.tick() => {
                    self.heartbeat(conn).await?;
                    self.resync(conn, false).await?;
                    self.sync_nodes(conn).await?;
                }
            }
        }
    }

    /// Makes one change in the group (see [`SetRequest`]).
    async fn change(
        &self,
        conn: &mut MultiplexedConnection,
        change: GroupChange,
    ) -> Result<bool, String> {
        match change {
            GroupChange::State { targets, state } => {
                self.set(conn, &targets, state).await.map(|()| true)
            }
            GroupChange::AddNode { pool, node } => {
                group_nodes::add(conn, &self.keys.nodes(&pool), &node).await
            }
            GroupChange::RemoveNode { pool, route } => {
                group_nodes::remove(conn, &self.keys.nodes(&pool), &route)
                    .await
                    .map(|_| true)
            }
        }
    }

    /// Reads every pool's runtime nodes and makes this instance's match them.
    async fn sync_nodes(&self, conn: &mut MultiplexedConnection) -> Result<(), String> {
        let snap = self.balancer.snapshot();
        let mut changed = false;
        for pool in &snap.pools {
            let key = self.keys.nodes(&pool.cfg.name);
            changed |= group_nodes::sync(conn, &key, &self.balancer, &pool.cfg.name).await?;
        }
        if changed {
            if let Some(c) = self.control.upgrade() {
                c.reconcile_health().await;
            }
        }
        Ok(())
    }

    /// Stores, announces and applies one change per target.
    async fn set(
        &self,
        conn: &mut MultiplexedConnection,
        targets: &[(String, String)],
        state: NodeState,
    ) -> Result<(), String> {
        let snap = self.balancer.snapshot();
        for (i, (pool, route)) in targets.iter().enumerate() {
            let shared = SharedState {
                pool: pool.clone(),
                route: route.clone(),
                state: state.as_str().to_string(),
                by: self.state.instance.clone(),
                at_ms: unix_ms(),
            };
            let json = serde_json::to_string(&shared).unwrap_or_default();
            let r: Result<(), RedisError> = redis::pipe()
                .atomic()
                .hset(self.keys.states(pool), route, &json)
                .ignore()
                .publish(self.keys.channel(), &json)
                .ignore()
                .query_async(conn)
                .await;
            if let Err(e) = r {
                let done = if i == 0 {
                    String::new()
                } else {
                    format!(" (pools {:?} were changed)", &targets[..i])
                };
                return Err(format!("writing pool {pool:?}: {}{done}", describe(&e)));
            }
            self.state.apply(&snap, shared);
        }
        Ok(())
    }

    /// Reads one node's state from Redis and applies it.
    async fn reread(
        &self,
        conn: &mut MultiplexedConnection,
        pool: &str,
        route: &str,
    ) -> Result<(), String> {
        let v: Option<String> = redis::cmd("HGET")
            .arg(self.keys.states(pool))
            .arg(route)
            .query_async(conn)
            .await
            .map_err(|e| format!("reading pool {pool:?}: {}", describe(&e)))?;
        if let Some(shared) = v.and_then(|v| parse_shared(&v, pool, route)) {
            self.state.apply(&self.balancer.snapshot(), shared);
        }
        Ok(())
    }

    /// Reads every pool's hash and applies it; with `reseed`, writes back the states this
    /// instance knows that Redis no longer holds.
    async fn resync(&self, conn: &mut MultiplexedConnection, reseed: bool) -> Result<(), String> {
        let snap = self.balancer.snapshot();
        let known = if reseed {
            self.state.known_states()
        } else {
            Vec::new()
        };
        for pool in &snap.pools {
            let name = pool.cfg.name.as_str();
            let key = self.keys.states(name);
            let fields: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(conn)
                .await
                .map_err(|e| format!("reading pool {name:?}: {}", describe(&e)))?;
            for k in known
                .iter()
                .filter(|k| k.pool == name && !fields.contains_key(&k.route))
            {
                let json = serde_json::to_string(k).unwrap_or_default();
                let written: bool = redis::cmd("HSETNX")
                    .arg(&key)
                    .arg(&k.route)
                    .arg(&json)
                    .query_async(conn)
                    .await
                    .map_err(|e| format!("re-seeding pool {name:?}: {}", describe(&e)))?;
                if written {
                    tracing::info!(pool = %name, node = %k.route, state = %k.state, "cluster: Redis had lost the node's state; written back");
                }
                self.reread(conn, name, &k.route).await?;
            }
            for (route, v) in &fields {
                if let Some(shared) = parse_shared(v, name, route) {
                    self.state.apply(&snap, shared);
                }
            }
        }
        Ok(())
    }

    /// Publishes this instance's record and reads the others'.
    async fn heartbeat(&mut self, conn: &mut MultiplexedConnection) -> Result<(), String> {
        let record = self.own_record(unix_ms());
        let (previous, members) = self.publish(conn, &record).await?;
        self.check_twin(previous);
        let members = self.read_members(conn, members).await?;
        self.state.set_members(members);
        Ok(())
    }

    /// This instance's record at `now`: its counts for every node of the snapshot.
    fn own_record(&self, now: u64) -> InstanceRecord {
        let snap = self.balancer.snapshot();
        let registry = &self.balancer.registry;
        let nodes = snap
            .pools
            .iter()
            .flat_map(|p| {
                p.nodes.iter().map(|n| NodeCounts {
                    pool: p.cfg.name.clone(),
                    route: n.route.clone(),
                    live_sessions: registry.live_sessions(n.slot),
                    in_flight: n.inflight(),
                })
            })
            .collect();
        let admin: Option<SocketAddr> = self.control.upgrade().and_then(|c| c.admin_addr());
        InstanceRecord {
            id: self.state.instance.clone(),
            boot: self.boot,
            admin: admin.map(|a| a.to_string()),
            at_ms: now,
            nodes,
        }
    }

    /// Writes `record` (with its TTL) and this instance's place in the member set, forgets
    /// members unheard of for [`FORGET_AFTER_HEARTBEATS`], all in one pipeline; returns the
    /// record it replaced and the member set (id, last heartbeat in ms since the epoch).
    async fn publish(
        &self,
        conn: &mut MultiplexedConnection,
        record: &InstanceRecord,
    ) -> Result<(Option<String>, Vec<(String, f64)>), String> {
        let json = serde_json::to_string(record).unwrap_or_default();
        let ttl_ms = u64::try_from(self.ttl().as_millis()).unwrap_or(u64::MAX);
        let forget_ms = ttl_ms / 3 * u64::from(FORGET_AFTER_HEARTBEATS);
        let forget_before = record.at_ms.saturating_sub(forget_ms);
        let own = self.keys.instance(&self.state.instance);
        redis::pipe()
            .get(&own)
            .cmd("SET")
            .arg(&own)
            .arg(&json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .zadd(self.keys.instances(), &self.state.instance, record.at_ms)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(self.keys.instances())
            .arg("-inf")
            .arg(forget_before)
            .ignore()
            // A group whose instances are all gone leaves no member list behind.
            .cmd("PEXPIRE")
            .arg(self.keys.instances())
            .arg(forget_ms)
            .ignore()
            .cmd("ZRANGE")
            .arg(self.keys.instances())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(conn)
            .await
            .map_err(|e| format!("heartbeat: {}", describe(&e)))
    }

    /// Logs, once per occurrence, that the record this instance replaced came from another
    /// process (another boot) using the same instance id.
    fn check_twin(&mut self, previous: Option<String>) {
        let twin = previous
            .and_then(|p| serde_json::from_str::<InstanceRecord>(&p).ok())
            .is_some_and(|p| p.boot != self.boot);
        if twin && !self.twin_seen {
            tracing::error!(instance = %self.state.instance, "cluster: another process uses this instance id; give each instance its own cluster.instance");
        }
        self.twin_seen = twin;
    }

    /// Reads the records of the other members of the set: alive with their counts while their
    /// record has not expired, gone (last heartbeat only) after.
    async fn read_members(
        &self,
        conn: &mut MultiplexedConnection,
        members: Vec<(String, f64)>,
    ) -> Result<Vec<Member>, String> {
        let others: Vec<(String, u64)> = members
            .into_iter()
            .filter(|(id, _)| *id != self.state.instance)
            .map(|(id, score)| (id, score as u64))
            .collect();
        let records: Vec<Option<String>> = if others.is_empty() {
            Vec::new()
        } else {
            let mut mget = redis::cmd("MGET");
            for (id, _) in &others {
                mget.arg(self.keys.instance(id));
            }
            mget.query_async(conn)
                .await
                .map_err(|e| format!("reading instances: {}", describe(&e)))?
        };
        Ok(others
            .into_iter()
            .zip(records.into_iter().chain(std::iter::repeat(None)))
            .map(|((id, seen_ms), rec)| {
                match rec.and_then(|r| serde_json::from_str::<InstanceRecord>(&r).ok()) {
                    Some(r) => Member {
                        id,
                        alive: true,
                        admin: r.admin,
                        seen_ms: r.at_ms,
                        nodes: r.nodes,
                    },
                    None => Member {
                        id,
                        alive: false,
                        admin: None,
                        seen_ms,
                        nodes: Vec::new(),
                    },
                }
            })
            .collect())
    }

    /// On shutdown: removes this instance's record, so the others stop counting it at once
    /// (when Redis is unreachable the record expires by itself; shutdown does not wait).
    async fn leave(&self) {
        if !self.state.connected() {
            return;
        }
        let own = self.keys.instance(&self.state.instance);
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        let del = async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await?;
            redis::cmd("DEL")
                .arg(&own)
                .query_async::<()>(&mut conn)
                .await
        };
        match tokio::time::timeout(self.timeout * 2, del).await {
            Ok(Ok(())) => tracing::debug!("cluster: left the group"),
            Ok(Err(e)) => {
                tracing::debug!(error = %describe(&e), "cluster: could not remove this instance's record; it expires by itself")
            }
            Err(_) => tracing::debug!(
                "cluster: removing this instance's record timed out; it expires by itself"
            ),
        }
    }
}

/// A hash field's value, checked against where it was found.
fn parse_shared(v: &str, pool: &str, route: &str) -> Option<SharedState> {
    match serde_json::from_str::<SharedState>(v) {
        Ok(s) if s.pool == pool && s.route == route => Some(s),
        Ok(_) | Err(_) => {
            tracing::warn!(%pool, node = %route, "cluster: ignoring a malformed state in Redis");
            None
        }
    }
}

/// Waits `retry` (or until shutdown, returning true), refusing the changes asked meanwhile.
async fn wait_refusing(
    inbox: &mut tokio::sync::mpsc::Receiver<SetRequest>,
    retry: Duration,
    shutdown: &CancellationToken,
    state: &ClusterState,
) -> bool {
    let until = tokio::time::sleep(retry);
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return true,
            _ = &mut until => return false,
            Some(req) = inbox.recv() => {
                let reason = state.last_error().unwrap_or_else(|| "no connection".into());
                let _ = req.reply.send(Err(format!("disconnected from Redis: {reason}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_by_the_group() {
        let k = Keys::new("prod");
        assert_eq!(k.states("app"), "stickyroute:prod:states:app");
        assert_eq!(k.channel(), "stickyroute:prod:changes");
        assert_eq!(k.instance("i0"), "stickyroute:prod:instance:i0");
        assert_eq!(k.instances(), "stickyroute:prod:instances");
        assert_ne!(Keys::new("a").channel(), Keys::new("b").channel());
    }

    #[test]
    fn a_field_must_name_where_it_was_found() {
        let v = r#"{"pool":"app","route":"jvm1","state":"draining","by":"i0","at_ms":5}"#;
        assert_eq!(
            parse_shared(v, "app", "jvm1").map(|s| s.state),
            Some("draining".to_string())
        );
        assert!(parse_shared(v, "app", "jvm2").is_none());
        assert!(parse_shared("{", "app", "jvm1").is_none());
    }
}
