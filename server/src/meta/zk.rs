//! The only place that talks to ZooKeeper: the `cluster_root` layout and the leader lock
//! (`pegasus-facts.md` §6).
//!
//! ```text
//! <cluster_root>/apps                      "unlock"
//! <cluster_root>/apps/<app_id>             app_info JSON
//! <cluster_root>/apps/<app_id>/<pidx>      partition_configuration JSON
//! <lock_root>/dsn.meta.server.leader/LOCKNODE<seq>   ephemeral, value "ip:port"
//! ```
//!
//! The meta with the smallest `LOCKNODE` sequence is the leader.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use zookeeper_client::{Acls, Client, CreateMode, SessionState, StateWatcher};

use super::state::{App, AppInfo, Cluster, PartitionConfig};
use crate::metrics::Latency;

/// Nodes written in one ZooKeeper transaction at most (well inside its 1 MiB request bound:
/// a partition's configuration is a few hundred bytes).
const MULTI_OPS: usize = 500;

/// The lock id Pegasus uses.
const LOCK_ID: &str = "dsn.meta.server.leader";

/// A ZooKeeper failure.
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    /// No server of the list answered in time.
    #[error("cannot connect to ZooKeeper at `{hosts}` within {timeout:?}: {source}")]
    Connect {
        /// `[zookeeper] hosts_list`.
        hosts: String,
        /// The connection timeout.
        timeout: Duration,
        /// Why.
        source: zookeeper_client::Error,
    },
    /// An operation failed.
    #[error("ZooKeeper `{path}`: {source}")]
    Op {
        /// The node.
        path: String,
        /// Why.
        source: zookeeper_client::Error,
    },
    /// This meta does not hold the leader lock (any more): a write of the cluster's state is
    /// refused, by ZooKeeper itself when the lock node it was made under is gone.
    #[error("not the meta leader (lock node `{lock}`): ZooKeeper `{path}` not written")]
    Fenced {
        /// The lock node this meta led with, if any.
        lock: String,
        /// The node it would have written.
        path: String,
    },
    /// A node holds data that is not what this server writes.
    #[error("ZooKeeper `{path}` holds unreadable data: {message}")]
    Data {
        /// The node.
        path: String,
        /// Why.
        message: String,
    },
}

/// Partitions read at once when a meta loads a table (each a request of its own, pipelined).
const LOAD_WINDOW: usize = 500;

/// A batch refused by the fence: `first` for its first node, the same refusal for the others.
fn refuse_rest(saved: &mut Vec<Result<(), ZkError>>, first: ZkError, batch: &[(String, Vec<u8>)]) {
    saved.push(Err(first));
    saved.extend(batch[1..].iter().map(|(path, _)| {
        Err(ZkError::Fenced {
            lock: String::new(),
            path: path.clone(),
        })
    }));
}

/// A node's data as this server writes it.
fn parse_json<T: serde::de::DeserializeOwned>(path: &str, data: &[u8]) -> Result<T, ZkError> {
    serde_json::from_slice(data).map_err(|e| ZkError::Data {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn op(path: &str) -> impl Fn(zookeeper_client::Error) -> ZkError + '_ {
    move |source| ZkError::Op {
        path: path.to_owned(),
        source,
    }
}

/// How to reach ZooKeeper: `[zookeeper]` of config.ini.
#[derive(Clone, Debug, Default)]
pub struct ZkConfig {
    /// `hosts_list`: `ip:port,…`.
    pub hosts: String,
    /// `timeout_ms`: the session timeout.
    pub session_timeout: Duration,
    /// `user:password` for ZooKeeper's `digest` scheme (`auth_digest`, or the first line of
    /// `auth_digest_file`). With it, every node this server creates is readable and writable by
    /// that identity only (ZooKeeper's `creator_all`), so other clients cannot rewrite the
    /// cluster's metadata; without it, by anyone.
    pub digest: Option<String>,
}

impl ZkConfig {
    fn acls(&self) -> Acls<'static> {
        if self.digest.is_some() {
            Acls::creator_all()
        } else {
            Acls::anyone_all()
        }
    }
}

/// What a write of the cluster's state must prove.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fence {
    /// A tool's session: nothing (it writes as the operator asked).
    None,
    /// A meta that does not lead: every write refused.
    NotLeader,
    /// A meta that leads with this lock node (its path): every write is a ZooKeeper
    /// transaction that first checks the node exists. It is ephemeral to the session that won
    /// the election and sequence nodes never come back, so a write from a meta deposed since
    /// (its session expired, or renewed under running handlers) fails as a whole.
    Leader(String),
}

/// A session with the cluster's ZooKeeper.
pub struct Zk {
    config: ZkConfig,
    /// Writes of the cluster's state are fenced with the leader lock ([`Zk::lead_with`]).
    fence: std::sync::Mutex<Fence>,
    /// The session; replaced by [`Zk::renew`] when it expired.
    client: std::sync::Mutex<Client>,
    root: String,
    lock_dir: String,
    /// Times of reads and of writes of the cluster's state.
    reads: Latency,
    writes: Latency,
}

impl Zk {
    /// Connects and makes sure `root` and the lock dir exist.
    pub async fn connect(config: &ZkConfig, root: &str, lock_root: &str) -> Result<Zk, ZkError> {
        let mut zk = Self::connect_only(config).await?;
        zk.fence = std::sync::Mutex::new(Fence::NotLeader);
        zk.root = root.trim_end_matches('/').to_owned();
        zk.lock_dir = format!("{}/{LOCK_ID}", lock_root.trim_end_matches('/'));
        zk.mkdir(&zk.root).await?;
        zk.mkdir(&zk.lock_dir).await?;
        Ok(zk)
    }

    /// The current session.
    fn client(&self) -> Client {
        self.client.lock().expect("zk client").clone()
    }

    /// Opens a new session in place of an expired one (whose ephemeral nodes, the election's
    /// lock node among them, are gone).
    pub async fn renew(&self) -> Result<(), ZkError> {
        let client = Self::session(&self.config).await?;
        *self.client.lock().expect("zk client") = client;
        Ok(())
    }

    async fn mkdir(&self, path: &str) -> Result<(), ZkError> {
        match self
            .client()
            .mkdir(path, &CreateMode::Persistent.with_acls(self.config.acls()))
            .await
        {
            Ok(()) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
            Err(e) => Err(op(path)(e)),
        }
    }

    /// Watches the session: expiry means this meta must stop at once.
    pub fn state_watcher(&self) -> StateWatcher {
        self.client().state_watcher()
    }

    /// Whether the session is connected now.
    pub fn connected(&self) -> bool {
        matches!(
            self.client().state(),
            SessionState::SyncConnected | SessionState::ConnectedReadOnly
        )
    }

    /// Fences every later write of the cluster's state with the leader lock `lock_node` (a
    /// name [`Zk::join_election`] returned, which [`Zk::leader`] named the leader), or, with
    /// `None`, refuses them: a meta calls it as it takes over and as it steps down.
    pub fn lead_with(&self, lock_node: Option<&str>) {
        *self.fence.lock().expect("fence") = match lock_node {
            Some(name) => Fence::Leader(format!("{}/{name}", self.lock_dir)),
            None => Fence::NotLeader,
        };
    }

    /// Starts a transaction of writes under the fence; `Err` when this meta does not lead.
    fn fenced<'a>(
        &self,
        client: &'a Client,
        path: &str,
    ) -> Result<(zookeeper_client::MultiWriter<'a>, Option<String>), ZkError> {
        let fence = self.fence.lock().expect("fence").clone();
        let mut multi = client.new_multi_writer();
        match fence {
            Fence::None => Ok((multi, None)),
            Fence::NotLeader => Err(ZkError::Fenced {
                lock: String::new(),
                path: path.to_owned(),
            }),
            Fence::Leader(lock) => {
                multi.add_check_version(&lock, -1).map_err(op(&lock))?;
                Ok((multi, Some(lock)))
            }
        }
    }

    /// Commits a transaction [`Zk::fenced`] began: the fence's check failing is
    /// [`ZkError::Fenced`]; another operation failing is its error, with its index among the
    /// caller's operations.
    async fn commit(
        mut multi: zookeeper_client::MultiWriter<'_>,
        lock: Option<String>,
        path: &str,
    ) -> Result<(), (Option<usize>, ZkError)> {
        let checked = usize::from(lock.is_some());
        match multi.commit().await {
            Ok(_) => Ok(()),
            Err(zookeeper_client::MultiWriteError::OperationFailed { index, source }) => {
                if index < checked {
                    Err((
                        None,
                        ZkError::Fenced {
                            lock: lock.unwrap_or_default(),
                            path: path.to_owned(),
                        },
                    ))
                } else {
                    Err((Some(index - checked), op(path)(source)))
                }
            }
            Err(e) => Err((None, op(path)(e.into()))),
        }
    }

    /// Joins the leader election; returns this meta's lock node name.
    pub async fn join_election(&self, me: &str) -> Result<String, ZkError> {
        let prefix = format!("{}/LOCKNODE", self.lock_dir);
        let (_, seq) = self
            .client()
            .create(
                &prefix,
                me.as_bytes(),
                &CreateMode::EphemeralSequential.with_acls(self.config.acls()),
            )
            .await
            .map_err(op(&prefix))?;
        Ok(format!("LOCKNODE{seq}"))
    }

    /// Leaves the leader election (a clean stop): the lock node goes now, so the next meta leads
    /// at once instead of after this session's timeout. Best effort.
    pub async fn resign(&self, lock_node: &str) {
        let path = format!("{}/{lock_node}", self.lock_dir);
        match self.client().delete(&path, None).await {
            Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => tracing::warn!("leaving the election ({path}): {e}"),
        }
    }

    /// The current leader: its lock node name and address.
    pub async fn leader(&self) -> Result<Option<(String, String)>, ZkError> {
        let mut children = self
            .client()
            .list_children(&self.lock_dir)
            .await
            .map_err(op(&self.lock_dir))?;
        children.sort_by_key(|c| {
            c.trim_start_matches("LOCKNODE")
                .parse::<u64>()
                .unwrap_or(u64::MAX)
        });
        let Some(first) = children.into_iter().next() else {
            return Ok(None);
        };
        let path = format!("{}/{first}", self.lock_dir);
        match self.client().get_data(&path).await {
            Ok((data, _)) => Ok(Some((first, String::from_utf8_lossy(&data).into_owned()))),
            // It went away between the two calls: ask again next round.
            Err(zookeeper_client::Error::NoNode) => Ok(None),
            Err(e) => Err(op(&path)(e)),
        }
    }

    fn apps_path(&self) -> String {
        format!("{}/apps", self.root)
    }

    fn disks_path(&self) -> String {
        format!("{}/disks", self.root)
    }

    /// The disk id each replica server last beaconed with: kept, so that a new leader fences a
    /// node back with new disks as the old one would have.
    pub async fn load_disks(&self) -> Result<HashMap<SocketAddrV4, i64>, ZkError> {
        let path = self.disks_path();
        let nodes = match self.client().list_children(&path).await {
            Ok(nodes) => nodes,
            Err(zookeeper_client::Error::NoNode) => return Ok(HashMap::new()),
            Err(e) => return Err(op(&path)(e)),
        };
        let mut disks = HashMap::new();
        for name in nodes {
            let Ok(node) = name.parse::<SocketAddrV4>() else {
                continue;
            };
            let child = format!("{path}/{name}");
            match self.client().get_data(&child).await {
                Ok((data, _)) => {
                    if let Some(id) = std::str::from_utf8(&data).ok().and_then(|t| t.parse().ok()) {
                        disks.insert(node, id);
                    }
                }
                Err(zookeeper_client::Error::NoNode) => {}
                Err(e) => return Err(op(&child)(e)),
            }
        }
        Ok(disks)
    }

    /// Keeps the disk id `node` beacons with.
    pub async fn save_disk(&self, node: SocketAddrV4, id: i64) -> Result<(), ZkError> {
        // The first disk id saved makes the parent node, once, not before every save.
        self.save_child(
            &self.disks_path(),
            &node.to_string(),
            id.to_string().as_bytes(),
        )
        .await
    }

    fn backups_path(&self) -> String {
        format!("{}/backup_once", self.root)
    }

    /// Keeps a backup's record (JSON) as `<root>/backup_once/<name>`.
    pub async fn save_backup(&self, name: &str, record: &[u8]) -> Result<(), ZkError> {
        self.save_child(&self.backups_path(), name, record).await
    }

    /// Forgets a backup's record.
    pub async fn delete_backup(&self, name: &str) -> Result<(), ZkError> {
        self.delete_tree(&format!("{}/{name}", self.backups_path()))
            .await
            .map(|_| ())
    }

    /// Every backup's record, by node name.
    pub async fn load_backups(&self) -> Result<Vec<(String, Vec<u8>)>, ZkError> {
        self.load_children(&self.backups_path()).await
    }

    fn policies_path(&self) -> String {
        format!("{}/backup_policies", self.root)
    }

    /// Keeps a backup policy (JSON) as `<root>/backup_policies/<name>`.
    pub async fn save_policy(&self, name: &str, policy: &[u8]) -> Result<(), ZkError> {
        self.save_child(&self.policies_path(), name, policy).await
    }

    /// Every backup policy, by name.
    pub async fn load_policies(&self) -> Result<Vec<(String, Vec<u8>)>, ZkError> {
        self.load_children(&self.policies_path()).await
    }

    /// Sets `<path>/<name>`, making `path` first if it is missing.
    async fn save_child(&self, path: &str, name: &str, data: &[u8]) -> Result<(), ZkError> {
        let node = format!("{path}/{name}");
        let written = self.write(&node, data).await;
        let Err(ZkError::Op {
            source: zookeeper_client::Error::NoNode,
            ..
        }) = written
        else {
            return written;
        };
        let create = CreateMode::Persistent.with_acls(self.config.acls());
        match self.client().create(path, b"", &create).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => return Err(op(path)(e)),
        }
        self.write(&node, data).await
    }

    /// The children of `path` with their data, by name (none when `path` is missing).
    async fn load_children(&self, path: &str) -> Result<Vec<(String, Vec<u8>)>, ZkError> {
        let names = match self.client().list_children(path).await {
            Ok(names) => names,
            Err(zookeeper_client::Error::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(op(path)(e)),
        };
        let mut children = Vec::new();
        for name in names {
            let child = format!("{path}/{name}");
            match self.client().get_data(&child).await {
                Ok((data, _)) => children.push((name, data)),
                Err(zookeeper_client::Error::NoNode) => {}
                Err(e) => return Err(op(&child)(e)),
            }
        }
        children.sort();
        Ok(children)
    }

    /// Loads every table; `None` when the cluster was never bootstrapped.
    pub async fn load(&self) -> Result<Option<Cluster>, ZkError> {
        let apps_path = self.apps_path();
        let ids = match self.client().list_children(&apps_path).await {
            Ok(ids) => ids,
            Err(zookeeper_client::Error::NoNode) => return Ok(None),
            Err(e) => return Err(op(&apps_path)(e)),
        };
        let mut cluster = Cluster::default();
        for id in ids {
            let path = format!("{apps_path}/{id}");
            let info: AppInfo = self.read_json(&path).await?;
            // An expired table is a tombstone: its info only.
            let count = if info.expired() {
                0
            } else {
                info.partition_count
            };
            let mut partitions = Vec::with_capacity(count.max(0) as usize);
            let client = self.client();
            for start in (0..count).step_by(LOAD_WINDOW) {
                let paths: Vec<String> = (start..count.min(start + LOAD_WINDOW as i32))
                    .map(|p| format!("{path}/{p}"))
                    .collect();
                let started = std::time::Instant::now();
                // Each read is sent as it is made (the client pipelines them): one round trip
                // for the window, not one per partition.
                let reads: Vec<_> = paths.iter().map(|p| client.get_data(p)).collect();
                for (p, read) in paths.iter().zip(reads) {
                    let (data, _) = read.await.map_err(op(p))?;
                    partitions.push(parse_json::<PartitionConfig>(p, &data)?);
                }
                // One round trip, timed as one (as a transaction of writes is).
                self.reads.observe(started.elapsed());
            }
            cluster.apps.insert(info.app_id, App { info, partitions });
        }
        Ok(Some(cluster))
    }

    /// Times its reads and writes of the cluster's state in `reads` and `writes`.
    pub fn set_metrics(&mut self, reads: Latency, writes: Latency) {
        self.reads = reads;
        self.writes = writes;
    }

    async fn read_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ZkError> {
        let started = std::time::Instant::now();
        let read = self.client().get_data(path).await;
        self.reads.observe(started.elapsed());
        let (data, _) = read.map_err(op(path))?;
        parse_json(path, &data)
    }

    async fn write(&self, path: &str, data: &[u8]) -> Result<(), ZkError> {
        let started = std::time::Instant::now();
        let written = self.write_untimed(path, data).await;
        self.writes.observe(started.elapsed());
        written
    }

    /// Sets `path` to `data`, creating it if missing, under the fence.
    async fn write_untimed(&self, path: &str, data: &[u8]) -> Result<(), ZkError> {
        let client = self.client();
        let (mut multi, lock) = self.fenced(&client, path)?;
        multi.add_set_data(path, data, None).map_err(op(path))?;
        match Self::commit(multi, lock, path).await {
            Ok(()) => Ok(()),
            Err((
                Some(0),
                ZkError::Op {
                    source: zookeeper_client::Error::NoNode,
                    ..
                },
            )) => {
                let (mut multi, lock) = self.fenced(&client, path)?;
                let create = CreateMode::Persistent.with_acls(self.config.acls());
                multi.add_create(path, data, &create).map_err(op(path))?;
                Self::commit(multi, lock, path).await.map_err(|(_, e)| e)
            }
            Err((_, e)) => Err(e),
        }
    }

    /// Marks the tables root as bootstrapped (`"unlock"`).
    pub async fn init_apps(&self) -> Result<(), ZkError> {
        self.write(&self.apps_path(), b"unlock").await
    }

    /// Writes a table and all its partitions: in ZooKeeper transactions of up to [`MULTI_OPS`]
    /// nodes each (one ZooKeeper log write each, where one per node made a table of 3,000
    /// partitions take a minute); a transaction that finds a node there already (a table
    /// written before) is done node by node.
    pub async fn save_app(&self, app: &App) -> Result<(), ZkError> {
        let path = format!("{}/{}", self.apps_path(), app.info.app_id);
        let mut nodes = vec![(
            path.clone(),
            serde_json::to_vec(&app.info).expect("serializable"),
        )];
        nodes.extend(app.partitions.iter().enumerate().map(|(p, config)| {
            (
                format!("{path}/{p}"),
                serde_json::to_vec(config).expect("serializable"),
            )
        }));
        let started = std::time::Instant::now();
        let client = self.client();
        let create = CreateMode::Persistent.with_acls(self.config.acls());
        for batch in nodes.chunks(MULTI_OPS) {
            let (mut multi, lock) = self.fenced(&client, &batch[0].0)?;
            for (p, data) in batch {
                multi.add_create(p, data, &create).map_err(op(p))?;
            }
            match Self::commit(multi, lock, &batch[0].0).await {
                Ok(()) => {}
                Err((
                    Some(_),
                    ZkError::Op {
                        source: zookeeper_client::Error::NodeExists,
                        ..
                    },
                )) => {
                    for (p, data) in batch {
                        self.write_untimed(p, data).await?;
                    }
                }
                Err((_, e)) => return Err(e),
            }
        }
        self.writes.observe(started.elapsed());
        Ok(())
    }

    /// Writes a table's info only.
    pub async fn save_app_info(&self, info: &AppInfo) -> Result<(), ZkError> {
        let path = format!("{}/{}", self.apps_path(), info.app_id);
        self.write(&path, &serde_json::to_vec(info).expect("serializable"))
            .await
    }

    /// Deletes a table's partitions (its info stays, as the table's tombstone).
    pub async fn delete_partitions(&self, app_id: i32, count: i32) -> Result<(), ZkError> {
        for p in 0..count {
            self.delete_tree(&format!("{}/{app_id}/{p}", self.apps_path()))
                .await?;
        }
        Ok(())
    }

    fn level_path(&self) -> String {
        format!("{}/meta_function_level", self.root)
    }

    /// Keeps the meta level (`freezed`, `steady`, `lively`).
    pub async fn save_level(&self, level: &str) -> Result<(), ZkError> {
        self.write(&self.level_path(), level.as_bytes()).await
    }

    /// The meta level kept, if one was set.
    pub async fn load_level(&self) -> Result<Option<String>, ZkError> {
        let path = self.level_path();
        match self.client().get_data(&path).await {
            Ok((data, _)) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
            Err(zookeeper_client::Error::NoNode) => Ok(None),
            Err(e) => Err(op(&path)(e)),
        }
    }

    /// Deletes `path` and everything below it (cluster cleaning); a missing path is not an error.
    pub async fn delete_tree(&self, path: &str) -> Result<usize, ZkError> {
        let mut order = vec![path.trim_end_matches('/').to_owned()];
        let mut i = 0;
        while i < order.len() {
            let node = order[i].clone();
            match self.client().list_children(&node).await {
                Ok(children) => order.extend(children.into_iter().map(|c| format!("{node}/{c}"))),
                Err(zookeeper_client::Error::NoNode) => {}
                Err(e) => return Err(op(&node)(e)),
            }
            i += 1;
        }
        let mut deleted = 0;
        let client = self.client();
        for node in order.iter().rev() {
            let (mut multi, lock) = self.fenced(&client, node)?;
            multi.add_delete(node, None).map_err(op(node))?;
            match Self::commit(multi, lock, node).await {
                Ok(()) => deleted += 1,
                Err((
                    Some(_),
                    ZkError::Op {
                        source: zookeeper_client::Error::NoNode,
                        ..
                    },
                )) => {}
                Err((_, e)) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// Connects without creating anything (for tools).
    pub async fn connect_only(config: &ZkConfig) -> Result<Zk, ZkError> {
        Ok(Zk {
            client: std::sync::Mutex::new(Self::session(config).await?),
            fence: std::sync::Mutex::new(Fence::None),
            config: config.clone(),
            root: String::new(),
            lock_dir: String::new(),
            reads: Latency::default(),
            writes: Latency::default(),
        })
    }

    async fn session(config: &ZkConfig) -> Result<Client, ZkError> {
        let timeout = config.session_timeout.min(Duration::from_secs(10));
        let failed = |source| ZkError::Connect {
            hosts: config.hosts.clone(),
            timeout,
            source,
        };
        let mut connector = Client::connector()
            .with_session_timeout(config.session_timeout)
            .with_connection_timeout(timeout);
        if let Some(digest) = &config.digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        tokio::time::timeout(timeout, connector.connect(&config.hosts))
            .await
            .map_err(|_| failed(zookeeper_client::Error::Timeout))?
            .map_err(failed)
    }

    /// The cluster root's format mark (`<root>/format`): written when absent; a newer one than
    /// this build's ends start-up (see [`crate::format`]).
    pub async fn check_format(&self) -> Result<(), super::MetaError> {
        let path = format!("{}/format", self.root);
        let text = match self.client().get_data(&path).await {
            Ok((data, _)) => Some(String::from_utf8_lossy(&data).into_owned()),
            Err(zookeeper_client::Error::NoNode) => None,
            Err(e) => return Err(op(&path)(e).into()),
        };
        let place = format!("ZooKeeper `{path}`");
        if crate::format::check_mark(&place, text.as_deref())? {
            let create = CreateMode::Persistent.with_acls(self.config.acls());
            let mark = crate::format::FORMAT.to_string();
            match self.client().create(&path, mark.as_bytes(), &create).await {
                Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                Err(e) => return Err(op(&path)(e).into()),
            }
        }
        Ok(())
    }

    /// Writes partitions in ZooKeeper transactions of up to [`MULTI_OPS`] nodes (a restarted
    /// node's thousands of ballot changes must not take one round trip each); a transaction
    /// that fails is written again node by node. How each write went, in order.
    pub async fn save_partitions(
        &self,
        configs: &[(i32, i32, &PartitionConfig)],
    ) -> Vec<Result<(), ZkError>> {
        let nodes: Vec<(String, Vec<u8>)> = configs
            .iter()
            .map(|(app_id, pidx, config)| {
                (
                    format!("{}/{app_id}/{pidx}", self.apps_path()),
                    serde_json::to_vec(config).expect("serializable"),
                )
            })
            .collect();
        let mut saved = Vec::with_capacity(nodes.len());
        for batch in nodes.chunks(MULTI_OPS) {
            if batch.len() > 1 {
                let started = std::time::Instant::now();
                let client = self.client();
                let (mut multi, lock) = match self.fenced(&client, &batch[0].0) {
                    Ok(m) => m,
                    Err(e) => {
                        refuse_rest(&mut saved, e, batch);
                        continue;
                    }
                };
                let added = batch
                    .iter()
                    .all(|(p, data)| multi.add_set_data(p, data, None).is_ok());
                if added {
                    match Self::commit(multi, lock, &batch[0].0).await {
                        Ok(()) => {
                            self.writes.observe(started.elapsed());
                            saved.extend(batch.iter().map(|_| Ok(())));
                            continue;
                        }
                        Err((None, e @ ZkError::Fenced { .. })) => {
                            // Deposed: no write of this batch may land, one by one neither.
                            refuse_rest(&mut saved, e, batch);
                            continue;
                        }
                        Err(_) => {}
                    }
                }
            }
            for (p, data) in batch {
                saved.push(self.write(p, data).await);
            }
        }
        saved
    }
}
