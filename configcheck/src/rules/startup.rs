//! Values the server refuses, or acts wrongly on, at start-up.

use super::{Context, Rule, Scope, is_templated};
use crate::config::ValueError;
use crate::finding::{Finding, Severity};
use crate::keys::{self, Key, Kind};
use crate::source::Span;

/// PC080.
pub static INVALID_VALUE: Rule = Rule {
    code: "PC080",
    name: "invalid-value",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a value that is not of its key's type",
    doc: "## What it does
Checks the keys whose type Pegasus enforces (numbers such as `fd_lease_seconds`, `timeout_ms`,
`partition_count`; booleans such as `run`) hold a value of that type: every typed key of the key
table (`configcheck keys` lists them), which is the table the server reads its values through.

## Why it matters
rDSN aborts at start-up on a value it cannot parse (`fd_lease_seconds = 20s`), on whichever
node the file reaches first.

## Example
```ini
[replication]
  fd_lease_seconds = 20s
```

## How to fix
Write the bare number or `true`/`false`: `fd_lease_seconds = 20`.
",
};

/// PC081.
pub static FD_GRACE_NOT_ABOVE_LEASE: Rule = Rule {
    code: "PC081",
    name: "fd-grace-not-above-lease",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "`fd_grace_seconds` must be greater than `fd_lease_seconds`",
    doc: "## What it does
Compares `[replication] fd_grace_seconds` with `fd_lease_seconds` (defaults 22 and 20).

## Why it matters
A replica server stops serving when its lease expires; the MetaServer may only declare it dead
and move its primaries after the grace period. With grace ≤ lease two primaries of one partition
could serve at once, so the MetaServer refuses to start.

## Example
```ini
[replication]
  fd_lease_seconds = 20
  fd_grace_seconds = 10
```

## How to fix
Keep grace > lease > 2 × beacon interval: `fd_lease_seconds = 20`, `fd_grace_seconds = 22`.
",
};

/// PC082.
pub static RELATIVE_LOG_DIR: Rule = Rule {
    code: "PC082",
    name: "relative-log-dir",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "`[core] log_dir` must be an absolute path",
    doc: "## What it does
Checks that `[core] log_dir`, when set, is absolute.

## Why it matters
Pegasus requires an absolute log dir and stops at start-up otherwise.

## Example
```ini
[core]
  log_dir = log
```

## How to fix
`log_dir = /home/work/app/pegasus/log`, or leave it empty for `<data_dir>/log`.
",
};

/// PC083.
pub static INVALID_TABLE_ENV: Rule = Rule {
    code: "PC083",
    name: "invalid-table-env",
    severity: Severity::Error,
    scope: Scope::File,
    summary: "a bootstrap table's `envs` that the MetaServer refuses",
    doc: "## What it does
Checks `envs` of each `[meta_server.apps.*]` section: a comma-separated list of `key=value`
table environments, each a key the server knows with a value of its form (`default_ttl=86400`,
`replica.write_throttling=1000*delay*100`, `rocksdb.usage_scenario=bulk_load`, ...). The same
check the MetaServer makes on `create -e` and `set_app_envs`.

## Why it matters
The MetaServer creates these tables when the cluster starts for the first time; with an `envs`
it cannot take it refuses to start (Pegasus aborts on an unparsable list), on every meta.

## Example
```ini
[meta_server.apps.temp]
  app_name = temp
  envs = default_ttl=1d
```

## How to fix
Write each pair as the key's form says: `envs = default_ttl=86400`.
",
};

/// The sections of `config` a key applies to.
fn sections<'a>(config: &'a crate::Config, key: &'a Key) -> impl Iterator<Item = &'a str> + 'a {
    config
        .sections()
        .iter()
        .map(|s| s.name.value.as_str())
        .filter(move |name| key.applies_to(name))
}

pub(super) fn check(ctx: &Context<'_>, out: &mut Vec<Finding>) {
    let config = ctx.config;
    let source = ctx.source();
    let mut report = |err: ValueError| {
        if !is_templated(&err.value) {
            out.push(
                Finding::new(
                    &INVALID_VALUE,
                    source,
                    err.span,
                    format!("not {}", err.expected),
                    format!(
                        "`{}` in `[{}]` must be {}, not `{}`",
                        err.key, err.section, err.expected, err.value
                    ),
                )
                .help(format!(
                    "write `{} = <{}>`",
                    err.key,
                    if err.expected.contains("true") {
                        "true|false"
                    } else {
                        "number"
                    }
                )),
            );
        }
    };
    // Every key of the table with a type, in each section it applies to: only the section's own
    // value (an inherited one is checked in its template).
    for key in keys::ALL {
        for section in sections(config, key) {
            if config
                .section(section)
                .and_then(|s| s.own(key.name))
                .is_none()
            {
                continue;
            }
            let checked = match key.kind {
                Kind::Unsigned => config.parse_or::<u64>(section, key.name, 0).map(drop),
                Kind::Integer => config.parse_or::<i64>(section, key.name, 0).map(drop),
                Kind::Bool => config.bool_or(section, key.name, false).map(drop),
                Kind::Text => Ok(()),
            };
            if let Err(e) = checked {
                report(e);
            }
        }
    }
    let lease = config.get::<u64>(&keys::FD_LEASE);
    let grace = config.get::<u64>(&keys::FD_GRACE);
    if let (Ok(lease), Ok(grace)) = (lease, grace)
        && grace <= lease
    {
        let at = config
            .value("replication", "fd_grace_seconds")
            .or_else(|| config.value("replication", "fd_lease_seconds"));
        if let Some(at) = at {
            let mut finding = Finding::new(
                &FD_GRACE_NOT_ABOVE_LEASE,
                source,
                at.span,
                format!("grace {grace}s"),
                format!(
                    "`fd_grace_seconds` ({grace}) must be greater than `fd_lease_seconds` ({lease})"
                ),
            )
            .help(format!("set `fd_grace_seconds = {}` or more", lease + 2));
            if let Some(l) = config
                .value("replication", "fd_lease_seconds")
                .filter(|l| l.span != at.span)
            {
                finding = finding.related(l.span, format!("lease {lease}s"));
            }
            out.push(finding);
        }
    }
    for section in sections(config, &keys::APP_ENVS) {
        // Only the section's own value: an inherited one is checked in its template.
        if config
            .section(section)
            .and_then(|s| s.own("envs"))
            .is_none()
        {
            continue;
        }
        let Some(envs) = config
            .value(section, "envs")
            .filter(|e| !is_templated(&e.value))
        else {
            continue;
        };
        // Each refused pair is pointed at (the whole value when escapes make the raw text
        // differ from it).
        let exact = envs.value.len() == envs.span.len;
        let mut at = 0;
        for pair in envs.value.split(',') {
            let start = at;
            at += pair.len() + 1;
            let trimmed = pair.trim();
            if trimmed.is_empty() {
                continue;
            }
            let Err(why) = crate::envs::parse_list(trimmed) else {
                continue;
            };
            let lead = pair.len() - pair.trim_start().len();
            let span = if exact {
                Span::new(envs.span.offset + start + lead, trimmed.len())
            } else {
                envs.span
            };
            out.push(
                Finding::new(
                    &INVALID_TABLE_ENV,
                    source,
                    span,
                    "refused",
                    format!("`[{section}] envs`: {why}"),
                )
                .help("write `envs = key=value,key=value`, each value in its key's form"),
            );
        }
    }
    if let Some(dir) = config.value("core", "log_dir")
        && !dir.value.is_empty()
        && !dir.value.starts_with('/')
        && !is_templated(&dir.value)
    {
        out.push(
            Finding::new(
                &RELATIVE_LOG_DIR,
                source,
                dir.span,
                "relative",
                format!("`[core] log_dir` `{}` is not an absolute path", dir.value),
            )
            .help("use an absolute path, or leave `log_dir` empty for `<data_dir>/log`"),
        );
    }
}
