//! The server's typed view of `config.ini`, read through the configcheck library (one parser,
//! one address rule for the checker and the server).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use configcheck::address::{self, AdvertisedAddress, AllowList, NetworkSettings};
use configcheck::{Config, HostFacts, ValueError};

use crate::meta::{BootstrapApp, CreateLimits};
use crate::net::Limits;
use crate::replica::partition::PartitionOptions;
use crate::replica::read::ReadLimits;
use crate::replica::storage::RocksOptions;

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

/// What the roles need from the config.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `[core] data_dir`, absolute.
    pub data_dir: PathBuf,
    /// `[core] log_dir`, or `<data_dir>/log`.
    pub log_dir: PathBuf,
    /// The roles to run, from `-app_list`.
    pub roles: Vec<Role>,
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
    /// Replica tuning.
    pub partition: PartitionOptions,
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
}

/// Threads running the partitions' drivers when `[threadpool.THREAD_POOL_REPLICATION]
/// worker_count` is not set: enough that a few partitions' fsyncs overlap, whatever the cores.
const DRIVER_THREADS: usize = 8;

/// The ZooKeeper credentials: `[zookeeper] auth_digest = user:password`, or the first line of
/// the file `auth_digest_file` names (which should be readable by its owner only: configcheck's
/// PC100; the server says so in its log, and goes on).
fn zk_digest(config: &Config) -> Result<Option<String>, ConfigError> {
    let inline = config.str_or("zookeeper", "auth_digest", "");
    let file = config.str_or("zookeeper", "auth_digest_file", "");
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
        let data_dir = absolute(config.str_or("core", "data_dir", "./data"));
        let log_dir = match config.str_or("core", "log_dir", "") {
            "" => data_dir.join("log"),
            dir => absolute(dir),
        };
        let mut resolved_roles = Vec::new();
        for name in roles {
            let section = format!("apps.{name}");
            if config.section(&section).is_none() {
                return Err(ConfigError::NoRole(name.clone()));
            }
            let ports = config.str_or(&section, "ports", "");
            let port = ports
                .split([',', ' '])
                .find(|p| !p.is_empty())
                .ok_or_else(|| ConfigError::NoPort(name.clone()))?;
            let port = config
                .parse_or::<u16>(&section, "ports", 0)
                .or_else(|e| port.parse::<u16>().map_err(|_| e))?;
            resolved_roles.push(Role {
                name: name.clone(),
                port,
            });
        }
        let advertised = address::choose(&NetworkSettings::from_config(config), facts, resolve)?;
        let meta_servers = address::parse_list(config.str_or("meta_server", "server_list", ""), 0)
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
            .data_dirs("replication", "data_dirs")?
            .into_iter()
            .map(|d| (d.tag, absolute(&d.path)))
            .collect();
        let blacklist = config.str_or("replication", "data_dirs_black_list_file", "");
        let server = format!(
            "{}:{}",
            advertised.ip,
            resolved_roles
                .iter()
                .find(|r| r.name == "replica")
                .map_or(0, |r| r.port)
        );
        let limits = ReadLimits {
            max_iteration_count: config.parse_or(
                "pegasus.server",
                "rocksdb_multi_get_max_iteration_count",
                3000,
            )?,
            max_iteration_size: config.parse_or(
                "pegasus.server",
                "rocksdb_multi_get_max_iteration_size",
                30 << 20,
            )?,
            ..ReadLimits::default()
        };
        let cluster_name = config.str_or("replication", "cluster_name", "").to_owned();
        let partition = PartitionOptions {
            metrics: std::sync::Arc::new(crate::replica::metrics::ReplicaMetrics::new(
                &cluster_name,
            )),
            rocks: RocksOptions::from_config(config)?,
            plog_file_size: config.parse_or::<u64>(
                "replication",
                "log_private_file_size_mb",
                32,
            )? << 20,
            plog_force_flush: config.bool_or("replication", "plog_force_flush", true)?,
            limits,
            server,
            replication: pegasus_replication::Options {
                min_replicas: config.parse_or(
                    "replication",
                    "mutation_2pc_min_replica_count",
                    2,
                )?,
                ..pegasus_replication::Options::default()
            },
            learn_rate: config.parse_or::<u64>("nfs", "max_copy_rate_megabytes_per_disk", 500)?
                << 20,
            pool: crate::replica::pool::LazyPool::new(
                config.parse_or(
                    "threadpool.THREAD_POOL_REPLICATION",
                    "worker_count",
                    DRIVER_THREADS,
                )?,
                crate::replica::partition::TICK,
            ),
            ..PartitionOptions::default()
        };
        let cluster_root = match config.str_or("meta_server", "cluster_root", "") {
            "" => format!("/pegasus/{cluster_name}"),
            root => root.to_owned(),
        };
        let lock_root =
            match config.str_or("meta_server", "distributed_lock_service_parameters", "") {
                "" => format!("{cluster_root}/lock"),
                lock => lock.to_owned(),
            };
        let create_limits = CreateLimits {
            max_partition_count: config.parse_or(
                "meta_server",
                "max_allowed_partition_count",
                CreateLimits::default().max_partition_count,
            )?,
            min_replica_count: config.parse_or(
                "meta_server",
                "min_allowed_replica_count",
                CreateLimits::default().min_replica_count,
            )?,
            max_replica_count: config.parse_or(
                "meta_server",
                "max_allowed_replica_count",
                CreateLimits::default().max_replica_count,
            )?,
        };
        let net_defaults = Limits::default();
        let net_limits = Limits {
            max_connections: config.parse_or(
                "network",
                "max_connections",
                net_defaults.max_connections,
            )?,
            max_connections_per_ip: config.parse_or(
                "network",
                "conn_threshold_per_ip",
                net_defaults.max_connections_per_ip,
            )?,
            max_in_flight: config.parse_or(
                "network",
                "max_in_flight_per_connection",
                net_defaults.max_in_flight,
            )?,
            max_body: config.parse_or("network", "max_frame_bytes", net_defaults.max_body)?,
            idle_timeout: Duration::from_secs(config.parse_or(
                "network",
                "conn_idle_timeout_seconds",
                net_defaults.idle_timeout.as_secs(),
            )?),
            read_timeout: Duration::from_secs(config.parse_or(
                "network",
                "request_read_timeout_seconds",
                net_defaults.read_timeout.as_secs(),
            )?),
            write_timeout: Duration::from_secs(config.parse_or(
                "network",
                "response_write_timeout_seconds",
                net_defaults.write_timeout.as_secs(),
            )?),
            listen_backlog: config.parse_or(
                "network",
                "listen_backlog",
                net_defaults.listen_backlog,
            )?,
        };
        let mut bootstrap_apps = Vec::new();
        for section in config
            .sections()
            .iter()
            .map(|s| s.name.value.as_str())
            .filter(|n| n.starts_with("meta_server.apps."))
        {
            let name = config
                .str_or(section, "app_name", &section["meta_server.apps.".len()..])
                .to_owned();
            let partitions = config.parse_or::<i32>(section, "partition_count", 4)?;
            let replicas = config.parse_or::<i32>(section, "max_replica_count", 3)?;
            let bad = |reason| ConfigError::BootstrapApp {
                section: section.to_owned(),
                reason,
            };
            create_limits
                .check(&name, partitions, replicas)
                .map_err(bad)?;
            let envs = configcheck::envs::parse_list(config.str_or(section, "envs", ""))
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
        let level = config.str_or("meta_server", "meta_function_level_on_start", "steady");
        let meta_level = pegasus_protocol::types::meta_function_level::parse(level)
            .filter(|l| *l >= pegasus_protocol::types::meta_function_level::FREEZED)
            .ok_or_else(|| ConfigError::MetaLevel(level.to_owned()))?;
        let seconds = |key: &str, default: u64| {
            config
                .parse_or::<u64>("replication", key, default)
                .map(Duration::from_secs)
        };
        let admin_allowed = AllowList::parse(config.str_or("security", "admin_allowed_hosts", ""))
            .map_err(ConfigError::AdminAllowList)?;
        Ok(ServerConfig {
            zk_digest: zk_digest(config)?,
            admin_allowed,
            zk_hosts: config.str_or("zookeeper", "hosts_list", "").to_owned(),
            zk_timeout: Duration::from_millis(config.parse_or::<u64>(
                "zookeeper",
                "timeout_ms",
                30_000,
            )?),
            cluster_root,
            lock_root,
            bootstrap_apps,
            fd_beacon_interval: seconds("fd_beacon_interval_seconds", 3)?,
            fd_lease: seconds("fd_lease_seconds", 20)?,
            fd_grace: seconds("fd_grace_seconds", 22)?,
            fd_check_interval: seconds("fd_check_interval_seconds", 2)?,
            min_live_nodes: config.parse_or(
                "meta_server",
                "min_live_node_count_for_unfreeze",
                3,
            )?,
            create_limits,
            dropout_delay: Duration::from_millis(config.parse_or(
                "meta_server",
                "replica_assign_delay_ms_for_dropouts",
                300_000,
            )?),
            hold_dropped: Duration::from_secs(config.parse_or(
                "meta_server",
                "hold_seconds_for_dropped_app",
                604_800,
            )?),
            meta_level,
            balance_moves: config.parse_or("meta_server", "balance_op_count_per_round", 10)?,
            net_limits,
            detect_app: config
                .str_or("pegasus.collector", "available_detect_app", "stat")
                .to_owned(),
            detect_interval: Duration::from_secs(config.parse_or(
                "pegasus.collector",
                "available_detect_interval_seconds",
                3,
            )?),
            detect_timeout: Duration::from_millis(config.parse_or(
                "pegasus.collector",
                "available_detect_timeout",
                5000,
            )?),
            data_dir,
            log_dir,
            roles: resolved_roles,
            advertised,
            cluster_name,
            meta_servers,
            data_dirs,
            data_dirs_black_list_file: (!blacklist.is_empty()).then(|| absolute(blacklist)),
            partition,
        })
    }

    /// The advertised `ip:port` of a role.
    pub fn advertised(&self, role: &Role) -> SocketAddrV4 {
        SocketAddrV4::new(self.advertised.ip, role.port)
    }
}
