//! The concise format: `path:line:col: severity[CODE] message`, one line per finding.

use std::io::{self, Write};

use super::{Region, Reporter};
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
}
