//! The roles' lifetime: bind every port, connect a meta to ZooKeeper, create the log and data
//! dirs, start each role's tasks, and stop them all at SIGINT or SIGTERM (or when a meta loses
//! its ZooKeeper session).

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use tracing::{info, warn};

use super::StartError;
use super::logging::init_logging;
use crate::collector::{Collector, CollectorOptions};
use crate::config::ServerConfig;
use crate::meta::{MetaOptions, MetaServer};
use crate::net;
use crate::replica::ReplicaStub;
use crate::replica::beacon::{self, BeaconOptions};
use crate::replica::dirs::DataDirs;
use crate::replica::metrics::ReplicaMetrics;
use crate::replica::partition::{PartitionOptions, TICK};
use crate::replica::pool::LazyPool;
use crate::replica::slog::{self, SlogOptions};
use crate::replica::storage::RocksOptions;

/// Binds, connects, then starts every role; returns at SIGINT or SIGTERM (or when a meta loses
/// its ZooKeeper session).
pub(super) async fn serve_roles(server: ServerConfig) -> Result<(), StartError> {
    // Each replica holds about 7 files open (its RocksDB's log, manifest, WAL, lock, tables,
    // folder; its plog): the soft bound on open files goes up to the hard one, as servers do.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(open_files = n, "bound on open files"),
        Err(e) => warn!("cannot raise the bound on open files: {e}"),
    }
    // Bind first: a port in use ends start-up before anything is written.
    let mut listeners = Vec::new();
    for role in &server.roles {
        let addr = SocketAddr::from(([0, 0, 0, 0], role.port));
        let listener = net::bind(addr, server.net_limits.listen_backlog).map_err(|source| {
            StartError::Bind {
                role: role.name.clone(),
                addr,
                source,
            }
        })?;
        listeners.push((role.clone(), listener));
    }
    // A meta needs ZooKeeper before it is anything: unreachable ZooKeeper ends start-up here.
    let mut meta = None;
    if let Some(role) = server.roles.iter().find(|r| r.name == "meta") {
        let options = MetaOptions {
            me: server.advertised(role),
            zk: server.zk_config(),
            admin_allowed: server.admin_allowed.clone(),
            cluster_root: server.cluster_root.clone(),
            lock_root: server.lock_root.clone(),
            cluster_name: server.cluster_name.clone(),
            meta_servers: server.meta_servers.clone(),
            bootstrap_apps: server.bootstrap_apps.clone(),
            fd_lease: server.fd_lease,
            fd_grace: server.fd_grace,
            fd_check: server.fd_check_interval,
            min_live_nodes: server.min_live_nodes,
            min_write_members: server.replica.min_write_members,
            create_limits: server.create_limits,
            dropout_delay: server.dropout_delay,
            hold_dropped: server.hold_dropped,
            initial_level: server.meta_level,
            balance_moves: server.balance_moves,
            backup: crate::meta::BackupConfig {
                disabled: server.backup.disabled,
                root: server.backup.root.clone(),
                providers: crate::backup::block::Providers::new(&server.backup.providers),
            },
        };
        meta = Some(MetaServer::start(options).await?);
    }
    std::fs::create_dir_all(&server.log_dir).map_err(|source| StartError::Dir {
        path: server.log_dir.display().to_string(),
        source,
    })?;
    let _log_guard = init_logging(&server);
    info!(version = env!("CARGO_PKG_VERSION"), advertised = %server.advertised.ip, origin = ?server.advertised.origin, "pegasus_server starting");
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopper = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let mut tasks = Vec::new();
    // Beacons stop first, on their own signal (see the shutdown below).
    let (beacon_stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut beacon_tasks = Vec::new();
    let mut stubs = Vec::new();
    let mut meta_run = None;
    for (role, listener) in listeners {
        match role.name.as_str() {
            "meta" => {
                let meta = meta.clone().expect("started above");
                info!(addr = %server.advertised(&role), "meta serving");
                tasks.push(tokio::spawn(net::serve(
                    listener,
                    Arc::clone(&meta),
                    server.net_limits,
                    Some(Arc::clone(&server.running)),
                    stopper(&stop_tx),
                )));
                meta_run = Some(tokio::spawn(meta.run(stopper(&stop_tx))));
            }
            "replica" => {
                let role_dir = server.data_dir.join("replica");
                let dirs = DataDirs::new(
                    &server.data_dirs,
                    "replica",
                    &role_dir,
                    server.data_dirs_black_list_file.as_deref(),
                )
                .map_err(crate::replica::ReplicaError::from)?;
                // Nothing is read from a data dir of a newer format than this build's.
                for d in dirs.dirs() {
                    crate::format::check_dir(d.reps.parent().unwrap_or(&d.reps))?;
                }
                let me = server.advertised(&role);
                let opened = {
                    let mut options = partition_options(&server, me);
                    options.faults.watch_env();
                    let metas = server.meta_servers.clone();
                    let runtime = tokio::runtime::Handle::current();
                    let slog_dir = server.slog_dir.clone();
                    let slog_file_size = server.replica.slog_file_size;
                    let shared_log = server.replica.shared_log;
                    tokio::task::spawn_blocking(move || {
                        if shared_log {
                            let slog = SlogOptions {
                                sync: options.plog_force_flush,
                                file_size: slog_file_size,
                                pool: Arc::clone(options.pool.get()),
                                faults: Arc::clone(&options.faults),
                                metrics: options.metrics.slog.clone(),
                            };
                            let (slog, damaged) = slog::open_or_set_aside(&slog_dir, slog)?;
                            options.slog = Some(slog);
                            options.slog_damaged = damaged;
                        }
                        ReplicaStub::open_managed(dirs, options, metas, runtime)
                    })
                    .await
                    .expect("open task")
                };
                let stub = opened?;
                stubs.push(Arc::clone(&stub));
                info!(addr = %me, "replica serving");
                let beacons = BeaconOptions {
                    interval: server.fd_beacon_interval,
                    lease: server.fd_lease,
                };
                beacon_tasks.push(tokio::spawn(beacon::run(
                    Arc::clone(&stub),
                    server.meta_servers.clone(),
                    beacons,
                    stopper(&beacon_stop_tx),
                )));
                tasks.push(tokio::spawn(net::serve(
                    listener,
                    stub,
                    server.net_limits,
                    Some(Arc::clone(&server.running)),
                    stopper(&stop_tx),
                )));
            }
            "collector" => {
                let collector = Collector::new(CollectorOptions {
                    me: server.advertised(&role),
                    metas: server.meta_servers.clone(),
                    cluster_name: server.cluster_name.clone(),
                    app: server.detect_app.clone(),
                    interval: server.detect_interval,
                    timeout: server.detect_timeout,
                });
                info!(addr = %server.advertised(&role), app = server.detect_app, "collector serving /metrics");
                tasks.push(tokio::spawn(Arc::clone(&collector).run(stopper(&stop_tx))));
                tasks.push(tokio::spawn(net::serve(
                    listener,
                    collector,
                    server.net_limits,
                    Some(Arc::clone(&server.running)),
                    stopper(&stop_tx),
                )));
            }
            _ => {}
        }
    }
    let outcome = match meta_run.as_mut() {
        Some(run) => tokio::select! {
            _ = shutdown_signal() => Ok(()),
            r = run => match r {
                Ok(Err(e)) => Err(StartError::Meta(e)),
                _ => Ok(()),
            },
        },
        None => {
            shutdown_signal().await;
            Ok(())
        }
    };
    info!("shutting down");
    // A replica server tells the meta it leaves before it stops serving, so its groups go on
    // without it at once instead of waiting, write by write, for a member that went quiet. Its
    // beacons stop first: none renews its lease or takes it back afterwards. (What it still
    // answers meanwhile is harmless: a secondary's acknowledgement of a prepare, or a
    // primary's reads under a lease its successor waits out.)
    let _ = beacon_stop_tx.send(());
    for t in beacon_tasks {
        let _ = t.await;
    }
    for role in server.roles.iter().filter(|r| r.name == "replica") {
        crate::replica::beacon::leave(server.advertised(role), &server.meta_servers).await;
    }
    let _ = stop_tx.send(());
    for t in tasks {
        let _ = t.await;
    }
    for stub in stubs {
        tokio::task::spawn_blocking(move || stub.close())
            .await
            .expect("close task");
    }
    info!("stopped");
    outcome
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

/// A replica server's partition options: the settings the config gave, and what runs built from
/// them (the node's metrics, the drivers' pool, the block cache).
fn partition_options(server: &ServerConfig, me: SocketAddrV4) -> PartitionOptions {
    let r = &server.replica;
    PartitionOptions {
        rocks: RocksOptions::new(&r.rocks),
        plog_file_size: r.plog_file_size,
        metrics: Arc::new(ReplicaMetrics::new(&server.cluster_name)),
        plog_force_flush: r.plog_force_flush,
        limits: r.limits,
        server: r.server.clone(),
        me,
        replication: pegasus_replication::Options {
            min_replicas: r.min_write_members,
            ..pegasus_replication::Options::default()
        },
        learn_rate: r.learn_rate,
        pool: LazyPool::new(r.driver_threads, TICK),
        backup: crate::replica::backup::BackupOptions {
            providers: crate::backup::block::Providers::new(&server.backup.providers),
            files_at_once: server.backup.upload_files,
            rate: server.backup.rate,
        },
        ..PartitionOptions::default()
    }
}
