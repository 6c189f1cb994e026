//! Start-up: `pegasus_server <config.ini> [-cargs k=v;…] [-app_list role[;role]]`, as rDSN
//! parses it, and the `healthcheck` and `clean` commands.
//!
//! # Layout
//! - [`args`]: the command line
//! - [`checks`]: the config, loaded and checked with configcheck
//! - [`roles`]: bind, connect, create dirs, start and stop the roles
//! - [`logging`]: the log file and stderr
//! - [`healthcheck`]: `pegasus_server healthcheck ADDR`
//! - [`clean`]: `pegasus_server clean config.ini [--yes]`
//!
//! The order matters: the config is parsed and checked with configcheck first (an error finding
//! ends start-up with its diagnostic, before anything is written), then every listener is bound
//! (a port in use ends start-up, still before anything is written), and only then are the log and
//! data dirs created and the roles started.

pub mod args;
pub mod checks;
pub mod clean;
pub mod healthcheck;
mod logging;
mod roles;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use configcheck::{FileReport, HostFacts, keys};
use miette::Diagnostic;
use tracing::error;

pub use self::args::{Args, ROLES, parse_args};
pub use self::checks::load_config;
pub use self::clean::clean;
pub use self::healthcheck::healthcheck;
use crate::config::{ConfigError, ServerConfig};

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
    /// A data dir holds data of a newer format.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Format(#[from] crate::format::FormatError),
    /// The async runtime could not start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
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
                        .flag_in(&format!("apps.{r}"), &keys::ROLE_RUN)
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
    runtime.block_on(roles::serve_roles(server))
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
        Some("--format") => {
            println!("{}", crate::format::FORMAT);
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
