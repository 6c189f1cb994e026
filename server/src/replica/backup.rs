//! A replica server's side of cold backup and restore.
//!
//! **Backup** (`RPC_COLD_BACKUP`, from the meta to a partition's primary): the first request of
//! a backup makes a checkpoint on the partition's driver (at its commit point) and uploads its
//! files in the background, `[replication] max_concurrent_uploading_file_count` at a time, at
//! most `cold_backup_rate_mb_per_sec` for the node; each file's size and CRC-32C go in the
//! partition's manifest, written after every file, and `current_checkpoint` after it. The
//! meta asks again until the answer says 1000 (or an error). The request's `backup_path` is
//! the backup's root as the meta resolved it.
//!
//! **Restore**: a copy of a table created by a restore (its environments name the backup) is
//! built, when the meta first makes it a member, from the checkpoint the backup recorded for
//! its partition: downloaded into a folder beside where it will live, every file checked
//! against the manifest, then moved into place and opened at the backup's decree. Until then
//! the node does not hold the copy. Progress and failures (a file that fails its checksum,
//! named) go to the meta (`RPC_CM_REPORT_RESTORE_STATUS`).

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pegasus_protocol::backup::{BackupRequest, BackupResponse, PROGRESS_FINISHED};
use pegasus_protocol::codes::ErrorCode;
use pegasus_protocol::frame::Request;
use pegasus_protocol::types::{ErrorName, Gpid};
use tracing::{error, info, warn};

use super::ReplicaStub;
use super::partition::PartitionRole;
use crate::backup::RestoreSource;
use crate::backup::block::{BlockService, Pace, Providers};
use crate::backup::layout::{self, BackupInfo, FileEntry, PartitionManifest};
use crate::net::Reply;

/// What a replica server needs for backups and restores.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// The block services.
    pub providers: Providers,
    /// Files uploaded (or downloaded) at once for one partition.
    pub files_at_once: usize,
    /// Bytes a second for the node's uploads and downloads together (0: no bound).
    pub rate: u64,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            providers: Providers::default(),
            files_at_once: 10,
            rate: 0,
        }
    }
}

/// Partitions uploading or downloading at once on a node; more wait their turn. Two left the
/// disk half idle at a backup's end (a node's third part ran alone: `backup_vs_cp.sh`, 1 GiB
/// in 3.4–3.9 s with two, 2.4–3.2 s with four); the rate bound, not this, shares the disk.
const PARTITIONS_AT_ONCE: usize = 4;
/// How long a finished job's outcome is kept for the meta to ask.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// How often a restore's progress is reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// How a job ends.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Running,
    Done,
    Failed(ErrorCode, String),
}

/// One partition's upload or download.
#[derive(Debug)]
struct Job {
    total: AtomicU64,
    moved: AtomicU64,
    outcome: Mutex<(Outcome, Instant)>,
}

impl Job {
    fn new() -> Arc<Job> {
        Arc::new(Job {
            total: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            outcome: Mutex::new((Outcome::Running, Instant::now())),
        })
    }

    fn outcome(&self) -> Outcome {
        self.outcome.lock().expect("outcome").0.clone()
    }

    fn finish(&self, outcome: Outcome) {
        *self.outcome.lock().expect("outcome") = (outcome, Instant::now());
    }

    /// 0 to 999 while running (the manifest is the last thousandth), 1000 when done.
    fn progress(&self) -> i32 {
        match self.outcome() {
            Outcome::Done => PROGRESS_FINISHED,
            _ => {
                let total = self.total.load(Ordering::Acquire).max(1);
                let moved = self.moved.load(Ordering::Acquire).min(total);
                ((moved * 999) / total) as i32
            }
        }
    }

    fn finished_long_ago(&self, now: Instant) -> bool {
        let (outcome, at) = &*self.outcome.lock().expect("outcome");
        *outcome != Outcome::Running && now.duration_since(*at) > KEEP_FINISHED
    }
}

/// A restore of one copy: the job, and where the copy will live.
#[derive(Debug)]
struct Restore {
    job: Arc<Job>,
    /// The replica's folder, chosen when the download began (the staging folder is beside it:
    /// the same disk).
    dir: PathBuf,
    staging: PathBuf,
}

/// Turns for partitions' transfers: at most [`PARTITIONS_AT_ONCE`] run; those asked with
/// priority (a restored partition's primary copy: the partition serves once it is there) go
/// before the others waiting.
#[derive(Debug, Default)]
struct Turns {
    /// Running, and waiting with priority.
    state: Mutex<(usize, usize)>,
    freed: Condvar,
}

impl Turns {
    fn take(&self, priority: bool) -> TurnGuard<'_> {
        let mut state = self.state.lock().expect("turns");
        if priority {
            state.1 += 1;
        }
        while state.0 >= PARTITIONS_AT_ONCE || (!priority && state.1 > 0) {
            state = self.freed.wait(state).expect("turns");
        }
        if priority {
            state.1 -= 1;
        }
        state.0 += 1;
        TurnGuard(self)
    }
}

struct TurnGuard<'a>(&'a Turns);

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        self.0.state.lock().expect("turns").0 -= 1;
        self.0.freed.notify_all();
    }
}

/// The node's backup uploads and restore downloads.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    uploads: Mutex<HashMap<(Gpid, i64), Arc<Job>>>,
    restores: Mutex<HashMap<Gpid, Arc<Restore>>>,
    turns: Arc<Turns>,
    pace: Mutex<Option<Arc<Pace>>>,
}

impl Jobs {
    fn pace(&self, rate: u64) -> Arc<Pace> {
        Arc::clone(
            self.pace
                .lock()
                .expect("pace")
                .get_or_insert_with(|| Pace::new(rate)),
        )
    }
}

/// What became of a restored copy, for [`ReplicaStub::apply_configs`].
pub(super) enum Restored {
    /// Still downloading (or failed, and not to be made empty): not opened.
    Pending,
    /// Open it at `dir`, from `seed` (`None`: empty, the backup's partition was bad and the
    /// restore skips bad partitions).
    Ready { dir: PathBuf, seed: Option<PathBuf> },
}

impl ReplicaStub {
    /// `RPC_COLD_BACKUP`: starts this primary's part of a backup, or says how far it is.
    pub(super) fn on_cold_backup(self: &Arc<Self>, request: &Request, reply: Reply) {
        let r = match request.args::<BackupRequest>() {
            Ok(r) => r,
            Err(e) => {
                warn!("bad cold backup request: {e}");
                return reply.error(ErrorCode::InvalidParameters);
            }
        };
        let answer = |code: ErrorCode, progress: i32, total: u64| BackupResponse {
            err: ErrorName(code.name().to_owned()),
            pid: r.pid,
            progress,
            policy_name: r.policy.policy_name.clone(),
            backup_id: r.backup_id,
            checkpoint_total_size: total as i64,
        };
        let send = |response: BackupResponse| reply.send(ErrorCode::Ok, Some(&response));
        let key = (r.pid, r.backup_id);
        let known = self
            .jobs
            .uploads
            .lock()
            .expect("uploads")
            .get(&key)
            .cloned();
        if let Some(job) = known {
            let total = job.total.load(Ordering::Acquire);
            return send(match job.outcome() {
                Outcome::Failed(code, why) => {
                    warn!(gpid = %r.pid, backup_id = r.backup_id, "backup part failed: {why}");
                    answer(code, job.progress(), total)
                }
                _ => answer(ErrorCode::Ok, job.progress(), total),
            });
        }
        let service = match self
            .options
            .backup
            .providers
            .get(&r.policy.backup_provider_type)
        {
            Ok(s) => s,
            Err(why) => {
                warn!(gpid = %r.pid, "cold backup: {why}");
                return send(answer(ErrorCode::InvalidParameters, 0, 0));
            }
        };
        let Some(p) = self.partition(r.pid) else {
            return send(answer(ErrorCode::ObjectNotFound, 0, 0));
        };
        if p.role() != PartitionRole::Primary {
            return send(answer(ErrorCode::InvalidState, 0, 0));
        }
        let root = r.backup_path.clone().unwrap_or_default();
        if !layout::plain(&r.app_name) || root.is_empty() {
            return send(answer(ErrorCode::InvalidParameters, 0, 0));
        }
        let app_dir = layout::app_dir(&root, &r.app_name, r.pid.app_id, r.backup_id);
        let job = Job::new();
        {
            let mut uploads = self.jobs.uploads.lock().expect("uploads");
            let now = Instant::now();
            uploads.retain(|_, j| !j.finished_long_ago(now));
            uploads.insert(key, Arc::clone(&job));
        }
        info!(gpid = %r.pid, backup_id = r.backup_id, to = app_dir, service = service.describe(), "backup part started");
        let local = p.dir().join("backup").join(r.backup_id.to_string());
        let upload = Upload {
            service,
            gpid: r.pid,
            local: local.clone(),
            partition_dir: layout::partition_dir(&app_dir, r.pid.partition_index),
            me: self.options.me,
            files_at_once: self.options.backup.files_at_once,
            pace: self.jobs.pace(self.options.backup.rate),
            uploaded: self.options.metrics.backup_uploaded.clone(),
        };
        let turns = Arc::clone(&self.jobs.turns);
        let job_for_checkpoint = Arc::clone(&job);
        p.backup_checkpoint(
            local,
            Box::new(move |checkpoint| {
                let job = job_for_checkpoint;
                let decree = match checkpoint {
                    Ok(d) => d,
                    Err(why) => {
                        return job.finish(Outcome::Failed(
                            ErrorCode::FileOperationFailed,
                            format!("checkpoint: {why}"),
                        ));
                    }
                };
                let spawned = std::thread::Builder::new()
                    .name(format!("backup-{}", upload.gpid))
                    .spawn({
                        let job = Arc::clone(&job);
                        move || {
                            crate::backup::yield_to_serving();
                            let _turn = turns.take(false);
                            let outcome = match upload.run(decree, &job) {
                                Ok(()) => Outcome::Done,
                                Err(why) => {
                                    error!(gpid = %upload.gpid, "backup part failed: {why}");
                                    Outcome::Failed(ErrorCode::FileOperationFailed, why)
                                }
                            };
                            let _ = std::fs::remove_dir_all(&upload.local);
                            job.finish(outcome);
                        }
                    });
                if let Err(e) = spawned {
                    job.finish(Outcome::Failed(
                        ErrorCode::FileOperationFailed,
                        format!("no thread to upload: {e}"),
                    ));
                }
            }),
        );
        send(answer(ErrorCode::Ok, 0, 0))
    }

    /// A copy of a restored table this node is made a member of: started, or how it stands.
    /// `place` chooses its folder when the download begins; a `primary` copy goes first.
    pub(super) fn restored(
        &self,
        gpid: Gpid,
        source: RestoreSource,
        primary: bool,
        place: impl FnOnce() -> PathBuf,
    ) -> Restored {
        let known = self
            .jobs
            .restores
            .lock()
            .expect("restores")
            .get(&gpid)
            .cloned();
        if let Some(r) = known {
            return match r.job.outcome() {
                Outcome::Running => Restored::Pending,
                Outcome::Done => {
                    self.jobs.restores.lock().expect("restores").remove(&gpid);
                    Restored::Ready {
                        dir: r.dir.clone(),
                        seed: Some(r.staging.clone()),
                    }
                }
                Outcome::Failed(..) if source.skip_bad_partition => {
                    self.jobs.restores.lock().expect("restores").remove(&gpid);
                    warn!(%gpid, "restore failed; the restore skips bad partitions: created empty");
                    Restored::Ready {
                        dir: r.dir.clone(),
                        seed: None,
                    }
                }
                Outcome::Failed(..) => Restored::Pending,
            };
        }
        let service = match self.options.backup.providers.get(&source.provider) {
            Ok(s) => s,
            Err(why) => {
                error!(%gpid, "restore: {why}");
                self.report_restore(gpid, ErrorCode::InvalidParameters, 0, Some(why));
                return Restored::Pending;
            }
        };
        let dir = place();
        let staging = dir.with_extension("restore");
        let job = Job::new();
        let restore = Arc::new(Restore {
            job: Arc::clone(&job),
            dir,
            staging: staging.clone(),
        });
        self.jobs
            .restores
            .lock()
            .expect("restores")
            .insert(gpid, Arc::clone(&restore));
        info!(%gpid, from = source.app_dir, service = service.describe(), "restoring a copy");
        let download = Download {
            service,
            gpid,
            source,
            staging,
            files_at_once: self.options.backup.files_at_once,
            pace: self.jobs.pace(self.options.backup.rate),
            downloaded: self.options.metrics.restore_downloaded.clone(),
        };
        let link = self.link.clone();
        let beacon_now = Arc::clone(&self.options.ballot_news);
        let turns = Arc::clone(&self.jobs.turns);
        let spawned = std::thread::Builder::new()
            .name(format!("restore-{gpid}"))
            .spawn(move || {
                crate::backup::yield_to_serving();
                let _turn = turns.take(primary);
                let report = |code, progress, reason| {
                    if let Some(link) = &link {
                        link.report_restore(gpid, code, progress, reason);
                    }
                };
                match download.run(&job, &report) {
                    Ok(decree) => {
                        info!(%gpid, decree, "restored copy downloaded");
                        job.finish(Outcome::Done);
                        report(ErrorCode::Ok, PROGRESS_FINISHED, None);
                        // Opened with the next configuration: a beacon's answer, asked now.
                        beacon_now.notify_one();
                    }
                    Err((code, why)) => {
                        error!(%gpid, "restore failed: {why}");
                        let _ = std::fs::remove_dir_all(&download.staging);
                        report(code, job.progress(), Some(why.clone()));
                        job.finish(Outcome::Failed(code, why));
                    }
                }
            });
        if let Err(e) = spawned {
            restore.job.finish(Outcome::Failed(
                ErrorCode::FileOperationFailed,
                format!("no thread to download: {e}"),
            ));
        }
        Restored::Pending
    }

    /// Forgets a restore of `gpid` this node no longer makes (another member's copy came first:
    /// this one learns from it instead), and its download.
    pub(super) fn forget_restore(&self, gpid: Gpid) {
        let gone = self.jobs.restores.lock().expect("restores").remove(&gpid);
        if let Some(r) = gone
            && r.job.outcome() != Outcome::Running
        {
            let _ = std::fs::remove_dir_all(&r.staging);
        }
    }

    fn report_restore(&self, gpid: Gpid, code: ErrorCode, progress: i32, reason: Option<String>) {
        if let Some(link) = &self.link {
            link.report_restore(gpid, code, progress, reason);
        }
    }
}

/// Removes the staging folders a restore left when the process stopped during it.
pub(super) fn clear_staging(reps: &Path) {
    let Ok(entries) = std::fs::read_dir(reps) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "restore") && path.is_dir() {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    info!(folder = %path.display(), "an unfinished restore's download removed")
                }
                Err(e) => {
                    warn!(folder = %path.display(), "removing an unfinished restore's download: {e}")
                }
            }
        }
    }
}

/// The files of a local folder, with their sizes, by name.
fn local_files(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.metadata()?.len(),
            ));
        }
    }
    files.sort();
    Ok(files)
}

/// Runs `each` over `items`, `at_once` at a time; the first error stops the others' next
/// items and is returned.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    at_once: usize,
    each: impl Fn(&T) -> Result<R, String> + Sync,
) -> Result<Vec<R>, String> {
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(None);
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..at_once.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                crate::backup::yield_to_serving();
                loop {
                    if failed.lock().expect("failed").is_some() {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else {
                        break;
                    };
                    match each(item) {
                        Ok(r) => *results[i].lock().expect("result") = Some(r),
                        Err(e) => {
                            failed.lock().expect("failed").get_or_insert(e);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().expect("failed") {
        return Err(e);
    }
    Ok(results
        .into_iter()
        .map(|r| r.into_inner().expect("result").expect("every item ran"))
        .collect())
}

/// One partition's upload.
struct Upload {
    service: Arc<dyn BlockService>,
    gpid: Gpid,
    local: PathBuf,
    partition_dir: String,
    me: SocketAddrV4,
    files_at_once: usize,
    pace: Arc<Pace>,
    uploaded: prometheus_client::metrics::counter::Counter,
}

impl Upload {
    /// Uploads the checkpoint at `decree`, then its manifest, then `current_checkpoint`.
    fn run(&self, decree: u64, job: &Job) -> Result<(), String> {
        let files = local_files(&self.local).map_err(|e| format!("listing the checkpoint: {e}"))?;
        job.total
            .store(files.iter().map(|(_, s)| s).sum(), Ordering::Release);
        let chkpt = layout::checkpoint_name(self.me);
        let dir = format!("{}/{chkpt}", self.partition_dir);
        let started = Instant::now();
        let entries = parallel(&files, self.files_at_once, |(name, size)| {
            let sum = self
                .service
                .upload(
                    &self.local.join(name),
                    &format!("{dir}/{name}"),
                    &self.pace,
                    &|n| {
                        job.moved.fetch_add(n, Ordering::AcqRel);
                        self.uploaded.inc_by(n);
                    },
                )
                .map_err(|e| e.to_string())?;
            // A checkpoint's files do not change: one that did is not what was listed.
            if sum.size != *size {
                return Err(format!(
                    "{name}: {size} bytes listed, {} uploaded",
                    sum.size
                ));
            }
            Ok(FileEntry {
                name: name.clone(),
                size: sum.size,
                crc32c: sum.crc,
            })
        })?;
        let manifest = PartitionManifest {
            gpid: self.gpid.to_string(),
            decree,
            node: self.me.to_string(),
            files: entries,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
        self.service
            .write(&format!("{dir}/{}", layout::MANIFEST), &json)
            .map_err(|e| e.to_string())?;
        self.service
            .write(
                &format!("{}/{}", self.partition_dir, layout::CURRENT),
                chkpt.as_bytes(),
            )
            .map_err(|e| e.to_string())?;
        info!(gpid = %self.gpid, decree, files = manifest.files.len(), bytes = manifest.size(), took = ?started.elapsed(), "backup part uploaded");
        Ok(())
    }
}

/// One copy's download.
struct Download {
    service: Arc<dyn BlockService>,
    gpid: Gpid,
    source: RestoreSource,
    staging: PathBuf,
    files_at_once: usize,
    pace: Arc<Pace>,
    downloaded: prometheus_client::metrics::counter::Counter,
}

impl Download {
    /// Downloads the checkpoint the backup recorded for this partition into the staging
    /// folder, every file checked: the decree it is at.
    fn run(
        &self,
        job: &Job,
        report: &(dyn Fn(ErrorCode, i32, Option<String>) + Sync),
    ) -> Result<u64, (ErrorCode, String)> {
        // A file missing is no backup (or not a complete one); one unreadable as JSON, damage.
        let failed = |e: layout::ReadError| {
            let code = match e {
                layout::ReadError::Missing(_) | layout::ReadError::Incomplete(_) => {
                    ErrorCode::ObjectNotFound
                }
                layout::ReadError::Io(_) => ErrorCode::FileOperationFailed,
                layout::ReadError::Bad { .. } => ErrorCode::Corruption,
            };
            (code, e.to_string())
        };
        let info: BackupInfo =
            layout::read_backup_info(&*self.service, &self.source.app_dir).map_err(failed)?;
        let info_path = format!("{}/{}", self.source.app_dir, layout::BACKUP_INFO);
        let pidx = self.gpid.partition_index as usize;
        let (Some(&decree), Some(chkpt)) = (info.decrees.get(pidx), info.checkpoints.get(pidx))
        else {
            return Err((
                ErrorCode::InvalidData,
                format!("{info_path} has no partition {pidx}"),
            ));
        };
        if !layout::plain(chkpt) {
            return Err((
                ErrorCode::InvalidData,
                format!("{info_path}: bad checkpoint name"),
            ));
        }
        let dir = format!(
            "{}/{chkpt}",
            layout::partition_dir(&self.source.app_dir, self.gpid.partition_index)
        );
        let manifest_path = format!("{dir}/{}", layout::MANIFEST);
        let manifest: PartitionManifest =
            layout::read_json(&*self.service, &manifest_path).map_err(failed)?;
        if manifest.decree != decree || manifest.files.iter().any(|f| !layout::plain(&f.name)) {
            return Err((
                ErrorCode::InvalidData,
                format!(
                    "{manifest_path}: decree {} (backup_info says {decree}) or a bad file name",
                    manifest.decree
                ),
            ));
        }
        job.total.store(manifest.size(), Ordering::Release);
        let _ = std::fs::remove_dir_all(&self.staging);
        std::fs::create_dir_all(&self.staging).map_err(|e| {
            (
                ErrorCode::FileOperationFailed,
                format!("{}: {e}", self.staging.display()),
            )
        })?;
        let last_report = Mutex::new(Instant::now());
        parallel(&manifest.files, self.files_at_once, |f| {
            let remote = format!("{dir}/{}", f.name);
            let sum = self
                .service
                .download(&remote, &self.staging.join(&f.name), &self.pace, &|n| {
                    job.moved.fetch_add(n, Ordering::AcqRel);
                    self.downloaded.inc_by(n);
                    let mut last = last_report.lock().expect("report");
                    if last.elapsed() >= REPORT_EVERY {
                        *last = Instant::now();
                        report(ErrorCode::Ok, job.progress(), None);
                    }
                })
                .map_err(|e| e.to_string())?;
            if sum.size != f.size || sum.crc != f.crc32c {
                return Err(format!(
                    "CORRUPTION {remote}: {} bytes with CRC-32C {:08x}, the manifest says {} bytes with {:08x}",
                    sum.size, sum.crc, f.size, f.crc32c
                ));
            }
            Ok(())
        })
        .map_err(|why| match why.strip_prefix("CORRUPTION ") {
            Some(rest) => (ErrorCode::Corruption, format!("{rest}: the file is damaged")),
            None => (ErrorCode::FileOperationFailed, why),
        })?;
        std::fs::File::open(&self.staging)
            .and_then(|d| d.sync_all())
            .map_err(|e| (ErrorCode::FileOperationFailed, e.to_string()))?;
        Ok(decree)
    }
}
