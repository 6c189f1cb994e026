//! Backup policies (`RPC_CM_ADD_BACKUP_POLICY`, `RPC_CM_QUERY_BACKUP_POLICY`,
//! `RPC_CM_MODIFY_BACKUP_POLICY`: the shell's `add_backup_policy`, `ls_backup_policy`,
//! `query_backup_policy`, `modify_backup_policy`, `disable_backup_policy`,
//! `enable_backup_policy`).
//!
//! A policy is kept in ZooKeeper (`<cluster_root>/backup_policies/<name>`), so a new leader
//! carries it on. Its first backup starts at its `start_time` (`HH:MM`, UTC) on or after the
//! minute it was added, the next ones every `backup_interval_seconds` after the one before;
//! a backup still running delays the next. Each backup is one record per table, under one id,
//! in `<cold_backup_root>/<policy>/<backup_id>/<app>_<id>` (Pegasus's layout), run as a
//! one-time backup is (`meta/backup.rs`). Once one ends, the complete backups past
//! `backup_history_count_to_keep` go, oldest first, files and records, with the failed ones
//! older than the oldest kept.

use std::collections::BTreeSet;

use pegasus_protocol::backup::*;
use pegasus_protocol::codes::ErrorCode;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::backup::{Record, Status, record_node};
use super::{MetaServer, err};
use crate::backup::{layout, now_ms};

/// Intervals below this are refused (a backup every few seconds is a mistake, not a policy;
/// tests go this low).
const MIN_INTERVAL_SECS: i64 = 1;

/// A policy, as kept in ZooKeeper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Policy {
    name: String,
    provider: String,
    app_ids: BTreeSet<i32>,
    interval_secs: i64,
    history: i32,
    /// `HH:MM`, UTC.
    start_time: String,
    disabled: bool,
    /// When it was added, Unix milliseconds.
    created_ms: i64,
}

impl Policy {
    fn entry(&self) -> PolicyEntry {
        PolicyEntry {
            policy_name: self.name.clone(),
            backup_provider_type: self.provider.clone(),
            backup_interval_seconds: self.interval_secs.to_string(),
            app_ids: self.app_ids.clone(),
            backup_history_count_to_keep: self.history,
            start_time: self.start_time.clone(),
            is_disable: self.disabled,
        }
    }

    /// When its next backup is due, given its last backup's start (`None`: none yet).
    fn due_ms(&self, last_start: Option<i64>) -> i64 {
        if let Some(last) = last_start {
            return last + self.interval_secs * 1000;
        }
        let minute_of_day = start_minutes(&self.start_time).unwrap_or(0);
        let day_ms = 86_400_000;
        let from = self.created_ms - self.created_ms.rem_euclid(60_000);
        let day = from - from.rem_euclid(day_ms);
        let today = day + minute_of_day * 60_000;
        if today >= from { today } else { today + day_ms }
    }
}

/// Minutes into the day of `HH:MM`.
fn start_minutes(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    let (h, m) = (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

/// A policy's backups: by id, whether each ended, failed, and its tables.
fn backups_of<'a>(
    records: impl Iterator<Item = &'a Record>,
    policy: &str,
) -> std::collections::BTreeMap<i64, Vec<&'a Record>> {
    let mut by_id: std::collections::BTreeMap<i64, Vec<&Record>> = Default::default();
    for r in records.filter(|r| r.policy == policy) {
        by_id.entry(r.backup_id).or_default().push(r);
    }
    by_id
}

impl MetaServer {
    /// The policies kept in ZooKeeper.
    pub(super) async fn load_policies(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Policy>, super::zk::ZkError> {
        let mut policies = std::collections::BTreeMap::new();
        for (name, data) in self.zk.load_policies().await? {
            match serde_json::from_slice::<Policy>(&data) {
                Ok(p) => {
                    policies.insert(p.name.clone(), p);
                }
                Err(e) => warn!(policy = name, "unreadable backup policy, ignored: {e}"),
            }
        }
        Ok(policies)
    }

    async fn save_policy(&self, policy: &Policy) -> Result<(), String> {
        let json = serde_json::to_vec(policy).map_err(|e| e.to_string())?;
        self.zk
            .save_policy(&policy.name, &json)
            .await
            .map_err(|e| e.to_string())
    }

    /// Checks a policy's tables, interval, history and start time.
    fn check_policy(&self, p: &Policy) -> Result<(), String> {
        let view = self.view();
        if let Some(id) = p
            .app_ids
            .iter()
            .find(|id| !view.get(id).is_some_and(|a| a.info.available()))
        {
            return Err(format!("table {id} is not available"));
        }
        if p.interval_secs < MIN_INTERVAL_SECS {
            return Err(format!(
                "backup interval {} s: at least {MIN_INTERVAL_SECS}",
                p.interval_secs
            ));
        }
        if p.history < 1 {
            return Err(format!(
                "history count {}: at least 1 backup is kept",
                p.history
            ));
        }
        if start_minutes(&p.start_time).is_none() {
            return Err(format!("start time `{}`: expected HH:MM", p.start_time));
        }
        Ok(())
    }

    /// `RPC_CM_ADD_BACKUP_POLICY`.
    pub(super) async fn add_backup_policy(
        &self,
        r: AddBackupPolicyRequest,
    ) -> AddBackupPolicyResponse {
        let answer = |(code, hint): (ErrorCode, String)| AddBackupPolicyResponse {
            err: err(code),
            hint_message: hint,
        };
        if let Some(refused) = self.refuse_backup() {
            return answer(refused);
        }
        if let Err(refused) = self.service(&r.backup_provider_type) {
            return answer(refused);
        }
        if !layout::plain(&r.policy_name) {
            return answer((
                ErrorCode::InvalidParameters,
                format!("policy name `{}` cannot be a folder's", r.policy_name),
            ));
        }
        let policy = Policy {
            name: r.policy_name.clone(),
            provider: r.backup_provider_type,
            app_ids: r.app_ids.into_iter().collect(),
            interval_secs: r.backup_interval_seconds,
            history: r.backup_history_count_to_keep,
            start_time: r.start_time,
            disabled: false,
            created_ms: now_ms(),
        };
        if policy.app_ids.is_empty() {
            return answer((ErrorCode::InvalidParameters, "no tables".into()));
        }
        if let Err(why) = self.check_policy(&policy) {
            return answer((ErrorCode::InvalidParameters, why));
        }
        if self
            .backups
            .lock()
            .expect("backups")
            .policies
            .contains_key(&policy.name)
        {
            return answer((
                ErrorCode::InvalidParameters,
                format!("policy {} exists", policy.name),
            ));
        }
        if let Err(e) = self.save_policy(&policy).await {
            return answer((ErrorCode::Unknown, e));
        }
        info!(policy = policy.name, tables = ?policy.app_ids, interval = policy.interval_secs, keep = policy.history, start = policy.start_time, "backup policy added");
        self.backups
            .lock()
            .expect("backups")
            .policies
            .insert(policy.name.clone(), policy);
        answer((ErrorCode::Ok, String::new()))
    }

    /// `RPC_CM_MODIFY_BACKUP_POLICY` (also `disable_backup_policy`, `enable_backup_policy`).
    pub(super) async fn modify_backup_policy(
        &self,
        r: ModifyBackupPolicyRequest,
    ) -> ModifyBackupPolicyResponse {
        let answer = |(code, hint): (ErrorCode, String)| ModifyBackupPolicyResponse {
            err: err(code),
            hint_message: hint,
        };
        if let Some(refused) = self.refuse_backup() {
            return answer(refused);
        }
        let Some(mut policy) = self
            .backups
            .lock()
            .expect("backups")
            .policies
            .get(&r.policy_name)
            .cloned()
        else {
            return answer((
                ErrorCode::InvalidParameters,
                format!("no policy {}", r.policy_name),
            ));
        };
        policy.app_ids.extend(r.add_appids.unwrap_or_default());
        for id in r.removal_appids.unwrap_or_default() {
            policy.app_ids.remove(&id);
        }
        if let Some(i) = r.new_backup_interval_sec {
            policy.interval_secs = i;
        }
        if let Some(h) = r.backup_history_count_to_keep {
            policy.history = h;
        }
        if let Some(d) = r.is_disable {
            policy.disabled = d;
        }
        if let Some(s) = r.start_time {
            policy.start_time = s;
        }
        if let Err(why) = self.check_policy(&policy) {
            return answer((ErrorCode::InvalidParameters, why));
        }
        if let Err(e) = self.save_policy(&policy).await {
            return answer((ErrorCode::Unknown, e));
        }
        info!(policy = policy.name, tables = ?policy.app_ids, interval = policy.interval_secs, keep = policy.history, disabled = policy.disabled, "backup policy changed");
        let name = policy.name.clone();
        self.backups
            .lock()
            .expect("backups")
            .policies
            .insert(name.clone(), policy);
        self.prune_history(&name).await;
        answer((ErrorCode::Ok, String::new()))
    }

    /// `RPC_CM_QUERY_BACKUP_POLICY`: the policies named (none: all), each with its latest
    /// `backup_info_count` complete backups, newest first.
    pub(super) fn query_backup_policy(
        &self,
        r: QueryBackupPolicyRequest,
    ) -> QueryBackupPolicyResponse {
        let answer = |(code, hint): (ErrorCode, String)| QueryBackupPolicyResponse {
            err: err(code),
            hint_msg: Some(hint),
            ..Default::default()
        };
        if let Some(refused) = self.refuse_backup() {
            return answer(refused);
        }
        let b = self.backups.lock().expect("backups");
        let names: Vec<String> = if r.policy_names.is_empty() {
            b.policies.keys().cloned().collect()
        } else {
            r.policy_names.clone()
        };
        let mut policys = Vec::new();
        let mut infos = Vec::new();
        for name in &names {
            let Some(p) = b.policies.get(name) else {
                return answer((ErrorCode::InvalidParameters, format!("no policy {name}")));
            };
            policys.push(p.entry());
            let entries: Vec<BackupEntry> = backups_of(b.records.values(), name)
                .into_iter()
                .rev()
                .filter(|(_, rs)| rs.iter().all(|r| r.status == Status::Complete))
                .take(r.backup_info_count.max(0) as usize)
                .map(|(id, rs)| BackupEntry {
                    backup_id: id,
                    start_time_ms: rs.iter().map(|r| r.start_time_ms).min().unwrap_or(0),
                    end_time_ms: rs.iter().map(|r| r.end_time_ms).max().unwrap_or(0),
                    app_ids: rs.iter().map(|r| r.app_id).collect(),
                })
                .collect();
            infos.push(entries);
        }
        QueryBackupPolicyResponse {
            err: err(ErrorCode::Ok),
            policys,
            backup_infos: infos,
            hint_msg: None,
        }
    }

    /// Starts the backups of policies that are due (the leader, each backup round).
    pub(super) async fn policy_round(&self) {
        if self.options.backup.disabled {
            return;
        }
        let now = now_ms();
        let due: Vec<(Policy, i64)> = {
            let b = self.backups.lock().expect("backups");
            b.policies
                .values()
                .filter(|p| !p.disabled)
                .filter_map(|p| {
                    let backups = backups_of(b.records.values(), &p.name);
                    let running = backups
                        .values()
                        .any(|rs| rs.iter().any(|r| r.status == Status::Running));
                    let last = backups.keys().next_back().copied();
                    (!running && p.due_ms(last) <= now).then(|| (p.clone(), b.next_id()))
                })
                .collect()
        };
        for (policy, backup_id) in due {
            let view = self.view();
            let root = format!("{}/{}", self.options.backup.root, policy.name);
            let mut started = Vec::new();
            for app_id in &policy.app_ids {
                let Some(app) = view.get(app_id).filter(|a| a.info.available()) else {
                    warn!(
                        policy = policy.name,
                        app_id, "policy backup: the table is not available, skipped"
                    );
                    continue;
                };
                let record = Record {
                    backup_id,
                    app_id: *app_id,
                    app_name: app.info.app_name.clone(),
                    provider: policy.provider.clone(),
                    backup_path: String::new(),
                    root: root.clone(),
                    partition_count: app.info.partition_count,
                    start_time_ms: now,
                    end_time_ms: 0,
                    status: Status::Running,
                    reason: String::new(),
                    policy: policy.name.clone(),
                };
                if let Err(e) = self.save_record(&record).await {
                    warn!(policy = policy.name, "starting a policy backup: {e}");
                    continue;
                }
                self.metrics.backup("started");
                started.push(*app_id);
                self.backups
                    .lock()
                    .expect("backups")
                    .records
                    .insert(record.key(), record);
            }
            if !started.is_empty() {
                info!(policy = policy.name, backup_id, tables = ?started, "policy backup started");
            }
        }
    }

    /// Removes policy `name`'s complete backups past its history count (oldest first), and
    /// its failed ones older than the oldest kept: files, then records.
    pub(super) async fn prune_history(&self, name: &str) {
        let (doomed, provider, root) = {
            let b = self.backups.lock().expect("backups");
            let Some(policy) = b.policies.get(name) else {
                return;
            };
            let backups = backups_of(b.records.values(), name);
            let complete: Vec<i64> = backups
                .iter()
                .filter(|(_, rs)| rs.iter().all(|r| r.status == Status::Complete))
                .map(|(id, _)| *id)
                .collect();
            let keep = policy.history.max(1) as usize;
            let oldest_kept = complete
                .len()
                .checked_sub(keep)
                .and_then(|cut| complete.get(cut))
                .copied()
                .unwrap_or(i64::MIN);
            let doomed: Vec<(i64, Vec<(i64, i32)>)> = backups
                .iter()
                .filter(|(id, rs)| {
                    **id < oldest_kept && rs.iter().all(|r| r.status != Status::Running)
                })
                .map(|(id, rs)| (*id, rs.iter().map(|r| r.key()).collect()))
                .collect();
            (
                doomed,
                policy.provider.clone(),
                format!("{}/{name}", self.options.backup.root),
            )
        };
        if doomed.is_empty() {
            return;
        }
        let Ok(service) = self.service(&provider) else {
            return;
        };
        for (backup_id, keys) in doomed {
            let dir = format!("{root}/{backup_id}");
            let service = std::sync::Arc::clone(&service);
            let removed = tokio::task::spawn_blocking(move || service.remove_all(&dir)).await;
            if !matches!(removed, Ok(Ok(()))) {
                warn!(
                    policy = name,
                    backup_id, "removing an old backup's files failed: kept, tried again later"
                );
                continue;
            }
            for key in keys {
                if let Err(e) = self.zk.delete_backup(&record_node(key)).await {
                    warn!(policy = name, backup_id, "forgetting an old backup: {e}");
                    continue;
                }
                self.backups.lock().expect("backups").records.remove(&key);
            }
            info!(
                policy = name,
                backup_id, "old backup removed (past the history count)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(start: &str, created_ms: i64) -> Policy {
        Policy {
            name: "p".into(),
            provider: "local_service".into(),
            app_ids: BTreeSet::from([1]),
            interval_secs: 3600,
            history: 2,
            start_time: start.into(),
            disabled: false,
            created_ms,
        }
    }

    #[test]
    fn the_first_backup_waits_for_the_start_time_then_the_interval() {
        // 2026-12-07 20:30:15 UTC.
        let created = 1_796_675_415_000;
        let day = created - created % 86_400_000;
        // 20:30 is this very minute: at once (its start).
        assert_eq!(
            policy("20:30", created).due_ms(None),
            day + 20 * 3_600_000 + 30 * 60_000
        );
        // 21:00 today, 01:30 tomorrow.
        assert_eq!(policy("21:00", created).due_ms(None), day + 21 * 3_600_000);
        assert_eq!(
            policy("01:30", created).due_ms(None),
            day + 86_400_000 + 90 * 60_000
        );
        assert_eq!(
            policy("01:30", created).due_ms(Some(created)),
            created + 3_600_000
        );
        assert_eq!(start_minutes("24:00"), None);
        assert_eq!(start_minutes("7:05"), Some(425));
    }
}
