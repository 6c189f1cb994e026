//! The `configcheck` command line: `check` (the default), `facts`, `render`, `rules`, `keys`,
//! `explain`.
//!
//! Findings go to stdout, logs and errors to stderr. Exit status: 0 clean, 1 findings at or
//! above the threshold (errors; warnings too with `--deny-warnings`), 2 a usage, I/O or internal
//! error (a file that could not be read, among them). A closed stdout (`| head`) exits 0.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::facts::HostFacts;
use crate::finding::{Finding, Severity};
use crate::render;
use crate::report::{self, Format, Reporter, Style, Summary};
use crate::rules::{self, CheckOptions, cluster};

/// Checks Apache Pegasus config.ini files before a deploy.
#[derive(Debug, Parser)]
#[command(
    name = "configcheck",
    version,
    about,
    after_help = "With no subcommand, `configcheck FILE…` runs `check`."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check config files, folders of per-node configs (`*.ini`), or `-` for standard input.
    Check(CheckArgs),
    /// Print this host's facts (host name, interfaces, disks) as JSON, for `check --facts`.
    Facts {
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Fill a template's `%{name}` and `@NAME@` tokens, check the result, write it atomically.
    Render(RenderArgs),
    /// List every rule.
    Rules,
    /// List every key with a type or a default: section, kind, default, who reads it.
    Keys {
        /// As the README's Markdown table.
        #[arg(long)]
        markdown: bool,
    },
    /// Print a rule's documentation, or a key's (`[section] key` or `section.key`).
    Explain {
        /// A code (`PC001`), a rule's name (`unreplaced-template-variable`), or a key
        /// (`replication.fd_lease_seconds`).
        rule: String,
    },
}

/// When to colour the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    /// When stdout is a terminal, `NO_COLOR` is unset and `TERM` is not `dumb`.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
struct CommonOptions {
    /// Facts of the target host, recorded there with `configcheck facts` (default: this host's).
    #[arg(long, value_name = "FILE", conflicts_with = "offline")]
    facts: Option<PathBuf>,
    /// Skip the rules that need host facts (interfaces, disks).
    #[arg(long)]
    offline: bool,
    /// The Pegasus version the configs are for, `MAJOR.MINOR`.
    #[arg(long, value_name = "VERSION", default_value = "2.6", value_parser = parse_version)]
    pegasus_version: (u32, u32),
    /// How much smaller than the largest a data disk may be, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=100))]
    disk_size_tolerance: u64,
    /// Skip a rule, by code or name (repeatable, or comma-separated).
    #[arg(long, value_name = "CODE", value_delimiter = ',')]
    ignore: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human", env = "CONFIGCHECK_FORMAT")]
    format: Format,
    /// Colour the human format.
    #[arg(long, value_enum, default_value = "auto")]
    color: ColorChoice,
    /// Wrap width of the human format.
    #[arg(long, default_value_t = 100)]
    width: usize,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Files, folders, or `-` for standard input.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    common: CommonOptions,
    /// Exit 1 on warnings too.
    #[arg(long)]
    deny_warnings: bool,
    /// Exit 0 even with findings (I/O errors still exit 2).
    #[arg(long)]
    exit_zero: bool,
    /// The name to show for standard input.
    #[arg(long, value_name = "NAME")]
    stdin_filename: Option<String>,
    /// Print nothing; only the exit status tells.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct RenderArgs {
    /// The template (`config.ini` with `%{xxx}`, or `config.min.ini` with `@NAME@`).
    template: PathBuf,
    /// A value, `name=value` (repeatable; wins over `--vars`).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    sets: Vec<String>,
    /// A file of `name = value` lines.
    #[arg(long, value_name = "FILE")]
    vars: Option<PathBuf>,
    /// Where to write the result.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    common: CommonOptions,
}

fn parse_version(text: &str) -> Result<(u32, u32), String> {
    let (major, minor) = text
        .split_once('.')
        .ok_or("expected MAJOR.MINOR, e.g. 2.6")?;
    let minor = minor.split('.').next().unwrap_or(minor);
    Ok((
        major.parse().map_err(|_| "bad major version")?,
        minor.parse().map_err(|_| "bad minor version")?,
    ))
}

const SUBCOMMANDS: &[&str] = &[
    "check", "facts", "render", "rules", "keys", "explain", "help",
];

/// `configcheck config.ini` means `configcheck check config.ini`.
fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    let is_top_level =
        |a: &str| SUBCOMMANDS.contains(&a) || matches!(a, "-h" | "--help" | "-V" | "--version");
    if let Some(first) = first
        && !is_top_level(&first)
    {
        args.insert(1, "check".into());
    }
    args
}

/// Runs the command line; the `configcheck` binary is just this.
pub fn main() -> ExitCode {
    let args = with_default_subcommand(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut err = io::stderr().lock();
    let code = match run(cli, &mut out, &mut err).and_then(|code| out.flush().map(|()| code)) {
        Ok(code) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            2
        }
    };
    ExitCode::from(code)
}

/// Runs a parsed command line, writing to `out` and `err`; returns the exit status.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    match cli.command {
        Command::Check(args) => run_check(&args, out, err),
        Command::Facts { output } => run_facts(output.as_deref(), out, err),
        Command::Render(args) => run_render(&args, out, err),
        Command::Rules => {
            for r in rules::ALL {
                writeln!(
                    out,
                    "{}  {:<30} {:<8} {}",
                    r.code, r.name, r.severity, r.summary
                )?;
            }
            Ok(0)
        }
        Command::Keys { markdown } => {
            if markdown {
                write!(out, "{}", crate::keys::markdown())?;
            } else {
                for k in crate::keys::ALL {
                    writeln!(
                        out,
                        "{:<58} {:<8} {:<12} {}",
                        k.path(),
                        k.kind.name(),
                        if k.default.is_empty() { "-" } else { k.default },
                        k.doc
                    )?;
                }
            }
            Ok(0)
        }
        Command::Explain { rule } => match (rules::find(&rule), key_named(&rule)) {
            (Some(r), _) => {
                writeln!(
                    out,
                    "{} {} ({}, {:?} rule)\n",
                    r.code, r.name, r.severity, r.scope
                )?;
                write!(out, "{}", r.doc)?;
                Ok(0)
            }
            (None, Some(k)) => {
                writeln!(out, "{} ({})\n\n{}", k.path(), k.kind.name(), k.doc)?;
                if !k.default.is_empty() {
                    writeln!(out, "Default: `{}`.", k.default)?;
                }
                if k.reader == crate::keys::Reader::Pegasus {
                    writeln!(out, "Read by Pegasus only: this server ignores it.")?;
                }
                Ok(0)
            }
            (None, None) => {
                writeln!(
                    err,
                    "error: no rule or key `{rule}`; `configcheck rules` and `configcheck keys` list them"
                )?;
                Ok(2)
            }
        },
    }
}

/// The key `[section] key` or `section.key` names (the key's name is after the last dot).
fn key_named(text: &str) -> Option<&'static crate::keys::Key> {
    let text = text.trim();
    let (section, name) = match text.strip_prefix('[') {
        Some(rest) => {
            let (section, name) = rest.split_once(']')?;
            (section.trim(), name.trim())
        }
        None => text.rsplit_once('.')?,
    };
    crate::keys::find(section, name)
}

fn use_color(choice: ColorChoice) -> bool {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if set("NO_COLOR") => false,
        ColorChoice::Auto
            if std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") =>
        {
            true
        }
        ColorChoice::Auto => {
            io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

impl CommonOptions {
    /// Check options with `host` facts.
    fn options(&self, host: Option<HostFacts>) -> CheckOptions {
        CheckOptions {
            host,
            pegasus_version: self.pegasus_version,
            disk_size_tolerance_percent: self.disk_size_tolerance,
            ignore: self.ignore.iter().cloned().collect::<BTreeSet<_>>(),
        }
    }

    fn style(&self) -> Style {
        Style {
            color: use_color(self.color),
            width: self.width,
        }
    }

    /// Rejects `--ignore` names no rule has.
    fn unknown_ignores(&self) -> Vec<&str> {
        self.ignore
            .iter()
            .map(String::as_str)
            .filter(|i| rules::find(i).is_none())
            .collect()
    }

    /// The facts host rules use for files without facts of their own: `--facts`, this host's, or
    /// none (`--offline`).
    fn default_facts(&self) -> Result<Option<HostFacts>, String> {
        if self.offline {
            return Ok(None);
        }
        match &self.facts {
            Some(path) => HostFacts::load(path).map(Some).map_err(|e| e.to_string()),
            None => HostFacts::collect().map(Some).map_err(|e| e.to_string()),
        }
    }
}

/// Where a folder's per-node facts live: `node1.facts.json` beside `node1.ini`, else
/// `facts.json` in the same folder.
pub fn facts_beside(config: &Path) -> Option<PathBuf> {
    let stem = config.file_stem()?.to_string_lossy();
    let dir = config.parent()?;
    [
        dir.join(format!("{stem}.facts.json")),
        dir.join("facts.json"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// State of one `check` run.
struct CheckRun<'a> {
    args: &'a CheckArgs,
    reporter: Box<dyn Reporter>,
    summary: Summary,
    /// Facts for files without their own, computed on first use.
    default_facts: Option<Option<HostFacts>>,
}

impl CheckRun<'_> {
    fn unreadable(
        &mut self,
        out: &mut dyn Write,
        err: &mut dyn Write,
        name: &str,
        message: &str,
    ) -> io::Result<()> {
        self.summary.unreadable += 1;
        self.reporter.unreadable(out, err, name, message)
    }

    fn report(&mut self, out: &mut dyn Write, name: &str, findings: &[Finding]) -> io::Result<()> {
        self.summary.count(findings);
        self.reporter.file(out, name, findings)
    }

    fn default_facts(&mut self, err: &mut dyn Write) -> io::Result<Option<HostFacts>> {
        if self.default_facts.is_none() {
            let facts = match self.args.common.default_facts() {
                Ok(f) => f,
                Err(e) => {
                    writeln!(err, "warning: {e}; host rules are skipped")?;
                    None
                }
            };
            self.default_facts = Some(facts);
        }
        Ok(self.default_facts.clone().flatten())
    }

    /// Checks one loaded config and reports it; returns what the cluster rules need.
    fn check_config(
        &mut self,
        out: &mut dyn Write,
        config: &Config,
        facts: Option<HostFacts>,
    ) -> io::Result<()> {
        let findings = rules::check(config, &self.args.common.options(facts));
        self.summary.files += 1;
        self.report(out, config.source().name(), &findings)
    }

    fn check_stdin(&mut self, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
        let name = self
            .args
            .stdin_filename
            .clone()
            .unwrap_or_else(|| "-".to_owned());
        match Config::read(io::stdin().lock(), &name) {
            Ok(config) => {
                let facts = self.default_facts(err)?;
                self.check_config(out, &config, facts)
            }
            Err(e) => self.unreadable(out, err, &name, &e.to_string()),
        }
    }

    fn check_file(
        &mut self,
        out: &mut dyn Write,
        err: &mut dyn Write,
        path: &Path,
    ) -> io::Result<()> {
        let name = path.display().to_string();
        match Config::load(path, &name) {
            Ok(config) => {
                let facts = self.default_facts(err)?;
                self.check_config(out, &config, facts)
            }
            Err(e) => self.unreadable(out, err, &name, &e.to_string()),
        }
    }

    /// A folder is one cluster: every `*.ini` under it is a node.
    fn check_folder(
        &mut self,
        out: &mut dyn Write,
        err: &mut dyn Write,
        dir: &Path,
    ) -> io::Result<()> {
        let mut nodes = Vec::new();
        let mut paths = Vec::new();
        let walk = walkdir::WalkDir::new(dir).sort_by_file_name().into_iter();
        for entry in walk {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let name = e
                        .path()
                        .map_or_else(|| dir.display().to_string(), |p| p.display().to_string());
                    self.unreadable(out, err, &name, &format!("cannot read `{name}`: {e}"))?;
                    continue;
                }
            };
            let path = entry.path();
            if !entry.file_type().is_file() || path.extension().is_none_or(|e| e != "ini") {
                continue;
            }
            let name = path.display().to_string();
            let config = match Config::load(path, &name) {
                Ok(c) => c,
                Err(e) => {
                    self.unreadable(out, err, &name, &e.to_string())?;
                    continue;
                }
            };
            // Per-node facts beside the file; otherwise only `--facts` (this host's facts say
            // nothing about another node).
            let facts = match facts_beside(path) {
                Some(f) if !self.args.common.offline => match HostFacts::load(&f) {
                    Ok(facts) => Some(facts),
                    Err(e) => {
                        self.unreadable(out, err, &f.display().to_string(), &e.to_string())?;
                        continue;
                    }
                },
                _ if self.args.common.facts.is_some() => self.default_facts(err)?,
                _ => None,
            };
            self.check_config(out, &config, facts)?;
            nodes.push(cluster::NodeSummary::of(&config));
            paths.push(path.to_owned());
        }
        // Group a node's cross-file findings so each file is reported once more at most.
        let mut by_node: HashMap<usize, Vec<cluster::NodeFinding>> = HashMap::new();
        for f in cluster::check(&nodes) {
            by_node.entry(f.node).or_default().push(f);
        }
        let mut node_indices: Vec<usize> = by_node.keys().copied().collect();
        node_indices.sort_unstable();
        for node in node_indices {
            let name = &nodes[node].name;
            // Re-read only the files that differ, to render their spans.
            let config = match Config::load(&paths[node], name) {
                Ok(c) => c,
                Err(e) => {
                    self.unreadable(out, err, name, &e.to_string())?;
                    continue;
                }
            };
            let found: Vec<Finding> = by_node
                .remove(&node)
                .unwrap_or_default()
                .into_iter()
                .map(|f| f.into_finding(config.source()))
                .collect();
            let kept = rules::filter(&config, &self.args.common.options(None), found);
            if !kept.is_empty() {
                self.report(out, name, &kept)?;
            }
        }
        Ok(())
    }
}

fn run_check(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let unknown = args.common.unknown_ignores();
    if !unknown.is_empty() {
        writeln!(
            err,
            "error: `--ignore {}`: no such rule; `configcheck rules` lists them",
            unknown.join(",")
        )?;
        return Ok(2);
    }
    if let Some(path) = &args.common.facts
        && let Err(e) = HostFacts::load(path)
    {
        writeln!(err, "error: {e}")?;
        return Ok(2);
    }
    let mut sink = io::sink();
    let out: &mut dyn Write = if args.quiet { &mut sink } else { out };
    // Quiet output is discarded: produce it in the cheapest format.
    let format = if args.quiet {
        Format::Concise
    } else {
        args.common.format
    };
    let mut run = CheckRun {
        args,
        reporter: report::reporter(format, args.common.style()),
        summary: Summary::default(),
        default_facts: None,
    };
    for path in &args.paths {
        if path.as_os_str() == "-" {
            run.check_stdin(out, err)?;
        } else if path.is_dir() {
            run.check_folder(out, err, path)?;
        } else {
            run.check_file(out, err, path)?;
        }
    }
    let summary = run.summary;
    run.reporter.finish(out, &summary)?;
    let threshold_hit = summary.errors > 0 || (args.deny_warnings && summary.warnings > 0);
    Ok(if summary.unreadable > 0 {
        2
    } else if threshold_hit && !args.exit_zero {
        1
    } else {
        0
    })
}

fn run_facts(output: Option<&Path>, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let facts = match HostFacts::collect() {
        Ok(f) => f,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(2);
        }
    };
    let json = serde_json::to_string_pretty(&facts)? + "\n";
    match output {
        None => out.write_all(json.as_bytes())?,
        Some(path) => {
            if let Err(e) = render::write_atomically(path, &json) {
                writeln!(err, "error: {e}")?;
                return Ok(2);
            }
        }
    }
    Ok(0)
}

fn run_render(args: &RenderArgs, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let name = args.template.display().to_string();
    let template = match Config::load(&args.template, &name) {
        Ok(c) => c,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(2);
        }
    };
    let vars = args
        .vars
        .as_deref()
        .map(render::read_vars)
        .transpose()
        .and_then(|file_vars| {
            let mut vars = file_vars.unwrap_or_default();
            vars.extend(render::parse_sets(&args.sets)?);
            Ok(vars)
        });
    let rendered = match vars.and_then(|vars| render::render(template.source().text(), &vars)) {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "error: not rendering `{name}`: {e}")?;
            return Ok(2);
        }
    };
    for unused in &rendered.unused {
        writeln!(err, "warning: `{unused}` is not used by `{name}`")?;
    }
    // Check the result as it will be written, before writing it.
    let out_name = args.output.display().to_string();
    let result = Config::from_text(&out_name, rendered.text.as_str());
    let facts = match &args.common.facts {
        Some(path) => match HostFacts::load(path) {
            Ok(f) => Some(f),
            Err(e) => {
                writeln!(err, "error: {e}")?;
                return Ok(2);
            }
        },
        None => None,
    };
    let findings = rules::check(&result, &args.common.options(facts));
    let mut reporter = report::reporter(args.common.format, args.common.style());
    reporter.file(out, &out_name, &findings)?;
    let mut summary = Summary {
        files: 1,
        ..Summary::default()
    };
    summary.count(&findings);
    reporter.finish(out, &summary)?;
    if findings.iter().any(|f| f.severity == Severity::Error) {
        writeln!(
            err,
            "error: not writing `{out_name}`: the rendered config has errors"
        )?;
        return Ok(1);
    }
    if let Err(e) = render::write_atomically(&args.output, &rendered.text) {
        writeln!(err, "error: {e}")?;
        return Ok(2);
    }
    writeln!(err, "wrote `{out_name}`")?;
    Ok(0)
}
