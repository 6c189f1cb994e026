//! Every `config.ini` key that has a type or a default: the one table the server reads its
//! values through ([`crate::Config::get`] and friends), configcheck checks types from
//! ([`crate::rules`]' `invalid-value`), and `configcheck keys` prints (the README's key list is
//! its output). A key the server reads and this table lacks cannot be read: the server has no
//! other way in.

/// What a key's value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A number ≥ 0.
    Unsigned,
    /// A number, maybe negative.
    Integer,
    /// `true` or `false` (any case).
    Bool,
    /// Free text: a name, a path, a list the key's own rule checks.
    Text,
}

impl Kind {
    /// How the key list names it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Unsigned => "unsigned",
            Kind::Integer => "integer",
            Kind::Bool => "bool",
            Kind::Text => "text",
        }
    }
}

/// Who reads a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// This server (and Pegasus, unless the doc says the key is ours).
    Server,
    /// Pegasus only: configcheck checks it for a Pegasus deployment; this server ignores it.
    Pegasus,
}

/// One key.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// Its section, or a family of sections ending in `*` (`apps.*`: every role section).
    pub section: &'static str,
    /// Its name.
    pub name: &'static str,
    /// What its value must be.
    pub kind: Kind,
    /// The value when absent or empty (as written in a file; empty: none, or derived as the doc
    /// says).
    pub default: &'static str,
    /// Who reads it.
    pub reader: Reader,
    /// What it does, in one sentence.
    pub doc: &'static str,
}

impl Key {
    /// Whether it applies to section `name` (a family covers every section of its prefix).
    pub fn applies_to(&self, name: &str) -> bool {
        match self.section.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix) && !name.contains(".."),
            None => name == self.section,
        }
    }

    /// `[section] name`.
    pub fn path(&self) -> String {
        format!("[{}] {}", self.section, self.name)
    }
}

macro_rules! keys {
    ($($id:ident: $section:literal $name:literal $kind:ident $default:literal $reader:ident $doc:literal;)*) => {
        $(
            #[doc = concat!("`[", $section, "] ", $name, "`: ", $doc)]
            pub const $id: Key = Key {
                section: $section,
                name: $name,
                kind: Kind::$kind,
                default: $default,
                reader: Reader::$reader,
                doc: $doc,
            };
        )*
        /// Every key, in the order of the key list.
        pub const ALL: &[Key] = &[$($id),*];
    };
}

keys! {
    DATA_DIR: "core" "data_dir" Text "./data" Server
        "Where data and logs go unless their own keys say otherwise.";
    LOG_DIR: "core" "log_dir" Text "" Server
        "The log folder, an absolute path; empty: `<data_dir>/log`.";
    ROLE_PORTS: "apps.*" "ports" Text "" Server
        "The role's RPC and HTTP port (the first of the list).";
    ROLE_RUN: "apps.*" "run" Bool "true" Server
        "Whether the role runs when no `-app_list` is given.";
    ROLE_COUNT: "apps.*" "count" Unsigned "" Pegasus
        "Instances of the role in one process.";
    PRIMARY_INTERFACE: "network" "primary_interface" Text "" Server
        "The interface whose address a node advertises; empty: the one private address.";
    EXPLICIT_HOST_ADDRESS: "network" "explicit_host_address" Text "" Server
        "The address a node advertises (resolved), whatever its interfaces.";
    META_SERVER_LIST: "meta_server" "server_list" Text "" Server
        "Every meta's `ip:port`, comma-separated.";
    CLUSTER_ROOT: "meta_server" "cluster_root" Text "" Server
        "The cluster's ZooKeeper path; empty: `/pegasus/<cluster_name>`.";
    LOCK_PATH: "meta_server" "distributed_lock_service_parameters" Text "" Server
        "The election's ZooKeeper path; empty: `<cluster_root>/lock`.";
    MIN_LIVE_NODES: "meta_server" "min_live_node_count_for_unfreeze" Unsigned "3" Server
        "Alive replica servers below which the meta moves nothing (freezed).";
    NODE_LIVE_PERCENTAGE: "meta_server" "node_live_percentage_threshold_for_update" Unsigned "" Pegasus
        "Share of alive replica servers below which Pegasus's meta freezes.";
    DROPOUT_DELAY_MS: "meta_server" "replica_assign_delay_ms_for_dropouts" Unsigned "300000" Server
        "How long a partition short of a copy waits for the node that dropped it.";
    MAX_REPLICAS_IN_GROUP: "meta_server" "max_replicas_in_group" Unsigned "" Pegasus
        "Copies Pegasus's meta keeps per partition, dropped ones included.";
    HOLD_DROPPED_SECONDS: "meta_server" "hold_seconds_for_dropped_app" Unsigned "604800" Server
        "How long a dropped table can be recalled.";
    MAX_PARTITION_COUNT: "meta_server" "max_allowed_partition_count" Unsigned "4096" Server
        "Partitions a create may ask for at most (ours).";
    MIN_REPLICA_COUNT: "meta_server" "min_allowed_replica_count" Unsigned "1" Server
        "Copies a create may ask for at least.";
    MAX_REPLICA_COUNT: "meta_server" "max_allowed_replica_count" Unsigned "5" Server
        "Copies a create may ask for at most.";
    BALANCE_MOVES: "meta_server" "balance_op_count_per_round" Unsigned "10" Server
        "Primaries or copies the balancer moves at a time.";
    META_LEVEL_ON_START: "meta_server" "meta_function_level_on_start" Text "steady" Server
        "The meta level a new leader starts at: `freezed`, `steady` or `lively`.";
    COLD_BACKUP_DISABLED: "meta_server" "cold_backup_disabled" Bool "true" Server
        "Refuse backups and restores (`ERR_SERVICE_NOT_ACTIVE`), as Pegasus's code default does.";
    RECOVER_FROM_REPLICA_SERVER: "meta_server" "recover_from_replica_server" Bool "" Pegasus
        "Pegasus's meta rebuilds its state from the replica servers at start.";
    APP_NAME: "meta_server.apps.*" "app_name" Text "" Server
        "A bootstrap table's name; empty: the section's suffix.";
    APP_PARTITION_COUNT: "meta_server.apps.*" "partition_count" Unsigned "4" Server
        "A bootstrap table's partitions.";
    APP_MAX_REPLICA_COUNT: "meta_server.apps.*" "max_replica_count" Unsigned "3" Server
        "A bootstrap table's copies per partition.";
    APP_ENVS: "meta_server.apps.*" "envs" Text "" Server
        "A bootstrap table's environments, `key=value,key=value`.";
    CLUSTER_NAME: "replication" "cluster_name" Text "" Server
        "The cluster's name (metrics, the default cluster root).";
    DATA_DIRS: "replication" "data_dirs" Text "" Server
        "The replica server's disks, `tag:path,tag:path`; empty: one, `<data_dir>/replica`.";
    DATA_DIRS_BLACK_LIST_FILE: "replication" "data_dirs_black_list_file" Text "" Server
        "A file listing disks not to use, one path a line.";
    SLOG_DIR: "replication" "slog_dir" Text "" Server
        "The shared log's disk (`<slog_dir>/replica/slog`); empty: `<data_dir>/replica/slog`.";
    FD_CHECK_INTERVAL: "replication" "fd_check_interval_seconds" Unsigned "2" Server
        "How often the meta looks for replica servers past their grace.";
    FD_BEACON_INTERVAL: "replication" "fd_beacon_interval_seconds" Unsigned "3" Server
        "How often a replica server beacons to the meta leader.";
    FD_LEASE: "replication" "fd_lease_seconds" Unsigned "20" Server
        "How long a replica server serves after its last answered beacon.";
    FD_GRACE: "replication" "fd_grace_seconds" Unsigned "22" Server
        "How long the meta waits after a beacon before it takes the node for dead (> the lease).";
    FD_DISABLED: "replication" "fd_disabled" Bool "" Pegasus
        "Turns Pegasus's failure detection off.";
    IGNORE_BROKEN_DISK: "replication" "ignore_broken_disk" Bool "" Pegasus
        "Whether Pegasus starts with a disk it cannot use.";
    PLOG_FORCE_FLUSH: "replication" "plog_force_flush" Bool "true" Server
        "Fsync the private log before acknowledging a write (Pegasus's default is false).";
    MIN_WRITE_MEMBERS: "replication" "mutation_2pc_min_replica_count" Unsigned "2" Server
        "Members a write needs (partition health counts by it too).";
    PLOG_FILE_SIZE_MB: "replication" "log_private_file_size_mb" Unsigned "32" Server
        "Private log file size before the next file.";
    SHARED_LOG: "replication" "shared_log" Bool "true" Server
        "Log every partition's writes to the node's shared log, one fsync for many partitions; false: each private log fsyncs its own.";
    SLOG_FILE_SIZE_MB: "replication" "log_shared_file_size_mb" Unsigned "32" Server
        "Shared log file size before the next file (the one before goes once private logs are synced).";
    COLD_BACKUP_ROOT: "replication" "cold_backup_root" Text "" Server
        "The folder this cluster's backups go in, inside the block service; empty: the cluster's name.";
    MAX_UPLOADING_FILES: "replication" "max_concurrent_uploading_file_count" Unsigned "10" Server
        "Files a replica server uploads at once for one partition's backup.";
    COLD_BACKUP_RATE_MB: "replication" "cold_backup_rate_mb_per_sec" Unsigned "200" Server
        "MB a second a replica server uploads or downloads at most for backups and restores (ours; 0: no bound).";
    CONFIG_SYNC_INTERVAL: "replication" "config_sync_interval_ms" Unsigned "" Pegasus
        "How often Pegasus's replica servers ask the meta for their configurations.";
    DISK_MIN_AVAILABLE_SPACE_RATIO: "replication" "disk_min_available_space_ratio" Unsigned "" Pegasus
        "Free space below which Pegasus takes a disk as full (percent).";
    IO_SERVICE_WORKER_COUNT: "network" "io_service_worker_count" Unsigned "" Pegasus
        "Pegasus's network threads.";
    ENABLE_UDP: "network" "enable_udp" Bool "" Pegasus
        "Whether Pegasus also listens on UDP.";
    MAX_CONNECTIONS: "network" "max_connections" Unsigned "4096" Server
        "Open connections per listener at most; more wait to be accepted.";
    CONN_THRESHOLD_PER_IP: "network" "conn_threshold_per_ip" Unsigned "0" Server
        "Open connections from one IP address at most (0: no bound).";
    MAX_IN_FLIGHT: "network" "max_in_flight_per_connection" Unsigned "1024" Server
        "Requests in flight per connection; more wait unread.";
    MAX_FRAME_BYTES: "network" "max_frame_bytes" Unsigned "67108864" Server
        "The largest request body; a larger frame closes its connection.";
    CONN_IDLE_TIMEOUT: "network" "conn_idle_timeout_seconds" Unsigned "600" Server
        "An idle connection is closed after this long (0: never).";
    REQUEST_READ_TIMEOUT: "network" "request_read_timeout_seconds" Unsigned "30" Server
        "A request begun and not finished within this long closes its connection.";
    RESPONSE_WRITE_TIMEOUT: "network" "response_write_timeout_seconds" Unsigned "60" Server
        "Answers not taken within this long close their connection.";
    LISTEN_BACKLOG: "network" "listen_backlog" Unsigned "1024" Server
        "Connections the kernel completes before they are accepted.";
    LEARN_RATE_MB: "nfs" "max_copy_rate_megabytes_per_disk" Unsigned "500" Server
        "MB a second a learner copies at most.";
    BLOCK_SERVICE_TYPE: "block_service.*" "type" Text "" Server
        "A block service's kind: `local_service` (a folder, local or an NFS mount).";
    BLOCK_SERVICE_ARGS: "block_service.*" "args" Text "" Server
        "A block service's arguments: for `local_service`, its root folder.";
    ZK_HOSTS: "zookeeper" "hosts_list" Text "" Server
        "ZooKeeper's `ip:port` list.";
    ZK_TIMEOUT_MS: "zookeeper" "timeout_ms" Unsigned "30000" Server
        "The ZooKeeper session timeout.";
    ZK_AUTH_DIGEST: "zookeeper" "auth_digest" Text "" Server
        "`user:password` the cluster's ZooKeeper nodes belong to (or `auth_digest_file`).";
    ZK_AUTH_DIGEST_FILE: "zookeeper" "auth_digest_file" Text "" Server
        "A file holding `user:password`, readable by the server alone.";
    ADMIN_ALLOWED_HOSTS: "security" "admin_allowed_hosts" Text "" Server
        "Addresses or networks that may send admin RPCs; empty: anyone.";
    REPLICATION_THREADS: "threadpool.THREAD_POOL_REPLICATION" "worker_count" Unsigned "8" Server
        "Threads that run every partition's driver.";
    ROCKSDB_WRITE_BUFFER_SIZE: "pegasus.server" "rocksdb_write_buffer_size" Unsigned "67108864" Server
        "RocksDB's memtable size.";
    ROCKSDB_MAX_WRITE_BUFFER_NUMBER: "pegasus.server" "rocksdb_max_write_buffer_number" Unsigned "3" Server
        "RocksDB's memtables at most.";
    ROCKSDB_COMPRESSION_TYPE: "pegasus.server" "rocksdb_compression_type" Text "lz4" Server
        "`none`, `snappy`, `lz4` or `zstd`.";
    ROCKSDB_BLOCK_CACHE_CAPACITY: "pegasus.server" "rocksdb_block_cache_capacity" Unsigned "10737418240" Server
        "RocksDB's block cache, shared by the replicas (0: none).";
    ROCKSDB_MAX_OPEN_FILES: "pegasus.server" "rocksdb_max_open_files" Integer "-1" Server
        "Files RocksDB keeps open per replica (-1: all).";
    ROCKSDB_MAX_BACKGROUND_COMPACTIONS: "pegasus.server" "rocksdb_max_background_compactions" Integer "12" Server
        "RocksDB's background jobs (2 to 16).";
    MULTI_GET_MAX_ITERATION_COUNT: "pegasus.server" "rocksdb_multi_get_max_iteration_count" Unsigned "3000" Server
        "Keys a multi-get or scan batch reads at most.";
    MULTI_GET_MAX_ITERATION_SIZE: "pegasus.server" "rocksdb_multi_get_max_iteration_size" Unsigned "31457280" Server
        "Bytes a multi-get or scan batch reads at most.";
    DETECT_APP: "pegasus.collector" "available_detect_app" Text "stat" Server
        "The table the collector probes.";
    DETECT_INTERVAL: "pegasus.collector" "available_detect_interval_seconds" Unsigned "3" Server
        "How often the collector probes.";
    DETECT_TIMEOUT_MS: "pegasus.collector" "available_detect_timeout" Unsigned "5000" Server
        "A probe that takes longer counts as failed.";
}

/// The key `[section] name` (a section of a family matches it).
pub fn find(section: &str, name: &str) -> Option<&'static Key> {
    ALL.iter().find(|k| k.name == name && k.applies_to(section))
}

/// The key list as a Markdown table (the README's).
pub fn markdown() -> String {
    let mut out =
        String::from("| key | kind | default | read by | what it does |\n|---|---|---|---|---|\n");
    for k in ALL {
        let default = if k.default.is_empty() {
            "–".to_owned()
        } else {
            format!("`{}`", k.default)
        };
        let reader = match k.reader {
            Reader::Server => "both",
            Reader::Pegasus => "Pegasus",
        };
        out.push_str(&format!(
            "| `{}` | {} | {default} | {reader} | {} |\n",
            k.path(),
            k.kind.name(),
            k.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_of_its_kind_and_every_key_is_listed_once() {
        for k in ALL {
            if k.default.is_empty() {
                assert!(
                    k.reader == Reader::Pegasus || k.kind == Kind::Text,
                    "{}: a key the server reads needs its default",
                    k.path()
                );
                continue;
            }
            match k.kind {
                Kind::Unsigned => assert!(k.default.parse::<u64>().is_ok(), "{}", k.path()),
                Kind::Integer => assert!(k.default.parse::<i64>().is_ok(), "{}", k.path()),
                Kind::Bool => assert!(matches!(k.default, "true" | "false"), "{}", k.path()),
                Kind::Text => {}
            }
        }
        for (i, k) in ALL.iter().enumerate() {
            assert!(
                ALL[..i]
                    .iter()
                    .all(|o| (o.section, o.name) != (k.section, k.name)),
                "{} twice",
                k.path()
            );
        }
        assert_eq!(find("apps.meta", "ports").map(|k| k.name), Some("ports"));
        assert!(find("replication", "no_such_key").is_none());
    }
}
