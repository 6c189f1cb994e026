//! `configcheck`: the one parser of Pegasus `config.ini` files, the rules that find what makes a
//! cluster fail at start-up, and the renderers that show the findings.
//!
//! The server loads its configuration through this crate too ([`Config`], [`address::choose`]),
//! so the checker and the server cannot disagree about what a file means.
//!
//! ```
//! use configcheck::{check, CheckOptions, Config};
//! let config = Config::from_text("config.ini", "[meta_server]\nserver_list = %{meta.server.list}\n");
//! let findings = check(&config, &CheckOptions::default());
//! assert_eq!(findings[0].rule.code, "PC001");
//! ```
//!
//! # Layout
//! - [`source`]: a file's text, spans and positions
//! - [`syntax`]: the lossless line parser (nom)
//! - [`config`]: the typed view: sections, template inheritance, typed getters with spans
//! - [`address`]: `host:port` lists and the advertised-address rule the server reuses
//! - [`data_dir`]: `data_dirs` items (`tag:path`), as the server reads them and the rules check them
//! - [`envs`]: table environments: the keys and their value forms (meta, shell, PC083)
//! - [`keys`]: every `config.ini` key with a type or a default, the one table the server reads
//!   through
//! - [`facts`]: host facts (interfaces, disks), live or from a recorded file
//! - [`rules`]: the rules, their docs, and [`check`]
//! - [`finding`]: findings as data and as miette diagnostics
//! - [`render`]: filling `%{xxx}` templates
//! - [`report`]: human, concise, JSON, SARIF and GitHub output
//! - [`cli`]: the `configcheck` command line

pub mod address;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod envs;
pub mod facts;
pub mod finding;
pub mod keys;
pub mod render;
pub mod report;
pub mod rules;
pub mod source;
pub mod syntax;

pub use config::{Config, LoadError, ValueError};
pub use facts::HostFacts;
pub use finding::{FileReport, Finding, Severity};
pub use rules::{CheckOptions, check};
