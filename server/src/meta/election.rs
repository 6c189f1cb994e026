//! The election: a meta leads while its lock node is the first under the cluster's lock path
//! and its ZooKeeper session lives; it takes the cluster's state from ZooKeeper when it wins,
//! tends the cluster while it leads, and joins again with a new session when its own expired.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pegasus_protocol::types::*;
use tracing::{error, info, warn};

use super::state::Cluster;
use super::zk::ZkError;
use super::{AbortOnDrop, MetaError, MetaServer, unix_now};

impl MetaServer {
    /// Runs the election, the failure detector and the session watch until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future) -> Result<(), MetaError> {
        // The election on its own task: confirming the leadership must not wait behind a cure
        // that waits for the state lock (held across slow ZooKeeper writes).
        let election = {
            let meta = Arc::clone(&self);
            AbortOnDrop(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    if let Err(e) = meta.elect().await {
                        warn!("leader election: {e}");
                    }
                }
            }))
        };
        // Running backups are driven apart from tending: their rounds wait on primaries.
        let backups = {
            let meta = Arc::clone(&self);
            AbortOnDrop(tokio::spawn(async move {
                let mut tick = tokio::time::interval(super::backup::ROUND);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = meta.backup_started.notified() => {}
                    }
                    if meta.is_leader() {
                        meta.backup_round().await;
                    }
                }
            }))
        };
        let result = self.watch_and_tend(shutdown).await;
        drop(backups);
        drop(election);
        if result.is_ok() {
            // A clean stop: nothing more is written, and the next meta leads at once.
            self.leader.store(false, Ordering::Release);
            self.zk.lead_with(None);
            let lock_node = self.lock_node.lock().expect("lock node").clone();
            self.zk.resign(&lock_node).await;
            info!(lock_node, "left the leader election");
        }
        result
    }

    /// Follows the ZooKeeper session, and tends the cluster while leading.
    pub(super) async fn watch_and_tend(
        self: &Arc<Self>,
        shutdown: impl std::future::Future,
    ) -> Result<(), MetaError> {
        let mut watcher = self.zk.state_watcher();
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
                        Expired => {
                            // Everything the meta knows is in ZooKeeper: a new session and a
                            // new place in the election are a restart without a supervisor.
                            self.leader.store(false, Ordering::Release);
                            self.zk.lead_with(None);
                            warn!("ZooKeeper session expired: not the leader; opening a new session");
                            tokio::select! {
                                _ = &mut shutdown => return Ok(()),
                                () = self.rejoin() => {}
                            }
                            watcher = self.zk.state_watcher();
                        }
                        Closed | AuthFailed => {
                            self.leader.store(false, Ordering::Release);
                            error!("ZooKeeper session {state:?}: exiting");
                            return Err(MetaError::SessionLost(format!("{state:?}")));
                        }
                        _ => {}
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

    /// Opens a new ZooKeeper session and joins the election again, retrying until ZooKeeper
    /// answers.
    pub(super) async fn rejoin(&self) {
        let mut pause = Duration::from_millis(200);
        loop {
            let joined = async {
                self.zk.renew().await?;
                self.zk.join_election(&self.options.me.to_string()).await
            };
            match joined.await {
                Ok(node) => {
                    info!(
                        lock_node = node,
                        "new ZooKeeper session: joined the election again"
                    );
                    *self.lock_node.lock().expect("lock node") = node;
                    return;
                }
                Err(e) => {
                    warn!("new ZooKeeper session: {e}; again in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    pub(super) async fn elect(&self) -> Result<(), ZkError> {
        if !self.zk.connected() {
            return Ok(());
        }
        let asked = Instant::now();
        let Some((node, addr)) = self.zk.leader().await? else {
            return Ok(());
        };
        *self.leader_addr.lock().expect("leader") = addr.parse().ok();
        let mine = self.lock_node.lock().expect("lock node").clone();
        if node != mine {
            self.zk.lead_with(None);
            if self.leader.swap(false, Ordering::AcqRel) {
                warn!(leader = addr, "no longer the leader");
            }
            return Ok(());
        }
        // ZooKeeper said so as of `asked`: another meta can lead only once this session has
        // expired, a whole session timeout after ZooKeeper last heard from us (at `asked` or
        // later). Two thirds of it leave room for clocks and scheduling.
        *self.leader_until.lock().expect("leader until") =
            Some(asked + self.options.zk.session_timeout * 2 / 3);
        if self.is_leader() {
            return Ok(());
        }
        // Take over: every write from now on is fenced with this lock node, so that none lands
        // once another meta leads. Then load everything from ZooKeeper, or bootstrap the
        // default tables.
        self.zk.lead_with(Some(&mine));
        let loading = Instant::now();
        let mut cluster = match self.zk.load().await? {
            Some(c) => {
                info!(
                    tables = c.apps.len(),
                    partitions = c.apps.values().map(|a| a.partitions.len()).sum::<usize>(),
                    ms = loading.elapsed().as_millis() as u64,
                    "loaded the cluster's state from ZooKeeper"
                );
                c
            }
            None => {
                self.zk.init_apps().await?;
                let mut c = Cluster::default();
                for b in &self.options.bootstrap_apps {
                    let mut app = c.new_app(&b.name, b.partitions, b.replicas, unix_now());
                    app.info.envs = b.envs.clone();
                    self.zk.save_app(&app).await?;
                    info!(
                        table = b.name,
                        partitions = b.partitions,
                        "created at bootstrap"
                    );
                    c.apps.insert(app.info.app_id, app);
                }
                c
            }
        };
        cluster.presume_alive(Instant::now());
        if let Some(level) = self.zk.load_level().await? {
            match meta_function_level::parse(&level) {
                Some(l) => self.level.store(l, Ordering::Release),
                None => warn!(level, "unknown meta level in ZooKeeper, ignored"),
            }
        }
        // Disk ids as the leaders before knew them.
        let disks = self.zk.load_disks().await?;
        *self.disks.lock().expect("disks") = disks
            .into_iter()
            .map(|(node, id)| (node, (id, Default::default())))
            .collect();
        self.load_backups().await?;
        let mut state = self.lock().await;
        *state = cluster;
        self.leader.store(true, Ordering::Release);
        info!(lock_node = mine, "became the leader");
        self.cure(&mut state).await;
        Ok(())
    }
}
