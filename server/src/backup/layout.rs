//! What a backup looks like in its block service, after Pegasus's layout:
//!
//! ```text
//! <root>/<backup_id>/<app_name>_<app_id>/
//!     <pidx>/chkpt_<ip>_<port>/<files>      a partition's checkpoint, as its primary uploaded it
//!     <pidx>/chkpt_<ip>_<port>/backup_metadata   its manifest (decree, files, sizes, CRC-32C)
//!     <pidx>/current_checkpoint             which chkpt_ folder is whole (written after it)
//!     meta/app_metadata                     the table: partitions, copies, envs
//!     backup_info                           the backup; written last: without it, incomplete
//! ```
//!
//! `<root>` is `[<backup_path>/]<cold_backup_root>` for a backup, and
//! `[<restore_path>/]<cluster_name>` for a restore (the old cluster's `cold_backup_root`, which
//! is its name unless configured otherwise). Every name written is checked to stay inside the
//! service.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest of a partition's checkpoint.
pub const MANIFEST: &str = "backup_metadata";
/// The file naming a partition's whole checkpoint folder.
pub const CURRENT: &str = "current_checkpoint";
/// The table's metadata.
pub const APP_METADATA: &str = "meta/app_metadata";
/// The backup's metadata, written last.
pub const BACKUP_INFO: &str = "backup_info";

/// A root: `[<path>/]<name>`, where `path` is a request's (`backup_path`, `restore_path`) and
/// `name` the cluster's. `None` when either would leave the service (absolute parts are taken
/// as relative to the service's root; `..` is refused).
pub fn root(path: Option<&str>, name: &str) -> Option<String> {
    let path = path.unwrap_or("").trim_matches('/');
    let name = name.trim_matches('/');
    let ok = |s: &str| s.split('/').all(|p| p != ".." && p != ".");
    if name.is_empty() || !ok(path) || !ok(name) || name.contains('/') {
        return None;
    }
    Some(if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}/{name}")
    })
}

/// A restore's root: [`root`] of `path` and `cluster`, and `/<policy>` for a policy's backup.
pub fn restore_root(path: Option<&str>, cluster: &str, policy: &str) -> Option<String> {
    let root = root(path, cluster)?;
    match policy {
        "" => Some(root),
        p if plain(p) => Some(format!("{root}/{p}")),
        _ => None,
    }
}

/// A table's folder in a backup.
pub fn app_dir(root: &str, app_name: &str, app_id: i32, backup_id: i64) -> String {
    format!("{root}/{backup_id}/{app_name}_{app_id}")
}

/// A partition's folder.
pub fn partition_dir(app_dir: &str, pidx: i32) -> String {
    format!("{app_dir}/{pidx}")
}

/// A node's checkpoint folder name (`chkpt_<ip>_<port>`).
pub fn checkpoint_name(node: std::net::SocketAddrV4) -> String {
    format!("chkpt_{}_{}", node.ip(), node.port())
}

/// Whether `name` can be a checkpoint folder's or a file's name in one (plain, no separators).
pub fn plain(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Why a backup's JSON file (a manifest, `backup_info`, `app_metadata`) could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// It is not there.
    #[error("{0} is missing")]
    Missing(String),
    /// `backup_info` is not there: it is written last, so the backup is not complete.
    #[error("{0} is missing: the backup is not complete")]
    Incomplete(String),
    /// The service failed.
    #[error(transparent)]
    Io(#[from] super::block::BlockError),
    /// It is not the JSON expected.
    #[error("{path}: {source}")]
    Bad {
        /// Its path.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// The JSON file `path` of `service`.
pub fn read_json<T: serde::de::DeserializeOwned>(
    service: &dyn super::block::BlockService,
    path: &str,
) -> Result<T, ReadError> {
    let bytes = service
        .read(path)?
        .ok_or_else(|| ReadError::Missing(path.to_owned()))?;
    serde_json::from_slice(&bytes).map_err(|source| ReadError::Bad {
        path: path.to_owned(),
        source,
    })
}

/// The `backup_info` of the backup at `app_dir`; [`ReadError::Incomplete`] when there is none.
pub fn read_backup_info(
    service: &dyn super::block::BlockService,
    app_dir: &str,
) -> Result<BackupInfo, ReadError> {
    read_json(service, &format!("{app_dir}/{BACKUP_INFO}")).map_err(|e| match e {
        ReadError::Missing(path) => ReadError::Incomplete(path),
        e => e,
    })
}

/// One file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the checkpoint folder.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// CRC-32C.
    pub crc32c: u32,
}

/// A partition's manifest: what its checkpoint holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionManifest {
    /// `<app_id>.<pidx>`.
    pub gpid: String,
    /// The decree the checkpoint is at.
    pub decree: u64,
    /// The node that took it.
    pub node: String,
    /// Its files.
    pub files: Vec<FileEntry>,
}

impl PartitionManifest {
    /// Bytes in its files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The table a backup is of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMetadata {
    /// Its name when backed up.
    pub app_name: String,
    /// Its id.
    pub app_id: i32,
    /// `pegasus`.
    pub app_type: String,
    /// Partitions.
    pub partition_count: i32,
    /// Copies per partition.
    pub max_replica_count: i32,
    /// Its environments.
    pub envs: BTreeMap<String, String>,
}

/// A complete backup: written last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The backup's id (its start, Unix milliseconds).
    pub backup_id: i64,
    /// The table's name.
    pub app_name: String,
    /// The table's id.
    pub app_id: i32,
    /// When it started, Unix milliseconds.
    pub start_time_ms: i64,
    /// When it ended, Unix milliseconds.
    pub end_time_ms: i64,
    /// Per partition, the decree its checkpoint is at.
    pub decrees: Vec<u64>,
    /// Per partition, its checkpoint's folder (`chkpt_<ip>_<port>`): the one a restore takes,
    /// whatever `current_checkpoint` says later.
    pub checkpoints: Vec<String>,
    /// Bytes in every partition's files.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_stay_inside_the_service() {
        assert_eq!(root(None, "onebox").as_deref(), Some("onebox"));
        assert_eq!(root(Some(""), "onebox").as_deref(), Some("onebox"));
        assert_eq!(
            root(Some("/mnt/nfs/"), "onebox").as_deref(),
            Some("mnt/nfs/onebox")
        );
        for (path, name) in [
            (None, ""),
            (Some("../x"), "c"),
            (Some("a/../../b"), "c"),
            (None, ".."),
            (None, "a/b"),
        ] {
            assert_eq!(root(path, name), None, "{path:?} {name:?}");
        }
        assert_eq!(
            app_dir("onebox", "orders", 7, 1_700_000_000_123),
            "onebox/1700000000123/orders_7"
        );
        assert!(!plain("a/b") && !plain("..") && plain("000012.sst"));
    }
}
