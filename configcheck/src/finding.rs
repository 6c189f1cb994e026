//! Findings: what a rule reports, as data, and how it shows up as a miette diagnostic.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, SourceCode};
use serde::Serialize;

use crate::rules::Rule;
use crate::source::{SourceFile, Span};

/// How bad a finding is. Ordered: `Advice < Warning < Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing breaks.
    Advice,
    /// Works, but is fragile or not what the guide recommends.
    Warning,
    /// The cluster fails to start or misbehaves.
    Error,
}

impl Severity {
    /// The lowercase name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Advice => "advice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<Severity> for miette::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Advice => miette::Severity::Advice,
            Severity::Warning => miette::Severity::Warning,
            Severity::Error => miette::Severity::Error,
        }
    }
}

/// A span with the text shown beside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What to say there.
    pub text: String,
}

/// One problem a rule found in one file.
///
/// Its first label (`primary`) is on the exact text at fault; `secondary` labels point at the
/// counterpart (the first definition, the other disk, the other list).
#[derive(Clone)]
pub struct Finding {
    /// The rule that fired.
    pub rule: &'static Rule,
    /// The rule's severity (kept here so a future override can change it per finding).
    pub severity: Severity,
    /// One line, lowercase, identifiers in backticks.
    pub message: String,
    /// The fix, concretely.
    pub help: Option<String>,
    /// The text at fault.
    pub primary: Label,
    /// Related places in the same file.
    pub secondary: Vec<Label>,
    /// The file.
    pub source: Arc<SourceFile>,
}

impl fmt::Debug for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finding")
            .field("code", &self.rule.code)
            .field("message", &self.message)
            .field("at", &self.source.position(self.primary.span.offset))
            .finish()
    }
}

impl Finding {
    /// A finding of `rule` at `span`, with the label `label` on it.
    pub fn new(
        rule: &'static Rule,
        source: &Arc<SourceFile>,
        span: Span,
        label: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            rule,
            severity: rule.severity,
            message: message.into(),
            help: None,
            primary: Label {
                span,
                text: label.into(),
            },
            secondary: Vec::new(),
            source: Arc::clone(source),
        }
    }

    /// Adds the fix.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a label on a related place.
    pub fn related(mut self, span: Span, text: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    /// The line of the primary label, from 1.
    pub fn line(&self) -> usize {
        self.source.position(self.primary.span.offset).line
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Finding {}

impl Diagnostic for Finding {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!("{} {}", self.rule.code, self.rule.name)))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity.into())
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&*self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary =
            LabeledSpan::new_primary_with_span(Some(self.primary.text.clone()), self.primary.span);
        let secondary = self
            .secondary
            .iter()
            .map(|l| LabeledSpan::new_with_span(Some(l.text.clone()), l.span));
        Some(Box::new(std::iter::once(primary).chain(secondary)))
    }
}

/// All findings of one file as a single diagnostic, each finding a related diagnostic over the
/// file's one shared source. This is what the server returns when it refuses to start.
#[derive(Debug)]
pub struct FileReport {
    /// The file.
    pub source: Arc<SourceFile>,
    /// Its findings, in file order.
    pub findings: Vec<Finding>,
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        write!(f, "`{}` has {} error(s)", self.source.name(), errors)
    }
}

impl std::error::Error for FileReport {}

impl Diagnostic for FileReport {
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.findings.iter().map(|f| f as &dyn Diagnostic)))
    }
}
