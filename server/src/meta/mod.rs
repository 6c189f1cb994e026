//! The MetaServer: cluster state in ZooKeeper, one leader elected through it, routing for
//! clients, beacons and assignments for replica servers, and the admin RPCs of the shell.
//!
//! # Layout
//! - [`zk`]: the only place that talks to ZooKeeper
//! - [`state`]: tables, partitions, nodes, and the assignment decisions
//! - [`metrics`]: leadership, nodes, partition health, changes, ZooKeeper latency
//! - `http`: Pegasus's HTTP API (`/meta/*`), `/metrics`, the status page
//! - `election`: leading through ZooKeeper's lock, and joining again after a session expired
//! - `admin`: the operator's RPCs (tables, nodes, the function level, the balancer)
//! - `backup`: one-time backups (run by the leader, kept in ZooKeeper) and restores
//! - `policy`: backup policies: scheduled backups, their history pruned
//!
//! The state lock is held across ZooKeeper writes (a change is persisted before anyone hears of
//! it), so nothing time-critical waits for it: beacons are recorded apart from it and answered,
//! as routing queries are, from the tables as last persisted. A slow ZooKeeper delays changes,
//! never a lease.
//!
//! Followers answer routing queries and beacons with `ERR_FORWARD_TO_OTHERS` and the leader's
//! address, as Pegasus metas do. A meta whose ZooKeeper session is lost stops acting as leader at
//! once. One whose session expired opens a new session and joins the election again: everything
//! it knows is in ZooKeeper, so that is a restart without a supervisor (Pegasus's meta exits
//! instead, and needs one to come back).

mod admin;
mod backup;
mod election;
mod http;
pub mod metrics;
mod policy;
pub mod state;
pub mod zk;

pub use backup::BackupConfig;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pegasus_protocol::backup::{
    AddBackupPolicyRequest, ModifyBackupPolicyRequest, QueryBackupPolicyRequest,
    QueryBackupStatusRequest, QueryRestoreRequest, ReportRestoreStatusRequest, RestoreRequest,
    StartBackupAppRequest,
};
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::{Request, RequestMeta};
use pegasus_protocol::types::*;
use tracing::{error, info, warn};

use self::state::{App, Beat, Changed, Cluster, PartitionConfig, assignment};
use self::zk::{Zk, ZkConfig, ZkError};
use crate::net::{Reply, Service};

/// The RPCs that change the cluster on an operator's word: only `[security]
/// admin_allowed_hosts` may send them when it is set.
const ADMIN_RPCS: &[&str] = &[
    rpc::CREATE_APP,
    rpc::DROP_APP,
    rpc::RECALL_APP,
    rpc::UPDATE_APP_ENV,
    rpc::CONTROL_META,
    rpc::PROPOSE_BALANCER,
    rpc::START_BACKUP_APP,
    rpc::START_RESTORE,
    rpc::ADD_BACKUP_POLICY,
    rpc::MODIFY_BACKUP_POLICY,
];

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the meta role needs from the config.
#[derive(Clone, Debug)]
pub struct MetaOptions {
    /// This meta's advertised address.
    pub me: SocketAddrV4,
    /// `[zookeeper]`: hosts, session timeout, credentials.
    pub zk: ZkConfig,
    /// `[security] admin_allowed_hosts`: who may send admin RPCs (create, drop, recall, envs,
    /// the meta level); empty: anyone.
    pub admin_allowed: configcheck::address::AllowList,
    /// `[meta_server] cluster_root`.
    pub cluster_root: String,
    /// `[meta_server] distributed_lock_service_parameters`.
    pub lock_root: String,
    /// `[replication] cluster_name`.
    pub cluster_name: String,
    /// `[meta_server] server_list`.
    pub meta_servers: Vec<SocketAddr>,
    /// Tables created at first bootstrap (`[meta_server.apps.*]`).
    pub bootstrap_apps: Vec<BootstrapApp>,
    /// `[replication] fd_lease_seconds`: how long a replica server serves after a beacon's
    /// answer.
    pub fd_lease: Duration,
    /// `[replication] fd_grace_seconds`.
    pub fd_grace: Duration,
    /// `[replication] fd_check_interval_seconds`.
    pub fd_check: Duration,
    /// `[meta_server] min_live_node_count_for_unfreeze`.
    pub min_live_nodes: usize,
    /// `[replication] mutation_2pc_min_replica_count`: the members a write needs, which
    /// partition health is counted by.
    pub min_write_members: usize,
    /// What a create request may ask for.
    pub create_limits: CreateLimits,
    /// `[meta_server] replica_assign_delay_ms_for_dropouts`: how long a partition short of a
    /// copy waits for the node that dropped it before a new copy is made elsewhere.
    pub dropout_delay: Duration,
    /// `[meta_server] hold_seconds_for_dropped_app`: how long a dropped table can be recalled
    /// when the drop request does not say.
    pub hold_dropped: Duration,
    /// `[meta_server] meta_function_level_on_start`, used until a level is set (then kept in
    /// ZooKeeper).
    pub initial_level: i32,
    /// `[meta_server] balance_op_count_per_round`: primaries the balancer moves at a time.
    pub balance_moves: usize,
    /// Cold backup: whether it is on, the root, the block services.
    pub backup: backup::BackupConfig,
}

/// A table the meta creates at the cluster's first start (`[meta_server.apps.*]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapApp {
    /// `app_name`.
    pub name: String,
    /// `partition_count`.
    pub partitions: i32,
    /// `max_replica_count`.
    pub replicas: i32,
    /// `envs` (`k=v,k=v`).
    pub envs: std::collections::BTreeMap<String, String>,
}

/// Bounds on a create request: without them one request for 2^31 partitions makes the meta
/// allocate their configurations and abort (every meta in turn, as each takes over).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateLimits {
    /// `[meta_server] max_allowed_partition_count` (ours; Pegasus has no such bound).
    pub max_partition_count: i32,
    /// `[meta_server] min_allowed_replica_count`, as in Pegasus (default 1).
    pub min_replica_count: i32,
    /// `[meta_server] max_allowed_replica_count`, as in Pegasus (default 5).
    pub max_replica_count: i32,
}

impl Default for CreateLimits {
    fn default() -> Self {
        CreateLimits {
            max_partition_count: 4096,
            min_replica_count: 1,
            max_replica_count: 5,
        }
    }
}

impl CreateLimits {
    /// Whether a table of `partitions` partitions with `replicas` copies may be created; the
    /// reason otherwise (the request gets `ERR_INVALID_PARAMETERS`).
    pub fn check(&self, name: &str, partitions: i32, replicas: i32) -> Result<(), String> {
        if name.is_empty() {
            return Err("the table name is empty".into());
        }
        if partitions <= 0 || partitions > self.max_partition_count {
            return Err(format!(
                "partition count {partitions} is outside 1..={} (`[meta_server] max_allowed_partition_count`)",
                self.max_partition_count
            ));
        }
        if replicas < self.min_replica_count || replicas > self.max_replica_count {
            return Err(format!(
                "replica count {replicas} is outside {}..={} (`[meta_server] min_allowed_replica_count`, `max_allowed_replica_count`)",
                self.min_replica_count, self.max_replica_count
            ));
        }
        Ok(())
    }
}

/// Why the meta cannot run.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// ZooKeeper failed.
    #[error(transparent)]
    Zk(#[from] ZkError),
    /// The ZooKeeper session was closed or refused our credentials: this meta stops.
    #[error("ZooKeeper session {0}: this meta stops")]
    SessionLost(String),
    /// The cluster root holds data of a newer format.
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
}

/// The meta role.
pub struct MetaServer {
    options: MetaOptions,
    zk: Zk,
    /// This meta's node in the leader election (a new one after a session expired).
    lock_node: Mutex<String>,
    leader: AtomicBool,
    /// Until when the last confirmation of the leadership by ZooKeeper holds.
    leader_until: Mutex<Option<Instant>>,
    leader_addr: Mutex<Option<SocketAddrV4>>,
    state: tokio::sync::Mutex<Cluster>,
    /// The tables as last persisted, republished when a [`StateGuard`] that changed them goes,
    /// and by [`MetaServer::publish`] as soon as its changes are persisted.
    view: Mutex<Arc<BTreeMap<i32, App>>>,
    /// Primaries being replaced while their new configurations are persisted.
    deposing: Mutex<Deposing>,
    /// When each replica server was last answered a beacon (its lease runs from before then).
    leased: Mutex<HashMap<SocketAddrV4, Instant>>,
    /// The last beacon of each replica server, folded into `state` by [`MetaServer::tend`].
    beats: Mutex<HashMap<SocketAddrV4, Beat>>,
    /// Each node's disk id as it last beaconed, and its memberships when the id changed (new
    /// disks: none of them is fresh for it).
    disks: Mutex<HashMap<SocketAddrV4, (i64, std::collections::HashSet<Gpid>)>>,
    /// Disk ids beaconed that are not in ZooKeeper yet (`tend` writes them).
    disks_unsaved: Mutex<Vec<(SocketAddrV4, i64)>>,
    /// Rung by a beacon with news (a node new or back, a change in what it holds).
    news: tokio::sync::Notify,
    /// Replica servers that said they are leaving (a clean stop), and when, for the next
    /// `tend`.
    leaving: Mutex<Vec<(SocketAddrV4, Instant)>>,
    /// Announces configuration changes to the replica servers.
    transport: pegasus_transport::Transport,
    /// The meta level ([`meta_function_level`]): below `steady`, nothing moves.
    level: std::sync::atomic::AtomicI32,
    /// Copies the balancer took off nodes, for beacon answers to say they are gone (as last
    /// cured; read without the state lock).
    retired: Mutex<std::collections::BTreeSet<(SocketAddrV4, Gpid)>>,
    /// Configuration changes asked by members, waiting for the state lock: whoever takes it
    /// first applies every one waiting, persists them together and cures once (group commit).
    changes: Mutex<
        Vec<(
            UpdateConfigRequest,
            tokio::sync::oneshot::Sender<UpdateConfigResponse>,
        )>,
    >,
    metrics: metrics::MetaMetrics,
    /// When this process started (`/recentStartTime`).
    started: SystemTime,
    /// The collector's last availability round, and when it came (the status page shows it).
    availability: Mutex<Option<(Instant, AvailabilityReport)>>,
    /// Backups and restores (the leader's).
    backups: Mutex<backup::Backups>,
    /// Rung when a backup starts: its first round goes at once.
    backup_started: tokio::sync::Notify,
}

/// Primaries being replaced while [`MetaServer::publish`] persists the change: their beacons
/// must not renew their lease from a view that still names them (they would serve reads from a
/// store the new primary's writes no longer reach). `epoch` counts the rounds that marked any.
#[derive(Debug, Default)]
struct Deposing {
    epoch: u64,
    nodes: HashMap<SocketAddrV4, usize>,
}

impl Deposing {
    /// Marks `nodes` until the returned guard goes.
    fn mark(this: &Mutex<Deposing>, nodes: Vec<SocketAddrV4>) -> DeposingGuard<'_> {
        let mut d = this.lock().expect("deposing");
        d.epoch += 1;
        for n in &nodes {
            *d.nodes.entry(*n).or_default() += 1;
        }
        DeposingGuard { this, nodes }
    }

    /// The epoch, if `node` is not marked now.
    fn clear_for(this: &Mutex<Deposing>, node: SocketAddrV4) -> Option<u64> {
        let d = this.lock().expect("deposing");
        (!d.nodes.contains_key(&node)).then_some(d.epoch)
    }
}

struct DeposingGuard<'a> {
    this: &'a Mutex<Deposing>,
    nodes: Vec<SocketAddrV4>,
}

impl Drop for DeposingGuard<'_> {
    fn drop(&mut self) {
        let mut d = self.this.lock().expect("deposing");
        for n in &self.nodes {
            if let Some(count) = d.nodes.get_mut(n) {
                *count -= 1;
                if *count == 0 {
                    d.nodes.remove(n);
                }
            }
        }
    }
}

/// The state lock; a guard that lent the state out mutably republishes the tables on its way
/// out, after whatever ZooKeeper writes it made.
struct StateGuard<'a> {
    state: tokio::sync::MutexGuard<'a, Cluster>,
    view: &'a Mutex<Arc<BTreeMap<i32, App>>>,
    changed: bool,
}

impl Deref for StateGuard<'_> {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.state
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut Cluster {
        self.changed = true;
        &mut self.state
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if self.changed {
            *self.view.lock().expect("view") = Arc::new(self.state.apps.clone());
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn err(code: ErrorCode) -> ErrorName {
    ErrorName(code.name().to_owned())
}

impl MetaServer {
    /// Connects to ZooKeeper and joins the leader election.
    pub async fn start(options: MetaOptions) -> Result<Arc<MetaServer>, MetaError> {
        let mut zk = Zk::connect(&options.zk, &options.cluster_root, &options.lock_root).await?;
        zk.check_format().await?;
        let metrics = metrics::MetaMetrics::new(&options.cluster_name);
        let (reads, writes) = metrics.zookeeper();
        zk.set_metrics(reads, writes);
        let lock_node = zk.join_election(&options.me.to_string()).await?;
        info!(
            lock_node,
            root = options.cluster_root,
            "meta joined the leader election"
        );
        Ok(Arc::new(MetaServer {
            zk,
            lock_node: Mutex::new(lock_node),
            leader: AtomicBool::new(false),
            leader_until: Mutex::new(None),
            leader_addr: Mutex::new(None),
            state: tokio::sync::Mutex::new(Cluster::default()),
            view: Mutex::default(),
            beats: Mutex::default(),
            disks: Mutex::default(),
            disks_unsaved: Mutex::default(),
            news: tokio::sync::Notify::new(),
            leaving: Mutex::default(),
            transport: pegasus_transport::Transport::new(Duration::from_secs(5)),
            level: std::sync::atomic::AtomicI32::new(options.initial_level),
            retired: Mutex::default(),
            changes: Mutex::default(),
            deposing: Mutex::default(),
            leased: Mutex::default(),
            metrics,
            started: SystemTime::now(),
            availability: Mutex::default(),
            backups: Mutex::default(),
            backup_started: tokio::sync::Notify::new(),
            options,
        }))
    }

    async fn lock(&self) -> StateGuard<'_> {
        StateGuard {
            state: self.state.lock().await,
            view: &self.view,
            changed: false,
        }
    }

    /// The tables as last persisted.
    fn view(&self) -> Arc<BTreeMap<i32, App>> {
        Arc::clone(&self.view.lock().expect("view"))
    }

    /// Whether this meta is the leader: it won the election, and ZooKeeper confirmed it within
    /// two thirds of a session timeout. A meta frozen or cut off past that (whose session
    /// another meta may see expire) acts as a follower until ZooKeeper confirms it again, so two
    /// metas never act as leader at once, whatever it believed when it froze.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
            && self
                .leader_until
                .lock()
                .expect("leader until")
                .is_some_and(|until| Instant::now() < until)
    }

    fn leader_address(&self) -> RpcAddress {
        self.leader_addr
            .lock()
            .expect("leader")
            .map_or(RpcAddress::INVALID, RpcAddress::new)
    }

    /// Folds the beacons in, marks nodes past their grace dead, and cures.
    async fn tend(&self) {
        let mut state = self.lock().await;
        let beats: Vec<(SocketAddrV4, Beat)> = {
            let beats = self.beats.lock().expect("beats");
            beats
                .iter()
                .filter(|(node, beat)| state.is_new(**node, beat.at))
                .map(|(node, beat)| (*node, beat.clone()))
                .collect()
        };
        for (node, beat) in beats {
            if state.fold(node, beat) {
                info!(%node, "replica server alive");
            }
        }
        let unsaved = std::mem::take(&mut *self.disks_unsaved.lock().expect("disks"));
        for (node, id) in unsaved.into_iter().filter(|(_, id)| *id != 0) {
            if let Err(e) = self.zk.save_disk(node, id).await {
                warn!(%node, "keeping its disk id: {e}");
                self.disks_unsaved.lock().expect("disks").push((node, id));
            }
        }
        // A node's leaving counts unless a beacon of it came later (it is back already); an
        // older beacon folded just now does not undo it.
        let left = std::mem::take(&mut *self.leaving.lock().expect("leaving"));
        for (node, at) in left {
            let back = state.nodes.get(&node).is_some_and(|n| n.last_beacon > at);
            if !back && state.leave(node) {
                warn!(%node, "replica server left (a clean stop): taken for dead now");
            }
        }
        let dead = state.expire(Instant::now(), self.options.fd_grace);
        if !dead.is_empty() {
            warn!(?dead, "replica servers past their grace period");
        }
        self.forget_expired(&mut state).await;
        self.cure(&mut state).await;
    }

    /// Retires the dropped tables whose reserve ran out: each becomes a tombstone (its info
    /// kept in ZooKeeper as `AS_EXPIRED`, its partitions deleted), and replica servers then
    /// hear that their copies are gone.
    async fn forget_expired(&self, state: &mut StateGuard<'_>) {
        let now = unix_now();
        let expired: Vec<i32> = state
            .apps
            .values()
            .filter(|a| a.info.dropped() && a.info.expire_second <= now)
            .map(|a| a.info.app_id)
            .collect();
        for app_id in expired {
            let mut info = state.apps[&app_id].info.clone();
            info.status = "AS_EXPIRED".into();
            let done = match self.zk.save_app_info(&info).await {
                Ok(()) => {
                    self.zk
                        .delete_partitions(app_id, info.partition_count)
                        .await
                }
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => {
                    info!(table = info.app_name, app_id, "dropped table expired");
                    let app = state.apps.get_mut(&app_id).expect("found");
                    app.info = info;
                    app.partitions.clear();
                }
                Err(e) => warn!(
                    table = info.app_name,
                    app_id, "expiring a dropped table: {e}"
                ),
            }
        }
    }

    /// Cures what needs it (see [`Cluster::assign`]), persists and announces the changes.
    async fn cure(&self, state: &mut Cluster) {
        // `freezed`: nothing moves until the level is `steady` again.
        if self.level() < meta_function_level::STEADY {
            return;
        }
        let changed = state.assign(self.options.min_live_nodes);
        self.publish(state, changed).await;
        if state.alive_count() < self.options.min_live_nodes.max(1) {
            return;
        }
        // New copies: proposed to the primary, which teaches the learner and asks for its
        // upgrade once it caught up.
        for (gpid, primary, learner) in state.learners(Instant::now(), self.options.dropout_delay) {
            info!(%gpid, %primary, %learner, "ADD_SECONDARY proposed");
            let mut proposal = assignment(&state.apps[&gpid.app_id], gpid.partition_index);
            proposal.learner = RpcAddress::new(learner);
            self.propose(gpid, primary, proposal);
        }
        if self.level() < meta_function_level::LIVELY {
            // An operator's copy moves (`propose copy_secondary`) go on without the balancer.
            for (gpid, primary, learner) in state.moves_in_flight(Instant::now()) {
                info!(%gpid, %primary, %learner, "proposed copy to learn (ADD_SECONDARY)");
                let mut proposal = assignment(&state.apps[&gpid.app_id], gpid.partition_index);
                proposal.learner = RpcAddress::new(learner);
                self.propose(gpid, primary, proposal);
            }
        }
        if self.level() >= meta_function_level::LIVELY {
            let round = state.balance(self.options.balance_moves, Instant::now());
            if !round.moves.is_empty() {
                info!(
                    moves = round.moves.len(),
                    "balancer: primaries step down to move"
                );
                self.publish(state, round.moves).await;
            }
            for (gpid, primary, learner) in round.copies {
                info!(%gpid, %primary, %learner, "balancer: copy to learn (ADD_SECONDARY)");
                let mut proposal = assignment(&state.apps[&gpid.app_id], gpid.partition_index);
                proposal.learner = RpcAddress::new(learner);
                self.propose(gpid, primary, proposal);
            }
        }
        *self.retired.lock().expect("retired") = state.retired_copies();
    }

    /// Sends a configuration to a replica server (its answer is not needed: beacons repeat
    /// configurations, and proposals are made again).
    fn propose(&self, gpid: Gpid, node: SocketAddrV4, proposal: Assignment) {
        let transport = self.transport.clone();
        tokio::spawn(async move {
            let meta = RequestMeta {
                app_id: gpid.app_id,
                partition_index: gpid.partition_index,
                ..RequestMeta::default()
            };
            let _ = transport
                .call::<_, Empty>(
                    SocketAddr::V4(node),
                    meta,
                    rpc::CONFIG_PROPOSAL,
                    &Args(proposal),
                    Duration::from_secs(1),
                )
                .await;
        });
    }

    /// Persists each changed configuration before anyone hears of it, then tells every node
    /// that was or is a member (beacon answers repeat it). One that cannot be persisted is
    /// undone.
    async fn publish(&self, state: &mut Cluster, changed: Vec<Changed>) {
        if changed.is_empty() {
            return;
        }
        // Primaries this round takes the place of: no beacon of theirs renews their lease
        // until the view says so (see [`MetaServer::beacon`]). Marked before the first await.
        let deposed = state.deposed(&changed);
        let _deposing =
            (!deposed.is_empty()).then(|| Deposing::mark(&self.deposing, deposed.clone()));
        let saved = {
            let configs: Vec<(i32, i32, &PartitionConfig)> = changed
                .iter()
                .map(|c| {
                    let config = &state.apps[&c.app_id].partitions[c.pidx as usize];
                    (c.app_id, c.pidx, config)
                })
                .collect();
            self.zk.save_partitions(&configs).await
        };
        let mut persisted = Vec::with_capacity(changed.len());
        for (c, saved) in changed.into_iter().zip(saved) {
            if let Err(e) = saved {
                let gpid = Gpid::new(c.app_id, c.pidx);
                error!(%gpid, "persisting the configuration failed, change undone: {e}");
                state.apps.get_mut(&c.app_id).expect("app").partitions[c.pidx as usize] = c.before;
                continue;
            }
            persisted.push(c);
        }
        // A replaced primary may have been answered a beacon as its replacement was decided
        // (one read the view just before): nobody learns of the new primary until the lease
        // that answer gave has run out. Silent past its grace, as a replaced primary usually
        // is, its last lease ran out long ago and this waits for nothing.
        // (A primary replaced while alive, as the balancer's step down or its own request,
        // hears of it and steps down itself: only those taken for dead are waited for.)
        let leased_until = state.replaced_lease_ends(
            &deposed,
            &self.leased.lock().expect("leased"),
            self.options.fd_lease,
        );
        if let Some(until) = leased_until.filter(|u| *u > Instant::now()) {
            warn!(?deposed, wait = ?(until - Instant::now()), "a replaced primary holds a lease given as it was replaced: its successor waits it out");
            tokio::time::sleep_until(until.into()).await;
        }
        // Beacons and routing see the new configurations before any member hears of them.
        *self.view.lock().expect("view") = Arc::new(state.apps.clone());
        for c in persisted {
            let gpid = Gpid::new(c.app_id, c.pidx);
            let config = state.apps[&c.app_id].partitions[c.pidx as usize].clone();
            info!(%gpid, ballot = config.ballot, primary = config.primary, secondaries = ?config.secondaries, last_drops = ?config.last_drops, "configuration changed");
            self.metrics.changed(&state.apps[&c.app_id].info.app_name);
            let proposal = assignment(&state.apps[&c.app_id], c.pidx);
            for node in c.told(&config) {
                self.propose(gpid, node, proposal.clone());
            }
        }
    }

    /// `RPC_CM_UPDATE_PARTITION_CONFIGURATION`: a member asks to remove a node, to upgrade a
    /// learner, or (a restarted primary) for the next ballot. Changes asked meanwhile are
    /// applied together: a restarted node with thousands of primaries asks for thousands of
    /// ballots at once, and one ZooKeeper write and one cure each made them time out and be
    /// asked again.
    async fn update_config(&self, r: UpdateConfigRequest) -> UpdateConfigResponse {
        if !self.is_leader() {
            return update_answer(ErrorCode::ForwardToOthers, Assignment::default());
        }
        if r.node.socket_addr().is_none() {
            return update_answer(ErrorCode::InvalidParameters, Assignment::default());
        }
        let (done, answer) = tokio::sync::oneshot::channel();
        {
            let mut changes = self.changes.lock().expect("changes");
            if changes.len() >= MAX_PENDING_CHANGES {
                return update_answer(ErrorCode::Busy, Assignment::default());
            }
            changes.push((r, done));
        }
        {
            let mut state = self.lock().await;
            let batch = std::mem::take(&mut *self.changes.lock().expect("changes"));
            if !batch.is_empty() {
                self.apply_changes(&mut state, batch).await;
            }
        }
        answer
            .await
            .unwrap_or_else(|_| update_answer(ErrorCode::ForwardToOthers, Assignment::default()))
    }

    /// Applies members' configuration changes, each a compare-and-swap on its ballot, persists
    /// those made in one go, cures once, and answers each with its partition's configuration.
    async fn apply_changes(
        &self,
        state: &mut StateGuard<'_>,
        batch: Vec<(
            UpdateConfigRequest,
            tokio::sync::oneshot::Sender<UpdateConfigResponse>,
        )>,
    ) {
        let mut changed = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for (r, done) in batch {
            let refused = if !self.is_leader() {
                Some(ErrorCode::ForwardToOthers)
            } else if self.level() < meta_function_level::STEADY {
                Some(ErrorCode::StateFreezed)
            } else if !state
                .apps
                .get(&r.pid.app_id)
                .is_some_and(|a| a.info.available())
            {
                // A dropped table's configurations stay as they were, for a recall.
                Some(ErrorCode::ObjectNotFound)
            } else {
                None
            };
            if let Some(code) = refused {
                let _ = done.send(update_answer(code, Assignment::default()));
                continue;
            }
            let node = r.node.socket_addr().expect("checked on arrival");
            let result = match r.config_type {
                config_type::DOWNGRADE_TO_INACTIVE => state.remove_member(r.pid, r.ballot, node),
                config_type::PRIMARY_FORCE_UPDATE_BALLOT => {
                    state.raise_ballot(r.pid, r.ballot, node)
                }
                config_type::UPGRADE_TO_SECONDARY => state.upgrade(r.pid, r.ballot, node),
                _ => {
                    let _ = done.send(update_answer(
                        ErrorCode::NotImplemented,
                        Assignment::default(),
                    ));
                    continue;
                }
            };
            let code = match result {
                Ok(Some(c)) => {
                    info!(gpid = %r.pid, %node, ballot = r.ballot, config_type = r.config_type, "configuration change asked by a member");
                    changed.push(c);
                    ErrorCode::Ok
                }
                Ok(None) => ErrorCode::Ok,
                Err(_) if state.partition(r.pid).is_some() => ErrorCode::InvalidVersion,
                Err(_) => {
                    let _ = done.send(update_answer(
                        ErrorCode::ObjectNotFound,
                        Assignment::default(),
                    ));
                    continue;
                }
            };
            answers.push((r.pid, code, done));
        }
        if !changed.is_empty() {
            self.publish(state, changed).await;
            self.cure(state).await;
        }
        for (pid, code, done) in answers {
            let app = &state.apps[&pid.app_id];
            let _ = done.send(update_answer(code, assignment(app, pid.partition_index)));
        }
    }

    async fn query_config(&self, q: QueryCfgRequest) -> QueryCfgResponse {
        if !self.is_leader() {
            return QueryCfgResponse {
                err: err(ErrorCode::ForwardToOthers),
                partitions: vec![PartitionConfiguration {
                    primary: self.leader_address(),
                    ..Default::default()
                }],
                ..Default::default()
            };
        }
        let view = self.view();
        let Some(app) = state::app_named(&view, &q.app_name) else {
            return QueryCfgResponse {
                err: err(ErrorCode::ObjectNotFound),
                ..Default::default()
            };
        };
        let wanted = |i: i32| q.partition_indices.is_empty() || q.partition_indices.contains(&i);
        QueryCfgResponse {
            err: err(ErrorCode::Ok),
            app_id: app.info.app_id,
            partition_count: app.info.partition_count,
            is_stateful: app.info.is_stateful,
            partitions: app
                .partitions
                .iter()
                .enumerate()
                .filter(|(i, _)| wanted(*i as i32))
                .map(|(i, p)| PartitionConfiguration {
                    pid: Gpid::new(app.info.app_id, i as i32),
                    ballot: p.ballot,
                    max_replica_count: p.max_replica_count,
                    primary: p.primary_rpc(),
                    secondaries: p.secondary_rpcs(),
                    last_drops: p
                        .last_drops
                        .iter()
                        .filter_map(|d| d.parse().ok())
                        .map(RpcAddress::new)
                        .collect(),
                    last_committed_decree: p.last_committed_decree,
                    partition_flags: 0,
                })
                .collect(),
        }
    }

    async fn beacon(&self, b: BeaconRequest) -> BeaconResponse {
        if !self.is_leader() {
            return BeaconResponse {
                err: err(ErrorCode::ForwardToOthers),
                leader: self.leader_address(),
                ..Default::default()
            };
        }
        let Some(node) = b.node.socket_addr() else {
            return BeaconResponse {
                err: err(ErrorCode::InvalidParameters),
                ..Default::default()
            };
        };
        let now = Instant::now();
        // Not while a round replaces it as a primary, nor from a view read across such a
        // round: the answer renews the node's lease (the view is republished before the mark
        // goes, so a view read while no mark was set and the epoch stayed is current).
        let busy = || BeaconResponse {
            err: err(ErrorCode::Busy),
            leader: RpcAddress::new(self.options.me),
            ..Default::default()
        };
        let Some(epoch) = Deposing::clear_for(&self.deposing, node) else {
            return busy();
        };
        let (configs, dropped, gone) = {
            let view = self.view();
            // Copies it holds or lost: either must hear what became of them.
            let known: Vec<Gpid> = b.replicas.iter().chain(&b.errors).copied().collect();
            let mut configs: Vec<Assignment> = state::configs_for(&view, node, &known)
                .into_iter()
                .map(|(gpid, app)| assignment(app, gpid.partition_index))
                .collect();
            // A first-ballot partition another node reports holding is not fresh any more: a
            // member without its copy (its disk replaced or wiped while it was away) must not
            // create it empty.
            if configs.iter().any(|a| a.fresh) {
                let beats = self.beats.lock().expect("beats");
                let held: std::collections::HashSet<Gpid> = beats
                    .iter()
                    .filter(|(n, _)| **n != node)
                    .flat_map(|(_, beat)| beat.replicas.iter().copied())
                    .collect();
                for a in configs.iter_mut().filter(|a| a.fresh) {
                    a.fresh = !held.contains(&a.pid);
                }
            }
            // A node back with new disks (another disk id than it beaconed with before) is not
            // the node its first-ballot memberships were given to, whatever the others have
            // reported yet: none of those is fresh for it (it asks to be removed instead).
            let renewed = {
                let mut disks = self.disks.lock().expect("disks");
                let (id, before) = disks.entry(node).or_insert_with(|| {
                    self.disks_unsaved
                        .lock()
                        .expect("disks")
                        .push((node, b.disk_id));
                    (b.disk_id, Default::default())
                });
                if b.disk_id != 0 && *id != b.disk_id {
                    self.disks_unsaved
                        .lock()
                        .expect("disks")
                        .push((node, b.disk_id));
                    warn!(%node, "a node back with new disks: its copies are gone, none is fresh");
                    *id = b.disk_id;
                    *before = configs.iter().map(|a| a.pid).collect();
                }
                before.clone()
            };
            for a in configs.iter_mut().filter(|a| renewed.contains(&a.pid)) {
                a.fresh = false;
            }
            // Replicas held open and those closed on disk (a dropped table's): either may be
            // gone by now.
            let reported: Vec<Gpid> = b.replicas.iter().chain(&b.closed).copied().collect();
            let (mut dropped, mut gone) = state::retired(&view, &reported);
            dropped.retain(|g| !b.closed.contains(g));
            // Copies the balancer moved away from this node, no longer members here.
            let retired = self.retired.lock().expect("retired");
            gone.extend(b.replicas.iter().copied().filter(|g| {
                retired.contains(&(node, *g))
                    && view
                        .get(&g.app_id)
                        .and_then(|a| a.partitions.get(g.partition_index as usize))
                        .is_some_and(|p| !p.has_member(node))
            }));
            (configs, dropped, gone)
        };
        {
            // The lease this answer gives runs from before now: noted under the same lock as
            // the marks, so a replacement marked after this waits it out (see `publish`).
            let d = self.deposing.lock().expect("deposing");
            if d.epoch != epoch || d.nodes.contains_key(&node) {
                return busy();
            }
            self.leased
                .lock()
                .expect("leased")
                .insert(node, Instant::now());
        }
        let news = {
            let mut beats = self.beats.lock().expect("beats");
            let news = beats.get(&node).is_none_or(|last| {
                last.replicas != b.replicas
                    || last.errors != b.errors
                    || last.lossy != b.lossy
                    || last.ballots != b.ballots
                    || now.duration_since(last.at) > self.options.fd_check
            });
            beats.insert(node, Beat::new(b, now));
            news
        };
        if news {
            self.news.notify_one();
        }
        BeaconResponse {
            err: err(ErrorCode::Ok),
            leader: RpcAddress::new(self.options.me),
            configs,
            dropped,
            gone,
        }
    }

    /// A replica server's last beacon on a clean stop, from `peer`: taken for dead at the next
    /// `tend` (a leader only; a follower points to the leader).
    fn leaving_beacon(&self, b: &BeaconRequest, peer: std::net::IpAddr) -> BeaconResponse {
        if !self.is_leader() {
            return BeaconResponse {
                err: err(ErrorCode::ForwardToOthers),
                leader: self.leader_address(),
                ..Default::default()
            };
        }
        match b.node.socket_addr() {
            Some(node) if std::net::IpAddr::V4(*node.ip()) == peer || peer.is_loopback() => {
                self.leaving
                    .lock()
                    .expect("leaving")
                    .push((node, Instant::now()));
                self.news.notify_one();
                BeaconResponse {
                    err: err(ErrorCode::Ok),
                    leader: RpcAddress::new(self.options.me),
                    ..Default::default()
                }
            }
            _ => BeaconResponse {
                err: err(ErrorCode::InvalidParameters),
                ..Default::default()
            },
        }
    }

    async fn serve(self: Arc<Self>, request: Request, reply: Reply) {
        macro_rules! answer {
            ($args:ty, $f:expr) => {
                match request.args::<$args>() {
                    Ok(a) => {
                        let r = $f(a).await;
                        reply.send(ErrorCode::Ok, Some(&r))
                    }
                    Err(e) => {
                        warn!(rpc = %request.message.name, "bad request: {e}");
                        reply.error(ErrorCode::InvalidParameters)
                    }
                }
            };
        }
        let name = request.message.name.as_str();
        if ADMIN_RPCS.contains(&name) && !self.options.admin_allowed.allows(reply.peer().ip()) {
            warn!(rpc = name, peer = %reply.peer(), "admin request refused: not in `[security] admin_allowed_hosts`");
            return reply.error(ErrorCode::AclDeny);
        }
        match name {
            rpc::QUERY_CONFIG => answer!(QueryCfgRequest, |a| self.query_config(a)),
            rpc::BEACON => match request.args::<BeaconRequest>() {
                // Only the node itself may say it leaves (taking a live node for dead would
                // move its copies for nothing).
                Ok(b) if b.leaving => {
                    let r = self.leaving_beacon(&b, reply.peer().ip());
                    reply.send(ErrorCode::Ok, Some(&r))
                }
                Ok(b) => {
                    let r = self.beacon(b).await;
                    reply.send(ErrorCode::Ok, Some(&r))
                }
                Err(e) => {
                    warn!(rpc = name, "bad request: {e}");
                    reply.error(ErrorCode::InvalidParameters)
                }
            },
            rpc::PROPOSE_BALANCER => answer!(BalancerRequest, |a| self.propose_balancer(a)),
            rpc::UPDATE_CONFIG => answer!(UpdateConfigRequest, |a| self.update_config(a)),
            rpc::CREATE_APP => answer!(CreateAppRequest, |a| self.create_app(a)),
            rpc::DROP_APP => answer!(DropAppRequest, |a| self.drop_app(a)),
            rpc::RECALL_APP => answer!(RecallAppRequest, |a| self.recall_app(a)),
            rpc::LIST_APPS => answer!(ListAppsRequest, |a| self.list_apps(a)),
            rpc::LIST_NODES => answer!(ListNodesRequest, |a| self.list_nodes(a)),
            rpc::CLUSTER_INFO => answer!(ClusterInfoRequest, |_| self.cluster_info()),
            rpc::UPDATE_APP_ENV => answer!(UpdateAppEnvRequest, |a| self.update_app_env(a)),
            rpc::CONTROL_META => answer!(MetaControlRequest, |a| self.control_meta(a)),
            rpc::QUERY_MANUAL_COMPACT => answer!(QueryManualCompactRequest, |a| async {
                self.query_manual_compact(a)
            }),
            rpc::REPORT_AVAILABILITY => answer!(AvailabilityReport, |a| async {
                self.availability_reported(a)
            }),
            rpc::ADD_BACKUP_POLICY => {
                answer!(AddBackupPolicyRequest, |a| self.add_backup_policy(a))
            }
            rpc::MODIFY_BACKUP_POLICY => {
                answer!(ModifyBackupPolicyRequest, |a| self.modify_backup_policy(a))
            }
            rpc::QUERY_BACKUP_POLICY => answer!(QueryBackupPolicyRequest, |a| async {
                self.query_backup_policy(a)
            }),
            rpc::START_BACKUP_APP => answer!(StartBackupAppRequest, |a| self.start_backup_app(a)),
            rpc::QUERY_BACKUP_STATUS => answer!(QueryBackupStatusRequest, |a| async {
                self.query_backup_status(a)
            }),
            rpc::START_RESTORE => answer!(RestoreRequest, |a| self.start_restore(a)),
            rpc::QUERY_RESTORE_STATUS => answer!(QueryRestoreRequest, |a| async {
                self.query_restore_status(a)
            }),
            rpc::REPORT_RESTORE_STATUS => answer!(ReportRestoreStatusRequest, |a| async {
                self.report_restore_status(a)
            }),
            _ => reply.error(ErrorCode::HandlerNotFound),
        }
    }
}

/// Members' configuration changes waiting at most for the state lock; past it `ERR_BUSY`.
const MAX_PENDING_CHANGES: usize = 20_000;

fn update_answer(code: ErrorCode, config: Assignment) -> UpdateConfigResponse {
    UpdateConfigResponse {
        err: err(code),
        config,
    }
}

impl Service for MetaServer {
    fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>) {
        for (request, reply) in batch {
            tokio::spawn(Arc::clone(self).serve(request, reply));
        }
    }

    fn http(
        self: &Arc<Self>,
        req: crate::http::HttpRequest,
    ) -> impl std::future::Future<Output = crate::http::HttpResponse> + Send {
        Arc::clone(self).serve_http(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_are_bounded() {
        let limits = CreateLimits::default();
        assert!(limits.check("t", 8, 3).is_ok());
        assert!(limits.check("t", 4096, 1).is_ok());
        assert!(limits.check("t", 4096, 5).is_ok());
        for (name, partitions, replicas) in [
            ("", 8, 3),
            ("t", 0, 3),
            ("t", -1, 3),
            ("t", 4097, 3),
            ("t", i32::MAX, 3),
            ("t", 8, 0),
            ("t", 8, 6),
            ("t", 8, i32::MIN),
        ] {
            assert!(
                limits.check(name, partitions, replicas).is_err(),
                "{name:?} {partitions} {replicas}"
            );
        }
    }
}
