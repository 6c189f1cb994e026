//! Cold backup and restore, the parts the meta and the replica servers share: the block services
//! backups are kept in ([`block`]), and what a backup looks like in one ([`layout`]). The meta
//! runs a backup (`meta/backup.rs`: each partition's primary asked for its part, the table's
//! metadata and `backup_info` written once every part is whole) and starts a restore; a
//! replica server uploads its primaries' checkpoints and builds restored copies from them
//! (`replica/backup.rs`).

pub mod block;
pub mod layout;

/// Lowers the calling thread's CPU priority to nice 10 (threads it starts inherit it): a
/// backup's or a restore's copies yield the CPU to the writes and reads the node serves, and
/// take what is left. A thread may always lower its own priority; should it fail, the copy
/// runs at the usual priority.
pub fn yield_to_serving() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10);
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The table environments a restored table is created with: where its copies come from.
/// Pegasus's names (`backup_restore_constant`).
pub mod envs {
    /// The block service.
    pub const PROVIDER: &str = "restore.block_service_provider";
    /// The backed-up cluster's name (its backups' root).
    pub const CLUSTER_NAME: &str = "restore.cluster_name";
    /// The policy (empty for a one-time backup).
    pub const POLICY_NAME: &str = "restore.policy_name";
    /// The backed-up table's name.
    pub const APP_NAME: &str = "restore.app_name";
    /// The backed-up table's id.
    pub const APP_ID: &str = "restore.app_id";
    /// The backup.
    pub const BACKUP_ID: &str = "restore.backup_id";
    /// Whether a partition whose files fail is created empty instead.
    pub const SKIP_BAD_PARTITION: &str = "restore.skip_bad_partition";
    /// The folder above the cluster's root in the service.
    pub const RESTORE_PATH: &str = "restore.restore_path";
}

/// Where a restored table's copies come from, read from its environments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSource {
    /// The block service.
    pub provider: String,
    /// The backed-up table's folder in it.
    pub app_dir: String,
    /// Whether a partition that cannot be restored is created empty.
    pub skip_bad_partition: bool,
}

impl RestoreSource {
    /// From a table's environments; `None` when it is no restored table, or its keys do not
    /// name a backup inside the service.
    pub fn from_envs(e: &std::collections::BTreeMap<String, String>) -> Option<RestoreSource> {
        let provider = e.get(envs::PROVIDER)?;
        let root = layout::restore_root(
            e.get(envs::RESTORE_PATH).map(String::as_str),
            e.get(envs::CLUSTER_NAME)?,
            e.get(envs::POLICY_NAME).map_or("", String::as_str),
        )?;
        let app_name = e.get(envs::APP_NAME)?;
        if !layout::plain(app_name) {
            return None;
        }
        let app_id = e.get(envs::APP_ID)?.parse().ok()?;
        let backup_id = e.get(envs::BACKUP_ID)?.parse().ok()?;
        Some(RestoreSource {
            provider: provider.clone(),
            app_dir: layout::app_dir(&root, app_name, app_id, backup_id),
            skip_bad_partition: e.get(envs::SKIP_BAD_PARTITION).is_some_and(|v| v == "true"),
        })
    }
}
