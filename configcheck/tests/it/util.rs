use std::path::{Path, PathBuf};

use configcheck::{CheckOptions, Config, Finding, HostFacts};

/// `configcheck/tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Loads a fixture, named by its path relative to the fixtures folder.
pub fn load(relative: &str) -> Config {
    Config::load(&fixtures().join(relative), relative).expect(relative)
}

/// Loads a recorded facts file from the fixtures folder.
pub fn facts(relative: &str) -> HostFacts {
    HostFacts::load(&fixtures().join(relative)).expect(relative)
}

/// Checks a fixture with the given host facts (none: offline).
pub fn check(relative: &str, host: Option<HostFacts>) -> Vec<Finding> {
    configcheck::check(
        &load(relative),
        &CheckOptions {
            host,
            ..CheckOptions::default()
        },
    )
}

/// The codes of some findings.
pub fn codes(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.rule.code).collect()
}
