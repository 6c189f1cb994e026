//! The ReplicaServer: the partitions this node holds and the rrdb RPCs on them.
//!
//! # Layout
//! - [`backup`]: backups of its primaries uploaded, restored copies downloaded
//! - [`beacon`]: beacons to the meta leader, assignments, the lease
//! - [`boot`]: the boot a copy last ran in; a copy that may lack what it acknowledged
//! - [`dirs`]: data dirs, the blacklist, placement of new replicas
//! - [`envs`]: a table's environments (deny, throttling, usage scenario), and what they admit
//! - [`faults`]: injected disk faults and the sync ledger (tests)
//! - [`link`]: prepares to other replica servers, configuration changes to the meta
//! - [`metrics`]: requests, logs, prepares, learning, stores: `/metrics`
//! - [`partition`]: one replica: the handle the request paths hold, and its PacificA driver
//!   (write pipeline, prepares, learning)
//! - [`plog`]: the private log of each replica (replay, learning, GC)
//! - [`slog`]: the node's shared log: every partition's batches made durable in groups, replay
//!   of what the private logs lack
//! - [`pool`]: the threads that run every partition's driver (a bounded pool, not one each)
//! - [`storage`]: RocksDB per replica, key/value schema, TTL
//! - [`write`]: what each write does
//! - [`read`]: what each read returns
//! - `serve`: client requests (admission, writes, reads) and the network layer's `Service`
//! - `learn`: what other servers ask: prepares, learning, the meta's proposals
//! - `status`: `/metrics` samples, the status page, a copy's digest

pub mod backup;
pub mod beacon;
pub mod boot;
pub mod dirs;
pub mod envs;
pub mod faults;
pub mod link;
pub mod metrics;
pub mod partition;
pub mod plog;
pub mod pool;
pub mod read;
pub mod slog;
pub mod storage;
pub mod write;

mod learn;
mod serve;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::types::*;
use tracing::{debug, error, info, warn};

use self::dirs::{DataDirs, DirsError};
use self::link::Link;
use self::partition::{Partition, PartitionError, PartitionOptions, PartitionRole, Peers};

/// Why the replica stub cannot start or open a partition.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The data dirs are unusable.
    #[error(transparent)]
    Dirs(#[from] DirsError),
    /// A partition cannot be opened.
    #[error("replica {gpid}: {source}")]
    Partition {
        /// Which.
        gpid: Gpid,
        /// Why.
        source: PartitionError,
    },
    /// This node lost its copy (damaged and moved aside, or unable to open): it must not make a
    /// new, empty one in its place.
    #[error("replica {gpid} is lost on this node: {reason}")]
    Lost {
        /// Which.
        gpid: Gpid,
        /// Why.
        reason: String,
    },
    /// The shared log cannot be opened.
    #[error(transparent)]
    Slog(#[from] slog::SlogError),
}

/// A lease that ends on its own: an instant kept as nanoseconds since a fixed start, so every
/// request reads it with one atomic load.
struct Lease {
    start: Instant,
    /// Nanoseconds after `start` when it ends (0: never granted).
    until: AtomicU64,
    /// Whether the last look found it holding (to log the changes once).
    held: AtomicBool,
}

impl Lease {
    fn new(start: Instant) -> Self {
        Lease {
            start,
            until: AtomicU64::new(0),
            held: AtomicBool::new(false),
        }
    }

    /// Extends it; returns whether it had lapsed (or was never granted).
    fn extend(&self, until: Instant) -> bool {
        let nanos = until.saturating_duration_since(self.start).as_nanos() as u64;
        self.until.fetch_max(nanos, Ordering::AcqRel);
        !self.held.swap(true, Ordering::AcqRel)
    }

    fn holds(&self, now: Instant) -> bool {
        let now = now.saturating_duration_since(self.start).as_nanos() as u64;
        let holds = now < self.until.load(Ordering::Acquire);
        if !holds && self.held.swap(false, Ordering::AcqRel) {
            warn!("lease from the meta ran out: replicas inactive");
        }
        holds
    }
}

/// A replica as beacons report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Which.
    pub gpid: Gpid,
    /// Its commit point.
    pub committed: u64,
    /// When its last manual compaction finished (unix seconds, 0: never).
    pub compacted: i64,
    /// The configuration ballot it runs.
    pub ballot: u64,
}

/// Every partition replica of this node.
pub struct ReplicaStub {
    dirs: DataDirs,
    /// [`DataDirs::disk_id`], told the meta with every beacon.
    disk_id: i64,
    options: PartitionOptions,
    partitions: RwLock<HashMap<Gpid, Arc<Partition>>>,
    /// `None`: standalone, every open replica is the primary of a group of one (tests, tools).
    /// `Some`: the meta leader's configurations decide each replica's role.
    link: Option<Arc<Link>>,
    /// How its replicas reach their peers and the meta: the link, or what a simulation gives.
    peers: Option<Arc<dyn Peers>>,
    /// The lease from the meta (managed stubs only): nothing serves past it.
    lease: Lease,
    /// Held while a replica opens (one at a time), instead of the partitions' lock.
    opening: std::sync::Mutex<()>,
    /// Replicas this node lost, with why: found damaged (and moved aside, now or before) or
    /// unable to open. Reported to the meta with every beacon; never re-created empty.
    lost: RwLock<BTreeMap<Gpid, String>>,
    /// Replicas closed because their table was dropped, kept on disk for a recall; reported
    /// with every beacon until the meta says they are gone.
    closed: RwLock<std::collections::BTreeSet<Gpid>>,
    /// When each lost copy whose partition has no primary was last opened again
    /// ([`ReplicaStub::reopen_stopped`]).
    reopened: std::sync::Mutex<HashMap<Gpid, Instant>>,
    /// Partitions this node asked to leave for want of its copy, with the ballot it asked at:
    /// a proposal to create the copy fresh in that ballot or an earlier one was sent before the
    /// meta heard (a message delayed behind the request), and is not acted on.
    left: std::sync::Mutex<HashMap<Gpid, u64>>,
    /// When this process started (`/recentStartTime`).
    started: SystemTime,
    /// Backup uploads and restore downloads under way.
    jobs: backup::Jobs,
}

/// How often a lost copy whose partition has no primary is opened again.
const REOPEN_EVERY: Duration = Duration::from_secs(5);
/// How much a lost copy's disk must take (written and synced) before the copy is opened again.
const PROBE_BYTES: usize = 1 << 20;

/// Whether the disk holding `folder` serves writes again: [`PROBE_BYTES`] written, synced and
/// removed (a full disk refuses them), and no log write fault injected.
fn probe_disk(folder: &std::path::Path, faults: &faults::Faults) -> std::io::Result<()> {
    use std::io::Write;
    faults.check(faults::Point::PlogWrite)?;
    let probe = folder.join(".probe");
    let written = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written
}

/// Who manages a stub's replicas.
enum Managed {
    /// The metas, reached (as the peers are) over the link, whose calls run on the runtime.
    Link(Vec<SocketAddr>, tokio::runtime::Handle),
    /// A caller that plays the network and the meta.
    Peers(Arc<dyn Peers>),
}

/// Threads that open a node's replicas at start-up.
const OPENERS: usize = 4;

/// How opening one replica went.
type Opened = Result<Arc<Partition>, PartitionError>;

/// Opens every replica in `existing`, [`OPENERS`] at a time; the outcomes in order.
fn open_all(
    existing: &[(Gpid, PathBuf)],
    options: &PartitionOptions,
    peers: &Option<Arc<dyn Peers>>,
) -> Vec<Opened> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Opened>>> = existing
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..OPENERS.min(existing.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((gpid, path)) = existing.get(i) else {
                        break;
                    };
                    let opened = Partition::open(*gpid, path, options.clone(), peers.clone());
                    *slots[i].lock().expect("slot") = Some(opened);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().expect("slot").expect("opened"))
        .collect()
}

impl ReplicaStub {
    /// Opens the stub over `dirs` and every replica already on them (replaying their logs);
    /// every open replica serves, as the primary of a group of one (no meta).
    pub fn open(
        dirs: DataDirs,
        options: PartitionOptions,
    ) -> Result<Arc<ReplicaStub>, ReplicaError> {
        Self::open_with(dirs, options, None)
    }

    /// As [`ReplicaStub::open`], but each replica's role comes from the meta leader (`metas`),
    /// replicas serve only while the lease holds (see [`beacon`]), and primaries prepare to
    /// their secondaries; the calls that takes run on `runtime`.
    pub fn open_managed(
        dirs: DataDirs,
        options: PartitionOptions,
        metas: Vec<SocketAddr>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<ReplicaStub>, ReplicaError> {
        Self::open_with(dirs, options, Some(Managed::Link(metas, runtime)))
    }

    /// As [`ReplicaStub::open_managed`], but the replicas reach their peers and the meta
    /// through `peers`, and nothing reaches the stub but its caller's calls (the whole-server
    /// simulation plays the network and the meta).
    pub fn open_with_peers(
        dirs: DataDirs,
        options: PartitionOptions,
        peers: Arc<dyn Peers>,
    ) -> Result<Arc<ReplicaStub>, ReplicaError> {
        Self::open_with(dirs, options, Some(Managed::Peers(peers)))
    }

    fn open_with(
        dirs: DataDirs,
        options: PartitionOptions,
        managed: Option<Managed>,
    ) -> Result<Arc<ReplicaStub>, ReplicaError> {
        let existing = dirs.existing()?;
        let aside = dirs.moved_aside()?;
        for d in dirs.dirs() {
            backup::clear_staging(&d.reps);
        }
        let disk_id = dirs.disk_id().map_err(|source| DirsError::Io {
            path: dirs
                .dirs()
                .first()
                .map_or(String::new(), |d| d.reps.display().to_string()),
            source,
        })?;
        let is_managed = managed.is_some();
        let started_at = options.pool.now();
        let stub = Arc::new_cyclic(|weak| {
            let (link, peers) = match managed {
                Some(Managed::Link(metas, runtime)) => {
                    let link = Arc::new(Link::new(
                        metas,
                        runtime,
                        weak.clone(),
                        options.learn_rate,
                        Arc::clone(&options.metrics),
                        Arc::clone(&options.faults),
                    ));
                    (Some(Arc::clone(&link)), Some(link as Arc<dyn Peers>))
                }
                Some(Managed::Peers(peers)) => (None, Some(peers)),
                None => (None, None),
            };
            let mut partitions = HashMap::new();
            let mut lost = BTreeMap::new();
            // Opened a few at a time (RocksDB's open and the log's replay wait on the disk as
            // much as they compute): a node with thousands of copies starts in a fraction of
            // the time one after another took.
            let opened = open_all(&existing, &options, &peers);
            if let Some(slog) = &options.slog {
                // What it held for copies that did not open is of no use.
                slog.drop_replay();
            }
            // One bad replica costs that replica, never the node and its other replicas.
            for ((gpid, path), opened) in existing.into_iter().zip(opened) {
                match opened {
                    Ok(p) => {
                        partitions.insert(gpid, p);
                    }
                    Err(e) if e.is_damage() => {
                        let reason = e.to_string();
                        match dirs::move_aside(&path, &reason) {
                            Ok(aside) => {
                                error!(%gpid, aside = %aside.display(), "replica damaged, moved aside: {reason}")
                            }
                            Err(m) => {
                                error!(%gpid, "replica damaged: {reason}; moving it aside failed: {m}")
                            }
                        }
                        lost.insert(gpid, reason);
                    }
                    Err(e) => {
                        error!(%gpid, "replica cannot open: {e}");
                        lost.insert(gpid, e.to_string());
                    }
                }
            }
            for (gpid, path) in aside {
                if !partitions.contains_key(&gpid) {
                    lost.entry(gpid)
                        .or_insert_with(|| format!("moved aside as damaged: `{}`", path.display()));
                }
            }
            info!(
                replicas = partitions.len(),
                lost = lost.len(),
                managed = is_managed,
                "replica stub opened"
            );
            ReplicaStub {
                dirs,
                disk_id,
                options,
                partitions: RwLock::new(partitions),
                link,
                peers,
                lease: Lease::new(started_at),
                opening: std::sync::Mutex::new(()),
                lost: RwLock::new(lost),
                closed: RwLock::default(),
                reopened: Default::default(),
                left: Default::default(),
                started: SystemTime::now(),
                jobs: Default::default(),
            }
        });
        Ok(stub)
    }

    /// [`DataDirs::disk_id`].
    pub fn disk_id(&self) -> i64 {
        self.disk_id
    }

    /// The way to the meta and the other replica servers (managed stubs).
    pub fn link(&self) -> Option<&Arc<Link>> {
        self.link.as_ref()
    }

    /// Woken when one of its replicas' ballots changes (see
    /// [`partition::PartitionOptions::ballot_news`]).
    pub fn ballot_news(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.options.ballot_news)
    }

    /// The replicas that may lack writes they acknowledged (see [`boot`]), for the meta.
    pub fn lossy(&self) -> Vec<Gpid> {
        let mut lossy: Vec<Gpid> = self
            .partitions
            .read()
            .expect("partitions")
            .iter()
            .filter(|(_, p)| p.lossy())
            .map(|(g, _)| *g)
            .collect();
        lossy.sort();
        lossy
    }

    /// The replicas this node lost (damaged, unable to open, or stopped by a failed write: a
    /// full disk, an I/O error), with why. The meta hears of them with every beacon.
    pub fn lost(&self) -> BTreeMap<Gpid, String> {
        let mut lost = self.lost.read().expect("lost").clone();
        for (gpid, p) in self.partitions.read().expect("partitions").iter() {
            if let Some(why) = p.failure() {
                lost.entry(*gpid).or_insert_with(|| why.to_owned());
            }
        }
        lost
    }

    /// Replicas closed because their table was dropped, kept on disk.
    pub fn closed(&self) -> Vec<Gpid> {
        self.closed
            .read()
            .expect("closed")
            .iter()
            .copied()
            .collect()
    }

    /// The replica of `gpid`, if this node holds it.
    pub fn partition(&self, gpid: Gpid) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions")
            .get(&gpid)
            .cloned()
    }

    /// Every replica this node holds, in order, with what beacons report of it.
    pub fn held(&self) -> Vec<Held> {
        let mut held: Vec<Held> = self
            .partitions
            .read()
            .expect("partitions")
            .iter()
            .map(|(g, p)| Held {
                gpid: *g,
                committed: p.committed(),
                compacted: p.manual_compacted(),
                ballot: p.ballot(),
            })
            .collect();
        held.sort_by_key(|h| h.gpid);
        held
    }

    /// The beacon this node sends the meta now: every replica it holds with its commit point,
    /// last manual compaction and ballot, those it lost, those closed, its disk id, and those
    /// that may lack what they acknowledged.
    pub fn beacon(&self) -> BeaconRequest {
        let held = self.held();
        BeaconRequest {
            node: RpcAddress::new(self.options.me),
            replicas: held.iter().map(|h| h.gpid).collect(),
            errors: self.lost().into_keys().collect(),
            committed: held.iter().map(|h| h.committed as i64).collect(),
            compacted: held.iter().map(|h| h.compacted).collect(),
            ballots: held.iter().map(|h| h.ballot as i64).collect(),
            closed: self.closed(),
            disk_id: self.disk_id,
            lossy: self.lossy(),
            leaving: false,
        }
    }

    /// Opens (creating if needed) the replica of `gpid`, placed by the data-dir rule.
    pub fn open_partition(&self, gpid: Gpid) -> Result<Arc<Partition>, ReplicaError> {
        self.open_partition_from(gpid, None)
    }

    /// The folder a new replica of `gpid` goes in (the data-dir rule).
    fn place(&self, gpid: Gpid) -> PathBuf {
        let current: HashMap<Gpid, PathBuf> = self
            .partitions
            .read()
            .expect("partitions")
            .iter()
            .map(|(g, p)| (*g, p.dir().to_owned()))
            .collect();
        self.dirs.place(gpid, &current)
    }

    /// [`ReplicaStub::open_partition`]; one created goes in `at`'s folder, from its seed
    /// store if it has one (a restored copy).
    fn open_partition_from(
        &self,
        gpid: Gpid,
        at: Option<(PathBuf, Option<PathBuf>)>,
    ) -> Result<Arc<Partition>, ReplicaError> {
        if let Some(p) = self.partition(gpid) {
            return Ok(p);
        }
        if let Some(reason) = self.lost.read().expect("lost").get(&gpid) {
            return Err(ReplicaError::Lost {
                gpid,
                reason: reason.clone(),
            });
        }
        // Opens take turns with each other, never with requests: RocksDB's open and the plog's
        // replay run without the partitions' lock, which every request reads.
        let _turn = self.opening.lock().expect("opening");
        if let Some(p) = self.partition(gpid) {
            return Ok(p);
        }
        let (dir, seed) = at.unwrap_or_else(|| (self.place(gpid), None));
        let peers = self.peers.clone();
        let p = match Partition::open_seeded(
            gpid,
            &dir,
            seed.as_deref(),
            self.options.clone(),
            peers,
        ) {
            Ok(p) => p,
            Err(source) => {
                // A copy that cannot open (a full or failing disk, too many open files) is
                // reported lost with the next beacon, so that the meta moves its role away
                // instead of waiting on a live node that serves nothing; once the meta has
                // replaced it, it is forgotten and may be learned here again.
                let e = ReplicaError::Partition { gpid, source };
                error!(%gpid, "replica cannot open, reported lost: {e}");
                self.lost.write().expect("lost").insert(gpid, e.to_string());
                return Err(e);
            }
        };
        self.partitions
            .write()
            .expect("partitions")
            .insert(gpid, Arc::clone(&p));
        self.closed.write().expect("closed").remove(&gpid);
        Ok(p)
    }

    /// Applies the meta leader's configurations: opens (creating if needed) the replica of
    /// every partition this node is a member of, and hands each replica it holds its
    /// configuration (one no longer a member goes inactive). One that cannot open is skipped
    /// (and said so in the log); the others are configured all the same.
    pub fn apply_configs(&self, configs: &[Assignment]) {
        for a in configs {
            let config = pegasus_replication::Config {
                ballot: a.ballot.max(0) as u64,
                primary: a.primary.socket_addr(),
                secondaries: a
                    .secondaries
                    .iter()
                    .filter_map(|s| s.socket_addr())
                    .collect(),
            };
            if !config.has_member(&self.options.me)
                && config.primary.is_some()
                && self.forget_lost(a.pid)
            {
                continue;
            }
            if config.primary.is_none() {
                self.reopen_stopped(a.pid);
            }
            let on_disk =
                || self.partition(a.pid).is_some() || !self.dirs.folders(a.pid).is_empty();
            let stale_fresh = a.fresh
                && self
                    .left
                    .lock()
                    .expect("left")
                    .get(&a.pid)
                    .is_some_and(|b| config.ballot <= *b);
            let partition = if config.has_member(&self.options.me)
                && (!a.fresh || stale_fresh)
                && !on_disk()
            {
                // Listed as holding a copy this node does not have (its disk was replaced or
                // wiped while it was away, within the meta's grace): an empty store must not
                // serve as that copy. It asks to leave; the meta then has a copy learned.
                warn!(gpid = %a.pid, ballot = a.ballot, "a member without its copy: asking the meta to remove it");
                self.forget_restore(a.pid);
                self.left
                    .lock()
                    .expect("left")
                    .entry(a.pid)
                    .and_modify(|b| *b = (*b).max(config.ballot))
                    .or_insert(config.ballot);
                if let Some(peers) = &self.peers {
                    peers.update(
                        a.pid,
                        config.ballot,
                        self.options.me,
                        config_type::DOWNGRADE_TO_INACTIVE,
                    );
                }
                None
            } else if config.has_member(&self.options.me)
                && !on_disk()
                && let Some(source) = crate::backup::RestoreSource::from_envs(&a.envs)
            {
                // A copy of a restored table, first made here: built from the backup.
                let primary = config.primary == Some(self.options.me);
                match self.restored(a.pid, source, primary, || self.place(a.pid)) {
                    backup::Restored::Pending => None,
                    backup::Restored::Ready { dir, seed } => {
                        match self.open_partition_from(a.pid, Some((dir, seed))) {
                            Ok(p) => Some(p),
                            Err(e) => {
                                error!("configured {e}");
                                None
                            }
                        }
                    }
                }
            } else if config.has_member(&self.options.me) {
                match self.open_partition(a.pid) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        error!("configured {e}");
                        None
                    }
                }
            } else {
                self.partition(a.pid)
            };
            let learner = a.learner.socket_addr();
            if let Some(p) = partition {
                p.set_table_name(&a.app_name);
                p.set_envs(&a.envs, a.partition_count);
                if config.ballot > p.ballot() || p.role() != role_in(&config, self.options.me) {
                    p.configure(config, a.max_replica_count);
                }
                // The meta proposes a new copy to the primary (ADD_SECONDARY).
                if let Some(learner) = learner {
                    p.add_learner(learner);
                }
            }
        }
    }

    /// Forgets a copy this node lost (stopped by a failed write, or damaged) once the meta has
    /// replaced it: another node is primary and this one no member, so every committed write
    /// is on the members. The failed copy's files are deleted (a damaged one's stay aside, as
    /// evidence); this node no longer reports it, and the meta may have a new copy learned here
    /// once the disk serves again. Whether there was such a copy.
    fn forget_lost(&self, gpid: Gpid) -> bool {
        let failed = self.partition(gpid).filter(|p| p.failure().is_some());
        let lost = self.lost.read().expect("lost").contains_key(&gpid);
        if failed.is_none() && !lost {
            return false;
        }
        if let Some(p) = failed {
            self.partitions.write().expect("partitions").remove(&gpid);
            if let Err(e) = p.close() {
                debug!(%gpid, "closing a failed copy: {e}");
            }
            for folder in self.dirs.folders(gpid) {
                if let Err(e) = std::fs::remove_dir_all(&folder) {
                    warn!(%gpid, folder = %folder.display(), "deleting a failed copy: {e}");
                }
            }
        }
        self.lost.write().expect("lost").remove(&gpid);
        info!(%gpid, "a lost copy the meta replaced is forgotten: a new one may be learned here");
        true
    }

    /// Opens again a copy this node lost to its disk (a log write or an open that failed:
    /// full, failing, out of file descriptors) while its partition has no primary: the copy
    /// may be the one the partition needs (its last member), and once the disk serves again (a
    /// probe of [`PROBE_BYTES`] written and synced in its folder) it opens as a restart of the
    /// process would find it, up to what its log holds. Nothing it acknowledged is lost by
    /// that; a copy found damaged (moved aside) has no folder and is not tried. At most once
    /// in [`REOPEN_EVERY`] per copy.
    fn reopen_stopped(&self, gpid: Gpid) {
        let failed = self.partition(gpid).filter(|p| p.failure().is_some());
        if failed.is_none() && !self.lost.read().expect("lost").contains_key(&gpid) {
            return;
        }
        let Some(folder) = self.dirs.folders(gpid).into_iter().next() else {
            return;
        };
        let now = self.options.pool.now();
        {
            let mut reopened = self.reopened.lock().expect("reopened");
            if reopened
                .get(&gpid)
                .is_some_and(|at| now < *at + REOPEN_EVERY)
            {
                return;
            }
            reopened.insert(gpid, now);
        }
        if let Err(e) = probe_disk(&folder, &self.options.faults) {
            debug!(%gpid, "a lost copy's disk still fails: {e}");
            return;
        }
        if let Some(slog) = &self.options.slog
            && let Err(e) = slog.recover()
        {
            debug!(%gpid, "the shared log's disk still fails: {e}");
            return;
        }
        if let Some(p) = failed {
            self.partitions.write().expect("partitions").remove(&gpid);
            if let Err(e) = p.close() {
                debug!(%gpid, "closing a failed copy: {e}");
            }
        }
        self.lost.write().expect("lost").remove(&gpid);
        match self.open_partition(gpid) {
            Ok(_) => {
                info!(%gpid, "a lost copy of a partition without a primary opened again");
                self.reopened.lock().expect("reopened").remove(&gpid);
            }
            Err(e) => debug!(%gpid, "a lost copy still does not open: {e}"),
        }
    }

    /// Retires replicas the meta no longer wants here: those of `dropped` tables close, their
    /// files kept for a recall; those that are `gone` (their table's reserve ran out, or the
    /// balancer moved the copy to another node) close and their folders are deleted.
    pub fn retire(&self, dropped: &[Gpid], gone: &[Gpid]) {
        for (gpid, delete) in dropped
            .iter()
            .map(|g| (*g, false))
            .chain(gone.iter().map(|g| (*g, true)))
        {
            let closing = self.partitions.write().expect("partitions").remove(&gpid);
            if let Some(p) = closing {
                if let Err(e) = p.close() {
                    warn!(%gpid, "close: {e}");
                }
                info!(%gpid, delete, "replica closed: its table was dropped, or the copy moved");
            }
            if !delete {
                self.closed.write().expect("closed").insert(gpid);
            } else {
                self.closed.write().expect("closed").remove(&gpid);
                for folder in self.dirs.folders(gpid) {
                    match std::fs::remove_dir_all(&folder) {
                        Ok(()) => {
                            info!(%gpid, folder = %folder.display(), "replica deleted: gone (its table expired, or the copy moved)")
                        }
                        Err(e) => warn!(%gpid, folder = %folder.display(), "deleting: {e}"),
                    }
                }
            }
        }
    }

    /// Extends the lease from the meta to `until`: the time the answered beacon was *sent*
    /// plus `fd_lease_seconds`, so the lease ends before the meta's grace, counted from when it
    /// received that beacon, can give this node's partitions to another.
    pub fn grant_lease(&self, until: Instant) {
        if self.lease.extend(until) {
            info!("lease from the meta: serving");
        }
    }

    /// Whether this node serves a client's `write` or read of `gpid` now: `Err` with the
    /// error clients get otherwise. Only a primary serves; reads only once it has committed
    /// what a previous primary may have acknowledged.
    pub fn serves(&self, gpid: Gpid, write: bool) -> Result<Arc<Partition>, ErrorCode> {
        // Checked on every request, not once per round of beacons.
        if self.peers.is_some() && !self.lease.holds(self.options.pool.now()) {
            return Err(ErrorCode::InactiveState);
        }
        let partition = self.partition(gpid).ok_or(ErrorCode::ObjectNotFound)?;
        let serving = if write {
            partition.role() == PartitionRole::Primary
        } else {
            partition.readable()
        };
        if serving {
            Ok(partition)
        } else {
            Err(ErrorCode::InvalidState)
        }
    }

    /// Closes every replica (flushing their stores).
    pub fn close(&self) {
        let partitions: Vec<Arc<Partition>> = self
            .partitions
            .write()
            .expect("partitions")
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in partitions {
            if let Err(e) = p.close() {
                warn!(gpid = %p.gpid(), "close: {e}");
            }
        }
    }
}

/// The role `me` has in `config`.
fn role_in(config: &pegasus_replication::Config<SocketAddrV4>, me: SocketAddrV4) -> PartitionRole {
    if config.primary == Some(me) {
        PartitionRole::Primary
    } else if config.secondaries.contains(&me) {
        PartitionRole::Secondary
    } else {
        PartitionRole::Inactive
    }
}

impl PartitionRole {
    /// Its name in metrics and pages.
    pub fn name(self) -> &'static str {
        match self {
            PartitionRole::Primary => "primary",
            PartitionRole::Secondary => "secondary",
            PartitionRole::Learner => "learner",
            PartitionRole::Inactive => "inactive",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use pegasus_protocol::key::{self, value};

    use super::plog::{Mutation, Op, Plog};
    use super::write::WriteOp;
    use super::*;

    /// A stub without a meta (its replicas are groups of one) over data dirs in `root`, where
    /// replica `long` has a log of 150,000 mutations (about 5 MB) not yet in its store.
    fn stub_with_a_long_log(root: &std::path::Path, long: Gpid) -> Arc<ReplicaStub> {
        let dirs = DataDirs::new(&[], "replica", root, None).unwrap();
        let mut plog = Plog::open(
            &root.join(format!("reps/{long}.pegasus/plog")),
            1 << 30,
            0,
            |_| Ok(()),
        )
        .unwrap();
        plog.set_sync(false);
        let mut decree = 0;
        for _ in 0..150 {
            let batch: Vec<Mutation> = (0..1000)
                .map(|_| {
                    decree += 1;
                    Mutation {
                        ballot: 1,
                        decree,
                        ops: vec![Op::Put(
                            key::encode_key(b"h", format!("{decree}").as_bytes()).unwrap(),
                            value::encode(0, 0, b"value"),
                        )],
                    }
                })
                .collect();
            plog.append(&batch).unwrap();
        }
        drop(plog);
        Arc::new(ReplicaStub {
            dirs,
            disk_id: 1,
            options: PartitionOptions::default(),
            partitions: RwLock::default(),
            link: None,
            peers: None,
            lease: Lease::new(Instant::now()),
            opening: std::sync::Mutex::new(()),
            lost: RwLock::default(),
            closed: RwLock::default(),
            reopened: Default::default(),
            left: Default::default(),
            started: SystemTime::now(),
            jobs: Default::default(),
        })
    }

    /// Asserts that `work` took long enough to show anything, and that no request meanwhile
    /// waited a quarter of it.
    fn assert_not_held_up(work: &str, took: Duration, slowest: Duration) {
        assert!(
            took > Duration::from_millis(100),
            "{work} is too short to show anything: {took:?}"
        );
        assert!(
            slowest < took / 4,
            "a request waited {slowest:?} during {work} ({took:?})"
        );
    }

    #[test]
    fn a_fresh_proposal_delayed_past_a_request_to_leave_creates_no_copy() {
        let root = tempfile::tempdir().unwrap();
        let gpid = Gpid::new(1, 0);
        let options = PartitionOptions::default();
        let me = options.me;
        let dirs = DataDirs::new(&[], "replica", root.path(), None).unwrap();
        let stub = ReplicaStub::open(dirs, options).unwrap();
        // Listed as the primary of a copy it does not hold: it asks to leave, creates nothing.
        let listed = Assignment {
            pid: gpid,
            partition_count: 1,
            ballot: 1,
            primary: RpcAddress::new(me),
            ..Default::default()
        };
        stub.apply_configs(std::slice::from_ref(&listed));
        assert!(stub.partition(gpid).is_none());
        // The proposal that placed it, sent before the meta heard, arrives late: no empty copy
        // may become the primary of that ballot (the meta has another by then).
        let late = Assignment {
            fresh: true,
            ..listed.clone()
        };
        stub.apply_configs(&[late]);
        assert!(
            stub.partition(gpid).is_none(),
            "a delayed fresh proposal created the copy the node had asked to leave"
        );
        // A later ballot's is acted on.
        let later = Assignment {
            ballot: 2,
            fresh: true,
            ..listed
        };
        stub.apply_configs(&[later]);
        assert!(stub.partition(gpid).is_some());
    }

    #[test]
    fn a_primary_told_of_a_newer_ballot_answers_no_read_before_its_driver_takes_it_up() {
        /// Peers that never answer (the group here is of one).
        struct Alone;
        impl Peers for Alone {
            fn prepare(&self, _: SocketAddrV4, _: PrepareRequest, done: partition::PrepareDone) {
                done(None)
            }
            fn learn_add(&self, _: SocketAddrV4, _: LearnAddRequest) {}
            fn learn_done(&self, _: SocketAddrV4, _: LearnDoneRequest) {}
            fn learn(
                &self,
                _: SocketAddrV4,
                _: LearnRequest,
                _: PathBuf,
                done: partition::CopyDone,
            ) {
                done(Err("alone".into()))
            }
            fn update(&self, _: Gpid, _: u64, _: SocketAddrV4, _: i32) {}
        }
        let root = tempfile::tempdir().unwrap();
        let pool = pool::DriverPool::stepped(Instant::now());
        let options = PartitionOptions {
            pool: pool::LazyPool::of(Arc::clone(&pool)),
            ..PartitionOptions::default()
        };
        let me = options.me;
        let p = Partition::open(
            Gpid::new(1, 0),
            &root.path().join("1.0.pegasus"),
            options,
            Some(Arc::new(Alone)),
        )
        .unwrap();
        let alone = pegasus_replication::Config {
            ballot: 1,
            primary: Some(me),
            secondaries: Vec::new(),
        };
        p.configure(alone, 1);
        while pool.ready_count() > 0 {
            pool.run_ready(0);
        }
        assert!(p.readable(), "the primary of a group of one serves reads");
        let elsewhere = pegasus_replication::Config {
            ballot: p.ballot() + 1,
            primary: Some("127.0.0.9:34801".parse().unwrap()),
            secondaries: Vec::new(),
        };
        p.configure(elsewhere, 3);
        assert!(
            !p.readable(),
            "a read answered from the old ballot after the news of the new one came"
        );
        while pool.ready_count() > 0 {
            pool.run_ready(0);
        }
        assert!(!p.readable());
        assert_eq!(p.role(), PartitionRole::Inactive);
        p.close().unwrap();
    }

    #[test]
    fn a_copy_lost_to_its_disk_opens_again_once_its_partition_has_no_primary() {
        let root = tempfile::tempdir().unwrap();
        let gpid = Gpid::new(1, 0);
        let faults = Arc::new(faults::Faults::default());
        let options = PartitionOptions {
            faults: Arc::clone(&faults),
            ..PartitionOptions::default()
        };
        let dirs = || DataDirs::new(&[], "replica", root.path(), None).unwrap();
        let stub = ReplicaStub::open(dirs(), options.clone()).unwrap();
        stub.open_partition(gpid).unwrap();
        stub.close();
        drop(stub);
        // The disk fails as the server starts: the copy is reported lost.
        faults.inject(faults::Point::ReplicaOpen, Some(faults::Fault::Io));
        let stub = ReplicaStub::open(dirs(), options).unwrap();
        assert!(stub.lost().contains_key(&gpid));
        let no_primary = Assignment {
            pid: gpid,
            partition_count: 1,
            ballot: 3,
            ..Default::default()
        };
        // Tried again while the disk still fails: still lost.
        stub.apply_configs(std::slice::from_ref(&no_primary));
        assert!(stub.lost().contains_key(&gpid));
        // Opens would work, but the disk takes no write (full): not tried.
        faults.inject(faults::Point::ReplicaOpen, None);
        faults.inject(faults::Point::PlogWrite, Some(faults::Fault::NoSpace));
        stub.reopened.lock().unwrap().clear();
        stub.apply_configs(std::slice::from_ref(&no_primary));
        assert!(
            stub.lost().contains_key(&gpid),
            "opened on a disk that takes no write"
        );
        // The disk serves again; the next try comes only after a pause.
        faults.inject(faults::Point::PlogWrite, None);
        stub.apply_configs(std::slice::from_ref(&no_primary));
        assert!(stub.lost().contains_key(&gpid), "tried again at once");
        stub.reopened.lock().unwrap().clear();
        stub.apply_configs(std::slice::from_ref(&no_primary));
        assert!(stub.lost().is_empty(), "{:?}", stub.lost());
        assert!(stub.partition(gpid).is_some());
        // While another copy is primary, a lost copy is forgotten instead (not opened again).
        faults.inject(faults::Point::ReplicaOpen, Some(faults::Fault::Io));
        stub.close();
        drop(stub);
        let stub = ReplicaStub::open(
            dirs(),
            PartitionOptions {
                faults: Arc::clone(&faults),
                ..PartitionOptions::default()
            },
        )
        .unwrap();
        faults.inject(faults::Point::ReplicaOpen, None);
        let elsewhere = Assignment {
            primary: RpcAddress::new("127.0.0.9:34801".parse().unwrap()),
            ..no_primary
        };
        stub.apply_configs(&[elsewhere]);
        assert!(stub.lost().is_empty());
        assert!(stub.partition(gpid).is_none());
    }

    /// Regression guard: opening a replica held the partitions' write lock through RocksDB's
    /// open and the plog's replay, so every request to every other replica waited for it.
    #[test]
    fn opening_a_replica_does_not_hold_up_requests_to_the_others() {
        let root = tempfile::tempdir().unwrap();
        let stub = stub_with_a_long_log(root.path(), Gpid::new(1, 1));
        stub.open_partition(Gpid::new(1, 0)).unwrap();
        let opener = Arc::clone(&stub);
        let started = Instant::now();
        let opening = std::thread::spawn(move || opener.open_partition(Gpid::new(1, 1)).unwrap());
        let mut slowest = Duration::ZERO;
        while !opening.is_finished() {
            let asked = Instant::now();
            assert!(stub.partition(Gpid::new(1, 0)).is_some());
            slowest = slowest.max(asked.elapsed());
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = started.elapsed();
        opening.join().unwrap();
        assert_not_held_up("the open's replay", took, slowest);
        stub.close();
    }

    /// Regression guard: a learner far behind made its primary read the whole log on the
    /// partition's driver, so every write to the partition waited for the read (under a
    /// rolling upgrade, a copy learning again after its restart stalled writers 1–3 s).
    #[test]
    fn a_learner_reading_the_log_does_not_hold_up_writes() {
        let root = tempfile::tempdir().unwrap();
        let gpid = Gpid::new(1, 0);
        let stub = stub_with_a_long_log(root.path(), gpid);
        stub.open_partition(gpid).unwrap();
        let p = stub.partition(gpid).unwrap();
        let put = |n: u64| {
            let (tx, rx) = std::sync::mpsc::channel();
            p.submit(
                WriteOp::Put(UpdateRequest {
                    key: Blob::from(key::encode_key(b"w", format!("{n}").as_bytes()).unwrap()),
                    value: Blob::from(b"v".to_vec()),
                    expire_ts_seconds: 0,
                }),
                Box::new(move |r| {
                    let _ = tx.send(r.is_ok());
                }),
            );
            assert!(rx.recv().unwrap(), "write {n}");
        };
        put(0);
        let (tx, rx) = std::sync::mpsc::channel();
        let asked = Instant::now();
        p.checkpoint(
            LearnRequest {
                pid: gpid,
                ballot: p.ballot() as i64,
                learner: RpcAddress::new("10.0.0.9:34801".parse().unwrap()),
                applied: 0,
            },
            Box::new(move |copy| {
                let _ = tx.send((
                    copy.map(|(dir, at, tail)| (dir.is_none(), at, tail.len())),
                    Instant::now(),
                ));
            }),
        );
        let mut slowest = Duration::ZERO;
        let mut n = 1;
        let (copy, answered) = loop {
            if let Ok(answer) = rx.try_recv() {
                break answer;
            }
            let sent = Instant::now();
            put(n);
            n += 1;
            slowest = slowest.max(sent.elapsed());
        };
        let took = answered - asked;
        let (from_log, at, tail) = copy.unwrap();
        assert!(from_log && at == 0, "a copy from the log");
        assert!(tail >= 150_000, "every mutation: {tail}");
        assert_not_held_up(
            &format!("the log read for a learner ({n} writes)"),
            took,
            slowest,
        );
        stub.close();
    }
}
