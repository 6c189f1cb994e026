//! The structs of Pegasus's cold backup and restore (`idl/backup.thrift`), field for field: the
//! shell's one-time backups (`RPC_CM_START_BACKUP_APP`, `RPC_CM_QUERY_BACKUP_STATUS`), restores
//! (`RPC_CM_START_RESTORE`, `RPC_CM_QUERY_RESTORE_STATUS`), and what the meta asks a primary
//! (`RPC_COLD_BACKUP`) and a restoring copy reports (`RPC_CM_REPORT_RESTORE_STATUS`).

use crate::thrift_struct;
use crate::types::{ErrorName, Gpid};

/// A partition's progress when it is done (Pegasus's `PROGRESS_FINISHED`).
pub const PROGRESS_FINISHED: i32 = 1000;

thrift_struct! {
    /// `policy_info`.
    pub struct PolicyInfo {
        1: policy_name: String,
        2: backup_provider_type: String,
    }
}

thrift_struct! {
    /// `configuration_restore_request` (answered with `configuration_create_app_response`).
    pub struct RestoreRequest {
        1: cluster_name: String,
        2: policy_name: String,
        /// The backup's id (its start in Unix milliseconds).
        3: time_stamp: i64,
        4: app_name: String,
        5: app_id: i32,
        6: new_app_name: String,
        7: backup_provider_name: String,
        8: skip_bad_partition: bool,
        9: restore_path: Option<String>,
    }
}

thrift_struct! {
    /// `backup_request`: the meta asks a partition's primary for its part of a backup (and,
    /// asked again, for its progress).
    pub struct BackupRequest {
        1: pid: Gpid,
        2: policy: PolicyInfo,
        3: app_name: String,
        4: backup_id: i64,
        5: backup_path: Option<String>,
    }
}

thrift_struct! {
    /// `backup_response`.
    pub struct BackupResponse {
        1: err: ErrorName,
        2: pid: Gpid,
        /// 0 to [`PROGRESS_FINISHED`].
        3: progress: i32,
        4: policy_name: String,
        5: backup_id: i64,
        6: checkpoint_total_size: i64,
    }
}

thrift_struct! {
    /// `configuration_report_restore_status_request`: a restoring copy's progress, or why it
    /// failed.
    pub struct ReportRestoreStatusRequest {
        1: pid: Gpid,
        2: restore_status: ErrorName,
        /// 0 to [`PROGRESS_FINISHED`].
        3: progress: i32,
        4: reason: Option<String>,
    }
}

thrift_struct! {
    /// `configuration_report_restore_status_response`.
    pub struct ReportRestoreStatusResponse {
        1: err: ErrorName,
    }
}

thrift_struct! {
    /// `configuration_query_restore_request`.
    pub struct QueryRestoreRequest {
        1: restore_app_id: i32,
    }
}

thrift_struct! {
    /// `configuration_query_restore_response`: per partition, its status and progress.
    pub struct QueryRestoreResponse {
        1: err: ErrorName,
        2: restore_status: Vec<ErrorName>,
        3: restore_progress: Vec<i32>,
    }
}

thrift_struct! {
    /// `start_backup_app_request`.
    pub struct StartBackupAppRequest {
        1: backup_provider_type: String,
        2: app_id: i32,
        3: backup_path: Option<String>,
    }
}

thrift_struct! {
    /// `start_backup_app_response`.
    pub struct StartBackupAppResponse {
        1: err: ErrorName,
        2: hint_message: String,
        3: backup_id: Option<i64>,
    }
}

thrift_struct! {
    /// `backup_item`: one backup of a table.
    pub struct BackupItem {
        1: backup_id: i64,
        2: app_name: String,
        3: backup_provider_type: String,
        4: backup_path: String,
        5: start_time_ms: i64,
        6: end_time_ms: i64,
        7: is_backup_failed: bool,
    }
}

thrift_struct! {
    /// `query_backup_status_request`.
    pub struct QueryBackupStatusRequest {
        1: app_id: i32,
        2: backup_id: Option<i64>,
    }
}

thrift_struct! {
    /// `query_backup_status_response`.
    pub struct QueryBackupStatusResponse {
        1: err: ErrorName,
        2: hint_message: String,
        3: backup_items: Option<Vec<BackupItem>>,
    }
}

thrift_struct! {
    /// `configuration_add_backup_policy_request`.
    pub struct AddBackupPolicyRequest {
        1: backup_provider_type: String,
        2: policy_name: String,
        3: app_ids: Vec<i32>,
        4: backup_interval_seconds: i64,
        5: backup_history_count_to_keep: i32,
        /// `HH:MM`: the time of day of the first backup.
        6: start_time: String,
    }
}

thrift_struct! {
    /// `configuration_add_backup_policy_response`.
    pub struct AddBackupPolicyResponse {
        1: err: ErrorName,
        2: hint_message: String,
    }
}

thrift_struct! {
    /// `configuration_modify_backup_policy_request`: each field given is changed.
    pub struct ModifyBackupPolicyRequest {
        1: policy_name: String,
        2: add_appids: Option<Vec<i32>>,
        3: removal_appids: Option<Vec<i32>>,
        4: new_backup_interval_sec: Option<i64>,
        5: backup_history_count_to_keep: Option<i32>,
        6: is_disable: Option<bool>,
        7: start_time: Option<String>,
    }
}

thrift_struct! {
    /// `configuration_modify_backup_policy_response`.
    pub struct ModifyBackupPolicyResponse {
        1: err: ErrorName,
        2: hint_message: String,
    }
}

thrift_struct! {
    /// `policy_entry`.
    pub struct PolicyEntry {
        1: policy_name: String,
        2: backup_provider_type: String,
        /// Seconds, as a decimal string (Pegasus's IDL).
        3: backup_interval_seconds: String,
        4: app_ids: std::collections::BTreeSet<i32>,
        5: backup_history_count_to_keep: i32,
        6: start_time: String,
        7: is_disable: bool,
    }
}

thrift_struct! {
    /// `backup_entry`: one backup of a policy.
    pub struct BackupEntry {
        1: backup_id: i64,
        2: start_time_ms: i64,
        3: end_time_ms: i64,
        4: app_ids: std::collections::BTreeSet<i32>,
    }
}

thrift_struct! {
    /// `configuration_query_backup_policy_request`: the policies named (none: every one), with
    /// up to `backup_info_count` of each one's latest backups.
    pub struct QueryBackupPolicyRequest {
        1: policy_names: Vec<String>,
        2: backup_info_count: i32,
    }
}

thrift_struct! {
    /// `configuration_query_backup_policy_response`.
    pub struct QueryBackupPolicyResponse {
        1: err: ErrorName,
        2: policys: Vec<PolicyEntry>,
        3: backup_infos: Vec<Vec<BackupEntry>>,
        4: hint_msg: Option<String>,
    }
}
