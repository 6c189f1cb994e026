//! The server's typed view of `config.ini`, read through the configcheck library (one parser,
//! one address rule for the checker and the server).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use configcheck::address::{self, AdvertisedAddress, AllowList, NetworkSettings};
use configcheck::{Config, HostFacts, ValueError, keys};
use rocksdb::DBCompressionType;

use crate::meta::{BootstrapApp, CreateLimits};
use crate::net::Limits;
use crate::replica::read::ReadLimits;
use crate::replica::storage::RocksSettings;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value has the wrong type.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// A role has no `[apps.<role>]` section.
    #[error("no `[apps.{0}]` section for role `{0}`")]
    NoRole(String),
    /// A role's `ports` is missing.
    #[error("`[apps.{0}] ports` is not set")]
    NoPort(String),
    /// No address could be advertised.
    #[error(transparent)]
    Address(#[from] address::NoAddress),
    /// The working directory is unknown.
    #[error("cannot resolve `[core] data_dir`: {0}")]
    DataDir(std::io::Error),
    /// `[zookeeper] auth_digest` or `auth_digest_file` is unusable.
    #[error("`[zookeeper]` credentials: {0}")]
    ZkDigest(String),
    /// `[security] admin_allowed_hosts` cannot be read.
    #[error("`[security] admin_allowed_hosts`: {0}")]
    AdminAllowList(String),
    /// `[meta_server] meta_function_level_on_start` names no level.
    #[error(
        "`[meta_server] meta_function_level_on_start = {0}`: expected freezed, steady or lively"
    )]
    MetaLevel(String),
    /// A bootstrap table asks for more than a create request may.
    #[error("`[{section}]`: {reason}")]
    BootstrapApp {
        /// The section.
        section: String,
        /// Why.
        reason: String,
    },
}

/// One role this process runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// `meta`, `replica` or `collector`.
    pub name: String,
    /// Its RPC port.
    pub port: u16,
}

/// What a replica server needs from the config, as values: the role builds its partitions'
/// options (metrics, the drivers' pool, the block cache) from them (`start/roles.rs`).
#[derive(Clone, Debug)]
pub struct ReplicaSettings {
    /// RocksDB's options (`[pegasus.server] rocksdb_*`).
    pub rocks: RocksSettings,
    /// `[replication] log_private_file_size_mb`, in bytes.
    pub plog_file_size: u64,
    /// `[replication] log_shared_file_size_mb`, in bytes.
    pub slog_file_size: u64,
    /// `[replication] shared_log`.
    pub shared_log: bool,
    /// `[replication] plog_force_flush`.
    pub plog_force_flush: bool,
    /// Read bounds (`rocksdb_multi_get_max_iteration_*`).
    pub limits: ReadLimits,
    /// The replica server's advertised `ip:port`, echoed in answers.
    pub server: String,
    /// `[replication] mutation_2pc_min_replica_count`.
    pub min_write_members: usize,
    /// `[nfs] max_copy_rate_megabytes_per_disk`, in bytes a second.
    pub learn_rate: u64,
    /// `[threadpool.THREAD_POOL_REPLICATION] worker_count`: threads running the partitions'
    /// drivers (8 by default: enough that a few partitions' fsyncs overlap, whatever the cores).
    pub driver_threads: usize,
}

/// Cold backup and restore: `[meta_server] cold_backup_disabled`, `[replication]
/// cold_backup_*`, `max_concurrent_uploading_file_count`, and the `[block_service.*]` sections.
#[derive(Clone, Debug)]
pub struct BackupSettings {
    /// `[meta_server] cold_backup_disabled`.
    pub disabled: bool,
    /// `[replication] cold_backup_root`, or the cluster's name.
    pub root: String,
    /// `[replication] max_concurrent_uploading_file_count` (at least 1).
    pub upload_files: usize,
    /// `[replication] cold_backup_rate_mb_per_sec`, in bytes a second (0: no bound).
    pub rate: u64,
    /// `[block_service.<name>]`: `type` and `args` (a `local_service` root made absolute).
    pub providers: Vec<crate::backup::block::ProviderConfig>,
}

/// What the roles need from the config.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `[core] data_dir`, absolute.
    pub data_dir: PathBuf,
    /// `[core] log_dir`, or `<data_dir>/log`.
    pub log_dir: PathBuf,
    /// The roles to run, from `-app_list`.
    pub roles: Vec<Role>,
    /// Every key as taken at start (`/config`, `/configs`).
    pub running: std::sync::Arc<crate::running::RunningConfig>,
    /// The address this node advertises.
    pub advertised: AdvertisedAddress,
    /// `[replication] cluster_name`.
    pub cluster_name: String,
    /// `[meta_server] server_list`.
    pub meta_servers: Vec<SocketAddr>,
    /// `[replication] data_dirs` as `(tag, path)`.
    pub data_dirs: Vec<(String, PathBuf)>,
    /// `[replication] data_dirs_black_list_file`.
    pub data_dirs_black_list_file: Option<PathBuf>,
    /// The shared log's folder: `<[replication] slog_dir>/replica/slog`, or
    /// `<data_dir>/replica/slog`.
    pub slog_dir: PathBuf,
    /// Replica tuning.
    pub replica: ReplicaSettings,
    /// `[zookeeper] hosts_list`.
    pub zk_hosts: String,
    /// `[zookeeper] timeout_ms`.
    pub zk_timeout: Duration,
    /// `[zookeeper] auth_digest`, or the first line of `auth_digest_file`: `user:password`.
    pub zk_digest: Option<String>,
    /// `[security] admin_allowed_hosts`.
    pub admin_allowed: AllowList,
    /// `[meta_server] cluster_root`.
    pub cluster_root: String,
    /// `[meta_server] distributed_lock_service_parameters`.
    pub lock_root: String,
    /// `[meta_server.apps.*]`: tables created at first bootstrap (name, partitions, replicas).
    pub bootstrap_apps: Vec<BootstrapApp>,
    /// `[replication] fd_beacon_interval_seconds`.
    pub fd_beacon_interval: Duration,
    /// `[replication] fd_lease_seconds`.
    pub fd_lease: Duration,
    /// `[replication] fd_grace_seconds`.
    pub fd_grace: Duration,
    /// `[replication] fd_check_interval_seconds`.
    pub fd_check_interval: Duration,
    /// `[meta_server] min_live_node_count_for_unfreeze`.
    pub min_live_nodes: usize,
    /// What a create request may ask for.
    pub create_limits: CreateLimits,
    /// `[meta_server] replica_assign_delay_ms_for_dropouts`.
    pub dropout_delay: Duration,
    /// `[meta_server] hold_seconds_for_dropped_app`: how long a dropped table can be recalled.
    pub hold_dropped: Duration,
    /// `[meta_server] meta_function_level_on_start` (Pegasus's `meta_function_level`).
    pub meta_level: i32,
    /// `[meta_server] balance_op_count_per_round`.
    pub balance_moves: usize,
    /// Bounds on connections and requests, every role's port (`[network]`).
    pub net_limits: Limits,
    /// `[pegasus.collector] available_detect_app`.
    pub detect_app: String,
    /// `[pegasus.collector] available_detect_interval_seconds`.
    pub detect_interval: Duration,
    /// `[pegasus.collector] available_detect_timeout` (milliseconds).
    pub detect_timeout: Duration,
    /// Cold backup and restore.
    pub backup: BackupSettings,
}

/// The ZooKeeper credentials: `[zookeeper] auth_digest = user:password`, or the first line of
/// the file `auth_digest_file` names (which should be readable by its owner only: configcheck's
/// PC100; the server says so in its log, and goes on).
fn zk_digest(config: &Config) -> Result<Option<String>, ConfigError> {
    let inline = config.text(&keys::ZK_AUTH_DIGEST);
    let file = config.text(&keys::ZK_AUTH_DIGEST_FILE);
    let digest = match (inline.is_empty(), file.is_empty()) {
        (true, true) => return Ok(None),
        (false, false) => {
            return Err(ConfigError::ZkDigest(
                "set `auth_digest` or `auth_digest_file`, not both".into(),
            ));
        }
        (false, true) => inline.to_owned(),
        (true, false) => {
            use std::os::unix::fs::PermissionsExt;
            let text = std::fs::read_to_string(file)
                .map_err(|e| ConfigError::ZkDigest(format!("cannot read `{file}`: {e}")))?;
            if let Ok(m) = std::fs::metadata(file)
                && m.permissions().mode() & 0o007 != 0
            {
                tracing::warn!(
                    file,
                    "ZooKeeper credentials may be read by every user: chmod 600"
                );
            }
            text.lines().next().unwrap_or("").trim().to_owned()
        }
    };
    match digest.split_once(':') {
        Some((user, _)) if !user.is_empty() => Ok(Some(digest)),
        _ => Err(ConfigError::ZkDigest(
            "expected `user:password` for ZooKeeper's digest scheme".into(),
        )),
    }
}

impl RocksSettings {
    /// `[pegasus.server] rocksdb_*`, with Pegasus's defaults.
    fn from_config(config: &Config) -> Result<Self, ValueError> {
        let compression = match config.text(&keys::ROCKSDB_COMPRESSION_TYPE) {
            "none" => DBCompressionType::None,
            "snappy" => DBCompressionType::Snappy,
            "zstd" => DBCompressionType::Zstd,
            _ => DBCompressionType::Lz4,
        };
        Ok(RocksSettings {
            write_buffer_size: config.get(&keys::ROCKSDB_WRITE_BUFFER_SIZE)?,
            max_write_buffer_number: config.get(&keys::ROCKSDB_MAX_WRITE_BUFFER_NUMBER)?,
            compression,
            max_open_files: config.get(&keys::ROCKSDB_MAX_OPEN_FILES)?,
            max_background_jobs: config
                .get::<i32>(&keys::ROCKSDB_MAX_BACKGROUND_COMPACTIONS)?
                .clamp(2, 16),
            block_cache_bytes: config.get(&keys::ROCKSDB_BLOCK_CACHE_CAPACITY)?,
        })
    }
}

impl ServerConfig {
    /// How the metas (and `clean`) reach ZooKeeper.
    pub fn zk_config(&self) -> crate::meta::zk::ZkConfig {
        crate::meta::zk::ZkConfig {
            hosts: self.zk_hosts.clone(),
            session_timeout: self.zk_timeout,
            digest: self.zk_digest.clone(),
        }
    }

    /// Reads the server's settings for `roles` from `config`; `facts` and `resolve` decide the
    /// advertised address (the live host's in production).
    pub fn from_config(
        config: &Config,
        roles: &[String],
        facts: &HostFacts,
        resolve: &dyn Fn(&str) -> Option<Ipv4Addr>,
    ) -> Result<Self, ConfigError> {
        let cwd = std::env::current_dir().map_err(ConfigError::DataDir)?;
        let absolute = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_owned()
            } else {
                cwd.join(p)
            }
        };
        let data_dir = absolute(config.text(&keys::DATA_DIR));
        let log_dir = match config.text(&keys::LOG_DIR) {
            "" => data_dir.join("log"),
            dir => absolute(dir),
        };
        let mut resolved_roles = Vec::new();
        for name in roles {
            let section = format!("apps.{name}");
            if config.section(&section).is_none() {
                return Err(ConfigError::NoRole(name.clone()));
            }
            let ports = config.text_in(&section, &keys::ROLE_PORTS);
            let first = ports
                .split([',', ' '])
                .find(|p| !p.is_empty())
                .ok_or_else(|| ConfigError::NoPort(name.clone()))?;
            let port = match first.parse::<u16>() {
                Ok(port) => port,
                Err(_) => {
                    let at = config
                        .value(&section, keys::ROLE_PORTS.name)
                        .expect("`ports` has a first item: it is set");
                    return Err(ValueError {
                        section: section.clone(),
                        key: keys::ROLE_PORTS.name.to_owned(),
                        value: at.value.clone(),
                        span: at.span,
                        expected: "a port number",
                    }
                    .into());
                }
            };
            resolved_roles.push(Role {
                name: name.clone(),
                port,
            });
        }
        let advertised = address::choose(&NetworkSettings::from_config(config), facts, resolve)?;
        let meta_servers = address::parse_list(config.text(&keys::META_SERVER_LIST), 0)
            .into_iter()
            .filter_map(|item| item.parsed.ok())
            .filter_map(|hp| match hp.host {
                address::Host::Ip(ip) => Some(SocketAddr::V4(SocketAddrV4::new(ip, hp.port))),
                address::Host::Name(name) => {
                    resolve(&name).map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, hp.port)))
                }
            })
            .collect();
        let data_dirs = config
            .data_dirs(keys::DATA_DIRS.section, keys::DATA_DIRS.name)?
            .into_iter()
            .map(|d| (d.tag, absolute(&d.path)))
            .collect();
        let blacklist = config.text(&keys::DATA_DIRS_BLACK_LIST_FILE);
        let server = format!(
            "{}:{}",
            advertised.ip,
            resolved_roles
                .iter()
                .find(|r| r.name == "replica")
                .map_or(0, |r| r.port)
        );
        let limits = ReadLimits {
            max_iteration_count: config.get(&keys::MULTI_GET_MAX_ITERATION_COUNT)?,
            max_iteration_size: config.get(&keys::MULTI_GET_MAX_ITERATION_SIZE)?,
            ..ReadLimits::default()
        };
        let cluster_name = config.text(&keys::CLUSTER_NAME).to_owned();
        let replica = ReplicaSettings {
            rocks: RocksSettings::from_config(config)?,
            plog_file_size: config.get::<u64>(&keys::PLOG_FILE_SIZE_MB)? << 20,
            slog_file_size: config.get::<u64>(&keys::SLOG_FILE_SIZE_MB)? << 20,
            shared_log: config.flag(&keys::SHARED_LOG)?,
            plog_force_flush: config.flag(&keys::PLOG_FORCE_FLUSH)?,
            limits,
            server,
            min_write_members: config.get(&keys::MIN_WRITE_MEMBERS)?,
            learn_rate: config.get::<u64>(&keys::LEARN_RATE_MB)? << 20,
            driver_threads: config.get(&keys::REPLICATION_THREADS)?,
        };
        let cluster_root = match config.text(&keys::CLUSTER_ROOT) {
            "" => format!("/pegasus/{cluster_name}"),
            root => root.to_owned(),
        };
        let lock_root = match config.text(&keys::LOCK_PATH) {
            "" => format!("{cluster_root}/lock"),
            lock => lock.to_owned(),
        };
        let create_limits = CreateLimits {
            max_partition_count: config.get(&keys::MAX_PARTITION_COUNT)?,
            min_replica_count: config.get(&keys::MIN_REPLICA_COUNT)?,
            max_replica_count: config.get(&keys::MAX_REPLICA_COUNT)?,
        };
        let net_limits = Limits {
            max_connections: config.get(&keys::MAX_CONNECTIONS)?,
            max_connections_per_ip: config.get(&keys::CONN_THRESHOLD_PER_IP)?,
            max_in_flight: config.get(&keys::MAX_IN_FLIGHT)?,
            max_body: config.get(&keys::MAX_FRAME_BYTES)?,
            idle_timeout: Duration::from_secs(config.get(&keys::CONN_IDLE_TIMEOUT)?),
            read_timeout: Duration::from_secs(config.get(&keys::REQUEST_READ_TIMEOUT)?),
            write_timeout: Duration::from_secs(config.get(&keys::RESPONSE_WRITE_TIMEOUT)?),
            listen_backlog: config.get(&keys::LISTEN_BACKLOG)?,
        };
        let mut bootstrap_apps = Vec::new();
        for section in config
            .sections()
            .iter()
            .map(|s| s.name.value.as_str())
            .filter(|n| n.starts_with("meta_server.apps."))
        {
            let name = match config.text_in(section, &keys::APP_NAME) {
                "" => &section["meta_server.apps.".len()..],
                name => name,
            }
            .to_owned();
            let partitions = config.get_in::<i32>(section, &keys::APP_PARTITION_COUNT)?;
            let replicas = config.get_in::<i32>(section, &keys::APP_MAX_REPLICA_COUNT)?;
            let bad = |reason| ConfigError::BootstrapApp {
                section: section.to_owned(),
                reason,
            };
            create_limits
                .check(&name, partitions, replicas)
                .map_err(bad)?;
            let envs = configcheck::envs::parse_list(config.text_in(section, &keys::APP_ENVS))
                .map_err(|e| bad(format!("envs: {e}")))?
                .into_iter()
                .collect();
            bootstrap_apps.push(BootstrapApp {
                name,
                partitions,
                replicas,
                envs,
            });
        }
        let level = config.text(&keys::META_LEVEL_ON_START);
        let meta_level = pegasus_protocol::types::meta_function_level::parse(level)
            .filter(|l| *l >= pegasus_protocol::types::meta_function_level::FREEZED)
            .ok_or_else(|| ConfigError::MetaLevel(level.to_owned()))?;
        let seconds = |key: &keys::Key| config.get::<u64>(key).map(Duration::from_secs);
        let admin_allowed = AllowList::parse(config.text(&keys::ADMIN_ALLOWED_HOSTS))
            .map_err(ConfigError::AdminAllowList)?;
        let providers = config
            .sections()
            .iter()
            .map(|s| s.name.value.as_str())
            .filter_map(|section| {
                let name = section.strip_prefix("block_service.")?;
                let kind = config
                    .text_in(section, &keys::BLOCK_SERVICE_TYPE)
                    .to_owned();
                let args = config.text_in(section, &keys::BLOCK_SERVICE_ARGS).trim();
                let args = if kind == "local_service" && !args.is_empty() {
                    absolute(args).display().to_string()
                } else {
                    args.to_owned()
                };
                Some(crate::backup::block::ProviderConfig {
                    name: name.to_owned(),
                    kind,
                    args,
                })
            })
            .collect();
        let backup = BackupSettings {
            disabled: config.flag(&keys::COLD_BACKUP_DISABLED)?,
            root: match config.text(&keys::COLD_BACKUP_ROOT).trim() {
                "" => cluster_name.clone(),
                root => root.to_owned(),
            },
            upload_files: config.get::<usize>(&keys::MAX_UPLOADING_FILES)?.max(1),
            rate: config.get::<u64>(&keys::COLD_BACKUP_RATE_MB)? << 20,
            providers,
        };
        let slog_dir = match config.text(&keys::SLOG_DIR) {
            "" => data_dir.join("replica").join("slog"),
            dir => absolute(dir).join("replica").join("slog"),
        };
        Ok(ServerConfig {
            zk_digest: zk_digest(config)?,
            admin_allowed,
            zk_hosts: config.text(&keys::ZK_HOSTS).to_owned(),
            zk_timeout: Duration::from_millis(config.get::<u64>(&keys::ZK_TIMEOUT_MS)?),
            cluster_root,
            lock_root,
            bootstrap_apps,
            fd_beacon_interval: seconds(&keys::FD_BEACON_INTERVAL)?,
            fd_lease: seconds(&keys::FD_LEASE)?,
            fd_grace: seconds(&keys::FD_GRACE)?,
            fd_check_interval: seconds(&keys::FD_CHECK_INTERVAL)?,
            min_live_nodes: config.get(&keys::MIN_LIVE_NODES)?,
            create_limits,
            dropout_delay: Duration::from_millis(config.get(&keys::DROPOUT_DELAY_MS)?),
            hold_dropped: Duration::from_secs(config.get(&keys::HOLD_DROPPED_SECONDS)?),
            meta_level,
            balance_moves: config.get(&keys::BALANCE_MOVES)?,
            net_limits,
            detect_app: config.text(&keys::DETECT_APP).to_owned(),
            detect_interval: Duration::from_secs(config.get(&keys::DETECT_INTERVAL)?),
            detect_timeout: Duration::from_millis(config.get(&keys::DETECT_TIMEOUT_MS)?),
            data_dir,
            log_dir,
            roles: resolved_roles,
            running: std::sync::Arc::new(crate::running::RunningConfig::of(config)),
            advertised,
            cluster_name,
            meta_servers,
            data_dirs,
            data_dirs_black_list_file: (!blacklist.is_empty()).then(|| absolute(blacklist)),
            slog_dir,
            replica,
            backup,
        })
    }

    /// The advertised `ip:port` of a role.
    pub fn advertised(&self, role: &Role) -> SocketAddrV4 {
        SocketAddrV4::new(self.advertised.ip, role.port)
    }
}

#[cfg(test)]
mod tests {
    /// Every value the server takes from `config.ini` comes through `configcheck::keys` (its
    /// type checked by configcheck, its default and doc in the key list): a read by section
    /// and key name around the table fails this test, with where.
    #[test]
    fn the_server_reads_config_keys_only_through_the_key_table() {
        // Spelled apart so that this test's own text is not a match; with a turbofish too
        // (`parse_or::<u64>(`).
        let reads = [".parse", ".bool", ".str"]
            .into_iter()
            .flat_map(|r| [format!("{r}_or("), format!("{r}_or::<")])
            .collect::<Vec<_>>();
        let mut around = Vec::new();
        let mut folders = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (n, line) in text.lines().enumerate() {
                        if reads.iter().any(|r| line.contains(r.as_str())) {
                            around.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                        }
                    }
                }
            }
        }
        assert!(
            around.is_empty(),
            "config keys read around configcheck::keys (add the key to the table and read it \
             with get/flag/text):\n{}",
            around.join("\n")
        );
    }
}
