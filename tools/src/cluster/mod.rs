//! `pegasus_cluster`: a Pegasus cluster on real hosts, from a topology file, over SSH, under
//! systemd — what TiUP's `tiup cluster` is for TiDB.
//!
//! ```text
//! pegasus_cluster template > topology.toml           an annotated example
//! pegasus_cluster check   topology.toml PACKAGE       every host, before a deploy
//! pegasus_cluster deploy  topology.toml PACKAGE       package, configs, units; starts nothing
//! pegasus_cluster start   topology.toml               metas, replica servers, collector
//! pegasus_cluster display topology.toml               units, health, the meta's view, tables
//! pegasus_cluster restart topology.toml --rolling     one at a time, the cluster serving
//! pegasus_cluster upgrade topology.toml NEW_PACKAGE   a rolling restart onto new binaries
//! pegasus_cluster rollback topology.toml              back to the release before, rolling
//! pegasus_cluster scale-out bigger.toml PACKAGE       new replica servers started, balanced
//! pegasus_cluster scale-in topology.toml -N host:port drained, stopped, removed
//! pegasus_cluster resume  topology.toml               what is left of an interrupted plan
//! pegasus_cluster abort   topology.toml               end it: instances up, settings restored
//! pegasus_cluster stop    topology.toml               in reverse
//! pegasus_cluster destroy topology.toml               every host cleaned, then cluster_root
//! ```
//!
//! # Layout
//! - [`topology`]: the topology file (TOML, spans, every problem reported at once)
//! - [`ssh`]: remote steps through the system's OpenSSH, one multiplexed connection per host
//! - [`fleet`]: the hosts in parallel, and the release tarball
//! - [`layout`]: where things live on a host; each instance's `config.ini` and unit
//! - [`check`]: the fleet checked before a deploy (findings as data)
//! - [`deploy`]: the package, configs and units on every host, idempotently
//! - [`control`]: `start`, `stop`, `display`
//! - [`rolling`]: rolling restarts as maintenance plans kept in ZooKeeper (primaries handed
//!   over first), `resume` and `abort`
//! - [`scale`]: replica servers added and balanced, or drained and removed
//! - [`destroy`]: the guide's cluster cleaning on every host and in ZooKeeper
//! - [`zk`]: the cluster root: free, ours or another cluster's; the mark `deploy` leaves

pub mod check;
pub mod control;
pub mod deploy;
pub mod destroy;
pub mod fleet;
pub mod layout;
pub mod rolling;
pub mod scale;
pub mod ssh;
pub mod topology;
pub mod zk;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use self::control::Selection;
use self::fleet::{Fleet, Package};
use self::topology::{Role, Topology};

/// Deploys and runs a Pegasus cluster on hosts reached over SSH.
#[derive(Debug, Parser)]
#[command(name = "pegasus_cluster", version)]
pub struct Cli {
    #[command(subcommand)]
    verb: Verb,
    /// Print every remote step (they are always recorded in the step log).
    #[arg(long, short, global = true)]
    verbose: bool,
}

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// For scripts.
    Json,
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The topology file.
    topology: PathBuf,
}

#[derive(Debug, clap::Args)]
struct Select {
    /// Only instances of this role (repeatable).
    #[arg(short = 'R', long = "role")]
    roles: Vec<RoleArg>,
    /// Only this instance, `host:port` (repeatable).
    #[arg(short = 'N', long = "node")]
    nodes: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Zookeeper,
    Meta,
    Replica,
    Collector,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Zookeeper => Role::Zookeeper,
            RoleArg::Meta => Role::Meta,
            RoleArg::Replica => Role::Replica,
            RoleArg::Collector => Role::Collector,
        }
    }
}

impl Select {
    fn selection(&self) -> Selection {
        Selection {
            roles: self.roles.iter().map(|r| Role::from(*r)).collect(),
            nodes: self.nodes.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Print an annotated topology file.
    Template,
    /// Check every host (and the configs as one cluster) before a deploy; exit 1 on errors.
    Check {
        #[command(flatten)]
        target: Target,
        /// The release tarball (`./run.sh pack_server`).
        package: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Short for `--format json`.
        #[arg(short = 'j')]
        json: bool,
        /// First fix what is safe to fix: the service user, and every instance's folders and
        /// data dirs (made, and given to the service user), as `deploy` would.
        #[arg(long)]
        apply: bool,
    },
    /// Put the package, each instance's config and its systemd unit on every host; start nothing.
    Deploy {
        #[command(flatten)]
        target: Target,
        /// The release tarball.
        package: PathBuf,
    },
    /// Start instances (ZooKeeper checked, then metas, replica servers, collector).
    Start {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        select: Select,
    },
    /// Stop instances (collector, replica servers, metas).
    Stop {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        select: Select,
    },
    /// Restart instances; `--rolling`: one at a time, primaries handed over first, the cluster
    /// serving throughout (a maintenance plan kept in ZooKeeper).
    Restart {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        select: Select,
        /// One at a time, the cluster serving throughout.
        #[arg(long)]
        rolling: bool,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move every instance to a new release, one at a time as `restart --rolling` (the old one
    /// is kept for `rollback`); refused when the cluster's data is of a newer format than the
    /// package reads, or a host's glibc is older than the package's.
    Upgrade {
        #[command(flatten)]
        target: Target,
        /// The new release tarball.
        package: PathBuf,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move every instance back to the release it ran before its last upgrade, one at a time;
    /// refused when the cluster's data is of a newer format than that release reads.
    Rollback {
        #[command(flatten)]
        target: Target,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Add the replica servers of a larger topology: deploy and start them, then balance copies
    /// and primaries over every replica server (the meta level `lively` meanwhile).
    ScaleOut {
        /// The topology with the new replica servers added.
        topology: PathBuf,
        /// The release tarball the cluster runs.
        package: PathBuf,
    },
    /// Remove a replica server: every copy moved off it first (no partition ever short of a
    /// copy), then stopped, its unit and folders removed, and taken out of the topology file.
    ScaleIn {
        #[command(flatten)]
        target: Target,
        /// The replica server, `host:port`.
        #[arg(short = 'N', long = "node")]
        node: String,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Carry out what is left of an interrupted maintenance plan.
    Resume {
        #[command(flatten)]
        target: Target,
    },
    /// End an interrupted maintenance plan: every instance started, the settings it changed
    /// restored, the plan removed.
    Abort {
        #[command(flatten)]
        target: Target,
    },
    /// Every instance (unit, health, role in the cluster, version) and every table's health.
    Display {
        #[command(flatten)]
        target: Target,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Short for `--format json`.
        #[arg(short = 'j')]
        json: bool,
    },
    /// Remove the cluster from every host and its root from ZooKeeper.
    Destroy {
        #[command(flatten)]
        target: Target,
        /// Do not ask for the cluster's name.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs the command line; the `pegasus_cluster` binary is just this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(run(cli))
}

/// Where remote steps of cluster `name` are recorded.
fn step_log_path(name: &str) -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("pegasus_cluster").join(format!("{name}.log")))
}

fn load(path: &Path) -> Result<Topology, u8> {
    topology::load(path).map_err(|e| {
        eprintln!("{:?}", miette::Report::new(e));
        2
    })
}

fn open_package(path: &Path) -> Result<Package, u8> {
    Package::open(path).map_err(fail(2))
}

fn fleet(topology: Topology, verbose: bool) -> Result<Fleet, u8> {
    let log = ssh::StepLog::open(step_log_path(&topology.name).as_deref(), verbose);
    Fleet::new(topology, log).map_err(fail(2))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The template `deploy` fills: the topology's, else the package's `bin/config.ini`.
fn template(topology: &Topology, package: &Package) -> Result<String, u8> {
    let text = match &topology.template {
        Some(path) => std::fs::read(path).map_err(|e| {
            eprintln!("error: cannot read template `{}`: {e}", path.display());
            2
        })?,
        None => package.file("bin/config.ini").map_err(fail(2))?,
    };
    Ok(String::from_utf8_lossy(&text).into_owned())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Refuses (exit 1) a release that reads formats only up to `format` when the cluster's data
/// is newer: its servers would refuse to start.
fn refuse_older_format(
    fleet: &Fleet,
    rt: &tokio::runtime::Runtime,
    release: &str,
    format: u32,
) -> Result<(), u8> {
    let found = rt
        .block_on(async {
            let zk = zk::connect(&fleet.topology).await?;
            zk::cluster_format(&zk, &fleet.topology).await
        })
        .map_err(fail(1))?;
    match found {
        Some(f) if f > format => {
            eprintln!(
                "error: the cluster's data is of format {f}; {release} reads formats up to {format}: its servers would refuse to start, so nothing was changed"
            );
            Err(1)
        }
        _ => Ok(()),
    }
}

/// A rolling restart in which each instance moves to its release: planned (or printed with
/// `dry_run`) and carried out.
fn release_plan(
    fleet: &Fleet,
    rt: &tokio::runtime::Runtime,
    verb: &str,
    releases: &[(&topology::Instance, String)],
    dry_run: bool,
) -> Result<u8, u8> {
    let client = control::client(&fleet.topology);
    let leader = rolling::leader(rt, &client);
    let instances: Vec<&topology::Instance> = releases.iter().map(|(i, _)| *i).collect();
    let mut steps = rolling::steps(&instances, leader.as_deref());
    for s in &mut steps {
        s.release = releases
            .iter()
            .find(|(i, _)| i.addr() == s.addr)
            .map(|(_, r)| r.clone());
    }
    if dry_run {
        say(&format!(
            "{verb}: the meta level is set to `steady` (restored at the end); then, one at a time:"
        ));
        for (k, s) in steps.iter().enumerate() {
            say(&format!(
                "{:>3}. {} {}: switch to {}, restart, wait until healthy",
                k + 1,
                s.role,
                s.addr,
                s.release.as_deref().unwrap_or("-")
            ));
        }
        return Ok(0);
    }
    let mut plan = rolling::begin(fleet, rt, verb, steps).map_err(fail(1))?;
    say(&format!(
        "plan recorded in ZooKeeper: {verb}, {} steps; meta level `{}` → `steady` meanwhile",
        plan.steps.len(),
        plan.meta_level_before
    ));
    Ok(run_plan(fleet, rt, &mut plan))
}

/// Prints an error and gives the exit status `code`, for `map_err`.
fn fail<E: std::fmt::Display>(code: u8) -> impl FnOnce(E) -> u8 {
    move |e| {
        eprintln!("error: {e}");
        code
    }
}

/// The maintenance plan in ZooKeeper, if any.
fn current_plan(fleet: &Fleet, rt: &tokio::runtime::Runtime) -> Result<Option<rolling::Plan>, u8> {
    rt.block_on(async {
        let zk = zk::connect(&fleet.topology).await?;
        zk::load_plan(&zk, &fleet.topology).await
    })
    .map_err(fail(1))
}

/// Carries out `plan`, then ends it (the meta level restored, the plan removed), also when a
/// step fails or Ctrl-C stops it; the exit status.
fn run_plan(fleet: &Fleet, rt: &tokio::runtime::Runtime, plan: &mut rolling::Plan) -> u8 {
    let interrupted = rolling::interrupt_flag(rt);
    let began = std::time::Instant::now();
    let outcome = rolling::carry_out(fleet, rt, plan, &interrupted, &mut |l| say(l));
    if let Err(e) = &outcome {
        eprintln!("error: {e}");
    }
    match rolling::end(fleet, rt, plan) {
        Ok(()) => say(&format!(
            "meta level `{}` restored; plan removed",
            plan.meta_level_before
        )),
        Err(e) => {
            eprintln!("error: {e}; the plan stays in ZooKeeper: run `pegasus_cluster abort`");
            return 1;
        }
    }
    match outcome {
        Ok(()) => {
            say(&format!(
                "{} done: {} steps in {:.1?}",
                plan.verb,
                plan.steps.len(),
                began.elapsed()
            ));
            0
        }
        Err(_) => 1,
    }
}

/// Runs a parsed command line; the exit status (0 done, 1 findings or a failed step, 2 usage,
/// topology or I/O errors).
pub fn run(cli: Cli) -> u8 {
    match run_verb(cli) {
        Ok(code) | Err(code) => code,
    }
}

fn run_verb(cli: Cli) -> Result<u8, u8> {
    match cli.verb {
        Verb::Template => {
            print!("{}", topology::TEMPLATE);
            Ok(0)
        }
        Verb::Check {
            target,
            package,
            format,
            json,
            apply,
        } => {
            let topology = load(&target.topology)?;
            let package = open_package(&package)?;
            let template = template(&topology, &package)?;
            let fleet = fleet(topology, cli.verbose)?;
            if apply {
                for (host, result) in deploy::prepare(&fleet) {
                    match result {
                        Ok(done) => done
                            .changes
                            .iter()
                            .for_each(|l| eprintln!("applied: {host}: {l}")),
                        Err(e) => eprintln!("error: applying on {host}: {e}"),
                    }
                }
            }
            let findings = check::check(&fleet, &package, &template);
            let errors = findings
                .iter()
                .filter(|f| f.severity == check::Severity::Error)
                .count();
            if json || matches!(format, Format::Json) {
                say(&serde_json::to_string_pretty(&findings).expect("serializable"));
            } else {
                for f in &findings {
                    let level = match f.severity {
                        check::Severity::Error => "error",
                        check::Severity::Warning => "warning",
                        check::Severity::Info => "info",
                    };
                    say(&format!("{level}[{}] {}: {}", f.check, f.host, f.message));
                }
                say(&format!(
                    "{} host(s) checked: {errors} error(s), {} warning(s)",
                    fleet.topology.hosts().len(),
                    findings
                        .iter()
                        .filter(|f| f.severity == check::Severity::Warning)
                        .count()
                ));
            }
            Ok(u8::from(errors > 0))
        }
        Verb::Deploy { target, package } => {
            let topology = load(&target.topology)?;
            let package = open_package(&package)?;
            let template = template(&topology, &package)?;
            // Every config renders before any host is touched.
            for i in topology.servers() {
                if let Err(e) = layout::Layout::config(&topology, &template, i) {
                    eprintln!("error: {e}");
                    return Err(2);
                }
            }
            let rt = runtime();
            // An ensemble the tool runs may not serve yet (a first deploy): its root is checked
            // and claimed by `start`, before any Pegasus server starts.
            let zk = if zk::ensemble_serves(&topology) {
                let zk = rt.block_on(zk::connect(&topology)).map_err(fail(1))?;
                if let zk::Root::Foreign(what) =
                    rt.block_on(zk::root(&zk, &topology)).map_err(fail(1))?
                {
                    eprintln!(
                        "error: ZooKeeper `{}` belongs to {what}: not deploying over it",
                        topology.cluster_root()
                    );
                    return Err(1);
                }
                Some(zk)
            } else {
                None
            };
            let fleet = fleet(topology, cli.verbose)?;
            let mut failed = false;
            let mut changed = false;
            for (host, result) in deploy::deploy(&fleet, &package, &template) {
                match result {
                    Ok(c) if c.changes.is_empty() => say(&format!("{host}: unchanged")),
                    Ok(c) => {
                        changed = true;
                        for line in c.changes {
                            say(&format!("{host}: {line}"));
                        }
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            if failed {
                return Err(1);
            }
            match zk.map(|zk| rt.block_on(zk::claim(&zk, &fleet.topology))) {
                Some(Ok(true)) => {
                    changed = true;
                    say(&format!(
                        "zookeeper: marked {} as this cluster's",
                        fleet.topology.cluster_root()
                    ));
                }
                Some(Ok(false)) => {}
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return Err(1);
                }
                None => say(&format!(
                    "zookeeper: the ensemble starts with `pegasus_cluster start`, which marks {} as this cluster's",
                    fleet.topology.cluster_root()
                )),
            }
            say(if changed {
                "deployed; start it with `pegasus_cluster start`"
            } else {
                "nothing to change: every host already has this deploy"
            });
            Ok(0)
        }
        Verb::Start { target, select } => {
            let fleet = fleet(load(&target.topology)?, cli.verbose)?;
            let rt = runtime();
            control::start(&fleet, &rt, &select.selection(), &mut |l| say(l))
                .map(|()| 0)
                .map_err(fail(1))
        }
        Verb::Stop { target, select } => {
            let fleet = fleet(load(&target.topology)?, cli.verbose)?;
            control::stop(&fleet, &select.selection(), &mut |l| say(l))
                .map(|()| 0)
                .map_err(fail(1))
        }
        Verb::Restart {
            target,
            select,
            rolling,
            dry_run,
        } => {
            let fleet = fleet(load(&target.topology)?, cli.verbose)?;
            let selection = select.selection();
            let selected: Vec<&topology::Instance> = fleet
                .topology
                .instances
                .iter()
                .filter(|i| selection.has(i))
                .collect();
            let rt = runtime();
            if !rolling {
                if dry_run {
                    for i in &selected {
                        say(&format!("would restart {} {}", i.role, i.addr()));
                    }
                    return Ok(0);
                }
                return control::stop(&fleet, &selection, &mut |l| say(l))
                    .and_then(|()| control::start(&fleet, &rt, &selection, &mut |l| say(l)))
                    .map(|()| 0)
                    .map_err(fail(1));
            }
            let client = control::client(&fleet.topology);
            let leader = rolling::leader(&rt, &client);
            let steps = rolling::steps(&selected, leader.as_deref());
            if dry_run {
                say(
                    "the meta level is set to `steady` (restored at the end); then, one at a time:",
                );
                for (k, s) in steps.iter().enumerate() {
                    let what = if s.role == "replica" {
                        "hand its primaries to secondaries, stop, start, wait until every partition is fully healthy"
                    } else {
                        "restart, wait until healthy"
                    };
                    say(&format!("{:>3}. {} {}: {what}", k + 1, s.role, s.addr));
                }
                return Ok(0);
            }
            let mut plan =
                rolling::begin(&fleet, &rt, "restart --rolling", steps).map_err(fail(1))?;
            say(&format!(
                "plan recorded in ZooKeeper: {} steps; meta level `{}` → `steady` meanwhile",
                plan.steps.len(),
                plan.meta_level_before
            ));
            Ok(run_plan(&fleet, &rt, &mut plan))
        }
        Verb::Upgrade {
            target,
            package,
            dry_run,
        } => {
            let fleet = fleet(load(&target.topology)?, cli.verbose)?;
            let package = open_package(&package)?;
            let rt = runtime();
            refuse_older_format(&fleet, &rt, &package.name, package.format)?;
            let old = check::glibc_too_old(&fleet, &package);
            if !old.is_empty() {
                eprintln!(
                    "error: {} needs glibc {}: {}",
                    package.name,
                    package.glibc.as_deref().unwrap_or("?"),
                    old.join("; ")
                );
                return Err(1);
            }
            let all: Vec<(&topology::Instance, String)> = fleet
                .topology
                .servers()
                .map(|i| (i, package.name.clone()))
                .collect();
            if !dry_run {
                let mut failed = false;
                for (host, result) in deploy::push(&fleet, &package) {
                    match result {
                        Ok(c) => c.changes.iter().for_each(|l| say(&format!("{host}: {l}"))),
                        Err(e) => {
                            failed = true;
                            eprintln!("error: {e}");
                        }
                    }
                }
                if failed {
                    return Err(1);
                }
            }
            release_plan(
                &fleet,
                &rt,
                &format!("upgrade to {}", package.name),
                &all,
                dry_run,
            )
        }
        Verb::Rollback { target, dry_run } => {
            let fleet = fleet(load(&target.topology)?, cli.verbose)?;
            let rt = runtime();
            let mut all = Vec::new();
            for i in fleet.topology.servers() {
                match rolling::previous_release(&fleet, i) {
                    Ok(Some(previous)) => all.push((i, previous)),
                    Ok(None) => {
                        eprintln!(
                            "error: {} {} has no release to go back to (it was never upgraded)",
                            i.role,
                            i.addr()
                        );
                        return Err(1);
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Err(1);
                    }
                }
            }
            let mut checked = std::collections::BTreeSet::new();
            for (i, previous) in &all {
                if checked.insert((i.host.clone(), previous.clone())) {
                    let format =
                        rolling::release_format(&fleet, &i.host, previous).map_err(fail(1))?;
                    refuse_older_format(&fleet, &rt, previous, format)?;
                }
            }
            release_plan(&fleet, &rt, "rollback", &all, dry_run)
        }
        Verb::ScaleOut { topology, package } => {
            let path = topology;
            let package = open_package(&package)?;
            let fleet = fleet(load(&path)?, cli.verbose)?;
            let template = template(&fleet.topology, &package)?;
            let rt = runtime();
            let states = control::unit_states(&fleet);
            let new: Vec<&topology::Instance> = fleet
                .topology
                .instances
                .iter()
                .filter(|i| states.get(&i.addr()).is_none_or(|(s, _)| s != "active"))
                .collect();
            if let Some(i) = new.iter().find(|i| i.role != Role::Replica) {
                eprintln!(
                    "error: {} {} is not running: scale-out adds replica servers only (a new meta changes every config's meta list)",
                    i.role,
                    i.addr()
                );
                return Err(1);
            }
            if let Some((addr, (_, release))) = states
                .iter()
                .find(|(_, (s, r))| s == "active" && *r != package.name)
            {
                eprintln!(
                    "error: {addr} runs {release}: scale out with the release the cluster runs, or upgrade first"
                );
                return Err(1);
            }
            if new.is_empty() {
                say("every instance of the topology runs already: nothing to add");
                return Ok(0);
            }
            for (host, result) in deploy::deploy(&fleet, &package, &template) {
                match result {
                    Ok(c) => c.changes.iter().for_each(|l| say(&format!("{host}: {l}"))),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Err(1);
                    }
                }
            }
            let selection = Selection {
                roles: Vec::new(),
                nodes: new.iter().map(|i| i.addr()).collect(),
            };
            if let Err(e) = control::start(&fleet, &rt, &selection, &mut |l| say(l)) {
                eprintln!("error: {e}");
                return Err(1);
            }
            let mut plan = rolling::begin(&fleet, &rt, "scale-out", Vec::new()).map_err(fail(1))?;
            let client = control::client(&fleet.topology);
            let interrupted = rolling::interrupt_flag(&rt);
            let balanced = scale::replica_addrs(&fleet).and_then(|nodes| {
                rt.block_on(
                    client.meta_level(pegasus_protocol::types::meta_function_level::LIVELY),
                )
                .map_err(|e| rolling::RollingError::Failed(e.to_string()))?;
                scale::wait_balanced(&rt, &client, &nodes, &interrupted, &mut |l| say(l))
            });
            if let Err(e) = &balanced {
                eprintln!("error: {e}");
            }
            plan.steps.clear();
            match rolling::end(&fleet, &rt, &plan) {
                Ok(()) => say(&format!(
                    "meta level `{}` restored; plan removed",
                    plan.meta_level_before
                )),
                Err(e) => {
                    eprintln!("error: {e}; run `pegasus_cluster abort`");
                    return Err(1);
                }
            }
            Ok(u8::from(balanced.is_err()))
        }
        Verb::ScaleIn {
            target,
            node,
            dry_run,
        } => {
            let topology = load(&target.topology)?;
            let Some(instance) = topology.find(&node).filter(|i| i.role == Role::Replica) else {
                eprintln!("error: `{node}` is not a replica server of the topology");
                return Err(2);
            };
            let remaining = topology.of(Role::Replica).count() - 1;
            if remaining < topology.copies {
                eprintln!(
                    "error: {remaining} replica server(s) would remain for {} copies of each partition: not scaling in",
                    topology.copies
                );
                return Err(1);
            }
            let text = std::fs::read_to_string(&target.topology).map_err(fail(2))?;
            let Some(smaller) = scale::without_replica(&text, &topology, &node) else {
                eprintln!("error: `{node}` cannot be taken out of the topology file");
                return Err(2);
            };
            let step = rolling::Step {
                role: "replica".into(),
                addr: instance.addr(),
                done: false,
                release: None,
                action: rolling::Action::Remove,
            };
            if dry_run {
                say(&format!(
                    "the meta level is set to `steady` (restored at the end); replica {}: every primary handed over and every copy learned elsewhere, then stopped, its unit and folders removed, and taken out of {}",
                    step.addr,
                    target.topology.display()
                ));
                return Ok(0);
            }
            let fleet = fleet(topology, cli.verbose)?;
            let rt = runtime();
            let mut plan =
                rolling::begin(&fleet, &rt, &format!("scale-in {}", step.addr), vec![step])
                    .map_err(fail(1))?;
            let code = run_plan(&fleet, &rt, &mut plan);
            if code == 0 {
                if let Err(e) = configcheck::render::write_atomically(&target.topology, &smaller) {
                    eprintln!("error: {e}");
                    return Err(1);
                }
                say(&format!(
                    "{node} taken out of {}",
                    target.topology.display()
                ));
            }
            Ok(code)
        }
        Verb::Resume { target } => {
            let fleet = fleet(load(&target.topology)?, cli.verbose)?;
            let rt = runtime();
            let Some(mut plan) = current_plan(&fleet, &rt)? else {
                say("no maintenance plan in progress");
                return Ok(0);
            };
            say(&format!(
                "resuming `{}` by {}: {} of {} steps done",
                plan.verb,
                plan.by,
                plan.steps.iter().filter(|s| s.done).count(),
                plan.steps.len()
            ));
            Ok(run_plan(&fleet, &rt, &mut plan))
        }
        Verb::Abort { target } => {
            let fleet = fleet(load(&target.topology)?, cli.verbose)?;
            let rt = runtime();
            let Some(plan) = current_plan(&fleet, &rt)? else {
                say("no maintenance plan in progress");
                return Ok(0);
            };
            say(&format!(
                "aborting `{}` by {} ({} of {} steps done)",
                plan.verb,
                plan.by,
                plan.steps.iter().filter(|s| s.done).count(),
                plan.steps.len()
            ));
            // An instance the plan had stopped runs again.
            if let Err(e) = control::start(&fleet, &rt, &Selection::default(), &mut |l| say(l)) {
                eprintln!("error: {e}");
                return Err(1);
            }
            match rolling::end(&fleet, &rt, &plan) {
                Ok(()) => {
                    say(&format!(
                        "meta level `{}` restored; plan removed",
                        plan.meta_level_before
                    ));
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Err(1)
                }
            }
        }
        Verb::Display {
            target,
            format,
            json,
        } => {
            let fleet = fleet(load(&target.topology)?, cli.verbose)?;
            let rt = runtime();
            let view = control::display(&fleet, &rt);
            if json || matches!(format, Format::Json) {
                say(&serde_json::to_string_pretty(&view).expect("serializable"));
            } else {
                print!("{}", control::render_view(&view));
            }
            Ok(0)
        }
        Verb::Destroy { target, yes } => {
            let topology = load(&target.topology)?;
            if !yes {
                if !std::io::stdin().is_terminal() {
                    eprintln!(
                        "error: destroy asks for the cluster's name on a terminal; pass --yes to skip it"
                    );
                    return Err(2);
                }
                eprint!(
                    "This removes cluster `{}` from {} host(s) and its data, and {} from ZooKeeper.\nType the cluster's name to go on: ",
                    topology.name,
                    topology.hosts().len(),
                    topology.cluster_root()
                );
                let mut answer = String::new();
                let _ = std::io::stdin().read_line(&mut answer);
                if answer.trim() != topology.name {
                    eprintln!("not destroyed");
                    return Err(1);
                }
            }
            let fleet = fleet(topology, cli.verbose)?;
            let mut failed = false;
            for (host, result) in destroy::destroy(&fleet) {
                match result {
                    Ok(lines) => {
                        for l in lines {
                            say(&format!("{host}: {l}"));
                        }
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            if failed {
                return Err(1);
            }
            if fleet.topology.runs_zookeeper() {
                say(&format!(
                    "zookeeper: the ensemble's data, {} with it, went with its members' folders",
                    fleet.topology.cluster_root()
                ));
                return Ok(0);
            }
            let rt = runtime();
            let removed = rt.block_on(async {
                let zk = zk::connect(&fleet.topology).await?;
                zk::remove_root(&zk, &fleet.topology).await
            });
            match removed {
                Ok(n) => {
                    say(&format!(
                        "zookeeper: removed {} ({n} nodes)",
                        fleet.topology.cluster_root()
                    ));
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Err(1)
                }
            }
        }
    }
}
