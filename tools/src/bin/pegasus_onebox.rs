//! `pegasus_onebox`: the onebox verbs of Pegasus's `run.sh` (see [`pegasus_tools::onebox`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pegasus_tools::onebox::{Node, Onebox, OneboxError, OneboxOptions};

/// A Pegasus cluster on this machine: ZooKeeper, metas and replicas as processes.
#[derive(Debug, Parser)]
#[command(name = "pegasus_onebox", version)]
struct Cli {
    /// The onebox folder.
    #[arg(long, default_value = "onebox", global = true)]
    root: PathBuf,
    /// The `pegasus_server` binary (default: beside this one).
    #[arg(long, global = true)]
    server: Option<PathBuf>,
    #[command(subcommand)]
    command: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Start ZooKeeper, the metas and the replicas.
    #[command(name = "start_onebox")]
    Start(StartArgs),
    /// Stop every node and ZooKeeper.
    #[command(name = "stop_onebox")]
    Stop,
    /// Stop everything and remove the onebox folder.
    #[command(name = "clear_onebox")]
    Clear,
    /// List the nodes and whether they run.
    #[command(name = "list_onebox")]
    List,
    /// Start one node.
    #[command(name = "start_onebox_instance")]
    StartInstance(Instance),
    /// Stop one node.
    #[command(name = "stop_onebox_instance")]
    StopInstance(Instance),
    /// Restart one node.
    #[command(name = "restart_onebox_instance")]
    RestartInstance(Instance),
}

#[derive(Debug, Args)]
struct StartArgs {
    /// MetaServers.
    #[arg(short = 'm', long = "meta_count", default_value_t = 3)]
    metas: usize,
    /// ReplicaServers.
    #[arg(short = 'r', long = "replica_count", default_value_t = 3)]
    replicas: usize,
    /// The table created at bootstrap.
    #[arg(short = 'a', long = "app_name", default_value = "temp")]
    app_name: String,
    /// Its partitions.
    #[arg(short = 'p', long = "partition_count", default_value_t = 8)]
    partitions: u32,
    /// Wait until every partition is healthy.
    #[arg(short = 'w', long = "wait_healthy")]
    wait: bool,
    /// Run a collector too (port 34101).
    #[arg(short = 'c', long = "collector")]
    collector: bool,
    /// Replicas write their logs to the OS without fsync (`plog_force_flush = false`).
    #[arg(long = "no_fsync")]
    no_fsync: bool,
    /// Replicas fsync each partition's private log, without the node's shared log
    /// (`[replication] shared_log = false`).
    #[arg(long = "no_shared_log")]
    no_shared_log: bool,
    /// A key of every node's config, `section.key=value` (repeatable), e.g.
    /// `--set replication.cold_backup_rate_mb_per_sec=0`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE", value_parser = parse_setting)]
    set: Vec<(String, String, String)>,
}

/// `section.key=value`: the section is everything before the last dot of the left side.
fn parse_setting(s: &str) -> Result<(String, String, String), String> {
    let (path, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected section.key=value"))?;
    let (section, key) = path
        .rsplit_once('.')
        .filter(|(s, k)| !s.is_empty() && !k.is_empty())
        .ok_or_else(|| format!("`{path}`: expected section.key"))?;
    Ok((section.to_owned(), key.to_owned(), value.to_owned()))
}

#[derive(Debug, Args)]
struct Instance {
    /// Meta number, from 1.
    #[arg(short = 'm', conflicts_with = "replica")]
    meta: Option<usize>,
    /// Replica number, from 1.
    #[arg(short = 'r')]
    replica: Option<usize>,
    /// The collector.
    #[arg(short = 'c')]
    collector: bool,
}

impl Instance {
    fn node(&self) -> Result<Node, OneboxError> {
        match (self.meta, self.replica, self.collector) {
            (Some(i), None, false) => Ok(Node::Meta(i)),
            (None, Some(j), false) => Ok(Node::Replica(j)),
            (None, None, true) => Ok(Node::Collector),
            _ => Err(OneboxError::Usage(
                "name one node: -m <i>, -r <j> or -c".into(),
            )),
        }
    }
}

fn shape_path(root: &std::path::Path) -> PathBuf {
    root.join("shape")
}

/// The shape recorded at start (`metas replicas app partitions collector fsync`), so later
/// verbs render the same configs.
fn load_shape(options: &mut OneboxOptions) {
    if let Ok(text) = std::fs::read_to_string(shape_path(&options.root)) {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if let [m, r, app, p, c, rest @ ..] = &parts[..] {
            options.metas = m.parse().unwrap_or(options.metas);
            options.replicas = r.parse().unwrap_or(options.replicas);
            options.app_name = (*app).to_owned();
            options.partitions = p.parse().unwrap_or(options.partitions);
            options.collector = *c == "true";
            options.plog_force_flush = rest.first().is_none_or(|f| *f == "true");
        }
    }
}

fn run(cli: Cli) -> Result<(), OneboxError> {
    let server = match cli.server {
        Some(s) => s,
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("pegasus_server")))
            .unwrap_or_else(|| "pegasus_server".into()),
    };
    let root = std::path::absolute(&cli.root).unwrap_or(cli.root);
    let mut options = OneboxOptions::new(root, server);
    match cli.command {
        Verb::Start(args) => {
            options.metas = args.metas;
            options.replicas = args.replicas;
            options.app_name = args.app_name;
            options.partitions = args.partitions;
            options.collector = args.collector;
            options.plog_force_flush = !args.no_fsync;
            if args.no_shared_log {
                options.extra_config.push((
                    "replication".into(),
                    "shared_log".into(),
                    "false".into(),
                ));
            }
            options.extra_config.extend(args.set.iter().cloned());
            std::fs::create_dir_all(&options.root).map_err(|source| OneboxError::Io {
                what: "cannot create",
                path: options.root.display().to_string(),
                source,
            })?;
            let shape = format!(
                "{} {} {} {} {} {}\n",
                options.metas,
                options.replicas,
                options.app_name,
                options.partitions,
                options.collector,
                options.plog_force_flush
            );
            std::fs::write(shape_path(&options.root), shape).map_err(|source| OneboxError::Io {
                what: "cannot write",
                path: options.root.display().to_string(),
                source,
            })?;
            let onebox = Onebox::new(options);
            onebox.start()?;
            println!(
                "started: ZooKeeper on 127.0.0.1:{}, metas {}",
                onebox.options.zk_port,
                onebox
                    .options
                    .meta_addrs()
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let runtime = tokio::runtime::Runtime::new().map_err(|source| OneboxError::Io {
                what: "cannot start runtime",
                path: String::new(),
                source,
            })?;
            if args.wait {
                runtime
                    .block_on(onebox.wait_healthy(Duration::from_secs(120), |s| println!("{s}")))?;
            } else {
                // Clients may ask at once (pypegasus3's suite waits one second): a leader first.
                runtime.block_on(onebox.wait_leader(Duration::from_secs(60)))?;
            }
            Ok(())
        }
        Verb::Stop => Onebox::new(options).stop(),
        Verb::Clear => Onebox::new(options).clear(),
        Verb::List => {
            for (node, running) in Onebox::new(options).list() {
                println!(
                    "{:<10} {}",
                    node.name(),
                    if running { "running" } else { "stopped" }
                );
            }
            Ok(())
        }
        Verb::StartInstance(i) => {
            load_shape(&mut options);
            Onebox::new(options).start_node(i.node()?)
        }
        Verb::StopInstance(i) => {
            load_shape(&mut options);
            Onebox::new(options).stop_node(i.node()?)
        }
        Verb::RestartInstance(i) => {
            load_shape(&mut options);
            let onebox = Onebox::new(options);
            let node = i.node()?;
            onebox.stop_node(node)?;
            onebox.start_node(node)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if matches!(e, OneboxError::NoZooKeeper | OneboxError::NoJava) {
                eprintln!(
                    "help: install ZooKeeper and Java with `apt-get install zookeeper default-jre-headless`, or set ZOOKEEPER_HOME"
                );
            }
            ExitCode::from(1)
        }
    }
}
