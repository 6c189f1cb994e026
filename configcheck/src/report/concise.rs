//! The concise format: `path:line:col: severity[CODE] message`, one line per finding.

use std::io::{self, Write};

use super::{Region, Reporter, Summary};
use crate::finding::Finding;

/// One line per finding, as compilers and `grep -n` print them.
pub struct Concise;

impl Reporter for Concise {
    fn file(&mut self, out: &mut dyn Write, name: &str, findings: &[Finding]) -> io::Result<()> {
        for f in findings {
            let r = Region::of(f, f.primary.span);
            writeln!(
                out,
                "{name}:{}:{}: {}[{}] {}",
                r.line, r.column, f.severity, f.rule.code, f.message
            )?;
        }
        Ok(())
    }

    fn unreadable(
        &mut self,
        _out: &mut dyn Write,
        err: &mut dyn Write,
        _name: &str,
        message: &str,
    ) -> io::Result<()> {
        writeln!(err, "error: {message}")
    }

    fn finish(&mut self, _out: &mut dyn Write, _summary: &Summary) -> io::Result<()> {
        Ok(())
    }
}
