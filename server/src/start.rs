//! Start-up: `pegasus_server <config.ini> [-cargs k=v;…] [-app_list role[;role]]`, as rDSN
//! parses it (any other argument is an error).
//!
//! The order matters: the config is parsed and checked with configcheck first (an error finding
//! ends start-up with its diagnostic, before anything is written), then every listener is bound
//! (a port in use ends start-up, still before anything is written), and only then are the log and
//! data dirs created and the roles started.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use configcheck::{CheckOptions, Config, FileReport, HostFacts, Severity, check};
use miette::Diagnostic;
use tokio::net::TcpListener;
use tracing::{error, info};

use crate::collector::{Collector, CollectorOptions};
use crate::config::{ConfigError, ServerConfig};
use crate::meta::{MetaOptions, MetaServer};
use crate::net::{self, Limits};
use crate::replica::ReplicaStub;
use crate::replica::beacon::{self, BeaconOptions};
use crate::replica::dirs::DataDirs;

/// Roles this binary knows.
pub const ROLES: &[&str] = &["meta", "replica", "collector"];

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    /// The config file.
    pub config: PathBuf,
    /// `-cargs` substitutions for `%key%` tokens.
    pub cargs: Vec<(String, String)>,
    /// `-app_list` roles (empty: every role whose `[apps.*]` has `run = true`).
    pub roles: Vec<String>,
}

/// Why the server did not start (or stopped).
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum StartError {
    /// Bad command line.
    #[error("{0}")]
    #[diagnostic(help(
        "usage: pegasus_server <config.ini> [-cargs k1=v1;k2=v2] [-app_list meta|replica|collector]"
    ))]
    Usage(String),
    /// The config file cannot be read.
    #[error(transparent)]
    Load(#[from] configcheck::LoadError),
    /// The config has error findings.
    #[error("{0}")]
    #[diagnostic(help(
        "fix the config (`configcheck check <config.ini>` shows the same findings)"
    ))]
    Findings(
        #[source]
        #[diagnostic_source]
        FileReport,
    ),
    /// The config has values the server cannot use.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Host facts could not be collected.
    #[error(transparent)]
    Facts(#[from] configcheck::facts::FactsError),
    /// A port is in use.
    #[error("cannot listen on {addr} for role `{role}`: {source}")]
    Bind {
        /// The role.
        role: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A directory cannot be created.
    #[error("cannot create `{path}`: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The replica role failed.
    #[error(transparent)]
    Replica(#[from] crate::replica::ReplicaError),
    /// The meta role failed (ZooKeeper unreachable, session expired).
    #[error(transparent)]
    Meta(#[from] crate::meta::MetaError),
    /// A role this build does not run yet.
    #[error("role `{0}` is not available in this build")]
    #[diagnostic(help(
        "this build runs the `replica` role; the meta and collector roles are being built"
    ))]
    Unavailable(String),
    /// The async runtime could not start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// Parses the rDSN-style command line (without the program name).
pub fn parse_args(args: &[String]) -> Result<Args, StartError> {
    let mut iter = args.iter();
    let config = iter
        .next()
        .filter(|c| !c.starts_with('-'))
        .ok_or_else(|| StartError::Usage("the first argument must be the config file".into()))?;
    let mut parsed = Args {
        config: PathBuf::from(config),
        cargs: Vec::new(),
        roles: Vec::new(),
    };
    while let Some(arg) = iter.next() {
        let value = || {
            iter.clone()
                .next()
                .cloned()
                .ok_or_else(|| StartError::Usage(format!("`{arg}` needs a value")))
        };
        match arg.as_str() {
            "-cargs" => {
                let v = value()?;
                iter.next();
                for pair in v.split([';', ',']).filter(|p| !p.is_empty()) {
                    let (k, val) = pair.split_once('=').ok_or_else(|| {
                        StartError::Usage(format!("`-cargs {pair}`: expected key=value"))
                    })?;
                    parsed.cargs.push((k.to_owned(), val.to_owned()));
                }
            }
            "-app_list" => {
                let v = value()?;
                iter.next();
                for role in v.split([';', ',']).filter(|r| !r.is_empty()) {
                    // `replica@2` names an instance; this server runs one instance per role.
                    let name = role.split('@').next().unwrap_or(role);
                    if !ROLES.contains(&name) {
                        return Err(StartError::Usage(format!(
                            "unknown role `{name}` in -app_list (roles: meta, replica, collector)"
                        )));
                    }
                    parsed.roles.push(name.to_owned());
                }
            }
            other => return Err(StartError::Usage(format!("unknown argument `{other}`"))),
        }
    }
    Ok(parsed)
}

/// Loads, substitutes `-cargs` and checks the config: an error finding stops here.
pub fn load_config(args: &Args, facts: &HostFacts) -> Result<Config, StartError> {
    let name = args.config.display().to_string();
    let mut config = Config::load(&args.config, &name)?;
    if !args.cargs.is_empty() {
        let mut text = config.source().text().to_owned();
        for (k, v) in &args.cargs {
            text = text.replace(&format!("%{k}%"), v);
        }
        config = Config::from_text(&name, text);
    }
    let findings = check(
        &config,
        &CheckOptions {
            host: Some(facts.clone()),
            ..CheckOptions::default()
        },
    );
    let errors: Vec<_> = findings
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        return Err(StartError::Findings(FileReport {
            source: Arc::clone(config.source()),
            findings: errors,
        }));
    }
    Ok(config)
}

fn dns(name: &str) -> Option<Ipv4Addr> {
    configcheck::facts::resolve_ipv4(name)
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: Args) -> Result<(), StartError> {
    let facts = HostFacts::collect()?;
    let config = load_config(&args, &facts)?;
    let roles = if args.roles.is_empty() {
        ROLES
            .iter()
            .filter(|r| {
                config.section(&format!("apps.{r}")).is_some()
                    && config
                        .bool_or(&format!("apps.{r}"), "run", true)
                        .unwrap_or(true)
            })
            .map(|r| r.to_string())
            .collect()
    } else {
        args.roles.clone()
    };
    let server = ServerConfig::from_config(&config, &roles, &facts, &dns)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    runtime.block_on(serve_roles(server))
}

/// Binds, connects, then starts every role; returns at SIGINT or SIGTERM (or when a meta loses
/// its ZooKeeper session).
async fn serve_roles(server: ServerConfig) -> Result<(), StartError> {
    // Bind first: a port in use ends start-up before anything is written.
    let mut listeners = Vec::new();
    for role in &server.roles {
        let addr = SocketAddr::from(([0, 0, 0, 0], role.port));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                role: role.name.clone(),
                addr,
                source,
            })?;
        listeners.push((role.clone(), listener));
    }
    // A meta needs ZooKeeper before it is anything: unreachable ZooKeeper ends start-up here.
    let mut meta = None;
    if let Some(role) = server.roles.iter().find(|r| r.name == "meta") {
        let options = MetaOptions {
            me: server.advertised(role),
            zk_hosts: server.zk_hosts.clone(),
            zk_timeout: server.zk_timeout,
            cluster_root: server.cluster_root.clone(),
            lock_root: server.lock_root.clone(),
            cluster_name: server.cluster_name.clone(),
            meta_servers: server.meta_servers.clone(),
            bootstrap_apps: server.bootstrap_apps.clone(),
            fd_grace: server.fd_grace,
            fd_check: server.fd_check_interval,
            min_live_nodes: server.min_live_nodes,
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
                    Limits::default(),
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
                let opened = {
                    let options = server.partition.clone();
                    tokio::task::spawn_blocking(move || ReplicaStub::open_managed(dirs, options))
                        .await
                        .expect("open task")
                };
                let stub = opened?;
                stubs.push(Arc::clone(&stub));
                let me = server.advertised(&role);
                info!(addr = %me, "replica serving");
                let beacons = BeaconOptions {
                    interval: server.fd_beacon_interval,
                    lease: server.fd_lease,
                };
                tasks.push(tokio::spawn(beacon::run(
                    Arc::clone(&stub),
                    me,
                    server.meta_servers.clone(),
                    beacons,
                    stopper(&stop_tx),
                )));
                tasks.push(tokio::spawn(net::serve(
                    listener,
                    stub,
                    Limits::default(),
                    stopper(&stop_tx),
                )));
            }
            "collector" => {
                let collector = Collector::new(CollectorOptions {
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
                    Limits::default(),
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

fn init_logging(server: &ServerConfig) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let prefix = server
        .roles
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join("_");
    let appender = tracing_appender::rolling::daily(&server.log_dir, format!("{prefix}.log"));
    let (file, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEGASUS_LOG")
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(file)
                .with_ansi(false),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        )
        .try_init();
    guard
}

/// `pegasus_server healthcheck ADDR`: 0 if the server at `ADDR` answers `GET /health`, else 1
/// (for container healthchecks: images have no curl).
pub fn healthcheck(addr: &str) -> ExitCode {
    use std::io::{Read, Write};
    let healthy = (|| -> std::io::Result<bool> {
        let addr: SocketAddr = addr.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
        })?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: pegasus\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(&head == b"HTTP/1.1 200")
    })();
    match healthy {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("unhealthy: {addr} answered, but not 200");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}

/// `pegasus_server clean config.ini [--yes]`: lists what a cluster reset removes (the guide's
/// FAQ: `[core] data_dir`, `slog_dir`, every data dir, the ZooKeeper `cluster_root`) and removes
/// it only with `--yes`.
pub fn clean(args: &[String]) -> Result<(), StartError> {
    let yes = args.iter().any(|a| a == "--yes");
    let path = args.iter().find(|a| !a.starts_with("--")).ok_or_else(|| {
        StartError::Usage("usage: pegasus_server clean <config.ini> [--yes]".into())
    })?;
    let config = Config::load(std::path::Path::new(path), path)?;
    let facts = HostFacts::collect()?;
    let server = ServerConfig::from_config(&config, &[], &facts, &dns)?;
    let mut dirs = vec![server.data_dir.clone()];
    let slog = config.str_or("replication", "slog_dir", "");
    if !slog.is_empty() {
        dirs.push(PathBuf::from(slog));
    }
    dirs.extend(server.data_dirs.iter().map(|(_, p)| p.clone()));
    for d in &dirs {
        println!(
            "{} directory {}",
            if yes { "removing" } else { "would remove" },
            d.display()
        );
    }
    println!(
        "{} ZooKeeper {}{}",
        if yes { "removing" } else { "would remove" },
        server.zk_hosts,
        server.cluster_root
    );
    if !yes {
        println!("nothing removed: run again with --yes");
        return Ok(());
    }
    for d in &dirs {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|source| StartError::Dir {
                path: d.display().to_string(),
                source,
            })?;
        }
    }
    if !server.zk_hosts.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        runtime.block_on(async {
            let zk = crate::meta::zk::Zk::connect_only(&server.zk_hosts, server.zk_timeout)
                .await
                .map_err(crate::meta::MetaError::from)?;
            let n = zk
                .delete_tree(&server.cluster_root)
                .await
                .map_err(crate::meta::MetaError::from)?;
            println!("removed {n} ZooKeeper nodes");
            Ok::<(), StartError>(())
        })?;
    }
    Ok(())
}

/// The binary: parse, run, report. Exit 0 after a clean stop, 1 on any start-up error.
pub fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "pegasus_server {} panicked: {info}\nThis is a bug: please report it with the log above.",
            env!("CARGO_PKG_VERSION")
        );
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("pegasus_server {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("healthcheck") => match args.get(1) {
            Some(addr) => return healthcheck(addr),
            None => Err(StartError::Usage(
                "usage: pegasus_server healthcheck <ip:port>".into(),
            )),
        },
        Some("clean") => clean(&args[1..]),
        _ => parse_args(&args).and_then(run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            let report = miette::Report::new(e);
            eprintln!("{report:?}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Args, StartError> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_rdsn_command_line() {
        let a = args(&[
            "config.ini",
            "-app_list",
            "meta;replica@1",
            "-cargs",
            "port=1;dir=/x",
        ])
        .unwrap();
        assert_eq!(a.roles, ["meta", "replica"]);
        assert_eq!(
            a.cargs,
            [
                ("port".to_owned(), "1".to_owned()),
                ("dir".to_owned(), "/x".to_owned())
            ]
        );
        assert_eq!(
            args(&["config.ini", "-app_list", "meta,replica"])
                .unwrap()
                .roles,
            ["meta", "replica"]
        );
        assert!(matches!(
            args(&["config.ini", "--bogus"]),
            Err(StartError::Usage(_))
        ));
        assert!(matches!(
            args(&["config.ini", "-app_list", "proxy"]),
            Err(StartError::Usage(_))
        ));
        assert!(matches!(
            args(&["-app_list", "meta"]),
            Err(StartError::Usage(_))
        ));
        assert!(matches!(
            args(&["config.ini", "-app_list"]),
            Err(StartError::Usage(_))
        ));
    }
}
