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
