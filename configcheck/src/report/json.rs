//! The JSON format: one document, versioned, with a summary.
//!
//! ```json
//! {
//!   "version": 1,
//!   "tool": { "name": "configcheck", "version": "0.1.0" },
//!   "files": [{ "path": "config.ini", "findings": [{ "code": "PC001", "name": "…", "severity": "error",
//!               "message": "…", "help": "…", "location": { "line": 54, "column": 14, … },
//!               "labels": [{ "primary": true, "message": "never replaced", "location": { … } }] }] }],
//!   "errors": [{ "path": "missing.ini", "message": "cannot read …" }],
//!   "summary": { "files": 1, "unreadable": 1, "errors": 12, "warnings": 0, "advice": 0 }
//! }
//! ```

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

use super::{Region, Reporter, Summary};
use crate::finding::{Finding, Severity};

/// The document's format version; bumped on any incompatible change.
pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct LabelOut {
    primary: bool,
    message: String,
    location: Region,
}

#[derive(Serialize)]
struct FindingOut {
    code: &'static str,
    name: &'static str,
    severity: Severity,
    message: String,
    help: Option<String>,
    location: Region,
    labels: Vec<LabelOut>,
}

#[derive(Serialize)]
struct FileOut {
    path: String,
    findings: Vec<FindingOut>,
}

#[derive(Serialize)]
struct ErrorOut {
    path: String,
    message: String,
}

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    tool: Tool,
    files: &'a [FileOut],
    errors: &'a [ErrorOut],
    summary: &'a Summary,
}

/// Collects everything and writes one document at the end.
#[derive(Default)]
pub struct Json {
    files: Vec<FileOut>,
    index: HashMap<String, usize>,
    errors: Vec<ErrorOut>,
}

fn finding_out(f: &Finding) -> FindingOut {
    let label = |l: &crate::finding::Label, primary| LabelOut {
        primary,
        message: l.text.clone(),
        location: Region::of(f, l.span),
    };
    FindingOut {
        code: f.rule.code,
        name: f.rule.name,
        severity: f.severity,
        message: f.message.clone(),
        help: f.help.clone(),
        location: Region::of(f, f.primary.span),
        labels: std::iter::once(label(&f.primary, true))
            .chain(f.secondary.iter().map(|l| label(l, false)))
            .collect(),
    }
}

impl Reporter for Json {
    fn file(&mut self, _out: &mut dyn Write, name: &str, findings: &[Finding]) -> io::Result<()> {
        // A folder's cross-file findings come after its files: keep one entry per file.
        let findings = findings.iter().map(finding_out);
        match self.index.get(name) {
            Some(&i) => self.files[i].findings.extend(findings),
            None => {
                self.index.insert(name.to_owned(), self.files.len());
                self.files.push(FileOut {
                    path: name.to_owned(),
                    findings: findings.collect(),
                });
            }
        }
        Ok(())
    }

    fn unreadable(
        &mut self,
        _out: &mut dyn Write,
        _err: &mut dyn Write,
        name: &str,
        message: &str,
    ) -> io::Result<()> {
        self.errors.push(ErrorOut {
            path: name.to_owned(),
            message: message.to_owned(),
        });
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write, summary: &Summary) -> io::Result<()> {
        let doc = Document {
            version: VERSION,
            tool: Tool {
                name: "configcheck",
                version: env!("CARGO_PKG_VERSION"),
            },
            files: &self.files,
            errors: &self.errors,
            summary,
        };
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)
    }
}
