//! The MetaServer: cluster state in ZooKeeper, one leader elected through it, routing for
//! clients, beacons and assignments for replica servers, and the admin RPCs of the shell.
//!
//! # Layout
//! - [`zk`]: the only place that talks to ZooKeeper
//! - [`state`]: tables, partitions, nodes, and the assignment decisions
//!
//! The state lock is held across ZooKeeper writes (a change is persisted before anyone hears of
//! it), so nothing time-critical waits for it: beacons are recorded apart from it and answered,
//! as routing queries are, from the tables as last persisted. A slow ZooKeeper delays changes,
//! never a lease.
//!
//! Followers answer routing queries and beacons with `ERR_FORWARD_TO_OTHERS` and the leader's
//! address, as Pegasus metas do. A meta whose ZooKeeper session is lost stops acting as leader at
//! once; one whose session expired exits (a supervisor restarts it), as Pegasus does.

pub mod state;
pub mod zk;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::{Request, RequestMeta};
use pegasus_protocol::types::*;
use tracing::{error, info, warn};

use self::state::{App, Changed, Cluster};
use self::zk::{Zk, ZkError};
use crate::net::{Reply, Service};

/// What the meta role needs from the config.
#[derive(Clone, Debug)]
pub struct MetaOptions {
    /// This meta's advertised address.
    pub me: SocketAddrV4,
    /// `[zookeeper] hosts_list`.
    pub zk_hosts: String,
    /// `[zookeeper] timeout_ms`.
    pub zk_timeout: Duration,
    /// `[meta_server] cluster_root`.
    pub cluster_root: String,
    /// `[meta_server] distributed_lock_service_parameters`.
    pub lock_root: String,
    /// `[replication] cluster_name`.
    pub cluster_name: String,
    /// `[meta_server] server_list`.
    pub meta_servers: Vec<SocketAddr>,
    /// Tables created at first bootstrap (`[meta_server.apps.*]`): name, partitions, replicas.
    pub bootstrap_apps: Vec<(String, i32, i32)>,
    /// `[replication] fd_grace_seconds`.
    pub fd_grace: Duration,
    /// `[replication] fd_check_interval_seconds`.
    pub fd_check: Duration,
    /// `[meta_server] min_live_node_count_for_unfreeze`.
    pub min_live_nodes: usize,
    /// What a create request may ask for.
    pub create_limits: CreateLimits,
    /// `[replication] mutation_2pc_min_replica_count`: fewer members cannot write.
    pub min_2pc: usize,
    /// `[meta_server] replica_assign_delay_ms_for_dropouts`: how long a partition short of a
    /// copy waits for the node that dropped it before a new copy is made elsewhere.
    pub dropout_delay: Duration,
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
    /// The ZooKeeper session expired: this meta must stop.
    #[error("ZooKeeper session expired: this meta stops (its supervisor restarts it)")]
    SessionExpired,
}

/// The meta role.
pub struct MetaServer {
    options: MetaOptions,
    zk: Zk,
    lock_node: String,
    leader: AtomicBool,
    leader_addr: Mutex<Option<SocketAddrV4>>,
    state: tokio::sync::Mutex<Cluster>,
    /// The tables as last persisted, republished when a [`StateGuard`] that changed them goes.
    view: Mutex<Arc<BTreeMap<i32, App>>>,
    /// The last beacon of each replica server, folded into `state` by [`MetaServer::tend`].
    beats: Mutex<HashMap<SocketAddrV4, Beat>>,
    /// Rung by a beacon with news (a node new or back, a change in what it holds).
    news: tokio::sync::Notify,
    /// Announces configuration changes to the replica servers.
    client: pegasus_client::Client,
}

/// A replica server's last beacon.
#[derive(Debug)]
struct Beat {
    /// When it came.
    at: Instant,
    /// The replicas it holds.
    replicas: Vec<Gpid>,
    /// The replicas it lost.
    errors: Vec<Gpid>,
    /// The commit point of each of `replicas`.
    committed: Vec<i64>,
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
        let zk = Zk::connect(
            &options.zk_hosts,
            options.zk_timeout,
            &options.cluster_root,
            &options.lock_root,
        )
        .await?;
        let lock_node = zk.join_election(&options.me.to_string()).await?;
        info!(
            lock_node,
            root = options.cluster_root,
            "meta joined the leader election"
        );
        Ok(Arc::new(MetaServer {
            options,
            zk,
            lock_node,
            leader: AtomicBool::new(false),
            leader_addr: Mutex::new(None),
            state: tokio::sync::Mutex::new(Cluster::default()),
            view: Mutex::default(),
            beats: Mutex::default(),
            news: tokio::sync::Notify::new(),
            client: pegasus_client::Client::new(pegasus_client::ClientOptions::new(Vec::new())),
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

    /// Whether this meta is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    fn leader_address(&self) -> RpcAddress {
        self.leader_addr
            .lock()
            .expect("leader")
            .map_or(RpcAddress::INVALID, RpcAddress::new)
    }

    /// Runs the election, the failure detector and the session watch until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future) -> Result<(), MetaError> {
        let mut watcher = self.zk.state_watcher();
        let mut election = tokio::time::interval(Duration::from_secs(1));
        let mut detector = tokio::time::interval(self.options.fd_check);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                state = watcher.changed() => {
                    use zookeeper_client::SessionState::*;
                    match state {
                        Disconnected
                            // Not leader while the session is in doubt; regained on reconnect.
                            if self.leader.swap(false, Ordering::AcqRel) => {
                                warn!("ZooKeeper disconnected: stop acting as leader");
                            }
                        Expired | Closed | AuthFailed => {
                            self.leader.store(false, Ordering::Release);
                            error!("ZooKeeper session {state:?}: exiting");
                            return Err(MetaError::SessionExpired);
                        }
                        _ => {}
                    }
                }
                _ = election.tick() => {
                    if let Err(e) = self.elect().await {
                        warn!("leader election: {e}");
                    }
                }
                _ = detector.tick() => {
                    if self.is_leader() {
                        self.tend().await;
                    }
                }
                _ = self.news.notified() => {
                    if self.is_leader() {
                        self.tend().await;
                    }
                }
            }
        }
    }

    async fn elect(&self) -> Result<(), ZkError> {
        if !self.zk.connected() {
            return Ok(());
        }
        let Some((node, addr)) = self.zk.leader().await? else {
            return Ok(());
        };
        *self.leader_addr.lock().expect("leader") = addr.parse().ok();
        if node != self.lock_node {
            if self.leader.swap(false, Ordering::AcqRel) {
                warn!(leader = addr, "no longer the leader");
            }
            return Ok(());
        }
        if self.is_leader() {
            return Ok(());
        }
        // Take over: load everything from ZooKeeper, or bootstrap the default tables.
        let mut cluster = match self.zk.load().await? {
            Some(c) => c,
            None => {
                self.zk.init_apps().await?;
                let mut c = Cluster::default();
                for (name, partitions, replicas) in &self.options.bootstrap_apps {
                    let app = c.new_app(name, *partitions, *replicas, unix_now());
                    self.zk.save_app(&app).await?;
                    info!(table = name, partitions, "created at bootstrap");
                    c.apps.insert(app.info.app_id, app);
                }
                c
            }
        };
        // Primaries recorded in ZooKeeper get one grace period to beacon before they count as
        // dead; without this, a new leader would strip every primary at once.
        let now = Instant::now();
        let known: Vec<SocketAddrV4> = cluster
            .apps
            .values()
            .flat_map(|a| {
                a.partitions
                    .iter()
                    .flat_map(|p| p.primary_addr().into_iter().chain(p.secondary_addrs()))
            })
            .collect();
        for node in known {
            cluster.nodes.entry(node).or_insert(state::Node {
                last_beacon: now,
                alive: true,
                replicas: Vec::new(),
                errors: Vec::new(),
            });
        }
        let mut state = self.lock().await;
        *state = cluster;
        self.leader.store(true, Ordering::Release);
        info!(lock_node = self.lock_node, "became the leader");
        self.cure(&mut state).await;
        Ok(())
    }

    /// Folds the beacons in, marks nodes past their grace dead, and cures.
    async fn tend(&self) {
        let mut state = self.lock().await;
        let beats: Vec<(SocketAddrV4, Beat)> = {
            let beats = self.beats.lock().expect("beats");
            beats
                .iter()
                .filter(|(node, beat)| {
                    state
                        .nodes
                        .get(node)
                        .is_none_or(|n| n.last_beacon < beat.at)
                })
                .map(|(node, beat)| {
                    let copy = Beat {
                        at: beat.at,
                        replicas: beat.replicas.clone(),
                        errors: beat.errors.clone(),
                        committed: beat.committed.clone(),
                    };
                    (*node, copy)
                })
                .collect()
        };
        for (node, beat) in beats {
            state.note_committed(node, &beat.replicas, &beat.committed);
            if state.beacon(node, beat.replicas, beat.errors, beat.at) {
                info!(%node, "replica server alive");
            }
        }
        let dead = state.expire(Instant::now(), self.options.fd_grace);
        if !dead.is_empty() {
            warn!(?dead, "replica servers past their grace period");
        }
        self.cure(&mut state).await;
    }

    /// Cures what needs it (see [`Cluster::assign`]), persists and announces the changes.
    async fn cure(&self, state: &mut Cluster) {
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
    }

    /// Sends a configuration to a replica server (its answer is not needed: beacons repeat
    /// configurations, and proposals are made again).
    fn propose(&self, gpid: Gpid, node: SocketAddrV4, proposal: Assignment) {
        let client = self.client.clone();
        tokio::spawn(async move {
            let meta = RequestMeta {
                app_id: gpid.app_id,
                partition_index: gpid.partition_index,
                ..RequestMeta::default()
            };
            let _ = client
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
        for c in changed {
            let gpid = Gpid::new(c.app_id, c.pidx);
            let config = state.apps[&c.app_id].partitions[c.pidx as usize].clone();
            if let Err(e) = self.zk.save_partition(c.app_id, c.pidx, &config).await {
                error!(%gpid, "persisting the configuration failed, change undone: {e}");
                state.apps.get_mut(&c.app_id).expect("app").partitions[c.pidx as usize] = c.before;
                continue;
            }
            info!(%gpid, ballot = config.ballot, primary = config.primary, secondaries = ?config.secondaries, last_drops = ?config.last_drops, "configuration changed");
            let proposal = assignment(&state.apps[&c.app_id], c.pidx);
            let mut nodes: Vec<SocketAddrV4> = c
                .before
                .primary_addr()
                .into_iter()
                .chain(c.before.secondary_addrs())
                .chain(config.primary_addr())
                .chain(config.secondary_addrs())
                .collect();
            nodes.sort();
            nodes.dedup();
            for node in nodes {
                self.propose(gpid, node, proposal.clone());
            }
        }
    }

    /// `RPC_CM_UPDATE_PARTITION_CONFIGURATION`: a member asks to remove a node, or a restarted
    /// primary for the next ballot.
    async fn update_config(&self, r: UpdateConfigRequest) -> UpdateConfigResponse {
        let answer = |code: ErrorCode, config: Assignment| UpdateConfigResponse {
            err: err(code),
            config,
        };
        if !self.is_leader() {
            return answer(ErrorCode::ForwardToOthers, Assignment::default());
        }
        let Some(node) = r.node.socket_addr() else {
            return answer(ErrorCode::InvalidParameters, Assignment::default());
        };
        let mut state = self.lock().await;
        let result = match r.config_type {
            config_type::DOWNGRADE_TO_INACTIVE => state.remove_member(r.pid, r.ballot, node),
            config_type::PRIMARY_FORCE_UPDATE_BALLOT => state.raise_ballot(r.pid, r.ballot, node),
            config_type::UPGRADE_TO_SECONDARY => state.upgrade(r.pid, r.ballot, node),
            _ => return answer(ErrorCode::NotImplemented, Assignment::default()),
        };
        let code = match result {
            Ok(changed) => {
                if let Some(c) = changed {
                    info!(gpid = %r.pid, %node, ballot = r.ballot, config_type = r.config_type, "configuration change asked by a member");
                    self.publish(&mut state, vec![c]).await;
                    self.cure(&mut state).await;
                }
                ErrorCode::Ok
            }
            Err(_) if state.partition(r.pid).is_some() => ErrorCode::InvalidVersion,
            Err(_) => return answer(ErrorCode::ObjectNotFound, Assignment::default()),
        };
        let app = &state.apps[&r.pid.app_id];
        answer(code, assignment(app, r.pid.partition_index))
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
                configs: Vec::new(),
            };
        }
        let Some(node) = b.node.socket_addr() else {
            return BeaconResponse {
                err: err(ErrorCode::InvalidParameters),
                ..Default::default()
            };
        };
        let now = Instant::now();
        let configs = {
            let view = self.view();
            state::configs_for(&view, node, &b.replicas)
                .into_iter()
                .map(|(gpid, app)| assignment(app, gpid.partition_index))
                .collect()
        };
        let news = {
            let mut beats = self.beats.lock().expect("beats");
            let news = beats.get(&node).is_none_or(|last| {
                last.replicas != b.replicas
                    || last.errors != b.errors
                    || now.duration_since(last.at) > self.options.fd_check
            });
            let beat = Beat {
                at: now,
                replicas: b.replicas,
                errors: b.errors,
                committed: b.committed,
            };
            beats.insert(node, beat);
            news
        };
        if news {
            self.news.notify_one();
        }
        BeaconResponse {
            err: err(ErrorCode::Ok),
            leader: RpcAddress::new(self.options.me),
            configs,
        }
    }

    async fn create_app(&self, r: CreateAppRequest) -> AppResponse {
        if !self.is_leader() {
            return AppResponse {
                err: err(ErrorCode::ForwardToOthers),
                app_id: 0,
            };
        }
        if let Err(why) =
            self.options
                .create_limits
                .check(&r.app_name, r.partition_count, r.replica_count)
        {
            warn!(table = r.app_name, "create refused: {why}");
            return AppResponse {
                err: err(ErrorCode::InvalidParameters),
                app_id: 0,
            };
        }
        let mut state = self.lock().await;
        let alive = state.alive_count();
        if r.replica_count as usize > alive {
            warn!(
                table = r.app_name,
                replicas = r.replica_count,
                alive,
                "create refused: more copies than alive replica servers"
            );
            return AppResponse {
                err: err(ErrorCode::InvalidParameters),
                app_id: 0,
            };
        }
        if state.app_by_name(&r.app_name).is_some() {
            return AppResponse {
                err: err(ErrorCode::AppExist),
                app_id: 0,
            };
        }
        let app = state.new_app(&r.app_name, r.partition_count, r.replica_count, unix_now());
        let app_id = app.info.app_id;
        if let Err(e) = self.zk.save_app(&app).await {
            error!("creating table {}: {e}", r.app_name);
            return AppResponse {
                err: err(ErrorCode::Unknown),
                app_id: 0,
            };
        }
        state.apps.insert(app_id, app);
        self.cure(&mut state).await;
        info!(
            table = r.app_name,
            app_id,
            partitions = r.partition_count,
            "table created"
        );
        AppResponse {
            err: err(ErrorCode::Ok),
            app_id,
        }
    }

    async fn drop_app(&self, r: DropAppRequest) -> AppResponse {
        if !self.is_leader() {
            return AppResponse {
                err: err(ErrorCode::ForwardToOthers),
                app_id: 0,
            };
        }
        let mut state = self.lock().await;
        let Some(app_id) = state.app_by_name(&r.app_name).map(|a| a.info.app_id) else {
            return AppResponse {
                err: err(ErrorCode::AppNotExist),
                app_id: 0,
            };
        };
        let app = state.apps.get_mut(&app_id).expect("found");
        app.info.status = "AS_DROPPED".into();
        app.info.drop_second = unix_now();
        if let Err(e) = self.zk.save_app_info(&app.info).await {
            error!("dropping table {}: {e}", r.app_name);
            return AppResponse {
                err: err(ErrorCode::Unknown),
                app_id,
            };
        }
        info!(table = r.app_name, app_id, "table dropped");
        AppResponse {
            err: err(ErrorCode::Ok),
            app_id,
        }
    }

    async fn list_apps(&self) -> ListAppsResponse {
        if !self.is_leader() {
            return ListAppsResponse {
                err: err(ErrorCode::ForwardToOthers),
                apps: Vec::new(),
            };
        }
        let state = self.lock().await;
        let apps = state
            .apps
            .values()
            .map(|a| {
                let (healthy, write_unhealthy, read_unhealthy) =
                    state.health(a, self.options.min_2pc);
                AppSummary {
                    app_id: a.info.app_id,
                    app_name: a.info.app_name.clone(),
                    status: a.info.status.clone(),
                    app_type: a.info.app_type.clone(),
                    partition_count: a.info.partition_count,
                    replica_count: a.info.max_replica_count,
                    fully_healthy: healthy,
                    unhealthy: a.info.partition_count - healthy,
                    create_second: a.info.create_second,
                    write_unhealthy,
                    read_unhealthy,
                }
            })
            .collect();
        ListAppsResponse {
            err: err(ErrorCode::Ok),
            apps,
        }
    }

    async fn list_nodes(&self) -> ListNodesResponse {
        if !self.is_leader() {
            return ListNodesResponse {
                err: err(ErrorCode::ForwardToOthers),
                nodes: Vec::new(),
            };
        }
        let state = self.lock().await;
        let mut nodes: Vec<NodeSummary> = state
            .nodes
            .iter()
            .map(|(addr, n)| {
                let (primaries, secondaries) = state.role_counts(addr);
                NodeSummary {
                    address: RpcAddress::new(*addr),
                    alive: n.alive,
                    primary_count: primaries as i32,
                    replica_count: n.replicas.len() as i32,
                    secondary_count: secondaries as i32,
                }
            })
            .collect();
        nodes.sort_by_key(|n| n.address);
        ListNodesResponse {
            err: err(ErrorCode::Ok),
            nodes,
        }
    }

    fn cluster_info(&self) -> ClusterInfoResponse {
        let metas = self
            .options
            .meta_servers
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let leader = self
            .leader_addr
            .lock()
            .expect("leader")
            .map_or_else(String::new, |a| a.to_string());
        let pairs = [
            ("meta_servers", metas),
            ("primary_meta_server", leader),
            ("zookeeper_hosts", self.options.zk_hosts.clone()),
            ("zookeeper_root", self.options.cluster_root.clone()),
            ("meta_function_level", "steady".to_owned()),
            ("cluster_name", self.options.cluster_name.clone()),
        ];
        ClusterInfoResponse {
            err: err(ErrorCode::Ok),
            keys: pairs.iter().map(|(k, _)| (*k).to_owned()).collect(),
            values: pairs.into_iter().map(|(_, v)| v).collect(),
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
        match request.message.name.as_str() {
            rpc::QUERY_CONFIG => answer!(QueryCfgRequest, |a| self.query_config(a)),
            rpc::BEACON => answer!(BeaconRequest, |a| self.beacon(a)),
            rpc::UPDATE_CONFIG => answer!(UpdateConfigRequest, |a| self.update_config(a)),
            rpc::CREATE_APP => answer!(CreateAppRequest, |a| self.create_app(a)),
            rpc::DROP_APP => answer!(DropAppRequest, |a| self.drop_app(a)),
            rpc::LIST_APPS => answer!(Empty, |_| self.list_apps()),
            rpc::LIST_NODES => answer!(Empty, |_| self.list_nodes()),
            rpc::CLUSTER_INFO => answer!(Empty, |_| async { self.cluster_info() }),
            _ => reply.error(ErrorCode::HandlerNotFound),
        }
    }
}

/// Partition `pidx` of `app` as replica servers are told it.
fn assignment(app: &App, pidx: i32) -> Assignment {
    let p = &app.partitions[pidx as usize];
    Assignment {
        pid: Gpid::new(app.info.app_id, pidx),
        partition_count: app.info.partition_count,
        ballot: p.ballot,
        primary: p.primary_rpc(),
        secondaries: p.secondary_rpcs(),
        max_replica_count: p.max_replica_count,
        learner: RpcAddress::INVALID,
    }
}

impl Service for MetaServer {
    fn handle(self: &Arc<Self>, batch: Vec<(Request, Reply)>) {
        for (request, reply) in batch {
            tokio::spawn(Arc::clone(self).serve(request, reply));
        }
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
