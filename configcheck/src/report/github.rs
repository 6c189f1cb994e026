//! GitHub Actions workflow commands: `::error file=…,line=…::message`, shown inline on pull
//! requests.

use std::io::{self, Write};

use super::{Region, Reporter};
use crate::finding::{Finding, Severity};

/// Workflow-command annotations.
pub struct Github;

/// Escapes data as the workflow-command syntax requires (`%`, CR, LF; plus `:` and `,` in
/// properties).
fn escape(text: &str, property: bool) -> String {
    let mut out = text
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

impl Reporter for Github {
    fn file(&mut self, out: &mut dyn Write, name: &str, findings: &[Finding]) -> io::Result<()> {
        for f in findings {
            let level = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Advice => "notice",
            };
            let r = Region::of(f, f.primary.span);
            let title = format!("{} {}", f.rule.code, f.rule.name);
            writeln!(
                out,
                "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}",
                escape(name, true),
                r.line,
                r.column,
                r.end_line,
                r.end_column,
                escape(&title, true),
                escape(&f.message, false)
            )?;
        }
        Ok(())
    }

    fn unreadable(
        &mut self,
        out: &mut dyn Write,
        _err: &mut dyn Write,
        name: &str,
        message: &str,
    ) -> io::Result<()> {
        writeln!(
            out,
            "::error file={},title=configcheck::{}",
            escape(name, true),
            escape(message, false)
        )
    }
}
