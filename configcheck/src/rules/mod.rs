//! The rules: each has a stable code and kebab name (never reused), a severity, and a doc text
//! (what it does, why it matters, an example, how to fix) that `configcheck explain CODE` prints.
//!
//! # Layout
//! - [`syntax`]: what the loader rejects or silently drops (PC01x)
//! - [`template_vars`]: `%{xxx}`, `@PLACEHOLDER@` and `%key%` left in the file (PC00x)
//! - [`addresses`]: meta server and ZooKeeper lists, `[pegasus.clusters]` (PC02x)
//! - [`cluster_identity`]: cluster name, `cluster_root`, lock path (PC03x)
//! - [`data_dirs`]: `[replication] data_dirs` and `slog_dir` against the host's disks (PC04x)
//! - [`network`]: `primary_interface` and the address the node will advertise (PC06x)
//! - [`ports`]: roles of one host on one port (PC07x)
//! - [`startup`]: values the server refuses at start-up (PC08x)
//! - [`cluster`]: cross-file rules over every node of a cluster (PC09x)
//! - [`security`]: ZooKeeper credentials, the admin allow-list (PC10x)
//! - [`backup`]: cold backup's block services (PC11x)

pub mod addresses;
pub mod backup;
pub mod cluster;
pub mod cluster_identity;
pub mod data_dirs;
pub mod network;
pub mod ports;
pub mod security;
pub mod startup;
pub mod syntax;
pub mod template_vars;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::config::Config;
use crate::facts::HostFacts;
use crate::finding::{Finding, Severity};
use crate::source::SourceFile;
use crate::syntax::LineKind;

/// A rule's identity and documentation.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable code, `PC001`.
    pub code: &'static str,
    /// Stable kebab name, `unreplaced-template-variable`.
    pub name: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// What the rule needs beyond the file itself.
    pub scope: Scope,
    /// One line.
    pub summary: &'static str,
    /// What it does / Why it matters / Example / How to fix, in Markdown.
    pub doc: &'static str,
}

/// What a rule needs to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The file alone.
    File,
    /// The file and the facts of the host it is for (skipped with `--offline`).
    Host,
    /// Every file of a cluster.
    Cluster,
}

/// Every rule, in code order.
pub static ALL: &[&Rule] = &[
    &template_vars::UNREPLACED_TEMPLATE_VARIABLE,
    &template_vars::UNREPLACED_PLACEHOLDER,
    &template_vars::UNREPLACED_RDSN_TOKEN,
    &syntax::MALFORMED_LINE,
    &syntax::DUPLICATE_KEY,
    &syntax::DUPLICATE_SECTION,
    &syntax::KEY_OUTSIDE_SECTION,
    &syntax::COMMENT_CUTS_LIST,
    &syntax::COMMENT_CUTS_VALUE,
    &addresses::META_SERVER_HOSTNAME,
    &addresses::MALFORMED_ADDRESS,
    &addresses::DUPLICATE_ADDRESS,
    &addresses::EMPTY_ADDRESS_LIST,
    &addresses::CLUSTER_META_LIST_MISMATCH,
    &addresses::SINGLE_META_SERVER,
    &addresses::MISSING_CLUSTER_ENTRY,
    &cluster_identity::MISSING_CLUSTER_NAME,
    &cluster_identity::CLUSTER_ROOT_MISMATCH,
    &cluster_identity::LOCK_PATH_MISMATCH,
    &data_dirs::MALFORMED_DATA_DIR,
    &data_dirs::DUPLICATE_DATA_DIR_TAG,
    &data_dirs::DUPLICATE_DATA_DIR,
    &data_dirs::NESTED_DATA_DIRS,
    &data_dirs::RELATIVE_DATA_DIR,
    &data_dirs::DATA_DIRS_SHARE_DEVICE,
    &data_dirs::MIXED_DISK_KINDS,
    &data_dirs::DISK_SIZE_MISMATCH,
    &data_dirs::DEPRECATED_SLOG_DIR,
    &data_dirs::SLOG_SHARES_DATA_DEVICE,
    &network::AMBIGUOUS_PRIMARY_INTERFACE,
    &network::NO_PRIVATE_ADDRESS,
    &network::UNKNOWN_INTERFACE,
    &network::INTERFACE_WITHOUT_IPV4,
    &ports::PORT_CONFLICT,
    &startup::INVALID_VALUE,
    &startup::FD_GRACE_NOT_ABOVE_LEASE,
    &startup::RELATIVE_LOG_DIR,
    &startup::INVALID_TABLE_ENV,
    &cluster::META_LIST_DIFFERS,
    &cluster::CLUSTER_NAME_DIFFERS,
    &cluster::ZOOKEEPER_LIST_DIFFERS,
    &cluster::DATA_DIR_COUNT_DIFFERS,
    &security::READABLE_ZOOKEEPER_CREDENTIALS,
    &security::MALFORMED_ADMIN_ALLOW_LIST,
    &backup::UNKNOWN_BLOCK_SERVICE,
    &backup::BLOCK_SERVICE_ROOT,
    &backup::RELATIVE_BLOCK_SERVICE_ROOT,
    &backup::BLOCK_SERVICE_ROOT_UNAVAILABLE,
];

/// Looks a rule up by code (`PC001`, any case) or name (`unreplaced-template-variable`).
pub fn find(code_or_name: &str) -> Option<&'static Rule> {
    ALL.iter()
        .copied()
        .find(|r| r.code.eq_ignore_ascii_case(code_or_name) || r.name == code_or_name)
}

/// How to check.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Facts of the host the file is for; `None` skips the host rules (`--offline`).
    pub host: Option<HostFacts>,
    /// The Pegasus version the file is for, `(major, minor)`; decides deprecations.
    pub pegasus_version: (u32, u32),
    /// Data disks of one node may differ in size by this many percent of the largest.
    pub disk_size_tolerance_percent: u64,
    /// Codes or names of rules to skip.
    pub ignore: BTreeSet<String>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            host: None,
            pegasus_version: (2, 6),
            disk_size_tolerance_percent: 20,
            ignore: BTreeSet::new(),
        }
    }
}

impl CheckOptions {
    fn ignores(&self, rule: &Rule) -> bool {
        self.ignore
            .iter()
            .any(|i| i.eq_ignore_ascii_case(rule.code) || i == rule.name)
    }
}

/// What every rule gets.
pub struct Context<'a> {
    /// The file.
    pub config: &'a Config,
    /// The options.
    pub options: &'a CheckOptions,
}

impl Context<'_> {
    /// The file's source, for building findings.
    pub fn source(&self) -> &Arc<SourceFile> {
        self.config.source()
    }
}

/// Runs every file and host rule on `config`; findings come back in file order.
///
/// Findings are data: this never fails. Inline `; configcheck: ignore=CODE` comments and
/// `options.ignore` are applied here.
pub fn check(config: &Config, options: &CheckOptions) -> Vec<Finding> {
    // A `; configcheck: pegasus-version=2.5` comment says which version the file is for.
    let version = config
        .document()
        .lines
        .iter()
        .filter_map(|l| l.comment)
        .find_map(|c| match parse_directive(config.source().slice(c))? {
            Directive::Version(v) => Some(v),
            _ => None,
        });
    let options = &CheckOptions {
        pegasus_version: version.unwrap_or(options.pegasus_version),
        ..options.clone()
    };
    let ctx = Context { config, options };
    let mut out = Vec::new();
    template_vars::check(&ctx, &mut out);
    syntax::check(&ctx, &mut out);
    addresses::check(&ctx, &mut out);
    cluster_identity::check(&ctx, &mut out);
    data_dirs::check(&ctx, &mut out);
    network::check(&ctx, &mut out);
    ports::check(&ctx, &mut out);
    startup::check(&ctx, &mut out);
    security::check(&ctx, &mut out);
    backup::check(&ctx, &mut out);
    filter(config, options, out)
}

/// Drops the findings `options.ignore` or the file's own `configcheck: ignore=` comments
/// suppress, and sorts the rest in file order. [`check`] does this itself; the cross-file
/// findings of [`cluster`] go through it too.
pub fn filter(config: &Config, options: &CheckOptions, mut findings: Vec<Finding>) -> Vec<Finding> {
    let suppressions = Suppressions::of(config);
    findings.retain(|f| !options.ignores(f.rule) && !suppressions.hides(f));
    findings.sort_by_key(|f| (f.primary.span.offset, f.rule.code));
    findings
}

/// Inline suppressions: `; configcheck: ignore=PC002,PC020` on the line itself or alone on the
/// line before, and `; configcheck: ignore-file=PC025` anywhere for the whole file.
#[derive(Default)]
pub(crate) struct Suppressions {
    by_line: HashMap<usize, Vec<String>>,
    file: Vec<String>,
}

impl Suppressions {
    pub(crate) fn of(config: &Config) -> Self {
        let mut s = Suppressions::default();
        let source = config.source();
        let mut pending: Vec<String> = Vec::new();
        for line in &config.document().lines {
            let directive = line.comment.and_then(|c| parse_directive(source.slice(c)));
            let comment_only = matches!(line.kind, LineKind::Blank);
            match directive {
                Some(Directive::IgnoreFile(codes)) => s.file.extend(codes),
                Some(Directive::Ignore(codes)) if comment_only => pending.extend(codes),
                Some(Directive::Ignore(codes)) => {
                    s.by_line.entry(line.number).or_default().extend(codes);
                }
                Some(Directive::Version(_)) | None => {}
            }
            if !comment_only && !pending.is_empty() {
                s.by_line
                    .entry(line.number)
                    .or_default()
                    .append(&mut pending);
            }
        }
        s
    }

    pub(crate) fn hides(&self, finding: &Finding) -> bool {
        let matches = |codes: &[String]| {
            codes
                .iter()
                .any(|c| c.eq_ignore_ascii_case(finding.rule.code) || c == finding.rule.name)
        };
        matches(&self.file)
            || self
                .by_line
                .get(&finding.line())
                .is_some_and(|c| matches(c))
    }
}

/// A `configcheck:` comment.
enum Directive {
    /// `ignore=A,B`: these rules, on this line or the next entry.
    Ignore(Vec<String>),
    /// `ignore-file=A,B`: these rules, in the whole file.
    IgnoreFile(Vec<String>),
    /// `pegasus-version=2.5`: the version the file is for.
    Version((u32, u32)),
}

fn parse_directive(comment: &str) -> Option<Directive> {
    let text = comment.trim_start_matches(['#', ';']).trim();
    let rest = text.strip_prefix("configcheck:")?.trim();
    let codes = |list: &str| {
        list.split(',')
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    };
    if let Some(list) = rest.strip_prefix("ignore-file=") {
        Some(Directive::IgnoreFile(codes(list)))
    } else if let Some(list) = rest.strip_prefix("ignore=") {
        Some(Directive::Ignore(codes(list)))
    } else {
        let (major, minor) = rest
            .strip_prefix("pegasus-version=")?
            .trim()
            .split_once('.')?;
        Some(Directive::Version((
            major.parse().ok()?,
            minor.parse().ok()?,
        )))
    }
}

/// True if `value` still holds a template token; rules that read the value skip it, since
/// [`template_vars`] already reports it.
pub(crate) fn is_templated(value: &str) -> bool {
    !template_vars::tokens(value).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_unique_and_well_formed() {
        let mut codes = BTreeSet::new();
        let mut names = BTreeSet::new();
        for rule in ALL {
            assert!(
                codes.last().is_none_or(|last| *last < rule.code),
                "{} out of order",
                rule.code
            );
            assert!(codes.insert(rule.code), "{} twice", rule.code);
            assert!(names.insert(rule.name), "{} twice", rule.name);
            assert!(
                rule.code.len() == 5 && rule.code.starts_with("PC"),
                "{}",
                rule.code
            );
            assert!(
                rule.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                rule.name
            );
            for heading in [
                "## What it does",
                "## Why it matters",
                "## Example",
                "## How to fix",
            ] {
                assert!(rule.doc.contains(heading), "{} lacks {heading}", rule.code);
            }
        }
    }

    #[test]
    fn directives_apply_to_their_line_or_the_next_entry() {
        let text = "[meta_server]\n; configcheck: ignore=PC025\n\nserver_list = 10.0.0.1:34601\n";
        let config = Config::from_text("t", text);
        assert!(
            check(&config, &CheckOptions::default())
                .iter()
                .all(|f| f.rule.code != "PC025")
        );
        let inline = "[meta_server]\nserver_list = 10.0.0.1:34601 ; configcheck: ignore=single-meta-server\n";
        let config = Config::from_text("t", inline);
        assert!(
            check(&config, &CheckOptions::default())
                .iter()
                .all(|f| f.rule.code != "PC025")
        );
        let config = Config::from_text("t", "[meta_server]\nserver_list = 10.0.0.1:34601\n");
        assert!(
            check(&config, &CheckOptions::default())
                .iter()
                .any(|f| f.rule.code == "PC025")
        );
    }
}
