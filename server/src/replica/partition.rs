//! One partition replica: its store, its private log, its copy of the PacificA state machine
//! (`pegasus-replication`) and its scanners.
//!
//! Everything that changes the replica goes through one driver per partition ([`driver`]), so order
//! is decided in one place:
//!
//! ```text
//! client write ─► queue (bounded) ─► driver: effects of the batch (on top of what is prepared
//!   but not committed) = one mutation (ballot, decree) ─► prepare to every secondary (RPCs, in
//!   parallel) and append to the plog (one sync per round) ─► committed once logged here and
//!   acknowledged by every secondary ─► applied to RocksDB ─► reply
//! prepare from the primary ─► driver ─► plog append ─► ack; applied once the primary's commit
//!   point (riding on its next prepare) passes it
//! ```
//!
//! Whatever arrives while a round is syncing forms the next round, so one fsync covers many
//! writes (group commit). A mutation is acknowledged only after its plog record is synced, or
//! with `[replication] plog_force_flush = false` (as in Pegasus) once it is written to the
//! operating system, which a crash of the process cannot lose but one of the machine can.
//! Reads go straight to RocksDB from the caller's thread, on the primary only, and only once it
//! has committed everything a previous primary may have acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::types::{
    Blob, Gpid, LearnAddRequest, LearnDoneRequest, LearnRequest, PrepareRequest, PrepareResponse,
    WireOp,
};
use pegasus_replication::{Config, Options, Replica, WriteError};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::envs::TableEnvs;
use super::faults::Faults;
use super::metrics::{ReplicaMetrics, TableMetrics};
use super::plog::{Op, Plog, PlogError, sync_parent};
use super::pool::{LazyPool, Mailbox};
use super::read::{ReadLimits, ScanContext};
use super::slog::SharedLog;
use super::storage::{RocksOptions, Scenario, Storage, StorageError};
use super::write::{WriteOp, WriteReply};

mod driver;
use driver::{Driver, DriverJob, Event, Status};

/// Idle scanner contexts expire after this long.
const SCANNER_IDLE: Duration = Duration::from_secs(300);
/// Scanner contexts per partition at most.
const MAX_SCANNERS: usize = 4096;
/// One tick of the replication state machine (its prepare timeout counts these).
pub const TICK: Duration = Duration::from_millis(100);

/// Room in a partition's queue for the messages of replication (prepares, acks,
/// configurations), beyond its client writes; each partition has at most
/// `max_in_flight` mutations per secondary outstanding, so this is never reached in practice,
/// and a message dropped past it is recovered by the protocol's timeouts.
const MESSAGE_ROOM: usize = 1024;

/// Why a partition cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The private log failed.
    #[error("private log: {0}")]
    Plog(#[from] std::io::Error),
    /// The private log cannot be replayed: damaged, or unreadable.
    #[error("private log: {0}")]
    Replay(#[from] PlogError),
    /// The write queue is full.
    #[error("write queue is full")]
    Busy,
    /// The partition stopped taking writes after an I/O error, or is closing.
    #[error("partition is not writable")]
    Closed,
    /// Not a serving primary (`ERR_INVALID_STATE`): the client asks the meta again.
    #[error("not the serving primary")]
    NotPrimary,
    /// Too many mutations past the commit point (`ERR_CAPACITY_EXCEEDED`).
    #[error("too many writes in flight")]
    CapacityExceeded,
    /// Fewer members than a write needs (`ERR_NOT_ENOUGH_MEMBER`).
    #[error("not enough members to write")]
    NotEnoughMember,
}

impl PartitionError {
    /// Whether the replica's files are damaged (not just unreadable now): it must be moved aside,
    /// never served or appended to.
    pub fn is_damage(&self) -> bool {
        matches!(self, PartitionError::Replay(PlogError::Corrupt { .. }))
    }

    /// The error code a client gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            PartitionError::Busy => ErrorCode::Busy,
            PartitionError::Closed | PartitionError::NotPrimary => ErrorCode::InvalidState,
            PartitionError::CapacityExceeded => ErrorCode::CapacityExceeded,
            PartitionError::NotEnoughMember => ErrorCode::NotEnoughMember,
            _ => ErrorCode::FileOperationFailed,
        }
    }
}

impl From<WriteError> for PartitionError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotPrimary => PartitionError::NotPrimary,
            WriteError::CapacityExceeded => PartitionError::CapacityExceeded,
            WriteError::NotEnoughMember => PartitionError::NotEnoughMember,
        }
    }
}

/// Tuning of a partition.
#[derive(Clone, Debug)]
pub struct PartitionOptions {
    /// RocksDB options.
    pub rocks: RocksOptions,
    /// Plog file size before rotation (`log_private_file_size_mb`).
    pub plog_file_size: u64,
    /// The replica server's metrics.
    pub metrics: Arc<ReplicaMetrics>,
    /// Fsync the plog before acknowledging (`plog_force_flush`; Pegasus's default is false, ours
    /// true; see server/DEPLOY.md for what each survives).
    pub plog_force_flush: bool,
    /// Writes queued at most before answering `ERR_BUSY`.
    pub write_queue: usize,
    /// Cluster id written into timetags.
    pub cluster_id: u8,
    /// Read bounds.
    pub limits: ReadLimits,
    /// This server's address, echoed in answers.
    pub server: String,
    /// This server's address among the members of a partition.
    pub me: SocketAddrV4,
    /// The replication protocol's tuning (`mutation_2pc_min_replica_count`, the in-flight
    /// bound, the prepare timeout in [`TICK`]s).
    pub replication: Options,
    /// Bytes per second a learner copies at most (`[nfs] max_copy_rate_megabytes_per_disk`).
    pub learn_rate: u64,
    /// The threads that run every partition's driver (`[threadpool.THREAD_POOL_REPLICATION]
    /// worker_count`).
    pub pool: Arc<LazyPool>,
    /// Injected disk faults (tests: [`super::faults`]); none unless set.
    pub faults: Arc<Faults>,
    /// This boot of the machine ([`super::boot`]): a copy last opened in another one, with
    /// `plog_force_flush` off, may lack what it acknowledged.
    pub boot_id: Arc<str>,
    /// Woken when a replica's ballot changes: the node's beacon then goes out at once, so
    /// the meta hears of a configuration taken up (a primary's hand-over waits on it) without
    /// waiting for the next beacon interval.
    pub ballot_news: Arc<tokio::sync::Notify>,
    /// The node's shared log ([`super::slog`]): the private logs then go unsynced and a batch
    /// is durable when the shared log says so. `None`: each private log syncs (tests, tools).
    pub slog: Option<Arc<SharedLog>>,
    /// The shared log was found damaged and set aside: every copy may lack what it
    /// acknowledged, and learns again.
    pub slog_damaged: bool,
    /// Backups and restores: block services, files at once, the rate.
    pub backup: crate::replica::backup::BackupOptions,
}

impl Default for PartitionOptions {
    fn default() -> Self {
        PartitionOptions {
            rocks: RocksOptions::default(),
            plog_file_size: 32 << 20,
            plog_force_flush: true,
            write_queue: 4096,
            cluster_id: 1,
            limits: ReadLimits::default(),
            server: String::new(),
            me: SocketAddrV4::new([0, 0, 0, 0].into(), 0),
            replication: Options::default(),
            learn_rate: 500 << 20,
            metrics: Arc::default(),
            pool: LazyPool::new(2, TICK),
            faults: Arc::default(),
            boot_id: super::boot::machine_boot_id().into(),
            ballot_news: Arc::default(),
            slog: None,
            slog_damaged: false,
            backup: Default::default(),
        }
    }
}

/// Called exactly once with the outcome of a write.
pub type WriteDone = Box<dyn FnOnce(Result<WriteReply, PartitionError>) + Send>;

/// Called exactly once with a secondary's answer to a prepare (`None`: no answer came).
pub type PrepareDone = Box<dyn FnOnce(Option<PrepareResponse>) + Send>;

/// How a partition reaches the other members and the meta; the replica stub provides it.
pub trait Peers: Send + Sync + 'static {
    /// Sends a prepare to `to`; `done` gets its answer.
    fn prepare(&self, to: SocketAddrV4, request: PrepareRequest, done: PrepareDone);
    /// Tells `to` to learn `request.pid` from this primary.
    fn learn_add(&self, to: SocketAddrV4, request: LearnAddRequest);
    /// Tells the primary `to` how far this learner holds everything.
    fn learn_done(&self, to: SocketAddrV4, request: LearnDoneRequest);
    /// Fetches a copy from the primary `from` into `dest` (replaced if it exists).
    fn learn(&self, from: SocketAddrV4, request: LearnRequest, dest: PathBuf, done: CopyDone);
    /// Asks the meta for a change of configuration `ballot` of `gpid` (`config_type`:
    /// remove `node`, or raise the ballot of its primary `node`); the new configuration comes
    /// back as [`Partition::configure`].
    fn update(&self, gpid: Gpid, ballot: u64, node: SocketAddrV4, config_type: i32);
}

/// The mutation's write: the effects of a batch of client writes.
pub type Effects = Arc<Vec<Op>>;

/// Where a partition's store is: replaced whole when a learner installs a copy.
type Slot = Arc<std::sync::RwLock<Option<Arc<Storage>>>>;

/// A copy for a learner: the checkpoint's folder (none when the learner's own store is the
/// start: learning from the log), the decree it is at, and the primary's mutations past it; or
/// why it could not be had.
pub type Copy = Result<
    (
        Option<PathBuf>,
        u64,
        Vec<pegasus_replication::Mutation<Effects>>,
    ),
    String,
>;

/// Called once with a copy.
pub type CopyDone = Box<dyn FnOnce(Copy) + Send>;

/// Called once, from the driver thread, with the decree a backup's checkpoint is at, or why
/// there is none.
pub type BackupDone = Box<dyn FnOnce(Result<u64, String>) + Send>;

struct Scanners {
    next_id: i64,
    contexts: HashMap<i64, (ScanContext, Instant)>,
}

/// A partition replica.
pub struct Partition {
    gpid: Gpid,
    dir: PathBuf,
    /// The store; empty only while a learner swaps in the copy it learned.
    storage: Slot,
    events: Mailbox<Event>,
    /// Client writes queued (bounded by `write_queue`).
    queued: Arc<AtomicUsize>,
    /// Whether the driver still runs (until [`Partition::close`]).
    driver: Mutex<bool>,
    failed: Arc<OnceLock<String>>,
    status: Arc<Status>,
    scanners: Mutex<Scanners>,
    options: PartitionOptions,
    /// The table's environments, as last configured.
    envs: std::sync::RwLock<Arc<TableEnvs>>,
    /// The store `rocksdb.usage_scenario` was last applied to, and which.
    scenario_on: Mutex<(usize, Scenario)>,
    /// When the last manual compaction finished (unix seconds, 0: never).
    compacted: Arc<AtomicI64>,
    /// Whether a manual compaction runs.
    compacting: Arc<AtomicBool>,
    /// The table's name (its id until the meta names it) and its request metrics.
    table: std::sync::RwLock<(String, Arc<TableMetrics>)>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("gpid", &self.gpid)
            .field("dir", &self.dir)
            .finish()
    }
}

/// A partition's role, as the stub reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionRole {
    /// Not a member (yet).
    Inactive,
    /// Serves reads and writes.
    Primary,
    /// Logs what the primary prepares.
    Secondary,
    /// Copies the primary's store and logs its prepares, to become a secondary.
    Learner,
}

impl Partition {
    /// Opens the replica in `dir` (`<data dir>/<app_id>.<pidx>.pegasus`): the store at
    /// `data/rdb`, the log at `plog/`. What the log holds past the store becomes the state
    /// machine's prepared mutations: committed again by the next primary of the partition, so
    /// nothing is applied before a configuration says it may be. With `peers` `None` the replica
    /// is on its own (tests, tools): at once the primary of a group of one.
    pub fn open(
        gpid: Gpid,
        dir: &Path,
        options: PartitionOptions,
        peers: Option<Arc<dyn Peers>>,
    ) -> Result<Arc<Partition>, PartitionError> {
        Self::open_seeded(gpid, dir, None, options, peers)
    }

    /// [`Partition::open`]; a replica it creates starts from the store in `seed` (a restored
    /// checkpoint, moved into place: on the same disk), at the decree that store is at.
    pub fn open_seeded(
        gpid: Gpid,
        dir: &Path,
        seed: Option<&Path>,
        options: PartitionOptions,
        peers: Option<Arc<dyn Peers>>,
    ) -> Result<Arc<Partition>, PartitionError> {
        let created = !dir.exists();
        options.faults.check(super::faults::Point::ReplicaOpen)?;
        std::fs::create_dir_all(dir.join("data"))?;
        if let (true, Some(seed)) = (created, seed) {
            std::fs::rename(seed, dir.join("data").join("rdb"))?;
        }
        // A copy made or fetched before a restart is of no use, nor a backup's checkpoint.
        let _ = std::fs::remove_dir_all(dir.join("learn"));
        let _ = std::fs::remove_dir_all(dir.join("backup"));
        let storage = Arc::new(Storage::open(
            &dir.join("data").join("rdb"),
            &options.rocks,
        )?);
        if created {
            // A new replica's folders must survive a crash as well as what is written in them.
            sync_parent(dir)?;
            sync_parent(&dir.join("data"))?;
            sync_parent(&dir.join("data").join("rdb"))?;
        }
        let applied = storage.applied_decree()?;
        let compacted = storage.manual_compacted()?;
        let mut logged = Vec::new();
        let shared = options
            .slog
            .as_ref()
            .map(|slog| slog.take_replay(gpid))
            .unwrap_or_default();
        let plog_dir = dir.join("plog");
        let size = options.plog_file_size;
        let mut plog = Plog::open_with_shared(&plog_dir, size, applied, &shared, |m| {
            logged.push(pegasus_replication::Mutation {
                ballot: m.ballot,
                decree: m.decree,
                write: Some(Arc::new(m.ops)),
            });
            Ok(())
        })?;
        plog.set_metrics(options.metrics.plog.clone());
        plog.set_faults(Arc::clone(&options.faults));
        match &options.slog {
            Some(slog) => {
                // After a failure of the shared log's disk, the first copy opened once it
                // serves again (or the lost copy the stub reopens) puts the log back to work.
                slog.recover()?;
                plog.set_sync(false);
                slog.register(gpid, &plog.tail());
                if created {
                    // Whatever an earlier copy of this partition left in the shared log is not
                    // this one's.
                    slog.mark(gpid)?;
                }
            }
            None => plog.set_sync(options.plog_force_flush),
        }
        let highest_ballot = logged.iter().map(|m| m.ballot).max().unwrap_or(0);
        info!(%gpid, applied, logged = logged.len(), "replica opened");
        // With fsync off, a copy reopened after the machine restarted may lack what it
        // acknowledged: it asks to leave its group and learns again.
        let lossy = peers.is_some()
            && (super::boot::open_in_boot(dir, &options.boot_id, !options.plog_force_flush)?
                || options.slog_damaged);
        if lossy {
            warn!(%gpid, applied, logged = logged.len(), slog_damaged = options.slog_damaged, "this copy may lack acknowledged writes (reopened after the machine restarted with plog_force_flush = false, or its node's shared log was damaged): it takes no part in its group until it learned again");
        }
        let mut replica = Replica::recover(options.me, options.replication, applied, logged);
        replica.set_lossy(lossy);
        // Opened from disk: the process before may have been its primary and sent prepares it
        // never logged, so it is primary only in a ballot the meta grants it from now on. A
        // replica just made, or on its own, had no process before.
        replica.set_restarted(!created && peers.is_some());
        let (tx, rx) = options
            .pool
            .get()
            .mailbox(options.write_queue + MESSAGE_ROOM, gpid.to_string());
        let failed = Arc::new(OnceLock::new());
        let status = Arc::new(Status::default());
        status.lossy.store(lossy, Ordering::Release);
        let queued = Arc::new(AtomicUsize::new(0));
        let standalone = peers.is_none();
        let storage: Slot = Arc::new(std::sync::RwLock::new(Some(storage)));
        let driver = Driver {
            gpid,
            me: options.me,
            dir: dir.to_owned(),
            storage: Arc::clone(&storage),
            learning: 0,
            plog: Box::new(plog),
            replica,
            peers,
            events: tx.clone(),
            queued: Arc::clone(&queued),
            failed: Arc::clone(&failed),
            status: Arc::clone(&status),
            options: options.clone(),
            waiting: HashMap::new(),
            next_id: 1,
            prepares: BTreeMap::new(),
            max_replica_count: 1,
            lossy,
            in_flight: std::collections::VecDeque::new(),
            wake: {
                let task = Arc::clone(tx.task());
                Arc::new(move || task.wake())
            },
        };
        // A bug in the driver costs this replica (reported lost), not the node: see
        // `DriverJob::finish`.
        options.pool.get().start(
            &tx,
            Box::new(DriverJob {
                driver,
                rx,
                next_tick: None,
            }),
        );
        // Named by its id until a configuration names its table.
        let table = (
            gpid.app_id.to_string(),
            options.metrics.table(&gpid.app_id.to_string()),
        );
        let partition = Arc::new(Partition {
            gpid,
            dir: dir.to_owned(),
            storage,
            events: tx,
            queued,
            driver: Mutex::new(true),
            failed,
            status,
            scanners: Mutex::new(Scanners {
                next_id: 1,
                contexts: HashMap::new(),
            }),
            options,
            envs: std::sync::RwLock::default(),
            scenario_on: Mutex::new((0, Scenario::Normal)),
            compacted: Arc::new(AtomicI64::new(compacted)),
            compacting: Arc::new(AtomicBool::new(false)),
            table: std::sync::RwLock::new(table),
        });
        if standalone {
            // A group of one: primary at once, under a ballot above any in its log.
            partition.configure(
                Config {
                    ballot: highest_ballot + 1,
                    primary: Some(partition.options.me),
                    secondaries: Vec::new(),
                },
                1,
            );
            // Serving once what its log held past the store is committed again.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !partition.readable()
                && partition.failure().is_none()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(partition)
    }

    /// The partition's id.
    pub fn gpid(&self) -> Gpid {
        self.gpid
    }

    /// The replica's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store, for reads (`None` only while a learner swaps in its copy).
    pub fn storage(&self) -> Option<Arc<Storage>> {
        self.storage.read().expect("storage").clone()
    }

    /// The table's request metrics.
    pub fn table_metrics(&self) -> Arc<TableMetrics> {
        Arc::clone(&self.table.read().expect("table").1)
    }

    /// The table's name (its id until the meta named it).
    pub fn table_name(&self) -> String {
        self.table.read().expect("table").0.clone()
    }

    /// Takes up the table's name from a configuration (a recall may rename it).
    pub fn set_table_name(&self, name: &str) {
        if name.is_empty() || self.table.read().expect("table").0 == name {
            return;
        }
        let metrics = self.options.metrics.table(name);
        *self.table.write().expect("table") = (name.to_owned(), metrics);
    }

    /// The table's environments.
    pub fn envs(&self) -> Arc<TableEnvs> {
        Arc::clone(&self.envs.read().expect("envs"))
    }

    /// When the last manual compaction finished (unix seconds, 0: never).
    pub fn manual_compacted(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// Takes up the table's environments (`raw`, for a table of `partitions` partitions):
    /// parsed again only when they changed; the usage scenario applied to the store; a manual
    /// compaction started, on a thread of its own, when its trigger time has come and is newer
    /// than the last one finished.
    pub fn set_envs(&self, raw: &BTreeMap<String, String>, partitions: i32) {
        let current = self.envs();
        let envs = if current.same(raw, partitions) {
            current
        } else {
            let parsed = Arc::new(TableEnvs::parse(raw, partitions));
            *self.envs.write().expect("envs") = Arc::clone(&parsed);
            info!(gpid = %self.gpid, envs = ?raw, "table envs taken up");
            parsed
        };
        let Some(storage) = self.storage() else {
            return;
        };
        {
            let store = Arc::as_ptr(&storage) as usize;
            let mut on = self.scenario_on.lock().expect("scenario");
            if *on != (store, envs.scenario) {
                match storage.set_scenario(envs.scenario) {
                    Ok(()) => {
                        if on.0 != 0 || envs.scenario != Scenario::Normal {
                            info!(gpid = %self.gpid, scenario = ?envs.scenario, "usage scenario applied");
                        }
                        *on = (store, envs.scenario);
                    }
                    Err(e) => warn!(gpid = %self.gpid, "usage scenario: {e}"),
                }
            }
        }
        let Some((trigger, level)) = envs.manual_compact else {
            return;
        };
        let now = unix_seconds();
        if trigger > now
            || trigger <= self.compacted.load(Ordering::Acquire)
            || self.compacting.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (gpid, compacted, compacting) = (
            self.gpid,
            Arc::clone(&self.compacted),
            Arc::clone(&self.compacting),
        );
        info!(%gpid, trigger, level, "manual compaction started");
        let started = std::thread::Builder::new()
            .name(format!("compact-{gpid}"))
            .spawn(move || {
                let began = Instant::now();
                match storage.compact(level, unix_seconds) {
                    Ok(at) => {
                        compacted.store(at, Ordering::Release);
                        info!(%gpid, took = ?began.elapsed(), "manual compaction finished");
                    }
                    Err(e) => warn!(%gpid, "manual compaction: {e}"),
                }
                compacting.store(false, Ordering::Release);
            });
        if let Err(e) = started {
            warn!(%gpid, "manual compaction: {e}");
            self.compacting.store(false, Ordering::Release);
        }
    }

    /// Why the partition stopped taking writes (an I/O error, a full disk), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// The read bounds.
    pub fn limits(&self) -> ReadLimits {
        self.options.limits
    }

    /// Its role now.
    pub fn role(&self) -> PartitionRole {
        match self.status.role.load(Ordering::Acquire) {
            1 => PartitionRole::Primary,
            2 => PartitionRole::Secondary,
            3 => PartitionRole::Learner,
            _ => PartitionRole::Inactive,
        }
    }

    /// Whether it answers reads now (a serving primary, caught up, of the newest ballot it was
    /// told of).
    pub fn readable(&self) -> bool {
        self.status.readable.load(Ordering::Acquire)
            && self.status.ballot.load(Ordering::Acquire)
                >= self.status.told.load(Ordering::Acquire)
    }

    /// The ballot of the configuration it knows.
    pub fn ballot(&self) -> u64 {
        self.status.ballot.load(Ordering::Acquire)
    }

    /// Whether it may lack writes it acknowledged and has not learned again since (see
    /// [`super::boot`]).
    pub fn lossy(&self) -> bool {
        self.status.lossy.load(Ordering::Acquire)
    }

    /// Its commit point.
    pub fn committed(&self) -> u64 {
        self.status.committed.load(Ordering::Acquire)
    }

    /// Hands the meta's configuration to the replica (`max_replica_count` of the table sets how
    /// many members a write needs).
    pub fn configure(&self, config: Config<SocketAddrV4>, max_replica_count: i32) {
        // Before the driver takes it up: no read is answered from an older ballot meanwhile.
        self.status.told.fetch_max(config.ballot, Ordering::AcqRel);
        self.message(Event::Config(config, max_replica_count));
    }

    /// The meta granted this replica's request for a new ballot (see
    /// [`pegasus_replication::Output::RaiseBallot`]).
    pub fn granted(&self, ballot: u64) {
        self.message(Event::Granted(ballot));
    }

    /// Primary: the meta proposes `learner` as a new copy.
    pub fn add_learner(&self, learner: SocketAddrV4) {
        self.message(Event::AddLearner(learner));
    }

    /// The primary `from` tells this replica to learn.
    pub fn learn(&self, from: SocketAddrV4, request: LearnAddRequest) {
        self.message(Event::Learn(from, request));
    }

    /// A learner reports to this primary.
    pub fn learn_done(&self, from: SocketAddrV4, request: LearnDoneRequest) {
        self.message(Event::LearnDone(from, request));
    }

    /// A learner asks this primary for a copy; `done` gets it, from the driver thread (or, for
    /// a copy from the log, the thread that reads it).
    pub fn checkpoint(&self, request: LearnRequest, done: CopyDone) {
        if let Err(
            TrySendError::Full(Event::Checkpoint(_, done, _))
            | TrySendError::Disconnected(Event::Checkpoint(_, done, _)),
        ) = self.events.try_send(Event::Checkpoint(request, done, true))
        {
            done(Err("the replica is busy or closing".into()));
        }
    }

    /// A checkpoint of the store into `dir`, for a backup; `done` gets the decree it is at,
    /// from the driver thread.
    pub fn backup_checkpoint(&self, dir: PathBuf, done: BackupDone) {
        if let Err(
            TrySendError::Full(Event::Backup(_, done))
            | TrySendError::Disconnected(Event::Backup(_, done)),
        ) = self.events.try_send(Event::Backup(dir, done))
        {
            done(Err("the replica is busy or closing".into()));
        }
    }

    /// A prepare from the primary `from`; `done` gets the answer.
    pub fn prepare(&self, from: SocketAddrV4, request: PrepareRequest, done: PrepareDone) {
        if let Err(
            TrySendError::Full(Event::Prepare(_, _, done))
            | TrySendError::Disconnected(Event::Prepare(_, _, done)),
        ) = self.events.try_send(Event::Prepare(from, request, done))
        {
            done(None);
        }
    }

    fn message(&self, event: Event) {
        // Dropped only when the queue is full or closed: the protocol's timeouts recover it.
        let _ = self.events.try_send(event);
    }

    /// Queues a write; `done` is called once, from the driver thread, when the write is
    /// committed and applied (or at once with [`PartitionError::Busy`] when the queue is full:
    /// overload is an answer, never an unbounded wait).
    pub fn submit(&self, op: WriteOp, done: WriteDone) {
        if self.failed.get().is_some() {
            return done(Err(PartitionError::Closed));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.options.write_queue {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return done(Err(PartitionError::Busy));
        }
        if let Err(e) = self.events.try_send(Event::Write(op, done)) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            match e {
                TrySendError::Full(Event::Write(_, done)) => done(Err(PartitionError::Busy)),
                TrySendError::Disconnected(Event::Write(_, done)) => {
                    done(Err(PartitionError::Closed))
                }
                _ => {}
            }
        }
    }

    /// [`Partition::submit`] for async callers: waits for the outcome.
    pub async fn write(&self, op: WriteOp) -> Result<WriteReply, PartitionError> {
        let (tx, rx) = oneshot::channel();
        self.submit(
            op,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.unwrap_or(Err(PartitionError::Closed))
    }

    /// Registers a scan that has more to return; returns its context id.
    pub fn add_scanner(&self, ctx: ScanContext) -> i64 {
        let mut s = self.scanners.lock().expect("scanners");
        let now = Instant::now();
        s.contexts
            .retain(|_, (_, used)| now.duration_since(*used) < SCANNER_IDLE);
        if s.contexts.len() >= MAX_SCANNERS {
            // Evict the least recently used context; its client gets "context not found" and
            // restarts from its last key.
            if let Some(oldest) = s
                .contexts
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id)
            {
                s.contexts.remove(&oldest);
            }
        }
        let id = s.next_id;
        s.next_id += 1;
        s.contexts.insert(id, (ctx, now));
        id
    }

    /// Takes a scanner context out to continue it (put it back with [`Partition::put_scanner`]).
    pub fn take_scanner(&self, id: i64) -> Option<ScanContext> {
        let mut s = self.scanners.lock().expect("scanners");
        let (ctx, used) = s.contexts.remove(&id)?;
        (used.elapsed() < SCANNER_IDLE).then_some(ctx)
    }

    /// Puts a continued scanner context back under its id.
    pub fn put_scanner(&self, id: i64, ctx: ScanContext) {
        self.scanners
            .lock()
            .expect("scanners")
            .contexts
            .insert(id, (ctx, Instant::now()));
    }

    /// Drops a scanner context.
    pub fn clear_scanner(&self, id: i64) {
        self.scanners.lock().expect("scanners").contexts.remove(&id);
    }

    /// Stops the driver (answering what still waits) and flushes the store.
    pub fn close(&self) -> Result<(), PartitionError> {
        self.stop_driver();
        if let Some(storage) = self.storage() {
            storage.flush()?;
        }
        Ok(())
    }

    fn stop_driver(&self) {
        let mut running = self.driver.lock().expect("driver");
        if std::mem::take(&mut *running) {
            // The close gets through even a full queue.
            let _ = self.events.send(Event::Close);
            self.events.task().wait_finished();
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.stop_driver();
    }
}

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A logged effect in its wire form.
pub fn to_wire(op: &Op) -> WireOp {
    match op {
        Op::Put(k, v) => WireOp {
            kind: 0,
            key: Blob::from(k.clone()),
            value: Blob::from(v.clone()),
        },
        Op::Delete(k) => WireOp {
            kind: 1,
            key: Blob::from(k.clone()),
            value: Blob::default(),
        },
    }
}

/// A mutation's effects in their wire form (none for an empty mutation).
pub fn wire_ops(write: Option<&Effects>) -> Vec<WireOp> {
    write.map_or_else(Vec::new, |ops| ops.iter().map(to_wire).collect())
}

/// A logged effect from its wire form.
pub fn from_wire(op: WireOp) -> Op {
    match op.kind {
        0 => Op::Put(op.key.0.to_vec(), op.value.0.to_vec()),
        _ => Op::Delete(op.key.0.to_vec()),
    }
}
