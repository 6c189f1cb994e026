//! The config, checked before anything else: `-cargs` substituted, then every configcheck rule
//! with this host's facts; an error finding stops start-up here, with its diagnostic.

use std::sync::Arc;

use configcheck::{CheckOptions, Config, FileReport, HostFacts, Severity, check};

use super::StartError;
use super::args::Args;

/// Loads, substitutes `-cargs` and checks the config: an error finding stops here.
pub fn load_config(args: &Args, facts: &HostFacts) -> Result<Config, StartError> {
    let name = args.config.display().to_string();
    let mut config = Config::load(&args.config, &name)?;
    if !args.cargs.is_empty() {
        let mut text = config.source().text().to_owned();
        for (k, v) in &args.cargs {
            text = text.replace(&format!("%{k}%"), v);
        }
        config = Config::from_text(&name, text);
    }
    let findings = check(
        &config,
        &CheckOptions {
            host: Some(facts.clone()),
            ..CheckOptions::default()
        },
    );
    let errors: Vec<_> = findings
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        return Err(StartError::Findings(FileReport {
            source: Arc::clone(config.source()),
            findings: errors,
        }));
    }
    Ok(config)
}
