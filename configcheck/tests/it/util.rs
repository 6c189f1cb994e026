use std::path::PathBuf;

use configcheck::{CheckOptions, Config, Finding, HostFacts};

/// `configcheck/tests/fixtures`. Cargo names the package folder at run time too; that one wins
/// over the one compiled in, which is stale when a build cache is shared by two checkouts.
pub fn fixtures() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/fixtures")
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
