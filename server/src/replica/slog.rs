//! The shared log (slog): one log per replica server, in `[replication] slog_dir` (or
//! `<data_dir>/replica/slog` when that is empty, as Pegasus's guide says), where every
//! partition's batches of mutations are made durable together. Partitions append to it without
//! waiting; one thread writes what has gathered and syncs it once, then wakes every partition
//! whose batches that sync covered. While it syncs, the next batches of any partition gather for
//! the next sync: group commit across partitions (with 8 partitions written at once one fsync
//! covers several of them, where a log each took one fsync per partition).
//!
//! The private logs ([`super::plog`]) are still written, before the batch comes here, but not
//! synced: they serve learning and replay. At start-up [`SharedLog::open`] reads this log, and each
//! partition's [`super::plog::Plog::open_with_shared`] takes what its private log lacks from it.
//! A file of this log is removed once the file after it is being written and every private log
//! has been synced ([`super::plog::Tail::sync`]): then everything it held is durable there.
//!
//! Files are `log.<index>.<start offset>`, sized up front as the private logs' are. A record is
//! `[u32 payload length][u32 CRC-32C of payload][payload]`, the payload being the group number
//! (one per sync), the partition (app id, index), a kind, and for a batch the private log's
//! encoding of its mutations. A reset record makes replay forget the partition's earlier
//! records: written, and synced, when a replica is made and when its log is reset (see
//! [`super::plog::Plog::reset`]), so that records of an earlier copy of the partition are never
//! taken for the present one's.
//!
//! Replay tells a torn tail from damage as the private log does: only the last file's end can be
//! torn, by the group being written when the machine stopped, never acknowledged; an intact
//! record of a later group after a bad one, or a bad record in an older file, is damage
//! ([`SlogError::Corrupt`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use pegasus_protocol::types::Gpid;
use tracing::{error, warn};

use super::faults::{Faults, Point};
use super::metrics::PlogMetrics;
use super::plog::{
    CRC32C, Mutation, Tail, decode_batch, log_files, reopen_last, sync_dir, sync_parent,
};
use super::pool::DriverPool;

/// The largest record replay accepts; anything larger is a corrupt length.
const MAX_RECORD: usize = 256 << 20;

/// A record's payload before its data: group, app id, partition index, kind.
const PAYLOAD_HEAD: usize = 8 + 4 + 4 + 1;

/// The kind of a record of mutations.
const BATCH: u8 = 0;
/// The kind of a record that makes replay forget the partition's earlier records.
const RESET: u8 = 1;

/// Why the shared log cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum SlogError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A record is damaged where no crash could have torn it.
    #[error("the shared log `{}` is damaged at byte {offset}: {reason}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Where its intact records end.
        offset: u64,
        /// What was found.
        reason: String,
    },
}

/// Wakes a partition whose batches a sync made durable.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// The failures a log keeps for [`SharedLog::fate`]: a partition asks after its batches within
/// a round or two, long before this many failures.
const FAILURES_KEPT: usize = 64;

/// What became of an appended batch ([`SharedLog::fate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// It is durable.
    Durable,
    /// Not yet.
    Waiting,
    /// Its write or sync failed: it never will be.
    Failed(String),
}

/// What appends gather until the next sync takes them.
struct Pending {
    buf: Vec<u8>,
    /// The log's length (over all its files, as the file names count) once `buf` is written.
    end: u64,
    /// The group `buf` is written as.
    group: u64,
    /// The partitions with a batch in `buf`.
    woken: HashMap<Gpid, Wake>,
    /// How much of the log is durable (written, when not syncing).
    durable: u64,
    /// Why the log takes no appends now (a write or sync failed; until [`SharedLog::recover`]).
    failed: Option<String>,
    /// The last failures: the log's durable length then, its length then, and why. A batch
    /// whose length falls between the two will never be durable.
    failures: std::collections::VecDeque<(u64, u64, String)>,
    /// Stepped pool: a sync is handed to it and has not run yet.
    scheduled: bool,
    /// Every private log, to be synced before a file of this log is removed.
    tails: HashMap<Gpid, Weak<Tail>>,
}

/// One file of the log.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    index: u64,
    /// Where it starts in the log.
    start: u64,
    /// Bytes written.
    size: u64,
}

/// What only the one syncing touches.
struct Writer {
    file: File,
    segments: Vec<Segment>,
}

/// The shared log of a replica server.
pub struct SharedLog {
    dir: PathBuf,
    /// Whether each group is fsynced (`plog_force_flush`).
    sync: bool,
    file_size: u64,
    pending: Mutex<Pending>,
    /// The syncing thread waits here for appends.
    appended: Condvar,
    /// [`SharedLog::mark`] waits here for its record.
    synced: Condvar,
    writer: Mutex<Writer>,
    faults: Arc<Faults>,
    metrics: PlogMetrics,
    /// A stepped pool runs each sync as background work; else a thread of its own does.
    stepped: Option<Arc<DriverPool>>,
    /// What replay found for each partition, until it opens.
    replay: Mutex<HashMap<Gpid, Vec<Mutation>>>,
}

impl std::fmt::Debug for SharedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLog").field("dir", &self.dir).finish()
    }
}

/// How the shared log is run.
#[derive(Clone)]
pub struct SlogOptions {
    /// Fsync each group (`plog_force_flush`).
    pub sync: bool,
    /// File size before the next file (`log_shared_file_size_mb`).
    pub file_size: u64,
    /// The drivers' pool: if stepped, syncs are its background work.
    pub pool: Arc<DriverPool>,
    /// Injected disk faults; told what is fsynced.
    pub faults: Arc<Faults>,
    /// Appends, bytes and fsync times.
    pub metrics: PlogMetrics,
}

/// One intact record.
struct Record<'a> {
    group: u64,
    gpid: Gpid,
    kind: u8,
    data: &'a [u8],
}

/// The intact record at `at` in `data`, and its length.
fn record_at(data: &[u8], at: usize) -> Option<(Record<'_>, usize)> {
    let header = data.get(at..at + 8)?;
    let len = u32::from_be_bytes(header[..4].try_into().expect("4")) as usize;
    if !(PAYLOAD_HEAD..=MAX_RECORD).contains(&len) {
        return None;
    }
    let crc = u32::from_be_bytes(header[4..].try_into().expect("4"));
    let payload = data.get(at + 8..at + 8 + len)?;
    if CRC32C.checksum(payload) != crc {
        return None;
    }
    let word = |i: usize| i32::from_be_bytes(payload[i..i + 4].try_into().expect("4"));
    let record = Record {
        group: u64::from_be_bytes(payload[..8].try_into().expect("8")),
        gpid: Gpid {
            app_id: word(8),
            partition_index: word(12),
        },
        kind: payload[16],
        data: &payload[PAYLOAD_HEAD..],
    };
    Some((record, 8 + len))
}

/// Appends a record to `buf`, its data written by `data`.
fn encode_record(
    buf: &mut Vec<u8>,
    group: u64,
    gpid: Gpid,
    kind: u8,
    data: impl FnOnce(&mut Vec<u8>),
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&group.to_be_bytes());
    buf.extend_from_slice(&gpid.app_id.to_be_bytes());
    buf.extend_from_slice(&gpid.partition_index.to_be_bytes());
    buf.push(kind);
    data(buf);
    let payload = &buf[start + 8..];
    let len = payload.len() as u32;
    let crc = CRC32C.checksum(payload);
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// What replay of one file found.
struct Replayed {
    /// The length of its intact prefix.
    valid: u64,
    /// Its last intact record's group.
    last_group: Option<u64>,
}

/// Replays one file's intact prefix into `found` (a reset record clears its partition's).
fn replay_file(data: &[u8], found: &mut HashMap<Gpid, Vec<Mutation>>) -> Replayed {
    let mut out = Replayed {
        valid: 0,
        last_group: None,
    };
    let mut at = 0;
    while let Some((record, len)) = record_at(data, at) {
        match record.kind {
            BATCH => match decode_batch(record.data) {
                Some(mutations) => found.entry(record.gpid).or_default().extend(mutations),
                None => break,
            },
            RESET => {
                found.remove(&record.gpid);
            }
            _ => break,
        }
        out.last_group = Some(record.group);
        at += len;
        out.valid = at as u64;
    }
    out
}

/// An intact record after the bad one at `from` that the torn last group cannot explain: one
/// of a group after `last_group + 1`. Only offsets whose group field is plausible are
/// checksummed. Its offset and group.
fn intact_record_after(data: &[u8], from: usize, last_group: u64) -> Option<(usize, u64)> {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let most = (end.saturating_sub(from) / (8 + PAYLOAD_HEAD)) as u64 + 2;
    let mut at = from;
    while at < end {
        let plausible = data.get(at + 8..at + 16).is_some_and(|d| {
            let group = u64::from_be_bytes(d.try_into().expect("8"));
            group > last_group + 1 && group - last_group <= most
        });
        if plausible && let Some((record, _)) = record_at(data, at) {
            return Some((at, record.group));
        }
        at += 1;
    }
    None
}

impl SharedLog {
    /// Opens (creating if needed) the log in `dir` and replays it: what it holds for each
    /// partition is kept for [`SharedLog::take_replay`]. A torn tail is cut; damage is
    /// [`SlogError::Corrupt`], with nothing cut. In a threaded pool a thread of its own syncs.
    pub fn open(dir: &Path, options: SlogOptions) -> Result<Arc<SharedLog>, SlogError> {
        let mut segments: Vec<Segment> = log_files(dir)?
            .into_iter()
            .map(|(index, start, path)| Segment {
                path,
                index,
                start,
                size: 0,
            })
            .collect();
        let mut found = HashMap::new();
        let mut last_group = 0;
        let count = segments.len();
        for (n, segment) in segments.iter_mut().enumerate() {
            let data = fs::read(&segment.path)?;
            let replayed = replay_file(&data, &mut found);
            let valid = replayed.valid as usize;
            last_group = replayed.last_group.unwrap_or(last_group);
            let corrupt = |reason: String| SlogError::Corrupt {
                file: segment.path.clone(),
                offset: valid as u64,
                reason,
            };
            if data[valid..].iter().any(|&b| b != 0) {
                if n + 1 != count {
                    return Err(corrupt(
                        "a bad record in a file that is not the last".into(),
                    ));
                }
                if let Some((at, group)) = intact_record_after(&data, valid, last_group) {
                    return Err(corrupt(format!(
                        "a bad record followed by an intact one of a later group ({group} at \
                         byte {at})"
                    )));
                }
            }
            segment.size = valid as u64;
        }
        if segments.is_empty() {
            segments.push(Segment {
                path: dir.join("log.1.0"),
                index: 1,
                start: 0,
                size: 0,
            });
        }
        let last = segments.last().expect("one segment");
        let file = reopen_last(dir, &last.path, last.size, options.file_size)?;
        options.faults.note_synced(&last.path, last.size);
        let end = last.start + last.size;
        let stepped = options.pool.is_stepped().then(|| Arc::clone(&options.pool));
        let log = Arc::new(SharedLog {
            dir: dir.to_owned(),
            sync: options.sync,
            file_size: options.file_size,
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                end,
                // Past the torn group too.
                group: last_group + 2,
                woken: HashMap::new(),
                durable: end,
                failed: None,
                failures: std::collections::VecDeque::new(),
                scheduled: false,
                tails: HashMap::new(),
            }),
            appended: Condvar::new(),
            synced: Condvar::new(),
            writer: Mutex::new(Writer { file, segments }),
            faults: options.faults,
            metrics: options.metrics,
            stepped,
            replay: Mutex::new(found),
        });
        if log.stepped.is_none() {
            let weak = Arc::downgrade(&log);
            std::thread::Builder::new()
                .name("replica-slog".into())
                .spawn(move || syncer(&weak))?;
            let weak = Arc::downgrade(&log);
            std::thread::Builder::new()
                .name("replica-plog-flush".into())
                .spawn(move || flusher(&weak))?;
        }
        Ok(log)
    }

    /// What replay found for `gpid` (taken: asked once, as the replica opens), in order.
    pub fn take_replay(&self, gpid: Gpid) -> Vec<Mutation> {
        self.replay
            .lock()
            .expect("replay")
            .remove(&gpid)
            .unwrap_or_default()
    }

    /// Forgets what replay found for replicas that did not open (moved aside, removed).
    pub fn drop_replay(&self) {
        self.replay.lock().expect("replay").clear();
    }

    /// Registers `gpid`'s private log, synced before a file of this log is removed.
    pub fn register(&self, gpid: Gpid, tail: &Arc<Tail>) {
        let mut pending = self.pending.lock().expect("pending");
        pending.tails.retain(|_, t| t.strong_count() > 0);
        pending.tails.insert(gpid, Arc::downgrade(tail));
    }

    /// Appends `gpid`'s batch, `encoded` as the private log wrote it ([`encode_batch`], so it
    /// is encoded once); returns the log's length once it is written, which
    /// [`SharedLog::durable`] reaches when the batch is durable. `wake` is called then.
    pub fn append(self: &Arc<Self>, gpid: Gpid, encoded: &[u8], wake: &Wake) -> io::Result<u64> {
        let mut pending = self.pending.lock().expect("pending");
        if let Some(why) = &pending.failed {
            return Err(io::Error::other(why.clone()));
        }
        let group = pending.group;
        let before = pending.buf.len();
        encode_record(&mut pending.buf, group, gpid, BATCH, |b| {
            b.extend_from_slice(encoded)
        });
        pending.end += (pending.buf.len() - before) as u64;
        pending
            .woken
            .entry(gpid)
            .or_insert_with(|| Arc::clone(wake));
        let end = pending.end;
        self.kick(pending);
        Ok(end)
    }

    /// Writes a reset record for `gpid` and waits until it is durable: replay forgets what came
    /// before it for that partition.
    pub fn mark(self: &Arc<Self>, gpid: Gpid) -> io::Result<()> {
        let mut pending = self.pending.lock().expect("pending");
        if let Some(why) = &pending.failed {
            return Err(io::Error::other(why.clone()));
        }
        let group = pending.group;
        let before = pending.buf.len();
        encode_record(&mut pending.buf, group, gpid, RESET, |_| {});
        pending.end += (pending.buf.len() - before) as u64;
        let end = pending.end;
        drop(pending);
        // Written by whoever syncs next: this thread, if none is (a stepped pool has none).
        loop {
            let wrote = self.sync_once();
            let pending = self.pending.lock().expect("pending");
            if let Some(why) = &pending.failed {
                return Err(io::Error::other(why.clone()));
            }
            if pending.durable >= end {
                return Ok(());
            }
            if !wrote {
                // The syncing thread has it.
                let _ = self
                    .synced
                    .wait_timeout(pending, Duration::from_millis(10))
                    .expect("pending");
            }
        }
    }

    /// How much of the log is durable: every append that returned at most this is, unless
    /// its write failed ([`SharedLog::fate`]).
    pub fn durable(&self) -> u64 {
        self.pending.lock().expect("pending").durable
    }

    /// What became of the batch whose append returned `end`.
    pub fn fate(&self, end: u64) -> Fate {
        let pending = self.pending.lock().expect("pending");
        let failed = pending
            .failures
            .iter()
            .find(|(durable, length, _)| *durable < end && end <= *length);
        match failed {
            Some((.., why)) => Fate::Failed(why.clone()),
            None if end <= pending.durable => Fate::Durable,
            None => Fate::Waiting,
        }
    }

    /// Takes appends again after a failure, once the disk serves: the current file is cut back
    /// to its last durable group (a failed write or fsync may have left any part of the group
    /// it was writing) and synced. `Err` while the disk still fails.
    pub fn recover(&self) -> io::Result<()> {
        let mut writer = self.writer.lock().expect("writer");
        if self.pending.lock().expect("pending").failed.is_none() {
            return Ok(());
        }
        self.faults.check(Point::PlogWrite)?;
        let Writer { file, segments } = &mut *writer;
        let last = segments.last().expect("one segment");
        file.set_len(last.size)?;
        file.set_len(last.size.max(self.file_size))?;
        file.sync_all()?;
        self.pending.lock().expect("pending").failed = None;
        warn!(dir = %self.dir.display(), "the shared log takes writes again");
        Ok(())
    }

    /// Has the next sync run: the syncing thread told, or a stepped pool handed the work.
    fn kick(self: &Arc<Self>, mut pending: std::sync::MutexGuard<'_, Pending>) {
        match &self.stepped {
            None => {
                drop(pending);
                self.appended.notify_one();
            }
            Some(pool) => {
                if !std::mem::replace(&mut pending.scheduled, true) {
                    drop(pending);
                    let log = Arc::clone(self);
                    let handed = pool.spawn(
                        "slog".into(),
                        Box::new(move || {
                            log.pending.lock().expect("pending").scheduled = false;
                            log.sync_once();
                            let pending = log.pending.lock().expect("pending");
                            if !pending.buf.is_empty() {
                                log.kick(pending);
                            }
                        }),
                    );
                    if let Err(e) = handed {
                        error!("the shared log's sync: {e}");
                    }
                }
            }
        }
    }

    /// Writes (and syncs) what has gathered, as one group; wakes the partitions it covered.
    /// Whether there was anything.
    fn sync_once(&self) -> bool {
        let mut writer = self.writer.lock().expect("writer");
        let (buf, end, woken) = {
            let mut pending = self.pending.lock().expect("pending");
            if pending.buf.is_empty() || pending.failed.is_some() {
                return false;
            }
            pending.group += 1;
            let woken = std::mem::take(&mut pending.woken);
            (std::mem::take(&mut pending.buf), pending.end, woken)
        };
        let mut woken = woken;
        let written = self.write(&mut writer, &buf);
        let full = writer
            .segments
            .last()
            .is_some_and(|s| s.size >= self.file_size);
        let rotated = match written {
            Ok(()) if full => self.rotate(&mut writer),
            other => other,
        };
        {
            let mut pending = self.pending.lock().expect("pending");
            match rotated {
                Ok(()) => pending.durable = end,
                Err(e) => {
                    error!(dir = %self.dir.display(), "the shared log failed: {e}; every replica with a batch in it stops, and none takes writes until the disk serves again");
                    let why = format!("the shared log failed: {e}");
                    // What gathered meanwhile will not be written either.
                    pending.buf.clear();
                    woken.extend(std::mem::take(&mut pending.woken));
                    let at = (pending.durable, pending.end, why.clone());
                    if pending.failures.len() == FAILURES_KEPT {
                        pending.failures.pop_front();
                    }
                    pending.failures.push_back(at);
                    pending.failed = Some(why);
                }
            }
        }
        self.synced.notify_all();
        for wake in woken.values() {
            wake();
        }
        if writer.segments.len() > 1 {
            self.collect(&mut writer);
        }
        true
    }

    fn write(&self, writer: &mut Writer, buf: &[u8]) -> io::Result<()> {
        let Writer { file, segments } = writer;
        let last = segments.last_mut().expect("one segment");
        self.faults.check(Point::PlogWrite)?;
        file.write_all_at(buf, last.size)?;
        if self.sync {
            let started = Instant::now();
            self.faults.check(Point::PlogSync)?;
            file.sync_data()?;
            self.metrics.fsync.observe(started.elapsed());
            self.faults
                .note_synced(&last.path, last.size + buf.len() as u64);
        }
        last.size += buf.len() as u64;
        self.metrics.appends.inc();
        self.metrics.bytes.inc_by(buf.len() as u64);
        Ok(())
    }

    /// Starts the next file (the full one was synced with its last group).
    fn rotate(&self, writer: &mut Writer) -> io::Result<()> {
        let last = writer.segments.last().expect("one segment");
        if !self.sync {
            writer.file.sync_data()?;
            self.faults.note_synced(&last.path, last.size);
        }
        let (index, start) = (last.index + 1, last.start + last.size);
        let path = self.dir.join(format!("log.{index}.{start}"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        file.set_len(self.file_size)?;
        sync_dir(&self.dir)?;
        writer.file = file;
        writer.segments.push(Segment {
            path,
            index,
            start,
            size: 0,
        });
        Ok(())
    }

    /// Removes every file but the one being written, once every private log is synced (their
    /// records are then durable there). On a failure the files stay, for the next try.
    fn collect(&self, writer: &mut Writer) {
        let tails: Vec<Arc<Tail>> = {
            let mut pending = self.pending.lock().expect("pending");
            pending.tails.retain(|_, t| t.strong_count() > 0);
            pending.tails.values().filter_map(Weak::upgrade).collect()
        };
        for tail in tails {
            if let Err(e) = tail.sync(&self.faults) {
                warn!("syncing a private log before the shared log drops a file: {e}");
                return;
            }
        }
        let old = writer.segments.len() - 1;
        for segment in writer.segments.drain(..old) {
            if let Err(e) = fs::remove_file(&segment.path) {
                warn!(file = %segment.path.display(), "removing a shared log file: {e}");
            }
        }
        if let Err(e) = sync_dir(&self.dir) {
            warn!(dir = %self.dir.display(), "{e}");
        }
    }

    /// The number of files.
    pub fn file_count(&self) -> usize {
        self.writer.lock().expect("writer").segments.len()
    }
}

/// Opens the shared log in `dir`; one found damaged is set aside (renamed
/// `<dir>.damaged.<unix seconds>`, for an operator to look at) and a new one made in its place:
/// `true` then, and every copy on the node may lack writes it acknowledged.
pub fn open_or_set_aside(
    dir: &Path,
    options: SlogOptions,
) -> Result<(Arc<SharedLog>, bool), SlogError> {
    match SharedLog::open(dir, options.clone()) {
        Ok(log) => Ok((log, false)),
        Err(SlogError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            let seconds = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = PathBuf::from(format!("{}.damaged.{seconds}", dir.display()));
            error!(
                file = %file.display(),
                offset,
                reason,
                aside = %aside.display(),
                "the shared log is damaged: set aside; every copy on this node learns again \
                 from its group before it counts"
            );
            fs::rename(dir, &aside)?;
            sync_parent(dir)?;
            Ok((SharedLog::open(dir, options)?, true))
        }
        Err(e) => Err(e),
    }
}

/// How often the private logs written since are synced in the background.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Syncs the private logs with unsynced bytes every [`FLUSH_EVERY`], on a thread of its own:
/// written and never synced, they would pile up in the page cache and go to the disk all at once
/// when the kernel's writeback comes for them (30 s after, by default), and the shared log's
/// fsyncs would wait behind that burst (an open-loop run measured a 160 ms p99 then, 6 ms
/// otherwise). Synced a little at a time, they also leave little for [`SharedLog::collect`].
fn flusher(log: &Weak<SharedLog>) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let Some(log) = log.upgrade() else {
            return;
        };
        let tails: Vec<Arc<Tail>> = {
            let pending = log.pending.lock().expect("pending");
            pending.tails.values().filter_map(Weak::upgrade).collect()
        };
        for tail in tails.iter().filter(|t| t.dirty()) {
            if let Err(e) = tail.sync(&log.faults) {
                warn!("syncing a private log in the background: {e}");
            }
        }
    }
}

/// The syncing thread: waits for appends, syncs them as a group; ends with the log.
fn syncer(log: &Weak<SharedLog>) {
    loop {
        let Some(log) = log.upgrade() else {
            return;
        };
        {
            let pending = log.pending.lock().expect("pending");
            if pending.buf.is_empty() {
                let _ = log
                    .appended
                    .wait_timeout(pending, Duration::from_millis(100))
                    .expect("pending");
            }
        }
        log.sync_once();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::plog::{Op, Plog, encode_batch};

    /// A batch as the private log encodes it, which is what the shared log is handed.
    fn enc(batch: &[Mutation]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_batch(batch, &mut out);
        out
    }

    fn gpid(i: i32) -> Gpid {
        Gpid {
            app_id: 1,
            partition_index: i,
        }
    }

    fn m(ballot: u64, decree: u64) -> Mutation {
        Mutation {
            ballot,
            decree,
            ops: vec![Op::Put(format!("k{decree}").into_bytes(), vec![b'v'; 40])],
        }
    }

    fn options(pool: &Arc<DriverPool>, file_size: u64) -> SlogOptions {
        SlogOptions {
            sync: true,
            file_size,
            pool: Arc::clone(pool),
            faults: Arc::default(),
            metrics: PlogMetrics::default(),
        }
    }

    fn threaded() -> Arc<DriverPool> {
        DriverPool::new(1, Duration::from_millis(100)).unwrap()
    }

    fn nothing() -> Wake {
        Arc::new(|| {})
    }

    /// Appends and waits until durable, as a driver's round would before it acknowledges.
    fn append_durable(log: &Arc<SharedLog>, gpid: Gpid, batch: &[Mutation]) {
        let end = log.append(gpid, &enc(batch), &nothing()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.durable() < end {
            assert!(Instant::now() < deadline, "never durable");
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    #[test]
    fn partitions_appending_at_once_share_their_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(&threaded(), 64 << 20);
        let metrics = opts.metrics.clone();
        let log = SharedLog::open(dir.path(), opts).unwrap();
        let (partitions, batches) = (8i32, 100u64);
        std::thread::scope(|s| {
            for p in 0..partitions {
                let log = &log;
                s.spawn(move || {
                    for d in 1..=batches {
                        append_durable(log, gpid(p), &[m(1, d)]);
                    }
                });
            }
        });
        let syncs = metrics.appends.get();
        let total = partitions as u64 * batches;
        assert!(
            syncs * 2 <= total,
            "{syncs} syncs for {total} batches of {partitions} partitions: no groups formed"
        );
        drop(log);
        let log = SharedLog::open(dir.path(), options(&threaded(), 64 << 20)).unwrap();
        for p in 0..partitions {
            let got = log.take_replay(gpid(p));
            let decrees: Vec<u64> = got.iter().map(|m| m.decree).collect();
            assert_eq!(decrees, (1..=batches).collect::<Vec<_>>(), "partition {p}");
        }
    }

    #[test]
    fn a_reset_record_forgets_what_came_before_for_its_partition_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedLog::open(dir.path(), options(&threaded(), 64 << 20)).unwrap();
        append_durable(&log, gpid(0), &[m(1, 1), m(1, 2)]);
        append_durable(&log, gpid(1), &[m(1, 1)]);
        log.mark(gpid(0)).unwrap();
        append_durable(&log, gpid(0), &[m(2, 1)]);
        drop(log);
        let log = SharedLog::open(dir.path(), options(&threaded(), 64 << 20)).unwrap();
        assert_eq!(log.take_replay(gpid(0)), vec![m(2, 1)]);
        assert_eq!(log.take_replay(gpid(1)), vec![m(1, 1)]);
        assert!(log.take_replay(gpid(0)).is_empty(), "taken once");
    }

    fn written(dir: &Path) -> (PathBuf, usize) {
        let path = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .max()
            .unwrap();
        let data = fs::read(&path).unwrap();
        let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        (path, end)
    }

    #[test]
    fn a_torn_last_group_is_cut_and_the_log_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedLog::open(dir.path(), options(&threaded(), 1 << 20)).unwrap();
        append_durable(&log, gpid(0), &[m(1, 1)]);
        append_durable(&log, gpid(0), &[m(1, 2), m(1, 3)]);
        drop(log);
        // The last group half written: a power loss in its write.
        let (path, end) = written(dir.path());
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0; 40], (end - 40) as u64).unwrap();
        let log = SharedLog::open(dir.path(), options(&threaded(), 1 << 20)).unwrap();
        assert_eq!(log.take_replay(gpid(0)), vec![m(1, 1)]);
        append_durable(&log, gpid(0), &[m(1, 2)]);
        drop(log);
        let log = SharedLog::open(dir.path(), options(&threaded(), 1 << 20)).unwrap();
        assert_eq!(log.take_replay(gpid(0)), vec![m(1, 1), m(1, 2)]);
    }

    #[test]
    fn a_bad_record_before_a_later_group_is_damage_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = SharedLog::open(dir.path(), options(&threaded(), 1 << 20)).unwrap();
        for d in 1..=5 {
            append_durable(&log, gpid(0), &[m(1, d)]);
        }
        drop(log);
        let (path, _) = written(dir.path());
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        // Inside the second record's data: groups 3, 4, 5 follow it intact.
        let first = record_at(&fs::read(&path).unwrap(), 0).unwrap().1;
        file.write_all_at(&[0xAB; 4], (first + 40) as u64).unwrap();
        let err = SharedLog::open(dir.path(), options(&threaded(), 1 << 20)).unwrap_err();
        assert!(
            matches!(&err, SlogError::Corrupt { offset, .. } if *offset == first as u64),
            "{err}"
        );
    }

    #[test]
    fn a_full_file_is_removed_once_every_private_log_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(Faults::default());
        faults.record_syncs();
        let mut opts = options(&threaded(), 4096);
        opts.faults = Arc::clone(&faults);
        let log = SharedLog::open(&dir.path().join("slog"), opts).unwrap();
        let mut plog = Plog::open(&dir.path().join("plog"), 1 << 20, 0, |_| Ok(())).unwrap();
        plog.set_sync(false);
        plog.set_faults(Arc::clone(&faults));
        log.register(gpid(0), &plog.tail());
        let mut d = 0;
        while d < 200 {
            d += 1;
            plog.append(&[m(1, d)]).unwrap();
            append_durable(&log, gpid(0), &[m(1, d)]);
        }
        assert!(log.file_count() <= 2, "{} files", log.file_count());
        // What the private log held was synced as the shared log dropped its files.
        let (path, end) = written(&dir.path().join("plog"));
        assert!(
            faults.synced(&path) > (end as u64) / 2,
            "{} of {end}",
            faults.synced(&path)
        );
    }

    #[test]
    fn a_stepped_pool_syncs_as_background_work() {
        let dir = tempfile::tempdir().unwrap();
        let pool = DriverPool::stepped(Instant::now());
        let log = SharedLog::open(dir.path(), options(&pool, 1 << 20)).unwrap();
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&woken);
        let wake: Wake = Arc::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let end = log.append(gpid(0), &enc(&[m(1, 1)]), &wake).unwrap();
        log.append(gpid(1), &enc(&[m(1, 1)]), &wake).unwrap();
        assert!(
            log.durable() < end,
            "nothing runs until the pool is stepped"
        );
        assert_eq!(pool.background_count(), 1, "one sync for both");
        assert!(pool.run_background(0));
        assert!(log.durable() > end);
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 2);
        log.mark(gpid(0)).unwrap();
    }

    /// A private log written unsynced, whose pages a power loss kept in part: a hole in the
    /// middle, later records intact. With the shared log holding everything from the hole
    /// on, the log is cut there and rebuilt; without, it is damage.
    #[test]
    fn a_private_log_with_a_hole_is_rebuilt_from_the_shared_log_that_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let plog_dir = dir.path().join("plog");
        let mut plog = Plog::open(&plog_dir, 1 << 20, 0, |_| Ok(())).unwrap();
        plog.set_sync(false);
        for d in 1..=6 {
            plog.append(&[m(1, d)]).unwrap();
        }
        drop(plog);
        let (path, _) = written(&plog_dir);
        let data = fs::read(&path).unwrap();
        // Zeros over records 3 and 4.
        let mut at = 0;
        let mut starts = Vec::new();
        while let Some(len) = data
            .get(at..at + 4)
            .map(|w| (u32::from_be_bytes(w.try_into().unwrap()) & !(1 << 31)) as usize)
            .filter(|l| *l > 0)
        {
            starts.push(at);
            at += 8 + len;
        }
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&vec![0; starts[4] - starts[2]], starts[2] as u64)
            .unwrap();
        drop(file);
        let copy = dir.path().join("copy");
        fs::create_dir_all(&copy).unwrap();
        fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();

        let shared: Vec<Mutation> = (2..=6).map(|d| m(1, d)).collect();
        let mut replayed = Vec::new();
        let plog = Plog::open_with_shared(&plog_dir, 1 << 20, 0, &shared, |m| {
            replayed.push(m.decree);
            Ok(())
        })
        .unwrap();
        assert_eq!(replayed, vec![1, 2, 3, 4, 5, 6]);
        drop(plog);
        let mut again = Vec::new();
        Plog::open(&plog_dir, 1 << 20, 0, |m| {
            again.push(m.decree);
            Ok(())
        })
        .unwrap();
        assert_eq!(again, vec![1, 2, 3, 4, 5, 6], "the log was rebuilt on disk");

        // The shared log starting past the hole (its files dropped): damage.
        let err =
            Plog::open_with_shared(&copy, 1 << 20, 0, &[m(1, 5), m(1, 6)], |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn a_failed_group_is_never_durable_and_the_log_goes_on_once_the_disk_serves() {
        use crate::replica::faults::Fault;
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(Faults::default());
        let mut opts = options(&threaded(), 1 << 20);
        opts.faults = Arc::clone(&faults);
        let log = SharedLog::open(dir.path(), opts.clone()).unwrap();
        append_durable(&log, gpid(0), &[m(1, 1)]);
        faults.inject(Point::PlogSync, Some(Fault::Io));
        let lost = log.append(gpid(0), &enc(&[m(1, 2)]), &nothing()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.fate(lost) == Fate::Waiting {
            assert!(Instant::now() < deadline, "never failed");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(matches!(log.fate(lost), Fate::Failed(_)));
        assert!(
            log.append(gpid(0), &enc(&[m(1, 2)]), &nothing()).is_err(),
            "refused meanwhile"
        );
        faults.inject(Point::PlogSync, None);
        faults.inject(Point::PlogWrite, Some(Fault::Io));
        assert!(log.recover().is_err(), "the disk still fails");
        faults.inject(Point::PlogWrite, None);
        log.recover().unwrap();
        append_durable(&log, gpid(0), &[m(2, 2)]);
        assert!(matches!(log.fate(lost), Fate::Failed(_)), "still failed");
        drop(log);
        let log = SharedLog::open(dir.path(), opts).unwrap();
        assert_eq!(log.take_replay(gpid(0)), vec![m(1, 1), m(2, 2)]);
    }
}
