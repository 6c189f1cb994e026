//! Values the server refuses, or acts wrongly on, at start-up.

use super::{Context, Rule, Scope, is_templated};
use crate::config::ValueError;
use crate::finding::{Finding, Severity};
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
`partition_count`, `ports`; booleans such as `run`) hold a value of that type.

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

/// Keys Pegasus reads as unsigned integers: `(section or family, key)`; a family `apps.*`
/// covers every section starting with `apps.`.
const UNSIGNED: &[(&str, &str)] = &[
    ("apps.*", "count"),
    ("network", "io_service_worker_count"),
    ("network", "conn_threshold_per_ip"),
    ("network", "max_connections"),
    ("network", "max_in_flight_per_connection"),
    ("network", "max_frame_bytes"),
    ("network", "conn_idle_timeout_seconds"),
    ("network", "request_read_timeout_seconds"),
    ("network", "response_write_timeout_seconds"),
    ("network", "listen_backlog"),
    ("meta_server", "min_live_node_count_for_unfreeze"),
    ("meta_server", "node_live_percentage_threshold_for_update"),
    ("meta_server", "replica_assign_delay_ms_for_dropouts"),
    ("meta_server", "max_replicas_in_group"),
    ("meta_server", "hold_seconds_for_dropped_app"),
    ("meta_server", "max_allowed_partition_count"),
    ("meta_server", "min_allowed_replica_count"),
    ("meta_server", "max_allowed_replica_count"),
    ("meta_server.apps.*", "partition_count"),
    ("meta_server.apps.*", "max_replica_count"),
    ("replication", "fd_check_interval_seconds"),
    ("replication", "fd_beacon_interval_seconds"),
    ("replication", "fd_lease_seconds"),
    ("replication", "fd_grace_seconds"),
    ("replication", "mutation_2pc_min_replica_count"),
    ("replication", "log_private_file_size_mb"),
    ("replication", "config_sync_interval_ms"),
    ("replication", "disk_min_available_space_ratio"),
    ("nfs", "max_copy_rate_megabytes_per_disk"),
    ("zookeeper", "timeout_ms"),
    ("pegasus.server", "rocksdb_write_buffer_size"),
    ("pegasus.server", "rocksdb_block_cache_capacity"),
    ("pegasus.server", "rocksdb_multi_get_max_iteration_count"),
    ("pegasus.server", "rocksdb_multi_get_max_iteration_size"),
    ("pegasus.collector", "available_detect_interval_seconds"),
];

/// Keys Pegasus reads as booleans.
const BOOLEAN: &[(&str, &str)] = &[
    ("apps.*", "run"),
    ("network", "enable_udp"),
    ("meta_server", "recover_from_replica_server"),
    ("replication", "fd_disabled"),
    ("replication", "ignore_broken_disk"),
    ("replication", "plog_force_flush"),
];

/// The sections a `(section or family, key)` pair applies to.
fn sections<'a>(config: &'a crate::Config, pattern: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let family = pattern.strip_suffix('*');
    config
        .sections()
        .iter()
        .map(|s| s.name.value.as_str())
        .filter(move |name| match family {
            Some(prefix) => name.starts_with(prefix) && !name.contains(".."),
            None => *name == pattern,
        })
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
    for (pattern, key) in UNSIGNED {
        for section in sections(config, pattern) {
            // Only the section's own value: an inherited one is checked in its template.
            if config.section(section).and_then(|s| s.own(key)).is_some()
                && let Err(e) = config.parse_or::<u64>(section, key, 0)
            {
                report(e);
            }
        }
    }
    for (pattern, key) in BOOLEAN {
        for section in sections(config, pattern) {
            if config.section(section).and_then(|s| s.own(key)).is_some()
                && let Err(e) = config.bool_or(section, key, false)
            {
                report(e);
            }
        }
    }
    let lease = config.parse_or::<u64>("replication", "fd_lease_seconds", 20);
    let grace = config.parse_or::<u64>("replication", "fd_grace_seconds", 22);
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
    for section in sections(config, "meta_server.apps.*") {
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
