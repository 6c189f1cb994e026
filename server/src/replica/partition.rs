//! One partition replica: its store, its private log, its copy of the PacificA state machine
//! (`pegasus-replication`) and its scanners.
//!
//! Everything that changes the replica goes through one driver thread per partition, so order
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
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::types::{
    Blob, ErrorName, Gpid, LearnAddRequest, LearnDoneRequest, LearnRequest, PrepareRequest,
    PrepareResponse, RpcAddress, WireOp, config_type,
};
use pegasus_replication::{Config, Input, Message, Options, Output, Replica, Role, WriteError};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::envs::{Scenario, TableEnvs};
use super::faults::Faults;
use super::metrics::{ReplicaMetrics, TableMetrics};
use super::plog::{self, Mutation, Op, Plog, PlogError, sync_parent};
use super::pool::{Job, LazyPool, Mailbox};
use super::read::{ReadLimits, ScanContext};
use super::storage::{RocksOptions, Storage, StorageError};
use super::write::{View, WriteOp, WriteReply};

/// Idle scanner contexts expire after this long.
const SCANNER_IDLE: Duration = Duration::from_secs(300);
/// Scanner contexts per partition at most.
const MAX_SCANNERS: usize = 4096;
/// Events handled in one round at most.
const MAX_BATCH: usize = 512;
/// One tick of the replication state machine (its prepare timeout counts these).
pub const TICK: Duration = Duration::from_millis(100);

/// The most keys and values a learner gets from the log in one answer; past it, a checkpoint
/// (the answer must stay well within a client's 64 MiB frame).
const LOG_LEARNING_MAX_BYTES: usize = 16 << 20;
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

/// What the driver thread is told.
enum Event {
    Write(WriteOp, WriteDone),
    /// A prepare from the primary `from` (this replica is, or may be, its secondary).
    Prepare(SocketAddrV4, PrepareRequest, PrepareDone),
    /// A secondary's answer to a prepare.
    Answer(SocketAddrV4, PrepareResponse),
    /// The meta's configuration, with the table's `max_replica_count`.
    Config(Config<SocketAddrV4>, i32),
    /// The meta raised the ballot at this replica's request (it may be primary there).
    Granted(u64),
    /// Primary: the meta proposes a learner.
    AddLearner(SocketAddrV4),
    /// A primary tells this replica to learn.
    Learn(SocketAddrV4, LearnAddRequest),
    /// A learner reports to this primary.
    LearnDone(SocketAddrV4, LearnDoneRequest),
    /// A learner asks this primary for a copy (`true`: from the log if it still holds what
    /// the learner lacks; `false`: a checkpoint, the log did not).
    Checkpoint(LearnRequest, CopyDone, bool),
    /// This learner's copy arrived (or could not be had).
    Learned(Copy),
    Close,
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

/// What the driver publishes for the request paths, one atomic load each.
#[derive(Default)]
struct Status {
    /// 0 inactive, 1 primary, 2 secondary.
    role: std::sync::atomic::AtomicU8,
    readable: AtomicBool,
    /// May lack what it acknowledged ([`super::boot`]): reported to the meta until it learned.
    lossy: AtomicBool,
    ballot: AtomicU64,
    /// The highest ballot a configuration handed to the driver names: until the driver has
    /// taken it up, a replica of an older ballot answers no read (the meta may have made
    /// another node primary already, and the lease that came with the news is current).
    told: AtomicU64,
    committed: AtomicU64,
}

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
        let created = !dir.exists();
        options.faults.check(super::faults::Point::ReplicaOpen)?;
        std::fs::create_dir_all(dir.join("data"))?;
        // A copy made or fetched before a restart is of no use.
        let _ = std::fs::remove_dir_all(dir.join("learn"));
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
        let mut plog = Plog::open(&dir.join("plog"), options.plog_file_size, applied, |m| {
            logged.push(pegasus_replication::Mutation {
                ballot: m.ballot,
                decree: m.decree,
                write: Some(Arc::new(m.ops)),
            });
            Ok(())
        })?;
        plog.set_sync(options.plog_force_flush);
        plog.set_metrics(options.metrics.plog.clone());
        plog.set_faults(Arc::clone(&options.faults));
        let highest_ballot = logged.iter().map(|m| m.ballot).max().unwrap_or(0);
        info!(%gpid, applied, logged = logged.len(), "replica opened");
        // With fsync off, a copy reopened after the machine restarted may lack what it
        // acknowledged: it asks to leave its group and learns again.
        let lossy = peers.is_some()
            && super::boot::open_in_boot(dir, &options.boot_id, !options.plog_force_flush)?;
        if lossy {
            warn!(%gpid, applied, logged = logged.len(), "this copy may lack acknowledged writes (reopened after the machine restarted, with plog_force_flush = false): it takes no part in its group until it learned again");
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
            plog,
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

/// A client's write with its answer, sent once its mutation commits.
type Answer = (WriteDone, Result<WriteReply, PartitionError>);

/// What one round of the driver must still carry out, in this order: appends (then their
/// `Logged`), applies, replies.
#[derive(Default)]
struct Round {
    appends: Vec<Mutation>,
    applies: Vec<Mutation>,
    replies: Vec<Answer>,
    /// A prepare refused with this (higher) ballot in this step.
    rejected: Option<u64>,
}

/// A partition's driver as the pool runs it.
struct DriverJob {
    driver: Driver,
    rx: Receiver<Event>,
    /// When the state machine ticks next (set by the first round, by the pool's clock).
    next_tick: Option<Instant>,
}

impl Job for DriverJob {
    fn round(&mut self) -> bool {
        self.driver.round(&self.rx, &mut self.next_tick)
    }

    fn finish(&mut self, crashed: bool) {
        if crashed {
            // Its state cannot be trusted: the replica is reported lost; what waits is answered.
            let _ = self
                .driver
                .failed
                .set("the replica's driver stopped on a bug".into());
        }
        self.driver.finish(&self.rx);
    }
}

/// The partition's driver: the state machine, the plog, the store; run by the pool.
struct Driver {
    gpid: Gpid,
    me: SocketAddrV4,
    dir: PathBuf,
    storage: Slot,
    /// Learner: the ballot of the copy being fetched (0: none).
    learning: u64,
    plog: Plog,
    replica: Replica<SocketAddrV4, Effects>,
    peers: Option<Arc<dyn Peers>>,
    /// For answers to this partition's own prepares.
    events: Mailbox<Event>,
    queued: Arc<AtomicUsize>,
    failed: Arc<OnceLock<String>>,
    status: Arc<Status>,
    options: PartitionOptions,
    /// Client writes by mutation id, with their answers (stamped with the decree on commit).
    waiting: HashMap<u64, Vec<Answer>>,
    next_id: u64,
    /// Secondary: prepares waiting for their log append, by (ballot, decree).
    prepares: BTreeMap<(u64, u64), PrepareDone>,
    /// The table's copies, as the last configuration said.
    max_replica_count: i32,
    /// The copy's folder holds the lossy mark ([`super::boot`]).
    lossy: bool,
}

impl Driver {
    /// One round: the events waiting (at most a batch), then the tick if it is due; `true`
    /// once closed.
    fn round(&mut self, rx: &Receiver<Event>, next_tick: &mut Option<Instant>) -> bool {
        let mut events = Vec::new();
        while events.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(e) => {
                    self.events.task().took();
                    events.push(e);
                }
                Err(_) => break,
            }
        }
        let mut round = Round::default();
        let mut writes = Vec::new();
        let mut closing = false;
        for event in events {
            match event {
                Event::Write(op, done) => {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    writes.push((op, done));
                }
                Event::Prepare(from, request, done) => {
                    self.on_prepare(from, request, done, &mut round)
                }
                Event::Answer(from, r) => {
                    if ErrorCode::from_name(&r.err.0) == ErrorCode::Ok {
                        let message = if r.rejected {
                            Message::Reject {
                                ballot: r.ballot as u64,
                            }
                        } else {
                            Message::Ack {
                                ballot: r.ballot as u64,
                                decree: r.decree as u64,
                            }
                        };
                        self.step(Input::Receive { from, message }, &mut round);
                    }
                }
                Event::Config(config, max_replica_count) => {
                    self.on_config(config, max_replica_count, &mut round)
                }
                Event::Granted(ballot) => self.step(Input::Granted { ballot }, &mut round),
                Event::AddLearner(learner) => self.step(Input::AddLearner { learner }, &mut round),
                Event::Learn(from, r) => {
                    let wanted = self.options.replication.min_replicas;
                    self.replica
                        .set_min_replicas(wanted.min(r.max_replica_count.max(1) as usize));
                    self.max_replica_count = r.max_replica_count;
                    let message = Message::Learn {
                        ballot: r.ballot.max(0) as u64,
                        prepare_start: r.prepare_start.max(0) as u64,
                    };
                    self.step(Input::Receive { from, message }, &mut round);
                }
                Event::LearnDone(from, r) => {
                    let message = Message::LearnDone {
                        ballot: r.ballot.max(0) as u64,
                        logged_through: r.logged_through.max(0) as u64,
                    };
                    self.step(Input::Receive { from, message }, &mut round);
                }
                Event::Checkpoint(r, done, log) => {
                    // Everything committed is applied once the round is carried out.
                    self.carry_out(&mut round);
                    self.copy_for(r, done, log);
                }
                Event::Learned(copy) => self.install(copy, &mut round),
                Event::Close => closing = true,
            }
        }
        if !writes.is_empty() {
            // New writes are computed on the store as every committed mutation left it.
            self.carry_out(&mut round);
            self.on_writes(writes, &mut round);
        }
        let now = self.options.pool.now();
        let due = *next_tick.get_or_insert(now + TICK);
        if now >= due {
            self.step(Input::Tick, &mut round);
            *next_tick = Some(now + TICK);
        }
        self.carry_out(&mut round);
        self.publish();
        // Writes waiting for their commit keep the primary busy anyway (a prepare in flight).
        self.events.task().set_idle(self.replica.idle());
        closing
    }

    /// After the last round: whatever still waits gets an answer.
    fn finish(&mut self, rx: &Receiver<Event>) {
        for (_, answers) in self.waiting.drain() {
            for (done, _) in answers {
                done(Err(PartitionError::Closed));
            }
        }
        for (_, done) in std::mem::take(&mut self.prepares) {
            done(None);
        }
        while let Ok(event) = rx.try_recv() {
            self.events.task().took();
            match event {
                Event::Write(_, done) => done(Err(PartitionError::Closed)),
                Event::Prepare(_, _, done) => done(None),
                Event::Checkpoint(_, done, _) => done(Err("closing".into())),
                _ => {}
            }
        }
        self.status.readable.store(false, Ordering::Release);
        self.status.role.store(0, Ordering::Release);
        // A clean stop with appends not fsynced: the log made durable now, a reboot of the
        // machine before the next open loses nothing, so it is not taken for one that may have.
        if !self.options.plog_force_flush && self.peers.is_some() {
            let clean = self
                .plog
                .sync_all()
                .and_then(|()| super::boot::mark_clean(&self.dir));
            if let Err(e) = clean {
                warn!(gpid = %self.gpid, "syncing the log at close: {e}");
            }
        }
    }

    fn publish(&self) {
        let role = match self.replica.role() {
            Role::Inactive => 0,
            Role::Primary => 1,
            Role::Secondary => 2,
            Role::Learner => 3,
        };
        self.status.role.store(role, Ordering::Release);
        self.status.readable.store(
            self.replica.readable() && self.failed.get().is_none(),
            Ordering::Release,
        );
        let ballot = self.replica.ballot();
        if self.status.ballot.swap(ballot, Ordering::AcqRel) != ballot {
            self.options.ballot_news.notify_one();
        }
        self.status
            .committed
            .store(self.replica.committed(), Ordering::Release);
    }

    /// Client writes: one mutation for the batch, its effects computed on top of everything
    /// prepared and not yet committed.
    fn on_writes(&mut self, writes: Vec<(WriteOp, WriteDone)>, round: &mut Round) {
        if self.failed.get().is_some() || self.replica.role() != Role::Primary {
            let e = || {
                if self.failed.get().is_some() {
                    PartitionError::Closed
                } else {
                    PartitionError::NotPrimary
                }
            };
            for (_, done) in writes {
                round.replies.push((done, Err(e())));
            }
            return;
        }
        let pending: Vec<Effects> = self
            .replica
            .uncommitted()
            .filter_map(|m| m.write.clone())
            .collect();
        let storage = self.store();
        let mut view = View::with_pending(
            &storage,
            pegasus_protocol::key::epoch_now(),
            self.options.cluster_id,
            pending.iter().flat_map(|ops| ops.iter()),
        );
        let mut ops = Vec::new();
        let mut answers = Vec::with_capacity(writes.len());
        for (op, done) in writes {
            match view.execute(op) {
                Ok((effects, reply)) => {
                    ops.extend(effects);
                    answers.push((done, Ok(reply)));
                }
                Err(e) => round.replies.push((done, Err(PartitionError::from(e)))),
            }
        }
        if answers.is_empty() {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.insert(id, answers);
        self.step(
            Input::Write {
                id,
                write: Arc::new(ops),
            },
            round,
        );
    }

    fn on_prepare(
        &mut self,
        from: SocketAddrV4,
        r: PrepareRequest,
        done: PrepareDone,
        round: &mut Round,
    ) {
        let (ballot, decree) = (r.ballot as u64, r.decree as u64);
        if self.failed.get().is_some() {
            return done(Some(refusal(ErrorCode::InvalidState)));
        }
        if let Some(old) = self.prepares.insert((ballot, decree), done) {
            old(None);
        }
        let write = (!r.empty).then(|| Arc::new(r.ops.into_iter().map(from_wire).collect()));
        let message = Message::Prepare {
            ballot,
            ballot_start: r.ballot_start as u64,
            mutation: pegasus_replication::Mutation {
                ballot: r.mutation_ballot as u64,
                decree,
                write,
            },
            committed: r.committed as u64,
        };
        round.rejected = None;
        self.step(Input::Receive { from, message }, round);
        if let Some(higher) = round.rejected.take() {
            if let Some(done) = self.prepares.remove(&(ballot, decree)) {
                done(Some(PrepareResponse {
                    err: ErrorName(ErrorCode::Ok.name().to_owned()),
                    ballot: higher as i64,
                    decree: decree as i64,
                    rejected: true,
                }));
            }
        } else if !round
            .appends
            .iter()
            .any(|m| m.ballot == ballot && m.decree == decree)
            && let Some(done) = self.prepares.remove(&(ballot, decree))
        {
            // Neither logged nor acknowledged: not a member of that configuration (yet).
            done(Some(refusal(ErrorCode::InvalidState)));
        }
    }

    fn on_config(
        &mut self,
        config: Config<SocketAddrV4>,
        max_replica_count: i32,
        round: &mut Round,
    ) {
        self.max_replica_count = max_replica_count;
        let wanted = self.options.replication.min_replicas;
        self.replica
            .set_min_replicas(wanted.min(max_replica_count.max(1) as usize));
        let before = self.replica.role();
        let ballot_before = self.replica.ballot();
        self.step(Input::Config(config), round);
        let after = self.replica.role();
        if before != after {
            info!(gpid = %self.gpid, ballot = self.replica.ballot(), role = ?after, "role changed");
        }
        if self.replica.ballot() != ballot_before && after != Role::Learner {
            // A new configuration ends every learning round: checkpoints made for learners
            // (hard links that keep old files alive) and copies being fetched go.
            self.learning = 0;
            let _ = std::fs::remove_dir_all(self.dir.join("learn"));
        }
        // Prepares waiting under an older ballot will not be acknowledged.
        let ballot = self.replica.ballot();
        let stale: Vec<(u64, u64)> = self
            .prepares
            .range(..(ballot, 0))
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(done) = self.prepares.remove(&key) {
                done(None);
            }
        }
    }

    /// The store (the driver is the only one that ever empties the slot).
    fn store(&self) -> Arc<Storage> {
        self.storage
            .read()
            .expect("storage")
            .clone()
            .expect("the store is in place outside an install")
    }

    /// Primary: what the learner that asks lacks. A learner whose store is at a decree this
    /// log still holds everything past (a node briefly away) gets those mutations and what is
    /// prepared, no checkpoint; any other a checkpoint of the store with what is prepared past
    /// it (`log` false: the log was read and did not hold it). Older checkpoints are removed.
    ///
    /// The log is read on a thread of its own: up to [`LOG_LEARNING_MAX_BYTES`] of it takes
    /// long enough that this partition's writes (and the other partitions of the driver's
    /// worker) must not wait for it. What it returns is fixed here: committed decrees, which the
    /// log keeps, and the prepared ones as they are now.
    fn copy_for(&mut self, r: LearnRequest, done: CopyDone, log: bool) {
        if self.replica.role() != Role::Primary || r.ballot as u64 != self.replica.ballot() {
            return done(Err(format!(
                "not the primary of ballot {} (ballot {}, {:?})",
                r.ballot,
                self.replica.ballot(),
                self.replica.role()
            )));
        }
        let committed = self.replica.committed();
        let applied = r.applied.max(0) as u64;
        if !log || applied > committed {
            return done(self.checkpoint(&r));
        }
        let files = self.plog.files_after(applied);
        let nothing_to_read = files.is_empty();
        let prepared: Vec<_> = self.replica.uncommitted().cloned().collect();
        let gpid = self.gpid;
        let events = self.events.clone();
        let read = move || match plog::read_range(
            &files,
            applied,
            committed,
            LOG_LEARNING_MAX_BYTES,
        ) {
            Ok(Some(logged)) => {
                let mut tail: Vec<_> = logged
                    .into_iter()
                    .map(|m| pegasus_replication::Mutation {
                        ballot: m.ballot,
                        decree: m.decree,
                        write: Some(Arc::new(m.ops)),
                    })
                    .collect();
                tail.extend(prepared);
                info!(%gpid, learner = %r.learner, from = applied + 1, committed, tail = tail.len(), "a learner learns from the log");
                done(Ok((None, applied, tail)));
            }
            outcome => {
                if let Err(e) = outcome {
                    warn!(%gpid, "reading the log for a learner: {e}");
                }
                // Not there (collected, or too much): a checkpoint, made by the driver.
                if let Err(
                    TrySendError::Full(Event::Checkpoint(_, done, _))
                    | TrySendError::Disconnected(Event::Checkpoint(_, done, _)),
                ) = events.try_send(Event::Checkpoint(r, done, false))
                {
                    done(Err("the replica is busy or closing".into()));
                }
            }
        };
        if nothing_to_read {
            // Nothing to read (the learner holds everything committed): answered at once.
            return read();
        }
        if let Err(e) = self
            .options
            .pool
            .get()
            .spawn(format!("learn-log-{gpid}"), Box::new(read))
        {
            // The closure (and the learner's answer) went with the failed spawn: the learner's
            // request times out and it asks again.
            warn!(%gpid, "no thread to read the log for a learner: {e}");
        }
    }

    /// Primary: a checkpoint of the store for a learner, with what is prepared past it.
    fn checkpoint(&mut self, r: &LearnRequest) -> Copy {
        let root = self.dir.join("learn");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
        let decree = self.replica.committed();
        let dir = root.join(format!("{}.{decree}", self.replica.ballot()));
        self.store().checkpoint(&dir).map_err(|e| e.to_string())?;
        let tail = self.replica.uncommitted().cloned().collect();
        info!(gpid = %self.gpid, learner = %r.learner, decree, "checkpoint for a learner");
        Ok((Some(dir), decree, tail))
    }

    /// Learner: puts the copied store in place of its own, then tells the state machine.
    fn install(&mut self, copy: Copy, round: &mut Round) {
        let ballot = std::mem::take(&mut self.learning);
        let (dir, decree, tail) = match copy {
            Ok(c) if self.replica.role() == Role::Learner && self.replica.ballot() == ballot => c,
            Ok((dir, ..)) => {
                if let Some(dir) = dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return;
            }
            Err(e) => {
                warn!(gpid = %self.gpid, "learning failed: {e}");
                // The primary proposes again; the state machine asks for a new copy then.
                return;
            }
        };
        let Some(dir) = dir else {
            // From the log: the store stays; the tail starts where it is.
            let at = self.store().applied_decree().unwrap_or(0);
            if at != decree {
                warn!(gpid = %self.gpid, at, decree, "the store moved while learning from the log");
                return;
            }
            info!(gpid = %self.gpid, decree = at, tail = tail.len(), "learned from the primary's log");
            self.step(
                Input::Learned {
                    checkpoint: at,
                    tail,
                },
                round,
            );
            return;
        };
        // What the log held is of another history than the copy's (see `Plog::reset`); gone
        // first, so a crash in between leaves the old store with an empty log, which a learner
        // (not a member: nothing it held counted) can afford.
        if let Err(e) = self.plog.reset() {
            return self.fail(
                format!("resetting the log for a learned copy failed: {e}"),
                round,
            );
        }
        let rdb = self.dir.join("data").join("rdb");
        let swapped = (|| -> Result<Arc<Storage>, String> {
            let mut slot = self.storage.write().expect("storage");
            let old = slot.take().ok_or("no store")?;
            // Readers hold it only for one request.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Arc::strong_count(&old) > 1 {
                if Instant::now() > deadline {
                    *slot = Some(old);
                    return Err("the old store is still in use".into());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(old);
            std::fs::remove_dir_all(&rdb).map_err(|e| e.to_string())?;
            std::fs::rename(&dir, &rdb).map_err(|e| e.to_string())?;
            sync_parent(&rdb).map_err(|e| e.to_string())?;
            let new =
                Arc::new(Storage::open(&rdb, &self.options.rocks).map_err(|e| e.to_string())?);
            *slot = Some(Arc::clone(&new));
            Ok(new)
        })();
        match swapped {
            Ok(store) => {
                let at = store.applied_decree().unwrap_or(0);
                if at != decree {
                    warn!(gpid = %self.gpid, at, decree, "the learned store is at another decree than announced");
                }
                info!(gpid = %self.gpid, decree = at, tail = tail.len(), "learned copy in place");
                self.step(
                    Input::Learned {
                        checkpoint: at,
                        tail,
                    },
                    round,
                );
            }
            Err(e) => self.fail(format!("installing a learned copy failed: {e}"), round),
        }
    }

    /// Feeds the state machine and carries out what it asks, except the appends, applies and
    /// replies, which the round does in order.
    fn step(&mut self, input: Input<SocketAddrV4, Effects>, round: &mut Round) {
        let outputs = self.replica.handle(input);
        if self.lossy && !self.replica.lossy() {
            // Learned again (or granted its group's primary as the last copy): its log, which
            // may lack entries its store holds and keep older ones in their place, starts
            // afresh before anything else is appended (so it never teaches from it), and the
            // mark goes.
            let cleared = self
                .plog
                .reset()
                .and_then(|()| super::boot::clear_lossy(&self.dir));
            match cleared {
                Ok(()) => {
                    self.lossy = false;
                    self.status.lossy.store(false, Ordering::Release);
                    info!(gpid = %self.gpid, "this copy holds its group's history again");
                }
                Err(e) => warn!(gpid = %self.gpid, "clearing the lossy mark: {e}"),
            }
        }
        for output in outputs {
            match output {
                Output::Send { to, message } => self.send(to, message, round),
                Output::Append(m) => round.appends.push(to_plog(m)),
                Output::Apply(m) => round.applies.push(to_plog(m)),
                Output::Reply { id, result } => {
                    let Some(answers) = self.waiting.remove(&id) else {
                        continue;
                    };
                    for (done, answer) in answers {
                        let answer = match (&result, answer) {
                            (Ok(decree), Ok(mut reply)) => {
                                reply.stamp(
                                    self.gpid.app_id,
                                    self.gpid.partition_index,
                                    *decree as i64,
                                    &self.options.server,
                                );
                                Ok(reply)
                            }
                            (Ok(_), Err(e)) => Err(e),
                            (Err(e), _) => Err(PartitionError::from(*e)),
                        };
                        round.replies.push((done, answer));
                    }
                }
                Output::StartLearning { from, ballot } => {
                    if self.learning == ballot {
                        continue;
                    }
                    self.learning = ballot;
                    info!(gpid = %self.gpid, primary = %from, ballot, "learning");
                    if let Some(peers) = &self.peers {
                        let events = self.events.clone();
                        peers.learn(
                            from,
                            LearnRequest {
                                pid: self.gpid,
                                ballot: ballot as i64,
                                learner: RpcAddress::new(self.me),
                                applied: self.store().applied_decree().unwrap_or(0) as i64,
                            },
                            self.dir.join("learn").join("copy"),
                            Box::new(move |copy| {
                                let _ = events.try_send(Event::Learned(copy));
                            }),
                        );
                    }
                }
                Output::Upgrade { learner, ballot } => {
                    info!(gpid = %self.gpid, %learner, ballot, "a learner caught up: asking the meta to make it a secondary");
                    if let Some(peers) = &self.peers {
                        peers.update(
                            self.gpid,
                            ballot,
                            learner,
                            config_type::UPGRADE_TO_SECONDARY,
                        );
                    }
                }
                Output::RaiseBallot { ballot } => {
                    info!(gpid = %self.gpid, ballot, "asks the meta for the next ballot (restarted as primary, or a silent learner)");
                    if let Some(peers) = &self.peers {
                        peers.update(
                            self.gpid,
                            ballot,
                            self.me,
                            config_type::PRIMARY_FORCE_UPDATE_BALLOT,
                        );
                    }
                }
                Output::Remove { member, ballot } => {
                    if member == self.me {
                        warn!(gpid = %self.gpid, ballot, "this copy may lack acknowledged writes: asking the meta to remove it");
                    } else {
                        warn!(gpid = %self.gpid, %member, ballot, "a secondary did not acknowledge in time: asking the meta to remove it");
                    }
                    if let Some(peers) = &self.peers {
                        peers.update(
                            self.gpid,
                            ballot,
                            member,
                            config_type::DOWNGRADE_TO_INACTIVE,
                        );
                    }
                }
            }
        }
    }

    fn send(&mut self, to: SocketAddrV4, message: Message<Effects>, round: &mut Round) {
        match message {
            Message::Prepare {
                ballot,
                ballot_start,
                mutation,
                committed,
            } => {
                let Some(peers) = &self.peers else {
                    return;
                };
                let request = PrepareRequest {
                    pid: self.gpid,
                    ballot: ballot as i64,
                    ballot_start: ballot_start as i64,
                    committed: committed as i64,
                    mutation_ballot: mutation.ballot as i64,
                    decree: mutation.decree as i64,
                    empty: mutation.write.is_none(),
                    ops: mutation
                        .write
                        .as_deref()
                        .map(|ops| ops.iter().map(to_wire).collect())
                        .unwrap_or_default(),
                    primary: RpcAddress::new(self.me),
                };
                let events = self.events.clone();
                peers.prepare(
                    to,
                    request,
                    Box::new(move |answer| {
                        if let Some(answer) = answer {
                            // Dropped only past the queue's room: the prepare timeout covers it.
                            let _ = events.try_send(Event::Answer(to, answer));
                        }
                    }),
                );
            }
            Message::Ack { ballot, decree } => {
                if let Some(done) = self.prepares.remove(&(ballot, decree)) {
                    done(Some(PrepareResponse {
                        err: ErrorName(ErrorCode::Ok.name().to_owned()),
                        ballot: ballot as i64,
                        decree: decree as i64,
                        rejected: false,
                    }));
                }
            }
            Message::Reject { ballot } => round.rejected = Some(ballot),
            Message::Learn {
                ballot,
                prepare_start,
            } => {
                if let Some(peers) = &self.peers {
                    peers.learn_add(
                        to,
                        LearnAddRequest {
                            pid: self.gpid,
                            ballot: ballot as i64,
                            primary: RpcAddress::new(self.me),
                            prepare_start: prepare_start as i64,
                            max_replica_count: self.max_replica_count,
                        },
                    );
                }
            }
            Message::LearnDone {
                ballot,
                logged_through,
            } => {
                if let Some(peers) = &self.peers {
                    peers.learn_done(
                        to,
                        LearnDoneRequest {
                            pid: self.gpid,
                            ballot: ballot as i64,
                            learner: RpcAddress::new(self.me),
                            logged_through: logged_through as i64,
                        },
                    );
                }
            }
        }
    }

    /// Appends (and feeds back `Logged`), applies, then answers, until nothing is left.
    fn carry_out(&mut self, round: &mut Round) {
        while !round.appends.is_empty() {
            let batch = std::mem::take(&mut round.appends);
            if self.failed.get().is_some() {
                break;
            }
            match self.plog.append(&batch) {
                Ok(()) => {
                    for m in &batch {
                        self.step(
                            Input::Logged {
                                ballot: m.ballot,
                                decree: m.decree,
                            },
                            round,
                        );
                    }
                }
                Err(e) => self.fail(format!("a write failed: {e}"), round),
            }
        }
        if !round.applies.is_empty() && self.failed.get().is_none() {
            let applies = std::mem::take(&mut round.applies);
            if let Err(e) = self.store().apply(&applies) {
                self.fail(format!("applying a write failed: {e}"), round);
            }
        }
        round.applies.clear();
        for (done, answer) in round.replies.drain(..) {
            done(answer);
        }
        if self.plog.file_count() > 1 && self.failed.get().is_none() {
            // A file is full: make the store durable up to here and drop the files it covers.
            match self.store().flush() {
                Ok(durable) => {
                    if let Err(e) = self.plog.gc(durable) {
                        error!(gpid = %self.gpid, "plog gc: {e}");
                    }
                }
                Err(e) => error!(gpid = %self.gpid, "flush: {e}"),
            }
        }
    }

    /// A failed append or apply (a full disk, an I/O error): the replica stops, answers what
    /// waits, and is reported lost.
    fn fail(&mut self, why: String, round: &mut Round) {
        error!(gpid = %self.gpid, "{why}; the replica stops taking writes");
        let _ = self.failed.set(why);
        for (_, answers) in self.waiting.drain() {
            for (done, _) in answers {
                round.replies.push((done, Err(PartitionError::Closed)));
            }
        }
        for (_, done) in std::mem::take(&mut self.prepares) {
            done(Some(refusal(ErrorCode::InvalidState)));
        }
        round.appends.clear();
        round.applies.clear();
    }
}

fn refusal(code: ErrorCode) -> PrepareResponse {
    PrepareResponse {
        err: ErrorName(code.name().to_owned()),
        ..Default::default()
    }
}

fn to_plog(m: pegasus_replication::Mutation<Effects>) -> Mutation {
    Mutation {
        ballot: m.ballot,
        decree: m.decree,
        ops: m.write.map(|ops| ops.to_vec()).unwrap_or_default(),
    }
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

/// A logged effect from its wire form.
pub fn from_wire(op: WireOp) -> Op {
    match op.kind {
        0 => Op::Put(op.key.0.to_vec(), op.value.0.to_vec()),
        _ => Op::Delete(op.key.0.to_vec()),
    }
}
