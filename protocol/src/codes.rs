//! Names on the wire: rDSN error codes (sent as strings), the RocksDB status codes in rrdb
//! responses, and RPC names.

/// rDSN error codes. The wire carries the name (`"ERR_OK"`); clients map names back, so only
/// names clients know are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Success.
    Ok,
    /// Something unexpected.
    Unknown,
    /// The table exists.
    AppExist,
    /// No such table.
    AppNotExist,
    /// The request timed out.
    Timeout,
    /// The server is busy (a bounded queue is full).
    Busy,
    /// This meta server is not the leader; the leader is in the answer.
    ForwardToOthers,
    /// No such object (table, partition).
    ObjectNotFound,
    /// No handler for this RPC name.
    HandlerNotFound,
    /// Bad parameters.
    InvalidParameters,
    /// This server does not serve the partition as primary.
    InvalidState,
    /// The replica is inactive (lease lost).
    InactiveState,
    /// Not enough replicas alive to write.
    NotEnoughMember,
    /// Bad data.
    InvalidData,
    /// A disk or file operation failed.
    FileOperationFailed,
    /// The state is frozen.
    StateFreezed,
    /// Not implemented.
    NotImplemented,
    /// Try again later.
    TryAgain,
    /// No primary for the partition.
    NoPrimary,
    /// Too many writes in flight past the commit point: retry shortly.
    CapacityExceeded,
    /// A configuration change was asked against a ballot that is not the current one.
    InvalidVersion,
    /// The table was dropped (and may be recalled).
    AppDropped,
    /// The request is not allowed now (the meta level forbids it).
    OperationDisabled,
    /// The sender may not ask this (`[security] admin_allowed_hosts`).
    AclDeny,
    /// The service is off (`[meta_server] cold_backup_disabled`).
    ServiceNotActive,
    /// Data failed its checksum.
    Corruption,
}

impl ErrorCode {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Ok => "ERR_OK",
            ErrorCode::Unknown => "ERR_UNKNOWN",
            ErrorCode::AppExist => "ERR_APP_EXIST",
            ErrorCode::AppNotExist => "ERR_APP_NOT_EXIST",
            ErrorCode::Timeout => "ERR_TIMEOUT",
            ErrorCode::Busy => "ERR_BUSY",
            ErrorCode::ForwardToOthers => "ERR_FORWARD_TO_OTHERS",
            ErrorCode::ObjectNotFound => "ERR_OBJECT_NOT_FOUND",
            ErrorCode::HandlerNotFound => "ERR_HANDLER_NOT_FOUND",
            ErrorCode::InvalidParameters => "ERR_INVALID_PARAMETERS",
            ErrorCode::InvalidState => "ERR_INVALID_STATE",
            ErrorCode::InactiveState => "ERR_INACTIVE_STATE",
            ErrorCode::NotEnoughMember => "ERR_NOT_ENOUGH_MEMBER",
            ErrorCode::InvalidData => "ERR_INVALID_DATA",
            ErrorCode::FileOperationFailed => "ERR_FILE_OPERATION_FAILED",
            ErrorCode::StateFreezed => "ERR_STATE_FREEZED",
            ErrorCode::NotImplemented => "ERR_NOT_IMPLEMENTED",
            ErrorCode::TryAgain => "ERR_TRY_AGAIN",
            ErrorCode::NoPrimary => "ERR_NO_PRIMARY",
            ErrorCode::CapacityExceeded => "ERR_CAPACITY_EXCEEDED",
            ErrorCode::InvalidVersion => "ERR_INVALID_VERSION",
            ErrorCode::AppDropped => "ERR_APP_DROPPED",
            ErrorCode::OperationDisabled => "ERR_OPERATION_DISABLED",
            ErrorCode::AclDeny => "ERR_ACL_DENY",
            ErrorCode::ServiceNotActive => "ERR_SERVICE_NOT_ACTIVE",
            ErrorCode::Corruption => "ERR_CORRUPTION",
        }
    }

    const ALL: [ErrorCode; 26] = [
        ErrorCode::Ok,
        ErrorCode::Unknown,
        ErrorCode::AppExist,
        ErrorCode::AppNotExist,
        ErrorCode::Timeout,
        ErrorCode::Busy,
        ErrorCode::ForwardToOthers,
        ErrorCode::ObjectNotFound,
        ErrorCode::HandlerNotFound,
        ErrorCode::InvalidParameters,
        ErrorCode::InvalidState,
        ErrorCode::InactiveState,
        ErrorCode::NotEnoughMember,
        ErrorCode::InvalidData,
        ErrorCode::FileOperationFailed,
        ErrorCode::StateFreezed,
        ErrorCode::NotImplemented,
        ErrorCode::TryAgain,
        ErrorCode::NoPrimary,
        ErrorCode::CapacityExceeded,
        ErrorCode::InvalidVersion,
        ErrorCode::AppDropped,
        ErrorCode::OperationDisabled,
        ErrorCode::AclDeny,
        ErrorCode::ServiceNotActive,
        ErrorCode::Corruption,
    ];

    /// The code of a wire name; unknown names are [`ErrorCode::Unknown`].
    pub fn from_name(name: &str) -> ErrorCode {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .unwrap_or(ErrorCode::Unknown)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// RocksDB status codes, the `error` field of rrdb responses.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// No such key.
    pub const NOT_FOUND: i32 = 1;
    /// Data corruption.
    pub const CORRUPTION: i32 = 2;
    /// Not supported.
    pub const NOT_SUPPORTED: i32 = 3;
    /// Bad argument (a key too long, a non-integer value for `incr`).
    pub const INVALID_ARGUMENT: i32 = 4;
    /// I/O error.
    pub const IO_ERROR: i32 = 5;
    /// A limit stopped the read before the end (`multi_get` with `max_kv_count`).
    pub const INCOMPLETE: i32 = 7;
    /// A check-and-set check did not pass.
    pub const TRY_AGAIN: i32 = 13;
}

/// RPC names: `RPC_<SERVICE>_<SERVICE>_<METHOD>`; answers add `_ACK`.
pub mod rpc {
    #![allow(missing_docs)]
    pub const PUT: &str = "RPC_RRDB_RRDB_PUT";
    pub const MULTI_PUT: &str = "RPC_RRDB_RRDB_MULTI_PUT";
    pub const REMOVE: &str = "RPC_RRDB_RRDB_REMOVE";
    pub const MULTI_REMOVE: &str = "RPC_RRDB_RRDB_MULTI_REMOVE";
    pub const INCR: &str = "RPC_RRDB_RRDB_INCR";
    pub const CHECK_AND_SET: &str = "RPC_RRDB_RRDB_CHECK_AND_SET";
    pub const CHECK_AND_MUTATE: &str = "RPC_RRDB_RRDB_CHECK_AND_MUTATE";
    pub const GET: &str = "RPC_RRDB_RRDB_GET";
    pub const MULTI_GET: &str = "RPC_RRDB_RRDB_MULTI_GET";
    pub const BATCH_GET: &str = "RPC_RRDB_RRDB_BATCH_GET";
    pub const SORTKEY_COUNT: &str = "RPC_RRDB_RRDB_SORTKEY_COUNT";
    pub const TTL: &str = "RPC_RRDB_RRDB_TTL";
    pub const GET_SCANNER: &str = "RPC_RRDB_RRDB_GET_SCANNER";
    pub const SCAN: &str = "RPC_RRDB_RRDB_SCAN";
    pub const CLEAR_SCANNER: &str = "RPC_RRDB_RRDB_CLEAR_SCANNER";
    pub const QUERY_CONFIG: &str = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX";
    pub const BEACON: &str = "RPC_FD_FAILURE_DETECTOR_PING";
    pub const CREATE_APP: &str = "RPC_CM_CREATE_APP";
    pub const DROP_APP: &str = "RPC_CM_DROP_APP";
    pub const LIST_APPS: &str = "RPC_CM_LIST_APPS";
    pub const LIST_NODES: &str = "RPC_CM_LIST_NODES";
    pub const CLUSTER_INFO: &str = "RPC_CM_CLUSTER_INFO";
    pub const RECALL_APP: &str = "RPC_CM_RECALL_APP";
    pub const UPDATE_APP_ENV: &str = "RPC_CM_UPDATE_APP_ENV";
    pub const CONTROL_META: &str = "RPC_CM_CONTROL_META";
    pub const QUERY_MANUAL_COMPACT: &str = "RPC_CM_QUERY_MANUAL_COMPACT_STATUS";
    /// Pegasus shell's `propose`: move a partition's primary (this server takes
    /// `move_primary` only).
    pub const PROPOSE_BALANCER: &str = "RPC_CM_PROPOSE_BALANCER";
    /// Primary to secondary: log this mutation (replication; our payload, Pegasus's name).
    pub const PREPARE: &str = "RPC_PREPARE";
    /// A member to the meta: change a partition's configuration (our payload, Pegasus's name).
    pub const UPDATE_CONFIG: &str = "RPC_CM_UPDATE_PARTITION_CONFIGURATION";
    /// The meta to a replica server: a partition's new configuration (our payload).
    pub const CONFIG_PROPOSAL: &str = "RPC_CONFIG_PROPOSAL";
    /// Primary to a new copy: learn (our payload).
    pub const LEARN_ADD_LEARNER: &str = "RPC_LEARN_ADD_LEARNER";
    /// Learner to primary: a checkpoint and the log past it (our payload).
    pub const LEARN: &str = "RPC_LEARN";
    /// Learner to primary: a chunk of a checkpoint file (our payload).
    pub const LEARN_FETCH: &str = "RPC_LEARN_FETCH";
    /// Learner to primary: caught up (our payload).
    pub const LEARN_COMPLETION_NOTIFY: &str = "RPC_LEARN_COMPLETION_NOTIFY";
    /// The collector to the meta leader: its last availability round (ours, for the status
    /// page).
    pub const REPORT_AVAILABILITY: &str = "RPC_CM_REPORT_AVAILABILITY";

    pub const ADD_BACKUP_POLICY: &str = "RPC_CM_ADD_BACKUP_POLICY";
    pub const QUERY_BACKUP_POLICY: &str = "RPC_CM_QUERY_BACKUP_POLICY";
    pub const MODIFY_BACKUP_POLICY: &str = "RPC_CM_MODIFY_BACKUP_POLICY";
    pub const START_BACKUP_APP: &str = "RPC_CM_START_BACKUP_APP";
    pub const QUERY_BACKUP_STATUS: &str = "RPC_CM_QUERY_BACKUP_STATUS";
    pub const START_RESTORE: &str = "RPC_CM_START_RESTORE";
    pub const QUERY_RESTORE_STATUS: &str = "RPC_CM_QUERY_RESTORE_STATUS";
    /// A restoring copy to the meta: its progress, or why it failed.
    pub const REPORT_RESTORE_STATUS: &str = "RPC_CM_REPORT_RESTORE_STATUS";
    /// The meta to a partition's primary: its part of a backup, and its progress.
    pub const COLD_BACKUP: &str = "RPC_COLD_BACKUP";

    /// The answer's name: `name + "_ACK"`.
    pub fn ack(name: &str) -> String {
        format!("{name}_ACK")
    }
}
