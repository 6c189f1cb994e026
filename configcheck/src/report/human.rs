//! The human format: miette's graphical report for each finding, then a summary line.

use std::io::{self, Write};

use miette::{GraphicalReportHandler, GraphicalTheme};

use super::{Reporter, Style, Summary};
use crate::finding::Finding;

/// Renders with miette's graphical handler.
pub struct Human {
    handler: GraphicalReportHandler,
}

impl Human {
    /// A reporter with `style`'s colours and width.
    pub fn new(style: Style) -> Self {
        let theme = if style.color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        Self {
            handler: GraphicalReportHandler::new_themed(theme)
                .with_width(style.width)
                .with_links(false),
        }
    }

    /// One finding as text, as it is printed.
    pub fn render(&self, finding: &Finding) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = self.handler.render_report(&mut text, finding);
        text
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Reporter for Human {
    fn file(&mut self, out: &mut dyn Write, _name: &str, findings: &[Finding]) -> io::Result<()> {
        for finding in findings {
            writeln!(out, "{}", self.render(finding))?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write, s: &Summary) -> io::Result<()> {
        let checked = plural(s.files, "file", "files");
        let found = s.errors + s.warnings + s.advice;
        if found == 0 {
            writeln!(out, "No problems found in {checked}.")?;
        } else {
            let mut parts = Vec::new();
            for (n, one, many) in [
                (s.errors, "error", "errors"),
                (s.warnings, "warning", "warnings"),
                (s.advice, "advice", "advice"),
            ] {
                if n > 0 {
                    parts.push(plural(n, one, many));
                }
            }
            writeln!(out, "Found {} in {checked}.", parts.join(", "))?;
        }
        if s.unreadable > 0 {
            writeln!(
                out,
                "{} could not be checked.",
                plural(s.unreadable, "file", "files")
            )?;
        }
        Ok(())
    }
}
