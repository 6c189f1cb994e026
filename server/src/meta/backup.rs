//! The meta's side of cold backup and restore: one-time backups (`RPC_CM_START_BACKUP_APP`,
//! `RPC_CM_QUERY_BACKUP_STATUS`), restores (`RPC_CM_START_RESTORE`,
//! `RPC_CM_QUERY_RESTORE_STATUS`, and the copies' `RPC_CM_REPORT_RESTORE_STATUS`).
//!
//! A backup is a record in ZooKeeper (`<cluster_root>/backup_once/<backup_id>`), written
//! before the request is answered. While it runs, the leader asks each partition's primary for
//! its part every [`ROUND`] (`RPC_COLD_BACKUP`: the first ask starts it, later ones read its
//! progress), the primary of the moment: one that moved is asked anew, and the new primary
//! uploads its own checkpoint. Once every part is whole, the leader writes the table's
//! metadata, then `backup_info` (each partition's checkpoint and decree) last, then marks the
//! record complete. A part that fails, a table dropped meanwhile, or no progress for
//! [`STALL`] marks it failed; it never gets a `backup_info`, so no restore takes it. A new
//! leader loads the records and carries on with those running.
//!
//! A restore creates a new table with the backup's partition count, copies and environments,
//! plus `restore.*` environments naming the backup: each replica server builds its copies
//! from it (`replica/backup.rs`) and reports how it goes.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pegasus_protocol::backup::*;
use pegasus_protocol::codes::{ErrorCode, rpc};
use pegasus_protocol::frame::RequestMeta;
use pegasus_protocol::types::{CreateAppResponse, ErrorName, Gpid};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::{MetaServer, err};
use crate::backup::block::BlockService;
use crate::backup::layout::{self, AppMetadata, BackupInfo, PartitionManifest};
use crate::backup::{envs, now_ms};

/// How often the leader asks the primaries of running backups (and looks for policies due);
/// a backup started is asked for at once.
pub(super) const ROUND: Duration = Duration::from_millis(200);
/// A backup whose parts made no progress for this long is failed.
const STALL: Duration = Duration::from_secs(600);
/// How long a primary has to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a backup stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Status {
    Running,
    Complete,
    Failed,
}

/// A one-time backup, as kept in ZooKeeper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) backup_id: i64,
    pub(super) app_id: i32,
    pub(super) app_name: String,
    pub(super) provider: String,
    /// The request's `backup_path` (empty: none).
    pub(super) backup_path: String,
    /// The backup's root in the service (`[<backup_path>/]<cold_backup_root>`, and
    /// `/<policy>` for a policy's).
    pub(super) root: String,
    pub(super) partition_count: i32,
    pub(super) start_time_ms: i64,
    pub(super) end_time_ms: i64,
    pub(super) status: Status,
    #[serde(default)]
    pub(super) reason: String,
    /// The policy that made it (empty: a one-time backup).
    #[serde(default)]
    pub(super) policy: String,
}

impl Record {
    /// Its key: a policy's backup has one record per table, under one id.
    pub(super) fn key(&self) -> (i64, i32) {
        (self.backup_id, self.app_id)
    }

    fn app_dir(&self) -> String {
        layout::app_dir(&self.root, &self.app_name, self.app_id, self.backup_id)
    }

    fn item(&self) -> BackupItem {
        BackupItem {
            backup_id: self.backup_id,
            app_name: self.app_name.clone(),
            backup_provider_type: self.provider.clone(),
            backup_path: self.backup_path.clone(),
            start_time_ms: self.start_time_ms,
            end_time_ms: self.end_time_ms,
            is_backup_failed: self.status == Status::Failed,
        }
    }
}

/// The leader's view of backups and restores.
#[derive(Debug, Default)]
pub(super) struct Backups {
    pub(super) records: BTreeMap<(i64, i32), Record>,
    /// Per running backup: each partition's progress, and when the sum last moved.
    progress: HashMap<(i64, i32), (Vec<i32>, Instant)>,
    /// The policies, by name.
    pub(super) policies: BTreeMap<String, super::policy::Policy>,
    /// Per restored table: each partition's reported status and progress.
    restores: HashMap<i32, Vec<(String, i32)>>,
}

/// What the meta needs for backups.
#[derive(Clone, Debug, Default)]
pub struct BackupConfig {
    /// `[meta_server] cold_backup_disabled`.
    pub disabled: bool,
    /// `[replication] cold_backup_root`, or the cluster's name.
    pub root: String,
    /// The block services.
    pub providers: crate::backup::block::Providers,
}

/// One ask of a round: a partition, its primary.
type Ask = (i32, SocketAddrV4);

/// A record's node in ZooKeeper: `<backup_id>_<app_id>`.
pub(super) fn record_node((backup_id, app_id): (i64, i32)) -> String {
    format!("{backup_id}_{app_id}")
}

impl Backups {
    /// A new backup's id: its start in Unix milliseconds, above every id so far.
    pub(super) fn next_id(&self) -> i64 {
        let last = self.records.keys().next_back().map_or(0, |(id, _)| *id);
        now_ms().max(last + 1)
    }
}

impl MetaServer {
    /// Takes up the records kept in ZooKeeper (a new leader).
    pub(super) async fn load_backups(&self) -> Result<(), super::zk::ZkError> {
        let mut records = BTreeMap::new();
        for (node, data) in self.zk.load_backups().await? {
            match serde_json::from_slice::<Record>(&data) {
                Ok(r) => {
                    records.insert(r.key(), r);
                }
                Err(e) => warn!(node, "unreadable backup record, ignored: {e}"),
            }
        }
        let policies = self.load_policies().await?;
        let running = records
            .values()
            .filter(|r| r.status == Status::Running)
            .count();
        if running > 0 {
            info!(
                running,
                "backups running under the leader before: carried on"
            );
        }
        let mut b = self.backups.lock().expect("backups");
        b.records = records;
        b.policies = policies;
        b.progress.clear();
        Ok(())
    }

    pub(super) fn refuse_backup(&self) -> Option<(ErrorCode, String)> {
        if !self.is_leader() {
            return Some((ErrorCode::ForwardToOthers, String::new()));
        }
        if self.options.backup.disabled {
            return Some((
                ErrorCode::ServiceNotActive,
                "backup is off: `[meta_server] cold_backup_disabled = true`".into(),
            ));
        }
        None
    }

    pub(super) fn service(
        &self,
        provider: &str,
    ) -> Result<Arc<dyn BlockService>, (ErrorCode, String)> {
        self.options
            .backup
            .providers
            .get(provider)
            .map_err(|why| (ErrorCode::InvalidParameters, why))
    }

    /// `RPC_CM_START_BACKUP_APP`.
    pub(super) async fn start_backup_app(
        &self,
        r: StartBackupAppRequest,
    ) -> StartBackupAppResponse {
        let answer = |(code, hint): (ErrorCode, String)| StartBackupAppResponse {
            err: err(code),
            hint_message: hint,
            backup_id: None,
        };
        if let Some(refused) = self.refuse_backup() {
            return answer(refused);
        }
        if let Err(refused) = self.service(&r.backup_provider_type) {
            return answer(refused);
        }
        let Some(root) = layout::root(r.backup_path.as_deref(), &self.options.backup.root) else {
            return answer((
                ErrorCode::InvalidParameters,
                format!(
                    "backup path `{}` leaves the block service",
                    r.backup_path.unwrap_or_default()
                ),
            ));
        };
        let view = self.view();
        let Some(app) = view.get(&r.app_id).filter(|a| a.info.available()) else {
            return answer((
                ErrorCode::InvalidState,
                format!("table {} is not available", r.app_id),
            ));
        };
        if !layout::plain(&app.info.app_name) {
            return answer((
                ErrorCode::InvalidState,
                format!("table name `{}` cannot be a folder's", app.info.app_name),
            ));
        }
        // One at a time per table; the id is its start, unique in the cluster.
        let record = {
            let b = self.backups.lock().expect("backups");
            if let Some(running) = b
                .records
                .values()
                .find(|x| x.app_id == r.app_id && x.status == Status::Running)
            {
                return answer((
                    ErrorCode::InvalidState,
                    format!(
                        "table {} is being backed up (backup {})",
                        r.app_id, running.backup_id
                    ),
                ));
            }
            Record {
                backup_id: b.next_id(),
                app_id: r.app_id,
                app_name: app.info.app_name.clone(),
                provider: r.backup_provider_type.clone(),
                backup_path: r.backup_path.clone().unwrap_or_default(),
                root,
                partition_count: app.info.partition_count,
                start_time_ms: now_ms(),
                end_time_ms: 0,
                status: Status::Running,
                reason: String::new(),
                policy: String::new(),
            }
        };
        if let Err(e) = self.save_record(&record).await {
            error!(
                backup_id = record.backup_id,
                "keeping a backup's record: {e}"
            );
            return answer((ErrorCode::Unknown, e));
        }
        let id = record.backup_id;
        info!(
            backup_id = id,
            table = record.app_name,
            app_id = record.app_id,
            to = record.app_dir(),
            provider = record.provider,
            "backup started"
        );
        self.backups
            .lock()
            .expect("backups")
            .records
            .insert(record.key(), record);
        self.metrics.backup("started");
        self.backup_started.notify_one();
        StartBackupAppResponse {
            err: err(ErrorCode::Ok),
            hint_message: format!("backup {id} of table {} started", r.app_id),
            backup_id: Some(id),
        }
    }

    pub(super) async fn save_record(&self, record: &Record) -> Result<(), String> {
        let json = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        self.zk
            .save_backup(&record_node(record.key()), &json)
            .await
            .map_err(|e| e.to_string())
    }

    /// `RPC_CM_QUERY_BACKUP_STATUS`.
    pub(super) fn query_backup_status(
        &self,
        r: QueryBackupStatusRequest,
    ) -> QueryBackupStatusResponse {
        let answer = |(code, hint): (ErrorCode, String)| QueryBackupStatusResponse {
            err: err(code),
            hint_message: hint,
            backup_items: None,
        };
        if let Some(refused) = self.refuse_backup() {
            return answer(refused);
        }
        let items: Vec<BackupItem> = self
            .backups
            .lock()
            .expect("backups")
            .records
            .values()
            .filter(|x| {
                x.app_id == r.app_id
                    && x.policy.is_empty()
                    && r.backup_id.is_none_or(|id| id == x.backup_id)
            })
            .map(Record::item)
            .collect();
        if items.is_empty() {
            return answer((
                ErrorCode::InvalidParameters,
                match r.backup_id {
                    Some(id) => format!("no backup {id} of table {}", r.app_id),
                    None => format!("no backup of table {}", r.app_id),
                },
            ));
        }
        QueryBackupStatusResponse {
            err: err(ErrorCode::Ok),
            hint_message: String::new(),
            backup_items: Some(items),
        }
    }

    /// Backups in progress, for the status page: `(backup_id, table, partitions whole, all)`.
    pub(super) fn backups_running(&self) -> Vec<(i64, String, usize, usize)> {
        let b = self.backups.lock().expect("backups");
        b.records
            .values()
            .filter(|r| r.status == Status::Running)
            .map(|r| {
                let done = b.progress.get(&r.key()).map_or(0, |(p, _)| {
                    p.iter().filter(|x| **x >= PROGRESS_FINISHED).count()
                });
                (
                    r.backup_id,
                    r.app_name.clone(),
                    done,
                    r.partition_count as usize,
                )
            })
            .collect()
    }

    /// One round over the running backups (the leader, every [`ROUND`]).
    pub(super) async fn backup_round(&self) {
        self.policy_round().await;
        let running: Vec<Record> = self
            .backups
            .lock()
            .expect("backups")
            .records
            .values()
            .filter(|r| r.status == Status::Running)
            .cloned()
            .collect();
        for record in running {
            if !self.is_leader() {
                return;
            }
            if let Err(why) = self.advance(&record).await {
                self.finish(record, Err(why)).await;
            }
        }
    }

    /// Asks every partition not whole yet; finishes the backup once all are.
    async fn advance(&self, record: &Record) -> Result<(), String> {
        let view = self.view();
        let Some(app) = view
            .get(&record.app_id)
            .filter(|a| a.info.available() && a.info.partition_count == record.partition_count)
        else {
            return Err(format!("table {} was dropped", record.app_id));
        };
        let progress = {
            let mut b = self.backups.lock().expect("backups");
            b.progress
                .entry(record.key())
                .or_insert_with(|| (vec![0; record.partition_count as usize], Instant::now()))
                .0
                .clone()
        };
        let asks: Vec<Ask> = progress
            .iter()
            .enumerate()
            .filter(|(_, p)| **p < PROGRESS_FINISHED)
            .filter_map(|(i, _)| Some((i as i32, app.partitions.get(i)?.primary_addr()?)))
            .collect();
        let mut answers = tokio::task::JoinSet::new();
        for (pidx, primary) in asks {
            let transport = self.transport.clone();
            let request = BackupRequest {
                pid: Gpid::new(record.app_id, pidx),
                policy: PolicyInfo {
                    policy_name: String::new(),
                    backup_provider_type: record.provider.clone(),
                },
                app_name: record.app_name.clone(),
                backup_id: record.backup_id,
                backup_path: Some(record.root.clone()),
            };
            answers.spawn(async move {
                let meta = RequestMeta {
                    app_id: request.pid.app_id,
                    partition_index: pidx,
                    ..RequestMeta::default()
                };
                let answer = transport
                    .call::<_, BackupResponse>(
                        SocketAddr::V4(primary),
                        meta,
                        rpc::COLD_BACKUP,
                        &pegasus_protocol::types::Args(request),
                        ASK_TIMEOUT,
                    )
                    .await;
                (pidx, primary, answer)
            });
        }
        let mut failure = None;
        let mut updates = Vec::new();
        while let Some(joined) = answers.join_next().await {
            let Ok((pidx, primary, answer)) = joined else {
                continue;
            };
            match answer.map(|a| (ErrorCode::from_name(&a.err.0), a.progress)) {
                Ok((ErrorCode::Ok, progress)) => updates.push((pidx, progress)),
                // Not its primary any more, or not yet: the next round asks the one then.
                Ok((ErrorCode::InvalidState | ErrorCode::ObjectNotFound, _)) | Err(_) => {}
                Ok((code, _)) => {
                    failure.get_or_insert(format!(
                        "partition {pidx} on {primary}: {code} (its log says why)"
                    ));
                }
            }
        }
        if let Some(why) = failure {
            return Err(why);
        }
        let (whole, stalled) = {
            let mut b = self.backups.lock().expect("backups");
            let Some((p, moved)) = b.progress.get_mut(&record.key()) else {
                return Ok(());
            };
            let before: i64 = p.iter().map(|x| i64::from(*x)).sum();
            for (pidx, progress) in updates {
                if let Some(slot) = p.get_mut(pidx as usize) {
                    *slot = (*slot).max(progress.clamp(0, PROGRESS_FINISHED));
                }
            }
            if p.iter().map(|x| i64::from(*x)).sum::<i64>() > before {
                *moved = Instant::now();
            }
            (
                p.iter().all(|x| *x >= PROGRESS_FINISHED),
                moved.elapsed() > STALL,
            )
        };
        if whole {
            let outcome = self.write_metadata(record, app).await;
            self.finish(record.clone(), outcome).await;
        } else if stalled {
            return Err(format!("no progress for {STALL:?}"));
        }
        Ok(())
    }

    /// Every part whole: the table's metadata, then `backup_info`, last.
    async fn write_metadata(&self, record: &Record, app: &super::state::App) -> Result<(), String> {
        let service = self.service(&record.provider).map_err(|(_, why)| why)?;
        let record = record.clone();
        let metadata = AppMetadata {
            app_name: app.info.app_name.clone(),
            app_id: app.info.app_id,
            app_type: app.info.app_type.clone(),
            partition_count: app.info.partition_count,
            max_replica_count: app.info.max_replica_count,
            envs: app
                .info
                .envs
                .iter()
                .filter(|(k, _)| !k.starts_with("restore."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        tokio::task::spawn_blocking(move || {
            let app_dir = record.app_dir();
            let mut decrees = Vec::new();
            let mut checkpoints = Vec::new();
            let mut size = 0;
            for pidx in 0..record.partition_count {
                let dir = layout::partition_dir(&app_dir, pidx);
                let current = service
                    .read(&format!("{dir}/{}", layout::CURRENT))
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{dir}/{} is missing", layout::CURRENT))?;
                let chkpt = String::from_utf8_lossy(&current).trim().to_owned();
                if !layout::plain(&chkpt) {
                    return Err(format!("{dir}/{}: bad name", layout::CURRENT));
                }
                let path = format!("{dir}/{chkpt}/{}", layout::MANIFEST);
                let manifest: PartitionManifest =
                    layout::read_json(&*service, &path).map_err(|e| e.to_string())?;
                decrees.push(manifest.decree);
                size += manifest.size();
                checkpoints.push(chkpt);
            }
            let info = BackupInfo {
                backup_id: record.backup_id,
                app_name: record.app_name.clone(),
                app_id: record.app_id,
                start_time_ms: record.start_time_ms,
                end_time_ms: now_ms(),
                decrees,
                checkpoints,
                size,
            };
            service
                .write(&format!("{app_dir}/{}", layout::APP_METADATA), &to_json(&metadata)?)
                .map_err(|e| e.to_string())?;
            service
                .write(&format!("{app_dir}/{}", layout::BACKUP_INFO), &to_json(&info)?)
                .map_err(|e| e.to_string())?;
            info!(backup_id = record.backup_id, bytes = size, decrees = ?info.decrees, "backup_info written: the backup is complete");
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Marks a backup complete or failed, in ZooKeeper first.
    async fn finish(&self, mut record: Record, outcome: Result<(), String>) {
        record.end_time_ms = now_ms();
        match outcome {
            Ok(()) => record.status = Status::Complete,
            Err(why) => {
                warn!(
                    backup_id = record.backup_id,
                    table = record.app_name,
                    "backup failed: {why}"
                );
                record.status = Status::Failed;
                record.reason = why;
            }
        }
        if let Err(e) = self.save_record(&record).await {
            // Still running in ZooKeeper: the next round (or leader) does it again.
            warn!(
                backup_id = record.backup_id,
                "keeping a backup's outcome: {e}"
            );
            return;
        }
        let took = Duration::from_millis((record.end_time_ms - record.start_time_ms).max(0) as u64);
        let outcome = if record.status == Status::Complete {
            info!(
                backup_id = record.backup_id,
                table = record.app_name,
                ?took,
                "backup complete"
            );
            "complete"
        } else {
            "failed"
        };
        self.metrics.backup(outcome);
        self.metrics.backup_duration(took);
        let policy = record.policy.clone();
        {
            let mut b = self.backups.lock().expect("backups");
            b.progress.remove(&record.key());
            b.records.insert(record.key(), record);
        }
        if !policy.is_empty() {
            self.prune_history(&policy).await;
        }
    }

    /// `RPC_CM_START_RESTORE`: a new table from a complete backup.
    pub(super) async fn start_restore(&self, r: RestoreRequest) -> CreateAppResponse {
        let answer = |code: ErrorCode, appid: i32| CreateAppResponse {
            err: err(code),
            appid,
        };
        if let Some((code, why)) = self.refuse_backup() {
            if code != ErrorCode::ForwardToOthers {
                warn!("restore refused: {why}");
            }
            return answer(code, 0);
        }
        let service = match self.service(&r.backup_provider_name) {
            Ok(s) => s,
            Err((code, why)) => {
                warn!("restore refused: {why}");
                return answer(code, 0);
            }
        };
        let (Some(root), true) = (
            layout::restore_root(r.restore_path.as_deref(), &r.cluster_name, &r.policy_name),
            layout::plain(&r.app_name),
        ) else {
            warn!(
                cluster = r.cluster_name,
                table = r.app_name,
                "restore refused: the backup's path leaves the block service"
            );
            return answer(ErrorCode::InvalidParameters, 0);
        };
        let app_dir = layout::app_dir(&root, &r.app_name, r.app_id, r.time_stamp);
        let read = {
            let app_dir = app_dir.clone();
            tokio::task::spawn_blocking(move || -> Result<(BackupInfo, AppMetadata), String> {
                let info: BackupInfo =
                    layout::read_backup_info(&*service, &app_dir).map_err(|e| e.to_string())?;
                let meta_path = format!("{app_dir}/{}", layout::APP_METADATA);
                let metadata: AppMetadata =
                    layout::read_json(&*service, &meta_path).map_err(|e| e.to_string())?;
                Ok((info, metadata))
            })
            .await
        };
        let (info, metadata) = match read {
            Ok(Ok(found)) => found,
            Ok(Err(why)) => {
                warn!(from = app_dir, "restore refused: {why}");
                return answer(ErrorCode::ObjectNotFound, 0);
            }
            Err(e) => {
                error!("restore: {e}");
                return answer(ErrorCode::Unknown, 0);
            }
        };
        if info.decrees.len() != metadata.partition_count as usize
            || info.checkpoints.len() != info.decrees.len()
        {
            warn!(
                from = app_dir,
                "restore refused: backup_info and app_metadata disagree on the partitions"
            );
            return answer(ErrorCode::InvalidData, 0);
        }
        let name = if r.new_app_name.is_empty() {
            r.app_name.clone()
        } else {
            r.new_app_name.clone()
        };
        let mut table_envs = metadata.envs.clone();
        for (k, v) in [
            (envs::PROVIDER, r.backup_provider_name.clone()),
            (envs::CLUSTER_NAME, r.cluster_name.clone()),
            (envs::POLICY_NAME, r.policy_name.clone()),
            (envs::APP_NAME, r.app_name.clone()),
            (envs::APP_ID, r.app_id.to_string()),
            (envs::BACKUP_ID, r.time_stamp.to_string()),
            (envs::SKIP_BAD_PARTITION, r.skip_bad_partition.to_string()),
        ] {
            table_envs.insert(k.to_owned(), v);
        }
        if let Some(path) = r.restore_path.as_ref().filter(|p| !p.is_empty()) {
            table_envs.insert(envs::RESTORE_PATH.to_owned(), path.clone());
        }
        match self
            .make_app(
                &name,
                metadata.partition_count,
                metadata.max_replica_count,
                table_envs,
            )
            .await
        {
            Ok(app_id) => {
                info!(table = name, app_id, from = app_dir, decrees = ?info.decrees, "restore started");
                self.backups.lock().expect("backups").restores.insert(
                    app_id,
                    vec![(ErrorCode::Ok.name().to_owned(), 0); metadata.partition_count as usize],
                );
                answer(ErrorCode::Ok, app_id)
            }
            Err(code) => answer(code, 0),
        }
    }

    /// `RPC_CM_REPORT_RESTORE_STATUS`: how a restored copy goes.
    pub(super) fn report_restore_status(
        &self,
        r: ReportRestoreStatusRequest,
    ) -> ReportRestoreStatusResponse {
        if !self.is_leader() {
            return ReportRestoreStatusResponse {
                err: err(ErrorCode::ForwardToOthers),
            };
        }
        let code = ErrorCode::from_name(&r.restore_status.0);
        if code != ErrorCode::Ok {
            warn!(gpid = %r.pid, status = %code, reason = r.reason.as_deref().unwrap_or(""), "a restored copy failed");
        }
        let mut b = self.backups.lock().expect("backups");
        let partitions = self
            .view()
            .get(&r.pid.app_id)
            .map_or(0, |a| a.info.partition_count.max(0) as usize);
        let slots = b
            .restores
            .entry(r.pid.app_id)
            .or_insert_with(|| vec![(ErrorCode::Ok.name().to_owned(), 0); partitions]);
        if let Some(slot) = slots.get_mut(r.pid.partition_index.max(0) as usize) {
            // A failure stays (another copy's progress does not hide it).
            if slot.0 == ErrorCode::Ok.name() {
                *slot = (
                    code.name().to_owned(),
                    r.progress.clamp(0, PROGRESS_FINISHED),
                );
            }
        }
        ReportRestoreStatusResponse {
            err: err(ErrorCode::Ok),
        }
    }

    /// `RPC_CM_QUERY_RESTORE_STATUS`: per partition, its status and progress; a partition is
    /// done (1000) once its primary reports holding its copy.
    pub(super) fn query_restore_status(&self, r: QueryRestoreRequest) -> QueryRestoreResponse {
        let answer = |code: ErrorCode| QueryRestoreResponse {
            err: err(code),
            ..Default::default()
        };
        if let Some((code, _)) = self.refuse_backup() {
            return answer(code);
        }
        let view = self.view();
        let Some(app) = view.get(&r.restore_app_id).filter(|a| !a.info.expired()) else {
            return answer(ErrorCode::AppNotExist);
        };
        let reported = self
            .backups
            .lock()
            .expect("backups")
            .restores
            .get(&r.restore_app_id)
            .cloned()
            .unwrap_or_default();
        let beats = self.beats.lock().expect("beats");
        let (mut status, mut progress) = (Vec::new(), Vec::new());
        for (i, p) in app.partitions.iter().enumerate() {
            let (code, done) = reported
                .get(i)
                .cloned()
                .unwrap_or_else(|| (ErrorCode::Ok.name().to_owned(), 0));
            // Serving: its primary holds its copy (a configuration names members before
            // their copies exist).
            let gpid = Gpid::new(r.restore_app_id, i as i32);
            let serving = p
                .primary_addr()
                .and_then(|node| beats.get(&node))
                .is_some_and(|b| b.replicas.contains(&gpid));
            status.push(ErrorName(code));
            progress.push(if serving {
                PROGRESS_FINISHED
            } else {
                done.min(PROGRESS_FINISHED - 1)
            });
        }
        QueryRestoreResponse {
            err: err(ErrorCode::Ok),
            restore_status: status,
            restore_progress: progress,
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec_pretty(value).map_err(|e| e.to_string())
}
