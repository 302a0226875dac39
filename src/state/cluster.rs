//! What this instance knows of its group when a `cluster:` section is configured (README
//! "Running several balancers"): the group's operator states as last read from Redis, the other
//! instances and their session counts, and whether Redis is reachable now.
//!
//! No sockets here. `control::cluster` owns the Redis connections in one background task: it
//! writes and reads through them and drives this state; the admin API reaches it through
//! [`ClusterState::request`], a channel to that task, so no Redis client is ever touched
//! outside the task (Redis clients belong to the runtime that made them). The request path
//! reads none of this: a shared state is applied to the node's state atomic, which it already
//! reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::core::node_state::NodeState;
use crate::state::snapshot::Snapshot;

/// Milliseconds since the Unix epoch (the clock shared by the instances of a group).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instance id used when `cluster.instance` is not set: the host name and the process id
/// (unique on one host, readable on the status page).
pub fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!("{host}-{}", std::process::id())
}

/// One node's operator state as the group holds it: a field of the pool's Redis hash and the
/// payload of the change announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedState {
    pub pool: String,
    pub route: String,
    /// `active`, `draining`, `disabled` or `standby`.
    pub state: String,
    /// The instance whose admin API was told.
    pub by: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
}

impl SharedState {
    pub fn node_state(&self) -> Option<NodeState> {
        NodeState::parse(&self.state)
    }
}

/// One node's numbers as one instance sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCounts {
    pub pool: String,
    pub route: String,
    pub live_sessions: u64,
    pub in_flight: u64,
}

/// What an instance publishes about itself, with a TTL, every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    /// Random per process start: two processes claiming one id are told apart.
    pub boot: u64,
    /// The admin listener's address, when it has one.
    pub admin: Option<String>,
    /// When the record was written, in ms since the Unix epoch.
    pub at_ms: u64,
    pub nodes: Vec<NodeCounts>,
}

/// One member of the group as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// Its record had not expired at the last read.
    pub alive: bool,
    pub admin: Option<String>,
    /// When it last published, in ms since the Unix epoch.
    pub seen_ms: u64,
    /// Its counts (the last ones it published; empty once gone).
    pub nodes: Vec<NodeCounts>,
}

/// A node added through the admin API, as the group holds it: a field of the pool's
/// `nodes:{pool}` hash in Redis. Every instance serves the group's runtime nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedNode {
    pub route: String,
    pub address: String,
    pub weight: u32,
    pub domain: String,
    /// The instance whose admin API was told, and when (ms since the Unix epoch).
    pub by: String,
    pub at_ms: u64,
}

/// A change the cluster task makes in the group.
#[derive(Debug)]
pub enum GroupChange {
    /// Set `targets` (pool, route) to `state`.
    State {
        targets: Vec<(String, String)>,
        state: NodeState,
    },
    /// Add a runtime node to `pool`, unless the group has its route already.
    AddNode { pool: String, node: SharedNode },
    /// Remove a runtime node from `pool`: every instance drains it, then drops it.
    RemoveNode { pool: String, route: String },
}

/// Asks the cluster task to make a change in the group.
#[derive(Debug)]
pub struct SetRequest {
    pub change: GroupChange,
    /// `Ok(true)` once the group holds the change and this instance applied it; `Ok(false)`
    /// when an added node's route was the group's already.
    pub reply: oneshot::Sender<Result<bool, String>>,
}

/// A group's numbers for one node: summed over the live instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCounts {
    pub live_sessions: u64,
    pub in_flight: u64,
}

/// The group as this instance knows it.
#[derive(Debug)]
pub struct ClusterState {
    /// `cluster.name`.
    pub name: String,
    /// This instance's id.
    pub instance: String,
    /// Redis deadline per operation; a change request waits a few of these at most.
    pub timeout: Duration,
    connected: AtomicBool,
    /// Failed Redis operations (each makes the task reconnect).
    pub errors: AtomicU64,
    /// Times the connection was lost after being up.
    pub disconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Operator states the group holds, by (pool, route), as last read or written.
    states: Mutex<HashMap<(String, String), SharedState>>,
    /// The other instances of the group (this one excluded), as last read.
    members: Mutex<Vec<Member>>,
    requests: mpsc::Sender<SetRequest>,
    /// Taken once by the cluster task.
    inbox: Mutex<Option<mpsc::Receiver<SetRequest>>>,
}

/// Why a change could not be made in the group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster {name:?} is disconnected from Redis ({reason}): change refused, it could not reach the other instances (nothing changed; try again once Redis is back)")]
    Disconnected { name: String, reason: String },
    #[error(
        "cluster {name:?}: the change could not be stored in Redis ({reason}); it was not applied on this instance"
    )]
    Failed { name: String, reason: String },
}

impl ClusterState {
    pub fn new(name: String, instance: String, timeout: Duration) -> ClusterState {
        let (tx, rx) = mpsc::channel(16);
        ClusterState {
            name,
            instance,
            timeout,
            connected: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            last_error: Mutex::new(Some("not connected yet".into())),
            states: Mutex::new(HashMap::new()),
            members: Mutex::new(Vec::new()),
            requests: tx,
            inbox: Mutex::new(Some(rx)),
        }
    }

    /// Whether Redis answered the last operation and the change channel is subscribed.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The last Redis error, when disconnected.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// Records that the task is connected (and subscribed) now.
    pub fn set_connected(&self) {
        *lock(&self.last_error) = None;
        self.connected.store(true, Ordering::Relaxed);
    }

    /// Records a failed Redis operation; returns true when this loses a working connection.
    pub fn set_disconnected(&self, reason: String) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(reason);
        let was = self.connected.swap(false, Ordering::Relaxed);
        if was {
            self.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        was
    }

    /// The channel's receiving end, for the one task that serves it.
    pub fn take_inbox(&self) -> Option<mpsc::Receiver<SetRequest>> {
        lock(&self.inbox).take()
    }

    /// Sets `targets` to `state` in the group through the cluster task. Refused at once when
    /// disconnected: a change is never made on this instance alone.
    pub async fn request(
        &self,
        targets: Vec<(String, String)>,
        state: NodeState,
    ) -> Result<(), ClusterError> {
        self.change(GroupChange::State { targets, state })
            .await
            .map(|_| ())
    }

    /// Makes `change` in the group through the cluster task (see [`SetRequest::reply`]).
    /// Refused at once when disconnected.
    pub async fn change(&self, change: GroupChange) -> Result<bool, ClusterError> {
        let disconnected = |reason: String| ClusterError::Disconnected {
            name: self.name.clone(),
            reason,
        };
        if !self.connected() {
            return Err(disconnected(
                self.last_error().unwrap_or_else(|| "no connection".into()),
            ));
        }
        let (reply, answer) = oneshot::channel();
        let req = SetRequest { change, reply };
        if self.requests.send(req).await.is_err() {
            return Err(disconnected("the cluster task has stopped".into()));
        }
        // The task answers within its Redis deadlines (one write per target, then the reply).
        let bound = self.timeout * 4 + Duration::from_secs(1);
        match tokio::time::timeout(bound, answer).await {
            Ok(Ok(Ok(applied))) => Ok(applied),
            Ok(Ok(Err(reason))) => Err(ClusterError::Failed {
                name: self.name.clone(),
                reason,
            }),
            Ok(Err(_)) => Err(disconnected("the cluster task has stopped".into())),
            Err(_) => Err(ClusterError::Failed {
                name: self.name.clone(),
                reason: format!("no answer from the cluster task within {bound:?}"),
            }),
        }
    }

    /// The state the group holds for `route` of `pool`, if it holds one.
    pub fn pinned(&self, pool: &str, route: &str) -> Option<NodeState> {
        lock(&self.states)
            .get(&(pool.to_string(), route.to_string()))
            .and_then(SharedState::node_state)
    }

    /// Every state the group holds, as last known (for re-seeding a Redis that lost them).
    pub fn known_states(&self) -> Vec<SharedState> {
        let mut v: Vec<SharedState> = lock(&self.states).values().cloned().collect();
        v.sort_by(|a, b| (&a.pool, &a.route).cmp(&(&b.pool, &b.route)));
        v
    }

    /// Records `shared` as the group's state of its node and applies it to `snap` (the node's
    /// state atomic the request path reads). An entry naming a pool or node this instance does
    /// not have is kept for a reload that adds it. Returns true when a node changed state here.
    pub fn apply(&self, snap: &Snapshot, shared: SharedState) -> bool {
        let Some(state) = shared.node_state() else {
            tracing::warn!(pool = %shared.pool, node = %shared.route, state = %shared.state, "cluster: ignoring an unknown state");
            return false;
        };
        let node = snap.pool(&shared.pool).and_then(|p| p.node(&shared.route));
        let mut changed = false;
        if let Some(n) = node {
            let previous = n.state();
            if previous != state {
                n.rt.set_state(state);
                changed = true;
                tracing::info!(
                    pool = %shared.pool,
                    node = %shared.route,
                    from = previous.as_str(),
                    to = state.as_str(),
                    by = %shared.by,
                    "node state changed (cluster)"
                );
            }
        }
        lock(&self.states).insert((shared.pool.clone(), shared.route.clone()), shared);
        changed
    }

    /// Replaces the other members as read from Redis.
    pub fn set_members(&self, members: Vec<Member>) {
        *lock(&self.members) = members;
    }

    /// The other members as last read (this instance excluded).
    pub fn members(&self) -> Vec<Member> {
        lock(&self.members).clone()
    }

    /// The numbers the other live instances published for `route` of `pool`.
    pub fn others(&self, pool: &str, route: &str) -> GroupCounts {
        let members = lock(&self.members);
        let mut sum = GroupCounts::default();
        for m in members.iter().filter(|m| m.alive) {
            for n in m
                .nodes
                .iter()
                .filter(|n| n.pool == pool && n.route == route)
            {
                sum.live_sessions += n.live_sessions;
                sum.in_flight += n.in_flight;
            }
        }
        sum
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::registry::Registry;
    use std::sync::Arc;

    fn snap() -> Snapshot {
        let yaml = "listeners: [{ bind: \"127.0.0.1:1\" }]\npools:\n  - name: app\n    nodes:\n      - { route: jvm1, address: \"127.0.0.1:2\" }\n      - { route: jvm2, address: \"127.0.0.1:3\" }\n";
        let c = Config::from_yaml(yaml, "t.yaml").unwrap();
        Snapshot::build(
            Arc::new(c),
            None,
            &Registry::new(10, Duration::from_secs(60)),
        )
        .unwrap()
    }

    fn shared(pool: &str, route: &str, state: &str) -> SharedState {
        SharedState {
            pool: pool.into(),
            route: route.into(),
            state: state.into(),
            by: "i0".into(),
            at_ms: 1,
        }
    }

    #[test]
    fn apply_sets_the_node_and_remembers_unknown_ones() {
        let c = ClusterState::new("g".into(), "i1".into(), Duration::from_secs(1));
        let s = snap();
        assert!(c.apply(&s, shared("app", "jvm1", "draining")));
        assert_eq!(
            s.pool("app").unwrap().node("jvm1").unwrap().state(),
            NodeState::Draining
        );
        assert!(
            !c.apply(&s, shared("app", "jvm1", "draining")),
            "no change the second time"
        );
        assert!(!c.apply(&s, shared("app", "jvm9", "disabled")));
        assert!(
            !c.apply(&s, shared("app", "jvm2", "sleeping")),
            "unknown state ignored"
        );
        assert_eq!(c.pinned("app", "jvm9"), Some(NodeState::Disabled));
        assert_eq!(c.pinned("app", "jvm2"), None);
        assert_eq!(c.known_states().len(), 2);
    }

    #[test]
    fn group_counts_sum_live_members_only() {
        let c = ClusterState::new("g".into(), "i0".into(), Duration::from_secs(1));
        let counts = |live, in_flight| {
            vec![NodeCounts {
                pool: "app".into(),
                route: "jvm1".into(),
                live_sessions: live,
                in_flight,
            }]
        };
        let member = |id: &str, alive, nodes| Member {
            id: id.into(),
            alive,
            admin: None,
            seen_ms: 0,
            nodes,
        };
        c.set_members(vec![
            member("i1", true, counts(2, 1)),
            member("i2", true, counts(3, 0)),
            member("i3", false, counts(100, 100)),
        ]);
        assert_eq!(
            c.others("app", "jvm1"),
            GroupCounts {
                live_sessions: 5,
                in_flight: 1
            }
        );
        assert_eq!(c.others("app", "jvm2"), GroupCounts::default());
    }

    #[tokio::test]
    async fn a_change_while_disconnected_is_refused_without_reaching_the_task() {
        let c = ClusterState::new("g".into(), "i0".into(), Duration::from_millis(100));
        let mut inbox = c.take_inbox().unwrap();
        c.set_disconnected("connection refused".into());
        let err = c
            .request(vec![("app".into(), "jvm1".into())], NodeState::Draining)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("disconnected"), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert!(inbox.try_recv().is_err(), "nothing was sent to the task");

        // Connected: the request goes to the task and waits for its answer.
        c.set_connected();
        let answer = tokio::spawn(async move {
            let req = inbox.recv().await.unwrap();
            assert!(matches!(
                req.change,
                GroupChange::State {
                    state: NodeState::Draining,
                    ..
                }
            ));
            req.reply.send(Err("READONLY".into())).unwrap();
        });
        let err = c
            .request(vec![("app".into(), "jvm1".into())], NodeState::Draining)
            .await
            .unwrap_err();
        assert!(matches!(err, ClusterError::Failed { .. }), "{err}");
        answer.await.unwrap();
    }
}
