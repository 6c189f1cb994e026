//! One partition replica: its store, its private log, its write pipeline and its scanners.
//!
//! Writes go through one writer thread per partition, so their order is decided in one place:
//!
//! ```text
//! request ─► queue (bounded) ─► writer: effect + decree ─► plog append, one sync per batch
//!         ─► [replication: prepare to secondaries, wait for acks] ─► apply to RocksDB ─► reply
//! ```
//!
//! Everything that arrived while the previous batch was syncing forms the next batch, so one
//! fsync covers many writes (group commit). A write is acknowledged only after its plog record
//! is synced, or with `[replication] plog_force_flush = false` (as in Pegasus) once it is written
//! to the operating system, which a crash of the process cannot lose but one of the machine can.
//! Reads go straight to RocksDB from the caller's thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pegasus_protocol::types::Gpid;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use super::plog::{Mutation, Plog, PlogError, sync_parent};
use super::read::{ReadLimits, ScanContext};
use super::storage::{RocksOptions, Storage, StorageError};
use super::write::{View, WriteOp, WriteReply};

/// Idle scanner contexts expire after this long.
const SCANNER_IDLE: Duration = Duration::from_secs(300);
/// Scanner contexts per partition at most.
const MAX_SCANNERS: usize = 4096;
/// Writes handled in one batch at most.
const MAX_BATCH: usize = 512;

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
}

impl PartitionError {
    /// Whether the replica's files are damaged (not just unreadable now): it must be moved aside,
    /// never served or appended to.
    pub fn is_damage(&self) -> bool {
        matches!(self, PartitionError::Replay(PlogError::Corrupt { .. }))
    }
}

/// Tuning of a partition.
#[derive(Clone, Debug)]
pub struct PartitionOptions {
    /// RocksDB options.
    pub rocks: RocksOptions,
    /// Plog file size before rotation (`log_private_file_size_mb`).
    pub plog_file_size: u64,
    /// Fsync the plog before acknowledging (`plog_force_flush`; Pegasus's default is false, ours
    /// true while a partition has no secondaries to hold a second copy).
    pub plog_force_flush: bool,
    /// Writes queued at most before answering `ERR_BUSY`.
    pub write_queue: usize,
    /// Cluster id written into timetags.
    pub cluster_id: u8,
    /// Read bounds.
    pub limits: ReadLimits,
    /// This server's address, echoed in answers.
    pub server: String,
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
        }
    }
}

/// Called exactly once with the outcome of a write.
pub type WriteDone = Box<dyn FnOnce(Result<WriteReply, PartitionError>) + Send>;

struct PendingWrite {
    op: WriteOp,
    done: WriteDone,
}

struct Scanners {
    next_id: i64,
    contexts: HashMap<i64, (ScanContext, Instant)>,
}

/// A partition replica.
pub struct Partition {
    gpid: Gpid,
    dir: PathBuf,
    storage: Arc<Storage>,
    writes: Mutex<Option<mpsc::Sender<PendingWrite>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    failed: Arc<OnceLock<String>>,
    scanners: Mutex<Scanners>,
    options: PartitionOptions,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("gpid", &self.gpid)
            .field("dir", &self.dir)
            .finish()
    }
}

impl Partition {
    /// Opens the replica in `dir` (`<data dir>/<app_id>.<pidx>.pegasus`): the store at
    /// `data/rdb`, the log at `plog/`, replaying every logged mutation the store lacks.
    pub fn open(
        gpid: Gpid,
        dir: &Path,
        options: PartitionOptions,
    ) -> Result<Arc<Partition>, PartitionError> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir.join("data"))?;
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
        let mut replayed = 0u64;
        let mut plog = Plog::open(&dir.join("plog"), options.plog_file_size, applied, |m| {
            replayed += 1;
            storage
                .apply(&[m])
                .map_err(|e| std::io::Error::other(e.to_string()))
        })?;
        plog.set_sync(options.plog_force_flush);
        let last_decree = storage.applied_decree()?.max(plog.max_decree());
        info!(%gpid, applied, replayed, last_decree, "replica opened");
        let (tx, rx) = mpsc::channel(options.write_queue);
        let failed = Arc::new(OnceLock::new());
        let writer = {
            let storage = Arc::clone(&storage);
            let failed = Arc::clone(&failed);
            let options = options.clone();
            std::thread::Builder::new()
                .name(format!("write-{gpid}"))
                .spawn(move || writer_loop(gpid, storage, plog, last_decree, rx, failed, options))?
        };
        Ok(Arc::new(Partition {
            gpid,
            dir: dir.to_owned(),
            storage,
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            failed,
            scanners: Mutex::new(Scanners {
                next_id: 1,
                contexts: HashMap::new(),
            }),
            options,
        }))
    }

    /// The partition's id.
    pub fn gpid(&self) -> Gpid {
        self.gpid
    }

    /// The replica's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store, for reads.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Why the partition stopped taking writes (an I/O error, a full disk), if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// The read bounds.
    pub fn limits(&self) -> ReadLimits {
        self.options.limits
    }

    /// Queues a write; `done` is called once, from the writer thread, when the write is
    /// durable and applied (or at once with [`PartitionError::Busy`] when the queue is full:
    /// overload is an answer, never an unbounded wait).
    pub fn submit(&self, op: WriteOp, done: WriteDone) {
        if self.failed.get().is_some() {
            return done(Err(PartitionError::Closed));
        }
        let guard = self.writes.lock().expect("writes");
        let Some(sender) = guard.as_ref() else {
            return done(Err(PartitionError::Closed));
        };
        if let Err(e) = sender.try_send(PendingWrite { op, done }) {
            drop(guard);
            match e {
                mpsc::error::TrySendError::Full(w) => (w.done)(Err(PartitionError::Busy)),
                mpsc::error::TrySendError::Closed(w) => (w.done)(Err(PartitionError::Closed)),
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

    /// Stops taking writes, lets the queued ones finish, and flushes the store.
    pub fn close(&self) -> Result<(), PartitionError> {
        self.writes.lock().expect("writes").take();
        if let Some(writer) = self.writer.lock().expect("writer").take() {
            let _ = writer.join();
        }
        self.storage.flush()?;
        Ok(())
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.writes.get_mut().expect("writes").take();
        if let Some(writer) = self.writer.get_mut().expect("writer").take() {
            let _ = writer.join();
        }
    }
}

fn writer_loop(
    gpid: Gpid,
    storage: Arc<Storage>,
    mut plog: Plog,
    mut last_decree: u64,
    mut rx: mpsc::Receiver<PendingWrite>,
    failed: Arc<OnceLock<String>>,
    options: PartitionOptions,
) {
    let ballot = 1;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        if failed.get().is_some() {
            for w in batch {
                (w.done)(Err(PartitionError::Closed));
            }
            continue;
        }
        let mut view = View::new(
            &storage,
            pegasus_protocol::key::epoch_now(),
            options.cluster_id,
        );
        let mut mutations = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for w in batch {
            match view.execute(w.op) {
                Ok((ops, reply)) => {
                    let decree = if ops.is_empty() {
                        last_decree
                    } else {
                        last_decree += 1;
                        mutations.push(Mutation {
                            ballot,
                            decree: last_decree,
                            ops,
                        });
                        last_decree
                    };
                    answers.push((w.done, Ok(reply), decree));
                }
                Err(e) => answers.push((w.done, Err(PartitionError::from(e)), 0)),
            }
        }
        let durable = if mutations.is_empty() {
            Ok(())
        } else {
            // The replication stage goes between these two steps: prepare to secondaries and
            // wait for their acks before applying.
            plog.append(&mutations)
                .map_err(PartitionError::from)
                .and_then(|()| storage.apply(&mutations).map_err(PartitionError::from))
        };
        if let Err(e) = &durable {
            error!(%gpid, "write failed, partition stops taking writes: {e}");
            let _ = failed.set(format!("a write failed: {e}"));
        }
        for (done, result, decree) in answers {
            let result = match (&durable, result) {
                (Err(_), _) => Err(PartitionError::Closed),
                (Ok(()), Ok(mut r)) => {
                    r.stamp(
                        gpid.app_id,
                        gpid.partition_index,
                        decree as i64,
                        &options.server,
                    );
                    Ok(r)
                }
                (Ok(()), Err(e)) => Err(e),
            };
            done(result);
        }
        if plog.file_count() > 1 {
            // A file is full: make the store durable up to here and drop the files it covers.
            match storage.flush() {
                Ok(durable) => {
                    if let Err(e) = plog.gc(durable) {
                        error!(%gpid, "plog gc: {e}");
                    }
                }
                Err(e) => error!(%gpid, "flush: {e}"),
            }
        }
    }
}
