//! The private log (plog) of one partition replica: every mutation, with its `(ballot, decree)`,
//! is appended and made durable here before it is applied to RocksDB (whose own WAL is off).
//!
//! Files are `plog/log.<index>.<start_offset>` as in Pegasus. A record is
//! `[u32 flags|payload length][u32 CRC-32C of payload][payload]`, the payload being a
//! [`Mutation`], preceded by the first decree of the record's batch (one [`Plog::append`]) when
//! the flag [`BATCHED`] is set, as every record written now has it.
//!
//! Replay tells a torn tail from damage. Only the last file's end can be torn, by a crash in the
//! middle of its last write, which was never acknowledged; a power loss may keep any of that
//! write's pages and lose others. Replay stops at the first record that is short, zero or fails
//! its CRC. When every intact record after it in that file belongs to the same batch (the torn
//! write), the rest becomes a hole, so the next append starts on a clean boundary. An intact
//! record of a later batch after a bad one, or any bad record in an older file, is damage:
//! nothing is cut, and [`Plog::open`] fails with [`PlogError::Corrupt`] so the replica can be
//! moved aside whole.
//!
//! One [`Plog::append`] call writes a whole batch of mutations and syncs once: group commit.
//! The file being written is sized to `log_private_file_size_mb` up front (a sparse file, so no
//! disk is used for it yet) and written in place: a sync then never has to record a new file
//! size (fsynced writes in `./run.sh bench_replica` went from 23.5k to 27.6k ops/s).

use super::faults::{Faults, Point};
use super::metrics::PlogMetrics;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// CRC-32C (Castagnoli), as the log records and learned files carry it.
pub const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// The largest record replay accepts; anything larger is a corrupt length.
const MAX_RECORD: usize = 256 << 20;

/// Set in a record's length word when its payload starts with its batch's first decree.
const BATCHED: u32 = 1 << 31;

/// The smallest record: header, ballot, decree and op count.
const MIN_RECORD: usize = 8 + 20;

/// Why a log cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum PlogError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A record is damaged where no crash could have torn it: acknowledged writes may follow it.
    #[error("`{}` is damaged at byte {offset}: {reason}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Where its intact records end.
        offset: u64,
        /// What was found.
        reason: String,
    },
}

/// What a mutation does to the store: the effect, not the request, so replay is exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Put a stored key to a stored value.
    Put(Vec<u8>, Vec<u8>),
    /// Delete a stored key.
    Delete(Vec<u8>),
}

impl Op {
    /// The bytes of its key and value.
    pub fn size(&self) -> usize {
        match self {
            Op::Put(k, v) => k.len() + v.len(),
            Op::Delete(k) => k.len(),
        }
    }
}

/// One logged write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    /// The ballot (configuration epoch) of the primary that made it.
    pub ballot: u64,
    /// Its position in the partition's history, from 1, without gaps.
    pub decree: u64,
    /// Its effect.
    pub ops: Vec<Op>,
}

impl Mutation {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ballot.to_be_bytes());
        out.extend_from_slice(&self.decree.to_be_bytes());
        out.extend_from_slice(&(self.ops.len() as u32).to_be_bytes());
        for op in &self.ops {
            match op {
                Op::Put(k, v) => {
                    out.push(0);
                    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
                    out.extend_from_slice(k);
                    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    out.extend_from_slice(v);
                }
                Op::Delete(k) => {
                    out.push(1);
                    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
                    out.extend_from_slice(k);
                }
            }
        }
    }

    fn decode(mut b: &[u8]) -> Option<Mutation> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = (b.len() >= n).then(|| b.split_at(n))?;
            *b = tail;
            Some(head)
        }
        fn u32_(b: &mut &[u8]) -> Option<u32> {
            take(b, 4).map(|s| u32::from_be_bytes(s.try_into().expect("4")))
        }
        fn u64_(b: &mut &[u8]) -> Option<u64> {
            take(b, 8).map(|s| u64::from_be_bytes(s.try_into().expect("8")))
        }
        let ballot = u64_(&mut b)?;
        let decree = u64_(&mut b)?;
        let count = u32_(&mut b)? as usize;
        let mut ops = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let kind = take(&mut b, 1)?[0];
            let klen = u32_(&mut b)? as usize;
            let k = take(&mut b, klen)?.to_vec();
            ops.push(match kind {
                0 => {
                    let vlen = u32_(&mut b)? as usize;
                    Op::Put(k, take(&mut b, vlen)?.to_vec())
                }
                1 => Op::Delete(k),
                _ => return None,
            });
        }
        b.is_empty().then_some(Mutation {
            ballot,
            decree,
            ops,
        })
    }
}

/// One log file and the decrees it holds.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    index: u64,
    start_offset: u64,
    /// Highest decree in the file (0 if empty).
    max_decree: u64,
    size: u64,
}

/// The private log of one replica.
pub struct Plog {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    /// Rotate to a new file past this size.
    file_size_limit: u64,
    /// Whether appends are fsynced (`[replication] plog_force_flush`).
    sync: bool,
    buf: Vec<u8>,
    metrics: PlogMetrics,
    faults: Arc<Faults>,
    /// The file being written and how far: for [`Tail::sync`] from another thread.
    tail: Arc<Tail>,
}

/// Where a log's writing is (its current file and the bytes written there), shared so that
/// another thread can make the log durable without its owner: the shared log does, before it
/// drops files whose records the private logs hold unsynced ([`super::slog`]).
#[derive(Debug)]
pub struct Tail {
    /// The file, the bytes written there, and how many of them are known synced.
    at: std::sync::Mutex<(PathBuf, u64, u64)>,
    /// Where its fsyncs are counted (the log's [`Plog::set_metrics`]).
    metrics: std::sync::Mutex<PlogMetrics>,
}

impl Tail {
    fn new(path: &Path, len: u64) -> Tail {
        Tail {
            at: std::sync::Mutex::new((path.to_owned(), len, len)),
            metrics: std::sync::Mutex::default(),
        }
    }

    fn set(&self, path: &Path, len: u64) {
        let mut at = self.at.lock().expect("tail");
        if at.0 != path {
            at.0 = path.to_owned();
            at.2 = 0;
        }
        at.1 = len;
    }

    /// Whether bytes were written since the last [`Tail::sync`].
    pub fn dirty(&self) -> bool {
        let at = self.at.lock().expect("tail");
        at.1 > at.2
    }

    /// Makes everything written so far durable (the files before the current one were synced
    /// as they were left). A file removed meanwhile (a reset, a collection) is fine: what it
    /// held is durable elsewhere.
    pub fn sync(&self, faults: &Faults) -> io::Result<()> {
        let (path, len, _) = self.at.lock().expect("tail").clone();
        match File::open(&path) {
            Ok(file) => {
                let started = std::time::Instant::now();
                file.sync_data()?;
                let metrics = self.metrics.lock().expect("metrics").clone();
                metrics.fsync.observe(started.elapsed());
                faults.note_synced(&path, len);
                let mut at = self.at.lock().expect("tail");
                if at.0 == path {
                    at.2 = at.2.max(len);
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl std::fmt::Debug for Plog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plog")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .finish()
    }
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("log.")?;
    let (index, offset) = rest.split_once('.')?;
    Some((index.parse().ok()?, offset.parse().ok()?))
}

/// A log's folder, made (and its entry synced) if new, and its files `log.<index>.<start>`:
/// `(index, start, path)` by index. The private and the shared log name their files alike.
pub(super) fn log_files(dir: &Path) -> io::Result<Vec<(u64, u64, PathBuf)>> {
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        sync_parent(dir)?;
    }
    let mut files: Vec<(u64, u64, PathBuf)> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let (index, start) = parse_name(&e.file_name().to_string_lossy())?;
            Some((index, start, e.path()))
        })
        .collect();
    files.sort_by_key(|f| f.0);
    Ok(files)
}

impl Plog {
    /// Opens (creating if needed) the log in `dir` and replays it: every intact mutation with a
    /// decree above `applied` is passed to `apply`, in log order (a decree prepared again under
    /// a newer ballot comes again, later). A torn tail is truncated; damage anywhere else is
    /// [`PlogError::Corrupt`], with nothing cut.
    pub fn open(
        dir: &Path,
        file_size_limit: u64,
        applied: u64,
        apply: impl FnMut(Mutation) -> io::Result<()>,
    ) -> Result<Plog, PlogError> {
        Self::open_with_shared(dir, file_size_limit, applied, &[], apply)
    }

    /// As [`Plog::open`], with `shared` the mutations the shared log holds for this replica
    /// ([`super::slog`]), in the order they were appended: a suffix of what was appended here,
    /// made durable there while this log was written unsynced. A bad record from which on
    /// `shared` holds everything is cut (with the rest of the log) wherever it is: a power loss
    /// may have kept any of the unsynced pages, and what they held is in `shared`. Then every
    /// mutation of `shared` the intact part lacks is appended (and passed to `apply`, above
    /// `applied`), in order, and the log synced.
    pub fn open_with_shared(
        dir: &Path,
        file_size_limit: u64,
        applied: u64,
        shared: &[Mutation],
        mut apply: impl FnMut(Mutation) -> io::Result<()>,
    ) -> Result<Plog, PlogError> {
        let mut segments: Vec<Segment> = log_files(dir)?
            .into_iter()
            .map(|(index, start_offset, path)| Segment {
                path,
                index,
                start_offset,
                max_decree: 0,
                size: 0,
            })
            .collect();
        // The highest decree in the files so far (replayed or not), or the applied one.
        let mut highest = applied;
        let count = segments.len();
        // Every intact record's (ballot, decree), the last one's, and where a bad record
        // `shared` makes up for cuts the log (file, offset).
        let mut intact = std::collections::HashSet::new();
        let shared_from = shared.iter().map(|m| m.decree).min().unwrap_or(u64::MAX);
        let mut last_intact = None;
        let mut cut = None;
        for (n, segment) in segments.iter_mut().enumerate() {
            let replayed = replay_file(&segment.path, &mut |m: Mutation| {
                // Only what the shared log may also hold (a decree is never below its first).
                if m.decree >= shared_from {
                    intact.insert((m.ballot, m.decree));
                }
                last_intact = Some((m.ballot, m.decree));
                if m.decree > applied { apply(m) } else { Ok(()) }
            })?;
            let (valid_len, max) = (replayed.valid, replayed.max);
            highest = highest.max(max);
            let actual = fs::metadata(&segment.path)?.len();
            let bad = valid_len < actual && !zero_from(&segment.path, valid_len)?;
            let covered =
                |m: &Mutation| Some((m.ballot, m.decree)) == last_intact || m.decree <= highest + 1;
            if bad && shared.first().is_some_and(covered) {
                segment.max_decree = max;
                segment.size = valid_len;
                cut = Some(n);
                break;
            }
            if bad {
                let corrupt = |reason: String| PlogError::Corrupt {
                    file: segment.path.clone(),
                    offset: valid_len,
                    reason,
                };
                // A torn tail can only be at the end of the last file; anything else is damage
                // we must not silently skip past.
                if n + 1 != count {
                    return Err(corrupt(format!(
                        "a bad record in `{}`, which is not the last file",
                        segment.path.display()
                    )));
                }
                // The torn write is the batch of the last intact record, or the next one; batches
                // never span files, so a file without an intact record starts a batch.
                let torn: Vec<u64> = replayed
                    .last
                    .and_then(|(_, batch)| batch)
                    .into_iter()
                    .chain([highest + 1])
                    .collect();
                if let Some((at, decree)) =
                    intact_record_after(&segment.path, valid_len, highest, &torn)?
                {
                    return Err(corrupt(format!(
                        "a bad record followed by an intact one of a later write (decree \
                         {decree} at byte {at})"
                    )));
                }
            }
            segment.max_decree = max;
            segment.size = valid_len;
        }
        if let Some(n) = cut {
            tracing::warn!(
                file = %segments[n].path.display(),
                offset = segments[n].size,
                "a bad record in the private log, past what was fsynced; the log is rebuilt from \
                 there from the shared log"
            );
            for later in segments.drain(n + 1..) {
                fs::remove_file(&later.path)?;
            }
        }
        if segments.is_empty() {
            segments.push(Segment {
                path: dir.join("log.1.0"),
                index: 1,
                start_offset: 0,
                max_decree: 0,
                size: 0,
            });
        }
        let last = segments.last().expect("one segment");
        let file = reopen_last(dir, &last.path, last.size, file_size_limit)?;
        let tail = Arc::new(Tail::new(&last.path, last.size));
        let mut plog = Plog {
            dir: dir.to_owned(),
            segments,
            file,
            file_size_limit,
            sync: true,
            buf: Vec::new(),
            metrics: PlogMetrics::default(),
            faults: Arc::default(),
            tail,
        };
        // What the shared log holds that the intact part lacks follows it, in order.
        let missing: Vec<Mutation> = shared
            .iter()
            .filter(|m| !intact.contains(&(m.ballot, m.decree)))
            .cloned()
            .collect();
        if !missing.is_empty() {
            plog.append(&missing)?;
            for m in missing {
                if m.decree > applied {
                    apply(m)?;
                }
            }
        }
        Ok(plog)
    }

    /// Whether each append is fsynced before it returns (the default). Without it an append has
    /// reached the operating system when it returns: a crash of the process loses nothing, a
    /// crash of the machine may lose the last appends (Pegasus's `plog_force_flush = false`).
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// Makes every file of the log durable (with appends not fsynced, before a clean stop: see
    /// [`super::boot::mark_clean`]).
    pub fn sync_all(&mut self) -> io::Result<()> {
        for segment in &self.segments {
            File::open(&segment.path)?.sync_data()?;
            self.faults.note_synced(&segment.path, segment.size);
        }
        sync_dir(&self.dir)
    }

    /// Counts appends, their bytes and fsync times in `metrics`.
    pub fn set_metrics(&mut self, metrics: PlogMetrics) {
        *self.tail.metrics.lock().expect("metrics") = metrics.clone();
        self.metrics = metrics;
    }

    /// Fails appends as `faults` says, and tells it what is fsynced (tests). What `open`
    /// synced is told now.
    pub fn set_faults(&mut self, faults: Arc<Faults>) {
        self.faults = faults;
        if let Some(last) = self.segments.last() {
            self.faults.note_synced(&last.path, last.size);
        }
    }

    /// The highest decree in the log.
    pub fn max_decree(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.max_decree)
            .max()
            .unwrap_or(0)
    }

    /// Appends mutations with one write, and makes them durable with one sync if syncing.
    pub fn append(&mut self, mutations: &[Mutation]) -> io::Result<()> {
        self.buf.clear();
        encode_batch(mutations, &mut self.buf);
        let last = self.segments.last_mut().expect("one segment");
        if let Err(e) = self.faults.check(Point::PlogWrite) {
            // A failing disk may take part of a write: half of it lands (a torn tail).
            let _ = self
                .file
                .write_all_at(&self.buf[..self.buf.len() / 2], last.size);
            return Err(e);
        }
        self.file.write_all_at(&self.buf, last.size)?;
        if self.sync {
            let started = std::time::Instant::now();
            self.faults.check(Point::PlogSync)?;
            self.file.sync_data()?;
            self.metrics.fsync.observe(started.elapsed());
            self.faults
                .note_synced(&last.path, last.size + self.buf.len() as u64);
        }
        self.metrics.appends.inc();
        self.metrics.bytes.inc_by(self.buf.len() as u64);
        last.size += self.buf.len() as u64;
        if let Some(m) = mutations.last() {
            last.max_decree = last.max_decree.max(m.decree);
        }
        self.tail.set(&last.path, last.size);
        if last.size >= self.file_size_limit {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let last = self.segments.last().expect("one segment");
        if !self.sync {
            // Whoever makes the log durable later (the shared log's collection, a clean stop)
            // syncs only the file being written: the one left behind is made durable now.
            self.file.sync_data()?;
            self.faults.note_synced(&last.path, last.size);
        }
        let (index, offset) = (last.index + 1, last.start_offset + last.size);
        let path = self.dir.join(format!("log.{index}.{offset}"));
        self.faults.check(Point::PlogWrite)?;
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        file.set_len(self.file_size_limit)?;
        self.file = file;
        sync_dir(&self.dir)?;
        self.tail.set(&path, 0);
        self.segments.push(Segment {
            path,
            index,
            start_offset: offset,
            max_decree: 0,
            size: 0,
        });
        Ok(())
    }

    /// Forgets everything logged: after a learned checkpoint replaced the store, what the log
    /// held (prepares of older ballots, never committed here) must not be taken for this
    /// replica's history, by a restart or by a learner it teaches from its log. The next
    /// append goes to a new file.
    pub fn reset(&mut self) -> io::Result<()> {
        self.rotate()?;
        let old = self.segments.len() - 1;
        for segment in self.segments.drain(..old) {
            fs::remove_file(&segment.path)?;
        }
        sync_dir(&self.dir)
    }

    /// Deletes whole files whose mutations are all durable elsewhere (decree ≤ `durable`),
    /// never the file being written.
    pub fn gc(&mut self, durable: u64) -> io::Result<usize> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[0].max_decree <= durable {
            let segment = self.segments.remove(0);
            fs::remove_file(&segment.path)?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// The mutations with decrees in `(after, through]`, each of the highest ballot it was
    /// logged with (a decree prepared again under a newer ballot comes again, later), if the
    /// log still holds every one of them and their effects take at most `max_bytes` of keys
    /// and values; `None` otherwise.
    pub fn read_range(
        &self,
        after: u64,
        through: u64,
        max_bytes: usize,
    ) -> io::Result<Option<Vec<Mutation>>> {
        read_range(&self.files_after(after), after, through, max_bytes)
    }

    /// The files that may hold decrees past `after`, oldest first: what [`read_range`] reads,
    /// so the reading can be done away from the log's owner (a file removed meanwhile by
    /// [`Plog::gc`] makes that read fail, not return less).
    pub fn files_after(&self, after: u64) -> Vec<PathBuf> {
        self.segments
            .iter()
            .filter(|s| s.max_decree > after)
            .map(|s| s.path.clone())
            .collect()
    }

    /// The number of files.
    pub fn file_count(&self) -> usize {
        self.segments.len()
    }

    /// Where its writing is, for [`Tail::sync`].
    pub fn tail(&self) -> Arc<Tail> {
        Arc::clone(&self.tail)
    }
}

/// Encodes a batch of mutations as [`Plog::append`] writes them: one record each, marked with
/// the batch's first decree.
pub(crate) fn encode_batch(mutations: &[Mutation], buf: &mut Vec<u8>) {
    let batch = mutations.first().map_or(0, |m| m.decree);
    for m in mutations {
        let start = buf.len();
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(&batch.to_be_bytes());
        m.encode(buf);
        let payload = &buf[start + 8..];
        let len = payload.len() as u32 | BATCHED;
        let crc = CRC32C.checksum(payload);
        buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    }
}

/// The mutations of bytes [`encode_batch`] made; `None` unless every record is intact and
/// they fill the bytes exactly.
pub(super) fn decode_batch(data: &[u8]) -> Option<Vec<Mutation>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let (record, len) = record_at(data, at)?;
        out.push(record.mutation);
        at += len;
    }
    Some(out)
}

/// What a partition's driver needs of its log: [`Plog`] on disk, or a fake in the driver's
/// unit tests (an in-memory log that can be told to fail).
pub trait Log: Send {
    /// Appends mutations; once this returns they are durable (or written to the operating
    /// system, without `plog_force_flush`).
    fn append(&mut self, mutations: &[Mutation]) -> io::Result<()>;
    /// The last append's batch as [`encode_batch`] encodes it (what the shared log is handed).
    fn encoded(&self) -> &[u8];
    /// Makes everything appended durable.
    fn sync_all(&mut self) -> io::Result<()>;
    /// Forgets everything logged (see [`Plog::reset`]).
    fn reset(&mut self) -> io::Result<()>;
    /// Deletes whole files durable elsewhere (decree ≤ `durable`); how many.
    fn gc(&mut self, durable: u64) -> io::Result<usize>;
    /// The files that may hold decrees past `after`, for [`read_range`].
    fn files_after(&self, after: u64) -> Vec<PathBuf>;
    /// The number of files (more than one: one is full, and the store may be flushed).
    fn file_count(&self) -> usize;
}

impl Log for Plog {
    fn append(&mut self, mutations: &[Mutation]) -> io::Result<()> {
        Plog::append(self, mutations)
    }
    fn encoded(&self) -> &[u8] {
        &self.buf
    }
    fn sync_all(&mut self) -> io::Result<()> {
        Plog::sync_all(self)
    }
    fn reset(&mut self) -> io::Result<()> {
        Plog::reset(self)
    }
    fn gc(&mut self, durable: u64) -> io::Result<usize> {
        Plog::gc(self, durable)
    }
    fn files_after(&self, after: u64) -> Vec<PathBuf> {
        Plog::files_after(self, after)
    }
    fn file_count(&self) -> usize {
        Plog::file_count(self)
    }
}

/// [`Plog::read_range`] over `files` (from [`Plog::files_after`]): reads only, so it may run
/// on any thread while the log is appended to (a record being written reads as a torn tail,
/// past anything asked for).
pub fn read_range(
    files: &[PathBuf],
    after: u64,
    through: u64,
    max_bytes: usize,
) -> io::Result<Option<Vec<Mutation>>> {
    let mut found = std::collections::BTreeMap::new();
    let mut bytes = 0usize;
    for path in files {
        replay_file(path, &mut |m: Mutation| {
            let newer = found
                .get(&m.decree)
                .is_none_or(|f: &Mutation| f.ballot <= m.ballot);
            if m.decree > after && m.decree <= through && newer {
                bytes += m.ops.iter().map(Op::size).sum::<usize>();
                found.insert(m.decree, m);
            }
            Ok(())
        })?;
        if bytes > max_bytes {
            return Ok(None);
        }
    }
    // Keys within the range, as many as the range: every decree is there.
    let complete = found.len() as u64 == through.saturating_sub(after);
    Ok(complete.then(|| found.into_values().collect()))
}

/// One intact record.
struct Record {
    mutation: Mutation,
    /// The first decree of its batch (records written before batches were marked: `None`).
    batch: Option<u64>,
}

/// The payload length in a record's first word, and whether it is [`BATCHED`]; `None` for an
/// impossible length (zero is the unwritten part of a file).
fn payload_len(word: u32) -> Option<(usize, bool)> {
    let len = (word & !BATCHED) as usize;
    (len != 0 && len <= MAX_RECORD).then_some((len, word & BATCHED != 0))
}

/// Decodes a payload whose CRC matched.
fn decode_payload(payload: &[u8], batched: bool) -> Option<Record> {
    let (batch, rest) = if batched {
        let (head, rest) = (payload.len() >= 8).then(|| payload.split_at(8))?;
        (Some(u64::from_be_bytes(head.try_into().expect("8"))), rest)
    } else {
        (None, payload)
    };
    Some(Record {
        mutation: Mutation::decode(rest)?,
        batch,
    })
}

/// The intact record at `at` in `data`, and its length.
fn record_at(data: &[u8], at: usize) -> Option<(Record, usize)> {
    let header = data.get(at..at + 8)?;
    let (len, batched) = payload_len(u32::from_be_bytes(header[..4].try_into().expect("4")))?;
    let crc = u32::from_be_bytes(header[4..].try_into().expect("4"));
    let payload = data.get(at + 8..at + 8 + len)?;
    if CRC32C.checksum(payload) != crc {
        return None;
    }
    decode_payload(payload, batched).map(|r| (r, 8 + len))
}

/// What replay found in one file.
struct Replayed {
    /// The length of its intact prefix.
    valid: u64,
    /// Its highest decree (0: none).
    max: u64,
    /// The last intact record's decree and batch.
    last: Option<(u64, Option<u64>)>,
}

/// Reads one file, passing every intact record of its intact prefix to `apply`.
fn replay_file(
    path: &Path,
    apply: &mut dyn FnMut(Mutation) -> io::Result<()>,
) -> io::Result<Replayed> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut out = Replayed {
        valid: 0,
        max: 0,
        last: None,
    };
    let mut header = [0u8; 8];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let Some((len, batched)) =
            payload_len(u32::from_be_bytes(header[..4].try_into().expect("4")))
        else {
            break;
        };
        let crc = u32::from_be_bytes(header[4..].try_into().expect("4"));
        let mut payload = vec![0u8; len];
        match reader.read_exact(&mut payload) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if CRC32C.checksum(&payload) != crc {
            break;
        }
        let Some(record) = decode_payload(&payload, batched) else {
            break;
        };
        let decree = record.mutation.decree;
        out.max = out.max.max(decree);
        out.last = Some((decree, record.batch));
        apply(record.mutation)?;
        out.valid += 8 + len as u64;
    }
    Ok(out)
}

/// Looks for an intact record after the bad one at `from` that a torn last write cannot explain:
/// one of a batch other than `torn` (the batches the bad record may belong to). Records have
/// decrees after `last_decree` without gaps, so a candidate is any offset whose decree field
/// (16 bytes in, or 24 in a batched record) is within the records the rest of the file could
/// hold; only those are checksummed. Returns the record's offset and decree.
fn intact_record_after(
    path: &Path,
    from: u64,
    last_decree: u64,
    torn: &[u64],
) -> io::Result<Option<(u64, u64)>> {
    let data = fs::read(path)?;
    let from = from as usize;
    // The file is sized up front: what follows the last non-zero byte was never written.
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let most = (end.saturating_sub(from) / MIN_RECORD) as u64 + 1;
    let plausible = |at: usize| {
        data.get(at..at + 8).is_some_and(|d| {
            let decree = u64::from_be_bytes(d.try_into().expect("8"));
            decree > last_decree && decree - last_decree <= most
        })
    };
    let mut at = from;
    while at < end {
        if (plausible(at + 16) || plausible(at + 24))
            && let Some((record, len)) = record_at(&data, at)
        {
            match record.batch {
                // Part of the torn write: skip it whole.
                Some(batch) if torn.contains(&batch) => {
                    at += len;
                    continue;
                }
                _ => return Ok(Some((at as u64, record.mutation.decree))),
            }
        }
        at += 1;
    }
    Ok(None)
}

/// Whether every byte of the file from `offset` on is zero.
fn zero_from(path: &Path, offset: u64) -> io::Result<bool> {
    let file = File::open(path)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut at = offset;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
}

/// The last file of a log in `dir` (created if `dir` has none yet), opened to write on after
/// its `intact` bytes: whatever follows them (a torn write, or nothing) becomes a hole, and the
/// file is sized to `limit` up front; all of it synced.
pub(super) fn reopen_last(dir: &Path, path: &Path, intact: u64, limit: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    file.set_len(intact)?;
    file.set_len(intact.max(limit))?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes a new entry of `path`'s parent durable.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(decree: u64) -> Mutation {
        Mutation {
            ballot: 1,
            decree,
            ops: vec![
                Op::Put(format!("k{decree}").into_bytes(), vec![7; 10]),
                Op::Delete(b"x".to_vec()),
            ],
        }
    }

    fn replayed(dir: &Path, applied: u64) -> (Plog, Vec<u64>) {
        replayed_sized(dir, 200, applied)
    }

    fn replayed_big(dir: &Path) -> (Plog, Vec<u64>) {
        replayed_sized(dir, 1 << 20, 0)
    }

    fn replayed_sized(dir: &Path, file_size: u64, applied: u64) -> (Plog, Vec<u64>) {
        let mut seen = Vec::new();
        let plog = Plog::open(dir, file_size, applied, |m| {
            seen.push(m.decree);
            Ok(())
        })
        .unwrap();
        (plog, seen)
    }

    #[test]
    fn appends_replay_in_order_after_the_applied_decree_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, seen) = replayed(dir.path(), 0);
        assert!(seen.is_empty());
        for d in 1..=10 {
            plog.append(&[m(d)]).unwrap();
        }
        assert!(plog.file_count() > 1, "small files rotate");
        drop(plog);
        let (_, seen) = replayed(dir.path(), 4);
        assert_eq!(seen, (5..=10).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_tail_is_cut_and_appending_continues_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        plog.append(&[m(1), m(2)]).unwrap();
        let valid = plog.segments[0].size;
        drop(plog);
        let file = dir.path().join("log.1.0");
        // A crash in the middle of the third record.
        let torn = [0, 0, 0, 40, 1, 2, 3];
        OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .write_all_at(&torn, valid)
            .unwrap();
        let (mut plog, seen) = replayed(dir.path(), 0);
        assert_eq!(seen, [1, 2]);
        assert!(zero_from(&file, valid).unwrap(), "the torn record is gone");
        plog.append(&[m(3)]).unwrap();
        drop(plog);
        assert_eq!(replayed(dir.path(), 0).1, [1, 2, 3]);
    }

    #[test]
    fn the_file_being_written_has_its_full_size_and_is_written_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        let file = dir.path().join("log.1.0");
        assert_eq!(fs::metadata(&file).unwrap().len(), 200);
        plog.append(&[m(1)]).unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().len(),
            200,
            "no growth, no size to sync"
        );
        drop(plog);
        assert_eq!(replayed(dir.path(), 0).1, [1]);
    }

    #[test]
    fn a_zero_tail_in_an_older_file_is_unwritten_space_but_garbage_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        for d in 1..=6 {
            plog.append(&[m(d)]).unwrap();
        }
        assert!(plog.file_count() > 1);
        drop(plog);
        // As if the first file had been sized larger than what it holds (a smaller
        // log_private_file_size_mb since): zeros after its records.
        let first = dir.path().join("log.1.0");
        let len = fs::metadata(&first).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap()
            .set_len(len + 300)
            .unwrap();
        assert_eq!(replayed(dir.path(), 0).1, (1..=6).collect::<Vec<_>>());
        // Garbage there instead is not a torn tail: the file is not the last one.
        OpenOptions::new()
            .write(true)
            .open(&first)
            .unwrap()
            .write_all_at(&[0, 0, 0, 9, 1], len)
            .unwrap();
        let err = Plog::open(dir.path(), 200, 0, |_| Ok(())).unwrap_err();
        assert!(matches!(err, PlogError::Corrupt { .. }), "{err}");
    }

    /// Regression guard: 8 bytes overwritten in the middle of the written part of the last file
    /// were taken for a torn tail, and every acknowledged write after them was cut silently.
    #[test]
    fn damage_followed_by_intact_records_is_corruption_and_nothing_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut plog = Plog::open(dir.path(), 1 << 20, 0, |_| Ok(())).unwrap();
        for d in 1..=100 {
            plog.append(&[m(d)]).unwrap();
        }
        let written = plog.segments[0].size;
        drop(plog);
        let file = dir.path().join("log.1.0");
        let before = fs::read(&file).unwrap();
        // Each byte position of one record in the middle: its header, its payload.
        let middle = written / 2;
        for at in [middle, middle + 3, middle + 20] {
            OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .write_all_at(&[0xAB; 8], at)
                .unwrap();
            let mut seen = 0;
            let err = Plog::open(dir.path(), 1 << 20, 0, |_| {
                seen += 1;
                Ok(())
            })
            .unwrap_err();
            match &err {
                PlogError::Corrupt { reason, .. } => {
                    assert!(reason.contains("followed by an intact one"), "{err}")
                }
                other => panic!("{other}"),
            }
            assert!(seen < 100);
            let after = fs::read(&file).unwrap();
            let damaged = at as usize..at as usize + 8;
            assert!(
                after
                    .iter()
                    .zip(&before)
                    .enumerate()
                    .all(|(i, (a, b))| a == b || damaged.contains(&i)),
                "nothing but the damage changed"
            );
            fs::write(&file, &before).unwrap();
        }
        // Damage to the very last record, with nothing intact after it, is a torn tail.
        let mut torn = before.clone();
        torn[written as usize - 5] ^= 0xFF;
        fs::write(&file, &torn).unwrap();
        let (_, seen) = replayed_big(dir.path());
        assert_eq!(seen, (1..=99).collect::<Vec<_>>());
    }

    #[test]
    fn a_wide_stretch_of_damage_is_found_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut plog = Plog::open(dir.path(), 1 << 20, 0, |_| Ok(())).unwrap();
        for d in 1..=400 {
            plog.append(&[m(d)]).unwrap();
        }
        let written = plog.segments[0].size as usize;
        drop(plog);
        // A lost 4 KiB page in the middle: about 60 records.
        let file = dir.path().join("log.1.0");
        let mut data = fs::read(&file).unwrap();
        let page = (written / 2) & !4095;
        data[page..page + 4096].fill(0);
        fs::write(&file, &data).unwrap();
        let err = Plog::open(dir.path(), 1 << 20, 0, |_| Ok(())).unwrap_err();
        assert!(matches!(err, PlogError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn a_later_record_whose_value_ends_in_zeros_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut plog = Plog::open(dir.path(), 1 << 20, 0, |_| Ok(())).unwrap();
        plog.append(&[m(1), m(2)]).unwrap();
        let second_batch = plog.segments[0].size;
        plog.append(&[m(3)]).unwrap();
        let zeros = Mutation {
            ballot: 1,
            decree: 4,
            ops: vec![Op::Put(b"k".to_vec(), vec![0; 40])],
        };
        plog.append(&[zeros]).unwrap();
        drop(plog);
        let file = dir.path().join("log.1.0");
        OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .write_all_at(&[0xAB; 8], second_batch + 10)
            .unwrap();
        let err = Plog::open(dir.path(), 1 << 20, 0, |_| Ok(())).unwrap_err();
        assert!(matches!(err, PlogError::Corrupt { .. }), "{err}");
    }

    /// A power loss in the middle of the last write (never acknowledged) may keep later pages of
    /// it and lose earlier ones: intact records of that same batch after a bad one are a torn
    /// tail, not damage.
    #[test]
    fn intact_records_of_the_torn_batch_after_a_bad_one_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut plog = Plog::open(dir.path(), 1 << 20, 0, |_| Ok(())).unwrap();
        plog.append(&[m(1), m(2)]).unwrap();
        let torn_batch = plog.segments[0].size;
        plog.append(&(3..=12).map(m).collect::<Vec<_>>()).unwrap();
        drop(plog);
        let file = dir.path().join("log.1.0");
        // Its third record lost (zeros), the ones after it kept.
        let mut data = fs::read(&file).unwrap();
        let (_, first) = record_at(&data, torn_batch as usize).unwrap();
        let (_, second) = record_at(&data, torn_batch as usize + first).unwrap();
        let third = torn_batch as usize + first + second;
        data[third..third + 12].fill(0);
        fs::write(&file, &data).unwrap();
        let (mut plog, seen) = replayed_big(dir.path());
        assert_eq!(seen, [1, 2, 3, 4]);
        assert!(
            zero_from(&file, third as u64).unwrap(),
            "the torn write is cut"
        );
        plog.append(&[m(5)]).unwrap();
        drop(plog);
        assert_eq!(replayed_big(dir.path()).1, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn gc_removes_only_durable_closed_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        for d in 1..=10 {
            plog.append(&[m(d)]).unwrap();
        }
        let before = plog.file_count();
        // Records are about 64 bytes: the first file holds decrees 1 to 4.
        assert_eq!(plog.gc(3).unwrap(), 0, "decree 4 is not durable yet");
        assert_eq!(plog.gc(4).unwrap(), 1);
        assert_eq!(plog.file_count(), before - 1);
        plog.gc(u64::MAX).unwrap();
        assert_eq!(plog.file_count(), 1, "the file being written stays");
        drop(plog);
        let (_, seen) = replayed(dir.path(), 0);
        assert!(seen.iter().all(|&d| d > 4), "{seen:?}");
    }

    #[test]
    fn a_range_is_read_back_as_last_logged_and_only_while_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        for d in 1..=10 {
            plog.append(&[m(d)]).unwrap();
        }
        // Decree 9 prepared again under a newer ballot: the later one counts.
        let again = Mutation { ballot: 2, ..m(9) };
        plog.append(std::slice::from_ref(&again)).unwrap();
        assert!(plog.file_count() > 2, "the range spans files");
        let got = plog.read_range(2, 10, usize::MAX).unwrap().unwrap();
        assert_eq!(
            got.iter().map(|m| m.decree).collect::<Vec<_>>(),
            (3..=10).collect::<Vec<_>>()
        );
        assert_eq!(got[6], again);
        assert_eq!(
            plog.read_range(10, 10, usize::MAX).unwrap(),
            Some(Vec::new())
        );
        assert_eq!(
            plog.read_range(8, 12, usize::MAX).unwrap(),
            None,
            "past the log"
        );
        assert_eq!(plog.read_range(2, 10, 20).unwrap(), None, "too many bytes");
        // Once the first file is collected, its decrees are gone.
        assert_eq!(plog.gc(4).unwrap(), 1);
        assert_eq!(plog.read_range(2, 10, usize::MAX).unwrap(), None);
        assert!(plog.read_range(4, 10, usize::MAX).unwrap().is_some());
    }

    #[test]
    fn a_reset_log_holds_nothing_from_before() {
        let dir = tempfile::tempdir().unwrap();
        let (mut plog, _) = replayed(dir.path(), 0);
        for d in 1..=10 {
            plog.append(&[m(d)]).unwrap();
        }
        plog.reset().unwrap();
        assert_eq!(plog.file_count(), 1);
        assert_eq!(plog.max_decree(), 0);
        assert_eq!(plog.read_range(0, 1, usize::MAX).unwrap(), None);
        plog.append(&[m(11)]).unwrap();
        drop(plog);
        let (_, seen) = replayed(dir.path(), 0);
        assert_eq!(seen, [11]);
    }
}
