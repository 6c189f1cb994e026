//! configcheck's integration tests: one binary, one module per concern (ripgrep's layout).

/// The `configcheck` binary: formats, exit codes, stdin, folders, bad input.
mod cli;
/// Agreement with the `rust-ini` crate where the two dialects agree.
mod differential;
/// One folder per rule: `fires.ini` fires it, `passes.ini` does not; snapshots of both outputs.
mod fixtures;
/// Arbitrary input never panics the parser or the rules.
mod properties;
/// Pegasus's own templates: they parse, and the production template's 12 variables are found.
mod reference;
/// Shared helpers.
mod util;
