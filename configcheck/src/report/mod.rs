//! Output: every format writes findings to a writer (stdout in the CLI) as files are checked,
//! and a summary at the end.
//!
//! # Layout
//! - [`human`]: miette's graphical report, one block per finding, and a summary line
//! - [`concise`]: `path:line:col: severity[CODE] message`, one line per finding
//! - [`json`]: one versioned JSON document with a summary
//! - [`sarif`]: SARIF 2.1.0 for code-scanning tools
//! - [`github`]: GitHub Actions `::error` workflow commands

pub mod concise;
pub mod github;
pub mod human;
pub mod json;
pub mod sarif;

use std::io::{self, Write};

use serde::Serialize;

use crate::finding::{Finding, Severity};

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Code frames with labels and help (miette).
    Human,
    /// One line per finding.
    Concise,
    /// A JSON document: `{version, tool, files, errors, summary}`.
    Json,
    /// SARIF 2.1.0.
    Sarif,
    /// GitHub Actions annotations.
    Github,
}

/// Counts over a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Files checked (read and parsed).
    pub files: usize,
    /// Files that could not be checked.
    pub unreadable: usize,
    /// Error findings.
    pub errors: usize,
    /// Warning findings.
    pub warnings: usize,
    /// Advice findings.
    pub advice: usize,
}

impl Summary {
    /// Counts `findings`.
    pub fn count(&mut self, findings: &[Finding]) {
        for f in findings {
            match f.severity {
                Severity::Error => self.errors += 1,
                Severity::Warning => self.warnings += 1,
                Severity::Advice => self.advice += 1,
            }
        }
    }
}

/// A format's writer: called once per checked file, once per file that could not be checked,
/// and once at the end.
pub trait Reporter {
    /// The findings of one file (possibly none).
    fn file(&mut self, out: &mut dyn Write, name: &str, findings: &[Finding]) -> io::Result<()>;
    /// A file that could not be checked; `message` says why. Line formats print it to `err`.
    fn unreadable(
        &mut self,
        _out: &mut dyn Write,
        err: &mut dyn Write,
        _name: &str,
        message: &str,
    ) -> io::Result<()> {
        writeln!(err, "error: {message}")
    }
    /// The end of the run.
    fn finish(&mut self, _out: &mut dyn Write, _summary: &Summary) -> io::Result<()> {
        Ok(())
    }
}

/// Options that change how findings look.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// ANSI colours.
    pub color: bool,
    /// Wrap width of the human format.
    pub width: usize,
}

/// The reporter for `format`.
pub fn reporter(format: Format, style: Style) -> Box<dyn Reporter> {
    match format {
        Format::Human => Box::new(human::Human::new(style)),
        Format::Concise => Box::new(concise::Concise),
        Format::Json => Box::new(json::Json::default()),
        Format::Sarif => Box::new(sarif::Sarif::default()),
        Format::Github => Box::new(github::Github),
    }
}

/// Where a finding is, in the terms every format uses (lines and columns from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Region {
    /// Start line.
    pub line: usize,
    /// Start column (characters).
    pub column: usize,
    /// End line.
    pub end_line: usize,
    /// End column (one past the last character).
    pub end_column: usize,
    /// Byte offset.
    pub offset: usize,
    /// Byte length.
    pub length: usize,
}

impl Region {
    /// The region of `span` in the finding's file.
    pub fn of(finding: &Finding, span: crate::source::Span) -> Self {
        let start = finding.source.position(span.offset);
        let end = finding.source.end_position(span);
        Region {
            line: start.line,
            column: start.column,
            end_line: end.line,
            end_column: end.column,
            offset: span.offset,
            length: span.len,
        }
    }
}
