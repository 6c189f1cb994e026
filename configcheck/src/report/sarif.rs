//! SARIF 2.1.0, the format code-scanning services (GitHub code scanning among them) import.

use std::io::{self, Write};

use serde_json::{Value, json};

use super::{Region, Reporter, Summary};
use crate::finding::{Finding, Severity};
use crate::rules;

/// Collects results and writes one SARIF log at the end.
#[derive(Default)]
pub struct Sarif {
    results: Vec<Value>,
    notifications: Vec<Value>,
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Advice => "note",
    }
}

fn location(name: &str, r: Region, message: Option<&str>) -> Value {
    let mut loc = json!({
        "physicalLocation": {
            "artifactLocation": { "uri": name },
            "region": {
                "startLine": r.line, "startColumn": r.column,
                "endLine": r.end_line, "endColumn": r.end_column,
                "byteOffset": r.offset, "byteLength": r.length,
            }
        }
    });
    if let Some(m) = message {
        loc["message"] = json!({ "text": m });
    }
    loc
}

impl Reporter for Sarif {
    fn file(&mut self, _out: &mut dyn Write, name: &str, findings: &[Finding]) -> io::Result<()> {
        for f in findings {
            let index = rules::ALL.iter().position(|r| r.code == f.rule.code);
            let mut text = f.message.clone();
            if let Some(help) = &f.help {
                text = format!("{text}\nhelp: {help}");
            }
            self.results.push(json!({
                "ruleId": f.rule.code,
                "ruleIndex": index,
                "level": level(f.severity),
                "message": { "text": text },
                "locations": [location(name, Region::of(f, f.primary.span), Some(&f.primary.text))],
                "relatedLocations": f.secondary.iter().enumerate()
                    .map(|(i, l)| { let mut v = location(name, Region::of(f, l.span), Some(&l.text)); v["id"] = json!(i + 1); v })
                    .collect::<Vec<_>>(),
            }));
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
        self.notifications.push(json!({
            "level": "error",
            "message": { "text": message },
            "locations": [{ "physicalLocation": { "artifactLocation": { "uri": name } } }],
        }));
        Ok(())
    }

    fn finish(&mut self, out: &mut dyn Write, summary: &Summary) -> io::Result<()> {
        let rules: Vec<Value> = rules::ALL
            .iter()
            .map(|r| {
                json!({
                    "id": r.code,
                    "name": r.name,
                    "shortDescription": { "text": r.summary },
                    "fullDescription": { "text": r.summary },
                    "help": { "text": r.doc },
                    "defaultConfiguration": { "level": level(r.severity) },
                })
            })
            .collect();
        let log = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": {
                    "name": "configcheck",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }},
                "invocations": [{
                    "executionSuccessful": summary.unreadable == 0,
                    "toolExecutionNotifications": self.notifications,
                }],
                "results": self.results,
            }],
        });
        serde_json::to_writer_pretty(&mut *out, &log)?;
        writeln!(out)
    }
}
